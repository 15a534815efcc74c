import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OverloadDetector, InstanceLoad } from '../../../orchestrator/worker/overload.ts';

/** Feeds one-second samples: `pattern` has 'H' for a second throttled in every period, '.' for idle,
 *  'h' for throttled in 3 of 10 periods (under the hot share); returns the state after each. */
function run(d: OverloadDetector, pattern: string, start = { periods: 0, throttled: 0, at: 0 }): boolean[] {
  let { periods, throttled, at } = start;
  d.sample({ periods, throttled }, at);
  const out: boolean[] = [];
  for (const c of pattern) {
    at += 1000;
    if (c === 'H') { periods += 10; throttled += 10; }
    if (c === 'h') { periods += 10; throttled += 3; }
    if (c === 'b') { periods += 1; throttled += 1; } // one busy, throttled period in an idle second
    out.push(d.sample({ periods, throttled }, at).overloaded);
  }
  return out;
}

const str = (xs: boolean[]): string => xs.map((x) => (x ? '1' : '0')).join('');

test('overloaded after most of the recent samples were throttled, cleared after enough quiet ones', () => {
  const d = new OverloadDetector();
  // 3 hot of the last 5 → overloaded on the 3rd hot; one quiet sample does not clear it; 3 do.
  assert.equal(str(run(d, 'HH.H.H...H')), '0001111100');
  assert.match(new OverloadDetector().state().reason ?? 'none', /none/);
});

test('short bursts and light throttling never make an instance overloaded', () => {
  assert.equal(str(run(new OverloadDetector(), 'H..H..H..H..')), '000000000000', 'isolated bursts');
  assert.equal(str(run(new OverloadDetector(), 'hhhhhhhhhh')), '0000000000', 'throttled in under half the periods');
  assert.equal(str(run(new OverloadDetector(), 'bbbbbbbbbb')), '0000000000', 'an idle server throttled in its one busy period');
});

test('counters that go backwards (a new cgroup) are a new baseline, not a sample', () => {
  const d = new OverloadDetector();
  run(d, 'HHH', { periods: 1000, throttled: 900, at: 0 });
  assert.equal(d.overloaded, true);
  assert.equal(d.sample({ periods: 5, throttled: 5 }, 10_000).overloaded, true, 'unchanged by the reset');
  assert.match(d.state().reason!, /3 of the last 3 samples/);
});

test('InstanceLoad keeps a detector per running instance and forgets those that stopped', () => {
  const l = new InstanceLoad();
  for (let s = 0; s <= 3; s++) l.sample(new Map([['a', { periods: s * 10, throttled: s * 10 }], ['b', { periods: s * 10, throttled: 0 }]]), s * 1000);
  assert.equal(l.of('a').overloaded, true);
  assert.equal(l.of('b').overloaded, false);
  l.sample(new Map([['b', { periods: 40, throttled: 0 }]]), 4000);
  assert.equal(l.of('a').overloaded, false, 'a stopped: forgotten');
  l.sample(new Map([['a', { periods: 50, throttled: 50 }]]), 5000);
  assert.equal(l.of('a').overloaded, false, 'a new run starts from a baseline');
});
