// The semantic layer behind netstack's TranslationTable: picks an instance per new flow by the policy
// of the service address dialled, keeps the flow on it, rewrites replies so the caller sees the address
// it dialled. Unknown service addresses go to route-resolver.ts (route cache, queries, the cluster's
// updates); a flow entry's fields are named in flow-record.ts.
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
import { AddressMap, ipBytes } from './address-map.ts';
import { FlowTable, FLOW_VALUE_WORDS } from './flow-table.ts';
import {
  KIND, FORWARD, REVERSE, RETURN, FWD_INSTANCE_SLOT, FWD_INSTANCE_GEN, FWD_SOURCE_SLOT, FWD_SOURCE_GEN,
  FWD_MAPPED_SPORT, REV_CALLER_SLOT, REV_CALLER_GEN, REV_CALLER_SPORT, RET_PEER, RET_INSTANCE_SLOT,
  RET_INSTANCE_GEN, writeForward, writeReverse, writeReturn, readDialled, dialledIs,
} from './flow-record.ts';
import { RttEstimator, type RttSource } from './rtt.ts';
import { AddrKind, InstanceRecord, ServiceTable } from './service-table.ts';
import type { RouteLink, ServiceRoute } from './route-messages.ts';
import { RouteResolver, newSemanticStats } from './route-resolver.ts';
import { Proto, Verdict, type PacketMeta, type Rewrite, type TranslationTable } from '../netstack/table.ts';

const W = FLOW_VALUE_WORDS;

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
  /** Worker id → tunnel id used in Rewrite.peer (the worker's peer table, netstack/peers.ts).
   *  Default: numbers handed out from 1. */
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

export class SemanticTable implements TranslationTable {
  readonly services: ServiceTable;
  readonly flows: FlowTable;
  readonly estimator: RttEstimator;
  readonly stats = newSemanticStats();
  /** Route cache, queries and the cluster's updates. */
  readonly routes: RouteResolver;
  private readonly localsByNs = new AddressMap<InstanceRecord>();
  private readonly localsByIp = new AddressMap<InstanceRecord>();
  private readonly peerOf: (workerId: string) => number;
  /** Our own tunnel id: the datapath hands Local packets to inbound() with it as fromPeer. */
  private readonly selfPeer: number;
  private readonly timer: NodeJS.Timeout;
  private closed = false;
  private readonly distance = (workerId: string): number => this.estimator.estimate(workerId);

  constructor(private readonly opts: SemanticTableOptions) {
    this.peerOf = opts.peerOf ?? numbered();
    this.services = new ServiceTable(opts.workerId, this.peerOf);
    this.selfPeer = this.peerOf(opts.workerId);
    this.flows = new FlowTable({ idleSeconds: opts.flowIdleSeconds ?? 60, maxFlows: opts.maxFlows });
    this.flows.now = coarseNow();
    this.estimator = new RttEstimator(opts.workerId, opts.rtt);
    this.routes = new RouteResolver({
      workerId: opts.workerId, link: opts.link, services: this.services, estimator: this.estimator, stats: this.stats,
      servicePrefixes: opts.servicePrefixes, maxServices: opts.maxServices, serviceIdleMs: opts.serviceIdleMs,
      queryTimeoutMs: opts.queryTimeoutMs, coordinateReportMs: opts.coordinateReportMs, negativeMs: opts.negativeMs,
      log: opts.log ?? (() => {}),
    });
    this.timer = setInterval(() => this.housekeeping(), 1000);
    this.timer.unref();
  }

  /** Bumped whenever a route is installed, replaced or removed (the DNS answer cache watches it). */
  get routesVersion(): number {
    return this.routes.routesVersion;
  }

  // ---- TranslationTable ----

  onReady(listener: () => void): void {
    this.routes.onReady(listener);
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
      const kind = v[o + KIND];
      if (kind === FORWARD) {
        const inst = this.services.slots[v[o + FWD_INSTANCE_SLOT]!], src = this.services.slots[v[o + FWD_SOURCE_SLOT]!];
        if (inst && inst.gen === v[o + FWD_INSTANCE_GEN] && src && src.gen === v[o + FWD_SOURCE_GEN]) {
          this.stats.flowHits++;
          if (inst.service) this.routes.touch(inst.service, this.flows.now);
          out.newSport = v[o + FWD_MAPPED_SPORT]!;
          return this.toInstance(inst, src, fam, out);
        }
        // The instance left (or moved): this packet starts the flow again below.
      } else if (kind === REVERSE) {
        const a = this.services.slots[v[o + REV_CALLER_SLOT]!];
        if (a && a.gen === v[o + REV_CALLER_GEN]) {
          this.stats.flowHits++;
          readDialled(v, o, fam, out.src);
          out.rewriteSrc = true;
          out.dst.set(a.ns(fam)!);
          out.rewriteDst = true;
          out.newDport = v[o + REV_CALLER_SPORT]!;
          return Verdict.Local;
        }
      } else if (kind === RETURN) {
        const bInst = this.services.slots[v[o + RET_INSTANCE_SLOT]!];
        const ip = bInst && bInst.gen === v[o + RET_INSTANCE_GEN] ? bInst.ip(fam) : null;
        if (ip) {
          this.stats.flowHits++;
          out.src.set(ip);
          out.rewriteSrc = true;
          out.peer = v[o + RET_PEER]!;
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
    if (s >= 0 && this.flows.values[s * W + KIND] === REVERSE) {
      const v = this.flows.values, o = s * W;
      this.stats.flowHits++;
      readDialled(v, o, fam, out.src);
      out.rewriteSrc = true;
      out.newDport = v[o + REV_CALLER_SPORT]!;
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
      if (r >= 0 && (v[o + KIND] === 0 || v[o + KIND] === RETURN)) writeReturn(v, o, fromPeer, dst.slot, dst.gen);
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
      if (!inst || !inst.ns(fam)) return this.routes.resolveAddress(b, m.dstOff, fam);
    } else {
      this.routes.touch(e.service, this.flows.now);
      if (e.kind === AddrKind.Instance) {
        inst = e.instance!;
        if (!inst.ns(fam)) { this.stats.dropNoInstance++; return Verdict.Drop; }
      } else {
        inst = e.kind === AddrKind.Rr
          ? this.services.pickRr(e.service, fam)
          : this.services.pickClosest(e.service, fam, this.distance);
        // A known service without an instance yet (just deployed, or between instances): the packet
        // waits; the cluster pushes the route when an instance runs and the datapath retries it then,
        // so a caller's first SYN is not lost to a retransmission timeout.
        if (!inst) return this.routes.awaitInstance();
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
    writeForward(this.flows.values, f * W, inst.slot, inst.gen, src.slot, src.gen, mapped);
    const r = this.flows.insert(fam, m.proto, rs, 0, rd, 0, m.dport, sport);
    if (r < 0) {
      // Without its reverse entry a remapped flow's replies would not find the caller's port.
      if (mapped !== 0) this.flows.remove(this.flows.find(fam, m.proto, b, m.srcOff, b, m.dstOff, m.sport, m.dport));
      return;
    }
    writeReverse(this.flows.values, r * W, src.slot, src.gen, mapped === 0 ? 0 : m.sport, b, m.dstOff, fam);
    out.newSport = mapped;
  }

  /** Whether the reverse entry at slot r belongs to a flow other than "this port to this address". */
  private heldByOther(r: number, b: Uint8Array, dstOff: number, fam: 4 | 6): boolean {
    const v = this.flows.values, o = r * W;
    return v[o + KIND] !== REVERSE || v[o + REV_CALLER_SPORT] !== 0 || !dialledIs(v, o, b, dstOff, fam);
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

  // ---- for the worker and DNS ----  // ---- for the worker and DNS ----

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
    this.routes.resendInterest();
  }

  /** The route of a full name `<app>.<appns>.<svc>.<svcns>`: at once when cached, else after one query
   *  (concurrent callers share it); null when there is no such service or the cluster is silent. */
  resolveName(name: string): ServiceRoute | null | Promise<ServiceRoute | null> {
    return this.routes.resolveName(name, this.flows.now);
  }

  private housekeeping(): void {
    this.flows.now = coarseNow();
    if (this.flows.now % 5 === 0) this.flows.sweep();
    this.routes.housekeeping();
  }

  /** Sends this worker's Vivaldi coordinate and direct RTTs to the cluster, which relays coordinates. */
  reportCoordinate(): void {
    this.routes.reportCoordinate();
  }

  /** Prometheus text for the worker's /metrics. */
  metrics(): string {
    const lines = ['# TYPE canopy_proxy_events_total counter'];
    for (const [k, v] of Object.entries(this.stats)) lines.push(`canopy_proxy_events_total{event="${k}"} ${v}`);
    lines.push('# TYPE canopy_proxy_flows gauge', `canopy_proxy_flows ${this.flows.size}`);
    lines.push('# TYPE canopy_proxy_flows_refused_total counter', `canopy_proxy_flows_refused_total ${this.flows.refused}`);
    lines.push('# TYPE canopy_proxy_services gauge', `canopy_proxy_services ${this.services.byId.size}`);
    lines.push('# TYPE canopy_proxy_pending_queries gauge', `canopy_proxy_pending_queries ${this.routes.pendingQueries}`);
    lines.push('# HELP canopy_proxy_route_updates_total routes the cluster pushed that this worker applied (updates and withdrawals)',
      '# TYPE canopy_proxy_route_updates_total counter', `canopy_proxy_route_updates_total ${this.stats.routeUpdates}`);
    return `${lines.join('\n')}\n`;
  }

  /** Advances the coarse clock and expires queries now (tests; the timer does it once a second). */
  tick(): void { this.housekeeping(); }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.routes.close();
    this.estimator.close();
  }
}

function coarseNow(): number {
  return Math.floor(performance.now() / 1000);
}

/** Tunnel ids handed out from 1, per worker id (tests and harnesses without a tunnel). */
function numbered(): (workerId: string) => number {
  const ids = new Map<string, number>();
  return (w) => {
    let id = ids.get(w);
    if (id === undefined) ids.set(w, (id = ids.size + 1));
    return id;
  };
}
