// Which workers root lists to a cluster as remote tunnel peers (report answer `peers`), and the
// tunnel ids in its cross-cluster route answers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InstanceManager } from '../../../orchestrator/root/instances.ts';
import { PeerAnnouncer, RemotePeerSet, seesChange } from '../../../orchestrator/root/remote-peers.ts';
import type { RemotePeer } from '../../../orchestrator/root-cluster-messages.ts';
import { Metrics } from '../../../orchestrator/root/metrics.ts';
import { memoryLogger } from '../../../orchestrator/mqtt/log.ts';
import type { AddressAllocator } from '../../../orchestrator/root/addresses.ts';
import type { ClusterRegistry } from '../../../orchestrator/root/clusters.ts';
import type { InstanceRecord, RootStore, WorkerSubnetRecord } from '../../../orchestrator/root/store.ts';
import type { InstanceState } from '../../../orchestrator/root/lifecycle.ts';

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

test('a cluster hears of the other clusters\' workers that run instances, once each, with their tunnel ids', () => {
  const m = manager([
    inst(0, 'cb', 'wb'), inst(1, 'cb', 'wb'), inst(2, 'ca', 'wa'), inst(3, 'cb', 'wb2', 'FAILED'),
    inst(4, 'cb', 'unknown-subnet'), inst(5, 'cb', 'wb2', 'RUNNING', null), inst(6, null, null),
  ]);
  assert.deepEqual(m.remotePeers('ca'), [{ worker_id: 'wb', cluster_id: 'cb', tunnel_id: 0x0a120200, tunnel_endpoint: '198.18.0.9:50103' }]);
  assert.deepEqual(m.remotePeers('cb').map((p) => [p.worker_id, p.tunnel_id]), [['wa', 0x0a120100]]);
});

test('route answers carry tunnel ids and leave out instances a worker could not reach yet', () => {
  const m = manager([inst(0, 'cb', 'wb'), inst(1, 'cb', 'wb2', 'RUNNING', null), inst(2, null, null)]);
  const r = m.route('10.30.0.10', 'ca');
  assert.ok(r);
  assert.deepEqual(r.instances.map((i) => [i.n, i.tunnel_id]), [[0, 0x0a120200]]);
});

test('the RUNNING instances are scanned once for any number of reports, and again after a change', () => {
  const scans = { n: 0 };
  const m = manager([inst(0, 'cb', 'wb'), inst(1, 'ca', 'wa')], scans);
  for (let i = 0; i < 50; i++) {
    m.remotePeers('ca');
    m.remotePeers('cb');
  }
  assert.equal(scans.n, 1);
  m.subnetsChanged();
  m.remotePeers('ca');
  assert.equal(scans.n, 2);
});

const pa: RemotePeer = { worker_id: 'wa', cluster_id: 'ca', tunnel_id: 1, tunnel_endpoint: '198.18.0.2:50103' };
const pb: RemotePeer = { worker_id: 'wb', cluster_id: 'cb', tunnel_id: 2, tunnel_endpoint: '198.18.0.3:50103' };

test('the peer set names the clusters whose workers came, went or moved, once per change', () => {
  let now: RemotePeer[] = [pa];
  const set = new RemotePeerSet(() => now);
  assert.deepEqual([...set.takeChanges()], ['ca'], 'first look: everything is new');
  assert.deepEqual([...set.takeChanges()], [], 'nothing changed since');
  now = [pa, pb];
  assert.deepEqual([...set.takeChanges()], [], 'cached until invalidated');
  set.invalidate();
  assert.deepEqual([...set.takeChanges()], ['cb'], 'a worker of cb ran its first instance');
  assert.deepEqual(set.forCluster('ca'), [pb]);
  assert.deepEqual(set.forCluster('cc'), [pa, pb]);
  now = [pa, { ...pb, tunnel_endpoint: '198.18.0.9:50103' }];
  set.invalidate();
  assert.deepEqual([...set.takeChanges()], ['cb'], 'a new endpoint is a change');
  now = [];
  set.invalidate();
  assert.deepEqual([...set.takeChanges()].sort(), ['ca', 'cb'], 'the last instances stopped');
});

test('only clusters that see a different list are pushed to', () => {
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
