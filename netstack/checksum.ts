// Internet checksums (RFC 1071) and their incremental updates (RFC 1624).
//
// Two checksum states exist on the packet path. A *full* checksum field holds the complemented sum of
// everything it covers. A *partial* one (a packet read from a TUN with VIRTIO_NET_HDR_F_NEEDS_CSUM)
// holds only the uncomplemented pseudo-header sum; the kernel or NIC adds the payload later. Updates
// differ: a full field is complemented before and after adding the delta, a partial one is not.

/** Ones'-complement sum of buf[off..off+len) added to `init`, not folded (a 32-bit-safe number). */
export function sumBytes(buf: Uint8Array, off: number, len: number, init = 0): number {
  let s = init;
  const end = off + len;
  let i = off;
  // Folding every 32 k words keeps the accumulator inside a small integer.
  while (i + 1 < end) {
    const stop = Math.min(end - 1, i + 65534);
    for (; i < stop; i += 2) s += (buf[i] << 8) | buf[i + 1];
    s = (s & 0xffff) + (s >>> 16);
  }
  if (i < end) s += buf[i] << 8;
  return s;
}

/** Folds a sum to 16 bits (ones'-complement carry wrap). */
export function fold(s: number): number {
  s = (s & 0xffff) + (s >>> 16);
  s = (s & 0xffff) + (s >>> 16);
  return s & 0xffff;
}

/** The complemented checksum of a range (what goes into a full checksum field). */
export function checksum(buf: Uint8Array, off: number, len: number, init = 0): number {
  return ~fold(sumBytes(buf, off, len, init)) & 0xffff;
}

/** Sum of ~old + new over `n` bytes (n even): the delta that turns a sum over `old` into one over `new`. */
export function replaceDelta(oldB: Uint8Array, oldOff: number, newB: Uint8Array, newOff: number, n: number): number {
  let d = 0;
  for (let i = 0; i < n; i += 2) {
    d += (~((oldB[oldOff + i] << 8) | oldB[oldOff + i + 1]) & 0xffff) + ((newB[newOff + i] << 8) | newB[newOff + i + 1]);
  }
  return d;
}

/** Applies a delta to a full checksum field at buf[off] (RFC 1624 eqn. 3). */
export function updateFull(buf: Uint8Array, off: number, delta: number): void {
  const hc = (buf[off] << 8) | buf[off + 1];
  const r = ~fold((~hc & 0xffff) + delta) & 0xffff;
  buf[off] = r >>> 8;
  buf[off + 1] = r & 0xff;
}

/** Applies a delta to a partial (uncomplemented pseudo-header sum) field at buf[off]. */
export function updatePartial(buf: Uint8Array, off: number, delta: number): void {
  const p = (buf[off] << 8) | buf[off + 1];
  const r = fold(p + delta);
  buf[off] = r >>> 8;
  buf[off + 1] = r & 0xff;
}

/** Pseudo-header sum (uncomplemented, unfolded) for TCP/UDP/ICMPv6 over IPv4 or IPv6. */
export function pseudoSum(buf: Uint8Array, srcOff: number, dstOff: number, addrLen: number, proto: number, l4len: number): number {
  let s = sumBytes(buf, srcOff, addrLen) + sumBytes(buf, dstOff, addrLen) + proto;
  s += (l4len >>> 16) + (l4len & 0xffff);
  return s;
}

export function read16(buf: Uint8Array, off: number): number {
  return (buf[off] << 8) | buf[off + 1];
}

export function write16(buf: Uint8Array, off: number, v: number): void {
  buf[off] = (v >>> 8) & 0xff;
  buf[off + 1] = v & 0xff;
}

export function read32(buf: Uint8Array, off: number): number {
  return ((buf[off] << 24) | (buf[off + 1] << 16) | (buf[off + 2] << 8) | buf[off + 3]) >>> 0;
}

export function write32(buf: Uint8Array, off: number, v: number): void {
  buf[off] = (v >>> 24) & 0xff;
  buf[off + 1] = (v >>> 16) & 0xff;
  buf[off + 2] = (v >>> 8) & 0xff;
  buf[off + 3] = v & 0xff;
}
