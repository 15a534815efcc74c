// Root beyond one machine (issue #17): placements per second end to end through root — a REST call
// deploys an instance, root offers it to one of 100 simulated clusters over HTTP, the cluster accepts
// — on SQLite (one root) and on PostgreSQL (two replicas sharing it, calls spread over both); then the
// leader replica is SIGKILLed while instances are deployed through the other, and the bench reports
// how long until the other holds the lease, how many of those instances were never placed (lost) and
// how many went to two clusters (duplicates). Roots are `canopy root` processes; the clusters and the
// client run here. Needs root (PostgreSQL runs as the user postgres).
//   npm run bench -- root-ha [instances=2000]      CANOPY_BENCH_SMOKE=1: 60 instances
// (each store's timed run comes after 300 untimed placements of another service: a warm-up)
import { spawn, type ChildProcess } from 'node:child_process';
import { Agent, request } from 'node:http';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, sleep } from '../harness/loopback.ts';
import { SimCluster, placedTwice } from '../harness/sim-cluster.ts';
import { startLocalPostgres, stopLocalPostgres } from '../orchestrator/root/pg-server.ts';
import { orSmoke } from './smoke.ts';

const INSTANCES = Number(process.argv[2] ?? orSmoke(2000, 60));
const DURING_FAILOVER = orSmoke(50, 10);
const WARMUP = orSmoke(300, 10);
const CLUSTERS = 100;
const CONCURRENCY = 64;
if (!Number.isInteger(INSTANCES) || INSTANCES < 1) throw new Error(`instances must be a positive integer, got ${process.argv[2]}`);

const CANOPY = join(import.meta.dirname, '../bin/canopy.js');
const PASSWORD = 'bench-password-123';
const KEY = 'bench-key';

interface Root { url: string; child: ChildProcess; exited: Promise<unknown> }

async function until(what: string, f: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f().catch(() => false))) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function startRoot(dir: string, store?: string): Promise<Root> {
  const port = await freePort();
  const child = spawn(process.execPath, [CANOPY, 'root', '--host', '127.0.0.1', '--port', String(port), '--data', dir, ...(store ? ['--store', store] : [])], {
    env: { ...process.env, CANOPY_ADMIN_PASSWORD: PASSWORD, CANOPY_CLUSTER_KEY: KEY }, stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const exited = new Promise((r) => child.once('exit', r));
  await until(`root on ${port}`, async () => err.includes('"root ready"'));
  return { url: `http://127.0.0.1:${port}`, child, exited };
}

// The client shares the machine's cores with the roots and PostgreSQL: node:http on kept-alive
// connections costs it a fraction of what fetch() does, so the figure is root's rather than the client's.
const agent = new Agent({ keepAlive: true });

function api(url: string, method: string, path: string, token?: string, body?: unknown): Promise<{ status: number; body: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any -- bench client
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  if (payload !== undefined) Object.assign(headers, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) });
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { method, headers, agent }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
}

async function isLeader(url: string): Promise<boolean> {
  return /canopy_root_leader\{[^}]*\} 1/.test(await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(1000) })).text());
}

const sla = (name: string) => ({
  sla_version: 'v2.0',
  applications: [{
    applicationID: '', application_name: name, application_namespace: 'bench',
    microservices: [{ microservice_name: 'svc', microservice_namespace: 'bench', virtualization: 'process', cmd: ['sleep', '1'], memory: 1, vcpus: 0.001 }],
  }],
});

const offered = (sims: SimCluster[]) => sims.reduce((n, c) => n + c.offers.size, 0);

/** CPU seconds (user + system) the process has used, from /proc (clock ticks of 10 ms). */
function cpuSeconds(pid: number | undefined): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
}

/** Deploys `n` instances of service `sid` through `urls` in turn, CONCURRENCY at a time, until all are accepted by a cluster. */
async function deployAll(urls: string[], sims: SimCluster[], token: string, sid: string, n: number, label: string): Promise<void> {
  const before = offered(sims);
  let next = 0;
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < n) {
      const k = next++;
      const r = await api(urls[k % urls.length]!, 'POST', `/api/v1/service/${sid}/instance`, token);
      if (r.status !== 202) throw new Error(`deploy ${k}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
    }
  }));
  await until(`${n} placements (${label})`, async () => offered(sims) - before >= n, 120_000);
}

/**
 * Placements/s of `n` instances of one new service deployed through `urls` in turn. A warm-up of
 * WARMUP instances (another service) goes first and is not timed: the steady rate is measured, not
 * the first seconds' connections to 100 clusters, pool connections and JIT compilation.
 */
async function placements(urls: string[], sims: SimCluster[], n: number, label: string, pids: (number | undefined)[] = []): Promise<number> {
  const token = (await api(urls[0]!, 'POST', '/api/v1/auth/login', undefined, { username: 'admin', password: PASSWORD })).body.token as string;
  const warm = await api(urls[0]!, 'POST', '/api/v1/application', token, sla(`${label}warm`));
  if (warm.status !== 201) throw new Error(`warm-up application: HTTP ${warm.status} ${JSON.stringify(warm.body)}`);
  await deployAll(urls, sims, token, warm.body.services[0].microserviceID as string, WARMUP, `${label} warm-up`);
  const app = await api(urls[0]!, 'POST', '/api/v1/application', token, sla(label));
  const sid = app.body.services[0].microserviceID as string;
  const cpu0 = pids.map(cpuSeconds);
  const t0 = performance.now();
  await deployAll(urls, sims, token, sid, n, label);
  const s = (performance.now() - t0) / 1000;
  const rate = n / s;
  const cpu = pids.map((p, k) => cpuSeconds(p) - cpu0[k]!);
  console.log(`${label}: ${n} placements in ${s.toFixed(2)} s = ${rate.toFixed(0)}/s over ${urls.length} replica(s), ${sims.length} clusters (after ${WARMUP} untimed); root CPU per placement: ${cpu.map((c) => `${((c / n) * 1000).toFixed(2)} ms`).join(' + ')}`);
  return rate;
}

async function startClusters(root: string, prefix: string): Promise<SimCluster[]> {
  const sims: SimCluster[] = [];
  for (let i = 0; i < CLUSTERS; i++) sims.push(await SimCluster.start({ root, joinKey: KEY, name: `${prefix}${i}`, reportIntervalMs: 5000 }));
  return sims;
}

const tmp = mkdtempSync(join(tmpdir(), 'canopy-bench-ha-'));
chmodSync(tmp, 0o755); // PostgreSQL runs as postgres and must walk into its folder
const roots: Root[] = [];
let sims: SimCluster[] = [];
let pgDir: string | undefined;
const cleanup = async (): Promise<void> => {
  agent.destroy();
  for (const s of sims) await s.close().catch(() => undefined);
  for (const r of roots) r.child.kill('SIGKILL');
  await Promise.all(roots.map((r) => r.exited));
  if (pgDir) await stopLocalPostgres(pgDir, 'immediate').catch(() => undefined);
  rmSync(tmp, { recursive: true, force: true });
};
process.once('SIGTERM', () => void cleanup().then(() => process.exit(143)));

try {
  // SQLite: one root.
  const lite = await startRoot(join(tmp, 'sqlite'));
  roots.push(lite);
  sims = await startClusters(lite.url, 'l');
  const sqliteRate = await placements([lite.url], sims, INSTANCES, 'sqlite', [lite.child.pid]);
  for (const s of sims) await s.close();
  sims = [];
  lite.child.kill('SIGTERM');
  await lite.exited;

  // PostgreSQL: two replicas.
  pgDir = join(tmp, 'pg');
  const pg = await startLocalPostgres(pgDir, await freePort());
  const a = await startRoot(join(tmp, 'a'), pg.url);
  const b = await startRoot(join(tmp, 'b'), pg.url);
  roots.push(a, b);
  await until('a leader', async () => (await isLeader(a.url)) || (await isLeader(b.url)));
  sims = await startClusters(`${a.url},${b.url}`, 'p');
  const pgRate = await placements([a.url, b.url], sims, INSTANCES, 'postgres', [a.child.pid, b.child.pid]);

  // Failover: SIGKILL the leader, deploy through the other meanwhile.
  const [leader, follower] = (await isLeader(a.url)) ? [a, b] : [b, a];
  const token = (await api(follower.url, 'POST', '/api/v1/auth/login', undefined, { username: 'admin', password: PASSWORD })).body.token as string;
  const app = await api(follower.url, 'POST', '/api/v1/application', token, sla('failover'));
  const sid = app.body.services[0].microserviceID as string;
  leader.child.kill('SIGKILL');
  const killed = performance.now();
  const deployed: number[] = [];
  for (let k = 0; k < DURING_FAILOVER; k++) {
    const r = await api(follower.url, 'POST', `/api/v1/service/${sid}/instance`, token);
    if (r.status === 202) deployed.push(r.body.instance_n as number);
  }
  await until('the follower leads', () => isLeader(follower.url), 30_000);
  const failoverS = (performance.now() - killed) / 1000;
  console.log(`failover: the follower took the lease ${failoverS.toFixed(2)} s after the SIGKILL; ${deployed.length} instances deployed meanwhile`);
  const placedOf = async () => ((await api(follower.url, 'GET', `/api/v1/service/${sid}`, token)).body.instances as { instance_n: number; state: string }[])
    .filter((i) => i.state === 'CLUSTER_SCHEDULED').length;
  await until('the instances deployed during the failover placed', async () => (await placedOf()) >= deployed.length, 20_000).catch(() => undefined);
  const lost = DURING_FAILOVER - (await placedOf());
  const duplicates = placedTwice(sims).length;
  console.log(JSON.stringify({
    bench: 'root-ha', failover_s: Number(failoverS.toFixed(3)), lost, duplicates,
    placements_per_s_sqlite: Math.round(sqliteRate), placements_per_s_postgres: Math.round(pgRate), clusters: CLUSTERS,
  }));
} finally {
  await cleanup();
}
