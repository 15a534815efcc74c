// The container runtime's images on a real containerd with a loopback registry: the image cache limit
// evicts the least recently used image no instance uses (its content and unpacked layers with it,
// through containerd's garbage collection), and never an image in use; docker-save and OCI archives
// import (and run) without a registry, and an archive that is not an image is refused, leaving nothing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detectCgroups } from '../../orchestrator/worker/cgroup.ts';
import { ProcessRuntime } from '../../orchestrator/worker/process-runtime.ts';
import { Sandbox } from '../../orchestrator/worker/runtime/sandbox.ts';
import { Runtimes } from '../../orchestrator/worker/runtime/types.ts';
import { ContainerRuntime } from '../../orchestrator/worker/container/runtime.ts';
import { ImageCache, imageParts } from '../../orchestrator/worker/container/image-cache.ts';
import { startEmbedded, type EmbeddedContainerd } from '../../orchestrator/worker/container/embedded.ts';
import { Instance } from '../../orchestrator/worker/instance.ts';
import { NoNetwork } from '../../orchestrator/worker/net-seam.ts';
import { memoryLogger } from '../../orchestrator/protocol/log.ts';
import type { InstanceState } from '../../orchestrator/protocol/instance-states.ts';
import { until as untilState } from '../support/instance-state.ts';
import { startRegistry, pushBusybox, writeDockerArchive, writeOciArchive, type TestRegistry } from '../../harness/oci-registry.ts';
import { unavailable, needRoot, binaryMissing } from '../support/facility.ts';
import { CLOSED_MIRROR } from '../../harness/registry-guard.ts';

const skip = unavailable(needRoot() ?? binaryMissing('containerd', ['--version']) ?? binaryMissing('docker-registry', ['--version']));
const WORKER = `im${process.pid}`;
const dataDir = mkdtempSync(join(tmpdir(), 'canopy-im-'));
const log = memoryLogger();
const opened: Runtimes[] = [];
const instances: Instance[] = [];
let registry: TestRegistry;
let containerd: EmbeddedContainerd;
/** Each test image: busybox and 2 MiB of its own random bytes, so images share no layer. */
const PAD = 2 << 20;

async function runtime(imageCacheMb: number): Promise<{ rt: Runtimes; ct: ContainerRuntime }> {
  const sandbox = new Sandbox({ workerId: WORKER, cgroups: detectCgroups(), stateDir: dataDir });
  // No pull may leave the machine (harness/registry-guard.ts): docker.io only through a closed loopback port.
  const ct = await ContainerRuntime.open(sandbox, { socket: containerd.socket, log, imageCacheMb, mirrors: [['docker.io', CLOSED_MIRROR]], mirrorsOnly: true });
  const rt = new Runtimes(sandbox, [new ProcessRuntime(sandbox), ct]);
  opened.push(rt);
  return { rt, ct };
}

const ref = (name: string): string => `${registry.host}/library/${name}:1`;
const ctr = (...args: string[]): string => execFileSync('ctr', ['-a', containerd.socket, '-n', 'canopy', ...args]).toString();
const imageNames = (): string[] => ctr('images', 'ls', '-q').trim().split('\n').filter(Boolean).sort();

const until = (i: Instance, states: InstanceState[], ms = 60_000): Promise<InstanceState> => untilState(i, states, ms);

before(async () => {
  if (skip) return;
  registry = await startRegistry();
  for (const name of ['probe', 'inuse', 'a', 'b', 'c']) await pushBusybox(registry.url, `library/${name}`, '1', { padBytes: PAD });
  containerd = await startEmbedded(dataDir);
});

after(async () => {
  if (skip) return;
  for (const i of instances) await i.close('test cleanup').catch(() => {});
  for (const r of opened) await r.close().catch(() => {});
  await containerd?.stop();
  await registry?.stop();
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const target = line.split(' ')[1];
    if (target?.startsWith(dataDir)) execFileSync('umount', ['-l', target]);
  }
  rmSync(dataDir, { recursive: true, force: true });
});

test('image cache limit: the least recently used image no instance uses goes (content and layers); one in use never does', { skip, timeout: 180_000 }, async () => {
  // What one test image takes on disk (blobs and unpacked layer), measured with no limit.
  const probe = await runtime(0);
  await probe.ct.images.ensure(ref('probe'));
  const size = (await probe.ct.cache.images()).find((i) => i.name === ref('probe'))!.bytes;
  assert.ok(size > PAD * 2, `an image counts its blobs and its unpacked layer: ${size} bytes`);
  await probe.ct.client.call('images', 'Delete', { name: ref('probe'), sync: true });

  // Room for three such images, not four.
  const { rt, ct } = await runtime((3.5 * size) / 1048576);
  const inUse = new Instance({
    service_id: 'isvc', instance_n: 0, name: { app: 'a', appns: 'b', svc: 'c', svcns: 'd' },
    spec: { virtualization: 'container', code: ref('inuse'), cmd: ['sleep', '600'], memory: 0, vcpus: 0 },
  }, rt, new NoNetwork(), log);
  instances.push(inUse);
  await inUse.start();
  assert.equal(await until(inUse, ['RUNNING', 'FAILED']), 'RUNNING', JSON.stringify(inUse.lifecycle.history));
  // `inuse` is now the least recently used image, but an instance runs it.
  await ct.images.ensure(ref('a'));
  await ct.images.ensure(ref('b'));
  await ct.images.ensure(ref('a'));
  assert.deepEqual(await ct.evictUnused(), [], 'three images fit');
  const bTarget = (await ct.client.call<{ image: { target: { media_type: string; digest: string; size: number } } }>('images', 'Get', { name: ref('b') })).image.target;
  const bBlobs = [...(await imageParts(ct.client, bTarget)).blobs.keys()];

  await ct.images.ensure(ref('c'));
  // The pull started an eviction pass; this waits for it (or runs one).
  await ct.evictUnused();
  assert.deepEqual(imageNames(), [ref('a'), ref('c'), ref('inuse')].sort(), 'b, used least recently of the unused, is gone');
  const content = ctr('content', 'ls', '-q');
  for (const d of bBlobs) assert.ok(!content.includes(d), `b's blob ${d} was collected`);
  assert.ok(ImageCache.total(await ct.cache.images()) <= 3.5 * size, 'the rest fits the limit');

  // A limit smaller than the image in use: every unused image goes, the one in use stays.
  const tight = await runtime(1);
  const gone = await tight.ct.evictUnused();
  assert.deepEqual(gone.sort(), [ref('a'), ref('c')].sort());
  assert.deepEqual(imageNames(), [ref('inuse')]);
  assert.ok(log.lines.some((l) => /every image is in use/.test(String(l.msg))), 'the overflow that cannot be helped is logged');
  assert.equal(inUse.state, 'RUNNING');
  await inUse.close();
  // Its image is unused now: the next pass may take it, and its layers with it.
  assert.deepEqual(await tight.ct.evictUnused(), [ref('inuse')]);
  const snapshots = ctr('snapshots', 'ls').trim().split('\n').slice(1);
  assert.deepEqual(snapshots, [], 'no snapshot left once no image is');
});

test('image archives: docker save and OCI layout import and run with no registry; what is not an image is refused and leaves nothing', { skip, timeout: 180_000 }, async () => {
  const { rt, ct } = await runtime(0);
  const dir = mkdtempSync(join(tmpdir(), 'canopy-archives-'));
  try {
    // Names on a loopback port nothing listens on: a pull instead of the import could only fail.
    const docker = join(dir, 'docker.tar');
    writeDockerArchive(docker, ['127.0.0.1:1/airgap/docker:1'], { files: { 'www/index.html': 'from a docker archive\n' } });
    assert.deepEqual(await ct.importArchive(docker), ['127.0.0.1:1/airgap/docker:1']);
    const oci = join(dir, 'oci.tar');
    writeOciArchive(oci, '127.0.0.1:1/airgap/oci:2');
    assert.deepEqual(await ct.importArchive(oci), ['127.0.0.1:1/airgap/oci:2']);
    assert.deepEqual(imageNames().filter((n) => n.includes('airgap')), ['127.0.0.1:1/airgap/docker:1', '127.0.0.1:1/airgap/oci:2']);
    assert.ok(!imageNames().some((n) => n.startsWith('canopy-import-')), 'no temporary name stays');
    // Importing the same archive again is fine.
    assert.deepEqual(await ct.importArchive(docker), ['127.0.0.1:1/airgap/docker:1']);

    const i = new Instance({
      service_id: 'asvc', instance_n: 0, name: { app: 'a', appns: 'b', svc: 'c', svcns: 'd' },
      spec: { virtualization: 'container', code: '127.0.0.1:1/airgap/docker:1', cmd: ['cat', '/www/index.html'], memory: 0, vcpus: 0, one_shot: true },
    }, rt, new NoNetwork(), log);
    instances.push(i);
    await i.start();
    assert.equal(await until(i, ['COMPLETED', 'FAILED']), 'COMPLETED', JSON.stringify(i.lifecycle.history));
    assert.equal(i.logs('stdout'), 'from a docker archive\n');
    await i.close();

    const images = imageNames();
    const content = ctr('content', 'ls', '-q');
    const bad: Array<[string, RegExp]> = [];
    const text = join(dir, 'notes.txt');
    writeFileSync(text, 'not a tar at all\n');
    bad.push([text, /not a tar archive/]);
    const plain = join(dir, 'plain.tar');
    execFileSync('tar', ['-C', dir, '-cf', plain, 'notes.txt']);
    bad.push([plain, /not an image archive/]);
    const bareTag = join(dir, 'bare.tar');
    writeOciArchive(bareTag, 'latest');
    bad.push([bareTag, /names no image by a whole reference/]);
    for (const [file, why] of bad) {
      await assert.rejects(ct.importArchive(file), (e: Error) => {
        assert.match(e.message, why);
        return true;
      });
    }
    assert.deepEqual(imageNames(), images, 'no image from a refused archive');
    assert.deepEqual(ctr('content', 'ls', '-q'), content, 'no content from a refused archive');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pull through containerd\'s API: the same image as through ctr, runs, reports progress, a missing image is a permanent FAILED; cold pulls of both routes timed', { skip, timeout: 300_000 }, async () => {
  await pushBusybox(registry.url, 'library/tenmb', '1', { padBytes: 9 << 20, files: { 'www/index.html': 'pulled through the API\n' } });
  const { rt, ct } = await runtime(0);
  const name = ref('tenmb');
  const cold = async (): Promise<void> => {
    await ct.client.call('images', 'Delete', { name, sync: true }).catch(() => {});
    assert.ok(!imageNames().includes(name));
  };
  const steps: string[] = [];
  ct.images.route = 'api';
  await cold();
  const viaApi = await ct.images.ensure(name, (p) => steps.push(`${p.done}/${p.total}`));
  assert.ok(steps.length >= 1 && steps.at(-1)!.split('/')[0] === steps.at(-1)!.split('/')[1], `progress up to the whole: ${steps.join(' ')}`);
  ct.images.route = 'ctr';
  await cold();
  const viaCtr = await ct.images.ensure(name);
  assert.deepEqual(viaApi, viaCtr, 'the same config and layers either way');

  ct.images.route = 'api';
  await cold();
  const i = new Instance({
    service_id: 'psvc', instance_n: 0, name: { app: 'a', appns: 'b', svc: 'c', svcns: 'd' },
    spec: { virtualization: 'container', code: name, cmd: ['cat', '/www/index.html'], memory: 0, vcpus: 0, one_shot: true },
  }, rt, new NoNetwork(), log);
  instances.push(i);
  await i.start();
  assert.equal(await until(i, ['COMPLETED', 'FAILED']), 'COMPLETED', JSON.stringify(i.lifecycle.history));
  assert.equal(i.logs('stdout'), 'pulled through the API\n');
  await i.close();
  await assert.rejects(ct.images.ensure(ref('no-such-image')), (e: Error & { permanent?: boolean }) => {
    assert.match(e.message, /no-such-image.*not found/);
    assert.equal(e.permanent, true);
    return true;
  });
  assert.equal(ctr('leases', 'ls', '-q').trim(), '', 'no lease left by a pull');

  // Cold pulls of the same image, the routes alternating (same-run figures; the machine is shared).
  const times: Record<'ctr' | 'api', number[]> = { ctr: [], api: [] };
  for (let k = 0; k < 5; k++) {
    for (const route of ['ctr', 'api'] as const) {
      ct.images.route = route;
      await cold();
      const t0 = process.hrtime.bigint();
      await ct.images.ensure(name);
      times[route].push(Number(process.hrtime.bigint() - t0) / 1e9);
    }
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const size = (await ct.cache.images()).find((x) => x.name === name)!;
  console.log(`# ${JSON.stringify({ pull_routes: { image_mb: Math.round([...size.parts].filter(([k]) => !k.startsWith('snapshot:')).reduce((a, [, v]) => a + v, 0) / 1048576 * 10) / 10, ctr_cold_p50_s: median(times.ctr), api_cold_p50_s: median(times.api), ctr_s: times.ctr, api_s: times.api } })}`);
  await cold();
});
