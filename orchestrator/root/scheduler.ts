// Root scheduling (pure): which clusters may take an instance, best first. Root knows clusters only
// by their aggregates, so this is coarse: each cluster still picks a worker itself and may decline.
//
// Order: first by what the clusters' network summaries say (SPEC §12): for a `latency` target, the
// clusters whose workers measured it within the threshold (lowest RTT first), then those that have not
// measured it, then those that measured it too far (they measure again when offered, and decline with
// their RTTs if it still is); for a `connectivity` latency, a cluster running the target whose network
// spread fits the threshold before one running it that is wider. Then clusters nearest to the
// geo/latency location (when the service has one), then those nearest to the clusters running its
// connectivity targets (a cluster running a target first), then those with the most free capacity
// left after the instance (memory and vCPUs, each relative to the best candidate), then by name so
// that equal clusters are tried in a stable order.
import type { Constraint, ConnectivityConstraint } from '../descriptor/types.ts';
import { distanceKm, minRttMs, parseLocation, type Location } from '../descriptor/location.ts';
import type { ClusterAggregate } from './store.ts';

export interface ClusterView {
  id: string;
  name: string;
  active: boolean;
  location: Location | null;
  aggregate: ClusterAggregate | null;
}

export interface InstanceDemand {
  virtualization: string;
  vcpus: number;
  memory: number;
  vgpus: number;
  constraints: Constraint[];
  /** The service's connectivity targets that have placed instances (a target with none is left out). */
  near?: NearTarget[];
}

/**
 * A connectivity target as root sees it: the clusters its placed instances are on. Root knows
 * clusters only by their location and radius, so it can rule a cluster out only when it is too far
 * from every one of them; which worker is near enough is the cluster's call.
 */
export interface NearTarget {
  /** The target service's name, for reasons. */
  name: string;
  clusterIds: ReadonlySet<string>;
  constraints: ConnectivityConstraint[];
}

export interface Rejection {
  cluster: string;
  reason: string;
}

export interface Ranking {
  candidates: ClusterView[];
  rejected: Rejection[];
}

/** What the last mile and switching add to the fibre bound of an `area` (the cluster scheduler's too). */
export const AREA_MARGIN_MS = 1;

interface Scored {
  c: ClusterView;
  /** From the network summary: lower tiers first, then lower RTT (see the header). */
  net: { tier: number; ms: number };
  free: ClusterAggregate['free'];
  distance: number;
  /** Sum over the connectivity targets of the least km to a cluster running one (UNKNOWN_KM if not known). */
  apart: number;
  score: number;
}

/** Sorts a cluster whose distance to a target is unknown after every cluster with a known one. */
const UNKNOWN_KM = 1e6;

const INACTIVE = 'inactive (stopped reporting)';

/** Why `c` cannot take the instance now, or null if it can. */
export function why(c: ClusterView, d: InstanceDemand, target: Location | null): string | null {
  if (!c.active) return INACTIVE;
  const a = c.aggregate;
  if (!a) return 'has not reported its resources yet';
  if (a.workers_active <= 0) return 'has no active workers';
  if (!a.virtualizations.includes(d.virtualization)) return `cannot run ${d.virtualization} (has ${a.virtualizations.join(', ') || 'none'})`;
  for (const k of d.constraints) {
    switch (k.type) {
      case 'direct':
        if (k.cluster !== undefined && k.cluster !== c.name) return `not the requested cluster ${k.cluster}`;
        break;
      case 'clusters':
        if (!k.allowed.includes(c.name)) return `not in the allowed clusters [${k.allowed.join(', ')}]`;
        break;
      case 'arch':
        if (!k.arch.some((x) => a.architectures.includes(x))) return `no worker of architecture ${k.arch.join('|')} (has ${a.architectures.join(', ') || 'none'})`;
        break;
      case 'geo':
      case 'latency': {
        if (!target) break;
        if (!c.location) return `has no coordinates to check a ${k.type} constraint`;
        const gap = Math.max(0, distanceKm(c.location, target) - c.location.radius);
        if (k.type === 'geo' && gap > k.threshold) return `is ${Math.round(gap)} km away (limit ${k.threshold} km)`;
        if (k.type === 'latency' && minRttMs(gap) > k.threshold) return `is ${Math.round(gap)} km away: no RTT under ${k.threshold} ms possible`;
        break;
      }
      case 'anti_affinity':
        break;
    }
    if (k.type === 'latency' && k.area !== undefined && !k.location) {
      const area = parseLocation(k.area, true);
      if (area && c.location) {
        const gap = Math.max(0, distanceKm(c.location, area) - c.location.radius - area.radius);
        const bound = minRttMs(gap) + AREA_MARGIN_MS;
        if (bound > k.threshold) return `is ${Math.round(gap)} km from area ${k.area}: RTT at least ${Math.round(bound * 10) / 10} ms > ${k.threshold} ms`;
      }
    }
  }
  if (a.free.vcpus < d.vcpus) return `not enough free vCPUs (${a.free.vcpus} < ${d.vcpus})`;
  if (a.free.memory_mb < d.memory) return `not enough free memory (${a.free.memory_mb} MB < ${d.memory} MB)`;
  if (a.free.gpus < d.vgpus) return `not enough free GPUs (${a.free.gpus} < ${d.vgpus})`;
  return null;
}

/** The point that geo/latency constraints measure from, if the service has one. */
export function demandLocation(d: InstanceDemand): Location | null {
  for (const k of d.constraints) {
    if ((k.type === 'geo' || k.type === 'latency') && k.location) {
      const loc = parseLocation(k.location, false);
      if (loc) return loc;
    }
  }
  return null;
}

/**
 * How far `c` is from the nearest cluster running `t`, in km between the clusters' areas (0 when it
 * runs `t` itself), and whether that settles it: a gap is only a bound on the RTT when every cluster
 * running `t` has a location, since an unlocated one may be next door.
 */
function gapToTarget(c: ClusterView, t: NearTarget, byId: ReadonlyMap<string, ClusterView>): { km: number; complete: boolean } | null {
  if (t.clusterIds.has(c.id)) return { km: 0, complete: true };
  if (!c.location) return null;
  let km = Infinity;
  let complete = true;
  for (const id of t.clusterIds) {
    const h = byId.get(id);
    if (!h?.location) {
      complete = false;
      continue;
    }
    km = Math.min(km, Math.max(0, distanceKm(c.location, h.location) - c.location.radius - h.location.radius));
  }
  return km === Infinity ? null : { km, complete };
}

function tooFar(c: ClusterView, d: InstanceDemand, byId: ReadonlyMap<string, ClusterView>): string | null {
  for (const t of d.near ?? []) {
    const gap = gapToTarget(c, t, byId);
    if (!gap?.complete) continue;
    for (const k of t.constraints) {
      const km = Math.round(gap.km);
      if (k.type === 'geo' && gap.km > k.threshold) return `is ${km} km from the nearest cluster running ${t.name} (limit ${k.threshold} km)`;
      if (k.type === 'latency' && minRttMs(gap.km) > k.threshold) return `is ${km} km from the nearest cluster running ${t.name}: no RTT under ${k.threshold} ms possible`;
    }
  }
  return null;
}

function apartKm(c: ClusterView, d: InstanceDemand, byId: ReadonlyMap<string, ClusterView>): number {
  let sum = 0;
  for (const t of d.near ?? []) sum += gapToTarget(c, t, byId)?.km ?? UNKNOWN_KM;
  return sum;
}

/**
 * How a cluster's network summary ranks it for the demand's `latency` targets and connectivity
 * latencies: the sum of tiers (0 measured within / surely near, 1 unknown, 2 measured too far / not
 * running the target) and of the measured RTTs.
 */
export function networkRank(c: ClusterView, d: InstanceDemand): { tier: number; ms: number } {
  const net = c.aggregate?.network;
  let tier = 0;
  let ms = 0;
  for (const k of d.constraints) {
    if (k.type !== 'latency' || k.target === undefined) continue;
    const best = net?.probes[k.target];
    if (best === undefined) tier += 1;
    else {
      tier += best <= k.threshold ? 0 : 2;
      ms += best;
    }
  }
  for (const t of d.near ?? []) {
    for (const k of t.constraints) {
      if (k.type !== 'latency') continue;
      // Coordinate spaces are per cluster, so another cluster's distance to the target is unknown
      // here (2); in the target's cluster every worker lies within `spread` of the centroid, so a
      // spread of at most half the threshold puts every worker near enough (0), a wider one maybe (1).
      if (!t.clusterIds.has(c.id)) tier += 2;
      else if (!(net && net.trained > 0 && 2 * net.spread_ms <= k.threshold)) tier += 1;
    }
  }
  return { tier, ms };
}

export function rankClusters(d: InstanceDemand, clusters: readonly ClusterView[]): Ranking {
  const target = demandLocation(d);
  const byId = new Map(clusters.map((c) => [c.id, c]));
  const ok: Scored[] = [];
  const rejected: Rejection[] = [];
  let maxMem = 0;
  let maxCpu = 0;
  for (const c of clusters) {
    const reason = why(c, d, target) ?? tooFar(c, d, byId);
    if (reason) {
      rejected.push({ cluster: c.name, reason });
      continue;
    }
    const free = (c.aggregate as ClusterAggregate).free;
    maxMem = Math.max(maxMem, free.memory_mb - d.memory);
    maxCpu = Math.max(maxCpu, free.vcpus - d.vcpus);
    ok.push({ c, free, net: networkRank(c, d), distance: target && c.location ? distanceKm(c.location, target) : 0, apart: apartKm(c, d, byId), score: 0 });
  }
  for (const s of ok) {
    s.score = (maxMem > 0 ? (s.free.memory_mb - d.memory) / maxMem : 0) + (maxCpu > 0 ? (s.free.vcpus - d.vcpus) / maxCpu : 0);
  }
  ok.sort((x, y) => x.net.tier - y.net.tier || x.net.ms - y.net.ms || x.distance - y.distance || x.apart - y.apart || y.score - x.score || (x.c.name < y.c.name ? -1 : x.c.name > y.c.name ? 1 : 0));
  return { candidates: ok.map((s) => s.c), rejected };
}

/** One line for an instance's status when no cluster qualifies; inactive clusters are named last. */
export function summarizeRejections(rejected: readonly Rejection[], max = 8): string {
  if (rejected.length === 0) return 'no cluster is registered';
  const ordered = [...rejected.filter((r) => r.reason !== INACTIVE), ...rejected.filter((r) => r.reason === INACTIVE)];
  const shown = ordered.slice(0, max).map((r) => `${r.cluster}: ${r.reason}`).join('; ');
  return rejected.length > max ? `${shown}; and ${rejected.length - max} more` : shown;
}
