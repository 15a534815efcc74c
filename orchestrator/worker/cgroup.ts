// A small cgroup interface with v1 and v2 implementations, chosen at runtime from what the host
// mounts. Canopy's groups live under a `canopy` parent; a group is removed only after every process
// in it is gone (frozen first, so nothing forks while it is being killed).
import { existsSync, mkdirSync, readFileSync, writeFileSync, rmdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

export interface CgroupLimits {
  /** Bytes; 0 or undefined = no limit. */
  memoryBytes?: number;
  /** CPUs (may be fractional); 0 or undefined = no limit. */
  vcpus?: number;
  /** Process count cap (fork-bomb guard). */
  pidsMax?: number;
}

export interface Cgroup {
  /** Path relative to the hierarchy root, e.g. canopy/w1/svc-0. */
  readonly rel: string;
  /** Files a process writes its own pid to, to join this group (one per v1 controller). */
  readonly procsFiles: readonly string[];
  setLimits(l: CgroupLimits): void;
  pids(): number[];
  /** CPU time consumed by the group, in nanoseconds. */
  cpuUsageNs(): number;
  /** How many times the kernel OOM-killed a process of this group. */
  oomKills(): number;
  /** CFS bandwidth counters (cpu.stat): scheduling periods elapsed and those in which the group hit
   *  its `vcpus` quota and was throttled. Both 0 when the group has no quota or is gone. */
  cpuThrottle(): CpuThrottle;
  /**
   * Stops every process in the group and waits until it is empty: SIGTERM first and up to `graceMs`
   * for them to leave, then SIGKILL (frozen, so nothing forks meanwhile).
   */
  killAll(graceMs?: number, timeoutMs?: number): Promise<void>;
  /** Kills everything, then removes the group. Safe to call twice. */
  destroy(): Promise<void>;
  exists(): boolean;
}

export interface CpuThrottle {
  periods: number;
  throttled: number;
}

export interface CgroupDriver {
  readonly version: 1 | 2;
  readonly root: string;
  create(rel: string, limits: CgroupLimits): Cgroup;
  /** A handle to an existing group (e.g. after a daemon restart); undefined if it is gone. */
  open(rel: string): Cgroup | undefined;
  /** Names of the child groups directly under `rel`. */
  children(rel: string): string[];
  /** Removes `rel` if it has no child groups (parents such as canopy/<worker>), then each parent of
   *  it that this leaves empty (canopy/<worker> → canopy), so the last worker leaves nothing behind. */
  removeIfEmpty(rel: string): void;
}

const V1_CONTROLLERS = ['memory', 'cpu', 'cpuacct', 'pids', 'freezer'] as const;
type V1Controller = (typeof V1_CONTROLLERS)[number];
const CFS_PERIOD_US = 100_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

function parsePids(text: string | undefined): number[] {
  if (!text) return [];
  return text.split('\n').filter((l) => l.length > 0).map(Number).filter((n) => Number.isInteger(n) && n > 0);
}

function keyed(text: string | undefined, key: string): number {
  if (!text) return 0;
  for (const line of text.split('\n')) {
    const [k, v] = line.split(/\s+/);
    if (k === key) return Number(v) || 0;
  }
  return 0;
}

function killPids(pids: readonly number[]): void {
  for (const p of pids) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** SIGTERM to every pid, then wait up to graceMs for the group to empty; true if it did. */
async function terminate(pids: () => number[], graceMs: number): Promise<boolean> {
  const first = pids();
  if (first.length === 0) return true;
  if (graceMs <= 0) return false;
  for (const p of first) {
    try {
      process.kill(p, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  const until = Date.now() + graceMs;
  while (Date.now() < until) {
    if (pids().length === 0) return true;
    await sleep(5);
  }
  return pids().length === 0;
}

async function rmdirRetry(path: string): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      rmdirSync(path);
      return;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      // EBUSY while the kernel finishes reaping the last tasks.
      if (i >= 50) throw e;
      await sleep(20);
    }
  }
}

/** rmdir of root/rel, then of each parent up to (not including) root, stopping at the first that
 *  still has children (or another worker's groups). */
function removeUpward(root: string, rel: string): void {
  const parts = rel.split('/').filter(Boolean);
  for (let n = parts.length; n > 0; n--) {
    try {
      rmdirSync(join(root, ...parts.slice(0, n)));
    } catch (e) {
      // Not there: its parent may still be empty. Not empty: neither is any parent.
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') return;
    }
  }
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

class V1Group implements Cgroup {
  readonly procsFiles: readonly string[];

  constructor(private readonly root: string, readonly rel: string) {
    this.procsFiles = V1_CONTROLLERS.map((c) => join(root, c, rel, 'cgroup.procs'));
  }

  private f(c: V1Controller, file: string): string {
    return join(this.root, c, this.rel, file);
  }

  mkdirs(): void {
    for (const c of V1_CONTROLLERS) mkdirSync(join(this.root, c, this.rel), { recursive: true });
  }

  setLimits(l: CgroupLimits): void {
    const mem = l.memoryBytes && l.memoryBytes > 0 ? String(Math.floor(l.memoryBytes)) : '-1';
    writeFileSync(this.f('memory', 'memory.limit_in_bytes'), mem);
    writeFileSync(this.f('cpu', 'cpu.cfs_period_us'), String(CFS_PERIOD_US));
    const quota = l.vcpus && l.vcpus > 0 ? String(Math.max(1000, Math.round(l.vcpus * CFS_PERIOD_US))) : '-1';
    writeFileSync(this.f('cpu', 'cpu.cfs_quota_us'), quota);
    writeFileSync(this.f('pids', 'pids.max'), l.pidsMax ? String(l.pidsMax) : 'max');
  }

  pids(): number[] {
    const all = new Set<number>();
    for (const c of ['memory', 'freezer'] as const) for (const p of parsePids(readText(this.f(c, 'cgroup.procs')))) all.add(p);
    return [...all];
  }

  cpuUsageNs(): number {
    return Number(readText(this.f('cpuacct', 'cpuacct.usage'))?.trim() ?? 0) || 0;
  }

  cpuThrottle(): CpuThrottle {
    const t = readText(this.f('cpu', 'cpu.stat'));
    return { periods: keyed(t, 'nr_periods'), throttled: keyed(t, 'nr_throttled') };
  }

  oomKills(): number {
    return keyed(readText(this.f('memory', 'memory.oom_control')), 'oom_kill');
  }

  exists(): boolean {
    return isDir(join(this.root, 'memory', this.rel));
  }

  async killAll(graceMs = 0, timeoutMs = 3000): Promise<void> {
    if (await terminate(() => this.pids(), graceMs)) return;
    const state = this.f('freezer', 'freezer.state');
    const frozen = existsSync(state);
    if (frozen) {
      writeFileSync(state, 'FROZEN');
      for (let i = 0; i < 50 && readText(state)?.trim() !== 'FROZEN'; i++) await sleep(2);
    }
    const until = Date.now() + timeoutMs;
    try {
      for (;;) {
        const pids = this.pids();
        if (pids.length === 0) return;
        killPids(pids);
        if (frozen) writeFileSync(state, 'THAWED');
        if (Date.now() > until) throw new Error(`cgroup ${this.rel}: processes ${pids.join(',')} survive SIGKILL`);
        await sleep(5);
      }
    } finally {
      if (frozen && existsSync(state)) writeFileSync(state, 'THAWED');
    }
  }

  async destroy(): Promise<void> {
    if (!this.exists() && V1_CONTROLLERS.every((c) => !isDir(join(this.root, c, this.rel)))) return;
    await this.killAll();
    for (const c of V1_CONTROLLERS) await rmdirRetry(join(this.root, c, this.rel));
  }
}

class V1Driver implements CgroupDriver {
  readonly version = 1;
  constructor(readonly root: string) {}

  create(rel: string, limits: CgroupLimits): Cgroup {
    const g = new V1Group(this.root, rel);
    g.mkdirs();
    g.setLimits(limits);
    return g;
  }

  open(rel: string): Cgroup | undefined {
    const g = new V1Group(this.root, rel);
    return g.exists() ? g : undefined;
  }

  children(rel: string): string[] {
    const dir = join(this.root, 'memory', rel);
    if (!isDir(dir)) return [];
    return readdirSync(dir).filter((n) => isDir(join(dir, n)));
  }

  removeIfEmpty(rel: string): void {
    // Every mounted hierarchy, not only the controllers we manage: runc (containers) makes the group
    // in blkio, devices, systemd, … too, and an empty parent left there outlives the worker.
    let hierarchies: string[];
    try {
      hierarchies = readdirSync(this.root).filter((h) => isDir(join(this.root, h)));
    } catch {
      hierarchies = [...V1_CONTROLLERS];
    }
    for (const h of hierarchies) removeUpward(join(this.root, h), rel);
  }
}

class V2Group implements Cgroup {
  readonly procsFiles: readonly string[];
  private readonly dir: string;

  constructor(root: string, readonly rel: string) {
    this.dir = join(root, rel);
    this.procsFiles = [join(this.dir, 'cgroup.procs')];
  }

  setLimits(l: CgroupLimits): void {
    writeFileSync(join(this.dir, 'memory.max'), l.memoryBytes && l.memoryBytes > 0 ? String(Math.floor(l.memoryBytes)) : 'max');
    // Without swap accounting a capped group would page out instead of being OOM-killed.
    if (existsSync(join(this.dir, 'memory.swap.max'))) writeFileSync(join(this.dir, 'memory.swap.max'), '0');
    const quota = l.vcpus && l.vcpus > 0 ? String(Math.max(1000, Math.round(l.vcpus * CFS_PERIOD_US))) : 'max';
    writeFileSync(join(this.dir, 'cpu.max'), `${quota} ${CFS_PERIOD_US}`);
    if (existsSync(join(this.dir, 'pids.max'))) writeFileSync(join(this.dir, 'pids.max'), l.pidsMax ? String(l.pidsMax) : 'max');
  }

  pids(): number[] {
    return parsePids(readText(join(this.dir, 'cgroup.procs')));
  }

  cpuUsageNs(): number {
    return keyed(readText(join(this.dir, 'cpu.stat')), 'usage_usec') * 1000;
  }

  cpuThrottle(): CpuThrottle {
    const t = readText(join(this.dir, 'cpu.stat'));
    return { periods: keyed(t, 'nr_periods'), throttled: keyed(t, 'nr_throttled') };
  }

  oomKills(): number {
    return keyed(readText(join(this.dir, 'memory.events')), 'oom_kill');
  }

  exists(): boolean {
    return isDir(this.dir);
  }

  async killAll(graceMs = 0, timeoutMs = 3000): Promise<void> {
    if (await terminate(() => this.pids(), graceMs)) return;
    const killFile = join(this.dir, 'cgroup.kill');
    const freeze = join(this.dir, 'cgroup.freeze');
    const until = Date.now() + timeoutMs;
    if (existsSync(killFile)) {
      writeFileSync(killFile, '1');
    } else if (existsSync(freeze)) {
      writeFileSync(freeze, '1');
      killPids(this.pids());
      writeFileSync(freeze, '0');
    }
    for (;;) {
      const pids = this.pids();
      if (pids.length === 0) return;
      killPids(pids);
      if (Date.now() > until) throw new Error(`cgroup ${this.rel}: processes ${pids.join(',')} survive SIGKILL`);
      await sleep(5);
    }
  }

  async destroy(): Promise<void> {
    if (!this.exists()) return;
    await this.killAll();
    await rmdirRetry(this.dir);
  }
}

class V2Driver implements CgroupDriver {
  readonly version = 2;
  constructor(readonly root: string) {}

  /** Creates each level and delegates the controllers we limit down to the leaf's parent. */
  create(rel: string, limits: CgroupLimits): Cgroup {
    const parts = rel.split('/');
    let dir = this.root;
    for (let i = 0; i < parts.length; i++) {
      const available = (readText(join(dir, 'cgroup.controllers')) ?? '').split(/\s+/);
      const want = ['memory', 'cpu', 'pids'].filter((c) => available.includes(c));
      if (want.length > 0) {
        try {
          writeFileSync(join(dir, 'cgroup.subtree_control'), want.map((c) => `+${c}`).join(' '));
        } catch {
          // The root of a delegated tree may refuse; the leaf then simply lacks that controller.
        }
      }
      dir = join(dir, parts[i]!);
      mkdirSync(dir, { recursive: true });
    }
    const g = new V2Group(this.root, rel);
    g.setLimits(limits);
    return g;
  }

  open(rel: string): Cgroup | undefined {
    const g = new V2Group(this.root, rel);
    return g.exists() ? g : undefined;
  }

  children(rel: string): string[] {
    const dir = join(this.root, rel);
    if (!isDir(dir)) return [];
    return readdirSync(dir).filter((n) => isDir(join(dir, n)));
  }

  removeIfEmpty(rel: string): void {
    removeUpward(this.root, rel);
  }
}

/**
 * v2 when the host runs the unified hierarchy (or a hybrid whose v2 mount has the controllers we
 * need), otherwise v1 with the memory, cpu, cpuacct, pids and freezer controllers.
 */
export function detectCgroups(root = '/sys/fs/cgroup'): CgroupDriver {
  const controllersOf = (dir: string): string[] => (readText(join(dir, 'cgroup.controllers')) ?? '').trim().split(/\s+/);
  const hasV2 = (dir: string): boolean => ['memory', 'cpu'].every((c) => controllersOf(dir).includes(c));
  if (hasV2(root)) return new V2Driver(root);
  if (V1_CONTROLLERS.every((c) => isDir(join(root, c)))) return new V1Driver(root);
  if (hasV2(join(root, 'unified'))) return new V2Driver(join(root, 'unified'));
  throw new Error(`no usable cgroup hierarchy under ${root}: need v2 with memory+cpu, or v1 ${V1_CONTROLLERS.join(', ')}`);
}

export function v1Driver(root: string): CgroupDriver {
  return new V1Driver(root);
}

export function v2Driver(root: string): CgroupDriver {
  return new V2Driver(root);
}
