// Deployment latency as a user sees it: from the REST call that adds an instance
// (POST /api/v1/service/:id/instance) to the first HTTP answer through the service's rr address, asked
// by a client instance on another worker (so the answer crosses scheduling at root and cluster, the
// worker's start of the instance, route resolution and the tunnel). 10 warm runs on a `canopy up`
// deployment of two workers. Peer in the same run: the same server started by hand in a fresh network
// namespace and polled on loopback (the floor: process start + listen).
//   npm run bench -- deploy [runs=10]
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RootClient, type ServiceInfo } from '../orchestrator/client/root-client.ts';
import { watchInstances } from '../orchestrator/client/watch.ts';
import { workerInstances, workerStatus } from '../orchestrator/client/worker-api.ts';
import { down, up } from '../orchestrator/deployment/local.ts';
import { readState, type DeploymentState } from '../orchestrator/client/deployment-state.ts';
import { orSmoke } from './smoke.ts';

const RUNS = Number(process.argv[2] ?? orSmoke(10, 1));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

/** Runs a curl loop in `netns` until `url` answers 2xx; resolves with the wall clock (ms) of success. */
function firstAnswer(netns: string, url: string, timeoutS = 60): Promise<number> {
  const script = `end=$(( $(date +%s) + ${timeoutS} )); until curl -s -m 1 -o /dev/null -f ${url}; do [ $(date +%s) -ge $end ] && exit 1; sleep 0.02; done; date +%s%N`;
  return new Promise((resolve, reject) => {
    const p = spawn('ip', ['netns', 'exec', netns, 'sh', '-c', script], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.once('exit', (code) => (code === 0 ? resolve(Number(out.trim()) / 1e6) : reject(new Error(`no answer from ${url} within ${timeoutS} s`))));
  });
}

async function workerHistory(w: DeploymentState['workers'][0]): Promise<{ service_id: string; instance_n: number; history: { state: string; ts: number }[] }[]> {
  return (await workerStatus<{ instances: { service_id: string; instance_n: number; history: { state: string; ts: number }[] }[] }>(w)).instances;
}

function answersNow(netns: string, url: string): boolean {
  return spawnSync('ip', ['netns', 'exec', netns, 'curl', '-s', '-m', '1', '-o', '/dev/null', '-f', url]).status === 0;
}

async function baseline(): Promise<number> {
  const ns = `cdb${process.pid % 100000}`;
  spawnSync('ip', ['netns', 'add', ns]);
  spawnSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  try {
    const t0 = Date.now();
    const server = spawn('ip', ['netns', 'exec', ns, 'python3', '-m', 'http.server', '80'], { stdio: 'ignore' });
    const t1 = await firstAnswer(ns, 'http://127.0.0.1/');
    server.kill('SIGKILL');
    await new Promise((r) => server.once('exit', r));
    return t1 - t0;
  } finally {
    spawnSync('ip', ['netns', 'del', ns]);
  }
}

const tmp = mkdtempSync(join(tmpdir(), 'canopy-deploy-bench-'));
let state: DeploymentState | undefined;
// A failed `up` returns no state but has recorded what it made in the state directory.
function takeDown(): void {
  const s = state ?? readState(join(tmp, 'state'));
  if (s) down(s);
}
// Interrupted (Ctrl-C, or the smoke test's time limit), the run still takes its deployment down.
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    takeDown();
    rmSync(tmp, { recursive: true, force: true });
    process.exit(1);
  });
}
const TLS = process.env.CANOPY_BENCH_TLS !== '0';
try {
  process.stderr.write('bringing up root, a cluster and two workers…\n');
  // TLS on every link as `canopy up` has it; CANOPY_BENCH_TLS=0 measures the same without (its cost).
  state = await up({ dir: join(tmp, 'state'), workers: 2, name: `db${process.pid % 1000}`, subnet: `198.19.${80 + (process.pid % 30)}.0`, tls: TLS });
  const [w1, w2] = state.workers as [DeploymentState['workers'][0], DeploymentState['workers'][0]];
  const c = new RootClient({ url: state.rootUrl });
  await c.login(state.username, state.password);
  const sla = {
    sla_version: 'v2.0', customerID: 'Admin',
    applications: [{
      applicationID: '', application_name: 'bench', application_namespace: 'deploy', application_desc: 'deploy latency',
      microservices: [
        { microserviceID: '', microservice_name: 'web', microservice_namespace: 'b', virtualization: 'process', cmd: ['python3', '-m', 'http.server', '80'],
          memory: 64, vcpus: 0.1, constraints: [{ type: 'direct', node: w1.name }] },
        { microserviceID: '', microservice_name: 'prober', microservice_namespace: 'b', virtualization: 'process', cmd: ['sleep', '1000000'],
          memory: 16, vcpus: 0.1, constraints: [{ type: 'direct', node: w2.name }] },
      ],
    }],
  };
  const created = await c.createApplications(JSON.stringify(sla), false);
  const web = created.services.find((s) => s.microservice_name === 'web') as ServiceInfo;
  const prober = created.services.find((s) => s.microservice_name === 'prober') as ServiceInfo;
  await c.deployInstance(prober.microserviceID);
  const ok = await watchInstances(c, [{ serviceId: prober.microserviceID, label: 'prober', instance: 0 }], { timeoutMs: 60_000, onTransition: () => {} });
  if (!ok.ok) throw new Error(`prober: ${ok.state} ${ok.reason}`);
  // Instance namespaces are canopy-<worker>-<service id>-<n> (orchestrator/worker/process-runtime.ts).
  const probeNs = `canopy-${w2.name}-${prober.microserviceID}-0`;
  const url = `http://${web.rr_ip}/`;

  const samples: number[] = [];
  const toRunning: number[] = [];
  for (let run = 0; run <= RUNS; run++) {
    while (answersNow(probeNs, url)) await sleep(200);
    const answered = firstAnswer(probeNs, url);
    const t0 = Date.now();
    const inst = await c.deployInstance(web.microserviceID);
    const t1 = await answered;
    const s = (t1 - t0) / 1000;
    // When the worker saw it RUNNING (its own clock, the same machine): splits the time into
    // "scheduled and started" and "route resolved and first request answered".
    const onWorker = (await workerHistory(w1)).find((x) => x.service_id === web.microserviceID && x.instance_n === inst.instance_n);
    const runningAt = onWorker?.history.find((h) => h.state === 'RUNNING')?.ts;
    if (run > 0) {
      samples.push(s);
      if (runningAt) toRunning.push((runningAt - t0) / 1000);
    }
    process.stderr.write(`${run === 0 ? 'warm-up' : `run ${run}`}: ${s.toFixed(2)} s${runningAt ? ` (RUNNING on the worker after ${((runningAt - t0) / 1000).toFixed(2)} s)` : ''}\n`);
    await c.undeployInstance(web.microserviceID, inst.instance_n);
    for (let i = 0; i < 100 && (await workerInstances(w1)).some((x) => x.service_id === web.microserviceID); i++) await sleep(100);
  }
  const base: number[] = [];
  for (let i = 0; i < RUNS; i++) base.push((await baseline()) / 1000);
  const p50 = pct(samples, 50);
  const p90 = pct(samples, 90);
  const b50 = pct(base, 50);
  console.log(`deploy → first answer via ${url} from another worker: p50 ${p50.toFixed(2)} s, p90 ${p90.toFixed(2)} s (${RUNS} runs)`);
  if (toRunning.length) console.log(`of which REST call → RUNNING on the worker: p50 ${pct(toRunning, 50).toFixed(2)} s; the rest is route resolution and the first request`);
  console.log(`peer: the same server started by hand in a namespace, first answer on loopback: p50 ${b50.toFixed(2)} s`);
  console.log(JSON.stringify({ bench: 'deploy', runs: RUNS, p50_s: +p50.toFixed(3), p90_s: +p90.toFixed(3), max_s: +Math.max(...samples).toFixed(3),
    to_running_p50_s: toRunning.length ? +pct(toRunning, 50).toFixed(3) : null, baseline_p50_s: +b50.toFixed(3), ratio_p50: +(p50 / b50).toFixed(1), tls: TLS }));
} finally {
  takeDown();
  rmSync(tmp, { recursive: true, force: true });
}
