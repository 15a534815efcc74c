// A lab's network namespaces: running commands in them (exec, spawn, node scripts), forwarding, and
// waiting for a listener. The lab (lab.ts) creates them and owns their processes.
import type { ChildProcess, StdioOptions } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { RunResult } from './iproute.ts';
import type { HostRecord } from './registry.ts';
import type { Lab } from './lab.ts';

/** Repository root: spawned TypeScript runs from here so that `--import tsx` resolves. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export interface SpawnOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Default ['ignore', 'pipe', 'pipe']. Piped output is also kept (last 64 KB) for outputOf(). */
  stdio?: StdioOptions;
}

export interface ExecOptions {
  input?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Killed (SIGKILL, whole process group) after this long; default 60 s. */
  timeoutMs?: number;
}

/** How much of a spawned process's piped output the lab keeps for outputOf(). */
export const OUTPUT_KEEP = 64 * 1024;

/** A network namespace of the lab: a host, or an extra one from lab.addNamespace(). */
export class Namespace {
  constructor(readonly lab: Lab, readonly name: string, readonly netns: string) {}

  /** Runs argv inside the namespace to completion. Never rejects for a non-zero exit. */
  async exec(argv: readonly string[], opts: ExecOptions = {}): Promise<RunResult> {
    const child = this.spawn(argv, { env: opts.env, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    child.stdin!.on('error', () => { /* the command may exit without reading its input */ });
    child.stdin!.end(opts.input ?? '');
    return new Promise((resolvePromise, reject) => {
      const timer = setTimeout(() => {
        try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* already gone */ }
      }, opts.timeoutMs ?? 60_000);
      child.on('error', (e) => { clearTimeout(timer); reject(e); });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        resolvePromise({ code, signal, stdout, stderr });
      });
    });
  }

  /** Like exec(), but throws (with stderr) unless the command exits 0; returns stdout. */
  async execOk(argv: readonly string[], opts: ExecOptions = {}): Promise<string> {
    const r = await this.exec(argv, opts);
    if (r.code !== 0) {
      throw new Error(`${argv.join(' ')} in ${this.netns} failed (${r.code ?? r.signal}): ${(r.stderr || r.stdout).trim()}`);
    }
    return r.stdout;
  }

  /** Starts argv inside the namespace in its own process group; killed at lab.destroy(). */
  spawn(argv: readonly string[], opts: SpawnOptions = {}): ChildProcess {
    return this.lab.spawnIn(this.netns, this.name, argv, opts);
  }

  /** Starts a TypeScript (or JS) file with `node --import tsx` inside the namespace. */
  spawnNode(script: string, args: readonly string[] = [], opts: SpawnOptions = {}): ChildProcess {
    return this.spawn([process.execPath, '--import', 'tsx', resolve(REPO_ROOT, script), ...args],
      { cwd: REPO_ROOT, ...opts });
  }

  /** Turns IPv4 and IPv6 forwarding on or off in the namespace. */
  async setForwarding(on: boolean): Promise<void> {
    const v = on ? '1' : '0';
    await this.execOk(['sysctl', '-q', '-w', `net.ipv4.ip_forward=${v}`, `net.ipv6.conf.all.forwarding=${v}`]);
  }

  /** Waits until something in the namespace listens on `port` (TCP by default). */
  async waitListening(port: number, opts: { proto?: 'tcp' | 'udp'; timeoutMs?: number } = {}): Promise<void> {
    const flag = opts.proto === 'udp' ? '-uln' : '-tln';
    const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
    for (;;) {
      const r = await this.exec(['ss', '-H', flag, `sport = :${port}`]);
      if (r.code === 0 && r.stdout.trim().length > 0) return;
      if (Date.now() > deadline) throw new Error(`nothing listens on ${opts.proto ?? 'tcp'} port ${port} in ${this.netns}`);
      await sleep(50);
    }
  }
}

/** An emulated host: a namespace with eth0 on the lab's switch. */
export class Host extends Namespace {
  readonly iface = 'eth0';
  constructor(lab: Lab, readonly rec: HostRecord, readonly index: number) {
    super(lab, rec.name, rec.netns);
  }
  /** Underlay IPv4 address, e.g. '198.18.0.1'. */
  get ip(): string { return this.rec.ip; }
  /** Underlay IPv6 address, e.g. '2001:2::1'; null when the lab has no IPv6. */
  get ip6(): string | null { return this.rec.ip6; }
  get mtu(): number { return this.rec.mtu; }
  /** True when the host reaches the switch through an impairment relay. */
  get relayed(): boolean { return this.rec.relayed; }
}
