// /metrics and /api/health closed by configuration (SPEC §10: "may stay open where configured"), on
// root, a cluster and a worker in one process, over real HTTP: by default both answer anyone; with a
// metrics token /metrics answers only that token, and with health closed too, so does /api/health.
// The rest of each API keeps its own authentication (a metrics token opens nothing else). The daemons'
// command lines refuse a token too short to be secret and a closed health without a token.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { InProcessStack, poll } from '../support/in-process-stack.ts';
import { startWorkerApi } from '../../orchestrator/worker/api.ts';
import { REPO } from '../../harness/e2e-harness.ts';

const TOKEN = 'scrape-token-0123456789';

async function status(url: string, token?: string): Promise<number> {
  return (await fetch(url, token ? { headers: { authorization: `Bearer ${token}` } } : {})).status;
}

test('metrics and health: open by default, closed on every tier by a metrics token', { timeout: 90_000 }, async () => {
  const open = new InProcessStack('canopy-metrics-open-');
  const closed = new InProcessStack('canopy-metrics-closed-');
  const apis: Array<{ close(): Promise<unknown> }> = [];
  try {
    // Default: open, as before (Prometheus and probes need nothing).
    const r0 = await open.startRoot();
    const c0 = await open.startCluster('mopen');
    await poll('registered with root', async () => c0.rootToken);
    const w0 = await open.startWorker(`wmo${process.pid % 100000}`);
    const wa0 = await startWorkerApi(w0, { host: '127.0.0.1', port: 0, token: 'worker-api-token-1' });
    apis.push(wa0);
    const workerUrl0 = `http://127.0.0.1:${(wa0.server.address() as { port: number }).port}`;
    for (const base of [r0.url, open.apiUrl, workerUrl0]) {
      assert.equal(await status(`${base}/metrics`), 200, `${base}/metrics open by default`);
      assert.equal(await status(`${base}/api/health`), 200, `${base}/api/health open by default`);
    }
    assert.deepEqual(await (await fetch(`${r0.url}/api/health`)).json(), { ok: true }, 'root\'s health is a bare liveness answer');

    // Closed: metrics and health answer only the token, on all three tiers.
    const access = { token: TOKEN, closeHealth: true };
    const r1 = await closed.startRoot({ metricsAccess: access });
    const c1 = await closed.startCluster('mclosed', { metricsAccess: access });
    await poll('registered with root', async () => c1.rootToken);
    const w1 = await closed.startWorker(`wmc${process.pid % 100000}`);
    const wa1 = await startWorkerApi(w1, { host: '127.0.0.1', port: 0, token: 'worker-api-token-2', metricsAccess: access });
    apis.push(wa1);
    const workerUrl1 = `http://127.0.0.1:${(wa1.server.address() as { port: number }).port}`;
    for (const base of [r1.url, closed.apiUrl, workerUrl1]) {
      for (const path of ['/metrics', '/api/health']) {
        assert.equal(await status(`${base}${path}`), 401, `${base}${path} without a token`);
        assert.equal(await status(`${base}${path}`, 'wrong-token-0123456789'), 401, `${base}${path} with a wrong token`);
        assert.equal(await status(`${base}${path}`, TOKEN), 200, `${base}${path} with the token`);
      }
    }
    const text = await (await fetch(`${r1.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
    assert.match(text, /^canopy_root_clusters\{state="active"\} 1$/m, 'the token reads the real metrics');
    // The metrics token is no key to anything else: each API keeps its own callers.
    assert.equal(await status(`${r1.url}/api/v1/clusters`, TOKEN), 401);
    assert.equal(await status(`${closed.apiUrl}/api/status`, TOKEN), 401);
    assert.equal(await status(`${workerUrl1}/api/status`, TOKEN), 401);
    assert.equal(await status(`${workerUrl1}/api/status`, 'worker-api-token-2'), 200);
    // And the control links are untouched: the cluster reports, root counts it active.
    const admin = await closed.adminHeaders();
    await poll('worker active at root', async () => {
      const list = await (await fetch(`${r1.url}/api/v1/clusters/active`, { headers: admin })).json() as Array<{ aggregate: { workers_active: number } | null }>;
      return (list[0]?.aggregate?.workers_active ?? 0) === 1;
    });
  } finally {
    for (const a of apis) await a.close().catch(() => {});
    await open.close();
    await closed.close();
  }
});

test('metrics token on the command line: too short or health closed without one is a clear error', { timeout: 60_000 }, () => {
  const canopy = (args: string[], env: Record<string, string> = {}) =>
    spawnSync(process.execPath, [join(REPO, 'bin', 'canopy.js'), ...args], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, CANOPY_FROM_SOURCE: '1', CANOPY_METRICS_TOKEN: '', ...env } });
  const short = canopy(['root', '--port', '0', '--data', '/nonexistent-canopy-dir', '--metrics-token', 'short']);
  assert.notEqual(short.status, 0);
  assert.match(short.stderr, /--metrics-token \(CANOPY_METRICS_TOKEN\) must be at least 16 characters/);
  const health = canopy(['root', '--port', '0', '--data', '/nonexistent-canopy-dir'], { CANOPY_CLOSE_HEALTH: '1' });
  assert.notEqual(health.status, 0);
  assert.match(health.stderr, /--close-health needs --metrics-token/);
});
