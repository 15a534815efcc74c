// Views over IPv4/IPv6 and TCP/UDP/ICMP/ICMPv6 headers: parsing fills offsets into the caller's
// buffer, nothing is copied. One PacketInfo is reused for every packet on the hot path.
import { Proto, type PacketMeta } from './table.ts';
import { read16 } from './checksum.ts';

export const IPV4_HDR_MIN = 20;
export const IPV6_HDR = 40;
export const TCP_HDR_MIN = 20;
export const UDP_HDR = 8;
export const ICMP_HDR = 8;

/** Why a buffer is not a packet we carry. 0 = ok. */
export const ParseError = {
  None: 0,
  Short: 1,
  Version: 2,
  Length: 3,
  Fragment: 4,
  Protocol: 5,
} as const;
export type ParseError = (typeof ParseError)[keyof typeof ParseError];

export const Frag = { None: 0, First: 1, Later: 2 } as const;
export type Frag = (typeof Frag)[keyof typeof Frag];

const IPV6_FRAGMENT = 44;

export class PacketInfo implements PacketMeta {
  family: 4 | 6 = 4;
  proto = 0;
  l3 = 0;
  l4 = 0;
  srcOff = 0;
  dstOff = 0;
  sport = 0;
  dport = 0;
  /** IP packet length (header + payload) according to the header, ≤ the bytes available. */
  len = 0;
  /** Offset of the L4 checksum field (TCP, UDP, ICMP, ICMPv6). */
  csumOff = 0;
  /** TCP header length, 0 for other protocols. */
  tcpHdrLen = 0;
  /** ICMP/ICMPv6 type, or -1. */
  icmpType = -1;
  /** IP fragmentation: Frag.None, First (has the L4 header), or Later (no L4 header, no ports). */
  frag: Frag = Frag.None;
  /** Fragment identification (IPv4: 16 bits, IPv6: 32 bits) when frag ≠ None. */
  fragId = 0;
  error: ParseError = ParseError.None;
}

/** ICMP echo types carry an identifier in the port slots; other ICMP types are not carried. */
function isEcho(family: 4 | 6, type: number): boolean {
  return family === 4 ? type === 8 || type === 0 : type === 128 || type === 129;
}

/**
 * Parses the IP packet that starts at buf[off] and has at most `avail` bytes. Returns false (and sets
 * m.error) for anything the overlay does not carry: not IPv4/IPv6, truncated, an IPv6 extension
 * header other than one Fragment header, an L4 protocol other than TCP/UDP/ICMP echo. A fragment
 * after the first parses with m.frag = Frag.Later, no ports and csumOff = -1: the datapath applies
 * the rewrite its first fragment got.
 */
export function parsePacket(buf: Uint8Array, off: number, avail: number, m: PacketInfo): boolean {
  m.error = ParseError.None;
  m.sport = 0;
  m.dport = 0;
  m.tcpHdrLen = 0;
  m.icmpType = -1;
  m.frag = Frag.None;
  m.fragId = 0;
  m.csumOff = -1;
  m.l3 = off;
  if (avail < 1 || off + avail > buf.length) return fail(m, ParseError.Short);
  const v = buf[off] >>> 4;
  let l4: number;
  let end: number;
  if (v === 4) {
    if (avail < IPV4_HDR_MIN) return fail(m, ParseError.Short);
    const ihl = (buf[off] & 0x0f) * 4;
    const tot = read16(buf, off + 2);
    if (ihl < IPV4_HDR_MIN || tot < ihl || tot > avail) return fail(m, ParseError.Length);
    m.family = 4;
    m.proto = buf[off + 9];
    m.srcOff = off + 12;
    m.dstOff = off + 16;
    l4 = off + ihl;
    end = off + tot;
    const fo = read16(buf, off + 6);
    if ((fo & 0x3fff) !== 0) {
      m.fragId = read16(buf, off + 4);
      m.frag = (fo & 0x1fff) !== 0 ? Frag.Later : Frag.First;
    }
  } else if (v === 6) {
    if (avail < IPV6_HDR) return fail(m, ParseError.Short);
    const plen = read16(buf, off + 4);
    if (IPV6_HDR + plen > avail) return fail(m, ParseError.Length);
    m.family = 6;
    m.proto = buf[off + 6];
    m.srcOff = off + 8;
    m.dstOff = off + 24;
    l4 = off + IPV6_HDR;
    end = l4 + plen;
    if (m.proto === IPV6_FRAGMENT) {
      if (end - l4 < 8) return fail(m, ParseError.Short);
      m.proto = buf[l4];
      const fo = read16(buf, l4 + 2);
      m.fragId = ((buf[l4 + 4] << 24) | (buf[l4 + 5] << 16) | (buf[l4 + 6] << 8) | buf[l4 + 7]) >>> 0;
      m.frag = (fo >>> 3) !== 0 ? Frag.Later : (fo & 1) !== 0 ? Frag.First : Frag.None;
      l4 += 8;
    }
  } else {
    return fail(m, ParseError.Version);
  }
  m.l4 = l4;
  m.len = end - off;
  const l4len = end - l4;
  if (m.frag === Frag.Later) {
    const p = m.proto;
    if (p !== Proto.TCP && p !== Proto.UDP && p !== Proto.ICMP && p !== Proto.ICMPV6) return fail(m, ParseError.Protocol);
    return true;
  }
  switch (m.proto) {
    case Proto.TCP: {
      if (l4len < TCP_HDR_MIN) return fail(m, ParseError.Short);
      const doff = (buf[l4 + 12] >>> 4) * 4;
      if (doff < TCP_HDR_MIN || doff > l4len) return fail(m, ParseError.Length);
      m.tcpHdrLen = doff;
      m.sport = read16(buf, l4);
      m.dport = read16(buf, l4 + 2);
      m.csumOff = l4 + 16;
      return true;
    }
    case Proto.UDP: {
      if (l4len < UDP_HDR) return fail(m, ParseError.Short);
      m.sport = read16(buf, l4);
      m.dport = read16(buf, l4 + 2);
      m.csumOff = l4 + 6;
      return true;
    }
    case Proto.ICMP:
    case Proto.ICMPV6: {
      if ((m.proto === Proto.ICMP) !== (m.family === 4)) return fail(m, ParseError.Protocol);
      if (l4len < ICMP_HDR) return fail(m, ParseError.Short);
      const type = buf[l4];
      if (!isEcho(m.family, type)) return fail(m, ParseError.Protocol);
      m.icmpType = type;
      m.sport = m.dport = read16(buf, l4 + 4);
      m.csumOff = l4 + 2;
      return true;
    }
    default:
      return fail(m, ParseError.Protocol);
  }
}

function fail(m: PacketInfo, e: ParseError): false {
  m.error = e;
  return false;
}

/** Length of the IP packet in buf at off according to its header (0 if not IP). */
export function ipLength(buf: Uint8Array, off: number): number {
  const v = buf[off] >>> 4;
  if (v === 4) return read16(buf, off + 2);
  if (v === 6) return IPV6_HDR + read16(buf, off + 4);
  return 0;
}
