import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  buildRoute, parsePorts, needOf, deployOrder, newInstance, storeInstance, loadInstance,
} from '../../../orchestrator/cluster/placements.ts';
import type { PlacementOffer } from '../../../orchestrator/protocol/root-cluster.ts';
import { parseServiceRoute } from '../../../proxy/route-messages.ts';

const offer = (n: number, micro: PlacementOffer['service']['microservice'] = {}): PlacementOffer => ({
  service: {
    service_id: 's1', app: 'App', appns: 'ns', svc: 'web', svcns: 'ns', rr_ip: '10.30.0.10', rr_ip_v6: 'FDC0:30::A', closest_ip: null,
    microservice: { virtualization: 'process', cmd: ['python3', '-m', 'http.server'], args: ['80'], memory: 64, vcpus: 0.2, port: '8080:80/tcp;53/udp;9000', ...micro },
  },
  instance_n: n, instance_ip: `10.30.1.${n + 1}`, instance_ip_v6: null,
});

test('ports: container side of each mapping, with protocol', () => {
  assert.deepEqual(parsePorts('8080:80/tcp;53/udp;9000'), [{ port: 80, proto: 'tcp' }, { port: 53, proto: 'udp' }, { port: 9000, proto: 'tcp' }]);
  assert.deepEqual(parsePorts(''), []);
  assert.deepEqual(parsePorts('abc;70000;0'), []);
  assert.deepEqual(parsePorts('80;80/tcp'), [{ port: 80, proto: 'tcp' }]);
});

test('a route lists only RUNNING instances that are reachable, and passes the semantic layer validation', () => {
  const a = newInstance(offer(0), 'RUNNING', 'x');
  a.worker = 'w1';
  a.ns_ip = '10.18.0.2';
  const b = newInstance(offer(1), 'RUNNING', 'x');
  b.worker = 'w2'; // its worker has no tunnel endpoint yet
  b.ns_ip = '10.18.1.2';
  const c = newInstance(offer(2), 'CREATING', 'x');
  c.worker = 'w1';
  c.ns_ip = '10.18.0.3';
  const d = newInstance(offer(3), 'RUNNING', 'x');
  d.worker = 'w1'; // no namespace address (no net manager)
  const route = buildRoute([d, c, b, a], (w) => (w === 'w1' ? '198.18.0.1:50103' : undefined), 'c-1')!;
  assert.equal(route.name, 'app.ns.web.ns');
  assert.equal(route.rr_ip_v6, 'fdc0:30::a');
  assert.deepEqual(route.instances.map((i) => i.n), [0]);
  assert.deepEqual(route.ports, [{ port: 80, proto: 'tcp' }, { port: 53, proto: 'udp' }, { port: 9000, proto: 'tcp' }]);
  assert.deepEqual(parseServiceRoute(JSON.parse(JSON.stringify(route))), route);
  assert.equal(buildRoute([], () => undefined, null), undefined);
});

test('an instance its worker reports overloaded stays in the route, marked unhealthy', () => {
  const mk = (n: number, w: string): ReturnType<typeof newInstance> => {
    const i = newInstance(offer(n), 'RUNNING', 'x');
    i.worker = w;
    i.ns_ip = `10.18.${n}.2`;
    return i;
  };
  const a = mk(0, 'w1'), b = mk(1, 'w2');
  b.overloaded = 'CPU throttled';
  const route = buildRoute([a, b], () => '198.18.0.1:50103', 'c-1')!;
  assert.deepEqual(route.instances.map((i) => [i.n, i.healthy]), [[0, true], [1, false]]);
  b.overloaded = undefined;
  assert.ok(buildRoute([a, b], () => '198.18.0.1:50103', 'c-1')!.instances.every((i) => i.healthy));
});

test('deploy orders and needs come from the descriptor microservice', () => {
  const o = deployOrder(offer(4, { one_shot: true, environment: ['A=1'] }));
  assert.deepEqual(o.spec.cmd, ['python3', '-m', 'http.server']);
  assert.deepEqual(o.spec.args, ['80']);
  assert.equal(o.spec.one_shot, true);
  assert.equal(o.instance_ip, '10.30.1.5');
  assert.equal(o.instance_ip_v6, undefined);
  assert.deepEqual(needOf(offer(0, { vcpus: -3, memory: Number.NaN, constraints: [{ type: 'anti_affinity' }] })),
    { service_id: 's1', virtualization: 'process', vcpus: 0, memory_mb: 0, constraints: [{ type: 'anti_affinity' }], connectivity: [] });
  assert.equal(needOf(offer(0, { virtualization: undefined })).virtualization, 'container');
});

test('the need carries the offer\'s connectivity, leaving out malformed entries', () => {
  const good = { target_microservice_id: 'db', con_constraints: [{ type: 'latency', threshold: 5 }, { type: 'geo', threshold: 100 }] };
  const junk = [
    null, 'db', { target_microservice_id: '', con_constraints: [{ type: 'geo', threshold: 1 }] },
    { target_microservice_id: 'x' }, { target_microservice_id: 'y', con_constraints: [{ type: 'latency', threshold: 'near' }] },
  ];
  const n = needOf(offer(0, { connectivity: [good, ...junk] as PlacementOffer['service']['microservice']['connectivity'] }));
  assert.deepEqual(n.connectivity, [good]);
  assert.deepEqual(needOf(offer(0, { connectivity: 'db' as unknown as [] })).connectivity, []);
});

test('instances survive a save and load with their history', () => {
  const i = newInstance(offer(0), 'CLUSTER_SCHEDULED', 'offered');
  i.lifecycle.to('NODE_SCHEDULED', 'placed on w1', 10);
  i.lifecycle.to('RUNNING', 'started', 20);
  i.worker = 'w1';
  i.ns_ip = '10.18.0.2';
  const back = loadInstance(JSON.parse(JSON.stringify(storeInstance(i))));
  assert.equal(back.lifecycle.state, 'RUNNING');
  assert.deepEqual(back.lifecycle.history, i.lifecycle.history);
  assert.equal(back.worker, 'w1');
  assert.equal(back.ns_ip, '10.18.0.2');
});
