// The inside half of the datapath (Nebula's inside.go): packets read from the TUN are parsed once,
// translated by the table and sent through the tunnel to a peer, or written straight back into the
// TUN for a local target. Packets waiting for a route (Pending) are queued here and retried when the
// table says routes arrived.
//
// Buffer ownership: every buffer below belongs to this half alone (the outside half has its own), so
// neither direction can overwrite a packet the other is still working on, even when a table callback
// (onReady → retryPending) runs between the two pumps.
import type { DatagramSocket, PacketDevice } from '../native/io.ts';
import { TxPlan, type Endpoint } from '../native/io.ts';
import { Verdict, newRewrite, type Rewrite, type TranslationTable } from './table.ts';
import { Frag, PacketInfo, ParseError, parsePacket } from './packet.ts';
import { IcmpError, parseIcmpError, rewriteIcmpError } from './icmp-error.ts';
import { applyRewrite } from './rewrite.ts';
import { TunnelFlag, TunnelType, type TunnelCodec } from './tunnel.ts';
import { GSO_NONE, VNET_F_NEEDS_CSUM, VNET_HDR_LEN, vnetFlags, vnetGsoType } from './vnet.ts';
import { Counter, type Counters } from './counters.ts';
import { FragmentMemory } from './fragments.ts';
import type { PeerLookup } from './peers.ts';
import { clampSyn, writeDevice, type PathSettings } from './path-shared.ts';
import { copyBytes } from './bytes.ts';

/** Largest read from the device: a vnet header and a 64 kB super-packet. */
export const DEV_BUF = VNET_HDR_LEN + 65535 + 64;

/** Plain packets to one peer read in one pump share a tunnel batch up to this many bytes. One AEAD
 *  call and one sendmsg then serve many packets: the fixed ~3 µs of a node:crypto call would otherwise
 *  dominate small packets (see perf/RESULTS.md). */
const COALESCE_BYTES = 60000;

export interface InsideOptions {
  device: PacketDevice;
  socket: DatagramSocket;
  table: TranslationTable;
  codec: TunnelCodec;
  peers: Pick<PeerLookup, 'endpoint'>;
  counters: Counters;
  settings: PathSettings;
  pendingLimit: number;
  pendingMaxMs: number;
}

export class Inside {
  private readonly dev: PacketDevice;
  private readonly sock: DatagramSocket;
  private readonly table: TranslationTable;
  private readonly codec: TunnelCodec;
  private readonly peers: Pick<PeerLookup, 'endpoint'>;
  private readonly c: Counters;
  private readonly s: PathSettings;
  private readonly pendingLimit: number;
  private readonly pendingMaxMs: number;
  /** Each device read lands here, and each pending packet is copied back here to be retried. */
  private readonly devBuf = new Uint8Array(DEV_BUF);
  /** Plain packets to aggPeer gathered during one pump, sent as one batch by flush(). */
  private readonly agg = new Uint8Array(COALESCE_BYTES + DEV_BUF);
  private aggLen = 0;
  private aggCount = 0;
  private aggPeer: Endpoint | undefined;
  /** Parse result, rewrite and gather list of the packet in hand. */
  private readonly m = new PacketInfo();
  private readonly rw: Rewrite = newRewrite();
  private readonly plan = new TxPlan();
  private readonly icmpErr = new IcmpError();
  private readonly frags = new FragmentMemory();
  /** Copies of packets waiting for a route, and when each was queued. */
  private readonly pending: Uint8Array[] = [];
  private readonly pendingSince: number[] = [];
  /** While retrying: when the packet in hand was first queued (it keeps its age if queued again). */
  private retrySince = -1;
  /**
   * Packets the previous pump read. After a pump of at most one (traffic is sparse: a request, a
   * ping), the first plain packet of this pump is sent before the read that would end the pump, so
   * the device's final EAGAIN read (1.3 µs warm, ~6 µs on a just-woken process) is no longer between
   * the packet and the wire. Under load pumps read many packets and coalesce as before; the cost is
   * bounded: at most one extra send for a pump that follows a lone one. No timer: a batch still
   * closes when the device has nothing more to give.
   */
  private lastPump = 2;
  private closed = false;

  constructor(o: InsideOptions) {
    this.dev = o.device;
    this.sock = o.socket;
    this.table = o.table;
    this.codec = o.codec;
    this.peers = o.peers;
    this.c = o.counters;
    this.s = o.settings;
    this.pendingLimit = o.pendingLimit;
    this.pendingMaxMs = o.pendingMaxMs;
    this.table.onReady(() => {
      if (!this.closed) this.retryPending();
    });
  }

  /** Handles packets waiting on the device; returns how many. Stops at the budget or when empty. */
  pump(): number {
    if (this.pending.length > 0) this.expirePending();
    let n = 0;
    const b = this.devBuf;
    const eager = this.lastPump <= 1;
    while (n < this.s.budget && !this.closed) {
      const len = this.dev.read(b, 0, b.length);
      if (len < 0) break;
      n++;
      this.c.count(Counter.DevRx);
      try {
        this.packet(b, len);
        if (eager && n === 1) this.flush();
      } catch (e) {
        this.c.fault(e);
      }
    }
    this.lastPump = n;
    try {
      this.flush();
    } catch (e) {
      this.c.fault(e);
    }
    return n;
  }

  /** Sends the coalesced plain packets, if any. */
  private flush(): void {
    if (this.aggCount === 0 || !this.aggPeer) return;
    const multi = this.aggCount > 1 ? TunnelFlag.Multi : 0;
    if (multi) this.c.count(Counter.Coalesced, this.aggCount);
    this.codec.encode(TunnelType.Data, multi, this.agg, 0, this.aggLen, this.plan);
    if (this.sock.send(this.aggPeer, this.plan)) this.c.count(Counter.TunnelTx);
    else this.c.count(Counter.SockTxFull);
    this.aggLen = 0;
    this.aggCount = 0;
    this.aggPeer = undefined;
  }

  /** `b[0..len)` as read from the device (vnet header first in offload mode). */
  private packet(b: Uint8Array, len: number): void {
    const vnet = this.dev.vnetHdr;
    const p = vnet ? VNET_HDR_LEN : 0;
    const m = this.m;
    const c = this.c;
    if (len <= p || !parsePacket(b, p, len - p, m)) {
      if (len > p && m.error === ParseError.Protocol && this.icmpError(b, p, len - p)) return;
      c.count(Counter.Parse);
      return;
    }
    const rw = this.rw;
    const fragKey = m.frag === Frag.None ? '' : this.frags.key(m, b);
    const verdict = m.frag === Frag.Later ? this.frags.later(fragKey, rw) : this.table.outbound(b, m, rw);
    if (verdict === Verdict.Drop) {
      c.count(m.frag === Frag.Later ? Counter.FragmentDrop : Counter.NoRoute);
      return;
    }
    if (verdict === Verdict.Pending) {
      if (this.pending.length < this.pendingLimit) {
        this.pending.push(b.slice(0, len));
        // A retried packet whose route is still not usable (e.g. its service has no instance yet)
        // waits again, up to pendingMaxMs from when it was first read.
        this.pendingSince.push(this.retrySince >= 0 ? this.retrySince : performance.now());
        if (this.retrySince < 0) c.count(Counter.Pending);
      } else {
        c.count(Counter.PendingDrop);
      }
      return;
    }
    const partial = vnet && (vnetFlags(b, 0) & VNET_F_NEEDS_CSUM) !== 0;
    clampSyn(this.s, c, m, b, partial);
    applyRewrite(b, m, rw, partial);
    if (verdict === Verdict.Local) {
      if (m.frag !== Frag.Later) {
        const v = this.table.inbound(b, m, this.codec.selfId, rw);
        if (v === Verdict.Drop) {
          c.count(Counter.InboundDrop);
          return;
        }
        applyRewrite(b, m, rw, partial);
      }
      if (m.frag === Frag.First) this.frags.remember(fragKey, m, b, verdict, rw.peer);
      c.count(Counter.Local);
      writeDevice(this.dev, c, b, 0, p + m.len);
      return;
    }
    if (m.frag === Frag.First) this.frags.remember(fragKey, m, b, verdict, rw.peer);
    // A plain packet travels without its (all-zero) virtio header.
    this.toPeer(rw.peer, b, p, m.len, vnet && (partial || vnetGsoType(b, 0) !== GSO_NONE));
  }

  /** Sends b[p..p+len) (or, with carryVnet, b[0..p+len) with its virtio header) to a peer worker. */
  private toPeer(peer: number, b: Uint8Array, p: number, len: number, carryVnet: boolean): void {
    const ep = this.peers.endpoint(peer);
    if (!ep) {
      this.c.count(Counter.NoPeer);
      return;
    }
    if (this.aggCount > 0 && (this.aggPeer !== ep || carryVnet || this.aggLen + len > COALESCE_BYTES)) this.flush();
    if (!carryVnet) {
      // Held only until the end of this pump: no timer, no added latency beyond the read loop.
      if (len <= 256) copyBytes(this.agg, this.aggLen, b, p, len);
      else this.agg.set(b.subarray(p, p + len), this.aggLen);
      this.aggLen += len;
      this.aggCount++;
      this.aggPeer = ep;
      return;
    }
    this.codec.encode(TunnelType.Data, TunnelFlag.Vnet, b, 0, p + len, this.plan);
    if (this.sock.send(ep, this.plan)) this.c.count(Counter.TunnelTx);
    else this.c.count(Counter.SockTxFull);
  }

  /** An ICMP error from a local instance about an overlay flow: routed as that flow's reply. */
  private icmpError(b: Uint8Array, p: number, avail: number): boolean {
    const e = this.icmpErr;
    if (!parseIcmpError(b, p, avail, e)) return false;
    const rw = this.rw;
    const c = this.c;
    const verdict = this.table.outbound(b, e.reply, rw);
    if (verdict !== Verdict.Tunnel && verdict !== Verdict.Local) {
      c.count(Counter.NoRoute);
      return true;
    }
    rewriteIcmpError(b, e, rw);
    c.count(Counter.IcmpErrors);
    if (verdict === Verdict.Tunnel) {
      this.toPeer(rw.peer, b, p, e.len, false);
      return true;
    }
    if (this.table.inbound(b, e.reply, this.codec.selfId, rw) === Verdict.Drop) {
      c.count(Counter.InboundDrop);
      return true;
    }
    rewriteIcmpError(b, e, rw);
    c.count(Counter.Local);
    writeDevice(this.dev, c, b, 0, p + e.len);
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
    this.c.count(Counter.PendingExpired, k);
  }

  private retryPending(): void {
    this.expirePending();
    const q = this.pending.splice(0, this.pending.length);
    const since = this.pendingSince.splice(0, this.pendingSince.length);
    try {
      for (let i = 0; i < q.length; i++) {
        const pkt = q[i]!;
        this.retrySince = since[i]!;
        this.devBuf.set(pkt, 0);
        try {
          this.packet(this.devBuf, pkt.length);
        } catch (e) {
          this.c.fault(e);
        }
      }
    } finally {
      this.retrySince = -1;
    }
    this.flush();
  }

  close(): void {
    this.closed = true;
    this.pending.length = 0;
    this.pendingSince.length = 0;
  }
}
