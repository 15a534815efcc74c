// Footprint of one worker daemon (node engine + net manager: bridge, TUN, datapath, DNS, heartbeats
// every second), as `canopy up` runs it (the compiled code, bin/canopy.js → dist/): RSS and CPU over a
// quiet window, against a peer in the same run — a bare Node process that only keeps a 1 s timer (the
// floor of any Node daemon), the same with the tsx loader — and the same deployment's root and
// cluster. Then the worker's RSS with 10 running process instances, and after `cycles`
// deploy/undeploy cycles of one instance (memory that never comes back shows there), and how long
// `canopy status` takes against this deployment (median of 5, token cached).
//   npm run bench -- footprint [seconds=60] [cycles=1000]
// The default run takes about 7 minutes (395 s on the 2-core test VM: 60 s idle, then ~0.3 s per
// cycle); CANOPY_BENCH_SMOKE=1 runs 2 s and 3 cycles.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { down, up } from '../orchestrator/deployment/local.ts';
import { CANOPY_BIN } from '../orchestrator/deployment/processes.ts';
import { RootClient, type ServiceInfo } from '../orchestrator/client/root-client.ts';
import { workerInstances } from '../orchestrator/client/worker-api.ts';
import { controlFetch } from '../orchestrator/protocol/tls.ts';
import { buildIsFresh, ensureBuilt } from '../scripts/build.ts';
import { readState, type DeploymentState } from '../orchestrator/client/deployment-state.ts';
import { orSmoke } from './smoke.ts';

const SECONDS = Number(process.argv[2] ?? orSmoke(60, 2));
const CYCLES = Number(process.argv[3] ?? orSmoke(1000, 3));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const TICK = 100; // USER_HZ on Linux

interface Sample { rssKb: number; cpuTicks: number }

function sample(pid: number): Sample {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { rssKb, cpuTicks: Number(f[11]) + Number(f[12]) };
}

interface Footprint { rss_mb: number; rss_max_mb: number; cpu_pct: number }

async function measure(pids: Record<string, number>, seconds: number): Promise<Record<string, Footprint>> {
  const start = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, sample(p)]));
  const peak: Record<string, number> = Object.fromEntries(Object.keys(pids).map((k) => [k, 0]));
  const t0 = Date.now();
  for (let i = 0; i < seconds; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    for (const [k, p] of Object.entries(pids)) peak[k] = Math.max(peak[k]!, sample(p).rssKb);
    if ((i + 1) % 10 === 0) process.stderr.write(`  ${i + 1}/${seconds} s\n`);
  }
  const wall = (Date.now() - t0) / 1000;
  const out: Record<string, Footprint> = {};
  for (const [k, p] of Object.entries(pids)) {
    const end = sample(p);
    out[k] = {
      rss_mb: Math.round(end.rssKb / 102.4) / 10,
      rss_max_mb: Math.round(peak[k]! / 102.4) / 10,
      cpu_pct: Math.round(((end.cpuTicks - start[k]!.cpuTicks) / TICK / wall) * 1000) / 10,
    };
  }
  return out;
}

const tmp = mkdtempSync(join(tmpdir(), 'canopy-footprint-'));
let state: DeploymentState | undefined;
// A failed `up` returns no state but has recorded what it made in the state directory.
function takeDown(): void {
  const s = state ?? readState(join(tmp, 'state'));
  if (s) down(s);
}
const bare = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
// The daemons load TypeScript through tsx (bin/canopy.js): its loader alone costs memory.
const bareTsx = spawn(process.execPath, ['--import', 'tsx', '-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
// Interrupted (Ctrl-C, or the smoke test's time limit), the run still takes its deployment down.
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    bare.kill();
    bareTsx.kill();
    takeDown();
    rmSync(tmp, { recursive: true, force: true });
    process.exit(1);
  });
}
try {
  // The daemons run the compiled code, as installed, unless the tests ask for sources.
  if (process.env.CANOPY_FROM_SOURCE !== '1') await ensureBuilt();
  const compiled = process.env.CANOPY_FROM_SOURCE !== '1' && buildIsFresh();
  process.stderr.write(`bringing up root, a cluster and one worker (${compiled ? 'compiled, dist/' : 'sources through tsx'})…\n`);
  state = await up({ dir: join(tmp, 'state'), workers: 1, name: `fp${process.pid % 1000}`, subnet: `198.19.${120 + (process.pid % 30)}.0`,
    rootPort: 10000, clusterPort: 10100, mqttPort: 10003, workerApiPort: 10200 });
  const w = state.workers[0]!;
  // Let start-up work (compilation, first reports) settle before the quiet window.
  await sleep(orSmoke(10_000, 1_000));
  process.stderr.write(`measuring ${SECONDS} s of idle…\n`);
  const f = await measure({ worker: w.process!.pid, cluster: state.cluster!.pid, root: state.root!.pid, bare_node: bare.pid!, bare_tsx: bareTsx.pid! }, SECONDS);
  for (const [k, v] of Object.entries(f)) console.log(`${k.padEnd(10)} RSS ${v.rss_mb} MB (max ${v.rss_max_mb} MB), CPU ${v.cpu_pct} % of one core`);
  // Where the worker's memory is, as it reports it (canopy_worker_memory_bytes{kind}).
  const workerMemory = async (): Promise<Record<string, number>> => {
    const out: Record<string, number> = {};
    for (const m of (await (await controlFetch(`${w.apiUrl}/metrics`)).text()).matchAll(/^canopy_worker_memory_bytes\{kind="(\w+)"\} (\d+)$/gm)) {
      out[m[1]!] = Math.round(Number(m[2]) / 104857.6) / 10;
    }
    return out;
  };
  const mem = await workerMemory();
  console.log(`worker memory: V8 heap ${mem.heapUsed} MB used of ${mem.heapTotal} MB, external ${mem.external} MB (array buffers ${mem.arrayBuffers} MB)`);

  // `canopy status` as a user runs it against this deployment (the first run logs in and caches the token).
  const env = { ...process.env, CANOPY_UP_DIR: join(tmp, 'state'), XDG_CACHE_HOME: join(tmp, 'cache') };
  const status = () => {
    const t0 = performance.now();
    const r = spawnSync(process.execPath, [CANOPY_BIN, 'status'], { env, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`canopy status failed: ${r.stderr}`);
    return (performance.now() - t0) / 1000;
  };
  status();
  const statusS = median([status(), status(), status(), status(), status()]);
  console.log(`canopy status: ${statusS.toFixed(3)} s (median of 5)`);

  const c = new RootClient({ url: state.rootUrl });
  await c.login(state.username, state.password);
  const created = await c.createApplications(JSON.stringify({
    sla_version: 'v2.0', customerID: 'Admin',
    applications: [{
      applicationID: '', application_name: 'footprint', application_namespace: 'fp', application_desc: 'footprint',
      microservices: [{ microserviceID: '', microservice_name: 'idle', microservice_namespace: 'fp', virtualization: 'process', cmd: ['sleep', '1000000'],
        memory: 8, vcpus: 0.01, constraints: [{ type: 'direct', node: w.name }] }],
    }],
  }), false);
  const svc = created.services[0] as ServiceInfo;
  const onWorker = async () => (await workerInstances(w)).filter((x) => x.service_id === svc.microserviceID);
  const until = async (what: string, ok: (xs: Awaited<ReturnType<typeof onWorker>>) => boolean) => {
    for (let i = 0; i < 3000; i++) {
      if (ok(await onWorker())) return;
      await sleep(20);
    }
    throw new Error(`timed out waiting for ${what}`);
  };

  process.stderr.write('10 running instances…\n');
  const ten: number[] = [];
  for (let i = 0; i < 10; i++) ten.push((await c.deployInstance(svc.microserviceID)).instance_n);
  await until('10 RUNNING instances', (xs) => xs.filter((x) => x.state === 'RUNNING').length === 10);
  await sleep(orSmoke(5_000, 500));
  const f10 = await measure({ worker: w.process!.pid }, Math.min(SECONDS, orSmoke(20, 2)));
  for (const n of ten) await c.undeployInstance(svc.microserviceID, n);
  await until('the 10 instances gone', (xs) => xs.length === 0);

  process.stderr.write(`${CYCLES} deploy/undeploy cycles…\n`);
  for (let i = 0; i < CYCLES; i++) {
    const inst = await c.deployInstance(svc.microserviceID);
    await until('RUNNING', (xs) => xs.some((x) => x.instance_n === inst.instance_n && x.state === 'RUNNING'));
    await c.undeployInstance(svc.microserviceID, inst.instance_n);
    await until('gone', (xs) => xs.length === 0);
    if ((i + 1) % 100 === 0) process.stderr.write(`  ${i + 1}/${CYCLES}\n`);
  }
  await sleep(orSmoke(10_000, 500));
  const fc = await measure({ worker: w.process!.pid }, Math.min(SECONDS, orSmoke(20, 2)));
  // Growth in the V8 heap is a JS leak; growth outside it (RSS only) is native memory or the allocator.
  const memAfter = await workerMemory();
  console.log(`worker memory after the cycles: V8 heap ${memAfter.heapUsed} MB used of ${memAfter.heapTotal} MB, external ${memAfter.external} MB (array buffers ${memAfter.arrayBuffers} MB)`);

  const wk = f.worker!;
  const b = f.bare_node!;
  console.log(`worker with 10 instances: RSS ${f10.worker!.rss_mb} MB; after ${CYCLES} deploy/undeploy cycles: ${fc.worker!.rss_mb} MB (idle ${wk.rss_mb} MB)`);
  console.log(JSON.stringify({
    bench: 'footprint', seconds: SECONDS, compiled,
    worker_rss_mb: wk.rss_mb, worker_cpu_pct: wk.cpu_pct,
    worker_rss_10_instances_mb: f10.worker!.rss_mb, worker_rss_after_cycles_mb: fc.worker!.rss_mb, cycles: CYCLES,
    root_rss_mb: f.root!.rss_mb, cluster_rss_mb: f.cluster!.rss_mb, bare_node_rss_mb: b.rss_mb, cli_status_s: +statusS.toFixed(3),
    worker_rss_max_mb: wk.rss_max_mb, worker_heap_used_mb: mem.heapUsed ?? null, worker_heap_total_mb: mem.heapTotal ?? null, worker_external_mb: mem.external ?? null, worker_heap_used_after_cycles_mb: memAfter.heapUsed ?? null, bare_node_cpu_pct: b.cpu_pct, bare_tsx_rss_mb: f.bare_tsx!.rss_mb,
    worker_rss_vs_bare_node: Math.round((wk.rss_mb / b.rss_mb) * 10) / 10,
    cluster_cpu_pct: f.cluster!.cpu_pct, root_cpu_pct: f.root!.cpu_pct,
  }));
} finally {
  bare.kill();
  bareTsx.kill();
  takeDown();
  rmSync(tmp, { recursive: true, force: true });
}
