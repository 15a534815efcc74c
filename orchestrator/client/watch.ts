// Following instances through their states until each is RUNNING (or COMPLETED, for one-shots), one
// fails, or time runs out. Every transition is reported once, with its reason, in order.
//
// FAILED is final for a one-shot instance. Any other instance is restarted by its worker with backoff
// (1 s, 2 s, …), so one FAILED may be followed by RUNNING: the watch then goes on. It gives up on the
// instance at its `maxFailures`-th FAILED (a crash loop), with that failure's reason.
//
// NO_CLUSTER_FOUND / NO_WORKER_CAPACITY / NO_QUALIFIED_WORKER are not final either: root retries the
// instance when room may have appeared (and on a backoff). With `unplaced: 'wait'` the watch goes on
// and reports the reason through `onUnplaced` (again whenever it changes: a retry that fails the
// same way updates only the reason, not the history); with `'fail'` it gives up at once. Either way
// it gives up at once when root says no cluster could ever run the instance (`placeable: false`).
//
// Each poll's new transitions, of all instances, are reported sorted by time: a timeline, not one
// block per instance.
//
// Progress within a state (an image pull: "pulling … 3.1 of 9.8 MB") changes an instance's reason
// without a history entry; each new one is reported through `onProgress`, after the transitions.
import type { InstanceEvent, RootClient } from './root-client.ts';

export interface WatchTarget {
  serviceId: string;
  /** Printed name, e.g. the service's full name. */
  label: string;
  instance: number;
}

export interface Transition extends InstanceEvent {
  target: WatchTarget;
}

export interface Unplaced {
  target: WatchTarget;
  state: string;
  reason: string;
  /** The first report of this instance being unplaced (later ones are reason changes). */
  first: boolean;
  /** When root retries it at the latest (ISO), if root says. */
  nextRetry: string | null;
}

/** An instance's reason changed within its state (progress of a long step, e.g. an image pull). */
export interface Progress {
  target: WatchTarget;
  state: string;
  reason: string;
  /** When root last updated the instance (ISO). */
  ts: string;
}

export type WatchOutcome =
  | { ok: true }
  | { ok: false; target: WatchTarget; state: string; reason: string };

const GOOD = new Set(['RUNNING', 'COMPLETED']);
/** The states of an instance root could not place (yet): it retries them. */
export const UNPLACED: ReadonlySet<string> = new Set(['NO_CLUSTER_FOUND', 'NO_WORKER_CAPACITY', 'NO_QUALIFIED_WORKER']);
/** FAILED transitions after which a restarted (not one-shot) instance counts as failing for good. */
export const DEFAULT_MAX_FAILURES = 3;

/**
 * One timeline of several instances' transitions: merged by time (ISO timestamps compare as strings),
 * each instance's own in the order of its history. Root and cluster stamp different steps with their
 * own clocks, so one instance's history is causal but not always monotonic: it is never reordered.
 */
export function byTime(ts: readonly Transition[]): Transition[] {
  const queues = new Map<string, Transition[]>();
  for (const t of ts) {
    const key = `${t.target.serviceId}#${t.target.instance}`;
    const q = queues.get(key);
    if (q) q.push(t);
    else queues.set(key, [t]);
  }
  const out: Transition[] = [];
  for (;;) {
    let next: Transition[] | undefined;
    for (const q of queues.values()) if (q.length && (!next || q[0]!.ts < next[0]!.ts)) next = q;
    if (!next) return out;
    out.push(next.shift()!);
  }
}

export async function watchInstances(
  c: RootClient,
  targets: WatchTarget[],
  o: {
    timeoutMs: number;
    intervalMs?: number;
    maxFailures?: number;
    /** What an unplaced instance does to the watch (default 'fail'). */
    unplaced?: 'wait' | 'fail';
    onTransition: (t: Transition) => void;
    /** With unplaced 'wait': an instance is unplaced, or still is with another reason. */
    onUnplaced?: (u: Unplaced) => void;
    /** A placed instance's reason changed without a transition (pull progress). */
    onProgress?: (p: Progress) => void;
    onTick?: () => void;
  },
): Promise<WatchOutcome> {
  const seen = new Map<WatchTarget, number>();
  const told = new Map<WatchTarget, string>();
  const done = new Set<WatchTarget>();
  const until = Date.now() + o.timeoutMs;
  let batch: Transition[] = [];
  let notes: Unplaced[] = [];
  let steps: Progress[] = [];
  const progressTold = new Map<WatchTarget, string>();
  // Transitions first, so an "unplaced" note or a progress step follows the transition that made it so.
  const flush = (): void => {
    for (const t of byTime(batch)) o.onTransition(t);
    for (const u of notes) o.onUnplaced?.(u);
    for (const p of steps) o.onProgress?.(p);
    batch = [];
    notes = [];
    steps = [];
  };
  for (;;) {
    const out = await pass();
    flush();
    if (out) return out;
    if (done.size === targets.length) return { ok: true };
    if (Date.now() > until) {
      const t = targets.find((x) => !done.has(x))!;
      const s = await c.service(t.serviceId);
      const inst = s.instances.find((i) => i.instance_n === t.instance);
      const after = `after ${Math.round(o.timeoutMs / 1000)} s`;
      if (inst && UNPLACED.has(inst.state)) {
        return { ok: false, target: t, state: inst.state, reason: `not placed ${after}: ${inst.reason}; root keeps retrying it when room appears (undeploy the service to stop)` };
      }
      return { ok: false, target: t, state: 'TIMEOUT', reason: `still ${inst?.state ?? 'unknown'} ${after}${inst?.reason ? ` (${inst.reason})` : ''}` };
    }
    o.onTick?.();
    await new Promise((r) => setTimeout(r, o.intervalMs ?? 250));
  }

  /** One poll of every instance not done yet: a verdict, or null to go on. */
  async function pass(): Promise<WatchOutcome | null> {
    for (const t of targets) {
      if (done.has(t)) continue;
      const s = await c.service(t.serviceId);
      const inst = s.instances.find((i) => i.instance_n === t.instance);
      if (!inst) return { ok: false, target: t, state: 'MISSING', reason: `instance ${t.instance} of ${t.label} no longer exists (undeployed?)` };
      const from = seen.get(t) ?? 0;
      for (const ev of inst.history.slice(from)) batch.push({ ...ev, target: t });
      seen.set(t, inst.history.length);
      if (inst.state === 'UNDEPLOYED') return { ok: false, target: t, state: inst.state, reason: inst.reason };
      if (inst.placeable === false && (UNPLACED.has(inst.state) || inst.state === 'REQUESTED')) {
        return { ok: false, target: t, state: inst.state, reason: inst.unplaceable_reason ?? inst.reason };
      }
      const last = inst.history[inst.history.length - 1];
      if (!UNPLACED.has(inst.state) && last?.state === inst.state && inst.reason !== last.reason && progressTold.get(t) !== inst.reason) {
        progressTold.set(t, inst.reason);
        steps.push({ target: t, state: inst.state, reason: inst.reason, ts: inst.updated_at });
      }
      if (UNPLACED.has(inst.state)) {
        if (o.unplaced !== 'wait') return { ok: false, target: t, state: inst.state, reason: inst.reason };
        const key = `${inst.state} ${inst.reason}`;
        if (told.get(t) !== key) {
          const first = !told.has(t);
          told.set(t, key);
          notes.push({ target: t, state: inst.state, reason: inst.reason, first, nextRetry: inst.next_retry ?? null });
        }
      }
      if (inst.state === 'FAILED') {
        const failures = inst.history.filter((e) => e.state === 'FAILED').length;
        if (s.one_shot || failures >= (o.maxFailures ?? DEFAULT_MAX_FAILURES)) {
          const times = failures > 1 ? ` (failed ${failures} times)` : '';
          return { ok: false, target: t, state: inst.state, reason: `${inst.reason}${times}` };
        }
      }
      // A one-shot's outcome is its exit: RUNNING only means it has not finished yet.
      if (s.one_shot ? inst.state === 'COMPLETED' : GOOD.has(inst.state)) done.add(t);
    }
    return null;
  }
}
