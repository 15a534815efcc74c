// In-memory packet device and datagram sockets, for unit tests of translation and tunnel logic.
import type { DatagramSocket, Endpoint, PacketDevice, RxInfo, TxPlan } from './io.ts';

/** A switch joining fake sockets by "host:port". */
export class FakeNetwork {
  private readonly sockets = new Map<string, FakeSocket>();
  /** Every datagram sent, in order (for tests that inspect or replay the wire). */
  readonly wire: Array<{ to: string; data: Uint8Array }> = [];

  socket(host: string, port: number, gso = true): FakeSocket {
    const s = new FakeSocket(this, `${host}:${port}`, gso);
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
