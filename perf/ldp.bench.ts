// Latency and distance aware placement (SPEC §12) in one simulated cluster: 1000 workers at synthetic
// network positions (a plane in ms plus an access-link height each, in a few metro groups), whose
// Vivaldi coordinates are learned the way workers learn them (proxy/vivaldi.ts, from RTT samples to a
// few dozen peers), then 1000 placements through the cluster's scheduler with mixed constraints:
// `latency` to a target address (judged on the workers' probe answers), `connectivity` latency to an
// instance of an earlier service (coordinates, or the peers' measurements), both, or none.
// `met` counts placements whose constraint holds on the TRUE latencies, not on what the scheduler saw.
// Probe and tunnel measurements include queueing (only ever above the true RTT).
//   npm run bench -- ldp [workers] [placements]
import { VivaldiNode } from '../proxy/vivaldi.ts';
import { schedule, type WorkerCandidate, type PlacementNeed } from '../orchestrator/cluster/scheduler.ts';
import type { Coordinate } from '../proxy/route-messages.ts';
import type { Constraint, Connectivity } from '../orchestrator/protocol/root-cluster.ts';
import { orSmoke } from './smoke.ts';

const WORKERS = Number(process.argv[2] ?? orSmoke(1000, 60));
const PLACEMENTS = Number(process.argv[3] ?? orSmoke(1000, 40));
const NEIGHBOURS = orSmoke(32, 12);
const ROUNDS = orSmoke(40, 20);

let seed = 19;
const rnd = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
const gauss = (): number => Math.sqrt(-2 * Math.log(1 - rnd())) * Math.cos(2 * Math.PI * rnd());

interface Pos { x: number; y: number; h: number }
// Metro groups across a continent-sized plane (ms), workers spread a few ms around each.
const METROS = Array.from({ length: 8 }, () => ({ x: rnd() * 60, y: rnd() * 40 }));
const place = (): Pos => {
  const m = METROS[Math.floor(rnd() * METROS.length)]!;
  return { x: m.x + gauss() * 3, y: m.y + gauss() * 3, h: 0.3 + rnd() * 2.5 };
};
const trueRtt = (a: Pos, b: Pos): number => Math.hypot(a.x - b.x, a.y - b.y) + a.h + b.h;
/** A measurement: the true RTT plus up to 5 % of queueing. */
const measure = (ms: number): number => ms * (1 + rnd() * 0.05);

const pos = Array.from({ length: WORKERS }, place);
const ids = pos.map((_, i) => `w${i}`);

// Vivaldi, as the workers run it: each samples its peers (a random few dozen) round after round.
const t0 = performance.now();
const nodes = pos.map(() => new VivaldiNode());
const peers = pos.map(() => Array.from({ length: NEIGHBOURS }, () => Math.floor(rnd() * WORKERS)));
const measured = new Map<string, Record<string, number>>();
for (let r = 0; r < ROUNDS; r++) {
  for (let i = 0; i < WORKERS; i++) {
    for (const j of peers[i]!) {
      if (j === i) continue;
      const ms = measure(trueRtt(pos[i]!, pos[j]!));
      nodes[i]!.observe(ms, nodes[j]!.coordinate());
      if (r === ROUNDS - 1) (measured.get(ids[i]!) ?? measured.set(ids[i]!, {}).get(ids[i]!)!)[ids[j]!] = ms;
    }
  }
}
const coordinates = new Map<string, Coordinate>(nodes.map((n, i) => [ids[i]!, n.coordinate()]));
const trainMs = performance.now() - t0;

// Accuracy over random worker pairs (not only the sampled ones).
const relErrors: number[] = [];
for (let k = 0; k < orSmoke(20_000, 500); k++) {
  const i = Math.floor(rnd() * WORKERS), j = Math.floor(rnd() * WORKERS);
  if (i === j) continue;
  const est = nodes[i]!.distance(nodes[j]!.coordinate());
  const real = trueRtt(pos[i]!, pos[j]!);
  relErrors.push(Math.abs(est - real) / real);
}
relErrors.sort((a, b) => a - b);
const medianRelError = relErrors[Math.floor(relErrors.length / 2)]!;

// Latency targets ("users"): addresses at synthetic positions; workers' probes answer from the truth.
const TARGETS = Array.from({ length: 20 }, (_, i) => ({ ip: `203.0.113.${i + 1}`, pos: place() }));
const probe = new Map<string, number>();
for (const t of TARGETS) for (let i = 0; i < WORKERS; i++) probe.set(`${ids[i]}|${t.ip}`, measure(trueRtt(pos[i]!, t.pos)));

const workers: WorkerCandidate[] = pos.map((_, i) => ({
  id: ids[i]!, alive: true, arch: 'amd64', virtualizations: ['process'],
  total: { vcpus: 64, memory_mb: 131072 }, free: { vcpus: 64, memory_mb: 131072 }, services: new Set<string>(),
}));
const byId = new Map(workers.map((w, i) => [w.id, i]));
const ctx = {
  clusterName: 'sim', coordinates,
  latencyTo: (w: string, target: string) => {
    const ms = probe.get(`${w}|${target}`);
    return ms === undefined ? undefined : { rtt_ms: ms, method: 'icmp' };
  },
  measuredRtt: (a: string, b: string) => measured.get(a)?.[b] ?? measured.get(b)?.[a],
};

/** The k-th lowest true RTT from the workers to a point: a threshold some workers can meet. */
function kthRtt(to: Pos, k: number): number {
  return pos.map((p) => trueRtt(p, to)).sort((a, b) => a - b)[k]!;
}

const placedOn = new Map<string, number[]>(); // service → worker indexes
let met = 0;
let placed = 0;
const times: number[] = [];
const shapes = ['latency', 'connectivity', 'both', 'none'] as const;
for (let n = 0; n < PLACEMENTS; n++) {
  const shape = n < 20 ? 'none' : shapes[Math.floor(rnd() * shapes.length)]!;
  const constraints: Constraint[] = [];
  const connectivity: Connectivity[] = [];
  const checks: Array<(w: number) => boolean> = [];
  // Every request can be met on the true latencies: a latency threshold at least some workers' RTT,
  // and with both kinds, one the connectivity target's own worker meets (queueing included).
  let near: { target: string; on: number; threshold: number } | undefined;
  if (shape === 'connectivity' || shape === 'both') {
    const services = [...placedOn.keys()];
    const target = services[Math.floor(rnd() * services.length)]!;
    near = { target, on: placedOn.get(target)![0]!, threshold: 4 + Math.floor(rnd() * 20) };
    const { threshold } = near;
    connectivity.push({ target_microservice_id: target, con_constraints: [{ type: 'latency', threshold }] });
    checks.push((w) => placedOn.get(target)!.some((o) => o === w || trueRtt(pos[w]!, pos[o]!) <= threshold));
  }
  if (shape === 'latency' || shape === 'both') {
    const t = TARGETS[Math.floor(rnd() * TARGETS.length)]!;
    const threshold = near ? Math.ceil(trueRtt(pos[near.on]!, t.pos) * 1.05 + rnd() * 5) : Math.ceil(kthRtt(t.pos, 5 + Math.floor(rnd() * 60)));
    constraints.push({ type: 'latency', target: t.ip, threshold });
    checks.push((w) => trueRtt(pos[w]!, t.pos) <= threshold);
  }
  const need: PlacementNeed = { service_id: `s${n}`, virtualization: 'process', vcpus: 0.5, memory_mb: 256, constraints, connectivity };
  const s = performance.now();
  const r = schedule(workers, need, ctx);
  times.push(performance.now() - s);
  if (!r.ok) continue;
  placed++;
  const wi = byId.get(r.worker)!;
  const w = workers[wi]!;
  w.free = { vcpus: w.free.vcpus - need.vcpus, memory_mb: w.free.memory_mb - need.memory_mb };
  (w.services as Set<string>).add(need.service_id);
  placedOn.set(need.service_id, [wi]);
  if (checks.every((c) => c(wi))) met++;
}
times.sort((a, b) => a - b);
const p50 = times[Math.floor(times.length / 2)]!;
console.error(`ldp: ${WORKERS} workers, Vivaldi trained in ${trainMs.toFixed(0)} ms (${NEIGHBOURS} peers × ${ROUNDS} rounds), median relative error ${medianRelError.toFixed(3)}`);
console.error(`ldp: ${PLACEMENTS} placements, ${placed} placed (${PLACEMENTS - placed} declined), ${met} met on true latencies, decision p50 ${p50.toFixed(3)} ms, p99 ${times[Math.floor(times.length * 0.99)]!.toFixed(3)} ms`);
console.log(JSON.stringify({
  bench: 'ldp',
  placements: PLACEMENTS,
  met,
  vivaldi_median_rel_error: Number(medianRelError.toFixed(4)),
  decision_p50_ms: Number(p50.toFixed(4)),
  workers: WORKERS,
}));
