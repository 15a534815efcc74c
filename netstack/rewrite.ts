// Applies a table's Rewrite to a parsed packet in place, with incremental checksum updates.
import type { Rewrite } from './table.ts';
import { Proto } from './table.ts';
import type { PacketInfo } from './packet.ts';
import { replaceDelta, updateFull, updatePartial, write16 } from './checksum.ts';
import { copyBytes } from './bytes.ts';

/**
 * Rewrites source and/or destination address, and a TCP/UDP port when the table asks for one.
 * `partialL4` says the L4 checksum field holds the uncomplemented pseudo-header sum
 * (VIRTIO_NET_HDR_F_NEEDS_CSUM), which is updated without the complement steps and does not cover
 * the ports; the IPv4 header checksum is always full. `m`'s ports follow the packet's.
 */
export function applyRewrite(buf: Uint8Array, m: PacketInfo, rw: Rewrite, partialL4: boolean): void {
  const alen = m.family === 4 ? 4 : 16;
  let delta = 0;
  if (rw.rewriteSrc) {
    delta += replaceDelta(buf, m.srcOff, rw.src, 0, alen);
    copyBytes(buf, m.srcOff, rw.src, 0, alen);
  }
  if (rw.rewriteDst) {
    delta += replaceDelta(buf, m.dstOff, rw.dst, 0, alen);
    copyBytes(buf, m.dstOff, rw.dst, 0, alen);
  }
  // Ports are in the L4 header, not the pseudo-header: they move a full checksum only.
  let portDelta = 0;
  if ((rw.newSport !== 0 || rw.newDport !== 0) && (m.proto === Proto.TCP || m.proto === Proto.UDP) && m.csumOff >= 0) {
    if (rw.newSport !== 0) {
      portDelta += (~m.sport & 0xffff) + rw.newSport;
      write16(buf, m.l4, rw.newSport);
      m.sport = rw.newSport;
    }
    if (rw.newDport !== 0) {
      portDelta += (~m.dport & 0xffff) + rw.newDport;
      write16(buf, m.l4 + 2, rw.newDport);
      m.dport = rw.newDport;
    }
  }
  if (delta === 0 && portDelta === 0) return;
  if (m.family === 4 && delta !== 0) updateFull(buf, m.l3 + 10, delta);
  // ICMPv4's checksum does not cover a pseudo-header; everything else here does. A later fragment
  // has no L4 header: its datagram's checksum was fixed in the first fragment.
  if (m.proto === Proto.ICMP || m.csumOff < 0) return;
  const c = m.csumOff;
  if (partialL4) {
    if (delta !== 0) updatePartial(buf, c, delta);
    return;
  }
  if (m.proto === Proto.UDP && m.family === 4 && buf[c] === 0 && buf[c + 1] === 0) return; // no checksum
  updateFull(buf, c, delta + portDelta);
  // A UDP checksum of 0 means "none"; its ones'-complement twin 0xffff is the same value.
  if (m.proto === Proto.UDP && buf[c] === 0 && buf[c + 1] === 0) { buf[c] = 0xff; buf[c + 1] = 0xff; }
}
