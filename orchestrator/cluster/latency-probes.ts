// RTTs from the cluster's workers to `latency` targets (SPEC §12): before placing an instance with a
// `latency` constraint naming a target address, the cluster asks every candidate worker without a
// fresh answer to probe the target (nodes/<id>/net/probe) and waits a short while for the answers
// (nodes/<id>/net/probe/result). Answers are cached for CACHE_MS, so a burst of placements with the
// same target probes once; a worker that did not answer in time is simply "not measured".
import { randomBytes } from 'node:crypto';
import { topics } from '../mqtt/topics.ts';
import { encode, type ProbeResult } from '../mqtt/messages.ts';

/** How long a measurement is trusted. Paths change slowly; a minute of staleness is what `closest` lives with too. */
export const CACHE_MS = 60_000;
/** How long a placement waits for probe answers (a worker pings 3 times 200 ms apart, 1 s timeout each). */
export const PROBE_WAIT_MS = 3000;
const MAX_TARGETS = 256;
/** How long an asked probe's answer is still taken (a worker's probe takes at most a few seconds). */
const ANSWER_MS = 30_000;

export interface Measurement {
  /** null: the target did not answer the worker. */
  rtt_ms: number | null;
  method: ProbeResult['method'];
  at: number;
  error?: string;
}

export class LatencyProbes {
  /** target → worker → last answer. */
  private readonly cache = new Map<string, Map<string, Measurement>>();
  /** Probes asked for, by id: an answer after the placement stopped waiting still fills the cache. */
  private readonly waiting = new Map<string, { worker: string; target: string; at: number; done: () => void }>();

  constructor(private readonly publish: (topic: string, payload: string) => void, private readonly now: () => number = Date.now) {}

  /** The fresh answer of `worker` for `target`, if any. */
  get(worker: string, target: string): Measurement | undefined {
    const m = this.cache.get(target)?.get(worker);
    return m && this.now() - m.at <= CACHE_MS ? m : undefined;
  }

  /** Asks each worker without a fresh answer to probe `target`, and resolves when all answered or after `waitMs`. */
  async ensure(workers: readonly string[], target: string, waitMs = PROBE_WAIT_MS): Promise<void> {
    const missing = workers.filter((w) => !this.get(w, target));
    if (missing.length === 0) return;
    const now = this.now();
    for (const [id, w] of this.waiting) if (now - w.at > ANSWER_MS) this.waiting.delete(id);
    const pending: Promise<void>[] = [];
    for (const w of missing) {
      const probeId = randomBytes(8).toString('hex');
      pending.push(new Promise<void>((resolve) => this.waiting.set(probeId, { worker: w, target, at: now, done: resolve })));
      this.publish(topics.probe(w), encode('probe', { probe_id: probeId, target }));
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(pending), new Promise<void>((r) => { timer = setTimeout(r, waitMs); })]);
    clearTimeout(timer);
  }

  /** A worker's answer (its own topic: the worker id comes from the topic, not the body). */
  onResult(worker: string, r: ProbeResult): void {
    const w = this.waiting.get(r.probe_id);
    // An answer nobody asked for (or from another worker) is dropped: it could poison the cache.
    if (!w || w.worker !== worker || w.target !== r.target) return;
    this.waiting.delete(r.probe_id);
    this.record(worker, r.target, { rtt_ms: r.rtt_ms, method: r.method, at: this.now(), ...(r.error ? { error: r.error } : {}) });
    w.done();
  }

  record(worker: string, target: string, m: Measurement): void {
    let byWorker = this.cache.get(target);
    if (!byWorker) {
      if (this.cache.size >= MAX_TARGETS) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(target, (byWorker = new Map()));
    }
    byWorker.set(worker, m);
  }

  forgetWorker(worker: string): void {
    for (const m of this.cache.values()) m.delete(worker);
  }

  /** Best fresh RTT per target over the workers, for the cluster's report to root. */
  best(): Record<string, number> {
    const out: Record<string, number> = {};
    const now = this.now();
    for (const [target, byWorker] of this.cache) {
      let best = Infinity;
      for (const m of byWorker.values()) if (m.rtt_ms !== null && now - m.at <= CACHE_MS) best = Math.min(best, m.rtt_ms);
      if (best < Infinity) out[target] = best;
    }
    return out;
  }
}
