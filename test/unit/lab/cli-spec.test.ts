import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hostNames, linksFromArgs } from '../../../lab/cli-spec.ts';

test('pair and host options become merged link specs', () => {
  const links = linksFromArgs({ delay: ['w1:w2:20', 'w3:5'], loss: ['w3:2.5', 'w2:w1:1'], rate: ['w3:10'] });
  assert.deepEqual(links, [
    { a: 'w1', b: 'w2', delayMs: 20, lossPct: 1 },
    { host: 'w3', delayMs: 5, lossPct: 2.5, rateMbit: 10 },
  ]);
  assert.deepEqual(linksFromArgs({}), []);
});

test('malformed or repeated options are refused with the option named', () => {
  assert.throws(() => linksFromArgs({ delay: ['w1'] }), /--delay w1: want/);
  assert.throws(() => linksFromArgs({ loss: ['w1:x'] }), /--loss w1:x/);
  assert.throws(() => linksFromArgs({ delay: ['a:b:c:1'] }), /want/);
  assert.throws(() => linksFromArgs({ delay: [':1'] }), /want/);
  assert.throws(() => linksFromArgs({ delay: ['w1:w2:1', 'w2:w1:2'] }), /given twice for w1–w2/);
});

test('host names come from a count or a list', () => {
  assert.deepEqual(hostNames(3), ['w1', 'w2', 'w3']);
  assert.deepEqual(hostNames(3, 'edge1, edge2'), ['edge1', 'edge2']);
  assert.throws(() => hostNames(0), /--hosts 0/);
});

test('a>b:value is a one-way pair rule', () => {
  assert.deepEqual(linksFromArgs({ delay: ['w1>w2:20'], loss: ['w1>w2:1'] }), [{ a: 'w1', b: 'w2', direction: 'out', delayMs: 20, lossPct: 1 }]);
  assert.throws(() => linksFromArgs({ delay: ['w1>:20'] }), /want/);
});
