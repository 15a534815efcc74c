// Which workers root lists to a cluster as remote tunnel peers (report answer `peers`), and the
// tunnel ids in its cross-cluster route answers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InstanceManager } from '../../../orchestrator/root/instances.ts';
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

function manager(instances: InstanceRecord[]): InstanceManager {
  // Only what remotePeers and route answers read; the rest of the store is never called here.
  const store = {
    countInstancesByState: () => new Map(),
    instancesInState: (states: InstanceState[]) => instances.filter((i) => states.includes(i.state)),
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
