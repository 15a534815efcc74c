// Token bucket for the relay's rate limit, in virtual time: instead of holding frames until tokens
// exist, it tells each frame when it may leave (tokens may go negative = frames already promised
// bandwidth). A frame that would wait longer than maxBacklogMs is dropped, like tbf's latency bound.

export class TokenBucket {
  private tokens: number;
  private last = -Infinity;
  private readonly bytesPerMs: number;

  /**
   * @param rateMbit    sustained rate, Mbit/s
   * @param burstBytes  bucket depth (bytes that may pass back to back at line speed)
   * @param maxBacklogMs longest a frame may wait for tokens before it is dropped instead
   */
  constructor(rateMbit: number, readonly burstBytes: number, readonly maxBacklogMs: number) {
    if (!(rateMbit > 0)) throw new Error(`rate must be > 0 Mbit/s, got ${rateMbit}`);
    this.bytesPerMs = (rateMbit * 1e6) / 8 / 1000;
    this.tokens = burstBytes;
  }

  /** Departure time (≥ now) for a frame of `bytes` arriving at `now` (ms), or -1 to drop it. */
  schedule(now: number, bytes: number): number {
    if (now > this.last) {
      this.tokens = Math.min(this.burstBytes, this.tokens + (now - this.last) * this.bytesPerMs);
      this.last = now;
    }
    const after = this.tokens - bytes;
    if (after >= 0) {
      this.tokens = after;
      return now;
    }
    const wait = -after / this.bytesPerMs;
    if (wait > this.maxBacklogMs) return -1;
    this.tokens = after;
    return now + wait;
  }
}

/** Defaults used by the relay: a burst of 10 ms at the rate (at least two full frames), 100 ms backlog. */
export function defaultBucket(rateMbit: number, mtu: number): TokenBucket {
  const burst = Math.max(2 * (mtu + 14), Math.round((rateMbit * 1e6) / 8 / 100));
  return new TokenBucket(rateMbit, burst, 100);
}
