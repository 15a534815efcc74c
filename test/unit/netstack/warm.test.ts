import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { warmPacketCode } from '../../../netstack/warm.ts';
import { PeerTable } from '../../../netstack/peers.ts';
import { bestAead, nodeAead, type AeadFactory, type BatchAead } from '../../../netstack/aead.ts';
import { TunnelCodec, TunnelType, newRxBatch, type TunnelCodecOptions } from '../../../netstack/tunnel.ts';
import { TxPlan } from '../../../native/io.ts';

function options(factory: AeadFactory): { opts: TunnelCodecOptions; made: BatchAead[]; closed: BatchAead[]; key: Uint8Array } {
  const made: BatchAead[] = [];
  const closed: BatchAead[] = [];
  const counting: AeadFactory = (name, k) => {
    const a = factory(name, k);
    made.push(a);
    const close = a.close.bind(a);
    a.close = () => { closed.push(a); close(); };
    return a;
  };
  const key = randomBytes(32);
  const peers = new PeerTable([{ id: 2, workerId: 'w2', endpoint: { host: '198.18.0.2', port: 50103 } }]);
  return { opts: { selfId: 1, keys: new Map([[1, key]]), keyId: 1, peers, maxDatagram: 1452, aeadFactory: counting }, made, closed, key };
}

for (const [name, factory] of [['OpenSSL', bestAead], ['node:crypto', nodeAead]] as const) {
  for (const peer of [2, undefined]) {
    test(`warming (${name}, ${peer === undefined ? 'no peer yet' : 'a peer'}) leaves the options as they were and frees every AEAD context`, () => {
      const { opts, made, closed, key } = options(factory);
      const before = { keys: [...opts.keys.entries()].map(([i, k]) => [i, Buffer.from(k).toString('hex')]), selfId: opts.selfId, keyId: opts.keyId };
      const r = warmPacketCode(opts, peer, 20);
      assert.equal(r.encoded, peer === undefined ? 120 : 240, 'six kinds of packet per round');
      assert.equal(r.decoded, peer === undefined ? 0 : 120, 'with a peer, every batch decoded and authenticated');
      assert.deepEqual({ keys: [...opts.keys.entries()].map(([i, k]) => [i, Buffer.from(k).toString('hex')]), selfId: opts.selfId, keyId: opts.keyId }, before);
      assert.equal(Buffer.from(opts.keys.get(1)!).toString('hex'), Buffer.from(key).toString('hex'), 'the key bytes are untouched');
      assert.ok(made.length >= 1);
      assert.equal(closed.length, made.length, 'every context the warm-up made is closed');
    });
  }
}

test('a codec built after warming starts clean: its first batch is accepted by a fresh peer', () => {
  const { opts } = options(bestAead);
  warmPacketCode(opts, 2, 20);
  const tx = new TunnelCodec({ ...opts, selfId: 2 });
  const rx = new TunnelCodec(opts);
  const plan = new TxPlan();
  const payload = new Uint8Array(200).fill(7);
  tx.encode(TunnelType.Data, 0, payload, 0, 100, plan);
  const d = new Uint8Array(2048);
  const n = plan.copySegment(0, d);
  const out = newRxBatch();
  assert.ok(rx.decode(d, 0, n, out));
  assert.equal(out.len, 100);
  assert.equal(rx.batchesIn, 1);
  for (const [, v] of rx.drops) assert.equal(v, 0);
  tx.close();
  rx.close();
});
