// The `process` runtime: a descriptor's command in its own network namespace (plus mount, PID and UTS
// namespaces where the host allows), inside a cgroup that enforces `memory` and `vcpus`.
//
// A small shell wrapper writes its own pid into the cgroup before anything else runs, then enters the
// namespaces and runs the command; when the command ends it records the exit status in a file. The
// wrapper runs in its own session with its output going straight to files, so instances outlive a
// daemon restart and the next daemon can re-adopt them (watching the cgroup, reading the exit file).
import { spawn, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { openSync, closeSync, mkdirSync, readFileSync, readSync, rmSync, existsSync, statSync, writeFileSync, truncateSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { CgroupDriver, Cgroup } from './cgroup.ts';
import { tailWholeLines } from './log-tail.ts';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface ProcessSpec {
  cmd: string[];
  environment: string[];
  /** MB; 0 = unlimited. */
  memory: number;
  /** 0 = unlimited. */
  vcpus: number;
}

export interface ExitInfo {
  code: number | null;
  signal: string | null;
  /** The kernel OOM-killed something in the cgroup during this run. */
  oomKilled: boolean;
  /** Human sentence for the instance status. */
  reason: string;
}

export interface RunHandle {
  readonly pid: number;
  readonly exited: Promise<ExitInfo>;
}

export interface ProcessRuntimeOptions {
  workerId: string;
  cgroups: CgroupDriver;
  /** Per-instance directories (logs, exit files) live here. */
  stateDir: string;
  /** Bytes kept per log stream (current file plus one rotated copy of about the same size). */
  logBytes?: number;
  pidsMax?: number;
}

const WRAPPER = [
  'for f in $CANOPY_CGROUP_PROCS; do echo $$ > "$f" || exit 125; done',
  'unset CANOPY_CGROUP_PROCS',
  'exitfile=$CANOPY_EXIT_FILE; unset CANOPY_EXIT_FILE',
  'if [ -n "$CANOPY_UNSHARE" ]; then unset CANOPY_UNSHARE;',
  '  ip netns exec "$CANOPY_NETNS" unshare --mount --pid --uts --fork --kill-child --mount-proc -- "$@";',
  'else ip netns exec "$CANOPY_NETNS" "$@"; fi',
  'rc=$?',
  'echo $rc > "$exitfile"',
  'exit $rc',
].join('\n');

/** Names safe for netns and cgroup paths. */
export function instanceKey(serviceId: string, n: number): string {
  return `${serviceId.replace(/[^A-Za-z0-9_.-]/g, '_')}-${n}`;
}

let unshareWorks: boolean | undefined;

async function probeUnshare(): Promise<boolean> {
  if (unshareWorks === undefined) {
    try {
      await run('unshare', ['--mount', '--pid', '--uts', '--fork', '--kill-child', '--mount-proc', '--', 'true'], { timeout: 5000 });
      unshareWorks = true;
    } catch {
      unshareWorks = false;
    }
  }
  return unshareWorks;
}

function exitReason(code: number | null, signal: string | null, oom: boolean, memoryMb: number): string {
  if (oom) return `killed by the kernel: memory limit of ${memoryMb} MB exceeded (cgroup OOM kill)`;
  if (code === 125) return 'could not join its cgroup';
  if (code === 127) return 'command not found (exit 127)';
  if (signal) return `killed by ${signal}`;
  if (code !== null && code > 128) return `killed by signal ${code - 128} (exit ${code})`;
  return `exited with code ${code}`;
}

export class ProcessRuntime {
  readonly workerId: string;
  private readonly cgroups: CgroupDriver;
  private readonly stateDir: string;
  private readonly logBytes: number;
  private readonly pidsMax: number;
  private readonly rotator: NodeJS.Timeout;

  constructor(o: ProcessRuntimeOptions) {
    this.workerId = o.workerId;
    this.cgroups = o.cgroups;
    this.stateDir = o.stateDir;
    this.logBytes = o.logBytes ?? 1 << 20;
    this.pidsMax = o.pidsMax ?? 4096;
    mkdirSync(this.instancesDir, { recursive: true });
    this.rotator = setInterval(() => this.rotateLogs(), 1000);
    this.rotator.unref();
  }

  get instancesDir(): string {
    return join(this.stateDir, 'instances');
  }

  netnsName(key: string): string {
    return `canopy-${this.workerId}-${key}`;
  }

  cgroupRel(key: string): string {
    return `canopy/${this.workerId}/${key}`;
  }

  dir(key: string): string {
    return join(this.instancesDir, key);
  }

  /** Creates the namespace (loopback up) and the cgroup with its limits. Idempotent. */
  async prepare(key: string, spec: ProcessSpec): Promise<{ netns: string; cgroup: Cgroup }> {
    mkdirSync(this.dir(key), { recursive: true });
    const netns = this.netnsName(key);
    if (!existsSync(`/run/netns/${netns}`)) await run('ip', ['netns', 'add', netns]);
    await run('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
    const cgroup = this.cgroups.create(this.cgroupRel(key), {
      memoryBytes: spec.memory > 0 ? spec.memory * 1024 * 1024 : 0,
      vcpus: spec.vcpus,
      pidsMax: this.pidsMax,
    });
    return { netns, cgroup };
  }

  /** Starts the command; the namespace and cgroup must exist (prepare). */
  async start(key: string, spec: ProcessSpec): Promise<RunHandle> {
    const cgroup = this.cgroups.open(this.cgroupRel(key));
    if (!cgroup) throw new Error(`cgroup for ${key} is missing`);
    if (spec.cmd.length === 0) throw new Error('empty command');
    const dir = this.dir(key);
    const exitFile = join(dir, 'exit');
    rmSync(exitFile, { force: true });
    const oomBefore = cgroup.oomKills();
    // Instances see the worker daemon's PATH, so the commands an operator installed are found.
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      HOME: process.env.HOME ?? '/root',
    };
    for (const kv of spec.environment) {
      const i = kv.indexOf('=');
      if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
    }
    env.CANOPY_CGROUP_PROCS = cgroup.procsFiles.join(' ');
    env.CANOPY_EXIT_FILE = exitFile;
    env.CANOPY_NETNS = this.netnsName(key);
    if (await probeUnshare()) env.CANOPY_UNSHARE = '1';
    const out = openSync(join(dir, 'stdout.log'), 'a');
    const err = openSync(join(dir, 'stderr.log'), 'a');
    let child;
    try {
      child = spawn('/bin/sh', ['-c', WRAPPER, 'canopy-wrap', ...spec.cmd], {
        env, stdio: ['ignore', out, err], detached: true,
      });
    } finally {
      closeSync(out);
      closeSync(err);
    }
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('spawn', () => resolve(child.pid!));
      child.once('error', reject);
    });
    let gone = false;
    const exited = new Promise<ExitInfo>((resolve) => {
      child.once('exit', (code, signal) => {
        gone = true;
        const oom = cgroup.oomKills() > oomBefore;
        resolve({ code, signal, oomKilled: oom, reason: exitReason(code, signal, oom, spec.memory) });
      });
    });
    // RUNNING means "in its cgroup": wait for the wrapper to have joined it.
    for (let i = 0; i < 400 && !gone && !cgroup.pids().includes(pid); i++) await sleep(5);
    return { pid, exited };
  }

  /**
   * Re-adopts an instance whose processes survived a daemon restart: its end is noticed by polling
   * the cgroup, and its status read from the exit file. Undefined if nothing of it is running.
   */
  adopt(key: string, spec: ProcessSpec, pollMs = 250): RunHandle | undefined {
    const cgroup = this.cgroups.open(this.cgroupRel(key));
    const pids = cgroup?.pids() ?? [];
    if (!cgroup || pids.length === 0) return undefined;
    const exitFile = join(this.dir(key), 'exit');
    const oomBefore = cgroup.oomKills();
    const exited = (async (): Promise<ExitInfo> => {
      while (cgroup.exists() && cgroup.pids().length > 0) await sleep(pollMs);
      const text = existsSync(exitFile) ? readFileSync(exitFile, 'utf8').trim() : '';
      const code = text === '' ? null : Number(text);
      const oom = cgroup.exists() && cgroup.oomKills() > oomBefore;
      const reason = code === null && !oom ? 'ended while the worker was restarting (no exit status)' : exitReason(code, null, oom, spec.memory);
      return { code, signal: null, oomKilled: oom, reason };
    })();
    return { pid: Math.min(...pids), exited };
  }

  cgroup(key: string): Cgroup | undefined {
    return this.cgroups.open(this.cgroupRel(key));
  }

  /** Stops every process of the instance (cgroup-wide; SIGTERM, then SIGKILL after `graceMs`). */
  async kill(key: string, graceMs = 0): Promise<void> {
    await this.cgroup(key)?.killAll(graceMs);
  }

  /** Kills and removes everything of the instance except its directory (logs). */
  async teardown(key: string): Promise<void> {
    await this.cgroup(key)?.destroy();
    const netns = this.netnsName(key);
    if (existsSync(`/run/netns/${netns}`)) {
      try {
        await run('ip', ['netns', 'del', netns]);
      } catch (e) {
        if (existsSync(`/run/netns/${netns}`)) throw e;
      }
    }
  }

  /** teardown(), and the instance's directory too. */
  async remove(key: string): Promise<void> {
    await this.teardown(key);
    rmSync(this.dir(key), { recursive: true, force: true });
  }

  /** Keys that have a cgroup, a namespace or a directory on this host for this worker. */
  async leftovers(): Promise<string[]> {
    const keys = new Set<string>(this.cgroups.children(`canopy/${this.workerId}`));
    const prefix = `canopy-${this.workerId}-`;
    if (existsSync('/run/netns')) for (const n of readdirSync('/run/netns')) if (n.startsWith(prefix)) keys.add(n.slice(prefix.length));
    if (existsSync(this.instancesDir)) for (const d of readdirSync(this.instancesDir)) keys.add(d);
    return [...keys];
  }

  /** The tail of an instance's stdout or stderr (rotated part first), at most `maxBytes`. */
  readLog(key: string, stream: 'stdout' | 'stderr', maxBytes = 64 * 1024): string {
    const base = join(this.dir(key), `${stream}.log`);
    const parts: Buffer[] = [];
    for (const f of [`${base}.1`, base]) {
      try {
        parts.push(readFileSync(f));
      } catch {
        // not written yet
      }
    }
    return tailWholeLines(Buffer.concat(parts), maxBytes);
  }

  /**
   * Copy-truncate: the writer holds the file with O_APPEND, so truncation is safe. Only the newest
   * half of the budget is kept in the rotated copy, so a stream never holds much more than the budget.
   */
  private rotateLogs(): void {
    let keys: string[];
    try {
      keys = readdirSync(this.instancesDir);
    } catch {
      return;
    }
    const keep = Math.floor(this.logBytes / 2);
    for (const key of keys) {
      for (const stream of ['stdout', 'stderr']) {
        const f = join(this.instancesDir, key, `${stream}.log`);
        try {
          const size = statSync(f).size;
          if (size <= keep) continue;
          const fd = openSync(f, 'r');
          const tail = Buffer.alloc(keep);
          try {
            readSync(fd, tail, 0, keep, size - keep);
          } finally {
            closeSync(fd);
          }
          writeFileSync(`${f}.1`, tail);
          truncateSync(f, 0);
        } catch {
          // gone meanwhile
        }
      }
    }
  }

  /** Runs one rotation now (tests; the daemon rotates every second on its own). */
  rotateNow(): void {
    this.rotateLogs();
  }

  /** Parent cgroups (canopy/<worker>, and canopy when no other worker has groups) go when empty. */
  close(): void {
    clearInterval(this.rotator);
    this.cgroups.removeIfEmpty(`canopy/${this.workerId}`);
  }
}
