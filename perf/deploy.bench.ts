// Deployment latency as a user sees it: from the REST call that adds an instance
// (POST /api/v1/service/:id/instance) to the first HTTP answer through the service's rr address, asked
// by a client instance on another worker (so the answer crosses scheduling at root and cluster, the
// worker's start of the instance, route resolution and the tunnel). 10 warm runs on a `canopy up`
// deployment of two workers. Peer in the same run: the same server started by hand in a fresh network
// namespace and polled on loopback (the floor: process start + listen).
// Breakdown of each run, on the machine's one clock: REST call → RUNNING on the server's worker (its
// instance history), → the route with the new instance applied on the caller's worker ("route
// changed" in that worker's log), → first answer. Undeploy: REST call → the instance gone from its
// worker, and → the caller's route without it.
//   npm run bench -- deploy [runs=10]
import { spawn, spawnSync } from 'node:child_process';
import { firstAnswer, pct, sleep, timeDeploy, webAndProber } from './deploy-probe.ts';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RootClient } from '../orchestrator/client/root-client.ts';
import { workerInstances } from '../orchestrator/client/worker-api.ts';
import { down, up } from '../orchestrator/deployment/local.ts';
import { readState, type DeploymentState } from '../orchestrator/client/deployment-state.ts';
import { orSmoke } from './smoke.ts';
import { ensureBuilt } from '../scripts/build.ts';

const RUNS = Number(process.argv[2] ?? orSmoke(10, 1));

/** When the caller's worker applied a route change of `serviceId` after `after` (epoch ms) that gave
 *  it instances (`gained`) or left it none, from its log ("route changed"/"route withdrawn",
 *  proxy/route-resolver.ts). */
function routeChangedAt(log: string, serviceId: string, after: number, gained: boolean): number | undefined {
  let text = '';
  try {
    text = readFileSync(log, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    if (!line.includes(serviceId) || !line.includes('"route ')) continue;
    try {
      const r = JSON.parse(line) as { ts: string; msg: string; service_id?: string; instances?: number | number[] | null };
      if (r.service_id !== serviceId || (r.msg !== 'route changed' && r.msg !== 'route withdrawn')) continue;
      const ts = Date.parse(r.ts);
      if (ts < after) continue;
      const has = r.msg === 'route changed' && typeof r.instances === 'number' && r.instances > 0;
      if (has === gained) return ts;
    } catch {
      // not a log line of ours
    }
  }
  return undefined;
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
  // The daemons run the compiled code, as installed (bin/canopy.js), unless the tests ask for sources.
  if (process.env.CANOPY_FROM_SOURCE !== '1') await ensureBuilt();
  process.stderr.write('bringing up root, a cluster and two workers…\n');
  // TLS on every link as `canopy up` has it; CANOPY_BENCH_TLS=0 measures the same without (its cost).
  state = await up({ dir: join(tmp, 'state'), workers: 2, name: `db${process.pid % 1000}`, subnet: `198.19.${80 + (process.pid % 30)}.0`, tls: TLS });
  const [w1, w2] = state.workers as [DeploymentState['workers'][0], DeploymentState['workers'][0]];
  const c = new RootClient({ url: state.rootUrl });
  await c.login(state.username, state.password);
  const setup = await webAndProber(c, 'deploy', 'deploy latency', {
    virtualization: 'process', cmd: ['python3', '-m', 'http.server', '80'],
    // A whole core, like the peer below: with 0.1 the cgroup's CPU quota stretches python's
    // ~0.1 s of start-up CPU to ~1 s, and the bench would measure the SLA, not the orchestrator.
    memory: 64, vcpus: 1,
  }, w1, w2);
  const { web, url } = setup;

  const samples: number[] = [];
  const toRunning: number[] = [];
  const toRoute: number[] = [];
  const undeploys: number[] = [];
  const undeployRoutes: number[] = [];
  const callerLog = w2.process?.log ?? '';
  const fmt = (x: number | undefined) => (x === undefined ? '?' : `${x.toFixed(2)} s`);
  for (let run = 0; run <= RUNS; run++) {
    // RUNNING on the worker and the route at the caller split the time into "scheduled and started",
    // "route at the caller" and "first request answered".
    const { instance_n, t0, firstAnswerS: s, runningAt } = await timeDeploy(c, setup, w1);
    const routeAt = routeChangedAt(callerLog, web.microserviceID, t0, true);
    const running = runningAt === undefined ? undefined : (runningAt - t0) / 1000;
    const route = routeAt === undefined ? undefined : (routeAt - t0) / 1000;
    const u0 = Date.now();
    await c.undeployInstance(web.microserviceID, instance_n);
    let gone: number | undefined;
    for (let i = 0; i < 1000; i++) {
      if (!(await workerInstances(w1)).some((x) => x.service_id === web.microserviceID)) { gone = (Date.now() - u0) / 1000; break; }
      await sleep(10);
    }
    let unrouted: number | undefined;
    for (let i = 0; i < 100 && unrouted === undefined; i++) {
      const at = routeChangedAt(callerLog, web.microserviceID, u0, false);
      if (at !== undefined) unrouted = (at - u0) / 1000;
      else await sleep(20);
    }
    if (run > 0) {
      samples.push(s);
      if (running !== undefined) toRunning.push(running);
      if (route !== undefined) toRoute.push(route);
      if (gone !== undefined) undeploys.push(gone);
      if (unrouted !== undefined) undeployRoutes.push(unrouted);
    }
    process.stderr.write(`${run === 0 ? 'warm-up' : `run ${run}`}: ${s.toFixed(2)} s (RUNNING after ${fmt(running)}, route at the caller after ${fmt(route)}; `
      + `undeploy: gone from the worker after ${fmt(gone)}, route withdrawn at the caller after ${fmt(unrouted)})\n`);
  }
  const base: number[] = [];
  for (let i = 0; i < RUNS; i++) base.push((await baseline()) / 1000);
  const p50 = pct(samples, 50);
  const p90 = pct(samples, 90);
  const b50 = pct(base, 50);
  const q = (xs: number[], at: number) => (xs.length ? +pct(xs, at).toFixed(3) : null);
  console.log(`deploy → first answer via ${url} from another worker: p50 ${p50.toFixed(2)} s, p90 ${p90.toFixed(2)} s (${RUNS} runs)`);
  console.log(`breakdown (p50): REST call → RUNNING on the worker ${q(toRunning, 50) ?? '?'} s → route at the caller ${q(toRoute, 50) ?? '?'} s → first answer ${p50.toFixed(2)} s`);
  console.log(`undeploy (p50): REST call → instance gone from its worker ${q(undeploys, 50) ?? '?'} s, → route withdrawn at the caller ${q(undeployRoutes, 50) ?? '?'} s`);
  console.log(`peer: the same server started by hand in a namespace, first answer on loopback: p50 ${b50.toFixed(2)} s`);
  console.log(JSON.stringify({ bench: 'deploy', runs: RUNS, p50_s: +p50.toFixed(3), p90_s: +p90.toFixed(3), max_s: +Math.max(...samples).toFixed(3),
    to_running_p50_s: q(toRunning, 50), baseline_p50_s: +b50.toFixed(3), ratio_p50: +(p50 / b50).toFixed(1),
    to_running_p90_s: q(toRunning, 90), to_route_p50_s: q(toRoute, 50), to_route_p90_s: q(toRoute, 90),
    undeploy_p50_s: q(undeploys, 50), undeploy_p90_s: q(undeploys, 90), undeploy_route_p50_s: q(undeployRoutes, 50), tls: TLS }));
} finally {
  takeDown();
  rmSync(tmp, { recursive: true, force: true });
}
