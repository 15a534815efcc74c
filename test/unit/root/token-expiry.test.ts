import { test } from 'node:test';
import assert from 'node:assert/strict';
import { expiresAtLeast } from '../../../orchestrator/root/api/auth.ts';

test('an access token lives at least its TTL, whatever the millisecond it is issued at', () => {
  for (const nowMs of [1_800_000_000_000, 1_800_000_000_001, 1_800_000_000_500, 1_800_000_000_999]) {
    const { exp } = expiresAtLeast(1, nowMs);
    assert.ok(exp * 1000 - nowMs >= 1000, `issued at ${nowMs}: expires ${exp * 1000 - nowMs} ms later`);
    assert.ok(exp * 1000 - nowMs < 2000);
  }
  assert.equal(expiresAtLeast(900, 1_800_000_000_000).exp, 1_800_000_900);
});
