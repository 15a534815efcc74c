import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canTransition, INSTANCE_STATES, isInstanceState, isPlaced, isSettled } from '../../../orchestrator/root/lifecycle.ts';

test('the SPEC path and its endings are allowed', () => {
  const path = ['REQUESTED', 'CLUSTER_SCHEDULED', 'NODE_SCHEDULED', 'CREATING', 'RUNNING', 'COMPLETED', 'UNDEPLOYED'] as const;
  for (let i = 1; i < path.length; i++) assert.ok(canTransition(path[i - 1]!, path[i]!), `${path[i - 1]} → ${path[i]}`);
  assert.ok(canTransition('RUNNING', 'FAILED'));
  assert.ok(canTransition('REQUESTED', 'NO_CLUSTER_FOUND'));
  assert.ok(canTransition('CLUSTER_SCHEDULED', 'NO_WORKER_CAPACITY'));
  assert.ok(canTransition('NO_CLUSTER_FOUND', 'REQUESTED'), 'retry');
  // Root retries an unplaced instance in place: it ends placed by root or in another negative outcome.
  assert.ok(canTransition('NO_CLUSTER_FOUND', 'CLUSTER_SCHEDULED'));
  assert.ok(canTransition('NO_CLUSTER_FOUND', 'NO_WORKER_CAPACITY') && canTransition('NO_QUALIFIED_WORKER', 'NO_CLUSTER_FOUND'));
  assert.ok(canTransition('RUNNING', 'NODE_SCHEDULED'), 're-placement after a worker failure');
});

test('nothing leaves UNDEPLOYED, COMPLETED only to UNDEPLOYED, no walking back to REQUESTED from the negative outcomes but retry', () => {
  for (const s of INSTANCE_STATES) assert.equal(canTransition('UNDEPLOYED', s), false);
  for (const s of INSTANCE_STATES) assert.equal(canTransition('COMPLETED', s), s === 'UNDEPLOYED');
  assert.equal(canTransition('REQUESTED', 'RUNNING'), false, 'root must place it first');
  assert.equal(canTransition('NO_CLUSTER_FOUND', 'RUNNING'), false);
});

test('state predicates', () => {
  assert.ok(isInstanceState('RUNNING'));
  assert.ok(!isInstanceState('running'));
  assert.ok(!isInstanceState(3));
  assert.ok(isPlaced('CREATING') && !isPlaced('REQUESTED') && !isPlaced('FAILED'));
  assert.ok(isSettled('NO_QUALIFIED_WORKER') && isSettled('UNDEPLOYED') && !isSettled('RUNNING') && !isSettled('REQUESTED'));
});
