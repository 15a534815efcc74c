// The login throttle's arithmetic on a fake clock: slower answers after a few failures, 429 for a pair
// or an address past its limit, never for a user from a clean address, and everything forgotten when
// the window has passed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LoginThrottle, type Verdict } from '../../../orchestrator/root/login-throttle.ts';

const limits = { windowMs: 60_000, slowAfter: 3, pairLimit: 10, addressLimit: 15, maxDelayMs: 1000 };

test('a pair slows down, then is refused; another address for the same user is only slowed', () => {
  let now = 1_000_000;
  const t = new LoginThrottle(limits, () => now);
  const delays: number[] = [];
  for (let i = 0; i < 10; i++) {
    const v = t.check('alice', '10.0.0.1');
    assert.equal(v.refuse, false, `attempt ${i + 1}`);
    delays.push((v as Extract<Verdict, { refuse: false }>).delayMs);
    t.failed('alice', '10.0.0.1');
    now += 1000;
  }
  assert.deepEqual(delays, [0, 0, 0, 100, 200, 400, 800, 1000, 1000, 1000]);
  const refused = t.check('ALICE', '10.0.0.1');
  assert.equal(refused.refuse, true);
  // The oldest failure (at t0) ages out 60 s after it: 50 s from now.
  assert.equal((refused as Extract<Verdict, { refuse: true }>).retryAfterS, 50);
  const elsewhere = t.check('alice', '10.0.0.2');
  assert.equal(elsewhere.refuse, false, 'the real user from another address is never refused');
  assert.ok((elsewhere as Extract<Verdict, { refuse: false }>).delayMs <= 1000);
  t.succeeded('alice', '10.0.0.2');
  now += 60_000;
  assert.deepEqual(t.check('alice', '10.0.0.1'), { refuse: false, delayMs: 0 }, 'forgotten after the window');
});

test('an address trying many users is refused at its own limit; a success resets only its pair', () => {
  let now = 0;
  const t = new LoginThrottle(limits, () => now);
  for (let i = 0; i < 15; i++) {
    assert.equal(t.check(`user${i}`, '10.0.0.9').refuse, false);
    t.failed(`user${i}`, '10.0.0.9');
    now += 10;
  }
  assert.equal(t.check('someone-new', '10.0.0.9').refuse, true);
  assert.equal(t.check('someone-new', '10.0.0.8').refuse, false);
  t.failed('bob', '10.0.0.3');
  t.failed('bob', '10.0.0.3');
  t.succeeded('bob', '10.0.0.3');
  assert.deepEqual(t.check('bob', '10.0.0.3'), { refuse: false, delayMs: 0 });
});
