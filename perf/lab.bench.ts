// `npm run bench -- lab`: what the emulated-host lab costs and how faithful its impairments are.
//   - setup: time to create and destroy a lab of plain hosts, and of relayed hosts
//   - throughput: TCP (iperf3, 3 s) over a plain veth pair vs through an impairment relay
//   - delay: ping RTT with 20 ms configured each way (target 40 ms), as a ratio
// Human progress on stderr; the last stdout line is one JSON object.
import { Lab } from '../lab/lab.ts';
import { orSmoke } from './smoke.ts';

function log(msg: string): void {
  process.stderr.write(`${msg}\n`);
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await fn();
  return [r, performance.now() - t0];
}

async function iperf(lab: Lab, from: string, to: string, port: number): Promise<number> {
  const server = lab.host(to).spawn(['iperf3', '-s', '-1', '-p', String(port)]);
  await lab.host(to).waitListening(port);
  const r = await lab.host(from).exec(['iperf3', '-c', lab.host(to).ip, '-p', String(port), '-t', orSmoke('3', '1'), '-J'], { timeoutMs: 30_000 });
  server.kill();
  if (r.code !== 0) throw new Error(`iperf3 ${from}→${to} failed: ${r.stderr || r.stdout}`);
  return (JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second / 1e9;
}

const [plain, createPlainMs] = await timed(() => Lab.create({ hosts: ['a', 'b', 'c', 'd'] }));
const [, destroyPlainMs] = await timed(() => plain.destroy());
log(`create 4 plain hosts: ${createPlainMs.toFixed(0)} ms, destroy: ${destroyPlainMs.toFixed(0)} ms`);

const [lab, createRelayMs] = await timed(() => Lab.create({
  hosts: ['v1', 'v2', 'r1', 'r2'],
  // A rate far above what the relay can carry: a relay that only forwards.
  links: [{ host: 'r1', rateMbit: 100_000 }, { host: 'r2', delayMs: 20 }],
}));
log(`create 4 hosts, 2 relayed: ${createRelayMs.toFixed(0)} ms`);
let result: Record<string, unknown>;
try {
  const vethGbps = await iperf(lab, 'v1', 'v2', 5301);
  log(`TCP over plain veth + bridge: ${vethGbps.toFixed(2)} Gbit/s`);
  const relayGbps = await iperf(lab, 'r1', 'v2', 5302);
  log(`TCP through a relay (no delay): ${relayGbps.toFixed(3)} Gbit/s`);
  const stats = await lab.relayStats('r1');
  log(`relay r1 drops: egress queue ${stats.egress.droppedQueue}, ingress queue ${stats.ingress.droppedQueue}`);

  await lab.host('r2').exec(['ping', '-c', '1', lab.host('v1').ip]);
  const pings = orSmoke('20', '3');
  const ping = await lab.host('r2').exec(['ping', '-c', pings, '-i', '0.05', '-q', lab.host('v1').ip]);
  const avg = Number(/= [\d.]+\/([\d.]+)\//.exec(ping.stdout)?.[1]);
  const base = await lab.host('v2').exec(['ping', '-c', pings, '-i', '0.05', '-q', lab.host('v1').ip]);
  const baseAvg = Number(/= [\d.]+\/([\d.]+)\//.exec(base.stdout)?.[1]);
  log(`ping RTT with 20 ms each way: ${avg.toFixed(2)} ms (target 40), plain pair ${baseAvg.toFixed(3)} ms`);
  result = {
    bench: 'lab',
    create_plain_4_ms: Math.round(createPlainMs),
    destroy_plain_4_ms: Math.round(destroyPlainMs),
    create_relayed_2_of_4_ms: Math.round(createRelayMs),
    tcp_veth_gbps: Number(vethGbps.toFixed(2)),
    tcp_relay_gbps: Number(relayGbps.toFixed(3)),
    relay_over_veth: Number((relayGbps / vethGbps).toFixed(4)),
    rtt_20ms_each_way_ms: avg,
    rtt_over_target: Number((avg / 40).toFixed(3)),
    rtt_plain_ms: baseAvg,
  };
} finally {
  await lab.destroy();
}
console.log(JSON.stringify(result));
