// Root's choice of cluster for a service with a connectivity constraint, through the instance manager
// with a real store and registry. Two clusters, each a small HTTP server that accepts every offer:
// "munich" with little room and "lisbon" (about 2,000 km away) with much more. Without the target's
// whereabouts, capacity would send the client to lisbon.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AddressAllocator } from '../../../orchestrator/root/addresses.ts';
import { ClusterRegistry } from '../../../orchestrator/root/clusters.ts';
import { InstanceManager } from '../../../orchestrator/root/instances.ts';
import { Metrics } from '../../../orchestrator/root/metrics.ts';
import { SqliteStore } from '../../../orchestrator/root/sqlite-store.ts';
import type { ClusterAggregate, ServiceRecord } from '../../../orchestrator/root/store.ts';
import type { Connectivity, Constraint, Microservice } from '../../../orchestrator/descriptor/types.ts';
import { memoryLogger } from '../../../orchestrator/protocol/log.ts';

const agg = (vcpus: number): ClusterAggregate => ({
  free: { vcpus, memory_mb: 4096, gpus: 0 }, workers_active: 1, virtualizations: ['process'], architectures: ['amd64'],
});

/** A cluster API that accepts every placement after `delayMs` (an offer is a real HTTP round trip). */
async function clusterApi(name: string, delayMs = 0): Promise<{ server: Server; url: string; offers: string[] }> {
  const offers: string[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      if (req.method === 'POST') offers.push((JSON.parse(body) as { service: { svc: string } }).service.svc);
      setTimeout(() => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify(req.method === 'POST' ? { accepted: true, worker_id: `${name}-w1` } : { ok: true }));
      }, delayMs);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, offers };
}

async function setup(offerDelayMs: number) {
  const munich = await clusterApi('munich', offerDelayMs);
  const lisbon = await clusterApi('lisbon', offerDelayMs);
  const store = new SqliteStore(':memory:');
  const reg = new ClusterRegistry(store, Date.now, 15_000);
  const m = new InstanceManager(store, new AddressAllocator(store), reg, memoryLogger(), new Metrics());
  store.insertUser({ id: 'u1', username: 'u', password_hash: 'x', role: 'admin', created_at: 0 });
  store.insertApplication({ id: 'a1', owner: 'u1', name: 'app', namespace: 'ns', desc: '', created_at: 0 });
  const ids = {
    munich: reg.register('munich', '48.14,11.58', munich.url).record.id,
    lisbon: reg.register('lisbon', '38.72,-9.14', lisbon.url).record.id,
  };
  reg.report(ids.munich, agg(2));
  reg.report(ids.lisbon, agg(32));
  let ip = 1;
  const service = (id: string, name: string, constraints: Constraint[], connectivity: Connectivity[] = [], vcpus = 1): ServiceRecord => {
    const s: ServiceRecord = {
      id, app_id: 'a1', owner: 'u1', name, namespace: 'ns',
      spec: { virtualization: 'process', vcpus, memory: 64, vgpus: 0, constraints, connectivity, cmd: ['sleep', '1'] } as unknown as Microservice,
      rr_ip: `10.30.0.${ip++}`, rr_ip_v6: `fdff::${ip++}`, closest_ip: `10.30.0.${ip++}`, closest_ip_v6: `fdff::${ip++}`, next_n: 0, created_at: 0,
    };
    store.insertService(s);
    return s;
  };
  const placed = (serviceId: string) => store.listInstances(serviceId).map((i) => [i.state, i.cluster_id, i.reason] as const)[0];
  const until = async (what: string, f: () => boolean): Promise<void> => {
    for (let i = 0; i < 400 && !f(); i++) await new Promise((r) => setTimeout(r, 5));
    assert.ok(f(), `timed out waiting for ${what}`);
  };
  return {
    m, reg, ids, service, placed, until, offers: { munich: munich.offers, lisbon: lisbon.offers },
    close: async () => {
      await m.close();
      reg.close();
      store.close();
      await Promise.all([munich.server, lisbon.server].map((s) => new Promise((r) => s.close(r))));
    },
  };
}

const nearDb = (threshold: number): Connectivity[] => [{ target_microservice_id: 'db', con_constraints: [{ type: 'latency', threshold }] }];

test('a client deployed together with its target goes to the cluster the target went to, not the roomier one', async () => {
  // The offers take a while, so the client's scheduling starts while the target's offer is out.
  const s = await setup(60);
  try {
    const db = s.service('db', 'db', [{ type: 'direct', cluster: 'munich' }]);
    const client = s.service('client', 'client', [], nearDb(50));
    s.m.deploy(db, 'requested by u');
    s.m.deploy(client, 'requested by u');
    await s.until('both placed', () => s.placed('db')?.[0] === 'CLUSTER_SCHEDULED' && s.placed('client')?.[0] === 'CLUSTER_SCHEDULED');
    assert.equal(s.placed('db')?.[1], s.ids.munich);
    assert.equal(s.placed('client')?.[1], s.ids.munich, `client: ${s.placed('client')?.[2]}`);
    assert.deepEqual(s.offers.lisbon, []);

    // A service without the constraint still goes by room.
    const other = s.service('other', 'other', []);
    s.m.deploy(other, 'requested by u');
    await s.until('other placed', () => s.placed('other')?.[0] === 'CLUSTER_SCHEDULED');
    assert.equal(s.placed('other')?.[1], s.ids.lisbon);
  } finally {
    await s.close();
  }
});

test('a cluster too far from the target for the RTT is not offered the client; the reason says why', async () => {
  const s = await setup(0);
  try {
    const db = s.service('db', 'db', [{ type: 'direct', cluster: 'munich' }]);
    s.m.deploy(db, 'requested by u');
    await s.until('db placed', () => s.placed('db')?.[0] === 'CLUSTER_SCHEDULED');
    // munich has 1 vCPU left after db, the client asks for 2; lisbon has room but is ~2,000 km away.
    const client = s.service('client', 'client', [], nearDb(10), 2);
    s.m.deploy(client, 'requested by u');
    await s.until('client unplaced', () => s.placed('client')?.[0] === 'NO_CLUSTER_FOUND');
    const reason = s.placed('client')?.[2] ?? '';
    assert.match(reason, /lisbon: is \d+ km from the nearest cluster running db: no RTT under 10 ms possible/);
    assert.match(reason, /munich: not enough free vCPUs/);
    assert.deepEqual(s.offers.lisbon, []);
  } finally {
    await s.close();
  }
});
