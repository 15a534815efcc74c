// Sliding-window replay protection (RFC 6479 style): accepts each counter at most once, and nothing
// older than the window. Counters are integers below 2^53 (a worker sending 10 M batches/s needs
// 28 years to run out).

const WORD_BITS = 32;

export class ReplayWindow {
  private readonly bits: Uint32Array;
  private readonly size: number;
  /** Highest counter accepted so far, -1 before the first. */
  private top = -1;

  /** `size` bits of history (a multiple of 32). */
  constructor(size = 2048) {
    if (size % WORD_BITS !== 0 || size <= 0) throw new Error(`replay window size must be a positive multiple of 32: ${size}`);
    this.size = size;
    this.bits = new Uint32Array(size / WORD_BITS + 1);
  }

  /** Would `c` be accepted? Does not record it (call before the tag check, commit after). */
  check(c: number): boolean {
    if (c > this.top) return true;
    if (this.top - c >= this.size) return false;
    const idx = Math.floor(c / WORD_BITS) % this.bits.length;
    return (this.bits[idx] & (1 << (c % WORD_BITS))) === 0;
  }

  /** Records `c` as seen; returns false if it was a replay or too old. */
  commit(c: number): boolean {
    if (!this.check(c)) return false;
    const words = this.bits.length;
    if (c > this.top) {
      const topWord = this.top < 0 ? -1 : Math.floor(this.top / WORD_BITS);
      const cWord = Math.floor(c / WORD_BITS);
      const diff = Math.min(cWord - topWord, words);
      for (let i = 1; i <= diff; i++) this.bits[(topWord + i + words) % words] = 0;
      this.top = c;
    }
    const idx = Math.floor(c / WORD_BITS) % words;
    this.bits[idx] |= 1 << (c % WORD_BITS);
    return true;
  }

  get highest(): number {
    return this.top;
  }
}
