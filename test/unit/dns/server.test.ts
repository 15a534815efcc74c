// The service DNS server on loopback, queried over real UDP; answers decoded with dns2 (an independent
// codec). The upstream here is a stub on loopback (a unit test of forwarding logic); the lab test
// forwards to dnsmasq in its own namespace.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import dns2 from 'dns2';
import { ServiceDnsServer } from '../../../dns/server.ts';
import { SemanticTable } from '../../../proxy/semantic-table.ts';
import { StaticRouteSource } from '../../../proxy/static-route-source.ts';
import { StaticRtt } from '../../../proxy/rtt.ts';
import type { ServiceRoute } from '../../../proxy/route-messages.ts';

const { Packet } = dns2;

const route: ServiceRoute = {
  service_id: 's1', name: 'app.ans.ms2.sns', rr_ip: '10.30.0.2', rr_ip_v6: 'fdc0:30::2', closest_ip: '10.30.0.3',
  closest_ip_v6: 'fdc0:30::3', default_policy: 'closest', ports: [{ port: 80, proto: 'tcp' }, { port: 8443, proto: 'tcp' }],
  instances: [{ n: 1, instance_ip: '10.30.1.1', instance_ip_v6: 'fdc0:30::1:1', ns_ip: '10.18.2.2', ns_ip_v6: null,
    worker_id: 'w2', cluster_id: null, tunnel_endpoint: '198.18.0.2:50103', healthy: true }],
};

const source = new StaticRouteSource([route]);
const table = new SemanticTable({ workerId: 'w1', link: source.link('w1'), rtt: new StaticRtt() });
const upstream = dgram.createSocket('udp4');
let upstreamSilent = false;
upstream.on('message', (msg, r) => {
  if (upstreamSilent) return;
  // Echo the query back as an answer with one A record 192.0.2.7 (the stub's whole world).
  const q = Packet.parse(msg);
  const a = Packet.createResponseFromRequest(q);
  a.answers.push(new Packet.Resource({ name: q.questions[0]!.name, type: Packet.TYPE.A, class: Packet.CLASS.IN, ttl: 60, address: '192.0.2.7' }));
  upstream.send(a.toBuffer(), r.port, r.address);
});
await new Promise<void>((r) => upstream.bind(0, '127.0.0.1', r));
const logs: Record<string, unknown>[] = [];
const server = new ServiceDnsServer({
  listen: [{ address: '127.0.0.1', port: 0 }], resolver: table,
  upstreams: [{ address: '127.0.0.1', port: upstream.address().port }], forwardTimeoutMs: 200, log: (r) => logs.push(r),
});
await server.start();
const port = server.addresses[0]!.port;
const client = dgram.createSocket('udp4');
await new Promise<void>((r) => client.bind(0, '127.0.0.1', r));
after(() => { client.close(); server.close(); upstream.close(); table.close(); source.close(); });

let nextId = 1;
function raw(buf: Uint8Array, timeoutMs = 1000): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const t = setTimeout(() => { client.off('message', on); resolve(null); }, timeoutMs);
    const on = (m: Buffer): void => { clearTimeout(t); client.off('message', on); resolve(m); };
    client.on('message', on);
    client.send(buf, port, '127.0.0.1');
  });
}

async function ask(name: string, type: number): Promise<InstanceType<typeof Packet>> {
  const q = new Packet();
  q.header.id = nextId++;
  q.header.rd = 1;
  q.questions.push(new Packet.Question(name, type, Packet.CLASS.IN));
  const r = await raw(q.toBuffer());
  assert.ok(r, `no answer for ${name}`);
  const p = Packet.parse(r);
  assert.equal(p.header.id, q.header.id);
  return p;
}

test('A and AAAA answer the policy address of the selector; no selector means the default policy', async () => {
  const cases: [string, number, string][] = [
    ['closest.ms2.sns.app.ans.canopy', Packet.TYPE.A, '10.30.0.3'],
    ['rr.ms2.sns.app.ans.canopy', Packet.TYPE.A, '10.30.0.2'],
    ['any.ms2.sns.app.ans.canopy', Packet.TYPE.A, '10.30.0.2'],
    ['MS2.sns.app.ans.Canopy', Packet.TYPE.A, '10.30.0.3'],
    ['1.ms2.sns.app.ans.canopy', Packet.TYPE.A, '10.30.1.1'],
    ['closest.ms2.sns.app.ans.canopy', Packet.TYPE.AAAA, 'fdc0:30::3'],
    ['rr.ms2.sns.app.ans.canopy', Packet.TYPE.AAAA, 'fdc0:30::2'],
  ];
  for (const [name, type, want] of cases) {
    const p = await ask(name, type);
    assert.equal(p.header.rcode, 0, name);
    assert.equal(p.header.aa, 1);
    assert.equal(p.answers.length, 1, name);
    assert.equal(p.answers[0]!.address, want, name);
    assert.equal(p.answers[0]!.ttl, 5);
  }
});

test('SRV gives the service ports', async () => {
  const p = await ask('ms2.sns.app.ans.canopy', Packet.TYPE.SRV);
  assert.deepEqual(p.answers.map((a) => a.port).sort(), [80, 8443]);
  assert.equal(p.answers[0]!.target, 'ms2.sns.app.ans.canopy');
});

test('unknown names in the zone are NXDOMAIN with the SOA; other types are NODATA', async () => {
  for (const name of ['nope.sns.app.ans.canopy', 'closest.ms2.otherns.sns.app.ans.canopy', 'x.canopy', '7.ms2.sns.app.ans.canopy', 'bad!.ms2.sns.app.ans.canopy']) {
    const p = await ask(name, Packet.TYPE.A);
    assert.equal(p.header.rcode, 3, name);
    assert.equal(p.answers.length, 0);
    assert.equal(p.authorities[0]?.type, Packet.TYPE.SOA, name);
  }
  const p = await ask('ms2.sns.app.ans.canopy', Packet.TYPE.MX);
  assert.equal(p.header.rcode, 0);
  assert.equal(p.answers.length, 0);
});

test('names outside the zone are relayed to the upstream; a silent upstream gives SERVFAIL, logged once and counted', async () => {
  const p = await ask('example.org', Packet.TYPE.A);
  assert.equal(p.answers[0]?.address, '192.0.2.7');
  const up = `127.0.0.1:${upstream.address().port}`;
  const unreachable = () => logs.filter((l) => l.msg === 'DNS upstream unreachable');
  assert.match(server.metrics(), new RegExp(`canopy_dns_upstream_unreachable_total\\{upstream="${up}"\\} 0\n`));
  upstreamSilent = true;
  for (const name of ['example.net', 'example.com', 'example.info']) assert.equal((await ask(name, Packet.TYPE.A)).header.rcode, 2, name);
  assert.equal(unreachable().length, 1, 'logged once, not per query');
  assert.equal(unreachable()[0]!.level, 'warn');
  assert.equal(unreachable()[0]!.upstream, up);
  assert.match(String(unreachable()[0]!.reason), /no answer within 200 ms/);
  assert.match(server.metrics(), new RegExp(`canopy_dns_upstream_unreachable_total\\{upstream="${up}"\\} 3\n`));
  upstreamSilent = false;
  assert.equal((await ask('example.org', Packet.TYPE.A)).answers[0]?.address, '192.0.2.7');
  assert.equal(logs.filter((l) => l.msg === 'DNS upstream answering again').length, 1);
});

test('malformed queries get FORMERR or nothing, and the server keeps answering', async () => {
  const good = new Packet();
  good.header.id = 4242;
  good.questions.push(new Packet.Question('rr.ms2.sns.app.ans.canopy', Packet.TYPE.A, Packet.CLASS.IN));
  const g = good.toBuffer();
  // Truncated question: FORMERR with our id.
  const r1 = await raw(g.subarray(0, g.length - 3));
  assert.ok(r1);
  assert.equal(r1.readUInt16BE(0), 4242);
  assert.equal(r1[3]! & 0xf, 1);
  // A compression pointer in the question: FORMERR.
  const ptr = Buffer.from(g);
  ptr[12] = 0xc0;
  assert.equal(((await raw(ptr))![3]!) & 0xf, 1);
  // Shorter than a header, or a response: dropped.
  assert.equal(await raw(Buffer.from([1, 2, 3]), 150), null);
  const resp = Buffer.from(g); resp[2] |= 0x80;
  assert.equal(await raw(resp, 150), null);
  const p = await ask('rr.ms2.sns.app.ans.canopy', Packet.TYPE.A);
  assert.equal(p.answers[0]!.address, '10.30.0.2');
  assert.ok(server.counts.formerr >= 2);
  assert.ok(server.counts.dropped >= 2);
});

test('EDNS queries get an OPT record back', async () => {
  const q = new Packet();
  q.header.id = 77;
  q.questions.push(new Packet.Question('rr.ms2.sns.app.ans.canopy', Packet.TYPE.A, Packet.CLASS.IN));
  q.additionals.push({ name: '', type: Packet.TYPE.EDNS, class: 4096, ttl: 0, rdata: [] } as never);
  const r = await raw(q.toBuffer());
  const p = Packet.parse(r!);
  assert.equal(p.answers[0]?.address, '10.30.0.2');
  assert.equal(p.additionals.length, 1);
  assert.equal(p.additionals[0]!.type, Packet.TYPE.EDNS);
});

test('a pushed route change shows in the next answer (answers are reused only while routes are unchanged)', async () => {
  const name = 'rr.ms2.sns.app.ans.canopy';
  assert.equal((await ask(name, Packet.TYPE.A)).answers[0]!.address, '10.30.0.2');
  assert.equal((await ask(name, Packet.TYPE.A)).answers[0]!.address, '10.30.0.2');
  source.update({ ...route, rr_ip: '10.30.0.42' });
  await new Promise((r) => setTimeout(r, 5));
  const p = await ask(name, Packet.TYPE.A);
  assert.equal(p.answers[0]!.address, '10.30.0.42');
  assert.equal(p.header.id, nextId - 1, 'a reused answer carries the new query id');
  source.update(route);
});

test('DNS over TCP answers the same names (what clients do after a truncated answer)', async () => {
  const net = await import('node:net');
  const q = new Packet();
  q.header.id = 31337;
  q.questions.push(new Packet.Question('closest.ms2.sns.app.ans.canopy', Packet.TYPE.A, Packet.CLASS.IN));
  const body = q.toBuffer();
  const answer = await new Promise<Buffer>((resolve, reject) => {
    const c = net.connect({ host: '127.0.0.1', port }, () => {
      const len = Buffer.alloc(2); len.writeUInt16BE(body.length);
      // Split across writes: the server must reassemble.
      c.write(Buffer.concat([len, body.subarray(0, 5)]));
      setTimeout(() => c.write(body.subarray(5)), 20);
    });
    let buf = Buffer.alloc(0);
    c.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) { c.destroy(); resolve(buf.subarray(2)); }
    });
    c.on('error', reject);
  });
  const p = Packet.parse(answer);
  assert.equal(p.header.id, 31337);
  assert.equal(p.answers[0]?.address, '10.30.0.3');
});

test('the node:dgram transport answers the same', async () => {
  const plain = new ServiceDnsServer({ listen: [{ address: '127.0.0.1', port: 0 }], resolver: table, upstreams: [], batched: false, log: () => {} });
  await plain.start();
  try {
    const q = new Packet();
    q.header.id = 555;
    q.questions.push(new Packet.Question('closest.ms2.sns.app.ans.canopy', Packet.TYPE.AAAA, Packet.CLASS.IN));
    const r = await new Promise<Buffer>((resolve) => {
      client.once('message', (m) => resolve(m));
      client.send(q.toBuffer(), plain.addresses[0]!.port, '127.0.0.1');
    });
    assert.equal(Packet.parse(r).answers[0]?.address, 'fdc0:30::3');
  } finally {
    plain.close();
  }
});
