// Copies of a few bytes (addresses, headers, small packets) on the per-packet path. `dst.set(src.subarray(…))`
// makes a view object per call, the datapath's only garbage per packet (docs/decisions.md, "No view
// per packet"); a plain loop makes none and is as fast at these sizes.

/** dst[dOff..dOff+n) = src[sOff..sOff+n). For n up to a few hundred bytes; larger copies use set(). */
export function copyBytes(dst: Uint8Array, dOff: number, src: Uint8Array, sOff: number, n: number): void {
  for (let i = 0; i < n; i++) dst[dOff + i] = src[sOff + i];
}
