// Instances: creation with stable instance IPs, root scheduling (offer to clusters best first, the
// next one on a decline), lifecycle transitions with timestamps and reasons, and cluster reports.
// Clusters are reached through an injected ClusterLink; route answers and pushes (RouteService),
// the remote tunnel peers (RemotePeerService) and the API view (instance-view.ts) live beside it.
import type { Logger } from '../protocol/log.ts';
import { httpClusterLink, type ClusterLink } from './cluster-client.ts';
import { RemotePeerService } from './remote-peers.ts';
import { RouteService } from './route-service.ts';
import { instanceView, type InstanceView } from './instance-view.ts';
import type { ReportedInstance } from '../protocol/root-cluster.ts';
import { AddressSpaceExhausted, type AddressAllocator } from './addresses.ts';
import type { ClusterRegistry } from './clusters.ts';
import { canTransition, isInstanceState, isPlaced, type InstanceState } from '../protocol/instance-states.ts';
import type { Metrics } from './metrics.ts';
import { RetryScheduler, type RetryClock, type RunOutcome, type TriggerKind } from './retry.ts';
import { rankClusters, summarizeRejections, type InstanceDemand, type NearTarget } from './scheduler.ts';
import { placeability } from './placeable.ts';
import type { ClusterRecord, InstanceEvent, InstanceRecord, PlacementContext, RootStore, ServiceRecord } from './store.ts';
import type { Connectivity } from '../descriptor/types.ts';
import { SoloCoordinator, type Coordinator } from './replicas.ts';

/** The service was deleted while an instance of it was being created. */
export class ServiceGone extends Error {
  constructor(readonly serviceId: string) {
    super(`service ${serviceId} was deleted`);
  }
}

const RETRYABLE: InstanceState[] = ['NO_CLUSTER_FOUND', 'NO_WORKER_CAPACITY', 'NO_QUALIFIED_WORKER'];
const isRetryable = (s: InstanceState): boolean => RETRYABLE.includes(s);
const keyOf = (serviceId: string, n: number): string => `${serviceId}/${n}`;
const splitKey = (key: string): [string, number] => {
  const cut = key.lastIndexOf('/');
  return [key.slice(0, cut), Number(key.slice(cut + 1))];
};

export class InstanceManager {
  /** Scheduling runs in flight, so close() can wait for them. */
  private readonly inflight = new Map<string, Promise<void>>();
  /** Route answers to clusters, and pushes to those that asked. */
  readonly routes: RouteService;
  /** Other clusters' workers as tunnel peers (report answers and pushes). */
  readonly peers: RemotePeerService;
  private readonly link: ClusterLink;
  private closed = false;
  private readonly countDecision: (l?: Record<string, string>) => void;
  private readonly countTransition: (l?: Record<string, string>) => void;
  private readonly observeDecision: (s: number) => void;
  private readonly retry: RetryScheduler;
  private readonly countRetryPass: (l?: Record<string, string>) => void;
  private readonly countRetryAttempt: (l?: Record<string, string>) => void;
  private readonly countRetryPlaced: (l?: Record<string, string>) => void;
  /** Who leads among root's replicas: only the leader schedules and retries. */
  private readonly coordinator: Coordinator;
  /** The last deploy found its first candidate addresses taken (see AddressAllocator.next). */
  private contended = false;
  /** Retry states being written, in order. */
  private saving: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: RootStore,
    private readonly addresses: AddressAllocator,
    private readonly clusters: ClusterRegistry,
    private readonly log: Logger,
    metrics: Metrics,
    o: { retryClock?: RetryClock; retryBaseMs?: number; retryMaxMs?: number; link?: ClusterLink; coordinator?: Coordinator } = {},
  ) {
    this.link = o.link ?? httpClusterLink;
    this.coordinator = o.coordinator ?? new SoloCoordinator();
    this.routes = new RouteService(store, clusters, this.link, log);
    this.peers = new RemotePeerService(store, clusters, this.link, log,
      metrics.counter('canopy_root_peer_pushes_total', 'Pushes of remote tunnel peers to clusters, by outcome'));
    this.countDecision = metrics.counter('canopy_root_schedule_outcomes_total', 'Root scheduling outcomes');
    this.countTransition = metrics.counter('canopy_root_instance_transitions_total', 'Instance state transitions, by new state');
    this.observeDecision = metrics.histogram('canopy_root_schedule_decision_seconds', 'Time to rank clusters for one instance');
    this.countRetryPass = metrics.counter('canopy_root_retry_passes_total', 'Passes that retried unplaced instances, by what triggered them');
    this.countRetryAttempt = metrics.counter('canopy_root_retry_attempts_total', 'Scheduling runs of instances left unplaced before');
    this.countRetryPlaced = metrics.counter('canopy_root_retry_placements_total', 'Instances placed on a retry, after being left unplaced');
    this.retry = new RetryScheduler({
      clock: o.retryClock,
      baseMs: o.retryBaseMs,
      maxMs: o.retryMaxMs,
      unplaced: async () => (await this.store.instancesInState(RETRYABLE)).map((i) => keyOf(i.service_id, i.n)),
      attempt: (key, cause) => this.startScheduling(...splitKey(key), cause),
      save: (key, st) => {
        const [serviceId, n] = splitKey(key);
        const row = st && { service_id: serviceId, n, retries: st.retries, last_retry: st.last, failures: st.failures, next_retry: st.next };
        // In order, one after another: a later state must not be overwritten by an earlier write.
        this.saving = this.saving
          .then(() => (row ? this.store.putRetry(row) : this.store.deleteRetry(serviceId, n)))
          .catch((err: unknown) => this.log.warn('could not save retry state', { service_id: serviceId, n, error: String(err) }));
      },
      onPass: (kind, started) => {
        // A pass that found nothing to start (none unplaced, all in flight) is not counted.
        if (started === 0) return;
        this.countRetryPass({ trigger: kind });
        this.log.info('retrying unplaced instances', { trigger: kind, instances: started });
      },
    });
    metrics.gauge('canopy_root_instances', 'Instances by state', async () =>
      [...(await store.countInstancesByState())].map(([state, n]) => [{ state }, n]));
  }

  /** Waits for scheduling in flight; no new scheduling starts afterwards. */
  async close(): Promise<void> {
    this.closed = true;
    this.peers.close();
    this.retry.close();
    await Promise.allSettled([...this.inflight.values()]);
    await this.saving;
  }

  /** `known`: what the caller has at hand already (a fresh instance's service and history), not read again. */
  view(i: InstanceRecord, known?: { spec: ServiceRecord['spec']; history: InstanceEvent[] }): Promise<InstanceView> {
    return instanceView(i, {
      store: this.store,
      history: known?.history,
      clusterName: (id) => this.clusters.get(id)?.name,
      retry: (r) => (isRetryable(r.state) ? this.retry.info(keyOf(r.service_id, r.n)) : undefined),
      placeability: async (r) => placeability(r.state === 'REQUESTED' || isRetryable(r.state) ? (known?.spec ?? (await this.store.service(r.service_id))?.spec) : undefined, this.clusters),
    });
  }

  /**
   * Moves an instance to `to` if the lifecycle allows it; records the event. With `expect`, only if
   * the stored instance is still in that state on that cluster (else false, nothing written).
   */
  private async transition(
    i: InstanceRecord, to: InstanceState, reason: string, ts = Date.now(), patch: Partial<InstanceRecord> = {},
    expect?: { state: InstanceState; cluster_id: string | null },
  ): Promise<boolean> {
    if (i.state !== to && !canTransition(i.state, to)) return false;
    if (i.state === 'RUNNING' || to === 'RUNNING') {
      this.peers.invalidate();
      this.coordinator.hint({ kind: 'peers' });
    }
    Object.assign(i, patch);
    const changed = i.state !== to;
    i.state = to;
    i.reason = reason;
    i.updated_at = ts;
    if (!(await this.store.recordTransition(i, changed ? { state: to, reason, ts } satisfies InstanceEvent : undefined, expect))) return false;
    if (changed) {
      this.countTransition({ state: to });
      this.log.info('instance state', { service_id: i.service_id, n: i.n, state: to, reason });
    }
    return true;
  }

  /**
   * Creates instance n of a service (REQUESTED, with its instance IPs) and starts scheduling it.
   * `taken`: the instance number and the application's names, when the caller took the number
   * already (takeInstanceNumberOf); the leader then schedules from what it has in hand, not read again.
   */
  async deploy(s: ServiceRecord, reason: string, taken?: { n: number; app: string; appns: string }): Promise<InstanceRecord> {
    const now = Date.now();
    // One atomic statement, committed at once: replicas deploying the same service at once get
    // different numbers without waiting for each other's transactions.
    const n = taken?.n ?? await this.store.takeInstanceNumber(s.id);
    if (n === undefined) throw new ServiceGone(s.id);
    s.next_n = n + 1;
    // A follower hands the instance to the leader: the note goes out with the instance's commit. With
    // no leader for a moment (it died), the next one finds it REQUESTED when it takes over (resume).
    const note = this.coordinator.isLeader() ? undefined : this.coordinator.note({ kind: 'schedule', service_id: s.id, n });
    const inst: InstanceRecord = {
      service_id: s.id, n, state: 'REQUESTED', reason, cluster_id: null, worker_id: null, instance_ip: '', instance_ip_v6: '',
      ns_ip: null, ns_ip_v6: null, tunnel_endpoint: null, created_at: now, updated_at: now,
    };
    // Addresses, instance and history in one atomic write (one statement on PostgreSQL); a candidate
    // address another request took meanwhile makes it write nothing, and the next candidates are tried.
    const limit = Math.min(this.addresses.tryLimit(4), this.addresses.tryLimit(6));
    for (let tries = 0; ; tries++) {
      if (tries >= limit) {
        const full = this.addresses.tryLimit(4) <= this.addresses.tryLimit(6) ? this.addresses.serviceV4 : this.addresses.serviceV6;
        throw new AddressSpaceExhausted(`no free address left in ${full.text}`);
      }
      const contended = tries > 0 && this.contended;
      inst.instance_ip = this.addresses.next(4, contended);
      inst.instance_ip_v6 = this.addresses.next(6, contended);
      if (await this.store.claimAndCreateInstance(inst, { state: 'REQUESTED', reason, ts: now }, note)) {
        this.contended = tries > 0;
        break;
      }
    }
    this.countTransition({ state: 'REQUESTED' });
    if (this.coordinator.isLeader()) {
      this.startScheduling(s.id, inst.n, undefined, taken && { instance: { ...inst }, service: s, app: taken.app, appns: taken.appns });
    }
    return inst;
  }

  /** A follower created instance n of a service: the leader schedules it. */
  scheduleFromPeer(serviceId: string, n: number, retry = false): void {
    if (!this.coordinator.isLeader()) return;
    if (retry) this.retry.adopt(keyOf(serviceId, n));
    else this.startScheduling(serviceId, n);
  }

  /** Starts a scheduling run unless one is in flight for the instance (then false): never two at once. */
  private startScheduling(serviceId: string, n: number, cause?: string, known?: PlacementContext): boolean {
    const key = keyOf(serviceId, n);
    if (this.closed || this.inflight.has(key) || !this.coordinator.isLeader()) return false;
    const token = this.retry.begin(key);
    const retry = this.retry.isRetry(key);
    if (retry) this.countRetryAttempt();
    const run = this.schedule(serviceId, n, retry ? (cause ?? 'retried') : undefined, known)
      .then((outcome) => {
        if (retry && outcome === 'placed') this.countRetryPlaced();
        this.retry.finished(key, token, outcome);
      }, async (err: unknown) => {
        this.log.error('scheduling failed', { service_id: serviceId, n, error: String(err) });
        const state = (await this.store.instance(serviceId, n).catch(() => undefined))?.state;
        // Unknown (the database is away): kept as unplaced, so a later pass tries again.
        this.retry.finished(key, token, !state || isRetryable(state) ? 'unplaced' : 'gone');
      })
      .finally(() => this.inflight.delete(key));
    this.inflight.set(key, run);
    return true;
  }

  /**
   * Offers an instance to the qualifying clusters, best first, until one accepts. A REQUESTED
   * instance is being deployed; an unplaced one (NO_*) is retried (`retryCause` says why) and keeps
   * its state while the offers are out, so a retry that fails the same way changes only its reason.
   */
  private async schedule(serviceId: string, n: number, retryCause?: string, known?: PlacementContext): Promise<RunOutcome> {
    // A connectivity target deployed in the same breath is still being placed: wait for it, so this
    // instance is ranked by where the target went. Only runs started before this one are waited on
    // (this part runs before this run is registered), so two services near each other cannot deadlock.
    // `known`: the deploy that created it just now had all of it in hand.
    let ctx = known ?? await this.store.placementContext(serviceId, n);
    const targets = new Set(ctx?.service.spec.connectivity.map((c) => c.target_microservice_id));
    // Scanned only when there are targets: with hundreds of runs in flight, a scan per run adds up.
    const earlier = targets.size === 0 ? [] : [...this.inflight].filter(([k]) => targets.has(splitKey(k)[0])).map(([, run]) => run);
    if (earlier.length > 0) {
      await Promise.allSettled(earlier);
      ctx = await this.store.placementContext(serviceId, n);
    }
    if (!ctx) return 'gone';
    const { service: s, instance: i, app, appns } = ctx;
    if (i.state !== 'REQUESTED' && !isRetryable(i.state)) return isPlaced(i.state) ? 'placed' : 'gone';
    const spec = s.spec;
    const demand: InstanceDemand = {
      virtualization: spec.virtualization, vcpus: spec.vcpus, memory: spec.memory, vgpus: spec.vgpus, constraints: spec.constraints,
      near: await this.nearTargets(spec.connectivity),
    };
    const t0 = performance.now();
    const ranking = rankClusters(demand, this.clusters.views());
    this.observeDecision((performance.now() - t0) / 1000);
    if (ranking.candidates.length === 0) {
      this.countDecision({ outcome: 'NO_CLUSTER_FOUND' });
      return this.settleUnplaced(serviceId, n, 'NO_CLUSTER_FOUND', `no cluster qualifies: ${summarizeRejections(ranking.rejected)}`);
    }
    const declines: string[] = [];
    let capacity = false;
    let declined = false;
    const offer = {
      service: {
        service_id: s.id, app, appns, svc: s.name, svcns: s.namespace, microservice: spec,
        rr_ip: s.rr_ip, rr_ip_v6: s.rr_ip_v6, closest_ip: s.closest_ip, closest_ip_v6: s.closest_ip_v6,
      },
      instance_n: n, instance_ip: i.instance_ip, instance_ip_v6: i.instance_ip_v6,
    };
    for (const view of ranking.candidates) {
      const c = this.clusters.get(view.id);
      if (!c) continue;
      try {
        const answer = await this.link.offer(c, offer);
        if (answer.accepted) {
          const tried = declines.length ? `; before: ${declines.join('; ')}` : '';
          const placed = (from: InstanceState) => `placed on cluster ${c.name} (worker ${answer.worker_id})${tried}${retryCause ? `; on a retry (${retryCause}) after ${from}` : ''}`;
          // The common case in one write: the instance is as this run read it (compare and set).
          const fast = { ...i };
          if (await this.transition(fast, 'CLUSTER_SCHEDULED', placed(i.state), Date.now(), { cluster_id: c.id, worker_id: answer.worker_id }, { state: i.state, cluster_id: i.cluster_id })) {
            this.clusters.reserve(c.id, demand);
            this.countDecision({ outcome: 'CLUSTER_SCHEDULED' });
            return 'placed';
          }
          // It moved on while the offer was out (a report, an undeploy): decide from what it is now.
          const now = await this.store.instance(serviceId, n);
          if (now && now.cluster_id === c.id && isPlaced(now.state)) return 'placed'; // its report came first
          if (!now || (now.state !== 'REQUESTED' && !isRetryable(now.state))) {
            // Undeployed while the offer was out: take it back from the cluster.
            await this.link.remove(c, serviceId, n).catch(() => undefined);
            return 'gone';
          }
          this.clusters.reserve(c.id, demand);
          this.countDecision({ outcome: 'CLUSTER_SCHEDULED' });
          await this.transition(now, 'CLUSTER_SCHEDULED', placed(now.state), Date.now(), { cluster_id: c.id, worker_id: answer.worker_id });
          return 'placed';
        }
        declined = true;
        capacity ||= answer.status === 'NO_WORKER_CAPACITY';
        declines.push(`${c.name} declined: ${answer.status} ${answer.reason}`);
      } catch (err) {
        declines.push(`${c.name} ${(err as Error).message}`);
      }
    }
    const outcome: InstanceState = capacity ? 'NO_WORKER_CAPACITY' : declined ? 'NO_QUALIFIED_WORKER' : 'NO_CLUSTER_FOUND';
    this.countDecision({ outcome });
    return this.settleUnplaced(serviceId, n, outcome, declines.join('; '));
  }

  /** The connectivity targets with placed instances, and the clusters those are on. */
  private async nearTargets(connectivity: readonly Connectivity[]): Promise<NearTarget[]> {
    const out: NearTarget[] = [];
    for (const c of connectivity) {
      if (c.con_constraints.length === 0) continue;
      const target = await this.store.service(c.target_microservice_id);
      if (!target) continue;
      const clusterIds = new Set<string>();
      for (const i of await this.store.listInstances(target.id)) if (i.cluster_id && isPlaced(i.state)) clusterIds.add(i.cluster_id);
      if (clusterIds.size > 0) out.push({ name: target.name, clusterIds, constraints: c.con_constraints });
    }
    return out;
  }

  /**
   * Records that a run could not place the instance. A new outcome is a transition (with its history
   * entry); the same outcome again only updates the reason, so retries do not flood the history.
   * Nothing changes if the instance moved on meanwhile (undeployed, or placed by a report).
   */
  private async settleUnplaced(serviceId: string, n: number, outcome: InstanceState, reason: string): Promise<RunOutcome> {
    const cur = await this.store.instance(serviceId, n);
    if (!cur) return 'gone';
    if (cur.state === outcome) {
      if (cur.reason !== reason) {
        cur.reason = reason;
        cur.updated_at = Date.now();
        await this.store.updateInstance(cur);
      }
      return 'unplaced';
    }
    if (cur.state === 'REQUESTED' || isRetryable(cur.state)) {
      await this.transition(cur, outcome, reason);
      return 'unplaced';
    }
    return isPlaced(cur.state) ? 'placed' : 'gone';
  }

  /**
   * Room may have appeared (a cluster became active or reports more room, an instance left a
   * cluster): every unplaced instance gets another run soon; a burst of calls makes one pass.
   */
  retryUnplaced(kind: TriggerKind, cause: string): void {
    if (this.coordinator.isLeader()) this.retry.trigger(kind, cause);
  }

  /**
   * Resumes scheduling that a root restart interrupted; instances left unplaced go on with their
   * saved retries and backoff (due at once if their time passed while root was down).
   */
  async resume(): Promise<void> {
    for (const i of await this.store.instancesInState(['REQUESTED'])) this.startScheduling(i.service_id, i.n);
    const saved = new Map((await this.store.listRetries()).map((r) => [keyOf(r.service_id, r.n), r]));
    for (const i of await this.store.instancesInState(RETRYABLE)) {
      const key = keyOf(i.service_id, i.n);
      const r = saved.get(key);
      saved.delete(key);
      this.retry.adopt(key, r && { retries: r.retries, last: r.last_retry, failures: r.failures, next: r.next_retry });
    }
    // Instances placed or undeployed since (a crash between the two writes): nothing to retry.
    for (const r of saved.values()) await this.store.deleteRetry(r.service_id, r.n);
  }

  /** Undeploys one instance: UNDEPLOYED at once, instance IPs released, the cluster told in the background. */
  async undeploy(i: InstanceRecord, reason: string): Promise<void> {
    const cluster = i.cluster_id ? this.clusters.get(i.cluster_id) : undefined;
    const wasPlaced = isPlaced(i.state);
    // A finished one-shot (or a failed instance) holds no room but still has its files on the worker.
    const onWorker = wasPlaced || i.state === 'COMPLETED' || i.state === 'FAILED';
    if (!(await this.transition(i, 'UNDEPLOYED', reason))) return;
    this.retry.forget(keyOf(i.service_id, i.n));
    await this.addresses.releaseInstance(i.service_id, i.n);
    if (cluster && onWorker) {
      const spec = (await this.store.service(i.service_id))?.spec;
      if (spec && wasPlaced) this.clusters.release(cluster.id, spec);
      const cause = `instance ${i.n} of service ${i.service_id} was undeployed from cluster ${cluster.name}`;
      this.link.remove(cluster, i.service_id, i.n).catch((err: unknown) =>
        // The cluster's next report lists the instance and root's answer asks again (see applyReport).
        this.log.warn('could not tell cluster to remove an instance', { cluster: cluster.name, service_id: i.service_id, n: i.n, error: String(err) }))
        // Its place is free once the cluster has removed it (its next report confirms the room).
        .finally(() => this.retryUnplaced('instance_left', cause));
    }
    await this.routes.pushIfInterested(i.service_id);
  }

  async undeployAll(serviceId: string, reason: string): Promise<void> {
    for (const i of await this.store.listInstances(serviceId)) if (i.state !== 'UNDEPLOYED') await this.undeploy(i, reason);
  }

  /**
   * Applies the per-instance part of a cluster report. Returns the instances the cluster should
   * remove: ones root no longer has, or has undeployed, or that are placed on another cluster.
   */
  async applyReport(c: ClusterRecord, entries: ReportedInstance[]): Promise<{ undeploy: { service_id: string; instance_n: number }[]; ignored: number }> {
    const undeploy: { service_id: string; instance_n: number }[] = [];
    const changed = new Set<string>();
    const left: string[] = [];
    let ignored = 0;
    const now = Date.now();
    for (const e of entries) {
      const i = await this.store.instance(e.service_id, e.instance_n);
      // A COMPLETED or FAILED instance still has its files on a worker until the cluster removes it.
      const gone = e.state === 'UNDEPLOYED';
      if (!i || i.state === 'UNDEPLOYED' || (i.cluster_id !== null && i.cluster_id !== c.id)) {
        if (!gone) undeploy.push({ service_id: e.service_id, instance_n: e.instance_n });
        continue;
      }
      if (!isInstanceState(e.state)) {
        ignored++;
        this.log.warn('report with an unknown state ignored', { cluster: c.name, service_id: e.service_id, n: e.instance_n, state: e.state });
        continue;
      }
      const ts = typeof e.ts === 'number' && Number.isFinite(e.ts) && Math.abs(now - e.ts) < 3_600_000 ? e.ts : now;
      if ((i.state === 'REQUESTED' || isRetryable(i.state)) && i.cluster_id === null && isPlaced(e.state)) {
        // The cluster reported before root read its answer to the offer: it has the instance.
        await this.transition(i, 'CLUSTER_SCHEDULED', `placed on cluster ${c.name} (worker ${e.worker ?? 'unknown'})`, ts, { cluster_id: c.id });
      }
      const before = JSON.stringify([i.state, i.worker_id, i.ns_ip, i.ns_ip_v6, i.tunnel_endpoint]);
      const wasPlaced = isPlaced(i.state);
      const ok = await this.transition(i, e.state, e.reason?.slice(0, 500) || `reported by cluster ${c.name}`, ts, {
        cluster_id: c.id,
        worker_id: e.worker ?? i.worker_id,
        ns_ip: e.ns_ip ?? i.ns_ip,
        ns_ip_v6: e.ns_ip_v6 ?? i.ns_ip_v6,
        tunnel_endpoint: e.tunnel_endpoint ?? i.tunnel_endpoint,
      });
      if (!ok) {
        ignored++;
        this.log.warn('report asks for a transition the lifecycle forbids', { cluster: c.name, service_id: i.service_id, n: i.n, from: i.state, to: e.state });
        continue;
      }
      if (before !== JSON.stringify([i.state, i.worker_id, i.ns_ip, i.ns_ip_v6, i.tunnel_endpoint])) changed.add(i.service_id);
      if (wasPlaced && !isPlaced(i.state)) left.push(`instance ${i.n} of service ${i.service_id} left cluster ${c.name} (${i.state})`);
      // The cluster could not keep it (its worker failed and no other had room): root retries it too.
      if (isRetryable(i.state)) {
        if (this.coordinator.isLeader()) this.retry.adopt(keyOf(i.service_id, i.n));
        else await this.coordinator.publish({ kind: 'schedule', service_id: i.service_id, n: i.n, retry: true });
      }
    }
    if (left.length) this.retryUnplaced('instance_left', left.join('; '));
    for (const id of changed) await this.routes.pushIfInterested(id, c.id);
    if (!this.closed) await this.peers.announce(c.id);
    return { undeploy, ignored };
  }
}
