import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AddressAllocator, AddressSpaceExhausted, DEFAULT_PLAN } from '../../../orchestrator/root/addresses.ts';
import { SqliteStore } from '../../../orchestrator/root/sqlite-store.ts';

test('service addresses: never the range edges, never twice, pinned ones skipped, released ones reused last', () => {
  const store = new SqliteStore(':memory:');
  const a = new AddressAllocator(store, { ...DEFAULT_PLAN, serviceV4: '10.30.0.0/29' });
  a.claim('10.30.0.2', 'rr', 'pinned');
  const got = [1, 2, 3, 4, 5].map(() => a.allocate(4, 'instance', 's1'));
  assert.deepEqual(got, ['10.30.0.1', '10.30.0.3', '10.30.0.4', '10.30.0.5', '10.30.0.6']);
  assert.throws(() => a.allocate(4, 'rr', 's2'), AddressSpaceExhausted);
  a.releaseService('s1');
  assert.equal(a.isTaken('10.30.0.1'), false);
  assert.equal(a.isTaken('10.30.0.2'), true);
  assert.equal(a.allocate(4, 'rr', 's2'), '10.30.0.1');
  store.close();
});

test('IPv6 service addresses are canonical and come from the v6 range', () => {
  const store = new SqliteStore(':memory:');
  const a = new AddressAllocator(store);
  assert.equal(a.allocate(6, 'rr', 's'), 'fdc0:30::1');
  assert.equal(a.claim('FDC0:30:0:0::00a', 'closest', 's'), 'fdc0:30::a');
  assert.ok(a.isTaken('fdc0:30:0::a'));
  store.close();
});

test('instance addresses go with their instance; policy addresses with repinning', () => {
  const store = new SqliteStore(':memory:');
  const a = new AddressAllocator(store);
  const rr = a.allocate(4, 'rr', 's');
  const i0 = a.allocate(4, 'instance', 's', 0);
  a.releaseInstance('s', 0);
  assert.ok(a.isTaken(rr) && !a.isTaken(i0));
  a.releasePolicy('s');
  assert.ok(!a.isTaken(rr));
  store.close();
});

test('worker subnets: /24 from 10.18.0.0 with matching /64s, stable per worker, released and reused, skipping the service range', () => {
  const store = new SqliteStore(':memory:');
  const a = new AddressAllocator(store);
  assert.deepEqual(a.workerSubnet('c1', 'w1'), { subnet_v4: '10.18.0.0/24', subnet_v6: 'fdc0:18:0:200::/64' });
  assert.deepEqual(a.workerSubnet('c1', 'w2'), { subnet_v4: '10.18.1.0/24', subnet_v6: 'fdc0:18:0:201::/64' });
  assert.deepEqual(a.workerSubnet('c1', 'w1'), { subnet_v4: '10.18.0.0/24', subnet_v6: 'fdc0:18:0:200::/64' });
  assert.equal(a.workerSubnet('c2', 'w1').subnet_v4, '10.18.2.0/24', 'worker ids are per cluster');
  assert.ok(a.releaseWorkerSubnet('c1', 'w1'));
  assert.equal(a.releaseWorkerSubnet('c1', 'w1'), false);
  assert.equal(a.workerSubnet('c1', 'w9').subnet_v4, '10.18.0.0/24');
  store.close();

  // A small overlay whose only blocks outside the service range run out.
  const s2 = new SqliteStore(':memory:');
  const b = new AddressAllocator(s2, { ...DEFAULT_PLAN, overlayV4: '10.30.0.0/15', workerStartV4: '10.30.0.0', serviceV4: '10.30.0.0/16', workerPrefixV4: 17 });
  assert.equal(b.workerSubnet('c', 'w1').subnet_v4, '10.31.0.0/17', 'blocks inside the service range are skipped');
  assert.equal(b.workerSubnet('c', 'w2').subnet_v4, '10.31.128.0/17');
  assert.throws(() => b.workerSubnet('c', 'w3'), AddressSpaceExhausted);
  s2.close();
});

test('a /26 worker prefix is honoured', () => {
  const store = new SqliteStore(':memory:');
  const a = new AddressAllocator(store, { ...DEFAULT_PLAN, workerPrefixV4: 26 });
  assert.equal(a.workerSubnet('c', 'w1').subnet_v4, '10.18.0.0/26');
  assert.equal(a.workerSubnet('c', 'w2').subnet_v4, '10.18.0.64/26');
  store.close();
});

test('a plan with a misaligned start is refused', () => {
  const store = new SqliteStore(':memory:');
  assert.throws(() => new AddressAllocator(store, { ...DEFAULT_PLAN, workerStartV4: '10.18.0.7' }), /boundary/);
  store.close();
});

test('after a restart, allocation continues after the highest address in use', () => {
  const store = new SqliteStore(':memory:');
  const a = new AddressAllocator(store);
  const got = [a.allocate(4, 'rr', 's'), a.allocate(4, 'rr', 's'), a.allocate(4, 'rr', 't')];
  assert.deepEqual(got, ['10.30.0.1', '10.30.0.2', '10.30.0.3']);
  a.releaseService('s');
  const b = new AddressAllocator(store);
  assert.equal(b.allocate(4, 'rr', 'u'), '10.30.0.4', 'the just-released .1 and .2 are not first');
  store.close();
});
