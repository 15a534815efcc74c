// Network position for latency-aware placement (SPEC §12): the Vivaldi coordinate a worker reports in
// its heartbeat, the summary a cluster reports to root, and the probe results root can rank with.
// Declared once for worker, cluster and root. The coordinate has the shape of the semantic layer's
// (proxy/route-messages.ts), repeated here because protocol/ imports nothing from other folders.

/** A Vivaldi coordinate: 2-D plane plus a height for the access link, all in ms. */
export interface NetCoordinate {
  vec: [number, number];
  height: number;
  /** The node's own error estimate (0.01..1.5); 1.5 means it has learned nothing yet. */
  error: number;
}

/** A coordinate at the start error has not learned from one RTT sample (proxy/vivaldi.ts MAX_ERROR). */
export const UNTRAINED_ERROR = 1.5;

export function isTrained(c: NetCoordinate | undefined): c is NetCoordinate {
  return c !== undefined && c.error < UNTRAINED_ERROR;
}

/** RTT in ms that two coordinates predict (plane distance plus both heights). */
export function predictedRttMs(a: NetCoordinate, b: NetCoordinate): number {
  return Math.hypot(a.vec[0] - b.vec[0], a.vec[1] - b.vec[1]) + a.height + b.height;
}

/**
 * What a cluster tells root about its workers' network positions. Coordinate spaces are per cluster
 * (each cluster relays only its own workers' coordinates), so root compares spreads and probe
 * results across clusters, never centroids.
 */
export interface NetworkSummary {
  /** Workers whose coordinate has learned from at least one sample. */
  trained: number;
  /** Mean of the trained coordinates' planes; null when none is trained. */
  centroid: [number, number] | null;
  /** Largest predicted RTT in ms from the centroid to a trained worker (plane distance plus height). */
  spread_ms: number;
  /** Median error estimate of the trained coordinates. */
  median_error: number;
  /** Latency targets this cluster's workers measured recently: the best RTT in ms, by target address. */
  probes: Record<string, number>;
}

/** One worker's position as `canopy status --workers` shows it (the cluster report's `workers`). */
export interface WorkerNetView {
  id: string;
  alive: boolean;
  location: string | null;
  coord: NetCoordinate | null;
}

/** Most workers a report lists one by one (the summary covers all). */
export const MAX_REPORTED_WORKERS = 500;

export function summarize(coords: Iterable<NetCoordinate | undefined>, probes: Record<string, number> = {}): NetworkSummary {
  const t = [...coords].filter(isTrained);
  if (t.length === 0) return { trained: 0, centroid: null, spread_ms: 0, median_error: UNTRAINED_ERROR, probes };
  const cx = t.reduce((s, c) => s + c.vec[0], 0) / t.length;
  const cy = t.reduce((s, c) => s + c.vec[1], 0) / t.length;
  const spread = Math.max(...t.map((c) => Math.hypot(c.vec[0] - cx, c.vec[1] - cy) + c.height));
  const errors = t.map((c) => c.error).sort((a, b) => a - b);
  const round = (n: number): number => Math.round(n * 1000) / 1000;
  return { trained: t.length, centroid: [round(cx), round(cy)], spread_ms: round(spread), median_error: round(errors[Math.floor(errors.length / 2)]!), probes };
}

/** A `NetworkSummary` from an untrusted report; undefined when it is not that shape. */
export function parseNetworkSummary(v: unknown): NetworkSummary | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const o = v as Record<string, unknown>;
  const fin = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);
  if (!fin(o.trained) || !fin(o.spread_ms) || !fin(o.median_error)) return undefined;
  let centroid: [number, number] | null = null;
  if (Array.isArray(o.centroid) && o.centroid.length === 2 && o.centroid.every(fin)) centroid = [o.centroid[0] as number, o.centroid[1] as number];
  const probes: Record<string, number> = {};
  if (typeof o.probes === 'object' && o.probes !== null) {
    for (const [k, x] of Object.entries(o.probes as Record<string, unknown>).slice(0, 256)) if (k.length <= 64 && fin(x) && x >= 0) probes[k] = x;
  }
  return { trained: o.trained, centroid, spread_ms: o.spread_ms, median_error: o.median_error, probes };
}

/** `workers` of an untrusted report: well-formed entries kept, at most MAX_REPORTED_WORKERS. */
export function parseWorkerNetViews(v: unknown): WorkerNetView[] {
  if (!Array.isArray(v)) return [];
  const out: WorkerNetView[] = [];
  for (const x of v.slice(0, MAX_REPORTED_WORKERS)) {
    if (typeof x !== 'object' || x === null) continue;
    const e = x as Record<string, unknown>;
    if (typeof e.id !== 'string' || e.id.length > 128) continue;
    const c = e.coord as Record<string, unknown> | null | undefined;
    const fin = (n: unknown): n is number => typeof n === 'number' && Number.isFinite(n);
    const coord = c && Array.isArray(c.vec) && c.vec.length === 2 && c.vec.every(fin) && fin(c.height) && fin(c.error)
      ? { vec: [c.vec[0], c.vec[1]] as [number, number], height: c.height, error: c.error } : null;
    out.push({ id: e.id, alive: e.alive === true, location: typeof e.location === 'string' ? e.location.slice(0, 64) : null, coord });
  }
  return out;
}
