// The tunnel codec: how one payload (an inner IP packet, or a TSO super-packet with its
// virtio_net_hdr) crosses the underlay as one *batch* of UDP datagrams.
//
// Each datagram: a 24-byte header, then a slice of (payload ‖ 16-byte tag).
//   0 version (1) · 1 type · 2 flags · 3 key id · 4 sender id (u32) · 8 counter (u64, big-endian)
//   16 segment index (u16) · 18 segment count (u16) · 20 payload length (u32)
// All datagrams of a batch but the last have the same size, so a batch leaves in one sendmsg with
// UDP_SEGMENT and arrives through UDP_GRO in one recvmsg.
//
// Authentication is per batch, not per datagram: one AES-256-GCM (or ChaCha20-Poly1305) tag over the
// batch header and the whole payload, with the IV = sender ‖ counter. Each AEAD call has a fixed cost
// (~3.3 µs through node:crypto, ~0.4 µs through OpenSSL EVP with a reused context, native/evp.ts);
// once per ~1.4 kB datagram that would cap the path at a few Gbps, once per 64 kB batch it is noise
// next to the GHASH over the payload. Without encryption the payload is only authenticated (passed as
// AAD, i.e. GMAC). The price: a forged datagram injected into a batch spoils that batch (TCP
// retransmits it) — an on-path attacker can drop packets anyway. The counter is checked against a
// per-sender sliding window after the tag verifies, so a replayed batch is dropped.
import { TxPlan, maxGsoPayloadFor } from '../native/io.ts';
import { bestAead, type AeadFactory, type AeadName, type BatchAead } from './aead.ts';
import { ReplayWindow } from './replay.ts';
import type { PeerLookup } from './peers.ts';
import { read16, read32, write16, write32 } from './checksum.ts';
import { copyBytes } from './bytes.ts';

export const TUNNEL_VERSION = 1;
export const TUNNEL_HDR = 24;
export const TAG_LEN = 16;

export const TunnelType = { Data: 1, Probe: 2, Echo: 3 } as const;
export type TunnelType = (typeof TunnelType)[keyof typeof TunnelType];

export const TunnelFlag = {
  /** The payload is encrypted (otherwise only authenticated). */
  Encrypted: 1,
  /** The payload starts with a virtio_net_hdr (a super-packet or a partial checksum). */
  Vnet: 2,
  /** The payload is several plain IP packets back to back (each delimited by its own IP header). */
  Multi: 4,
} as const;

/** Why a datagram was dropped; the codec counts each. */
export const Drop = {
  Malformed: 'malformed',
  Version: 'bad_version',
  UnknownSender: 'unknown_sender',
  UnknownKey: 'unknown_key',
  /** Sealed with a key this worker was told to stop accepting (a rotation after a revocation). */
  RetiredKey: 'retired_key',
  BadTag: 'bad_tag',
  Replay: 'replay',
  Incomplete: 'incomplete_batch',
  TooBig: 'too_big',
} as const;
export type Drop = (typeof Drop)[keyof typeof Drop];

export type { AeadName } from './aead.ts';

export interface TunnelCodecOptions {
  /** This worker's id (the sender id it puts in every header). */
  selfId: number;
  /** Keys by key id; each 32 bytes. Receivers accept any id in the map. */
  keys: ReadonlyMap<number, Uint8Array>;
  /** The key id this worker sends with. */
  keyId: number;
  /** Key ids no longer accepted because they were rotated away: their datagrams count as retired_key. */
  retired?: ReadonlySet<number>;
  /** Senders whose data is accepted: the worker's peer table (netstack/peers.ts). */
  peers: Pick<PeerLookup, 'has'>;
  /** Largest UDP payload per datagram (path MTU − IP − UDP headers). */
  maxDatagram: number;
  encrypt?: boolean;
  aead?: AeadName;
  /** Where AEAD contexts come from: OpenSSL EVP through koffi when reachable, else node:crypto
   *  (netstack/aead.ts bestAead); netstack/aead.ts nodeAead forces node:crypto. */
  aeadFactory?: AeadFactory;
  /** First counter value; defaults to the clock in µs so a restarted worker is not taken for a replayer. */
  firstCounter?: number;
}

/** Where decode() leaves a complete batch. Views are valid until the next decode() call. */
export interface RxBatch {
  sender: number;
  type: number;
  flags: number;
  counter: number;
  buf: Uint8Array;
  off: number;
  len: number;
}

/** Largest payload a batch carries: a TUN read of 10 + 65 535 bytes. */
export const MAX_PAYLOAD = 10 + 65535;

class Reassembly {
  readonly buf = new Uint8Array(MAX_PAYLOAD + TAG_LEN + 64);
  counter = -1;
  count = 0;
  next = 0;
  len = 0;
  filled = 0;
  keyId = 0;
  type = 0;
  flags = 0;
  readonly header = new Uint8Array(128);
  /**
   * The receive buffer the batch is being gathered in, in place (null: in `buf`). Within one receive
   * the bodies are moved together inside that buffer, after the first body; borrowed until endReceive,
   * which moves an unfinished batch into `buf` before the buffer is reused.
   */
  src: Uint8Array | null = null;
  srcStart = 0;
}

export class TunnelCodec {
  readonly selfId: number;
  private readonly opts: TunnelCodecOptions;
  private readonly aeadName: AeadName;
  private readonly aeads = new Map<number, BatchAead>();
  /** The key each cached AEAD context was built from (compared by identity). */
  private readonly aeadKeys = new Map<number, Uint8Array>();
  private counter: number;
  /** Headers, tags and ciphertext of the batch being sent; reused. */
  private readonly scratch = new Uint8Array(MAX_PAYLOAD + TAG_LEN + 256 * TUNNEL_HDR);
  private readonly ivBuf = new Uint8Array(128);
  private readonly iv = this.ivBuf.subarray(0, 12);
  private readonly aadBuf = new Uint8Array(128);
  private readonly aad = this.aadBuf.subarray(0, TUNNEL_HDR);
  private readonly reasm = new Map<number, Reassembly>();
  private readonly windows = new Map<number, ReplayWindow>();
  readonly drops = new Map<Drop, number>();
  // Within one receive (beginReceive..endReceive) every datagram normally has the same sender and
  // key: their admission checks and the reassembly lookup are done once, not per datagram.
  private receiving = false;
  private memoSender = -1;
  private memoKey = -1;
  private memoR: Reassembly | undefined;
  /** Batches gathered in place in this receive's buffer (spilled into their own buffer at endReceive). */
  private readonly inPlace: Reassembly[] = [];
  batchesOut = 0;
  batchesIn = 0;

  constructor(opts: TunnelCodecOptions) {
    if (opts.maxDatagram < TUNNEL_HDR + 64 || opts.maxDatagram > 65507) throw new Error(`maxDatagram out of range: ${opts.maxDatagram}`);
    for (const [id, k] of opts.keys) {
      if (id < 0 || id > 255) throw new Error(`tunnel key id must be 0..255: ${id}`);
      if (k.length !== 32) throw new Error(`tunnel key ${id} must be 32 bytes, got ${k.length}`);
    }
    if (!opts.keys.has(opts.keyId)) throw new Error(`tunnel key id ${opts.keyId} has no key`);
    this.opts = opts;
    this.selfId = opts.selfId >>> 0;
    this.aeadName = opts.aead ?? 'aes-256-gcm';
    this.counter = opts.firstCounter ?? Date.now() * 1000;
    for (const d of Object.values(Drop)) this.drops.set(d, 0);
  }

  /**
   * The AEAD context of a key id, rebuilt when the key under that id was replaced (a rotation reuses
   * ids once they wrap around); undefined when the id was removed since the datagram's header was read.
   */
  private aeadFor(keyId: number): BatchAead | undefined {
    const key = this.opts.keys.get(keyId);
    if (!key) return undefined;
    let a = this.aeads.get(keyId);
    if (!a || this.aeadKeys.get(keyId) !== key) {
      a?.close();
      a = (this.opts.aeadFactory ?? bestAead)(this.aeadName, key);
      this.aeads.set(keyId, a);
      this.aeadKeys.set(keyId, key);
    }
    return a;
  }

  /** Frees the AEAD contexts. */
  close(): void {
    for (const a of this.aeads.values()) a.close();
    this.aeads.clear();
    this.aeadKeys.clear();
  }

  /** The datagrams of one receive (a GRO buffer) follow, until endReceive(). */
  beginReceive(): void {
    this.receiving = true;
    this.memoSender = -1;
  }

  endReceive(): void {
    this.receiving = false;
    this.memoSender = -1;
    this.memoR = undefined;
    for (const r of this.inPlace) if (r.src) spill(r);
    this.inPlace.length = 0;
  }

  get encrypting(): boolean {
    return this.opts.encrypt === true;
  }

  private count(d: Drop): false {
    this.drops.set(d, (this.drops.get(d) ?? 0) + 1);
    return false;
  }

  private writeHeader(b: Uint8Array, o: number, type: number, flags: number, keyId: number, sender: number,
    counter: number, index: number, segs: number, len: number): void {
    b[o] = TUNNEL_VERSION;
    b[o + 1] = type;
    b[o + 2] = flags;
    b[o + 3] = keyId;
    write32(b, o + 4, sender);
    write32(b, o + 8, Math.floor(counter / 0x100000000));
    write32(b, o + 12, counter >>> 0);
    write16(b, o + 16, index);
    write16(b, o + 18, segs);
    write32(b, o + 20, len);
  }

  private setIv(sender: number, counter: number): void {
    write32(this.iv, 0, sender);
    write32(this.iv, 4, Math.floor(counter / 0x100000000));
    write32(this.iv, 8, counter >>> 0);
  }

  /**
   * Plans the datagrams of one batch carrying payload[off..off+len). The plan borrows `payload`
   * (unless encrypting) and the codec's scratch space until the next encode().
   */
  encode(type: TunnelType, flags: number, payload: Uint8Array, off: number, len: number, plan: TxPlan): void {
    if (len > MAX_PAYLOAD) throw new Error(`tunnel payload too large: ${len}`);
    const counter = this.counter++;
    const keyId = this.opts.keyId;
    if (this.opts.encrypt) flags |= TunnelFlag.Encrypted;
    else flags &= ~TunnelFlag.Encrypted;
    const total = len + TAG_LEN;
    const per = this.opts.maxDatagram - TUNNEL_HDR;
    const segs = Math.ceil(total / per);
    const s = this.scratch;
    // Batch header (index 0) doubles as the AAD.
    this.writeHeader(this.aad, 0, type, flags, keyId, this.selfId, counter, 0, segs, len);
    this.setIv(this.selfId, counter);
    const tagOff = segs * TUNNEL_HDR;
    let body = payload;
    let bodyOff = off;
    const encrypt = this.opts.encrypt === true;
    if (encrypt) {
      body = s;
      bodyOff = tagOff + TAG_LEN;
    }
    // The send key id always has a key (the keyring switches the id before it removes a key).
    (this.aeadFor(keyId) as BatchAead).seal(this.iv, this.aad, payload, off, len, encrypt, s, tagOff + TAG_LEN, s, tagOff);
    plan.reset(segs > 1 ? this.opts.maxDatagram : TUNNEL_HDR + total);
    let pos = 0;
    for (let i = 0; i < segs; i++) {
      const h = i * TUNNEL_HDR;
      s.set(this.aad, h);
      write16(s, h + 16, i);
      plan.startSegment();
      plan.push(s, h, TUNNEL_HDR);
      const end = Math.min(pos + per, total);
      if (pos < len) plan.push(body, bodyOff + pos, Math.min(end, len) - pos);
      if (end > len) plan.push(s, tagOff + Math.max(pos - len, 0), end - Math.max(pos, len));
      pos = end;
    }
    this.batchesOut++;
  }

  /**
   * Takes one received datagram. Returns true when it completed a batch that authenticated; `out`
   * then views the payload. False: more datagrams are needed, or it was dropped (and counted).
   */
  decode(d: Uint8Array, off: number, len: number, out: RxBatch): boolean {
    if (len < TUNNEL_HDR) return this.count(Drop.Malformed);
    if (d[off] !== TUNNEL_VERSION) return this.count(Drop.Version);
    const type = d[off + 1];
    if (type < TunnelType.Data || type > TunnelType.Echo) return this.count(Drop.Malformed);
    const sender = read32(d, off + 4);
    const keyId = d[off + 3];
    const known = sender === this.memoSender && keyId === this.memoKey;
    if (!known) {
      if (!this.opts.peers.has(sender)) return this.count(Drop.UnknownSender);
      if (!this.opts.keys.has(keyId)) return this.count(this.opts.retired?.has(keyId) ? Drop.RetiredKey : Drop.UnknownKey);
      if (this.receiving) {
        this.memoSender = sender;
        this.memoKey = keyId;
        this.memoR = this.reasm.get(sender);
      }
    }
    const counter = read32(d, off + 8) * 0x100000000 + read32(d, off + 12);
    const index = read16(d, off + 16);
    const segs = read16(d, off + 18);
    const plen = read32(d, off + 20);
    const flags = d[off + 2];
    if (segs === 0 || index >= segs) return this.count(Drop.Malformed);
    if (plen > MAX_PAYLOAD) return this.count(Drop.TooBig);
    const body = len - TUNNEL_HDR;
    if (segs === 1) {
      // The common small packet: verify in place, no copy.
      if (body !== plen + TAG_LEN) return this.count(Drop.Malformed);
      return this.finish(d, off, off + TUNNEL_HDR, plen, sender, keyId, counter, type, flags, out);
    }
    let r = known ? this.memoR : this.reasm.get(sender);
    if (!r) {
      r = new Reassembly();
      this.reasm.set(sender, r);
      if (this.receiving && sender === this.memoSender) this.memoR = r;
    }
    if (index === 0) {
      if (r.counter >= 0 && r.next < r.count) this.count(Drop.Incomplete);
      r.counter = counter;
      r.count = segs;
      r.next = 0;
      r.len = plen;
      r.filled = 0;
      r.keyId = keyId;
      r.type = type;
      r.flags = flags;
      copyBytes(r.header, 0, d, off, TUNNEL_HDR);
      // In a receive, gather where the datagrams lie: later bodies move up against the first one
      // (copyWithin, no view per datagram); outside one (tests, tools) into the batch's own buffer.
      // An unfinished batch before this one is abandoned (counted above), wherever it was.
      r.src = this.receiving ? d : null;
      r.srcStart = off + TUNNEL_HDR;
      if (r.src) this.inPlace.push(r);
    } else if (r.counter !== counter || index !== r.next || r.len !== plen || r.count !== segs) {
      // Datagrams of one batch arrive in order on the paths we run on; anything else is lost or forged.
      if (r.counter !== counter) return this.count(Drop.Incomplete);
      r.counter = -1;
      return this.count(Drop.Incomplete);
    }
    if (r.filled + body > plen + TAG_LEN) {
      r.counter = -1;
      return this.count(Drop.Malformed);
    }
    if (r.src === d) {
      if (index > 0) d.copyWithin(r.srcStart + r.filled, off + TUNNEL_HDR, off + len);
    } else {
      // Another buffer (the batch spans receives): what was gathered in place moves to `buf` first.
      if (r.src) spill(r);
      r.buf.set(d.subarray(off + TUNNEL_HDR, off + len), r.filled);
    }
    r.filled += body;
    r.next++;
    if (r.next < r.count) return false;
    r.counter = -1;
    const src = r.src;
    r.src = null;
    if (r.filled !== plen + TAG_LEN) return this.count(Drop.Malformed);
    return this.finish(src ?? r.buf, -1, src ? r.srcStart : 0, plen, sender, r.keyId, counter, r.type, r.flags, out, r.header);
  }

  private finish(b: Uint8Array, hdrOff: number, pOff: number, plen: number, sender: number, keyId: number,
    counter: number, type: number, flags: number, out: RxBatch, header?: Uint8Array): boolean {
    let w = this.windows.get(sender);
    if (!w) {
      w = new ReplayWindow();
      this.windows.set(sender, w);
    }
    if (!w.check(counter)) return this.count(Drop.Replay);
    const aad = this.aad;
    if (header) copyBytes(aad, 0, header, 0, TUNNEL_HDR);
    else copyBytes(aad, 0, b, hdrOff, TUNNEL_HDR);
    write16(aad, 16, 0);
    this.setIv(sender, counter);
    const encrypted = (flags & TunnelFlag.Encrypted) !== 0;
    const aead = this.aeadFor(keyId);
    if (!aead) return this.count(this.opts.retired?.has(keyId) ? Drop.RetiredKey : Drop.UnknownKey);
    if (!aead.open(this.iv, aad, b, pOff, plen, encrypted, b, pOff + plen)) return this.count(Drop.BadTag);
    w.commit(counter);
    this.batchesIn++;
    out.sender = sender;
    out.type = type;
    out.flags = flags;
    out.counter = counter;
    out.buf = b;
    out.off = pOff;
    out.len = plen;
    return true;
  }

  /** Forgets a peer's reassembly and replay state (it left the cluster). */
  forget(sender: number): void {
    this.endReceive();
    this.reasm.delete(sender);
    this.windows.delete(sender);
  }
}

/** Moves what a batch gathered in place into its own buffer (its receive buffer is about to be reused). */
function spill(r: Reassembly): void {
  const src = r.src;
  if (!src) return;
  r.src = null;
  r.buf.set(src.subarray(r.srcStart, r.srcStart + r.filled), 0);
}

export function newRxBatch(): RxBatch {
  return { sender: 0, type: 0, flags: 0, counter: 0, buf: new Uint8Array(0), off: 0, len: 0 };
}

/** Largest UDP payload per tunnel datagram on an underlay path of `pathMtu` bytes. */
export function maxDatagramFor(pathMtu: number, underlay: 4 | 6): number {
  return pathMtu - (underlay === 4 ? 20 : 40) - 8;
}

/**
 * MTU for the TUN, bridge and veths (SPEC §5.1): a plain inner packet plus the tunnel header and tag
 * fits one datagram, so nothing is ever fragmented. Super-packets are cut by the codec instead.
 */
export function innerMtuFor(pathMtu: number, underlay: 4 | 6): number {
  return maxDatagramFor(pathMtu, underlay) - TUNNEL_HDR - TAG_LEN;
}

/**
 * Largest inner super-packet (IP length) whose tunnel batch still leaves in one GSO send and so
 * arrives in one GRO receive: its virtio header, the tag and one tunnel header per datagram added
 * must fit in maxGsoPayloadFor. A 64 kB super-packet needs two sends, two skbs through the underlay
 * and two receives at the peer (perf/RESULTS.md); instance veths get this as their gso_max_size so
 * that TCP inside the overlay builds super-packets that fit.
 */
export function innerGsoMaxFor(maxDatagram: number, underlay: 4 | 6): number {
  const per = maxDatagram - TUNNEL_HDR;
  const limit = maxGsoPayloadFor(underlay);
  for (let g = 65535; g > per; g--) {
    const payload = 10 + g + TAG_LEN;
    if (payload + TUNNEL_HDR * Math.ceil(payload / per) <= limit) return g;
  }
  return per;
}
