// `npm run bench -- tunnel`: one TCP stream (iperf3, 10 s each) between two emulated hosts over
// (1) the kernel veth directly, (2) kernel VXLAN, (3) Canopy's overlay in offload mode and (4) in
// per-packet mode, authentication on. Both overlays carry traffic from an instance namespace to an
// instance namespace, each behind a veth and a bridge on its worker (Canopy through a service IP);
// ratio_vxlan compares those two. Each Canopy datapath is pinned to CPU 0 with its TUN's receive
// steered to the other CPUs (TunDatapathConfig.cpu; the two emulated hosts share this machine's CPUs),
// and once more left to the scheduler: canopy_unpinned_gbps, ratio_vxlan_unpinned. iperf3 is never pinned. VXLAN between the hosts themselves (no instance plumbing) is printed
// too, as vxlan_host_gbps and ratio_vxlan_host.
// Prints progress, then as its last line one JSON object with the figures and ratio_vxlan.
import { readFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { Lab, type Host, type Namespace } from '../lab/lab.ts';
import { S4, buildOverlay, plumbWorker, statsOf, stopOverlay } from '../harness/datapath-setup.ts';
import { orSmoke } from './smoke.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? orSmoke(10, 1));
const encrypt = process.argv.includes('--encrypt');
// BENCH_PHASES=offload (comma list of veth,vxlan,offload,pp,thread) runs only those phases: A/B runs
// of one change measure the offload phase alone, alternated, with CPU per GB.
const PHASES = new Set((process.env.BENCH_PHASES ?? 'veth,vxlan,offload,unpinned,pp,thread').split(','));
const CLK_TCK = 100;
// BENCH_CPU=<n|none>: the CPU each Canopy datapath is pinned to (default 0; none leaves it to the scheduler).
const CPU = process.env.BENCH_CPU === 'none' ? undefined : Number(process.env.BENCH_CPU ?? 0);
// BENCH_PERF='<shell command>' runs that command 3 s into each Canopy phase's iperf3 run, e.g.
// 'perf record -g -C 0 -o /tmp/dp.data -- sleep 4' (profiles in perf/RESULTS.md were taken so).
const PERF_CMD = process.env.BENCH_PERF;

/** CPU seconds (user + system, all threads) a process has used so far. */
function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / CLK_TCK;
  } catch {
    return 0;
  }
}

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

/** Two decimals; a phase that did not run prints null. */
const round = (x: number): number | null => (Number.isFinite(x) ? Math.round(x * 100) / 100 : null);

// Each overlay gets its own pair of hosts: the plumbing of one stays until the lab goes.
const names = ['w1', 'w2', 'w3', 'w4', 'w5', 'w6', 'w7', 'w8', 'w9', 'w10'];
const lab = await Lab.create({ hosts: names });
try {
  const [w1, w2, w3, w4, w5, w6, w7, w8, w9, w10] = names.map((n) => lab.host(n));

  let veth = NaN;
  if (PHASES.has('veth')) {
    console.log(`veth direct, ${SECONDS} s …`);
    veth = await iperf(w2, w1, w2.ip);
    console.log(`  ${veth.toFixed(2)} Gbps`);
  }

  const vxlanDevice = async (h: Host, self: string, peer: string, addr: string): Promise<void> => {
    await h.execOk(['ip', 'link', 'add', 'vx0', 'type', 'vxlan', 'id', '42', 'local', self, 'remote', peer, 'dstport', '4789', 'dev', 'eth0']);
    await h.execOk(['ip', 'addr', 'add', addr, 'dev', 'vx0']);
    await h.execOk(['ip', 'link', 'set', 'vx0', 'up']);
  };
  let vxlanHost = NaN;
  let vxlan = NaN;
  if (PHASES.has('vxlan')) {
    console.log(`kernel VXLAN between the hosts, ${SECONDS} s …`);
    await vxlanDevice(w1, w1.ip, w2.ip, '10.99.0.1/24');
    await vxlanDevice(w2, w2.ip, w1.ip, '10.99.0.2/24');
    vxlanHost = await iperf(w2, w1, '10.99.0.2');
    console.log(`  ${vxlanHost.toFixed(2)} Gbps`);

    // The same instance plumbing as Canopy's phases (bridge, veth, instance namespace, MSS clamp),
    // with the worker subnets routed over vx0 at VXLAN's own MTU (1450).
    console.log(`kernel VXLAN between instance namespaces, ${SECONDS} s …`);
    const [ia, ib] = [await plumbWorker(lab, w7, 1, 'x', 1450), await plumbWorker(lab, w8, 2, 'x', 1450)];
    await vxlanDevice(w7, w7.ip, w8.ip, '10.99.0.1/24');
    await vxlanDevice(w8, w8.ip, w7.ip, '10.99.0.2/24');
    await w7.execOk(['ip', 'route', 'add', '10.18.2.0/24', 'via', '10.99.0.2', 'dev', 'vx0']);
    await w8.execOk(['ip', 'route', 'add', '10.18.1.0/24', 'via', '10.99.0.1', 'dev', 'vx0']);
    await ia.exec(['ping', '-c', '1', '-W', '2', '10.18.2.2']);
    vxlan = await iperf(ib, ia, '10.18.2.2');
    console.log(`  ${vxlan.toFixed(2)} Gbps`);
  }

  /** Gbps, TUN drops, and CPU seconds of both datapath processes per GB moved. */
  const overlay = async (a: Host, b: Host, offload: boolean, tag: string, thread = false, pinned = true): Promise<[number, number, number]> => {
    const ws = await buildOverlay(lab, [a, b], { offload, encrypt, tag, thread, cpu: pinned ? CPU : undefined });
    try {
      // A warm-up ping: the first packet of a flow pays for ARP/ND on the far bridge.
      await ws[0].inst.exec(['ping', '-c', '1', '-W', '2', S4]);
      const cpu0 = ws.reduce((t, w) => t + cpuSeconds(w.proc.pid), 0);
      if (PERF_CMD) setTimeout(() => { spawn('sh', ['-c', PERF_CMD], { stdio: 'ignore' }); }, 3000);
      const gbps = await iperf(ws[1].inst, ws[0].inst, S4);
      const cpu = ws.reduce((t, w) => t + cpuSeconds(w.proc.pid), 0) - cpu0;
      const drops = (await tunDrops(a)) + (await tunDrops(b));
      for (const w of ws) {
        const st = await statsOf(lab, w.proc);
        console.error(`  ${w.host.name}: dev_tx ${st.dev_tx_packets}, tunnel rx ${st.tunnel_rx_batches} in ${st.sock_rx_calls} receives, tunnel tx ${st.tunnel_tx_batches}`);
      }
      return [gbps, drops, cpu / (gbps * SECONDS / 8)];
    } finally {
      await stopOverlay(ws);
    }
  };

  let canopy = NaN;
  let drops = 0;
  let cpuPerGb = NaN;
  if (PHASES.has('offload')) {
    console.log(`Canopy overlay, offload mode${encrypt ? ', encrypted' : ''}, ${SECONDS} s …`);
    [canopy, drops, cpuPerGb] = await overlay(w1, w2, true, 'o');
    console.log(`  ${canopy.toFixed(2)} Gbps, TUN drops ${drops}, datapath CPU ${cpuPerGb.toFixed(3)} s/GB`);
  }

  let unpinned = NaN;
  if (PHASES.has('unpinned')) {
    console.log(`Canopy overlay, offload mode, datapaths left to the scheduler, ${SECONDS} s …`);
    let cpuUnpinned: number;
    [unpinned, , cpuUnpinned] = await overlay(w9, w10, true, 'u', false, false);
    console.log(`  ${unpinned.toFixed(2)} Gbps, datapath CPU ${cpuUnpinned.toFixed(3)} s/GB`);
  }

  let pp = NaN;
  let dropsPp = 0;
  if (PHASES.has('pp')) {
    console.log(`Canopy overlay, per-packet mode${encrypt ? ', encrypted' : ''}, ${SECONDS} s …`);
    [pp, dropsPp] = await overlay(w3, w4, false, 'p');
    console.log(`  ${pp.toFixed(2)} Gbps, TUN drops ${dropsPp}`);
  }

  // The loop in a worker thread (the daemon's layout: its main thread serves control traffic).
  let threaded = NaN;
  if (PHASES.has('thread')) {
    console.log(`Canopy overlay, offload mode, loop in a worker thread, ${SECONDS} s …`);
    [threaded] = await overlay(w5, w6, true, 't', true);
    console.log(`  ${threaded.toFixed(2)} Gbps`);
  }

  console.log(JSON.stringify({
    bench: 'tunnel', veth_gbps: round(veth), vxlan_gbps: round(vxlan), canopy_gbps: round(canopy),
    canopy_pp_gbps: round(pp), canopy_thread_gbps: round(threaded), ratio_vxlan: round(canopy / vxlan), tun_drops: drops, tun_drops_pp: dropsPp,
    vxlan_host_gbps: round(vxlanHost), ratio_vxlan_host: round(canopy / vxlanHost),
    canopy_unpinned_gbps: round(unpinned), ratio_vxlan_unpinned: round(unpinned / vxlan), datapath_cpu: CPU ?? null,
    canopy_cpu_s_per_gb: Math.round(cpuPerGb * 1000) / 1000, auth: true, encrypt, seconds: SECONDS,
  }));
} finally {
  await lab.destroy();
}
