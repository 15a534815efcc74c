// The worker's service DNS server (SPEC §2.1): authoritative for the service zone, answering A, AAAA
// and SRV from the semantic layer's routes (a query to the cluster when the name is new), NXDOMAIN for
// unknown names inside the zone, and relaying every other name to the upstream resolvers. Whatever
// arrives, the handler answers or drops it and the server keeps answering.
import dgram from 'node:dgram';
import net, { isIPv6 } from 'node:net';
import { ipBytes } from '../proxy/address-map.ts';
import type { ServiceRoute } from '../proxy/route-messages.ts';
import { readFileSync } from 'node:fs';
import { Forwarder, upstreamsFromResolvConf, type Upstream } from './forwarder.ts';
import { BatchUdpSocket } from './batch-socket.ts';
import { serveTcpFrames } from './tcp-frames.ts';
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

/** Where one query's answer goes: a UDP client, or a TCP connection (no size limit, no truncation). */
interface Responder {
  tcp: boolean;
  send(answer: Uint8Array): void;
}

/** A DNS-over-TCP message is at most 64 KiB; a client gets this long between messages. */
const TCP_MAX_CONNECTIONS = 256;

export interface DnsServerOptions {
  /** Addresses to serve on (the worker's bridge addresses); port defaults to 53. */
  listen: { address: string; port?: number }[];
  resolver: ServiceResolver;
  /** Where names outside the zone go. Default: the host's /etc/resolv.conf nameservers (minus our own
   *  addresses); [] answers REFUSED for them. */
  upstreams?: Upstream[];
  zone?: string;
  /** TTL of answers, and of negative answers (SOA minimum). Short: instances move. */
  ttl?: number;
  forwardTimeoutMs?: number;
  /** recvmmsg/sendmmsg batches (default); false: node:dgram, one syscall pair per query. */
  batched?: boolean;
  /** How long a query waits for the cluster before SERVFAIL. */
  resolveTimeoutMs?: number;
  log?: (rec: Record<string, unknown>) => void;
}

type Result = 'answer' | 'nodata' | 'nxdomain' | 'formerr' | 'notimp' | 'refused' | 'servfail' | 'forwarded' | 'dropped';

export class ServiceDnsServer {
  private readonly sockets: { address: string; port: number; close: () => void }[] = [];
  private readonly tcpServers: net.Server[] = [];
  private readonly tcpConns = new Set<net.Socket>();
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
    this.forwarder = new Forwarder({
      upstreams: opts.upstreams ?? hostUpstreams(opts.listen.map((l) => l.address)), timeoutMs: opts.forwardTimeoutMs, log: this.log,
    });
  }

  /** Bound addresses (with the real port when 0 was asked). */
  get addresses(): { address: string; port: number }[] {
    return this.sockets.map((s) => ({ address: s.address, port: s.port }));
  }

  /** UDP through recvmmsg/sendmmsg (dns/batch-socket.ts), or node:dgram when batched is false. */
  private async openUdp(address: string, port: number): Promise<{ address: string; port: number; close: () => void }> {
    if (this.opts.batched !== false) {
      const b = new BatchUdpSocket(address, port, (msg, _from, reply) => this.onQuery({ tcp: false, send: reply }, msg));
      b.start();
      return { address, port: b.port, close: () => b.close() };
    }
    const s = dgram.createSocket({ type: isIPv6(address) ? 'udp6' : 'udp4', recvBufferSize: 4 << 20 });
    s.on('message', (msg, rinfo) => this.onQuery({ tcp: false, send: (a) => s.send(a, rinfo.port, rinfo.address) }, msg));
    s.on('error', (err) => { this.errors++; this.log({ level: 'warn', msg: 'dns socket error', error: String(err) }); });
    await new Promise<void>((res, rej) => {
      s.once('error', rej);
      s.bind(port, address, () => { s.off('error', rej); res(); });
    });
    return { address, port: s.address().port, close: () => s.close() };
  }

  async start(): Promise<void> {
    try {
      await this.forwarder.start();
      for (const l of this.opts.listen) {
        const s = await this.openUdp(l.address, l.port ?? 53);
        this.sockets.push(s);
        // TCP on the same address and port: clients retry there after a truncated (TC) answer.
        const t = net.createServer((c) => this.onTcp(c));
        t.maxConnections = TCP_MAX_CONNECTIONS;
        t.on('error', (err) => { this.errors++; this.log({ level: 'warn', msg: 'dns tcp error', error: String(err) }); });
        await new Promise<void>((res, rej) => {
          t.once('error', rej);
          t.listen({ port: s.port, host: l.address }, () => { t.off('error', rej); res(); });
        });
        this.tcpServers.push(t);
      }
    } catch (err) {
      this.close();
      throw new Error(`service DNS could not start on ${this.opts.listen.map((l) => `${l.address}:${l.port ?? 53}`).join(', ')}: ${String(err)}`);
    }
    this.log({ level: 'info', msg: 'service DNS listening', addresses: this.addresses, zone: this.zone, upstreams: this.forwarder.upstreams });
  }

  close(): void {
    for (const s of this.sockets) s.close();
    this.sockets.length = 0;
    for (const t of this.tcpServers) t.close();
    this.tcpServers.length = 0;
    for (const c of this.tcpConns) c.destroy();
    this.tcpConns.clear();
    this.forwarder.close();
  }

  /** Prometheus text for the worker's /metrics. */
  metrics(): string {
    const lines = ['# TYPE canopy_dns_queries_total counter'];
    for (const [k, v] of Object.entries(this.counts)) lines.push(`canopy_dns_queries_total{result="${k}"} ${v}`);
    lines.push('# TYPE canopy_dns_errors_total counter', `canopy_dns_errors_total ${this.errors}`);
    lines.push('# HELP canopy_dns_upstream_unreachable_total forwarded queries an upstream resolver did not answer',
      '# TYPE canopy_dns_upstream_unreachable_total counter');
    for (const [u, n] of this.forwarder.unreachable) lines.push(`canopy_dns_upstream_unreachable_total{upstream="${u}"} ${n}`);
    return `${lines.join('\n')}\n`;
  }

  /** Length-prefixed messages (RFC 1035 §4.2.2), answered in order of completion. */
  private onTcp(c: net.Socket): void {
    serveTcpFrames(c, this.tcpConns, (msg, send) => this.onQuery({ tcp: true, send }, msg));
  }

  private onQuery(to: Responder, msg: Buffer): void {
    try {
      this.handle(to, msg);
    } catch (err) {
      this.errors++;
      this.log({ level: 'error', msg: 'dns query handler failed', error: String(err) });
    }
  }

  private reply(to: Responder, answer: Uint8Array, result: Result): void {
    this.counts[result]++;
    // No callback: a failed UDP send surfaces as the socket's 'error' event (counted), and saves a closure.
    to.send(answer);
  }

  private handle(to: Responder, msg: Buffer): void {
    const q = parseQuery(msg);
    if ('reject' in q) {
      if (q.reject === 'drop') { this.counts.dropped++; return; }
      const rcode = q.reject === 'formerr' ? RCode.FORMERR : RCode.NOTIMP;
      this.reply(to, buildError(msg, q.id, q.rd, rcode), q.reject);
      return;
    }
    if (to.tcp) q.udpSize = 65535;
    const key = q.edns || to.tcp ? `${msg.toString('latin1', 12, q.questionEnd)}|${q.udpSize}` : msg.toString('latin1', 12, q.questionEnd);
    const version = this.opts.resolver.routesVersion ?? 0;
    if (version !== this.answersVersion) { this.answers.clear(); this.answersVersion = version; }
    const hit = this.answers.get(key);
    if (hit !== undefined && hit.expires > Date.now()) {
      const out = Buffer.allocUnsafe(hit.bytes.length);
      hit.bytes.copy(out);
      out[0] = q.id >> 8; out[1] = q.id & 0xff;
      out[2] = (out[2]! & 0xfe) | (q.rd ? 1 : 0);
      this.reply(to, out, hit.result);
      return;
    }
    const zn = parseZoneName(queryName(msg, q), this.zone);
    if (zn.kind === 'outside') {
      // Forwarded answers are the upstream's to cache.
      if (!this.forwarder.hasUpstreams) { this.reply(to, buildError(msg, q.id, q.rd, RCode.REFUSED, q), 'refused'); return; }
      (to.tcp ? this.forwarder.forwardTcp.bind(this.forwarder) : this.forwarder.forward.bind(this.forwarder))(msg,
        (answer) => this.reply(to, answer, 'forwarded'),
        () => this.reply(to, buildError(msg, q.id, q.rd, RCode.SERVFAIL, q), 'servfail'));
      return;
    }
    if (q.qclass !== CLASS_IN && q.qclass !== QType.ANY) {
      this.reply(to, buildError(msg, q.id, q.rd, RCode.REFUSED, q), 'refused');
      return;
    }
    if (zn.kind === 'apex') {
      const soa = this.soa();
      const isSoa = q.qtype === QType.SOA || q.qtype === QType.ANY;
      this.send(to, msg, q, { rcode: RCode.NOERROR, answers: isSoa ? [soa] : [], authority: isSoa ? [] : [soa] }, isSoa ? 'answer' : 'nodata', key);
      return;
    }
    if (zn.kind === 'invalid') { this.negative(to, msg, q, RCode.NXDOMAIN, key); return; }
    const r = this.opts.resolver.resolveName(zn.fullName);
    if (!(r instanceof Promise)) { this.answerService(to, msg, q, r, zn.selector, key); return; }
    let done = false;
    const timer = setTimeout(() => {
      done = true;
      this.reply(to, buildError(msg, q.id, q.rd, RCode.SERVFAIL, q), 'servfail');
    }, this.resolveTimeoutMs);
    r.then((route) => {
      if (done) return;
      clearTimeout(timer);
      this.answerService(to, msg, q, route, zn.selector, key);
    }, (err: unknown) => {
      if (done) return;
      clearTimeout(timer);
      this.errors++;
      this.log({ level: 'warn', msg: 'service lookup failed', name: zn.fullName, error: String(err) });
      this.reply(to, buildError(msg, q.id, q.rd, RCode.SERVFAIL, q), 'servfail');
    });
  }

  private answerService(to: Responder, msg: Buffer, q: Query, route: ServiceRoute | null,
    sel: Selector, key: string): void {
    if (!route) { this.negative(to, msg, q, RCode.NXDOMAIN, key); return; }
    let v4: string | null, v6: string | null;
    if (sel.kind === 'instance') {
      const inst = route.instances.find((i) => i.n === sel.n);
      if (!inst) { this.negative(to, msg, q, RCode.NXDOMAIN, key); return; }
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
    if (answers.length === 0) { this.negative(to, msg, q, RCode.NOERROR, key); return; }
    this.send(to, msg, q, { rcode: RCode.NOERROR, answers, authority: [] }, 'answer', key);
  }

  private soa(): ResourceRecord {
    return { type: QType.SOA, ttl: this.ttl, rdata: rdataSoa(0, this.serial, this.ttl) };
  }

  /** NXDOMAIN or NODATA, with the zone's SOA so that resolvers cache the miss only for `ttl`. */
  private negative(to: Responder, msg: Buffer, q: Query, rcode: number, key: string): void {
    this.send(to, msg, q, { rcode, answers: [], authority: [this.soa()] }, rcode === RCode.NXDOMAIN ? 'nxdomain' : 'nodata', key);
  }

  private send(to: Responder, msg: Buffer, q: Query,
    a: Pick<AnswerSpec, 'rcode' | 'answers' | 'authority'>, result: Result, key: string): void {
    // The zone apex is the last zoneLabels labels of the question name: point the SOA's names there.
    const zoneOffset = q.labelOffsets[q.labelOffsets.length - this.zoneLabels] ?? 12;
    const authority = a.authority.map((r) => (r.type === QType.SOA ? { ...r, rdata: rdataSoa(zoneOffset, this.serial, this.ttl) } : r));
    const answers = a.answers.map((r) => (r.type === QType.SOA ? { ...r, rdata: rdataSoa(zoneOffset, this.serial, this.ttl) } : r));
    const out = buildAnswer(msg, q, { rcode: a.rcode, authoritative: true, answers, authority, authorityOffset: zoneOffset });
    if (this.answers.size >= ANSWER_CACHE_MAX) this.answers.clear();
    this.answers.set(key, { bytes: Buffer.from(out), expires: Date.now() + ANSWER_CACHE_MS, result });
    this.reply(to, out, result);
  }
}

function hostUpstreams(own: string[]): Upstream[] {
  try {
    return upstreamsFromResolvConf(readFileSync('/etc/resolv.conf', 'utf8'), own);
  } catch {
    return [];
  }
}
