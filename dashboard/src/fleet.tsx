// The fleet: clusters on a world map (land outlines bundled from world-atlas, drawn with d3-geo, so
// nothing is fetched from a tile server), with location, active workers, free capacity and
// virtualizations; a cluster opens to its workers and the instances on them.
import { geoNaturalEarth1, geoPath } from 'd3-geo';
import { useEffect, useMemo, useState } from 'preact/hooks';
import { feature } from 'topojson-client';
import type { GeometryCollection, Topology } from 'topojson-specification';
import land110 from 'world-atlas/land-110m.json';
import { StateBadge } from './applications.tsx';
import { useLive } from './live.tsx';
import type { Cluster, ClusterDetail } from './types.ts';

const W = 960;
const H = 480;

/** "lat,long[,radius_km]" → [long, lat]; a place name has no point on the map. */
export function parseLocation(loc: string): [number, number] | null {
  const m = /^\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)(?:\s*,\s*\d+(?:\.\d+)?)?\s*$/.exec(loc);
  if (!m) return null;
  const lat = Number(m[1]);
  const lon = Number(m[2]);
  return Math.abs(lat) <= 90 && Math.abs(lon) <= 180 ? [lon, lat] : null;
}

function WorldMap({ clusters, selected }: { clusters: Cluster[]; selected?: string }) {
  const { projection, land } = useMemo(() => {
    const topo = land110 as unknown as Topology<{ land: GeometryCollection }>;
    const geo = feature(topo, topo.objects.land);
    const projection = geoNaturalEarth1().fitSize([W, H], geo);
    return { projection, land: geoPath(projection)(geo) ?? '' };
  }, []);
  return (
    <svg class="map" viewBox={`0 0 ${W} ${H}`} role="group" aria-label="Clusters on the world map">
      <path d={land} class="land" aria-hidden="true" />
      {clusters.map((c) => {
        const p = parseLocation(c.location);
        const xy = p ? projection(p) : null;
        if (!xy) return null;
        return (
          <a key={c.cluster_id} href={`#/fleet/${c.cluster_id}`} aria-label={`Cluster ${c.name}, ${c.active ? 'active' : 'inactive'}`}>
            <circle cx={xy[0]} cy={xy[1]} r={selected === c.cluster_id ? 11 : 8} class={c.active ? 'pin on' : 'pin off'} />
            <text x={xy[0] + 13} y={xy[1] + 5} class="pin-label">{c.name}</text>
          </a>
        );
      })}
    </svg>
  );
}

function ClusterWorkers({ id }: { id: string }) {
  const live = useLive();
  const [detail, setDetail] = useState<ClusterDetail | null>(null);
  const [error, setError] = useState('');
  const cluster = live.clusters?.find((c) => c.cluster_id === id);
  // Refetched when the cluster reports (its report carries the workers' changes).
  useEffect(() => {
    let gone = false;
    live.api<ClusterDetail>('GET', `/dashboard/clusters/${encodeURIComponent(id)}`)
      .then((d) => !gone && (setDetail(d), setError('')), (e: Error) => !gone && setError(e.message));
    return () => {
      gone = true;
    };
  }, [id, cluster?.last_seen]);
  return (
    <section aria-labelledby="cl-title" class="cluster-detail">
      <h2 id="cl-title">Cluster {cluster?.name ?? id}: workers</h2>
      {error && <p class="error" role="alert">{error}</p>}
      {detail && detail.workers.length === 0 && <p class="muted">No workers.</p>}
      {detail && detail.workers.map((w) => (
        <article key={w.id} class="worker">
          <h3>{w.id} <span class={`state ${w.alive ? 's-running' : 's-failed'}`}>{w.alive ? 'alive' : 'silent'}</span></h3>
          <p class="muted">
            {w.arch ?? '?'} · subnet <code>{w.subnet_v4}</code> · {w.virtualizations.join(', ') || 'no virtualizations'}
            {w.cpu && <> · CPU {w.cpu.free.toFixed(1)}/{w.cpu.cores} free</>}
            {w.memory_mb && <> · memory {w.memory_mb.free}/{w.memory_mb.total} MB free</>}
          </p>
          <ul class="plain">
            {detail.instances.filter((i) => i.worker === w.id).map((i) => (
              <li key={`${i.service_id}/${i.instance_n}`}>
                <a href={`#/apps/${i.service_id}/${i.instance_n}`}>{i.service ?? i.service_id}#{i.instance_n}</a> <StateBadge state={i.state} />
              </li>
            ))}
          </ul>
        </article>
      ))}
    </section>
  );
}

export function Fleet({ clusterId }: { clusterId?: string }) {
  const live = useLive();
  const clusters = live.clusters;
  if (!clusters) return <p aria-busy="true">Loading…</p>;
  return (
    <div class="fleet">
      <h1>Fleet</h1>
      <WorldMap clusters={clusters} selected={clusterId} />
      <div class="table-wrap">
        <table>
          <caption class="sr-only">Clusters</caption>
          <thead>
            <tr><th scope="col">Cluster</th><th scope="col">Status</th><th scope="col">Location</th><th scope="col">Active workers</th><th scope="col">Free capacity</th><th scope="col">Virtualizations</th></tr>
          </thead>
          <tbody>
            {clusters.map((c) => (
              <tr key={c.cluster_id} aria-selected={clusterId === c.cluster_id ? 'true' : undefined}>
                <th scope="row"><a href={`#/fleet/${c.cluster_id}`}>{c.name}</a></th>
                <td><span class={`state ${c.active ? 's-running' : 's-failed'}`}>{c.status}</span></td>
                <td>{c.location}{parseLocation(c.location) ? '' : ' (not on the map)'}</td>
                <td>{c.aggregate?.workers_active ?? '—'}</td>
                <td>{c.aggregate ? `${c.aggregate.free.vcpus.toFixed(1)} vCPU, ${c.aggregate.free.memory_mb} MB${c.aggregate.free.gpus ? `, ${c.aggregate.free.gpus} GPU` : ''}` : '—'}</td>
                <td>{c.aggregate?.virtualizations.join(', ') || '—'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {clusterId && <ClusterWorkers id={clusterId} />}
    </div>
  );
}
