// The worker's local API (node:http, no framework): the token guards status, logs and image import;
// metrics and health stay open; bad requests get a reason, unknown routes a 404.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startWorkerApi } from '../../../orchestrator/worker/api.ts';
import type { NodeEngine } from '../../../orchestrator/worker/node-engine.ts';

const instance = {
  order: { service_id: 'svc', instance_n: 0 }, state: 'RUNNING', reason: 'started', pid: 42, restartCount: 0,
  attachment: { ns_ip: '10.18.0.2' }, lifecycle: { history: [] },
  logs: (stream: string, bytes: number) => `${stream} of ${bytes}\n`,
};
const engine = {
  workerId: 'w1', connected: true, identity: { subnet_v4: '10.18.0.0/24', subnet_v6: null }, virtualizations: ['process'],
  heartbeatPayload: () => ({ cpu: { cores: 2 } }), instances: new Map([['svc-0', instance]]), counters: { deploys: 3 },
  runtimes: new Map(), o: { stateDir: '/nonexistent' }, net: {}, log: { warn: () => {} },
} as unknown as NodeEngine;

test('worker API: token, routes and reasons', async () => {
  const api = await startWorkerApi(engine, { host: '127.0.0.1', port: 0, token: 'the-token-of-the-worker' });
  const base = `http://127.0.0.1:${(api.server.address() as { port: number }).port}`;
  const auth = { authorization: 'Bearer the-token-of-the-worker' };
  try {
    for (const p of ['/api/status', '/api/instances/svc/0/logs']) {
      const r = await fetch(`${base}${p}`);
      assert.equal(r.status, 401, p);
      assert.match(((await r.json()) as { error: string }).error, /missing or wrong API token/);
      assert.equal((await fetch(`${base}${p}`, { headers: { authorization: 'Bearer the-token-of-the-workeR' } })).status, 401);
    }
    assert.equal((await fetch(`${base}/api/images/import`, { method: 'POST', body: 'x' })).status, 401);
    assert.deepEqual(await (await fetch(`${base}/api/health`)).json(), { ok: true });

    const status = await fetch(`${base}/api/status`, { headers: auth });
    assert.equal(status.status, 200);
    assert.match(status.headers.get('content-type')!, /application\/json/);
    const s = (await status.json()) as { worker_id: string; instances: Array<{ service_id: string; state: string; ns_ip: string }> };
    assert.equal(s.worker_id, 'w1');
    assert.deepEqual(s.instances.map((i) => `${i.service_id} ${i.state} ${i.ns_ip}`), ['svc RUNNING 10.18.0.2']);

    assert.equal(await (await fetch(`${base}/api/instances/svc/0/logs?stream=stderr&bytes=10`, { headers: auth })).text(), 'stderr of 10\n');
    assert.equal(await (await fetch(`${base}/api/instances/svc/0/logs`, { headers: auth })).text(), 'stdout of 65536\n');
    assert.equal((await fetch(`${base}/api/instances/svc/0/logs?stream=bogus`, { headers: auth })).status, 400);
    assert.equal((await fetch(`${base}/api/instances/svc/-1/logs`, { headers: auth })).status, 400);
    assert.equal((await fetch(`${base}/api/instances/nope/0/logs`, { headers: auth })).status, 404);
    assert.equal((await fetch(`${base}/api/instances/%E0%A4%A/0/logs`, { headers: auth })).status, 400);

    const m = await fetch(`${base}/metrics`);
    assert.equal(m.status, 200);
    const text = await m.text();
    assert.match(text, /canopy_worker_instances\{state="RUNNING"\} 1/);
    assert.match(text, /canopy_worker_deploys_total 3/);
    assert.match(text, /canopy_worker_memory_bytes\{kind="rss"\} \d+/);

    // No container runtime: an import is refused with the reason (after the token check).
    const imp = await fetch(`${base}/api/images/import`, { method: 'POST', headers: { ...auth, 'content-type': 'application/x-tar' }, body: 'x' });
    assert.equal(imp.status, 409);
    assert.match(((await imp.json()) as { error: string }).error, /no container runtime/);

    assert.equal((await fetch(`${base}/api/nothing`, { headers: auth })).status, 404);
    assert.equal((await fetch(`${base}/api/status`, { method: 'DELETE', headers: auth })).status, 404);
    assert.equal((await fetch(`${base}/metrics`, { method: 'HEAD' })).status, 200);
  } finally {
    await api.close();
  }
});
