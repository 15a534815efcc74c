// `npm run bench -- tunnel`: one TCP stream (iperf3, 10 s each) between two emulated hosts over
// (1) the kernel veth directly, (2) kernel VXLAN, (3) Canopy's overlay in offload mode and (4) in
// per-packet mode, instance namespace to instance namespace through a service IP, authentication on.
// Prints progress, then as its last line one JSON object with the figures and ratio_vxlan.
import { Lab, type Host, type Namespace } from '../test/lab/lab.ts';
import { S4, buildOverlay, stopOverlay } from '../test/integration/datapath-setup.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const encrypt = process.argv.includes('--encrypt');

async function iperf(server: Namespace, client: Namespace, target: string): Promise<number> {
  const srv = server.spawn(['iperf3', '-s', '-1', '-p', '5201']);
  try {
    await server.waitListening(5201);
    const r = await client.exec(['iperf3', '-c', target, '-p', '5201', '-t', String(SECONDS), '-J'], { timeoutMs: (SECONDS + 30) * 1000 });
    if (r.code !== 0) throw new Error(`iperf3 to ${target} failed: ${r.stderr || r.stdout.slice(-400)}`);
    const j = JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } };
    return j.end.sum_received.bits_per_second / 1e9;
  } finally {
    srv.kill('SIGKILL');
  }
}

async function tunDrops(h: Host): Promise<number> {
  const out = await h.execOk(['ip', '-s', '-j', 'link', 'show', 'canopy0']);
  const j = JSON.parse(out) as Array<{ stats64: { rx: { dropped: number }; tx: { dropped: number } } }>;
  return j[0].stats64.rx.dropped + j[0].stats64.tx.dropped;
}

const round = (x: number): number => Math.round(x * 100) / 100;

// Each overlay gets its own pair of hosts: the plumbing of one stays until the lab goes.
const lab = await Lab.create({ hosts: ['w1', 'w2', 'w3', 'w4', 'w5', 'w6'] });
try {
  const [w1, w2, w3, w4, w5, w6] = ['w1', 'w2', 'w3', 'w4', 'w5', 'w6'].map((n) => lab.host(n));

  console.log(`veth direct, ${SECONDS} s …`);
  const veth = await iperf(w2, w1, w2.ip);
  console.log(`  ${veth.toFixed(2)} Gbps`);

  console.log(`kernel VXLAN, ${SECONDS} s …`);
  for (const [h, self, peer, addr] of [[w1, w1.ip, w2.ip, '10.99.0.1/24'], [w2, w2.ip, w1.ip, '10.99.0.2/24']] as const) {
    await h.execOk(['ip', 'link', 'add', 'vx0', 'type', 'vxlan', 'id', '42', 'local', self, 'remote', peer, 'dstport', '4789', 'dev', 'eth0']);
    await h.execOk(['ip', 'addr', 'add', addr, 'dev', 'vx0']);
    await h.execOk(['ip', 'link', 'set', 'vx0', 'up']);
  }
  const vxlan = await iperf(w2, w1, '10.99.0.2');
  console.log(`  ${vxlan.toFixed(2)} Gbps`);

  const overlay = async (a: Host, b: Host, offload: boolean, tag: string, thread = false): Promise<[number, number]> => {
    const ws = await buildOverlay(lab, [a, b], { offload, encrypt, tag, thread });
    try {
      // A warm-up ping: the first packet of a flow pays for ARP/ND on the far bridge.
      await ws[0].inst.exec(['ping', '-c', '1', '-W', '2', S4]);
      const gbps = await iperf(ws[1].inst, ws[0].inst, S4);
      const drops = (await tunDrops(a)) + (await tunDrops(b));
      return [gbps, drops];
    } finally {
      await stopOverlay(ws);
    }
  };

  console.log(`Canopy overlay, offload mode${encrypt ? ', encrypted' : ''}, ${SECONDS} s …`);
  const [canopy, drops] = await overlay(w1, w2, true, 'o');
  console.log(`  ${canopy.toFixed(2)} Gbps, TUN drops ${drops}`);

  console.log(`Canopy overlay, per-packet mode${encrypt ? ', encrypted' : ''}, ${SECONDS} s …`);
  const [pp, dropsPp] = await overlay(w3, w4, false, 'p');
  console.log(`  ${pp.toFixed(2)} Gbps, TUN drops ${dropsPp}`);

  // The loop in a worker thread (the daemon's layout: its main thread serves control traffic).
  console.log(`Canopy overlay, offload mode, loop in a worker thread, ${SECONDS} s …`);
  const [threaded] = await overlay(w5, w6, true, 't', true);
  console.log(`  ${threaded.toFixed(2)} Gbps`);

  console.log(JSON.stringify({
    bench: 'tunnel', veth_gbps: round(veth), vxlan_gbps: round(vxlan), canopy_gbps: round(canopy),
    canopy_pp_gbps: round(pp), canopy_thread_gbps: round(threaded), ratio_vxlan: round(canopy / vxlan), tun_drops: drops, tun_drops_pp: dropsPp,
    auth: true, encrypt, seconds: SECONDS,
  }));
} finally {
  await lab.destroy();
}
