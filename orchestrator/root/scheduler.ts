// Root scheduling (pure): which clusters may take an instance, best first. Root knows clusters only
// by their aggregates, so this is coarse: each cluster still picks a worker itself and may decline.
//
// Order: clusters nearest to the geo/latency location first (when the service has one), then those
// with the most free capacity left after the instance (memory and vCPUs, each relative to the best
// candidate), then by name so that equal clusters are tried in a stable order.
import type { Constraint } from '../descriptor/types.ts';
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
}

export interface Rejection {
  cluster: string;
  reason: string;
}

export interface Ranking {
  candidates: ClusterView[];
  rejected: Rejection[];
}

interface Scored {
  c: ClusterView;
  free: ClusterAggregate['free'];
  distance: number;
  score: number;
}

const INACTIVE = 'inactive (stopped reporting)';

function why(c: ClusterView, d: InstanceDemand, target: Location | null): string | null {
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

export function rankClusters(d: InstanceDemand, clusters: readonly ClusterView[]): Ranking {
  const target = demandLocation(d);
  const ok: Scored[] = [];
  const rejected: Rejection[] = [];
  let maxMem = 0;
  let maxCpu = 0;
  for (const c of clusters) {
    const reason = why(c, d, target);
    if (reason) {
      rejected.push({ cluster: c.name, reason });
      continue;
    }
    const free = (c.aggregate as ClusterAggregate).free;
    maxMem = Math.max(maxMem, free.memory_mb - d.memory);
    maxCpu = Math.max(maxCpu, free.vcpus - d.vcpus);
    ok.push({ c, free, distance: target && c.location ? distanceKm(c.location, target) : 0, score: 0 });
  }
  for (const s of ok) {
    s.score = (maxMem > 0 ? (s.free.memory_mb - d.memory) / maxMem : 0) + (maxCpu > 0 ? (s.free.vcpus - d.vcpus) / maxCpu : 0);
  }
  ok.sort((x, y) => x.distance - y.distance || y.score - x.score || (x.c.name < y.c.name ? -1 : x.c.name > y.c.name ? 1 : 0));
  return { candidates: ok.map((s) => s.c), rejected };
}

/** One line for an instance's status when no cluster qualifies; inactive clusters are named last. */
export function summarizeRejections(rejected: readonly Rejection[], max = 8): string {
  if (rejected.length === 0) return 'no cluster is registered';
  const ordered = [...rejected.filter((r) => r.reason !== INACTIVE), ...rejected.filter((r) => r.reason === INACTIVE)];
  const shown = ordered.slice(0, max).map((r) => `${r.cluster}: ${r.reason}`).join('; ');
  return rejected.length > max ? `${shown}; and ${rejected.length - max} more` : shown;
}
