// The process runtime on the real kernel: namespaces, cgroup limits (memory OOM → FAILED with the
// reason, vcpus held near the quota), logs, restart with backoff, fast undeploy, re-adoption.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync, readFileSync, readlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detectCgroups } from '../../orchestrator/worker/cgroup.ts';
import { processRuntimes } from '../../orchestrator/worker/process-runtime.ts';
import type { Runtimes } from '../../orchestrator/worker/runtime/types.ts';
import { Instance } from '../../orchestrator/worker/instance.ts';
import { NoNetwork } from '../../orchestrator/worker/net-seam.ts';
import { memoryLogger } from '../../orchestrator/protocol/log.ts';
import type { InstanceState } from '../../orchestrator/protocol/instance-states.ts';
import { until as untilState } from '../support/instance-state.ts';
import type { DeployOrder, InstanceSpec } from '../../orchestrator/mqtt/messages.ts';

const WORKER = `rt${process.pid}`;
const stateDir = mkdtempSync(join(tmpdir(), 'canopy-rt-'));
const cgroups = detectCgroups();
const runtimes: Runtimes[] = [];
const instances: Instance[] = [];
const log = memoryLogger();

function runtime(): Runtimes {
  const r = processRuntimes({ workerId: WORKER, cgroups, stateDir });
  runtimes.push(r);
  return r;
}

function order(n: number, spec: Partial<InstanceSpec>): DeployOrder {
  return {
    service_id: 'svc', instance_n: n,
    name: { app: 'a', appns: 'b', svc: 'c', svcns: 'd' },
    spec: { virtualization: 'process', cmd: ['true'], memory: 0, vcpus: 0, ...spec },
  };
}

function instance(rt: Runtimes, o: DeployOrder, backoff = { initialMs: 100, maxMs: 400, resetAfterMs: 10_000 }): Instance {
  const i = new Instance(o, rt, new NoNetwork(), log, backoff);
  instances.push(i);
  return i;
}

const until = (i: Instance, states: InstanceState[], ms = 10_000): Promise<InstanceState> => untilState(i, states, ms);

after(async () => {
  for (const i of instances) await i.close('test cleanup').catch(() => {});
  const rt = runtimes[0] ?? runtime();
  for (const k of await rt.leftovers()) await rt.remove(k).catch(() => {});
  for (const r of runtimes) await r.close();
  rmSync(stateDir, { recursive: true, force: true });
});

test('a one-shot command runs in its own namespaces and COMPLETES; its output is kept', async () => {
  const rt = runtime();
  const i = instance(rt, order(1, {
    one_shot: true,
    cmd: ['sh', '-c', 'echo "pid=$$"; ip -o link | wc -l; echo to-stderr >&2; echo "env=$GREETING"; echo "uts=$(readlink /proc/self/ns/uts)"; echo "mnt=$(readlink /proc/self/ns/mnt)"'],
    environment: ['GREETING=hello'],
  }));
  await i.start();
  assert.equal(await until(i, ['COMPLETED', 'FAILED']), 'COMPLETED', JSON.stringify(i.lifecycle.history));
  const out = i.logs('stdout');
  assert.match(out, /^pid=1$/m, 'PID namespace: the command is pid 1');
  assert.match(out, /^1$/m, 'network namespace: loopback only');
  assert.match(out, /^env=hello$/m);
  // SPEC §4: mount and UTS namespaces of its own too (this host allows them), not the worker's.
  for (const ns of ['uts', 'mnt']) {
    const mine = readlinkSync(`/proc/self/ns/${ns}`);
    const theirs = new RegExp(`^${ns}=(.+)$`, 'm').exec(out)?.[1];
    assert.ok(theirs && theirs.startsWith(`${ns}:[`), `${ns} namespace read inside: ${out}`);
    assert.notEqual(theirs, mine, `${ns} namespace: the instance's own, not the worker's`);
  }
  assert.match(i.logs('stderr'), /to-stderr/);
  assert.deepEqual(i.lifecycle.history.map((t) => t.state), ['NODE_SCHEDULED', 'CREATING', 'RUNNING', 'COMPLETED']);
  await i.close();
  assert.equal(i.state, 'UNDEPLOYED');
  assert.equal(existsSync(rt.sandbox.dir(i.key)), false);
});

test('an instance that allocates past its memory is killed by the cgroup and reported FAILED with the reason', async () => {
  const rt = runtime();
  // `tail` keeps an ever-growing line of zero bytes in memory.
  const i = instance(rt, order(2, { one_shot: true, memory: 32, cmd: ['tail', '/dev/zero'] }));
  await i.start();
  assert.equal(await until(i, ['FAILED', 'COMPLETED'], 20_000), 'FAILED');
  const reason = i.lifecycle.last.reason;
  console.log(`# memory limit: ${reason}`);
  assert.match(reason, /memory limit of 32 MB exceeded/);
  await i.close();
});

test('a spinning instance is held to its vcpus', async () => {
  const rt = runtime();
  // Side by side: the same spin with vcpus 0.25 and without a limit. CFS never lets a group run past its
  // quota, so the limited one's share is at most 0.25 however busy the machine is (a loaded machine
  // only lowers it); the unlimited one shows that there was CPU to take beyond the quota, so without
  // the limit the first one would have taken it too.
  const i = instance(rt, order(3, { vcpus: 0.25, cmd: ['sh', '-c', 'while :; do :; done'] }));
  const free = instance(rt, order(13, { vcpus: 0, cmd: ['sh', '-c', 'while :; do :; done'] }));
  await Promise.all([i.start(), free.start()]);
  await Promise.all([until(i, ['RUNNING']), until(free, ['RUNNING'])]);
  const cg = rt.sandbox.cgroup(i.key)!;
  const cgFree = rt.sandbox.cgroup(free.key)!;
  await new Promise((r) => setTimeout(r, 300));
  const c0 = cg.cpuUsageNs(), f0 = cgFree.cpuUsageNs();
  const t0 = process.hrtime.bigint();
  await new Promise((r) => setTimeout(r, 2000));
  const wall = Number(process.hrtime.bigint() - t0);
  const share = (cg.cpuUsageNs() - c0) / wall;
  const freeShare = (cgFree.cpuUsageNs() - f0) / wall;
  console.log(`# cpu share with vcpus 0.25: ${share.toFixed(3)} CPUs; the same spin without a limit: ${freeShare.toFixed(3)} CPUs`);
  assert.ok(share > 0, 'the limited spin ran');
  assert.ok(share <= 0.3, `the limited spin stayed within its quota (0.25, plus measurement slack): ${share}`);
  assert.ok(freeShare > 0.3, `there was CPU beyond the quota to take (the unlimited spin got ${freeShare})`);
  const t1 = Date.now();
  await Promise.all([i.close(), free.close()]);
  console.log(`# undeploy of a spinning instance took ${Date.now() - t1} ms`);
  assert.equal(rt.sandbox.cgroup(i.key), undefined);
});

test('a failing long-running instance is restarted with backoff', async () => {
  const rt = runtime();
  const i = instance(rt, order(4, { cmd: ['sh', '-c', 'echo run; exit 3'] }));
  const delays: number[] = [];
  i.on('restart', (ms) => delays.push(ms));
  await i.start();
  const deadline = Date.now() + 10_000;
  while (i.restartCount < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.ok(i.restartCount >= 3, `restarts ${i.restartCount}`);
  const failures = i.lifecycle.history.filter((t) => t.state === 'FAILED');
  assert.ok(failures.length >= 3);
  assert.equal(failures[0]!.reason, 'exited with code 3');
  // Backoff: each failure schedules the next start after a doubled wait, capped (100, 200, 400, 400 …),
  // and each start comes after the failure before it (the order of the history, not its timings).
  assert.deepEqual(delays.slice(0, 4), [100, 200, 400, 400].slice(0, Math.min(4, delays.length)));
  assert.ok(delays.length >= 3, `restarts scheduled: ${delays.length}`);
  const states = i.lifecycle.history.map((h) => h.state).filter((s) => s === 'FAILED' || s === 'RUNNING' || s === 'CREATING');
  for (let k = 1; k < states.length; k++) assert.ok(!(states[k] === 'FAILED' && states[k - 1] === 'FAILED'), `two failures without a start between: ${states.join(' ')}`);
  assert.ok((i.logs('stdout').match(/run/g) ?? []).length >= 3);
  await i.close();
});

test('a command that does not exist fails with a clear reason', async () => {
  const rt = runtime();
  const i = instance(rt, order(5, { one_shot: true, cmd: ['/nonexistent/bin'] }));
  await i.start();
  await until(i, ['FAILED']);
  assert.match(i.lifecycle.last.reason, /command not found|exit 127|code 12[67]/);
  await i.close();
});

test('a daemon restart re-adopts a running instance without restarting it', async () => {
  const rt1 = runtime();
  const o = order(6, { cmd: ['sh', '-c', 'echo started; exec sleep 600'] });
  const first = instance(rt1, o);
  await first.start();
  await until(first, ['RUNNING']);
  const pid = first.pid!;
  for (let k = 0; k < 200 && !first.logs('stdout').includes('started'); k++) await new Promise((r) => setTimeout(r, 10));
  first.detachFromDaemon();
  await rt1.close();
  // A new daemon (new runtime and instance objects) finds it.
  const rt2 = runtime();
  const second = instance(rt2, o, undefined);
  assert.equal(await second.adopt(), true);
  assert.equal(second.state, 'RUNNING');
  assert.match(second.lifecycle.last.reason, /re-adopted/);
  assert.equal(second.pid, pid);
  assert.equal(second.logs('stdout').match(/started/g)?.length, 1, 'not started twice');
  // Killing it from outside is noticed by the adopter.
  for (const p of rt2.sandbox.cgroup(second.key)!.pids()) process.kill(p, 'SIGKILL');
  await until(second, ['FAILED', 'CREATING']);
  await second.close();
  assert.equal(rt2.sandbox.cgroup(second.key), undefined);
  assert.ok(!execFileSync('ip', ['netns', 'list']).toString().includes(rt2.sandbox.netnsName(second.key)));
});

test('undeploy gives the command a SIGTERM first', async () => {
  const rt = runtime();
  const marker = join(stateDir, 'said-bye');
  const i = instance(rt, order(7, { cmd: ['sh', '-c', `trap 'echo bye > ${marker}; exit 0' TERM; echo trapped; while :; do sleep 0.05; done`] }));
  await i.start();
  await until(i, ['RUNNING']);
  // RUNNING means started, not that the shell has run its first line: wait until the trap is set
  // (a fixed 200 ms was too short on a loaded machine).
  for (let k = 0; k < 500 && !i.logs('stdout').includes('trapped'); k++) await new Promise((r) => setTimeout(r, 10));
  assert.match(i.logs('stdout'), /trapped/);
  const t = Date.now();
  await i.close();
  console.log(`# undeploy with a SIGTERM handler took ${Date.now() - t} ms`);
  assert.equal(readFileSync(marker, 'utf8').trim(), 'bye');
});

test('logs are bounded: a chatty instance keeps only the newest part', async () => {
  // Its own state directory: the other runtimes of this file rotate every second with a 1 MB budget
  // and would otherwise rotate this instance's log too (a 512 kB copy was seen in CI).
  const small = processRuntimes({ workerId: WORKER, cgroups, stateDir: join(stateDir, 'small'), logBytes: 64 * 1024 });
  runtimes.push(small);
  const i = instance(small, order(8, { one_shot: true, cmd: ['sh', '-c', 'seq 1 200000; echo last-line'] }));
  await i.start();
  await until(i, ['COMPLETED', 'FAILED']);
  small.sandbox.rotateNow();
  const out = i.logs('stdout', 1 << 20);
  assert.ok(out.length <= 64 * 1024, `kept ${out.length} bytes`);
  assert.match(out, /199999\n200000\nlast-line\n$/);
  await i.close();
});

test('an undeploy that arrives while the instance is still being created leaves nothing behind', async () => {
  const rt = runtime();
  for (let n = 20; n < 25; n++) {
    const i = instance(rt, order(n, { cmd: ['sleep', '600'] }));
    const starting = i.start();
    // Close at different points of the creation (namespace, cgroup, spawn).
    await new Promise((r) => setTimeout(r, (n - 20) * 3));
    await i.close();
    await starting;
    assert.equal(i.state, 'UNDEPLOYED');
    assert.equal(rt.sandbox.cgroup(i.key), undefined, `cgroup of ${i.key}`);
    assert.ok(!execFileSync('ip', ['netns', 'list']).toString().includes(rt.sandbox.netnsName(i.key)), `namespace of ${i.key}`);
  }
});
