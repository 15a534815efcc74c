// A plain DNS relay: every query, whatever its name, goes to the upstream resolvers (dns/forwarder.ts)
// and the answer comes back unchanged. `canopy up` runs one on the host side of its bridge, so workers
// in their own network namespaces reach the host's resolvers — including a loopback one such as
// systemd-resolved's 127.0.0.53, which no route from another namespace can reach.
import dgram from 'node:dgram';
import net, { isIPv6 } from 'node:net';
import { Forwarder, type Upstream } from './forwarder.ts';
import { serveTcpFrames } from './tcp-frames.ts';
import { RCode, buildError, parseQuery } from './wire.ts';

export interface DnsRelayOptions {
  listen: { address: string; port: number };
  upstreams: Upstream[];
  timeoutMs?: number;
  log?: (rec: Record<string, unknown>) => void;
}

const TCP_MAX_CONNECTIONS = 256;

export class DnsRelay {
  private readonly forwarder: Forwarder;
  private udp: dgram.Socket | null = null;
  private tcp: net.Server | null = null;
  private readonly conns = new Set<net.Socket>();
  private readonly log: (rec: Record<string, unknown>) => void;
  readonly counts = { forwarded: 0, servfail: 0, dropped: 0 };

  constructor(private readonly opts: DnsRelayOptions) {
    this.log = opts.log ?? (() => {});
    this.forwarder = new Forwarder({ upstreams: opts.upstreams, timeoutMs: opts.timeoutMs, log: this.log });
  }

  get port(): number {
    return this.udp?.address().port ?? this.opts.listen.port;
  }

  /** Failed attempts per upstream. */
  get unreachable(): Map<string, number> {
    return this.forwarder.unreachable;
  }

  async start(): Promise<void> {
    if (!this.forwarder.hasUpstreams) throw new Error('no upstream resolver: give --upstream, or put a nameserver in /etc/resolv.conf');
    const { address, port } = this.opts.listen;
    try {
      await this.forwarder.start();
      const u = dgram.createSocket(isIPv6(address) ? 'udp6' : 'udp4');
      this.udp = u;
      u.on('message', (msg, r) => this.relay(msg, false, (a) => u.send(a, r.port, r.address)));
      await new Promise<void>((res, rej) => { u.once('error', rej); u.bind(port, address, () => { u.off('error', rej); res(); }); });
      u.on('error', (e) => this.log({ level: 'warn', msg: 'dns relay socket error', error: String(e) }));
      const t = net.createServer((c) => this.onTcp(c));
      this.tcp = t;
      t.maxConnections = TCP_MAX_CONNECTIONS;
      await new Promise<void>((res, rej) => { t.once('error', rej); t.listen({ port: this.port, host: address }, () => { t.off('error', rej); res(); }); });
      t.on('error', (e) => this.log({ level: 'warn', msg: 'dns relay tcp error', error: String(e) }));
    } catch (e) {
      this.close();
      throw new Error(`DNS relay could not listen on ${address}:${port}: ${(e as Error).message}`);
    }
    this.log({ level: 'info', msg: 'dns relay listening', address, port: this.port, upstreams: this.forwarder.upstreams });
  }

  private relay(msg: Buffer, tcp: boolean, send: (a: Uint8Array) => void): void {
    const q = parseQuery(msg);
    // Only well-formed queries go upstream; the rest is answered here as the service DNS would.
    if ('reject' in q) {
      if (q.reject === 'drop') { this.counts.dropped++; return; }
      send(buildError(msg, q.id, q.rd, q.reject === 'formerr' ? RCode.FORMERR : RCode.NOTIMP));
      return;
    }
    this.counts.forwarded++;
    const fail = (): void => { this.counts.servfail++; send(buildError(msg, q.id, q.rd, RCode.SERVFAIL, q)); };
    if (tcp) this.forwarder.forwardTcp(msg, send, fail);
    else this.forwarder.forward(msg, send, fail);
  }

  private onTcp(c: net.Socket): void {
    serveTcpFrames(c, this.conns, (msg, send) => this.relay(msg, true, send));
  }

  close(): void {
    this.udp?.close();
    this.udp = null;
    this.tcp?.close();
    this.tcp = null;
    for (const c of this.conns) c.destroy();
    this.conns.clear();
    this.forwarder.close();
  }
}
