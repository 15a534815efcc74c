// Oakestra's experiment scripts against a real deployment on emulated hosts: a Python script written
// the way the ATC'23 artifacts' run-test2.py and cleanup.py are (requests, json.loads(resp.json()),
// Oakestra's routes and fields) registers a client and an HTTP server with rr_ip, scales the server to
// 2 through POST …/instance, waits for every instance in instance_list to be RUNNING, calls the client
// through http://<publicip>:50002/ from outside the overlay, has it make 100 requests to the rr_ip,
// undeploys one server instance by instance_number, and deletes every application found through
// GET /api/services.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { labFor, labSkipReason } from '../../lab/lab.ts';
import { unavailable } from '../support/facility.ts';
import { ADMIN_PASSWORD, Deployment, REPO } from '../../harness/e2e-harness.ts';

function requestsMissing(): string | null {
  try {
    execFileSync('python3', ['-c', 'import requests'], { stdio: 'ignore' });
    return null;
  } catch {
    return "python3 with requests (Debian python3-requests) is needed to run Oakestra's scripts";
  }
}

test("Oakestra's scripts: register, scale, wait for RUNNING, call through publicip and rr_ip, undeploy, clean up",
  { skip: unavailable(labSkipReason() ?? requestsMissing()), timeout: 240_000 }, async (t) => {
    const lab = await labFor(t, { hosts: ['ctl', 'w1', 'w2'] });
    const d = new Deployment(lab, { workers: ['w1', 'w2'] });
    t.after(() => d.stop());
    await d.start();

    const script = join(REPO, 'test/integration/oakestra/run-client-server.py');
    // Root serves https with the deployment's CA (TLS is on by default): the script is Oakestra's as it is,
    // given the https URL, with requests trusting that CA through its usual environment variable.
    const r = await d.ctl.exec(['env', `REQUESTS_CA_BUNDLE=${d.certs.ca}`, 'python3', script, `${d.scheme}://127.0.0.1:10000`, ADMIN_PASSWORD], { timeoutMs: 200_000 });
    t.diagnostic(r.stdout.trim());
    if (r.code !== 0) {
      for (const w of ['w1', 'w2']) t.diagnostic(`${w} (${lab.host(w).ip}) nft: ${(await lab.host(w).exec(['nft', 'list', 'table', 'inet', 'canopy'])).stdout}`);
    }
    assert.equal(r.code, 0, `script failed: ${r.stdout}${r.stderr}`);
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1) as string) as {
      clientip: string; ok: number; servers: string[]; undeployed: number; left: number[]; deleted: number; remaining: unknown[];
    };
    const workerIps = ['w1', 'w2'].map((w) => lab.host(w).ip);
    assert.ok(workerIps.includes(summary.clientip), `publicip ${summary.clientip} is a worker's address (${workerIps.join(', ')})`);
    assert.equal(summary.ok, 100, 'all 100 requests to the rr_ip answered 200');
    assert.equal(summary.servers.length, 2, `round robin reached both server instances: ${summary.servers.join(', ')}`);
    assert.equal(summary.left.length, 1, 'one server instance left in instance_list');
    assert.ok(!summary.left.includes(summary.undeployed));
    assert.equal(summary.deleted >= 1, true);
    assert.deepEqual(summary.remaining, []);
    // Nothing of the undeployed instances stays on the workers.
    for (const w of ['w1', 'w2']) {
      const left = await (async () => {
        for (let i = 0; i < 50; i++) {
          const l = await d.leftovers(w);
          if (l.length === 0) return l;
          await new Promise((res) => setTimeout(res, 200));
        }
        return d.leftovers(w);
      })();
      assert.deepEqual(left, [], `${w} is clean after the cleanup`);
    }
  });
