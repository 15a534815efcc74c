// An in-memory stand-in for the cluster's side of the route message set: answers table queries from a
// list of routes, tracks each worker's interest and pushes updates and withdrawals to the interested
// workers only. Tests and single-host harnesses use it where the cluster would speak MQTT.
import { ipBytes } from './address-map.ts';
import { parseClusterToWorker, parseWorkerToCluster } from './route-messages.ts';
import type { ClusterToWorker, RouteLink, ServiceRoute, WorkerToCluster, Coordinate } from './route-messages.ts';

export interface StaticRouteSourceOptions {
  /** Delay before each answer (ms); 0 answers in a later macrotask. */
  answerDelayMs?: number;
  /** No answers at all (a silent cluster). */
  silent?: boolean;
}

class WorkerLink implements RouteLink {
  readonly listeners = new Set<(m: ClusterToWorker) => void>();
  readonly interest = new Set<string>();
  constructor(private readonly source: StaticRouteSource, readonly workerId: string) {}
  send(msg: WorkerToCluster): void { this.source.receive(this, msg); }
  onMessage(listener: (m: ClusterToWorker) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  deliver(m: ClusterToWorker): void {
    // Through JSON and the parser, as over MQTT, so tests exercise the same validation.
    const parsed = parseClusterToWorker(JSON.parse(JSON.stringify(m)));
    for (const l of this.listeners) l(parsed);
  }
}

export class StaticRouteSource {
  private readonly routes = new Map<string, ServiceRoute>();
  private readonly links = new Map<string, WorkerLink>();
  private readonly timers = new Set<NodeJS.Timeout>();
  /** Every message received from workers, in order. */
  readonly received: { workerId: string; msg: WorkerToCluster }[] = [];
  readonly coordinates = new Map<string, Coordinate>();

  constructor(routes: ServiceRoute[] = [], private readonly opts: StaticRouteSourceOptions = {}) {
    for (const r of routes) this.routes.set(r.service_id, r);
  }

  link(workerId: string): RouteLink {
    let l = this.links.get(workerId);
    if (!l) this.links.set(workerId, (l = new WorkerLink(this, workerId)));
    return l;
  }

  interested(workerId: string): string[] {
    return [...(this.links.get(workerId)?.interest ?? [])];
  }

  receive(link: WorkerLink, raw: WorkerToCluster): void {
    const msg = parseWorkerToCluster(JSON.parse(JSON.stringify(raw)));
    this.received.push({ workerId: link.workerId, msg });
    switch (msg.type) {
      case 'table_query': {
        if (this.opts.silent) return;
        const route = [...this.routes.values()].find((r) => (msg.name !== undefined ? r.name === msg.name : hasAddress(r, msg.address ?? '')));
        this.later(() => link.deliver({ type: 'table_result', query_id: msg.query_id, route: route ?? null }));
        return;
      }
      case 'interest_add': link.interest.add(msg.service_id); return;
      case 'interest_remove': link.interest.delete(msg.service_id); return;
      case 'coordinate_report': this.coordinates.set(msg.worker_id, msg.coord); return;
    }
  }

  private later(f: () => void): void {
    const t = setTimeout(() => { this.timers.delete(t); f(); }, this.opts.answerDelayMs ?? 0);
    this.timers.add(t);
  }

  /** Replaces (or adds) a service and pushes it to every interested worker. */
  update(route: ServiceRoute): void {
    this.routes.set(route.service_id, route);
    for (const l of this.links.values()) if (l.interest.has(route.service_id)) l.deliver({ type: 'route_update', route });
  }

  /** Removes instances (or the whole service) and tells every interested worker. */
  withdraw(serviceId: string, instances?: number[]): void {
    const r = this.routes.get(serviceId);
    if (!r) return;
    if (instances === undefined) this.routes.delete(serviceId);
    else this.routes.set(serviceId, { ...r, instances: r.instances.filter((i) => !instances.includes(i.n)) });
    for (const l of this.links.values()) {
      if (l.interest.has(serviceId)) l.deliver({ type: 'route_withdraw', service_id: serviceId, ...(instances ? { instances } : {}) });
    }
  }

  /** Relays coordinates to every worker. */
  broadcastCoordinates(): void {
    const entries = [...this.coordinates].map(([worker_id, coord]) => ({ worker_id, coord }));
    for (const l of this.links.values()) l.deliver({ type: 'coordinates', entries });
  }

  close(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}

function hasAddress(r: ServiceRoute, a: string): boolean {
  const want = ipBytes(a);
  const ips = [r.rr_ip, r.rr_ip_v6, r.closest_ip, r.closest_ip_v6, ...r.instances.flatMap((i) => [i.instance_ip, i.instance_ip_v6])];
  return ips.some((ip) => ip !== null && ip.includes(':') === a.includes(':') && ipBytes(ip).every((x, k) => x === want[k]));
}
