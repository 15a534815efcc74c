import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SemanticTable } from '../../../proxy/semantic-table.ts';
import { StaticRouteSource } from '../../../proxy/static-route-source.ts';
import { StaticRtt } from '../../../proxy/rtt.ts';
import { ipString } from '../../../proxy/address-map.ts';
import type { ServiceRoute, InstanceRoute, RouteLink, ClusterToWorker } from '../../../proxy/route-messages.ts';
import { Verdict, Proto, newRewrite, type Rewrite } from '../../../netstack/table.ts';
import { packet } from './packets.ts';

function inst(n: number, worker: string): InstanceRoute {
  return {
    n, instance_ip: `10.30.1.${10 + n}`, instance_ip_v6: `fdc0:30::1:${10 + n}`,
    ns_ip: `10.18.${worker.slice(1)}.${10 + n}`, ns_ip_v6: `fdc0:18:${worker.slice(1)}::${10 + n}`,
    worker_id: worker, cluster_id: 'c1', tunnel_endpoint: `198.18.0.${worker.slice(1)}:50103`, healthy: true,
  };
}

function svc(instances: InstanceRoute[], id = 's1', base = 0): ServiceRoute {
  return {
    service_id: id, name: `app.ans.${id}.sns`, rr_ip: `10.30.0.${base + 2}`, rr_ip_v6: `fdc0:30::${base + 2}`,
    closest_ip: `10.30.0.${base + 3}`, closest_ip_v6: `fdc0:30::${base + 3}`, default_policy: 'rr', ports: [{ port: 80, proto: 'tcp' }],
    instances,
  };
}

// Worker w1 with one local caller instance A.
function worker1(source: StaticRouteSource, rtt = new StaticRtt({ w2: 10, w3: 40 }), id = 'w1'): SemanticTable {
  const t = new SemanticTable({ workerId: id, link: source.link(id), rtt, peerOf: (w) => Number(w.slice(1)) });
  t.addLocalInstance({ ns_ip: '10.18.1.2', ns_ip_v6: 'fdc0:18:1::2', instance_ip: '10.30.9.1', instance_ip_v6: 'fdc0:30::9:1' });
  return t;
}

async function settle(): Promise<void> {
  await new Promise((r) => setTimeout(r, 5));
}

/** Resolves the service once (first packet Pending), then returns a function that opens new flows. */
async function primed(t: SemanticTable, dst: string): Promise<(sport: number) => { v: Verdict; out: Rewrite }> {
  const family = dst.includes(':') ? 6 : 4;
  const src = family === 4 ? '10.18.1.2' : 'fdc0:18:1::2';
  const first = packet(src, dst, 1000, 80);
  assert.equal(t.outbound(first.buf, first.meta, newRewrite()), Verdict.Pending);
  await settle();
  return (sport) => {
    const p = packet(src, dst, sport, 80);
    const out = newRewrite();
    return { v: t.outbound(p.buf, p.meta, out), out };
  };
}

const dstOf = (out: Rewrite, fam: 4 | 6 = 4): string => ipString(out.dst.subarray(0, fam === 4 ? 4 : 16), 0, fam);

test('rr cycles through instances per new flow, and a flow keeps its instance', async () => {
  const source = new StaticRouteSource([svc([inst(0, 'w2'), inst(1, 'w3'), inst(2, 'w4')])]);
  const t = worker1(source);
  const open = await primed(t, '10.30.0.2');
  const counts = new Map<string, number>();
  for (let i = 0; i < 300; i++) {
    const { v, out } = open(2000 + i);
    assert.equal(v, Verdict.Tunnel);
    counts.set(dstOf(out), (counts.get(dstOf(out)) ?? 0) + 1);
    assert.equal(ipString(out.src.subarray(0, 4)), '10.30.9.1', 'source becomes the caller\'s instance IP');
  }
  assert.deepEqual([...counts.values()], [100, 100, 100]);
  const a = open(5000), b = open(5000);
  assert.equal(dstOf(a.out), dstOf(b.out));
  assert.equal(a.out.peer, b.out.peer);
  t.close(); source.close();
});

test('closest picks the lowest RTT, and moves on when that instance is withdrawn', async () => {
  const source = new StaticRouteSource([svc([inst(0, 'w3'), inst(1, 'w2')])]);
  const t = worker1(source);
  const open = await primed(t, '10.30.0.3');
  for (let i = 0; i < 50; i++) assert.equal(open(3000 + i).out.peer, 2);
  const kept = open(4000);
  source.withdraw('s1', [1]);
  await settle();
  assert.equal(open(4001).out.peer, 3, 'a new flow goes to the remaining instance');
  const again = open(4000);
  assert.equal(kept.out.peer, 2);
  assert.equal(again.v, Verdict.Tunnel);
  assert.equal(again.out.peer, 3, 'the old flow picks again once its instance left');
  t.close(); source.close();
});

test('closest: equal RTTs take turns; unhealthy instances are not picked; unmeasured workers use coordinates', async () => {
  const rtt = new StaticRtt({ w2: 10, w3: 10 });
  const source = new StaticRouteSource([svc([inst(0, 'w2'), inst(1, 'w3'), { ...inst(2, 'w4'), healthy: false }])]);
  const t = worker1(source, rtt);
  const open = await primed(t, '10.30.0.3');
  const peers = Array.from({ length: 10 }, (_, i) => open(6000 + i).out.peer);
  assert.deepEqual(peers.filter((p) => p === 2).length, 5);
  assert.ok(!peers.includes(4));
  // w5 unmeasured but close by coordinates: it wins over w2/w3 at 10 ms.
  rtt.delete('w2'); rtt.delete('w3');
  const r = svc([inst(0, 'w2'), inst(1, 'w3'), inst(3, 'w5')]);
  source.coordinates.set('w2', { vec: [30, 0], height: 0.1, error: 0.2 });
  source.coordinates.set('w3', { vec: [0, 30], height: 0.1, error: 0.2 });
  source.coordinates.set('w5', { vec: [2, 0], height: 0.1, error: 0.2 });
  source.broadcastCoordinates();
  source.update(r);
  await settle();
  assert.equal(open(7000).out.peer, 5);
  t.close(); source.close();
});

test('closest and rr skip an unhealthy (overloaded) instance, and fall back to all when none is healthy', async () => {
  // w2 is the nearest; it becomes unhealthy, then w3 too, then w2 recovers.
  const source = new StaticRouteSource([svc([inst(0, 'w2'), inst(1, 'w3')])]);
  const t = worker1(source);
  const closest = await primed(t, '10.30.0.3');
  const rr = (sp: number): { v: Verdict; out: Rewrite } => {
    const p = packet('10.18.1.2', '10.30.0.2', sp, 80);
    const out = newRewrite();
    return { v: t.outbound(p.buf, p.meta, out), out };
  };
  let sport = 10_000;
  const peers = (open: typeof closest, n: number): Set<number> => new Set(Array.from({ length: n }, () => open(sport++).out.peer));
  assert.deepEqual(peers(closest, 10), new Set([2]));
  source.update(svc([{ ...inst(0, 'w2'), healthy: false }, inst(1, 'w3')]));
  await settle();
  assert.deepEqual(peers(closest, 10), new Set([3]), 'closest avoids the unhealthy nearer instance');
  assert.deepEqual(peers(rr, 10), new Set([3]), 'rr avoids it too');
  source.update(svc([{ ...inst(0, 'w2'), healthy: false }, { ...inst(1, 'w3'), healthy: false }]));
  await settle();
  const all = peers(closest, 10);
  assert.deepEqual(all, new Set([2]), 'all unhealthy: closest still answers, by RTT');
  assert.deepEqual(peers(rr, 10), new Set([2, 3]), 'all unhealthy: rr still answers, over all');
  for (let i = 0; i < 10; i++) assert.equal(closest(sport++).v, Verdict.Tunnel, 'never dropped');
  source.update(svc([inst(0, 'w2'), { ...inst(1, 'w3'), healthy: false }]));
  await settle();
  assert.deepEqual(peers(closest, 10), new Set([2]), 'recovered: back to the nearer instance');
  t.close(); source.close();
});

test('an unknown service address starts exactly one query; packets wait and are resolvable when ready fires', async () => {
  const source = new StaticRouteSource([svc([inst(0, 'w2')])], { answerDelayMs: 20 });
  const t = worker1(source);
  let ready = 0;
  t.onReady(() => ready++);
  for (let i = 0; i < 100; i++) {
    const p = packet('10.18.1.2', '10.30.0.2', 1000 + i, 80);
    assert.equal(t.outbound(p.buf, p.meta, newRewrite()), Verdict.Pending);
  }
  assert.equal(source.received.filter((r) => r.msg.type === 'table_query').length, 1);
  await new Promise((r) => setTimeout(r, 40));
  assert.ok(ready >= 1);
  const p = packet('10.18.1.2', '10.30.0.2', 1000, 80);
  const out = newRewrite();
  assert.equal(t.outbound(p.buf, p.meta, out), Verdict.Tunnel);
  assert.deepEqual(source.interested('w1'), ['s1'], 'the worker registered interest in what it cached');
  // An address no service has: one query, then dropped (not re-queried) for a while.
  const q = packet('10.18.1.2', '10.30.7.7', 1, 80);
  assert.equal(t.outbound(q.buf, q.meta, newRewrite()), Verdict.Pending);
  await new Promise((r) => setTimeout(r, 40));
  assert.equal(t.outbound(q.buf, q.meta, newRewrite()), Verdict.Drop);
  assert.equal(source.received.filter((r) => r.msg.type === 'table_query').length, 2);
  // Outside the service range: dropped without a query.
  const x = packet('10.18.1.2', '192.0.2.1', 1, 80);
  assert.equal(t.outbound(x.buf, x.meta, newRewrite()), Verdict.Drop);
  t.close(); source.close();
});

test('a silent cluster: the pending destination times out and ready still fires', async () => {
  const source = new StaticRouteSource([], { silent: true });
  const t = new SemanticTable({ workerId: 'w1', link: source.link('w1'), rtt: new StaticRtt(), queryTimeoutMs: 10 });
  t.addLocalInstance({ ns_ip: '10.18.1.2', ns_ip_v6: null, instance_ip: '10.30.9.1', instance_ip_v6: null });
  let ready = 0;
  t.onReady(() => ready++);
  const p = packet('10.18.1.2', '10.30.0.2', 1, 80);
  assert.equal(t.outbound(p.buf, p.meta, newRewrite()), Verdict.Pending);
  await new Promise((r) => setTimeout(r, 20));
  t.tick();
  await settle();
  assert.equal(ready, 1);
  assert.equal(t.outbound(p.buf, p.meta, newRewrite()), Verdict.Drop);
  const name = t.resolveName('app.ans.s1.sns');
  await new Promise((r) => setTimeout(r, 20));
  t.tick();
  assert.equal(await name, null);
  t.close(); source.close();
});

for (const fam of [4, 6] as const) {
  test(`IPv${fam}: request and reply across two workers; the caller sees the address it dialled`, async () => {
    const v = (a4: string, a6: string): string => (fam === 4 ? a4 : a6);
    const source = new StaticRouteSource([svc([inst(0, 'w2')])]);
    const w1 = worker1(source);
    const w2 = new SemanticTable({ workerId: 'w2', link: source.link('w2'), rtt: new StaticRtt(), peerOf: (w) => Number(w.slice(1)) });
    w2.addLocalInstance({ ns_ip: '10.18.2.10', ns_ip_v6: 'fdc0:18:2::10', instance_ip: '10.30.1.10', instance_ip_v6: 'fdc0:30::1:10' });
    const S = v('10.30.0.3', 'fdc0:30::3');
    const open = await primed(w1, S);
    const { v: verdict, out } = open(40000);
    assert.equal(verdict, Verdict.Tunnel);
    assert.equal(out.peer, 2);
    assert.equal(dstOf(out, fam), v('10.18.2.10', 'fdc0:18:2::10'));
    const IA = v('10.30.9.1', 'fdc0:30::9:1');
    // Worker 2 receives src IA → B_ns and delivers it.
    const req = packet(IA, v('10.18.2.10', 'fdc0:18:2::10'), 40000, 80);
    assert.equal(w2.inbound(req.buf, req.meta, 1, newRewrite()), Verdict.Local);
    // B answers IA; worker 2 knows no route for IA but remembers the way back.
    const rep = packet(v('10.18.2.10', 'fdc0:18:2::10'), IA, 80, 40000);
    const o2 = newRewrite();
    assert.equal(w2.outbound(rep.buf, rep.meta, o2), Verdict.Tunnel);
    assert.equal(o2.peer, 1);
    assert.equal(o2.rewriteSrc, true);
    assert.equal(ipString(o2.src.subarray(0, fam === 4 ? 4 : 16), 0, fam), v('10.30.1.10', 'fdc0:30::1:10'));
    assert.equal(source.received.filter((r) => r.workerId === 'w2').length, 0, 'no route query for the reply');
    // Worker 1 gets src IB → dst IA: dst back to A_ns, src back to S.
    const back = packet(v('10.30.1.10', 'fdc0:30::1:10'), IA, 80, 40000);
    const o1 = newRewrite();
    assert.equal(w1.inbound(back.buf, back.meta, 2, o1), Verdict.Local);
    assert.equal(dstOf(o1, fam), v('10.18.1.2', 'fdc0:18:1::2'));
    assert.equal(ipString(o1.src.subarray(0, fam === 4 ? 4 : 16), 0, fam), S);
    w1.close(); w2.close(); source.close();
  });
}

test('a local target gives Local, and its reply is rewritten back to the service address', async () => {
  const source = new StaticRouteSource([svc([inst(0, 'w1')])]);
  const t = worker1(source);
  const open = await primed(t, '10.30.0.2');
  const { v, out } = open(1234);
  assert.equal(v, Verdict.Local);
  assert.equal(dstOf(out), '10.18.1.10');
  const rep = packet('10.18.1.10', '10.30.9.1', 80, 1234);
  const o = newRewrite();
  assert.equal(t.outbound(rep.buf, rep.meta, o), Verdict.Local);
  assert.equal(dstOf(o), '10.18.1.2');
  assert.equal(ipString(o.src.subarray(0, 4)), '10.30.0.2');
  t.close(); source.close();
});

test('ICMP echo to the rr address is translated like a flow keyed by its identifier', async () => {
  const source = new StaticRouteSource([svc([inst(0, 'w2'), inst(1, 'w3')])]);
  const t = worker1(source);
  const p = packet('10.18.1.2', '10.30.0.2', 77, 77, Proto.ICMP);
  assert.equal(t.outbound(p.buf, p.meta, newRewrite()), Verdict.Pending);
  await settle();
  const peers = Array.from({ length: 4 }, () => { const o = newRewrite(); t.outbound(p.buf, p.meta, o); return o.peer; });
  assert.deepEqual(new Set(peers).size, 1, 'one ping session stays on one instance');
  const back = packet(peers[0] === 2 ? '10.30.1.10' : '10.30.1.11', '10.18.1.2', 77, 77, Proto.ICMP);
  const o = newRewrite();
  assert.equal(t.inbound(back.buf, back.meta, peers[0]!, o), Verdict.Local);
  assert.equal(ipString(o.src.subarray(0, 4)), '10.30.0.2');
  t.close(); source.close();
});

test('packets from addresses that are not local instances are dropped', async () => {
  const source = new StaticRouteSource([svc([inst(0, 'w2')])]);
  const t = worker1(source);
  const p = packet('10.18.1.99', '10.30.0.2', 1, 80);
  assert.equal(t.outbound(p.buf, p.meta, newRewrite()), Verdict.Drop);
  assert.equal(source.received.length, 0);
  t.close(); source.close();
});

test('DNS names resolve through one shared query, and pushed updates replace the cached route', async () => {
  const source = new StaticRouteSource([svc([inst(0, 'w2')])]);
  const t = worker1(source);
  const [a, b] = await Promise.all([t.resolveName('app.ans.s1.sns'), t.resolveName('app.ans.s1.sns')]);
  assert.equal(a?.rr_ip, '10.30.0.2');
  assert.equal(b?.rr_ip, '10.30.0.2');
  assert.equal(source.received.filter((r) => r.msg.type === 'table_query').length, 1);
  // A query answer is not a push; the pushed update is counted and stamped in /metrics.
  const pushes = (): number => Number(/^canopy_proxy_route_updates_total (\d+)$/m.exec(t.metrics())?.[1]);
  assert.equal(pushes(), 0);
  const before = Date.now();
  source.update({ ...svc([inst(0, 'w2')]), rr_ip: '10.30.0.42' });
  await settle();
  assert.equal((t.resolveName('app.ans.s1.sns') as ServiceRoute).rr_ip, '10.30.0.42');
  assert.equal(pushes(), 1);
  assert.ok(Number(/^canopy_proxy_route_update_last_ms (\d+)$/m.exec(t.metrics())?.[1]) >= before);
  assert.equal(await t.resolveName('app.ans.nope.sns'), null);
  t.close(); source.close();
});

test('an unused service leaves the cache and the worker withdraws its interest', async () => {
  const source = new StaticRouteSource([svc([inst(0, 'w2')])]);
  const t = new SemanticTable({ workerId: 'w1', link: source.link('w1'), rtt: new StaticRtt(), serviceIdleMs: 20 });
  await t.resolveName('app.ans.s1.sns');
  assert.deepEqual(source.interested('w1'), ['s1']);
  await new Promise((r) => setTimeout(r, 40));
  t.tick();
  assert.deepEqual(source.interested('w1'), []);
  assert.equal(t.services.byId.size, 0);
  t.close(); source.close();
});

test('a local target through the datapath\'s local loop (outbound, then inbound from itself) keeps both flows', async () => {
  const source = new StaticRouteSource([svc([inst(0, 'w1'), inst(1, 'w2')])]);
  const t = worker1(source);
  t.addLocalInstance({ ns_ip: '10.18.1.10', ns_ip_v6: null, instance_ip: '10.30.1.10', instance_ip_v6: null });
  const open = await primed(t, '10.30.0.2');
  // rr alternates between the local and the remote instance: take the first flow that went local.
  let sport = 2000, r = open(sport);
  while (r.v !== Verdict.Local) r = open(++sport);
  // The datapath hands the rewritten packet to inbound with its own peer id.
  const fwd = packet('10.30.9.1', '10.18.1.10', sport, 80);
  assert.equal(t.inbound(fwd.buf, fwd.meta, 1, newRewrite()), Verdict.Local);
  for (let k = 0; k < 2; k++) {
    const rep = packet('10.18.1.10', '10.30.9.1', 80, sport);
    const o = newRewrite();
    assert.equal(t.outbound(rep.buf, rep.meta, o), Verdict.Local, 'the reply stays local');
    assert.equal(ipString(o.src.subarray(0, 4)), '10.30.0.2');
    assert.equal(dstOf(o), '10.18.1.2');
    const back = packet('10.30.0.2', '10.18.1.2', 80, sport);
    assert.equal(t.inbound(back.buf, back.meta, 1, newRewrite()), Verdict.Local);
    const again = open(sport);
    assert.equal(again.v, Verdict.Local, 'the caller\'s next packet still goes to the same local instance');
    assert.equal(dstOf(again.out), '10.18.1.10');
  }
  t.close(); source.close();
});

test('after a cluster restart the worker declares its interest again', async () => {
  const source = new StaticRouteSource([svc([inst(0, 'w2')])]);
  const t = worker1(source);
  await t.resolveName('app.ans.s1.sns');
  const before = source.received.filter((r) => r.msg.type === 'interest_add').length;
  t.resendInterest();
  assert.equal(source.received.filter((r) => r.msg.type === 'interest_add').length, before + 1);
  t.close(); source.close();
});

test('dialling a local instance by its instance IP works through the datapath\'s local loop', async () => {
  const source = new StaticRouteSource([]);
  const t = worker1(source);
  t.addLocalInstance({ ns_ip: '10.18.1.10', ns_ip_v6: null, instance_ip: '10.30.1.10', instance_ip_v6: null });
  const req = packet('10.18.1.2', '10.30.1.10', 4000, 80);
  const o = newRewrite();
  assert.equal(t.outbound(req.buf, req.meta, o), Verdict.Local);
  assert.equal(dstOf(o), '10.18.1.10');
  const looped = packet('10.30.9.1', '10.18.1.10', 4000, 80);
  assert.equal(t.inbound(looped.buf, looped.meta, 1, newRewrite()), Verdict.Local);
  const rep = packet('10.18.1.10', '10.30.9.1', 80, 4000);
  const o2 = newRewrite();
  assert.equal(t.outbound(rep.buf, rep.meta, o2), Verdict.Local, 'the reply is delivered locally, not tunnelled to ourselves');
  assert.equal(dstOf(o2), '10.18.1.2');
  assert.equal(ipString(o2.src.subarray(0, 4)), '10.30.1.10');
  t.close(); source.close();
});

test('an answer that does not cover the address asked for is a miss, not a query per packet', async () => {
  const sent: string[] = [];
  const listeners: ((m: ClusterToWorker) => void)[] = [];
  const link: RouteLink = {
    send: (m) => {
      sent.push(m.type);
      if (m.type === 'table_query') setTimeout(() => listeners.forEach((l) => l({ type: 'table_result', query_id: m.query_id, route: svc([inst(0, 'w2')]) })), 1);
    },
    onMessage: (l) => { listeners.push(l); return () => {}; },
  };
  const t = new SemanticTable({ workerId: 'w1', link, rtt: new StaticRtt() });
  t.addLocalInstance({ ns_ip: '10.18.1.2', ns_ip_v6: null, instance_ip: '10.30.9.1', instance_ip_v6: null });
  const p = packet('10.18.1.2', '10.30.5.5', 1, 80);
  assert.equal(t.outbound(p.buf, p.meta, newRewrite()), Verdict.Pending);
  await settle();
  for (let i = 0; i < 10; i++) assert.equal(t.outbound(p.buf, p.meta, newRewrite()), Verdict.Drop);
  assert.equal(sent.filter((s) => s === 'table_query').length, 1);
  t.close();
});

for (const fam of [4, 6] as const) {
  test(`IPv${fam}: a reverse entry left by an rr flow does not rewrite the replies of a later instance-IP dial from the same port`, async () => {
    const v = (a4: string, a6: string): string => (fam === 4 ? a4 : a6);
    const a = fam === 4 ? 4 : 16;
    const source = new StaticRouteSource([svc([inst(0, 'w2')])]);
    const w1 = worker1(source);
    const S = v('10.30.0.2', 'fdc0:30::2'), IB = v('10.30.1.10', 'fdc0:30::1:10'), IA = v('10.30.9.1', 'fdc0:30::9:1');
    const A = v('10.18.1.2', 'fdc0:18:1::2');
    const open = await primed(w1, S);
    assert.equal(open(40000).v, Verdict.Tunnel);
    // The rr connection is over; the caller's kernel picks the same port for the instance IP.
    const dial = packet(A, IB, 40000, 80);
    const o = newRewrite();
    assert.equal(w1.outbound(dial.buf, dial.meta, o), Verdict.Tunnel);
    const onWire = o.newSport || 40000;
    const back = packet(IB, IA, 80, onWire);
    const r = newRewrite();
    assert.equal(w1.inbound(back.buf, back.meta, 2, r), Verdict.Local);
    assert.equal(r.rewriteSrc ? ipString(r.src.subarray(0, a), 0, fam) : IB, IB, 'the reply comes from the address dialled');
    assert.equal(r.newDport || onWire, 40000, 'to the port the caller used');
    w1.close(); source.close();
  });
}

test('one caller port to two addresses of one instance at once: the second flow gets another port, both replies find their way', async () => {
  const source = new StaticRouteSource([svc([inst(0, 'w2')])]);
  const w1 = worker1(source);
  const rr = await primed(w1, '10.30.0.2');
  const closest = (sport: number): { v: Verdict; out: Rewrite } => {
    const p = packet('10.18.1.2', '10.30.0.3', sport, 80);
    const out = newRewrite();
    return { v: w1.outbound(p.buf, p.meta, out), out };
  };
  const first = rr(40000);
  assert.equal(first.out.newSport, 0, 'the first flow keeps its port');
  const second = closest(40000);
  assert.equal(second.v, Verdict.Tunnel);
  const p2 = second.out.newSport;
  assert.ok(p2 >= 32768 && p2 < 61000, `a new source port in the ephemeral range: ${p2}`);
  assert.equal(closest(40000).out.newSport, p2, 'every packet of the flow keeps the new port');
  assert.equal(rr(40000).out.newSport, 0);
  assert.equal(w1.stats.portRemaps, 1);
  for (const [port, want] of [[40000, '10.30.0.2'], [p2, '10.30.0.3']] as const) {
    const back = packet('10.30.1.10', '10.30.9.1', 80, port);
    const r = newRewrite();
    assert.equal(w1.inbound(back.buf, back.meta, 2, r), Verdict.Local);
    assert.equal(ipString(r.src.subarray(0, 4)), want);
    assert.equal(r.newDport || port, 40000);
  }
  w1.close(); source.close();
});

test('the same clash with a local target: the reply leaving the instance gets the caller port back', async () => {
  const source = new StaticRouteSource([svc([inst(0, 'w1')])]);
  const t = worker1(source);
  t.addLocalInstance({ ns_ip: '10.18.1.10', ns_ip_v6: null, instance_ip: '10.30.1.10', instance_ip_v6: null });
  const rr = await primed(t, '10.30.0.2');
  assert.equal(rr(5555).v, Verdict.Local);
  const byIp = packet('10.18.1.2', '10.30.1.10', 5555, 80);
  const o = newRewrite();
  assert.equal(t.outbound(byIp.buf, byIp.meta, o), Verdict.Local);
  assert.notEqual(o.newSport, 0);
  for (const [port, want] of [[5555, '10.30.0.2'], [o.newSport, '10.30.1.10']] as const) {
    const rep = packet('10.18.1.10', '10.30.9.1', 80, port);
    const r = newRewrite();
    assert.equal(t.outbound(rep.buf, rep.meta, r), Verdict.Local);
    assert.equal(ipString(r.src.subarray(0, 4)), want);
    assert.equal(dstOf(r), '10.18.1.2');
    assert.equal(r.newDport || port, 5555);
  }
  t.close(); source.close();
});

test('a caller of a service with no instance yet waits, and is answered when the cluster pushes one', async () => {
  const source = new StaticRouteSource([svc([])]);
  const t = worker1(source);
  let ready = 0;
  t.onReady(() => ready++);
  const open = await primed(t, '10.30.0.2');
  assert.deepEqual(source.interested('w1'), ['s1'], 'the worker asks to hear about the service');
  assert.equal(open(2000).v, Verdict.Pending, 'held, not dropped, while the service has no instance');
  assert.equal(t.stats.dropNoInstance, 0);
  const readyBefore = ready;
  source.update(svc([inst(0, 'w2')]));
  await settle();
  assert.ok(ready > readyBefore, 'the datapath is told to retry what waits');
  const { v, out } = open(2000);
  assert.equal(v, Verdict.Tunnel);
  assert.equal(dstOf(out), '10.18.2.10');
  assert.equal(t.stats.routeUpdates, 1);
  assert.match(t.metrics(), /canopy_proxy_route_updates_total 1/);
  t.close(); source.close();
});

test('a pushed route in which two instances share an instance IP is refused whole; the service keeps its route', async () => {
  const source = new StaticRouteSource([svc([inst(0, 'w2'), inst(1, 'w3')])]);
  const t = worker1(source);
  const open = await primed(t, '10.30.0.2');
  const before = t.resolveName('app.ans.s1.sns') as ServiceRoute;
  const bad = { ...svc([inst(0, 'w2'), { ...inst(1, 'w3'), instance_ip: inst(0, 'w2').instance_ip }, inst(2, 'w4')]), rr_ip: '10.30.0.42' };
  assert.throws(() => source.update(bad), /instances\[1\]\.instance_ip: instance IP 10\.30\.1\.10 is already used/);
  await settle();
  assert.equal(t.stats.routeUpdates, 0);
  assert.deepEqual(t.resolveName('app.ans.s1.sns'), before, 'the old route stays, not a mix of old and new');
  const dsts = new Set([0, 1, 2, 3].map((i) => dstOf(open(3000 + i).out)));
  assert.deepEqual([...dsts].sort(), ['10.18.2.10', '10.18.3.11'], 'rr still cycles over the two old instances only');
  const p = packet('10.18.1.2', '10.30.1.11', 4000, 80);
  const out = newRewrite();
  assert.equal(t.outbound(p.buf, p.meta, out), Verdict.Tunnel);
  assert.equal(dstOf(out), '10.18.3.11', 'each instance IP still reaches its own instance');
  t.close(); source.close();
});
