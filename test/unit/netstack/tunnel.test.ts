import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { TxPlan } from '../../../native/io.ts';
import { Drop, TunnelCodec, TunnelType, newRxBatch, type TunnelCodecOptions } from '../../../netstack/tunnel.ts';
import { evpAead, nodeAead } from '../../../netstack/aead.ts';


const key = randomBytes(32);

function codec(selfId: number, extra: Partial<TunnelCodecOptions> = {}): TunnelCodec {
  return new TunnelCodec({ selfId, keys: new Map([[1, key]]), keyId: 1, peers: { has: (id) => id === 1 || id === 2 }, maxDatagram: 1400, ...extra });
}

function datagrams(plan: TxPlan): Uint8Array[] {
  const out: Uint8Array[] = [];
  const b = new Uint8Array(70000);
  for (let s = 0; s < plan.segments; s++) out.push(b.slice(0, plan.copySegment(s, b)));
  return out;
}

function deliver(rx: TunnelCodec, ds: Uint8Array[]): Uint8Array[] {
  const got: Uint8Array[] = [];
  const batch = newRxBatch();
  for (const d of ds) if (rx.decode(d, 0, d.length, batch)) got.push(batch.buf.slice(batch.off, batch.off + batch.len));
  return got;
}

for (const encrypt of [false, true]) {
  for (const aead of ['aes-256-gcm', 'chacha20-poly1305'] as const) {
    for (const [fa, fb, impl] of [[nodeAead, nodeAead, 'node'], [evpAead, evpAead, 'evp'], [nodeAead, evpAead, 'node→evp'], [evpAead, nodeAead, 'evp→node']] as const) {
    test(`payloads of every size cross intact (${aead}, ${encrypt ? 'encrypted' : 'authenticated'}, ${impl})`, () => {
      const a = codec(1, { encrypt, aead, aeadFactory: fa });
      const b = codec(2, { encrypt, aead, aeadFactory: fb });
      const plan = new TxPlan();
      for (const size of [1, 60, 1375, 1376, 1400, 5000, 65545]) {
        const p = randomBytes(size);
        a.encode(TunnelType.Data, 0, p, 0, size, plan);
        const ds = datagrams(plan);
        for (const d of ds.slice(0, -1)) assert.equal(d.length, 1400, 'all datagrams but the last are full');
        assert.ok(ds.every((d) => d.length <= 1400));
        if (encrypt && size > 100) assert.equal(Buffer.concat(ds).indexOf(p.subarray(0, 32)), -1, 'plaintext not on the wire');
        const got = deliver(b, ds);
        assert.equal(got.length, 1, `size ${size}`);
        assert.deepEqual(got[0], new Uint8Array(p));
      }
      a.close();
      b.close();
    });
    }
  }
}

test('the OpenSSL path rejects a wrong key, a flipped bit and a replay like node:crypto does', () => {
  const a = codec(1, { aeadFactory: evpAead });
  const b = codec(2, { aeadFactory: evpAead });
  const evil = new TunnelCodec({ selfId: 1, keys: new Map([[1, randomBytes(32)]]), keyId: 1, peers: { has: () => true }, maxDatagram: 1400, aeadFactory: evpAead });
  const plan = new TxPlan();
  for (const size of [10, 3000]) {
    const p = randomBytes(size);
    evil.encode(TunnelType.Data, 0, p, 0, p.length, plan);
    assert.equal(deliver(b, datagrams(plan)).length, 0);
    a.encode(TunnelType.Data, 0, p, 0, p.length, plan);
    const ds = datagrams(plan);
    const bad = ds.map((d) => d.slice());
    bad[bad.length - 1][30] ^= 0x40;
    assert.equal(deliver(b, bad).length, 0);
    assert.equal(deliver(b, ds).length, 1);
    assert.equal(deliver(b, ds).length, 0);
  }
  assert.equal(b.drops.get(Drop.BadTag), 4);
  assert.equal(b.drops.get(Drop.Replay), 2);
  for (const c of [a, b, evil]) c.close();
});

test('a wrong key, an unknown sender, a tampered byte and a replay are dropped and counted', () => {
  const a = codec(1);
  const b = codec(2);
  const evil = new TunnelCodec({ selfId: 1, keys: new Map([[1, randomBytes(32)]]), keyId: 1, peers: { has: () => true }, maxDatagram: 1400 });
  const stranger = new TunnelCodec({ selfId: 9, keys: new Map([[1, key]]), keyId: 1, peers: { has: () => true }, maxDatagram: 1400 });
  const plan = new TxPlan();
  const p = randomBytes(3000);
  evil.encode(TunnelType.Data, 0, p, 0, p.length, plan);
  assert.equal(deliver(b, datagrams(plan)).length, 0);
  assert.equal(b.drops.get(Drop.BadTag), 1);
  stranger.encode(TunnelType.Data, 0, p, 0, 100, plan);
  assert.equal(deliver(b, datagrams(plan)).length, 0);
  assert.equal(b.drops.get(Drop.UnknownSender), 1);
  a.encode(TunnelType.Data, 0, p, 0, p.length, plan);
  const ds = datagrams(plan);
  const bad = ds.map((d) => d.slice());
  bad[1][100] ^= 1;
  assert.equal(deliver(b, bad).length, 0);
  assert.equal(b.drops.get(Drop.BadTag), 2);
  // The genuine batch was never accepted, so it still goes through once; a second copy is a replay.
  assert.equal(deliver(b, ds).length, 1);
  assert.equal(deliver(b, ds).length, 0);
  assert.equal(b.drops.get(Drop.Replay), 1);
  assert.equal(deliver(b, [new Uint8Array(10), Uint8Array.of(9, ...new Uint8Array(30))]).length, 0);
  assert.equal(b.drops.get(Drop.Malformed), 1);
  assert.equal(b.drops.get(Drop.Version), 1);
});

test('a lost datagram spoils only its batch', () => {
  const a = codec(1);
  const b = codec(2);
  const plan = new TxPlan();
  const p1 = randomBytes(4000);
  const p2 = randomBytes(4000);
  a.encode(TunnelType.Data, 0, p1, 0, p1.length, plan);
  const d1 = datagrams(plan);
  a.encode(TunnelType.Data, 0, p2, 0, p2.length, plan);
  const d2 = datagrams(plan);
  const got = deliver(b, [d1[0], d1[2], ...d2]);
  assert.equal(got.length, 1);
  assert.deepEqual(got[0], new Uint8Array(p2));
  assert.ok((b.drops.get(Drop.Incomplete) ?? 0) >= 1);
});

test('a restarted sender is not taken for a replayer', () => {
  const b = codec(2);
  const plan = new TxPlan();
  const p = randomBytes(50);
  const first = codec(1);
  first.encode(TunnelType.Data, 0, p, 0, p.length, plan);
  assert.equal(deliver(b, datagrams(plan)).length, 1);
  const restarted = codec(1, { firstCounter: Date.now() * 1000 + 10 });
  restarted.encode(TunnelType.Data, 0, p, 0, p.length, plan);
  assert.equal(deliver(b, datagrams(plan)).length, 1);
});

test('bad options fail with a clear error', () => {
  assert.throws(() => codec(1, { keys: new Map([[1, randomBytes(16)]]) }), /32 bytes/);
  assert.throws(() => codec(1, { keyId: 7 }), /no key/);
  assert.throws(() => codec(1, { maxDatagram: 20 }), /maxDatagram/);
});

test('the inner MTU leaves room for the tunnel on either underlay', async () => {
  const { innerMtuFor, maxDatagramFor, TUNNEL_HDR: H, TAG_LEN: T } = await import('../../../netstack/tunnel.ts');
  assert.equal(maxDatagramFor(1500, 4), 1472);
  assert.equal(innerMtuFor(1500, 6), 1500 - 40 - 8 - H - T);
  // A single inner packet of that size is one datagram.
  const c = codec(1, { maxDatagram: maxDatagramFor(1500, 6) });
  const plan = new TxPlan();
  const p = randomBytes(innerMtuFor(1500, 6));
  c.encode(TunnelType.Data, 0, p, 0, p.length, plan);
  assert.equal(plan.segments, 1);
});

test('a super-packet of innerGsoMaxFor bytes is a batch that fits one GSO send; one byte more does not', async () => {
  const { innerGsoMaxFor, maxDatagramFor } = await import('../../../netstack/tunnel.ts');
  const { maxGsoPayloadFor } = await import('../../../native/io.ts');
  for (const u of [4, 6] as const) {
    const md = maxDatagramFor(1500, u);
    const g = innerGsoMaxFor(md, u);
    const c = codec(1, { maxDatagram: md });
    const plan = new TxPlan();
    // What a TUN read of a g-byte super-packet holds: the 10-byte virtio header, then the packet.
    c.encode(TunnelType.Data, 0, randomBytes(10 + g), 0, 10 + g, plan);
    assert.ok(plan.total <= maxGsoPayloadFor(u), `IPv${u}: ${plan.total} bytes in one send`);
    c.encode(TunnelType.Data, 0, randomBytes(11 + g), 0, 11 + g, plan);
    assert.ok(plan.total > maxGsoPayloadFor(u), `IPv${u}: one byte more needs a second send`);
    assert.ok(g > 60000, `IPv${u}: super-packets stay large (${g})`);
  }
});

test('within one receive, a datagram from another sender or key is still checked, and a peer removed between receives is refused', () => {
  const peers = new Set([1, 2]);
  const b = new TunnelCodec({ selfId: 2, keys: new Map([[1, key]]), keyId: 1, peers: { has: (id) => peers.has(id) }, maxDatagram: 1400 });
  const a = codec(1);
  const stranger = new TunnelCodec({ selfId: 9, keys: new Map([[1, key]]), keyId: 1, peers: { has: () => true }, maxDatagram: 1400 });
  const otherKey = new TunnelCodec({ selfId: 1, keys: new Map([[7, key]]), keyId: 7, peers: { has: () => true }, maxDatagram: 1400, firstCounter: Date.now() * 1000 + 5e6 });
  const plan = new TxPlan();
  const p = randomBytes(3000);
  const batch = newRxBatch();
  const one = (c: TunnelCodec): Uint8Array[] => {
    c.encode(TunnelType.Data, 0, p, 0, p.length, plan);
    return datagrams(plan);
  };
  const [g1, g2, g3] = [one(a), one(stranger), one(otherKey)];
  b.beginReceive();
  let ok = 0;
  for (const d of [g1[0], g2[0], g3[0], g1[1], g1[2]]) if (b.decode(d, 0, d.length, batch)) ok++;
  b.endReceive();
  assert.equal(ok, 1, 'the genuine batch still completes');
  assert.equal(b.drops.get(Drop.UnknownSender), 1);
  assert.equal(b.drops.get(Drop.UnknownKey), 1);
  peers.delete(1);
  const g4 = one(a);
  b.beginReceive();
  for (const d of g4) assert.equal(b.decode(d, 0, d.length, batch), false);
  b.endReceive();
  assert.equal(b.drops.get(Drop.UnknownSender), 1 + g4.length);
});


test('a batch is gathered where a receive left it, also when it spans two receives into one reused buffer', () => {
  const a = codec(1, { aeadFactory: evpAead });
  const b = codec(2, { aeadFactory: evpAead });
  const plan = new TxPlan();
  const batch = newRxBatch();
  const rxBuf = new Uint8Array(70000);
  // What a GRO receive gives: datagrams back to back in one buffer, all but the last 1400 bytes.
  const receive = (ds: Uint8Array[], inPlace = true): number => {
    b.beginReceive();
    let off = 0;
    let done = 0;
    for (const d of ds) {
      rxBuf.set(d, off);
      off += d.length;
    }
    off = 0;
    for (const d of ds) {
      if (b.decode(rxBuf, off, d.length, batch)) {
        done++;
        assert.equal(batch.buf === rxBuf, inPlace, inPlace ? 'in place: no copy into a buffer of its own' : 'moved out before the buffer was reused');
      }
      off += d.length;
    }
    b.endReceive();
    return done;
  };
  for (const size of [5000, 65545]) {
    const p = randomBytes(size);
    a.encode(TunnelType.Data, 0, p, 0, size, plan);
    const ds = datagrams(plan);
    assert.equal(receive(ds), 1);
    assert.deepEqual(batch.buf.slice(batch.off, batch.off + batch.len), new Uint8Array(p), `size ${size}, one receive`);

    // Split across two receives: the second overwrites the buffer the first part was gathered in.
    const q = randomBytes(size);
    a.encode(TunnelType.Data, 0, q, 0, size, plan);
    const es = datagrams(plan);
    const cut = Math.floor(es.length / 2);
    assert.equal(receive(es.slice(0, cut)), 0);
    assert.equal(receive(es.slice(cut), false), 1);
    assert.deepEqual(batch.buf.slice(batch.off, batch.off + batch.len), new Uint8Array(q), `size ${size}, two receives`);
  }

  // A flipped bit in a middle datagram spoils that batch only.
  const r = randomBytes(20000);
  a.encode(TunnelType.Data, 0, r, 0, r.length, plan);
  const bad = datagrams(plan);
  bad[5][100] ^= 1;
  assert.equal(receive(bad), 0);
  assert.equal(b.drops.get(Drop.BadTag), 1);
  a.encode(TunnelType.Data, 0, r, 0, r.length, plan);
  assert.equal(receive(datagrams(plan)), 1);
  assert.deepEqual(batch.buf.slice(batch.off, batch.off + batch.len), new Uint8Array(r));
  a.close();
  b.close();
});
