import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KeepWarm } from '../../../netstack/keep-warm.ts';

test('ticks only while instances\' packets flow: from the first one until idleMs without one', (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] });
  let ticks = 0;
  let packets = 0;
  const w = new KeepWarm({ periodMs: 20, idleMs: 100, activity: () => packets, tick: () => ticks++ });
  t.mock.timers.tick(1000);
  w.touch(); // woken by a tunnel probe: no instance packet
  t.mock.timers.tick(1000);
  assert.equal(w.active, false, 'an idle datapath does not tick, probes or not');
  assert.equal(ticks, 0);
  packets++;
  w.touch();
  assert.equal(w.active, true);
  // A packet every 60 ms keeps it going.
  for (let i = 0; i < 10; i++) {
    t.mock.timers.tick(60);
    packets++;
    w.touch();
  }
  assert.equal(w.active, true);
  assert.ok(ticks >= 25, `ticked between packets (${ticks})`);
  // Then silence: it stops within idleMs (plus a tick) and stays stopped.
  t.mock.timers.tick(120);
  assert.equal(w.active, false, 'stopped after idleMs without a packet');
  const n = ticks;
  t.mock.timers.tick(1000);
  assert.equal(ticks, n);
  // A wakeup without an instance packet does not start it; the next packet does.
  w.touch();
  assert.equal(w.active, false);
  packets++;
  w.touch();
  assert.equal(w.active, true);
  w.close();
  assert.equal(w.active, false);
  packets++;
  w.touch();
  assert.equal(w.active, false, 'nothing after close()');
});

test('periodMs 0 never ticks', (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] });
  let packets = 0;
  const w = new KeepWarm({ periodMs: 0, idleMs: 100, activity: () => packets });
  packets++;
  w.touch();
  assert.equal(w.active, false);
  w.close();
});
