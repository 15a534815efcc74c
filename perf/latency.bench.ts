// `npm run bench -- latency`: round trips between two instance namespaces on two emulated workers,
// through Canopy's overlay (a service IP, authentication on) and through kernel VXLAN, with the same
// worker plumbing for both (harness/datapath-setup.ts plumbWorker: bridge, veth, instance namespace),
// in one run:
//   - ICMP echo at 5/s (a lone packet: every wakeup on the way is paid in full) and at 1 000/s, after
//     a burst of 3 000 echoes at 1 000/s that warms the datapath's code (a daemon that has carried
//     traffic); the 5/s figure of the fresh datapath before that burst is printed too (*_fresh_*);
//   - TCP request/response over one connection (sockperf ping-pong, 64-byte messages): rate per second;
//   - the floor of any userspace overlay: sockperf's UDP ping-pong between the two workers' own
//     addresses on the same underlay, at the same rates. An overlay in userspace carries each round
//     trip through one such ping-pong between its two worker processes (and more: the TUN, the
//     tunnel codec, a third wakeup), so it cannot be faster than this C client and server
//     (docs/decisions.md, "The floor under a userspace overlay").
// The overlay's datapaths run as the tunnel benchmark runs them (netstack/standalone.ts), unpinned by
// default (the product's default); BENCH_CPU=<n> pins both to CPU n. BENCH_CPU_LATENCY_US=<us> holds a
// CPU wakeup-latency request for the whole run, as `canopy worker --cpu-latency-us` does (host-wide: it
// applies to the kernel's path as much as to the overlay's). CANOPY_BUSY_POLL_US=<us> sets the datapaths'
// busy polling (netstack/busy-poll.ts; 0 = off, for A/B against the default).
// Prints progress, then as its last line one JSON object:
//   overlay_rtt_p50_us … vxlan_rtt_p99_us: ICMP at 1 000/s; ratio_p50/ratio_p99 of those;
//   low_rate_ratio_p50: overlay / VXLAN p50 at 5/s (the *_low_* keys carry those figures);
//   overlay_tcp_rr_per_s, vxlan_tcp_rr_per_s: sockperf round trips per second;
//   floor_udp_*: the UDP ping-pong between the workers (p50/p99 at 1 000/s and 5/s, round trips per
//   second back to back), and overlay_above_floor_*_us: what the overlay adds on top of it.
import { Lab, type Host, type Namespace } from '../lab/lab.ts';
import { S4, buildOverlay, plumbWorker, stopOverlay } from '../harness/datapath-setup.ts';
import { orSmoke } from './smoke.ts';
import { holdCpuLatency } from '../native/cpu-latency.ts';
import { DEFAULT_BUSY_POLL_US } from '../netstack/busy-poll.ts';

const COLD_COUNT = Number(process.env.BENCH_COLD_COUNT ?? orSmoke(50, 3));
const WARM_COUNT = Number(process.env.BENCH_WARM_COUNT ?? orSmoke(3000, 20));
const LOW_COUNT = Number(process.env.BENCH_LOW_COUNT ?? orSmoke(200, 3));
const HIGH_COUNT = Number(process.env.BENCH_HIGH_COUNT ?? orSmoke(5000, 50));
const RR_SECONDS = Number(process.env.BENCH_SECONDS ?? orSmoke(5, 1));
const CPU = process.env.BENCH_CPU === undefined || process.env.BENCH_CPU === 'none' ? undefined : Number(process.env.BENCH_CPU);
const RR_PORT = 11111;
const CPU_LATENCY = process.env.BENCH_CPU_LATENCY_US === undefined ? undefined : Number(process.env.BENCH_CPU_LATENCY_US);

/** The q-quantile (nearest rank) of sorted values. */
function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

interface Rtt { p50: number; p99: number; n: number; lost: number }

/** `count` ICMP echoes `interval` s apart; RTTs in µs from ping's per-reply lines. */
async function ping(from: Namespace, target: string, count: number, interval: number): Promise<Rtt> {
  const r = await from.exec(['ping', '-n', '-c', String(count), '-i', String(interval), '-W', '2', target], {
    timeoutMs: (count * interval + 30) * 1000,
  });
  const us: number[] = [];
  for (const m of r.stdout.matchAll(/time=([\d.]+) ms/g)) us.push(Number(m[1]) * 1000);
  if (us.length === 0) throw new Error(`ping ${target}: no replies (exit ${r.code}): ${r.stdout.slice(-400)} ${r.stderr}`);
  us.sort((a, b) => a - b);
  return { p50: quantile(us, 0.5), p99: quantile(us, 0.99), n: us.length, lost: count - us.length };
}

/** Round trips per second of sockperf's TCP ping-pong over one connection. */
async function tcpRr(server: Namespace, client: Namespace, target: string): Promise<number> {
  const srv = server.spawn(['sockperf', 'server', '--tcp', '-i', '0.0.0.0', '-p', String(RR_PORT)]);
  try {
    await server.waitListening(RR_PORT);
    const r = await client.exec(['sockperf', 'ping-pong', '--tcp', '-i', target, '-p', String(RR_PORT), '-m', '64', '-t', String(RR_SECONDS)], {
      timeoutMs: (RR_SECONDS + 30) * 1000,
    });
    const out = r.stdout + r.stderr;
    // "[Valid Duration] RunTime=5.000 sec; SentMessages=…; ReceivedMessages=…"
    const m = /RunTime=([\d.]+) sec; SentMessages=\d+; ReceivedMessages=(\d+)/.exec(out);
    if (r.code !== 0 || !m) throw new Error(`sockperf to ${target} failed (exit ${r.code}): ${out.slice(-600)}`);
    return Number(m[2]) / Number(m[1]);
  } finally {
    srv.kill('SIGKILL');
  }
}

/**
 * sockperf's UDP ping-pong (64-byte messages, one socket each, blocking receives) from one worker's
 * underlay address to the other's: at `mps` per second for `seconds`, or back to back ('max').
 */
async function udpPingPong(client: Host, server: Host, mps: number | 'max', seconds: number): Promise<Rtt & { perS: number }> {
  const r = await client.exec(['sockperf', 'ping-pong', '-i', server.ip, '-p', String(RR_PORT), '-m', '64', '-t', String(seconds), '--mps', String(mps), '--full-rtt'], {
    timeoutMs: (seconds + 30) * 1000,
  });
  const out = r.stdout + r.stderr;
  // "---> percentile 50.000 =       81.817" (µs, round trips with --full-rtt)
  const pct = (q: string): number => Number(new RegExp(`percentile ${q} =\\s+([\\d.]+)`).exec(out)?.[1] ?? NaN);
  const m = /RunTime=([\d.]+) sec; SentMessages=\d+; ReceivedMessages=(\d+)/.exec(out);
  if (r.code !== 0 || !m) throw new Error(`sockperf UDP to ${server.ip} failed (exit ${r.code}): ${out.slice(-600)}`);
  const n = Number(m[2]);
  return { p50: pct('50.000'), p99: pct('99.000'), n, lost: 0, perS: n / Number(m[1]) };
}

interface Floor { low: Rtt; high: Rtt; perS: number }

async function floor(client: Host, server: Host): Promise<Floor> {
  const srv = server.spawn(['sockperf', 'server', '-i', server.ip, '-p', String(RR_PORT)]);
  try {
    await server.waitListening(RR_PORT, { proto: 'udp' });
    console.log(`floor (UDP ping-pong between the workers): 5/s, ${LOW_COUNT / 5} s …`);
    const low = await udpPingPong(client, server, 5, Math.max(1, LOW_COUNT / 5));
    console.log(`  p50 ${low.p50.toFixed(0)} µs, p99 ${low.p99.toFixed(0)} µs`);
    console.log(`floor: 1000/s, ${HIGH_COUNT / 1000} s …`);
    const high = await udpPingPong(client, server, 1000, Math.max(1, HIGH_COUNT / 1000));
    console.log(`  p50 ${high.p50.toFixed(0)} µs, p99 ${high.p99.toFixed(0)} µs`);
    console.log(`floor: back to back, ${RR_SECONDS} s …`);
    const max = await udpPingPong(client, server, 'max', RR_SECONDS);
    console.log(`  ${max.perS.toFixed(0)} round trips/s`);
    return { low, high, perS: max.perS };
  } finally {
    srv.kill('SIGKILL');
  }
}

interface PathFigures { cold: Rtt; low: Rtt; high: Rtt; rr: number }

async function measure(label: string, client: Namespace, server: Namespace, target: string): Promise<PathFigures> {
  // ARP/ND on both bridges, and the overlay's flow state.
  await client.exec(['ping', '-n', '-c', '3', '-i', '0.2', '-W', '2', target]);
  // A fresh datapath's code still runs in V8's interpreter: at 5/s it is not optimized within the
  // phase (docs/decisions.md, "Latency of a lone packet"). Measured apart, then a burst warms it.
  console.log(`${label}: ICMP echo at 5/s, fresh, ${COLD_COUNT} …`);
  const cold = await ping(client, target, COLD_COUNT, 0.2);
  console.log(`  p50 ${cold.p50.toFixed(0)} µs, p99 ${cold.p99.toFixed(0)} µs`);
  await client.exec(['ping', '-n', '-q', '-c', String(WARM_COUNT), '-i', '0.001', '-W', '2', target], { timeoutMs: (WARM_COUNT / 1000 + 30) * 1000 });
  console.log(`${label}: ICMP echo at 5/s, ${LOW_COUNT} …`);
  const low = await ping(client, target, LOW_COUNT, 0.2);
  console.log(`  p50 ${low.p50.toFixed(0)} µs, p99 ${low.p99.toFixed(0)} µs, lost ${low.lost}`);
  console.log(`${label}: ICMP echo at 1000/s, ${HIGH_COUNT} …`);
  const high = await ping(client, target, HIGH_COUNT, 0.001);
  console.log(`  p50 ${high.p50.toFixed(0)} µs, p99 ${high.p99.toFixed(0)} µs, lost ${high.lost}`);
  console.log(`${label}: TCP request/response (sockperf ping-pong), ${RR_SECONDS} s …`);
  const rr = await tcpRr(server, client, target);
  console.log(`  ${rr.toFixed(0)} round trips/s`);
  return { cold, low, high, rr };
}

const vxlanDevice = async (h: Host, self: string, peer: string, addr: string): Promise<void> => {
  await h.execOk(['ip', 'link', 'add', 'vx0', 'type', 'vxlan', 'id', '42', 'local', self, 'remote', peer, 'dstport', '4789', 'dev', 'eth0']);
  await h.execOk(['ip', 'addr', 'add', addr, 'dev', 'vx0']);
  await h.execOk(['ip', 'link', 'set', 'vx0', 'up']);
};

const r0 = (x: number): number | null => (Number.isFinite(x) ? Math.round(x) : null);
const r2 = (x: number): number | null => (Number.isFinite(x) ? Math.round(x * 100) / 100 : null);

const qos = CPU_LATENCY === undefined ? undefined : holdCpuLatency(CPU_LATENCY);
const lab = await Lab.create({ hosts: ['w1', 'w2', 'w3', 'w4'] });
try {
  const [w1, w2, w3, w4] = ['w1', 'w2', 'w3', 'w4'].map((n) => lab.host(n));

  // Kernel VXLAN: the same instance plumbing, worker subnets routed over vx0 at VXLAN's MTU.
  const [xa, xb] = [await plumbWorker(lab, w3, 1, 'x', 1450), await plumbWorker(lab, w4, 2, 'x', 1450)];
  await vxlanDevice(w3, w3.ip, w4.ip, '10.99.0.1/24');
  await vxlanDevice(w4, w4.ip, w3.ip, '10.99.0.2/24');
  await w3.execOk(['ip', 'route', 'add', '10.18.2.0/24', 'via', '10.99.0.2', 'dev', 'vx0']);
  await w4.execOk(['ip', 'route', 'add', '10.18.1.0/24', 'via', '10.99.0.1', 'dev', 'vx0']);
  const vx = await measure('kernel VXLAN', xa, xb, '10.18.2.2');
  const fl = await floor(w3, w4);

  // Canopy: instance on w1 → service IP S4 → the instance on w2 (offload mode, authentication on).
  const ws = await buildOverlay(lab, [w1, w2], { offload: true, tag: 'o', cpu: CPU });
  let ov: PathFigures;
  try {
    ov = await measure('Canopy overlay', ws[0].inst, ws[1].inst, S4);
  } finally {
    await stopOverlay(ws);
  }

  console.log(JSON.stringify({
    bench: 'latency',
    overlay_rtt_p50_us: r0(ov.high.p50), overlay_rtt_p99_us: r0(ov.high.p99),
    vxlan_rtt_p50_us: r0(vx.high.p50), vxlan_rtt_p99_us: r0(vx.high.p99),
    ratio_p50: r2(ov.high.p50 / vx.high.p50), ratio_p99: r2(ov.high.p99 / vx.high.p99),
    overlay_tcp_rr_per_s: r0(ov.rr), vxlan_tcp_rr_per_s: r0(vx.rr),
    low_rate_ratio_p50: r2(ov.low.p50 / vx.low.p50),
    low_rate_ratio_p99: r2(ov.low.p99 / vx.low.p99), tcp_rr_ratio: r2(ov.rr / vx.rr),
    overlay_low_rtt_p50_us: r0(ov.low.p50), overlay_low_rtt_p99_us: r0(ov.low.p99),
    vxlan_low_rtt_p50_us: r0(vx.low.p50), vxlan_low_rtt_p99_us: r0(vx.low.p99),
    overlay_fresh_low_rtt_p50_us: r0(ov.cold.p50), vxlan_fresh_low_rtt_p50_us: r0(vx.cold.p50),
    floor_udp_rtt_p50_us: r0(fl.high.p50), floor_udp_rtt_p99_us: r0(fl.high.p99),
    floor_udp_low_rtt_p50_us: r0(fl.low.p50), floor_udp_low_rtt_p99_us: r0(fl.low.p99), floor_udp_rr_per_s: r0(fl.perS),
    overlay_above_floor_p50_us: r0(ov.high.p50 - fl.high.p50), overlay_above_floor_low_p50_us: r0(ov.low.p50 - fl.low.p50),
    lost: ov.cold.lost + vx.cold.lost + ov.low.lost + ov.high.lost + vx.low.lost + vx.high.lost,
    low_rate_per_s: 5, high_rate_per_s: 1000, datapath_cpu: CPU ?? null, cpu_latency_us: CPU_LATENCY ?? null, auth: true,
    busy_poll_us: process.env.CANOPY_BUSY_POLL_US ? Number(process.env.CANOPY_BUSY_POLL_US) : DEFAULT_BUSY_POLL_US,
  }));
} finally {
  await lab.destroy();
  qos?.close();
}
