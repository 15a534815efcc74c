// Following instances through their states until each is RUNNING (or COMPLETED, for one-shots), one
// fails, or time runs out. Every transition is reported once, with its reason, in order.
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

export type WatchOutcome =
  | { ok: true }
  | { ok: false; target: WatchTarget; state: string; reason: string };

const GOOD = new Set(['RUNNING', 'COMPLETED']);
const BAD = new Set(['FAILED', 'UNDEPLOYED', 'NO_CLUSTER_FOUND', 'NO_WORKER_CAPACITY', 'NO_QUALIFIED_WORKER']);

export async function watchInstances(
  c: RootClient,
  targets: WatchTarget[],
  o: { timeoutMs: number; intervalMs?: number; onTransition: (t: Transition) => void; onTick?: () => void },
): Promise<WatchOutcome> {
  const seen = new Map<WatchTarget, number>();
  const done = new Set<WatchTarget>();
  const until = Date.now() + o.timeoutMs;
  for (;;) {
    for (const t of targets) {
      if (done.has(t)) continue;
      const s = await c.service(t.serviceId);
      const inst = s.instances.find((i) => i.instance_n === t.instance);
      if (!inst) return { ok: false, target: t, state: 'MISSING', reason: `instance ${t.instance} of ${t.label} no longer exists (undeployed?)` };
      const from = seen.get(t) ?? 0;
      for (const ev of inst.history.slice(from)) o.onTransition({ ...ev, target: t });
      seen.set(t, inst.history.length);
      if (BAD.has(inst.state)) return { ok: false, target: t, state: inst.state, reason: inst.reason };
      if (GOOD.has(inst.state)) done.add(t);
    }
    if (done.size === targets.length) return { ok: true };
    if (Date.now() > until) {
      const t = targets.find((x) => !done.has(x))!;
      const s = await c.service(t.serviceId);
      const inst = s.instances.find((i) => i.instance_n === t.instance);
      return { ok: false, target: t, state: 'TIMEOUT', reason: `still ${inst?.state ?? 'unknown'} after ${Math.round(o.timeoutMs / 1000)} s${inst?.reason ? ` (${inst.reason})` : ''}` };
    }
    o.onTick?.();
    await new Promise((r) => setTimeout(r, o.intervalMs ?? 250));
  }
}
