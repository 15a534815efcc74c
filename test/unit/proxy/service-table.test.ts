// The service table's own guard: routes that reach it in process, without the message parser, must not
// leave it half-updated when their addresses clash.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ServiceTable, AddrKind } from '../../../proxy/service-table.ts';
import { ipBytes } from '../../../proxy/address-map.ts';
import { RouteMessageError, type InstanceRoute, type ServiceRoute } from '../../../proxy/route-messages.ts';

function inst(n: number, ip: string, worker = `w${n + 2}`): InstanceRoute {
  return {
    n, instance_ip: ip, instance_ip_v6: null, ns_ip: `10.18.${n + 2}.10`, ns_ip_v6: null,
    worker_id: worker, cluster_id: 'c1', tunnel_endpoint: `198.18.0.${n + 2}:50103`, healthy: true,
  };
}

function route(instances: InstanceRoute[], rr = '10.30.0.2'): ServiceRoute {
  return {
    service_id: 's1', name: 'app.ans.s1.sns', rr_ip: rr, rr_ip_v6: null, closest_ip: '10.30.0.3', closest_ip_v6: null,
    default_policy: 'rr', ports: [], instances,
  };
}

function snapshot(t: ServiceTable): unknown {
  const at = (ip: string): unknown => {
    const e = t.byAddress.getBytes(ipBytes(ip));
    return e ? { kind: e.kind, service: e.service.id, n: e.instance?.n ?? null, alive: e.instance?.alive ?? null } : null;
  };
  return {
    route: t.byId.get('s1')?.route,
    byName: t.byName.get('app.ans.s1.sns')?.id,
    instances: t.byId.get('s1')?.instances.map((i) => [i.n, i.slot, i.gen, i.alive]),
    slots: t.slots.map((i) => i?.n ?? null),
    addrs: ['10.30.0.2', '10.30.0.9', '10.30.0.3', '10.30.1.1', '10.30.1.2', '10.30.1.3'].map(at),
  };
}

test('a route with two instances on one instance IP is refused before anything changes', () => {
  const t = new ServiceTable('w1', (w) => Number(w.slice(1)));
  t.apply(route([inst(0, '10.30.1.1'), inst(1, '10.30.1.2')]));
  const before = snapshot(t);
  assert.deepEqual((before as { addrs: unknown[] }).addrs[3], { kind: AddrKind.Instance, service: 's1', n: 0, alive: true });
  // Changed rr address, a changed instance 1 and a new instance 2 that reuses instance 0's address.
  const bad = route([inst(0, '10.30.1.1'), inst(1, '10.30.1.3', 'w9'), inst(2, '10.30.1.1')], '10.30.0.9');
  assert.throws(() => t.apply(bad), (e: unknown) => e instanceof RouteMessageError && e.path === 'route.instances[2].instance_ip'
    && /10\.30\.1\.1 is already used by route\.instances\[0\]\.instance_ip/.test(e.message));
  assert.deepEqual(snapshot(t), before, 'index, slots and records are as they were');
  // A later good route still applies.
  t.apply(route([inst(0, '10.30.1.1'), inst(1, '10.30.1.3')]));
  assert.equal(t.byAddress.getBytes(ipBytes('10.30.1.3'))?.instance?.n, 1);
  assert.equal(t.byAddress.getBytes(ipBytes('10.30.1.2')), undefined);
});
