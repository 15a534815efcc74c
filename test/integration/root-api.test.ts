// The root API against a real server on loopback: every route, authentication and ownership,
// the error codes, and a restart on the same database.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { jsonLogger } from '../../orchestrator/protocol/log.ts';
import { RootServer } from '../../orchestrator/root/server.ts';
import { CLUSTER_KEY, RootHarness } from './root-harness.ts';
import { SLA_FIXTURES } from '../../harness/fixtures.ts';

const fixture = (name: string) => JSON.parse(readFileSync(join(SLA_FIXTURES, name), 'utf8'));

const PROTECTED: [string, string][] = [
  ['POST', '/api/v1/application'], ['GET', '/api/v1/applications'], ['GET', '/api/v1/application/x'], ['PUT', '/api/v1/application/x'],
  ['DELETE', '/api/v1/application/x'], ['GET', '/api/v1/services/x'], ['POST', '/api/v1/service'], ['GET', '/api/v1/service/x'],
  ['PUT', '/api/v1/service/x'], ['DELETE', '/api/v1/service/x'], ['POST', '/api/v1/service/x/instance'], ['DELETE', '/api/v1/service/x/instance/0'],
  ['GET', '/api/v1/clusters'], ['GET', '/api/v1/clusters/active'], ['POST', '/api/v1/users'], ['GET', '/api/v1/users'],
];

describe('root API', () => {
  let h: RootHarness;
  let admin: string;
  let alice: string;
  let bob: string;
  let appId: string;
  let webId: string;
  let clientId: string;
  let cluster: { cluster_id: string; token: string };

  before(async () => {
    h = await RootHarness.start();
    admin = await h.admin();
    alice = await h.user('alice', admin);
    bob = await h.user('bob', admin);
  });
  after(async () => h.close());

  test('login: wrong password 401, malformed 400, right password gives a token', async () => {
    assert.equal((await h.call('POST', '/api/v1/auth/login', { username: 'admin', password: 'nope' })).status, 401);
    assert.equal((await h.call('POST', '/api/v1/auth/login', { username: 'ghost', password: 'whatever1' })).status, 401);
    const bad = await h.call('POST', '/api/v1/auth/login', { username: 'admin' });
    assert.equal(bad.status, 400);
    assert.deepEqual(bad.body.errors.map((e: { path: string }) => e.path), ['/password']);
    const ok = await h.call('POST', '/api/v1/auth/login', { username: 'ADMIN', password: 'correct-horse-battery' });
    assert.equal(ok.status, 200);
    assert.equal(ok.body.role, 'admin');
    assert.equal(typeof ok.body.token, 'string');
  });

  test('every user route answers 401 without a token, and with a forged one', async () => {
    for (const [method, path] of PROTECTED) {
      const body = method === 'POST' || method === 'PUT' ? {} : undefined;
      assert.equal((await h.call(method, path, body)).status, 401, `${method} ${path}`);
      assert.equal((await h.call(method, path, body, `${admin.slice(0, -4)}AAAA`)).status, 401, `${method} ${path} forged`);
    }
  });

  test('users: only admins create and list them; duplicates 409; weak passwords 422', async () => {
    assert.equal((await h.call('POST', '/api/v1/users', { username: 'carol', password: 'carol-password' }, alice)).status, 403);
    assert.equal((await h.call('GET', '/api/v1/users', undefined, alice)).status, 403);
    assert.equal((await h.call('POST', '/api/v1/users', { username: 'alice', password: 'another-password' }, admin)).status, 409);
    const weak = await h.call('POST', '/api/v1/users', { username: 'dave', password: 'short' }, admin);
    assert.equal(weak.status, 422);
    assert.equal(weak.body.errors[0].path, '/password');
    const list = await h.call('GET', '/api/v1/users', undefined, admin);
    assert.deepEqual(list.body.map((u: { username: string }) => u.username).sort(), ['admin', 'alice', 'bob']);
  });

  test('POST /api/v1/application creates applications and services; the same name again is 409', async () => {
    const r = await h.call('POST', '/api/v1/application', fixture('process-web-client.json'), alice);
    assert.equal(r.status, 201, r.text);
    appId = r.body.applications[0].applicationID;
    webId = r.body.services.find((s: { microservice_name: string }) => s.microservice_name === 'web').microserviceID;
    clientId = r.body.services.find((s: { microservice_name: string }) => s.microservice_name === 'client').microserviceID;
    assert.equal(r.body.applications[0].owner, 'alice');
    assert.equal((await h.call('POST', '/api/v1/application?deploy=maybe', fixture('process-iperf.json'), alice)).status, 400);
    const again = await h.call('POST', '/api/v1/application', fixture('process-web-client.json'), alice);
    assert.equal(again.status, 409);
    assert.equal(again.body.errors[0].path, '/applications/0/application_name');
    // Another user may use the same name (but not the same pinned addresses).
    const d = fixture('process-web-client.json');
    delete d.applications[0].microservices[0].addresses;
    assert.equal((await h.call('POST', '/api/v1/application', d, bob)).status, 201);
  });

  test('users see only their own applications; admins see all; others get 403', async () => {
    const mine = await h.call('GET', '/api/v1/applications', undefined, alice);
    assert.deepEqual(mine.body.map((a: { owner: string }) => a.owner), ['alice']);
    const all = await h.call('GET', '/api/v1/applications', undefined, admin);
    assert.deepEqual(all.body.map((a: { owner: string }) => a.owner).sort(), ['alice', 'bob']);
    for (const [method, path, body] of [
      ['GET', `/api/v1/application/${appId}`], ['PUT', `/api/v1/application/${appId}`, { application_desc: 'mine now' }],
      ['DELETE', `/api/v1/application/${appId}`], ['GET', `/api/v1/services/${appId}`], ['GET', `/api/v1/service/${webId}`],
      ['PUT', `/api/v1/service/${webId}`, { microservice_name: 'web', microservice_namespace: 'demo', virtualization: 'process', cmd: ['x'] }],
      ['DELETE', `/api/v1/service/${webId}`], ['POST', `/api/v1/service/${webId}/instance`], ['DELETE', `/api/v1/service/${webId}/instance/0`],
    ] as [string, string, unknown?][]) {
      assert.equal((await h.call(method, path, body, bob)).status, 403, `${method} ${path}`);
    }
    const addToTheirs = await h.call('POST', '/api/v1/service', {
      sla_version: 'v2.0', applications: [{ applicationID: appId, application_name: 'webapp', application_namespace: 'demo', microservices: [] }],
    }, bob);
    assert.equal(addToTheirs.status, 403);
    assert.equal((await h.call('GET', `/api/v1/application/${appId}`, undefined, admin)).status, 200);
  });

  test('unknown ids are 404', async () => {
    for (const [method, path] of [
      ['GET', '/api/v1/application/nosuch'], ['DELETE', '/api/v1/application/nosuch'], ['GET', '/api/v1/services/nosuch'], ['GET', '/api/v1/service/nosuch'],
      ['DELETE', '/api/v1/service/nosuch'], ['POST', '/api/v1/service/nosuch/instance'], ['DELETE', `/api/v1/service/${webId}/instance/99`],
      ['GET', '/api/nothing-here'],
    ] as [string, string][]) {
      assert.equal((await h.call(method, path, undefined, alice)).status, 404, `${method} ${path}`);
    }
  });

  test('GET/PUT an application: description, rename, bad names 422, taken names 409', async () => {
    const got = await h.call('GET', `/api/v1/application/${appId}`, undefined, alice);
    assert.equal(got.body.application_name, 'webapp');
    assert.deepEqual(got.body.microservices.map((m: { microservice_name: string }) => m.microservice_name), ['web', 'client']);
    const put = await h.call('PUT', `/api/v1/application/${appId}`, { application_desc: 'new words', application_name: 'WebApp2' }, alice);
    assert.equal(put.status, 200, put.text);
    assert.equal(put.body.application_name, 'webapp2');
    assert.equal(put.body.application_desc, 'new words');
    const bad = await h.call('PUT', `/api/v1/application/${appId}`, { application_name: 'web app' }, alice);
    assert.equal(bad.status, 422);
    assert.equal(bad.body.errors[0].path, '/application_name');
    const d = fixture('process-iperf.json');
    assert.equal((await h.call('POST', '/api/v1/application', d, alice)).status, 201);
    const taken = await h.call('PUT', `/api/v1/application/${appId}`, { application_name: 'iperf', application_namespace: 'bench' }, alice);
    assert.equal(taken.status, 409);
    assert.equal((await h.call('PUT', `/api/v1/application/${appId}`, [], alice)).status, 400);
  });

  test('services: list, add through POST /api/v1/service, read, replace; errors with paths', async () => {
    const list = await h.call('GET', `/api/v1/services/${appId}`, undefined, alice);
    assert.equal(list.status, 200);
    assert.deepEqual(list.body.map((s: { name: string }) => s.name), ['webapp2.demo.web.demo', 'webapp2.demo.client.demo']);
    const sla = {
      sla_version: 'v2.0', customerID: 'alice',
      applications: [{
        applicationID: appId, application_name: 'webapp2', application_namespace: 'demo',
        microservices: [{ microservice_name: 'db', microservice_namespace: 'demo', virtualization: 'container', code: 'docker.io/library/postgres:16', memory: 256, vcpus: 1,
          connectivity: [{ target_microservice_id: 'WEB', con_constraints: [{ type: 'latency', threshold: 10 }] }] }],
      }],
    };
    const added = await h.call('POST', '/api/v1/service', sla, alice);
    assert.equal(added.status, 201, added.text);
    assert.equal(added.body.services[0].name, 'webapp2.demo.db.demo');
    assert.equal(added.body.services[0].connectivity[0].target_microservice_id, webId, 'an existing sibling named as target becomes its id');
    const dup = await h.call('POST', '/api/v1/service', sla, alice);
    assert.equal(dup.status, 409);
    assert.equal(dup.body.errors[0].path, '/applications/0/microservices/0/microservice_name');
    const noApp = await h.call('POST', '/api/v1/service', { ...sla, applications: [{ ...sla.applications[0], applicationID: 'nosuch' }] }, alice);
    assert.equal(noApp.status, 404);
    const noId = await h.call('POST', '/api/v1/service', { ...sla, applications: [{ ...sla.applications[0], applicationID: '' }] }, alice);
    assert.equal(noId.status, 422);
    assert.equal(noId.body.errors[0].path, '/applications/0/applicationID');

    const svc = await h.call('GET', `/api/v1/service/${webId}`, undefined, alice);
    assert.equal(svc.status, 200);
    assert.equal(svc.body.rr_ip, '10.30.30.30');
    assert.equal(svc.body.closest_ip, '10.30.30.31');
    const spec = { ...svc.body, memory: 96 };
    const put = await h.call('PUT', `/api/v1/service/${webId}`, spec, alice);
    assert.equal(put.status, 200, put.text);
    assert.equal(put.body.memory, 96);
    assert.equal(put.body.rr_ip, '10.30.30.30', 'unchanged pins keep their addresses');
    const badType = await h.call('PUT', `/api/v1/service/${webId}`, { ...spec, memory: 'much' }, alice);
    assert.equal(badType.status, 400);
    assert.equal(badType.body.errors[0].path, '/memory');
    const badPort = await h.call('PUT', `/api/v1/service/${webId}`, { ...spec, port: '99999' }, alice);
    assert.equal(badPort.status, 422);
    assert.equal(badPort.body.errors[0].path, '/port');
    const clash = await h.call('PUT', `/api/v1/service/${webId}`, { ...spec, microservice_name: 'client' }, alice);
    assert.equal(clash.status, 409);
    // Repinning frees the old address for others and takes the new one.
    const moved = await h.call('PUT', `/api/v1/service/${webId}`, { ...spec, addresses: { rr_ip: '10.30.30.40', closest_ip: '10.30.30.31' } }, alice);
    assert.equal(moved.status, 200, moved.text);
    assert.equal(moved.body.rr_ip, '10.30.30.40');
    const taken = await h.call('PUT', `/api/v1/service/${clientId}`, { ...(await h.call('GET', `/api/v1/service/${clientId}`, undefined, alice)).body, addresses: { rr_ip: '10.30.30.40' } }, alice);
    assert.equal(taken.status, 422);
    assert.equal(taken.body.errors[0].path, '/addresses/rr_ip');
    assert.equal((await h.call('PUT', `/api/v1/service/${webId}`, spec, alice)).body.rr_ip, '10.30.30.30', 'and back');
  });

  test('instances: deploy (202) → NO_CLUSTER_FOUND with a reason and timestamps; undeploy; again 409', async () => {
    const r = await h.call('POST', `/api/v1/service/${clientId}/instance`, undefined, alice);
    assert.equal(r.status, 202, r.text);
    assert.equal(r.body.instance_n, 0);
    assert.match(r.body.instance_ip, /^10\.30\./);
    assert.match(r.body.instance_ip_v6, /^fdc0:30:/);
    let inst;
    for (let i = 0; i < 50; i++) {
      inst = (await h.call('GET', `/api/v1/service/${clientId}`, undefined, alice)).body.instances[0];
      if (inst.state !== 'REQUESTED') break;
      await new Promise((res) => setTimeout(res, 20));
    }
    assert.equal(inst.state, 'NO_CLUSTER_FOUND');
    assert.match(inst.reason, /no cluster/);
    assert.deepEqual(inst.history.map((e: { state: string }) => e.state), ['REQUESTED', 'NO_CLUSTER_FOUND']);
    assert.ok(!Number.isNaN(Date.parse(inst.history[1].ts)));
    const del = await h.call('DELETE', `/api/v1/service/${clientId}/instance/0`, undefined, alice);
    assert.equal(del.status, 200);
    assert.equal(del.body.state, 'UNDEPLOYED');
    assert.equal((await h.call('DELETE', `/api/v1/service/${clientId}/instance/0`, undefined, alice)).status, 409);
    assert.equal((await h.call('DELETE', `/api/v1/service/${clientId}/instance/x`, undefined, alice)).status, 400);
    const next = await h.call('POST', `/api/v1/service/${clientId}/instance`, undefined, alice);
    assert.equal(next.body.instance_n, 1, 'instance numbers are not reused');
    const svc = (await h.call('GET', `/api/v1/service/${clientId}`, undefined, alice)).body;
    // Instances that found no cluster hold no name anywhere: renaming is allowed (a live one: see root-scheduling).
    const renamed = await h.call('PUT', `/api/v1/service/${clientId}`, { ...svc, microservice_name: 'caller' }, alice);
    assert.equal(renamed.status, 200, renamed.text);
    assert.equal(renamed.body.name, 'webapp2.demo.caller.demo');
    assert.equal((await h.call('PUT', `/api/v1/service/${clientId}`, svc, alice)).body.microservice_name, 'client');
  });

  test('cluster API: join key, token per cluster, rotation, reports, subnets, routes', async () => {
    const reg = { name: 'edge1', location: '48.1,11.6,50', api_url: 'http://127.0.0.1:9' };
    assert.equal((await h.call('POST', '/api/internal/clusters/register', reg)).status, 401);
    assert.equal((await h.call('POST', '/api/internal/clusters/register', reg, 'wrong-key')).status, 401);
    assert.equal((await h.call('POST', '/api/internal/clusters/register', { ...reg, api_url: 'ftp://x' }, CLUSTER_KEY)).status, 422);
    const first = await h.call('POST', '/api/internal/clusters/register', reg, CLUSTER_KEY);
    assert.equal(first.status, 201);
    const second = await h.call('POST', '/api/internal/clusters/register', reg, CLUSTER_KEY);
    assert.equal(second.status, 200);
    assert.equal(second.body.cluster_id, first.body.cluster_id);
    assert.notEqual(second.body.token, first.body.token);
    cluster = second.body;
    const id = cluster.cluster_id;
    const report = { free: { vcpus: 8, memory_mb: 8192, gpus: 0 }, workers_active: 2, virtualizations: ['process'], architectures: ['amd64'], instances: [] };
    assert.equal((await h.call('POST', `/api/internal/clusters/${id}/report`, report, first.body.token)).status, 401, 'the rotated token is dead');
    assert.equal((await h.call('POST', `/api/internal/clusters/${id}/report`, report)).status, 401);
    assert.equal((await h.call('POST', `/api/internal/clusters/${id}/report`, { free: {} }, cluster.token)).status, 400);
    const ok = await h.call('POST', `/api/internal/clusters/${id}/report`, {
      ...report, instances: [{ service_id: 'gone', instance_n: 0, state: 'RUNNING' }, 'garbage'],
    }, cluster.token);
    assert.equal(ok.status, 200, ok.text);
    assert.deepEqual(ok.body.undeploy, [{ service_id: 'gone', instance_n: 0 }], 'root asks to remove what it does not know');
    assert.equal(ok.body.ignored, 1);

    const clusters = await h.call('GET', '/api/v1/clusters', undefined, alice);
    assert.equal(clusters.status, 200);
    assert.equal(clusters.body[0].name, 'edge1');
    assert.equal(clusters.body[0].active, true);
    assert.equal(clusters.body[0].aggregate.free.vcpus, 8);
    assert.ok(!JSON.stringify(clusters.body).includes(cluster.token), 'tokens never leave root');
    assert.equal((await h.call('GET', '/api/v1/clusters/active', undefined, alice)).body.length, 1);

    const s1 = await h.call('POST', `/api/internal/clusters/${id}/subnets`, { worker_id: 'w1' }, cluster.token);
    assert.deepEqual(s1.body, { subnet_v4: '10.18.0.0/24', subnet_v6: 'fdc0:18:0:200::/64' });
    assert.deepEqual((await h.call('POST', `/api/internal/clusters/${id}/subnets`, { worker_id: 'w1' }, cluster.token)).body, s1.body);
    const s2 = await h.call('POST', `/api/internal/clusters/${id}/subnets`, { worker_id: 'w2' }, cluster.token);
    assert.equal(s2.body.subnet_v4, '10.18.1.0/24');
    assert.equal((await h.call('DELETE', `/api/internal/clusters/${id}/subnets/w1`, undefined, cluster.token)).status, 200);
    assert.equal((await h.call('DELETE', `/api/internal/clusters/${id}/subnets/w1`, undefined, cluster.token)).status, 404);
    assert.equal((await h.call('POST', `/api/internal/clusters/${id}/subnets`, { worker_id: 'w3' }, cluster.token)).body.subnet_v4, '10.18.0.0/24', 'released subnets are reused');
    assert.equal((await h.call('POST', `/api/internal/clusters/${id}/subnets`, { worker_id: 'w4' }, 'nope')).status, 401);

    const route = await h.call('GET', `/api/internal/clusters/${id}/routes/10.30.30.30`, undefined, cluster.token);
    assert.equal(route.status, 200);
    assert.equal(route.body.service_id, webId);
    assert.equal(route.body.name, 'webapp2.demo.web.demo');
    assert.equal((await h.call('GET', `/api/internal/clusters/${id}/routes/10.30.200.200`, undefined, cluster.token)).status, 404);
  });

  test('GET /metrics in Prometheus text; OpenAPI JSON and UI at /api/docs', async () => {
    const m = await h.call('GET', '/metrics');
    assert.equal(m.status, 200);
    assert.match(m.text, /# TYPE canopy_root_http_requests_total counter/);
    assert.match(m.text, /canopy_root_clusters\{state="active"\} 1/);
    assert.match(m.text, /canopy_root_instances\{state="UNDEPLOYED"\} 1/);
    const doc = await h.call('GET', '/api/docs/json');
    assert.equal(doc.status, 200);
    assert.ok(doc.body.openapi.startsWith('3.'));
    for (const p of ['/api/v1/auth/login', '/api/v1/application', '/api/v1/applications', '/api/v1/application/{id}', '/api/v1/services/{appid}', '/api/v1/service',
      '/api/v1/service/{id}', '/api/v1/service/{id}/instance', '/api/v1/service/{id}/instance/{n}', '/api/v1/clusters', '/api/v1/clusters/active']) {
      assert.ok(doc.body.paths[p], `OpenAPI lacks ${p}`);
    }
    const post = doc.body.paths['/api/v1/application'].post;
    assert.ok(post.requestBody.content['application/json'].schema.properties.sla_version, 'the descriptor schema is documented');
    assert.ok(post.parameters.some((p: { name: string }) => p.name === 'deploy'));
    const ui = await fetch(`${h.url}/api/docs/`);
    assert.equal(ui.status, 200);
    assert.match(await ui.text(), /swagger/i);
  });

  test('a restart on the same database keeps users, tokens, applications, services, instances, addresses, clusters', async () => {
    const before = await h.call('GET', `/api/v1/service/${clientId}`, undefined, alice);
    const apps = await h.call('GET', '/api/v1/applications', undefined, admin);
    await h.restart();
    assert.deepEqual((await h.call('GET', `/api/v1/service/${clientId}`, undefined, alice)).body, before.body, 'the old token still works');
    assert.deepEqual((await h.call('GET', '/api/v1/applications', undefined, admin)).body, apps.body);
    assert.equal((await h.login('bob', 'bob-password')).length > 0, true);
    const clusters = await h.call('GET', '/api/v1/clusters', undefined, alice);
    assert.equal(clusters.body[0].name, 'edge1');
    const id = cluster.cluster_id;
    assert.equal((await h.call('POST', `/api/internal/clusters/${id}/subnets`, { worker_id: 'w2' }, cluster.token)).body.subnet_v4, '10.18.1.0/24');
    // Addresses held before the restart are not handed out again.
    const used = new Set<string>();
    for (const a of apps.body) {
      for (const s of (await h.call('GET', `/api/v1/services/${a.applicationID}`, undefined, admin)).body) {
        for (const k of ['rr_ip', 'closest_ip', 'rr_ip_v6', 'closest_ip_v6']) used.add(s[k]);
      }
    }
    const fresh = await h.call('POST', '/api/v1/service', {
      sla_version: 'v2.0', applications: [{ applicationID: appId, application_name: 'webapp2', application_namespace: 'demo',
        microservices: [{ microservice_name: 'late', microservice_namespace: 'demo', virtualization: 'process', cmd: ['true'] }] }],
    }, alice);
    assert.equal(fresh.status, 201, fresh.text);
    for (const k of ['rr_ip', 'closest_ip', 'rr_ip_v6', 'closest_ip_v6']) assert.ok(!used.has(fresh.body.services[0][k]), `${k} reused`);
  });

  test('a restart with a different address plan is refused while addresses are held', async () => {
    await h.root.close();
    await assert.rejects(RootServer.start({ dataDir: h.dir, host: '127.0.0.1', port: 0, log: jsonLogger({}, 'error'), plan: { workerPrefixV4: 26 } }), /address plan differs/);
    await h.restart();
    assert.equal((await h.call('GET', '/api/v1/applications', undefined, alice)).status, 200);
  });

  test('deleting a service and an application frees their names and pinned addresses', async () => {
    assert.equal((await h.call('DELETE', `/api/v1/service/${webId}`, undefined, alice)).status, 200);
    assert.equal((await h.call('GET', `/api/v1/service/${webId}`, undefined, alice)).status, 404);
    assert.equal((await h.call('DELETE', `/api/v1/application/${appId}`, undefined, alice)).status, 200);
    assert.equal((await h.call('GET', `/api/v1/application/${appId}`, undefined, alice)).status, 404);
    assert.equal((await h.call('POST', '/api/v1/application', fixture('process-web-client.json'), alice)).status, 201, 'name and 10.30.30.30 are free again');
  });
});
