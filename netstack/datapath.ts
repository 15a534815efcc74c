// The datapath of one worker: its two directions, each with its own buffers (Nebula's inside.go and
// outside.go), sharing the device, the socket, the table, the tunnel codec, the peer table and the
// counters. It never allocates per packet on the common path.
//
//   inside.ts   TUN → table → tunnel (or back into the TUN for a local target); the pending queue
//   outside.ts  tunnel → table → TUN; RTT probes and echoes
//
// Two modes share this code. Offload mode (device with virtio_net_hdr, socket with UDP GSO): one
// TUN read is a super-packet of up to 64 kB, translated once and carried as one tunnel batch. Per-
// packet mode (no vnet header): each read is one MTU-sized packet.
import type { DatagramSocket, PacketDevice } from '../native/io.ts';
import type { TranslationTable } from './table.ts';
import { MAX_PAYLOAD, type TunnelCodec } from './tunnel.ts';
import { Counter, Counters } from './counters.ts';
import type { PeerLookup } from './peers.ts';
import { Inside } from './inside.ts';
import { Outside } from './outside.ts';

export { Counter };

export interface DatapathOptions {
  device: PacketDevice;
  socket: DatagramSocket;
  table: TranslationTable;
  codec: TunnelCodec;
  /** Where a peer worker's tunnel socket is (the worker's peer table, netstack/peers.ts). */
  peers: Pick<PeerLookup, 'endpoint'>;
  /** Packets per pump call before yielding to the event loop (fairness between TUN and socket). */
  budget?: number;
  /** Bound on packets waiting for a route (Pending verdict). */
  pendingLimit?: number;
  /** How long a packet may wait for its route before it is dropped (default 2000 ms). */
  pendingMaxMs?: number;
  /** Inner MTU: SYNs crossing the datapath get their MSS clamped to it (0 = no clamping). */
  mtu?: number;
}

export class Datapath {
  readonly codec: TunnelCodec;
  private readonly dev: PacketDevice;
  private readonly sock: DatagramSocket;
  private readonly counters = new Counters();
  private readonly inside: Inside;
  private readonly outside: Outside;
  private readonly budget: number;
  private closed = false;

  constructor(o: DatapathOptions) {
    this.dev = o.device;
    this.sock = o.socket;
    this.codec = o.codec;
    this.budget = o.budget ?? 256;
    const settings = { budget: this.budget, mss4: o.mtu ? o.mtu - 40 : 0, mss6: o.mtu ? o.mtu - 60 : 0 };
    const shared = { device: o.device, socket: o.socket, table: o.table, codec: o.codec, peers: o.peers, counters: this.counters, settings };
    this.inside = new Inside({ ...shared, pendingLimit: o.pendingLimit ?? 256, pendingMaxMs: o.pendingMaxMs ?? 2000 });
    this.outside = new Outside(shared);
  }

  /** The last exception a packet caused (counted as errors; the loop carries on). */
  get lastError(): string | undefined {
    return this.counters.lastError;
  }

  stats(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of this.counters.entries()) out[k] = v;
    for (const [k, v] of this.codec.drops) out[`tunnel_drop_${k}`] = v;
    out.dev_read_errors = this.dev.readErrors ?? 0;
    out.dev_last_read_errno = this.dev.lastReadErrno ?? 0;
    return out;
  }

  /** Packets read from and written into the TUN so far: the instances' traffic, without the tunnel's probes. */
  instancePackets(): number {
    return this.counters.get(Counter.DevRx) + this.counters.get(Counter.DevTx);
  }

  onRtt(listener: (peer: number, ms: number) => void): void {
    this.outside.onRtt(listener);
  }

  /** Handles packets waiting on the device; returns how many. */
  pumpDevice(): number {
    return this.inside.pump();
  }

  /** Handles datagrams waiting on the socket; returns how many receive calls it made. */
  pumpSocket(): number {
    return this.outside.pump();
  }

  /**
   * The socket, then the device if the socket's packets were written into it. A packet written into
   * the TUN is received inside the write (netstack/placement.ts), and what the kernel answers there
   * without waking an application (an echo reply, a TCP ACK, a RST) is already in the TUN's queue
   * when the write returns. Reading it here spares it the way back through the event loop (an
   * epoll_wait and a readiness callback: ~13 µs p50 of a 5/s round trip on the lab VM,
   * docs/decisions.md). Nothing waits for it: the device is read once, until it is empty.
   *
   * The first receive is handled alone, and its answers read and sent, before the socket is read
   * again: a lone request's answer then leaves before the receive that ends the socket pump (an
   * EAGAIN recvmsg, 1.3 µs warm and ~6 µs on a just-woken process) instead of after it. Under load
   * this is at most one more device pump per socket pump, and with UDP_GRO the first receive usually
   * takes everything that was waiting anyway.
   */
  pumpSocketAndReplies(): number {
    let written = this.counters.get(Counter.DevTx);
    let n = this.outside.pump(1);
    if (n === 0) return 0;
    if (this.counters.get(Counter.DevTx) !== written) this.inside.pump();
    written = this.counters.get(Counter.DevTx);
    n += this.outside.pump(this.budget - 1);
    if (this.counters.get(Counter.DevTx) !== written) this.inside.pump();
    return n;
  }

  /** Sends an RTT probe to a peer; the answer reaches onRtt listeners. */
  probe(peer: number): boolean {
    return this.outside.probe(peer);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.inside.close();
    this.outside.close();
    this.dev.close();
    this.sock.close();
    this.codec.close();
  }
}

export { MAX_PAYLOAD };
