// Root's use of the clusters' network summaries (SPEC §12): `latency` targets rank clusters by their
// workers' measurements, connectivity latency by whether the target's cluster is compact enough, and
// an `area` given as coordinates rules out clusters beyond the fibre bound.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rankClusters, networkRank, type ClusterView, type InstanceDemand } from '../../../orchestrator/root/scheduler.ts';
import type { NetworkSummary } from '../../../orchestrator/protocol/network.ts';

function cluster(name: string, network?: Partial<NetworkSummary>, location: ClusterView['location'] = null): ClusterView {
  return {
    id: name, name, active: true, location,
    aggregate: {
      free: { vcpus: 4, memory_mb: 4096, gpus: 0 }, workers_active: 2, virtualizations: ['process'], architectures: ['amd64'],
      ...(network && { network: { trained: 2, centroid: [0, 0], spread_ms: 5, median_error: 0.2, probes: {}, ...network } }),
    },
  };
}
const demand = (over: Partial<InstanceDemand>): InstanceDemand => ({ virtualization: 'process', vcpus: 1, memory: 100, vgpus: 0, constraints: [], ...over });
const names = (cs: ClusterView[]) => cs.map((c) => c.name);
const USER = '203.0.113.7';

test('latency target: measured within first (lowest RTT first), then unmeasured, then measured too far', () => {
  const d = demand({ constraints: [{ type: 'latency', target: USER, threshold: 15 }] });
  const r = rankClusters(d, [
    cluster('far', { probes: { [USER]: 40 } }), cluster('unknown'), cluster('near', { probes: { [USER]: 9 } }),
    cluster('nearest', { probes: { [USER]: 4 } }), cluster('other-target', { probes: { '198.51.100.1': 1 } }),
  ]);
  assert.deepEqual(names(r.candidates), ['nearest', 'near', 'other-target', 'unknown', 'far']);
  // Nobody is rejected on a measurement: a cluster measures again when offered and declines with its RTTs.
  assert.deepEqual(r.rejected, []);
});

test('connectivity latency: the target\'s cluster first when its spread fits the threshold, before a wider one, before others', () => {
  const near = [{ name: 'db', clusterIds: new Set(['tight', 'wide']), constraints: [{ type: 'latency' as const, threshold: 10 }] }];
  const d = demand({ near });
  const cs = [cluster('none', { spread_ms: 1 }), cluster('wide', { spread_ms: 30 }), cluster('tight', { spread_ms: 4 }), cluster('nosummary')];
  assert.deepEqual(names(rankClusters(d, cs).candidates), ['tight', 'wide', 'none', 'nosummary']);
  assert.deepEqual(networkRank(cs[2]!, d), { tier: 0, ms: 0 });
  assert.deepEqual(networkRank(cs[1]!, d), { tier: 1, ms: 0 });
  assert.deepEqual(networkRank(cs[0]!, d), { tier: 2, ms: 0 });
});

test('latency area: a cluster beyond the fibre bound plus margin is rejected with the distance', () => {
  const d = demand({ constraints: [{ type: 'latency', area: '48.14,11.58,20', threshold: 5 }] });
  const r = rankClusters(d, [
    cluster('munich', undefined, { lat: 48.1, long: 11.6, radius: 10 }),
    cluster('berlin', undefined, { lat: 52.52, long: 13.4, radius: 10 }),
  ]);
  assert.deepEqual(names(r.candidates), ['munich']);
  assert.match(r.rejected[0]!.reason, /berlin|is \d+ km from area 48\.14,11\.58,20: RTT at least 5\.\d ms > 5 ms/);
  assert.equal(r.rejected[0]!.cluster, 'berlin');
});

test('descriptor: a latency constraint takes a target address; a name or a malformed one is refused with its path', async () => {
  const { validateMicroservice } = await import('../../../orchestrator/descriptor/validate.ts');
  const { parseCidr } = await import('../../../orchestrator/descriptor/ip.ts');
  const ctx = { serviceRangeV4: parseCidr('10.30.0.0/16'), serviceRangeV6: parseCidr('fdc0:30::/32'), applicationIds: 'empty' as const };
  const ms = (c: Record<string, unknown>) => ({ microservice_name: 'x', microservice_namespace: 'y', virtualization: 'process', cmd: ['true'], constraints: [c] });
  const ok = validateMicroservice(ms({ type: 'latency', target: '203.0.113.7', threshold: 15 }), ctx);
  assert.ok(ok.ok, JSON.stringify(ok));
  assert.deepEqual(ok.ok && ok.value.constraints, [{ type: 'latency', target: '203.0.113.7', threshold: 15 }]);
  assert.ok(validateMicroservice(ms({ type: 'latency', target: '2001:db8::7', threshold: 15 }), ctx).ok);
  const bad = validateMicroservice(ms({ type: 'latency', target: 'users.example', threshold: 15 }), ctx);
  assert.ok(!bad.ok && bad.errors.some((e) => e.path === '/constraints/0/target' && /IPv4 or IPv6 address/.test(e.message)), JSON.stringify(bad));
  const none = validateMicroservice(ms({ type: 'latency', threshold: 15 }), ctx);
  assert.ok(!none.ok && none.errors.some((e) => /needs `target`/.test(e.message)), JSON.stringify(none));
});
