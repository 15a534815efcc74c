// Root beyond one machine (SPEC §11): root replicas over one real PostgreSQL 15 (started for this
// file), a simulated cluster that fails over between them, and what a user must not notice when the
// leader dies: the other replica answers at once, takes the lease, places an instance deployed during
// the failover exactly once, and shows the same data as before. Then concurrency across replicas
// (one pinned address, many deploys) and a database that is away at start or goes away while root runs.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, sleep } from '../../harness/loopback.ts';
import { SimCluster, placedTwice } from '../../harness/sim-cluster.ts';
import { jsonLogger } from '../../orchestrator/protocol/log.ts';
import { RootServer } from '../../orchestrator/root/server.ts';
import { postgresMissing, startPostgres, type TestPostgres } from '../support/postgres.ts';
import { needRoot, unavailable } from '../support/facility.ts';

const CANOPY = join(import.meta.dirname, '../../bin/canopy.js');
const PASSWORD = 'correct-horse-battery';
const KEY = 'ha-join-key';

interface Replica {
  url: string;
  child: ChildProcess;
  log: () => string;
  exited: Promise<number | null>;
}

async function startReplica(store: string, dir: string): Promise<Replica> {
  const port = await freePort();
  const child = spawn(process.execPath, [CANOPY, 'root', '--port', String(port), '--host', '127.0.0.1', '--data', dir, '--store', store, '--cluster-silence', '4000'], {
    env: { ...process.env, CANOPY_ADMIN_PASSWORD: PASSWORD, CANOPY_CLUSTER_KEY: KEY },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  const url = `http://127.0.0.1:${port}`;
  await waitUntil(`replica on ${port} ready (${out.slice(-300)})`, async () => out.includes('"root ready"'));
  return { url, child, log: () => out, exited };
}

async function waitUntil(what: string, f: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await f().catch(() => false))) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

async function call(url: string, method: string, path: string, token?: string, body?: unknown): Promise<{ status: number; body: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any -- test client
  const res = await fetch(`${url}${path}`, {
    method, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

async function login(url: string): Promise<string> {
  const r = await call(url, 'POST', '/api/v1/auth/login', undefined, { username: 'admin', password: PASSWORD });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.token as string;
}

async function isLeader(url: string): Promise<boolean> {
  const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(2000) })).text();
  return /canopy_root_leader\{[^}]*\} 1/.test(text);
}

const sla = (name: string, ms: Record<string, unknown> = {}) => ({
  sla_version: 'v2.0',
  applications: [{
    applicationID: '', application_name: name, application_namespace: 'ha',
    microservices: [{ microservice_name: 'svc', microservice_namespace: 'ha', virtualization: 'process', cmd: ['sleep', '1000'], memory: 10, vcpus: 0.01, ...ms }],
  }],
});

/** Everything a user can see, minus what moves by itself (liveness, retry times). */
async function snapshot(url: string, token: string): Promise<unknown> {
  const apps = (await call(url, 'GET', '/api/v1/applications', token)).body as { applicationID: string; microservices: { microserviceID: string }[] }[];
  const services = [];
  for (const a of apps) {
    for (const m of a.microservices) {
      const s = (await call(url, 'GET', `/api/v1/service/${m.microserviceID}`, token)).body;
      services.push({ ...s, instances: s.instances.map((i: Record<string, unknown>) => ({ ...i, next_retry: null, last_retry: null, placeable: null })) });
    }
  }
  const users = (await call(url, 'GET', '/api/v1/users', token)).body;
  return { apps, services, users };
}

async function instanceOf(url: string, token: string, sid: string, n: number): Promise<{ state: string; history: { state: string }[]; cluster_id: string | null; instance_ip: string }> {
  return (await call(url, 'GET', `/api/v1/service/${sid}`, token)).body.instances.find((i: { instance_n: number }) => i.instance_n === n);
}

describe('root replicas over one PostgreSQL', { skip: unavailable(needRoot() ?? postgresMissing()) }, () => {
  let pg: TestPostgres;
  let dir: string;
  const replicas: Replica[] = [];
  const sims: SimCluster[] = [];
  const servers: RootServer[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'canopy-ha-'));
    pg = await startPostgres();
  });
  after(async () => {
    for (const s of sims) await s.close().catch(() => undefined);
    for (const r of replicas) r.child.kill('SIGKILL');
    await Promise.all(replicas.map((r) => r.exited));
    for (const s of servers) await s.close().catch(() => undefined);
    await pg?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the leader is SIGKILLed: the other replica answers at once, takes over, places an instance deployed meanwhile once, and nothing is lost', async () => {
    const a = await startReplica(pg.url, join(dir, 'a'));
    replicas.push(a);
    const b = await startReplica(pg.url, join(dir, 'b'));
    replicas.push(b);
    await waitUntil('one leader', async () => (await isLeader(a.url)) !== (await isLeader(b.url)));
    const [leader, follower] = (await isLeader(a.url)) ? [a, b] : [b, a];
    const cluster = await SimCluster.start({ root: `${leader.url},${follower.url}`, joinKey: KEY, name: 'edge', reportIntervalMs: 500 });
    sims.push(cluster);

    // A token from one replica works at the other: the signing secret is in the database.
    const token = await login(leader.url);
    const created = await call(follower.url, 'POST', '/api/v1/application?deploy=true', token, sla('shop'));
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const sid = created.body.services[0].microserviceID as string;
    await waitUntil('instance 0 placed (the follower handed it to the leader)', async () => (await instanceOf(follower.url, token, sid, 0))?.state === 'CLUSTER_SCHEDULED');
    const before = await snapshot(follower.url, token);

    leader.child.kill('SIGKILL');
    const killed = Date.now();
    await leader.exited;
    // At once: reads and writes on the follower, while nobody holds the lease yet.
    const read = await call(follower.url, 'GET', '/api/v1/applications', token);
    assert.equal(read.status, 200);
    const during = await call(follower.url, 'POST', `/api/v1/service/${sid}/instance`, token);
    assert.equal(during.status, 202, JSON.stringify(during.body));
    const n = during.body.instance_n as number;
    await waitUntil('the follower takes the lease', () => isLeader(follower.url), 15_000);
    const tookOver = (Date.now() - killed) / 1000;
    process.stdout.write(`# failover: the follower took the lease ${tookOver.toFixed(2)} s after the leader's SIGKILL\n`);
    await waitUntil('the instance deployed during the failover is placed', async () => (await instanceOf(follower.url, token, sid, n))?.state === 'CLUSTER_SCHEDULED', 15_000);

    const inst = await instanceOf(follower.url, token, sid, n);
    assert.equal(inst.history.filter((h) => h.state === 'CLUSTER_SCHEDULED').length, 1, 'placed once');
    assert.deepEqual(placedTwice(sims), [], 'no instance on two clusters');
    assert.equal(cluster.offers.get(`${sid}/${n}`), 1, 'offered once');
    // Every application, service, instance, address and user as before, plus the new instance.
    const now = (await snapshot(follower.url, token)) as { services: { instances: { instance_n: number }[] }[] };
    for (const s of now.services) s.instances = s.instances.filter((i) => i.instance_n !== n);
    assert.deepEqual(now, before);
  });

  test('two replicas × 50 concurrent deploys pinning one rr_ip: exactly one succeeds; 1000 instances over both: no address twice', async () => {
    const log = jsonLogger({ component: 'root' }, 'error');
    for (const name of ['c1', 'c2']) {
      servers.push(await RootServer.start({
        dataDir: join(dir, name), store: pg.url, host: '127.0.0.1', port: 0, adminPassword: PASSWORD, clusterKey: KEY, log, announce: () => undefined,
      }));
    }
    const [r1, r2] = servers as [RootServer, RootServer];
    sims.push(await SimCluster.start({ root: `${r1.url},${r2.url}`, joinKey: KEY, name: 'bulk' }));
    const token = await login(r1.url);
    const pinned = await Promise.all(Array.from({ length: 100 }, (_, k) =>
      call(k % 2 ? r2.url : r1.url, 'POST', '/api/v1/application', token, sla(`pin${k}`, { addresses: { rr_ip: '10.30.200.1' } }))));
    const codes = pinned.map((p) => p.status);
    assert.equal(codes.filter((c) => c === 201).length, 1, `statuses: ${JSON.stringify(codes)}`);
    // The others are told the address is taken: by the descriptor check (422) once the winner
    // committed, or by the write itself (409) when they raced it.
    for (const p of pinned.filter((x) => x.status !== 201)) {
      assert.ok(p.status === 409 || p.status === 422, JSON.stringify(p.body));
      assert.match(JSON.stringify(p.body), /10\.30\.200\.1 is already taken/);
    }

    const app = await call(r1.url, 'POST', '/api/v1/application', token, sla('bulk'));
    const sid = app.body.services[0].microserviceID as string;
    let next = 0;
    const statuses: number[] = [];
    await Promise.all(Array.from({ length: 50 }, async () => {
      while (next < 1000) {
        const k = next++;
        statuses.push((await call(k % 2 ? r2.url : r1.url, 'POST', `/api/v1/service/${sid}/instance`, token)).status);
      }
    }));
    assert.ok(statuses.every((s) => s === 202), `all accepted: ${[...new Set(statuses)].join(',')}`);
    const instances = (await call(r2.url, 'GET', `/api/v1/service/${sid}`, token)).body.instances as { instance_n: number; instance_ip: string; instance_ip_v6: string }[];
    assert.equal(instances.length, 1000);
    assert.equal(new Set(instances.map((i) => i.instance_n)).size, 1000, 'instance numbers unique');
    const all = (await call(r2.url, 'GET', '/api/v1/applications', token)).body as { microservices: { microserviceID: string }[] }[];
    const addresses: string[] = [];
    for (const a of all) {
      for (const m of a.microservices) {
        const s = (await call(r1.url, 'GET', `/api/v1/service/${m.microserviceID}`, token)).body;
        addresses.push(s.rr_ip, s.rr_ip_v6, s.closest_ip, s.closest_ip_v6, ...s.instances.flatMap((i: { instance_ip: string; instance_ip_v6: string }) => [i.instance_ip, i.instance_ip_v6]));
      }
    }
    assert.equal(new Set(addresses).size, addresses.length, 'no address handed out twice');
    await waitUntil('all 1000 placed', async () => {
      const list = (await call(r1.url, 'GET', `/api/v1/service/${sid}`, token)).body.instances as { state: string }[];
      return list.every((i) => i.state === 'CLUSTER_SCHEDULED');
    }, 60_000);
    assert.deepEqual(placedTwice(sims), []);
  });

  test('the database unreachable at start: a clear error and exit 1', async () => {
    const port = await freePort();
    const child = spawn(process.execPath, [CANOPY, 'root', '--port', '0', '--data', join(dir, 'x'), '--store', `postgres://postgres:hunter2@127.0.0.1:${port}/canopy`], {
      env: { ...process.env, CANOPY_ADMIN_PASSWORD: PASSWORD }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((res) => child.once('exit', res));
    assert.equal(code, 1);
    assert.match(err, /canopy root: cannot reach PostgreSQL at postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/canopy: .*ECONNREFUSED/);
    assert.doesNotMatch(err, /hunter2/);
  });

  test('the database lost while running: 503 with a reason, nothing half-written, and root recovers by itself', async () => {
    const r = servers[0] as RootServer;
    const token = await login(r.url);
    const before = await snapshot(r.url, token);
    await pg.pause('fast');
    try {
      const read = await call(r.url, 'GET', '/api/v1/applications', token);
      assert.equal(read.status, 503);
      assert.match(read.body.error, /root's database is unavailable: .*nothing was changed, try again shortly/);
      const write = await call(r.url, 'POST', '/api/v1/application', token, sla('whiledown'));
      assert.equal(write.status, 503);
    } finally {
      await pg.resume();
    }
    await waitUntil('root answers again', async () => (await call(r.url, 'GET', '/api/v1/applications', token)).status === 200);
    assert.deepEqual(await snapshot(r.url, token), before, 'nothing of the refused writes is stored');
    const again = await call(r.url, 'POST', '/api/v1/application', token, sla('whiledown'));
    assert.equal(again.status, 201, `the same request succeeds once the database is back: ${JSON.stringify(again.body)}`);
  });
});
