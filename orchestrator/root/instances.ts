// Instances: creation with stable instance IPs, root scheduling (offer to clusters best first, the
// next one on a decline), lifecycle transitions with timestamps and reasons, cluster reports, route
// answers and route pushes to clusters that asked about a service, and the other clusters' workers
// as tunnel peers (in report answers, and pushed when they change).
import type { Logger } from '../mqtt/log.ts';
import { offerPlacement, pushPeers, pushRoute, removePlacement } from './cluster-client.ts';
import { PeerAnnouncer, RemotePeerSet, seesChange } from './remote-peers.ts';
import type { RemotePeer, RouteInfo } from '../root-cluster-messages.ts';
import { tunnelIdForSubnet } from '../worker/net/tunnel-identity.ts';
import type { AddressAllocator } from './addresses.ts';
import type { ClusterRegistry } from './clusters.ts';
import { canTransition, isInstanceState, isPlaced, type InstanceState } from './lifecycle.ts';
import type { Metrics } from './metrics.ts';
import { rankClusters, summarizeRejections } from './scheduler.ts';
import type { ClusterRecord, InstanceEvent, InstanceRecord, RootStore, ServiceRecord } from './store.ts';
import { parseIp } from '../descriptor/ip.ts';
import { serviceFullName } from '../names.ts';

export interface InstanceView {
  instance_n: number;
  state: InstanceState;
  reason: string;
  cluster_id: string | null;
  cluster_name: string | null;
  worker_id: string | null;
  instance_ip: string;
  instance_ip_v6: string;
  ns_ip: string | null;
  ns_ip_v6: string | null;
  created_at: string;
  updated_at: string;
  history: { state: InstanceState; reason: string; ts: string }[];
}

/** One entry of a cluster's report (docs/protocols.md). */
export interface ReportedInstance {
  service_id: string;
  instance_n: number;
  state: string;
  reason?: string;
  worker?: string;
  ts?: number;
  ns_ip?: string;
  ns_ip_v6?: string;
  tunnel_endpoint?: string;
}

const RETRYABLE: InstanceState[] = ['NO_CLUSTER_FOUND', 'NO_WORKER_CAPACITY', 'NO_QUALIFIED_WORKER'];

export class InstanceManager {
  /** Scheduling runs in flight, so close() can wait for them. */
  private readonly inflight = new Map<string, Promise<void>>();
  /** service id → clusters that asked for its route (and get pushes when it changes). */
  private readonly interest = new Map<string, Set<string>>();
  private closed = false;
  private readonly countDecision: (l?: Record<string, string>) => void;
  private readonly countTransition: (l?: Record<string, string>) => void;
  private readonly observeDecision: (s: number) => void;
  private readonly countPeerPush: (l?: Record<string, string>) => void;
  private readonly peers = new RemotePeerSet(() => this.scanRemotePeers());
  private readonly announcer: PeerAnnouncer;

  constructor(
    private readonly store: RootStore,
    private readonly addresses: AddressAllocator,
    private readonly clusters: ClusterRegistry,
    private readonly log: Logger,
    metrics: Metrics,
  ) {
    this.countDecision = metrics.counter('canopy_root_schedule_outcomes_total', 'Root scheduling outcomes');
    this.countTransition = metrics.counter('canopy_root_instance_transitions_total', 'Instance state transitions, by new state');
    this.observeDecision = metrics.histogram('canopy_root_schedule_decision_seconds', 'Time to rank clusters for one instance');
    this.countPeerPush = metrics.counter('canopy_root_peer_pushes_total', 'Pushes of remote tunnel peers to clusters, by outcome');
    this.announcer = new PeerAnnouncer(
      async (id) => {
        const c = this.clusters.get(id);
        if (c) await pushPeers(c, this.peers.forCluster(id));
      },
      (id, err) => {
        this.countPeerPush({ outcome: err === undefined ? 'ok' : 'failed' });
        // The cluster's next report answer carries the same list: a lost push only delays admission.
        if (err !== undefined) this.log.warn('peers push failed', { cluster: this.clusters.get(id)?.name ?? id, error: String(err) });
      },
    );
    metrics.gauge('canopy_root_instances', 'Instances by state', () =>
      [...store.countInstancesByState()].map(([state, n]) => [{ state }, n]));
  }

  /** Waits for scheduling in flight; no new scheduling starts afterwards. */
  async close(): Promise<void> {
    this.closed = true;
    this.announcer.close();
    await Promise.allSettled([...this.inflight.values()]);
  }

  view(i: InstanceRecord): InstanceView {
    return {
      instance_n: i.n,
      state: i.state,
      reason: i.reason,
      cluster_id: i.cluster_id,
      cluster_name: i.cluster_id ? (this.clusters.get(i.cluster_id)?.name ?? null) : null,
      worker_id: i.worker_id,
      instance_ip: i.instance_ip,
      instance_ip_v6: i.instance_ip_v6,
      ns_ip: i.ns_ip,
      ns_ip_v6: i.ns_ip_v6,
      created_at: new Date(i.created_at).toISOString(),
      updated_at: new Date(i.updated_at).toISOString(),
      history: this.store.instanceEvents(i.service_id, i.n).map((e) => ({ ...e, ts: new Date(e.ts).toISOString() })),
    };
  }

  /** Moves an instance to `to` if the lifecycle allows it; records the event. */
  private transition(i: InstanceRecord, to: InstanceState, reason: string, ts = Date.now(), patch: Partial<InstanceRecord> = {}): boolean {
    if (i.state !== to && !canTransition(i.state, to)) return false;
    if (i.state === 'RUNNING' || to === 'RUNNING') this.peers.invalidate();
    Object.assign(i, patch);
    const changed = i.state !== to;
    i.state = to;
    i.reason = reason;
    i.updated_at = ts;
    this.store.transaction(() => {
      this.store.updateInstance(i);
      if (changed) this.store.addInstanceEvent(i.service_id, i.n, { state: to, reason, ts } satisfies InstanceEvent);
    });
    if (changed) {
      this.countTransition({ state: to });
      this.log.info('instance state', { service_id: i.service_id, n: i.n, state: to, reason });
    }
    return true;
  }

  /** Creates instance n of a service (REQUESTED, with its instance IPs) and starts scheduling it. */
  deploy(s: ServiceRecord, reason: string): InstanceRecord {
    const now = Date.now();
    const inst = this.store.transaction(() => {
      const fresh = this.store.service(s.id) as ServiceRecord;
      const n = fresh.next_n;
      fresh.next_n = n + 1;
      this.store.updateService(fresh);
      s.next_n = fresh.next_n;
      const i: InstanceRecord = {
        service_id: s.id, n, state: 'REQUESTED', reason, cluster_id: null, worker_id: null,
        instance_ip: this.addresses.allocate(4, 'instance', s.id, n),
        instance_ip_v6: this.addresses.allocate(6, 'instance', s.id, n),
        ns_ip: null, ns_ip_v6: null, tunnel_endpoint: null, created_at: now, updated_at: now,
      };
      this.store.insertInstance(i);
      this.store.addInstanceEvent(s.id, n, { state: 'REQUESTED', reason, ts: now });
      return i;
    });
    this.countTransition({ state: 'REQUESTED' });
    this.startScheduling(s.id, inst.n);
    return inst;
  }

  private startScheduling(serviceId: string, n: number): void {
    const key = `${serviceId}/${n}`;
    if (this.closed || this.inflight.has(key)) return;
    const run = this.schedule(serviceId, n)
      .catch((err: unknown) => this.log.error('scheduling failed', { service_id: serviceId, n, error: String(err) }))
      .finally(() => this.inflight.delete(key));
    this.inflight.set(key, run);
  }

  /** Offers a REQUESTED instance to the qualifying clusters, best first, until one accepts. */
  private async schedule(serviceId: string, n: number): Promise<void> {
    const s = this.store.service(serviceId);
    const i = this.store.instance(serviceId, n);
    if (!s || !i || i.state !== 'REQUESTED') return;
    const spec = s.spec;
    const demand = { virtualization: spec.virtualization, vcpus: spec.vcpus, memory: spec.memory, vgpus: spec.vgpus, constraints: spec.constraints };
    const t0 = performance.now();
    const ranking = rankClusters(demand, this.clusters.views());
    this.observeDecision((performance.now() - t0) / 1000);
    if (ranking.candidates.length === 0) {
      this.countDecision({ outcome: 'NO_CLUSTER_FOUND' });
      this.transition(i, 'NO_CLUSTER_FOUND', `no cluster qualifies: ${summarizeRejections(ranking.rejected)}`);
      return;
    }
    const declines: string[] = [];
    let capacity = false;
    let declined = false;
    const [app, appns] = this.appName(s);
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
        const answer = await offerPlacement(c, offer);
        if (answer.accepted) {
          const now = this.store.instance(serviceId, n);
          if (now && now.cluster_id === c.id && isPlaced(now.state)) return; // its report came first
          if (!now || now.state !== 'REQUESTED') {
            // Undeployed while the offer was out: take it back from the cluster.
            await removePlacement(c, serviceId, n).catch(() => undefined);
            return;
          }
          this.clusters.reserve(c.id, demand);
          const tried = declines.length ? `; before: ${declines.join('; ')}` : '';
          this.countDecision({ outcome: 'CLUSTER_SCHEDULED' });
          this.transition(now, 'CLUSTER_SCHEDULED', `placed on cluster ${c.name} (worker ${answer.worker_id})${tried}`, Date.now(), {
            cluster_id: c.id, worker_id: answer.worker_id,
          });
          return;
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
    const current = this.store.instance(serviceId, n);
    if (current?.state === 'REQUESTED') this.transition(current, outcome, declines.join('; '));
  }

  private appName(s: ServiceRecord): [string, string] {
    const a = this.store.application(s.app_id);
    return [a?.name ?? '', a?.namespace ?? ''];
  }

  /** Gives unplaced instances another chance (a cluster registered or came back). */
  retryUnplaced(reason: string): void {
    for (const i of this.store.instancesInState(RETRYABLE)) {
      if (this.transition(i, 'REQUESTED', reason)) this.startScheduling(i.service_id, i.n);
    }
  }

  /** Resumes scheduling that a root restart interrupted. */
  resume(): void {
    for (const i of this.store.instancesInState(['REQUESTED'])) this.startScheduling(i.service_id, i.n);
  }

  /** Undeploys one instance: UNDEPLOYED at once, instance IPs released, the cluster told in the background. */
  undeploy(i: InstanceRecord, reason: string): void {
    const cluster = i.cluster_id ? this.clusters.get(i.cluster_id) : undefined;
    const wasPlaced = isPlaced(i.state);
    if (!this.transition(i, 'UNDEPLOYED', reason)) return;
    this.addresses.releaseInstance(i.service_id, i.n);
    if (cluster && wasPlaced) {
      removePlacement(cluster, i.service_id, i.n).catch((err: unknown) =>
        // The cluster's next report lists the instance and root's answer asks again (see applyReport).
        this.log.warn('could not tell cluster to remove an instance', { cluster: cluster.name, service_id: i.service_id, n: i.n, error: String(err) }));
    }
    this.pushIfInterested(i.service_id);
  }

  undeployAll(serviceId: string, reason: string): void {
    for (const i of this.store.listInstances(serviceId)) if (i.state !== 'UNDEPLOYED') this.undeploy(i, reason);
  }

  /**
   * Applies the per-instance part of a cluster report. Returns the instances the cluster should
   * remove: ones root no longer has, or has undeployed, or that are placed on another cluster.
   */
  applyReport(c: ClusterRecord, entries: ReportedInstance[]): { undeploy: { service_id: string; instance_n: number }[]; ignored: number } {
    const undeploy: { service_id: string; instance_n: number }[] = [];
    const changed = new Set<string>();
    let ignored = 0;
    const now = Date.now();
    for (const e of entries) {
      const i = this.store.instance(e.service_id, e.instance_n);
      const gone = e.state === 'UNDEPLOYED' || e.state === 'COMPLETED' || e.state === 'FAILED';
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
      if (i.state === 'REQUESTED' && i.cluster_id === null && isPlaced(e.state)) {
        // The cluster reported before root read its answer to the offer: it has the instance.
        this.transition(i, 'CLUSTER_SCHEDULED', `placed on cluster ${c.name} (worker ${e.worker ?? 'unknown'})`, ts, { cluster_id: c.id });
      }
      const before = JSON.stringify([i.state, i.worker_id, i.ns_ip, i.ns_ip_v6, i.tunnel_endpoint]);
      const ok = this.transition(i, e.state, e.reason?.slice(0, 500) || `reported by cluster ${c.name}`, ts, {
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
    }
    for (const id of changed) this.pushIfInterested(id, c.id);
    this.announcePeers(c.id);
    return { undeploy, ignored };
  }

  /**
   * Tells every other active cluster at once when the remote-peer set changed (a worker ran its
   * first instance, or its last one stopped): its workers then admit a new caller within a round
   * trip instead of at their cluster's next report. `reporter` gets the list in its report answer.
   * Pushes run in the background; the report answer never waits for them.
   */
  private announcePeers(reporter: string): void {
    const changed = this.peers.takeChanges();
    if (changed.size === 0 || this.closed) return;
    for (const c of this.clusters.list()) {
      if (c.id === reporter || !this.clusters.isActive(c) || !seesChange(c.id, changed)) continue;
      this.announcer.announce(c.id);
    }
  }

  /** Route answer for a service or instance address; records the asking cluster's interest. */
  route(address: string, askingCluster: string | null): RouteInfo | undefined {
    const ip = parseIp(address);
    const owner = ip && this.store.addressOwner(ip.text);
    if (!owner) return undefined;
    if (askingCluster) {
      const set = this.interest.get(owner.service_id) ?? new Set<string>();
      set.add(askingCluster);
      this.interest.set(owner.service_id, set);
    }
    return this.routeInfo(owner.service_id);
  }

  private routeInfo(serviceId: string): RouteInfo | undefined {
    const s = this.store.service(serviceId);
    if (!s) return undefined;
    const [app, appns] = this.appName(s);
    return {
      service_id: s.id,
      name: serviceFullName(app, appns, s.name, s.namespace),
      rr_ip: s.rr_ip, rr_ip_v6: s.rr_ip_v6, closest_ip: s.closest_ip, closest_ip_v6: s.closest_ip_v6,
      // Only instances a worker can reach: a route entry without its namespace address, worker or
      // tunnel endpoint (not reported yet) would make the cluster reject the whole route.
      instances: this.store.listInstances(s.id).filter((i) => i.state === 'RUNNING' && i.ns_ip && i.worker_id && i.tunnel_endpoint).map((i) => {
        const tunnelId = this.tunnelIdOf(i.cluster_id, i.worker_id);
        return {
          n: i.n, instance_ip: i.instance_ip, instance_ip_v6: i.instance_ip_v6, ns_ip: i.ns_ip, ns_ip_v6: i.ns_ip_v6,
          worker_id: i.worker_id, cluster_id: i.cluster_id, tunnel_endpoint: i.tunnel_endpoint,
          ...(tunnelId === undefined ? {} : { tunnel_id: tunnelId }),
        };
      }),
    };
  }

  /** A worker's tunnel sender id, from the subnet root gave it (undefined if it has none). */
  private tunnelIdOf(clusterId: string | null, workerId: string | null): number | undefined {
    const subnet = clusterId && workerId ? this.store.subnet(clusterId, workerId) : undefined;
    if (!subnet) return undefined;
    try {
      return tunnelIdForSubnet(subnet.subnet_v4);
    } catch {
      return undefined;
    }
  }

  /**
   * The workers of other clusters that run instances, for `askingCluster`'s tunnel peers: a worker
   * there may call one of this cluster's instances, and the answer goes back to it over the tunnel.
   * Only workers with running instances can be callers, so these are all a cluster needs.
   */
  remotePeers(askingCluster: string): RemotePeer[] {
    return this.peers.forCluster(askingCluster);
  }

  /** A worker got or gave back its subnet: its tunnel id, and so the remote-peer set, may change. */
  subnetsChanged(): void {
    this.peers.invalidate();
  }

  /** Every cluster's workers that run instances: one scan of RUNNING instances, cached by `peers`. */
  private scanRemotePeers(): RemotePeer[] {
    const byId = new Map<number, RemotePeer>();
    for (const i of this.store.instancesInState(['RUNNING'])) {
      if (!i.cluster_id || !i.worker_id || !i.tunnel_endpoint) continue;
      const tunnelId = this.tunnelIdOf(i.cluster_id, i.worker_id);
      if (tunnelId === undefined || byId.has(tunnelId)) continue;
      byId.set(tunnelId, { worker_id: i.worker_id, cluster_id: i.cluster_id, tunnel_id: tunnelId, tunnel_endpoint: i.tunnel_endpoint });
    }
    return [...byId.values()].sort((a, b) => a.tunnel_id - b.tunnel_id);
  }

  /** Pushes a service's route to the clusters that asked about it (except the one that reported). */
  private pushIfInterested(serviceId: string, except?: string): void {
    const set = this.interest.get(serviceId);
    if (!set || set.size === 0) return;
    const route = this.routeInfo(serviceId) ?? {
      service_id: serviceId, name: '', rr_ip: '', rr_ip_v6: '', closest_ip: '', closest_ip_v6: '', instances: [],
    };
    for (const id of set) {
      const c = id === except ? undefined : this.clusters.get(id);
      if (!c || !this.clusters.isActive(c)) continue;
      pushRoute(c, route).catch((err: unknown) =>
        this.log.warn('route push failed', { cluster: c.name, service_id: serviceId, error: String(err) }));
    }
  }

  /** Forgets a deleted service's interest after telling interested clusters that it is gone. */
  forget(serviceId: string): void {
    this.pushIfInterested(serviceId);
    this.interest.delete(serviceId);
  }
}
