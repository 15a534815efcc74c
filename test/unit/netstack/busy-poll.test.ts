import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BusyPoll } from '../../../netstack/busy-poll.ts';

/** A clock that advances by `stepUs` at every poll and yield, and packets that arrive at given times. */
function rig(o: { windowUs?: number; minRate?: number; maxUs?: number; arrivalsMs?: number[]; stepUs?: number }) {
  let now = 0;
  const arrivals = [...(o.arrivalsMs ?? [])];
  const log: string[] = [];
  const step = (o.stepUs ?? 5) / 1000;
  const bp = new BusyPoll({
    windowUs: o.windowUs ?? 100,
    minRate: o.minRate ?? 5000,
    maxUs: o.maxUs ?? 1000,
    now: () => now,
    poll: () => {
      now += step;
      let n = 0;
      while (arrivals.length > 0 && arrivals[0] <= now) {
        arrivals.shift();
        n++;
      }
      log.push(n > 0 ? 'hit' : 'miss');
      return n;
    },
    yieldCpu: () => {
      now += step;
      log.push('yield');
    },
  });
  return {
    bp, log, arrivals,
    at: (ms: number) => { now = ms; },
    get now() { return now; },
    /** A pump every 0.1 ms (10 000 a second) until `untilMs`; the clock never goes back. */
    dense(untilMs: number) {
      for (let t = now; t < untilMs; t += 0.1) {
        now = Math.max(now, t);
        bp.afterPump(1);
      }
      now = Math.max(now, untilMs);
      log.length = 0;
    },
  };
}

test('sparse traffic never polls: a pump a millisecond (a 1 000/s ping) sleeps between packets', () => {
  const r = rig({});
  for (let i = 0; i < 200; i++) {
    r.at(i);
    r.bp.afterPump(1);
  }
  assert.equal(r.log.length, 0, 'no poll at 1 000 pumps/s');
  assert.equal(r.bp.active, false);
  assert.equal(r.bp.caught, 0);
});

test('dense traffic polls until the window passes without a packet, and catches what comes within it', () => {
  const r = rig({ windowUs: 100 });
  // 10 000 pumps a second for 30 ms: a full rate window is busy.
  r.dense(30);
  assert.equal(r.bp.active, true);
  const polledBefore = r.bp.polledUs;
  const t = r.now;
  // The next pump; the answer comes 60 µs later, then nothing.
  r.arrivals.push(t + 0.06);
  r.bp.afterPump(1);
  assert.equal(r.bp.caught, 1, 'the answer 60 µs later was found by polling, not by a wakeup');
  assert.ok(r.log.includes('hit'));
  // After the hit it went on for the window (100 µs) and stopped.
  assert.ok(r.now >= t + 0.06 + 0.1 && r.now < t + 0.06 + 0.1 + 0.02, `stopped ~100 µs after the last packet (${r.now - t} ms after the pump)`);
  assert.ok(r.bp.polledUs - polledBefore >= 150, `polling time is accounted (${r.bp.polledUs - polledBefore} µs)`);
});

test('yields the CPU only while a poll finds nothing, never between polls that move packets', () => {
  const r = rig({ windowUs: 100, stepUs: 5 });
  r.dense(30);
  // A stream: a packet every 5 µs for 0.2 ms, then silence.
  const t = r.now;
  for (let k = 1; k <= 40; k++) r.arrivals.push(t + k * 0.005);
  r.bp.afterPump(1);
  const lastHit = r.log.lastIndexOf('hit');
  assert.ok(lastHit > 0);
  const during = r.log.slice(0, lastHit + 1);
  assert.equal(during.filter((e) => e === 'yield').length, during.filter((e) => e === 'miss').length, 'one yield per empty poll, none after a poll with packets');
  for (let i = 1; i < during.length; i++) {
    if (during[i] === 'yield') assert.equal(during[i - 1], 'miss', `a yield follows an empty poll (event ${i})`);
  }
  assert.ok(r.log.slice(lastHit + 1).includes('yield'), 'waiting after the stream yields');
});

test('one callback returns to the event loop after maxUs even while packets keep coming', () => {
  const r = rig({ windowUs: 100, maxUs: 1000, stepUs: 5 });
  r.dense(30);
  const t = r.now;
  for (let k = 1; k <= 2000; k++) r.arrivals.push(t + k * 0.005);
  r.bp.afterPump(1);
  assert.ok(r.now >= t + 1 && r.now < t + 1.02, `returned after ~1 ms (${r.now - t} ms)`);
  assert.ok(r.arrivals.length > 0, 'what was still coming is left for the next callback');
});

test('a pause longer than a rate window ends polling until the traffic is dense again', () => {
  const r = rig({});
  r.dense(30);
  assert.equal(r.bp.active, true);
  r.at(r.now + 500);
  r.bp.afterPump(1);
  assert.equal(r.bp.active, false, 'the window before the pause is stale');
  assert.equal(r.log.length, 0, 'the first pump after a pause does not poll');
});

test('window 0 turns it off, and a pump that moved nothing never polls', () => {
  const off = rig({ windowUs: 0 });
  for (let i = 0; i < 400; i++) {
    off.at(i * 0.05);
    off.bp.afterPump(3);
  }
  assert.equal(off.log.length, 0);
  const on = rig({});
  for (let i = 0; i < 400; i++) {
    on.at(i * 0.05);
    on.bp.afterPump(0);
  }
  assert.equal(on.log.length, 0, 'empty pumps (a keep-warm tick, a spurious wakeup) do not count');
});
