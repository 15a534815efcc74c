// `canopy up` / `canopy down`: root, one cluster (embedded MQTT broker and SQLite) and N workers on
// this machine. Root and cluster run in the host namespace bound to the deployment bridge's address;
// each worker runs in its own namespace on that bridge (orchestrator/deployment/hosts.ts). The state
// file is written before anything is made and after every step, so `down` can always undo a partial
// `up`.
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { startLocalPostgres, stopLocalPostgresSync } from '../root/pg-server.ts';
import { dirname, join, resolve } from 'node:path';
import { RootClient } from '../client/root-client.ts';
import { forgetTokens } from '../client/session.ts';
import { createHosts, findByName, netnsExecArgv, planHosts, removeHosts } from './hosts.ts';
import { ipBatchForce, listNetnsSync, netnsPidsSync } from './iproute.ts';
import { CANOPY_BIN, daemonNodeFlags, logTail, removeWorkerCgroups, spawnDetached, stopProcesses } from './processes.ts';
import { isAlive, procRef } from '../proc.ts';
import { STATE_VERSION, readState, writeState, type DeploymentState, type ProcessRecord } from '../client/deployment-state.ts';
import { controlFetch, pinCa } from '../protocol/tls.ts';
import { ensureFleetCerts } from '../tls/fleet.ts';
import { reapEmbeddedSync } from '../worker/container/embedded-reap.ts';

export interface UpOptions {
  dir: string;
  workers: number;
  /** Deployment name ([a-z0-9]{1,6}); default "up". */
  name?: string;
  /** /24 network address inside 198.18.0.0/15; default 198.19.250.0. */
  subnet?: string;
  rootPort?: number;
  clusterPort?: number;
  mqttPort?: number;
  workerApiPort?: number;
  /** Port of the DNS relay on the bridge address (the workers' upstream resolver); default 10053. */
  dnsRelayPort?: number;
  /** Where the relay sends queries; default the nameservers of the host's /etc/resolv.conf. */
  dnsUpstreams?: string[];
  /** Extra arguments for every `canopy worker`. */
  workerArgs?: string[];
  /** Root replicas (default 1); more than one needs store 'postgres'. */
  roots?: number;
  /** Root's store: 'sqlite' (default) or 'postgres' (a PostgreSQL of the deployment's own, in <dir>/postgres). */
  store?: 'sqlite' | 'postgres';
  /** Port of that PostgreSQL (loopback); default 10432. */
  postgresPort?: number;
  /** Seconds to wait for every worker to be active at root; default 90. */
  readyTimeoutS?: number;
  /** TLS on every control link with a CA made for the deployment (default true; SPEC §10). */
  tls?: boolean;
  progress?: (line: string) => void;
}

export class AlreadyUpError extends Error {}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** True when any daemon of the deployment still runs. */
export function isRunning(s: DeploymentState): boolean {
  return [s.root, ...(s.rootReplicas ?? []), s.cluster, ...s.workers.map((w) => w.process)].some((p) => p !== null && isAlive(p));
}

function readLog(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function assertAlive(p: ProcessRecord, what: string): void {
  if (!isAlive(p)) throw new Error(`${what} exited at start; last lines of ${p.log}:\n${logTail(p.log)}`);
}

async function waitFor<T>(what: string, timeoutMs: number, f: () => Promise<T | undefined>, alive: () => void): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    alive();
    try {
      const v = await f();
      if (v !== undefined) return v;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > until) throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}${last ? ` (last error: ${last})` : ''}`);
    await sleep(250);
  }
}

export async function up(o: UpOptions): Promise<DeploymentState> {
  const say = o.progress ?? (() => {});
  const existing = readState(o.dir);
  if (existing) {
    if (isRunning(existing)) throw new AlreadyUpError(`already up: deployment "${existing.name}" (root ${existing.rootUrl}, ${existing.workers.length} workers); \`canopy down\` stops it`);
    throw new AlreadyUpError(`a stopped deployment "${existing.name}" is still recorded in ${o.dir}; run \`canopy down\` to remove its namespaces first`);
  }
  const name = o.name ?? 'up';
  const roots = o.roots ?? 1;
  const store = o.store ?? 'sqlite';
  if (!Number.isInteger(roots) || roots < 1 || roots > 5) throw new Error(`--roots: 1-5, got ${o.roots}`);
  if (roots > 1 && store !== 'postgres') throw new Error('--roots above 1 needs --store postgres: replicas share one PostgreSQL');
  const hosts = planHosts({ name, subnet: o.subnet ?? '198.19.250.0', workers: o.workers });
  const rootPort = o.rootPort ?? 10000;
  const clusterPort = o.clusterPort ?? 10100;
  const mqttPort = o.mqttPort ?? 10003;
  const workerApiPort = o.workerApiPort ?? 10200;
  const dnsRelayPort = o.dnsRelayPort ?? 10053;
  const tls = o.tls !== false;
  const http = tls ? 'https' : 'http';
  const logs = join(o.dir, 'logs');
  const createdFrom = mkdirSync(logs, { recursive: true, mode: 0o700 });

  const s: DeploymentState = {
    version: STATE_VERSION,
    name,
    created_at: new Date().toISOString(),
    dir: o.dir,
    bridge: hosts.bridge,
    subnet: `${o.subnet ?? '198.19.250.0'}/24`,
    hostIp: hosts.hostIp,
    rootUrl: Array.from({ length: roots }, (_, k) => `${http}://${hosts.hostIp}:${rootPort + k}`).join(','),
    clusterUrl: `${http}://${hosts.hostIp}:${clusterPort}`,
    mqttUrl: `${tls ? 'mqtts' : 'mqtt'}://${hosts.hostIp}:${mqttPort}`,
    clusterName: `${name}-cluster`,
    username: 'admin',
    password: randomBytes(12).toString('base64url'),
    root: null,
    cluster: null,
    dnsRelay: null,
    workers: hosts.workers.map((w) => ({
      name: w.name, netns: w.netns, hostVeth: w.hostVeth, ip: w.ip,
      apiUrl: `${http}://${w.ip}:${workerApiPort}`, dataDir: join(o.dir, 'workers', w.name), process: null,
    })),
    ...(createdFrom && createdFrom !== logs ? { createdFrom: resolve(createdFrom) } : {}),
  };
  writeState(s);

  // The certificates before anything listens: a CA for this deployment and one certificate per tier
  // naming the address it is reached at. Every daemon gets --ca; this process pins it too.
  const tlsDir = join(o.dir, 'tls');
  const serverFlags = (name: string): string[] => (tls ? ['--tls-cert', join(tlsDir, `${name}.pem`), '--tls-key', join(tlsDir, `${name}-key.pem`)] : []);
  const caFlag: string[] = [];
  if (tls) {
    say(`tls: a CA and ${2 + hosts.workers.length} certificates in ${tlsDir}`);
    const certs = ensureFleetCerts(tlsDir, [
      { name: 'root', sans: [hosts.hostIp] },
      { name: 'cluster', sans: [hosts.hostIp] },
      ...hosts.workers.map((w) => ({ name: w.name, sans: [w.ip] })),
    ]);
    s.ca = certs.paths.ca;
    caFlag.push('--ca', certs.paths.ca);
    pinCa(readFileSync(certs.paths.ca, 'utf8'));
    writeState(s);
  }

  say(`network: bridge ${hosts.bridge} ${hosts.hostIp}/24, ${hosts.workers.length} worker namespaces`);
  await createHosts(hosts);

  const clusterKey = randomBytes(18).toString('base64url');
  const workerKey = randomBytes(18).toString('base64url');
  const node = process.execPath;

  // The workers' namespaces have no route off the bridge, and the host's resolver may listen on its
  // loopback (127.0.0.53): a relay on the bridge address is what they can reach (docs/decisions.md).
  const relayAt = `${hosts.hostIp}:${dnsRelayPort}`;
  say(`dns: relay ${relayAt} for the workers, to ${o.dnsUpstreams?.length ? o.dnsUpstreams.join(' ') : "the host's /etc/resolv.conf nameservers"}`);
  s.dnsRelay = spawnDetached([node, CANOPY_BIN, 'dns-relay', '--listen', relayAt, '--for', o.dir,
    ...(o.dnsUpstreams?.length ? ['--upstream', ...o.dnsUpstreams] : [])], join(logs, 'dns-relay.log'));
  writeState(s);
  const relay = s.dnsRelay;
  await waitFor('the DNS relay', 30_000, async () => (readLog(relay.log).includes('"dns relay listening"') ? true : undefined),
    () => assertAlive(relay, 'dns relay'));

  let storeArgs: string[] = [];
  if (store === 'postgres') {
    const port = o.postgresPort ?? 10432;
    const pgDir = join(o.dir, 'postgres');
    say(`postgres: Debian's PostgreSQL in ${pgDir}, 127.0.0.1:${port} (root's shared store)`);
    // The server runs as the unprivileged user postgres: it must be able to walk into the state folder
    // (0711: through, not list; state.json stays 0600).
    for (let d = resolve(o.dir); ; d = dirname(d)) {
      chmodSync(d, statSync(d).mode | 0o711);
      if (!s.createdFrom || d === resolve(s.createdFrom) || dirname(d) === d) break;
    }
    s.postgres = { dir: pgDir, port, url: `postgres://postgres@127.0.0.1:${port}/canopy` };
    writeState(s);
    await startLocalPostgres(pgDir, port);
    storeArgs = ['--store', s.postgres.url];
  }
  const urls = s.rootUrl.split(',');
  const replicas: ProcessRecord[] = [];
  for (const [k, url] of urls.entries()) {
    say(`root${roots > 1 ? ` replica ${k + 1} of ${roots}` : ''}: ${url}`);
    const p = spawnDetached([node, ...daemonNodeFlags(), CANOPY_BIN, 'root', '--host', hosts.hostIp, '--port', String(rootPort + k), '--data', join(o.dir, k === 0 ? 'root' : `root${k + 1}`),
      ...storeArgs, ...serverFlags('root'), ...caFlag],
    join(logs, k === 0 ? 'root.log' : `root${k + 1}.log`), { CANOPY_ADMIN_PASSWORD: s.password, CANOPY_CLUSTER_KEY: clusterKey });
    replicas.push(p);
    if (k === 0) s.root = p;
    else s.rootReplicas = [...(s.rootReplicas ?? []), p];
    writeState(s);
    // One at a time: the first creates the database's schema and secrets, the others find them.
    const one = new RootClient({ url, timeoutMs: 3000 });
    await waitFor(`root at ${url} to answer`, 30_000, async () => one.login(s.username, s.password), () => assertAlive(p, 'root'));
  }
  const client = new RootClient({ url: s.rootUrl, timeoutMs: 3000 });
  await client.login(s.username, s.password);

  say(`cluster: ${s.clusterName} at ${s.clusterUrl}, MQTT ${s.mqttUrl}`);
  s.cluster = spawnDetached([node, ...daemonNodeFlags(), CANOPY_BIN, 'cluster', '--name', s.clusterName, '--host', hosts.hostIp, '--port', String(clusterPort),
    '--mqtt-host', hosts.hostIp, '--mqtt-port', String(mqttPort), '--data', join(o.dir, 'cluster'), '--root', s.rootUrl, ...serverFlags('cluster'), ...caFlag],
  join(logs, 'cluster.log'), { CANOPY_CLUSTER_KEY: clusterKey, CANOPY_WORKER_KEY: workerKey });
  writeState(s);
  const cluster = s.cluster;
  await waitFor('the cluster API', 30_000, async () => (await controlFetch(`${s.clusterUrl}/metrics`, { signal: AbortSignal.timeout(2000) })).status < 500 ? true : undefined,
    () => assertAlive(cluster, 'cluster'));

  for (const w of s.workers) {
    say(`worker: ${w.name} in namespace ${w.netns} at ${w.ip}`);
    mkdirSync(w.dataDir, { recursive: true, mode: 0o700 });
    w.process = spawnDetached(netnsExecArgv(w.netns, [node, ...daemonNodeFlags(), CANOPY_BIN, 'worker', '--name', w.name, '--cluster', s.clusterUrl,
      '--data', w.dataDir, '--api-host', w.ip, '--api-port', String(workerApiPort), '--tunnel-endpoint', `${w.ip}:50103`,
      '--undeploy-on-exit', '--dns-upstream', relayAt, ...serverFlags(w.name), ...caFlag, ...(o.workerArgs ?? [])]), join(logs, `${w.name}.log`), { CANOPY_WORKER_KEY: workerKey });
    writeState(s);
  }

  say(`waiting for ${s.workers.length} workers to be active at root (the cluster reports every 5 s)`);
  const all = () => {
    for (const r of replicas) assertAlive(r, 'root');
    assertAlive(cluster, 'cluster');
    assertAlive(relay, 'dns relay');
    for (const w of s.workers) if (w.process) assertAlive(w.process, `worker ${w.name}`);
  };
  await waitFor(`${s.workers.length} active workers at root`, (o.readyTimeoutS ?? 90) * 1000, async () => {
    const list = await client.clusters(true);
    const c = list.find((x) => x.name === s.clusterName);
    const agg = c?.aggregate as { workers_active?: number } | null | undefined;
    return agg && (agg.workers_active ?? 0) >= s.workers.length ? true : undefined;
  }, all);
  return s;
}

export interface DownReport {
  name: string;
  killed: string[];
  leftoverCgroups: number;
  leftoverNetns: string[];
}

/**
 * Stops workers first (they undeploy their instances), then cluster and root; then removes whatever
 * a crashed worker left (instance cgroups and namespaces), the worker namespaces and links, and the
 * state directory (logs kept with keepLogs).
 */
export function down(s: DeploymentState, o: { keepLogs?: boolean } = {}): DownReport {
  const killed: string[] = [];
  for (const i of stopProcesses(s.workers.map((w) => w.process), 20_000)) killed.push(s.workers[i]!.name);
  const replicas = s.rootReplicas ?? [];
  for (const i of stopProcesses([s.cluster, s.root, s.dnsRelay ?? null, ...replicas], 5000)) {
    killed.push(['cluster', 'root', 'dns relay'][i] ?? `root replica ${i - 1}`);
  }
  // After root: its replicas hold connections to it.
  if (s.postgres) {
    try {
      stopLocalPostgresSync(s.postgres.dir);
    } catch {
      killed.push('postgres (stopped by signal)');
    }
  }
  // A worker that was SIGKILLed left its embedded containerd (kept for re-adoption): stop it, its shims
  // and its mounts properly before the data dir goes.
  for (const w of s.workers) if (w.dataDir) killed.push(...reapEmbeddedSync(w.dataDir).map((x) => `${x} of ${w.name}`));
  // Anything else still running in a worker namespace (a daemon the state file missed).
  for (const w of s.workers) {
    for (const pid of netnsPidsSync(w.netns)) {
      try {
        process.kill(pid, 'SIGKILL');
        killed.push(`pid ${pid} in ${w.netns}`);
      } catch { /* gone */ }
    }
  }
  let leftoverCgroups = 0;
  const leftoverNetns: string[] = [];
  const present = listNetnsSync();
  for (const w of s.workers) {
    leftoverCgroups += removeWorkerCgroups(w.name);
    // Instance namespaces are `canopy-<worker id>-<key>` (orchestrator/worker/process-runtime.ts).
    leftoverNetns.push(...present.filter((n) => n.startsWith(`canopy-${w.name}-`)));
  }
  ipBatchForce(leftoverNetns.map((n) => `netns del ${n}`));
  removeHosts(s.bridge, s.workers);
  if (o.keepLogs) {
    for (const d of ['root', 'cluster', 'workers', 'state.json']) rmSync(join(s.dir, d), { recursive: true, force: true });
  } else {
    rmSync(s.dir, { recursive: true, force: true });
    // /var/lib/canopy is Canopy's own: it goes when empty even if an older `up` made it.
    removeEmptyParents(s.dir, s.createdFrom ?? (resolve(s.dir) === '/var/lib/canopy/up' ? '/var/lib/canopy' : undefined));
  }
  // The CLI's cached tokens for this root name a server that no longer exists.
  if (s.rootUrl) forgetTokens(s.rootUrl);
  return { name: s.name, killed, leftoverCgroups, leftoverNetns };
}

/** rmdir of each parent of `dir` up to and including `top`, while they are empty. */
function removeEmptyParents(dir: string, top: string | undefined): void {
  if (!top) return;
  const stop = resolve(top);
  for (let d = dirname(resolve(dir)); d.startsWith(stop) && d.length >= stop.length; d = dirname(d)) {
    try {
      rmdirSync(d);
    } catch {
      return;
    }
    if (d === stop) return;
  }
}

/** Daemons whose command line names `dir` or a path inside it (--data <dir>/…, the relay's --for <dir>). */
function daemonsUsing(dir: string): ProcessRecord[] {
  const out: ProcessRecord[] = [];
  const needle = `${dir.replace(/\/+$/, '')}/`;
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      const argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').filter(Boolean);
      if (argv.some((a) => a.startsWith(needle) || `${a}/` === needle) && argv.some((a) => a.endsWith('canopy.js'))) out.push({ ...procRef(Number(p)), argv, log: '' });
    } catch { /* gone */ }
  }
  return out;
}

/**
 * `down --force` without a usable state file: the daemons started with data under `dir`, and the
 * namespaces and links named like deployment `name`.
 */
export function forceDown(dir: string, name: string): DownReport {
  const strays = daemonsUsing(dir);
  stopProcesses(strays, 5000);
  const found = findByName(name);
  const workers = found.workers.map((w) => ({ ...w, name: '', ip: '', apiUrl: '', dataDir: '', process: null }));
  const s: DeploymentState = {
    version: STATE_VERSION, name, created_at: '', dir, bridge: found.bridge, subnet: '', hostIp: '', rootUrl: '', clusterUrl: '', mqttUrl: '',
    clusterName: '', username: '', password: '', root: null, cluster: null,
    workers: workers.map((w) => ({ ...w, name: `${name}-${w.netns.split('-').pop()!}` })),
  };
  const r = existsSync(dir) || found.workers.length > 0 || existsSync(`/sys/class/net/${found.bridge}`) ? down(s) : { name, killed: [], leftoverCgroups: 0, leftoverNetns: [] };
  return { ...r, killed: [...strays.map((p) => `pid ${p.pid} (${p.argv.slice(1, 3).join(' ')})`), ...r.killed] };
}
