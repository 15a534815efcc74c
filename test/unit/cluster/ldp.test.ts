// Latency and distance aware placement (SPEC §12): the cluster's `latency` constraint by target
// measurement and by area, connectivity from measurements, the probe cache, and the network summary.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { schedule, areaBoundMs, type WorkerCandidate, type PlacementNeed } from '../../../orchestrator/cluster/scheduler.ts';
import { LatencyProbes, CACHE_MS } from '../../../orchestrator/cluster/latency-probes.ts';
import { summarize, parseNetworkSummary, parseWorkerNetViews } from '../../../orchestrator/protocol/network.ts';
import { parsePingTimes, typicalRtt } from '../../../orchestrator/worker/latency-probe.ts';
import { workersView } from '../../../orchestrator/client/workers-view.ts';
import type { Constraint } from '../../../orchestrator/protocol/root-cluster.ts';

function worker(id: string, o: Partial<WorkerCandidate> = {}): WorkerCandidate {
  return {
    id, alive: true, arch: 'amd64', virtualizations: ['process'],
    total: { vcpus: 4, memory_mb: 4096 }, free: { vcpus: 4, memory_mb: 4096 }, services: new Set(), ...o,
  };
}
function need(constraints: Constraint[], o: Partial<PlacementNeed> = {}): PlacementNeed {
  return { service_id: 's1', virtualization: 'process', vcpus: 1, memory_mb: 256, constraints, ...o };
}
const USER = '198.18.0.2';
const rtts: Record<string, number | null> = { w5: 5.2, w20: 19.8, w50: 50.4, mute: null };
const latencyTo = (w: string, target: string) => (target === USER && w in rtts ? { rtt_ms: rtts[w]!, method: 'icmp' } : undefined);
const ws = () => [worker('w5', { free: { vcpus: 4, memory_mb: 4096 } }), worker('w20', { free: { vcpus: 1, memory_mb: 256 } }), worker('w50'), worker('mute'), worker('fresh')];

test('latency to a target: only workers whose measured RTT is within the threshold qualify, the rest are listed with theirs', () => {
  const r = schedule(ws(), need([{ type: 'latency', target: USER, threshold: 15 }]), { clusterName: 'c', latencyTo });
  assert.ok(r.ok && r.worker === 'w5', JSON.stringify(r));
  assert.match(r.reason, /latency to 198\.18\.0\.2 ≤ 15 ms: met, measured 5\.2 ms \(icmp\)/);
  assert.match(r.reason, /w20: measured RTT 19\.8 ms to 198\.18\.0\.2 \(icmp\) > 15 ms/);
  assert.match(r.reason, /mute: 198\.18\.0\.2 did not answer its probe/);
  assert.match(r.reason, /fresh: RTT to 198\.18\.0\.2 not measured/);
  // Without the constraint best fit would take the snug w20.
  const plain = schedule(ws(), need([]), { clusterName: 'c', latencyTo });
  assert.ok(plain.ok && plain.worker === 'w20');
});

test('latency to a target nobody meets: NO_QUALIFIED_WORKER with every measured RTT in the reason', () => {
  const r = schedule(ws().slice(0, 3), need([{ type: 'latency', target: USER, threshold: 2 }]), { clusterName: 'c', latencyTo });
  assert.ok(!r.ok && r.status === 'NO_QUALIFIED_WORKER');
  for (const ms of ['5.2', '19.8', '50.4']) assert.match(r.reason, new RegExp(`measured RTT ${ms.replace('.', '\\.')} ms to 198\\.18\\.0\\.2 \\(icmp\\) > 2 ms`));
});

test('latency to an area: the fibre bound plus margin excludes workers too far from its edge', () => {
  // Munich 48.14,11.58 with a 50 km radius; Berlin is ~505 km away, ~454 km beyond the edge: ≥ 5.5 ms.
  const muc = worker('muc', { location: { lat: 48.14, lon: 11.58 } });
  const ber = worker('ber', { location: { lat: 52.52, lon: 13.4 } });
  const nowhere = worker('nowhere');
  const r = schedule([muc, ber, nowhere], need([{ type: 'latency', area: '48.14,11.58,50', threshold: 5 }]), { clusterName: 'c' });
  assert.ok(r.ok && r.worker === 'muc', JSON.stringify(r));
  assert.match(r.reason, /ber: 454 km from area 48\.14,11\.58,50: RTT at least 5\.5 ms > 5 ms/);
  assert.match(r.reason, /nowhere: has no location/);
  const loose = schedule([muc, ber], need([{ type: 'latency', area: '48.14,11.58,50', threshold: 7 }]), { clusterName: 'c' });
  assert.ok(loose.ok && /best fit among 2 fitting/.test(loose.reason), loose.ok ? loose.reason : '');
  assert.equal(areaBoundMs(0), 1);
  assert.equal(areaBoundMs(1000), 11);
});

test('connectivity: a tunnel measurement between the workers overrides the coordinate estimate', () => {
  const coordinates = new Map([
    ['a', { vec: [0, 0] as [number, number], height: 0.1, error: 0.2 }],
    ['b', { vec: [3, 0] as [number, number], height: 0.1, error: 0.2 }],
    ['c', { vec: [40, 0] as [number, number], height: 0.1, error: 0.2 }],
  ]);
  const cands = [worker('a', { services: new Set(['t']), free: { vcpus: 0, memory_mb: 0 } }), worker('b'), worker('c', { free: { vcpus: 1, memory_mb: 256 } })];
  const conn = [{ target_microservice_id: 't', con_constraints: [{ type: 'latency', threshold: 10 }] }];
  const est = schedule(cands, need([], { connectivity: conn }), { clusterName: 'x', coordinates });
  assert.ok(est.ok && est.worker === 'b');
  assert.match(est.reason, /met, estimated RTT 3\.2 ms \(up to 3\.8 ms at the coordinates' error\) to its instance on a/);
  // b measured 25 ms to a (its coordinate is off); c measured 6 ms: c wins, and says "measured".
  const measured = { 'b': { a: 25 }, 'a': { c: 6 } } as Record<string, Record<string, number>>;
  const measuredRtt = (x: string, y: string) => measured[x]?.[y] ?? measured[y]?.[x];
  const r = schedule(cands, need([], { connectivity: conn }), { clusterName: 'x', coordinates, measuredRtt });
  assert.ok(r.ok && r.worker === 'c', JSON.stringify(r));
  assert.match(r.reason, /met, measured RTT 6 ms to its instance on a/);
  assert.match(r.reason, /b: measured RTT 25 ms to the nearest instance of t \(on a\) > 10 ms \(connectivity\)/);
});

test('latency probes: asks only workers without a fresh answer, drops unasked answers, expires after CACHE_MS', async () => {
  let now = 1000;
  const sent: Array<{ topic: string; body: { probe_id: string; target: string } }> = [];
  const p = new LatencyProbes((topic, payload) => sent.push({ topic, body: JSON.parse(payload) as { probe_id: string; target: string } }), () => now);
  const done = p.ensure(['w1', 'w2'], USER, 200);
  assert.deepEqual(sent.map((s) => s.topic), ['nodes/w1/net/probe', 'nodes/w2/net/probe']);
  // An answer from the wrong worker for w1's probe is ignored.
  p.onResult('w2', { probe_id: sent[0]!.body.probe_id, target: USER, rtt_ms: 0.1, method: 'icmp' });
  p.onResult('w1', { probe_id: sent[0]!.body.probe_id, target: USER, rtt_ms: 5, method: 'icmp' });
  await done; // w2 never answers: the wait ends at its timeout
  assert.equal(p.get('w1', USER)?.rtt_ms, 5);
  assert.equal(p.get('w2', USER), undefined);
  assert.deepEqual(p.best(), { [USER]: 5 });
  sent.length = 0;
  await p.ensure(['w1', 'w2'], USER, 10);
  assert.deepEqual(sent.map((s) => s.topic), ['nodes/w2/net/probe']);
  now += CACHE_MS + 1;
  assert.equal(p.get('w1', USER), undefined);
  assert.deepEqual(p.best(), {});
});

test('network summary: centroid and spread over trained coordinates only; untrusted reports are sanitized', () => {
  const s = summarize([
    { vec: [0, 0], height: 1, error: 0.2 }, { vec: [10, 0], height: 2, error: 0.4 }, { vec: [99, 99], height: 1, error: 1.5 }, undefined,
  ], { '198.18.0.2': 4.5 });
  assert.deepEqual(s.centroid, [5, 0]);
  assert.equal(s.trained, 2);
  assert.equal(s.spread_ms, 7);
  assert.equal(s.median_error, 0.4);
  assert.deepEqual(parseNetworkSummary(JSON.parse(JSON.stringify(s))), s);
  assert.equal(parseNetworkSummary({ trained: 'x' }), undefined);
  assert.deepEqual(parseNetworkSummary({ trained: 0, spread_ms: 0, median_error: 1.5, centroid: null, probes: { a: -1, b: 'x', c: 3 } })?.probes, { c: 3 });
  assert.deepEqual(parseWorkerNetViews([{ id: 'w1', alive: true, coord: { vec: [1, 2], height: 0.5, error: 0.3 } }, { id: 7 }, { id: 'w2', coord: { vec: ['a'] } }]), [
    { id: 'w1', alive: true, location: null, coord: { vec: [1, 2], height: 0.5, error: 0.3 } },
    { id: 'w2', alive: false, location: null, coord: null },
  ]);
  const text = workersView([{ cluster_id: 'x', name: 'c1', location: '', api_url: '', active: true, status: 'active', registered_at: '', last_seen: null,
    aggregate: { network: s, workers: [{ id: 'w1', alive: true, location: '48.1,11.6', coord: { vec: [1, 2], height: 0.5, error: 0.3 } }] } }]);
  assert.match(text, /cluster c1 {2}active: 2 trained coordinates, centroid \(5\.0, 0\.0\) ms, spread 7\.0 ms, median error 0\.40/);
  assert.match(text, /198\.18\.0\.2 4\.5 ms/);
  assert.match(text, /w1 +alive +48\.1,11\.6 +\(1\.0, 2\.0\) +0\.5 +0\.30/);
});

test('worker probe output: ping reply times parsed, the median decides', () => {
  const out = '64 bytes from 198.18.0.2: icmp_seq=1 ttl=64 time=5.31 ms\n64 bytes from 198.18.0.2: icmp_seq=2 ttl=64 time=9.9 ms\n64 bytes from 198.18.0.2: icmp_seq=3 ttl=64 time=5.12 ms\n';
  assert.deepEqual(parsePingTimes(out), [5.31, 9.9, 5.12]);
  assert.equal(typicalRtt([5.31, 9.9, 5.12]), 5.31);
  assert.equal(typicalRtt([7, 3]), 3);
  assert.equal(typicalRtt([]), null);
});
