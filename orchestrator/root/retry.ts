// When root retries instances it could not place (NO_CLUSTER_FOUND, NO_WORKER_CAPACITY,
// NO_QUALIFIED_WORKER). Root cannot see a worker free up, only signs that room may have appeared:
// a cluster reports more room, an instance leaves a cluster, a cluster becomes active. Each sign is
// a trigger; triggers within `coalesceMs` share one pass over every unplaced instance. A run that was
// already deciding when a trigger came may have ranked the clusters before the room appeared, so it
// gets one more pass when it ends unplaced. And since a trigger can be missed (a report lost, a
// cluster that frees room without reporting it as growth), each unplaced instance is also retried
// on its own backoff (10 s, doubling to 5 min).
//
// This module only decides *when*; `attempt` (the instance manager) runs the scheduling and refuses
// a second run for an instance that has one in flight.

export interface RetryClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: RetryClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** What made a pass run: the metric label and the cause an instance placed by it names. */
export type TriggerKind = 'cluster_active' | 'cluster_room' | 'instance_left' | 'again' | 'backoff';

export interface RetryOptions {
  /** Keys of the instances that are unplaced now (read from the store, hence possibly later). */
  unplaced: () => Iterable<string> | Promise<Iterable<string>>;
  /** Starts a scheduling run for `key`; false if one is already in flight. */
  attempt: (key: string, cause: string) => boolean;
  clock?: RetryClock;
  coalesceMs?: number;
  baseMs?: number;
  maxMs?: number;
  onPass?: (kind: TriggerKind, started: number) => void;
  /** Every change of an instance's retry state (undefined: forgotten), so it can survive a restart. */
  save?: (key: string, state: RetryState | undefined) => void;
}

export interface RetryInfo {
  /** Scheduling runs of this instance since it was first left unplaced. */
  retries: number;
  last_retry: number | null;
  /** When the backoff retries it next, unless a trigger comes first. */
  next_retry: number;
}

export type RunOutcome = 'placed' | 'unplaced' | 'gone';

export interface RetryState {
  retries: number;
  last: number | null;
  /** Runs that ended unplaced: the backoff's exponent. */
  failures: number;
  next: number;
}
type Entry = RetryState;

export const RETRY_COALESCE_MS = 50;
export const RETRY_BASE_MS = 10_000;
export const RETRY_MAX_MS = 300_000;

export class RetryScheduler {
  private readonly entries = new Map<string, Entry>();
  private readonly clock: RetryClock;
  private readonly coalesceMs: number;
  private readonly baseMs: number;
  private readonly maxMs: number;
  /** Bumped by every trigger: a run that started under an older one may have missed new room. */
  private generation = 0;
  private lastCause = '';
  private pending: { kind: TriggerKind; cause: string } | null = null;
  private passTimer: unknown = null;
  private backoffTimer: unknown = null;
  private backoffAt = Infinity;
  private closed = false;

  constructor(private readonly o: RetryOptions) {
    this.clock = o.clock ?? systemClock;
    this.coalesceMs = o.coalesceMs ?? RETRY_COALESCE_MS;
    this.baseMs = o.baseMs ?? RETRY_BASE_MS;
    this.maxMs = o.maxMs ?? RETRY_MAX_MS;
  }

  close(): void {
    this.closed = true;
    if (this.passTimer !== null) this.clock.clearTimeout(this.passTimer);
    if (this.backoffTimer !== null) this.clock.clearTimeout(this.backoffTimer);
    this.passTimer = this.backoffTimer = null;
  }

  /** Room may have appeared: retry every unplaced instance soon (one pass for a burst of triggers). */
  trigger(kind: TriggerKind, cause: string): void {
    if (this.closed) return;
    this.generation++;
    this.lastCause = cause;
    this.schedulePass(kind, cause);
  }

  private schedulePass(kind: TriggerKind, cause: string): void {
    // The pass names the latest trigger: the one most likely to have made the room.
    if (kind !== 'again' || this.pending === null) this.pending = { kind, cause };
    if (this.passTimer !== null) return;
    this.passTimer = this.clock.setTimeout(() => {
      this.passTimer = null;
      const p = this.pending ?? { kind, cause };
      this.pending = null;
      this.pass(p.kind, p.cause, false);
    }, this.coalesceMs);
  }

  private pass(kind: TriggerKind, cause: string, dueOnly: boolean): void {
    if (this.closed) return;
    const keys = this.o.unplaced();
    if (!(keys instanceof Promise)) {
      this.passOver(keys, kind, cause, dueOnly);
      return;
    }
    keys.then((k) => this.passOver(k, kind, cause, dueOnly), () => {
      // The store is away: try again after the base backoff.
      if (!this.closed) this.armAt(this.clock.now() + this.baseMs);
    });
  }

  private passOver(keys: Iterable<string>, kind: TriggerKind, cause: string, dueOnly: boolean): void {
    if (this.closed) return;
    const now = this.clock.now();
    const seen = new Set<string>();
    let started = 0;
    for (const key of keys) {
      seen.add(key);
      const e = this.entries.get(key);
      if (dueOnly && e && e.next > now) continue;
      if (!e) this.entries.set(key, { retries: 0, last: null, failures: 0, next: now + this.baseMs });
      if (this.o.attempt(key, cause)) started++;
    }
    // Instances placed or removed without a run of ours ending (a cluster's report did it).
    for (const key of this.entries.keys()) if (!seen.has(key)) this.forget(key);
    this.o.onPass?.(kind, started);
    if (dueOnly) this.rearm();
  }

  /** A scheduling run of `key` starts; pass the result to `finished`. */
  begin(key: string): number {
    const e = this.entries.get(key);
    if (e) {
      e.retries++;
      e.last = this.clock.now();
      this.o.save?.(key, e);
    }
    return this.generation;
  }

  /** Whether the run that `begin` just counted is a retry (the instance had been left unplaced). */
  isRetry(key: string): boolean {
    return (this.entries.get(key)?.retries ?? 0) > 0;
  }

  finished(key: string, token: number, outcome: RunOutcome): void {
    if (outcome !== 'unplaced') {
      this.forget(key);
      return;
    }
    const now = this.clock.now();
    const e = this.entries.get(key) ?? { retries: 0, last: null, failures: 0, next: 0 };
    e.failures++;
    e.next = now + Math.min(this.maxMs, this.baseMs * 2 ** Math.min(30, e.failures - 1));
    this.entries.set(key, e);
    this.o.save?.(key, e);
    if (!this.closed && token !== this.generation) this.schedulePass('again', this.lastCause);
    this.armAt(e.next);
  }

  /**
   * An instance found unplaced outside a run of ours: at root's start (with the state it saved, due
   * at once if its time passed while root was down), or reported so by its cluster.
   */
  adopt(key: string, saved?: RetryState): void {
    if (this.entries.has(key)) return;
    const e = saved ? { ...saved } : { retries: 0, last: null, failures: 0, next: this.clock.now() + this.baseMs };
    this.entries.set(key, e);
    if (!saved) this.o.save?.(key, e);
    this.armAt(e.next);
  }

  forget(key: string): void {
    if (this.entries.delete(key)) this.o.save?.(key, undefined);
  }

  info(key: string): RetryInfo | undefined {
    const e = this.entries.get(key);
    return e && { retries: e.retries, last_retry: e.last, next_retry: e.next };
  }

  private armAt(at: number): void {
    if (this.closed || at >= this.backoffAt) return;
    if (this.backoffTimer !== null) this.clock.clearTimeout(this.backoffTimer);
    this.backoffAt = at;
    this.backoffTimer = this.clock.setTimeout(() => {
      this.backoffTimer = null;
      this.backoffAt = Infinity;
      this.pass('backoff', 'retried after its backoff', true);
    }, Math.max(0, at - this.clock.now()));
  }

  /** After a backoff pass: the next due entry. Entries due now have a run in flight that re-arms. */
  private rearm(): void {
    const now = this.clock.now();
    let at = Infinity;
    for (const e of this.entries.values()) if (e.next > now && e.next < at) at = e.next;
    if (at !== Infinity) this.armAt(at);
  }
}
