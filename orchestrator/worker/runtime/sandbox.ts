// What every runtime's instance has on the host, whatever runs inside: a network namespace (named so
// the net manager finds it), a cgroup enforcing `memory` and `vcpus`, and a directory for its record,
// logs and exit status. Process and container runtimes share one Sandbox, so namespaces, cgroups,
// logs and leftovers are handled in one place.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdirSync, rmSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CgroupDriver, Cgroup } from '../cgroup.ts';
import { readLog, rotateLogs, type LogStream } from './logs.ts';

const run = promisify(execFile);

export interface SandboxOptions {
  workerId: string;
  cgroups: CgroupDriver;
  /** Per-instance directories (logs, exit files) live here. */
  stateDir: string;
  /** Bytes kept per log stream (current file plus one rotated copy of about the same size). */
  logBytes?: number;
  pidsMax?: number;
}

export interface Limits {
  /** MB; 0 = unlimited. */
  memory: number;
  /** 0 = unlimited. */
  vcpus: number;
}

export class Sandbox {
  readonly workerId: string;
  readonly cgroups: CgroupDriver;
  readonly pidsMax: number;
  private readonly stateDir: string;
  private readonly logBytes: number;
  private readonly rotator: NodeJS.Timeout;

  constructor(o: SandboxOptions) {
    this.workerId = o.workerId;
    this.cgroups = o.cgroups;
    this.stateDir = o.stateDir;
    this.logBytes = o.logBytes ?? 1 << 20;
    this.pidsMax = o.pidsMax ?? 4096;
    mkdirSync(this.instancesDir, { recursive: true });
    this.rotator = setInterval(() => this.rotateNow(), 1000);
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

  exitFile(key: string): string {
    return join(this.dir(key), 'exit');
  }

  /** The exit code a runtime recorded for the instance's last run, if it ended. */
  recordedExit(key: string): string | undefined {
    const f = this.exitFile(key);
    return existsSync(f) ? readFileSync(f, 'utf8').trim() : undefined;
  }

  /** Creates the directory, the namespace (loopback up) and the cgroup with its limits. Idempotent. */
  async prepare(key: string, limits: Limits): Promise<{ netns: string; cgroup: Cgroup }> {
    mkdirSync(this.dir(key), { recursive: true });
    const netns = this.netnsName(key);
    if (!existsSync(`/run/netns/${netns}`)) await run('ip', ['netns', 'add', netns]);
    await run('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
    const cgroup = this.cgroups.create(this.cgroupRel(key), {
      memoryBytes: limits.memory > 0 ? limits.memory * 1024 * 1024 : 0,
      vcpus: limits.vcpus,
      pidsMax: this.pidsMax,
    });
    return { netns, cgroup };
  }

  cgroup(key: string): Cgroup | undefined {
    return this.cgroups.open(this.cgroupRel(key));
  }

  /** Stops every process of the instance (cgroup-wide; SIGTERM, then SIGKILL after `graceMs`). */
  async kill(key: string, graceMs = 0): Promise<void> {
    await this.cgroup(key)?.killAll(graceMs);
  }

  /** Kills and removes the cgroup and the namespace; the directory (logs) stays. */
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

  removeDir(key: string): void {
    rmSync(this.dir(key), { recursive: true, force: true });
  }

  /** Keys that have a cgroup, a namespace or a directory on this host for this worker. */
  leftovers(): string[] {
    const keys = new Set<string>(this.cgroups.children(`canopy/${this.workerId}`));
    const prefix = `canopy-${this.workerId}-`;
    if (existsSync('/run/netns')) for (const n of readdirSync('/run/netns')) if (n.startsWith(prefix)) keys.add(n.slice(prefix.length));
    if (existsSync(this.instancesDir)) for (const d of readdirSync(this.instancesDir)) keys.add(d);
    return [...keys];
  }

  readLog(key: string, stream: LogStream, maxBytes?: number): string {
    return readLog(this.dir(key), stream, maxBytes);
  }

  /** Runs one rotation now (tests; the daemon rotates every second on its own). */
  rotateNow(): void {
    rotateLogs(this.instancesDir, this.logBytes);
  }

  /** Parent cgroups (canopy/<worker>, and canopy when no other worker has groups) go when empty. */
  close(): void {
    clearInterval(this.rotator);
    this.cgroups.removeIfEmpty(`canopy/${this.workerId}`);
  }
}
