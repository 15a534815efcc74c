import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReplayWindow } from '../../../netstack/replay.ts';

test('each counter is accepted once', () => {
  const w = new ReplayWindow(64);
  assert.ok(w.commit(5));
  assert.equal(w.commit(5), false);
  assert.ok(w.commit(3));
  assert.equal(w.commit(3), false);
  assert.ok(w.commit(100));
  assert.equal(w.commit(5), false, 'older than the window');
  assert.ok(w.commit(99));
  assert.ok(w.commit(100 - 63));
  assert.equal(w.commit(100 - 64), false);
});

test('matches a reference model under random traffic', () => {
  const w = new ReplayWindow(128);
  const seen = new Set<number>();
  let top = -1;
  const base = 1_700_000_000_000_000;
  for (let i = 0; i < 20000; i++) {
    const c = Math.max(0, top + Math.floor(Math.random() * 40) - 30);
    const expect = !seen.has(c) && (c > top || top - c < 128);
    assert.equal(w.commit(base + c), expect, `counter ${c} top ${top}`);
    if (expect) { seen.add(c); top = Math.max(top, c); }
  }
});
