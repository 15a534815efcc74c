// No open side doors (SPEC §10), through the real chain in one process (root, a cluster with its API
// and broker, a worker running a real process): the worker's local API and the cluster's status answer
// only authenticated callers (metrics and health stay open); a user reads an instance's logs through
// root, including lines written after the first read, while another user gets 404 for them and a
// caller without a token 401.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InProcessStack, poll } from '../support/in-process-stack.ts';
import { startWorkerApi } from '../../orchestrator/worker/api.ts';

test('side doors: worker and cluster APIs refuse unauthenticated calls; logs through root for their owner only', { timeout: 90_000 }, async () => {
  const st = new InProcessStack('canopy-doors-');
  try {
    const root = await st.startRoot();
    const r = root.url;
    const cluster = await st.startCluster('doors');
    await poll('registered with root', async () => cluster.rootToken);
    const engine = await st.startWorker(`wdoors${process.pid % 100000}`);
    const admin = await st.adminHeaders();
    await poll('worker active at root', async () => {
      const list = await (await fetch(`${r}/api/v1/clusters/active`, { headers: admin })).json() as Array<{ aggregate: { workers_active: number } | null }>;
      return (list[0]?.aggregate?.workers_active ?? 0) === 1;
    });

    // Two users: alice deploys a service that writes a line every 200 ms; bob may not read it.
    for (const u of ['alice', 'bob']) {
      const res = await fetch(`${r}/api/v1/users`, { method: 'POST', headers: admin, body: JSON.stringify({ username: u, password: `${u}-password-9` }) });
      assert.equal(res.status, 201, await res.text());
    }
    const login = async (u: string): Promise<Record<string, string>> => {
      const a = await (await fetch(`${r}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: u, password: `${u}-password-9` }) })).json() as { token: string };
      return { authorization: `Bearer ${a.token}`, 'content-type': 'application/json' };
    };
    const alice = await login('alice');
    const bob = await login('bob');
    const sla = {
      sla_version: 'v2.0', customerID: 'alice',
      applications: [{
        applicationID: '', application_name: 'talk', application_namespace: 'test', application_desc: 'writes lines',
        microservices: [{
          microserviceID: '', microservice_name: 'ticker', microservice_namespace: 'test', virtualization: 'process',
          cmd: ['sh', '-c', 'i=0; echo secret-of-alice >&2; while true; do i=$((i+1)); echo tick-$i; sleep 0.2; done'], memory: 32, vcpus: 0.1,
        }],
      }],
    };
    const created = await (await fetch(`${r}/api/v1/application`, { method: 'POST', headers: alice, body: JSON.stringify(sla) })).json() as { services: Array<{ microserviceID: string }> };
    const sid = created.services[0]!.microserviceID;
    assert.equal((await fetch(`${r}/api/v1/service/${sid}/instance`, { method: 'POST', headers: alice, body: '{}' })).status, 202);
    await poll('ticker RUNNING', async () => {
      const s = await (await fetch(`${r}/api/v1/service/${sid}`, { headers: alice })).json() as { instances: Array<{ state: string }> };
      return s.instances[0]?.state === 'RUNNING';
    });

    // Alice reads her instance's logs through root, and new lines keep coming (a follow).
    const logs = (h: Record<string, string> | undefined, stream = 'stdout') => fetch(`${r}/api/v1/service/${sid}/instance/0/logs?stream=${stream}`, { headers: h ?? {} });
    const first = await poll('a tick in the logs', async () => {
      const res = await logs(alice);
      const text = await res.text();
      return res.status === 200 && /tick-\d+/.test(text) ? text : undefined;
    });
    const lastTick = (t: string): number => Math.max(...[...t.matchAll(/tick-(\d+)/g)].map((m) => Number(m[1])));
    await poll('newer lines on a later read', async () => lastTick(await (await logs(alice)).text()) > lastTick(first));
    const err = await logs(alice, 'stderr');
    assert.equal(err.status, 200);
    assert.match(await err.text(), /secret-of-alice/);

    // Bob cannot read them (as if the service did not exist); nobody without a token can.
    const asBob = await logs(bob, 'stderr');
    assert.equal(asBob.status, 404);
    assert.doesNotMatch(await asBob.text(), /secret-of-alice/);
    assert.equal((await logs(undefined)).status, 401);
    assert.equal((await fetch(`${r}/api/v1/service/${sid}/instance/7/logs`, { headers: alice })).status, 404, 'no such instance');
    assert.equal((await fetch(`${r}/api/v1/service/${sid}/instance/0/logs?stream=bogus`, { headers: alice })).status, 400);

    // The cluster's status: root's cluster token only; its metrics and health stay open.
    const c = st.apiUrl;
    assert.equal((await fetch(`${c}/api/status`)).status, 401);
    assert.equal((await fetch(`${c}/api/status`, { headers: { authorization: 'Bearer wk' } })).status, 401, 'not with the worker join key');
    assert.equal((await fetch(`${c}/api/status`, { headers: { authorization: `Bearer ${cluster.rootToken}` } })).status, 200);
    assert.equal((await fetch(`${c}/api/instances/${sid}/0/logs`)).status, 401, "the cluster's log relay is root's only");
    assert.equal((await fetch(`${c}/metrics`)).status, 200);
    assert.equal((await fetch(`${c}/api/health`)).status, 200);
    // The dashboard's cluster view still works: root asks with its token.
    const dash = await fetch(`${r}/api/v1/dashboard/clusters/${(await (await fetch(`${r}/api/v1/clusters`, { headers: admin })).json() as Array<{ cluster_id: string }>)[0]!.cluster_id}`, { headers: admin });
    assert.equal(dash.status, 200, await dash.text());

    // The worker's local API: its token only.
    const wapi = await startWorkerApi(engine, { host: '127.0.0.1', port: 0, token: 'the-worker-api-token' });
    try {
      const w = `http://127.0.0.1:${(wapi.server.address() as { port: number }).port}`;
      for (const path of ['/api/status', `/api/instances/${sid}/0/logs?stream=stderr`]) {
        const res = await fetch(`${w}${path}`);
        assert.equal(res.status, 401, path);
        assert.doesNotMatch(await res.text(), /secret-of-alice/);
        assert.equal((await fetch(`${w}${path}`, { headers: { authorization: 'Bearer the-worker-api-token' } })).status, 200, `${path} with the token`);
      }
      assert.equal((await fetch(`${w}/metrics`)).status, 200);
      assert.equal((await fetch(`${w}/api/health`)).status, 200);
    } finally {
      await wapi.close();
    }
  } finally {
    await st.close({ undeploy: true });
  }
});
