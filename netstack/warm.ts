// Warming a fresh datapath's stateless per-packet code before the first real packet.
//
// At a few packets per second V8 never optimizes the datapath's code: a fresh datapath's lone packet
// runs parsing, rewriting, the tunnel codec and the AEAD calls in the interpreter (docs/decisions.md,
// "Latency of a lone packet"). This runs those functions over synthetic packets at start, on objects
// of the same classes and option objects the datapath uses, so their inline caches see the shapes of
// real traffic and TurboFan compiles them. It touches nothing the datapath keeps: the codecs are
// throwaway instances (their own counters, replay windows and AEAD contexts, closed at the end), no
// device or socket is read or written, and the translation table is not asked (its lookups have side
// effects: flows, route queries), so the pumps and the table stay cold.
import { PacketInfo, ipLength, parsePacket } from './packet.ts';
import { newRewrite } from './table.ts';
import { applyRewrite } from './rewrite.ts';
import { TunnelCodec, TunnelFlag, TunnelType, newRxBatch, type TunnelCodecOptions } from './tunnel.ts';
import { TxPlan } from '../native/io.ts';
import { VNET_F_NEEDS_CSUM, VNET_HDR_LEN } from './vnet.ts';

/** Rounds over the synthetic packets: enough for TurboFan to compile encode, decode, the AEAD calls, parsing and rewriting (~50 ms at start). */
export const WARM_ROUNDS = 1000;

/** A small IPv4 or IPv6 packet of protocol `proto` (6, 17, 1 or 58) at b[off..); returns its length. */
function synth(b: Uint8Array, off: number, family: 4 | 6, proto: number, payload: number): number {
  const ip = family === 4 ? 20 : 40;
  const l4 = proto === 6 ? 20 : 8;
  const len = ip + l4 + payload;
  b.fill(0, off, off + len);
  if (family === 4) {
    b[off] = 0x45;
    b[off + 2] = len >> 8;
    b[off + 3] = len & 0xff;
    b[off + 8] = 64;
    b[off + 9] = proto;
    b.set([10, 18, 1, 2, 10, 30, 0, 10], off + 12);
  } else {
    b[off] = 0x60;
    b[off + 4] = (len - 40) >> 8;
    b[off + 5] = (len - 40) & 0xff;
    b[off + 6] = proto;
    b[off + 7] = 64;
    b[off + 8] = 0xfd;
    b[off + 24] = 0xfd;
  }
  const t = off + ip;
  if (proto === 6) {
    b[t + 1] = 80;
    b[t + 3] = 99;
    b[t + 12] = 5 << 4;
    b[t + 13] = 0x18;
  } else if (proto === 17) {
    b[t + 1] = 53;
    b[t + 3] = 99;
    b[t + 5] = 8 + payload;
  } else {
    b[t] = family === 4 ? 8 : 128; // echo request
    b[t + 5] = 7;
  }
  return len;
}

/**
 * Runs parsing, rewriting and the codec's encode and decode (with the AEAD) `rounds` times over
 * synthetic packets. `codecOptions` is the object the datapath's codec was built from; `peerId`, a
 * sender its peer table admits, lets decode run to the tag check (without one only encode is warmed).
 * Returns how many batches were encoded and how many of them decoded and authenticated.
 */
export function warmPacketCode(codecOptions: TunnelCodecOptions, peerId: number | undefined, rounds = WARM_ROUNDS): { encoded: number; decoded: number } {
  const kinds: Array<[4 | 6, number]> = [[4, 6], [4, 17], [4, 1], [6, 6], [6, 17], [6, 58]];
  const buf = new Uint8Array(VNET_HDR_LEN + 2048);
  const dgram = new Uint8Array(4096);
  const m = new PacketInfo();
  const rw = newRewrite();
  const plan = new TxPlan();
  const rx = newRxBatch();
  // Encoders with the datapath's own options object (so encode sees its shape) and, when a peer is
  // known, one that sends as that peer, so that a decoder on the datapath's options admits it.
  const own = new TunnelCodec(codecOptions);
  const asPeer = peerId === undefined ? undefined : new TunnelCodec({ ...codecOptions, selfId: peerId });
  const dec = asPeer ? new TunnelCodec(codecOptions) : undefined;
  rw.rewriteSrc = true;
  rw.rewriteDst = true;
  try {
    for (let r = 0; r < rounds; r++) {
      for (let k = 0; k < kinds.length; k++) {
        const [family, proto] = kinds[k];
        const vnet = (r & 1) === 1;
        const p = vnet ? VNET_HDR_LEN : 0;
        const len = synth(buf, p, family, proto, 32 + k);
        if (vnet) buf.fill(0, 0, VNET_HDR_LEN);
        if (!parsePacket(buf, p, len, m)) continue;
        rw.src[0] = r & 0xff;
        rw.dst[3] = k;
        applyRewrite(buf, m, rw, vnet && (buf[0] & VNET_F_NEEDS_CSUM) !== 0);
        ipLength(buf, p);
        own.encode(TunnelType.Data, 0, buf, p, m.len, plan);
        if (!asPeer || !dec) continue;
        asPeer.encode(TunnelType.Data, (r & 2) === 0 ? 0 : TunnelFlag.Multi, buf, p, m.len, plan);
        const n = plan.copySegment(0, dgram);
        dec.beginReceive();
        dec.decode(dgram, 0, n, rx);
        dec.endReceive();
      }
    }
    return { encoded: own.batchesOut + (asPeer?.batchesOut ?? 0), decoded: dec?.batchesIn ?? 0 };
  } finally {
    own.close();
    asPeer?.close();
    dec?.close();
  }
}
