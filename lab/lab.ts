// The emulated-host lab: hosts as network namespaces joined to a switch (a bridge in its own
// namespace) on the underlay 198.18.0.0/15. Unimpaired hosts hang on plain veth pairs; impaired ones
// through an impairment relay (lab/impair-relay.ts) that emulates netem in userspace.
//
// Everything the lab makes is named with a per-run prefix and listed in a registry file before it is
// made, so destroy(), the exit handlers and the sweeper can always remove it.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { ipBatch, listNetnsSync, type RunResult } from './iproute.ts';
import {
  checkHostName, hostAddress, hostNetns, newPrefix, relayHostTap, switchNetns, switchPort,
} from './names.ts';
import { procRef, signalRef } from '../orchestrator/proc.ts';
import {
  type HostRecord, type LabRecord, type ProcRecord, claimRecord, labDir, readRecord, registryPath, removeRecord, writeRecord,
} from './registry.ts';
import { teardownSync } from './teardown.ts';
import {
  type Impairment, type LinkSpec, type RelayConfig, checkDirection, checkImpairment, isPair, linkLabel, pickImpairment,
  planRelays,
} from './impair/rules.ts';
import type { RelayStats } from './impair/stats.ts';

import { Host, Namespace, OUTPUT_KEEP, REPO_ROOT, type SpawnOptions } from './namespace.ts';

export type { Impairment, LinkSpec, RunResult, RelayStats };
export { Host, Namespace, REPO_ROOT, type ExecOptions, type SpawnOptions } from './namespace.ts';

const here = dirname(fileURLToPath(import.meta.url));
const RELAY_SCRIPT = join(here, 'impair-relay.ts');

export interface HostSpec {
  name: string;
  /** MTU of the host's underlay link (default 1500). */
  mtu?: number;
  /** Enable IPv4 and IPv6 forwarding in the host (default false). */
  forwarding?: boolean;
}

export interface LabSpec {
  /** Host names or specs; host i (0-based) gets 198.18.0.<i+1>/24 (and 2001:2::<i+1>/64 with ipv6). */
  hosts: (string | HostSpec)[];
  /** Give hosts IPv6 addresses too (default true). */
  ipv6?: boolean;
  /** Impairments: `{host, …}` for a host's link, `{a, b, …}` for the path between two hosts. */
  links?: LinkSpec[];
  /** Default MTU for hosts that do not set one. */
  mtu?: number;
  /** Outlive this process (`canopy lab up`); swept only with --all. Default false. */
  persistent?: boolean;
}

interface Tracked {
  child: ChildProcess;
  ref: ProcRecord;
  output: string;
}

// Labs of this process that exit handlers must remove if destroy() never runs.
const live = new Set<Lab>();
let handlersInstalled = false;

function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', () => {
    for (const lab of live) lab.destroySync();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      for (const lab of live) lab.destroySync();
      process.removeListener(sig, onSignal);
      // Nobody else handles it: die of the signal as the default action would.
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

export class Lab {
  readonly prefix: string;
  readonly switchNetns: string;
  private readonly rec: LabRecord;
  private readonly byName = new Map<string, Host>();
  private readonly extra = new Map<string, Namespace>();
  private readonly tracked = new Map<number, Tracked>();
  private readonly relayConfigs: Map<string, RelayConfig>;
  private destroyed = false;

  private constructor(rec: LabRecord, relayConfigs: Map<string, RelayConfig>) {
    this.rec = rec;
    this.prefix = rec.prefix;
    this.switchNetns = switchNetns(rec.prefix);
    this.relayConfigs = relayConfigs;
    rec.hosts.forEach((h, i) => this.byName.set(h.name, new Host(this, h, i)));
  }

  /** Builds the topology; on any failure removes what it made and rethrows. */
  static async create(spec: LabSpec): Promise<Lab> {
    if (process.getuid?.() !== 0) throw new Error('lab: needs root (network namespaces)');
    const ipv6 = spec.ipv6 ?? true;
    const hostSpecs = spec.hosts.map((h): HostSpec => (typeof h === 'string' ? { name: h } : h));
    if (hostSpecs.length === 0) throw new Error('lab: give at least one host');
    const names = new Set<string>();
    for (const h of hostSpecs) {
      checkHostName(h.name);
      if (names.has(h.name)) throw new Error(`lab: host ${h.name} given twice`);
      names.add(h.name);
      const mtu = h.mtu ?? spec.mtu ?? 1500;
      if (!Number.isInteger(mtu) || mtu < 1280 || mtu > 65_000) throw new Error(`lab: host ${h.name}: mtu ${mtu} must be 1280–65000`);
    }
    const links = spec.links ?? [];
    for (const l of links) {
      const where = isPair(l) ? `link ${l.a}–${l.b}` : `link of ${l.host}`;
      for (const h of isPair(l) ? [l.a, l.b] : [l.host]) {
        if (!names.has(h)) throw new Error(`lab: ${where}: no host named ${JSON.stringify(h)}`);
      }
      checkImpairment(pickImpairment(l), where);
      checkDirection(l.direction, where);
    }

    const existing = new Set(listNetnsSync());
    const taken = (p: string): boolean => existsSync(registryPath(p)) || [...existing].some((n) => n.startsWith(p));
    const draft = (prefix: string): LabRecord => {
      const hosts: HostRecord[] = hostSpecs.map((h, i) => {
        const a = hostAddress(i);
        return { name: h.name, netns: hostNetns(prefix, h.name), ip: a.ip, ip6: ipv6 ? a.ip6 : null,
          mtu: h.mtu ?? spec.mtu ?? 1500, relayed: false };
      });
      return {
        version: 1, prefix, owner: procRef(process.pid), persistent: spec.persistent ?? false,
        created: new Date().toISOString(),
        namespaces: [switchNetns(prefix), ...hosts.map((h) => h.netns)],
        hosts,
        links: links.map((l) => ({ what: linkLabel(l), impairment: pickImpairment(l) })),
        procs: [],
      };
    };
    // Validates the links against the hosts before anything is claimed.
    const plan = planRelays(links, (n) => {
      const i = hostSpecs.findIndex((h) => h.name === n);
      const a = hostAddress(i);
      return ipv6 ? [a.ip, a.ip6] : [a.ip];
    });
    // Registry before anything exists: a crash from here on leaves nothing the sweeper cannot find.
    let rec: LabRecord;
    for (let tries = 0; ; tries++) {
      rec = draft(newPrefix(taken));
      for (const h of rec.hosts) h.relayed = plan.has(h.name);
      if (claimRecord(rec)) break;
      if (tries > 16) throw new Error('lab: could not claim a registry prefix');
    }
    mkdirSync(labDir(rec.prefix), { recursive: true });
    const lab = new Lab(rec, plan);
    if (!rec.persistent) {
      live.add(lab);
      installExitHandlers();
    }
    try {
      await lab.build(hostSpecs);
    } catch (e) {
      const logs = lab.relayLogs();
      lab.destroySync();
      if (logs && e instanceof Error) e.message += `\nrelay logs:\n${logs}`;
      throw e;
    }
    return lab;
  }

  private async build(specs: HostSpec[]): Promise<void> {
    const sw = this.switchNetns;
    const hosts = [...this.byName.values()];
    await ipBatch([
      ...this.rec.namespaces.map((ns) => `netns add ${ns}`),
      ...hosts.filter((h) => !h.relayed).map((h) =>
        `link add eth0 netns ${h.netns} type veth peer name ${switchPort(h.index)} netns ${sw}`),
    ]);
    await Promise.all(hosts.filter((h) => h.relayed).map((h) => this.startRelay(h)));

    await ipBatch([
      'link set lo up',
      ...hosts.filter((h) => h.relayed).map((h) => `link set ${relayHostTap(h.index)} netns ${h.netns}`),
      // STP off and no multicast snooping: ports forward at once, NDP multicast is always flooded.
      'link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0',
      ...hosts.map((h) => `link set ${switchPort(h.index)} mtu ${h.mtu} master br0 up`),
      'link set br0 up',
    ], sw);
    await Promise.all(hosts.map((h) => ipBatch([
      'link set lo up',
      ...(h.relayed ? [`link set ${relayHostTap(h.index)} name eth0`] : []),
      `link set eth0 mtu ${h.mtu} up`,
      `addr add ${h.ip}/24 dev eth0`,
      ...(h.ip6 ? [`addr add ${h.ip6}/64 dev eth0 nodad`] : []),
    ], h.netns)));
    for (const s of specs) {
      if (s.forwarding) await this.host(s.name).setForwarding(true);
    }
  }

  private async startRelay(h: Host): Promise<void> {
    const cfg = this.relayConfigs.get(h.name)!;
    const dir = labDir(this.prefix);
    const stats = join(dir, `relay-${h.name}.json`);
    const log = join(dir, `relay-${h.name}.log`);
    const logFd = openSync(log, 'a');
    const argv = [
      'ip', 'netns', 'exec', this.switchNetns,
      // The relay stands in for wire and switch: it should not queue behind the machine's other work.
      'nice', '-n', '-10',
      process.execPath, '--import', 'tsx', RELAY_SCRIPT,
      '--name', h.name, '--host-tap', relayHostTap(h.index), '--switch-tap', switchPort(h.index),
      '--mtu', String(h.mtu), '--stats', stats, '--config', JSON.stringify(cfg),
      // A test lab's relay also dies with its owner (its stdin closes); a persistent one must not.
      ...(this.rec.persistent ? [] : ['--exit-on-stdin-eof']),
    ];
    let child: ChildProcess;
    try {
      child = spawn(argv[0]!, argv.slice(1), {
        cwd: REPO_ROOT, detached: true, stdio: [this.rec.persistent ? 'ignore' : 'pipe', logFd, logFd],
      });
    } finally {
      closeSync(logFd);
    }
    const ref: ProcRecord = { ...procRef(child.pid ?? -1), role: 'relay', where: h.name, stats };
    this.track(child, ref);
    // Relays never keep the owner alive: a test that forgets destroy() still exits, and its exit
    // handler removes the lab.
    child.unref();
    (child.stdin as Socket | null)?.unref();
    // Ready when the relay has opened both TAPs and written its first counters.
    const deadline = Date.now() + 15_000;
    while (!existsSync(stats)) {
      if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
        const tail = readFileSync(log, 'utf8').slice(-2000);
        throw new Error(`lab: relay for ${h.name} did not start (${child.exitCode ?? child.signalCode ?? 'timeout'}): ${tail}`);
      }
      await sleep(20);
    }
  }

  /** The tail of every relay's log (for error messages). */
  relayLogs(): string {
    return this.hosts.filter((h) => h.relayed).map((h) => {
      try {
        return readFileSync(join(labDir(this.prefix), `relay-${h.name}.log`), 'utf8').slice(-1500);
      } catch {
        return '';
      }
    }).join('');
  }

  /** @internal spawn in a namespace, tracked in the registry and killed at destroy. */
  spawnIn(netns: string, where: string, argv: readonly string[], opts: SpawnOptions): ChildProcess {
    if (this.destroyed) throw new Error(`lab ${this.prefix} is destroyed`);
    if (argv.length === 0) throw new Error('lab: spawn needs a command');
    const child = spawn('ip', ['netns', 'exec', netns, ...argv], {
      cwd: opts.cwd, env: opts.env, detached: true, stdio: opts.stdio ?? ['ignore', 'pipe', 'pipe'],
    });
    this.track(child, { ...procRef(child.pid ?? -1), role: 'child', where });
    return child;
  }

  private track(child: ChildProcess, ref: ProcRecord): void {
    if (child.pid === undefined) return; // spawn failed; 'error' is emitted on the child
    const t: Tracked = { child, ref, output: '' };
    const keep = (d: Buffer): void => {
      t.output = (t.output + d.toString('utf8')).slice(-OUTPUT_KEEP);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.tracked.set(child.pid, t);
    this.rec.procs.push(ref);
    this.save();
    child.on('exit', () => {
      this.tracked.delete(child.pid!);
      if (ref.role === 'child') {
        const i = this.rec.procs.indexOf(ref);
        if (i >= 0) this.rec.procs.splice(i, 1);
        this.save();
      }
    });
  }

  private save(): void {
    if (!this.destroyed) writeRecord(this.rec);
  }

  /** Last 64 KB of what a spawned process wrote to its piped stdout/stderr (for failure messages). */
  outputOf(child: ChildProcess): string {
    return child.pid === undefined ? '' : this.tracked.get(child.pid)?.output ?? '';
  }

  get hosts(): Host[] {
    return [...this.byName.values()];
  }

  host(name: string): Host {
    const h = this.byName.get(name);
    if (!h) throw new Error(`lab ${this.prefix}: no host ${JSON.stringify(name)} (have ${[...this.byName.keys()].join(', ')})`);
    return h;
  }

  get persistent(): boolean {
    return this.rec.persistent;
  }

  /** A copy of the registry record. */
  get record(): LabRecord {
    return structuredClone(this.rec);
  }

  /** A further namespace (loopback up, no links), removed with the lab. Named `<prefix>-<name>`. */
  async addNamespace(name: string): Promise<Namespace> {
    checkHostName(name);
    if (this.byName.has(name) || this.extra.has(name)) throw new Error(`lab ${this.prefix}: ${name} already exists`);
    const netns = hostNetns(this.prefix, name);
    this.rec.namespaces.push(netns);
    this.save();
    await ipBatch([`netns add ${netns}`]);
    await ipBatch(['link set lo up'], netns);
    const ns = new Namespace(this, name, netns);
    this.extra.set(name, ns);
    return ns;
  }

  namespace(name: string): Namespace {
    const ns = this.extra.get(name) ?? this.byName.get(name);
    if (!ns) throw new Error(`lab ${this.prefix}: no namespace ${JSON.stringify(name)}`);
    return ns;
  }

  /** Current counters of a relayed host's relay (asks it with SIGUSR1). */
  async relayStats(host: string): Promise<RelayStats> {
    const ref = this.rec.procs.find((p) => p.role === 'relay' && p.where === host);
    if (!ref?.stats) throw new Error(`lab ${this.prefix}: host ${host} has no relay`);
    return requestRelayStats(ref);
  }

  /** Kills every process, removes every namespace and the registry. Idempotent. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    const children = [...this.tracked.values()];
    for (const t of children) signalRef(t.ref, 'SIGTERM');
    const exited = Promise.all(children.map((t) => new Promise<void>((res) => {
      if (t.child.exitCode !== null || t.child.signalCode !== null) res();
      else t.child.once('exit', () => res());
    })));
    await Promise.race([exited, sleep(1000)]);
    this.destroySync();
    // A leak should fail the test that caused it, not surface in some later run.
    const present = new Set(listNetnsSync());
    const left = this.rec.namespaces.filter((n) => present.has(n));
    if (left.length > 0) throw new Error(`lab ${this.prefix}: could not remove namespaces ${left.join(', ')}`);
  }

  /** @internal synchronous removal, also used by the exit handlers. */
  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    live.delete(this);
    teardownSync(this.rec);
  }
}

/** Reads a relay's counters after asking it for fresh ones (SIGUSR1); falls back to the last written. */
export async function requestRelayStats(ref: ProcRecord): Promise<RelayStats> {
  const path = ref.stats!;
  const before = readStats(path)?.seq ?? -1;
  if (signalRef(ref, 'SIGUSR1')) {
    const deadline = Date.now() + 2000;
    while (Date.now() < deadline) {
      const s = readStats(path);
      if (s && s.seq > before) return s;
      await sleep(10);
    }
  }
  const s = readStats(path);
  if (!s) throw new Error(`relay counters unreadable: ${path}`);
  return s;
}

function readStats(path: string): RelayStats | null {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as RelayStats;
  } catch {
    return null;
  }
}

/** Runs fn with a fresh lab and always destroys it. */
export async function withLab<T>(spec: LabSpec, fn: (lab: Lab) => Promise<T>): Promise<T> {
  const lab = await Lab.create(spec);
  try {
    return await fn(lab);
  } finally {
    await lab.destroy();
  }
}

/** For node:test: creates a lab and registers its destroy() in t.after (or `after` of a suite). */
export async function labFor(t: { after: (fn: () => Promise<void>) => void }, spec: LabSpec): Promise<Lab> {
  const lab = await Lab.create(spec);
  t.after(() => lab.destroy());
  return lab;
}

/** Why lab tests cannot run here (not root, no TUN/TAP), or null. Use as `{ skip: labSkipReason() }`. */
export function labSkipReason(): string | null {
  if (process.getuid?.() !== 0) return 'lab tests need root';
  if (!existsSync('/dev/net/tun')) return 'lab tests need /dev/net/tun';
  return null;
}

/** Removes a lab (e.g. a persistent one) by its prefix from another process. */
export function destroyByPrefix(prefix: string): boolean {
  const rec = readRecord(prefix);
  if (!rec) {
    removeRecord(prefix);
    return false;
  }
  teardownSync(rec);
  return true;
}
