// The newest part of a log within a byte budget, starting at a whole line: a cut in the middle of
// the first line reads like corrupt output.

/** The last `maxBytes` bytes of `log`, from the first line that starts inside them (all of them if none does). */
export function tailWholeLines(log: Buffer, maxBytes: number): string {
  if (log.length <= maxBytes) return log.toString('utf8');
  const start = log.length - Math.max(0, maxBytes);
  if (log[start - 1] === 0x0a) return log.subarray(start).toString('utf8');
  const nl = log.indexOf(0x0a, start);
  // One line longer than the budget: its newest part is all there is to show.
  if (nl < 0 || nl === log.length - 1) return log.subarray(start).toString('utf8');
  return log.subarray(nl + 1).toString('utf8');
}
