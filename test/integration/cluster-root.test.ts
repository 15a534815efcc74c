// The cluster against the real root: registration with root's join key, reports (root sees the
// cluster active with its aggregate), a descriptor from ../shared/fixtures deployed through root's
// REST API runs on a real worker and its states reach root with reasons; removal undeploys it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { RootServer } from '../../orchestrator/root/server.ts';
import { Cluster } from '../../orchestrator/cluster/cluster.ts';
import { startClusterApi } from '../../orchestrator/cluster/api.ts';
import { NodeEngine } from '../../orchestrator/worker/node-engine.ts';
import { memoryLogger } from '../../orchestrator/mqtt/log.ts';
import { freePort, sleep } from '../support/loopback.ts';

const FIXTURES = join(import.meta.dirname, '../../../shared/fixtures/sla');


async function poll<T>(what: string, f: () => Promise<T | undefined | false>, ms = 20_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

test('cluster and worker under the real root: register, report, deploy a fixture, undeploy', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'canopy-cr-'));
  const log = memoryLogger();
  let root: RootServer | undefined;
  let cluster: Cluster | undefined;
  let api: FastifyInstance | undefined;
  let engine: NodeEngine | undefined;
  try {
    root = await RootServer.start({ dataDir: join(dir, 'root'), host: '127.0.0.1', port: 0, adminPassword: 'admin-password-1', clusterKey: 'ck', log, announce: () => {} });
    const r = root.url;
    const apiPort = await freePort();
    const apiUrl = `http://127.0.0.1:${apiPort}`;
    cluster = await Cluster.start({
      name: 'edge1', location: '48.1,11.5,100', stateDir: join(dir, 'cluster'), apiUrl,
      root: { url: r, joinKey: 'ck' }, workerJoinKey: 'wk', mqtt: { embedded: { host: '127.0.0.1', port: 0 } }, reportIntervalMs: 1000, log,
    });
    api = await startClusterApi(cluster, { host: '127.0.0.1', port: apiPort, workerJoinKey: 'wk' });
    await poll('registered with the real root', async () => cluster!.rootToken);

    engine = await NodeEngine.start({
      name: `wroot${process.pid % 100000}`, clusterUrl: apiUrl, joinKey: 'wk', stateDir: join(dir, 'worker'),
      capacity: { vcpus: 2, memory_mb: 1024 }, location: '48.1,11.6', log,
    });
    assert.match(engine.identity.subnet_v4 ?? '', /^10\.18\.\d+\.0\/24$/, 'subnet allocated by root');

    const login = await (await fetch(`${r}/api/auth/login`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: 'admin-password-1' }),
    })).json() as { token: string };
    const auth = { authorization: `Bearer ${login.token}`, 'content-type': 'application/json' };

    const active = await poll('cluster active at root with a worker', async () => {
      const list = await (await fetch(`${r}/api/clusters/active`, { headers: auth })).json() as Array<Record<string, unknown>>;
      const c = list.find((x) => x.name === 'edge1');
      return c && JSON.stringify(c).includes('"process"') ? c : undefined;
    });
    assert.ok(active);

    const sla = readFileSync(join(FIXTURES, 'process-iperf.json'), 'utf8');
    const created = await (await fetch(`${r}/api/application`, { method: 'POST', headers: auth, body: sla })).json() as { services: Array<{ microserviceID: string; microservice_name: string }> };
    const server = created.services.find((s) => s.microservice_name === 'server')!;
    const inst = await fetch(`${r}/api/service/${server.microserviceID}/instance`, { method: 'POST', headers: auth, body: '{}' });
    assert.ok(inst.ok, `instance request: HTTP ${inst.status}`);

    const running = await poll('RUNNING at root', async () => {
      const s = await (await fetch(`${r}/api/service/${server.microserviceID}`, { headers: auth })).json() as { instances: Array<{ state: string; worker_id: string; history: Array<{ state: string; reason: string }> }> };
      return s.instances[0]?.state === 'RUNNING' ? s.instances[0] : undefined;
    });
    assert.equal(running.worker_id, engine.workerId);
    assert.ok(running.history.some((h) => h.state === 'NODE_SCHEDULED'), JSON.stringify(running.history));
    assert.equal(engine.instances.size, 1);

    const del = await fetch(`${r}/api/service/${server.microserviceID}/instance/0`, { method: 'DELETE', headers: { authorization: auth.authorization } });
    assert.ok(del.ok, `delete: HTTP ${del.status}`);
    await poll('undeployed on the worker', async () => engine!.instances.size === 0);
  } finally {
    await engine?.close({ undeploy: true }).catch(() => {});
    await api?.close();
    await cluster?.close();
    await root?.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
