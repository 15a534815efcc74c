// Where the address that a pair rule matches sits in an Ethernet frame. Read-only, allocation-free.
import { Address4, Address6 } from 'ip-address';

const ETH_HLEN = 14;
const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_IPV6 = 0x86dd;
const ETHERTYPE_VLAN = 0x8100;
const ICMPV6 = 58;

/**
 * Offset of the source (`which` = 'src') or destination IPv4/IPv6 address in `frame[0..len)`, or -1
 * when the frame is not IP, is ARP or NDP (never subject to pair rules), or is too short.
 * The address is 4 bytes long for an IPv4 frame and 16 for IPv6 (see addrLen).
 */
export function addrOffset(frame: Uint8Array, len: number, which: 'src' | 'dst'): number {
  if (len < ETH_HLEN) return -1;
  let l3 = ETH_HLEN;
  let type = (frame[12]! << 8) | frame[13]!;
  if (type === ETHERTYPE_VLAN) {
    if (len < ETH_HLEN + 4) return -1;
    type = (frame[16]! << 8) | frame[17]!;
    l3 += 4;
  }
  if (type === ETHERTYPE_IPV4) {
    if (len < l3 + 20 || frame[l3]! >> 4 !== 4) return -1;
    return l3 + (which === 'src' ? 12 : 16);
  }
  if (type === ETHERTYPE_IPV6) {
    if (len < l3 + 40 || frame[l3]! >> 4 !== 6) return -1;
    // NDP (router/neighbour solicitation and advertisement, redirect) must pass like ARP does.
    if (frame[l3 + 6] === ICMPV6 && len > l3 + 40) {
      const t = frame[l3 + 40]!;
      if (t >= 133 && t <= 137) return -1;
    }
    return l3 + (which === 'src' ? 8 : 24);
  }
  return -1;
}

/** Length of the address found by addrOffset: 4 (IPv4) or 16 (IPv6). */
export function addrLen(frame: Uint8Array): number {
  let type = (frame[12]! << 8) | frame[13]!;
  if (type === ETHERTYPE_VLAN) type = (frame[16]! << 8) | frame[17]!;
  return type === ETHERTYPE_IPV4 ? 4 : 16;
}

/** Parses a textual IPv4 or IPv6 address into 4 or 16 bytes; throws on anything else. */
export function parseAddr(s: string): Uint8Array {
  if (Address4.isValid(s)) return Uint8Array.from(new Address4(s).toArray());
  if (Address6.isValid(s) && !s.includes('/')) {
    const b = new Address6(s).toUnsignedByteArray();
    const out = new Uint8Array(16);
    out.set(b, 16 - b.length);
    return out;
  }
  throw new Error(`not an IP address: ${JSON.stringify(s)}`);
}

/** True when frame[off..off+addr.length) equals addr. */
export function addrEquals(frame: Uint8Array, off: number, addr: Uint8Array): boolean {
  for (let i = 0; i < addr.length; i++) if (frame[off + i] !== addr[i]) return false;
  return true;
}
