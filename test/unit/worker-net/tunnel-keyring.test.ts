// A worker's tunnel keys: workers of two clusters (different cluster keys) cannot read each other
// until both learn root's overlay key, which works on codecs already running; the cluster key
// stays accepted for workers that have not switched yet.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { TxPlan } from '../../../native/io.ts';
import { Drop, TunnelCodec, TunnelType, newRxBatch } from '../../../netstack/tunnel.ts';
import { TunnelKeyring } from '../../../orchestrator/worker/net/tunnel-keyring.ts';
import type { TunnelKey } from '../../../orchestrator/protocol/tunnel-identity.ts';

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

test('an overlay key that would shadow the cluster key or replace another key is refused', () => {
  const ring = new TunnelKeyring(hexKey(1));
  assert.equal(ring.setOverlay(hexKey(1)), 'same-id-as-cluster-key');
  assert.equal(ring.sendKeyId, 1);
  ring.setOverlay(hexKey(128));
  assert.equal(ring.setOverlay(hexKey(128)), 'other-key-same-id');
  assert.deepEqual(ring.acceptedKeyIds(), [1, 128]);
});
