// One instance on a worker: runs it through the runtime its virtualization names (process, container),
// keeps its lifecycle, restarts it with backoff when it is not one-shot, and tears everything down on
// close() (undeploy). Nothing here depends on which runtime it is.
import { EventEmitter } from 'node:events';
import { Lifecycle, type InstanceState, type Transition } from '../protocol/instance-states.ts';
import { instanceKey, type RunHandle } from './runtime/exit.ts';
import { runSpecOf, type InstanceRuntime, type Runtimes } from './runtime/types.ts';
import type { InstanceNetwork, Attachment } from './net-seam.ts';
import type { DeployOrder } from '../mqtt/messages.ts';
import type { Logger } from '../protocol/log.ts';

export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
  /** A run that lasted this long resets the backoff. */
  resetAfterMs: number;
}

/** How long an undeployed instance has to exit on SIGTERM (Oakestra waits up to 30 s). */
export const UNDEPLOY_GRACE_MS = 300;

export const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 1000, maxMs: 30_000, resetAfterMs: 10_000 };

/**
 * Progress (pull bytes) is reported at most this often: each report is an MQTT message to the cluster
 * and a line in `deploy --wait`. The local status always has the latest.
 */
export const PROGRESS_EVERY_MS = 1000;

interface InstanceEvents {
  transition: [Transition];
  /** A restart after a failure is scheduled this many ms from now (the backoff's current step). */
  restart: [delayMs: number];
}

export class Instance extends EventEmitter<InstanceEvents> {
  readonly key: string;
  readonly lifecycle: Lifecycle;
  attachment: Attachment = {};
  private current: RunHandle | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private restarts = 0;
  private backoffMs: number;
  private closing: Promise<void> | undefined;
  private starting: Promise<void> | undefined;
  private lastStart = 0;
  /** The latest progress of the current state (pull progress), newer than the last transition's reason. */
  private note: string | undefined;
  private lastProgressAt = 0;
  private progressTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly order: DeployOrder,
    private readonly runtimes: Runtimes,
    private readonly net: InstanceNetwork,
    private readonly log: Logger,
    private readonly backoff: BackoffPolicy = DEFAULT_BACKOFF,
    initial: { state: InstanceState; reason: string } = { state: 'NODE_SCHEDULED', reason: 'received by the worker' },
  ) {
    super();
    this.key = instanceKey(order.service_id, order.instance_n);
    this.lifecycle = new Lifecycle(initial.state, initial.reason);
    this.backoffMs = backoff.initialMs;
  }

  get state(): InstanceState {
    return this.lifecycle.state;
  }

  get pid(): number | undefined {
    return this.current?.pid;
  }

  /** Why the instance is in its state, or how far its preparation got. */
  get reason(): string {
    return this.note ?? this.lifecycle.last.reason;
  }

  get restartCount(): number {
    return this.restarts;
  }

  private move(to: InstanceState, reason: string): void {
    if (this.lifecycle.tryTo(to, reason)) {
      this.note = undefined;
      this.cancelProgress();
      this.log.info('instance state', { instance: this.key, state: to, reason });
      this.emit('transition', this.lifecycle.last);
    }
  }

  /** Prepares namespace, cgroup and network, then runs the command. Never throws: failures → FAILED. */
  async start(): Promise<void> {
    if (this.closing || this.starting) return;
    this.starting = this.startOnce();
    try {
      await this.starting;
    } finally {
      this.starting = undefined;
    }
  }

  private runtime(): InstanceRuntime {
    return this.runtimes.for(this.order.spec.virtualization);
  }

  private async startOnce(): Promise<void> {
    const spec = runSpecOf(this.order);
    this.move('CREATING', this.restarts === 0 ? 'creating namespace and cgroup' : `restart #${this.restarts}`);
    try {
      const runtime = this.runtime();
      const t0 = performance.now();
      const { netns } = await runtime.prepare(this.key, spec, (reason) => this.progress(reason));
      if (this.closing) return;
      const t1 = performance.now();
      let t2a = t1;
      let t2c = t1;
      // The network and the runtime's own creation (a container's task) need nothing of each other:
      // side by side. Both are awaited, so a close() that waits for this start finds neither running.
      const [attached, created] = await Promise.allSettled([
        this.net.attach({
          key: this.key, service_id: this.order.service_id, instance_n: this.order.instance_n, name: this.order.name,
          netns, instance_ip: this.order.instance_ip, instance_ip_v6: this.order.instance_ip_v6, port: this.order.spec.port,
        }).finally(() => (t2a = performance.now())),
        runtime.create?.(this.key, spec).finally(() => (t2c = performance.now())),
      ]);
      if (attached.status === 'rejected') throw attached.reason;
      if (created.status === 'rejected') throw created.reason;
      this.attachment = attached.value;
      if (this.closing) return;
      const t2 = performance.now();
      const handle = await runtime.start(this.key, spec);
      const t3 = performance.now();
      this.log.debug('instance start steps', { instance: this.key, prepare_ms: ms(t1 - t0), attach_ms: ms(t2a - t1), create_ms: ms(t2c - t1), start_ms: ms(t3 - t2) });
      this.watch(handle, `started, pid ${handle.pid}`);
    } catch (e) {
      if (this.closing) return;
      this.move('FAILED', `could not start: ${(e as Error).message}`);
      // A runtime marks what retrying cannot fix (no such image, refused credentials).
      if ((e as { permanent?: boolean }).permanent !== true) this.scheduleRestart();
    }
  }

  /**
   * Takes over processes that survived a daemon restart, and attaches the network again (the net
   * manager finds the instance's link and addresses in place); false if nothing of it runs any more.
   */
  async adopt(): Promise<boolean> {
    const runtime = this.runtimes.get(this.order.spec.virtualization);
    const handle = await runtime?.adopt(this.key, runSpecOf(this.order)).catch((e: Error) => {
      this.log.warn('could not re-adopt', { instance: this.key, error: e.message });
      return undefined;
    });
    if (!handle) return false;
    try {
      this.attachment = await this.net.attach({
        key: this.key, service_id: this.order.service_id, instance_n: this.order.instance_n, name: this.order.name,
        netns: this.runtimes.sandbox.netnsName(this.key), instance_ip: this.order.instance_ip, instance_ip_v6: this.order.instance_ip_v6,
        port: this.order.spec.port,
      });
    } catch (e) {
      this.log.warn('re-adopted instance has no network', { instance: this.key, error: (e as Error).message });
    }
    this.watch(handle, `re-adopted after a worker restart, pid ${handle.pid}`);
    return true;
  }

  /**
   * A step of a long preparation (an image pull): same state, a new reason, reported like a transition
   * but at most once per PROGRESS_EVERY_MS (the latest one is sent when the interval is over).
   */
  private progress(reason: string): void {
    if (this.closing || this.state !== 'CREATING' || reason === this.reason) return;
    this.note = reason;
    const wait = this.lastProgressAt + PROGRESS_EVERY_MS - Date.now();
    if (wait <= 0) this.reportProgress();
    else this.progressTimer ??= setTimeout(() => this.reportProgress(), wait);
  }

  private reportProgress(): void {
    this.progressTimer = undefined;
    if (this.closing || this.state !== 'CREATING' || this.note === undefined) return;
    this.lastProgressAt = Date.now();
    // Not a transition (the history keeps only state changes): reported with the same state.
    this.emit('transition', { state: this.state, ts: this.lastProgressAt, reason: this.note });
  }

  private cancelProgress(): void {
    if (this.progressTimer) clearTimeout(this.progressTimer);
    this.progressTimer = undefined;
  }

  private watch(handle: RunHandle, reason: string): void {
    this.current = handle;
    this.lastStart = Date.now();
    this.move('RUNNING', reason);
    void handle.exited.then((info) => {
      if (this.current !== handle) return;
      this.current = undefined;
      if (this.closing) return;
      if (this.order.spec.one_shot && info.code === 0 && !info.oomKilled) {
        this.move('COMPLETED', 'one-shot command exited with code 0');
        // The namespace and cgroup go now; logs stay readable until undeploy.
        void this.net.detach(this.key).then(() => this.runtimes.teardown(this.key)).catch((e: Error) =>
          this.log.warn('cleanup after completion failed', { instance: this.key, error: e.message }));
        return;
      }
      this.move('FAILED', info.reason);
      if (this.order.spec.one_shot) return;
      this.scheduleRestart();
    });
  }

  private scheduleRestart(): void {
    if (this.closing || this.order.spec.one_shot) return;
    if (Date.now() - this.lastStart >= this.backoff.resetAfterMs) this.backoffMs = this.backoff.initialMs;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoff.maxMs, this.backoffMs * 2);
    this.emit('restart', delay);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      this.restarts++;
      void this.start();
    }, delay);
  }

  logs(stream: 'stdout' | 'stderr', maxBytes?: number): string {
    return this.runtimes.sandbox.readLog(this.key, stream, maxBytes);
  }

  /**
   * Undeploys: stops every process (SIGTERM, SIGKILL after `graceMs`), removes the network, namespace,
   * cgroup and files.
   */
  close(reason = 'undeployed', graceMs = UNDEPLOY_GRACE_MS): Promise<void> {
    this.closing ??= (async () => {
      if (this.restartTimer) clearTimeout(this.restartTimer);
      this.cancelProgress();
      this.current = undefined;
      // A start in progress stops at its next step; whatever it created is removed below.
      await this.starting?.catch(() => {});
      this.current = undefined;
      await (this.runtimes.get(this.order.spec.virtualization) ?? this.runtimes.sandbox).kill(this.key, graceMs);
      await this.net.detach(this.key);
      await this.runtimes.remove(this.key);
      this.move('UNDEPLOYED', reason);
    })();
    return this.closing;
  }

  /** Stops watching without killing anything (daemon shutdown: the processes keep running). */
  detachFromDaemon(): void {
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.cancelProgress();
    this.current = undefined;
    this.closing ??= Promise.resolve();
  }
}

function ms(x: number): number {
  return Math.round(x * 10) / 10;
}
