// One direction of an impairment relay (host → switch or switch → host): decides each frame's fate
// (forward now, forward at time t, drop) from the link's impairment and the matching pair rule, and
// releases queued frames in departure order from a single timer.
import { TokenBucket, defaultBucket } from './bucket.ts';
import { addrEquals, addrLen, addrOffset, parseAddr } from './frame.ts';
import { TimedQueue } from './queue.ts';
import type { Impairment } from './rules.ts';
import { type DirectionStats, emptyDirection } from './stats.ts';

/** Time and timers, injected so that unit tests can drive a direction with a fake clock. */
export interface Clock {
  /** Milliseconds, monotonic, fractional. */
  now(): number;
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
}

/** One impairment, ready to apply. Loss as a probability, its own token bucket. */
export class Stage {
  readonly delayMs: number;
  readonly jitterMs: number;
  readonly loss: number;
  readonly bucket: TokenBucket | null;

  constructor(i: Impairment, mtu: number) {
    this.delayMs = i.delayMs ?? 0;
    this.jitterMs = i.jitterMs ?? 0;
    this.loss = (i.lossPct ?? 0) / 100;
    this.bucket = i.rateMbit ? defaultBucket(i.rateMbit, mtu) : null;
  }
}

export interface PairStage {
  addrs: Uint8Array[];
  stage: Stage;
}

export interface DirectionOptions {
  /** Applies to every frame in this direction. */
  link: Stage | null;
  /** Apply to frames whose `side` address is one of `addrs`; the first match wins. */
  pairs: PairStage[];
  /** Which address pair rules look at: 'dst' for frames leaving the host, 'src' for frames entering it. */
  side: 'src' | 'dst';
  /** Writes a frame out; false when the device refused it. */
  write: (frame: Uint8Array, len: number) => boolean;
  clock: Clock;
  random?: () => number;
  /** Most frames that may wait in the delay queue (netem's default limit is 1000). */
  limit?: number;
  /** Frames due within this many ms of now leave in the same timer run (default 0.5). */
  slackMs?: number;
  /** Arm the timer this many ms before the head is due, to offset timers that fire late (default 0). */
  leadMs?: number;
}

const DROP = -1;

export class Direction {
  readonly stats: DirectionStats = emptyDirection();
  private readonly queue = new TimedQueue<Uint8Array>();
  private timer: unknown = null;
  private timerAt = Infinity;
  private readonly random: () => number;
  private readonly limit: number;
  private readonly slack: number;
  private readonly lead: number;

  constructor(private readonly o: DirectionOptions) {
    this.random = o.random ?? Math.random;
    this.limit = o.limit ?? 1000;
    this.slack = o.slackMs ?? 0.5;
    this.lead = o.leadMs ?? 0;
  }

  /** Takes one frame (borrowed: copied if it has to wait). */
  onFrame(frame: Uint8Array, len: number): void {
    const now = this.o.clock.now();
    let at = now;
    if (this.o.link) at = this.apply(this.o.link, at, len);
    if (at !== DROP && this.o.pairs.length > 0) {
      const pair = this.matchPair(frame, len);
      if (pair) at = this.apply(pair, at, len);
    }
    if (at === DROP) return;
    if (at <= now && this.queue.size === 0) {
      this.send(frame, len);
      return;
    }
    if (this.queue.size >= this.limit) {
      this.stats.droppedQueue++;
      return;
    }
    this.queue.push(at, frame.slice(0, len));
    this.stats.queued = this.queue.size;
    this.arm();
  }

  /** Sends every frame that is due; re-arms the timer for the next. */
  flush(): void {
    this.timer = null;
    this.timerAt = Infinity;
    const limit = this.o.clock.now() + this.slack;
    while (this.queue.peekTime() <= limit) {
      const f = this.queue.pop();
      this.send(f, f.length);
    }
    this.stats.queued = this.queue.size;
    this.arm();
  }

  /** Stops the timer; queued frames are discarded. */
  close(): void {
    if (this.timer !== null) this.o.clock.clearTimer(this.timer);
    this.timer = null;
    while (this.queue.size > 0) this.queue.pop();
    this.stats.queued = 0;
  }

  private arm(): void {
    const head = this.queue.peekTime();
    if (head === Infinity || head >= this.timerAt) return;
    if (this.timer !== null) this.o.clock.clearTimer(this.timer);
    this.timerAt = head;
    const now = this.o.clock.now();
    // The lead applies once: a timer that already fired early waits the exact rest.
    let ms = head - now - this.lead;
    if (ms <= 0) ms = Math.max(0, head - now);
    this.timer = this.o.clock.setTimer(() => this.flush(), ms);
  }

  private send(frame: Uint8Array, len: number): void {
    if (this.o.write(frame, len)) {
      this.stats.forwarded++;
      this.stats.bytes += len;
    } else {
      this.stats.droppedQueue++;
    }
  }

  private apply(s: Stage, at: number, len: number): number {
    if (s.loss > 0 && this.random() < s.loss) {
      this.stats.droppedLoss++;
      return DROP;
    }
    if (s.bucket) {
      const t = s.bucket.schedule(at, len);
      if (t < 0) {
        this.stats.droppedRate++;
        return DROP;
      }
      at = t;
    }
    let d = s.delayMs;
    if (s.jitterMs > 0) d += (this.random() * 2 - 1) * s.jitterMs;
    return at + Math.max(0, d);
  }

  private matchPair(frame: Uint8Array, len: number): Stage | null {
    const off = addrOffset(frame, len, this.o.side);
    if (off < 0) return null;
    const n = addrLen(frame);
    for (const p of this.o.pairs) {
      for (const a of p.addrs) if (a.length === n && addrEquals(frame, off, a)) return p.stage;
    }
    return null;
  }
}

/** Builds the pair stages of a relay config; every address is parsed once here, not per frame. */
export function pairStages(pairs: readonly { addrs: string[]; impairment: Impairment }[], mtu: number): PairStage[] {
  return pairs.map((p) => ({ addrs: p.addrs.map(parseAddr), stage: new Stage(p.impairment, mtu) }));
}
