// `canopy status --workers`: each cluster's network summary (SPEC §12) and its workers' Vivaldi
// coordinates, from the aggregates clusters report to root.
import { parseNetworkSummary, parseWorkerNetViews } from '../protocol/network.ts';
import type { ClusterInfo } from './root-client.ts';
import { table } from './terminal.ts';

const n1 = (v: number): string => (Math.round(v * 10) / 10).toFixed(1);

export function workersView(clusters: readonly ClusterInfo[]): string {
  const out: string[] = [];
  for (const c of clusters) {
    const agg = (c.aggregate ?? {}) as { network?: unknown; workers?: unknown };
    const net = parseNetworkSummary(agg.network);
    const summary = !net ? 'no network summary reported'
      : net.centroid === null ? `no trained coordinates yet`
        : `${net.trained} trained coordinates, centroid (${n1(net.centroid[0])}, ${n1(net.centroid[1])}) ms, spread ${n1(net.spread_ms)} ms, median error ${net.median_error.toFixed(2)}`;
    out.push(`cluster ${c.name}  ${c.status}: ${summary}`);
    const probes = Object.entries(net?.probes ?? {});
    if (probes.length > 0) out.push(`  latency targets (best measured RTT): ${probes.map(([t, ms]) => `${t} ${n1(ms)} ms`).join(', ')}`);
    const rows = parseWorkerNetViews(agg.workers).map((w) => [
      w.id, w.alive ? 'alive' : 'dead', w.location ?? '-',
      w.coord ? `(${n1(w.coord.vec[0])}, ${n1(w.coord.vec[1])})` : '-',
      w.coord ? n1(w.coord.height) : '-', w.coord ? w.coord.error.toFixed(2) : '-',
    ]);
    if (rows.length > 0) out.push(table(['WORKER', 'STATE', 'LOCATION', 'COORD (ms)', 'HEIGHT (ms)', 'ERROR'], rows));
  }
  return out.length > 0 ? out.join('\n') : 'no clusters registered';
}
