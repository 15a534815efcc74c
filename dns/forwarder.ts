// Relays queries for names outside the zone to upstream resolvers: the raw query goes out with a fresh
// id, the raw answer comes back with the client's id restored. A silent upstream means the next one is
// tried, and when none is left the client gets SERVFAIL rather than silence. An upstream that stops
// answering is logged once with the reason (and again once it answers), and every failed attempt on it
// is counted, so an unreachable resolver shows in the worker's log and /metrics instead of only as slow
// SERVFAILs inside instances.
import dgram from 'node:dgram';
import net, { isIPv4, isIPv6 } from 'node:net';
import { ipBytes, ipString } from '../proxy/address-map.ts';

export interface Upstream { address: string; port: number }

/** "198.18.0.5", "198.18.0.5:5353", "2001:2::5", "[2001:2::5]:5353". */
export function parseUpstream(s: string): Upstream {
  const t = s.trim();
  let m = /^\[([^\]]+)\](?::(\d+))?$/.exec(t);
  if (m && isIPv6(m[1]!)) return { address: m[1]!, port: port(m[2]) };
  m = /^([0-9.]+)(?::(\d+))?$/.exec(t);
  if (m && isIPv4(m[1]!)) return { address: m[1]!, port: port(m[2]) };
  if (isIPv6(t)) return { address: t, port: 53 };
  throw new Error(`bad upstream resolver "${s}": expected IP, IP:port or [IPv6]:port`);
}

function port(s: string | undefined): number {
  const p = s === undefined ? 53 : Number(s);
  if (!Number.isInteger(p) || p < 1 || p > 65535) throw new Error(`bad port ${s}`);
  return p;
}

/** The nameservers of a resolv.conf text, minus addresses that would loop back to ourselves. */
export function upstreamsFromResolvConf(text: string, exclude: string[] = []): Upstream[] {
  return text.split('\n')
    .map((l) => /^\s*nameserver\s+(\S+)/.exec(l)?.[1])
    .filter((a): a is string => a !== undefined && (isIPv4(a) || isIPv6(a)) && !exclude.includes(a))
    .map((a) => ({ address: a, port: 53 }));
}

interface InFlight {
  origId: number;
  query: Buffer;
  reply: (answer: Buffer) => void;
  fail: () => void;
  timer: NodeJS.Timeout;
  tried: number;
  sendError?: string;
}

export interface ForwarderOptions {
  upstreams: Upstream[];
  timeoutMs?: number;
  maxInFlight?: number;
  /** Told when an upstream stops answering (level warn, with the reason) and when it answers again. */
  log?: (rec: Record<string, unknown>) => void;
}

/** What is known of one upstream: failed attempts, and whether its last attempt failed. */
interface Health { failures: number; down: boolean }

const upstreamKey = (u: Upstream): string => (isIPv6(u.address) ? `[${u.address}]:${u.port}` : `${u.address}:${u.port}`);

export class Forwarder {
  private readonly inFlight = new Map<number, InFlight>();
  private sock4: dgram.Socket | null = null;
  private sock6: dgram.Socket | null = null;
  private readonly timeoutMs: number;
  private readonly maxInFlight: number;
  readonly stats = { forwarded: 0, answered: 0, timeouts: 0, refusedFull: 0, strays: 0 };

  private readonly opts: ForwarderOptions;
  private readonly health = new Map<string, Health>();

  constructor(opts: ForwarderOptions) {
    // Canonical spelling, so that answers are matched against what the kernel reports as their source.
    this.opts = { ...opts, upstreams: opts.upstreams.map((u) => ({ ...u, address: ipString(ipBytes(u.address)) })) };
    this.timeoutMs = opts.timeoutMs ?? 2000;
    this.maxInFlight = opts.maxInFlight ?? 4096;
    for (const u of this.opts.upstreams) this.health.set(upstreamKey(u), { failures: 0, down: false });
  }

  /** Failed attempts per upstream ("addr:port"), for /metrics. */
  get unreachable(): Map<string, number> {
    return new Map([...this.health].map(([k, h]) => [k, h.failures]));
  }

  /** An attempt on `u` got no answer: counted each time, logged only when it was answering before. */
  private failed(u: Upstream, reason: string): void {
    const h = this.health.get(upstreamKey(u));
    if (!h) return;
    h.failures++;
    if (h.down) return;
    h.down = true;
    this.opts.log?.({ level: 'warn', msg: 'DNS upstream unreachable', upstream: upstreamKey(u), reason,
      hint: 'names outside the service zone get SERVFAIL while no upstream answers; logged once until it answers again' });
  }

  private answeredBy(u: Upstream): void {
    const h = this.health.get(upstreamKey(u));
    if (!h?.down) return;
    h.down = false;
    this.opts.log?.({ level: 'info', msg: 'DNS upstream answering again', upstream: upstreamKey(u) });
  }

  get hasUpstreams(): boolean { return this.opts.upstreams.length > 0; }
  get upstreams(): Upstream[] { return this.opts.upstreams.map((u) => ({ ...u })); }

  async start(): Promise<void> {
    const open = async (type: 'udp4' | 'udp6'): Promise<dgram.Socket> => {
      const s = dgram.createSocket(type);
      s.on('message', (msg, rinfo) => this.onAnswer(msg, rinfo));
      s.on('error', () => { /* ICMP errors from a dead upstream: the timeout handles them */ });
      await new Promise<void>((res, rej) => { s.once('error', rej); s.bind(0, () => { s.off('error', rej); res(); }); });
      return s;
    };
    if (this.opts.upstreams.some((u) => isIPv4(u.address))) this.sock4 = await open('udp4');
    if (this.opts.upstreams.some((u) => isIPv6(u.address))) this.sock6 = await open('udp6');
  }

  /** Relays one raw query. Exactly one of reply/fail is called, once. */
  forward(query: Uint8Array, reply: (answer: Buffer) => void, fail: () => void): void {
    if (!this.hasUpstreams || this.inFlight.size >= this.maxInFlight || query.length < 12) {
      this.stats.refusedFull++;
      fail();
      return;
    }
    let id = 0;
    for (let i = 0; i < 16; i++) {
      id = (Math.random() * 0x10000) | 0;
      if (!this.inFlight.has(id)) break;
    }
    if (this.inFlight.has(id)) { this.stats.refusedFull++; fail(); return; }
    const copy = Buffer.from(query);
    const origId = copy.readUInt16BE(0);
    copy.writeUInt16BE(id, 0);
    const f: InFlight = { origId, query: copy, reply, fail, tried: 0, timer: setTimeout(() => this.onTimeout(id), this.timeoutMs) };
    this.inFlight.set(id, f);
    this.stats.forwarded++;
    this.send(f);
  }

  /** Relays one query over TCP (after a truncated answer), trying each upstream in turn. */
  forwardTcp(query: Uint8Array, reply: (answer: Buffer) => void, fail: () => void): void {
    const ups = this.opts.upstreams;
    if (ups.length === 0) { fail(); return; }
    this.stats.forwarded++;
    const attempt = (i: number): void => {
      if (i >= ups.length) { this.stats.timeouts++; fail(); return; }
      const u = ups[i]!;
      let buf = Buffer.alloc(0), done = false;
      const c = net.connect({ host: u.address, port: u.port });
      const give = (ok: Buffer | null, reason = ''): void => {
        if (done) return;
        done = true;
        c.destroy();
        if (ok) { this.stats.answered++; this.answeredBy(u); reply(ok); return; }
        this.failed(u, reason);
        attempt(i + 1);
      };
      c.setTimeout(this.timeoutMs, () => give(null, `no answer over TCP within ${this.timeoutMs} ms`));
      c.on('error', (e: NodeJS.ErrnoException) => give(null, `TCP: ${e.code ?? e.message}`));
      c.on('connect', () => {
        const len = Buffer.allocUnsafe(2);
        len.writeUInt16BE(query.length, 0);
        c.write(Buffer.concat([len, query]));
      });
      c.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) give(Buffer.from(buf.subarray(2, 2 + buf.readUInt16BE(0))));
      });
      c.on('end', () => give(null, 'TCP connection closed before an answer'));
    };
    attempt(0);
  }

  private send(f: InFlight): void {
    const u = this.opts.upstreams[f.tried % this.opts.upstreams.length]!;
    const s = isIPv4(u.address) ? this.sock4 : this.sock6;
    // A send error (no route, …) still ends in this attempt's timeout; it only names the reason.
    s?.send(f.query, u.port, u.address, (err) => { if (err) f.sendError = (err as NodeJS.ErrnoException).code ?? err.message; });
  }

  private onTimeout(id: number): void {
    const f = this.inFlight.get(id);
    if (!f) return;
    const u = this.opts.upstreams[f.tried % this.opts.upstreams.length]!;
    this.failed(u, f.sendError ? `send failed: ${f.sendError}` : `no answer within ${this.timeoutMs} ms`);
    f.sendError = undefined;
    f.tried++;
    if (f.tried < this.opts.upstreams.length) {
      f.timer = setTimeout(() => this.onTimeout(id), this.timeoutMs);
      this.send(f);
      return;
    }
    this.inFlight.delete(id);
    this.stats.timeouts++;
    f.fail();
  }

  private onAnswer(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (msg.length < 12 || !(msg[2]! & 0x80)) { this.stats.strays++; return; }
    const from = this.opts.upstreams.find((u) => u.port === rinfo.port && sameAddress(u.address, rinfo.address));
    const f = from ? this.inFlight.get(msg.readUInt16BE(0)) : undefined;
    if (!f || !from) { this.stats.strays++; return; }
    this.answeredBy(from);
    this.inFlight.delete(msg.readUInt16BE(0));
    clearTimeout(f.timer);
    msg.writeUInt16BE(f.origId, 0);
    this.stats.answered++;
    f.reply(msg);
  }

  close(): void {
    for (const f of this.inFlight.values()) clearTimeout(f.timer);
    this.inFlight.clear();
    this.sock4?.close();
    this.sock6?.close();
    this.sock4 = this.sock6 = null;
  }
}

function sameAddress(a: string, b: string): boolean {
  return a === b || b === `::ffff:${a}`;
}
