import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadOrCreateTunnelKey, tunnelIdForSubnet, validTunnelKey } from '../../../orchestrator/protocol/tunnel-identity.ts';
import { parseClusterToWorker, parseServiceRoute } from '../../../proxy/route-messages.ts';

test('tunnel ids come from the worker subnet and differ between subnets', () => {
  assert.equal(tunnelIdForSubnet('10.18.3.0/24'), 0x0a120300);
  assert.notEqual(tunnelIdForSubnet('10.18.3.0/24'), tunnelIdForSubnet('10.18.4.0/24'));
  assert.throws(() => tunnelIdForSubnet('fdc0:18::/64'), /not an IPv4 subnet/);
  assert.throws(() => tunnelIdForSubnet('0.0.0.0/24'), /no tunnel id/);
});

test('the cluster tunnel key is created once, kept private, and read back unchanged', () => {
  const dir = mkdtempSync(join(tmpdir(), 'canopy-tk-'));
  try {
    const a = loadOrCreateTunnelKey(dir);
    assert.ok(validTunnelKey(a));
    assert.equal(statSync(join(dir, 'tunnel-key.json')).mode & 0o077, 0);
    assert.deepEqual(loadOrCreateTunnelKey(dir), a);
    writeFileSync(join(dir, 'tunnel-key.json'), '{"key_id":1,"key":"short","encrypt":false}');
    assert.throws(() => loadOrCreateTunnelKey(dir), /not a tunnel key/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('peers messages and route tunnel ids are validated', () => {
  const m = parseClusterToWorker({ type: 'peers', entries: [{ worker_id: 'w1', tunnel_id: 5, tunnel_endpoint: '198.18.0.2:50103' }] });
  assert.deepEqual(m, { type: 'peers', entries: [{ worker_id: 'w1', tunnel_id: 5, tunnel_endpoint: '198.18.0.2:50103' }] });
  assert.throws(() => parseClusterToWorker({ type: 'peers', entries: [{ worker_id: 'w1', tunnel_id: 0, tunnel_endpoint: '198.18.0.2:50103' }] }),
    /entries\[0\]\.tunnel_id/);
  const inst = { n: 0, instance_ip: '10.30.0.5', ns_ip: '10.18.0.2', worker_id: 'w1', tunnel_endpoint: '198.18.0.2:50103' };
  const route = { service_id: 's', name: 'a.b.c.d', instances: [{ ...inst, tunnel_id: 7 }] };
  assert.equal(parseServiceRoute(route).instances[0]?.tunnel_id, 7);
  assert.equal(parseServiceRoute({ ...route, instances: [inst] }).instances[0]?.tunnel_id, undefined);
  assert.throws(() => parseServiceRoute({ ...route, instances: [{ ...inst, tunnel_id: 'x' }] }), /tunnel_id/);
});
