// Images on a worker, through the real chain (root, cluster with its broker, worker with its embedded
// containerd) and a registry on loopback: a pull's progress (bytes done/total) reaches root's instance
// status and `canopy deploy --wait`, without a history entry per step (the registry sits behind a
// proxy that sends blobs slowly, so the pull lasts a few seconds and its progress can be seen); image
// archives reach a worker through `canopy image import` (its API, with its token) and its image folder
// at start, and run with no registry; what is not an image archive is a clear error and leaves nothing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { InProcessStack, ADMIN_PASSWORD, poll } from '../support/in-process-stack.ts';
import { startRegistry, pushBusybox, slowProxy, writeDockerArchive, writeOciArchive, type TestRegistry, type SlowProxy } from '../../harness/oci-registry.ts';
import { unavailable, needRoot, binaryMissing } from '../support/facility.ts';
import { RootClient } from '../../orchestrator/client/root-client.ts';
import { containerRuntimeFor } from '../../orchestrator/worker/container/for-engine.ts';
import { socketPathFor } from '../../orchestrator/worker/container/embedded.ts';
import { startWorkerApi, loadOrCreateApiToken, type WorkerApi } from '../../orchestrator/worker/api.ts';

const CANOPY = join(import.meta.dirname, '../../bin/canopy.js');
const skip = unavailable(needRoot() ?? binaryMissing('containerd', ['--version']) ?? binaryMissing('docker-registry', ['--version']));
const tmp = mkdtempSync(join(tmpdir(), 'canopy-images-'));
let registry: TestRegistry | undefined;
let proxy: SlowProxy | undefined;
let stack: InProcessStack | undefined;
let workerApi: WorkerApi | undefined;

before(async () => {
  if (skip) return;
  registry = await startRegistry();
  // containerd's client copies blobs in 1 MiB writes, so progress moves in 1 MiB steps: ~5 MB of
  // layer at 1 MiB/s is a pull of ~5 s with a few steps.
  await pushBusybox(registry.url, 'library/busybox', 'latest', { padBytes: 4 << 20 });
  proxy = await slowProxy(registry.url, 1 << 20);
  stack = new InProcessStack('canopy-images-stack-');
  // The image folder a worker imports at start (K3s style): one good archive, one that is not an image.
  mkdirSync(join(stack.workerDir, 'images'), { recursive: true });
  writeDockerArchive(join(stack.workerDir, 'images', 'atstart.tar'), ['127.0.0.1:1/airgap/atstart:1']);
  writeFileSync(join(stack.workerDir, 'images', 'junk.tar'), 'not an archive\n');
  await stack.startRoot();
  const cluster = await stack.startCluster('imgs', { reportIntervalMs: 1000 });
  await poll('cluster registered', async () => cluster.rootToken);
  const engine = await stack.startWorker(`wimg${process.pid % 100000}`, {
    runtimes: await containerRuntimeFor({ dataDir: stack.workerDir, mirrors: [`docker.io=${proxy.url}`], mirrorsOnly: true }),
  });
  workerApi = await startWorkerApi(engine, { host: '127.0.0.1', port: 0, token: loadOrCreateApiToken(stack.workerDir) });
  const auth = await stack.adminHeaders();
  await poll('root knows a cluster that runs containers', async () => {
    const list = await (await fetch(`${stack!.rootUrl}/api/v1/clusters/active`, { headers: auth })).json() as unknown[];
    return JSON.stringify(list).includes('"container"');
  }, 60_000);
});

after(async () => {
  await workerApi?.close();
  const dir = stack?.dir;
  await stack?.close({ undeploy: true });
  await proxy?.stop();
  await registry?.stop();
  // Nothing of the test may stay mounted (snapshots live under the worker's data dir).
  if (dir) {
    for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
      const target = line.split(' ')[1];
      if (target?.startsWith(dir)) execFileSync('umount', ['-l', target]);
    }
    rmSync(dir, { recursive: true, force: true });
  }
  rmSync(tmp, { recursive: true, force: true });
});

function slaFile(app: string, image: string): string {
  const f = join(tmp, `${app}.json`);
  writeFileSync(f, JSON.stringify({
    sla_version: 'v2.0', customerID: 'Admin',
    applications: [{
      applicationID: '', application_name: app, application_namespace: 'test', application_desc: 'image test',
      microservices: [{
        microserviceID: '', microservice_name: 'box', microservice_namespace: 'test', virtualization: 'container',
        code: image, cmd: ['sleep', '600'], memory: 32, vcpus: 0.1,
      }],
    }],
  }));
  return f;
}

/** Runs the CLI without blocking this process (root, cluster and worker run in it). */
function canopy(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env = { ...process.env, XDG_CACHE_HOME: join(tmp, 'cache'), CANOPY_PASSWORD: ADMIN_PASSWORD, CANOPY_ROOT: stack!.rootUrl, CANOPY_UP_DIR: join(tmp, 'no-up') };
  const child = spawn(process.execPath, [CANOPY, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stdout, stderr })));
}

test('a pull\'s progress reaches root\'s instance status and deploy --wait, without a history entry per step', { skip, timeout: 180_000 }, async () => {
  const rootApi = new RootClient({ url: stack!.rootUrl, token: (await stack!.adminHeaders()).authorization!.slice('Bearer '.length) });
  const deploying = canopy(['deploy', slaFile('pullprog', 'busybox'), '--wait', '--timeout', '120']);
  // Meanwhile, root's view of the instance: every reason it shows while CREATING.
  const seenAtRoot = new Set<string>();
  let done = false;
  const watching = (async () => {
    while (!done) {
      for (const { app, service } of await rootApi.allServices()) {
        if (app.application_name !== 'pullprog') continue;
        for (const i of service.instances) if (i.state === 'CREATING') seenAtRoot.add(i.reason);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  const r = await deploying;
  done = true;
  await watching;
  assert.equal(r.code, 0, `deploy --wait: ${r.stdout}\n${r.stderr}`);
  const pullLines = r.stdout.split('\n').filter((l) => /CREATING\s+pulling docker\.io\/library\/busybox:latest: [\d.]+ of [\d.]+ MB/.test(l));
  assert.ok(new Set(pullLines.map((l) => / ([\d.]+) of /.exec(l)![1])).size >= 2, `deploy --wait shows the pull advancing:\n${r.stdout}`);
  assert.match(r.stdout, /RUNNING\s+started, pid \d+/);
  assert.ok([...seenAtRoot].some((x) => /^pulling docker\.io\/library\/busybox:latest: [\d.]+ of 5\.\d MB$/.test(x)), `root showed the progress: ${[...seenAtRoot].join(' | ')}`);
  assert.ok(proxy!.blobBytes() > 5_000_000, 'the image came through the slow mirror');

  const service = (await rootApi.allServices()).find((x) => x.app.application_name === 'pullprog')!.service;
  const history = service.instances[0]!.history;
  assert.equal(history.filter((h) => h.state === 'CREATING').length, 1, `one CREATING entry, progress only in the reason: ${JSON.stringify(history)}`);
  assert.ok(!history.some((h) => h.reason.startsWith('pulling')), 'no progress step in the history');
  console.log(`# deploy --wait printed:\n${r.stdout.split('\n').map((l) => `#   ${l}`).join('\n')}`);
  const u = await canopy(['undeploy', 'pullprog']);
  assert.equal(u.code, 0, u.stderr);
  await poll('undeployed on the worker', async () => stack!.engine!.instances.size === 0);
});

const ctrOnWorker = (...args: string[]): string =>
  execFileSync('ctr', ['-a', socketPathFor(join(stack!.workerDir, 'containerd')), '-n', 'canopy', ...args]).toString();

test('image archives: the image folder at start, `canopy image import` through the worker API, bad archives refused; the images run with no registry', { skip, timeout: 180_000 }, async () => {
  assert.match(ctrOnWorker('images', 'ls', '-q'), /127\.0\.0\.1:1\/airgap\/atstart:1/, 'the image folder was imported at start (the junk beside it skipped)');
  assert.ok(stack!.log.lines.some((l) => String(l.msg).includes('not imported') && String(l.file).endsWith('junk.tar')), 'the bad file in the folder is logged');

  const api = `http://127.0.0.1:${(workerApi!.server.address() as AddressInfo).port}`;
  const token = readFileSync(join(stack!.workerDir, 'api-token'), 'utf8').trim();
  const oci = join(tmp, 'airgap.tar');
  writeOciArchive(oci, '127.0.0.1:1/airgap/web:1', { files: { 'www/index.html': 'imported\n' } });
  const ok = await canopy(['image', 'import', oci, '--worker-api', api, '--token', token]);
  assert.equal(ok.code, 0, `${ok.stdout}\n${ok.stderr}`);
  assert.match(ok.stdout, /imported 127\.0\.0\.1:1\/airgap\/web:1/);

  const images = ctrOnWorker('images', 'ls', '-q');
  const content = ctrOnWorker('content', 'ls', '-q');
  const junk = join(tmp, 'junk.tar');
  writeFileSync(junk, 'this is no archive\n');
  const bad = await canopy(['image', 'import', junk, '--worker-api', api, '--token', token]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /canopy image import: .*HTTP 422: not a tar archive/);
  const denied = await canopy(['image', 'import', oci, '--worker-api', api, '--token', 'not-the-token']);
  assert.equal(denied.code, 1);
  assert.match(denied.stderr, /HTTP 401: missing or wrong API token/);
  assert.equal(ctrOnWorker('images', 'ls', '-q'), images, 'no image from refused archives');
  assert.equal(ctrOnWorker('content', 'ls', '-q'), content, 'no content from refused archives');
  assert.ok(stack!.engine!.connected, 'the worker keeps running');

  // Both images run through root, with no registry at their address.
  for (const [app, image] of [['fromdir', '127.0.0.1:1/airgap/atstart:1'], ['fromcli', '127.0.0.1:1/airgap/web:1']]) {
    const d = await canopy(['deploy', slaFile(app!, image!), '--wait', '--timeout', '60']);
    assert.equal(d.code, 0, `${d.stdout}\n${d.stderr}`);
    assert.doesNotMatch(d.stdout, /pulling/, 'nothing pulled');
    assert.equal((await canopy(['undeploy', app!])).code, 0);
  }
  await poll('undeployed on the worker', async () => stack!.engine!.instances.size === 0);
});
