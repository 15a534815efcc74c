// The DNS relay `canopy up` runs on its bridge: every name goes to the upstream and back, over UDP and
// TCP; a dead upstream gives SERVFAIL, is logged once with the reason and counted. Upstreams are stubs
// on loopback.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import dns2 from 'dns2';
import { DnsRelay } from '../../../dns/relay.ts';

const { Packet } = dns2;

function answerFor(msg: Buffer): Buffer {
  const q = Packet.parse(msg);
  const a = Packet.createResponseFromRequest(q);
  a.answers.push(new Packet.Resource({ name: q.questions[0]!.name, type: Packet.TYPE.A, class: Packet.CLASS.IN, ttl: 60, address: '192.0.2.9' }));
  return a.toBuffer();
}

const upstream = dgram.createSocket('udp4');
upstream.on('message', (msg, r) => upstream.send(answerFor(msg), r.port, r.address));
await new Promise<void>((r) => upstream.bind(0, '127.0.0.1', r));
const upPort = upstream.address().port;
const upstreamTcp = net.createServer((c) => {
  c.on('data', (d) => {
    const a = answerFor(d.subarray(2, 2 + d.readUInt16BE(0)));
    const len = Buffer.alloc(2);
    len.writeUInt16BE(a.length);
    c.end(Buffer.concat([len, a]));
  });
});
await new Promise<void>((r) => upstreamTcp.listen(upPort, '127.0.0.1', r));

// A port nobody listens on: bound once to learn a free one, then closed.
const gone = dgram.createSocket('udp4');
await new Promise<void>((r) => gone.bind(0, '127.0.0.1', r));
const deadPort = gone.address().port;
gone.close();

const logs: Record<string, unknown>[] = [];
const relay = new DnsRelay({ listen: { address: '127.0.0.1', port: 0 }, upstreams: [{ address: '127.0.0.1', port: upPort }], timeoutMs: 200, log: (r) => logs.push(r) });
await relay.start();
const deadLogs: Record<string, unknown>[] = [];
const dead = new DnsRelay({ listen: { address: '127.0.0.1', port: 0 }, upstreams: [{ address: '127.0.0.1', port: deadPort }], timeoutMs: 200, log: (r) => deadLogs.push(r) });
await dead.start();
after(() => { relay.close(); dead.close(); upstream.close(); upstreamTcp.close(); });

function query(name: string, id: number): Buffer {
  const q = new Packet();
  q.header.id = id;
  q.header.rd = 1;
  q.questions.push(new Packet.Question(name, Packet.TYPE.A, Packet.CLASS.IN));
  return q.toBuffer();
}

async function askUdp(port: number, name: string, id = 7): Promise<InstanceType<typeof Packet>> {
  const c = dgram.createSocket('udp4');
  try {
    return await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no answer')), 2000);
      c.on('message', (m) => { clearTimeout(t); resolve(Packet.parse(m)); });
      c.send(query(name, id), port, '127.0.0.1');
    });
  } finally {
    c.close();
  }
}

async function askTcp(port: number, name: string): Promise<InstanceType<typeof Packet>> {
  const q = query(name, 9);
  const len = Buffer.alloc(2);
  len.writeUInt16BE(q.length);
  return new Promise((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1', () => c.write(Buffer.concat([len, q])));
    let buf = Buffer.alloc(0);
    c.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) { c.destroy(); resolve(Packet.parse(buf.subarray(2))); }
    });
    c.on('error', reject);
  });
}

test('any name is relayed to the upstream and answered with the client\'s id, over UDP and TCP', async () => {
  const a = await askUdp(relay.port, 'deb.example.test', 4321);
  assert.equal(a.header.id, 4321);
  assert.equal(a.answers[0]?.address, '192.0.2.9');
  assert.equal((await askUdp(relay.port, 'closest.web.demo.webapp.demo.canopy')).answers[0]?.address, '192.0.2.9', 'the relay knows no zone');
  assert.equal((await askTcp(relay.port, 'tcp.example.test')).answers[0]?.address, '192.0.2.9');
  assert.equal(logs.filter((l) => l.level === 'warn').length, 0);
});

test('a dead upstream: SERVFAIL, one log line with the reason, every failure counted', async () => {
  for (const n of ['a.example.test', 'b.example.test', 'c.example.test']) assert.equal((await askUdp(dead.port, n)).header.rcode, 2, n);
  const lines = deadLogs.filter((l) => l.msg === 'DNS upstream unreachable');
  assert.equal(lines.length, 1, JSON.stringify(deadLogs));
  assert.equal(lines[0]!.upstream, `127.0.0.1:${deadPort}`);
  assert.match(String(lines[0]!.reason), /no answer within 200 ms/);
  assert.equal(dead.unreachable.get(`127.0.0.1:${deadPort}`), 3);
  // Over TCP the reason is the connection's.
  assert.equal((await askTcp(dead.port, 'd.example.test')).header.rcode, 2);
  assert.equal(dead.unreachable.get(`127.0.0.1:${deadPort}`), 4);
  assert.equal(deadLogs.filter((l) => l.msg === 'DNS upstream unreachable').length, 1, 'still once');
});

test('no upstream at all is a clear error at start', async () => {
  const r = new DnsRelay({ listen: { address: '127.0.0.1', port: 0 }, upstreams: [] });
  await assert.rejects(r.start(), /no upstream resolver/);
});
