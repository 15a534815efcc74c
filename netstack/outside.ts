// The outside half of the datapath (Nebula's outside.go): datagrams from the tunnel socket are
// authenticated by the codec, their packets translated back by the table and written into the TUN;
// RTT probes are answered and echoes timed. A super-packet arriving at a per-packet device is cut
// into plain packets first (segment.ts).
//
// Buffer ownership: every buffer below belongs to this half alone (the inside half has its own).
// A received batch is a view into sockBuf (or the codec's reassembly buffer) and is used up before
// the next receive.
import type { DatagramSocket, PacketDevice, RxInfo } from '../native/io.ts';
import { TxPlan } from '../native/io.ts';
import { Verdict, newRewrite, type Rewrite, type TranslationTable } from './table.ts';
import { Frag, PacketInfo, ParseError, ipLength, parsePacket } from './packet.ts';
import { IcmpError, parseIcmpError, rewriteIcmpError } from './icmp-error.ts';
import { applyRewrite } from './rewrite.ts';
import { segmentOffloaded } from './segment.ts';
import { TunnelFlag, TunnelType, newRxBatch, type RxBatch, type TunnelCodec } from './tunnel.ts';
import { GSO_NONE, VNET_F_NEEDS_CSUM, VNET_HDR_LEN, vnetFlags, vnetGsoType, writeVnetNone } from './vnet.ts';
import { Counter, type Counters } from './counters.ts';
import { FragmentMemory } from './fragments.ts';
import type { PeerLookup } from './peers.ts';
import { clampSyn, writeDevice, type PathSettings } from './path-shared.ts';
import { DEV_BUF } from './inside.ts';

export interface OutsideOptions {
  device: PacketDevice;
  socket: DatagramSocket;
  table: TranslationTable;
  codec: TunnelCodec;
  peers: Pick<PeerLookup, 'endpoint'>;
  counters: Counters;
  settings: PathSettings;
}

export class Outside {
  private readonly dev: PacketDevice;
  private readonly sock: DatagramSocket;
  private readonly table: TranslationTable;
  private readonly codec: TunnelCodec;
  private readonly peers: Pick<PeerLookup, 'endpoint'>;
  private readonly c: Counters;
  private readonly s: PathSettings;
  /** Each socket receive lands here (several datagrams when coalesced by GRO). */
  private readonly sockBuf = new Uint8Array(65536 + 64);
  /** Where a packet is copied to get a vnet header in front, and where segments are cut into. */
  private readonly outBuf = new Uint8Array(DEV_BUF);
  private readonly rx: RxInfo = { segSize: 0 };
  private readonly batch: RxBatch = newRxBatch();
  /** Parse result and rewrite of the packet in hand. */
  private readonly m = new PacketInfo();
  private readonly rw: Rewrite = newRewrite();
  private readonly icmpErr = new IcmpError();
  private readonly frags = new FragmentMemory();
  /** A probe's or echo's body, and the gather list they are sent with. */
  private readonly probeBuf = new Uint8Array(128);
  private readonly plan = new TxPlan();
  private readonly rttListeners: Array<(peer: number, ms: number) => void> = [];
  private readonly emitSeg = (b: Uint8Array, len: number): void => {
    this.c.count(Counter.Segmented);
    writeDevice(this.dev, this.c, b, 0, len);
  };
  private closed = false;

  constructor(o: OutsideOptions) {
    this.dev = o.device;
    this.sock = o.socket;
    this.table = o.table;
    this.codec = o.codec;
    this.peers = o.peers;
    this.c = o.counters;
    this.s = o.settings;
  }

  onRtt(listener: (peer: number, ms: number) => void): void {
    this.rttListeners.push(listener);
  }

  /** Handles datagrams waiting on the socket, up to `limit` receive calls (default: the budget);
   *  returns how many receive calls returned data. */
  pump(limit = this.s.budget): number {
    let n = 0;
    const rx = this.rx;
    const b = this.sockBuf;
    const codec = this.codec;
    while (n < limit && !this.closed) {
      const len = this.sock.recv(b, 0, b.length, rx);
      if (len < 0) break;
      n++;
      this.c.count(Counter.SockRxBytes, len);
      this.c.count(Counter.SockRxCalls);
      const seg = rx.segSize > 0 ? rx.segSize : len;
      // Admission checks once per receive instead of per datagram.
      codec.beginReceive();
      for (let off = 0; off < len; off += seg) {
        const dl = Math.min(seg, len - off);
        try {
          if (codec.decode(b, off, dl, this.batch)) this.onBatch(this.batch);
        } catch (e) {
          this.c.fault(e);
        }
      }
      codec.endReceive();
    }
    return n;
  }

  /** Sends an RTT probe to a peer; the answer reaches onRtt listeners. */
  probe(peer: number): boolean {
    const ep = this.peers.endpoint(peer);
    if (!ep) return false;
    new DataView(this.probeBuf.buffer).setFloat64(0, performance.now());
    this.codec.encode(TunnelType.Probe, 0, this.probeBuf, 0, 8, this.plan);
    return this.sock.send(ep, this.plan);
  }

  private onBatch(bt: RxBatch): void {
    if (bt.type === TunnelType.Data) {
      this.c.count(Counter.TunnelRx);
      this.payload(bt);
    } else if (bt.type === TunnelType.Probe) {
      const ep = this.peers.endpoint(bt.sender);
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

  private payload(bt: RxBatch): void {
    if ((bt.flags & TunnelFlag.Multi) === 0) {
      this.packet(bt, bt.off, bt.len, (bt.flags & TunnelFlag.Vnet) !== 0);
      return;
    }
    const end = bt.off + bt.len;
    for (let off = bt.off; off < end;) {
      const l = end - off >= 20 ? ipLength(bt.buf, off) : 0;
      if (l < 20 || off + l > end) {
        this.c.count(Counter.Parse);
        return;
      }
      this.packet(bt, off, l, false);
      off += l;
    }
  }

  /** One packet of a batch at b[off..off+len) (with its vnet header first when hasVnet). */
  private packet(bt: RxBatch, off: number, len: number, hasVnet: boolean): void {
    const b = bt.buf;
    const c = this.c;
    const pOff = off + (hasVnet ? VNET_HDR_LEN : 0);
    let pLen = len - (hasVnet ? VNET_HDR_LEN : 0);
    const m = this.m;
    if (pLen <= 0 || !parsePacket(b, pOff, pLen, m)) {
      if (pLen > 0 && !hasVnet && m.error === ParseError.Protocol) {
        const e = this.icmpErr;
        if (parseIcmpError(b, pOff, pLen, e)) {
          if (this.table.inbound(b, e.reply, bt.sender, this.rw) === Verdict.Drop) {
            c.count(Counter.InboundDrop);
            return;
          }
          rewriteIcmpError(b, e, this.rw);
          c.count(Counter.IcmpErrors);
          this.deliverPlain(bt, b, pOff, e.len);
          return;
        }
      }
      c.count(Counter.Parse);
      return;
    }
    const rw = this.rw;
    const fragKey = m.frag === Frag.None ? '' : this.frags.key(m, b);
    const v = m.frag === Frag.Later ? this.frags.later(fragKey, rw) : this.table.inbound(b, m, bt.sender, rw);
    if (v === Verdict.Drop) {
      c.count(m.frag === Frag.Later ? Counter.FragmentDrop : Counter.InboundDrop);
      return;
    }
    const partial = hasVnet && (vnetFlags(b, off) & VNET_F_NEEDS_CSUM) !== 0;
    clampSyn(this.s, c, m, b, partial);
    applyRewrite(b, m, rw, partial);
    if (m.frag === Frag.First) this.frags.remember(fragKey, m, b, v, rw.peer);
    pLen = m.len;
    if (this.dev.vnetHdr && hasVnet) {
      writeDevice(this.dev, c, b, off, VNET_HDR_LEN + pLen);
      return;
    }
    if (hasVnet && (partial || vnetGsoType(b, off) !== GSO_NONE)) {
      if (segmentOffloaded(b, off, VNET_HDR_LEN + pLen, this.outBuf, m, this.emitSeg) < 0) c.count(Counter.Parse);
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
        writeDevice(this.dev, this.c, b, pOff - VNET_HDR_LEN, VNET_HDR_LEN + pLen);
      } else {
        writeVnetNone(this.outBuf, 0);
        this.outBuf.set(b.subarray(pOff, pOff + pLen), VNET_HDR_LEN);
        writeDevice(this.dev, this.c, this.outBuf, 0, VNET_HDR_LEN + pLen);
      }
      return;
    }
    writeDevice(this.dev, this.c, b, pOff, pLen);
  }

  close(): void {
    this.closed = true;
  }
}
