import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClusterRegistry } from '../../../orchestrator/root/clusters.ts';
import { Metrics } from '../../../orchestrator/root/metrics.ts';
import { SqliteStore } from '../../../orchestrator/root/sqlite-store.ts';
import type { ClusterAggregate } from '../../../orchestrator/root/store.ts';

const agg = (vcpus: number, memory_mb: number): ClusterAggregate => ({
  free: { vcpus, memory_mb, gpus: 0 }, workers_active: 1, virtualizations: ['process'], architectures: ['amd64'],
});

test('liveness: active from the first report, inactive after the silence, tokens checked and rotated', async () => {
  let now = 1_000_000;
  const store = new SqliteStore(':memory:');
  const reg = await new ClusterRegistry(store, () => now, 15_000).load();
  const events: string[] = [];
  reg.on('active', (c) => events.push(`active ${c.name}`));
  reg.on('inactive', (c) => events.push(`inactive ${c.name}`));
  const { record, rotated } = await reg.register('edge', '48.1,11.5,10', 'http://127.0.0.1:1');
  assert.equal(rotated, false);
  assert.deepEqual(events, [], 'no aggregate yet: not announced');
  assert.equal((await reg.authenticate(record.id, record.token))?.name, 'edge');
  assert.equal(await reg.authenticate(record.id, 'wrong'), undefined);
  assert.equal(await reg.authenticate('other', record.token), undefined);
  await reg.report(record.id, agg(4, 4096));
  assert.deepEqual(events, ['active edge']);
  now += 14_999;
  assert.ok(reg.isActive(reg.get(record.id)!));
  now += 2;
  (reg as unknown as { sweep(): void }).sweep();
  assert.deepEqual(events, ['active edge', 'inactive edge']);
  assert.equal(reg.views()[0]?.active, false);
  await reg.report(record.id, agg(4, 4096));
  assert.deepEqual(events, ['active edge', 'inactive edge', 'active edge']);
  const again = await reg.register('edge', '48.1,11.5,10', 'http://127.0.0.1:2');
  assert.equal(again.rotated, true);
  assert.equal(again.record.id, record.id);
  assert.equal(await reg.authenticate(record.id, record.token), undefined, 'old token is dead');
  reg.close();

  // A restarted root knows the cluster and its token but waits for a report to call it active.
  const reg2 = await new ClusterRegistry(store, () => now, 15_000).load();
  const seen: string[] = [];
  reg2.on('active', (c) => seen.push(c.name));
  assert.equal((await reg2.authenticate(record.id, again.record.token))?.api_url, 'http://127.0.0.1:2');
  await reg2.report(record.id, agg(1, 1));
  assert.deepEqual(seen, ['edge']);
  reg2.close();
  await store.close();
});

test('capacity promised to placements is subtracted until the next report; locations are parsed', async () => {
  const store = new SqliteStore(':memory:');
  const reg = await new ClusterRegistry(store).load();
  const { record } = await reg.register('edge', '48.1,11.5,10', 'http://127.0.0.1:1');
  await reg.report(record.id, agg(4, 4096));
  reg.reserve(record.id, { vcpus: 1, memory: 1000, vgpus: 0 });
  reg.reserve(record.id, { vcpus: 1, memory: 1000, vgpus: 0 });
  const v = reg.views()[0]!;
  assert.deepEqual(v.aggregate?.free, { vcpus: 2, memory_mb: 2096, gpus: 0 });
  assert.deepEqual(v.location, { lat: 48.1, long: 11.5, radius: 10 });
  await reg.report(record.id, agg(3, 3000));
  assert.deepEqual(reg.views()[0]!.aggregate?.free, { vcpus: 3, memory_mb: 3000, gpus: 0 });
  reg.close();
  await store.close();
});

test('metrics render Prometheus text with escaped labels, counters, gauges and histograms', async () => {
  const m = new Metrics();
  const c = m.counter('x_total', 'things');
  c({ route: '/a"b' });
  c({ route: '/a"b' }, 2);
  m.gauge('g', 'a gauge', () => [[{ state: 'up' }, 3]]);
  const h = m.histogram('h_seconds', 'time');
  h(0.002);
  const text = await m.render();
  assert.match(text, /# TYPE x_total counter\nx_total\{route="\/a\\"b"\} 3\n/);
  assert.match(text, /g\{state="up"\} 3/);
  assert.match(text, /h_seconds_bucket\{le="0.001"\} 0\nh_seconds_bucket\{le="0.005"\} 1\n/, 'cumulative, zeros included');
  assert.match(text, /h_seconds_bucket\{le="\+Inf"\} 1/);
  assert.match(text, /h_seconds_count 1/);
});
