import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rankClusters, summarizeRejections, type ClusterView, type InstanceDemand } from '../../../orchestrator/root/scheduler.ts';

function cluster(name: string, over: Partial<ClusterView> = {}, free = { vcpus: 4, memory_mb: 4096, gpus: 0 }): ClusterView {
  return {
    id: name, name, active: true, location: null,
    aggregate: { free, workers_active: 1, virtualizations: ['process', 'container'], architectures: ['amd64'] },
    ...over,
  };
}
const demand = (over: Partial<InstanceDemand> = {}): InstanceDemand => ({ virtualization: 'process', vcpus: 1, memory: 100, vgpus: 0, constraints: [], ...over });
const names = (cs: ClusterView[]) => cs.map((c) => c.name);

test('most free capacity first, then by name for equals', () => {
  const r = rankClusters(demand(), [
    cluster('b'), cluster('a'), cluster('big', {}, { vcpus: 32, memory_mb: 65536, gpus: 0 }), cluster('small', {}, { vcpus: 1, memory_mb: 200, gpus: 0 }),
  ]);
  assert.deepEqual(names(r.candidates), ['big', 'a', 'b', 'small']);
  assert.deepEqual(r.rejected, []);
});

test('inactive, unreported and worker-less clusters are rejected with reasons', () => {
  const r = rankClusters(demand(), [
    cluster('off', { active: false }), cluster('new', { aggregate: null }),
    cluster('empty', { aggregate: { free: { vcpus: 4, memory_mb: 4096, gpus: 0 }, workers_active: 0, virtualizations: ['process'], architectures: ['amd64'] } }),
  ]);
  assert.deepEqual(r.candidates, []);
  assert.deepEqual(r.rejected.map((x) => x.cluster), ['off', 'new', 'empty']);
  assert.match(r.rejected[0]!.reason, /inactive/);
  assert.match(r.rejected[1]!.reason, /not reported/);
  assert.match(r.rejected[2]!.reason, /no active workers/);
});

test('resources: vCPUs, memory and GPUs must fit the aggregate', () => {
  const r = rankClusters(demand({ vcpus: 2, memory: 1000, vgpus: 1 }), [
    cluster('cpu', {}, { vcpus: 1, memory_mb: 4096, gpus: 1 }),
    cluster('mem', {}, { vcpus: 4, memory_mb: 999, gpus: 1 }),
    cluster('gpu', {}, { vcpus: 4, memory_mb: 4096, gpus: 0 }),
    cluster('fits', {}, { vcpus: 2, memory_mb: 1000, gpus: 1 }),
  ]);
  assert.deepEqual(names(r.candidates), ['fits']);
  assert.deepEqual(r.rejected.map((x) => x.reason.split(' (')[0]), ['not enough free vCPUs', 'not enough free memory', 'not enough free GPUs']);
});

test('virtualization and arch constraints', () => {
  const arm = cluster('arm', { aggregate: { free: { vcpus: 4, memory_mb: 4096, gpus: 0 }, workers_active: 1, virtualizations: ['process'], architectures: ['arm64'] } });
  const x86 = cluster('x86');
  assert.deepEqual(names(rankClusters(demand({ constraints: [{ type: 'arch', arch: ['arm64', 'riscv64'] }] }), [x86, arm]).candidates), ['arm']);
  assert.deepEqual(names(rankClusters(demand({ virtualization: 'container' }), [arm, x86]).candidates), ['x86']);
});

test('direct and clusters constraints select by name', () => {
  const cs = [cluster('a'), cluster('b'), cluster('c')];
  assert.deepEqual(names(rankClusters(demand({ constraints: [{ type: 'direct', cluster: 'b' }] }), cs).candidates), ['b']);
  // `node` alone leaves the cluster choice open: the cluster checks the host list.
  assert.deepEqual(names(rankClusters(demand({ constraints: [{ type: 'direct', node: 'h1' }] }), cs).candidates), ['a', 'b', 'c']);
  assert.deepEqual(names(rankClusters(demand({ constraints: [{ type: 'clusters', allowed: ['c', 'a'] }] }), cs).candidates), ['a', 'c']);
});

test('geo: within the threshold (minus the cluster radius), nearest first; no coordinates → rejected', () => {
  const munich = cluster('munich', { location: { lat: 48.14, long: 11.58, radius: 0 } });
  const augsburg = cluster('augsburg', { location: { lat: 48.37, long: 10.9, radius: 0 } });
  const berlin = cluster('berlin', { location: { lat: 52.52, long: 13.4, radius: 0 } }, { vcpus: 64, memory_mb: 65536, gpus: 0 });
  const wide = cluster('wide', { location: { lat: 52.52, long: 13.4, radius: 450 } });
  const nowhere = cluster('nowhere');
  const r = rankClusters(demand({ constraints: [{ type: 'geo', location: '48.14,11.58', threshold: 100 }] }), [berlin, augsburg, munich, wide, nowhere]);
  assert.deepEqual(names(r.candidates), ['munich', 'augsburg', 'wide']);
  assert.deepEqual(r.rejected.map((x) => x.cluster), ['berlin', 'nowhere']);
  assert.match(r.rejected[0]!.reason, /km away \(limit 100 km\)/);
});

test('latency: clusters too far for light in fibre to meet the RTT are rejected', () => {
  const near = cluster('near', { location: { lat: 48.14, long: 11.58, radius: 0 } });
  const far = cluster('far', { location: { lat: 40.71, long: -74.0, radius: 0 } });
  const r = rankClusters(demand({ constraints: [{ type: 'latency', location: '48.2,11.6', threshold: 20 }] }), [far, near]);
  assert.deepEqual(names(r.candidates), ['near']);
  assert.match(r.rejected[0]!.reason, /no RTT under 20 ms/);
});

test('connectivity: the cluster running the target first, then the nearest to one that does; unlocated clusters last, not rejected', () => {
  const munich = cluster('munich', { location: { lat: 48.14, long: 11.58, radius: 0 } }, { vcpus: 1, memory_mb: 200, gpus: 0 });
  const augsburg = cluster('augsburg', { location: { lat: 48.37, long: 10.9, radius: 0 } });
  const berlin = cluster('berlin', { location: { lat: 52.52, long: 13.4, radius: 0 } }, { vcpus: 64, memory_mb: 65536, gpus: 0 });
  const nowhere = cluster('nowhere', {}, { vcpus: 64, memory_mb: 65536, gpus: 0 });
  const all = [berlin, nowhere, augsburg, munich];
  const near = (threshold: number) => [{ name: 'db', clusterIds: new Set(['munich']), constraints: [{ type: 'latency' as const, threshold }] }];
  // Without a target in place, capacity decides.
  assert.deepEqual(names(rankClusters(demand(), all).candidates), ['berlin', 'nowhere', 'augsburg', 'munich']);
  const r = rankClusters(demand({ near: near(50) }), all);
  assert.deepEqual(names(r.candidates), ['munich', 'augsburg', 'berlin', 'nowhere']);
  assert.deepEqual(r.rejected, []);
});

test('connectivity: a cluster too far from every cluster running the target is rejected; one unlocated target cluster keeps it in', () => {
  const munich = cluster('munich', { location: { lat: 48.14, long: 11.58, radius: 0 } });
  const newYork = cluster('new-york', { location: { lat: 40.71, long: -74.0, radius: 0 } }, { vcpus: 64, memory_mb: 65536, gpus: 0 });
  const wide = cluster('wide', { location: { lat: 40.71, long: -74.0, radius: 6500 } });
  const nowhere = cluster('nowhere');
  const latency = [{ name: 'db', clusterIds: new Set(['munich']), constraints: [{ type: 'latency' as const, threshold: 20 }] }];
  const r = rankClusters(demand({ near: latency }), [newYork, wide, munich]);
  assert.deepEqual(names(r.candidates), ['munich', 'wide']);
  assert.deepEqual(r.rejected.map((x) => x.cluster), ['new-york']);
  assert.match(r.rejected[0]!.reason, /km from the nearest cluster running db: no RTT under 20 ms possible/);

  const geo = [{ name: 'db', clusterIds: new Set(['munich']), constraints: [{ type: 'geo' as const, threshold: 500 }] }];
  assert.match(rankClusters(demand({ near: geo }), [newYork, munich]).rejected[0]!.reason, /running db \(limit 500 km\)/);

  // The target also runs on a cluster without coordinates, which may be anywhere: not a reason to refuse.
  const somewhere = [{ name: 'db', clusterIds: new Set(['munich', 'nowhere']), constraints: [{ type: 'latency' as const, threshold: 20 }] }];
  const open = rankClusters(demand({ near: somewhere }), [newYork, munich, nowhere]);
  assert.deepEqual(names(open.candidates), ['munich', 'nowhere', 'new-york']);
});

test('summaries name active clusters before inactive ones and say how many more', () => {
  assert.equal(summarizeRejections([]), 'no cluster is registered');
  const s = summarizeRejections([{ cluster: 'x', reason: 'inactive (stopped reporting)' }, { cluster: 'y', reason: 'too small' }], 1);
  assert.equal(s, 'y: too small; and 1 more');
});
