// The receiver's in-place mode: multi-datagram batches verified where they lie and handed out in
// pieces. Same wire format, so every result must equal the copying receiver's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { TxPlan } from '../../../netstack/io.ts';
import { Drop, TunnelCodec, TunnelType, newRxBatch, type RxBatch, type TunnelCodecOptions } from '../../../netstack/tunnel.ts';
import { nodeAead, type AeadFactory } from '../../../netstack/aead.ts';
import { EvpAead } from '../../../native/evp.ts';

const evpAead: AeadFactory = (name, k) => new EvpAead(name, k);
const key = randomBytes(32);

function codec(selfId: number, extra: Partial<TunnelCodecOptions> = {}): TunnelCodec {
  return new TunnelCodec({ selfId, keys: new Map([[1, key]]), keyId: 1, isPeer: (id) => id === 1 || id === 2, maxDatagram: 1400, ...extra });
}

function datagrams(plan: TxPlan): Uint8Array[] {
  const out: Uint8Array[] = [];
  const b = new Uint8Array(70000);
  for (let s = 0; s < plan.segments; s++) out.push(b.slice(0, plan.copySegment(s, b)));
  return out;
}

function payloadOf(rx: TunnelCodec, bt: RxBatch): Uint8Array {
  rx.flatten(bt);
  assert.equal(bt.parts, 0);
  return bt.buf.slice(bt.off, bt.off + bt.len);
}

/** Each datagram in its own buffer: the pieces stay where they are. */
function deliver(rx: TunnelCodec, ds: Uint8Array[], pieces: number[] = []): Uint8Array[] {
  const got: Uint8Array[] = [];
  const bt = newRxBatch();
  for (const d of ds) {
    if (!rx.decode(d, 0, d.length, bt)) continue;
    pieces.push(bt.parts);
    got.push(payloadOf(rx, bt));
  }
  return got;
}

/** Datagrams received alternately into two reused buffers, released before each reuse (the datapath's way). */
function deliverReusing(rx: TunnelCodec, ds: Uint8Array[]): Uint8Array[] {
  const bufs = [new Uint8Array(2000), new Uint8Array(2000)];
  const got: Uint8Array[] = [];
  const bt = newRxBatch();
  ds.forEach((d, i) => {
    const b = bufs[i & 1];
    rx.release(b);
    b.fill(0xee);
    b.set(d, 100);
    if (rx.decode(b, 100, d.length, bt)) got.push(payloadOf(rx, bt));
  });
  return got;
}

for (const encrypt of [false, true]) {
  for (const aead of ['aes-256-gcm', 'chacha20-poly1305'] as const) {
    test(`in place: payloads of every size cross intact (${aead}, ${encrypt ? 'encrypted' : 'authenticated'})`, () => {
      const a = codec(1, { encrypt, aead, aeadFactory: evpAead });
      const b = codec(2, { encrypt, aead, aeadFactory: evpAead, inPlace: true });
      const c = codec(2, { encrypt, aead, aeadFactory: evpAead, inPlace: true });
      const plan = new TxPlan();
      // 1376 + 16 = one full datagram; 1377..1391: the tag straddles two datagrams.
      for (const size of [1, 1376, 1377, 1385, 1391, 1392, 5000, 65545]) {
        const p = randomBytes(size);
        a.encode(TunnelType.Data, 0, p, 0, size, plan);
        const ds = datagrams(plan);
        const pieces: number[] = [];
        const got = deliver(b, ds.map((d) => d.slice()), pieces);
        assert.equal(got.length, 1, `size ${size}`);
        assert.deepEqual(got[0], new Uint8Array(p));
        if (ds.length > 1) assert.ok(pieces[0] >= ds.length - 1, `size ${size} came in pieces`);
        const again = deliverReusing(c, ds.map((d) => d.slice()));
        assert.equal(again.length, 1, `size ${size}, reused buffers`);
        assert.deepEqual(again[0], new Uint8Array(p));
      }
      for (const x of [a, b, c]) x.close();
    });
  }
}

test('in place: a flipped bit anywhere, a wrong key and a replay are dropped and counted', () => {
  const a = codec(1, { aeadFactory: evpAead });
  const b = codec(2, { aeadFactory: evpAead, inPlace: true });
  const evil = new TunnelCodec({ selfId: 1, keys: new Map([[1, randomBytes(32)]]), keyId: 1, isPeer: () => true, maxDatagram: 1400, aeadFactory: evpAead });
  const plan = new TxPlan();
  const p = randomBytes(4000);
  evil.encode(TunnelType.Data, 0, p, 0, p.length, plan);
  assert.equal(deliver(b, datagrams(plan)).length, 0);
  a.encode(TunnelType.Data, 0, p, 0, p.length, plan);
  const ds = datagrams(plan);
  // A payload byte in the middle, a tag byte in the last datagram, and the header's length field.
  for (const [i, at] of [[1, 500], [ds.length - 1, ds[ds.length - 1].length - 3], [0, 30]]) {
    const bad = ds.map((d) => d.slice());
    bad[i][at] ^= 0x10;
    assert.equal(deliver(b, bad).length, 0);
  }
  assert.equal(b.drops.get(Drop.BadTag), 4);
  assert.deepEqual(deliver(b, ds.map((d) => d.slice())), [new Uint8Array(p)]);
  assert.equal(deliver(b, ds.map((d) => d.slice())).length, 0);
  assert.equal(b.drops.get(Drop.Replay), 1);
  for (const x of [a, b, evil]) x.close();
});

test('in place: a small batch between the datagrams of a large one from another sender spoils neither', () => {
  const a = codec(1, { aeadFactory: evpAead });
  const c = codec(2, { aeadFactory: evpAead });
  const rx = new TunnelCodec({ selfId: 3, keys: new Map([[1, key]]), keyId: 1, isPeer: () => true, maxDatagram: 1400, aeadFactory: evpAead, inPlace: true });
  const plan = new TxPlan();
  const big = randomBytes(6000);
  const small = randomBytes(50);
  a.encode(TunnelType.Data, 0, big, 0, big.length, plan);
  const ds = datagrams(plan);
  c.encode(TunnelType.Data, 0, small, 0, small.length, plan);
  const got = deliver(rx, [ds[0], ds[1], ...datagrams(plan), ...ds.slice(2)]);
  assert.deepEqual(got, [new Uint8Array(small), new Uint8Array(big)]);
  for (const x of [a, c, rx]) x.close();
});

test('in place with an AEAD that cannot stream (node:crypto) falls back to copying', () => {
  const a = codec(1, { aeadFactory: nodeAead });
  const b = codec(2, { aeadFactory: nodeAead, inPlace: true });
  const plan = new TxPlan();
  const p = randomBytes(9000);
  a.encode(TunnelType.Data, 0, p, 0, p.length, plan);
  const pieces: number[] = [];
  assert.deepEqual(deliver(b, datagrams(plan), pieces), [new Uint8Array(p)]);
  assert.deepEqual(pieces, [0]);
});
