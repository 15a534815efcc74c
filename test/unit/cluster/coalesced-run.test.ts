// The cluster's early reports to root (orchestrator/coalesced-run.ts): a burst of changes is one report
// soon after the first, never two reports in flight, and a change made during a report gets its own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CoalescedRun, type TimerApi } from '../../../orchestrator/coalesced-run.ts';

/** Timers fired by hand, and a task whose runs finish when the test says so. */
function rig(delayMs = 200): { run: CoalescedRun; fire: () => number; pendingTimers: () => number[]; finish: () => Promise<void>; started: () => number } {
  let timers: Array<{ f: () => void; ms: number; t: NodeJS.Timeout }> = [];
  let n = 0;
  const ends: Array<() => void> = [];
  const api: TimerApi = {
    setTimeout: (f, ms) => {
      const t = {} as NodeJS.Timeout;
      timers.push({ f, ms, t });
      return t;
    },
    clearTimeout: (t) => {
      timers = timers.filter((x) => x.t !== t);
    },
  };
  const run = new CoalescedRun(() => {
    n++;
    return new Promise<void>((resolve) => ends.push(resolve));
  }, delayMs, api);
  return {
    run,
    fire: () => {
      const due = timers;
      timers = [];
      for (const x of due) x.f();
      return due.length;
    },
    pendingTimers: () => timers.map((x) => x.ms),
    finish: async () => {
      ends.shift()?.();
      // Let the run's finally (and a follow-up request) happen.
      for (let i = 0; i < 5; i++) await Promise.resolve();
    },
    started: () => n,
  };
}

test('a burst of changes is one report, sent one delay after the first change', () => {
  const r = rig(200);
  r.run.request();
  r.run.request();
  r.run.request();
  assert.deepEqual(r.pendingTimers(), [200], 'one timer for the whole burst');
  assert.equal(r.started(), 0, 'nothing is sent before the delay');
  r.fire();
  assert.equal(r.started(), 1);
});

test('a change during a report in flight gets one more report after it, never two at once', async () => {
  const r = rig();
  r.run.request();
  r.fire();
  assert.equal(r.started(), 1);
  r.run.request();
  r.run.request();
  assert.deepEqual(r.pendingTimers(), [], 'no timer while the report is in flight');
  assert.equal(r.fire(), 0);
  assert.equal(r.started(), 1, 'still one report in flight');
  await r.finish();
  assert.deepEqual(r.pendingTimers(), [200], 'the follow-up waits its delay after the first finished');
  r.fire();
  assert.equal(r.started(), 2);
  await r.finish();
  assert.deepEqual(r.pendingTimers(), [], 'nothing more was asked for');
});

test('the periodic report serves a pending request, and is skipped while one is in flight', async () => {
  const r = rig();
  r.run.request();
  const periodic = r.run.now();
  assert.equal(r.started(), 1);
  assert.deepEqual(r.pendingTimers(), [], 'the pending early report was folded into the periodic one');
  await r.run.now();
  assert.equal(r.started(), 1, 'no second report while one is in flight');
  await r.finish();
  await periodic;
  assert.equal(r.run.pending, false);
});

test('a failed report does not stop later ones; close() cancels what is pending', async () => {
  let calls = 0;
  const run = new CoalescedRun(async () => {
    calls++;
    throw new Error('root is down');
  }, 1);
  await run.now();
  await run.now();
  assert.equal(calls, 2);
  run.request();
  run.close();
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(calls, 2, 'nothing runs after close()');
  run.request();
  assert.equal(run.pending, false);
});

test('onIdle comes once the last run ends with nothing asked for after it, not between a run and its follow-up', async () => {
  const ends: Array<() => void> = [];
  let idle = 0;
  const run = new CoalescedRun(() => new Promise<void>((resolve) => ends.push(resolve)), 0, undefined, () => idle++);
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 5; i++) await Promise.resolve();
  };
  run.request();
  run.request();
  ends.shift()!();
  await settle();
  assert.equal(idle, 0, 'a follow-up run is on its way');
  assert.equal(ends.length, 1);
  ends.shift()!();
  await settle();
  assert.equal(idle, 1);
});
