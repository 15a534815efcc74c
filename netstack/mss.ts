// TCP MSS clamping on SYNs crossing the overlay, so that no segment ever exceeds the inner MTU and
// nothing is fragmented — even when the plumbing's own clamp (nftables) is missing.
import { Proto } from './table.ts';
import type { PacketInfo } from './packet.ts';
import { read16, updateFull, write16 } from './checksum.ts';

const SYN = 0x02;

/**
 * Lowers the MSS option of a TCP SYN to `max` if it is larger. Returns true when it changed it.
 * With a partial checksum (NEEDS_CSUM) the field covers only the pseudo-header, so it is left alone.
 */
export function clampMss(buf: Uint8Array, m: PacketInfo, max: number, partialL4: boolean): boolean {
  if (m.proto !== Proto.TCP || (buf[m.l4 + 13] & SYN) === 0) return false;
  const end = m.l4 + m.tcpHdrLen;
  let i = m.l4 + 20;
  while (i < end) {
    const kind = buf[i];
    if (kind === 0) return false;
    if (kind === 1) {
      i++;
      continue;
    }
    if (i + 1 >= end) return false;
    const len = buf[i + 1];
    if (len < 2 || i + len > end) return false;
    if (kind === 2 && len === 4) {
      const old = read16(buf, i + 2);
      if (old <= max) return false;
      write16(buf, i + 2, max);
      if (!partialL4) {
        // A value at an odd offset from the L4 start straddles two checksum words: swap its bytes.
        const odd = ((i + 2 - m.l4) & 1) === 1;
        const o = odd ? ((old & 0xff) << 8) | (old >>> 8) : old;
        const n = odd ? ((max & 0xff) << 8) | (max >>> 8) : max;
        updateFull(buf, m.csumOff, (~o & 0xffff) + n);
      }
      return true;
    }
    i += len;
  }
  return false;
}
