// Cluster scheduling: picks one worker for one instance. Pure logic, no I/O.
//
// A worker must first *qualify* (alive, runs the virtualization, right architecture, named by a
// `direct` constraint, no sibling instance under `anti_affinity`, within a `geo` radius); among the
// qualified, it must have the *capacity* (free vCPUs and memory). Among those, best fit wins: the
// worker left with the least spare capacity, so that large requests still find room later. Every
// answer carries a sentence saying why, which ends up in the instance's status.

export interface GeoPoint {
  lat: number;
  lon: number;
}

export interface WorkerCandidate {
  id: string;
  alive: boolean;
  arch: string;
  virtualizations: readonly string[];
  total: { vcpus: number; memory_mb: number };
  /** Free after what is already placed on it (including placements it has not confirmed yet). */
  free: { vcpus: number; memory_mb: number };
  location?: GeoPoint;
  /** Service ids that have an instance on this worker. */
  services: ReadonlySet<string>;
}

/** The constraint objects of a descriptor microservice, as far as the cluster reads them. */
export interface Constraint {
  type: string;
  cluster?: string;
  node?: string;
  allowed?: readonly string[];
  location?: string;
  threshold?: number;
  arch?: readonly string[];
  area?: string;
}

export interface PlacementNeed {
  service_id: string;
  virtualization: string;
  vcpus: number;
  memory_mb: number;
  constraints: readonly Constraint[];
}

export type ScheduleResult =
  | { ok: true; worker: string; score: number; reason: string }
  | { ok: false; status: 'NO_WORKER_CAPACITY' | 'NO_QUALIFIED_WORKER'; reason: string };

export interface ScheduleContext {
  clusterName: string;
  /** Workers to leave out (e.g. the one that just died). */
  exclude?: ReadonlySet<string>;
}

/** Great-circle distance in km (haversine, mean Earth radius). */
export function distanceKm(a: GeoPoint, b: GeoPoint): number {
  const rad = Math.PI / 180;
  const dLat = (b.lat - a.lat) * rad;
  const dLon = (b.lon - a.lon) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * 6371.0088 * Math.asin(Math.min(1, Math.sqrt(h)));
}

/** Parses "lat,long" (an optional third radius field is ignored); undefined when malformed. */
export function parseGeoPoint(s: string | undefined): GeoPoint | undefined {
  if (typeof s !== 'string') return undefined;
  const parts = s.split(',').map((p) => p.trim());
  if (parts.length < 2) return undefined;
  const lat = Number(parts[0]);
  const lon = Number(parts[1]);
  if (!Number.isFinite(lat) || !Number.isFinite(lon) || Math.abs(lat) > 90 || Math.abs(lon) > 180) return undefined;
  return { lat, lon };
}

const MAX_LISTED = 5;
const EPS = 1e-9;

function fmt(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(2);
}

/** Returns why `w` does not qualify, or undefined if it does. Cluster-level checks are done first. */
function disqualify(w: WorkerCandidate, need: PlacementNeed, ctx: ScheduleContext): string | undefined {
  if (ctx.exclude?.has(w.id)) return 'excluded';
  if (!w.alive) return 'not alive';
  if (!w.virtualizations.includes(need.virtualization)) {
    return `cannot run ${need.virtualization} (runs ${w.virtualizations.join(', ') || 'nothing'})`;
  }
  for (const c of need.constraints) {
    switch (c.type) {
      case 'arch':
        if (c.arch && c.arch.length > 0 && !c.arch.includes(w.arch)) return `arch ${w.arch} not in [${c.arch.join(', ')}]`;
        break;
      case 'direct': {
        const nodes = (c.node ?? '').split(';').map((s) => s.trim()).filter((s) => s.length > 0);
        if (nodes.length > 0 && !nodes.includes(w.id)) return `not among direct nodes [${nodes.join(', ')}]`;
        break;
      }
      case 'anti_affinity':
        if (w.services.has(need.service_id)) return 'already runs an instance of this service (anti_affinity)';
        break;
      case 'geo': {
        const target = parseGeoPoint(c.location);
        if (!target || c.threshold === undefined) break;
        if (!w.location) return 'has no location (geo constraint)';
        const d = distanceKm(w.location, target);
        if (d > c.threshold) return `${fmt(Math.round(d))} km from ${c.location} > ${fmt(c.threshold)} km`;
        break;
      }
      default:
        break;
    }
  }
  return undefined;
}

function lacksCapacity(w: WorkerCandidate, need: PlacementNeed): string | undefined {
  const lacks: string[] = [];
  if (w.free.vcpus + EPS < need.vcpus) lacks.push(`${fmt(w.free.vcpus)} vCPU free < ${fmt(need.vcpus)}`);
  if (w.free.memory_mb + EPS < need.memory_mb) lacks.push(`${fmt(w.free.memory_mb)} MB free < ${fmt(need.memory_mb)} MB`);
  return lacks.length > 0 ? lacks.join(', ') : undefined;
}

/** Spare capacity left after the placement, as a fraction of the worker's total (0 = a perfect fit). */
export function bestFitScore(w: WorkerCandidate, need: PlacementNeed): number {
  const cpuLeft = w.total.vcpus > 0 ? (w.free.vcpus - need.vcpus) / w.total.vcpus : 0;
  const memLeft = w.total.memory_mb > 0 ? (w.free.memory_mb - need.memory_mb) / w.total.memory_mb : 0;
  return (cpuLeft + memLeft) / 2;
}

function listed(items: readonly string[]): string {
  const head = items.slice(0, MAX_LISTED).join('; ');
  return items.length > MAX_LISTED ? `${head}; and ${items.length - MAX_LISTED} more` : head;
}

/** Cluster-wide reasons no worker here can ever take it, or undefined. */
function clusterMismatch(need: PlacementNeed, ctx: ScheduleContext): string | undefined {
  for (const c of need.constraints) {
    if (c.type === 'direct' && c.cluster && c.cluster !== ctx.clusterName) {
      return `direct constraint names cluster ${c.cluster}, this is ${ctx.clusterName}`;
    }
    if (c.type === 'clusters' && c.allowed && c.allowed.length > 0 && !c.allowed.includes(ctx.clusterName)) {
      return `cluster ${ctx.clusterName} not in allowed [${c.allowed.join(', ')}]`;
    }
  }
  return undefined;
}

export function schedule(workers: Iterable<WorkerCandidate>, need: PlacementNeed, ctx: ScheduleContext): ScheduleResult {
  const mismatch = clusterMismatch(need, ctx);
  if (mismatch) return { ok: false, status: 'NO_QUALIFIED_WORKER', reason: mismatch };

  let total = 0;
  const unqualified: string[] = [];
  const full: string[] = [];
  let best: { w: WorkerCandidate; score: number } | undefined;
  let fitting = 0;
  for (const w of workers) {
    total++;
    const why = disqualify(w, need, ctx);
    if (why) {
      if (why !== 'excluded') unqualified.push(`${w.id}: ${why}`);
      continue;
    }
    const lack = lacksCapacity(w, need);
    if (lack) {
      full.push(`${w.id}: ${lack}`);
      continue;
    }
    fitting++;
    const score = bestFitScore(w, need);
    if (!best || score < best.score - EPS || (Math.abs(score - best.score) <= EPS && w.id < best.w.id)) best = { w, score };
  }

  const ignoredNotes = need.constraints
    .filter((c) => c.type === 'latency')
    .map(() => 'latency constraint not evaluated inside the cluster (no user RTT data)');

  if (!best) {
    if (total === 0) return { ok: false, status: 'NO_QUALIFIED_WORKER', reason: 'no workers registered' };
    if (full.length === 0) {
      return { ok: false, status: 'NO_QUALIFIED_WORKER', reason: `no qualified worker among ${total}: ${listed(unqualified)}` };
    }
    return {
      ok: false,
      status: 'NO_WORKER_CAPACITY',
      reason: `no capacity on the ${full.length} qualified of ${total} workers (need ${fmt(need.vcpus)} vCPU, ${fmt(need.memory_mb)} MB): ${listed(full)}`,
    };
  }
  const w = best.w;
  const parts = [
    `placed on ${w.id}: best fit among ${fitting} fitting of ${total} workers`,
    `(leaves ${fmt(w.free.vcpus - need.vcpus)}/${fmt(w.total.vcpus)} vCPU, ${fmt(w.free.memory_mb - need.memory_mb)}/${fmt(w.total.memory_mb)} MB, score ${best.score.toFixed(3)})`,
  ];
  const excluded = [...unqualified, ...full];
  if (excluded.length > 0) parts.push(`; excluded ${listed(excluded)}`);
  if (ignoredNotes.length > 0) parts.push(`; ${ignoredNotes[0]}`);
  return { ok: true, worker: w.id, score: best.score, reason: parts.join(' ') };
}
