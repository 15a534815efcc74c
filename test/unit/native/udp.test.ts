// Loopback only: no root needed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UdpSocket } from '../../../native/udp.ts';
import { TxPlan } from '../../../native/io.ts';

function planOf(data: Uint8Array, segSize: number, hdr: Uint8Array): TxPlan {
  // Each datagram: a 4-byte header slice then a slice of data (what the tunnel codec does).
  const p = new TxPlan();
  p.reset(segSize);
  for (let off = 0, i = 0; off < data.length; off += segSize - 4, i++) {
    p.startSegment();
    p.push(hdr, i * 4, 4);
    p.push(data, off, Math.min(segSize - 4, data.length - off));
  }
  return p;
}

function drain(s: UdpSocket, want: number): Uint8Array[] {
  const buf = new Uint8Array(70000);
  const rx = { segSize: 0 };
  const out: Uint8Array[] = [];
  const until = Date.now() + 2000;
  while (out.length < want && Date.now() < until) {
    const n = s.recv(buf, 0, buf.length, rx);
    if (n < 0) continue;
    for (let o = 0; o < n; o += rx.segSize) out.push(buf.slice(o, Math.min(o + rx.segSize, n)));
  }
  return out;
}

for (const offload of [true, false]) {
  for (const family of [4, 6] as const) {
    test(`datagrams of a gather plan arrive intact and in order (IPv${family}, offload ${offload})`, () => {
      const host = family === 4 ? '127.0.0.1' : '::1';
      const a = new UdpSocket({ host, port: 0, offload });
      const b = new UdpSocket({ host, port: 0, offload });
      try {
        assert.equal(a.gso, offload);
        const data = Uint8Array.from({ length: 100_000 }, (_, i) => (i * 31) & 0xff);
        const hdr = new Uint8Array(1024);
        for (let i = 0; i < hdr.length; i++) hdr[i] = i & 0xff;
        const plan = planOf(data, 1400, hdr);
        assert.ok(a.send({ host, port: b.port }, plan));
        const got = drain(b, plan.segments);
        assert.equal(got.length, plan.segments);
        const joined: number[] = [];
        got.forEach((d, i) => {
          assert.deepEqual(d.subarray(0, 4), hdr.subarray(i * 4, i * 4 + 4));
          joined.push(...d.subarray(4));
        });
        assert.deepEqual(Uint8Array.from(joined), data);
      } finally {
        a.close();
        b.close();
      }
    });
  }
}

test('socket buffers are enlarged, and a send to a closed port does not wedge the socket', () => {
  const a = new UdpSocket({ host: '127.0.0.1', port: 0 });
  const b = new UdpSocket({ host: '127.0.0.1', port: 0 });
  const dead = new UdpSocket({ host: '127.0.0.1', port: 0 });
  const deadPort = dead.port;
  dead.close();
  try {
    assert.ok(a.rcvbuf >= 1 << 20, `rcvbuf ${a.rcvbuf}`);
    const hdr = new Uint8Array(1024);
    const plan = planOf(new Uint8Array(500).fill(9), 1400, hdr);
    a.send({ host: '127.0.0.1', port: deadPort }, plan);
    a.send({ host: '127.0.0.1', port: deadPort }, plan);
    assert.ok(a.send({ host: '127.0.0.1', port: b.port }, plan));
    assert.equal(drain(b, 1).length, 1);
  } finally {
    a.close();
    b.close();
  }
});

test('bad addresses fail with a clear error', () => {
  assert.throws(() => new UdpSocket({ host: 'nope', port: 0 }), /not an IP address/);
  const a = new UdpSocket({ host: '127.0.0.1', port: 0 });
  try {
    const p = new TxPlan();
    p.reset(10); p.startSegment(); p.push(new Uint8Array(100), 0, 10);
    assert.throws(() => a.send({ host: '::1', port: 9 }, p), /not IPv4/);
  } finally {
    a.close();
  }
});
