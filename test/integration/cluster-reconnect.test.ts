// Failure semantics of the cluster ↔ worker pair (SPEC §8): the cluster goes away for longer than the
// liveness timeout and comes back from its saved state; the worker daemon restarts and re-adopts its
// running instance, or cleanly replaces one that died meanwhile. Nothing is killed or duplicated, and
// nothing is left on the host afterwards.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Cluster } from '../../orchestrator/cluster/cluster.ts';
import { startClusterApi } from '../../orchestrator/cluster/api.ts';
import { NodeEngine } from '../../orchestrator/worker/node-engine.ts';
import { startWorkerApi } from '../../orchestrator/worker/api.ts';
import { detectCgroups } from '../../orchestrator/worker/cgroup.ts';
import { memoryLogger } from '../../orchestrator/protocol/log.ts';
import type { PlacementOffer } from '../../orchestrator/protocol/root-cluster.ts';
import { freePort, sleep, waitFor } from '../../harness/loopback.ts';




const offer = (sid: string, cmd: string[], one_shot = false): PlacementOffer => ({
  service: { service_id: sid, app: 'app', appns: 'ns', svc: sid, svcns: 'ns', microservice: { virtualization: 'process', cmd, memory: 32, vcpus: 0.2, one_shot } },
  instance_n: 0, instance_ip: '10.30.2.1',
});

test('cluster outage and worker daemon restart: instances survive, are re-adopted, never duplicated', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'canopy-rc-'));
  const log = memoryLogger();
  const mqttPort = await freePort();
  const workerName = `wr${process.pid % 100000}`;
  let cluster: Cluster | undefined;
  let api: FastifyInstance | undefined;
  let engine: NodeEngine | undefined;
  const startCluster = async (): Promise<void> => {
    cluster = await Cluster.start({
      name: 'c1', location: '0,0,0', stateDir: join(dir, 'cluster'), apiUrl: 'http://127.0.0.1:0', workerJoinKey: 'k',
      mqtt: { embedded: { host: '127.0.0.1', port: mqttPort } }, restartGraceMs: 5000, log: log.child({ c: 1 }),
    });
  };
  const startEngine = async (apiUrl: string): Promise<NodeEngine> => NodeEngine.start({
    name: workerName, clusterUrl: apiUrl, joinKey: 'k', stateDir: join(dir, 'worker'),
    capacity: { vcpus: 2, memory_mb: 1024 }, log: log.child({ w: 1 }), backoff: { initialMs: 200, maxMs: 1000, resetAfterMs: 10_000 },
  });
  try {
    await startCluster();
    api = await startClusterApi(cluster!, { host: '127.0.0.1', port: 0, workerJoinKey: 'k' });
    const apiUrl = `http://127.0.0.1:${(api.server.address() as { port: number }).port}`;
    engine = await startEngine(apiUrl);
    await waitFor('worker alive', () => cluster!.registry.alive().length === 1);
    assert.equal(cluster!.place(offer('keep', ['sh', '-c', 'echo hello-log; exec sleep 600'])).accepted, true);
    assert.equal(cluster!.place(offer('dies', ['sleep', '600'])).accepted, true);
    await waitFor('both RUNNING', () => [...engine!.instances.values()].filter((i) => i.state === 'RUNNING').length === 2);
    const pidKeep = engine.instances.get('keep-0')!.pid!;

    // The worker's local API: status with reasons, the instance's output, metrics.
    const wapi = await startWorkerApi(engine, { host: '127.0.0.1', port: 0, token: 'worker-api-token-1' });
    try {
      const base = `http://127.0.0.1:${(wapi.server.address() as { port: number }).port}`;
      const fetch = (url: string, auth = true): Promise<Response> => globalThis.fetch(url, auth ? { headers: { authorization: 'Bearer worker-api-token-1' } } : {});
      // No side doors: status and logs only with the worker's token; metrics stay open.
      assert.equal((await fetch(`${base}/api/status`, false)).status, 401);
      assert.equal((await fetch(`${base}/api/instances/keep/0/logs?stream=stdout`, false)).status, 401);
      assert.equal((await globalThis.fetch(`${base}/api/status`, { headers: { authorization: 'Bearer worker-api-token-2' } })).status, 401);
      assert.equal((await fetch(`${base}/metrics`, false)).status, 200);
      const status = await (await fetch(`${base}/api/status`)).json() as { instances: Array<{ service_id: string; state: string; reason: string }> };
      assert.deepEqual(status.instances.map((i) => `${i.service_id} ${i.state}`).sort(), ['dies RUNNING', 'keep RUNNING']);
      await waitFor('output written', () => engine!.instances.get('keep-0')!.logs('stdout').includes('hello-log'));
      assert.equal(await (await fetch(`${base}/api/instances/keep/0/logs?stream=stdout`)).text(), 'hello-log\n');
      assert.equal((await fetch(`${base}/api/instances/nope/0/logs`)).status, 404);
      assert.equal((await fetch(`${base}/api/instances/keep/0/logs?stream=bogus`)).status, 400);
      assert.match(await (await fetch(`${base}/metrics`)).text(), /canopy_worker_instances\{state="RUNNING"\} 2/);
    } finally {
      await wapi.close();
    }

    // The worker's semantic layer follows service `keep`.
    const updates: string[] = [];
    engine.routeLink().onMessage((m) => { if (m.type === 'route_update') updates.push(m.route.service_id); });
    engine.routeLink().send({ type: 'interest_add', service_id: 'keep' });
    await waitFor('interest known', () => cluster!.interestedIn('keep').length === 1);

    // The cluster disappears for 5 s (longer than the 3 s liveness timeout).
    await cluster!.close();
    await waitFor('worker notices', () => !engine!.connected);
    await sleep(5000);
    assert.equal(engine.instances.get('keep-0')!.state, 'RUNNING', 'still running without a cluster');
    assert.equal(engine.instances.get('keep-0')!.pid, pidKeep);

    // It comes back from its saved state; the worker reconnects by itself.
    await startCluster();
    await waitFor('worker back', () => engine!.connected && cluster!.registry.workers.get(workerName)?.hb !== undefined);
    await sleep(2000);
    assert.equal(cluster!.counters.deaths, 0, 'nobody declared dead across the cluster restart');
    assert.equal(cluster!.instances.get('keep#0')!.lifecycle.state, 'RUNNING');
    assert.equal(engine.instances.get('keep-0')!.pid, pidKeep, 'not restarted');
    assert.equal(engine.counters.deploys, 2, 'no duplicate deploys');
    assert.equal(engine.instances.size, 2);
    assert.deepEqual(cluster!.interestedIn('keep'), [workerName], 'interest re-announced to the restarted cluster');
    await waitFor('fresh route pushed after the reconnect', () => updates.length >= 2);

    // A one-shot finishes before the daemon restarts; it must not run again afterwards.
    assert.equal(cluster!.place(offer('once', ['sh', '-c', 'echo ran'], true)).accepted, true);
    await waitFor('one-shot COMPLETED', () => engine!.instances.get('once-0')?.state === 'COMPLETED');

    // The worker daemon restarts; meanwhile one instance dies.
    await engine.close();
    const cg = detectCgroups().open(`canopy/${workerName}/dies-0`)!;
    for (const p of cg.pids()) process.kill(p, 'SIGKILL');
    await waitFor('killed instance gone', () => cg.pids().length === 0);
    engine = await startEngine(apiUrl);
    const keep = engine.instances.get('keep-0')!;
    assert.equal(keep.state, 'RUNNING');
    assert.equal(keep.pid, pidKeep, 're-adopted, same process');
    assert.match(keep.lifecycle.last.reason, /re-adopted/);
    const dies = engine.instances.get('dies-0')!;
    await waitFor('replaced instance RUNNING', () => dies.state === 'RUNNING');
    assert.notEqual(dies.pid, undefined);
    await waitFor('cluster sees both RUNNING', () => cluster!.instances.get('dies#0')!.lifecycle.state === 'RUNNING' && cluster!.instances.get('keep#0')!.lifecycle.state === 'RUNNING');
    assert.equal(cluster!.counters.deaths, 0);
    const once = engine.instances.get('once-0')!;
    assert.equal(once.state, 'COMPLETED');
    await sleep(500);
    assert.equal(once.logs('stdout'), 'ran\n', 'the one-shot ran exactly once');
    assert.equal(cluster!.instances.get('once#0')!.lifecycle.state, 'COMPLETED');

    // Undeploy everything: the host is clean.
    cluster!.remove('keep', 0);
    cluster!.remove('dies', 0);
    cluster!.remove('once', 0);
    await waitFor('instances gone', () => engine!.instances.size === 0);
  } finally {
    await engine?.close({ undeploy: true }).catch(() => {});
    await api?.close();
    await cluster?.close();
    rmSync(dir, { recursive: true, force: true });
  }
  assert.ok(!execFileSync('ip', ['netns', 'list']).toString().includes(`canopy-${workerName}-`), 'no namespaces left');
  assert.deepEqual(detectCgroups().children(`canopy/${workerName}`), [], 'no cgroups left');
});
