// Root's instance handling against a fake cluster link (no HTTP server): which cluster an instance is
// offered to and what its state and reason say afterwards, that an undeploy takes it back from its
// cluster, and that a route change reaches the clusters that asked about the service.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AddressAllocator } from '../../../orchestrator/root/addresses.ts';
import { ClusterRegistry } from '../../../orchestrator/root/clusters.ts';
import type { ClusterLink } from '../../../orchestrator/root/cluster-client.ts';
import { InstanceManager } from '../../../orchestrator/root/instances.ts';
import { Metrics } from '../../../orchestrator/root/metrics.ts';
import { SqliteStore } from '../../../orchestrator/root/sqlite-store.ts';
import type { ClusterAggregate, ClusterRecord, ServiceRecord } from '../../../orchestrator/root/store.ts';
import type { Microservice } from '../../../orchestrator/descriptor/types.ts';
import type { PlacementAnswer, PlacementOffer, RemotePeer, RouteInfo } from '../../../orchestrator/protocol/root-cluster.ts';
import { memoryLogger } from '../../../orchestrator/protocol/log.ts';

const agg = (vcpus: number): ClusterAggregate => ({
  free: { vcpus, memory_mb: 4096, gpus: 0 }, workers_active: 1, virtualizations: ['process'], architectures: ['amd64'],
});

/** Records every call; `answer` decides each cluster's reply to an offer. */
class FakeLink implements ClusterLink {
  readonly calls: string[] = [];
  readonly routes: { cluster: string; route: RouteInfo }[] = [];
  answer: (cluster: ClusterRecord, offer: PlacementOffer) => PlacementAnswer = (c) => ({ accepted: true, worker_id: `${c.name}-w1` });

  async offer(cluster: ClusterRecord, offer: PlacementOffer): Promise<PlacementAnswer> {
    this.calls.push(`offer ${cluster.name} ${offer.service.service_id}/${offer.instance_n}`);
    return this.answer(cluster, offer);
  }

  async remove(cluster: ClusterRecord, serviceId: string, n: number): Promise<void> {
    this.calls.push(`remove ${cluster.name} ${serviceId}/${n}`);
  }

  async pushRoute(cluster: ClusterRecord, route: RouteInfo): Promise<void> {
    this.calls.push(`route ${cluster.name} ${route.service_id}`);
    this.routes.push({ cluster: cluster.name, route });
  }

  async pushPeers(cluster: ClusterRecord, peers: RemotePeer[]): Promise<void> {
    this.calls.push(`peers ${cluster.name} ${peers.length}`);
  }
}

async function setup() {
  const link = new FakeLink();
  const store = new SqliteStore(':memory:');
  const reg = await new ClusterRegistry(store, Date.now, 15_000).load();
  const m = new InstanceManager(store, await new AddressAllocator(store).load(), reg, memoryLogger(), new Metrics(), { link });
  await store.insertUser({ id: 'u1', username: 'u', password_hash: 'x', role: 'admin', created_at: 0 });
  await store.insertApplication({ id: 'a1', owner: 'u1', name: 'app', namespace: 'ns', desc: '', created_at: 0 });
  const service: ServiceRecord = {
    id: 's1', app_id: 'a1', owner: 'u1', name: 'web', namespace: 'ns',
    spec: { virtualization: 'process', vcpus: 1, memory: 64, vgpus: 0, constraints: [], connectivity: [], cmd: ['sleep', '1'] } as unknown as Microservice,
    rr_ip: '10.30.0.1', rr_ip_v6: 'fdff::1', closest_ip: '10.30.0.2', closest_ip_v6: 'fdff::2', next_n: 0, created_at: 0,
  };
  await store.insertService(service);
  // Best fit first: the cluster with less room left ranks first.
  const small = (await reg.register('small', '48.1,11.5', 'http://unused.invalid/')).record;
  const big = (await reg.register('big', '48.1,11.5', 'http://unused.invalid/')).record;
  await reg.report(small.id, agg(2));
  await reg.report(big.id, agg(16));
  const settled = async (what: string, f: () => boolean | Promise<boolean>): Promise<void> => {
    for (let i = 0; i < 200 && !(await f()); i++) await new Promise((r) => setImmediate(r));
    assert.ok(await f(), `never happened: ${what}`);
  };
  return {
    link, store, reg, m, service, small, big, settled,
    close: async () => {
      await m.close();
      reg.close();
      await store.close();
    },
  };
}

test('an instance is offered best cluster first; a decline goes on to the next, and the reason says both', async () => {
  const s = await setup();
  try {
    let asked = 0;
    s.link.answer = (c) => (asked++ === 0
      ? { accepted: false, status: 'NO_QUALIFIED_WORKER', reason: 'no worker runs process' }
      : { accepted: true, worker_id: `${c.name}-w1` });
    const i = (await s.m.deploy(s.service, 'requested by u'));
    await s.settled('placed', async () => (await s.store.instance('s1', i.n))?.state === 'CLUSTER_SCHEDULED');
    const offers = s.link.calls.filter((c) => c.startsWith('offer'));
    assert.equal(offers.length, 2, 'both clusters were asked');
    const [declined, accepted] = offers.map((o) => o.split(' ')[1]!);
    assert.notEqual(declined, accepted);
    const now = (await s.store.instance('s1', i.n))!;
    assert.equal(s.reg.get(now.cluster_id!)!.name, accepted);
    assert.equal(now.worker_id, `${accepted}-w1`);
    assert.match(now.reason, new RegExp(`placed on cluster ${accepted} \\(worker ${accepted}-w1\\)`));
    assert.match(now.reason, new RegExp(`${declined} declined: NO_QUALIFIED_WORKER no worker runs process`));
  } finally {
    await s.close();
  }
});

test('when every cluster is out of room the instance is NO_WORKER_CAPACITY; an unreachable one is named', async () => {
  const s = await setup();
  try {
    s.link.answer = (c) => {
      if (c.name === s.small.name) throw new Error('unreachable: ECONNREFUSED');
      return { accepted: false, status: 'NO_WORKER_CAPACITY', reason: 'no worker has 1 vCPU free' };
    };
    const i = (await s.m.deploy(s.service, 'requested by u'));
    await s.settled('unplaced', async () => (await s.store.instance('s1', i.n))?.state === 'NO_WORKER_CAPACITY');
    const reason = (await s.store.instance('s1', i.n))!.reason;
    assert.match(reason, /small unreachable: ECONNREFUSED/);
    assert.match(reason, /big declined: NO_WORKER_CAPACITY/);
    assert.equal((await s.m.view((await s.store.instance('s1', i.n))!)).state, 'NO_WORKER_CAPACITY');
  } finally {
    await s.close();
  }
});

test('undeploying a placed instance makes it UNDEPLOYED at once and takes it back from its cluster', async () => {
  const s = await setup();
  try {
    const i = (await s.m.deploy(s.service, 'requested by u'));
    await s.settled('placed', async () => (await s.store.instance('s1', i.n))?.state === 'CLUSTER_SCHEDULED');
    const placedOn = s.reg.get((await s.store.instance('s1', i.n))!.cluster_id!)!.name;
    await s.m.undeploy((await s.store.instance('s1', i.n))!, 'by test');
    assert.equal((await s.store.instance('s1', i.n))!.state, 'UNDEPLOYED');
    await s.settled('removed', () => s.link.calls.includes(`remove ${placedOn} s1/${i.n}`));
    const view = (await s.m.view((await s.store.instance('s1', i.n))!));
    assert.deepEqual(view.history.map((h) => h.state), ['REQUESTED', 'CLUSTER_SCHEDULED', 'UNDEPLOYED']);
  } finally {
    await s.close();
  }
});

test('a cluster that asked for a route hears when an instance starts running elsewhere; the reporter does not', async () => {
  const s = await setup();
  try {
    const i = (await s.m.deploy(s.service, 'requested by u'));
    await s.settled('placed', async () => (await s.store.instance('s1', i.n))?.state === 'CLUSTER_SCHEDULED');
    const host = s.reg.get((await s.store.instance('s1', i.n))!.cluster_id!)!;
    const other = host.id === s.small.id ? s.big : s.small;
    // The other cluster asks about the service's address: an answer, and its interest recorded.
    const answer = (await s.m.routes.route('10.30.0.1', other.id));
    assert.equal(answer?.service_id, 's1');
    assert.deepEqual(answer?.instances, [], 'nothing runs yet');
    await s.m.applyReport(host, [{
      service_id: 's1', instance_n: i.n, state: 'RUNNING', worker: 'w1', ns_ip: '10.18.1.2', tunnel_endpoint: '198.18.0.9:50103',
    }]);
    await s.settled('route pushed', () => s.link.routes.length > 0);
    assert.deepEqual(s.link.routes.map((r) => r.cluster), [other.name]);
    assert.deepEqual(s.link.routes[0]!.route.instances.map((x) => [x.n, x.ns_ip, x.worker_id]), [[i.n, '10.18.1.2', 'w1']]);
  } finally {
    await s.close();
  }
});

test('a revoked cluster\'s instances go back to REQUESTED and are placed on another cluster; it is asked to remove its copies', async () => {
  const s = await setup();
  try {
    const i = (await s.m.deploy(s.service, 'requested by u'));
    await s.settled('placed', async () => (await s.store.instance('s1', i.n))?.state === 'CLUSTER_SCHEDULED');
    const first = (await s.store.instance('s1', i.n))!;
    const victim = s.reg.get(first.cluster_id!)!;
    const other = victim.id === s.small.id ? s.big : s.small;
    // It ran there (as its cluster's report says).
    await s.m.applyReport(victim, [{ service_id: 's1', instance_n: i.n, state: 'RUNNING', reason: 'started', worker: `${victim.name}-w1`, ts: Date.now(), tunnel_endpoint: '198.18.0.5:50103' }]);
    const formerly = { ...victim };
    await s.reg.revoke(victim.id);
    s.link.calls.length = 0;
    assert.equal(await s.m.replaceFromRevoked(formerly, `cluster ${victim.name} was revoked`), 1);
    await s.settled('placed elsewhere', async () => (await s.store.instance('s1', i.n))?.cluster_id === other.id);
    const now = (await s.store.instance('s1', i.n))!;
    assert.equal(now.state, 'CLUSTER_SCHEDULED');
    assert.equal(now.worker_id, `${other.name}-w1`);
    assert.equal(now.tunnel_endpoint, null, 'nothing of the old placement is left');
    assert.ok(!s.link.calls.some((c) => c.startsWith(`offer ${victim.name}`)), 'the revoked cluster is not offered it again');
    await s.settled('old copy removed', () => s.link.calls.includes(`remove ${victim.name} s1/${i.n}`));
    const history = (await s.m.view(now)).history;
    assert.deepEqual(history.map((h) => h.state), ['REQUESTED', 'CLUSTER_SCHEDULED', 'RUNNING', 'REQUESTED', 'CLUSTER_SCHEDULED']);
    assert.match(history[3]!.reason, new RegExp(`cluster ${victim.name} was revoked: re-placing it \\(it ran on worker ${victim.name}-w1\\)`));
    // A late report from the revoked cluster cannot claim it back: it is placed elsewhere now.
    const answer = await s.m.applyReport(formerly, [{ service_id: 's1', instance_n: i.n, state: 'RUNNING', reason: 'still here', worker: `${victim.name}-w1`, ts: Date.now() }]);
    assert.deepEqual(answer.undeploy, [{ service_id: 's1', instance_n: i.n }]);
  } finally {
    await s.close();
  }
});
