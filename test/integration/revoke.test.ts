// Revoking a worker (SPEC §10) through the real chain in one process: root, a cluster with its API and
// embedded broker, two workers running real processes. An admin's `POST /api/v1/workers/:w/revoke`
// closes the worker's MQTT session at once, its reconnect and its re-registration with the join key
// are refused, the cluster forgets it, its instance is re-placed on the other worker, and the tunnel
// keys it holds (the cluster's and root's overlay key) are replaced on the other worker.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { InProcessStack, poll } from '../support/in-process-stack.ts';
import { NodeEngine } from '../../orchestrator/worker/node-engine.ts';
import { registerWithCluster } from '../../orchestrator/worker/registration.ts';
import { loadOrCreateTunnelKey } from '../../orchestrator/protocol/tunnel-identity.ts';

test('a revoked worker is cut off at once and its instance re-placed', { timeout: 90_000 }, async () => {
  const st = new InProcessStack('canopy-revoke-');
  let other: NodeEngine | undefined;
  try {
    const root = await st.startRoot();
    const r = root.url;
    const cluster = await st.startCluster('rev');
    await poll('registered with root', async () => cluster.rootToken);
    const a = await st.startWorker(`wra${process.pid % 100000}`);
    other = await NodeEngine.start({ name: `wrb${process.pid % 100000}`, clusterUrl: st.apiUrl, joinKey: 'wk', stateDir: join(st.dir, 'worker-b'),
      capacity: { vcpus: 2, memory_mb: 1024 }, location: '48.1,11.6', log: st.log });
    const admin = await st.adminHeaders();
    await poll('both workers active at root', async () => {
      const list = await (await fetch(`${r}/api/v1/clusters/active`, { headers: admin })).json() as Array<{ aggregate: { workers_active: number } | null }>;
      return (list[0]?.aggregate?.workers_active ?? 0) === 2;
    });
    const sla = {
      sla_version: 'v2.0', customerID: 'Admin',
      applications: [{ applicationID: '', application_name: 'rev', application_namespace: 'test', application_desc: '',
        microservices: [{ microserviceID: '', microservice_name: 'sleeper', microservice_namespace: 'test', virtualization: 'process', cmd: ['sleep', '600'], memory: 32, vcpus: 0.1 }] }],
    };
    const created = await (await fetch(`${r}/api/v1/application`, { method: 'POST', headers: admin, body: JSON.stringify(sla) })).json() as { services: Array<{ microserviceID: string }> };
    const sid = created.services[0]!.microserviceID;
    assert.equal((await fetch(`${r}/api/v1/service/${sid}/instance`, { method: 'POST', headers: admin, body: '{}' })).status, 202);
    const instance = async (): Promise<{ state: string; worker_id: string | null }> =>
      ((await (await fetch(`${r}/api/v1/service/${sid}`, { headers: admin })).json()) as { instances: Array<{ state: string; worker_id: string | null }> }).instances[0]!;
    const first = await poll('RUNNING', async () => { const i = await instance(); return i.state === 'RUNNING' ? i : undefined; });
    const victim = first.worker_id === a.workerId ? a : other;
    const survivor = victim === a ? other : a;

    // Only admins revoke; an unknown worker is 404.
    await fetch(`${r}/api/v1/users`, { method: 'POST', headers: admin, body: JSON.stringify({ username: 'eve', password: 'eve-password-9' }) });
    const eve = (await (await fetch(`${r}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'eve', password: 'eve-password-9' }) })).json() as { token: string }).token;
    assert.equal((await fetch(`${r}/api/v1/workers/${victim.workerId}/revoke`, { method: 'POST', headers: { authorization: `Bearer ${eve}`, 'content-type': 'application/json' }, body: '{}' })).status, 403);
    assert.equal((await fetch(`${r}/api/v1/workers/nobody/revoke`, { method: 'POST', headers: admin, body: '{}' })).status, 404);

    assert.equal(victim.connected, true);
    const oldCluster = cluster.tunnelKey;
    const oldOverlay = survivor.identity.overlay_tunnel;
    assert.ok(oldOverlay, 'root handed out an overlay key');
    // (Root rotates its overlay key before it asks the cluster, so the 404 call above rotated it
    // already, and the workers may or may not have heard of that one yet: compare ids, not id + 1.)
    const res = await fetch(`${r}/api/v1/workers/${victim.workerId}/revoke`, { method: 'POST', headers: admin, body: '{}' });
    assert.equal(res.status, 200, await res.text());
    // Its session is closed by the time the call returns (within the second the issue asks for).
    await poll('session closed', async () => !victim.connected, 1000);
    assert.equal(cluster.registry.workers.has(victim.workerId), false, 'the cluster forgot it');
    assert.equal(cluster.creds.has(victim.workerId), false, 'its MQTT credentials are gone');
    // It keeps trying (reconnect, then registering again with the join key): both refused.
    await new Promise((res2) => setTimeout(res2, 3000));
    assert.equal(victim.connected, false, 'its reconnects are refused');
    await assert.rejects(registerWithCluster(st.apiUrl, 'wk', victim.workerId), /HTTP 403.*revoked/);
    // Its instance runs again on the other worker, as after a worker death.
    await poll('re-placed on the other worker', async () => {
      const i = await instance();
      return i.state === 'RUNNING' && i.worker_id === survivor.workerId;
    }, 30_000);
    assert.equal(survivor.connected, true, 'the other worker is untouched');
    // The victim holds both tunnel keys: both are replaced, stored, and the other worker switched to
    // them (revoke-tunnel.test.ts shows datagrams sealed with the old ones dropped on a real tunnel).
    assert.equal(cluster.tunnelKey.key_id, oldCluster.key_id + 1);
    assert.deepEqual(loadOrCreateTunnelKey(cluster.o.stateDir), cluster.tunnelKey, 'a restarted cluster keeps the new key');
    await poll('the other worker holds the new keys', async () =>
      survivor.identity.tunnel?.key === cluster.tunnelKey.key && (survivor.identity.overlay_tunnel?.key_id ?? 0) > oldOverlay.key_id, 5000);
    assert.notEqual(survivor.identity.overlay_tunnel?.key, oldOverlay.key);
    assert.notEqual(victim.identity.overlay_tunnel?.key, survivor.identity.overlay_tunnel?.key, 'the revoked worker never hears of the new one');
    assert.notEqual(victim.identity.tunnel?.key, cluster.tunnelKey.key);
    await victim.close({ undeploy: true });
  } finally {
    await other?.close({ undeploy: true }).catch(() => {});
    await st.close({ undeploy: true });
  }
});

test('a revoked cluster: its token and its name are refused, and it stays inactive', { timeout: 60_000 }, async () => {
  const st = new InProcessStack('canopy-revoke-c-');
  try {
    const root = await st.startRoot();
    const r = root.url;
    const cluster = await st.startCluster('revc');
    await poll('registered with root', async () => cluster.rootToken);
    const admin = await st.adminHeaders();
    const active = async (): Promise<string[]> => ((await (await fetch(`${r}/api/v1/clusters/active`, { headers: admin })).json()) as Array<{ name: string }>).map((c) => c.name);
    await poll('active', async () => (await active()).includes('revc'));
    const reg = cluster.root!.registration!;
    const res = await fetch(`${r}/api/v1/clusters/revc/revoke`, { method: 'POST', headers: admin, body: '{}' });
    assert.equal(res.status, 200, await res.text());
    assert.deepEqual(await active(), [], 'inactive at once: nothing is placed there');
    // Its token is refused, and the join key no longer lets its name back in.
    const report = await fetch(`${r}/api/internal/clusters/${reg.cluster_id}/report`, {
      method: 'POST', headers: { authorization: `Bearer ${reg.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ free: { vcpus: 1, memory_mb: 1 }, workers_active: 0 }),
    });
    assert.equal(report.status, 401);
    const again = await fetch(`${r}/api/internal/clusters/register`, {
      method: 'POST', headers: { authorization: 'Bearer ck', 'content-type': 'application/json' }, body: JSON.stringify({ name: 'revc', location: '', api_url: st.apiUrl }),
    });
    assert.equal(again.status, 403);
    // The cluster keeps reporting (every second here) and re-registering: still inactive after that.
    await new Promise((res2) => setTimeout(res2, 3000));
    assert.deepEqual(await active(), []);
  } finally {
    await st.close();
  }
});
