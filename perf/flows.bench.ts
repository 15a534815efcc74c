// `npm run bench -- flows [flows]`: flow setup rate through the semantic layer. Calls the table's
// outbound() the way the datapath does (one borrowed buffer, one PacketMeta, one Rewrite) for packets
// that each open a new flow to an rr service of three remote instances, then for packets of flows
// that already exist. The peer in the same run is netstack's StaticTable (the Oakestra model with a
// string-keyed flow map) doing the same work. No root needed.
// Last line: {"bench":"flows","new_flows_per_s":…,"hit_pps":…,"static_new_flows_per_s":…,"ratio_vs_static":…,…}
import { SemanticTable } from '../proxy/semantic-table.ts';
import { StaticRouteSource } from '../proxy/static-route-source.ts';
import { StaticRtt } from '../proxy/rtt.ts';
import { ipBytes } from '../proxy/address-map.ts';
import type { ServiceRoute } from '../proxy/route-messages.ts';
import { StaticTable } from '../netstack/static-table.ts';
import { Proto, Verdict, newRewrite, type PacketMeta, type TranslationTable } from '../netstack/table.ts';
import { orSmoke } from './smoke.ts';

const N = Number(process.argv[2] ?? orSmoke(300_000, 2_000));
const ROUNDS = orSmoke(3, 1);

const route: ServiceRoute = {
  service_id: 's1', name: 'app.ans.svc.sns', rr_ip: '10.30.0.2', rr_ip_v6: 'fdc0:30::2', closest_ip: '10.30.0.3',
  closest_ip_v6: 'fdc0:30::3', default_policy: 'rr', ports: [],
  instances: [2, 3, 4].map((w, n) => ({
    n, instance_ip: `10.30.1.${n + 1}`, instance_ip_v6: `fdc0:30::1:${n + 1}`, ns_ip: `10.18.${w}.2`, ns_ip_v6: `fdc0:18:${w}::2`,
    worker_id: `w${w}`, cluster_id: null, tunnel_endpoint: `198.18.0.${w}:50103`, healthy: true,
  })),
};

async function semantic(): Promise<{ table: SemanticTable; close: () => void }> {
  const source = new StaticRouteSource([route]);
  const table = new SemanticTable({
    workerId: 'w1', link: source.link('w1'), rtt: new StaticRtt({ w2: 5, w3: 10, w4: 20 }),
    peerOf: (w) => Number(w.slice(1)), maxFlows: 4 * N,
  });
  table.addLocalInstance({ ns_ip: '10.18.1.2', ns_ip_v6: 'fdc0:18:1::2', instance_ip: '10.30.9.1', instance_ip_v6: 'fdc0:30::9:1' });
  await table.resolveName(route.name);
  return { table, close: () => { table.close(); source.close(); } };
}

function staticTable(family: 4 | 6): TranslationTable {
  const v6 = family === 6;
  return new StaticTable({
    selfId: 1,
    instances: [{ worker: 1, nsIp: v6 ? 'fdc0:18:1::2' : '10.18.1.2', instanceIp: v6 ? 'fdc0:30::9:1' : '10.30.9.1' }],
    services: [{
      ip: v6 ? 'fdc0:30::2' : '10.30.0.2',
      instances: route.instances.map((i) => ({ worker: Number(i.worker_id.slice(1)), nsIp: v6 ? i.ns_ip_v6! : i.ns_ip, instanceIp: v6 ? i.instance_ip_v6! : i.instance_ip })),
    }],
    maxFlows: 4 * N,
  });
}

/** Calls outbound() for n packets with distinct (sport, dport), or the first `distinct` of them again. */
function drive(t: TranslationTable, family: 4 | 6, n: number): number {
  const buf = new Uint8Array(64);
  const m: PacketMeta = family === 4
    ? { family, proto: Proto.TCP, l3: 0, l4: 20, srcOff: 12, dstOff: 16, sport: 0, dport: 0 }
    : { family, proto: Proto.TCP, l3: 0, l4: 40, srcOff: 8, dstOff: 24, sport: 0, dport: 0 };
  buf.set(ipBytes(family === 4 ? '10.18.1.2' : 'fdc0:18:1::2'), m.srcOff);
  buf.set(ipBytes(family === 4 ? '10.30.0.2' : 'fdc0:30::2'), m.dstOff);
  const out = newRewrite();
  let tunnel = 0;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    m.sport = 1024 + (i % 60000);
    m.dport = 1 + Math.floor(i / 60000);
    if (t.outbound(buf, m, out) === Verdict.Tunnel) tunnel++;
  }
  const ms = performance.now() - t0;
  if (tunnel !== n) throw new Error(`expected ${n} tunnel verdicts, got ${tunnel}`);
  return n / (ms / 1000);
}

const best = (xs: number[]): number => Math.round(Math.max(...xs));
const results: Record<string, number[]> = {};
const add = (k: string, v: number): void => { (results[k] ??= []).push(v); };

for (let r = 0; r < ROUNDS; r++) {
  for (const family of [4, 6] as const) {
    const s = await semantic();
    add(`new${family}`, drive(s.table, family, N));
    add(`hit${family}`, drive(s.table, family, N));
    s.close();
    const st = staticTable(family);
    add(`snew${family}`, drive(st, family, N));
    add(`shit${family}`, drive(st, family, N));
  }
  console.error(`round ${r + 1}: semantic new v4 ${Math.round(results.new4!.at(-1)!)} /s, hit v4 ${Math.round(results.hit4!.at(-1)!)} /s; static new v4 ${Math.round(results.snew4!.at(-1)!)} /s`);
}

const out = {
  bench: 'flows', flows: N,
  new_flows_per_s: best(results.new4!), hit_pps: best(results.hit4!),
  new_flows_per_s_v6: best(results.new6!), hit_pps_v6: best(results.hit6!),
  static_new_flows_per_s: best(results.snew4!), static_hit_pps: best(results.shit4!),
  static_new_flows_per_s_v6: best(results.snew6!),
  ratio_vs_static: Number((best(results.new4!) / best(results.snew4!)).toFixed(3)),
  ratio_vs_static_v6: Number((best(results.new6!) / best(results.snew6!)).toFixed(3)),
};
console.log(JSON.stringify(out));
