import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  schedule, distanceKm, parseGeoPoint, bestFitScore,
  type WorkerCandidate, type PlacementNeed,
} from '../../../orchestrator/cluster/scheduler.ts';
import type { Constraint } from '../../../orchestrator/protocol/root-cluster.ts';

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

const munich = { lat: 48.137, lon: 11.575 };
const berlin = { lat: 52.52, lon: 13.405 };

test('latency: a worker too far for the RTT is rejected with the distance, a near one is kept', () => {
  const ws = [
    worker('muc', { location: munich }),
    worker('ber', { location: berlin, free: { vcpus: 1, memory_mb: 256 } }),
  ];
  // Munich–Berlin is about 504 km: at 100 km per ms of RTT no answer under 5 ms is possible.
  const r = schedule(ws, need({}, [{ type: 'latency', location: '48.14,11.58', threshold: 2 }]), ctx);
  assert.ok(r.ok && r.worker === 'muc', JSON.stringify(r));
  assert.match(r.reason, /ber: 50\d km from 48\.14,11\.58: no RTT under 2 ms possible/);
  assert.doesNotMatch(r.reason, /not evaluated/);
  // Without the constraint, best fit would take the snug Berlin worker.
  const free = schedule(ws, need(), ctx);
  assert.ok(free.ok && free.worker === 'ber');
  // A threshold that 504 km allows keeps Berlin, and best fit picks it again.
  const loose = schedule(ws, need({}, [{ type: 'latency', location: '48.14,11.58', threshold: 10 }]), ctx);
  assert.ok(loose.ok && loose.worker === 'ber');
  const none = schedule([ws[1]!], need({}, [{ type: 'latency', location: '48.14,11.58', threshold: 2 }]), ctx);
  assert.ok(!none.ok && none.status === 'NO_QUALIFIED_WORKER');
  assert.match(none.reason, /ber: 50\d km from .*no RTT under 2 ms possible/);
});

test('latency: a worker without a location does not qualify, and says why', () => {
  const ws = [worker('nowhere', { free: { vcpus: 1, memory_mb: 256 } }), worker('muc', { location: munich })];
  const r = schedule(ws, need({}, [{ type: 'latency', location: '48.14,11.58', threshold: 5 }]), ctx);
  assert.ok(r.ok && r.worker === 'muc');
  assert.match(r.reason, /nowhere: has no location \(latency constraint\)/);
  const none = schedule([ws[0]!], need({}, [{ type: 'latency', location: '48.14,11.58', threshold: 5 }]), ctx);
  assert.ok(!none.ok && none.status === 'NO_QUALIFIED_WORKER' && /nowhere: has no location/.test(none.reason));
});

test('latency by area name has no coordinates to measure from: placed, and the reason says so', () => {
  const r = schedule([worker('w')], need({}, [{ type: 'latency', area: 'muc', threshold: 20 }]), ctx);
  assert.ok(r.ok && r.worker === 'w');
  assert.match(r.reason, /latency constraint for area muc not evaluated \(no coordinates for it\)/);
});

// Vivaldi coordinates in ms: `db` runs on dbhost; `near` is about 1.6 ms from it, `far` about 50 ms.
const coordinates = new Map([
  ['dbhost', { vec: [0, 0] as [number, number], height: 0.1, error: 0.2 }],
  ['near', { vec: [1, 1] as [number, number], height: 0.1, error: 0.2 }],
  ['far', { vec: [30, 40] as [number, number], height: 0.1, error: 0.2 }],
]);
const nearDb = [{ target_microservice_id: 'db', con_constraints: [{ type: 'latency', threshold: 5 }] }];

test('connectivity latency: the worker near the target instance by Vivaldi estimate wins over a better fit', () => {
  const ws = [
    worker('dbhost', { services: new Set(['db']), free: { vcpus: 0, memory_mb: 0 } }),
    worker('near'),
    worker('far', { free: { vcpus: 1, memory_mb: 256 } }),
  ];
  const r = schedule(ws, need({ connectivity: nearDb }), { ...ctx, coordinates });
  assert.ok(r.ok && r.worker === 'near', JSON.stringify(r));
  assert.match(r.reason, /connectivity to db \(latency ≤ 5 ms\): met, estimated RTT 1\.6 ms \(up to 1\.9 ms at the coordinates' error\) to its instance on dbhost/);
  assert.match(r.reason, /far: estimated RTT 50\.2 ms \(up to 60\.2 ms at the coordinates' error\) to the nearest instance of db \(on dbhost\) > 5 ms \(connectivity\)/);
  // The same workers without the connectivity entry: best fit takes `far`.
  const ignored = schedule(ws, need(), { ...ctx, coordinates });
  assert.ok(ignored.ok && ignored.worker === 'far');
  // Only the far worker can run it: no worker qualifies, and the decline says why.
  const dbOnly = worker('dbhost', { services: new Set(['db']), virtualizations: ['container'] });
  const none = schedule([dbOnly, ws[2]!], need({ connectivity: nearDb }), { ...ctx, coordinates });
  assert.ok(!none.ok && none.status === 'NO_QUALIFIED_WORKER');
  assert.match(none.reason, /far: estimated RTT 50\.2 ms .* > 5 ms \(connectivity\)/);
});

test('connectivity latency: near any one instance is enough; the target\'s own worker counts as RTT 0', () => {
  const ws = [
    worker('dbhost', { services: new Set(['db']) }),
    worker('far', { services: new Set(['db']), free: { vcpus: 1, memory_mb: 256 } }),
  ];
  // `far` runs an instance of db itself, so it is "near" however far it is from dbhost.
  const r = schedule(ws, need({ connectivity: nearDb }), { ...ctx, coordinates: new Map() });
  assert.ok(r.ok && r.worker === 'far');
  assert.match(r.reason, /connectivity to db \(latency ≤ 5 ms\): met, far runs an instance of it/);
  const twoDbs = [
    worker('dbhost', { services: new Set(['db']), free: { vcpus: 0, memory_mb: 0 } }),
    worker('far'),
    worker('db2', { services: new Set(['db']), free: { vcpus: 0, memory_mb: 0 } }),
  ];
  const coords2 = new Map([...coordinates, ['db2', { vec: [30, 41] as [number, number], height: 0.1, error: 0.2 }]]);
  const r2 = schedule(twoDbs, need({ connectivity: nearDb }), { ...ctx, coordinates: coords2 });
  assert.ok(r2.ok && r2.worker === 'far');
  assert.match(r2.reason, /estimated RTT 1\.2 ms \(up to 1\.4 ms at the coordinates' error\) to its instance on db2/);
});

test('connectivity latency: an unknown coordinate does not disqualify, and the reason says so', () => {
  const ws = [
    worker('dbhost', { services: new Set(['db']), free: { vcpus: 0, memory_mb: 0 } }),
    worker('fresh', { free: { vcpus: 1, memory_mb: 256 } }),
    worker('near'),
  ];
  const r = schedule(ws, need({ connectivity: nearDb }), { ...ctx, coordinates });
  assert.ok(r.ok && r.worker === 'fresh');
  assert.match(r.reason, /connectivity to db \(latency ≤ 5 ms\): not evaluated, fresh has no Vivaldi coordinate yet/);
  // The target's worker has no coordinate: nothing to measure against.
  const noTarget = schedule(ws.slice(0, 1).concat(worker('far', { free: { vcpus: 1, memory_mb: 256 } })), need({ connectivity: nearDb }),
    { ...ctx, coordinates: new Map([['far', coordinates.get('far')!]]) });
  assert.ok(noTarget.ok && noTarget.worker === 'far');
  assert.match(noTarget.reason, /not evaluated, 1 of its 1 workers have no Vivaldi coordinate/);
  // A coordinate still at its starting error has learned nothing: it sits at the origin, as does the
  // untrained target, and would look 0.2 ms away. It counts as unknown.
  const untrained = { vec: [0, 0] as [number, number], height: 0.1, error: 1.5 };
  const fresh = schedule([ws[0]!, worker('new')], need({ connectivity: nearDb }),
    { ...ctx, coordinates: new Map([['dbhost', untrained], ['new', untrained]]) });
  assert.ok(fresh.ok && fresh.worker === 'new');
  assert.match(fresh.reason, /not evaluated, new has no Vivaldi coordinate yet/);
});

test('connectivity geo: within the distance of a target instance\'s worker', () => {
  const ws = [
    worker('muc-db', { location: munich, services: new Set(['db']), free: { vcpus: 0, memory_mb: 0 } }),
    worker('muc', { location: { lat: 48.2, lon: 11.6 } }),
    worker('ber', { location: berlin, free: { vcpus: 1, memory_mb: 256 } }),
  ];
  const conn = [{ target_microservice_id: 'db', con_constraints: [{ type: 'geo', threshold: 100 }] }];
  const r = schedule(ws, need({ connectivity: conn }), ctx);
  assert.ok(r.ok && r.worker === 'muc', JSON.stringify(r));
  assert.match(r.reason, /connectivity to db \(geo ≤ 100 km\): met, distance 7\.\d km to its instance on muc-db/);
  assert.match(r.reason, /ber: distance 50\d km to the nearest instance of db \(on muc-db\) > 100 km \(connectivity\)/);
  const ignored = schedule(ws, need(), ctx);
  assert.ok(ignored.ok && ignored.worker === 'ber');
});

test('connectivity to a service with no instance in this cluster: not disqualified, the reason says so', () => {
  const ws = [
    worker('roomy'),
    worker('snug', { free: { vcpus: 1, memory_mb: 256 } }),
    // An instance on a dead worker is going away and does not count.
    worker('dead', { alive: false, services: new Set(['ghost']) }),
  ];
  const conn = [{ target_microservice_id: 'ghost', con_constraints: [{ type: 'latency', threshold: 5 }] }];
  const r = schedule(ws, need({ connectivity: conn }), { ...ctx, coordinates });
  assert.ok(r.ok && r.worker === 'snug');
  assert.match(r.reason, /connectivity to ghost \(latency ≤ 5 ms\): no instance of it in this cluster, not evaluated here/);
});

test('best-fit score is the mean spare fraction', () => {
  assert.equal(bestFitScore(worker('w', { free: { vcpus: 2, memory_mb: 2048 } }), need({ vcpus: 2, memory_mb: 0 })), 0.25);
});
