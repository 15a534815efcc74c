// The datapath loop of one worker: packets from the TUN are parsed once, translated by the table and
// sent through the tunnel (or straight back for a local target); batches from the tunnel are
// authenticated, translated back and written into the TUN. It never allocates per packet on the
// common path: the buffers below are reused.
//
// Two modes share this code. Offload mode (device with virtio_net_hdr, socket with UDP GSO): one
// TUN read is a super-packet of up to 64 kB, translated once and carried as one tunnel batch. Per-
// packet mode (no vnet header): each read is one MTU-sized packet. A super-packet arriving at a
// per-packet device is cut into plain packets first (segment.ts).
import { Verdict, newRewrite, type Rewrite, type TranslationTable } from './table.ts';
import { Frag, PacketInfo, ParseError, ipLength, parsePacket } from './packet.ts';
import { IcmpError, parseIcmpError, rewriteIcmpError } from './icmp-error.ts';
import { applyRewrite } from './rewrite.ts';
import { clampMss } from './mss.ts';
import { segmentOffloaded } from './segment.ts';
import { TxPlan, type DatagramSocket, type Endpoint, type PacketDevice, type RxInfo } from '../native/io.ts';
import { MAX_PAYLOAD, TunnelCodec, TunnelFlag, TunnelType, newRxBatch, type RxBatch } from './tunnel.ts';
import { GSO_NONE, VNET_F_NEEDS_CSUM, VNET_HDR_LEN, vnetFlags, vnetGsoType, writeVnetNone } from './vnet.ts';

export interface DatapathOptions {
  device: PacketDevice;
  socket: DatagramSocket;
  table: TranslationTable;
  codec: TunnelCodec;
  /** Where a peer worker's tunnel socket is; undefined for an unknown peer. */
  endpointOf: (peer: number) => Endpoint | undefined;
  /** Packets per pump call before yielding to the event loop (fairness between TUN and socket). */
  budget?: number;
  /** Bound on packets waiting for a route (Pending verdict). */
  pendingLimit?: number;
  /** How long a packet may wait for its route before it is dropped (default 2000 ms). */
  pendingMaxMs?: number;
  /** Inner MTU: SYNs crossing the datapath get their MSS clamped to it (0 = no clamping). */
  mtu?: number;
}

export const Counter = {
  DevRx: 'dev_rx_packets',
  DevTx: 'dev_tx_packets',
  DevTxFull: 'dev_tx_dropped',
  Parse: 'drop_unparsable',
  NoRoute: 'drop_no_route',
  NoPeer: 'drop_unknown_peer',
  SockTxFull: 'sock_tx_dropped',
  SockRxBytes: 'sock_rx_bytes',
  /** Receive calls that returned data (one GRO receive may hold many datagrams). */
  SockRxCalls: 'sock_rx_calls',
  TunnelTx: 'tunnel_tx_batches',
  TunnelRx: 'tunnel_rx_batches',
  InboundDrop: 'drop_inbound',
  Pending: 'pending_queued',
  PendingDrop: 'pending_dropped',
  PendingExpired: 'pending_expired',
  Segmented: 'segmented_packets',
  Local: 'local_delivered',
  Coalesced: 'coalesced_packets',
  MssClamped: 'mss_clamped',
  Errors: 'errors',
  FragmentDrop: 'drop_fragment_unknown',
  IcmpErrors: 'icmp_errors_translated',
} as const;
export type Counter = (typeof Counter)[keyof typeof Counter];

const DEV_BUF = VNET_HDR_LEN + 65535 + 64;
/** Fragmented datagrams remembered (first fragment's outcome, for the later ones); oldest go first. */
const FRAG_MEMORY = 1024;

/** What the first fragment of a datagram became, applied to its later fragments. */
interface FragOutcome {
  verdict: Verdict;
  peer: number;
  src: Uint8Array;
  dst: Uint8Array;
}

/** Plain packets to one peer read in one pump share a tunnel batch up to this many bytes. One AEAD
 *  call and one sendmsg then serve many packets: the fixed ~3 µs of a node:crypto call would otherwise
 *  dominate small packets (see perf/RESULTS.md). */
const COALESCE_BYTES = 60000;

export class Datapath {
  private readonly dev: PacketDevice;
  private readonly sock: DatagramSocket;
  private readonly table: TranslationTable;
  readonly codec: TunnelCodec;
  private readonly endpointOf: (peer: number) => Endpoint | undefined;
  private readonly budget: number;
  private readonly pendingLimit: number;
  private readonly mss4: number;
  private readonly mss6: number;
  private readonly devBuf = new Uint8Array(DEV_BUF);
  private readonly sockBuf = new Uint8Array(65536 + 64);
  private readonly outBuf = new Uint8Array(DEV_BUF);
  private readonly agg = new Uint8Array(COALESCE_BYTES + DEV_BUF);
  private aggLen = 0;
  private aggCount = 0;
  private aggPeer: Endpoint | undefined;
  private readonly m = new PacketInfo();
  private readonly rw: Rewrite = newRewrite();
  private readonly plan = new TxPlan();
  private readonly rx: RxInfo = { segSize: 0 };
  private readonly batch: RxBatch = newRxBatch();
  private readonly probeBuf = new Uint8Array(128);
  private readonly pending: Uint8Array[] = [];
  private readonly pendingSince: number[] = [];
  private readonly pendingMaxMs: number;
  private readonly frags = new Map<string, FragOutcome>();
  private readonly icmpErr = new IcmpError();
  private readonly counters = new Map<Counter, number>();
  private readonly rttListeners: Array<(peer: number, ms: number) => void> = [];
  private readonly emitSeg = (b: Uint8Array, len: number): void => {
    this.count(Counter.Segmented);
    this.devWrite(b, 0, len);
  };
  private closed = false;
  /** The last exception a packet caused (counted as errors; the loop carries on). */
  lastError: string | undefined;

  constructor(o: DatapathOptions) {
    this.dev = o.device;
    this.sock = o.socket;
    this.table = o.table;
    this.codec = o.codec;
    this.endpointOf = o.endpointOf;
    this.budget = o.budget ?? 256;
    this.pendingLimit = o.pendingLimit ?? 256;
    this.pendingMaxMs = o.pendingMaxMs ?? 2000;
    this.mss4 = o.mtu ? o.mtu - 40 : 0;
    this.mss6 = o.mtu ? o.mtu - 60 : 0;
    for (const c of Object.values(Counter)) this.counters.set(c, 0);
    this.table.onReady(() => this.retryPending());
  }

  private count(c: Counter, n = 1): void {
    this.counters.set(c, (this.counters.get(c) as number) + n);
  }

  stats(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of this.counters) out[k] = v;
    for (const [k, v] of this.codec.drops) out[`tunnel_drop_${k}`] = v;
    out.dev_read_errors = this.dev.readErrors ?? 0;
    out.dev_last_read_errno = this.dev.lastReadErrno ?? 0;
    return out;
  }

  onRtt(listener: (peer: number, ms: number) => void): void {
    this.rttListeners.push(listener);
  }

  /** Handles packets waiting on the device; returns how many. Stops at the budget or when empty. */
  pumpDevice(): number {
    if (this.pending.length > 0) this.expirePending();
    let n = 0;
    const b = this.devBuf;
    while (n < this.budget && !this.closed) {
      const len = this.dev.read(b, 0, b.length);
      if (len < 0) break;
      n++;
      this.count(Counter.DevRx);
      try {
        this.outboundPacket(b, len, true);
      } catch (e) {
        this.fault(e);
      }
    }
    try {
      this.flush();
    } catch (e) {
      this.fault(e);
    }
    return n;
  }

  /** Sends the coalesced plain packets, if any. */
  private flush(): void {
    if (this.aggCount === 0 || !this.aggPeer) return;
    const multi = this.aggCount > 1 ? TunnelFlag.Multi : 0;
    if (multi) this.count(Counter.Coalesced, this.aggCount);
    this.codec.encode(TunnelType.Data, multi, this.agg, 0, this.aggLen, this.plan);
    if (this.sock.send(this.aggPeer, this.plan)) this.count(Counter.TunnelTx);
    else this.count(Counter.SockTxFull);
    this.aggLen = 0;
    this.aggCount = 0;
    this.aggPeer = undefined;
  }

  /** `b[0..len)` as read from the device (vnet header first in offload mode). */
  private outboundPacket(b: Uint8Array, len: number, mayQueue: boolean): void {
    const vnet = this.dev.vnetHdr;
    const p = vnet ? VNET_HDR_LEN : 0;
    const m = this.m;
    if (len <= p || !parsePacket(b, p, len - p, m)) {
      if (len > p && m.error === ParseError.Protocol && this.outboundIcmpError(b, p, len - p)) return;
      this.count(Counter.Parse);
      return;
    }
    const rw = this.rw;
    const fragKey = m.frag === Frag.None ? '' : this.fragKey('o', b);
    const verdict = m.frag === Frag.Later ? this.laterFragment(fragKey, rw) : this.table.outbound(b, m, rw);
    if (verdict === Verdict.Drop) {
      this.count(m.frag === Frag.Later ? Counter.FragmentDrop : Counter.NoRoute);
      return;
    }
    if (verdict === Verdict.Pending) {
      if (mayQueue && this.pending.length < this.pendingLimit) {
        this.pending.push(b.slice(0, len));
        this.pendingSince.push(performance.now());
        this.count(Counter.Pending);
      } else {
        this.count(Counter.PendingDrop);
      }
      return;
    }
    const partial = vnet && (vnetFlags(b, 0) & VNET_F_NEEDS_CSUM) !== 0;
    this.clamp(b, partial);
    applyRewrite(b, m, rw, partial);
    if (verdict === Verdict.Local) {
      if (m.frag !== Frag.Later) {
        const v = this.table.inbound(b, m, this.codec.selfId, rw);
        if (v === Verdict.Drop) {
          this.count(Counter.InboundDrop);
          return;
        }
        applyRewrite(b, m, rw, partial);
      }
      if (m.frag === Frag.First) this.rememberFragment(fragKey, b, verdict, rw.peer);
      this.count(Counter.Local);
      this.devWrite(b, 0, p + m.len);
      return;
    }
    if (m.frag === Frag.First) this.rememberFragment(fragKey, b, verdict, rw.peer);
    // A plain packet travels without its (all-zero) virtio header.
    this.toPeer(rw.peer, b, p, m.len, vnet && (partial || vnetGsoType(b, 0) !== GSO_NONE));
  }

  /** Sends b[p..p+len) (or, with carryVnet, b[0..p+len) with its virtio header) to a peer worker. */
  private toPeer(peer: number, b: Uint8Array, p: number, len: number, carryVnet: boolean): void {
    const ep = this.endpointOf(peer);
    if (!ep) {
      this.count(Counter.NoPeer);
      return;
    }
    if (this.aggCount > 0 && (this.aggPeer !== ep || carryVnet || this.aggLen + len > COALESCE_BYTES)) this.flush();
    if (!carryVnet) {
      // Held only until the end of this pump: no timer, no added latency beyond the read loop.
      this.agg.set(b.subarray(p, p + len), this.aggLen);
      this.aggLen += len;
      this.aggCount++;
      this.aggPeer = ep;
      return;
    }
    this.codec.encode(TunnelType.Data, TunnelFlag.Vnet, b, 0, p + len, this.plan);
    if (this.sock.send(ep, this.plan)) this.count(Counter.TunnelTx);
    else this.count(Counter.SockTxFull);
  }

  /** An ICMP error from a local instance about an overlay flow: routed as that flow's reply. */
  private outboundIcmpError(b: Uint8Array, p: number, avail: number): boolean {
    const e = this.icmpErr;
    if (!parseIcmpError(b, p, avail, e)) return false;
    const rw = this.rw;
    const verdict = this.table.outbound(b, e.reply, rw);
    if (verdict !== Verdict.Tunnel && verdict !== Verdict.Local) {
      this.count(Counter.NoRoute);
      return true;
    }
    rewriteIcmpError(b, e, rw);
    this.count(Counter.IcmpErrors);
    if (verdict === Verdict.Tunnel) {
      this.toPeer(rw.peer, b, p, e.len, false);
      return true;
    }
    if (this.table.inbound(b, e.reply, this.codec.selfId, rw) === Verdict.Drop) {
      this.count(Counter.InboundDrop);
      return true;
    }
    rewriteIcmpError(b, e, rw);
    this.count(Counter.Local);
    this.devWrite(b, 0, p + e.len);
    return true;
  }

  /** Drops packets whose route never came (the table's query failed or is still running). */
  private expirePending(): void {
    const limit = performance.now() - this.pendingMaxMs;
    let k = 0;
    while (k < this.pendingSince.length && this.pendingSince[k] < limit) k++;
    if (k === 0) return;
    this.pending.splice(0, k);
    this.pendingSince.splice(0, k);
    this.count(Counter.PendingExpired, k);
  }

  private retryPending(): void {
    this.expirePending();
    this.pendingSince.length = 0;
    const q = this.pending.splice(0, this.pending.length);
    for (const pkt of q) {
      this.devBuf.set(pkt, 0);
      this.outboundPacket(this.devBuf, pkt.length, false);
    }
    this.flush();
  }

  /** Handles datagrams waiting on the socket; returns how many receive calls it made. */
  pumpSocket(): number {
    let n = 0;
    const rx = this.rx;
    const b = this.sockBuf;
    const codec = this.codec;
    while (n < this.budget && !this.closed) {
      const len = this.sock.recv(b, 0, b.length, rx);
      if (len < 0) break;
      n++;
      this.count(Counter.SockRxBytes, len);
      this.count(Counter.SockRxCalls);
      const seg = rx.segSize > 0 ? rx.segSize : len;
      // Admission checks once per receive instead of per datagram.
      codec.beginReceive();
      for (let off = 0; off < len; off += seg) {
        const dl = Math.min(seg, len - off);
        try {
          if (codec.decode(b, off, dl, this.batch)) this.onBatch(this.batch);
        } catch (e) {
          this.fault(e);
        }
      }
      codec.endReceive();
    }
    return n;
  }

  private onBatch(bt: RxBatch): void {
    if (bt.type === TunnelType.Data) {
      this.count(Counter.TunnelRx);
      this.inboundPayload(bt);
    } else if (bt.type === TunnelType.Probe) {
      const ep = this.endpointOf(bt.sender);
      if (!ep || bt.len > this.probeBuf.length) return;
      this.probeBuf.set(bt.buf.subarray(bt.off, bt.off + bt.len), 0);
      this.codec.encode(TunnelType.Echo, 0, this.probeBuf, 0, bt.len, this.plan);
      this.sock.send(ep, this.plan);
    } else if (bt.type === TunnelType.Echo && bt.len >= 8) {
      const sent = new DataView(bt.buf.buffer, bt.buf.byteOffset + bt.off, 8).getFloat64(0);
      const ms = performance.now() - sent;
      if (ms >= 0 && ms < 60_000) for (const l of this.rttListeners) l(bt.sender, ms);
    }
  }

  private inboundPayload(bt: RxBatch): void {
    if ((bt.flags & TunnelFlag.Multi) === 0) {
      this.inboundPacket(bt, bt.off, bt.len, (bt.flags & TunnelFlag.Vnet) !== 0);
      return;
    }
    const end = bt.off + bt.len;
    for (let off = bt.off; off < end;) {
      const l = end - off >= 20 ? ipLength(bt.buf, off) : 0;
      if (l < 20 || off + l > end) {
        this.count(Counter.Parse);
        return;
      }
      this.inboundPacket(bt, off, l, false);
      off += l;
    }
  }

  /** One packet of a batch at b[off..off+len) (with its vnet header first when hasVnet). */
  private inboundPacket(bt: RxBatch, off: number, len: number, hasVnet: boolean): void {
    const b = bt.buf;
    const pOff = off + (hasVnet ? VNET_HDR_LEN : 0);
    let pLen = len - (hasVnet ? VNET_HDR_LEN : 0);
    const m = this.m;
    if (pLen <= 0 || !parsePacket(b, pOff, pLen, m)) {
      if (pLen > 0 && !hasVnet && m.error === ParseError.Protocol) {
        const e = this.icmpErr;
        if (parseIcmpError(b, pOff, pLen, e)) {
          if (this.table.inbound(b, e.reply, bt.sender, this.rw) === Verdict.Drop) {
            this.count(Counter.InboundDrop);
            return;
          }
          rewriteIcmpError(b, e, this.rw);
          this.count(Counter.IcmpErrors);
          this.deliverPlain(bt, b, pOff, e.len);
          return;
        }
      }
      this.count(Counter.Parse);
      return;
    }
    const rw = this.rw;
    const fragKey = m.frag === Frag.None ? '' : this.fragKey('i', b);
    const v = m.frag === Frag.Later ? this.laterFragment(fragKey, rw) : this.table.inbound(b, m, bt.sender, rw);
    if (v === Verdict.Drop) {
      this.count(m.frag === Frag.Later ? Counter.FragmentDrop : Counter.InboundDrop);
      return;
    }
    const partial = hasVnet && (vnetFlags(b, off) & VNET_F_NEEDS_CSUM) !== 0;
    this.clamp(b, partial);
    applyRewrite(b, m, rw, partial);
    if (m.frag === Frag.First) this.rememberFragment(fragKey, b, v, rw.peer);
    pLen = m.len;
    if (this.dev.vnetHdr && hasVnet) {
      this.devWrite(b, off, VNET_HDR_LEN + pLen);
      return;
    }
    if (hasVnet && (partial || vnetGsoType(b, off) !== GSO_NONE)) {
      if (segmentOffloaded(b, off, VNET_HDR_LEN + pLen, this.outBuf, m, this.emitSeg) < 0) this.count(Counter.Parse);
      return;
    }
    this.deliverPlain(bt, b, m.l3, pLen);
  }

  /** Writes a plain packet b[pOff..pOff+pLen) of a received batch into the device. */
  private deliverPlain(bt: RxBatch, b: Uint8Array, pOff: number, pLen: number): void {
    if (this.dev.vnetHdr) {
      if (pOff >= VNET_HDR_LEN && (b === this.sockBuf || pOff - VNET_HDR_LEN >= bt.off)) {
        // The bytes before the packet are this datagram's tunnel header or the previous packet of
        // the batch, both already consumed.
        writeVnetNone(b, pOff - VNET_HDR_LEN);
        this.devWrite(b, pOff - VNET_HDR_LEN, VNET_HDR_LEN + pLen);
      } else {
        writeVnetNone(this.outBuf, 0);
        this.outBuf.set(b.subarray(pOff, pOff + pLen), VNET_HDR_LEN);
        this.devWrite(this.outBuf, 0, VNET_HDR_LEN + pLen);
      }
      return;
    }
    this.devWrite(b, pOff, pLen);
  }

  private clamp(b: Uint8Array, partial: boolean): void {
    const m = this.m;
    const max = m.family === 4 ? this.mss4 : this.mss6;
    if (max > 0 && m.tcpHdrLen > 20 && clampMss(b, m, max, partial)) this.count(Counter.MssClamped);
  }

  /** Direction, family, protocol, addresses and identification of the parsed fragment. */
  private fragKey(dir: string, b: Uint8Array): string {
    const m = this.m;
    const a = m.family === 4 ? 4 : 16;
    let k = dir + String.fromCharCode(m.proto, m.fragId >>> 16, m.fragId & 0xffff);
    for (let i = 0; i < a; i += 2) k += String.fromCharCode((b[m.srcOff + i] << 8) | b[m.srcOff + i + 1], (b[m.dstOff + i] << 8) | b[m.dstOff + i + 1]);
    return k;
  }

  /** Records the first fragment's final addresses (after every rewrite) for its later fragments. */
  private rememberFragment(key: string, b: Uint8Array, verdict: Verdict, peer: number): void {
    const m = this.m;
    const a = m.family === 4 ? 4 : 16;
    if (this.frags.size >= FRAG_MEMORY) {
      const oldest = this.frags.keys().next();
      if (!oldest.done) this.frags.delete(oldest.value);
    }
    this.frags.set(key, { verdict, peer, src: b.slice(m.srcOff, m.srcOff + a), dst: b.slice(m.dstOff, m.dstOff + a) });
  }

  /** A later fragment gets what its first fragment got; Drop when the first was never seen. */
  private laterFragment(key: string, rw: Rewrite): Verdict {
    const f = this.frags.get(key);
    if (!f) return Verdict.Drop;
    rw.rewriteSrc = true;
    rw.rewriteDst = true;
    rw.newSport = 0;
    rw.newDport = 0;
    rw.src.set(f.src, 0);
    rw.dst.set(f.dst, 0);
    rw.peer = f.peer;
    return f.verdict;
  }

  /** A packet must never stop the loop: count, remember, move on. */
  private fault(e: unknown): void {
    this.count(Counter.Errors);
    this.lastError = e instanceof Error ? e.message : String(e);
  }

  private devWrite(b: Uint8Array, off: number, len: number): void {
    if (this.dev.write(b, off, len)) this.count(Counter.DevTx);
    else this.count(Counter.DevTxFull);
  }

  /** Sends an RTT probe to a peer; the answer reaches onRtt listeners. */
  probe(peer: number): boolean {
    const ep = this.endpointOf(peer);
    if (!ep) return false;
    new DataView(this.probeBuf.buffer).setFloat64(0, performance.now());
    this.codec.encode(TunnelType.Probe, 0, this.probeBuf, 0, 8, this.plan);
    return this.sock.send(ep, this.plan);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.pending.length = 0;
    this.pendingSince.length = 0;
    this.dev.close();
    this.sock.close();
    this.codec.close();
  }
}

export { MAX_PAYLOAD };
