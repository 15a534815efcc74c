// The container runtime on the real kernel with its own containerd and registry: Docker's rules for
// cmd/args/env, the image's working dir, the instance's namespace and cgroup, logs, OOM → FAILED,
// a bad image → FAILED with the registry's words, re-adoption after a daemon restart, and nothing
// left behind (task, container, snapshot, mount, cgroup, namespace).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detectCgroups } from '../../orchestrator/worker/cgroup.ts';
import { ProcessRuntime } from '../../orchestrator/worker/process-runtime.ts';
import { Sandbox } from '../../orchestrator/worker/runtime/sandbox.ts';
import { Runtimes } from '../../orchestrator/worker/runtime/types.ts';
import { ContainerRuntime } from '../../orchestrator/worker/container/runtime.ts';
import { LazyContainerRuntime } from '../../orchestrator/worker/container/lazy.ts';
import { startEmbedded, type EmbeddedContainerd } from '../../orchestrator/worker/container/embedded.ts';
import { Instance } from '../../orchestrator/worker/instance.ts';
import { NoNetwork } from '../../orchestrator/worker/net-seam.ts';
import { memoryLogger } from '../../orchestrator/protocol/log.ts';
import type { InstanceState } from '../../orchestrator/protocol/instance-states.ts';
import { until as untilState } from '../support/instance-state.ts';
import type { DeployOrder, InstanceSpec } from '../../orchestrator/mqtt/messages.ts';
import { startRegistry, pushBusybox, type TestRegistry } from '../../harness/oci-registry.ts';
import { guardEgress, probeEgress, type EgressGuard } from '../../harness/egress-guard.ts';

const WORKER = `ct${process.pid}`;
const dataDir = mkdtempSync(join(tmpdir(), 'canopy-ct-'));
const cgroups = detectCgroups();
const log = memoryLogger();
const all: Runtimes[] = [];
const instances: Instance[] = [];
let registry: TestRegistry;
let containerd: EmbeddedContainerd;
let egress: EgressGuard | undefined;
let egressProbed = 0;

async function runtimes(): Promise<Runtimes> {
  const sandbox = new Sandbox({ workerId: WORKER, cgroups, stateDir: dataDir });
  const ct = await ContainerRuntime.open(sandbox, { socket: containerd.socket, mirrors: [['docker.io', registry.url]], mirrorsOnly: true, log });
  const r = new Runtimes(sandbox, [new ProcessRuntime(sandbox), ct]);
  all.push(r);
  return r;
}

/** As a worker daemon holds it: the runtime loads on first use (lazy.ts). */
async function lazyRuntimes(): Promise<{ rt: Runtimes; lazy: LazyContainerRuntime }> {
  const sandbox = new Sandbox({ workerId: WORKER, cgroups, stateDir: dataDir });
  const lazy = await LazyContainerRuntime.open(sandbox, { socket: containerd.socket, mirrors: [['docker.io', registry.url]], mirrorsOnly: true, log });
  const rt = new Runtimes(sandbox, [new ProcessRuntime(sandbox), lazy]);
  all.push(rt);
  return { rt, lazy };
}

function order(n: number, spec: Partial<InstanceSpec>): DeployOrder {
  return {
    service_id: 'csvc', instance_n: n,
    name: { app: 'a', appns: 'b', svc: 'c', svcns: 'd' },
    spec: { virtualization: 'container', code: 'docker.io/library/busybox:latest', cmd: [], memory: 0, vcpus: 0, ...spec },
  };
}

function instance(rt: Runtimes, o: DeployOrder): Instance {
  const i = new Instance(o, rt, new NoNetwork(), log, { initialMs: 100, maxMs: 400, resetAfterMs: 10_000 });
  instances.push(i);
  return i;
}

const until = (i: Instance, states: InstanceState[], ms = 30_000): Promise<InstanceState> => untilState(i, states, ms);

const ctr = (...args: string[]): string => execFileSync('ctr', ['-a', containerd.socket, '-n', 'canopy', ...args]).toString();

before(async () => {
  // Every packet this file's processes (the test, containerd, ctr pulls) send off loopback is dropped
  // and counted; the probe shows the counter counts.
  egress = guardEgress();
  probeEgress();
  egressProbed = egress.attempts();
  registry = await startRegistry();
  await pushBusybox(registry.url, 'library/busybox', 'latest');
  await pushBusybox(registry.url, 'library/httpd', 'latest', {
    entrypoint: ['httpd', '-f', '-p', '8080'], cmd: ['-h', '/www'], workingDir: '/www', files: { 'www/index.html': 'hello from a container\n' },
  });
  containerd = await startEmbedded(dataDir);
});

after(async () => {
  for (const i of instances) await i.close('test cleanup').catch(() => {});
  const rt = all[0];
  if (rt) for (const k of await rt.leftovers()) await rt.remove(k).catch(() => {});
  for (const r of all) await r.close().catch(() => {});
  await containerd?.stop();
  await registry?.stop();
  // Nothing of the test may stay mounted: the snapshots live under the data dir.
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const target = line.split(' ')[1];
    if (target?.startsWith(dataDir)) execFileSync('umount', ['-l', target]);
  }
  rmSync(dataDir, { recursive: true, force: true });
  egress?.close();
});

test('a one-shot container: descriptor cmd/args/env over the image\'s, its own namespaces, output kept, COMPLETED', async () => {
  const rt = await runtimes();
  const i = instance(rt, order(1, {
    one_shot: true,
    cmd: ['sh', '-c'], args: ['echo "pid=$$"; ip -o link | wc -l; echo "env=$GREETING"; echo "cwd=$(pwd)"; echo to-stderr >&2'],
    environment: ['GREETING=hello'],
  }));
  await i.start();
  assert.equal(await until(i, ['COMPLETED', 'FAILED']), 'COMPLETED', JSON.stringify(i.lifecycle.history));
  const out = i.logs('stdout');
  assert.match(out, /^pid=1$/m, 'PID namespace');
  assert.match(out, /^1$/m, 'the instance\'s network namespace: loopback only');
  assert.match(out, /^env=hello$/m);
  assert.match(out, /^cwd=\/$/m);
  assert.match(i.logs('stderr'), /to-stderr/);
  await i.close();
  assert.equal(i.state, 'UNDEPLOYED');
});

test('a container server runs in the instance\'s namespace and cgroup, with the image\'s entrypoint and working dir', async () => {
  const rt = await runtimes();
  const i = instance(rt, order(2, { code: 'httpd', memory: 64 }));
  await i.start();
  assert.equal(await until(i, ['RUNNING', 'FAILED']), 'RUNNING', JSON.stringify(i.lifecycle.history));
  const ns = rt.sandbox.netnsName(i.key);
  let body = '';
  for (let k = 0; k < 50 && !body.includes('hello'); k++) {
    try {
      body = execFileSync('ip', ['netns', 'exec', ns, 'curl', '-s', '--max-time', '2', 'http://127.0.0.1:8080/']).toString();
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  assert.equal(body, 'hello from a container\n');
  const cg = rt.sandbox.cgroup(i.key)!;
  assert.ok(cg.pids().includes(i.pid!), 'the container\'s init is in the sandbox cgroup');
  if (cgroups.version === 1) assert.equal(readFileSync(`/sys/fs/cgroup/memory/${cg.rel}/memory.limit_in_bytes`, 'utf8').trim(), String(64 * 1024 * 1024));
  const id = `${WORKER}-${i.key}`;
  assert.match(ctr('tasks', 'ls'), new RegExp(id));
  await i.close();
  assert.doesNotMatch(ctr('tasks', 'ls'), new RegExp(id));
  assert.doesNotMatch(ctr('containers', 'ls'), new RegExp(id));
  assert.doesNotMatch(ctr('snapshots', 'ls'), new RegExp(id));
  assert.equal(rt.sandbox.cgroup(i.key), undefined);
});

test('an image that does not exist ends FAILED with the registry\'s words, without retries', async () => {
  const rt = await runtimes();
  // From the loopback registry itself: through a mirror, containerd would go on to the real upstream.
  const i = instance(rt, order(3, { code: `${registry.host}/library/no-such-image:1` }));
  await i.start();
  assert.equal(await until(i, ['FAILED', 'RUNNING']), 'FAILED');
  const reason = i.lifecycle.last.reason;
  console.log(`# bad image: ${reason}`);
  assert.match(reason, /no-such-image.*not found/);
  await new Promise((r) => setTimeout(r, 600));
  assert.equal(i.restartCount, 0, 'not retried');
  await i.close();
});

test('no pull leaves the machine: a docker.io image the mirror lacks, and a registry without a mirror, each FAILED with its reason', async () => {
  assert.ok(egressProbed >= 1, `the egress counter counts (probe: ${egressProbed})`);
  const rt = await runtimes();
  const missing = instance(rt, order(6, { code: 'docker.io/library/not-in-the-mirror:1' }));
  const elsewhere = instance(rt, order(7, { code: 'ghcr.io/some/image:1' }));
  await Promise.all([missing.start(), elsewhere.start()]);
  assert.equal(await until(missing, ['FAILED', 'RUNNING']), 'FAILED');
  assert.equal(await until(elsewhere, ['FAILED', 'RUNNING']), 'FAILED');
  console.log(`# docker.io image the mirror lacks: ${missing.lifecycle.last.reason}`);
  console.log(`# registry without a mirror: ${elsewhere.lifecycle.last.reason}`);
  // containerd would fall back from the mirror's 404 to registry-1.docker.io; the mirror is the server.
  assert.match(missing.lifecycle.last.reason, new RegExp(`not-in-the-mirror.*not found at ${registry.host.replace(/\./g, '\\.')}`));
  assert.doesNotMatch(missing.lifecycle.last.reason, /registry-1\.docker\.io|lookup|dial/);
  assert.match(elsewhere.lifecycle.last.reason, /registry ghcr\.io has no --registry-mirror/);
  const hostsToml = readFileSync(join(dataDir, 'registry-hosts', 'docker.io', 'hosts.toml'), 'utf8');
  assert.deepEqual([...hostsToml.matchAll(/"(https?:\/\/[^"]+)"/g)].map((m) => m[1]).filter((u) => !u!.startsWith('http://127.')), [], hostsToml);
  assert.equal(egress!.attempts() - egressProbed, 0, 'no packet left loopback');
  await missing.close();
  await elsewhere.close();
});

test('a container past its memory is FAILED with the reason', async () => {
  const rt = await runtimes();
  const i = instance(rt, order(4, { one_shot: true, memory: 32, cmd: ['tail', '/dev/zero'] }));
  await i.start();
  assert.equal(await until(i, ['FAILED', 'COMPLETED']), 'FAILED');
  assert.match(i.lifecycle.last.reason, /memory limit of 32 MB exceeded/);
  await i.close();
});

test('a container that spins is held to its vcpus (the cgroup\'s own counters over a window)', async () => {
  const rt = await runtimes();
  // Two spinning processes: unlimited, they could take both cores; vcpus 0.2 allows a fifth of one.
  const i = instance(rt, order(8, { vcpus: 0.2, cmd: ['sh', '-c', 'while :; do :; done & while :; do :; done'] }));
  await i.start();
  assert.equal(await until(i, ['RUNNING', 'FAILED']), 'RUNNING', JSON.stringify(i.lifecycle.history));
  const cg = rt.sandbox.cgroup(i.key)!;
  const stat = cgroups.version === 1 ? `/sys/fs/cgroup/cpu/${cg.rel}/cpu.stat` : `/sys/fs/cgroup/${cg.rel}/cpu.stat`;
  const throttled = (): number => Number(/^nr_throttled (\d+)$/m.exec(readFileSync(stat, 'utf8'))?.[1] ?? NaN);
  await new Promise((r) => setTimeout(r, 500)); // both loops started
  const [u0, t0, w0] = [cg.cpuUsageNs(), throttled(), process.hrtime.bigint()];
  await new Promise((r) => setTimeout(r, 4000));
  const [u1, t1, w1] = [cg.cpuUsageNs(), throttled(), process.hrtime.bigint()];
  // CPU time the group used per second of the window: a measurement, bounded from above only (a
  // loaded machine gives it less, never more). Without the quota it would be ≥ 0.3 unless two other
  // processes held both cores the whole time; the kernel's throttle count says the quota acted.
  const cores = (u1 - u0) / Number(w1 - w0);
  console.log(`# spinning container with vcpus 0.2: ${cores.toFixed(3)} cores, throttled ${t1 - t0} periods`);
  assert.ok(t1 - t0 > 0, `the kernel throttled the group (nr_throttled ${t0} → ${t1})`);
  assert.ok(cores <= 0.3, `held to its vcpus: ${cores.toFixed(3)} cores used`);
  await i.close();
});

test('a daemon restart re-adopts a running container (same pid); undeploy still cleans everything', async () => {
  const rt1 = await runtimes();
  const o = order(5, { cmd: ['sh', '-c', 'echo started; exec sleep 600'] });
  const first = instance(rt1, o);
  await first.start();
  await until(first, ['RUNNING']);
  const pid = first.pid!;
  for (let k = 0; k < 200 && !first.logs('stdout').includes('started'); k++) await new Promise((r) => setTimeout(r, 10));
  first.detachFromDaemon();
  await rt1.close();
  // The restarted daemon holds the runtime unloaded: containerd answers and the running container is
  // found (through ctr) before anything of gRPC loads; re-adopting it loads the runtime.
  const { rt: rt2, lazy } = await lazyRuntimes();
  assert.equal(lazy.available(), true, 'containerd answers the bare gRPC ping');
  assert.deepEqual(await rt2.leftovers(), [first.key], 'the container is found before the runtime loads');
  assert.equal(lazy.isLoaded, false, 'listing leftovers does not load the runtime');
  // Every undeploy tears the key down in every runtime: a process instance's must not load gRPC.
  await lazy.teardown('process-instance-key');
  assert.equal(lazy.isLoaded, false, 'tearing down a key containerd holds nothing for does not load the runtime');
  const second = instance(rt2, o);
  assert.equal(await second.adopt(), true);
  assert.equal(lazy.isLoaded, true);
  assert.equal(second.state, 'RUNNING');
  assert.equal(second.pid, pid);
  assert.equal(second.logs('stdout').match(/started/g)?.length, 1, 'not started twice');
  await second.close();
  const id = `${WORKER}-${second.key}`;
  assert.doesNotMatch(ctr('containers', 'ls'), new RegExp(id));
  assert.deepEqual(await rt2.leftovers(), []);
  assert.ok(!execFileSync('ip', ['netns', 'list']).toString().includes(rt2.sandbox.netnsName(second.key)));
});

test('after every undeploy: no task, container or instance snapshot in containerd, no cgroup in any hierarchy, no namespace', async () => {
  for (const i of instances) await i.close('test cleanup');
  for (const r of all.splice(0)) await r.close();
  assert.equal(ctr('tasks', 'ls', '-q').trim(), '');
  assert.equal(ctr('containers', 'ls', '-q').trim(), '');
  // Only the image's committed layers stay (shared by every instance): their keys are chain IDs.
  const snapshots = ctr('snapshots', 'ls').trim().split('\n').slice(1).map((l) => l.split(/\s+/)[0]);
  assert.deepEqual(snapshots.filter((k) => !k?.startsWith('sha256:')), []);
  const cgroupsLeft = execFileSync('sh', ['-c', `ls -d /sys/fs/cgroup/*/canopy/${WORKER} 2>/dev/null || true`]).toString().trim();
  assert.equal(cgroupsLeft, '');
  assert.ok(!execFileSync('ip', ['netns', 'list']).toString().includes(`canopy-${WORKER}-`));
  assert.ok(!readFileSync('/proc/mounts', 'utf8').includes(dataDir), 'no mount under the data dir');
});
