// The semantic layer behind netstack's TranslationTable: picks an instance per new flow by the policy
// of the service address dialled, keeps the flow on it, rewrites replies so the caller sees the address
// it dialled, and resolves unknown service addresses through the cluster (route cache with interest).
//
// Translation (A on this worker dials service address S, the policy picks B):
//   outbound A_ns→S        ⇒ A's instance IP IA → B_ns; Tunnel to B's worker (Local when B is here)
//   reply, B remote:  inbound IB→A_ns (or →IA)  ⇒ S→A_ns        (reverse flow, src rewrite)
//   reply, B local:   outbound B_ns→IA          ⇒ S→A_ns, Local (reverse flow, both rewritten)
// Every new flow records both entries, instance-IP dials too. When the reverse key is held by another
// flow (one caller port to two addresses of one instance), A's source port is changed, NAT-style, and
// changed back on the replies.
// On B's worker, a packet arriving from worker P for a local instance records a return flow, so B's
// replies go back to P with B's instance IP as source without any route query; that worker rewrites an
// instance-IP destination of its own instance to the namespace address.
import { LRUCache } from 'lru-cache';
import { AddressMap, Prefix, ipBytes, ipString } from './address-map.ts';
import { FlowTable, FLOW_VALUE_WORDS } from './flow-table.ts';
import { RttEstimator, type RttSource } from './rtt.ts';
import { AddrKind, InstanceRecord, ServiceTable, type ServiceRecord } from './service-table.ts';
import type { ClusterToWorker, RouteLink, ServiceRoute } from './route-messages.ts';
import { Proto, Verdict, type PacketMeta, type Rewrite, type TranslationTable } from '../netstack/table.ts';

const W = FLOW_VALUE_WORDS;
const FWD = 1, REV = 2, RET = 3;

export interface LocalInstance {
  ns_ip: string | null;
  ns_ip_v6: string | null;
  instance_ip: string | null;
  instance_ip_v6: string | null;
  service_id?: string;
  n?: number;
}

export interface SemanticTableOptions {
  workerId: string;
  link: RouteLink;
  rtt: RttSource;
  /** Destinations in these prefixes are service addresses worth a route query; others are dropped. */
  servicePrefixes?: string[];
  /** Worker id → tunnel peer number used in Rewrite.peer. Default: numbers handed out from 1. */
  peerOf?: (workerId: string) => number;
  flowIdleSeconds?: number;
  maxFlows?: number;
  /** Services kept in the route cache, and how long an unused one stays. */
  maxServices?: number;
  serviceIdleMs?: number;
  queryTimeoutMs?: number;
  /** How often this worker reports its coordinate and measurements to the cluster (0: never). */
  coordinateReportMs?: number;
  /** How long a "no such service" answer is remembered. */
  negativeMs?: number;
  log?: (rec: Record<string, unknown>) => void;
}

export interface PeerInfo { peer: number; workerId: string; endpoint: string }

interface PendingQuery {
  id: string;
  started: number;
  address: Uint8Array | null;
  name: string | null;
  waiters: ((r: ServiceRoute | null) => void)[];
}

export class SemanticTable implements TranslationTable {
  readonly services: ServiceTable;
  readonly flows: FlowTable;
  readonly estimator: RttEstimator;
  readonly stats = {
    newFlows: 0, flowHits: 0, queries: 0, queryTimeouts: 0, pendingVerdicts: 0,
    dropNoSource: 0, dropNoRoute: 0, dropNoInstance: 0, dropNotService: 0, badMessages: 0,
    /** New flows whose caller port was changed because their translated tuple was taken. */
    portRemaps: 0,
  };
  private readonly localsByNs = new AddressMap<InstanceRecord>();
  private readonly localsByIp = new AddressMap<InstanceRecord>();
  private readonly cache: LRUCache<string, ServiceRecord>;
  private readonly pendingByAddr = new AddressMap<PendingQuery>();
  private readonly pendingByName = new Map<string, PendingQuery>();
  private readonly pendingById = new Map<string, PendingQuery>();
  private readonly negAddr = new AddressMap<number>();
  private readonly negName = new Map<string, number>();
  private readonly prefixes: Prefix[];
  private readonly readyListeners: (() => void)[] = [];
  private readonly peerListeners: ((p: PeerInfo) => void)[] = [];
  private readonly peers = new Map<string, PeerInfo>();
  private readonly peerOf: (workerId: string) => number;
  /** Our own tunnel id: the datapath hands Local packets to inbound() with it as fromPeer. */
  private readonly selfPeer: number;
  private readonly unsubscribe: () => void;
  private readonly timer: NodeJS.Timeout;
  private readonly queryTimeoutMs: number;
  private readonly negativeMs: number;
  private readonly log: (rec: Record<string, unknown>) => void;
  /** Bumped whenever a route is installed, replaced or removed (the DNS answer cache watches it). */
  routesVersion = 0;
  private nextQuery = 1;
  private lastReport = 0;
  private nextPeer = 1;
  private readyQueued = false;
  private closed = false;
  private readonly distance = (workerId: string): number => this.estimator.estimate(workerId);

  constructor(private readonly opts: SemanticTableOptions) {
    const given = opts.peerOf;
    this.peerOf = (id) => {
      let p = this.peers.get(id);
      if (!p) {
        p = { peer: given ? given(id) : this.nextPeer++, workerId: id, endpoint: '' };
        this.peers.set(id, p);
      }
      return p.peer;
    };
    this.services = new ServiceTable(opts.workerId, this.peerOf);
    this.selfPeer = this.peerOf(opts.workerId);
    this.flows = new FlowTable({ idleSeconds: opts.flowIdleSeconds ?? 60, maxFlows: opts.maxFlows });
    this.flows.now = coarseNow();
    this.estimator = new RttEstimator(opts.workerId, opts.rtt);
    this.prefixes = (opts.servicePrefixes ?? ['10.30.0.0/16', 'fdc0:30::/32']).map((p) => new Prefix(p));
    this.queryTimeoutMs = opts.queryTimeoutMs ?? 2000;
    this.negativeMs = opts.negativeMs ?? 3000;
    this.log = opts.log ?? (() => {});
    this.cache = new LRUCache<string, ServiceRecord>({
      max: opts.maxServices ?? 10_000,
      ttl: opts.serviceIdleMs ?? 300_000,
      updateAgeOnGet: true,
      dispose: (svc, id, reason) => {
        if (reason === 'set') return;
        this.routesVersion++;
        this.services.remove(svc);
        this.opts.link.send({ type: 'interest_remove', service_id: id });
        this.log({ level: 'debug', msg: 'route cache dropped service', service_id: id, reason });
      },
    });
    // Results are handled in a later microtask, so a link that answers synchronously inside send()
    // never fires the ready listener before the datapath has queued the packet.
    this.unsubscribe = opts.link.onMessage((m) => queueMicrotask(() => this.receive(m)));
    this.timer = setInterval(() => this.housekeeping(), 1000);
    this.timer.unref();
  }

  // ---- TranslationTable ----

  onReady(listener: () => void): void {
    this.readyListeners.push(listener);
  }

  outbound(b: Uint8Array, m: PacketMeta, out: Rewrite): Verdict {
    const fam = m.family;
    out.rewriteSrc = false;
    out.rewriteDst = false;
    out.newSport = 0;
    out.newDport = 0;
    const s = this.flows.find(fam, m.proto, b, m.srcOff, b, m.dstOff, m.sport, m.dport);
    if (s >= 0) {
      const v = this.flows.values, o = s * W;
      const kind = v[o];
      if (kind === FWD) {
        const inst = this.services.slots[v[o + 1]!], src = this.services.slots[v[o + 3]!];
        if (inst && inst.gen === v[o + 2] && src && src.gen === v[o + 4]) {
          this.stats.flowHits++;
          if (inst.service) this.touch(inst.service);
          out.newSport = v[o + 5]!;
          return this.toInstance(inst, src, fam, out);
        }
        // The instance left (or moved): this packet starts the flow again below.
      } else if (kind === REV) {
        const a = this.services.slots[v[o + 1]!];
        if (a && a.gen === v[o + 2]) {
          this.stats.flowHits++;
          writeWords(out.src, v, o + 4, fam);
          out.rewriteSrc = true;
          out.dst.set(a.ns(fam)!);
          out.rewriteDst = true;
          out.newDport = v[o + 3]!;
          return Verdict.Local;
        }
      } else if (kind === RET) {
        const bInst = this.services.slots[v[o + 2]!];
        const ip = bInst && bInst.gen === v[o + 3] ? bInst.ip(fam) : null;
        if (ip) {
          this.stats.flowHits++;
          out.src.set(ip);
          out.rewriteSrc = true;
          out.peer = v[o + 1]!;
          return Verdict.Tunnel;
        }
      }
    }
    return this.newOutbound(b, m, out);
  }

  inbound(b: Uint8Array, m: PacketMeta, fromPeer: number, out: Rewrite): Verdict {
    const fam = m.family;
    out.rewriteSrc = false;
    out.rewriteDst = false;
    out.newSport = 0;
    out.newDport = 0;
    let dst = this.localsByNs.get(b, m.dstOff, fam);
    let db = b, dOff = m.dstOff;
    if (!dst) {
      dst = this.localsByIp.get(b, m.dstOff, fam);
      const ns = dst?.ns(fam);
      if (!dst || !ns) { this.stats.dropNoRoute++; return Verdict.Drop; }
      out.dst.set(ns);
      out.rewriteDst = true;
      db = ns;
      dOff = 0;
    }
    const s = this.flows.find(fam, m.proto, b, m.srcOff, db, dOff, m.sport, m.dport);
    if (s >= 0 && this.flows.values[s * W] === REV) {
      const v = this.flows.values, o = s * W;
      this.stats.flowHits++;
      writeWords(out.src, v, o + 4, fam);
      out.rewriteSrc = true;
      out.newDport = v[o + 3]!;
      return Verdict.Local;
    }
    // A request to a local instance from a caller whose instance IP this worker may not know: remember
    // the way back, keyed as the reply will look when it leaves the instance.
    // (Not for a local delivery: its replies find their way from the addresses alone.)
    const known = fromPeer === this.selfPeer ? null : this.services.byAddress.get(b, m.srcOff, fam);
    if (fromPeer !== this.selfPeer && (!known || known.kind !== AddrKind.Instance)) {
      const r = this.flows.insert(fam, m.proto, db, dOff, b, m.srcOff, m.dport, m.sport);
      // Never over a flow this worker opened itself: a local delivery passes through here too (the
      // datapath hands Local packets to inbound), and its key can be that of our forward or reverse flow.
      const v = this.flows.values, o = r * W;
      if (r >= 0 && (v[o] === 0 || v[o] === RET)) {
        v[o] = RET; v[o + 1] = fromPeer; v[o + 2] = dst.slot; v[o + 3] = dst.gen;
      }
    }
    return Verdict.Local;
  }

  // ---- the new-flow path ----

  private newOutbound(b: Uint8Array, m: PacketMeta, out: Rewrite): Verdict {
    const fam = m.family;
    const src = this.localsByNs.get(b, m.srcOff, fam);
    if (!src || !src.ip(fam)) { this.stats.dropNoSource++; return Verdict.Drop; }
    const e = this.services.byAddress.get(b, m.dstOff, fam);
    let inst: InstanceRecord | null | undefined;
    if (!e) {
      inst = this.localsByIp.get(b, m.dstOff, fam);
      if (!inst || !inst.ns(fam)) return this.unknown(b, m.dstOff, fam);
    } else {
      this.touch(e.service);
      if (e.kind === AddrKind.Instance) {
        inst = e.instance!;
        if (!inst.ns(fam)) { this.stats.dropNoInstance++; return Verdict.Drop; }
      } else {
        inst = e.kind === AddrKind.Rr
          ? this.services.pickRr(e.service, fam)
          : this.services.pickClosest(e.service, fam, this.distance);
        if (!inst) { this.stats.dropNoInstance++; return Verdict.Drop; }
        this.stats.newFlows++;
      }
    }
    this.openFlow(b, m, inst, src, out);
    return this.toInstance(inst, src, fam, out);
  }

  /**
   * Records a new flow A→D (D: the address dialled) that goes to instance B: forward by A's tuple, and
   * reverse keyed as B's reply will look. A dial of an instance IP is recorded too, so that a reverse
   * entry left by an earlier flow from the same port cannot rewrite its replies.
   *
   * Different addresses can reach one instance (rr, closest, its instance IP), and a caller's kernel
   * may use one source port for several of them at once: translated, those flows would be one tuple at
   * B. Like NAT, a TCP or UDP flow whose translated tuple is taken gets another source port, restored
   * on its replies. (ICMP echo takes the tuple over instead: an identifier cannot be chosen for it.)
   */
  private openFlow(b: Uint8Array, m: PacketMeta, inst: InstanceRecord, src: InstanceRecord, out: Rewrite): void {
    const fam = m.family;
    // The reply of a local target leaves its instance (outbound) as B_ns→IA; a remote one arrives
    // (inbound) as IB→A_ns.
    const rs = inst.local ? inst.ns(fam) : inst.ip(fam);
    const rd = inst.local ? src.ip(fam) : src.ns(fam);
    if (!rs || !rd) return;
    let sport = m.sport;
    if (m.proto === Proto.TCP || m.proto === Proto.UDP) {
      const r = this.flows.find(fam, m.proto, rs, 0, rd, 0, m.dport, sport);
      if (r >= 0 && this.heldByOther(r, b, m.dstOff, fam)) {
        sport = this.freePort(fam, m.proto, rs, rd, m.dport, sport);
        if (sport !== m.sport) this.stats.portRemaps++;
      }
    }
    const mapped = sport === m.sport ? 0 : sport;
    // An insert may rehash: write each entry's values before the next insert.
    const f = this.flows.insert(fam, m.proto, b, m.srcOff, b, m.dstOff, m.sport, m.dport);
    if (f < 0) return;
    let v = this.flows.values, o = f * W;
    v[o] = FWD; v[o + 1] = inst.slot; v[o + 2] = inst.gen; v[o + 3] = src.slot; v[o + 4] = src.gen; v[o + 5] = mapped;
    const r = this.flows.insert(fam, m.proto, rs, 0, rd, 0, m.dport, sport);
    if (r < 0) {
      // Without its reverse entry a remapped flow's replies would not find the caller's port.
      if (mapped !== 0) this.flows.remove(this.flows.find(fam, m.proto, b, m.srcOff, b, m.dstOff, m.sport, m.dport));
      return;
    }
    v = this.flows.values; o = r * W;
    v[o] = REV; v[o + 1] = src.slot; v[o + 2] = src.gen; v[o + 3] = mapped === 0 ? 0 : m.sport;
    readWords(b, m.dstOff, fam, v, o + 4);
    out.newSport = mapped;
  }

  /** Whether the reverse entry at slot r belongs to a flow other than "this port to this address". */
  private heldByOther(r: number, b: Uint8Array, dstOff: number, fam: 4 | 6): boolean {
    const v = this.flows.values, o = r * W;
    if (v[o] !== REV || v[o + 3] !== 0) return true;
    const n = fam === 4 ? 1 : 4;
    for (let i = 0; i < n; i++) if (v[o + 4 + i] !== wordAt(b, dstOff + 4 * i)) return true;
    return false;
  }

  /** A source port whose reply tuple (rs:dport → rd:port) no flow holds; `asked` if none is found. */
  private freePort(fam: 4 | 6, proto: number, rs: Uint8Array, rd: Uint8Array, dport: number, asked: number): number {
    for (let i = 0; i < 32; i++) {
      // The Linux default ephemeral range: what B expects a caller's port to look like.
      const p = 32768 + Math.floor(Math.random() * 28232);
      if (this.flows.find(fam, proto, rs, 0, rd, 0, dport, p) < 0) return p;
    }
    return asked;
  }

  private toInstance(inst: InstanceRecord, src: InstanceRecord, fam: 4 | 6, out: Rewrite): Verdict {
    out.dst.set(inst.ns(fam)!);
    out.rewriteDst = true;
    out.src.set(src.ip(fam)!);
    out.rewriteSrc = true;
    if (inst.local) return Verdict.Local;
    out.peer = inst.peer;
    return Verdict.Tunnel;
  }

  private unknown(b: Uint8Array, off: number, fam: 4 | 6): Verdict {
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
    this.opts.link.send({ type: 'table_query', query_id: q.id, address: ipString(addr, 0, fam) });
    return Verdict.Pending;
  }

  private startQuery(address: Uint8Array | null, name: string | null): PendingQuery {
    const q: PendingQuery = { id: `${this.opts.workerId}-${this.nextQuery++}`, started: Date.now(), address, name, waiters: [] };
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

  private touch(svc: ServiceRecord): void {
    if (svc.touched !== this.flows.now) {
      svc.touched = this.flows.now;
      this.cache.get(svc.id);
    }
  }

  private signalReady(): void {
    if (this.readyQueued) return;
    this.readyQueued = true;
    queueMicrotask(() => {
      this.readyQueued = false;
      for (const l of this.readyListeners) l();
    });
  }

  // ---- the route source ----

  private receive(m: ClusterToWorker): void {
    if (this.closed) return;
    try {
      switch (m.type) {
        case 'table_result': {
          const q = this.pendingById.get(m.query_id);
          if (!q) { this.log({ level: 'debug', msg: 'late or unknown table result', query_id: m.query_id }); return; }
          this.finishQuery(q, m.route ? this.install(m.route).route : null);
          return;
        }
        case 'route_update':
          // Pushed updates replace what we use at once; a service we never asked for is not cached.
          if (this.services.byId.has(m.route.service_id)) {
            this.install(m.route);
            this.signalReady();
          }
          return;
        case 'route_withdraw': {
          const svc = this.services.byId.get(m.service_id);
          if (!svc) return;
          if (m.instances === undefined) this.cache.delete(m.service_id);
          else this.services.withdraw(m.service_id, m.instances);
          this.routesVersion++;
          this.signalReady();
          return;
        }
        case 'coordinates':
          for (const e of m.entries) this.estimator.setCoordinate(e.worker_id, e.coord);
          return;
      }
    } catch (err) {
      this.stats.badMessages++;
      this.log({ level: 'warn', msg: 'route message not applied', type: m.type, error: String(err) });
    }
  }

  private install(route: ServiceRoute): ServiceRecord {
    const isNew = !this.services.byId.has(route.service_id);
    const svc = this.services.apply(route);
    this.routesVersion++;
    for (const i of route.instances) {
      const p = this.peers.get(i.worker_id);
      if (p && p.endpoint !== i.tunnel_endpoint && i.worker_id !== this.opts.workerId) {
        p.endpoint = i.tunnel_endpoint;
        for (const l of this.peerListeners) l({ ...p });
      }
    }
    if (isNew) {
      this.cache.set(route.service_id, svc);
      this.opts.link.send({ type: 'interest_add', service_id: route.service_id });
    }
    return svc;
  }

  // ---- for the worker and DNS ----

  /** A local instance: its namespace addresses are accepted as sources, its instance IPs lead to it. */
  addLocalInstance(li: LocalInstance): InstanceRecord {
    const rec = this.services.adopt(new InstanceRecord(null, li.n ?? 0, this.opts.workerId, 0, true, li));
    for (const a of [rec.ns4, rec.ns6]) if (a) this.localsByNs.set(a, rec);
    for (const a of [rec.ip4, rec.ip6]) if (a) this.localsByIp.set(a, rec);
    return rec;
  }

  removeLocalInstance(nsIp: string): void {
    const rec = this.localsByNs.getBytes(ipBytes(nsIp));
    if (!rec) return;
    for (const a of [rec.ns4, rec.ns6]) if (a) this.localsByNs.delete(a);
    for (const a of [rec.ip4, rec.ip6]) if (a && this.localsByIp.getBytes(a) === rec) this.localsByIp.delete(a);
    this.services.retire(rec);
  }

  /** After the link to the cluster comes back (a restarted cluster has forgotten who wants what):
   *  declares interest again in every cached service. */
  resendInterest(): void {
    for (const id of this.services.byId.keys()) this.opts.link.send({ type: 'interest_add', service_id: id });
  }

  /** Tunnel peers learned from routes (number, worker, endpoint), new or changed. */
  onPeer(listener: (p: PeerInfo) => void): void {
    this.peerListeners.push(listener);
  }

  peer(workerId: string): PeerInfo | undefined {
    const p = this.peers.get(workerId);
    return p ? { ...p } : undefined;
  }

  /** The route of a full name `<app>.<appns>.<svc>.<svcns>`: at once when cached, else after one query
   *  (concurrent callers share it); null when there is no such service or the cluster is silent. */
  resolveName(name: string): ServiceRoute | null | Promise<ServiceRoute | null> {
    const svc = this.services.byName.get(name);
    if (svc) { this.touch(svc); return svc.route; }
    const neg = this.negName.get(name);
    if (neg !== undefined && neg > Date.now()) return null;
    let q = this.pendingByName.get(name);
    if (!q) {
      q = this.startQuery(null, name);
      this.opts.link.send({ type: 'table_query', query_id: q.id, name });
    }
    const pending = q;
    return new Promise((resolve) => pending.waiters.push(resolve));
  }

  private housekeeping(): void {
    const now = Date.now();
    this.flows.now = coarseNow();
    if (this.flows.now % 5 === 0) this.flows.sweep();
    this.cache.purgeStale();
    for (const q of [...this.pendingById.values()]) {
      if (now - q.started > this.queryTimeoutMs) {
        this.stats.queryTimeouts++;
        this.log({ level: 'warn', msg: 'route query timed out', query_id: q.id, address: q.address && ipString(q.address), name: q.name });
        this.finishQuery(q, null);
      }
    }
    for (const [k, t] of this.negName) if (t <= now) this.negName.delete(k);
    const every = this.opts.coordinateReportMs ?? 10_000;
    if (every > 0 && now - this.lastReport >= every) {
      this.lastReport = now;
      this.reportCoordinate();
    }
  }

  /** Sends this worker's Vivaldi coordinate and direct RTTs to the cluster, which relays coordinates. */
  reportCoordinate(): void {
    const rtt_ms: Record<string, number> = {};
    for (const [w, ms] of this.estimator.measured) rtt_ms[w] = Math.round(ms * 1000) / 1000;
    this.opts.link.send({ type: 'coordinate_report', worker_id: this.opts.workerId, coord: this.estimator.self.coordinate(), rtt_ms });
  }

  /** Prometheus text for the worker's /metrics. */
  metrics(): string {
    const lines = ['# TYPE canopy_proxy_events_total counter'];
    for (const [k, v] of Object.entries(this.stats)) lines.push(`canopy_proxy_events_total{event="${k}"} ${v}`);
    lines.push('# TYPE canopy_proxy_flows gauge', `canopy_proxy_flows ${this.flows.size}`);
    lines.push('# TYPE canopy_proxy_flows_refused_total counter', `canopy_proxy_flows_refused_total ${this.flows.refused}`);
    lines.push('# TYPE canopy_proxy_services gauge', `canopy_proxy_services ${this.services.byId.size}`);
    lines.push('# TYPE canopy_proxy_pending_queries gauge', `canopy_proxy_pending_queries ${this.pendingById.size}`);
    return `${lines.join('\n')}\n`;
  }

  /** Advances the coarse clock and expires queries now (tests; the timer does it once a second). */
  tick(): void { this.housekeeping(); }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.unsubscribe();
    this.estimator.close();
    for (const q of [...this.pendingById.values()]) {
      this.pendingById.delete(q.id);
      for (const w of q.waiters) w(null);
    }
  }
}

function coarseNow(): number {
  return Math.floor(performance.now() / 1000);
}

/** The 32-bit word at b[p], as the Int32Array payload of a flow holds it. */
function wordAt(b: Uint8Array, p: number): number {
  return (b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!;
}

function readWords(b: Uint8Array, off: number, fam: 4 | 6, v: Int32Array, o: number): void {
  const n = fam === 4 ? 1 : 4;
  for (let i = 0; i < n; i++) v[o + i] = wordAt(b, off + 4 * i);
}

function writeWords(dst: Uint8Array, v: Int32Array, o: number, fam: 4 | 6): void {
  const n = fam === 4 ? 1 : 4;
  for (let i = 0; i < n; i++) {
    const w = v[o + i]!;
    dst[4 * i] = w >>> 24; dst[4 * i + 1] = (w >>> 16) & 0xff; dst[4 * i + 2] = (w >>> 8) & 0xff; dst[4 * i + 3] = w & 0xff;
  }
}
