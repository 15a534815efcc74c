// Addresses of JS-owned memory for syscalls that take pointers inside structs (msghdr, iovec).
//
// Two traps (notes/datapath.md): V8 keeps typed arrays of ≤ 64 bytes on the moving heap, so their
// address is not stable; and memory known to the kernel only by address must stay referenced from JS.
// Hence only buffers larger than 64 bytes are accepted, and callers keep them as fields.
import koffi from 'koffi';

const bases = new WeakMap<ArrayBufferLike, number>();

/** The address of u8[off]; u8's backing store must be larger than 64 bytes. */
export function addressOf(u8: Uint8Array, off = 0): number {
  let base = bases.get(u8.buffer);
  if (base === undefined) {
    if (u8.buffer.byteLength <= 64) throw new Error('addressOf: buffers of 64 bytes or less move with the GC');
    const whole = new Uint8Array(u8.buffer);
    base = Number(koffi.address(whole));
    bases.set(u8.buffer, base);
  }
  return base + u8.byteOffset + off;
}
