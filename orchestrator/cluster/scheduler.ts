// Cluster scheduling: picks one worker for one instance. Pure logic, no I/O.
//
// A worker must first *qualify* (alive, runs the virtualization, right architecture, named by a
// `direct` constraint, no sibling instance under `anti_affinity`, within a `geo` radius, close enough
// to a `latency` location for the RTT to be possible, near an instance of each `connectivity` target);
// among the qualified, it must have the *capacity* (free vCPUs and memory). Among those, best fit
// wins: the worker left with the least spare capacity, so that large requests still find room later.
// Every answer carries a sentence saying why, which ends up in the instance's status.
import { distanceKm as greatCircleKm, minRttMs, parseLocation } from '../descriptor/location.ts';
import type { Coordinate } from '../../proxy/route-messages.ts';
import type { Connectivity, Constraint } from '../protocol/root-cluster.ts';
import { estimatedRttMs, MAX_ERROR } from '../../proxy/vivaldi.ts';

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

export interface PlacementNeed {
  service_id: string;
  virtualization: string;
  vcpus: number;
  memory_mb: number;
  constraints: readonly Constraint[];
  connectivity?: readonly Connectivity[];
}

export type ScheduleResult =
  | { ok: true; worker: string; score: number; reason: string }
  | { ok: false; status: 'NO_WORKER_CAPACITY' | 'NO_QUALIFIED_WORKER'; reason: string };

export interface ScheduleContext {
  clusterName: string;
  /** Workers to leave out (e.g. the one that just died). */
  exclude?: ReadonlySet<string>;
  /** Workers' Vivaldi coordinates (from their coordinate reports), for `connectivity` latency. */
  coordinates?: ReadonlyMap<string, Coordinate>;
  /** A worker's fresh probe of a `latency` target (cluster/latency-probes.ts). */
  latencyTo?: (workerId: string, target: string) => { rtt_ms: number | null; method: string } | undefined;
  /** An RTT in ms that one worker measured to another on the tunnel, if either did. */
  measuredRtt?: (a: string, b: string) => number | undefined;
}

/** Great-circle distance in km, the same measure root uses (descriptor/location.ts). */
export function distanceKm(a: GeoPoint, b: GeoPoint): number {
  return greatCircleKm({ lat: a.lat, long: a.lon }, { lat: b.lat, long: b.lon });
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
/** The most an estimate is raised for its coordinates' error (a fresh coordinate claims up to 150 %). */
const MAX_ESTIMATE_MARGIN = 0.5;
/**
 * The least it is raised: a coordinate's error is an average over its samples, and Vivaldi is worst
 * on the short links a connectivity threshold is about (the ldp bench misses some at 5 % and none at 15 %).
 */
const MIN_ESTIMATE_MARGIN = 0.15;
const EPS = 1e-9;

function fmt(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(2);
}

/** The point a `latency` constraint measures from, parsed as root parses it; undefined for an `area`. */
function latencyPoint(c: Constraint): GeoPoint | undefined {
  const loc = c.location === undefined ? null : parseLocation(c.location, false);
  return loc ? { lat: loc.lat, lon: loc.long } : undefined;
}

/** Margin over the fibre bound for an `area`: the last mile and switching add at least this much. */
export const AREA_MARGIN_MS = 1;

/** The least RTT in ms from a worker `km` beyond an area's edge: light in fibre plus the margin. */
export function areaBoundMs(km: number): number {
  return minRttMs(km) + AREA_MARGIN_MS;
}

/**
 * Why `w` cannot meet a `latency` constraint, or undefined. A `target` address is judged by the
 * worker's own measurement (not measured or no answer excludes it: nothing shows it can); a point
 * `location` and an `area` given as "lat,long[,radius]" by the fibre bound; an area name not at all.
 */
function judgeLatency(w: WorkerCandidate, c: Constraint, ctx: ScheduleContext): string | undefined {
  if (c.threshold === undefined) return undefined;
  if (c.target !== undefined) {
    const m = ctx.latencyTo?.(w.id, c.target);
    if (!m) return `RTT to ${c.target} not measured (latency ≤ ${fmt(c.threshold)} ms)`;
    if (m.rtt_ms === null) return `${c.target} did not answer its probe (latency ≤ ${fmt(c.threshold)} ms)`;
    if (m.rtt_ms > c.threshold + EPS) return `measured RTT ${approx(m.rtt_ms)} ms to ${c.target} (${m.method}) > ${fmt(c.threshold)} ms`;
    return undefined;
  }
  const point = latencyPoint(c);
  const area = point ? undefined : areaOf(c);
  const center = point ?? area;
  if (!center) return undefined;
  const where = point ? c.location : c.area;
  // A point location keeps root's bound (no margin); an area is the issue's "fibre plus a margin".
  if (!w.location) return point ? 'has no location (latency constraint)' : `has no location (latency constraint for area ${where})`;
  const gap = Math.max(0, distanceKm(w.location, center) - (area?.radius ?? 0));
  if (point) {
    if (minRttMs(gap) > c.threshold) return `${fmt(Math.round(gap))} km from ${where}: no RTT under ${fmt(c.threshold)} ms possible`;
    return undefined;
  }
  const bound = areaBoundMs(gap);
  if (bound > c.threshold) return `${fmt(Math.round(gap))} km from area ${where}: RTT at least ${approx(bound)} ms > ${fmt(c.threshold)} ms`;
  return undefined;
}

/** An `area` given as coordinates ("lat,long[,radius km]"); undefined for an area name. */
function areaOf(c: Constraint): (GeoPoint & { radius: number }) | undefined {
  const loc = c.area === undefined ? null : parseLocation(c.area, true);
  return loc ? { lat: loc.lat, lon: loc.long, radius: loc.radius } : undefined;
}

/** What the chosen worker measured for each `latency` target, for the decision's reason. */
function latencyNotes(w: WorkerCandidate, need: PlacementNeed, ctx: ScheduleContext): string[] {
  const out: string[] = [];
  for (const c of need.constraints) {
    if (c.type !== 'latency' || c.target === undefined || c.threshold === undefined) continue;
    const m = ctx.latencyTo?.(w.id, c.target);
    if (m?.rtt_ms != null) out.push(`latency to ${c.target} ≤ ${fmt(c.threshold)} ms: met, measured ${approx(m.rtt_ms)} ms (${m.method})`);
  }
  return out;
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
      case 'latency': {
        const why = judgeLatency(w, c, ctx);
        if (why) return why;
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

/** The live workers of this cluster that run an instance of each connectivity target. */
type TargetWorkers = ReadonlyMap<string, readonly WorkerCandidate[]>;

function targetWorkers(workers: readonly WorkerCandidate[], need: PlacementNeed, ctx: ScheduleContext): TargetWorkers {
  const out = new Map<string, WorkerCandidate[]>();
  for (const e of need.connectivity ?? []) {
    if (out.has(e.target_microservice_id)) continue;
    // An instance on a dead or excluded worker is going away: being near it is worth nothing.
    out.set(e.target_microservice_id, workers.filter((t) => t.alive && !ctx.exclude?.has(t.id) && t.services.has(e.target_microservice_id)));
  }
  return out;
}

interface ConnectivityVerdict {
  /** Why `w` does not qualify; undefined when it does or when the check could not be made. */
  fail?: string;
  /** One sentence per checked constraint, for the reason of a placement on `w`. */
  notes: string[];
}

/**
 * A worker's coordinate if it has learned from at least one RTT sample. Workers report from start-up,
 * so untrained ones all sit at the origin and would look close to each other.
 */
function trained(ctx: ScheduleContext, workerId: string): Coordinate | undefined {
  const c = ctx.coordinates?.get(workerId);
  return c && c.error < MAX_ERROR ? c : undefined;
}

/** The nearest of `targets` by `measure`; undefined measures (unknown coordinates) are counted apart. */
function nearest(targets: readonly WorkerCandidate[], measure: (t: WorkerCandidate) => number | undefined):
  { best?: { t: WorkerCandidate; d: number }; unknown: number } {
  let best: { t: WorkerCandidate; d: number } | undefined;
  let unknown = 0;
  for (const t of targets) {
    const d = measure(t);
    if (d === undefined) unknown++;
    else if (!best || d < best.d) best = { t, d };
  }
  return { best, unknown };
}

/**
 * `connectivity[]` for one worker. A target without an instance here, or a coordinate or location
 * that is not known, leaves the worker qualified: root places across clusters, and a fresh worker has
 * no coordinate yet. Only a measured miss against every instance of the target disqualifies.
 */
function judgeConnectivity(w: WorkerCandidate, need: PlacementNeed, targets: TargetWorkers, ctx: ScheduleContext): ConnectivityVerdict {
  const notes: string[] = [];
  for (const e of need.connectivity ?? []) {
    const id = e.target_microservice_id;
    const on = targets.get(id) ?? [];
    for (const k of e.con_constraints) {
      const unit = k.type === 'geo' ? 'km' : 'ms';
      const label = `connectivity to ${id} (${k.type} ≤ ${fmt(k.threshold)} ${unit})`;
      if (!Number.isFinite(k.threshold) || (k.type !== 'latency' && k.type !== 'geo')) {
        notes.push(`connectivity to ${id}: ${k.type} constraint not evaluated`);
        continue;
      }
      if (on.length === 0) {
        notes.push(`${label}: no instance of it in this cluster, not evaluated here`);
        continue;
      }
      if (on.includes(w)) {
        notes.push(`${label}: met, ${w.id} runs an instance of it`);
        continue;
      }
      let r: ReturnType<typeof nearest>;
      let what = k.type === 'geo' ? 'distance' : 'estimated RTT';
      const estimates = new Map<WorkerCandidate, number>();
      /** How a distance reads: an estimate as itself and, when it differs, the upper end it was judged by. */
      const shown = (b: { t: WorkerCandidate; d: number }): string => {
        const est = estimates.get(b.t);
        return est === undefined || approx(est) === approx(b.d) ? `${approx(b.d)} ${unit}` : `${approx(est)} ${unit} (up to ${approx(b.d)} ${unit} at the coordinates' error)`;
      };
      if (k.type === 'latency') {
        // A tunnel measurement between the two workers beats any estimate; coordinates fill the rest.
        const mine = trained(ctx, w.id);
        const measured = new Set<WorkerCandidate>();
        r = nearest(on, (t) => {
          const m = ctx.measuredRtt?.(w.id, t.id);
          if (m !== undefined) {
            measured.add(t);
            return m;
          }
          const theirs = trained(ctx, t.id);
          if (!mine || !theirs) return undefined;
          // An estimate counts at its upper end: the coordinates' own relative error says how far off
          // it may be, and a placement made on a low guess would break the constraint for real.
          const est = estimatedRttMs(mine, theirs);
          const upper = est * (1 + Math.min(MAX_ESTIMATE_MARGIN, Math.max(MIN_ESTIMATE_MARGIN, mine.error, theirs.error)));
          estimates.set(t, est);
          return upper;
        });
        if (r.best && measured.has(r.best.t)) what = 'measured RTT';
        if (!r.best && !mine) {
          notes.push(`${label}: not evaluated, ${w.id} has no Vivaldi coordinate yet`);
          continue;
        }
      } else {
        const mine = w.location;
        if (!mine) {
          notes.push(`${label}: not evaluated, ${w.id} has no location`);
          continue;
        }
        r = nearest(on, (t) => (t.location ? distanceKm(mine, t.location) : undefined));
      }
      if (r.best && r.best.d <= k.threshold + EPS) {
        notes.push(`${label}: met, ${what} ${shown(r.best)} to its instance on ${r.best.t.id}`);
      } else if (r.unknown > 0) {
        const known = r.best ? `${what} ${shown(r.best)} to the nearest known; ` : '';
        notes.push(`${label}: not evaluated, ${known}${r.unknown} of its ${on.length} workers have no ${k.type === 'geo' ? 'location' : 'Vivaldi coordinate'}`);
      } else if (r.best) {
        return { fail: `${what} ${shown(r.best)} to the nearest instance of ${id} (on ${r.best.t.id}) > ${fmt(k.threshold)} ${unit} (connectivity)`, notes };
      }
    }
  }
  return { notes };
}

/** A measured distance or RTT for a sentence: whole units from 100 up, else one decimal. */
function approx(n: number): string {
  return String(n >= 100 ? Math.round(n) : Math.round(n * 10) / 10);
}

export function schedule(workers: Iterable<WorkerCandidate>, need: PlacementNeed, ctx: ScheduleContext): ScheduleResult {
  const mismatch = clusterMismatch(need, ctx);
  if (mismatch) return { ok: false, status: 'NO_QUALIFIED_WORKER', reason: mismatch };

  const all = [...workers];
  const targets = targetWorkers(all, need, ctx);
  const unqualified: string[] = [];
  const full: string[] = [];
  let best: { w: WorkerCandidate; score: number; notes: string[] } | undefined;
  let fitting = 0;
  for (const w of all) {
    const why = disqualify(w, need, ctx);
    if (why) {
      if (why !== 'excluded') unqualified.push(`${w.id}: ${why}`);
      continue;
    }
    const conn = judgeConnectivity(w, need, targets, ctx);
    if (conn.fail) {
      unqualified.push(`${w.id}: ${conn.fail}`);
      continue;
    }
    const lack = lacksCapacity(w, need);
    if (lack) {
      full.push(`${w.id}: ${lack}`);
      continue;
    }
    fitting++;
    const score = bestFitScore(w, need);
    if (!best || score < best.score - EPS || (Math.abs(score - best.score) <= EPS && w.id < best.w.id)) best = { w, score, notes: conn.notes };
  }
  const total = all.length;

  // A latency constraint by area name has no coordinates to measure from; root does not place by it either.
  const ignoredNotes = need.constraints
    .filter((c) => c.type === 'latency' && c.threshold !== undefined && c.target === undefined && !latencyPoint(c) && !areaOf(c))
    .map((c) => `latency constraint ${c.area !== undefined ? `for area ${c.area}` : `at ${c.location ?? '?'}`} not evaluated (no coordinates for it)`);

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
  for (const note of [...latencyNotes(w, need, ctx), ...best.notes, ...ignoredNotes]) parts.push(`; ${note}`);
  return { ok: true, worker: w.id, score: best.score, reason: parts.join(' ') };
}
