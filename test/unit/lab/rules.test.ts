import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appliesTo, checkDirection, checkImpairment, describeImpairment, linkLabel, planRelays } from '../../../lab/impair/rules.ts';

const addrs = (h: string): string[] => [`ip-of-${h}`];

test('a host link rule gives that host a relay; a pair is carried by one end only', () => {
  const plan = planRelays([{ a: 'w1', b: 'w2', delayMs: 20 }, { host: 'w3', lossPct: 5 }], addrs);
  assert.deepEqual([...plan.keys()].sort(), ['w1', 'w3']);
  assert.deepEqual(plan.get('w1'), { link: null, pairs: [{ peer: 'w2', addrs: ['ip-of-w2'], impairment: { delayMs: 20 } }] });
  assert.deepEqual(plan.get('w3'), { link: { lossPct: 5 }, pairs: [] });
});

test('a pair goes to the end that already has a relay', () => {
  const plan = planRelays([{ a: 'w1', b: 'w2', delayMs: 5 }, { host: 'w2', rateMbit: 10 }], addrs);
  assert.deepEqual([...plan.keys()], ['w2']);
  assert.equal(plan.get('w2')!.pairs[0]!.peer, 'w1');
});

test('contradictions are refused with a clear error', () => {
  assert.throws(() => planRelays([{ host: 'w1', delayMs: 1 }, { host: 'w1', lossPct: 1 }], addrs), /two link impairments/);
  assert.throws(() => planRelays([{ a: 'w1', b: 'w2', delayMs: 1 }, { a: 'w2', b: 'w1', delayMs: 2 }], addrs), /given twice/);
  assert.throws(() => planRelays([{ a: 'w1', b: 'w1', delayMs: 1 }], addrs), /itself/);
});

test('impairments out of range are refused, naming the field', () => {
  assert.throws(() => checkImpairment({ lossPct: 101 }, 'link of w1'), /link of w1: lossPct/);
  assert.throws(() => checkImpairment({ delayMs: -1 }, 'x'), /delayMs/);
  assert.throws(() => checkImpairment({ rateMbit: 0 }, 'x'), /rateMbit/);
  assert.throws(() => checkImpairment({ delayMs: Number.NaN }, 'x'), /delayMs/);
  assert.throws(() => checkImpairment({}, 'x'), /empty/);
  checkImpairment({ delayMs: 20, jitterMs: 5, lossPct: 0.5, rateMbit: 100 }, 'x');
  assert.equal(describeImpairment({ delayMs: 20, lossPct: 5 }), 'delay 20ms, loss 5%');
});

test('one-way rules keep their meaning when the other end carries them', () => {
  const plan = planRelays([
    { host: 'w2', rateMbit: 10, direction: 'in' },
    { a: 'w1', b: 'w2', delayMs: 20, direction: 'out' }, // carried by w2: a→b enters w2
    { a: 'w3', b: 'w4', delayMs: 5, direction: 'out' },  // carried by w3: a→b leaves w3
    { a: 'w3', b: 'w5', delayMs: 5, direction: 'both' },
  ], addrs);
  assert.equal(plan.get('w2')!.linkDirection, 'in');
  assert.deepEqual(plan.get('w2')!.pairs.map((p) => [p.peer, p.direction]), [['w1', 'in']]);
  assert.deepEqual(plan.get('w3')!.pairs.map((p) => [p.peer, p.direction]), [['w4', 'out'], ['w5', undefined]]);
});

test('directions select egress, ingress or both; labels show one-way rules', () => {
  assert.equal(appliesTo(undefined, 'out'), true);
  assert.equal(appliesTo('both', 'in'), true);
  assert.equal(appliesTo('out', 'out'), true);
  assert.equal(appliesTo('out', 'in'), false);
  assert.equal(appliesTo('in', 'out'), false);
  assert.throws(() => checkDirection('up', 'link of w1'), /link of w1: direction/);
  assert.equal(linkLabel({ a: 'w1', b: 'w2', delayMs: 1, direction: 'out' }), 'w1~w2 (out)');
  assert.equal(linkLabel({ host: 'w1', delayMs: 1 }), 'w1');
});
