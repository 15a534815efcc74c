// "No room now" against "no cluster could ever run it": only the second makes `deploy --wait` fail at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { neverPlaceable } from '../../../orchestrator/root/placeable.ts';
import type { ClusterView, InstanceDemand } from '../../../orchestrator/root/scheduler.ts';
import type { ClusterAggregate } from '../../../orchestrator/root/store.ts';

function cluster(name: string, agg: Partial<ClusterAggregate> | null = {}, active = true): ClusterView {
  return {
    id: name, name, active, location: null,
    aggregate: agg && { free: { vcpus: 0, memory_mb: 0, gpus: 0 }, workers_active: 1, virtualizations: ['process'], architectures: ['amd64'], max_worker: { vcpus: 2, memory_mb: 2048 }, ...agg },
  };
}
const demand = (over: Partial<InstanceDemand> = {}): InstanceDemand => ({ virtualization: 'process', vcpus: 1, memory: 100, vgpus: 0, constraints: [], ...over });

test('a full cluster is no room now, not never', () => {
  assert.equal(neverPlaceable(demand(), [cluster('edge1')]), null);
  assert.equal(neverPlaceable(demand(), [cluster('edge1', {}, false)]), null, 'an inactive cluster may come back with room');
});

test('a virtualization no cluster runs, a demand over every largest worker, or constraints ruling every cluster out is never', () => {
  assert.equal(neverPlaceable(demand({ virtualization: 'container' }), [cluster('edge1'), cluster('edge2')]),
    'no cluster can ever run it: edge1: cannot run container (has process); edge2: cannot run container (has process)');
  assert.equal(neverPlaceable(demand({ memory: 4096 }), [cluster('edge1')]), 'no cluster can ever run it: edge1: needs 4096 MB of memory, its largest worker has 2048 MB');
  assert.match(neverPlaceable(demand({ vcpus: 8 }), [cluster('edge1')]) ?? '', /needs 8 vCPUs, its largest worker has 2/);
  assert.match(neverPlaceable(demand({ constraints: [{ type: 'clusters', allowed: ['far'] }] }), [cluster('edge1')]) ?? '', /edge1: not in the allowed clusters \[far\]/);
  assert.match(neverPlaceable(demand({ constraints: [{ type: 'arch', arch: ['arm64'] }] }), [cluster('edge1')]) ?? '', /no worker of architecture arm64/);
});

test('one cluster that might run it, or one root knows too little about, keeps it placeable', () => {
  assert.equal(neverPlaceable(demand({ virtualization: 'container' }), [cluster('edge1'), cluster('edge2', { virtualizations: ['process', 'container'] })]), null);
  assert.equal(neverPlaceable(demand({ virtualization: 'container' }), [cluster('edge1'), cluster('fresh', null)]), null, 'not reported yet');
  assert.equal(neverPlaceable(demand({ virtualization: 'container' }), [cluster('edge1'), cluster('idle', { workers_active: 0, virtualizations: [] })]), null, 'no active worker yet');
  assert.equal(neverPlaceable(demand({ memory: 4096 }), [cluster('old', { max_worker: undefined })]), null, 'a cluster that does not report its largest worker');
  assert.equal(neverPlaceable(demand(), []), null, 'no cluster registered yet');
});
