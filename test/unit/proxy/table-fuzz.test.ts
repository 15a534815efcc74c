// Random packets and random route messages: the table answers a valid verdict for every packet and
// never throws, whatever arrives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SemanticTable } from '../../../proxy/semantic-table.ts';
import { StaticRouteSource } from '../../../proxy/static-route-source.ts';
import { StaticRtt } from '../../../proxy/rtt.ts';
import { parseClusterToWorker, RouteMessageError } from '../../../proxy/route-messages.ts';
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

test('random route messages are rejected by the parser, never half-applied', () => {
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
