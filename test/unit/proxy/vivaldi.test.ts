import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VivaldiNode } from '../../../proxy/vivaldi.ts';
import { MeasuredRtt, RttEstimator, StaticRtt } from '../../../proxy/rtt.ts';
import { SemanticTable } from '../../../proxy/semantic-table.ts';
import { StaticRouteSource } from '../../../proxy/static-route-source.ts';

test('Vivaldi coordinates converge to predict RTTs never measured directly', () => {
  // Four points on a plane (ms); node 3 is never measured from node 0.
  const pos = [[0, 0], [10, 0], [0, 30], [12, 28]];
  const rtt = (a: number, b: number): number => Math.hypot(pos[a]![0]! - pos[b]![0]!, pos[a]![1]! - pos[b]![1]!) + 1;
  const nodes = pos.map(() => new VivaldiNode());
  for (let round = 0; round < 400; round++) {
    for (let a = 0; a < 4; a++) {
      for (let b = 0; b < 4; b++) {
        if (a === b || (a === 0 && b === 3) || (a === 3 && b === 0)) continue;
        nodes[a]!.observe(rtt(a, b), nodes[b]!.coordinate());
      }
    }
  }
  const est = nodes[0]!.distance(nodes[3]!.coordinate());
  assert.ok(Math.abs(est - rtt(0, 3)) / rtt(0, 3) < 0.2, `estimate ${est.toFixed(1)} ms vs ${rtt(0, 3).toFixed(1)} ms`);
  assert.ok(nodes[0]!.error < 0.5);
});

test('the estimator prefers measurements, then coordinates, and knows nothing else', () => {
  const src = new StaticRtt({ w2: 7 });
  const e = new RttEstimator('w1', src);
  e.setCoordinate('w3', { vec: [50, 0], height: 1, error: 0.1 });
  assert.equal(e.estimate('w1'), 0);
  assert.equal(e.estimate('w2'), 7);
  assert.ok(e.estimate('w3') > 40 && e.estimate('w3') < 60);
  assert.equal(e.estimate('w4'), Infinity);
  e.close();
});

test('the worker reports its coordinate and measurements to the cluster', () => {
  const source = new StaticRouteSource();
  const rtt = new StaticRtt();
  const t = new SemanticTable({ workerId: 'w1', link: source.link('w1'), rtt, coordinateReportMs: 0 });
  rtt.set('w2', 12.5);
  t.reportCoordinate();
  const m = source.received.at(-1)?.msg;
  assert.equal(m?.type, 'coordinate_report');
  if (m?.type !== 'coordinate_report') return;
  assert.deepEqual(m.rtt_ms, { w2: 12.5 });
  assert.equal(source.coordinates.has('w1'), true);
  assert.match(t.metrics(), /canopy_proxy_flows 0/);
  t.close(); source.close();
});

test('a peer measured for the first time is reported at the next housekeeping, not at the next period', (t) => {
  t.mock.timers.enable({ apis: ['setInterval', 'Date'], now: 1_800_000_000_000 });
  const source = new StaticRouteSource();
  const rtt = new StaticRtt();
  const table = new SemanticTable({ workerId: 'w1', link: source.link('w1'), rtt, coordinateReportMs: 10_000 });
  const reports = (): Array<Record<string, number>> => source.received.flatMap((r) => (r.msg.type === 'coordinate_report' ? [r.msg.rtt_ms] : []));
  t.mock.timers.tick(1000);
  assert.deepEqual(reports(), [{}], 'the first housekeeping reports, with nothing measured yet');
  rtt.set('w2', 4);
  t.mock.timers.tick(1000);
  assert.deepEqual(reports().at(-1), { w2: 4 }, 'the new peer goes out within a second');
  const n = reports().length;
  rtt.set('w2', 5);
  t.mock.timers.tick(3000);
  assert.equal(reports().length, n, 'a changed figure for a known peer waits for the period');
  t.mock.timers.tick(7000);
  assert.deepEqual(reports().at(-1), { w2: 5 });
  table.close(); source.close();
});

test('measured RTTs are smoothed, so one slow probe does not flip closest', () => {
  const m = new MeasuredRtt();
  const seen: number[] = [];
  m.onRtt((_w, ms) => seen.push(ms));
  m.record('w2', 10);
  m.record('w2', 90);
  assert.equal(m.rttMs('w2'), 20);
  m.record('w2', Number.NaN);
  assert.deepEqual(seen, [10, 20]);
  assert.equal(m.rttMs('w3'), undefined);
});
