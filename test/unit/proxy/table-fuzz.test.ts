// Random packets and random route messages: the table answers a valid verdict for every packet and
// never throws, whatever arrives; a route message is applied whole or, rejected, changes nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SemanticTable } from '../../../proxy/semantic-table.ts';
import { StaticRouteSource } from '../../../proxy/static-route-source.ts';
import { StaticRtt } from '../../../proxy/rtt.ts';
import { parseClusterToWorker, RouteMessageError, type ClusterToWorker, type RouteLink, type ServiceRoute, type WorkerToCluster } from '../../../proxy/route-messages.ts';
import { ipBytes } from '../../../proxy/address-map.ts';
import { Verdict, newRewrite, type PacketMeta } from '../../../netstack/table.ts';
import { fuzzRandom } from '../../support/fuzz-random.ts';

const rng = fuzzRandom('table-fuzz');

const route = {
  service_id: 's1', name: 'app.ans.s1.sns', rr_ip: '10.30.0.2', rr_ip_v6: 'fdc0:30::2', closest_ip: '10.30.0.3',
  closest_ip_v6: 'fdc0:30::3', default_policy: 'closest' as const, ports: [],
  instances: [0, 1, 2].map((n) => ({
    n, instance_ip: `10.30.1.${n}`, instance_ip_v6: n === 2 ? null : `fdc0:30::1:${n}`, ns_ip: `10.18.${n + 1}.2`,
    ns_ip_v6: `fdc0:18:${n + 1}::2`, worker_id: `w${n + 1}`, cluster_id: null, tunnel_endpoint: '198.18.0.9:50103', healthy: n !== 1,
  })),
};

test('100 k random packets: always a valid verdict, never an exception', async () => {
  const source = new StaticRouteSource([route], { answerDelayMs: 0 });
  const t = new SemanticTable({ workerId: 'w1', link: source.link('w1'), rtt: new StaticRtt({ w2: 3 }), maxFlows: 5000 });
  t.addLocalInstance({ ns_ip: '10.18.1.2', ns_ip_v6: 'fdc0:18:1::2', instance_ip: '10.30.1.0', instance_ip_v6: 'fdc0:30::1:0' });
  const pool4 = ['10.18.1.2', '10.30.0.2', '10.30.0.3', '10.30.1.0', '10.30.1.1', '10.30.1.2', '10.30.7.7', '10.18.2.2', '192.0.2.1'].map(ipBytes);
  const pool6 = ['fdc0:18:1::2', 'fdc0:30::2', 'fdc0:30::3', 'fdc0:30::1:0', 'fdc0:30::1:1', 'fdc0:30::9', '2001:db8::1'].map(ipBytes);
  const buf = new Uint8Array(64);
  const out = newRewrite();
  const valid = new Set<number>(Object.values(Verdict));
  for (let i = 0; i < 100_000; i++) {
    const fam: 4 | 6 = rng.next() < 0.5 ? 4 : 6;
    const pool = fam === 4 ? pool4 : pool6;
    const m: PacketMeta = fam === 4
      ? { family: 4, proto: [1, 6, 17, 99][i % 4]!, l3: 0, l4: 20, srcOff: 12, dstOff: 16, sport: (rng.next() * 65536) | 0, dport: [80, 53, 0][i % 3]! }
      : { family: 6, proto: [58, 6, 17][i % 3]!, l3: 0, l4: 40, srcOff: 8, dstOff: 24, sport: (rng.next() * 65536) | 0, dport: 80 };
    buf.set(pool[(rng.next() * pool.length) | 0]!, m.srcOff);
    buf.set(pool[(rng.next() * pool.length) | 0]!, m.dstOff);
    const v = rng.next() < 0.5 ? t.outbound(buf, m, out) : t.inbound(buf, m, (rng.next() * 4) | 0, out);
    assert.ok(valid.has(v));
    if (v === Verdict.Tunnel) assert.ok(out.peer > 0);
    if (i % 10_000 === 0) await new Promise((r) => setTimeout(r, 1));
  }
  t.close(); source.close();
});

test('random route messages: the parser rejects them with its own error class, never another exception', () => {
  let rejected = 0;
  const junk = (d: number): unknown => {
    const r = rng.next();
    if (d > 3 || r < 0.2) return [null, 1, -1, 'x', '10.30.0.2', true, Number.POSITIVE_INFINITY, {}][(rng.next() * 8) | 0];
    if (r < 0.5) return Array.from({ length: (rng.next() * 3) | 0 }, () => junk(d + 1));
    const keys = ['type', 'route', 'service_id', 'instances', 'query_id', 'entries', 'name', 'n', 'ns_ip'];
    return Object.fromEntries(keys.filter(() => rng.next() < 0.4).map((k) => [k, junk(d + 1)]));
  };
  for (let i = 0; i < 20_000; i++) {
    const msg = rng.next() < 0.5 ? junk(0) : { type: ['route_update', 'route_withdraw', 'table_result', 'coordinates'][i % 4], ...(junk(1) as object) };
    try { parseClusterToWorker(msg); } catch (e) { assert.ok(e instanceof RouteMessageError, String(e)); rejected++; }
  }
  assert.ok(rejected > 19_000);
});

// A link as the worker's MQTT one: each raw message goes through JSON and the parser, a rejected one
// is dropped (node-engine.ts does the same), an accepted one reaches the table.
class RawLink implements RouteLink {
  readonly listeners = new Set<(m: ClusterToWorker) => void>();
  constructor(private readonly answer: ServiceRoute) {}
  send(msg: WorkerToCluster): void {
    if (msg.type === 'table_query') queueMicrotask(() => this.deliver({ type: 'table_result', query_id: msg.query_id, route: this.answer }));
  }
  onMessage(listener: (m: ClusterToWorker) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  /** true when the parser accepted the message. */
  deliver(raw: unknown): boolean {
    let m: ClusterToWorker;
    try { m = parseClusterToWorker(JSON.parse(JSON.stringify(raw)) as unknown); } catch (e) {
      assert.ok(e instanceof RouteMessageError, String(e));
      return false;
    }
    for (const l of this.listeners) l(m);
    return true;
  }
}

/** Everything the table answers from: each service's route and instance records, its name, and what
 *  every address of the pool resolves to. Equal snapshots: the table answers every question alike. */
function snapshot(t: SemanticTable, pool: string[]): string {
  const svcs = [...t.services.byId.values()].map((s) => ({
    id: s.id, route: s.route, instances: s.instances.map((i) => `${i.n}@${i.workerId}:${i.healthy}:${i.alive}`),
  }));
  const names = [...t.services.byName].map(([n, s]) => `${n}=${s.id}`).sort();
  const addrs = pool.map((a) => {
    const e = t.services.byAddress.getBytes(ipBytes(a));
    return e ? `${a}=${e.kind}:${e.service.id}:${e.instance?.n ?? '-'}` : `${a}=none`;
  });
  return JSON.stringify({ svcs, names, addrs });
}

test('random route updates and withdrawals: each is applied fully or, rejected, changes nothing', async (tc) => {
  type Inst = ServiceRoute['instances'][number];
  const base: ServiceRoute = { ...route, default_policy: 'rr' };
  const link = new RawLink(base);
  const t = new SemanticTable({ workerId: 'w1', link, rtt: new StaticRtt({ w2: 3 }) });
  assert.equal((await t.resolveName(base.name))?.service_id, 's1');
  const ips4 = ['10.30.0.2', '10.30.0.3', '10.30.0.4', '10.30.1.0', '10.30.1.1', '10.30.1.2', '10.30.1.3', '10.30.1.9'];
  const ips6 = ['fdc0:30::2', 'fdc0:30::3', 'fdc0:30::1:0', 'fdc0:30::1:1', 'fdc0:30::1:9'];
  const pool = [...ips4, ...ips6];
  const pick = <T>(xs: readonly T[]): T => xs[(rng.next() * xs.length) | 0]!;
  // Mostly valid values, some invalid ones the parser must catch.
  const instance = (): Record<string, unknown> => ({
    n: rng.next() < 0.95 ? (rng.next() * 4) | 0 : pick([-1, 1.5, 'x']),
    instance_ip: rng.next() < 0.95 ? pick(ips4.slice(3)) : pick(['10.30.1.300', '', null]),
    instance_ip_v6: rng.next() < 0.7 ? pick(ips6.slice(2)) : null,
    ns_ip: `10.18.${1 + ((rng.next() * 3) | 0)}.2`, ns_ip_v6: null,
    worker_id: pick(['w1', 'w2', 'w3']), cluster_id: null,
    tunnel_endpoint: rng.next() < 0.95 ? '198.18.0.9:50103' : 'x:1',
    healthy: rng.next() < 0.95 ? rng.next() < 0.8 : 'yes',
  });
  const update = (): Record<string, unknown> => ({
    type: 'route_update',
    route: {
      ...base,
      service_id: rng.next() < 0.9 ? 's1' : 's9',
      rr_ip: rng.next() < 0.95 ? pick(ips4.slice(0, 3)) : '10.30.0.300',
      rr_ip_v6: rng.next() < 0.5 ? pick(ips6.slice(0, 2)) : null,
      closest_ip: rng.next() < 0.5 ? pick(ips4.slice(0, 3)) : null,
      name: rng.next() < 0.95 ? base.name : 'a.b.c',
      instances: Array.from({ length: (rng.next() * 4) | 0 }, instance),
    },
  });
  const withdraw = (): Record<string, unknown> => ({
    type: 'route_withdraw', service_id: rng.next() < 0.9 ? 's1' : 's9',
    ...(rng.next() < 0.8 ? { instances: Array.from({ length: (rng.next() * 3) | 0 }, () => (rng.next() * 4) | 0) } : {}),
  });
  const settle = (): Promise<void> => new Promise((r) => setImmediate(r));
  let accepted = 0, rejected = 0, applied = 0, refused = 0;
  for (let i = 0; i < 3000; i++) {
    // Gone services come back through a new query, so updates keep finding one to change.
    if (!t.services.byId.has('s1')) assert.equal((await t.resolveName(base.name))?.service_id, 's1');
    const before = snapshot(t, pool);
    const badBefore = t.stats.badMessages;
    const raw = rng.next() < 0.75 ? update() : withdraw();
    const ok = link.deliver(raw);
    await settle();
    const after = snapshot(t, pool);
    if (!ok) {
      rejected++;
      assert.equal(after, before, `rejected by the parser, yet the table changed: ${JSON.stringify(raw)}`);
      continue;
    }
    accepted++;
    if (t.stats.badMessages > badBefore) {
      refused++;
      assert.equal(after, before, `not applied (counted as bad), yet the table changed: ${JSON.stringify(raw)}`);
      continue;
    }
    const r = raw as { type: string; service_id?: string; instances?: number[]; route?: ServiceRoute };
    const sid = r.route?.service_id ?? r.service_id!;
    if (sid !== 's1') {
      assert.equal(after, before, 'a service this worker does not use is not taken');
      continue;
    }
    applied++;
    const svc = t.services.byId.get('s1');
    if (r.type === 'route_withdraw' && r.instances === undefined) {
      assert.equal(svc, undefined, 'a whole withdrawal removes the service');
      for (const a of pool) assert.notEqual(t.services.byAddress.getBytes(ipBytes(a))?.service.id, 's1', `${a} still points at s1`);
      continue;
    }
    assert.ok(svc, 'the service is still there');
    const prev = JSON.parse(before) as { svcs: Array<{ id: string; route: ServiceRoute }> };
    const want: Inst[] = r.type === 'route_update' ? r.route!.instances
      : prev.svcs.find((x) => x.id === 's1')!.route.instances.filter((x) => !r.instances!.includes(x.n));
    // Fully applied: the route is the one sent, every instance of it has a live record, and every
    // address of it answers for this service (instance addresses for their instance).
    if (r.type === 'route_update') assert.deepEqual(svc.route, JSON.parse(JSON.stringify(r.route)));
    assert.deepEqual(svc.instances.map((x) => x.n), [...want].map((x) => x.n).sort((a, b) => a - b));
    assert.ok(svc.instances.every((x) => x.alive));
    for (const a of [svc.route.rr_ip, svc.route.rr_ip_v6, svc.route.closest_ip]) {
      if (a) assert.equal(t.services.byAddress.getBytes(ipBytes(a))?.service, svc, `${a} answers for s1`);
    }
    for (const x of want) {
      const e = t.services.byAddress.getBytes(ipBytes(x.instance_ip));
      assert.equal(e?.service, svc, `${x.instance_ip} answers for s1`);
    }
  }
  tc.diagnostic(`${accepted} accepted (${applied} applied to s1, ${refused} refused as bad), ${rejected} rejected by the parser`);
  assert.ok(rejected > 100 && applied > 500, `both kinds were exercised: ${rejected} rejected, ${applied} applied`);
  t.close();
});
