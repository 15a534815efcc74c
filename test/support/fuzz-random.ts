// Seeded randomness for fuzzers: each run prints its seed, and CANOPY_FUZZ_SEED=<seed> replays it, so
// a failure found on one run can be reproduced on the next instead of vanishing with Math.random.
import { randomInt } from 'node:crypto';

export interface FuzzRandom {
  readonly seed: number;
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  bytes(n: number): Buffer;
  pick<T>(xs: readonly T[]): T;
}

export function fuzzRandom(name: string): FuzzRandom {
  const fromEnv = process.env.CANOPY_FUZZ_SEED;
  const seed = fromEnv !== undefined && fromEnv !== '' ? Number(fromEnv) >>> 0 : randomInt(1, 2 ** 31);
  console.log(`fuzz seed for ${name}: ${seed} (replay with CANOPY_FUZZ_SEED=${seed})`);
  // mulberry32: small, fast and good enough to spread mutations; not for anything secret.
  let s = seed >>> 0;
  const next = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(next() * n);
  return {
    seed,
    next,
    int,
    bytes: (n) => {
      const b = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i++) b[i] = int(256);
      return b;
    },
    pick: (xs) => xs[int(xs.length)]!,
  };
}
