import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Lifecycle, canTransition, IllegalTransition, isInstanceState, ALL_STATES,
} from '../../../orchestrator/worker/instance-states.ts';

test('the normal path and its history with reasons and timestamps', () => {
  const l = new Lifecycle('REQUESTED', 'submitted', 50, 1000);
  l.to('CLUSTER_SCHEDULED', 'root chose c1', 1001);
  l.to('NODE_SCHEDULED', 'placed on w1', 1002);
  l.to('CREATING', 'starting', 1003);
  l.to('RUNNING', 'pid 42', 1004);
  l.to('COMPLETED', 'exit 0', 1005);
  assert.equal(l.state, 'COMPLETED');
  assert.deepEqual(l.history.map((t) => t.state),
    ['REQUESTED', 'CLUSTER_SCHEDULED', 'NODE_SCHEDULED', 'CREATING', 'RUNNING', 'COMPLETED']);
  assert.deepEqual(l.last, { state: 'COMPLETED', ts: 1005, reason: 'exit 0' });
});

test('forbidden moves throw and change nothing', () => {
  const l = new Lifecycle('RUNNING', 'adopted');
  assert.throws(() => l.to('REQUESTED', 'nope'), IllegalTransition);
  assert.equal(l.state, 'RUNNING');
  assert.equal(l.tryTo('NODE_SCHEDULED', 'nope'), false);
  const u = new Lifecycle('UNDEPLOYED', 'gone');
  for (const s of ALL_STATES) if (s !== 'UNDEPLOYED') assert.equal(canTransition('UNDEPLOYED', s), false);
  assert.throws(() => u.to('RUNNING', 'zombie'), /UNDEPLOYED → RUNNING/);
});

test('restart after failure and re-placement after worker death are allowed', () => {
  assert.equal(canTransition('FAILED', 'CREATING'), true);
  assert.equal(canTransition('RUNNING', 'CLUSTER_SCHEDULED'), true);
  assert.equal(canTransition('NO_WORKER_CAPACITY', 'REQUESTED'), true);
  assert.equal(canTransition('COMPLETED', 'RUNNING'), false);
});

test('same-state moves are no-ops, history is bounded', () => {
  const l = new Lifecycle('RUNNING', 'x', 4);
  assert.equal(l.to('RUNNING', 'again'), false);
  for (let i = 0; i < 5; i++) { l.to('FAILED', `f${i}`); l.to('CREATING', `c${i}`); }
  assert.equal(l.history.length, 4);
  assert.equal(l.last.reason, 'c4');
});

test('state names are recognised', () => {
  assert.equal(isInstanceState('RUNNING'), true);
  assert.equal(isInstanceState('running'), false);
  assert.equal(isInstanceState('toString'), false);
});
