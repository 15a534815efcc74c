// Routes for the cluster's workers: a service's route from its instances here (or root's, for a
// service elsewhere), pushed on the service's topic when it changes; workers' interests and table
// queries (asking root for addresses this cluster does not know); and the Vivaldi coordinates workers
// report, relayed to the others.
import { topics } from '../mqtt/topics.ts';
import {
  parseServiceRoute, type ClusterToWorker, type Coordinate, type ServiceRoute, type TableQuery, type WorkerToCluster,
} from '../../proxy/route-messages.ts';
import type { ClusterContext } from './context.ts';
import { buildRoute } from './placements.ts';
import { remoteWorkerName } from './peer-distribution.ts';
import type { RootClient } from './root-client.ts';

export class RouteService {
  /** service id → workers that said they use it (and get its route when it changes). */
  private readonly interest = new Map<string, Set<string>>();
  /** Routes of services outside this cluster, as root answered or pushed them. */
  private readonly rootRoutes = new Map<string, ServiceRoute>();
  /** When a service's route was last pushed because a worker (re)announced interest. */
  private readonly lastPush = new Map<string, number>();
  readonly coords = new Map<string, Coordinate>();
  /** Each worker's last direct tunnel RTTs (ms) to the others, from its coordinate reports. */
  readonly measured = new Map<string, Readonly<Record<string, number>>>();
  private coordsDirty = false;

  constructor(
    private readonly c: ClusterContext,
    private readonly root: RootClient | undefined,
    private readonly tunnelIdOf: (workerId: string) => number | undefined,
  ) {}

  routeOf(serviceId: string): ServiceRoute | undefined {
    const local = buildRoute(this.c.index.instancesOf(serviceId), (w) => this.c.registry.workers.get(w)?.hb?.tunnel_endpoint, this.c.clusterId(),
      (w) => this.tunnelIdOf(w));
    return local ?? this.rootRoutes.get(serviceId);
  }

  pushRoute(serviceId: string): void {
    const route = this.routeOf(serviceId);
    const msg: ClusterToWorker = route ? { type: 'route_update', route } : { type: 'route_withdraw', service_id: serviceId };
    this.c.publish(topics.serviceUpdates(serviceId), JSON.stringify(msg));
  }

  interestedIn(serviceId: string): string[] {
    return [...(this.interest.get(serviceId) ?? [])];
  }

  onInterest(workerId: string, msg: Extract<WorkerToCluster, { type: 'interest_add' | 'interest_remove' }>): void {
    let set = this.interest.get(msg.service_id);
    if (msg.type === 'interest_add') {
      if (!set) this.interest.set(msg.service_id, (set = new Set()));
      const fresh = !set.has(workerId);
      set.add(workerId);
      const route = this.routeOf(msg.service_id);
      if (!route) return;
      // A worker re-announces its interests after reconnecting: bring it up to date (one
      // push per service per second, however many workers reconnect at once).
      const now = Date.now();
      if (now - (this.lastPush.get(msg.service_id) ?? 0) >= 1000) {
        this.lastPush.set(msg.service_id, now);
        this.pushRoute(msg.service_id);
      } else if (fresh && route.instances.length > 0) {
        // A worker that just installed this route from a table answer subscribed to its updates only
        // then: an instance that started in between (a caller asking while the service is deployed)
        // was pushed before it listened. Within the push limit, bring that one worker up to date on
        // its own topic.
        this.c.publish(topics.tableQueryResult(workerId), JSON.stringify({ type: 'route_update', route } satisfies ClusterToWorker));
      }
    } else if (set) {
      set.delete(workerId);
      if (set.size === 0) this.interest.delete(msg.service_id);
    }
  }

  onCoordinate(workerId: string, coord: Coordinate, rttMs?: Readonly<Record<string, number>>): void {
    const prev = this.coords.get(workerId);
    if (rttMs) this.measured.set(workerId, rttMs);
    // Heartbeats repeat the coordinate every second: relay only a change.
    if (prev && prev.error === coord.error && prev.height === coord.height && prev.vec[0] === coord.vec[0] && prev.vec[1] === coord.vec[1]) return;
    this.coords.set(workerId, coord);
    this.coordsDirty = true;
  }

  forgetWorker(workerId: string): void {
    this.coords.delete(workerId);
    this.measured.delete(workerId);
  }

  private findLocal(q: TableQuery): string | undefined {
    for (const ci of this.c.index.values()) {
      const s = ci.offer.service;
      if (q.name !== undefined) {
        if (`${s.app}.${s.appns}.${s.svc}.${s.svcns}`.toLowerCase() === q.name) return s.service_id;
        continue;
      }
      const a = q.address;
      if (a === s.rr_ip || a === s.closest_ip || a === s.rr_ip_v6?.toLowerCase() || a === s.closest_ip_v6?.toLowerCase()
        || a === ci.offer.instance_ip || a === ci.offer.instance_ip_v6?.toLowerCase()) return s.service_id;
    }
    for (const r of this.rootRoutes.values()) {
      if (q.name !== undefined ? r.name === q.name
        : [r.rr_ip, r.rr_ip_v6, r.closest_ip, r.closest_ip_v6, ...r.instances.flatMap((i) => [i.instance_ip, i.instance_ip_v6])].includes(q.address ?? '')) {
        return r.service_id;
      }
    }
    return undefined;
  }

  async onTableQuery(workerId: string, q: TableQuery): Promise<void> {
    this.c.counters.queries++;
    let route: ServiceRoute | null = null;
    const sid = this.findLocal(q);
    if (sid) {
      route = this.routeOf(sid) ?? null;
    } else if (q.address && this.root?.registration) {
      try {
        const answer = await this.root.route(q.address);
        if (answer !== undefined) {
          route = this.qualified(parseServiceRoute(answer));
          this.rootRoutes.set(route.service_id, route);
          // Placed here while root answered (a caller asking as the service is deployed): ours is newer.
          route = this.routeOf(route.service_id) ?? route;
        }
      } catch (e) {
        this.c.log.warn('route query to root failed', { address: q.address, error: (e as Error).message });
      }
    }
    const result: ClusterToWorker = { type: 'table_result', query_id: q.query_id, route };
    this.c.publish(topics.tableQueryResult(workerId), JSON.stringify(result));
  }

  /** POST /api/routes: root pushes a change of a service outside this cluster. */
  routeFromRoot(body: unknown): void {
    const route = this.qualified(parseServiceRoute(body));
    this.rootRoutes.set(route.service_id, route);
    if (this.interest.has(route.service_id) || this.c.index.instancesOf(route.service_id).length === 0) {
      this.c.publish(topics.serviceUpdates(route.service_id), JSON.stringify({ type: 'route_update', route } satisfies ClusterToWorker));
    }
  }

  /** A route from root as this cluster's workers see it: other clusters' workers by remoteWorkerName. */
  private qualified(route: ServiceRoute): ServiceRoute {
    const own = this.c.clusterId();
    if (route.instances.every((i) => !i.cluster_id || i.cluster_id === own)) return route;
    return {
      ...route,
      instances: route.instances.map((i) => (!i.cluster_id || i.cluster_id === own ? i : { ...i, worker_id: remoteWorkerName(i.worker_id, i.cluster_id) })),
    };
  }

  relayCoordinates(): void {
    if (!this.coordsDirty) return;
    this.coordsDirty = false;
    const entries = [...this.coords].map(([worker_id, coord]) => ({ worker_id, coord }));
    const msg = JSON.stringify({ type: 'coordinates', entries } satisfies ClusterToWorker);
    for (const w of this.coords.keys()) if (this.c.registry.workers.get(w)?.alive) this.c.publish(topics.coordinatePeers(w), msg);
  }
}
