// The CLI's logic without root: following a sliding log window, the host plan of `canopy up`, the
// demo's spread across workers, the instance watcher's verdicts, and root's errors as the user reads
// them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { unseen } from '../../../orchestrator/protocol/instance-logs.ts';
import { planHosts } from '../../../orchestrator/deployment/hosts.ts';
import { spreadAcrossWorkers } from '../../../orchestrator/deployment/demo.ts';
import type { DeploymentState } from '../../../orchestrator/client/deployment-state.ts';
import { ApiCallError, RootClient, type InstanceInfo, type ServiceInfo } from '../../../orchestrator/client/root-client.ts';
import { byTime, watchInstances, type Progress, type Transition, type Unplaced } from '../../../orchestrator/client/watch.ts';
import { unplacedLine } from '../../../orchestrator/commands/deploy.ts';

test('unseen: growth, a sliding window, and a truncated log', () => {
  assert.equal(unseen('', 'a\nb\n'), 'a\nb\n');
  assert.equal(unseen('a\nb\n', 'a\nb\nc\n'), 'c\n');
  assert.equal(unseen('a\nb\n', 'a\nb\n'), '');
  // The window slid: the start is gone, the previous tail is still there.
  assert.equal(unseen('line-1\nline-2\nline-3\n', 'line-2\nline-3\nline-4\n'), 'line-4\n');
  // Truncated by the worker: nothing of the previous read is left, so everything is new.
  assert.equal(unseen('old-1\nold-2\n', 'new-1\n'), 'new-1\n');
  // A window cut in the middle of a line.
  assert.equal(unseen('tick-1\ntick-2\ntick-3\n', 'k-2\ntick-3\ntick-4\ntick-5\n'), 'tick-4\ntick-5\n');
});

test('planHosts: names, addresses, and refusals', () => {
  const p = planHosts({ name: 'up', subnet: '198.19.250.0', workers: 2 });
  assert.equal(p.bridge, 'cup-up');
  assert.equal(p.hostIp, '198.19.250.1');
  assert.deepEqual(p.workers.map((w) => [w.name, w.netns, w.ip]), [['up-w1', 'cup-up-w1', '198.19.250.11'], ['up-w2', 'cup-up-w2', '198.19.250.12']]);
  for (const w of p.workers) assert.ok(w.hostVeth.length <= 15, `interface name ${w.hostVeth} fits IFNAMSIZ`);
  assert.ok(planHosts({ name: 'abcdef', subnet: '198.18.7.0', workers: 32 }).workers.every((w) => w.hostVeth.length <= 15));
  assert.throws(() => planHosts({ name: 'Up!', subnet: '198.19.250.0', workers: 2 }), /deployment name must be 1-6 of a-z 0-9/);
  assert.throws(() => planHosts({ name: 'toolong', subnet: '198.19.250.0', workers: 2 }), /deployment name/);
  assert.throws(() => planHosts({ name: 'up', subnet: '10.0.0.0', workers: 2 }), /inside 198\.18\.0\.0\/15/);
  assert.throws(() => planHosts({ name: 'up', subnet: '198.19.256.0', workers: 2 }), /inside 198\.18\.0\.0\/15/);
  assert.throws(() => planHosts({ name: 'up', subnet: '198.19.250.0', workers: 0 }), /--workers must be 1-32/);
  assert.throws(() => planHosts({ name: 'up', subnet: '198.19.250.0', workers: 1.5 }), /--workers/);
});

test('spreadAcrossWorkers pins web and client to different workers, only with two or more', () => {
  const sla = JSON.stringify({ applications: [{ microservices: [{ microservice_name: 'web' }, { microservice_name: 'client', constraints: [{ type: 'arch', arch: ['amd64'] }] }] }] });
  const two = { workers: [{ name: 'up-w1' }, { name: 'up-w2' }] } as DeploymentState;
  const out = JSON.parse(spreadAcrossWorkers(sla, two)) as { applications: { microservices: { constraints: unknown[] }[] }[] };
  assert.deepEqual(out.applications[0]!.microservices[0]!.constraints, [{ type: 'direct', node: 'up-w1' }]);
  assert.deepEqual(out.applications[0]!.microservices[1]!.constraints, [{ type: 'arch', arch: ['amd64'] }, { type: 'direct', node: 'up-w2' }]);
  assert.equal(spreadAcrossWorkers(sla, { workers: [{ name: 'up-w1' }] } as DeploymentState), sla);
});

function inst(history: [string, string][]): InstanceInfo {
  const last = history.at(-1)!;
  return {
    instance_n: 0, state: last[0], reason: last[1], cluster_id: null, cluster_name: null, worker_id: null, instance_ip: '', instance_ip_v6: '',
    ns_ip: null, ns_ip_v6: null, created_at: '', updated_at: '', history: history.map(([state, reason], i) => ({ state, reason, ts: `t${i}` })),
  } as InstanceInfo;
}

/** A client whose service() answers from a script, one step per call. */
function scripted(steps: [string, string][][], oneShot = false): RootClient {
  let i = 0;
  const c = new RootClient({ url: 'http://unused' });
  c.service = async () => ({ one_shot: oneShot, instances: [inst(steps[Math.min(i++, steps.length - 1)]!)] }) as ServiceInfo;
  return c;
}

test('watchInstances: every transition once, in order; RUNNING and COMPLETED succeed; NO_*, a one-shot FAILED and a crash loop fail with the reason', async () => {
  const seen: Transition[] = [];
  const ok = await watchInstances(scripted([
    [['REQUESTED', 'r']],
    [['REQUESTED', 'r'], ['CLUSTER_SCHEDULED', 'c'], ['NODE_SCHEDULED', 'n']],
    [['REQUESTED', 'r'], ['CLUSTER_SCHEDULED', 'c'], ['NODE_SCHEDULED', 'n'], ['CREATING', 'x'], ['RUNNING', 'started']],
  ]), [{ serviceId: 's', label: 'a.b.c.d', instance: 0 }], { timeoutMs: 5000, intervalMs: 1, onTransition: (t) => seen.push(t) });
  assert.deepEqual(ok, { ok: true });
  assert.deepEqual(seen.map((t) => t.state), ['REQUESTED', 'CLUSTER_SCHEDULED', 'NODE_SCHEDULED', 'CREATING', 'RUNNING']);

  const done = await watchInstances(scripted([[['REQUESTED', 'r'], ['COMPLETED', 'exit 0']]]), [{ serviceId: 's', label: 'x', instance: 0 }], { timeoutMs: 5000, intervalMs: 1, onTransition: () => {} });
  assert.equal(done.ok, true);

  // A one-shot instance is not restarted: its FAILED is final at once.
  const failed = await watchInstances(scripted([[['REQUESTED', 'r'], ['FAILED', 'command not found (exit 127)']]], true), [{ serviceId: 's', label: 'x', instance: 0 }], { timeoutMs: 5000, intervalMs: 1, onTransition: () => {} });
  assert.deepEqual(failed.ok ? null : [failed.state, failed.reason], ['FAILED', 'command not found (exit 127)']);

  // Any other instance is restarted by its worker: a FAILED followed by RUNNING is a success, and
  // the failure is still reported as a transition.
  const states: string[] = [];
  const recovered = await watchInstances(scripted([
    [['REQUESTED', 'r'], ['CREATING', 'x'], ['FAILED', 'exit 1']],
    [['REQUESTED', 'r'], ['CREATING', 'x'], ['FAILED', 'exit 1'], ['CREATING', 'restart 1'], ['RUNNING', 'started']],
  ]), [{ serviceId: 's', label: 'x', instance: 0 }], { timeoutMs: 5000, intervalMs: 1, onTransition: (t) => states.push(t.state) });
  assert.deepEqual(recovered, { ok: true });
  assert.deepEqual(states, ['REQUESTED', 'CREATING', 'FAILED', 'CREATING', 'RUNNING']);

  // A crash loop gives up at the third FAILED, with the last reason and the count.
  const loop = await watchInstances(scripted([
    [['CREATING', 'x'], ['FAILED', 'exit 1']],
    [['CREATING', 'x'], ['FAILED', 'exit 1'], ['CREATING', 'restart 1'], ['FAILED', 'exit 1']],
    [['CREATING', 'x'], ['FAILED', 'exit 1'], ['CREATING', 'restart 1'], ['FAILED', 'exit 1'], ['CREATING', 'restart 2'], ['FAILED', 'exit 2']],
  ]), [{ serviceId: 's', label: 'x', instance: 0 }], { timeoutMs: 5000, intervalMs: 1, onTransition: () => {} });
  assert.deepEqual(loop.ok ? null : [loop.state, loop.reason], ['FAILED', 'exit 2 (failed 3 times)']);

  const none = await watchInstances(scripted([[['REQUESTED', 'r'], ['NO_CLUSTER_FOUND', 'no cluster has 1000 GB']]]), [{ serviceId: 's', label: 'x', instance: 0 }], { timeoutMs: 5000, intervalMs: 1, onTransition: () => {} });
  assert.equal(none.ok ? null : none.state, 'NO_CLUSTER_FOUND');

  const slow = await watchInstances(scripted([[['REQUESTED', 'r'], ['CLUSTER_SCHEDULED', 'waiting']]]), [{ serviceId: 's', label: 'x', instance: 0 }], { timeoutMs: 30, intervalMs: 5, onTransition: () => {} });
  assert.equal(slow.ok ? null : slow.state, 'TIMEOUT');
  assert.match(slow.ok ? '' : slow.reason, /still CLUSTER_SCHEDULED after 0 s \(waiting\)/);
});

test('watchInstances: a reason that changes within a state (pull progress) is reported once per step, after the transitions', async () => {
  const lines: string[] = [];
  const c = new RootClient({ url: 'http://unused' });
  const creating: [string, string][] = [['REQUESTED', 'r'], ['CREATING', 'creating namespace and cgroup']];
  // Progress changes the reason, not the history.
  const pulling = (done: string): InstanceInfo => ({ ...inst(creating), reason: `pulling busybox: ${done} of 2.0 MB`, updated_at: '2026-12-06T07:00:01.000Z' }) as InstanceInfo;
  const polls: InstanceInfo[] = [inst(creating), pulling('0.5'), pulling('0.5'), pulling('1.5'), inst([...creating, ['RUNNING', 'started']])];
  let k = 0;
  c.service = async () => ({ one_shot: false, instances: [polls[Math.min(k++, polls.length - 1)]!] }) as ServiceInfo;
  const r = await watchInstances(c, [{ serviceId: 's', label: 'x', instance: 0 }], {
    timeoutMs: 5000, intervalMs: 1,
    onTransition: (t) => lines.push(`${t.state} ${t.reason}`),
    onProgress: (p: Progress) => lines.push(`progress ${p.state} ${p.reason} @${p.ts}`),
  });
  assert.deepEqual(r, { ok: true });
  assert.deepEqual(lines, [
    'REQUESTED r', 'CREATING creating namespace and cgroup',
    'progress CREATING pulling busybox: 0.5 of 2.0 MB @2026-12-06T07:00:01.000Z',
    'progress CREATING pulling busybox: 1.5 of 2.0 MB @2026-12-06T07:00:01.000Z',
    'RUNNING started',
  ]);
});

test('RootClient: the server\'s message and field errors reach the user; an unreachable root says so', async () => {
  const server = createServer((req, res) => {
    if (req.url === '/api/v1/applications') {
      res.writeHead(422, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'invalid descriptor', errors: [{ path: '/applications/0/application_name', message: 'must match ^[a-z0-9]{1,30}$' }] }));
    } else if (req.url === '/api/v1/clusters') {
      res.writeHead(502);
      res.end('<html>bad gateway</html>');
    } else {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('not json');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const c = new RootClient({ url, token: 't' });
    const e = await c.applications().catch((x: unknown) => x);
    assert.ok(e instanceof ApiCallError);
    assert.equal(e.status, 422);
    assert.equal(e.describe(), 'GET /api/v1/applications: HTTP 422: invalid descriptor\n  /applications/0/application_name: must match ^[a-z0-9]{1,30}$');
    await assert.rejects(c.clusters(), /GET \/api\/v1\/clusters: HTTP 502: <html>bad gateway<\/html>/);
    await assert.rejects(c.service('x'), /answer is not JSON/);
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
  // A port nobody listens on (fetch's pool would reuse a connection to the closed server above).
  const gone = createServer();
  await new Promise<void>((r) => gone.listen(0, '127.0.0.1', r));
  const goneUrl = `http://127.0.0.1:${(gone.address() as AddressInfo).port}`;
  await new Promise((r) => gone.close(r));
  await assert.rejects(new RootClient({ url: goneUrl, timeoutMs: 2000 }).applications(), (e: unknown) => e instanceof ApiCallError && e.status === 0 && /is unreachable \(ECONNREFUSED\)/.test(e.message));
});

test('watchInstances with unplaced "wait": the reason is reported (again when a retry changes it) and the watch goes on until the instance runs, or says root keeps retrying at the timeout', async () => {
  const noRoom = (free: string): [string, string][] => [['REQUESTED', 'r'], ['NO_CLUSTER_FOUND', `edge1: not enough free vCPUs (${free} < 0.5)`]];
  // A retry that fails the same way changes the reason, not the history.
  const retried = { ...inst(noRoom('0')), reason: 'edge1: not enough free vCPUs (0.25 < 0.5)', next_retry: '2026-01-01T10:00:20.000Z' };
  const steps = [inst(noRoom('0')), inst(noRoom('0')), retried, retried,
    inst([...noRoom('0'), ['CLUSTER_SCHEDULED', 'placed on cluster edge1 (worker w1); on a retry'], ['RUNNING', 'started']])];
  let k = 0;
  const c = new RootClient({ url: 'http://unused' });
  c.service = async () => ({ one_shot: false, instances: [steps[Math.min(k++, steps.length - 1)]!] }) as ServiceInfo;
  const states: string[] = [];
  const told: Unplaced[] = [];
  const ok = await watchInstances(c, [{ serviceId: 's', label: 'x', instance: 0 }], {
    timeoutMs: 5000, intervalMs: 1, unplaced: 'wait', onTransition: (t) => states.push(t.state), onUnplaced: (u) => told.push(u),
  });
  assert.deepEqual(ok, { ok: true });
  assert.deepEqual(states, ['REQUESTED', 'NO_CLUSTER_FOUND', 'CLUSTER_SCHEDULED', 'RUNNING'], 'each transition once');
  assert.deepEqual(told.map((u) => [u.first, u.reason]), [
    [true, 'edge1: not enough free vCPUs (0 < 0.5)'],
    [false, 'edge1: not enough free vCPUs (0.25 < 0.5)'],
  ]);
  assert.match(unplacedLine(told[0]!, 120), /x#0 not placed yet: edge1: not enough free vCPUs \(0 < 0\.5\)\n {2}no room now: root retries it when room appears .*waiting up to 120 s/);
  assert.equal(unplacedLine(told[1]!, 120), '  x#0 still NO_CLUSTER_FOUND: edge1: not enough free vCPUs (0.25 < 0.5)');

  const stuck = await watchInstances(scripted([noRoom('0')]), [{ serviceId: 's', label: 'x', instance: 0 }], { timeoutMs: 30, intervalMs: 5, unplaced: 'wait', onTransition: () => {} });
  assert.equal(stuck.ok ? null : stuck.state, 'NO_CLUSTER_FOUND');
  assert.match(stuck.ok ? '' : stuck.reason, /^not placed after 0 s: edge1: not enough free vCPUs \(0 < 0\.5\); root keeps retrying it/);
});

test('watchInstances reports the transitions of several instances as one timeline, sorted by time', async () => {
  const at = (state: string, sec: number) => ({ state, reason: state.toLowerCase(), ts: `2026-01-01T10:00:${String(sec).padStart(2, '0')}.000Z` });
  const a = { ...inst([['RUNNING', 'x']]), instance_n: 0, history: [at('REQUESTED', 1), at('CLUSTER_SCHEDULED', 3), at('RUNNING', 5)] };
  const b = { ...inst([['RUNNING', 'x']]), instance_n: 1, history: [at('REQUESTED', 2), at('CLUSTER_SCHEDULED', 4), at('RUNNING', 6)] };
  const c = new RootClient({ url: 'http://unused' });
  c.service = async () => ({ one_shot: false, instances: [a, b] }) as ServiceInfo;
  const seen: string[] = [];
  const r = await watchInstances(c, [{ serviceId: 's', label: 'x', instance: 0 }, { serviceId: 's', label: 'x', instance: 1 }], {
    timeoutMs: 5000, intervalMs: 1, onTransition: (t) => seen.push(`${t.ts.slice(17, 19)} #${t.target.instance} ${t.state}`),
  });
  assert.deepEqual(r, { ok: true });
  assert.deepEqual(seen, ['01 #0 REQUESTED', '02 #1 REQUESTED', '03 #0 CLUSTER_SCHEDULED', '04 #1 CLUSTER_SCHEDULED', '05 #0 RUNNING', '06 #1 RUNNING']);
  // One instance's history is never reordered, even where two tiers' clocks disagree.
  const t = (instance: number, state: string, sec: number) => ({ ...at(state, sec), target: { serviceId: 's', label: 'x', instance } }) as Transition;
  assert.deepEqual(byTime([t(0, 'CLUSTER_SCHEDULED', 5), t(0, 'NODE_SCHEDULED', 4), t(1, 'REQUESTED', 3)]).map((x) => `${x.target.instance} ${x.state}`),
    ['1 REQUESTED', '0 CLUSTER_SCHEDULED', '0 NODE_SCHEDULED']);
});

test('watchInstances: a one-shot is done when it completes, not when it starts', async () => {
  const r = await watchInstances(scripted([[['REQUESTED', 'r'], ['RUNNING', 'started']], [['REQUESTED', 'r'], ['RUNNING', 'started'], ['COMPLETED', 'exit 0']]], true),
    [{ serviceId: 's', label: 'x', instance: 0 }], { timeoutMs: 5000, intervalMs: 1, onTransition: () => {} });
  assert.deepEqual(r, { ok: true });
  const slow = await watchInstances(scripted([[['REQUESTED', 'r'], ['RUNNING', 'started']]], true), [{ serviceId: 's', label: 'x', instance: 0 }], { timeoutMs: 30, intervalMs: 5, onTransition: () => {} });
  assert.match(slow.ok ? '' : slow.reason, /still RUNNING after 0 s/);
});

test('watchInstances fails at once, even when waiting for room, on an instance root says no cluster could ever run', async () => {
  const never = { ...inst([['REQUESTED', 'r'], ['NO_CLUSTER_FOUND', 'no cluster qualifies: edge1: cannot run container (has process)']]), placeable: false,
    unplaceable_reason: 'no cluster can ever run it: edge1: cannot run container (has process)' };
  const c = new RootClient({ url: 'http://unused' });
  let calls = 0;
  c.service = async () => { calls++; return { one_shot: false, instances: [never] } as ServiceInfo; };
  const told: Unplaced[] = [];
  const r = await watchInstances(c, [{ serviceId: 's', label: 'x', instance: 0 }], {
    timeoutMs: 600_000, intervalMs: 1, unplaced: 'wait', onTransition: () => {}, onUnplaced: (u) => told.push(u),
  });
  assert.deepEqual(r.ok ? null : [r.state, r.reason], ['NO_CLUSTER_FOUND', 'no cluster can ever run it: edge1: cannot run container (has process)']);
  assert.equal(calls, 1, 'no second poll: it did not wait');
  assert.equal(told.length, 0, 'not reported as "no room now"');
});

test('planScale: up adds the difference; down removes unplaced, then not yet running, then the newest; finished ones do not count', async () => {
  const { planScale } = await import('../../../orchestrator/commands/scale.ts');
  const i = (instance_n: number, state: string) => ({ instance_n, state });
  assert.deepEqual(planScale([i(0, 'RUNNING')], false, 3), { add: 2, remove: [] });
  assert.deepEqual(planScale([i(0, 'RUNNING'), i(1, 'UNDEPLOYED')], false, 1), { add: 0, remove: [] });
  assert.deepEqual(planScale([i(0, 'RUNNING'), i(1, 'RUNNING'), i(2, 'RUNNING')], false, 1), { add: 0, remove: [2, 1] });
  assert.deepEqual(planScale([i(0, 'RUNNING'), i(1, 'NO_WORKER_CAPACITY'), i(2, 'RUNNING'), i(3, 'CREATING')], false, 1), { add: 0, remove: [1, 3, 2] });
  assert.deepEqual(planScale([i(0, 'RUNNING')], false, 0), { add: 0, remove: [0] });
  // A finished one-shot (COMPLETED, or FAILED for good) is not part of the size.
  assert.deepEqual(planScale([i(0, 'COMPLETED'), i(1, 'FAILED')], true, 1), { add: 1, remove: [] });
  assert.deepEqual(planScale([i(0, 'FAILED')], false, 1), { add: 0, remove: [] }, 'a restarting instance still counts');
});
