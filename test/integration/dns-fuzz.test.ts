// 100 000 malformed and random datagrams at the service DNS server (on loopback): it must answer each
// with a well-formed response or drop it, never fail inside its handler, and still answer correctly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { ServiceDnsServer } from '../../dns/server.ts';
import { SemanticTable } from '../../proxy/semantic-table.ts';
import { StaticRouteSource } from '../../proxy/static-route-source.ts';
import { StaticRtt } from '../../proxy/rtt.ts';
import type { ServiceRoute } from '../../proxy/route-messages.ts';
import { fuzzRandom } from '../support/fuzz-random.ts';

const rng = fuzzRandom('dns-fuzz');

const route: ServiceRoute = {
  service_id: 's1', name: 'app.ans.ms2.sns', rr_ip: '10.30.0.2', rr_ip_v6: 'fdc0:30::2', closest_ip: '10.30.0.3',
  closest_ip_v6: null, default_policy: 'rr', ports: [{ port: 80, proto: 'tcp' }], instances: [],
};

function query(id: number, name: string, type: number, edns: boolean): Buffer {
  const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')]));
  const head = Buffer.alloc(12);
  head.writeUInt16BE(id, 0); head.writeUInt16BE(0x0100, 2); head.writeUInt16BE(1, 4); head.writeUInt16BE(edns ? 1 : 0, 10);
  const q = Buffer.concat([head, ...labels, Buffer.from([0, type >> 8, type & 0xff, 0, 1])]);
  return edns ? Buffer.concat([q, Buffer.from([0, 0, 41, 16, 0, 0, 0, 0, 0, 0, 0])]) : q;
}

const NAMES = ['rr.ms2.sns.app.ans.canopy', 'closest.ms2.sns.app.ans.canopy', 'ms2.sns.app.ans.canopy', 'x.canopy', 'canopy', 'example.org'];

function mutate(i: number): Buffer {
  const r = rng.next();
  if (r < 0.25) return rng.bytes(Math.floor(rng.next() * 600));
  const base = query(i & 0xffff, NAMES[i % NAMES.length]!, [1, 28, 33, 6, 255, 15][i % 6]!, i % 2 === 0);
  if (r < 0.45) { // flip some bits
    for (let k = 0; k < 1 + (i % 8); k++) base[Math.floor(rng.next() * base.length)]! ^= 1 << (k % 8);
    return base;
  }
  if (r < 0.6) return base.subarray(0, Math.floor(rng.next() * base.length)); // truncate
  if (r < 0.7) return Buffer.concat([base, rng.bytes(1 + Math.floor(rng.next() * 40))]); // trailing junk
  if (r < 0.8) { // absurd counts
    base.writeUInt16BE(Math.floor(rng.next() * 65536), 4 + 2 * (i % 4));
    return base;
  }
  if (r < 0.9) { // long labels and names, pointers
    const b = Buffer.from(base);
    b[12] = [63, 64, 0xc0, 0xff, 0][i % 5]!;
    return b;
  }
  const long = Array.from({ length: 5 + (i % 5) }, () => 'a'.repeat(63)).join('.');
  return query(i & 0xffff, long, 1, false);
}

test('100 k malformed and random datagrams: the server keeps answering correctly', async () => {
  const source = new StaticRouteSource([route]);
  const table = new SemanticTable({ workerId: 'w1', link: source.link('w1'), rtt: new StaticRtt() });
  const server = new ServiceDnsServer({ listen: [{ address: '127.0.0.1', port: 0 }], resolver: table, upstreams: [], log: () => {} });
  await server.start();
  const port = server.addresses[0]!.port;
  const client = dgram.createSocket({ type: 'udp4', recvBufferSize: 8 << 20 });
  let responses = 0, malformedResponses = 0;
  client.on('message', (m) => {
    responses++;
    if (m.length < 12 || !(m[2]! & 0x80)) malformedResponses++;
  });
  await new Promise<void>((r) => client.bind(0, '127.0.0.1', r));
  try {
    const TOTAL = 100_000, BURST = 500;
    for (let i = 0; i < TOTAL; i += BURST) {
      await Promise.all(Array.from({ length: BURST }, (_, k) => new Promise<void>((res) => client.send(mutate(i + k), port, '127.0.0.1', () => res()))));
      await new Promise((r) => setImmediate(r));
    }
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(server.errors, 0, 'no query made the handler fail');
    assert.equal(malformedResponses, 0, 'every response is a DNS response');
    assert.ok(responses > 10_000, `the server answered along the way (${responses})`);
    assert.ok(server.counts.formerr > 1000 && server.counts.dropped > 1000, JSON.stringify(server.counts));
    // And it still answers a real query correctly.
    const answer = await new Promise<Buffer>((resolve) => {
      const on = (m: Buffer): void => { if (m.readUInt16BE(0) === 0xbeef) { client.off('message', on); resolve(m); } };
      client.on('message', on);
      client.send(query(0xbeef, 'rr.ms2.sns.app.ans.canopy', 1, false), port, '127.0.0.1');
    });
    assert.equal(answer[3]! & 0xf, 0);
    assert.equal(answer.readUInt16BE(6), 1);
    assert.deepEqual([...answer.subarray(answer.length - 4)], [10, 30, 0, 2]);
  } finally {
    client.close(); server.close(); table.close(); source.close();
  }
});
