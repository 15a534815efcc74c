// Root's choice of cluster for a service with a connectivity constraint, through the instance manager
// with a real store and registry. Two clusters behind a fake ClusterLink that accepts every offer:
// "munich" with little room and "lisbon" (about 2,000 km away) with much more. Without the target's
// whereabouts, capacity would send the client to lisbon.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AddressAllocator } from '../../../orchestrator/root/addresses.ts';
import { ClusterRegistry } from '../../../orchestrator/root/clusters.ts';
import type { ClusterLink } from '../../../orchestrator/root/cluster-client.ts';
import { InstanceManager } from '../../../orchestrator/root/instances.ts';
import { Metrics } from '../../../orchestrator/root/metrics.ts';
import { SqliteStore } from '../../../orchestrator/root/sqlite-store.ts';
import type { ClusterAggregate, ServiceRecord } from '../../../orchestrator/root/store.ts';
import type { Connectivity, Constraint, Microservice } from '../../../orchestrator/descriptor/types.ts';
import { memoryLogger } from '../../../orchestrator/protocol/log.ts';

const agg = (vcpus: number): ClusterAggregate => ({
  free: { vcpus, memory_mb: 4096, gpus: 0 }, workers_active: 1, virtualizations: ['process'], architectures: ['amd64'],
});

/**
 * The clusters, as a fake ClusterLink: each accepts every placement after `delayMs` (as an offer
 * over HTTP takes a round trip), and the services offered to each are written down.
 */
function clusterLink(delayMs: number): { link: ClusterLink; offers: { munich: string[]; lisbon: string[] } } {
  const offers = { munich: [] as string[], lisbon: [] as string[] };
  const link: ClusterLink = {
    offer: async (c, o) => {
      offers[c.name as keyof typeof offers].push(o.service.svc);
      await new Promise((r) => setTimeout(r, delayMs));
      return { accepted: true, worker_id: `${c.name}-w1` };
    },
    remove: async () => {},
    pushRoute: async () => {},
    pushPeers: async () => {},
  };
  return { link, offers };
}

async function setup(offerDelayMs: number) {
  const { link, offers } = clusterLink(offerDelayMs);
  const store = new SqliteStore(':memory:');
  const reg = await new ClusterRegistry(store, Date.now, 15_000).load();
  const m = new InstanceManager(store, await new AddressAllocator(store).load(), reg, memoryLogger(), new Metrics(), { link });
  await store.insertUser({ id: 'u1', username: 'u', password_hash: 'x', role: 'admin', created_at: 0 });
  await store.insertApplication({ id: 'a1', owner: 'u1', name: 'app', namespace: 'ns', desc: '', created_at: 0 });
  const ids = {
    munich: (await reg.register('munich', '48.14,11.58', 'http://unused.invalid/')).record.id,
    lisbon: (await reg.register('lisbon', '38.72,-9.14', 'http://unused.invalid/')).record.id,
  };
  await reg.report(ids.munich, agg(2));
  await reg.report(ids.lisbon, agg(32));
  let ip = 1;
  const service = async (id: string, name: string, constraints: Constraint[], connectivity: Connectivity[] = [], vcpus = 1): Promise<ServiceRecord> => {
    const s: ServiceRecord = {
      id, app_id: 'a1', owner: 'u1', name, namespace: 'ns',
      spec: { virtualization: 'process', vcpus, memory: 64, vgpus: 0, constraints, connectivity, cmd: ['sleep', '1'] } as unknown as Microservice,
      rr_ip: `10.30.0.${ip++}`, rr_ip_v6: `fdff::${ip++}`, closest_ip: `10.30.0.${ip++}`, closest_ip_v6: `fdff::${ip++}`, next_n: 0, created_at: 0,
    };
    await store.insertService(s);
    return s;
  };
  const placed = async (serviceId: string) => (await store.listInstances(serviceId)).map((i) => [i.state, i.cluster_id, i.reason] as const)[0];
  const until = async (what: string, f: () => boolean | Promise<boolean>): Promise<void> => {
    for (let i = 0; i < 400 && !(await f()); i++) await new Promise((r) => setTimeout(r, 5));
    assert.ok(await f(), `timed out waiting for ${what}`);
  };
  return {
    m, reg, ids, service, placed, until, offers,
    close: async () => {
      await m.close();
      reg.close();
      await store.close();
    },
  };
}

const nearDb = (threshold: number): Connectivity[] => [{ target_microservice_id: 'db', con_constraints: [{ type: 'latency', threshold }] }];

test('a client deployed together with its target goes to the cluster the target went to, not the roomier one', async () => {
  // The offers take a while, so the client's scheduling starts while the target's offer is out.
  const s = await setup(60);
  try {
    const db = await s.service('db', 'db', [{ type: 'direct', cluster: 'munich' }]);
    const client = await s.service('client', 'client', [], nearDb(50));
    await s.m.deploy(db, 'requested by u');
    await s.m.deploy(client, 'requested by u');
    await s.until('both placed', async () => (await s.placed('db'))?.[0] === 'CLUSTER_SCHEDULED' && (await s.placed('client'))?.[0] === 'CLUSTER_SCHEDULED');
    assert.equal((await s.placed('db'))?.[1], s.ids.munich);
    assert.equal((await s.placed('client'))?.[1], s.ids.munich, `client: ${(await s.placed('client'))?.[2]}`);
    assert.deepEqual(s.offers.lisbon, []);

    // A service without the constraint still goes by room.
    const other = await s.service('other', 'other', []);
    await s.m.deploy(other, 'requested by u');
    await s.until('other placed', async () => (await s.placed('other'))?.[0] === 'CLUSTER_SCHEDULED');
    assert.equal((await s.placed('other'))?.[1], s.ids.lisbon);
  } finally {
    await s.close();
  }
});

test('a cluster too far from the target for the RTT is not offered the client; the reason says why', async () => {
  const s = await setup(0);
  try {
    const db = await s.service('db', 'db', [{ type: 'direct', cluster: 'munich' }]);
    await s.m.deploy(db, 'requested by u');
    await s.until('db placed', async () => (await s.placed('db'))?.[0] === 'CLUSTER_SCHEDULED');
    // munich has 1 vCPU left after db, the client asks for 2; lisbon has room but is ~2,000 km away.
    const client = await s.service('client', 'client', [], nearDb(10), 2);
    await s.m.deploy(client, 'requested by u');
    await s.until('client unplaced', async () => (await s.placed('client'))?.[0] === 'NO_CLUSTER_FOUND');
    const reason = (await s.placed('client'))?.[2] ?? '';
    assert.match(reason, /lisbon: is \d+ km from the nearest cluster running db: no RTT under 10 ms possible/);
    assert.match(reason, /munich: not enough free vCPUs/);
    assert.deepEqual(s.offers.lisbon, []);
  } finally {
    await s.close();
  }
});
