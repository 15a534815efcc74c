// Root, one cluster (with its HTTP API and embedded broker) and one worker engine in the test's own
// process, started step by step so a test can put time between them (e.g. start the cluster while
// root is still down), and closed in reverse order whatever happened. Used by the tests that check
// the control chain without emulated hosts (cluster-root, cluster-constraints, e2e-two-clusters).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { RootServer, type RootOptions } from '../../orchestrator/root/server.ts';
import type { MetricsAccess } from '../../orchestrator/metrics-access.ts';
import { Cluster } from '../../orchestrator/cluster/cluster.ts';
import { startClusterApi } from '../../orchestrator/cluster/api.ts';
import { NodeEngine, type NodeEngineOptions } from '../../orchestrator/worker/node-engine.ts';
import { memoryLogger } from '../../orchestrator/protocol/log.ts';
import { freePort, sleep } from '../../harness/loopback.ts';

export const ADMIN_PASSWORD = 'admin-password-1';

/** Polls f until it returns something truthy; throws after ms with what was awaited. */
export async function poll<T>(what: string, f: () => Promise<T | undefined | false>, ms = 20_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

export class InProcessStack {
  readonly dir: string;
  readonly log = memoryLogger();
  root: RootServer | undefined;
  cluster: Cluster | undefined;
  api: FastifyInstance | undefined;
  engine: NodeEngine | undefined;
  /** Where root listens (fixed before root starts, so a cluster can be pointed at it earlier). */
  rootPort = 0;
  apiUrl = '';

  constructor(prefix: string) {
    this.dir = mkdtempSync(join(tmpdir(), prefix));
  }

  /** The worker's data dir (its embedded containerd lives under it). */
  get workerDir(): string {
    return join(this.dir, 'worker');
  }

  get rootUrl(): string {
    return this.root?.url ?? `http://127.0.0.1:${this.rootPort}`;
  }

  async startRoot(o: Partial<RootOptions> = {}): Promise<RootServer> {
    this.root = await RootServer.start({
      dataDir: join(this.dir, 'root'), host: '127.0.0.1', port: this.rootPort, adminPassword: ADMIN_PASSWORD, clusterKey: 'ck',
      log: this.log, announce: () => {}, ...o,
    });
    return this.root;
  }

  /** Cluster `name` with its API on a free port, registering with root at rootUrl (running or not). */
  async startCluster(name: string, o: { location?: string; reportIntervalMs?: number; metricsAccess?: MetricsAccess } = {}): Promise<Cluster> {
    if (!this.root && this.rootPort === 0) this.rootPort = await freePort();
    const apiPort = await freePort();
    this.apiUrl = `http://127.0.0.1:${apiPort}`;
    this.cluster = await Cluster.start({
      name, location: o.location ?? '48.1,11.5,100', stateDir: join(this.dir, 'cluster'), apiUrl: this.apiUrl,
      root: { url: this.rootUrl, joinKey: 'ck' }, workerJoinKey: 'wk', mqtt: { embedded: { host: '127.0.0.1', port: 0 } },
      reportIntervalMs: o.reportIntervalMs ?? 1000, log: this.log,
    });
    this.api = await startClusterApi(this.cluster, { host: '127.0.0.1', port: apiPort, workerJoinKey: 'wk', metricsAccess: o.metricsAccess });
    return this.cluster;
  }

  /**
   * A further cluster `name` (own data dir, API port and embedded broker) and one worker admitted by
   * it, registering with the same root; both are closed by close(), before the first cluster.
   */
  async startAnotherCluster(name: string, workerName: string): Promise<{ cluster: Cluster; apiUrl: string; engine: NodeEngine }> {
    const apiPort = await freePort();
    const apiUrl = `http://127.0.0.1:${apiPort}`;
    const cluster = await Cluster.start({
      name, location: '48.1,11.5,100', stateDir: join(this.dir, `cluster-${name}`), apiUrl,
      root: { url: this.rootUrl, joinKey: 'ck' }, workerJoinKey: 'wk', mqtt: { embedded: { host: '127.0.0.1', port: 0 } },
      reportIntervalMs: 1000, log: this.log,
    });
    const more = { cluster, api: undefined as FastifyInstance | undefined, engine: undefined as NodeEngine | undefined };
    this.more.push(more);
    more.api = await startClusterApi(cluster, { host: '127.0.0.1', port: apiPort, workerJoinKey: 'wk' });
    more.engine = await NodeEngine.start({
      name: workerName, clusterUrl: apiUrl, joinKey: 'wk', stateDir: join(this.dir, `worker-${name}`),
      capacity: { vcpus: 2, memory_mb: 1024 }, location: '48.1,11.6', log: this.log,
    });
    return { cluster, apiUrl, engine: more.engine };
  }

  private readonly more: Array<{ cluster: Cluster; api?: FastifyInstance; engine?: NodeEngine }> = [];

  /** A worker admitted by the cluster; `location: null` starts it without coordinates. */
  async startWorker(name: string, o: { location?: string | null; capacity?: { vcpus: number; memory_mb: number }; runtimes?: NodeEngineOptions['runtimes'] } = {}): Promise<NodeEngine> {
    const location = o.location === null ? {} : { location: o.location ?? '48.1,11.6' };
    this.engine = await NodeEngine.start({
      name, clusterUrl: this.apiUrl, joinKey: 'wk', stateDir: this.workerDir,
      capacity: o.capacity ?? { vcpus: 2, memory_mb: 1024 }, ...location, log: this.log, ...(o.runtimes ? { runtimes: o.runtimes } : {}),
    });
    return this.engine;
  }

  /** JSON headers with an admin token from root's login. */
  async adminHeaders(): Promise<Record<string, string>> {
    const login = await (await fetch(`${this.rootUrl}/api/v1/auth/login`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }),
    })).json() as { token: string };
    return { authorization: `Bearer ${login.token}`, 'content-type': 'application/json' };
  }

  /** Stops worker (undeploying its instances when asked), cluster API, cluster and root; removes the directory. */
  async close(o: { undeploy?: boolean } = {}): Promise<void> {
    for (const m of this.more) {
      await m.engine?.close(o.undeploy ? { undeploy: true } : undefined).catch(() => {});
      await m.api?.close();
      await m.cluster.close();
    }
    await this.engine?.close(o.undeploy ? { undeploy: true } : undefined).catch(() => {});
    await this.api?.close();
    await this.cluster?.close();
    await this.root?.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
