// An instance root could not place is placed as soon as room appears, through the real chain: root,
// one cluster (in-process, periodic reports off in effect) and real workers running `sleep` processes. The
// deployment is full, the extra instance waits with its reason; a worker too small for it joins
// (root retries, fails the same way, and the history stays as it was); undeploying one instance then
// lets the waiting one run, with no cluster restart or re-registration. Without the cluster's early
// report on a worker's new room, root's first retry can come before the worker has stopped #0, and
// nothing retries again before the periodic report (here: 10 min) or the backoff.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { InProcessStack, poll } from '../support/in-process-stack.ts';
import { NodeEngine } from '../../orchestrator/worker/node-engine.ts';

interface Instance {
  instance_n: number;
  state: string;
  reason: string;
  retries: number;
  next_retry: string | null;
  history: Array<{ state: string; reason: string }>;
}

test('a full deployment: the extra instance waits NO_CLUSTER_FOUND with its reason and runs once another is undeployed', async () => {
  const st = new InProcessStack('canopy-retry-');
  let small: NodeEngine | undefined;
  try {
    const root = await st.startRoot();
    const r = root.url;
    // Periodic reports far apart: root hears of new room from the cluster's early reports (a worker's
    // free capacity grew, an instance changed state, a worker joined).
    const cluster = await st.startCluster('edge1', { reportIntervalMs: 600_000 });
    await poll('registered with root', async () => cluster.rootToken);
    await st.startWorker(`wretry${process.pid % 100000}`, { capacity: { vcpus: 1, memory_mb: 512 } });
    const auth = await st.adminHeaders();
    const activeWorkers = async (): Promise<number> => {
      const list = await (await fetch(`${r}/api/v1/clusters/active`, { headers: auth })).json() as Array<{ name: string; aggregate: { workers_active: number } | null }>;
      return list.find((x) => x.name === 'edge1')?.aggregate?.workers_active ?? 0;
    };
    await poll('cluster active at root with its worker', async () => (await activeWorkers()) === 1);

    const sla = {
      sla_version: 'v2.0', customerID: 'Admin',
      applications: [{
        applicationID: '', application_name: 'full', application_namespace: 'test', application_desc: 'more than fits',
        microservices: [{
          microserviceID: '', microservice_name: 'half', microservice_namespace: 'test', virtualization: 'process',
          cmd: ['sleep', '600'], memory: 64, vcpus: 0.5,
        }],
      }],
    };
    const created = await (await fetch(`${r}/api/v1/application`, { method: 'POST', headers: auth, body: JSON.stringify(sla) })).json() as { services: Array<{ microserviceID: string }> };
    const sid = created.services[0]!.microserviceID;
    const instances = async (): Promise<Instance[]> =>
      ((await (await fetch(`${r}/api/v1/service/${sid}`, { headers: auth })).json()) as { instances: Instance[] }).instances;
    const instance = async (n: number): Promise<Instance | undefined> => (await instances()).find((i) => i.instance_n === n);
    const deploy = async (): Promise<void> => {
      const res = await fetch(`${r}/api/v1/service/${sid}/instance`, { method: 'POST', headers: auth, body: '{}' });
      assert.equal(res.status, 202, `new instance: HTTP ${res.status}`);
    };

    // Two halves fill the worker's one vCPU; the third has no room.
    await deploy();
    await deploy();
    await poll('#0 and #1 RUNNING', async () => (await instances()).filter((i) => i.state === 'RUNNING').length === 2);
    await deploy();
    const waiting = await poll('#2 unplaced', async () => {
      const i = await instance(2);
      return i?.state === 'NO_CLUSTER_FOUND' ? i : undefined;
    });
    assert.match(waiting.reason, /no cluster qualifies: edge1: not enough free vCPUs \(0 < 0\.5\)/);
    assert.ok(waiting.next_retry, 'the status says when root retries it at the latest');
    assert.deepEqual(waiting.history.map((h) => h.state), ['REQUESTED', 'NO_CLUSTER_FOUND']);

    // A worker joins but is too small for a half: root retries (more active workers) and fails the same way.
    small = await NodeEngine.start({
      name: `wsmall${process.pid % 100000}`, clusterUrl: st.apiUrl, joinKey: 'wk', stateDir: join(st.dir, 'worker-small'),
      capacity: { vcpus: 0.25, memory_mb: 512 }, location: '48.1,11.6', log: st.log,
    });
    const retried = await poll('#2 retried after the small worker joined', async () => {
      const i = await instance(2);
      return i && i.retries >= 1 ? i : undefined;
    });
    assert.equal(retried.state, 'NO_CLUSTER_FOUND');
    assert.match(retried.reason, /not enough free vCPUs \(0\.25 < 0\.5\)/, 'the reason is the latest one');
    assert.deepEqual(retried.history.map((h) => h.state), ['REQUESTED', 'NO_CLUSTER_FOUND'], 'a retry that fails the same way adds no history');

    // Undeploying #0 frees half of the big worker: #2 runs there, nothing restarted.
    const un = await fetch(`${r}/api/v1/service/${sid}/instance/0`, { method: 'DELETE', headers: { authorization: auth.authorization! } });
    assert.equal(un.status, 200, await un.text());
    const placed = await poll('#2 RUNNING after #0 was undeployed', async () => {
      const i = await instance(2);
      return i?.state === 'RUNNING' ? i : undefined;
    });
    const scheduled = placed.history.find((h) => h.state === 'CLUSTER_SCHEDULED');
    assert.match(scheduled?.reason ?? '', /placed on cluster edge1 .*on a retry \((cluster edge1 reported more room|instance 0 of service .* was undeployed from cluster edge1)/);
    const states = placed.history.map((h) => h.state);
    console.log(`#2: ${placed.history.map((h) => `${h.state} (${h.reason})`).join('\n  → ')}`);
    assert.equal(states.filter((s) => s === 'REQUESTED').length, 1, `one REQUESTED: ${states.join(' → ')}`);
    for (let k = 1; k < states.length; k++) assert.notEqual(states[k], states[k - 1], `no repeated entry: ${states.join(' → ')}`);
    assert.equal(placed.next_retry, null, 'placed: nothing left to retry');
    assert.equal((await instance(1))?.state, 'RUNNING');

    const metrics = await (await fetch(`${r}/metrics`)).text();
    assert.match(metrics, /canopy_root_retry_placements_total [1-9]/);
    assert.match(metrics, /canopy_root_retry_passes_total\{trigger="(cluster_room|instance_left)"\} [1-9]/);
  } finally {
    await small?.close({ undeploy: true }).catch(() => {});
    await st.close({ undeploy: true });
  }
});
