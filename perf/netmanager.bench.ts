// The datapath inside the worker daemon (net manager), on emulated hosts: root + cluster on ctl, worker
// daemons on w1 and w2, instances deployed through root. Measures one iperf3 TCP stream from an
// instance on w1 to the iperf3 server's rr address on w2 (the whole overlay: bridge → TUN → datapath
// → tunnel → datapath → TUN → bridge), against the kernel path between the two hosts in the same run,
// and how the daemons' control plane fares meanwhile: local API latency on both workers and whether
// the cluster saw a heartbeat gap (a worker declared dead) while the datapath was saturated.
//
//   npm run bench -- netmanager [--seconds 8]
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Lab } from '../lab/lab.ts';
import { Deployment, sleep } from '../harness/e2e-harness.ts';
import { SLA_FIXTURES as FIXTURES } from '../harness/fixtures.ts';
import { orSmoke } from './smoke.ts';

const argv = process.argv.slice(2);
const at = argv.indexOf('--seconds');
const seconds = (at >= 0 ? Number(argv[at + 1]) : 0) || orSmoke(8, 1);

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor(p * s.length))]! * 100) / 100;
}

const lab = await Lab.create({ hosts: ['ctl', 'w1', 'w2'] });
const d = new Deployment(lab, { workers: ['w1', 'w2'] });
try {
  await d.start();
  const sla = JSON.parse(readFileSync(join(FIXTURES, 'process-iperf.json'), 'utf8')) as {
    applications: Array<{ microservices: Array<Record<string, unknown>> }>;
  };
  const [server, client] = sla.applications[0]!.microservices;
  server!.constraints = [{ type: 'direct', node: d.workerIdOf('w2') }];
  Object.assign(client!, { cmd: ['sleep', '3600'], one_shot: false, constraints: [{ type: 'direct', node: d.workerIdOf('w1') }] });
  const app = await d.submit(JSON.stringify(sla));
  const srv = app.services.find((s) => s.microservice_name === 'server')!;
  const cli = app.services.find((s) => s.microservice_name === 'client')!;
  await d.deployInstance(srv.microserviceID);
  await d.deployInstance(cli.microserviceID);
  await d.waitState(srv.microserviceID, 1, ['RUNNING']);
  const [c0] = await d.waitState(cli.microserviceID, 1, ['RUNNING']);
  const rr = String((await d.service(srv.microserviceID)).rr_ip);
  await sleep(1000);

  const apiSample = async (host: string): Promise<number> => {
    const [curl, ...rest] = d.workerApiCurl(host, '/api/status');
    const r = await lab.host(host).exec([curl!, '-o', '/dev/null', '-w', '%{time_total}', ...rest]);
    return Number(r.stdout) * 1000;
  };
  const sampleWhile = async (until: Promise<unknown>): Promise<{ w1: number[]; w2: number[] }> => {
    const out = { w1: [] as number[], w2: [] as number[] };
    let done = false;
    void until.finally(() => { done = true; });
    while (!done) {
      const [a, b] = await Promise.all([apiSample('w1'), apiSample('w2')]);
      out.w1.push(a);
      out.w2.push(b);
      await sleep(200);
    }
    return out;
  };
  const gbps = (json: string): number => {
    const j = JSON.parse(json) as { end: { sum_received: { bits_per_second: number } } };
    return Math.round(j.end.sum_received.bits_per_second / 1e7) / 100;
  };

  const idle = await sampleWhile(sleep(orSmoke(3000, 500)));
  console.error(`idle API latency w1 p50 ${pct(idle.w1, 0.5)} ms`);

  // Kernel: the two hosts' underlay directly.
  const ks = lab.host('w2').spawn(['iperf3', '-s', '-p', '5299', '-1']);
  await lab.host('w2').waitListening(5299);
  const kr = await lab.host('w1').exec(['iperf3', '-c', lab.host('w2').ip, '-p', '5299', '-t', String(seconds), '-J'], { timeoutMs: (seconds + 20) * 1000 });
  ks.kill();
  const kernel = gbps(kr.stdout);
  console.error(`kernel veth path: ${kernel} Gbps`);

  // Canopy: instance → rr service IP across the overlay, with the daemons sampled meanwhile.
  const deathsBefore = (d.output('cluster').match(/worker declared dead/g) ?? []).length;
  const run = d.inInstance(c0!.worker_id!, cli.microserviceID, 0, ['iperf3', '-c', rr, '-t', String(seconds), '-J'], (seconds + 20) * 1000);
  const loaded = await sampleWhile(run);
  const cr = await run;
  const canopy = gbps(cr.stdout);
  const deaths = (d.output('cluster').match(/worker declared dead/g) ?? []).length - deathsBefore;
  // The daemons' own event-loop delay (max since start covers the loaded run).
  const loop = async (h: string): Promise<number> => {
    const m = await lab.host(h).execOk(['curl', '-sS', 'http://127.0.0.1:10200/metrics']);
    return Number(/canopy_worker_event_loop_delay_ms\{quantile="1"\} ([0-9.]+)/.exec(m)?.[1] ?? NaN);
  };
  const loopMax = { w1: await loop('w1'), w2: await loop('w2') };
  console.error(`event loop delay max since start: w1 ${loopMax.w1} ms, w2 ${loopMax.w2} ms`);
  console.error(`canopy overlay (datapath in the worker daemons): ${canopy} Gbps; API p50/p99 loaded w1 ${pct(loaded.w1, 0.5)}/${pct(loaded.w1, 0.99)} ms, w2 ${pct(loaded.w2, 0.5)}/${pct(loaded.w2, 0.99)} ms; workers declared dead: ${deaths}`);
  const result = {
    bench: 'netmanager', seconds, kernel_gbps: kernel, canopy_gbps: canopy, ratio_kernel: Math.round((canopy / kernel) * 100) / 100,
    api_ms_idle_p50: pct([...idle.w1, ...idle.w2], 0.5), api_ms_idle_p99: pct([...idle.w1, ...idle.w2], 0.99),
    api_ms_loaded_w1_p50: pct(loaded.w1, 0.5), api_ms_loaded_w1_p99: pct(loaded.w1, 0.99),
    api_ms_loaded_w2_p50: pct(loaded.w2, 0.5), api_ms_loaded_w2_p99: pct(loaded.w2, 0.99),
    workers_declared_dead_under_load: deaths, event_loop_delay_max_ms_w1: loopMax.w1, event_loop_delay_max_ms_w2: loopMax.w2,
  };
  console.log(JSON.stringify(result));
} finally {
  await d.stop();
  await lab.destroy();
}
