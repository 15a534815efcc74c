// The one interface the node engine and its instances see: a runtime prepares, starts, re-adopts,
// stops and removes an instance by key; which runtime it is (process, container) is chosen from the
// order's virtualization and known to nothing else.
import type { DeployOrder } from '../../mqtt/messages.ts';
import type { RunHandle } from './exit.ts';
import type { Sandbox } from './sandbox.ts';

export interface RunSpec {
  /** Image reference (container only). */
  image?: string;
  /** The descriptor's cmd (for a process: the whole command line; for a container: the entrypoint). */
  cmd: string[];
  args: string[];
  environment: string[];
  /** MB; 0 = unlimited. */
  memory: number;
  /** 0 = unlimited. */
  vcpus: number;
}

export function runSpecOf(order: DeployOrder): RunSpec {
  return {
    ...(order.spec.code ? { image: order.spec.code } : {}),
    cmd: order.spec.cmd,
    args: order.spec.args ?? [],
    environment: order.spec.environment ?? [],
    memory: order.spec.memory,
    vcpus: order.spec.vcpus,
  };
}

/** Told while an instance is being prepared (e.g. an image pull), for its status. */
export type ProgressReport = (reason: string) => void;

export interface InstanceRuntime {
  readonly kind: string;
  readonly sandbox: Sandbox;
  /** Creates everything the instance needs before its network is attached; returns its namespace name. */
  prepare(key: string, spec: RunSpec, progress?: ProgressReport): Promise<{ netns: string }>;
  /**
   * Optional: what start() does that needs no network (a container's task, created and not started),
   * done while the network is attached. prepare() came first.
   */
  create?(key: string, spec: RunSpec): Promise<void>;
  /** Starts the instance's main process; prepare() (and create(), if any) came first and the network is attached. */
  start(key: string, spec: RunSpec): Promise<RunHandle>;
  /** Takes over an instance that survived a daemon restart; undefined if nothing of it runs. */
  adopt(key: string, spec: RunSpec): Promise<RunHandle | undefined>;
  /** Stops every process of the instance (SIGTERM, SIGKILL after `graceMs`). */
  kill(key: string, graceMs: number): Promise<void>;
  /** Removes what this runtime holds of the instance beyond the sandbox (idempotent; unknown keys are fine). */
  teardown(key: string): Promise<void>;
  /** Keys of instances this runtime holds something of on the host. */
  leftovers(): Promise<string[]>;
  close(): Promise<void>;
  /** Whether the runtime can run instances now (its engine answers); absent means always. The worker
   *  advertises a virtualization in its heartbeats only while this is true. */
  available?(): boolean;
}

/** The runtimes of one worker, by virtualization, around one shared sandbox. */
export class Runtimes {
  private readonly byKind = new Map<string, InstanceRuntime>();

  constructor(readonly sandbox: Sandbox, runtimes: InstanceRuntime[]) {
    for (const r of runtimes) this.byKind.set(r.kind, r);
  }

  add(r: InstanceRuntime): void {
    this.byKind.set(r.kind, r);
  }

  delete(kind: string): void {
    this.byKind.delete(kind);
  }

  get kinds(): string[] {
    return [...this.byKind.keys()];
  }

  for(virtualization: string): InstanceRuntime {
    const r = this.byKind.get(virtualization);
    if (!r) throw new Error(`virtualization ${virtualization} is not supported by this worker`);
    return r;
  }

  get(virtualization: string): InstanceRuntime | undefined {
    return this.byKind.get(virtualization);
  }

  /** Everything of `key` but its directory (logs): what each runtime holds, then the sandbox. */
  async teardown(key: string): Promise<void> {
    for (const r of this.byKind.values()) await r.teardown(key);
    await this.sandbox.teardown(key);
  }

  /** teardown(), and the instance's directory too. */
  async remove(key: string): Promise<void> {
    await this.teardown(key);
    this.sandbox.removeDir(key);
  }

  async leftovers(): Promise<string[]> {
    const keys = new Set(this.sandbox.leftovers());
    for (const r of this.byKind.values()) for (const k of await r.leftovers()) keys.add(k);
    return [...keys];
  }

  async close(): Promise<void> {
    for (const r of this.byKind.values()) await r.close();
    this.sandbox.close();
  }
}
