// The two batched interfaces the datapath drives: a packet device (the TUN) and a datagram socket
// (the tunnel's UDP socket). They live here, below netstack, as wireguard-go's conn.Bind and
// tun.Device live beside their implementations: native/ implements them and imports nothing of the
// project's other folders; netstack/datapath.ts drives them; netstack/fakes.ts has in-memory ones so
// translation and tunnel logic run in unit tests without root.

/** A gather list describing one or more datagrams of `segSize` bytes each (the last may be shorter). */
export class TxPlan {
  readonly bufs: Uint8Array[] = [];
  readonly offs: number[] = [];
  readonly lens: number[] = [];
  /** Index into the entries where each datagram starts. */
  readonly segStart: number[] = [];
  entries = 0;
  segments = 0;
  segSize = 0;
  total = 0;

  reset(segSize: number): void {
    this.entries = 0;
    this.segments = 0;
    this.total = 0;
    this.segSize = segSize;
  }

  startSegment(): void {
    this.segStart[this.segments++] = this.entries;
  }

  push(buf: Uint8Array, off: number, len: number): void {
    if (len <= 0) return;
    const i = this.entries++;
    this.bufs[i] = buf;
    this.offs[i] = off;
    this.lens[i] = len;
    this.total += len;
  }

  /** Bytes of datagram `s` (for implementations that send one datagram at a time). */
  segmentBytes(s: number): number {
    const end = s + 1 < this.segments ? this.segStart[s + 1] : this.entries;
    let n = 0;
    for (let i = this.segStart[s]; i < end; i++) n += this.lens[i];
    return n;
  }

  /** Copies datagram `s` into dst at 0 and returns its length. */
  copySegment(s: number, dst: Uint8Array): number {
    const end = s + 1 < this.segments ? this.segStart[s + 1] : this.entries;
    let n = 0;
    for (let i = this.segStart[s]; i < end; i++) {
      dst.set(this.bufs[i].subarray(this.offs[i], this.offs[i] + this.lens[i]), n);
      n += this.lens[i];
    }
    return n;
  }
}

/** Where a peer's tunnel socket is. Keep one object per peer: sockets cache the encoded address per
 *  Endpoint object, so a fresh object per packet would cost a parse and an allocation each time. */
export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

export interface RxInfo {
  /** Size of each coalesced datagram in the bytes returned (UDP_GRO); equals the length when single. */
  segSize: number;
}

export interface DatagramSocket {
  /** True when one send may carry many datagrams (UDP_SEGMENT). */
  readonly gso: boolean;
  /** Sends the plan's datagrams to `to`. False when the kernel refused (buffer full): dropped. */
  send(to: Endpoint, plan: TxPlan): boolean;
  /** Receives into buf[off..); returns the byte count (several datagrams of rx.segSize bytes when coalesced),
   *  or -1 when nothing is waiting. */
  recv(buf: Uint8Array, off: number, max: number, rx: RxInfo): number;
  close(): void;
}

export interface PacketDevice {
  /** Packets carry a 10-byte virtio_net_hdr first (TUN with IFF_VNET_HDR and offloads). */
  readonly vnetHdr: boolean;
  /** Reads one packet into buf[off..); its length, or -1 when nothing is waiting. */
  read(buf: Uint8Array, off: number, max: number): number;
  /** Writes buf[off..off+len). False when the device queue is full (dropped). */
  write(buf: Uint8Array, off: number, len: number): boolean;
  /** Failed reads other than "nothing waiting", and the last one's errno (for /metrics). */
  readonly readErrors?: number;
  readonly lastReadErrno?: number;
  close(): void;
}

/** UDP payload of the largest IP datagram, which is all one GSO send may carry. */
export function maxGsoPayloadFor(underlay: 4 | 6): number {
  return underlay === 4 ? 65535 - 20 - 8 : 65535 - 8;
}
