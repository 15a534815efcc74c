import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Lifecycle, canTransition, IllegalTransition, isInstanceState, isPlaced, isSettled, ALL_STATES, type InstanceState,
} from '../../../orchestrator/protocol/instance-states.ts';

// The whole table (SPEC §7), written out: root, cluster and worker share it, so a change to any edge
// must show up here. Rows are `from`, the letters mark allowed `to` states in ALL_STATES order:
// RQ CS NS CR RU CO FA UN NC NW NQ
const EDGES: Record<InstanceState, string> = {
  REQUESTED:           '.  X  .  .  .  .  X  X  X  X  X',
  CLUSTER_SCHEDULED:   'X  .  X  X  X  X  X  X  .  X  X',
  NODE_SCHEDULED:      'X  X  .  X  X  X  X  X  .  X  X',
  CREATING:            'X  X  X  .  X  X  X  X  .  X  X',
  RUNNING:             'X  X  X  X  .  X  X  X  .  X  X',
  COMPLETED:           '.  .  .  .  .  .  .  X  .  .  .',
  FAILED:              'X  X  X  X  X  .  .  X  .  .  .',
  UNDEPLOYED:          '.  .  .  .  .  .  .  .  .  .  .',
  NO_CLUSTER_FOUND:    'X  X  .  .  .  .  .  X  .  X  X',
  NO_WORKER_CAPACITY:  'X  X  X  X  X  .  .  X  X  .  X',
  NO_QUALIFIED_WORKER: 'X  X  X  X  X  .  .  X  X  X  .',
};

test('the one lifecycle table has exactly the written-out edges', () => {
  assert.deepEqual(Object.keys(EDGES), [...ALL_STATES]);
  for (const from of ALL_STATES) {
    const marks = EDGES[from].split(/\s+/);
    assert.equal(marks.length, ALL_STATES.length, from);
    ALL_STATES.forEach((to, k) => assert.equal(canTransition(from, to), marks[k] === 'X', `${from} → ${to}`));
  }
});

test('the SPEC path and its endings are allowed', () => {
  const path = ['REQUESTED', 'CLUSTER_SCHEDULED', 'NODE_SCHEDULED', 'CREATING', 'RUNNING', 'COMPLETED', 'UNDEPLOYED'] as const;
  for (let i = 1; i < path.length; i++) assert.ok(canTransition(path[i - 1]!, path[i]!), `${path[i - 1]} → ${path[i]}`);
  assert.ok(canTransition('NO_CLUSTER_FOUND', 'REQUESTED'), 'retry');
  assert.ok(canTransition('RUNNING', 'NODE_SCHEDULED'), 're-placement after a worker failure');
  assert.equal(canTransition('REQUESTED', 'RUNNING'), false, 'root must place it first');
  assert.equal(canTransition('NO_CLUSTER_FOUND', 'RUNNING'), false);
});

test('state predicates', () => {
  assert.ok(isPlaced('CREATING') && !isPlaced('REQUESTED') && !isPlaced('FAILED'));
  assert.ok(isSettled('NO_QUALIFIED_WORKER') && isSettled('UNDEPLOYED') && !isSettled('RUNNING') && !isSettled('REQUESTED'));
});

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
  const l = new Lifecycle('COMPLETED', 'exit 0');
  assert.throws(() => l.to('RUNNING', 'nope'), IllegalTransition);
  assert.equal(l.state, 'COMPLETED');
  assert.equal(l.tryTo('NO_CLUSTER_FOUND', 'nope'), false);
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
