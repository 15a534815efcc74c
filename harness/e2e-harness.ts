// A whole deployment on emulated hosts, for the end-to-end tests: root and cluster on host `ctl`,
// one worker daemon per worker host, all real processes (`node bin/canopy.js …`), driven through
// root's REST API with curl from inside `ctl`. Everything a worker leaves on the machine's shared
// parts (instance namespaces, cgroups, /etc/netns files) is swept at the end, pass or fail.
import { mkdtempSync, rmSync, existsSync, readdirSync, readFileSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { Lab, type Host as LabHost } from '../lab/lab.ts';
import { readSlaFixture } from './fixtures.ts';
import { ensureFleetCerts, fleetPaths, type FleetPaths } from '../orchestrator/tls/fleet.ts';
import { registryGuardArgs } from './registry-guard.ts';
import { reapEmbeddedSync } from '../orchestrator/worker/container/embedded-reap.ts';

export const REPO = join(import.meta.dirname, '..');
const CANOPY = join(REPO, 'bin/canopy.js');
export const ADMIN_PASSWORD = 'e2e-admin-password';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function poll<T>(what: string, f: () => Promise<T | undefined | false | null>, ms = 30_000, every = 200): Promise<T> {
  const until = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
    await sleep(every);
  }
}

export interface DeploymentSpec {
  workers: string[];
  /** Extra arguments of `canopy cluster` (e.g. an external broker). */
  clusterArgs?: string[];
  /** Extra arguments of `canopy root` (e.g. --cluster-silence). */
  rootArgs?: string[];
  /** Started on ctl before the cluster (e.g. Mosquitto); killed with the lab. */
  beforeCluster?: (ctl: LabHost, dir: string) => Promise<string[]>;
  /**
   * Several clusters on ctl, each with its workers (lab host names, all also in `workers`). Default:
   * one cluster c1 with every worker. The first cluster keeps the single-cluster ports, data dir and
   * process name ("cluster"); the i-th further one listens on API port 10100+i and MQTT port 10003+i.
   */
  clusters?: Array<{ name: string; workers: string[] }>;
  /** Worker names by lab host (after the lab prefix); default: the host's name. Workers of different
   *  clusters may share one (names are unique per cluster only). */
  names?: Record<string, string>;
  /** Extra arguments of every `canopy worker` (e.g. --registry-mirror). */
  workerArgs?: string[];
  /** Extra arguments of one worker's `canopy worker`, by lab host (e.g. --tunnel-endpoint behind a NAT). */
  workerArgsOf?: Record<string, string[]>;
  /** TLS on root, cluster and MQTT with a CA made for the deployment (default true, as `canopy up`);
   *  the workers' local APIs stay plain on their hosts' loopback. */
  tls?: boolean;
}

export interface ServiceInfo {
  microserviceID: string;
  microservice_name: string;
  [k: string]: unknown;
}

export interface InstanceInfo {
  instance_n: number;
  state: string;
  worker_id?: string | null;
  ns_ip?: string | null;
  [k: string]: unknown;
}

export class Deployment {
  readonly dir: string;
  readonly procs = new Map<string, ChildProcess>();
  token = '';
  readonly workerIds: string[];

  constructor(readonly lab: Lab, readonly spec: DeploymentSpec) {
    this.dir = mkdtempSync(join(tmpdir(), 'canopy-e2e-'));
    this.workerIds = [...new Set(spec.workers.map((w) => this.workerIdOf(w)))];
  }

  get ctl(): LabHost {
    return this.lab.host('ctl');
  }

  get tls(): boolean {
    return this.spec.tls !== false;
  }

  get scheme(): string {
    return this.tls ? 'https' : 'http';
  }

  /** The deployment's certificates (ca.pem, <tier>.pem), when TLS is on. */
  get certs(): FleetPaths {
    return fleetPaths(join(this.dir, 'tls'));
  }

  get clusterUrl(): string {
    return `${this.scheme}://${this.ctl.ip}:10100`;
  }

  private get clusterList(): Array<{ name: string; workers: string[] }> {
    return this.spec.clusters ?? [{ name: 'c1', workers: this.spec.workers }];
  }

  /** The API URL of the cluster a worker host belongs to. */
  clusterUrlOf(host: string): string {
    const i = Math.max(0, this.clusterList.findIndex((c) => c.workers.includes(host)));
    return `${this.scheme}://${this.ctl.ip}:${10100 + i}`;
  }

  workerIdOf(host: string): string {
    return `${this.lab.prefix}-${this.spec.names?.[host] ?? host}`;
  }

  /** The lab host of a worker; with shared names, the one in `clusterName`. */
  hostOfWorker(workerId: string, clusterName?: string): LabHost {
    const hosts = this.spec.workers.filter((h) => this.workerIdOf(h) === workerId
      && (clusterName === undefined || this.clusterList.find((c) => c.workers.includes(h))?.name === clusterName));
    if (hosts.length !== 1) throw new Error(`worker ${workerId}${clusterName ? ` in ${clusterName}` : ''}: ${hosts.length} hosts`);
    return this.lab.host(hosts[0]!);
  }

  private spawnCanopy(host: LabHost, name: string, args: string[]): ChildProcess {
    // `ip netns exec` mounts a fresh /sys without the cgroup hierarchies; workers need them, so they
    // go back to this process's mount namespace (keeping the host's network namespace).
    const enter = args[0] === 'worker' ? ['nsenter', `--mount=/proc/${process.pid}/ns/mnt`, `--wd=${REPO}`, '--'] : [];
    const p = host.spawn([...enter, process.execPath, CANOPY, ...args], { cwd: REPO, env: { ...process.env, CANOPY_LOG_LEVEL: 'info' } });
    this.procs.set(name, p);
    return p;
  }

  output(name: string): string {
    const p = this.procs.get(name);
    return p ? this.lab.outputOf(p) : '';
  }

  /** --tls-cert/--tls-key of `name`'s certificate and --ca, or nothing without TLS. */
  tlsArgs(name?: string): string[] {
    if (!this.tls) return [];
    const c = this.certs;
    return [...(name ? ['--tls-cert', c.cert(name), '--tls-key', c.key(name)] : []), '--ca', c.ca];
  }

  async start(): Promise<void> {
    const ctl = this.ctl;
    if (this.tls) {
      ensureFleetCerts(this.certs.dir, [
        { name: 'root', sans: ['127.0.0.1', ctl.ip] },
        ...this.clusterList.map((c) => ({ name: `cluster-${c.name}`, sans: ['127.0.0.1', ctl.ip] })),
      ]);
    }
    await this.startRoot();
    const extra = this.spec.beforeCluster ? await this.spec.beforeCluster(ctl, this.dir) : [];
    for (const [i, c] of this.clusterList.entries()) {
      const port = 10100 + i;
      const more = i === 0 ? [] : ['--port', String(port), '--mqtt-port', String(10003 + i)];
      this.spawnCanopy(ctl, i === 0 ? 'cluster' : `cluster-${c.name}`, ['cluster', '--name', c.name, '--location', '48.1,11.5,100',
        '--data', join(this.dir, i === 0 ? 'cluster' : `cluster-${c.name}`), '--public-url', `${this.scheme}://${ctl.ip}:${port}`,
        '--root', `${this.scheme}://127.0.0.1:10000`, '--root-key', 'e2e-ck', '--worker-key', 'e2e-wk', ...more, ...this.tlsArgs(`cluster-${c.name}`),
        ...extra, ...(this.spec.clusterArgs ?? [])]);
      await ctl.waitListening(port, { timeoutMs: 30_000 });
    }
    await this.login();
    // A cluster registers with root on its first report; workers then get subnets at once.
    await poll('clusters registered at root', async () => {
      const list = await this.api('GET', '/api/v1/clusters') as Array<{ name: string }>;
      return this.clusterList.every((c) => list.some((l) => l.name === c.name));
    });
    for (const w of this.spec.workers) this.startWorker(w);
    await poll('all workers active at root', async () => {
      const list = await this.api('GET', '/api/v1/clusters/active') as Array<{ name: string; aggregate?: { workers_active?: number } | null }>;
      return this.clusterList.every((c) => (list.find((l) => l.name === c.name)?.aggregate?.workers_active ?? 0) >= c.workers.length);
    }, 60_000);
  }

  /** Starts root on ctl (again, after a kill: same data directory) and waits until it listens. */
  async startRoot(): Promise<void> {
    this.spawnCanopy(this.ctl, 'root', ['root', '--host', '0.0.0.0', '--port', '10000', '--data', join(this.dir, 'root'),
      '--admin-password', ADMIN_PASSWORD, '--cluster-key', 'e2e-ck', ...this.tlsArgs('root'), ...(this.spec.rootArgs ?? [])]);
    await this.ctl.waitListening(10000, { timeoutMs: 30_000 });
  }

  async login(): Promise<void> {
    const login = await this.api('POST', '/api/v1/auth/login', { username: 'admin', password: ADMIN_PASSWORD }, false) as { token?: string };
    if (!login.token) throw new Error(`login failed: ${JSON.stringify(login)}`);
    this.token = login.token;
  }

  /** SIGKILLs a daemon (its process group) by name ('root', 'cluster', a worker host) and waits for its exit. */
  async kill(name: string): Promise<void> {
    const p = this.procs.get(name);
    if (!p || p.exitCode !== null || p.signalCode !== null) throw new Error(`${name} is not running`);
    const exited = new Promise((r) => p.once('exit', r));
    process.kill(-(p.pid as number), 'SIGKILL');
    await exited;
  }

  startWorker(host: string): ChildProcess {
    const h = this.lab.host(host);
    return this.spawnCanopy(h, host, ['worker', '--name', this.workerIdOf(host), '--cluster', this.clusterUrlOf(host), '--key', 'e2e-wk',
      '--data', join(this.dir, host), '--api-port', '10200', '--location', `48.${h.index},11.5`, '--dns-upstream', '127.0.0.1', ...this.tlsArgs(),
      ...(this.spec.workerArgs ?? []), ...(this.spec.workerArgsOf?.[host] ?? []), ...registryGuardArgs(this.spec.workerArgs)]);
  }

  /** curl arguments for a worker's local API on its host's loopback, with its API token (worker/api.ts). */
  workerApiCurl(host: string, path: string): string[] {
    const token = readFileSync(join(this.dir, host, 'api-token'), 'utf8').trim();
    return ['curl', '-sS', '-m', '5', '-H', `authorization: Bearer ${token}`, `http://127.0.0.1:10200${path}`];
  }

  /** The i-th cluster's GET /api/status, called as root calls it (root's token from the cluster's
   *  state file; the deployment's CA when TLS is on). */
  async clusterStatus<T = unknown>(i = 0): Promise<T> {
    const c = this.clusterList[i];
    if (!c) throw new Error(`no cluster #${i}`);
    const state = JSON.parse(readFileSync(join(this.dir, i === 0 ? 'cluster' : `cluster-${c.name}`, 'cluster.json'), 'utf8')) as { root?: { token?: string } | null };
    const token = state.root?.token;
    if (!token) throw new Error(`cluster ${c.name} has not registered with root yet`);
    return JSON.parse(await this.ctl.execOk(['curl', '-sS', '-m', '5', '-f', '-H', `authorization: Bearer ${token}`,
      ...(this.tls ? ['--cacert', this.certs.ca] : []), `${this.scheme}://127.0.0.1:${10100 + i}/api/status`])) as T;
  }

  /** A worker's GET /api/status (its instances with their states and reasons). */
  async workerStatus<T = unknown>(host: string): Promise<T> {
    return JSON.parse(await this.lab.host(host).execOk(this.workerApiCurl(host, '/api/status'))) as T;
  }

  /** For a failing test's diagnostics: the worker's non-zero counters of drops, queries, pending
   *  packets and route updates (where a packet that never arrived was lost), or why they could not be read. */
  async workerCounters(host: string): Promise<string> {
    const r = await this.lab.host(host).exec(this.workerApiCurl(host, '/metrics'), { timeoutMs: 8000 });
    if (r.code !== 0) return `metrics of ${host} unreadable: ${r.stderr.trim()}`;
    return r.stdout.split('\n')
      .filter((l) => !l.startsWith('#') && /drop|quer|pending|await|route|timeout|bad|connected|unknown|retired/i.test(l) && !/ 0$/.test(l))
      .join('\n');
  }

  /** An instance's stdout or stderr as a user reads it: through root, its cluster and its worker. */
  async instanceLogs(serviceId: string, n: number, stream: 'stdout' | 'stderr' = 'stdout'): Promise<string> {
    const args = ['curl', '-sS', '-m', '20', '-w', '\n%{http_code}', '-H', `authorization: Bearer ${this.token}`, ...(this.tls ? ['--cacert', this.certs.ca] : []),
      `${this.scheme}://127.0.0.1:10000/api/v1/service/${serviceId}/instance/${n}/logs?stream=${stream}`];
    const r = await this.ctl.exec(args, { timeoutMs: 30_000 });
    const nl = r.stdout.lastIndexOf('\n');
    const status = Number(r.stdout.slice(nl + 1));
    if (r.code !== 0 || status !== 200) throw new Error(`logs of ${serviceId}#${n}: HTTP ${status} ${r.stdout.slice(0, nl)} ${r.stderr}`);
    return r.stdout.slice(0, nl);
  }

  /** One call to root's API through curl inside ctl; the JSON answer (throws on HTTP ≥ 400). */
  async api(method: string, path: string, body?: unknown, auth = true): Promise<unknown> {
    const args = ['curl', '-sS', '-m', '20', '-X', method, '-w', '\n%{http_code}', ...(this.tls ? ['--cacert', this.certs.ca] : []), `${this.scheme}://127.0.0.1:10000${path}`];
    if (auth) args.push('-H', `authorization: Bearer ${this.token}`);
    if (body !== undefined) args.push('-H', 'content-type: application/json', '--data-binary', '@-');
    const r = await this.ctl.exec(args, { input: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body), timeoutMs: 30_000 });
    const nl = r.stdout.lastIndexOf('\n');
    const status = Number(r.stdout.slice(nl + 1));
    const text = r.stdout.slice(0, nl);
    if (r.code !== 0 || !(status >= 200 && status < 400)) throw new Error(`${method} ${path}: HTTP ${status} ${text} ${r.stderr}`);
    return text === '' ? null : JSON.parse(text) as unknown;
  }

  async submit(sla: string): Promise<{ applicationID: string; services: ServiceInfo[] }> {
    const r = await this.api('POST', '/api/v1/application', sla) as { services: ServiceInfo[]; applications?: Array<{ applicationID: string }>; applicationID?: string };
    const appId = r.applicationID ?? r.applications?.[0]?.applicationID ?? (r.services[0] as { applicationID?: string } | undefined)?.applicationID;
    if (!appId) throw new Error(`no application id in ${JSON.stringify(r).slice(0, 300)}`);
    return { applicationID: appId, services: r.services };
  }

  async deployInstance(serviceId: string): Promise<void> {
    await this.api('POST', `/api/v1/service/${serviceId}/instance`, {});
  }

  async instances(serviceId: string): Promise<InstanceInfo[]> {
    const s = await this.api('GET', `/api/v1/service/${serviceId}`) as { instances?: InstanceInfo[] };
    return s.instances ?? [];
  }

  async service(serviceId: string): Promise<Record<string, unknown>> {
    return await this.api('GET', `/api/v1/service/${serviceId}`) as Record<string, unknown>;
  }

  async waitState(serviceId: string, count: number, states: string[], ms = 60_000): Promise<InstanceInfo[]> {
    return poll(`${count} instance(s) of ${serviceId} in ${states.join('|')}`, async () => {
      const list = (await this.instances(serviceId)).filter((i) => states.includes(i.state));
      return list.length >= count ? list : undefined;
    }, ms, 300);
  }

  /**
   * Deploys process-web-client.json with the web server pinned to `webOn` and the client to `clientOn`
   * (lab host names), one instance each, and waits until both run. `clientAfterWeb`: the client is
   * deployed only once the web server runs (a new caller of a service that already runs).
   */
  async deployWebClient(webOn: string[], clientOn: string, o: { clientAfterWeb?: boolean } = {}): Promise<{ srv: ServiceInfo; cli: ServiceInfo; s0: InstanceInfo; c0: InstanceInfo }> {
    const sla = readSlaFixture('process-web-client.json');
    const [web, client] = sla.applications[0]!.microservices;
    // With several clusters, the cluster too: worker names are unique per cluster only.
    const clusterOf = (h: string): { cluster?: string } => (this.spec.clusters ? { cluster: this.clusterList.find((c) => c.workers.includes(h))?.name } : {});
    web!.constraints = [{ type: 'direct', node: webOn.map((h) => this.workerIdOf(h)).join(';'), ...clusterOf(webOn[0]!) }];
    client!.constraints = [{ type: 'direct', node: this.workerIdOf(clientOn), ...clusterOf(clientOn) }];
    const app = await this.submit(JSON.stringify(sla));
    const srv = app.services.find((s) => s.microservice_name === 'web')!;
    const cli = app.services.find((s) => s.microservice_name === 'client')!;
    await this.deployInstance(srv.microserviceID);
    if (o.clientAfterWeb) await this.waitState(srv.microserviceID, 1, ['RUNNING']);
    await this.deployInstance(cli.microserviceID);
    const [s0] = await this.waitState(srv.microserviceID, 1, ['RUNNING']);
    const [c0] = await this.waitState(cli.microserviceID, 1, ['RUNNING']);
    return { srv, cli, s0: s0!, c0: c0! };
  }

  /** The namespace of an instance on its worker (process runtime's naming). */
  netnsOf(workerId: string, serviceId: string, n: number): string {
    return `canopy-${workerId}-${serviceId.replace(/[^A-Za-z0-9_.-]/g, '_')}-${n}`;
  }

  /** Runs a command inside an instance's namespace, from its worker host (in `clusterName`, when names are shared). */
  inInstance(workerId: string, serviceId: string, n: number, argv: string[], timeoutMs = 20_000, clusterName?: string): ReturnType<LabHost['exec']> {
    return this.hostOfWorker(workerId, clusterName).exec(['ip', 'netns', 'exec', this.netnsOf(workerId, serviceId, n), ...argv], { timeoutMs });
  }

  /** What a worker has left on its host and on the machine: instance namespaces, veths, cgroups, DNAT rules, processes. */
  async leftovers(host: string): Promise<string[]> {
    const w = this.workerIdOf(host);
    const out: string[] = [];
    if (existsSync('/run/netns')) for (const n of readdirSync('/run/netns')) if (n.startsWith(`canopy-${w}-`)) out.push(`netns ${n}`);
    if (existsSync('/etc/netns')) for (const n of readdirSync('/etc/netns')) if (n.startsWith(`canopy-${w}-`)) out.push(`/etc/netns/${n}`);
    for (const root of cgroupRoots()) {
      const d = join(root, 'canopy', w);
      if (existsSync(d)) for (const n of readdirSync(d, { withFileTypes: true })) if (n.isDirectory()) out.push(`cgroup ${join(d, n.name)}`);
    }
    const h = this.lab.host(host);
    const links = await h.exec(['ip', '-o', 'link', 'show']);
    for (const l of links.stdout.split('\n')) {
      const m = /^\d+: (cv[0-9a-f]+)[@:]/.exec(l);
      if (m) out.push(`veth ${m[1]}`);
    }
    const rules = await h.exec(['nft', 'list', 'table', 'inet', 'canopy']);
    if (rules.code === 0 && /dnat/.test(rules.stdout)) out.push('nft dnat rules');
    // Processes still in one of the worker's instance cgroups (any hierarchy).
    for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
      let cg = '';
      try { cg = readFileSync(`/proc/${pid}/cgroup`, 'utf8'); } catch { continue; }
      if (cg.includes(`/canopy/${w}/`)) out.push(`process ${pid}`);
    }
    return out;
  }

  /** Stops every daemon, then removes what they left on the machine. */
  async stop(): Promise<void> {
    for (const [name, p] of this.procs) {
      if (p.exitCode === null && p.signalCode === null) {
        try { process.kill(-(p.pid as number), 'SIGTERM'); } catch { /* gone */ }
        await Promise.race([new Promise((r) => p.once('exit', r)), sleep(10_000)]);
        if (p.exitCode === null && p.signalCode === null) {
          try { process.kill(-(p.pid as number), 'SIGKILL'); } catch { /* gone */ }
        }
      }
      this.procs.delete(name);
    }
    // A worker killed during the test (and not restarted) left its embedded containerd running.
    for (const host of this.spec.workers) reapEmbeddedSync(join(this.dir, host));
    for (const w of this.workerIds) sweepWorker(w);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Every hierarchy that has a canopy group: v2's root, and each v1 one (runc uses blkio, devices, … too). */
function cgroupRoots(): string[] {
  const roots = ['/sys/fs/cgroup'];
  for (const c of readdirSync('/sys/fs/cgroup', { withFileTypes: true })) if (c.isDirectory()) roots.push(`/sys/fs/cgroup/${c.name}`);
  return roots.filter((r) => existsSync(join(r, 'canopy')));
}

/** Kills what is left of a worker's instances and removes their namespaces, cgroups and files. */
export function sweepWorker(workerId: string): void {
  for (const root of cgroupRoots()) {
    const d = join(root, 'canopy', workerId);
    if (!existsSync(d)) continue;
    for (const n of readdirSync(d, { withFileTypes: true })) {
      if (!n.isDirectory()) continue;
      const procs = join(d, n.name, 'cgroup.procs');
      if (existsSync(procs)) {
        for (const pid of readFileSync(procs, 'utf8').split('\n').filter(Boolean)) {
          try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ }
        }
      }
    }
  }
  if (existsSync('/run/netns')) {
    for (const n of readdirSync('/run/netns')) {
      if (n.startsWith(`canopy-${workerId}-`)) {
        try { execFileSync('ip', ['netns', 'del', n], { stdio: 'ignore' }); } catch { /* gone */ }
      }
    }
  }
  if (existsSync('/etc/netns')) {
    for (const n of readdirSync('/etc/netns')) if (n.startsWith(`canopy-${workerId}-`)) rmSync(join('/etc/netns', n), { recursive: true, force: true });
  }
  for (const root of cgroupRoots()) {
    const d = join(root, 'canopy', workerId);
    if (!existsSync(d)) continue;
    for (let attempt = 0; attempt < 20; attempt++) {
      try {
        for (const n of readdirSync(d, { withFileTypes: true })) if (n.isDirectory()) rmdirSync(join(d, n.name));
        rmdirSync(d);
        // And the shared parent, unless another worker still has groups there.
        try { rmdirSync(join(root, 'canopy')); } catch { /* not empty */ }
        break;
      } catch {
        execFileSync('sleep', ['0.1']);
      }
    }
  }
}
