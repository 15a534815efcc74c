// Test packet builders and from-scratch checksum checks (independent of the incremental code).
import { Proto } from '../netstack/table.ts';
import { VNET_F_NEEDS_CSUM, VNET_HDR_LEN, writeVnet } from '../netstack/vnet.ts';

export function addr(s: string): Uint8Array {
  if (s.includes('.')) return Uint8Array.from(s.split('.').map((x) => Number(x)));
  const out = new Uint8Array(16);
  const [head, tail] = s.split('::');
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const words = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  words.forEach((w, i) => { const v = parseInt(w, 16); out[2 * i] = v >> 8; out[2 * i + 1] = v & 0xff; });
  return out;
}

function sum(b: Uint8Array, off: number, len: number): number {
  let s = 0;
  for (let i = 0; i + 1 < len; i += 2) s += (b[off + i] << 8) | b[off + i + 1];
  if (len & 1) s += b[off + len - 1] << 8;
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}

function pseudo(b: Uint8Array, family: 4 | 6, l3: number, proto: number, l4len: number): number {
  const a = family === 4 ? 4 : 16;
  const so = family === 4 ? l3 + 12 : l3 + 8;
  const d = family === 4 ? l3 + 16 : l3 + 24;
  return sum(b, so, a) + sum(b, d, a) + proto + l4len;
}

export interface Spec {
  family: 4 | 6;
  proto: number;
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
  payload?: Uint8Array | number;
  icmpType?: number;
  /** Leave a UDP/IPv4 checksum at 0 ("none"). */
  noUdpCsum?: boolean;
  /** TCP option bytes (a multiple of 4) and flags (default PSH|ACK). */
  tcpOptions?: number[];
  tcpFlags?: number;
}

/** An IP packet with correct full checksums. */
export function build(spec: Spec): Uint8Array {
  const payload = typeof spec.payload === 'number'
    ? Uint8Array.from({ length: spec.payload }, (_, i) => (i * 7 + 3) & 0xff)
    : spec.payload ?? new Uint8Array(0);
  const ipLen = spec.family === 4 ? 20 : 40;
  const opts = spec.tcpOptions ?? [];
  const l4hdr = spec.proto === Proto.TCP ? 20 + opts.length : 8;
  const total = ipLen + l4hdr + payload.length;
  const b = new Uint8Array(total);
  const dv = new DataView(b.buffer);
  if (spec.family === 4) {
    b[0] = 0x45; dv.setUint16(2, total); dv.setUint16(4, 0x1234); b[8] = 64; b[9] = spec.proto;
    b.set(addr(spec.src), 12); b.set(addr(spec.dst), 16);
  } else {
    b[0] = 0x60; dv.setUint16(4, total - 40); b[6] = spec.proto; b[7] = 64;
    b.set(addr(spec.src), 8); b.set(addr(spec.dst), 24);
  }
  const l4 = ipLen;
  if (spec.proto === Proto.TCP) {
    dv.setUint16(l4, spec.sport ?? 40000); dv.setUint16(l4 + 2, spec.dport ?? 80);
    dv.setUint32(l4 + 4, 1000); dv.setUint32(l4 + 8, 2000); b[l4 + 12] = (l4hdr / 4) << 4;
    b[l4 + 13] = spec.tcpFlags ?? 0x18;
    dv.setUint16(l4 + 14, 65535);
    b.set(opts, l4 + 20);
  } else if (spec.proto === Proto.UDP) {
    dv.setUint16(l4, spec.sport ?? 40000); dv.setUint16(l4 + 2, spec.dport ?? 53); dv.setUint16(l4 + 4, 8 + payload.length);
  } else {
    b[l4] = spec.icmpType ?? (spec.family === 4 ? 8 : 128); dv.setUint16(l4 + 4, spec.sport ?? 0x4242); dv.setUint16(l4 + 6, 1);
  }
  b.set(payload, l4 + l4hdr);
  if (spec.family === 4) dv.setUint16(10, ~sum(b, 0, 20) & 0xffff);
  const l4len = total - l4;
  const csumOff = spec.proto === Proto.TCP ? l4 + 16 : spec.proto === Proto.UDP ? l4 + 6 : l4 + 2;
  if (!(spec.noUdpCsum && spec.proto === Proto.UDP)) {
    const init = spec.proto === Proto.ICMP ? 0 : pseudo(b, spec.family, 0, spec.proto, l4len);
    let s = init + sum(b, l4, l4len);
    while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
    let c = ~s & 0xffff;
    if (c === 0 && spec.proto === Proto.UDP) c = 0xffff;
    dv.setUint16(csumOff, c);
  }
  return b;
}

/** True when the packet's IPv4 header checksum and L4 checksum verify from scratch. */
export function checksumsOk(b: Uint8Array, off = 0): boolean {
  const v = b[off] >> 4;
  const family = v === 4 ? 4 : 6;
  const ipLen = family === 4 ? (b[off] & 15) * 4 : 40;
  const total = family === 4 ? (b[off + 2] << 8) | b[off + 3] : 40 + ((b[off + 4] << 8) | b[off + 5]);
  if (family === 4 && sum(b, off, ipLen) !== 0xffff) return false;
  const proto = family === 4 ? b[off + 9] : b[off + 6];
  const l4 = off + ipLen;
  const l4len = total - ipLen;
  if (proto === Proto.UDP && family === 4 && b[l4 + 6] === 0 && b[l4 + 7] === 0) return true;
  const init = proto === Proto.ICMP ? 0 : pseudo(b, family, off, proto, l4len);
  let s = init + sum(b, l4, l4len);
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s === 0xffff;
}

/**
 * Puts a vnet header before the packet and turns its L4 checksum into the partial form the kernel
 * hands out with NEEDS_CSUM (uncomplemented pseudo-header sum). Optional GSO fields.
 */
export function toPartial(pkt: Uint8Array, gsoType = 0, gsoSize = 0): Uint8Array {
  const out = new Uint8Array(VNET_HDR_LEN + pkt.length);
  out.set(pkt, VNET_HDR_LEN);
  const b = out.subarray(VNET_HDR_LEN);
  const family = b[0] >> 4 === 4 ? 4 : 6;
  const ipLen = family === 4 ? 20 : 40;
  const proto = family === 4 ? b[9] : b[6];
  const csumRel = proto === Proto.TCP ? 16 : proto === Proto.UDP ? 6 : 2;
  const l4len = pkt.length - ipLen;
  const s = pseudo(b, family, 0, proto, l4len);
  let f = s;
  while (f > 0xffff) f = (f & 0xffff) + Math.floor(f / 0x10000);
  b[ipLen + csumRel] = f >> 8;
  b[ipLen + csumRel + 1] = f & 0xff;
  const hdrLen = ipLen + (proto === Proto.TCP ? 20 : 8);
  writeVnet(out, 0, VNET_F_NEEDS_CSUM, gsoType, hdrLen, gsoSize, ipLen, csumRel);
  return out;
}

/** Completes a partial checksum from scratch (as the kernel would) and returns the plain packet. */
export function completePartial(v: Uint8Array): Uint8Array {
  const b = v.slice(VNET_HDR_LEN);
  const start = v[6] | (v[7] << 8);
  const off = v[8] | (v[9] << 8);
  let s = sum(b, start, b.length - start);
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  const c = ~s & 0xffff;
  b[start + off] = c >> 8;
  b[start + off + 1] = c & 0xff;
  return b;
}

/** An ICMP error about `inner` (the packet as the target host received it), with valid checksums. */
export function icmpErrorAbout(family: 4 | 6, src: string, dst: string, inner: Uint8Array): Uint8Array {
  const err = build({ family, proto: family === 4 ? Proto.ICMP : Proto.ICMPV6, src, dst, payload: inner, icmpType: family === 4 ? 3 : 1 });
  // build() wrote an echo-style header: make it "port unreachable" with zeroed rest-of-header, then
  // recompute the checksum over the whole message from scratch.
  const l4 = family === 4 ? 20 : 40;
  err[l4 + 1] = family === 4 ? 3 : 4;
  err.fill(0, l4 + 2, l4 + 8);
  let s = 0;
  const sum = (o: number, n: number) => { for (let i = 0; i < n; i += 2) s += (err[o + i] << 8) | (i + 1 < n ? err[o + i + 1] : 0); };
  if (family === 6) { sum(8, 32); s += 58 + (err.length - 40); }
  sum(l4, err.length - l4);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  err[l4 + 2] = (~s >> 8) & 0xff;
  err[l4 + 3] = ~s & 0xff;
  return err;
}
