import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PeerTable } from '../../../netstack/peers.ts';

const ep = (port: number) => ({ host: '198.18.0.9', port });

test('the peer list admits workers; a new list replaces the last, routed peers stay reachable', () => {
  const t = new PeerTable();
  t.admit([{ id: 10, workerId: 'w1', endpoint: ep(1) }, { id: 11, workerId: 'w2', endpoint: ep(2) }]);
  t.learn('w3', 12, ep(3));
  assert.deepEqual([...t.peerIds()].sort(), [10, 11, 12]);
  t.admit([{ id: 10, workerId: 'w1', endpoint: ep(1) }]);
  assert.equal(t.has(11), false, 'w2 left the list');
  assert.equal(t.endpoint(12)?.port, 3, 'a routed peer is kept');
  assert.equal(t.idOf('w2'), 11, 'routes naming a departed worker still find its id');
  assert.equal(t.size, 2);
});

test('an admitted entry wins over a routed one for the same id; a route without endpoint only names the id', () => {
  const t = new PeerTable([{ id: 10, workerId: 'w1', endpoint: ep(1) }]);
  t.learn('w1', 10, ep(99));
  assert.equal(t.endpoint(10)?.port, 1);
  t.learn('w4', 14, undefined);
  assert.equal(t.has(14), false);
  assert.equal(t.idOf('w4'), 14);
  assert.equal(t.get(10)?.workerId, 'w1');
});

test('the endpoint object of a peer stays the same across unchanged routes (sockets cache by object)', () => {
  const t = new PeerTable();
  t.learn('w1', 10, ep(1));
  const first = t.endpoint(10);
  t.learn('w1', 10, ep(1));
  assert.equal(t.endpoint(10), first);
});
