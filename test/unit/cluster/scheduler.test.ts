import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  schedule, distanceKm, parseGeoPoint, bestFitScore,
  type WorkerCandidate, type PlacementNeed, type Constraint,
} from '../../../orchestrator/cluster/scheduler.ts';

function worker(id: string, o: Partial<WorkerCandidate> = {}): WorkerCandidate {
  return {
    id,
    alive: true,
    arch: 'amd64',
    virtualizations: ['process'],
    total: { vcpus: 4, memory_mb: 4096 },
    free: { vcpus: 4, memory_mb: 4096 },
    services: new Set(),
    ...o,
  };
}

function need(o: Partial<PlacementNeed> = {}, constraints: Constraint[] = []): PlacementNeed {
  return { service_id: 's1', virtualization: 'process', vcpus: 1, memory_mb: 256, constraints, ...o };
}

const ctx = { clusterName: 'c1' };

test('best fit picks the worker left with the least spare capacity', () => {
  const ws = [
    worker('roomy'),
    worker('snug', { free: { vcpus: 1.5, memory_mb: 512 } }),
    worker('mid', { free: { vcpus: 2, memory_mb: 2048 } }),
  ];
  const r = schedule(ws, need(), ctx);
  assert.equal(r.ok, true);
  assert.ok(r.ok && r.worker === 'snug');
  assert.match(r.reason, /placed on snug: best fit among 3 fitting of 3 workers/);
  assert.match(r.reason, /leaves 0\.50\/4 vCPU, 256\/4096 MB/);
});

test('ties are broken by worker id so the choice is deterministic', () => {
  const r = schedule([worker('b'), worker('a')], need(), ctx);
  assert.ok(r.ok && r.worker === 'a');
});

test('not enough CPU or memory anywhere → NO_WORKER_CAPACITY listing what each lacks', () => {
  const ws = [
    worker('w1', { free: { vcpus: 0.5, memory_mb: 4096 } }),
    worker('w2', { free: { vcpus: 4, memory_mb: 100 } }),
  ];
  const r = schedule(ws, need(), ctx);
  assert.equal(r.ok, false);
  assert.ok(!r.ok && r.status === 'NO_WORKER_CAPACITY');
  assert.match(r.reason, /w1: 0\.50 vCPU free < 1/);
  assert.match(r.reason, /w2: 100 MB free < 256 MB/);
});

test('zero requests fit on a full worker', () => {
  const r = schedule([worker('w1', { free: { vcpus: 0, memory_mb: 0 } })], need({ vcpus: 0, memory_mb: 0 }), ctx);
  assert.ok(r.ok && r.worker === 'w1');
});

test('a worker that cannot run the virtualization never gets it', () => {
  const ws = [worker('w1', { virtualizations: ['process'] }), worker('w2', { virtualizations: ['container', 'process'] })];
  const r = schedule(ws, need({ virtualization: 'container' }), ctx);
  assert.ok(r.ok && r.worker === 'w2');
  const none = schedule([worker('w1')], need({ virtualization: 'container' }), ctx);
  assert.ok(!none.ok && none.status === 'NO_QUALIFIED_WORKER');
  assert.match(none.reason, /w1: cannot run container \(runs process\)/);
});

test('dead workers are skipped', () => {
  const r = schedule([worker('dead', { alive: false, free: { vcpus: 1, memory_mb: 256 } }), worker('live')], need(), ctx);
  assert.ok(r.ok && r.worker === 'live');
  assert.match(r.reason, /dead: not alive/);
});

test('arch constraint', () => {
  const ws = [worker('x86'), worker('pi', { arch: 'arm64' })];
  const r = schedule(ws, need({}, [{ type: 'arch', arch: ['arm64'] }]), ctx);
  assert.ok(r.ok && r.worker === 'pi');
  const none = schedule([worker('x86')], need({}, [{ type: 'arch', arch: ['arm64', 'riscv64'] }]), ctx);
  assert.ok(!none.ok && none.status === 'NO_QUALIFIED_WORKER');
  assert.match(none.reason, /x86: arch amd64 not in \[arm64, riscv64\]/);
});

test('direct constraint: only the named nodes, and only in the named cluster', () => {
  const ws = [worker('h1', { free: { vcpus: 1, memory_mb: 256 } }), worker('h2'), worker('h3')];
  const r = schedule(ws, need({}, [{ type: 'direct', node: 'h2;h3' }]), ctx);
  assert.ok(r.ok && r.worker === 'h2');
  assert.match(r.reason, /h1: not among direct nodes \[h2, h3\]/);
  const other = schedule(ws, need({}, [{ type: 'direct', cluster: 'c2', node: 'h1' }]), ctx);
  assert.ok(!other.ok && other.status === 'NO_QUALIFIED_WORKER');
  assert.match(other.reason, /names cluster c2, this is c1/);
  const here = schedule(ws, need({}, [{ type: 'direct', cluster: 'c1' }]), ctx);
  assert.ok(here.ok && here.worker === 'h1');
});

test('clusters constraint', () => {
  const r = schedule([worker('w')], need({}, [{ type: 'clusters', allowed: ['c7', 'c8'] }]), ctx);
  assert.ok(!r.ok && r.status === 'NO_QUALIFIED_WORKER');
  assert.match(r.reason, /c1 not in allowed \[c7, c8\]/);
  assert.equal(schedule([worker('w')], need({}, [{ type: 'clusters', allowed: ['c1'] }]), ctx).ok, true);
});

test('anti_affinity: at most one instance of the service per worker', () => {
  const ws = [worker('busy', { services: new Set(['s1']), free: { vcpus: 1, memory_mb: 256 } }), worker('other')];
  const r = schedule(ws, need({}, [{ type: 'anti_affinity' }]), ctx);
  assert.ok(r.ok && r.worker === 'other');
  // Without the constraint best fit would stack it on `busy`.
  const stacked = schedule(ws, need(), ctx);
  assert.ok(stacked.ok && stacked.worker === 'busy');
  const none = schedule([ws[0]!], need({}, [{ type: 'anti_affinity' }]), ctx);
  assert.ok(!none.ok && none.status === 'NO_QUALIFIED_WORKER');
  assert.match(none.reason, /anti_affinity/);
});

test('geo: only workers within the threshold; workers without a location do not qualify', () => {
  const munich = { lat: 48.137, lon: 11.575 };
  const berlin = { lat: 52.52, lon: 13.405 };
  const ws = [
    worker('muc', { location: munich, free: { vcpus: 4, memory_mb: 4096 } }),
    worker('ber', { location: berlin, free: { vcpus: 1, memory_mb: 256 } }),
    worker('nowhere'),
  ];
  const r = schedule(ws, need({}, [{ type: 'geo', location: '48.14,11.58', threshold: 100 }]), ctx);
  assert.ok(r.ok && r.worker === 'muc');
  assert.match(r.reason, /ber: 50\d km from 48\.14,11\.58 > 100 km/);
  assert.match(r.reason, /nowhere: has no location/);
  const wide = schedule(ws, need({}, [{ type: 'geo', location: '48.14,11.58', threshold: 1000 }]), ctx);
  assert.ok(wide.ok && wide.worker === 'ber');
});

test('distance and coordinate parsing', () => {
  const d = distanceKm({ lat: 48.137, lon: 11.575 }, { lat: 52.52, lon: 13.405 });
  assert.ok(d > 490 && d < 515, `Munich–Berlin ${d}`);
  assert.deepEqual(parseGeoPoint('48.1, 11.5, 20'), { lat: 48.1, lon: 11.5 });
  assert.equal(parseGeoPoint('north'), undefined);
  assert.equal(parseGeoPoint('91,0'), undefined);
  assert.equal(parseGeoPoint(undefined), undefined);
});

test('excluded workers are neither chosen nor listed', () => {
  const r = schedule([worker('a'), worker('b')], need(), { clusterName: 'c1', exclude: new Set(['a']) });
  assert.ok(r.ok && r.worker === 'b');
  assert.doesNotMatch(r.reason, /a:/);
});

test('no workers at all', () => {
  const r = schedule([], need(), ctx);
  assert.ok(!r.ok && r.status === 'NO_QUALIFIED_WORKER' && /no workers registered/.test(r.reason));
});

test('a long exclusion list is cut short', () => {
  const ws = Array.from({ length: 12 }, (_, i) => worker(`w${String(i).padStart(2, '0')}`, { arch: 'arm64' }));
  const r = schedule(ws, need({}, [{ type: 'arch', arch: ['amd64'] }]), ctx);
  assert.ok(!r.ok);
  assert.match(r.reason, /and 7 more$/);
});

test('latency constraints are noted as not evaluated', () => {
  const r = schedule([worker('w')], need({}, [{ type: 'latency', area: 'muc', threshold: 20 }]), ctx);
  assert.ok(r.ok && /latency constraint not evaluated/.test(r.reason));
});

test('best-fit score is the mean spare fraction', () => {
  assert.equal(bestFitScore(worker('w', { free: { vcpus: 2, memory_mb: 2048 } }), need({ vcpus: 2, memory_mb: 0 })), 0.25);
});
