// ICMP errors (destination/port unreachable, time exceeded, packet too big, parameter problem) about
// a translated flow. They carry the offending packet inside; the outer and the inner addresses are
// rewritten together so that the original sender sees an error about the packet it really sent
// (to the service IP it dialled), with every checksum still valid: the outer IPv4 header, the inner
// IPv4 header, the inner L4 checksum, and the ICMP checksum that covers all of it.
import { Proto, type PacketMeta, type Rewrite } from './table.ts';
import { read16, updateFull, write16 } from './checksum.ts';

export class IcmpError {
  family: 4 | 6 = 4;
  /** Outer IP header, its address offsets, the ICMP header and its checksum field. */
  l3 = 0;
  srcOff = 0;
  dstOff = 0;
  icmp = 0;
  len = 0;
  /** The embedded packet: IP header, addresses, protocol, ports (echo id for ICMP), checksum fields
   *  (-1 when absent or cut off). */
  innerL3 = 0;
  innerSrc = 0;
  innerDst = 0;
  innerProto = 0;
  innerSport = 0;
  innerDport = 0;
  innerIpCsum = -1;
  innerL4Csum = -1;
  /** A PacketMeta for the flow the error belongs to, seen as a reply (inner dst → inner src). */
  readonly reply: PacketMeta = { family: 4, proto: 0, l3: 0, l4: 0, srcOff: 0, dstOff: 0, sport: 0, dport: 0 };
}

function isErrorType(family: 4 | 6, t: number): boolean {
  return family === 4 ? t === 3 || t === 11 || t === 12 : t >= 1 && t <= 4;
}

/** Parses an ICMP/ICMPv6 error at buf[off] (avail bytes). False for anything else or too short. */
export function parseIcmpError(buf: Uint8Array, off: number, avail: number, e: IcmpError): boolean {
  if (avail < 28 || off + avail > buf.length) return false;
  const v = buf[off] >>> 4;
  let icmp: number;
  let end: number;
  if (v === 4) {
    const ihl = (buf[off] & 15) * 4;
    const tot = read16(buf, off + 2);
    if (ihl < 20 || tot > avail || tot < ihl + 8 || buf[off + 9] !== Proto.ICMP) return false;
    if ((read16(buf, off + 6) & 0x3fff) !== 0) return false;
    e.family = 4;
    e.srcOff = off + 12;
    e.dstOff = off + 16;
    icmp = off + ihl;
    end = off + tot;
  } else if (v === 6) {
    if (avail < 48 || buf[off + 6] !== Proto.ICMPV6) return false;
    const plen = read16(buf, off + 4);
    if (40 + plen > avail || plen < 8) return false;
    e.family = 6;
    e.srcOff = off + 8;
    e.dstOff = off + 24;
    icmp = off + 40;
    end = icmp + plen;
  } else {
    return false;
  }
  if (!isErrorType(e.family, buf[icmp])) return false;
  e.l3 = off;
  e.icmp = icmp;
  e.len = end - off;
  const inner = icmp + 8;
  if (end - inner < (e.family === 4 ? 20 : 40) + 4) return false;
  if (buf[inner] >>> 4 !== e.family) return false;
  let l4: number;
  if (e.family === 4) {
    const ihl = (buf[inner] & 15) * 4;
    if (ihl < 20 || inner + ihl + 4 > end) return false;
    e.innerProto = buf[inner + 9];
    e.innerSrc = inner + 12;
    e.innerDst = inner + 16;
    e.innerIpCsum = inner + 10;
    l4 = inner + ihl;
  } else {
    e.innerProto = buf[inner + 6];
    e.innerSrc = inner + 8;
    e.innerDst = inner + 24;
    e.innerIpCsum = -1;
    l4 = inner + 40;
  }
  e.innerL3 = inner;
  const p = e.innerProto;
  let csum: number;
  if (p === Proto.TCP || p === Proto.UDP) {
    e.innerSport = read16(buf, l4);
    e.innerDport = read16(buf, l4 + 2);
    csum = l4 + (p === Proto.TCP ? 16 : 6);
  } else if ((p === Proto.ICMP && e.family === 4) || (p === Proto.ICMPV6 && e.family === 6)) {
    if (l4 + 6 > end) return false;
    e.innerSport = e.innerDport = read16(buf, l4 + 4);
    // ICMPv4's own checksum has no pseudo-header: nothing in it changes with the addresses.
    csum = p === Proto.ICMP ? -1 : l4 + 2;
  } else {
    return false;
  }
  e.innerL4Csum = csum >= 0 && csum + 2 <= end ? csum : -1;
  // UDP over IPv4 may carry no checksum at all.
  if (p === Proto.UDP && e.family === 4 && e.innerL4Csum >= 0 && read16(buf, e.innerL4Csum) === 0) e.innerL4Csum = -1;
  const r = e.reply;
  r.family = e.family;
  r.proto = p;
  r.l3 = inner;
  r.l4 = l4;
  r.srcOff = e.innerDst;
  r.dstOff = e.innerSrc;
  r.sport = e.innerDport;
  r.dport = e.innerSport;
  return true;
}

/** Sets n address bytes at off, returning the ones'-complement delta (sum of ~old + new words). */
function replace(buf: Uint8Array, off: number, addr: Uint8Array, n: number): number {
  let d = 0;
  for (let i = 0; i < n; i += 2) {
    d += (~read16(buf, off + i) & 0xffff) + ((addr[i] << 8) | addr[i + 1]);
    buf[off + i] = addr[i];
    buf[off + i + 1] = addr[i + 1];
  }
  return d;
}

function equal(buf: Uint8Array, a: number, b: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (buf[a + i] !== buf[b + i]) return false;
  return true;
}

/**
 * Applies a rewrite computed for the *reply* direction of the flow (e.reply) to an ICMP error:
 * outer dst and inner src take rw.dst; inner dst and — when the error came from that same host —
 * outer src take rw.src. Checksums are updated incrementally, the ICMP one last.
 */
export function rewriteIcmpError(buf: Uint8Array, e: IcmpError, rw: Rewrite): void {
  const n = e.family === 4 ? 4 : 16;
  const fromTarget = equal(buf, e.srcOff, e.innerDst, n);
  let outer = 0; // changes to the outer addresses
  let inner = 0; // changes to the inner addresses
  if (rw.rewriteDst) {
    outer += replace(buf, e.dstOff, rw.dst, n);
    inner += replace(buf, e.innerSrc, rw.dst, n);
  }
  if (rw.rewriteSrc) {
    if (fromTarget) outer += replace(buf, e.srcOff, rw.src, n);
    inner += replace(buf, e.innerDst, rw.src, n);
  }
  // Ports, seen from the reply: its source port is the inner destination port, and the other way round.
  let ports = 0;
  if (e.innerProto === Proto.TCP || e.innerProto === Proto.UDP) {
    const l4 = e.reply.l4;
    if (rw.newSport !== 0) { ports += (~read16(buf, l4 + 2) & 0xffff) + rw.newSport; write16(buf, l4 + 2, rw.newSport); }
    if (rw.newDport !== 0) { ports += (~read16(buf, l4) & 0xffff) + rw.newDport; write16(buf, l4, rw.newDport); }
  }
  let icmpDelta = inner + ports;
  if (e.innerIpCsum >= 0 && inner !== 0) {
    const before = read16(buf, e.innerIpCsum);
    updateFull(buf, e.innerIpCsum, inner);
    icmpDelta += (~before & 0xffff) + read16(buf, e.innerIpCsum);
  }
  if (e.innerL4Csum >= 0 && inner + ports !== 0) {
    const before = read16(buf, e.innerL4Csum);
    updateFull(buf, e.innerL4Csum, inner + ports);
    if (e.innerProto === Proto.UDP && read16(buf, e.innerL4Csum) === 0) write16(buf, e.innerL4Csum, 0xffff);
    icmpDelta += (~before & 0xffff) + read16(buf, e.innerL4Csum);
  }
  if (e.family === 4 && outer !== 0) updateFull(buf, e.l3 + 10, outer);
  // ICMPv6's checksum covers the outer pseudo-header too.
  if (e.family === 6) icmpDelta += outer;
  if (icmpDelta !== 0) updateFull(buf, e.icmp + 2, icmpDelta);
}
