// The user CLI against a real root + cluster + worker (a one-worker `canopy up` deployment): deploy
// --wait follows the instance to RUNNING with reasons, status shows it, logs returns its output,
// bad input and impossible requests fail with the server's reasons, undeploy removes it from the
// worker.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { needRoot, unavailable } from '../support/facility.ts';
import { workerInstances } from '../../orchestrator/client/worker-api.ts';
import { down, up } from '../../orchestrator/deployment/local.ts';
import { registryGuardArgs } from '../../harness/registry-guard.ts';
import { writeDockerArchive } from '../../harness/oci-registry.ts';
import { readState, type DeploymentState } from '../../orchestrator/client/deployment-state.ts';

const CANOPY = join(import.meta.dirname, '../../bin/canopy.js');
const skip = unavailable(needRoot());
const tmp = mkdtempSync(join(tmpdir(), 'canopy-cli-test-'));
const dir = join(tmp, 'state');
const env = { ...process.env, CANOPY_UP_DIR: dir, XDG_CACHE_HOME: join(tmp, 'cache'), CANOPY_PASSWORD: '', CANOPY_ROOT: '' };
let state: DeploymentState | undefined;

function sla(app: string, ms: Record<string, unknown>): string {
  const f = join(tmp, `${app}-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(f, JSON.stringify({
    sla_version: 'v2.0', customerID: 'Admin',
    applications: [{
      applicationID: '', application_name: app, application_namespace: 'test', application_desc: 'cli test',
      microservices: [{ microserviceID: '', microservice_name: 'hello', microservice_namespace: 'test', virtualization: 'process', memory: 16, vcpus: 0.1, ...ms }],
    }],
  }));
  return f;
}

function canopy(args: string[], extraEnv: Record<string, string> = {}): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CANOPY, ...args], { env: { ...env, ...extraEnv }, encoding: 'utf8', timeout: 90_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The cgroup directories an instance has on any controller (v1 and v2 layouts). */
function cgroupsOf(worker: string, key: string): string[] {
  const root = '/sys/fs/cgroup';
  const bases = [root, ...readdirSync(root).map((c) => join(root, c))];
  return bases.map((b) => join(b, 'canopy', worker, key)).filter((d) => existsSync(d));
}

before(async () => {
  if (skip) return;
  const base = 25000 + (process.pid % 4000) * 2;
  state = await up({
    dir, workers: 1, name: `c${(process.pid % 46656).toString(36)}`, subnet: `198.19.${160 + (process.pid % 40)}.0`,
    rootPort: base, clusterPort: base + 1, mqttPort: base + 2, workerApiPort: base + 3, workerArgs: registryGuardArgs(),
  });
});

after(() => {
  const s = state ?? readState(dir);
  if (s) down(s);
  rmSync(tmp, { recursive: true, force: true });
});

test('deploy --wait, status, logs, undeploy', { skip, timeout: 120_000 }, async () => {
  const file = sla('clitest', { cmd: ['sh', '-c', 'echo hello-$((6*7)); echo complaint >&2; exec sleep 600'] });
  const d = canopy(['deploy', file, '--wait', '--timeout', '60']);
  assert.equal(d.code, 0, `${d.stdout}${d.stderr}`);
  // Non-TTY: one plain line per transition, with its reason, then the summary.
  assert.match(d.stdout, /clitest\.test\.hello\.test#0\s+REQUESTED\s+deployed with the descriptor by admin/);
  assert.match(d.stdout, /clitest\.test\.hello\.test#0\s+RUNNING\s+started, pid \d+/);
  assert.match(d.stdout, /all 1 instances up after [\d.]+ s: 1 running/);
  assert.ok(!d.stdout.includes('\u001b['), 'no terminal control codes off a TTY');

  const s = canopy(['status', 'hello']);
  assert.equal(s.code, 0, s.stderr);
  assert.match(s.stdout, new RegExp(`clitest\\.test\\.hello\\.test\\s+0\\s+RUNNING\\s+${state!.workers[0]!.name}\\s+${state!.clusterName}\\s+10\\.30\\.`));
  const all = canopy(['status']);
  assert.match(all.stdout, /cluster \S+ {2}active, 1 active workers/);

  const l = canopy(['logs', 'hello']);
  assert.equal(l.code, 0, l.stderr);
  assert.equal(l.stdout, 'hello-42\n');
  assert.equal(l.stderr, 'complaint\n');
  const l0 = canopy(['logs', 'clitest.test.hello.test', '0', '--stream', 'stdout']);
  assert.equal(l0.stdout, 'hello-42\n');
  const none = canopy(['logs', 'hello', '7']);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /has no instance 7/);

  const again = canopy(['deploy', file]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /HTTP 409/);

  const u = canopy(['undeploy', 'clitest', '--wait']);
  assert.equal(u.code, 0, `${u.stdout}${u.stderr}`);
  assert.match(u.stdout, /undeployed application clitest\.test \(1 services\)/);
  assert.match(u.stdout, /removed from every worker/);
  assert.deepEqual(await workerInstances(state!.workers[0]!), []);
  const gone = canopy(['status', 'clitest']);
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /no application or service "clitest"/);
});

test('logs --follow prints each new line once, in order', { skip, timeout: 120_000 }, async () => {
  const file = sla('ticker', { microservice_name: 'ticker', cmd: ['sh', '-c', 'i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.2; done'] });
  const d = canopy(['deploy', file, '--wait', '--timeout', '60']);
  assert.equal(d.code, 0, `${d.stdout}${d.stderr}`);
  const f = spawn(process.execPath, [CANOPY, 'logs', 'ticker', '0', '--follow', '--stream', 'stdout'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  f.stdout.on('data', (b: Buffer) => (out += b.toString()));
  await new Promise((r) => setTimeout(r, 6000));
  f.kill('SIGINT');
  await new Promise((r) => f.once('exit', r));
  const n = out.split('\n').filter(Boolean).map((l) => Number(/^tick-(\d+)$/.exec(l)?.[1] ?? NaN));
  assert.ok(n.length >= 10, `followed lines: ${out}`);
  assert.deepEqual(n, n.map((_, i) => n[0]! + i), 'consecutive, none twice, none missing');
  assert.equal(canopy(['undeploy', 'ticker']).code, 0);
});

test('bad descriptors, impossible requests and wrong credentials fail with the reason; a finished one-shot undeploys', { skip, timeout: 180_000 }, async (t) => {
  const bad = canopy(['deploy', sla('Bad_Name!', { cmd: ['true'] })]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /HTTP 422/);
  assert.match(bad.stderr, /\/applications\/0\/application_name: /);

  // No cluster could ever run these: deploy --wait fails at once with root's reason instead of
  // waiting out its --timeout (were it waiting, spawnSync's 90 s limit would kill it: no exit code).
  const t0 = Date.now();
  const big = canopy(['deploy', sla('toobig', { cmd: ['sleep', '600'], memory: 1_000_000 }), '--wait', '--timeout', '600']);
  // Issue #13 asks for "within 2 s"; tests assert no timings, so the figure is printed for the record.
  t.diagnostic(`deploy --wait of an SLA no cluster can run exited with ${big.code} after ${Date.now() - t0} ms`);
  assert.equal(big.code, 1, `${big.stdout}${big.stderr}`);
  assert.match(big.stderr, /toobig\.test\.hello\.test#0 NO_CLUSTER_FOUND: no cluster can ever run it: \S+: needs 1000000 MB of memory, its largest worker has \d+ MB/);
  // An architecture no worker has (workers now run containers too, so a container SLA would be placed
  // and pull from a registry outside the machine: never in a test).
  const boxed = canopy(['deploy', sla('boxed', { cmd: ['sleep', '600'], constraints: [{ type: 'arch', arch: ['s390x'] }] }), '--wait', '--timeout', '600']);
  assert.equal(boxed.code, 1, `${boxed.stdout}${boxed.stderr}`);
  assert.match(boxed.stderr, /boxed\.test\.hello\.test#0 NO_CLUSTER_FOUND: no cluster can ever run it: \S+: no worker of architecture s390x/);
  assert.doesNotMatch(boxed.stdout, /root retries it when room appears/, 'not told to wait for room');

  const failing = canopy(['deploy', sla('failing', { cmd: ['/nonexistent/program'] }), '--wait', '--timeout', '30']);
  assert.equal(failing.code, 1, `${failing.stdout}${failing.stderr}`);
  assert.match(failing.stderr, /failing\.test\.hello\.test#0 FAILED: could not start: command not found: \/nonexistent\/program/);

  const oneShot = canopy(['deploy', sla('oneshot', { cmd: ['true'], one_shot: true }), '--wait', '--timeout', '30']);
  assert.equal(oneShot.code, 0, `${oneShot.stdout}${oneShot.stderr}`);
  assert.match(oneShot.stdout, /COMPLETED\s+one-shot command exited with code 0/);
  assert.match(oneShot.stdout, /all 1 instances up after [\d.]+ s: 1 completed \(one-shot\)/);
  // Undeploying the finished one-shot removes it from its worker: no instance, directory or cgroup left.
  const w = state!.workers[0]!;
  const oneShotId = /service \S+ {2}id (\w+)/.exec(oneShot.stdout)![1]!;
  const key = `${oneShotId}-0`;
  assert.ok(existsSync(join(w.dataDir, 'instances', key)), 'the finished one-shot is still on its worker before undeploy');
  const u = canopy(['undeploy', 'oneshot', '--wait', '--timeout', '20']);
  assert.equal(u.code, 0, `${u.stdout}${u.stderr}`);
  assert.match(u.stdout, /removed from every worker/);
  assert.deepEqual((await workerInstances(w)).filter((i) => i.service_id === oneShotId), []);
  assert.ok(!existsSync(join(w.dataDir, 'instances', key)), 'its directory is gone');
  assert.deepEqual(cgroupsOf(w.name, key), [], 'its cgroups are gone');

  const missing = canopy(['deploy', join(tmp, 'nope.json')]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /nope\.json: ENOENT/);

  const wrong = canopy(['status'], { CANOPY_PASSWORD: 'not-the-password', XDG_CACHE_HOME: join(tmp, 'other-cache') });
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /HTTP 401: wrong username or password/);

  // Another root than the deployment's: its password is not sent there.
  const elsewhere = canopy(['status', '--root', 'http://127.0.0.1:1']);
  assert.equal(elsewhere.code, 1);
  assert.match(elsewhere.stderr, /no password for admin at http:\/\/127\.0\.0\.1:1: set CANOPY_PASSWORD/);
  const unreachable = canopy(['status', '--root', 'http://127.0.0.1:1'], { CANOPY_PASSWORD: 'whatever-it-is' });
  assert.equal(unreachable.code, 1);
  assert.match(unreachable.stderr, /root at http:\/\/127\.0\.0\.1:1 is unreachable/);
});

test('scale up and down, with --wait', { skip, timeout: 180_000 }, async () => {
  const d = canopy(['deploy', sla('scaled', { microservice_name: 'scaled', cmd: ['sleep', '600'] }), '--wait', '--timeout', '60']);
  assert.equal(d.code, 0, `${d.stdout}${d.stderr}`);
  const id = /service \S+ {2}id (\w+)/.exec(d.stdout)![1]!;
  const onWorker = async () => (await workerInstances(state!.workers[0]!)).filter((i) => i.service_id === id).map((i) => `${i.instance_n} ${i.state}`).sort();

  const up = canopy(['scale', 'scaled', '3', '--wait', '--timeout', '60']);
  assert.equal(up.code, 0, `${up.stdout}${up.stderr}`);
  assert.match(up.stdout, /scaled\.test\.scaled\.test: 1 → 3 instances: deployed 2 \(#1, #2\)/);
  assert.match(up.stdout, /scaled\.test\.scaled\.test#2\s+RUNNING/, 'progress of the new instances, as deploy --wait shows it');
  assert.match(up.stdout, /all 2 instances up after [\d.]+ s: 2 running/);
  assert.deepEqual(await onWorker(), ['0 RUNNING', '1 RUNNING', '2 RUNNING']);

  const down = canopy(['scale', 'scaled.test', '1', '--wait', '--timeout', '30']);
  assert.equal(down.code, 0, `${down.stdout}${down.stderr}`);
  assert.match(down.stdout, /3 → 1 instances: undeployed 2 \(#2, #1\)/);
  assert.match(down.stdout, /removed from every worker/);
  assert.deepEqual(await onWorker(), ['0 RUNNING']);

  const same = canopy(['scale', 'scaled', '1']);
  assert.equal(same.code, 0, same.stderr);
  assert.match(same.stdout, /1 → 1 instances: nothing to do/);
  const bad = canopy(['scale', 'scaled', 'two']);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /<n> must be a whole number ≥ 0, got two/);
  const unknown = canopy(['scale', 'nosuch', '1']);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /no service "nosuch"/);
  assert.equal(canopy(['undeploy', 'scaled', '--wait']).code, 0);
});

test('image import: an archive reaches the local deployment\'s workers with their own tokens; a bad one and an unknown worker fail with the reason', { skip, timeout: 120_000 }, async () => {
  const archive = join(tmp, 'airgap.tar');
  // A loopback name nothing serves: the instance below can only run from the import.
  writeDockerArchive(archive, ['127.0.0.1:1/airgap/cli:1'], { files: { 'www/index.html': 'air-gapped\n' } });
  const w = state!.workers[0]!.name;
  const ok = canopy(['image', 'import', archive]);
  assert.equal(ok.code, 0, `${ok.stdout}${ok.stderr}`);
  assert.match(ok.stdout, new RegExp(`${w}: imported 127\\.0\\.0\\.1:1/airgap/cli:1`));
  const d = canopy(['deploy', sla('airgap', { virtualization: 'container', code: '127.0.0.1:1/airgap/cli:1', cmd: ['cat', '/www/index.html'], one_shot: true }), '--wait', '--timeout', '60']);
  assert.equal(d.code, 0, `${d.stdout}${d.stderr}`);
  assert.equal(canopy(['undeploy', 'airgap', '--wait']).code, 0);

  const junk = join(tmp, 'junk.tar');
  writeFileSync(junk, 'not an archive\n');
  const bad = canopy(['image', 'import', junk]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /HTTP 422: not a tar archive/);
  const nobody = canopy(['image', 'import', archive, '--worker', 'no-such-worker']);
  assert.equal(nobody.code, 1);
  assert.match(nobody.stderr, /not a worker of the local deployment: no-such-worker/);
});
