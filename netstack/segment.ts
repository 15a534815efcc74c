// Turning offloaded packets into plain ones, for a device or path that cannot take them whole:
// completing a partial checksum, and cutting a TSO/USO super-packet into MSS-sized packets with full
// checksums (what the kernel's GSO would do).
import { Proto } from './table.ts';
import { Frag, PacketInfo, parsePacket } from './packet.ts';
import { checksum, fold, pseudoSum, read32, sumBytes, write16, write32 } from './checksum.ts';
import { GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, VNET_F_NEEDS_CSUM, VNET_HDR_LEN,
  vnetCsumOffset, vnetCsumStart, vnetFlags, vnetGsoSize, vnetGsoType } from './vnet.ts';

/** Completes a partial checksum: the field at csum holds the pseudo-header sum; sum over [start, end). */
export function completeChecksum(buf: Uint8Array, start: number, csum: number, end: number): void {
  const c = ~fold(sumBytes(buf, start, end - start)) & 0xffff;
  // For UDP a computed 0 is sent as 0xffff; for TCP/ICMPv6 both forms verify.
  write16(buf, csum, c === 0 ? 0xffff : c);
}

/** Recomputes the L4 checksum of a parsed packet from scratch (full form). */
export function fullL4Checksum(buf: Uint8Array, m: PacketInfo): void {
  const end = m.l3 + m.len;
  const l4len = end - m.l4;
  write16(buf, m.csumOff, 0);
  const init = m.proto === Proto.ICMP ? 0 : pseudoSum(buf, m.srcOff, m.dstOff, m.family === 4 ? 4 : 16, m.proto, l4len);
  let c = checksum(buf, m.l4, l4len, init);
  if (c === 0 && m.proto === Proto.UDP) c = 0xffff;
  write16(buf, m.csumOff, c);
}

export function ipv4HeaderChecksum(buf: Uint8Array, l3: number): void {
  const ihl = (buf[l3] & 0x0f) * 4;
  write16(buf, l3 + 10, 0);
  write16(buf, l3 + 10, checksum(buf, l3, ihl));
}

/**
 * Emits the plain packets that the offloaded packet at buf[vnetOff] (virtio_net_hdr, then the IP
 * packet, `len` bytes in all) stands for. Each is built in `out` at offset 0 and handed to `emit`
 * before the next overwrites it. Returns the number emitted, or -1 if the packet cannot be cut
 * (unknown GSO type, inconsistent headers).
 */
export function segmentOffloaded(buf: Uint8Array, vnetOff: number, len: number, out: Uint8Array,
  m: PacketInfo, emit: (b: Uint8Array, len: number) => void): number {
  const pkt = vnetOff + VNET_HDR_LEN;
  const plen = len - VNET_HDR_LEN;
  if (plen <= 0 || !parsePacket(buf, pkt, plen, m) || m.frag !== Frag.None) return -1;
  const gso = vnetGsoType(buf, vnetOff) & 0x7f;
  if (gso === GSO_NONE) {
    if (vnetFlags(buf, vnetOff) & VNET_F_NEEDS_CSUM) {
      const start = pkt + vnetCsumStart(buf, vnetOff);
      const field = start + vnetCsumOffset(buf, vnetOff);
      if (field + 2 > pkt + m.len || start < pkt) return -1;
      completeChecksum(buf, start, field, pkt + m.len);
    }
    out.set(buf.subarray(pkt, pkt + m.len), 0);
    emit(out, m.len);
    return 1;
  }
  const mss = vnetGsoSize(buf, vnetOff);
  if (mss === 0) return -1;
  const isTcp = gso === GSO_TCPV4 || gso === GSO_TCPV6;
  if (isTcp && m.proto !== Proto.TCP) return -1;
  if (gso === GSO_UDP_L4 && m.proto !== Proto.UDP) return -1;
  if (!isTcp && gso !== GSO_UDP_L4) return -1;
  const hdrLen = (m.l4 - pkt) + (isTcp ? m.tcpHdrLen : 8);
  const end = pkt + m.len;
  const payload = end - (pkt + hdrLen);
  if (payload <= 0) return -1;
  const n = Math.ceil(payload / mss);
  const l4rel = m.l4 - pkt;
  const alen = m.family === 4 ? 4 : 16;
  const srcRel = m.srcOff - pkt;
  const dstRel = m.dstOff - pkt;
  const csumRel = m.csumOff - pkt;
  const seq0 = isTcp ? read32(buf, m.l4 + 4) : 0;
  const flags0 = isTcp ? buf[m.l4 + 13] : 0;
  const id0 = m.family === 4 ? (buf[pkt + 4] << 8) | buf[pkt + 5] : 0;
  for (let i = 0; i < n; i++) {
    const from = pkt + hdrLen + i * mss;
    const seg = Math.min(mss, end - from);
    out.set(buf.subarray(pkt, pkt + hdrLen), 0);
    out.set(buf.subarray(from, from + seg), hdrLen);
    const total = hdrLen + seg;
    if (m.family === 4) {
      write16(out, 2, total);
      write16(out, 4, (id0 + i) & 0xffff);
      ipv4HeaderChecksum(out, 0);
    } else {
      write16(out, 4, total - 40);
    }
    if (isTcp) {
      write32(out, l4rel + 4, (seq0 + i * mss) >>> 0);
      let f = flags0;
      if (i < n - 1) f &= ~(0x01 | 0x08); // FIN and PSH only on the last segment
      if (i > 0) f &= ~0x80; // CWR only on the first
      out[l4rel + 13] = f;
    } else {
      write16(out, l4rel + 4, total - l4rel);
    }
    const l4len = total - l4rel;
    write16(out, csumRel, 0);
    let c = checksum(out, l4rel, l4len, pseudoSum(out, srcRel, dstRel, alen, m.proto, l4len));
    if (c === 0 && !isTcp) c = 0xffff;
    write16(out, csumRel, c);
    emit(out, total);
  }
  return n;
}
