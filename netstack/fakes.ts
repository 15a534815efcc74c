// In-memory packet device and datagram sockets, for unit tests of translation and tunnel logic.
import type { DatagramSocket, Endpoint, PacketDevice, RxInfo, TxPlan } from '../native/io.ts';

/** A switch joining fake sockets by "host:port". */
export class FakeNetwork {
  private readonly sockets = new Map<string, FakeSocket>();
  /** Every datagram sent, in order (for tests that inspect or replay the wire). */
  readonly wire: Array<{ to: string; data: Uint8Array }> = [];

  /** A socket; with `gro`, receives coalesce datagrams as UDP_GRO does. */
  socket(host: string, port: number, gso = true, gro = false): FakeSocket {
    const s = gro ? new FakeGroSocket(this, `${host}:${port}`, gso) : new FakeSocket(this, `${host}:${port}`, gso);
    this.sockets.set(s.key, s);
    return s;
  }

  deliver(to: string, data: Uint8Array): void {
    this.wire.push({ to, data });
    this.sockets.get(to)?.queue.push(data);
  }

  remove(key: string): void {
    this.sockets.delete(key);
  }
}

export class FakeSocket implements DatagramSocket {
  readonly queue: Uint8Array[] = [];
  private readonly net: FakeNetwork;
  readonly key: string;
  readonly gso: boolean;
  sent = 0;

  constructor(net: FakeNetwork, key: string, gso: boolean) {
    this.net = net;
    this.key = key;
    this.gso = gso;
  }

  send(to: Endpoint, plan: TxPlan): boolean {
    const scratch = new Uint8Array(65536);
    for (let s = 0; s < plan.segments; s++) {
      const n = plan.copySegment(s, scratch);
      this.net.deliver(`${to.host}:${to.port}`, scratch.slice(0, n));
      this.sent++;
    }
    return true;
  }

  recv(buf: Uint8Array, off: number, max: number, rx: RxInfo): number {
    const d = this.queue.shift();
    if (!d) return -1;
    const n = Math.min(d.length, max);
    buf.set(d.subarray(0, n), off);
    rx.segSize = n;
    return n;
  }

  close(): void {
    this.net.remove(this.key);
  }
}

/** Receives like a kernel socket with UDP_GRO: a run of equal-size datagrams (the last may be
 *  shorter) up to 64 kB comes back as one receive. */
export class FakeGroSocket extends FakeSocket {
  private readonly stream = new Uint8Array(65536);

  private take(rx: RxInfo): number {
    const first = this.queue.shift();
    if (!first) return -1;
    const seg = first.length;
    this.stream.set(first, 0);
    let n = seg;
    while (this.queue.length > 0) {
      const d = this.queue[0];
      if (d.length > seg || n + d.length > 65535) break;
      this.queue.shift();
      this.stream.set(d, n);
      n += d.length;
      if (d.length < seg) break;
    }
    rx.segSize = seg;
    return n;
  }

  override recv(buf: Uint8Array, off: number, max: number, rx: RxInfo): number {
    const n = this.take(rx);
    if (n < 0) return -1;
    buf.set(this.stream.subarray(0, Math.min(n, max)), off);
    return n;
  }
}

/** A TUN stand-in: tests push packets "from the kernel" and read what the datapath wrote. */
export class FakeDevice implements PacketDevice {
  readonly vnetHdr: boolean;
  readonly inbox: Uint8Array[] = [];
  readonly written: Uint8Array[] = [];

  constructor(vnetHdr: boolean) {
    this.vnetHdr = vnetHdr;
  }

  read(buf: Uint8Array, off: number, max: number): number {
    const p = this.inbox.shift();
    if (!p) return -1;
    const n = Math.min(p.length, max);
    buf.set(p.subarray(0, n), off);
    return n;
  }

  write(buf: Uint8Array, off: number, len: number): boolean {
    this.written.push(buf.slice(off, off + len));
    return true;
  }

  close(): void {}
}
