// Where the cluster's instances run: places root's offers on workers (scheduler.ts decides), removes
// them, re-places the instances of a worker that died or left, and reconciles each heartbeat's
// inventory and each job status with the cluster's view (orders sent again, strays removed, missed
// states taken over).
import { topics } from '../mqtt/topics.ts';
import { encode, type InventoryEntry, type JobStatus } from '../mqtt/messages.ts';
import { isOnWorker, isTerminal } from '../protocol/instance-states.ts';
import type { PlacementAnswer, PlacementOffer } from '../protocol/root-cluster.ts';
import type { ClusterContext } from './context.ts';
import { deployOrder, instanceId, needOf, newInstance, type ClusterInstance } from './placements.ts';
import type { RouteService } from './route-service.ts';
import { schedule, type ScheduleResult } from './scheduler.ts';
import { LatencyProbes } from './latency-probes.ts';
import type { WorkerRecord } from './worker-registry.ts';

const RESEND_MS = 5000;

export class Placer {
  /** When an order (deploy or delete) for a key was last sent, for the rate limit of repeats. */
  private readonly lastOrder = new Map<string, number>();
  /** Workers' RTTs to `latency` targets. */
  readonly probes: LatencyProbes;

  constructor(
    private readonly c: ClusterContext,
    private readonly routes: RouteService,
    private readonly hooks: {
      /** A worker was declared dead (not one that left). */
      workerDead(workerId: string): void;
    },
  ) {
    this.probes = new LatencyProbes((topic, payload) => this.c.publish(topic, payload));
  }

  /**
   * Before `place`: the live workers without a fresh measurement probe each `latency` target of the
   * offer (a short wait; re-placements after a death use what is cached).
   */
  async measure(offer: PlacementOffer): Promise<void> {
    const targets = (needOf(offer).constraints ?? []).filter((k) => k.type === 'latency' && typeof k.target === 'string').map((k) => k.target as string);
    if (targets.length === 0) return;
    const alive = this.c.registry.alive().map((w) => w.id);
    await Promise.all([...new Set(targets)].map((t) => this.probes.ensure(alive, t)));
  }

  /** A worker's tunnel measurement to another, from either side's coordinate report. */
  private measuredRtt = (a: string, b: string): number | undefined => this.routes.measured.get(a)?.[b] ?? this.routes.measured.get(b)?.[a];

  private pick(offer: PlacementOffer, exclude?: ReadonlySet<string>): ScheduleResult {
    const candidates = this.c.registry.candidates((w) => this.c.index.servicesOn(w), (w) => this.c.index.pendingOn(w));
    return schedule(candidates, needOf(offer), {
      clusterName: this.c.name, exclude, coordinates: this.routes.coords,
      latencyTo: (w, target) => this.probes.get(w, target), measuredRtt: this.measuredRtt,
    });
  }

  private assign(ci: ClusterInstance, workerId: string, reason: string): void {
    this.c.index.unassign(ci);
    ci.worker = workerId;
    this.c.index.index(ci);
    this.c.index.transition(ci, 'NODE_SCHEDULED', reason);
    this.lastOrder.set(`dep:${instanceId(ci.offer.service.service_id, ci.offer.instance_n)}`, Date.now());
    this.c.log.debug('deploy order sent', { worker: workerId, service_id: ci.offer.service.service_id });
    this.c.publish(topics.deploy(workerId), encode('deploy', deployOrder(ci.offer)));
  }

  /** POST /api/placements */
  place(offer: PlacementOffer): PlacementAnswer {
    const id = instanceId(offer.service.service_id, offer.instance_n);
    const existing = this.c.index.get(id);
    if (existing?.worker && isOnWorker(existing.lifecycle.state)) return { accepted: true, worker_id: existing.worker };
    const r = this.pick(offer);
    if (!r.ok) {
      this.c.counters.declined++;
      this.c.log.info('placement declined', { instance: id, status: r.status, reason: r.reason });
      if (existing) {
        this.c.index.transition(existing, r.status, r.reason);
      }
      return { accepted: false, status: r.status, reason: r.reason };
    }
    this.c.counters.placements++;
    let ci = existing;
    if (ci && !isTerminal(ci.lifecycle.state)) {
      ci.offer = offer;
      this.c.index.transition(ci, 'CLUSTER_SCHEDULED', 'offered again by root');
    } else {
      ci = newInstance(offer, 'CLUSTER_SCHEDULED', 'offered by root');
      this.c.index.index(ci);
    }
    this.assign(ci, r.worker, r.reason);
    this.c.log.info('instance placed', { instance: id, worker: r.worker, reason: r.reason });
    return { accepted: true, worker_id: r.worker };
  }

  /** DELETE /api/placements/:service_id/:n */
  remove(serviceId: string, n: number, reason = 'removed by root'): void {
    const id = instanceId(serviceId, n);
    const ci = this.c.index.get(id);
    if (!ci) return;
    if (ci.worker) this.c.publish(topics.remove(ci.worker), encode('remove', { service_id: serviceId, instance_n: n, reason }));
    this.c.index.transition(ci, 'UNDEPLOYED', reason);
    this.c.index.unassign(ci);
    this.c.index.delete(id);
    this.routes.pushRoute(serviceId);
    this.c.saveSoon();
  }

  /** Declares silent workers dead (the registry decides who is silent). */
  sweep(): void {
    for (const w of this.c.registry.sweep()) this.onWorkerDead(w);
  }

  /** Re-places a dead (or departed, with `cause`) worker's instances on the others. */
  onWorkerDead(w: WorkerRecord, cause?: string): void {
    const silentMs = Date.now() - w.lastSeen;
    if (!cause) {
      this.c.counters.deaths++;
      this.c.log.warn('worker declared dead', { worker: w.id, silent_ms: silentMs });
      this.hooks.workerDead(w.id);
    }
    const affected = new Set<string>();
    for (const id of this.c.index.idsOn(w.id)) {
      const ci = this.c.index.get(id);
      if (!ci || !isOnWorker(ci.lifecycle.state)) continue;
      affected.add(ci.offer.service.service_id);
      const why = cause ?? `worker ${w.id} silent for ${(silentMs / 1000).toFixed(1)} s`;
      this.c.index.transition(ci, 'CLUSTER_SCHEDULED', why);
      this.c.index.unassign(ci);
      const r = this.pick(ci.offer, new Set([w.id]));
      if (r.ok) {
        this.c.counters.replaced++;
        this.assign(ci, r.worker, `re-placed after ${why}: ${r.reason}`);
      } else {
        this.c.index.transition(ci, r.status, `${why}; cannot re-place here: ${r.reason}`);
      }
    }
    for (const sid of affected) this.routes.pushRoute(sid);
  }

  /**
   * The worker's inventory against the cluster's view. Instances the cluster has given to another
   * worker (or removed) are deleted on this one; instances it should run but does not list are sent
   * again; a state the cluster missed (a lost job message) is taken over.
   */
  reconcile(workerId: string, entries: readonly InventoryEntry[]): void {
    const now = Date.now();
    const listed = new Set<string>();
    for (const e of entries) {
      const id = instanceId(e.service_id, e.instance_n);
      listed.add(id);
      const ci = this.c.index.get(id);
      if (ci && !ci.worker && e.state === 'RUNNING' && (ci.lifecycle.state === 'NO_WORKER_CAPACITY' || ci.lifecycle.state === 'NO_QUALIFIED_WORKER')) {
        // The worker was only cut off (a partition, SPEC §8) and nobody else took its instance: it
        // still runs there, so it is taken back rather than killed and placed again.
        this.c.index.transition(ci, 'CLUSTER_SCHEDULED', `worker ${workerId} is back and still runs it`);
        ci.worker = workerId;
        this.c.index.index(ci);
        this.c.index.transition(ci, 'NODE_SCHEDULED', `taken back on ${workerId} after it was unreachable`);
        this.c.index.transition(ci, 'RUNNING', 'state reported in heartbeat');
        this.c.log.info('reconcile: instance taken back', { worker: workerId, instance: id });
        // Its namespace addresses come with the worker's answer to a repeated order.
        this.c.publish(topics.deploy(workerId), encode('deploy', deployOrder(ci.offer)));
        continue;
      }
      if (!ci || ci.worker !== workerId || (!isOnWorker(ci.lifecycle.state) && ci.lifecycle.state !== 'COMPLETED')) {
        if (e.state === 'UNDEPLOYED' || !this.due(`del:${workerId}:${id}`, now)) continue;
        const why = !ci ? 'unknown to the cluster' : ci.worker && ci.worker !== workerId ? `re-placed on ${ci.worker}` : `cluster state is ${ci.lifecycle.state}`;
        this.c.log.info('reconcile: removing a stray instance', { worker: workerId, instance: id, why });
        this.c.publish(topics.remove(workerId), encode('remove', { service_id: e.service_id, instance_n: e.instance_n, reason: `reconcile: ${why}` }));
        continue;
      }
      if (e.state !== ci.lifecycle.state && (e.state === 'RUNNING' || e.state === 'FAILED' || e.state === 'COMPLETED')) {
        this.c.index.transition(ci, e.state, 'state reported in heartbeat');
      }
      this.noteLoad(workerId, ci, e);
    }
    this.c.index.setInventory(workerId, listed);
    for (const id of this.c.index.idsOn(workerId)) {
      const ci = this.c.index.get(id);
      if (!ci || listed.has(id) || !isOnWorker(ci.lifecycle.state)) continue;
      if (!this.due(`dep:${id}`, now)) continue;
      this.c.log.info('reconcile: sending a deploy again', { worker: workerId, instance: id });
      this.c.publish(topics.deploy(workerId), encode('deploy', deployOrder(ci.offer)));
    }
  }

  /** An instance's overload flag from its worker's heartbeat: on a change, its route is pushed at once. */
  private noteLoad(workerId: string, ci: ClusterInstance, e: InventoryEntry): void {
    const now = e.overloaded === true && e.state === 'RUNNING' ? (e.overload_reason || 'overloaded') : undefined;
    const changed = (now === undefined) !== (ci.overloaded === undefined);
    if (!changed) {
      ci.overloaded = now; // a newer reason, or still nothing
      return;
    }
    ci.overloaded = now;
    const id = instanceId(e.service_id, e.instance_n);
    if (now) this.c.log.info('instance overloaded: closest avoids it', { worker: workerId, instance: id, reason: now });
    else this.c.log.info('instance no longer overloaded', { worker: workerId, instance: id });
    this.routes.pushRoute(ci.offer.service.service_id);
  }

  /** Rate limit for repeated orders: true at most once per RESEND_MS per key. */
  private due(key: string, now: number): boolean {
    const last = this.lastOrder.get(key) ?? 0;
    if (now - last < RESEND_MS) return false;
    this.lastOrder.set(key, now);
    if (this.lastOrder.size > 100_000) this.lastOrder.clear();
    return true;
  }

  /** A worker's job status: the instance's state (and namespace addresses) as the worker sees it. */
  onJob(workerId: string, st: JobStatus): void {
    const id = instanceId(st.service_id, st.instance_n);
    this.c.log.debug('job status', { worker: workerId, instance: id, state: st.state });
    const ci = this.c.index.get(id);
    if (!ci || ci.worker !== workerId) {
      if (st.state !== 'UNDEPLOYED' && this.due(`del:${workerId}:${id}`, Date.now())) {
        this.c.publish(topics.remove(workerId), encode('remove', { service_id: st.service_id, instance_n: st.instance_n, reason: 'not placed on this worker' }));
      }
      return;
    }
    const moved = (st.ns_ip !== undefined && st.ns_ip !== ci.ns_ip) || (st.ns_ip_v6 !== undefined && st.ns_ip_v6 !== ci.ns_ip_v6);
    if (st.ns_ip) ci.ns_ip = st.ns_ip;
    if (st.ns_ip_v6) ci.ns_ip_v6 = st.ns_ip_v6;
    if (!this.c.index.transition(ci, st.state, st.reason, st.ts)) {
      // Same state, new reason: the worker's progress (bytes of an image pull), passed on to root.
      // Either way, addresses that changed reach the workers: an instance taken back after a
      // partition has none until its worker answers here, with a reason of its own.
      const progressed = this.c.index.progress(ci, st.state, st.reason, st.ts);
      if (!progressed) this.c.log.debug('job status ignored', { instance: id, from: ci.lifecycle.state, to: st.state });
      if (moved && ci.lifecycle.state === 'RUNNING') this.routes.pushRoute(ci.offer.service.service_id);
    }
  }
}
