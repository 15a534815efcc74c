// The cluster's managers over one instance index, with a fake bus (a list of what they publish): no
// broker, no root. Placement and re-placement after a worker's death, reconcile against a heartbeat's
// inventory, and route pushes to interested workers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InstanceIndex } from '../../../orchestrator/cluster/instance-index.ts';
import { newCounters, type ClusterContext } from '../../../orchestrator/cluster/context.ts';
import { PeerDistribution } from '../../../orchestrator/cluster/peer-distribution.ts';
import { RouteService } from '../../../orchestrator/cluster/route-service.ts';
import { Placer } from '../../../orchestrator/cluster/placer.ts';
import { WorkerRegistry } from '../../../orchestrator/cluster/worker-registry.ts';
import { topics } from '../../../orchestrator/mqtt/topics.ts';
import type { Heartbeat, InventoryEntry } from '../../../orchestrator/mqtt/messages.ts';
import type { PlacementOffer } from '../../../orchestrator/protocol/root-cluster.ts';
import { memoryLogger } from '../../../orchestrator/protocol/log.ts';

const hb = (instances: InventoryEntry[] = [], free = 4): Heartbeat => ({
  ts: 0, seq: 1, arch: 'amd64', virtualizations: ['process'], location: '48,11',
  cpu: { cores: 4, free, usage_pct: 0 }, memory_mb: { total: 4096, free: 2048 }, instances, tunnel_endpoint: '198.18.0.2:50103',
});

const offer = (n: number): PlacementOffer => ({
  service: {
    service_id: 's1', app: 'app', appns: 'ns', svc: 'web', svcns: 'ns',
    microservice: { virtualization: 'process', vcpus: 1, memory: 64, cmd: ['sleep', '60'] },
    rr_ip: '10.30.0.1', closest_ip: '10.30.0.2',
  },
  instance_n: n, instance_ip: `10.30.0.${10 + n}`,
});

function setup() {
  const published: { topic: string; payload: string }[] = [];
  const registry = new WorkerRegistry(3000);
  const index = new InstanceIndex();
  const dead: string[] = [];
  const ctx: ClusterContext = {
    name: 'c1', log: memoryLogger(), index, registry, counters: newCounters(),
    publish: (topic, payload) => published.push({ topic, payload }),
    clusterId: () => 'cid-1',
    saveSoon: () => {},
  };
  const peers = new PeerDistribution(ctx, undefined);
  const routes = new RouteService(ctx, undefined, (w) => peers.tunnelIdOf(w));
  const placer = new Placer(ctx, routes, { workerDead: (id) => dead.push(id) });
  // What the cluster itself does on a transition that matters here: push a route that changed.
  index.onTransition((ci, t, from) => {
    if (from === 'RUNNING' || t.state === 'RUNNING') routes.pushRoute(ci.offer.service.service_id);
  });
  const on = (topic: string) => published.filter((p) => p.topic === topic).map((p) => JSON.parse(p.payload) as Record<string, unknown>);
  return { published, registry, index, ctx, peers, routes, placer, dead, on };
}

test('an offer goes to a live worker with room, which gets the deploy order; a repeated offer is the same answer', () => {
  const s = setup();
  s.registry.heartbeat('w1', hb());
  const a = s.placer.place(offer(0));
  assert.deepEqual(a, { accepted: true, worker_id: 'w1' });
  assert.equal(s.index.get('s1#0')?.lifecycle.state, 'NODE_SCHEDULED');
  assert.equal(s.on(topics.deploy('w1')).length, 1);
  assert.deepEqual(s.placer.place(offer(0)), { accepted: true, worker_id: 'w1' });
  assert.equal(s.on(topics.deploy('w1')).length, 1, 'no second order for the same instance');
  s.peers.close();
});

test('with no live worker the offer is declined with a reason and nothing is published', () => {
  const s = setup();
  const a = s.placer.place(offer(0));
  assert.equal(a.accepted, false);
  assert.ok(!a.accepted && a.reason.length > 0);
  assert.equal(s.published.length, 0);
  assert.equal(s.index.size, 0);
  s.peers.close();
});

test('a dead worker\'s running instance is re-placed on another worker and its route withdrawn meanwhile', () => {
  const s = setup();
  s.registry.heartbeat('w1', hb(), 0);
  s.placer.place(offer(0));
  const ci = s.index.get('s1#0')!;
  s.placer.onJob('w1', { service_id: 's1', instance_n: 0, state: 'RUNNING', reason: 'pid 42', ts: Date.now(), ns_ip: '10.18.1.2' });
  assert.equal(ci.lifecycle.state, 'RUNNING');
  s.registry.heartbeat('w2', hb());
  const w1 = s.registry.workers.get('w1')!;
  w1.alive = false;
  s.placer.onWorkerDead(w1);
  assert.deepEqual(s.dead, ['w1']);
  assert.equal(ci.worker, 'w2');
  assert.equal(ci.lifecycle.state, 'NODE_SCHEDULED');
  assert.match(ci.lifecycle.last.reason, /re-placed after worker w1 silent/);
  assert.equal(s.on(topics.deploy('w2')).length, 1);
  const last = s.on(topics.serviceUpdates('s1')).at(-1) as { type: string; route?: { instances: unknown[] } };
  assert.ok(last.type === 'route_withdraw' || last.route?.instances.length === 0, 'no instance runs until w2 reports');
  s.peers.close();
});

test('reconcile: a stray instance is removed from the worker, a missing one is ordered again', () => {
  const s = setup();
  s.registry.heartbeat('w1', hb());
  s.placer.place(offer(0));
  s.published.length = 0;
  // The heartbeat lists an instance the cluster never placed, and not s1#0 (its deploy was just sent,
  // so it is not repeated within the resend limit).
  s.placer.reconcile('w1', [{ service_id: 'other', instance_n: 3, state: 'RUNNING' } as InventoryEntry]);
  const removes = s.on(topics.remove('w1'));
  assert.deepEqual(removes.map((r) => [r.service_id, r.instance_n]), [['other', 3]]);
  assert.match(String(removes[0]!.reason), /unknown to the cluster/);
  assert.equal(s.on(topics.deploy('w1')).length, 0, 'the deploy sent a moment ago is not repeated yet');
  s.peers.close();
});

test('a worker that declares interest gets the service\'s route; a route from root names other clusters\' workers apart', () => {
  const s = setup();
  s.registry.heartbeat('w1', hb());
  s.placer.place(offer(0));
  s.placer.onJob('w1', { service_id: 's1', instance_n: 0, state: 'RUNNING', reason: 'pid 42', ts: Date.now(), ns_ip: '10.18.1.2' });
  s.published.length = 0;
  s.routes.onInterest('w9', { type: 'interest_add', service_id: 's1' });
  assert.deepEqual(s.routes.interestedIn('s1'), ['w9']);
  const pushed = s.on(topics.serviceUpdates('s1')) as { type: string; route: { instances: { worker_id: string }[] } }[];
  assert.deepEqual(pushed.map((u) => [u.type, u.route.instances.map((i) => i.worker_id)]), [['route_update', ['w1']]]);
  // Another caller that just learned the route within the same second (its table answer came before it
  // listened to the service's updates) still gets it, on its own topic, without a second broadcast.
  s.routes.onInterest('w8', { type: 'interest_add', service_id: 's1' });
  assert.equal(s.on(topics.serviceUpdates('s1')).length, 1);
  const own = s.on(topics.tableQueryResult('w8')) as { type: string; route: { instances: { worker_id: string }[] } }[];
  assert.deepEqual(own.map((u) => [u.type, u.route.instances.map((i) => i.worker_id)]), [['route_update', ['w1']]]);
  s.routes.routeFromRoot({
    service_id: 's2', name: 'app.ns.db.ns', rr_ip: '10.30.1.1', rr_ip_v6: 'fdff::1:1', closest_ip: '10.30.1.2', closest_ip_v6: 'fdff::1:2',
    instances: [{
      n: 0, instance_ip: '10.30.1.10', instance_ip_v6: 'fdff::1:10', ns_ip: '10.19.0.2', ns_ip_v6: null,
      worker_id: 'w1', cluster_id: 'cid-2', tunnel_endpoint: '198.18.1.2:50103', tunnel_id: 0x0a130000,
    }],
  });
  const update = s.on(topics.serviceUpdates('s2')).at(-1) as { type: string; route: { instances: { worker_id: string }[] } };
  assert.equal(update.type, 'route_update');
  assert.deepEqual(update.route.instances.map((i) => i.worker_id), ['w1@cid-2'], 'not this cluster\'s own w1');
  s.peers.close();
});

test('a worker\'s progress within a state (pull bytes) becomes the instance\'s reason and is passed on, without a history entry', () => {
  const s = setup();
  const progress: string[] = [];
  s.index.onProgress((_ci, t) => progress.push(`${t.state} ${t.reason}`));
  s.registry.heartbeat('w1', hb());
  s.placer.place(offer(0));
  const ci = s.index.get('s1#0')!;
  const job = (state: 'CREATING' | 'RUNNING', reason: string) => s.placer.onJob('w1', { service_id: 's1', instance_n: 0, state, reason, ts: Date.now() });
  job('CREATING', 'creating namespace and cgroup');
  const entries = ci.lifecycle.history.length;
  job('CREATING', 'pulling docker.io/library/nginx:latest: 1.0 of 9.8 MB');
  job('CREATING', 'pulling docker.io/library/nginx:latest: 1.0 of 9.8 MB');
  job('CREATING', 'pulling docker.io/library/nginx:latest: 5.0 of 9.8 MB');
  assert.deepEqual(progress, [
    'CREATING pulling docker.io/library/nginx:latest: 1.0 of 9.8 MB',
    'CREATING pulling docker.io/library/nginx:latest: 5.0 of 9.8 MB',
  ], 'each new step once; a repeat is nothing new');
  assert.equal(ci.lifecycle.history.length, entries, 'no history entry per step');
  assert.equal(ci.note, 'pulling docker.io/library/nginx:latest: 5.0 of 9.8 MB');
  job('RUNNING', 'started, pid 42');
  assert.equal(ci.note, undefined, 'a transition supersedes the progress');
  assert.equal(ci.lifecycle.state, 'RUNNING');
  s.peers.close();
});

test('after a partition an instance taken back is in its route again once its worker answers with its addresses', () => {
  const s = setup();
  s.registry.heartbeat('w1', hb(), 0);
  s.placer.place(offer(0));
  const ci = s.index.get('s1#0')!;
  s.placer.onJob('w1', { service_id: 's1', instance_n: 0, state: 'RUNNING', reason: 'started, pid 42', ts: Date.now(), ns_ip: '10.18.1.2' });
  // Cut off, and nobody else to take its instance: it waits without a worker.
  const w1 = s.registry.workers.get('w1')!;
  w1.alive = false;
  s.placer.onWorkerDead(w1);
  assert.equal(ci.worker, null);
  // Back: the heartbeat lists it running, the cluster takes it back and repeats the order; the
  // worker's answer (a reason of its own) brings the namespace address.
  s.registry.heartbeat('w1', hb([{ service_id: 's1', instance_n: 0, state: 'RUNNING' } as InventoryEntry]));
  s.placer.reconcile('w1', [{ service_id: 's1', instance_n: 0, state: 'RUNNING' } as InventoryEntry]);
  assert.equal(ci.worker, 'w1');
  assert.equal(ci.lifecycle.state, 'RUNNING');
  s.placer.onJob('w1', { service_id: 's1', instance_n: 0, state: 'RUNNING', reason: 'already running, pid 42', ts: Date.now(), ns_ip: '10.18.1.2' });
  const last = s.on(topics.serviceUpdates('s1')).at(-1) as { type: string; route?: { instances: { ns_ip: string | null }[] } };
  assert.equal(last.type, 'route_update');
  assert.deepEqual(last.route?.instances.map((i) => i.ns_ip), ['10.18.1.2'], 'callers reach it again');
  s.peers.close();
});
