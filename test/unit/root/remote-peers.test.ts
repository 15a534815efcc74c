// Which workers root lists to a cluster as remote tunnel peers (report answer `peers`), and the
// tunnel ids in its cross-cluster route answers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { InstanceManager } from '../../../orchestrator/root/instances.ts';
import { PeerAnnouncer, RemotePeerSet, seesChange } from '../../../orchestrator/root/remote-peers.ts';
import type { RemotePeer } from '../../../orchestrator/protocol/root-cluster.ts';

async function poll(what: string, f: () => Promise<boolean>, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
import { Metrics } from '../../../orchestrator/root/metrics.ts';
import { memoryLogger } from '../../../orchestrator/protocol/log.ts';
import type { AddressAllocator } from '../../../orchestrator/root/addresses.ts';
import type { ClusterRegistry } from '../../../orchestrator/root/clusters.ts';
import type { ClusterRecord, InstanceRecord, RootStore, WorkerSubnetRecord } from '../../../orchestrator/root/store.ts';
import type { InstanceState } from '../../../orchestrator/protocol/instance-states.ts';

const SUBNETS: Record<string, string> = { 'ca/wa': '10.18.1.0/24', 'cb/wb': '10.18.2.0/24', 'cb/wb2': '10.18.3.0/24' };

function inst(n: number, cluster: string | null, worker: string | null, state: InstanceState = 'RUNNING', ep: string | null = '198.18.0.9:50103'): InstanceRecord {
  return {
    service_id: 's1', n, state, reason: '', cluster_id: cluster, worker_id: worker, instance_ip: `10.30.0.${n + 10}`, instance_ip_v6: '',
    ns_ip: worker ? '10.18.2.2' : null, ns_ip_v6: null, tunnel_endpoint: worker ? ep : null, created_at: 0, updated_at: 0,
  };
}

function manager(instances: InstanceRecord[], scans = { n: 0 }): InstanceManager {
  // Only what remotePeers and route answers read; the rest of the store is never called here.
  const store = {
    countInstancesByState: () => new Map(),
    instancesInState: (states: InstanceState[]) => {
      scans.n++;
      return instances.filter((i) => states.includes(i.state));
    },
    subnet: (c: string, w: string): WorkerSubnetRecord | undefined => {
      const s = SUBNETS[`${c}/${w}`];
      return s ? { cluster_id: c, worker_id: w, subnet_v4: s, subnet_v6: '', block: 0, created_at: 0 } as WorkerSubnetRecord : undefined;
    },
    addressOwner: () => ({ address: '10.30.0.10', family: 4, kind: 'rr', service_id: 's1', instance_n: null }),
    service: () => ({ id: 's1', app_id: 'a1', name: 'web', namespace: 'demo', rr_ip: '10.30.0.1', rr_ip_v6: '', closest_ip: '10.30.0.2', closest_ip_v6: '' }),
    application: () => ({ id: 'a1', name: 'app', namespace: 'demo' }),
    listInstances: () => instances,
  } as unknown as RootStore;
  return new InstanceManager(store, {} as AddressAllocator, {} as ClusterRegistry, memoryLogger(), new Metrics());
}

test('a cluster hears of the other clusters\' workers that run instances, once each, with their tunnel ids', async () => {
  const m = manager([
    inst(0, 'cb', 'wb'), inst(1, 'cb', 'wb'), inst(2, 'ca', 'wa'), inst(3, 'cb', 'wb2', 'FAILED'),
    inst(4, 'cb', 'unknown-subnet'), inst(5, 'cb', 'wb2', 'RUNNING', null), inst(6, null, null),
  ]);
  assert.deepEqual((await m.peers.forCluster('ca')), [{ worker_id: 'wb', cluster_id: 'cb', tunnel_id: 0x0a120200, tunnel_endpoint: '198.18.0.9:50103' }]);
  assert.deepEqual((await m.peers.forCluster('cb')).map((p) => [p.worker_id, p.tunnel_id]), [['wa', 0x0a120100]]);
});

test('route answers carry tunnel ids and leave out instances a worker could not reach yet', async () => {
  const m = manager([inst(0, 'cb', 'wb'), inst(1, 'cb', 'wb2', 'RUNNING', null), inst(2, null, null)]);
  const r = (await m.routes.route('10.30.0.10', 'ca'));
  assert.ok(r);
  assert.deepEqual(r.instances.map((i) => [i.n, i.tunnel_id]), [[0, 0x0a120200]]);
});

test('the RUNNING instances are scanned once for any number of reports, and again after a change', async () => {
  const scans = { n: 0 };
  const m = manager([inst(0, 'cb', 'wb'), inst(1, 'ca', 'wa')], scans);
  for (let i = 0; i < 50; i++) {
    await m.peers.forCluster('ca');
    await m.peers.forCluster('cb');
  }
  assert.equal(scans.n, 1);
  m.peers.invalidate();
  await m.peers.forCluster('ca');
  assert.equal(scans.n, 2);
});

const pa: RemotePeer = { worker_id: 'wa', cluster_id: 'ca', tunnel_id: 1, tunnel_endpoint: '198.18.0.2:50103' };
const pb: RemotePeer = { worker_id: 'wb', cluster_id: 'cb', tunnel_id: 2, tunnel_endpoint: '198.18.0.3:50103' };

test('the peer set names the clusters whose workers came, went or moved, once per change', async () => {
  let now: RemotePeer[] = [pa];
  const set = new RemotePeerSet(() => now);
  assert.deepEqual([...(await set.takeChanges())], ['ca'], 'first look: everything is new');
  assert.deepEqual([...(await set.takeChanges())], [], 'nothing changed since');
  now = [pa, pb];
  assert.deepEqual([...(await set.takeChanges())], [], 'cached until invalidated');
  set.invalidate();
  assert.deepEqual([...(await set.takeChanges())], ['cb'], 'a worker of cb ran its first instance');
  assert.deepEqual((await set.forCluster('ca')), [pb]);
  assert.deepEqual((await set.forCluster('cc')), [pa, pb]);
  now = [pa, { ...pb, tunnel_endpoint: '198.18.0.9:50103' }];
  set.invalidate();
  assert.deepEqual([...(await set.takeChanges())], ['cb'], 'a new endpoint is a change');
  now = [];
  set.invalidate();
  assert.deepEqual([...(await set.takeChanges())].sort(), ['ca', 'cb'], 'the last instances stopped');
});

test('the set\'s version grows with each change and only then, and starts from the clock', async () => {
  let now: RemotePeer[] = [pa];
  const set = new RemotePeerSet(() => now);
  const before = Date.now();
  const v1 = (await set.version());
  assert.ok(v1 >= before, 'a restarted root counts on from where its clusters last heard it');
  set.invalidate();
  assert.equal((await set.version()), v1, 'the same set after a rescan keeps its version');
  now = [pb, pa];
  set.invalidate();
  const v2 = (await set.version());
  assert.ok(v2 > v1, 'a worker came');
  now = [pa, pb];
  set.invalidate();
  assert.equal((await set.version()), v2, 'order does not make a change');
  now = [pa];
  set.invalidate();
  assert.ok((await set.version()) > v2, 'it went again');
});

test('only clusters that see a different list are pushed to', async () => {
  assert.equal(seesChange('ca', new Set(['cb'])), true);
  assert.equal(seesChange('cb', new Set(['cb'])), false, "a cluster's own workers are not its remote peers");
  assert.equal(seesChange('cb', new Set(['ca', 'cb'])), true);
  assert.equal(seesChange('ca', new Set()), false);
});

test('pushes to one cluster go one at a time, the last one with the list as it is then; failures are reported', async () => {
  const sent: string[] = [];
  const ends: Array<(ok: boolean) => void> = [];
  const results: Array<[string, boolean]> = [];
  let list = 'v1';
  const a = new PeerAnnouncer((id) => {
    sent.push(`${id}:${list}`);
    return new Promise<void>((resolve, reject) => ends.push((ok) => (ok ? resolve() : reject(new Error('refused')))));
  }, (id, err) => results.push([id, err === undefined]));
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 10; i++) await Promise.resolve();
  };
  a.announce('c1');
  a.announce('c2');
  list = 'v2';
  a.announce('c1');
  list = 'v3';
  a.announce('c1');
  assert.deepEqual(sent, ['c1:v1', 'c2:v1'], 'one push per cluster in flight');
  ends.shift()!(false);
  await settle();
  assert.deepEqual(sent, ['c1:v1', 'c2:v1', 'c1:v3'], 'the follow-up carries the newest list, once');
  ends.shift()!(true);
  ends.shift()!(true);
  await settle();
  assert.deepEqual(results, [['c1', false], ['c2', true], ['c1', true]]);
  assert.equal(a.busy, 0);
  a.close();
  a.announce('c1');
  assert.equal(sent.length, 3, 'nothing after close()');
});

test('a push whose report throws still lets the follow-up push go out', async () => {
  const sent: string[] = [];
  let release: () => void = () => {};
  const a = new PeerAnnouncer((id) => {
    sent.push(id);
    return sent.length === 1 ? new Promise<void>((r) => (release = r)) : Promise.resolve();
  }, () => {
    throw new Error('reporter broke');
  });
  a.announce('c1');
  a.announce('c1');
  release();
  for (let i = 0; i < 10; i++) await Promise.resolve();
  assert.deepEqual(sent, ['c1', 'c1']);
  assert.equal(a.busy, 0);
  a.close();
});

test('a report that gives a worker its first RUNNING instance pushes the new peers to the other active clusters, not to the reporter', async () => {
  // The clusters' APIs: one loopback server that records what root posts, by cluster.
  const got: Array<{ cluster: string; path: string; auth: string; body: { peers: RemotePeer[] } }> = [];
  const server = createServer((req, res) => {
    let text = '';
    req.on('data', (c: Buffer) => (text += c.toString()));
    req.on('end', async () => {
      const [, cluster, ...rest] = (req.url ?? '').split('/');
      got.push({ cluster: cluster!, path: rest.join('/'), auth: req.headers.authorization ?? '', body: JSON.parse(text) as { peers: RemotePeer[] } });
      res.setHeader('content-type', 'application/json');
      res.end('{"ok":true}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const port = (server.address() as AddressInfo).port;
    const record = (id: string, lastSeen: number): ClusterRecord => ({
      id, name: id, location: '', api_url: `http://127.0.0.1:${port}/${id}/`, token: `tok-${id}`, registered_at: 0, last_seen: lastSeen, aggregate: null,
    });
    const clusters = [record('ca', 1), record('cb', 1), record('cc', 1), record('cold', 0)];
    const registry = {
      list: () => clusters, get: (id: string) => clusters.find((c) => c.id === id), isActive: (c: ClusterRecord) => c.last_seen > 0,
    } as unknown as ClusterRegistry;
    const instances = [inst(0, 'cb', 'wb', 'NODE_SCHEDULED'), inst(1, 'ca', 'wa')];
    const store = {
      countInstancesByState: () => new Map(),
      instancesInState: (states: InstanceState[]) => instances.filter((i) => states.includes(i.state)),
      instance: (sid: string, n: number) => instances.find((i) => i.service_id === sid && i.n === n),
      subnet: (c: string, w: string): WorkerSubnetRecord | undefined =>
        SUBNETS[`${c}/${w}`] ? { cluster_id: c, worker_id: w, subnet_v4: SUBNETS[`${c}/${w}`]!, subnet_v6: '', block: 0, created_at: 0 } : undefined,
      transaction: <T>(f: () => T): T => f(),
      updateInstance: () => {},
      addInstanceEvent: () => {},
      recordTransition: async () => {},
    } as unknown as RootStore;
    const m = new InstanceManager(store, {} as AddressAllocator, registry, memoryLogger(), new Metrics());
    // What everybody has been told already (e.g. by their last report answers).
    await m.applyReport(clusters[0]!, []);
    // Those first pushes (to cb and cc) must have landed before counting the next ones.
    await poll('first pushes arrived', async () => got.length >= 2, 5000);
    await new Promise((r) => setTimeout(r, 100));
    got.length = 0;

    await m.applyReport(clusters[1]!, [{ service_id: 's1', instance_n: 0, state: 'RUNNING', worker: 'wb', tunnel_endpoint: '198.18.0.9:50103' }]);
    assert.deepEqual((await m.peers.forCluster('cb')).map((p) => p.worker_id), ['wa'], "the reporter's answer is computed as before");
    assert.equal(got.length, 0, 'the pushes do not hold up the report answer');
    await poll('pushes arrived', async () => got.length >= 2, 5000);
    await new Promise((r) => setTimeout(r, 100));
    const byCluster = Object.fromEntries(got.map((g) => [g.cluster, g]));
    assert.deepEqual(Object.keys(byCluster).sort(), ['ca', 'cc'], 'every other active cluster, once; not the reporter, not an inactive one');
    assert.equal(byCluster.ca!.path, 'api/peers');
    assert.equal(byCluster.ca!.auth, 'Bearer tok-ca');
    assert.deepEqual(byCluster.ca!.body.peers.map((p) => p.worker_id), ['wb'], "ca's own worker is not its remote peer");
    assert.deepEqual(byCluster.cc!.body.peers.map((p) => p.worker_id), ['wa', 'wb']);

    got.length = 0;
    await m.applyReport(clusters[1]!, [{ service_id: 's1', instance_n: 0, state: 'RUNNING', worker: 'wb', tunnel_endpoint: '198.18.0.9:50103' }]);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(got.length, 0, 'a report that changes nothing pushes nothing');
    await m.close();
  } finally {
    server.close();
  }
});
