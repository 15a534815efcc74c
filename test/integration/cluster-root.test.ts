// The cluster against the real root: registration with root's join key, reports (root sees the
// cluster active with its aggregate), a descriptor from test/fixtures/sla deployed through root's
// REST API runs on a real worker and its states reach root with reasons; removal undeploys it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InProcessStack, poll } from '../support/in-process-stack.ts';
import { SLA_FIXTURES as FIXTURES } from '../../harness/fixtures.ts';


test('cluster and worker under the real root: register, report, deploy a fixture, undeploy', async () => {
  const st = new InProcessStack('canopy-cr-');
  try {
    const root = await st.startRoot();
    const r = root.url;
    const cluster = await st.startCluster('edge1');
    await poll('registered with the real root', async () => cluster.rootToken);

    const engine = await st.startWorker(`wroot${process.pid % 100000}`);
    assert.match(engine.identity.subnet_v4 ?? '', /^10\.18\.\d+\.0\/24$/, 'subnet allocated by root');

    const auth = await st.adminHeaders();

    const active = await poll('cluster active at root with a worker', async () => {
      const list = await (await fetch(`${r}/api/v1/clusters/active`, { headers: auth })).json() as Array<Record<string, unknown>>;
      const c = list.find((x) => x.name === 'edge1');
      return c && JSON.stringify(c).includes('"process"') ? c : undefined;
    });
    assert.ok(active);

    const sla = readFileSync(join(FIXTURES, 'process-iperf.json'), 'utf8');
    const created = await (await fetch(`${r}/api/v1/application`, { method: 'POST', headers: auth, body: sla })).json() as { services: Array<{ microserviceID: string; microservice_name: string }> };
    const server = created.services.find((s) => s.microservice_name === 'server')!;
    const inst = await fetch(`${r}/api/v1/service/${server.microserviceID}/instance`, { method: 'POST', headers: auth, body: '{}' });
    assert.ok(inst.ok, `instance request: HTTP ${inst.status}`);

    const running = await poll('RUNNING at root', async () => {
      const s = await (await fetch(`${r}/api/v1/service/${server.microserviceID}`, { headers: auth })).json() as { instances: Array<{ state: string; worker_id: string; history: Array<{ state: string; reason: string }> }> };
      return s.instances[0]?.state === 'RUNNING' ? s.instances[0] : undefined;
    });
    assert.equal(running.worker_id, engine.workerId);
    assert.ok(running.history.some((h) => h.state === 'NODE_SCHEDULED'), JSON.stringify(running.history));
    assert.equal(engine.instances.size, 1);

    const del = await fetch(`${r}/api/v1/service/${server.microserviceID}/instance/0`, { method: 'DELETE', headers: { authorization: auth.authorization } });
    assert.ok(del.ok, `delete: HTTP ${del.status}`);
    await poll('undeployed on the worker', async () => engine!.instances.size === 0);
  } finally {
    await st.close({ undeploy: true });
  }
});
