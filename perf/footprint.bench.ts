// Idle footprint of one worker daemon (node engine + net manager: bridge, TUN, datapath, DNS,
// heartbeats every second), as `canopy up` runs it: RSS and CPU over a quiet window, against a peer
// in the same run — a bare Node process that only keeps a 1 s timer (the floor of any Node daemon),
// the same with the tsx loader the daemons run under — and the same deployment's root and cluster.
//   npm run bench -- footprint [seconds=60]
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { down, up } from '../orchestrator/deployment/local.ts';
import { readState, type DeploymentState } from '../orchestrator/client/deployment-state.ts';
import { orSmoke } from './smoke.ts';

const SECONDS = Number(process.argv[2] ?? orSmoke(60, 2));
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
  process.stderr.write('bringing up root, a cluster and one worker…\n');
  state = await up({ dir: join(tmp, 'state'), workers: 1, name: `fp${process.pid % 1000}`, subnet: `198.19.${120 + (process.pid % 30)}.0`,
    rootPort: 10000, clusterPort: 10100, mqttPort: 10003, workerApiPort: 10200 });
  // Let start-up work (compilation, first reports) settle before the quiet window.
  await new Promise((r) => setTimeout(r, orSmoke(10_000, 1_000)));
  process.stderr.write(`measuring ${SECONDS} s of idle…\n`);
  const f = await measure({ worker: state.workers[0]!.process!.pid, cluster: state.cluster!.pid, root: state.root!.pid, bare_node: bare.pid!, bare_tsx: bareTsx.pid! }, SECONDS);
  for (const [k, v] of Object.entries(f)) console.log(`${k.padEnd(10)} RSS ${v.rss_mb} MB (max ${v.rss_max_mb} MB), CPU ${v.cpu_pct} % of one core`);
  const w = f.worker!;
  const b = f.bare_node!;
  console.log(JSON.stringify({
    bench: 'footprint', seconds: SECONDS,
    worker_rss_mb: w.rss_mb, worker_rss_max_mb: w.rss_max_mb, worker_cpu_pct: w.cpu_pct,
    bare_node_rss_mb: b.rss_mb, bare_node_cpu_pct: b.cpu_pct, bare_tsx_rss_mb: f.bare_tsx!.rss_mb,
    worker_rss_vs_bare_node: Math.round((w.rss_mb / b.rss_mb) * 10) / 10,
    cluster_rss_mb: f.cluster!.rss_mb, cluster_cpu_pct: f.cluster!.cpu_pct, root_rss_mb: f.root!.rss_mb, root_cpu_pct: f.root!.cpu_pct,
  }));
} finally {
  bare.kill();
  bareTsx.kill();
  takeDown();
  rmSync(tmp, { recursive: true, force: true });
}
