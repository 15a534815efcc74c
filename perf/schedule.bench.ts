// Root scheduling decisions over 1000 simulated clusters: the time to read every cluster's view and
// rank them for one instance (what root does before its first offer), against a peer measured in
// the same run: one loopback HTTP placement offer to a cluster, the step that follows each decision.
//   npm run bench -- schedule [clusters] [decisions]
import Fastify from 'fastify';
import { ClusterRegistry } from '../orchestrator/root/clusters.ts';
import { offerPlacement } from '../orchestrator/root/cluster-client.ts';
import type { PlacementOffer } from '../orchestrator/protocol/root-cluster.ts';
import { rankClusters, type InstanceDemand } from '../orchestrator/root/scheduler.ts';
import { SqliteStore } from '../orchestrator/root/sqlite-store.ts';
import type { Constraint, Microservice } from '../orchestrator/descriptor/types.ts';
import { orSmoke } from './smoke.ts';

const CLUSTERS = Number(process.argv[2] ?? orSmoke(1000, 20));
const DECISIONS = Number(process.argv[3] ?? orSmoke(5000, 50));
const OFFERS = orSmoke(1000, 20);

let seed = 42;
const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

const store = new SqliteStore(':memory:');
const registry = await new ClusterRegistry(store).load();
const names: string[] = [];
for (let i = 0; i < CLUSTERS; i++) {
  const lat = (35 + rnd() * 25).toFixed(3);
  const long = (-10 + rnd() * 40).toFixed(3);
  const { record } = await registry.register(`c${i}`, `${lat},${long},${Math.floor(rnd() * 50)}`, 'http://127.0.0.1:9');
  names.push(record.name);
  await registry.report(record.id, {
    free: { vcpus: Math.floor(rnd() * 64), memory_mb: Math.floor(rnd() * 65536), gpus: rnd() < 0.1 ? 1 : 0 },
    workers_active: rnd() < 0.05 ? 0 : 1 + Math.floor(rnd() * 20),
    virtualizations: rnd() < 0.3 ? ['process'] : ['process', 'container'],
    architectures: rnd() < 0.2 ? ['arm64'] : ['amd64'],
  });
}

const shapes: (() => Constraint[])[] = [
  () => [],
  () => [{ type: 'geo', location: `${(40 + rnd() * 15).toFixed(2)},${(rnd() * 20).toFixed(2)}`, threshold: 300 }],
  () => [{ type: 'arch', arch: ['arm64'] }],
  () => [{ type: 'clusters', allowed: Array.from({ length: 20 }, () => pick(names)) }],
  () => [{ type: 'latency', location: `${(40 + rnd() * 15).toFixed(2)},${(rnd() * 20).toFixed(2)}`, threshold: 10 }, { type: 'anti_affinity' }],
];
const demands: InstanceDemand[] = Array.from({ length: DECISIONS }, () => ({
  virtualization: pick(['process', 'container']),
  vcpus: pick([0, 0.5, 1, 2]),
  memory: pick([0, 64, 256, 1024]),
  vgpus: rnd() < 0.05 ? 1 : 0,
  constraints: pick(shapes)(),
}));

console.error(`schedule: ${CLUSTERS} clusters, ${DECISIONS} decisions`);
for (let i = 0; i < 200; i++) rankClusters(demands[i % demands.length] as InstanceDemand, registry.views());
const times: number[] = [];
let candidates = 0;
for (const d of demands) {
  const t0 = performance.now();
  const r = rankClusters(d, registry.views());
  times.push(performance.now() - t0);
  candidates += r.candidates.length;
}
times.sort((a, b) => a - b);

// Peer: one placement offer over loopback HTTP to a cluster that accepts at once.
const cluster = Fastify();
cluster.post('/api/placements', async () => ({ accepted: true, worker_id: 'w1' }));
await cluster.listen({ host: '127.0.0.1', port: 0 });
const port = (cluster.server.address() as { port: number }).port;
const target = { ...(await store.clusterByName('c0'))!, api_url: `http://127.0.0.1:${port}` };
const ms: Microservice = {
  microserviceID: 'x', microservice_name: 'svc', microservice_namespace: 'ns', virtualization: 'process', code: '', cmd: ['true'], args: [],
  environment: [], memory: 64, vcpus: 1, vgpus: 0, vtpus: 0, storage: 0, bandwidth_in: 0, bandwidth_out: 0, port: '', one_shot: false,
  addresses: {}, constraints: [], connectivity: [],
};
const offer: PlacementOffer = {
  service: { service_id: 'x', app: 'a', appns: 'n', svc: 'svc', svcns: 'ns', microservice: ms, rr_ip: '10.30.0.1', rr_ip_v6: 'fdc0:30::1', closest_ip: '10.30.0.2', closest_ip_v6: 'fdc0:30::2' },
  instance_n: 0, instance_ip: '10.30.0.3', instance_ip_v6: 'fdc0:30::3',
};
for (let i = 0; i < 100; i++) await offerPlacement(target, offer);
const rtts: number[] = [];
for (let i = 0; i < OFFERS; i++) {
  const t0 = performance.now();
  await offerPlacement(target, offer);
  rtts.push(performance.now() - t0);
}
rtts.sort((a, b) => a - b);
await cluster.close();
registry.close();
await store.close();

const p50 = percentile(times, 50);
const p99 = percentile(times, 99);
const offerP50 = percentile(rtts, 50);
console.error(`decision p50 ${p50.toFixed(3)} ms, p99 ${p99.toFixed(3)} ms, mean candidates ${(candidates / DECISIONS).toFixed(0)}`);
console.error(`peer: loopback placement offer p50 ${offerP50.toFixed(3)} ms, p99 ${percentile(rtts, 99).toFixed(3)} ms`);
console.log(JSON.stringify({
  bench: 'schedule',
  clusters: CLUSTERS,
  decisions: DECISIONS,
  p50_ms: Number(p50.toFixed(4)),
  p99_ms: Number(p99.toFixed(4)),
  mean_candidates: Math.round(candidates / DECISIONS),
  offer_rtt_p50_ms: Number(offerP50.toFixed(4)),
  decision_to_offer_ratio: Number((p50 / offerP50).toFixed(3)),
}));
