// Route resolution for the semantic table (SPEC §5.2–5.3): the route cache with interest, the query
// client (by address for the datapath, by name for DNS; concurrent askers share one query), the
// negative cache, the receiver of the cluster's pushed updates and withdrawals, and this worker's
// coordinate reports. The translation hot path (semantic-table.ts) only asks it about addresses no
// service is known for, and touches the services its flows use.
import { LRUCache } from 'lru-cache';
import { AddressMap, Prefix, ipString } from './address-map.ts';
import type { RttEstimator } from './rtt.ts';
import type { ServiceRecord, ServiceTable } from './service-table.ts';
import type { ClusterToWorker, RouteLink, ServiceRoute } from './route-messages.ts';
import { Verdict } from '../netstack/table.ts';

/** The semantic layer's event counters (/metrics as canopy_proxy_events_total). */
export function newSemanticStats() {
  return {
    newFlows: 0, flowHits: 0, queries: 0, queryTimeouts: 0, pendingVerdicts: 0,
    dropNoSource: 0, dropNoRoute: 0, dropNoInstance: 0, dropNotService: 0, badMessages: 0,
    /** New flows whose caller port was changed because their translated tuple was taken. */
    portRemaps: 0,
    /** Packets held because their service had no instance yet (sent when the route gains one). */
    awaitingInstance: 0,
    /** Pushed route updates and withdrawals applied (canopy_proxy_route_updates_total). */
    routeUpdates: 0,
  };
}
export type SemanticStats = ReturnType<typeof newSemanticStats>;

export interface RouteResolverOptions {
  workerId: string;
  link: RouteLink;
  services: ServiceTable;
  estimator: RttEstimator;
  stats: SemanticStats;
  /** Destinations in these prefixes are service addresses worth a route query; others are dropped. */
  servicePrefixes?: string[];
  maxServices?: number;
  serviceIdleMs?: number;
  queryTimeoutMs?: number;
  coordinateReportMs?: number;
  negativeMs?: number;
  log: (rec: Record<string, unknown>) => void;
}

interface PendingQuery {
  id: string;
  started: number;
  address: Uint8Array | null;
  name: string | null;
  waiters: ((r: ServiceRoute | null) => void)[];
}

export class RouteResolver {
  /** Bumped whenever a route is installed, replaced or removed (the DNS answer cache watches it). */
  routesVersion = 0;
  /** Wall clock (ms) of the last change the cluster pushed (counted in stats.routeUpdates): how the
   *  failover benchmark sees when a caller's worker got the new route. */
  lastRouteUpdateMs = 0;
  private readonly o: RouteResolverOptions;
  private readonly services: ServiceTable;
  private readonly stats: SemanticStats;
  private readonly cache: LRUCache<string, ServiceRecord>;
  private readonly pendingByAddr = new AddressMap<PendingQuery>();
  private readonly pendingByName = new Map<string, PendingQuery>();
  private readonly pendingById = new Map<string, PendingQuery>();
  private readonly negAddr = new AddressMap<number>();
  private readonly negName = new Map<string, number>();
  private readonly prefixes: Prefix[];
  private readonly readyListeners: (() => void)[] = [];
  private readonly unsubscribe: () => void;
  private readonly queryTimeoutMs: number;
  private readonly negativeMs: number;
  private nextQuery = 1;
  private lastReport = 0;
  /** How many peers the last report carried a measurement for. */
  private reportedPeers = 0;
  private readyQueued = false;
  private closed = false;

  constructor(o: RouteResolverOptions) {
    this.o = o;
    this.services = o.services;
    this.stats = o.stats;
    this.prefixes = (o.servicePrefixes ?? ['10.30.0.0/16', 'fdc0:30::/32']).map((p) => new Prefix(p));
    this.queryTimeoutMs = o.queryTimeoutMs ?? 2000;
    this.negativeMs = o.negativeMs ?? 3000;
    this.cache = new LRUCache<string, ServiceRecord>({
      max: o.maxServices ?? 10_000,
      ttl: o.serviceIdleMs ?? 300_000,
      updateAgeOnGet: true,
      dispose: (svc, id, reason) => {
        if (reason === 'set') return;
        this.routesVersion++;
        this.services.remove(svc);
        this.o.link.send({ type: 'interest_remove', service_id: id });
        this.o.log({ level: 'debug', msg: 'route cache dropped service', service_id: id, reason });
      },
    });
    // Results are handled in a later microtask, so a link that answers synchronously inside send()
    // never fires the ready listener before the datapath has queued the packet.
    this.unsubscribe = o.link.onMessage((m) => queueMicrotask(() => this.receive(m)));
  }

  /** Called (in a microtask, coalesced) when routes arrived or changed: retry what waited. */
  onReady(listener: () => void): void {
    this.readyListeners.push(listener);
  }

  /** A flow used this service at coarse second `now`: keeps it in the cache (once per second). */
  touch(svc: ServiceRecord, now: number): void {
    if (svc.touched !== now) {
      svc.touched = now;
      this.cache.get(svc.id);
    }
  }

  /** A destination no known service has: Drop, or Pending while a query for it runs. */
  resolveAddress(b: Uint8Array, off: number, fam: 4 | 6): Verdict {
    if (!this.prefixes.some((p) => p.contains(b, off, fam))) { this.stats.dropNotService++; return Verdict.Drop; }
    const neg = this.negAddr.get(b, off, fam);
    if (neg !== undefined) {
      if (neg > Date.now()) { this.stats.dropNoRoute++; return Verdict.Drop; }
      this.negAddr.delete(b.slice(off, off + (fam === 4 ? 4 : 16)));
    }
    this.stats.pendingVerdicts++;
    if (this.pendingByAddr.get(b, off, fam)) return Verdict.Pending;
    const addr = b.slice(off, off + (fam === 4 ? 4 : 16));
    const q = this.startQuery(addr, null);
    this.o.link.send({ type: 'table_query', query_id: q.id, address: ipString(addr, 0, fam) });
    return Verdict.Pending;
  }

  /** A packet to a known service that has no instance now: Pending. The service is cached, so this
   *  worker has declared interest and the cluster's push of its next instance retries the packet. */
  awaitInstance(): Verdict {
    this.stats.awaitingInstance++;
    return Verdict.Pending;
  }

  /** The route of a full name `<app>.<appns>.<svc>.<svcns>`: at once when cached, else after one query
   *  (concurrent callers share it); null when there is no such service or the cluster is silent. */
  resolveName(name: string, now: number): ServiceRoute | null | Promise<ServiceRoute | null> {
    const svc = this.services.byName.get(name);
    if (svc) { this.touch(svc, now); return svc.route; }
    const neg = this.negName.get(name);
    if (neg !== undefined && neg > Date.now()) return null;
    let q = this.pendingByName.get(name);
    if (!q) {
      q = this.startQuery(null, name);
      this.o.link.send({ type: 'table_query', query_id: q.id, name });
    }
    const pending = q;
    return new Promise((resolve) => pending.waiters.push(resolve));
  }

  /** After the link to the cluster comes back (a restarted cluster has forgotten who wants what):
   *  declares interest again in every cached service. */
  resendInterest(): void {
    for (const id of this.services.byId.keys()) this.o.link.send({ type: 'interest_add', service_id: id });
  }

  get pendingQueries(): number {
    return this.pendingById.size;
  }

  private startQuery(address: Uint8Array | null, name: string | null): PendingQuery {
    const q: PendingQuery = { id: `${this.o.workerId}-${this.nextQuery++}`, started: Date.now(), address, name, waiters: [] };
    this.pendingById.set(q.id, q);
    if (address) this.pendingByAddr.set(address, q);
    if (name) this.pendingByName.set(name, q);
    this.stats.queries++;
    return q;
  }

  private finishQuery(q: PendingQuery, route: ServiceRoute | null): void {
    this.pendingById.delete(q.id);
    if (q.address && this.pendingByAddr.getBytes(q.address) === q) this.pendingByAddr.delete(q.address);
    if (q.name && this.pendingByName.get(q.name) === q) this.pendingByName.delete(q.name);
    // An answer that does not cover the address asked for counts as a miss (no query storm).
    if (!route || (q.address && !this.services.byAddress.getBytes(q.address))) {
      if (q.address) this.negAddr.set(q.address, Date.now() + this.negativeMs);
      if (q.name) this.negName.set(q.name, Date.now() + this.negativeMs);
    }
    for (const w of q.waiters) w(route);
    this.signalReady();
  }

  private signalReady(): void {
    if (this.readyQueued) return;
    this.readyQueued = true;
    queueMicrotask(() => {
      this.readyQueued = false;
      for (const l of this.readyListeners) l();
    });
  }

  private receive(m: ClusterToWorker): void {
    if (this.closed) return;
    try {
      switch (m.type) {
        case 'table_result': {
          const q = this.pendingById.get(m.query_id);
          if (!q) { this.o.log({ level: 'debug', msg: 'late or unknown table result', query_id: m.query_id }); return; }
          this.finishQuery(q, m.route ? this.install(m.route).route : null);
          return;
        }
        case 'route_update':
          // Pushed updates replace what we use at once; a service we never asked for is not cached.
          if (this.services.byId.has(m.route.service_id)) {
            const before = this.services.byId.get(m.route.service_id)?.route.instances.length ?? 0;
            this.install(m.route);
            this.countPush();
            // The moment a caller can reach a new instance (the deploy bench reads it from the log).
            if (m.route.instances.length !== before) {
              this.o.log({ level: 'info', msg: 'route changed', service_id: m.route.service_id, instances: m.route.instances.length });
            }
            this.signalReady();
          }
          return;
        case 'route_withdraw': {
          const svc = this.services.byId.get(m.service_id);
          if (!svc) return;
          if (m.instances === undefined) this.cache.delete(m.service_id);
          else this.services.withdraw(m.service_id, m.instances);
          this.routesVersion++;
          this.countPush();
          this.o.log({ level: 'info', msg: 'route withdrawn', service_id: m.service_id, instances: m.instances ?? null });
          this.signalReady();
          return;
        }
        case 'coordinates':
          for (const e of m.entries) this.o.estimator.setCoordinate(e.worker_id, e.coord);
          return;
      }
    } catch (err) {
      this.stats.badMessages++;
      this.o.log({ level: 'warn', msg: 'route message not applied', type: m.type, error: String(err) });
    }
  }

  private countPush(): void {
    this.stats.routeUpdates++;
    this.lastRouteUpdateMs = Date.now();
  }

  private install(route: ServiceRoute): ServiceRecord {
    const isNew = !this.services.byId.has(route.service_id);
    const svc = this.services.apply(route);
    this.routesVersion++;
    if (isNew) {
      this.cache.set(route.service_id, svc);
      this.o.link.send({ type: 'interest_add', service_id: route.service_id });
    }
    return svc;
  }

  /** Once a second: idle services leave the cache, silent queries fail, coordinates are reported. */
  housekeeping(): void {
    const now = Date.now();
    this.cache.purgeStale();
    for (const q of [...this.pendingById.values()]) {
      if (now - q.started > this.queryTimeoutMs) {
        this.stats.queryTimeouts++;
        this.o.log({ level: 'warn', msg: 'route query timed out', query_id: q.id, address: q.address && ipString(q.address), name: q.name });
        this.finishQuery(q, null);
      }
    }
    for (const [k, t] of this.negName) if (t <= now) this.negName.delete(k);
    const every = this.o.coordinateReportMs ?? 10_000;
    // A peer measured for the first time is reported at once: until the cluster has the measurement,
    // it places `connectivity` constraints on coordinate estimates, which are loose while they train.
    if (every > 0 && (now - this.lastReport >= every || this.o.estimator.measured.size > this.reportedPeers)) {
      this.lastReport = now;
      this.reportCoordinate();
    }
  }

  /** Sends this worker's Vivaldi coordinate and direct RTTs to the cluster, which relays coordinates. */
  reportCoordinate(): void {
    const e = this.o.estimator;
    const rtt_ms: Record<string, number> = {};
    for (const [w, ms] of e.measured) rtt_ms[w] = Math.round(ms * 1000) / 1000;
    this.reportedPeers = e.measured.size;
    this.o.link.send({ type: 'coordinate_report', worker_id: this.o.workerId, coord: e.self.coordinate(), rtt_ms });
  }

  /** Stops listening; callers still waiting for a name get null. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe();
    for (const q of [...this.pendingById.values()]) {
      this.pendingById.delete(q.id);
      for (const w of q.waiters) w(null);
    }
  }
}
