// The cluster's one instance index, shared by its managers (as Nebula's managers share one host map):
// the instances by id, which worker holds which, what each worker last listed in its heartbeat, and
// the lifecycle transition every state change goes through. It does no I/O: what a transition sets
// off (a report to root, a route push, saving state) is done by the listeners the cluster registers.
import { isOnWorker, type InstanceState, type Transition } from '../protocol/instance-states.ts';
import type { PendingNeed } from './worker-registry.ts';
import { instanceId, needOf, type ClusterInstance } from './placements.ts';

export type TransitionListener = (ci: ClusterInstance, t: Transition, from: InstanceState) => void;
/** A step within the current state (an image pull's bytes): a new reason, no transition. */
export type ProgressListener = (ci: ClusterInstance, t: Transition) => void;

export class InstanceIndex {
  readonly instances = new Map<string, ClusterInstance>();
  private readonly byWorker = new Map<string, Set<string>>();
  /** What each worker listed in its last heartbeat. */
  private readonly inventory = new Map<string, Set<string>>();
  private readonly listeners: TransitionListener[] = [];
  private readonly progressListeners: ProgressListener[] = [];

  /** Called after every transition, in the order registered. */
  onTransition(l: TransitionListener): void {
    this.listeners.push(l);
  }

  onProgress(l: ProgressListener): void {
    this.progressListeners.push(l);
  }

  /** Moves an instance through the lifecycle table; false (and nothing happens) if it forbids the move. */
  transition(ci: ClusterInstance, to: InstanceState, reason: string, ts = Date.now()): boolean {
    const from = ci.lifecycle.state;
    if (!ci.lifecycle.tryTo(to, reason, ts)) return false;
    ci.note = undefined;
    const t = ci.lifecycle.last;
    for (const l of this.listeners) l(ci, t, from);
    return true;
  }

  /**
   * A worker's news within the instance's current state (pull progress): kept as its reason and
   * passed on, but not a transition, so the history does not grow with every tick. False when the
   * state is not the instance's or nothing is new.
   */
  progress(ci: ClusterInstance, state: InstanceState, reason: string, ts = Date.now()): boolean {
    if (state !== ci.lifecycle.state || reason === (ci.note ?? ci.lifecycle.last.reason)) return false;
    ci.note = reason;
    for (const l of this.progressListeners) l(ci, { state, reason, ts });
    return true;
  }

  get(id: string): ClusterInstance | undefined {
    return this.instances.get(id);
  }

  get size(): number {
    return this.instances.size;
  }

  values(): IterableIterator<ClusterInstance> {
    return this.instances.values();
  }

  /** Adds (or re-files) an instance under its id and its worker. */
  index(ci: ClusterInstance): void {
    const id = instanceId(ci.offer.service.service_id, ci.offer.instance_n);
    this.instances.set(id, ci);
    if (ci.worker) {
      let s = this.byWorker.get(ci.worker);
      if (!s) this.byWorker.set(ci.worker, (s = new Set()));
      s.add(id);
    }
  }

  /** Takes an instance off its worker (and forgets its namespace addresses there). */
  unassign(ci: ClusterInstance): void {
    if (!ci.worker) return;
    this.byWorker.get(ci.worker)?.delete(instanceId(ci.offer.service.service_id, ci.offer.instance_n));
    ci.worker = null;
    ci.ns_ip = null;
    ci.ns_ip_v6 = null;
  }

  delete(id: string): void {
    this.instances.delete(id);
  }

  /** Ids of the instances given to a worker (a copy: callers may re-file them while iterating). */
  idsOn(workerId: string): string[] {
    return [...(this.byWorker.get(workerId) ?? [])];
  }

  countOn(workerId: string): number {
    return this.byWorker.get(workerId)?.size ?? 0;
  }

  setInventory(workerId: string, listed: Set<string>): void {
    this.inventory.set(workerId, listed);
  }

  /** A worker left for good: nothing is filed under it any more. */
  forgetWorker(workerId: string): void {
    this.inventory.delete(workerId);
    this.byWorker.delete(workerId);
  }

  servicesOn(workerId: string): Set<string> {
    const out = new Set<string>();
    for (const id of this.byWorker.get(workerId) ?? []) {
      const ci = this.instances.get(id);
      if (ci) out.add(ci.offer.service.service_id);
    }
    return out;
  }

  instancesOf(serviceId: string): ClusterInstance[] {
    const out: ClusterInstance[] = [];
    for (const ci of this.instances.values()) if (ci.offer.service.service_id === serviceId) out.push(ci);
    return out;
  }

  /** Resources given to a worker that its heartbeat does not account for yet (orders in flight). */
  pendingOn(workerId: string): PendingNeed {
    const listed = this.inventory.get(workerId);
    const p = { vcpus: 0, memory_mb: 0 };
    for (const id of this.byWorker.get(workerId) ?? []) {
      const ci = this.instances.get(id);
      if (!ci || listed?.has(id) || !isOnWorker(ci.lifecycle.state)) continue;
      const n = needOf(ci.offer);
      p.vcpus += n.vcpus;
      p.memory_mb += n.memory_mb;
    }
    return p;
  }
}
