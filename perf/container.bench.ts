// Containers as a user sees them (issue #14): on a `canopy up` deployment of two workers whose
// docker.io pulls go to a registry on the bridge (--registry-mirror docker.io=…, mirrors only), a
// container web server (busybox httpd, image cached after the warm-up) is added through root's REST
// API 10 times; each run measures the time to RUNNING on its worker and to the first HTTP answer through
// its rr address from a process client on the other worker. Peer in the same run: `ctr run` of the same
// image by hand into a fresh network namespace on the same containerd, polled on loopback until it
// answers. Also: a cold pull (and unpack) of a ~10 MB image from that registry, with `ctr`.
//   npm run bench -- container [runs=10]
// Last line: {"bench":"container","first_answer_p50_s":…,"to_running_p50_s":…,"ctr_run_p50_s":…,"ratio":…,"cold_pull_s":…,"image_mb":…}
import { spawnSync, execFileSync } from 'node:child_process';
import { firstAnswer, pct, sleep, timeDeploy, webAndProber } from './deploy-probe.ts';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RootClient } from '../orchestrator/client/root-client.ts';
import { workerInstances } from '../orchestrator/client/worker-api.ts';
import { down, up } from '../orchestrator/deployment/local.ts';
import { readState, type DeploymentState } from '../orchestrator/client/deployment-state.ts';
import { socketPathFor } from '../orchestrator/worker/container/embedded.ts';
import { pushBusybox, startRegistry, type TestRegistry } from '../harness/oci-registry.ts';
import { orSmoke } from './smoke.ts';

const RUNS = Number(process.argv[2] ?? orSmoke(10, 1));
const BIG_MB = orSmoke(9, 1);
const CTR_NS = `canopy-bench-${process.pid}`;

const tmp = mkdtempSync(join(tmpdir(), 'canopy-container-bench-'));
const k = 110 + (process.pid % 30);
const hostIp = `198.19.${k}.1`;
let state: DeploymentState | undefined;
let registry: TestRegistry | undefined;
let ctr: ((...args: string[]) => string) | undefined;
function takeDown(): void {
  // The peer's and the cold pull's containerd namespace, then the deployment (which stops containerd).
  if (ctr) {
    try {
      cleanCtrNamespace(ctr);
    } catch { /* containerd already gone: its data dir goes with the deployment */ }
    // `ctr run` puts a container at /<namespace>/<id> in each hierarchy; runc removes only the leaf.
    for (const c of readdirSync('/sys/fs/cgroup')) {
      try { rmdirSync(join('/sys/fs/cgroup', c, CTR_NS)); } catch { /* not there */ }
    }
  }
  const s = state ?? readState(join(tmp, 'state'));
  if (s) down(s);
}
function cleanCtrNamespace(ctr: (...args: string[]) => string): void {
  for (const id of ctr('containers', 'ls', '-q').split('\n').filter(Boolean)) {
    spawnSync('ctr', ['-a', socketOf(), '-n', CTR_NS, 'tasks', 'kill', '-s', 'KILL', id]);
    spawnSync('ctr', ['-a', socketOf(), '-n', CTR_NS, 'tasks', 'rm', '-f', id]);
    spawnSync('ctr', ['-a', socketOf(), '-n', CTR_NS, 'containers', 'rm', id]);
  }
  for (const img of ctr('images', 'ls', '-q').split('\n').filter(Boolean)) spawnSync('ctr', ['-a', socketOf(), '-n', CTR_NS, 'images', 'rm', '--sync', img]);
  spawnSync('ctr', ['-a', socketOf(), 'namespaces', 'rm', CTR_NS]);
}
let socketOf = (): string => '';
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    try { takeDown(); } finally {
      void registry?.stop();
      rmSync(tmp, { recursive: true, force: true });
      process.exit(1);
    }
  });
}

try {
  process.stderr.write('bringing up root, a cluster and two workers…\n');
  const port = 15000 + (process.pid % 1000);
  const mirror = `${hostIp}:${port}`;
  state = await up({
    dir: join(tmp, 'state'), workers: 2, name: `cb${process.pid % 1000}`, subnet: `198.19.${k}.0`,
    workerArgs: ['--registry-mirror', `docker.io=http://${mirror}`, '--registry-mirrors-only'],
  });
  if (state.hostIp !== hostIp) throw new Error(`bridge address ${state.hostIp}, expected ${hostIp}`);
  const [w1, w2] = state.workers as [DeploymentState['workers'][0], DeploymentState['workers'][0]];
  socketOf = () => socketPathFor(join(w1.dataDir, 'containerd'));
  ctr = (...args: string[]) => execFileSync('ctr', ['-a', socketOf(), '-n', CTR_NS, ...args], { timeout: 120_000 }).toString();

  registry = await startRegistry(mirror);
  await pushBusybox(registry.url, 'library/benchweb', 'latest', {
    entrypoint: ['httpd', '-f', '-p', '80', '-h', '/www'], cmd: [], files: { 'www/index.html': 'hello\n' },
  });
  const big = await pushBusybox(registry.url, 'library/benchbig', 'latest', { files: { 'big.bin': randomBytes(BIG_MB << 20) } });
  const imageMb = big.bytes / 1e6;

  // Cold pull: nothing of this image is on the worker yet.
  const c0 = Date.now();
  ctr('images', 'pull', '--plain-http', '--snapshotter', 'overlayfs', `${mirror}/library/benchbig:latest`);
  const coldPull = (Date.now() - c0) / 1000;
  process.stderr.write(`cold pull of ${imageMb.toFixed(1)} MB: ${coldPull.toFixed(2)} s\n`);

  const c = new RootClient({ url: state.rootUrl });
  await c.login(state.username, state.password);
  const setup = await webAndProber(c, 'ctr', 'container deploy latency', {
    virtualization: 'container', code: 'docker.io/library/benchweb:latest', cmd: [], memory: 64, vcpus: 0.1,
  }, w1, w2);
  const { web, url } = setup;

  // Run 0 is the warm-up: it pulls the image, so every measured run starts from a cached image.
  const samples: number[] = [];
  const toRunning: number[] = [];
  for (let run = 0; run <= RUNS; run++) {
    const { instance_n, t0, firstAnswerS: s, runningAt } = await timeDeploy(c, setup, w1, run === 0 ? 180 : 60);
    if (run > 0) {
      samples.push(s);
      if (runningAt) toRunning.push((runningAt - t0) / 1000);
    }
    process.stderr.write(`${run === 0 ? 'warm-up (pull)' : `run ${run}`}: ${s.toFixed(2)} s${runningAt ? ` (RUNNING on the worker after ${((runningAt - t0) / 1000).toFixed(2)} s)` : ''}\n`);
    await c.undeployInstance(web.microserviceID, instance_n);
    for (let i = 0; i < 100 && (await workerInstances(w1)).some((x) => x.service_id === web.microserviceID); i++) await sleep(100);
  }

  // Peer: the same image by hand, `ctr run` into a fresh network namespace, until it answers there.
  ctr('images', 'pull', '--plain-http', '--snapshotter', 'overlayfs', `${mirror}/library/benchweb:latest`);
  const peer: number[] = [];
  for (let i = 0; i <= RUNS; i++) {
    const ns = `cbp${process.pid % 100000}`;
    const id = `peer-${i}`;
    spawnSync('ip', ['netns', 'add', ns]);
    spawnSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    try {
      const answered = firstAnswer(ns, 'http://127.0.0.1/');
      const t0 = Date.now();
      ctr('run', '-d', '--snapshotter', 'overlayfs', '--with-ns', `network:/var/run/netns/${ns}`, `${mirror}/library/benchweb:latest`, id);
      const t1 = await answered;
      if (i > 0) peer.push((t1 - t0) / 1000);
    } finally {
      spawnSync('ctr', ['-a', socketOf(), '-n', CTR_NS, 'tasks', 'kill', '-s', 'KILL', id]);
      for (let w = 0; w < 50 && spawnSync('ctr', ['-a', socketOf(), '-n', CTR_NS, 'tasks', 'rm', id]).status !== 0; w++) await sleep(100);
      spawnSync('ctr', ['-a', socketOf(), '-n', CTR_NS, 'containers', 'rm', id]);
      spawnSync('ip', ['netns', 'del', ns]);
    }
  }

  const p50 = pct(samples, 50);
  const r50 = toRunning.length ? pct(toRunning, 50) : null;
  const b50 = pct(peer, 50);
  console.log(`container deploy → first answer via ${url} from another worker: p50 ${p50.toFixed(2)} s, p90 ${pct(samples, 90).toFixed(2)} s (${RUNS} runs, image cached)`);
  if (r50 !== null) console.log(`of which REST call → RUNNING on the worker: p50 ${r50.toFixed(2)} s`);
  console.log(`peer: ctr run of the same image into a fresh namespace, first answer on loopback: p50 ${b50.toFixed(2)} s`);
  console.log(`cold pull of a ${imageMb.toFixed(1)} MB image from the local registry: ${coldPull.toFixed(2)} s`);
  console.log(JSON.stringify({ bench: 'container', first_answer_p50_s: +p50.toFixed(3), to_running_p50_s: r50 === null ? null : +r50.toFixed(3),
    ctr_run_p50_s: +b50.toFixed(3), ratio: +(p50 / b50).toFixed(2), cold_pull_s: +coldPull.toFixed(3), image_mb: +imageMb.toFixed(1) }));
} finally {
  try { takeDown(); } finally {
    await registry?.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}
