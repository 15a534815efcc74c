// Whether waiting for an unplaced instance can help (SPEC §7): "no room now" (NO_WORKER_CAPACITY, a
// full cluster, a cluster that has not reported) is worth waiting for; "no cluster could ever run
// it" is not, and `deploy --wait` fails at once on it. Only what changes no faster than the cluster
// set itself counts as never: virtualizations and architectures, the cluster/placement constraints,
// distance, and a demand over the largest worker's total capacity. A cluster root knows too little
// about (no report yet, no active worker) could still run it.
import type { Microservice } from '../descriptor/types.ts';
import { demandLocation, why, type ClusterView, type InstanceDemand } from './scheduler.ts';

/** Why `c` can never run the demand, or null if it might (now or once it has room). */
function never(c: ClusterView, d: InstanceDemand): string | null {
  const a = c.aggregate;
  if (!a || a.workers_active <= 0) return null;
  // Judged as if the cluster were active and empty: liveness and free room are "not now", not "never".
  const roomy = { ...c, active: true, aggregate: { ...a, free: { vcpus: Infinity, memory_mb: Infinity, gpus: Infinity } } };
  const r = why(roomy, d, demandLocation(d));
  if (r) return r;
  const m = a.max_worker;
  if (m && d.memory > m.memory_mb) return `needs ${d.memory} MB of memory, its largest worker has ${m.memory_mb} MB`;
  if (m && d.vcpus > m.vcpus) return `needs ${d.vcpus} vCPUs, its largest worker has ${m.vcpus}`;
  return null;
}

/** Null if some cluster might run the demand; else one line naming each cluster and why not. */
export function neverPlaceable(d: InstanceDemand, clusters: readonly ClusterView[]): string | null {
  if (clusters.length === 0) return null;
  const reasons: string[] = [];
  for (const c of clusters) {
    const r = never(c, d);
    if (r === null) return null;
    reasons.push(`${c.name}: ${r}`);
  }
  return `no cluster can ever run it: ${reasons.join('; ')}`;
}

/** The instance view's `placeable` fields for an unplaced instance's spec (undefined: placed or gone). */
export function placeability(spec: Microservice | undefined, clusters: { views(): ClusterView[] }): { placeable: boolean; unplaceable_reason?: string } {
  if (!spec) return { placeable: true };
  const d: InstanceDemand = { virtualization: spec.virtualization, vcpus: spec.vcpus, memory: spec.memory, vgpus: spec.vgpus, constraints: spec.constraints };
  const r = neverPlaceable(d, clusters.views());
  return r === null ? { placeable: true } : { placeable: false, unplaceable_reason: r };
}
