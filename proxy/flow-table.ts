// The 5-tuple flow table on the packet path: open addressing with linear probing over typed arrays, so
// a lookup allocates nothing and an IPv6 tuple costs the same kind of work as an IPv4 one. Idle expiry
// reads a coarse clock (whole seconds, advanced by the owner) instead of a timer per flow: an entry
// idle longer than idleSeconds is a miss, and sweep() reclaims such entries in bulk.

const KEY_WORDS = 10; // family|proto, sport|dport, src[4], dst[4]
/** Int32 payload words per flow; their meaning belongs to the caller. */
export const FLOW_VALUE_WORDS = 8;

const EMPTY = 0, LIVE = 1, DEAD = 2;

export interface FlowTableOptions {
  /** Initial slots (rounded up to a power of two). */
  initialCapacity?: number;
  /** Most live flows; beyond it new flows are refused (counted) until old ones expire. */
  maxFlows?: number;
  idleSeconds?: number;
}

function word(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

export class FlowTable {
  // Sized by allocate(), from the constructor and on every rehash.
  private cap = 0;
  private mask = 0;
  private keys = new Uint32Array(0);
  private state = new Uint8Array(0);
  private seen = new Uint32Array(0);
  /** Payload: FLOW_VALUE_WORDS per slot, at slot * FLOW_VALUE_WORDS. Valid until the next insert. */
  values: Int32Array = new Int32Array(0);
  private live = 0;
  private dead = 0;
  private readonly maxFlows: number;
  readonly idleSeconds: number;
  /** The coarse clock, in seconds. The owner advances it (e.g. once a second). */
  now = 0;
  /** Inserts refused because the table was full of live flows. */
  refused = 0;
  // The key being looked up, staged here so that probing compares numbers, not buffers.
  private readonly k = new Uint32Array(KEY_WORDS);

  constructor(opts: FlowTableOptions = {}) {
    let cap = 1024;
    while (cap < (opts.initialCapacity ?? 4096)) cap <<= 1;
    this.maxFlows = opts.maxFlows ?? 1 << 20;
    this.idleSeconds = opts.idleSeconds ?? 60;
    this.allocate(cap);
  }

  /** Fresh, empty slot arrays for `cap` slots (a power of two). */
  private allocate(cap: number): void {
    this.cap = cap;
    this.mask = cap - 1;
    this.keys = new Uint32Array(cap * KEY_WORDS);
    this.state = new Uint8Array(cap);
    this.seen = new Uint32Array(cap);
    this.values = new Int32Array(cap * FLOW_VALUE_WORDS);
    this.live = 0;
    this.dead = 0;
  }

  get size(): number { return this.live; }
  get capacity(): number { return this.cap; }

  private stage(family: 4 | 6, proto: number, sb: Uint8Array, so: number, db: Uint8Array, dO: number,
    sport: number, dport: number): number {
    const k = this.k;
    k[0] = (family << 8) | proto;
    k[1] = ((sport << 16) | dport) >>> 0;
    if (family === 4) {
      k[2] = word(sb, so); k[3] = 0; k[4] = 0; k[5] = 0;
      k[6] = word(db, dO); k[7] = 0; k[8] = 0; k[9] = 0;
    } else {
      k[2] = word(sb, so); k[3] = word(sb, so + 4); k[4] = word(sb, so + 8); k[5] = word(sb, so + 12);
      k[6] = word(db, dO); k[7] = word(db, dO + 4); k[8] = word(db, dO + 8); k[9] = word(db, dO + 12);
    }
    return this.hashStaged();
  }

  /** The hash of the staged key. */
  private hashStaged(): number {
    const k = this.k;
    let h = 0x9e3779b9;
    for (let i = 0; i < KEY_WORDS; i++) {
      h = Math.imul(h ^ k[i]!, 0x85ebca6b);
      h ^= h >>> 13;
    }
    return h >>> 0;
  }

  private matches(slot: number): boolean {
    const base = slot * KEY_WORDS, keys = this.keys, k = this.k;
    for (let i = 0; i < KEY_WORDS; i++) if (keys[base + i] !== k[i]) return false;
    return true;
  }

  private expired(slot: number): boolean {
    return this.now - this.seen[slot]! > this.idleSeconds;
  }

  /** The live slot of this tuple (and marks it used), or -1. */
  find(family: 4 | 6, proto: number, sb: Uint8Array, so: number, db: Uint8Array, dO: number,
    sport: number, dport: number): number {
    let i = this.stage(family, proto, sb, so, db, dO, sport, dport) & this.mask;
    for (let n = 0; n < this.cap; n++, i = (i + 1) & this.mask) {
      const st = this.state[i];
      if (st === EMPTY) return -1;
      if (st === LIVE && this.matches(i)) {
        if (this.expired(i)) { this.kill(i); return -1; }
        this.seen[i] = this.now;
        return i;
      }
    }
    return -1;
  }

  /** The slot for this tuple, existing or new (payload zeroed when new), or -1 when full. */
  insert(family: 4 | 6, proto: number, sb: Uint8Array, so: number, db: Uint8Array, dO: number,
    sport: number, dport: number): number {
    if (this.live + this.dead + 1 > this.cap * 0.6) this.makeRoom();
    const h = this.stage(family, proto, sb, so, db, dO, sport, dport);
    let i = h & this.mask, free = -1;
    for (let n = 0; n < this.cap; n++, i = (i + 1) & this.mask) {
      const st = this.state[i];
      if (st === EMPTY) { if (free < 0) free = i; break; }
      if (st === DEAD) { if (free < 0) free = i; continue; }
      if (this.matches(i)) { this.seen[i] = this.now; return i; }
    }
    if (free < 0 || this.live >= this.maxFlows) { this.refused++; return -1; }
    if (this.state[free] === DEAD) this.dead--;
    this.state[free] = LIVE;
    this.live++;
    this.keys.set(this.k, free * KEY_WORDS);
    this.seen[free] = this.now;
    this.values.fill(0, free * FLOW_VALUE_WORDS, free * FLOW_VALUE_WORDS + FLOW_VALUE_WORDS);
    return free;
  }

  remove(slot: number): void {
    if (this.state[slot] === LIVE) this.kill(slot);
  }

  private kill(slot: number): void {
    this.state[slot] = DEAD;
    this.live--;
    this.dead++;
  }

  /** Reclaims expired flows; returns how many. Call now and then (e.g. every few seconds). */
  sweep(): number {
    let n = 0;
    for (let i = 0; i < this.cap; i++) {
      if (this.state[i] === LIVE && this.expired(i)) { this.kill(i); n++; }
    }
    if (this.dead > this.cap / 4) this.rehash(this.cap);
    return n;
  }

  private makeRoom(): void {
    this.sweep();
    if (this.live + this.dead + 1 <= this.cap * 0.6) return;
    if (this.live + 1 > this.cap * 0.3 && this.cap < this.maxFlows * 2) this.rehash(this.cap * 2);
    else if (this.dead > 0) this.rehash(this.cap);
  }

  private rehash(cap: number): void {
    const { keys, state, seen, values } = this;
    const old = this.cap;
    this.allocate(cap);
    for (let s = 0; s < old; s++) {
      if (state[s] !== LIVE) continue;
      this.k.set(keys.subarray(s * KEY_WORDS, s * KEY_WORDS + KEY_WORDS));
      let i = this.hashStaged() & this.mask;
      while (this.state[i] !== EMPTY) i = (i + 1) & this.mask;
      this.state[i] = LIVE;
      this.keys.set(this.k, i * KEY_WORDS);
      this.seen[i] = seen[s]!;
      this.values.set(values.subarray(s * FLOW_VALUE_WORDS, s * FLOW_VALUE_WORDS + FLOW_VALUE_WORDS), i * FLOW_VALUE_WORDS);
      this.live++;
    }
  }
}
