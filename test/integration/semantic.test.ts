// The semantic overlay on three emulated workers: netstack's datapath with the semantic table on each,
// routes from an in-memory route source standing in for the cluster, RTT measured by the tunnel's
// probes over lab links of 10 ms (w1↔w2) and 40 ms (w1↔w3) round trip.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { labFor, labSkipReason, type Lab, type Namespace } from '../../lab/lab.ts';
import { unavailable } from '../support/facility.ts';
import {
  addBridge, addInstance, cleanupResolvConfs, resolvConfFor, startSemanticHost, OVERLAY_MTU, type RunningHost,
} from '../../harness/semantic-lab.ts';
import type { InstanceRoute, ServiceRoute } from '../../proxy/route-messages.ts';
import type { LocalInstance } from '../../proxy/semantic-table.ts';

after(cleanupResolvConfs);

const TUNNEL_PORT = 50103;

function inst(n: number, w: number, host: number): InstanceRoute {
  return {
    n, instance_ip: `10.30.${100 + w}.${host}`, instance_ip_v6: `fdc0:30::${100 + w}:${host}`,
    ns_ip: `10.18.${w}.${host}`, ns_ip_v6: `fdc0:18:${w}::${host}`, worker_id: `w${w}`, cluster_id: 'c1',
    tunnel_endpoint: `198.18.0.${w}:${TUNNEL_PORT}`, healthy: true,
  };
}

function service(id: string, svc: string, base: number, instances: InstanceRoute[]): ServiceRoute {
  return {
    service_id: id, name: `app.ans.${svc}.sns`, rr_ip: `10.30.0.${base}`, rr_ip_v6: `fdc0:30::${base}`,
    closest_ip: `10.30.0.${base + 1}`, closest_ip_v6: `fdc0:30::${base + 1}`, default_policy: 'rr',
    ports: [{ port: 80, proto: 'tcp' }], instances,
  };
}

// The caller A on w1 (host part 2); ms2: one instance on w2 and one on w3; ms3: one on each worker;
// ms4: one on w2, first asked for when a test wants to see the pending queue at work; ms6: no instance
// until a test pushes one (on w2, host part 5: the moment a deployed instance starts).
const caller = service('s-client', 'client', 2, [inst(0, 1, 2)]);
const ms2 = service('s-ms2', 'ms2', 10, [inst(0, 2, 2), inst(1, 3, 2)]);
const ms3 = service('s-ms3', 'ms3', 20, [inst(0, 1, 3), inst(1, 2, 3), inst(2, 3, 3)]);
const ms4 = service('s-ms4', 'ms4', 30, [inst(0, 2, 4)]);
const ms5 = service('s-ms5', 'ms5', 40, [inst(0, 3, 4)]);
const ms6 = service('s-ms6', 'ms6', 50, []);
const ROUTES = [caller, ms2, ms3, ms4, ms5, ms6];

/** Instances each worker runs: (host part, name it answers with). */
const RUNS: Record<number, [number, string][]> = {
  1: [[2, 'A'], [3, 'ms3-w1']],
  2: [[2, 'ms2-w2'], [3, 'ms3-w2'], [4, 'ms4-w2'], [5, 'ms6-w2']],
  3: [[2, 'ms2-w3'], [3, 'ms3-w3'], [4, 'ms5-w3']],
};

function localsOf(w: number): LocalInstance[] {
  return RUNS[w]!.map(([h]) => {
    const i = inst(0, w, h);
    return { ns_ip: i.ns_ip, ns_ip_v6: i.ns_ip_v6, instance_ip: i.instance_ip, instance_ip_v6: i.instance_ip_v6 };
  });
}

const UDP_ECHO = "const s=require('dgram').createSocket('udp4');s.on('message',(m,r)=>s.send(m,r.port,r.address));s.bind(9000)";
// One datagram, never sent again: an answer proves the overlay held it until it had somewhere to go.
const UDP_ONCE = `const s=require('dgram').createSocket('udp4');s.on('message',(m)=>{console.log(String(m));process.exit(0)});
s.send('once',9000,process.argv[1]);setTimeout(()=>process.exit(1),20000)`;
const HTTP_SERVER = "require('http').createServer((q,s)=>s.end(process.argv[1])).listen(80,'::')";
// Opens n new connections one after the other (no keep-alive: each is a new flow) and counts answers.
const HTTP_CLIENT = `
const http=require('http');const [url,n,family]=process.argv.slice(1);const c={};let e=0;const errs=[];
(async()=>{for(let i=0;i<+n;i++){await new Promise(r=>{const q=http.get(url,{agent:false,timeout:4000,family:+family},s=>{let b='';
s.on('data',d=>b+=d);s.on('end',()=>{c[b]=(c[b]||0)+1;r()})});q.on('error',x=>{e++;errs.push(String(x));r()});
q.on('timeout',()=>q.destroy(new Error('timeout')))})}console.log(JSON.stringify({c,e,errs:errs.slice(0,3)}))})()`;

// Two keep-alive connections from one local port (libuv sets SO_REUSEADDR, so both may bind it) to two
// addresses, the second opened while the first stays up; then the first is asked again.
const SAME_PORT_CLIENT = `
const net=require('net');const [a,b,port]=process.argv.slice(1);
const ask=(s)=>new Promise((ok,no)=>{let d='';const on=(x)=>{d+=x;const i=d.indexOf('\\r\\n\\r\\n');
const m=/content-length: *(\\d+)/i.exec(d);if(i>=0&&m&&d.length>=i+4+ +m[1]){s.off('data',on);ok(d.slice(i+4,i+4+ +m[1]))}};
s.on('data',on);s.once('error',no);s.write('GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')});
const open=(h)=>new Promise((ok,no)=>{const s=net.connect({host:h,port:80,localPort:+port});s.setEncoding('utf8');
s.once('connect',()=>ok(s));s.once('error',no)});
const t=setTimeout(()=>{console.log(JSON.stringify({error:'timeout'}));process.exit(1)},10000);
(async()=>{const s1=await open(a);const first=await ask(s1);const s2=await open(b);const second=await ask(s2);
const firstAgain=await ask(s1);console.log(JSON.stringify({first,second,firstAgain}));clearTimeout(t);s1.destroy();s2.destroy()})()
.catch((e)=>{console.log(JSON.stringify({error:String(e)}));process.exit(1)})`;

interface Counts { c: Record<string, number>; e: number; errs: string[] }

/** n new connections to url; a name is resolved through the namespace's resolv.conf, by address family. */
async function connections(ns: Namespace, url: string, n: number, family: 4 | 6 = 4): Promise<Counts> {
  const out = await ns.execOk([process.execPath, '-e', HTTP_CLIENT, url, String(n), String(family)], { timeoutMs: 120_000 });
  return JSON.parse(out) as Counts;
}

async function setup(lab: Lab): Promise<{ a: Namespace; hosts: RunningHost[] }> {
  const key = randomBytes(32).toString('hex');
  const hosts: RunningHost[] = [];
  let a: Namespace | undefined;
  for (const w of [1, 2, 3]) {
    const host = lab.host(`w${w}`);
    const net = await addBridge(host, w);
    for (const [h, name] of RUNS[w]!) {
      const ns = await addInstance(lab, host, net, `w${w}i${h}`, h);
      ns.spawn([process.execPath, '-e', HTTP_SERVER, name]);
      if (w === 1 && h === 2) a = ns;
    }
    const peers = [1, 2, 3].filter((p) => p !== w).map((p) => ({ id: p, host: lab.host(`w${p}`).ip, port: TUNNEL_PORT }));
    hosts.push(await startSemanticHost(lab, host, {
      workerId: `w${w}`, peerIds: { w1: 1, w2: 2, w3: 3 }, routes: ROUTES, locals: localsOf(w),
      // The cluster takes its time: the first packets of a new destination must wait, not drop.
      answerDelayMs: 150,
      dns: w === 1 ? { listen: [{ address: net.bridge4 }, { address: net.bridge6 }], upstreams: [] } : undefined,
      datapath: {
        selfId: w, tun: 'canopy0', offload: true, listen: { host: host.ip, port: TUNNEL_PORT }, peers,
        keys: { 1: key }, keyId: 1, mtu: OVERLAY_MTU, maxDatagram: 1500 - 20 - 8, routes: ['10.16.0.0/12', 'fdc0::/16'],
      },
    }));
    if (w === 1) await resolvConfFor(a!, { nameservers: [net.bridge4], app: 'app', appns: 'ans', svcns: 'sns' });
  }
  for (const w of [1, 2, 3]) for (const [h] of RUNS[w]!) await lab.namespace(`w${w}i${h}`).waitListening(80);
  // Wait until w1's probes have measured both peers.
  const deadline = Date.now() + 15_000;
  for (;;) {
    const s = await hosts[0]!.stats();
    if (typeof s.rtt.w2 === 'number' && typeof s.rtt.w3 === 'number' && s.rtt.w3 > s.rtt.w2 + 10) break;
    if (Date.now() > deadline) throw new Error(`w1 did not measure its peers: ${JSON.stringify(s.rtt)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  return { a: a!, hosts };
}

test('semantic overlay on three workers: closest, rr, DNS, first packet, ping; IPv4 and IPv6', { skip: unavailable(labSkipReason()), timeout: 300_000 }, async (t) => {
  const lab = await labFor(t, {
    hosts: ['w1', 'w2', 'w3'],
    links: [{ a: 'w1', b: 'w2', delayMs: 5 }, { a: 'w1', b: 'w3', delayMs: 20 }],
  });
  const { a, hosts } = await setup(lab);
  const w1 = hosts[0]!;

  await t.test('the first packet of a flow to a not-yet-known service is delivered', async () => {
    // One echo request, no retry: a reply proves the packet waited while the route query ran.
    const r = await a.exec(['ping', '-c', '1', '-W', '3', ms4.rr_ip!]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const r6 = await a.exec(['ping', '-6', '-c', '1', '-W', '3', ms5.rr_ip_v6!]);
    assert.equal(r6.code, 0, r6.stdout + r6.stderr);
    const s = await w1.stats();
    assert.ok((s.datapath.pending_queued ?? 0) >= 2, JSON.stringify(s.datapath));
    assert.equal(s.datapath.pending_dropped ?? 0, 0);
  });

  await t.test('ping to a service rr address gets replies (IPv4 and IPv6)', async () => {
    assert.match(await a.execOk(['ping', '-c', '3', '-i', '0.2', '-W', '3', ms3.rr_ip!]), / 0% packet loss/);
    assert.match(await a.execOk(['ping', '-6', '-c', '3', '-i', '0.2', '-W', '3', ms3.rr_ip_v6!]), / 0% packet loss/);
  });

  await t.test('DNS names work from inside the application: curl http://closest.ms2/', async () => {
    assert.equal(await a.execOk(['curl', '-sS', '--max-time', '5', 'http://closest.ms2/']), 'ms2-w2');
    assert.equal(await a.execOk(['curl', '-sS', '-6', '--max-time', '5', 'http://closest.ms2/']), 'ms2-w2');
    assert.equal((await a.execOk(['dig', '+short', '+search', 'AAAA', 'closest.ms2'])).trim(), ms2.closest_ip_v6);
  });

  for (const fam of [4, 6] as const) {
    await t.test(`IPv${fam}: 200 new connections to closest.ms2 land on the 10 ms worker`, async () => {
      const r = await connections(a, 'http://closest.ms2/', 200, fam);
      assert.equal(r.e, 0, JSON.stringify(r));
      assert.ok((r.c['ms2-w2'] ?? 0) >= 190, JSON.stringify(r.c));
    });

    await t.test(`IPv${fam}: 300 new connections to the rr address split evenly over three instances`, async () => {
      const url = fam === 4 ? `http://${ms3.rr_ip}/` : `http://[${ms3.rr_ip_v6}]/`;
      const r = await connections(a, url, 300, fam);
      assert.equal(r.e, 0, JSON.stringify(r));
      for (const name of ['ms3-w1', 'ms3-w2', 'ms3-w3']) {
        const n = r.c[name] ?? 0;
        assert.ok(n >= 85 && n <= 115, `${name}: ${n} of 300 (${JSON.stringify(r.c)})`);
      }
    });
  }

  await t.test('an instance IP reaches exactly its instance, local or remote', async () => {
    for (const [i, want] of [[0, 'ms3-w1'], [1, 'ms3-w2'], [2, 'ms3-w3']] as const) {
      const ip = ms3.instances[i]!;
      const r4 = await connections(a, `http://${ip.instance_ip}/`, 10);
      assert.deepEqual(r4.c, { [want]: 10 }, JSON.stringify(r4));
      const r6 = await connections(a, `http://[${ip.instance_ip_v6}]/`, 10, 6);
      assert.deepEqual(r6.c, { [want]: 10 }, JSON.stringify(r6));
    }
  });

  await t.test('one client port to closest.ms2 and, while that connection is open, to the same instance by its instance IP: both answer', async () => {
    for (const fam of [4, 6] as const) {
      const target = ms2.instances[0]!;
      const [first, second] = fam === 4 ? [ms2.closest_ip!, target.instance_ip] : [ms2.closest_ip_v6!, target.instance_ip_v6!];
      // Below the ephemeral range (32768–60999): a port there may still be held in TIME_WAIT by one of
      // the earlier subtests' connections (curl sets no SO_REUSEADDR), and bind fails with EADDRINUSE.
      const out = await a.execOk([process.execPath, '-e', SAME_PORT_CLIENT, first, second, String(20000 + fam)], { timeoutMs: 30_000 });
      assert.deepEqual(JSON.parse(out), { first: 'ms2-w2', second: 'ms2-w2', firstAgain: 'ms2-w2' }, `IPv${fam}`);
    }
  });

  await t.test('a request to a service with no instance yet is answered when its first instance appears, without a retry', async () => {
    lab.namespace('w2i5').spawn([process.execPath, '-e', UDP_ECHO]);
    await new Promise((r) => setTimeout(r, 300)); // the echo server binds (it is up before its route is pushed, as a deployed one is)
    const before = (await w1.stats()).table.awaitingInstance ?? 0;
    const answer = a.exec([process.execPath, '-e', UDP_ONCE, ms6.rr_ip!], { timeoutMs: 30_000 });
    // The route (known service, no instance) arrives; the datagram waits in w1's pending queue.
    for (let i = 0; ((await w1.stats()).table.awaitingInstance ?? 0) <= before; i++) {
      if (i > 100) throw new Error('the datagram never waited for an instance');
      await new Promise((r) => setTimeout(r, 10));
    }
    // What the cluster pushes when the first instance is RUNNING.
    await w1.send({ cmd: 'update', route: { ...ms6, instances: [inst(0, 2, 5)] } });
    const r = await answer;
    assert.equal(r.code, 0, `no answer to the one datagram: ${r.stdout}${r.stderr}`);
    assert.equal(r.stdout.trim(), 'once');
    assert.equal((await w1.stats()).table.dropNoInstance ?? 0, 0);
  });

  await t.test('after the closest instance is withdrawn, the next connection lands on the other', async () => {
    await w1.send({ cmd: 'withdraw', service_id: ms2.service_id, instances: [0] });
    assert.equal(await a.execOk(['curl', '-sS', '--max-time', '5', `http://${ms2.closest_ip}/`]), 'ms2-w3');
    assert.equal(await a.execOk(['curl', '-sS', '--max-time', '5', `http://[${ms2.closest_ip_v6}]/`]), 'ms2-w3');
    const r = await connections(a, 'http://closest.ms2/', 20, 6);
    assert.deepEqual(r.c, { 'ms2-w3': 20 });
  });
});
