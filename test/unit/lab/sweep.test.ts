import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sweepVerdict } from '../../../lab/sweep.ts';
import { isAlive, procRef, procStartTime } from '../../../orchestrator/proc.ts';

test('the sweeper removes test labs of dead owners and persistent labs only when told', () => {
  assert.equal(sweepVerdict({ persistent: false }, false, false), 'remove');
  assert.equal(sweepVerdict({ persistent: false }, true, false), 'keep');
  assert.equal(sweepVerdict({ persistent: false }, true, true), 'keep', 'a live run is never swept');
  assert.equal(sweepVerdict({ persistent: true }, false, false), 'keep');
  assert.equal(sweepVerdict({ persistent: true }, false, true), 'remove');
});

test('a process is known by pid and start time, so a reused pid is not mistaken for it', () => {
  const me = procRef(process.pid);
  assert.notEqual(me.start, null);
  assert.equal(procStartTime(process.pid), me.start);
  assert.equal(isAlive(me), true);
  assert.equal(isAlive({ pid: process.pid, start: '1' }), false, 'same pid, other start time');
  assert.equal(isAlive({ pid: 2 ** 22 + 1, start: me.start }), false, 'no such pid');
});
