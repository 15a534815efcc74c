// The worker's service DNS server (SPEC §2.1): authoritative for the service zone, answering A, AAAA
// and SRV from the semantic layer's routes (a query to the cluster when the name is new), NXDOMAIN for
// unknown names inside the zone, and relaying every other name to the upstream resolvers. Whatever
// arrives, the handler answers or drops it and the server keeps answering.
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import { ipBytes } from '../proxy/address-map.ts';
import type { ServiceRoute } from '../proxy/route-messages.ts';
import { Forwarder, type Upstream } from './forwarder.ts';
import {
  CLASS_IN, QType, RCode, buildAnswer, buildError, parseQuery, queryName, rdataSoa, rdataSrv,
  type AnswerSpec, type Query, type ResourceRecord,
} from './wire.ts';
import { parseZoneName, type Selector } from './zone-name.ts';

/** Where names come from: SemanticTable.resolveName (full name `<app>.<appns>.<svc>.<svcns>`). */
export interface ServiceResolver {
  resolveName(fullName: string): ServiceRoute | null | Promise<ServiceRoute | null>;
  /** Changes whenever any route changes: cached answers are dropped then. */
  readonly routesVersion?: number;
}

/** How long a built answer is reused for the same question bytes (also bounds staleness for a
 *  resolver without routesVersion, and lets a new service replace a cached NXDOMAIN). */
const ANSWER_CACHE_MS = 1000;
const ANSWER_CACHE_MAX = 10_000;

interface CachedAnswer { bytes: Buffer; expires: number; result: Result }

export interface DnsServerOptions {
  /** Addresses to serve on (the worker's bridge addresses); port defaults to 53. */
  listen: { address: string; port?: number }[];
  resolver: ServiceResolver;
  upstreams: Upstream[];
  zone?: string;
  /** TTL of answers, and of negative answers (SOA minimum). Short: instances move. */
  ttl?: number;
  forwardTimeoutMs?: number;
  /** How long a query waits for the cluster before SERVFAIL. */
  resolveTimeoutMs?: number;
  log?: (rec: Record<string, unknown>) => void;
}

type Result = 'answer' | 'nodata' | 'nxdomain' | 'formerr' | 'notimp' | 'refused' | 'servfail' | 'forwarded' | 'dropped';

export class ServiceDnsServer {
  private readonly sockets: dgram.Socket[] = [];
  private readonly forwarder: Forwarder;
  private readonly zone: string;
  private readonly zoneLabels: number;
  private readonly ttl: number;
  private readonly resolveTimeoutMs: number;
  private readonly log: (rec: Record<string, unknown>) => void;
  private readonly serial = Math.floor(Date.now() / 1000);
  readonly counts: Record<Result, number> = {
    answer: 0, nodata: 0, nxdomain: 0, formerr: 0, notimp: 0, refused: 0, servfail: 0, forwarded: 0, dropped: 0,
  };
  errors = 0;
  // Answers by question bytes: a repeated question costs a lookup and a copy, not a parse and a build.
  private readonly answers = new Map<string, CachedAnswer>();
  private answersVersion = -1;

  constructor(private readonly opts: DnsServerOptions) {
    this.zone = (opts.zone ?? 'canopy').toLowerCase().replace(/\.$/, '');
    this.zoneLabels = this.zone.split('.').length;
    this.ttl = opts.ttl ?? 5;
    this.resolveTimeoutMs = opts.resolveTimeoutMs ?? 1500;
    this.log = opts.log ?? ((r) => process.stderr.write(`${JSON.stringify({ ts: new Date().toISOString(), component: 'dns', ...r })}\n`));
    this.forwarder = new Forwarder({ upstreams: opts.upstreams, timeoutMs: opts.forwardTimeoutMs });
  }

  /** Bound addresses (with the real port when 0 was asked). */
  get addresses(): { address: string; port: number }[] {
    return this.sockets.map((s) => s.address());
  }

  async start(): Promise<void> {
    try {
      await this.forwarder.start();
      for (const l of this.opts.listen) {
        const s = dgram.createSocket({ type: isIPv6(l.address) ? 'udp6' : 'udp4', recvBufferSize: 4 << 20 });
        s.on('message', (msg, rinfo) => this.onQuery(s, msg, rinfo));
        s.on('error', (err) => { this.errors++; this.log({ level: 'warn', msg: 'dns socket error', error: String(err) }); });
        await new Promise<void>((res, rej) => {
          s.once('error', rej);
          s.bind(l.port ?? 53, l.address, () => { s.off('error', rej); res(); });
        });
        this.sockets.push(s);
      }
    } catch (err) {
      this.close();
      throw new Error(`service DNS could not start on ${this.opts.listen.map((l) => `${l.address}:${l.port ?? 53}`).join(', ')}: ${String(err)}`);
    }
    this.log({ level: 'info', msg: 'service DNS listening', addresses: this.addresses, zone: this.zone, upstreams: this.opts.upstreams });
  }

  close(): void {
    for (const s of this.sockets) s.close();
    this.sockets.length = 0;
    this.forwarder.close();
  }

  /** Prometheus text for the worker's /metrics. */
  metrics(): string {
    const lines = ['# TYPE canopy_dns_queries_total counter'];
    for (const [k, v] of Object.entries(this.counts)) lines.push(`canopy_dns_queries_total{result="${k}"} ${v}`);
    lines.push('# TYPE canopy_dns_errors_total counter', `canopy_dns_errors_total ${this.errors}`);
    return `${lines.join('\n')}\n`;
  }

  private onQuery(sock: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    try {
      this.handle(sock, msg, rinfo);
    } catch (err) {
      this.errors++;
      this.log({ level: 'error', msg: 'dns query handler failed', error: String(err) });
    }
  }

  private reply(sock: dgram.Socket, rinfo: dgram.RemoteInfo, answer: Uint8Array, result: Result): void {
    this.counts[result]++;
    // No callback: a failed send surfaces as the socket's 'error' event (counted), and saves a closure.
    sock.send(answer, rinfo.port, rinfo.address);
  }

  private handle(sock: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const q = parseQuery(msg);
    if ('reject' in q) {
      if (q.reject === 'drop') { this.counts.dropped++; return; }
      const rcode = q.reject === 'formerr' ? RCode.FORMERR : RCode.NOTIMP;
      this.reply(sock, rinfo, buildError(msg, q.id, q.rd, rcode), q.reject);
      return;
    }
    const key = q.edns ? `${msg.toString('latin1', 12, q.questionEnd)}|${q.udpSize}` : msg.toString('latin1', 12, q.questionEnd);
    const version = this.opts.resolver.routesVersion ?? 0;
    if (version !== this.answersVersion) { this.answers.clear(); this.answersVersion = version; }
    const hit = this.answers.get(key);
    if (hit !== undefined && hit.expires > Date.now()) {
      const out = Buffer.allocUnsafe(hit.bytes.length);
      hit.bytes.copy(out);
      out[0] = q.id >> 8; out[1] = q.id & 0xff;
      out[2] = (out[2]! & 0xfe) | (q.rd ? 1 : 0);
      this.reply(sock, rinfo, out, hit.result);
      return;
    }
    const zn = parseZoneName(queryName(msg, q), this.zone);
    if (zn.kind === 'outside') {
      // Forwarded answers are the upstream's to cache.
      if (!this.forwarder.hasUpstreams) { this.reply(sock, rinfo, buildError(msg, q.id, q.rd, RCode.REFUSED, q), 'refused'); return; }
      this.forwarder.forward(msg,
        (answer) => this.reply(sock, rinfo, answer, 'forwarded'),
        () => this.reply(sock, rinfo, buildError(msg, q.id, q.rd, RCode.SERVFAIL, q), 'servfail'));
      return;
    }
    if (q.qclass !== CLASS_IN && q.qclass !== QType.ANY) {
      this.reply(sock, rinfo, buildError(msg, q.id, q.rd, RCode.REFUSED, q), 'refused');
      return;
    }
    if (zn.kind === 'apex') {
      const soa = this.soa();
      const isSoa = q.qtype === QType.SOA || q.qtype === QType.ANY;
      this.send(sock, rinfo, msg, q, { rcode: RCode.NOERROR, answers: isSoa ? [soa] : [], authority: isSoa ? [] : [soa] }, isSoa ? 'answer' : 'nodata', key);
      return;
    }
    if (zn.kind === 'invalid') { this.negative(sock, rinfo, msg, q, RCode.NXDOMAIN, key); return; }
    const r = this.opts.resolver.resolveName(zn.fullName);
    if (!(r instanceof Promise)) { this.answerService(sock, rinfo, msg, q, r, zn.selector, key); return; }
    let done = false;
    const timer = setTimeout(() => {
      done = true;
      this.reply(sock, rinfo, buildError(msg, q.id, q.rd, RCode.SERVFAIL, q), 'servfail');
    }, this.resolveTimeoutMs);
    r.then((route) => {
      if (done) return;
      clearTimeout(timer);
      this.answerService(sock, rinfo, msg, q, route, zn.selector, key);
    }, (err: unknown) => {
      if (done) return;
      clearTimeout(timer);
      this.errors++;
      this.log({ level: 'warn', msg: 'service lookup failed', name: zn.fullName, error: String(err) });
      this.reply(sock, rinfo, buildError(msg, q.id, q.rd, RCode.SERVFAIL, q), 'servfail');
    });
  }

  private answerService(sock: dgram.Socket, rinfo: dgram.RemoteInfo, msg: Buffer, q: Query, route: ServiceRoute | null,
    sel: Selector, key: string): void {
    if (!route) { this.negative(sock, rinfo, msg, q, RCode.NXDOMAIN, key); return; }
    let v4: string | null, v6: string | null;
    if (sel.kind === 'instance') {
      const inst = route.instances.find((i) => i.n === sel.n);
      if (!inst) { this.negative(sock, rinfo, msg, q, RCode.NXDOMAIN, key); return; }
      v4 = inst.instance_ip; v6 = inst.instance_ip_v6;
    } else {
      // `any` is any instance: the round-robin address.
      const policy = sel.kind === 'default' ? route.default_policy : sel.kind === 'any' ? 'rr' : sel.kind;
      v4 = policy === 'rr' ? route.rr_ip : route.closest_ip;
      v6 = policy === 'rr' ? route.rr_ip_v6 : route.closest_ip_v6;
    }
    const answers: ResourceRecord[] = [];
    const t = q.qtype, any = t === QType.ANY;
    if ((t === QType.A || any) && v4) answers.push({ type: QType.A, ttl: this.ttl, rdata: ipBytes(v4) });
    if ((t === QType.AAAA || any) && v6) answers.push({ type: QType.AAAA, ttl: this.ttl, rdata: ipBytes(v6) });
    if (t === QType.SRV || any) for (const p of route.ports) answers.push({ type: QType.SRV, ttl: this.ttl, rdata: rdataSrv(0, 0, p.port) });
    if (answers.length === 0) { this.negative(sock, rinfo, msg, q, RCode.NOERROR, key); return; }
    this.send(sock, rinfo, msg, q, { rcode: RCode.NOERROR, answers, authority: [] }, 'answer', key);
  }

  private soa(): ResourceRecord {
    return { type: QType.SOA, ttl: this.ttl, rdata: rdataSoa(0, this.serial, this.ttl) };
  }

  /** NXDOMAIN or NODATA, with the zone's SOA so that resolvers cache the miss only for `ttl`. */
  private negative(sock: dgram.Socket, rinfo: dgram.RemoteInfo, msg: Buffer, q: Query, rcode: number, key: string): void {
    this.send(sock, rinfo, msg, q, { rcode, answers: [], authority: [this.soa()] }, rcode === RCode.NXDOMAIN ? 'nxdomain' : 'nodata', key);
  }

  private send(sock: dgram.Socket, rinfo: dgram.RemoteInfo, msg: Buffer, q: Query,
    a: Pick<AnswerSpec, 'rcode' | 'answers' | 'authority'>, result: Result, key: string): void {
    // The zone apex is the last zoneLabels labels of the question name: point the SOA's names there.
    const zoneOffset = q.labelOffsets[q.labelOffsets.length - this.zoneLabels] ?? 12;
    const authority = a.authority.map((r) => (r.type === QType.SOA ? { ...r, rdata: rdataSoa(zoneOffset, this.serial, this.ttl) } : r));
    const answers = a.answers.map((r) => (r.type === QType.SOA ? { ...r, rdata: rdataSoa(zoneOffset, this.serial, this.ttl) } : r));
    const out = buildAnswer(msg, q, { rcode: a.rcode, authoritative: true, answers, authority, authorityOffset: zoneOffset });
    if (this.answers.size >= ANSWER_CACHE_MAX) this.answers.clear();
    this.answers.set(key, { bytes: Buffer.from(out), expires: Date.now() + ANSWER_CACHE_MS, result });
    this.reply(sock, rinfo, out, result);
  }
}
