// Login throttling (SPEC §10): failed logins are counted per (user, address), per address and per
// user over a sliding window. Past a few failures the answers slow down; past a limit for a pair or an
// address they are refused with 429 (the password is not even checked) until old failures age out.
// A user's own count only ever slows answers down, never refuses: an attacker elsewhere cannot lock
// the real user out, who logs in from another address with the right password (a little slower).

export interface ThrottleLimits {
  /** Failures are forgotten after this long. */
  windowMs: number;
  /** Failures (pair or address) before answers are slowed. */
  slowAfter: number;
  /** Failures of one user from one address before 429. */
  pairLimit: number;
  /** Failures from one address (any users) before 429. */
  addressLimit: number;
  /** Longest added delay. */
  maxDelayMs: number;
}

export const DEFAULT_LIMITS: ThrottleLimits = { windowMs: 5 * 60_000, slowAfter: 3, pairLimit: 10, addressLimit: 30, maxDelayMs: 1000 };

/** What to do with one attempt before the password is checked. */
export type Verdict = { refuse: true; retryAfterS: number } | { refuse: false; delayMs: number };

/** Most keys kept at once: an address sweep cannot grow root's memory without bound. */
const MAX_KEYS = 100_000;

export class LoginThrottle {
  private readonly failures = new Map<string, number[]>();

  constructor(private readonly limits: ThrottleLimits = DEFAULT_LIMITS, private readonly now: () => number = Date.now) {}

  private recent(key: string): number[] {
    const list = this.failures.get(key);
    if (!list) return [];
    const since = this.now() - this.limits.windowMs;
    while (list.length > 0 && list[0]! <= since) list.shift();
    if (list.length === 0) this.failures.delete(key);
    return list;
  }

  private keys(username: string, address: string): { pair: string; addr: string; user: string } {
    const u = username.toLowerCase();
    return { pair: `p\u0000${u}\u0000${address}`, addr: `a\u0000${address}`, user: `u\u0000${u}` };
  }

  check(username: string, address: string): Verdict {
    const k = this.keys(username, address);
    const pair = this.recent(k.pair);
    const addr = this.recent(k.addr);
    const over = [[pair, this.limits.pairLimit], [addr, this.limits.addressLimit]] as const;
    for (const [list, limit] of over) {
      if (list.length >= limit) {
        // Free again when enough of the oldest failures have aged out to go below the limit.
        const freeAt = list[list.length - limit]! + this.limits.windowMs;
        return { refuse: true, retryAfterS: Math.max(1, Math.ceil((freeAt - this.now()) / 1000)) };
      }
    }
    const worst = Math.max(pair.length, addr.length, Math.floor(this.recent(k.user).length / 2));
    const excess = worst - this.limits.slowAfter;
    return { refuse: false, delayMs: excess < 0 ? 0 : Math.min(this.limits.maxDelayMs, 100 * 2 ** excess) };
  }

  failed(username: string, address: string): void {
    if (this.failures.size >= MAX_KEYS) this.failures.clear();
    const t = this.now();
    for (const key of Object.values(this.keys(username, address))) {
      const list = this.recent(key);
      list.push(t);
      // Only the newest matter for any limit.
      if (list.length > 200) list.shift();
      this.failures.set(key, list);
    }
  }

  /** The right password: this pair starts over (the address and user counts stay). */
  succeeded(username: string, address: string): void {
    this.failures.delete(this.keys(username, address).pair);
  }
}
