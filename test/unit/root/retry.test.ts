import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RetryScheduler, type RunOutcome, type TriggerKind } from '../../../orchestrator/root/retry.ts';
import { FakeClock } from './fake-clock.ts';

/** A manager stand-in: unplaced keys, runs in flight that the test ends by hand. */
function setup() {
  const clock = new FakeClock();
  const unplaced = new Set<string>();
  const inflight = new Map<string, number>();
  const attempts: Array<{ key: string; cause: string }> = [];
  const passes: Array<{ kind: TriggerKind; started: number }> = [];
  const r = new RetryScheduler({
    clock,
    unplaced: () => [...unplaced],
    attempt: (key, cause) => {
      if (inflight.has(key)) return false;
      attempts.push({ key, cause });
      inflight.set(key, r.begin(key));
      return true;
    },
    onPass: (kind, started) => passes.push({ kind, started }),
  });
  /** Ends the run of `key` in flight. */
  const end = (key: string, outcome: RunOutcome): void => {
    const token = inflight.get(key);
    assert.ok(token !== undefined, `${key} has a run in flight`);
    inflight.delete(key);
    if (outcome !== 'unplaced') unplaced.delete(key);
    r.finished(key, token, outcome);
  };
  /** A first scheduling run (deploy) that leaves `key` unplaced. */
  const deployUnplaced = (key: string): void => {
    inflight.set(key, r.begin(key));
    unplaced.add(key);
    end(key, 'unplaced');
  };
  return { clock, unplaced, inflight, attempts, passes, r, end, deployUnplaced };
}

test('a burst of triggers makes one pass over every unplaced instance, started once each', () => {
  const s = setup();
  s.deployUnplaced('a/0');
  s.deployUnplaced('b/0');
  for (let i = 0; i < 20; i++) s.r.trigger('cluster_room', `cluster c${i} reported more room`);
  assert.equal(s.attempts.length, 0, 'coalesced: nothing yet');
  s.clock.advance(50);
  assert.deepEqual(s.passes, [{ kind: 'cluster_room', started: 2 }]);
  assert.deepEqual(s.attempts.map((a) => a.key), ['a/0', 'b/0']);
  assert.equal(s.attempts[0]?.cause, 'cluster c19 reported more room', 'the latest trigger is named');
  // A trigger while both runs are in flight starts nothing twice.
  s.r.trigger('instance_left', 'x left');
  s.clock.advance(50);
  assert.equal(s.attempts.length, 2, 'no second run for an instance in flight');
  assert.deepEqual(s.passes.at(-1), { kind: 'instance_left', started: 0 });
});

test('a run that was deciding when a trigger came gets one more pass when it ends unplaced; a quiet run does not', () => {
  const s = setup();
  s.deployUnplaced('a/0');
  s.deployUnplaced('b/0');
  s.r.trigger('cluster_room', 'first');
  s.clock.advance(50);
  s.r.trigger('instance_left', 'instance 3 of web left cluster c1');
  s.clock.advance(50); // pass: both in flight, nothing started
  s.end('a/0', 'unplaced'); // started before the second trigger: may have missed the room
  s.end('b/0', 'placed');
  s.clock.advance(50);
  assert.deepEqual(s.attempts.map((a) => a.key), ['a/0', 'b/0', 'a/0']);
  assert.equal(s.attempts[2]?.cause, 'instance 3 of web left cluster c1');
  assert.equal(s.passes.at(-1)?.kind, 'again');
  s.end('a/0', 'unplaced'); // no trigger during this run
  s.clock.advance(5_000);
  assert.equal(s.attempts.length, 3, 'no retry until its backoff or a trigger');
});

test('backoff: 10 s doubling to 5 min per instance, counted in info; a trigger retries at once whatever the backoff', () => {
  const s = setup();
  s.deployUnplaced('a/0');
  assert.deepEqual(s.r.info('a/0'), { retries: 0, last_retry: null, next_retry: s.clock.t + 10_000 });
  const gaps: number[] = [];
  let last = s.clock.t;
  for (let i = 0; i < 8; i++) {
    // Step a second at a time until the backoff pass starts a run.
    while (!s.inflight.has('a/0')) s.clock.advance(1_000);
    gaps.push(Math.round((s.clock.t - last) / 1000));
    last = s.clock.t;
    s.end('a/0', 'unplaced');
  }
  assert.deepEqual(gaps, [10, 20, 40, 80, 160, 300, 300, 300]);
  assert.ok(s.passes.every((p) => p.kind === 'backoff'));
  const info = s.r.info('a/0');
  assert.equal(info?.retries, 8);
  assert.equal(info?.last_retry, last);
  s.r.trigger('cluster_active', 'cluster c2 became active');
  s.clock.advance(50);
  assert.ok(s.inflight.has('a/0'), 'the trigger does not wait for the 5 min backoff');
  s.end('a/0', 'placed');
  assert.equal(s.r.info('a/0'), undefined, 'placed: forgotten');
});

test('backoff passes take only the due instances; one placed by a report (no run of ours) is dropped; close stops every timer', () => {
  const s = setup();
  s.deployUnplaced('a/0');
  s.clock.advance(4_000);
  s.deployUnplaced('b/0');
  s.clock.advance(6_000); // a is due, b is 6 s into its 10 s
  assert.deepEqual(s.attempts.map((a) => a.key), ['a/0']);
  s.unplaced.delete('b/0'); // a cluster's report placed it
  s.end('a/0', 'unplaced');
  s.clock.advance(4_000); // b's time: it is no longer unplaced
  assert.deepEqual(s.attempts.map((a) => a.key), ['a/0']);
  assert.equal(s.r.info('b/0'), undefined);
  s.r.adopt('c/0'); // found unplaced at start
  s.unplaced.add('c/0');
  s.r.trigger('cluster_room', 'more');
  s.r.close();
  assert.equal(s.clock.pending, 0);
  s.clock.advance(600_000);
  assert.deepEqual(s.attempts.map((a) => a.key), ['a/0']);
});
