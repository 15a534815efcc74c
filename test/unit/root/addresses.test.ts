import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AddressAllocator, AddressSpaceExhausted, DEFAULT_PLAN } from '../../../orchestrator/root/addresses.ts';
import { SqliteStore } from '../../../orchestrator/root/sqlite-store.ts';

test('service addresses: never the range edges, never twice, pinned ones skipped, released ones reused last', async () => {
  const store = new SqliteStore(':memory:');
  const a = await new AddressAllocator(store, { ...DEFAULT_PLAN, serviceV4: '10.30.0.0/29' }).load();
  (await a.claim('10.30.0.2', 'rr', 'pinned'));
  const got = [];
  for (let k = 0; k < 5; k++) got.push(await a.allocate(4, 'instance', 's1'));
  assert.deepEqual(got, ['10.30.0.1', '10.30.0.3', '10.30.0.4', '10.30.0.5', '10.30.0.6']);
  await assert.rejects(a.allocate(4, 'rr', 's2'), AddressSpaceExhausted);
  (await a.releaseService('s1'));
  assert.equal((await a.isTaken('10.30.0.1')), false);
  assert.equal((await a.isTaken('10.30.0.2')), true);
  assert.equal((await a.allocate(4, 'rr', 's2')), '10.30.0.1');
  await store.close();
});

test('IPv6 service addresses are canonical and come from the v6 range', async () => {
  const store = new SqliteStore(':memory:');
  const a = await new AddressAllocator(store).load();
  assert.equal((await a.allocate(6, 'rr', 's')), 'fdc0:30::1');
  assert.equal((await a.claim('FDC0:30:0:0::00a', 'closest', 's')), 'fdc0:30::a');
  assert.ok((await a.isTaken('fdc0:30:0::a')));
  await store.close();
});

test('instance addresses go with their instance; policy addresses with repinning', async () => {
  const store = new SqliteStore(':memory:');
  const a = await new AddressAllocator(store).load();
  const rr = (await a.allocate(4, 'rr', 's'));
  const i0 = (await a.allocate(4, 'instance', 's', 0));
  (await a.releaseInstance('s', 0));
  assert.ok((await a.isTaken(rr)) && !(await a.isTaken(i0)));
  (await a.releasePolicy('s'));
  assert.ok(!(await a.isTaken(rr)));
  await store.close();
});

test('worker subnets: /24 from 10.18.0.0 with matching /64s, stable per worker, released and reused, skipping the service range', async () => {
  const store = new SqliteStore(':memory:');
  const a = await new AddressAllocator(store).load();
  assert.deepEqual((await a.workerSubnet('c1', 'w1')), { subnet_v4: '10.18.0.0/24', subnet_v6: 'fdc0:18:0:200::/64' });
  assert.deepEqual((await a.workerSubnet('c1', 'w2')), { subnet_v4: '10.18.1.0/24', subnet_v6: 'fdc0:18:0:201::/64' });
  assert.deepEqual((await a.workerSubnet('c1', 'w1')), { subnet_v4: '10.18.0.0/24', subnet_v6: 'fdc0:18:0:200::/64' });
  assert.equal((await a.workerSubnet('c2', 'w1')).subnet_v4, '10.18.2.0/24', 'worker ids are per cluster');
  assert.ok((await a.releaseWorkerSubnet('c1', 'w1')));
  assert.equal((await a.releaseWorkerSubnet('c1', 'w1')), false);
  assert.equal((await a.workerSubnet('c1', 'w9')).subnet_v4, '10.18.0.0/24');
  await store.close();

  // A small overlay whose only blocks outside the service range run out.
  const s2 = new SqliteStore(':memory:');
  const b = await new AddressAllocator(s2, { ...DEFAULT_PLAN, overlayV4: '10.30.0.0/15', workerStartV4: '10.30.0.0', serviceV4: '10.30.0.0/16', workerPrefixV4: 17 }).load();
  assert.equal((await b.workerSubnet('c', 'w1')).subnet_v4, '10.31.0.0/17', 'blocks inside the service range are skipped');
  assert.equal((await b.workerSubnet('c', 'w2')).subnet_v4, '10.31.128.0/17');
  await assert.rejects(b.workerSubnet('c', 'w3'), AddressSpaceExhausted);
  await s2.close();
});

test('a /26 worker prefix is honoured', async () => {
  const store = new SqliteStore(':memory:');
  const a = await new AddressAllocator(store, { ...DEFAULT_PLAN, workerPrefixV4: 26 }).load();
  assert.equal((await a.workerSubnet('c', 'w1')).subnet_v4, '10.18.0.0/26');
  assert.equal((await a.workerSubnet('c', 'w2')).subnet_v4, '10.18.0.64/26');
  await store.close();
});

test('a plan with a misaligned start is refused', async () => {
  const store = new SqliteStore(':memory:');
  assert.throws(() => new AddressAllocator(store, { ...DEFAULT_PLAN, workerStartV4: '10.18.0.7' }), /boundary/);
  await store.close();
});

test('after a restart, allocation continues after the highest address in use', async () => {
  const store = new SqliteStore(':memory:');
  const a = await new AddressAllocator(store).load();
  const got = [(await a.allocate(4, 'rr', 's')), (await a.allocate(4, 'rr', 's')), (await a.allocate(4, 'rr', 't'))];
  assert.deepEqual(got, ['10.30.0.1', '10.30.0.2', '10.30.0.3']);
  (await a.releaseService('s'));
  const b = await new AddressAllocator(store).load();
  assert.equal((await b.allocate(4, 'rr', 'u')), '10.30.0.4', 'the just-released .1 and .2 are not first');
  await store.close();
});
