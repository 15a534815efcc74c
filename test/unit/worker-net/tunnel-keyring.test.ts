// A worker's tunnel keys: workers of two clusters (different cluster keys) cannot read each other
// until both learn root's overlay key, which works on codecs already running; the cluster key
// stays accepted for workers that have not switched yet. After a revocation both keys rotate and the
// old ones are retired: datagrams sealed with them are dropped and counted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { TxPlan } from '../../../native/io.ts';
import { Drop, TunnelCodec, TunnelType, newRxBatch } from '../../../netstack/tunnel.ts';
import { TunnelKeyring } from '../../../orchestrator/worker/net/tunnel-keyring.ts';
import { nextTunnelKey, type TunnelKey } from '../../../orchestrator/protocol/tunnel-identity.ts';

const hexKey = (key_id: number): TunnelKey => ({ key_id, key: randomBytes(32).toString('hex'), encrypt: false });

function endpoint(selfId: number, ring: TunnelKeyring): TunnelCodec {
  return new TunnelCodec(ring.codecOptions({ selfId, peers: { has: () => true }, maxDatagram: 1400 }));
}

/** Sends `n` bytes from a to b; how many payloads b accepted. */
function send(a: TunnelCodec, b: TunnelCodec, n = 300): number {
  const plan = new TxPlan();
  a.encode(TunnelType.Data, 0, randomBytes(n), 0, n, plan);
  const buf = new Uint8Array(70000);
  const batch = newRxBatch();
  let got = 0;
  for (let s = 0; s < plan.segments; s++) {
    const len = plan.copySegment(s, buf);
    if (b.decode(buf, 0, len, batch)) got++;
  }
  return got;
}

test('workers of two clusters talk once both hold the overlay key, without new codecs', () => {
  const c1 = hexKey(1);
  const c2 = hexKey(1);
  const overlay = hexKey(128);
  const r1 = new TunnelKeyring(c1);
  const r2 = new TunnelKeyring(c2);
  const w1 = endpoint(0x0a120100, r1);
  const w2 = endpoint(0x0a120200, r2);
  assert.equal(send(w1, w2), 0, 'different cluster keys under the same id: rejected');
  assert.equal(w2.drops.get(Drop.BadTag), 1);
  assert.equal(r1.setOverlay(overlay), 'added');
  assert.equal(r1.sendKeyId, 128);
  assert.equal(send(w1, w2), 0, 'the receiver does not know the overlay key yet');
  assert.equal(w2.drops.get(Drop.UnknownKey), 1);
  assert.equal(r2.setOverlay(overlay), 'added');
  assert.equal(send(w1, w2), 1);
  assert.equal(send(w2, w1), 1);
  assert.equal(r2.setOverlay(overlay), 'unchanged');
  w1.close();
  w2.close();
});

test('a worker with the overlay key still accepts its cluster mates that only have the cluster key', () => {
  const c = hexKey(1);
  const switched = new TunnelKeyring(c);
  const behind = new TunnelKeyring(c);
  switched.setOverlay(hexKey(128));
  const a = endpoint(0x0a120100, switched);
  const b = endpoint(0x0a120200, behind);
  assert.equal(send(b, a), 1);
  assert.deepEqual(switched.acceptedKeyIds(), [1, 128]);
  a.close();
  b.close();
});

test('an overlay key that would shadow the cluster key is refused', () => {
  const ring = new TunnelKeyring(hexKey(1));
  assert.equal(ring.setOverlay(hexKey(1)), 'same-id-as-other-key');
  assert.equal(ring.sendKeyId, 1);
  ring.setOverlay(hexKey(128));
  assert.equal(ring.setCluster(hexKey(128)), 'same-id-as-other-key');
  assert.deepEqual(ring.acceptedKeyIds(), [1, 128]);
});

test('after a revocation both keys rotate: the revoked worker\'s datagrams are dropped as retired_key, the others keep talking', () => {
  const cluster = hexKey(1);
  const overlay = hexKey(128);
  const rings = [new TunnelKeyring(cluster), new TunnelKeyring(cluster), new TunnelKeyring(cluster)];
  for (const r of rings) r.setOverlay(overlay);
  const [a, b, revoked] = rings.map((r, i) => endpoint(0x0a120100 + i * 256, r)) as [TunnelCodec, TunnelCodec, TunnelCodec];
  assert.equal(send(revoked, a), 1, 'before: admitted');
  const cluster2 = nextTunnelKey(cluster);
  const overlay2 = nextTunnelKey(overlay);
  assert.equal(cluster2.key_id, 2);
  assert.equal(overlay2.key_id, 129);
  for (const r of rings.slice(0, 2)) {
    assert.equal(r.setCluster(cluster2), 'rotated');
    assert.equal(r.setOverlay(overlay2), 'rotated');
  }
  assert.equal(rings[0]!.sendKeyId, 129);
  assert.deepEqual(rings[0]!.acceptedKeyIds(), [2, 129]);
  assert.deepEqual(rings[0]!.retiredKeyIds(), [1, 128]);
  // The revoked worker sends with the old overlay key, and could forge with the old cluster key.
  assert.equal(send(revoked, a), 0);
  const forger = new TunnelKeyring(cluster);
  const forged = endpoint(0x0a120200 /* b's sender id */, forger);
  assert.equal(send(forged, a), 0, 'old cluster key under another worker\'s sender id');
  assert.equal(a.drops.get(Drop.RetiredKey), 2);
  assert.equal(a.drops.get(Drop.BadTag), 0);
  // The remaining workers switched without new codecs and keep talking, both ways.
  assert.equal(send(a, b), 1);
  assert.equal(send(b, a), 1);
  for (const c of [a, b, revoked, forged]) c.close();
});

test('a key replaced under the same id (ids wrap around) is used at once: the codec rebuilds its cipher', () => {
  const ring1 = new TunnelKeyring(hexKey(1));
  const ring2 = new TunnelKeyring(hexKey(1));
  ring2.setCluster({ ...ring1.clusterKey });
  const a = endpoint(0x0a120100, ring1);
  const b = endpoint(0x0a120200, ring2);
  assert.equal(send(a, b), 1);
  const k = hexKey(1);
  assert.equal(ring1.setCluster(k), 'rotated');
  assert.equal(send(a, b), 0, 'b still has the old key under id 1');
  assert.equal(ring2.setCluster(k), 'rotated');
  assert.equal(send(a, b), 1);
  assert.deepEqual(ring1.retiredKeyIds(), [], 'the id is in use again, not retired');
  a.close();
  b.close();
});

test('rotated key ids stay in their range: cluster keys 1..127, overlay keys 128..255', () => {
  assert.equal(nextTunnelKey(hexKey(127)).key_id, 1);
  assert.equal(nextTunnelKey(hexKey(255)).key_id, 128);
  assert.equal(nextTunnelKey(hexKey(5)).key_id, 6);
  const k = hexKey(1);
  assert.notEqual(nextTunnelKey(k).key, k.key);
});
