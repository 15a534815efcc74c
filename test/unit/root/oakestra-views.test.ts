// The translation to Oakestra's objects where no server is needed: Canopy's one "no cluster" outcome
// becomes the negative status Oakestra's root schedulers report (oakestra/oakestra
// scheduler/calculate/schedulers/interfaces/calculate.go:16-21, libraries/oakestra_utils_library/
// oakestra_utils/types/statuses.py:31-40), and a service object sent back by a client is a
// microservice again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ClusterRegistry } from '../../../orchestrator/root/clusters.ts';
import type { ClusterRecord } from '../../../orchestrator/root/store.ts';
import type { Constraint } from '../../../orchestrator/descriptor/types.ts';
import { fromOakService, oakStatus } from '../../../orchestrator/root/oakestra/views.ts';

function registry(clusters: { name: string; active: boolean }[]): ClusterRegistry {
  const records = clusters.map((c, i) => ({ id: `c${i}`, name: c.name, active: c.active }));
  return {
    list: () => records as unknown as ClusterRecord[],
    isActive: (c: ClusterRecord) => (c as unknown as { active: boolean }).active,
  } as unknown as ClusterRegistry;
}

test('NO_CLUSTER_FOUND → TargetCluster* against a named cluster, NoActiveClusterWithCapacity otherwise', () => {
  const reg = registry([{ name: 'edge', active: true }, { name: 'far', active: false }]);
  const at = (cluster: string): { constraints: Constraint[] } => ({ constraints: [{ type: 'direct', cluster }] });
  assert.equal(oakStatus('NO_CLUSTER_FOUND', { constraints: [] }, reg), 'NoActiveClusterWithCapacity');
  assert.equal(oakStatus('NO_CLUSTER_FOUND', { constraints: [{ type: 'direct', node: 'w1' }] }, reg), 'NoActiveClusterWithCapacity');
  assert.equal(oakStatus('NO_CLUSTER_FOUND', at('nowhere'), reg), 'TargetClusterNotFound');
  assert.equal(oakStatus('NO_CLUSTER_FOUND', at('far'), reg), 'TargetClusterNotActive');
  assert.equal(oakStatus('NO_CLUSTER_FOUND', at('edge'), reg), 'TargetClusterNoCapacity');
  assert.equal(oakStatus('NO_QUALIFIED_WORKER', { constraints: [] }, reg), 'NO_QUALIFIED_WORKER_FOUND');
  for (const s of ['REQUESTED', 'CLUSTER_SCHEDULED', 'NODE_SCHEDULED', 'CREATING', 'RUNNING', 'COMPLETED', 'FAILED', 'UNDEPLOYED', 'NO_WORKER_CAPACITY'] as const) {
    assert.equal(oakStatus(s, { constraints: [] }, reg), s, 'the names both share pass unchanged');
  }
});

test('a service object sent back loses Oakestra\'s fields and gets its virtualization name back', () => {
  const back = fromOakService({
    _id: { $oid: 'x' }, microservice_name: 'web', virtualization: 'docker', job_name: 'a.b.web.c', instance_list: [], status: 'RUNNING', RR_ip: '10.30.0.1', memory: 10,
  });
  assert.deepEqual(back, { microservice_name: 'web', virtualization: 'container', memory: 10 });
  assert.equal(fromOakService(null), null);
  assert.deepEqual(fromOakService([1]), [1]);
});
