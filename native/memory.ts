// Addresses of JS-owned memory for syscalls that take pointers inside structs (msghdr, iovec).
//
// Two traps (notes/datapath.md): V8 keeps typed arrays of ≤ 64 bytes on the moving heap, so their
// address is not stable; and memory known to the kernel only by address must stay referenced from JS.
// Hence only buffers larger than 64 bytes are accepted, and callers keep them as fields.
//
// The packet path asks for the same few arrays' addresses several times per packet. Reading
// `.buffer` is a C++ builtin in V8 (~0.1 µs; it showed as 3 % of the sending datapath's time in a CPU
// profile), so addresses are remembered per view object, looked up by identity.
import koffi from 'koffi';

const bases = new WeakMap<ArrayBufferLike, number>();
/** The address of view[0], per view object. */
const views = new WeakMap<Uint8Array, number>();

function viewAddress(u8: Uint8Array): number {
  const ab = u8.buffer;
  let base = bases.get(ab);
  if (base === undefined) {
    if (ab.byteLength <= 64) throw new Error('addressOf: buffers of 64 bytes or less move with the GC');
    base = Number(koffi.address(new Uint8Array(ab)));
    bases.set(ab, base);
  }
  const a = base + u8.byteOffset;
  views.set(u8, a);
  return a;
}

/** The address of u8[off]; u8's backing store must be larger than 64 bytes. */
export function addressOf(u8: Uint8Array, off = 0): number {
  const a = views.get(u8);
  return (a === undefined ? viewAddress(u8) : a) + off;
}

/** True when u8's memory does not move (its backing store is larger than 64 bytes): raw calls may use it. */
export function isPinned(u8: Uint8Array): boolean {
  return views.has(u8) || u8.buffer.byteLength > 64;
}
