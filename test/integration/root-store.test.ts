// Root's store, the same behaviour on both implementations: SQLite (embedded) and a real PostgreSQL
// 15 started for this file (test/support/postgres.ts). Transactions roll back whole, nested ones to
// their savepoint; claims are atomic; concurrent writers of one row are serialized; a name taken
// twice is a StoreConflict; a reopened database keeps its data and schema.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PgStore } from '../../orchestrator/root/pg-store.ts';
import { SqliteStore } from '../../orchestrator/root/sqlite-store.ts';
import { AddressAllocator } from '../../orchestrator/root/addresses.ts';
import { StoreConflict, type InstanceRecord, type RootStore, type ServiceRecord } from '../../orchestrator/root/store.ts';
import type { Microservice } from '../../orchestrator/descriptor/types.ts';
import { postgresMissing, startPostgres, type TestPostgres } from '../support/postgres.ts';
import { needRoot, unavailable } from '../support/facility.ts';

const svc = (id: string, appId = 'a1'): ServiceRecord => ({
  id, app_id: appId, owner: 'u1', name: id, namespace: 'ns',
  spec: { virtualization: 'process', vcpus: 1, memory: 64, vgpus: 0, constraints: [], connectivity: [], cmd: ['sleep', '1'] } as unknown as Microservice,
  rr_ip: `rr-${id}`, rr_ip_v6: `rr6-${id}`, closest_ip: `c-${id}`, closest_ip_v6: `c6-${id}`, next_n: 0, created_at: 1,
});

async function seed(store: RootStore): Promise<void> {
  await store.insertUser({ id: 'u1', username: 'u', password_hash: 'x', role: 'admin', created_at: 0 });
  await store.insertApplication({ id: 'a1', owner: 'u1', name: 'app', namespace: 'ns', desc: '', created_at: 0 });
}

/** The behaviour every store must have; `open` makes a fresh, empty one; `reopen` the same database again. */
function storeSuite(kind: string, open: () => Promise<RootStore>, reopen: () => Promise<RootStore>): void {
  test(`${kind}: records round-trip with their types (numbers, JSON, nulls) and in creation order`, async () => {
    const store = await open();
    try {
      await seed(store);
      await store.insertApplication({ id: 'a2', owner: 'u1', name: 'app2', namespace: 'ns', desc: 'd', created_at: 0 });
      await store.insertService(svc('s1'));
      assert.deepEqual(await store.service('s1'), svc('s1'));
      assert.deepEqual((await store.listApplications()).map((a) => a.id), ['a1', 'a2'], 'same created_at: insertion order');
      assert.deepEqual(await store.application('a2'), { id: 'a2', owner: 'u1', name: 'app2', namespace: 'ns', desc: 'd', created_at: 0 });
      const big = Date.now();
      await store.insertInstance({
        service_id: 's1', n: 0, state: 'REQUESTED', reason: 'r', cluster_id: null, worker_id: null, instance_ip: '10.30.0.9', instance_ip_v6: 'fdc0:30::9',
        ns_ip: null, ns_ip_v6: null, tunnel_endpoint: null, created_at: big, updated_at: big,
      });
      const i = await store.instance('s1', 0);
      assert.equal(i?.created_at, big, 'milliseconds since the epoch survive as numbers');
      assert.equal(i?.cluster_id, null);
      await store.addInstanceEvent('s1', 0, { state: 'REQUESTED', reason: 'a', ts: big });
      await store.addInstanceEvent('s1', 0, { state: 'NO_CLUSTER_FOUND', reason: 'b', ts: big });
      assert.deepEqual((await store.instanceEvents('s1', 0)).map((e) => e.reason), ['a', 'b']);
      assert.deepEqual([...(await store.countInstancesByState())], [['REQUESTED', 1]]);
      await store.upsertCluster({ id: 'c1', name: 'edge', location: '', api_url: 'http://x', token: 't', registered_at: 1, last_seen: 2, aggregate: null });
      await store.touchCluster('c1', 3, { free: { vcpus: 1, memory_mb: 2, gpus: 0 }, workers_active: 1, virtualizations: ['process'], architectures: [] });
      await store.touchCluster('c1', 4, null);
      const c = await store.cluster('c1');
      assert.equal(c?.last_seen, 4);
      assert.equal(c?.aggregate?.free.memory_mb, 2, 'a report without an aggregate keeps the last one');
    } finally {
      await store.close();
    }
  });

  test(`${kind}: a failed transaction leaves nothing; a failed nested one only its own writes`, async () => {
    const store = await open();
    try {
      await seed(store);
      await assert.rejects(store.transaction(async () => {
        await store.insertService(svc('s1'));
        await store.claimAddress({ address: '10.30.0.1', family: 4, kind: 'rr', service_id: 's1', instance_n: null });
        throw new Error('boom');
      }), /boom/);
      assert.equal(await store.service('s1'), undefined);
      assert.equal(await store.addressOwner('10.30.0.1'), undefined);
      await store.transaction(async () => {
        await store.insertService(svc('s2'));
        await assert.rejects(store.transaction(async () => {
          await store.insertService(svc('s3'));
          throw new Error('inner');
        }), /inner/);
      });
      assert.ok(await store.service('s2'));
      assert.equal(await store.service('s3'), undefined);
    } finally {
      await store.close();
    }
  });

  test(`${kind}: a taken name is a StoreConflict; a claim is check-and-set; the first initSetting wins`, async () => {
    const store = await open();
    try {
      await seed(store);
      await assert.rejects(store.insertUser({ id: 'u2', username: 'u', password_hash: 'x', role: 'user', created_at: 0 }), StoreConflict);
      const a = { address: '10.30.0.5', family: 4 as const, kind: 'rr' as const, service_id: 's', instance_n: null };
      const claims = await Promise.all(Array.from({ length: 20 }, (_, k) => store.transaction(() => store.claimAddress({ ...a, service_id: `s${k}` }))));
      assert.equal(claims.filter(Boolean).length, 1, 'exactly one of 20 concurrent claims of one address wins');
      assert.equal(await store.initSetting('k', 'first'), 'first');
      assert.equal(await store.initSetting('k', 'second'), 'first');
    } finally {
      await store.close();
    }
  });

  test(`${kind}: concurrent deploys take distinct instance numbers; allocators never share an address; a locked row waits`, async () => {
    const store = await open();
    try {
      await seed(store);
      await store.insertService(svc('s1'));
      // Two allocators over one database stand for two root replicas (each has its own cursor).
      const allocators = [await new AddressAllocator(store).load(), await new AddressAllocator(store).load()];
      const made = await Promise.all(Array.from({ length: 40 }, async (_, k) => {
        const n = (await store.takeInstanceNumber('s1'))!;
        const ip = await store.transaction(() => allocators[k % 2]!.allocate(4, 'instance', 's1', n));
        return { n, ip };
      }));
      assert.deepEqual(made.map((m) => m.n).sort((x, y) => x - y), Array.from({ length: 40 }, (_, k) => k));
      assert.equal(new Set(made.map((m) => m.ip)).size, 40, 'no address handed out twice');
      assert.equal((await store.service('s1'))?.next_n, 40);
      await store.updateService({ ...svc('s1'), name: 'renamed' });
      assert.equal((await store.service('s1'))?.next_n, 40, 'an update from an older record keeps the counter');
      assert.equal(await store.takeInstanceNumber('nope'), undefined);
      const taken = await store.takeInstanceNumberOf('s1', 'u1');
      assert.deepEqual(taken && { n: taken.n, name: taken.service.name, next_n: taken.service.next_n, spec: taken.service.spec, app: taken.app, appns: taken.appns },
        { n: 40, name: 'renamed', next_n: 41, spec: svc('s1').spec, app: 'app', appns: 'ns' });
      assert.equal(await store.takeInstanceNumberOf('s1', 'someone-else'), undefined);
      assert.equal((await store.service('s1'))?.next_n, 41, 'a take refused to a non-owner takes nothing');
      assert.equal((await store.takeInstanceNumberOf('s1'))?.n, 41, 'without an owner (an admin) any service');
      // A burst (PostgreSQL takes it in one statement per service and owner): distinct numbers, each with its own record.
      const burst = await Promise.all(Array.from({ length: 10 }, (_, k) => store.takeInstanceNumberOf('s1', k % 3 ? undefined : 'u1')));
      assert.deepEqual(burst.map((b) => b!.n).sort((x, y) => x - y), Array.from({ length: 10 }, (_, k) => 42 + k));
      assert.ok(burst.every((b) => b!.service.next_n === b!.n + 1));
      assert.equal((await store.service('s1'))?.next_n, 52);
      // Rows read FOR UPDATE are taken one transaction after the other.
      const order: string[] = [];
      await Promise.all(['x', 'y'].map((tag) => store.transaction(async () => {
        await store.serviceForUpdate('s1');
        order.push(`${tag} in`);
        await new Promise((r) => setTimeout(r, 30));
        order.push(`${tag} out`);
      })));
      // Whichever got the row first finished before the other went in.
      const first = order[0]!.split(' ')[0];
      const second = first === 'x' ? 'y' : 'x';
      assert.deepEqual(order, [`${first} in`, `${first} out`, `${second} in`, `${second} out`]);
    } finally {
      await store.close();
    }
  });

  test(`${kind}: a deploy's write claims both addresses or writes nothing; a placement is compare-and-set; one read gives what scheduling needs`, async () => {
    const store = await open();
    try {
      await seed(store);
      await store.insertService(svc('s1'));
      const inst = (n: number, v4: string, v6: string): InstanceRecord => ({
        service_id: 's1', n, state: 'REQUESTED', reason: 'r', cluster_id: null, worker_id: null, instance_ip: v4, instance_ip_v6: v6,
        ns_ip: null, ns_ip_v6: null, tunnel_endpoint: null, created_at: 5, updated_at: 5,
      });
      const first = { state: 'REQUESTED' as const, reason: 'r', ts: 5 };
      assert.equal(await store.claimAndCreateInstance(inst(0, '10.30.0.1', 'fdc0:30::1'), first), true);
      assert.equal((await store.addressOwner('fdc0:30::1'))?.instance_n, 0);
      assert.deepEqual((await store.instanceEvents('s1', 0)).map((e) => e.state), ['REQUESTED']);
      // The v6 address is taken: the free v4 one is not claimed, and no instance or history is written.
      assert.equal(await store.claimAndCreateInstance(inst(1, '10.30.0.2', 'fdc0:30::1'), first), false);
      assert.equal(await store.addressOwner('10.30.0.2'), undefined);
      assert.equal(await store.instance('s1', 1), undefined);
      assert.deepEqual(await store.instanceEvents('s1', 1), []);
      // Inside a transaction a lost claim leaves the transaction usable, and its other writes commit.
      await store.transaction(async () => {
        await store.claimAddress({ address: '10.30.0.9', family: 4, kind: 'rr', service_id: 's1', instance_n: null });
        assert.equal(await store.claimAndCreateInstance(inst(1, '10.30.0.1', 'fdc0:30::2'), first), false);
        assert.equal(await store.claimAndCreateInstance(inst(1, '10.30.0.2', 'fdc0:30::2'), first), true);
      });
      assert.ok(await store.addressOwner('10.30.0.9'));
      assert.equal((await store.instance('s1', 1))?.instance_ip, '10.30.0.2');
      // Two allocators (two replicas) deploying at once: every instance gets addresses no other has.
      const allocators = [await new AddressAllocator(store).load(), await new AddressAllocator(store).load()];
      const made = await Promise.all(Array.from({ length: 40 }, async (_, k) => {
        const a = allocators[k % 2]!;
        for (let tries = 0; ; tries++) {
          const i = inst(2 + k, a.next(4, tries > 0), a.next(6, tries > 0));
          if (await store.claimAndCreateInstance(i, first)) return i;
        }
      }));
      assert.equal(new Set(made.map((i) => i.instance_ip)).size, 40, 'no v4 address handed out twice');
      assert.equal(new Set(made.map((i) => i.instance_ip_v6)).size, 40, 'no v6 address handed out twice');
      assert.equal((await store.listInstances('s1')).length, 42);

      const ctx = await store.placementContext('s1', 0);
      assert.deepEqual(ctx && { ...ctx, service: { ...ctx.service, next_n: 0 } }, { instance: await store.instance('s1', 0), service: svc('s1'), app: 'app', appns: 'ns' });
      assert.equal(await store.placementContext('s1', 999), undefined);
      assert.equal(await store.placementContext('nope', 0), undefined);

      // Compare and set: written only while the stored instance has the expected state and cluster.
      const placed = { ...inst(0, '10.30.0.1', 'fdc0:30::1'), state: 'CLUSTER_SCHEDULED' as const, cluster_id: 'c1', worker_id: 'w1', reason: 'placed', updated_at: 6 };
      const event = { state: 'CLUSTER_SCHEDULED' as const, reason: 'placed', ts: 6 };
      assert.equal(await store.recordTransition(placed, event, { state: 'NO_CLUSTER_FOUND', cluster_id: null }), false);
      assert.equal((await store.instance('s1', 0))?.state, 'REQUESTED');
      assert.deepEqual((await store.instanceEvents('s1', 0)).map((e) => e.state), ['REQUESTED'], 'no history entry for a write that did not happen');
      assert.equal(await store.recordTransition(placed, event, { state: 'REQUESTED', cluster_id: null }), true);
      assert.equal((await store.instance('s1', 0))?.cluster_id, 'c1');
      assert.deepEqual((await store.instanceEvents('s1', 0)).map((e) => e.state), ['REQUESTED', 'CLUSTER_SCHEDULED']);
      assert.equal(await store.recordTransition(placed, event, { state: 'REQUESTED', cluster_id: null }), false, 'a second placement finds it moved on');
      // Several at once (PostgreSQL runs a burst as one statement): each written by its own expectation.
      const burst = await Promise.all(made.slice(0, 6).map((m, k) => store.recordTransition(
        { ...m, state: 'CLUSTER_SCHEDULED', cluster_id: `c${k}`, worker_id: 'w', reason: `placed "${k}", {x}`, updated_at: 7 },
        { state: 'CLUSTER_SCHEDULED', reason: `placed "${k}", {x}`, ts: 7 }, { state: k % 2 ? 'REQUESTED' : 'NO_CLUSTER_FOUND', cluster_id: null })));
      assert.deepEqual(burst, [false, true, false, true, false, true]);
      const after = await Promise.all(made.slice(0, 6).map((m) => store.instance('s1', m.n)));
      assert.deepEqual(after.map((i) => [i?.cluster_id, i?.reason]), made.slice(0, 6).map((_, k) => (k % 2 ? [`c${k}`, `placed "${k}", {x}`] : [null, 'r'])));
      assert.deepEqual((await store.instanceEvents('s1', made[1]!.n)).map((e) => e.reason), ['r', 'placed "1", {x}']);
      const contexts = await Promise.all([store.placementContext('s1', 1), store.placementContext('s1', 999), store.placementContext('s1', 0)]);
      assert.deepEqual(contexts.map((c) => c?.instance.n), [1, undefined, 0]);
    } finally {
      await store.close();
    }
  });

  test(`${kind}: a reopened database keeps data and schema (migrations run once)`, async () => {
    const store = await open();
    await seed(store);
    await store.setSetting('x', '1');
    await store.close();
    const again = await reopen();
    try {
      assert.equal(await again.getSetting('x'), '1');
      assert.equal((await again.listUsers()).length, 1);
    } finally {
      await again.close();
    }
  });
}

describe('SQLite store', () => {
  let dir = '';
  let n = 0;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'canopy-store-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  storeSuite('sqlite', async () => new SqliteStore(join(dir, `db${++n}.sqlite`)), async () => new SqliteStore(join(dir, `db${n}.sqlite`)));
});

describe('PostgreSQL store', { skip: unavailable(needRoot() ?? postgresMissing()) }, () => {
  let pg: TestPostgres | undefined;
  let n = 0;
  before(async () => {
    pg = await startPostgres();
  });
  after(async () => {
    await pg?.stop();
  });
  /** A database of its own per test, so each starts empty. */
  const fresh = async (): Promise<RootStore> => {
    const admin = await PgStore.open(pg!.url);
    await (admin.pool.query(`CREATE DATABASE t${++n}`));
    await admin.close();
    return PgStore.open(pg!.url.replace(/\/canopy$/, `/t${n}`));
  };
  storeSuite('postgres', fresh, () => PgStore.open(pg!.url.replace(/\/canopy$/, `/t${n}`)));

  test('postgres: an unreachable server is a clear error naming it, without the password', async () => {
    await assert.rejects(PgStore.open(`postgres://postgres:secret@127.0.0.1:${pg!.port + 1}/canopy`), (err: Error) => {
      assert.match(err.message, /cannot reach PostgreSQL at postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/canopy/);
      assert.doesNotMatch(err.message, /secret/);
      return true;
    });
  });
});
