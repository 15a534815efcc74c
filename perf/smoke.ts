// Smoke mode: CANOPY_BENCH_SMOKE=1 makes every benchmark run its whole setup, one tiny measurement and
// its teardown, so that test/integration/bench-smoke.test.ts can show each one still runs end to end
// (a benchmark nobody runs rots silently). Figures from a smoke run mean nothing. Without the variable
// every benchmark keeps its real defaults; arguments given on the command line win in both modes.
export const SMOKE = process.env.CANOPY_BENCH_SMOKE === '1';

/** `full` normally, `tiny` in smoke mode. */
export function orSmoke<T>(full: T, tiny: T): T {
  return SMOKE ? tiny : full;
}
