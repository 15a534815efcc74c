import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  parseRouteMessage, parseClusterToWorker, parseWorkerToCluster, RouteMessageError,
} from '../../../proxy/route-messages.ts';

const route = {
  service_id: 's1', name: 'a.ans.ms2.sns', rr_ip: '10.30.0.2', rr_ip_v6: 'FDC0:30::2', closest_ip: '10.30.0.3',
  closest_ip_v6: null, ports: [{ port: 80 }],
  instances: [{ n: 0, instance_ip: '10.30.1.1', ns_ip: '10.18.1.2', worker_id: 'w2', tunnel_endpoint: '198.18.0.2:50103' }],
};

test('a valid route update survives a JSON round trip with defaults filled in', () => {
  const m = parseRouteMessage(JSON.parse(JSON.stringify({ type: 'route_update', route })));
  assert.equal(m.type, 'route_update');
  if (m.type !== 'route_update') return;
  assert.equal(m.route.default_policy, 'rr');
  assert.equal(m.route.rr_ip_v6, 'fdc0:30::2');
  assert.deepEqual(m.route.ports, [{ port: 80, proto: 'tcp' }]);
  assert.equal(m.route.instances[0]?.healthy, true);
  assert.equal(m.route.instances[0]?.instance_ip_v6, null);
});

test('every malformed field is named by its path', () => {
  const bad: [unknown, string][] = [
    [null, 'message'],
    [{ type: 'nope' }, 'message.type'],
    [{ type: 'route_update', route: { ...route, rr_ip: '10.30.0.300' } }, 'message.route.rr_ip'],
    [{ type: 'route_update', route: { ...route, name: 'a.b.c' } }, 'message.route.name'],
    [{ type: 'route_update', route: { ...route, instances: [{ ...route.instances[0], tunnel_endpoint: 'x:1' }] } },
      'message.route.instances[0].tunnel_endpoint'],
    [{ type: 'route_update', route: { ...route, instances: [route.instances[0], route.instances[0]] } },
      'message.route.instances[1].n'],
    [{ type: 'table_query', query_id: 'q', address: '10.30.0.2', name: 'a.b.c.d' }, 'message'],
    [{ type: 'table_query', query_id: 'q' }, 'message'],
    [{ type: 'route_withdraw', service_id: 's', instances: [1.5] }, 'message.instances[0]'],
    [{ type: 'coordinates', entries: [{ worker_id: 'w', coord: { vec: [1], height: 0, error: 1 } }] },
      'message.entries[0].coord.vec'],
  ];
  for (const [input, path] of bad) {
    assert.throws(() => parseRouteMessage(input), (e: unknown) => e instanceof RouteMessageError && e.path === path,
      `expected error at ${path} for ${JSON.stringify(input)}`);
  }
});

test('direction is enforced', () => {
  assert.throws(() => parseClusterToWorker({ type: 'interest_add', service_id: 's' }), RouteMessageError);
  assert.throws(() => parseWorkerToCluster({ type: 'route_withdraw', service_id: 's' }), RouteMessageError);
  assert.equal(parseWorkerToCluster({ type: 'table_query', query_id: '1', name: 'A.ans.ms2.sns' }).type, 'table_query');
});

test('a route in which two instances share an instance IP is rejected, naming the second one', () => {
  const two = (a: Record<string, unknown>, b: Record<string, unknown>): unknown => ({
    type: 'route_update',
    route: { ...route, instances: [{ ...route.instances[0], ...a }, { ...route.instances[0], n: 1, instance_ip: '10.30.1.2', ...b }] },
  });
  const cases: [unknown, string, RegExp][] = [
    [two({}, { instance_ip: '10.30.1.1' }), 'message.route.instances[1].instance_ip', /10\.30\.1\.1 is already used by message\.route\.instances\[0\]\.instance_ip/],
    // The same IPv6 address spelled two ways is still one address.
    [two({ instance_ip_v6: 'fdc0:30::1:1' }, { instance_ip_v6: 'FDC0:30:0:0::1:1' }), 'message.route.instances[1].instance_ip_v6', /already used/],
    // An instance on the service's own rr address would take the policy's traffic.
    [two({}, { instance_ip: '10.30.0.2' }), 'message.route.instances[1].instance_ip', /already used by message\.route\.rr_ip/],
  ];
  for (const [input, path, why] of cases) {
    assert.throws(() => parseRouteMessage(input), (e: unknown) => e instanceof RouteMessageError && e.path === path && why.test(e.message),
      `expected error at ${path} for ${JSON.stringify(input)}`);
  }
  // Distinct addresses still pass.
  assert.equal(parseRouteMessage(two({ instance_ip_v6: 'fdc0:30::1:1' }, { instance_ip_v6: 'fdc0:30::1:2' })).type, 'route_update');
});
