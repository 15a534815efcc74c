// Root's retries of unplaced instances, through the instance manager with a real store and cluster
// registry: which reports count as more room, that a retry failing the same way adds no history,
// and that a burst of triggers is one pass. The one cluster is a fake ClusterLink that accepts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AddressAllocator } from '../../../orchestrator/root/addresses.ts';
import { ClusterRegistry, roomGrowth } from '../../../orchestrator/root/clusters.ts';
import type { ClusterLink } from '../../../orchestrator/root/cluster-client.ts';
import { InstanceManager } from '../../../orchestrator/root/instances.ts';
import { Metrics } from '../../../orchestrator/root/metrics.ts';
import { SqliteStore } from '../../../orchestrator/root/sqlite-store.ts';
import type { ClusterAggregate, ServiceRecord } from '../../../orchestrator/root/store.ts';
import type { Microservice } from '../../../orchestrator/descriptor/types.ts';
import { memoryLogger } from '../../../orchestrator/protocol/log.ts';
import { FakeClock } from './fake-clock.ts';

const agg = (vcpus: number, workers = 1, virt = ['process']): ClusterAggregate => ({
  free: { vcpus, memory_mb: 4096, gpus: 0 }, workers_active: workers, virtualizations: virt, architectures: ['amd64'],
});

test('more room: any free resource, active workers, a new virtualization or architecture; less or equal is not', async () => {
  assert.deepEqual(roomGrowth(agg(1), agg(1)), []);
  assert.deepEqual(roomGrowth(agg(2), agg(1)), []);
  assert.deepEqual(roomGrowth(agg(1), agg(1.5)), ['free vCPUs 1 → 1.5']);
  assert.deepEqual(roomGrowth(agg(1, 1), agg(0.5, 2)), ['active workers 1 → 2']);
  assert.deepEqual(roomGrowth(agg(1, 1, ['process']), agg(1, 1, ['container', 'process'])), ['runs container now']);
  const mem = { ...agg(1), free: { vcpus: 1, memory_mb: 5000, gpus: 0 } };
  assert.deepEqual(roomGrowth(agg(1), mem), ['free memory 4096 → 5000 MB']);
});

test('the registry announces more room only for an active cluster whose report grew', async () => {
  const reg = new ClusterRegistry(new SqliteStore(':memory:'), () => 1_000_000, 15_000);
  const events: string[] = [];
  reg.on('active', (c) => events.push(`active ${c.name}`));
  reg.on('room', (c, grew) => events.push(`room ${c.name}: ${grew}`));
  const { record } = (await reg.register('edge', '48.1,11.5', 'http://127.0.0.1:1'));
  await reg.report(record.id, agg(1));
  await reg.report(record.id, agg(1));
  await reg.report(record.id, agg(0.5));
  await reg.report(record.id, agg(2));
  assert.deepEqual(events, ['active edge', 'room edge: free vCPUs 0.5 → 2']);
  reg.close();
});

interface Setup {
  m: InstanceManager;
  reg: ClusterRegistry;
  store: SqliteStore;
  clock: FakeClock;
  metrics: Metrics;
  clusterId: string;
  offers: string[];
  link: ClusterLink;
  service: ServiceRecord;
  close: () => Promise<void>;
}

async function setup(): Promise<Setup> {
  const offers: string[] = [];
  // The one cluster accepts every offer; calls are written down as the HTTP requests they stand for.
  const link: ClusterLink = {
    offer: async (_c, o) => {
      offers.push(`POST /api/placements ${o.instance_n}`);
      return { accepted: true, worker_id: 'w1' };
    },
    remove: async (_c, serviceId, n) => {
      offers.push(`DELETE /api/placements/${serviceId}/${n} `);
    },
    pushRoute: async () => {},
    pushPeers: async () => {},
  };
  const store = new SqliteStore(':memory:');
  const reg = await new ClusterRegistry(store, Date.now, 15_000).load();
  const clock = new FakeClock();
  const metrics = new Metrics();
  const m = new InstanceManager(store, await new AddressAllocator(store).load(), reg, memoryLogger(), metrics, { retryClock: clock, link });
  reg.on('room', (c, grew) => m.retryUnplaced('cluster_room', `cluster ${c.name} reported more room: ${grew}`));
  reg.on('active', (c) => m.retryUnplaced('cluster_active', `cluster ${c.name} became active`));
  await store.insertUser({ id: 'u1', username: 'u', password_hash: 'x', role: 'admin', created_at: 0 });
  await store.insertApplication({ id: 'a1', owner: 'u1', name: 'app', namespace: 'ns', desc: '', created_at: 0 });
  const service: ServiceRecord = {
    id: 's1', app_id: 'a1', owner: 'u1', name: 'web', namespace: 'ns',
    spec: { virtualization: 'process', vcpus: 1, memory: 64, vgpus: 0, constraints: [], connectivity: [], cmd: ['sleep', '1'] } as unknown as Microservice,
    rr_ip: '10.30.0.1', rr_ip_v6: 'fdff::1', closest_ip: '10.30.0.2', closest_ip_v6: 'fdff::2', next_n: 0, created_at: 0,
  };
  await store.insertService(service);
  const { record } = (await reg.register('edge', '48.1,11.5', 'http://unused.invalid/'));
  await reg.report(record.id, agg(0));
  clock.advance(50); // the 'active' pass finds nothing to retry yet
  return {
    m, reg, store, clock, metrics, clusterId: record.id, offers, link, service,
    close: async () => {
      await m.close();
      reg.close();
      await store.close();
    },
  };
}

/** Waits for the manager's runs (an offer is a real HTTP round trip) and for them to end. */
async function until(what: string, f: () => boolean | Promise<boolean>, tick?: () => void): Promise<void> {
  for (let i = 0; i < 400; i++) {
    await new Promise((r) => setTimeout(r, 5));
    tick?.();
    if (await f()) break;
  }
  assert.ok(await f(), `timed out waiting for ${what}`);
}

test('a retry that fails the same way keeps the state and history and updates the reason; more room places it', async () => {
  const s = await setup();
  try {
    const inst = (await s.m.deploy(s.service, 'requested by u'));
    const view = async () => (await s.m.view((await s.store.instance('s1', inst.n))!));
    await until('NO_CLUSTER_FOUND', async () => (await view()).state === 'NO_CLUSTER_FOUND');
    assert.match((await view()).reason, /not enough free vCPUs \(0 < 1\)/);
    assert.equal((await view()).retries, 0);
    assert.ok((await view()).next_retry, 'a retry is due');

    // More room, not enough: many reports in a burst make one pass; the outcome is the same.
    for (let v = 1; v <= 5; v++) (await s.reg.report(s.clusterId, agg(v / 10)));
    s.clock.advance(50);
    await until('the retry ran', async () => (await view()).retries === 1);
    assert.match((await view()).reason, /0\.5 < 1/);
    assert.equal((await view()).state, 'NO_CLUSTER_FOUND');
    assert.deepEqual((await view()).history.map((h) => h.state), ['REQUESTED', 'NO_CLUSTER_FOUND']);
    assert.match((await view()).history[1]!.reason, /\(0 < 1\)/, 'history keeps the reason it had when it got there');
    assert.equal(s.offers.length, 0);

    // The backoff retries it without any trigger, still without history.
    s.clock.advance(20_000);
    await until('the backoff retry ran', async () => (await view()).retries === 2);
    assert.equal((await view()).history.length, 2);

    await s.reg.report(s.clusterId, agg(4));
    s.clock.advance(50);
    await until('placed', async () => (await view()).state === 'CLUSTER_SCHEDULED');
    assert.deepEqual((await view()).history.map((h) => h.state), ['REQUESTED', 'NO_CLUSTER_FOUND', 'CLUSTER_SCHEDULED']);
    assert.match((await view()).reason, /placed on cluster edge \(worker w1\); on a retry \(cluster edge reported more room: free vCPUs 0\.5 → 4\) after NO_CLUSTER_FOUND/);
    assert.deepEqual(s.offers, ['POST /api/placements 0']);
    assert.equal((await view()).next_retry, null);
    const text = await s.metrics.render();
    assert.match(text, /canopy_root_retry_passes_total\{trigger="cluster_room"\} 2/);
    assert.match(text, /canopy_root_retry_passes_total\{trigger="backoff"\} 1/);
    assert.match(text, /canopy_root_retry_attempts_total 3/);
    assert.match(text, /canopy_root_retry_placements_total 1/);
  } finally {
    await s.close();
  }
});

test('undeploying a placed instance counts its room as free at once and retries the unplaced ones', async () => {
  const s = await setup();
  try {
    await s.reg.report(s.clusterId, agg(1));
    s.clock.advance(50);
    const first = (await s.m.deploy(s.service, 'requested by u'));
    await until('#0 placed', async () => (await s.store.instance('s1', first.n))?.state === 'CLUSTER_SCHEDULED');
    // Root counts #0 against the cluster until its next report: no room for #1.
    const second = (await s.m.deploy(s.service, 'requested by u'));
    await until('#1 unplaced', async () => (await s.store.instance('s1', second.n))?.state === 'NO_CLUSTER_FOUND');
    // The cluster's report still shows no room (it has #0), so only the undeploy can say there is.
    await s.reg.report(s.clusterId, agg(0));
    await s.m.undeploy((await s.store.instance('s1', first.n))!, 'undeployed by u');
    // The trigger comes once the cluster has answered the removal: move the retry clock until then.
    await until('#1 placed', async () => (await s.store.instance('s1', second.n))?.state === 'CLUSTER_SCHEDULED', () => s.clock.advance(50));
    assert.ok(s.offers.includes('DELETE /api/placements/s1/0 '), 'the cluster was told to remove #0');
    assert.match((await s.store.instance('s1', second.n))!.reason, /on a retry \(instance 0 of service s1 was undeployed from cluster edge\)/);
  } finally {
    await s.close();
  }
});

test('a root restart keeps each unplaced instance\'s retries and backoff: retried at the time it had, not before', async () => {
  const s = await setup();
  try {
    const inst = (await s.m.deploy(s.service, 'requested by u'));
    await until('NO_CLUSTER_FOUND', async () => (await s.store.instance('s1', inst.n))?.state === 'NO_CLUSTER_FOUND');
    await s.reg.report(s.clusterId, agg(0.5));
    s.clock.advance(50);
    await until('one retry', async () => (await s.m.view((await s.store.instance('s1', inst.n))!)).retries === 1);
    const before = (await s.m.view((await s.store.instance('s1', inst.n))!));
    await s.m.close();

    // The same database, a new manager: as after a restart.
    const clock = new FakeClock();
    clock.t = s.clock.t;
    const m2 = new InstanceManager(s.store, await new AddressAllocator(s.store).load(), s.reg, memoryLogger(), new Metrics(), { retryClock: clock, link: s.link });
    try {
      await m2.resume();
      const after = (await m2.view((await s.store.instance('s1', inst.n))!));
      assert.deepEqual([after.retries, after.last_retry, after.next_retry], [before.retries, before.last_retry, before.next_retry]);
      clock.advance(Date.parse(before.next_retry!) - clock.t - 1);
      await until('nothing before its time', () => true);
      assert.equal((await m2.view((await s.store.instance('s1', inst.n))!)).retries, 1);
      clock.advance(1);
      await until('retried at its time', async () => (await m2.view((await s.store.instance('s1', inst.n))!)).retries === 2);
    } finally {
      await m2.close();
    }
  } finally {
    await s.close();
  }
});
