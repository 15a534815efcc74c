import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WorkerRegistry } from '../../../orchestrator/cluster/worker-registry.ts';
import type { Heartbeat } from '../../../orchestrator/mqtt/messages.ts';

const hb = (free = 2): Heartbeat => ({
  ts: 0, seq: 1, arch: 'amd64', virtualizations: ['process'], location: '48,11',
  cpu: { cores: 4, free, usage_pct: 0 }, memory_mb: { total: 1024, free: 512 }, instances: [],
});

test('silent for longer than the timeout → dead, once; a heartbeat revives', () => {
  const r = new WorkerRegistry(3000);
  r.heartbeat('w1', hb(), 0);
  r.heartbeat('w2', hb(), 0);
  r.heartbeat('w2', hb(), 2500);
  assert.deepEqual(r.sweep(3000).map((w) => w.id), []);
  assert.deepEqual(r.sweep(3001).map((w) => w.id), ['w1']);
  assert.deepEqual(r.sweep(4000).map((w) => w.id), [], 'declared once');
  assert.deepEqual(r.alive().map((w) => w.id), ['w2']);
  const back = r.heartbeat('w1', hb(), 5000);
  assert.equal(back.revived, true);
  assert.equal(r.heartbeat('w1', hb(), 5100).revived, false);
});

test('while the cluster has lost its broker nobody dies; afterwards everyone gets a fresh grace', () => {
  const r = new WorkerRegistry(3000);
  r.heartbeat('w1', hb(), 0);
  r.suspend(true, 1000);
  assert.deepEqual(r.sweep(10_000), []);
  r.suspend(false, 10_000);
  assert.deepEqual(r.sweep(12_000), []);
  assert.deepEqual(r.sweep(13_001).map((w) => w.id), ['w1']);
});

test('workers restored after a cluster restart have a grace period, then die if they never return', () => {
  const r = new WorkerRegistry(3000);
  r.restore('w1', 10_000, 0);
  assert.deepEqual(r.sweep(9_000), []);
  assert.deepEqual(r.sweep(10_001).map((w) => w.id), ['w1']);
});

test('candidates subtract placements the worker has not reported yet; workers without a heartbeat are not candidates', () => {
  const r = new WorkerRegistry();
  r.heartbeat('w1', hb(2), 0);
  r.add('w2', 0);
  const c = r.candidates(() => new Set(['s']), () => ({ vcpus: 0.5, memory_mb: 100 }));
  assert.equal(c.length, 1);
  assert.deepEqual(c[0]!.free, { vcpus: 1.5, memory_mb: 412 });
  assert.deepEqual(c[0]!.location, { lat: 48, lon: 11 });
  assert.ok(c[0]!.services.has('s'));
});
