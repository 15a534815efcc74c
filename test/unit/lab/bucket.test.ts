import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TokenBucket, defaultBucket } from '../../../lab/impair/bucket.ts';

// 8 Mbit/s = 1000 bytes per ms: easy arithmetic.
test('a burst passes at once, then frames are spaced at the rate', () => {
  const b = new TokenBucket(8, 3000, 100);
  assert.equal(b.schedule(0, 1000), 0);
  assert.equal(b.schedule(0, 1000), 0);
  assert.equal(b.schedule(0, 1000), 0);
  assert.equal(b.schedule(0, 1000), 1);
  assert.equal(b.schedule(0, 1000), 2);
});

test('tokens refill with time but never above the burst', () => {
  const b = new TokenBucket(8, 2000, 100);
  b.schedule(0, 2000);
  assert.equal(b.schedule(1, 1000), 1, 'one ms refilled 1000 bytes');
  // A long idle time refills only up to the burst: two frames pass, the third waits.
  assert.equal(b.schedule(1000, 1000), 1000);
  assert.equal(b.schedule(1000, 1000), 1000);
  assert.equal(b.schedule(1000, 1000), 1001);
});

test('frames that would wait longer than the backlog bound are dropped and cost nothing', () => {
  const b = new TokenBucket(8, 1000, 5);
  assert.equal(b.schedule(0, 1000), 0);
  for (let i = 1; i <= 5; i++) assert.equal(b.schedule(0, 1000), i);
  assert.equal(b.schedule(0, 1000), -1);
  assert.equal(b.schedule(0, 1000), -1);
  // The dropped frames did not consume tokens: after 1 ms one more fits within the bound.
  assert.equal(b.schedule(1, 1000), 6);
});

test('sustained throughput equals the configured rate', () => {
  const b = new TokenBucket(80, 15_000, 1000); // 10 000 bytes per ms
  let last = 0;
  for (let i = 0; i < 1000; i++) last = b.schedule(0, 1500);
  // 1.5 MB at 10 kB/ms, minus the 15 kB burst, is 148.5 ms.
  assert.ok(Math.abs(last - 148.5) < 1e-6, `last departure ${last}`);
});

test('bad rates are refused, defaults hold two frames at least', () => {
  assert.throws(() => new TokenBucket(0, 1000, 10), /rate/);
  assert.ok(defaultBucket(0.1, 1500).burstBytes >= 2 * 1514);
});
