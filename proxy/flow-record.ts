// What the semantic table keeps in a flow entry's payload (FLOW_VALUE_WORDS Int32 words, see
// flow-table.ts). The first word is the kind; the meaning of the others depends on it, so each kind's
// fields are named here and read and written only through these offsets and helpers. Plain numeric
// constants: the hot path reads typed-array words, nothing is allocated.
//
// Translation (A on this worker dials service address S, the policy picks B):
//   Forward  keyed by A's packet A_ns→S           ⇒ which instance B, which source A, A's remapped port
//   Reverse  keyed as B's reply looks here          ⇒ which caller A, its original port, the address S
//   Return   on B's worker, keyed as B's reply      ⇒ the tunnel peer the request came from, which B

/** Word 0: the kind of entry (0 = a fresh slot). */
export const KIND = 0;
export const FORWARD = 1;
export const REVERSE = 2;
export const RETURN = 3;

// Forward: A dialled an address and the flow goes to instance B.
/** Slot and generation of the chosen instance B (ServiceTable.slots). */
export const FWD_INSTANCE_SLOT = 1;
export const FWD_INSTANCE_GEN = 2;
/** Slot and generation of the calling local instance A. */
export const FWD_SOURCE_SLOT = 3;
export const FWD_SOURCE_GEN = 4;
/** The source port A's packets leave with when the original was taken (0 = unchanged). */
export const FWD_MAPPED_SPORT = 5;

// Reverse: a reply of B to A, rewritten so A sees the address it dialled.
/** Slot and generation of the caller A (its namespace address is the reply's destination). */
export const REV_CALLER_SLOT = 1;
export const REV_CALLER_GEN = 2;
/** A's original source port when the flow was remapped (0 = not remapped). */
export const REV_CALLER_SPORT = 3;
/** First of the 1 (IPv4) or 4 (IPv6) words of the address A dialled: the reply's new source. */
export const REV_DIALLED = 4;

// Return: on B's worker, a request from a remote caller; B's replies go back to that peer.
/** Tunnel peer the request came from. */
export const RET_PEER = 1;
/** Slot and generation of the local instance B (its instance IP becomes the reply's source). */
export const RET_INSTANCE_SLOT = 2;
export const RET_INSTANCE_GEN = 3;

export function writeForward(v: Int32Array, o: number, instSlot: number, instGen: number, srcSlot: number, srcGen: number, mappedSport: number): void {
  v[o + KIND] = FORWARD;
  v[o + FWD_INSTANCE_SLOT] = instSlot;
  v[o + FWD_INSTANCE_GEN] = instGen;
  v[o + FWD_SOURCE_SLOT] = srcSlot;
  v[o + FWD_SOURCE_GEN] = srcGen;
  v[o + FWD_MAPPED_SPORT] = mappedSport;
}

/** `dialled` is the address A dialled, at b[off..] of family fam. */
export function writeReverse(v: Int32Array, o: number, callerSlot: number, callerGen: number, callerSport: number,
  b: Uint8Array, off: number, fam: 4 | 6): void {
  v[o + KIND] = REVERSE;
  v[o + REV_CALLER_SLOT] = callerSlot;
  v[o + REV_CALLER_GEN] = callerGen;
  v[o + REV_CALLER_SPORT] = callerSport;
  const n = fam === 4 ? 1 : 4;
  for (let i = 0; i < n; i++) v[o + REV_DIALLED + i] = wordAt(b, off + 4 * i);
}

export function writeReturn(v: Int32Array, o: number, peer: number, instSlot: number, instGen: number): void {
  v[o + KIND] = RETURN;
  v[o + RET_PEER] = peer;
  v[o + RET_INSTANCE_SLOT] = instSlot;
  v[o + RET_INSTANCE_GEN] = instGen;
}

/** Copies the dialled address of the reverse entry at o into dst[0..]. */
export function readDialled(v: Int32Array, o: number, fam: 4 | 6, dst: Uint8Array): void {
  const n = fam === 4 ? 1 : 4;
  for (let i = 0; i < n; i++) {
    const w = v[o + REV_DIALLED + i]!;
    dst[4 * i] = w >>> 24; dst[4 * i + 1] = (w >>> 16) & 0xff; dst[4 * i + 2] = (w >>> 8) & 0xff; dst[4 * i + 3] = w & 0xff;
  }
}

/** Whether the reverse entry at o records b[off..] as the dialled address. */
export function dialledIs(v: Int32Array, o: number, b: Uint8Array, off: number, fam: 4 | 6): boolean {
  const n = fam === 4 ? 1 : 4;
  for (let i = 0; i < n; i++) if (v[o + REV_DIALLED + i] !== wordAt(b, off + 4 * i)) return false;
  return true;
}

/** The 32-bit word at b[p], as the Int32Array payload of a flow holds it. */
function wordAt(b: Uint8Array, p: number): number {
  return (b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!;
}
