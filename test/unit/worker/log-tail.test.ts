// `canopy logs --bytes N` shows the newest output from its first whole line, never half a line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tailWholeLines } from '../../../orchestrator/worker/log-tail.ts';

const log = Buffer.from('first line\nsecond line\nthird line\n');

test('a log within the budget is shown whole', () => {
  assert.equal(tailWholeLines(log, 1000), log.toString());
  assert.equal(tailWholeLines(Buffer.alloc(0), 10), '');
});

test('a cut inside a line starts at the next whole line', () => {
  // The last 20 bytes begin inside "second line".
  assert.equal(tailWholeLines(log, 20), 'third line\n');
  assert.equal(tailWholeLines(log, 22), 'third line\n');
});

test('a cut exactly at a line start keeps that line', () => {
  assert.equal(tailWholeLines(log, 'third line\n'.length), 'third line\n');
  assert.equal(tailWholeLines(log, 'second line\nthird line\n'.length), 'second line\nthird line\n');
});

test('a single line longer than the budget shows its newest part; multi-byte text is counted in bytes', () => {
  assert.equal(tailWholeLines(Buffer.from('a very long line without end'), 8), 'hout end');
  assert.equal(tailWholeLines(Buffer.from('a very long line\n'), 5), 'line\n');
  assert.equal(tailWholeLines(Buffer.from('ééé\nok\n'), 4), 'ok\n');
});
