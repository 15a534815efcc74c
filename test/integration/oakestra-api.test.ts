// Contract of Oakestra's surface (SPEC §7): what Oakestra's own code answers and what its clients
// read, route by route. Every expectation is taken from Oakestra's code or a client of it, cited as
// repo:file:line (O = oakestra/oakestra root_orchestrator/system-manager-python at 0e87983;
// A = oakestra/USENIX-ATC23-Oakestra-Artifacts; CLI = oakestra/oakestra-cli; D = oakestra/dashboard),
// not from what Canopy's own API answers. A small simulated cluster on loopback accepts placements
// and reports instances RUNNING on a worker at 198.51.100.7 so instance fields can be checked.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import Fastify, { type FastifyInstance } from 'fastify';
import { ADMIN_PASSWORD, CLUSTER_KEY, RootHarness, type Answer } from './root-harness.ts';

const WORKER_IP = '198.51.100.7';
// Oakestra's status names (O libraries/oakestra_utils_library/oakestra_utils/types/statuses.py:31-71).
const OAK_STATUSES = new Set(['REQUESTED', 'CLUSTER_SCHEDULED', 'NODE_SCHEDULED', 'CREATING', 'CREATED', 'RUNNING', 'FAILED', 'DEAD',
  'COMPLETED', 'UNDEPLOYED', 'TargetClusterNotFound', 'TargetClusterNotActive', 'TargetClusterNoCapacity', 'NoActiveClusterWithCapacity',
  'NO_WORKER_CAPACITY', 'NO_QUALIFIED_WORKER_FOUND', 'NO_NODE_FOUND']);

// The ATC'23 Test 2 descriptor (A Experiments/Test2-network-overhead/client-server.json), with
// process stand-ins for its images and a namespace per call as run-test2.py:51 randomizes it.
function nettime(ns: string, name = 'nettime'): Record<string, unknown> {
  const common = { microserviceID: '', microservice_namespace: 'test', vgpus: 0, vtpus: 0, bandwidth_in: 0, bandwidth_out: 0, storage: 0, state: '', added_files: [] };
  return {
    sla_version: 'v2.0', customerID: 'Admin',
    applications: [{
      applicationID: '', application_name: name, application_namespace: ns, application_desc: 'test2 demo',
      microservices: [
        { ...common, microservice_name: 'client', virtualization: 'process', memory: 50, vcpus: 1, port: '50002:5002/tcp', code: 'client', cmd: ['sleep', '1000'] },
        { ...common, microservice_name: 'nginx', virtualization: 'process', cmd: ['sleep', '1000'], memory: 50, vcpus: 1, code: 'nginx', port: '6080:80/tcp', addresses: { rr_ip: `10.30.30.${ns.length + 30}` } },
      ],
    }],
  };
}

/** `json.loads(resp.json())` (A run-test2.py:56, cleanup.py:28): the body must be a JSON string holding JSON. */
function loads(r: Answer): any { // eslint-disable-line @typescript-eslint/no-explicit-any -- the document is whatever Oakestra's clients index into
  assert.equal(r.status, 200, r.text);
  assert.equal(typeof r.body, 'string', `double-encoded body expected, got ${r.text.slice(0, 80)}`);
  return JSON.parse(r.body as string);
}

class SimCluster {
  decide: () => unknown = () => ({ accepted: true, worker_id: 'w1' });
  id = '';
  token = '';
  private constructor(private readonly app: FastifyInstance, private readonly h: RootHarness) {}

  static async start(h: RootHarness, name: string): Promise<SimCluster> {
    const app = Fastify();
    const c = new SimCluster(app, h);
    app.post('/api/placements', async () => c.decide());
    app.delete('/api/placements/:sid/:n', async () => ({ ok: true }));
    app.post('/api/routes', async () => ({ ok: true }));
    app.post('/api/peers', async () => ({ ok: true }));
    await app.listen({ host: '127.0.0.1', port: 0 });
    const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    const reg = await h.call('POST', '/api/internal/clusters/register', { name, location: '48.1,11.6', api_url: url }, CLUSTER_KEY);
    assert.ok(reg.status === 201 || reg.status === 200, reg.text);
    c.id = reg.body.cluster_id;
    c.token = reg.body.token;
    await c.report();
    return c;
  }

  async report(instances: unknown[] = []): Promise<void> {
    const r = await this.h.call('POST', `/api/internal/clusters/${this.id}/report`, {
      free: { vcpus: 8, memory_mb: 8192, gpus: 0 }, workers_active: 1, virtualizations: ['process'], architectures: ['amd64'], instances,
    }, this.token);
    assert.equal(r.status, 200, r.text);
  }

  running(serviceId: string, n: number): Promise<void> {
    return this.report([{ service_id: serviceId, instance_n: n, state: 'RUNNING', worker: 'w1', ns_ip: `10.18.0.${n + 2}`, tunnel_endpoint: `${WORKER_IP}:50103` }]);
  }

  async close(): Promise<void> {
    await this.app.close();
  }
}

describe("Oakestra's API: what Oakestra's scripts, CLIs and dashboard read", () => {
  let h: RootHarness;
  let admin: string;
  let alice: string;
  let sim: SimCluster | undefined;
  const get = (path: string, token = admin) => h.call('GET', path, undefined, token);

  before(async () => {
    h = await RootHarness.start();
    admin = await h.admin();
    alice = await h.user('alice', admin);
  });
  after(async () => {
    await sim?.close();
    await h.close();
  });

  async function until(serviceId: string, pred: (svc: any) => boolean, token = admin): Promise<any> { // eslint-disable-line @typescript-eslint/no-explicit-any -- see loads()
    for (let i = 0; i < 300; i++) {
      const svc = loads(await get(`/api/service/${serviceId}`, token));
      if (pred(svc)) return svc;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`service ${serviceId} never reached the expected state`);
  }

  test('login: Admin in any case → 200 {token, refresh_token}; the refresh token renews and is no access token', async () => {
    // A cleanup.py:13-20 and the Python CLI log in as "Admin"; CLI oak_go_cli/internal/api/client.go:47-66 wants 200 and "token".
    const r = await h.call('POST', '/api/auth/login', { username: 'Admin', password: ADMIN_PASSWORD });
    assert.equal(r.status, 200, r.text);
    assert.equal(typeof r.body.token, 'string');
    assert.equal(typeof r.body.refresh_token, 'string');
    // O blueprints/authentication_blueprints.py:56-57: bad credentials 401.
    assert.equal((await h.call('POST', '/api/auth/login', { username: 'Admin', password: 'Admin' })).status, 401, 'no default password');
    assert.equal((await h.call('POST', '/api/auth/login', { username: 'ALICE', password: 'alice-password' })).status, 200);
    // O authentication_blueprints.py:72-80: POST /api/auth/refresh with the refresh token → {token}.
    const fresh = await h.call('POST', '/api/auth/refresh', undefined, r.body.refresh_token);
    assert.equal(fresh.status, 200, fresh.text);
    assert.equal(loads(await get('/api/services/', fresh.body.token)).constructor, Array);
    assert.equal((await get('/api/services', r.body.refresh_token)).status, 401, 'a refresh token is not an access token');
    assert.equal((await h.call('POST', '/api/auth/refresh', undefined, r.body.token)).status, 401, 'an access token does not refresh');
  });

  test('POST /api/application → 200, a JSON string of all the caller\'s applications, microservices as id strings in SLA order', async () => {
    // A run-test2.py:45-63: status 200, json.loads(resp.json()), find by application_name, applicationID and
    // microservices[0] (client) / [1] (server); O blueprints/applications_blueprints.py:87-105 returns
    // json_util.dumps(register_app(...)) = all the user's applications (O services/application_management.py:67).
    const first = loads(await h.call('POST', '/api/application', nettime('aaaa', 'other'), admin));
    assert.equal(first.length, 1);
    const list = loads(await h.call('POST', '/api/application/', nettime('bbbbb'), admin));
    assert.equal(list.length, 2, 'every application of the caller, not only the new one');
    const app = list.find((a: { application_name: string }) => a.application_name === 'nettime');
    assert.equal(typeof app.applicationID, 'string');
    // O applications_blueprints.py:101-103: _id is {"$oid": id}; D src/app/shared/modules/api/api.service.ts:44 uses app._id.$oid.
    assert.deepEqual(app._id, { $oid: app.applicationID });
    assert.equal(app.application_namespace, 'bbbbb');
    // CLI client.go:206-213: microservices []string.
    assert.equal(app.microservices.length, 2);
    for (const id of app.microservices) assert.equal(typeof id, 'string');
    const [client, server] = [loads(await get(`/api/service/${app.microservices[0]}`)), loads(await get(`/api/service/${app.microservices[1]}`))];
    assert.equal(client.microservice_name, 'client');
    assert.equal(server.microservice_name, 'nginx');
    assert.equal(typeof app.userId, 'string');
  });

  test('GET /api/service/:id before any deployment: 200, instance_list an empty list, Oakestra job fields', async () => {
    const app = loads(await get('/api/applications')).find((a: { application_name: string }) => a.application_name === 'nettime');
    const svc = loads(await get(`/api/service/${app.microservices[1]}/`));
    // O services/service_management.py:161-180 (generate_db_structure) and :12-37 (job_name).
    assert.deepEqual(svc.instance_list, []);
    assert.deepEqual(svc._id, { $oid: app.microservices[1] });
    assert.equal(svc.microserviceID, app.microservices[1]);
    assert.equal(svc.applicationID, app.applicationID);
    assert.equal(svc.app_name, 'nettime');
    assert.equal(svc.app_ns, 'bbbbb');
    assert.equal(svc.job_name, 'nettime.bbbbb.nginx.test');
    assert.equal(svc.image, 'nginx');
    assert.equal(svc.RR_ip, '10.30.30.35', 'the pinned rr_ip (service_management.py:172-177)');
    // CLI client.go:248-269: port string, memory/vcpus ints, environment []string.
    assert.equal(svc.port, '6080:80/tcp');
    assert.ok(Number.isInteger(svc.memory) && Number.isInteger(svc.vcpus));
    assert.ok(Array.isArray(svc.environment));
  });

  test('POST …/instance → 200 {"message": "ok"}; with no cluster the status is NoActiveClusterWithCapacity', async () => {
    const app = loads(await get('/api/applications')).find((a: { application_name: string }) => a.application_name === 'nettime');
    // O blueprints/deployment_blueprints.py:10-16; A run-test2.py:99-106 posts with no body.
    const r = await h.call('POST', `/api/service/${app.microservices[1]}/instance`, undefined, admin);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body, { message: 'ok' });
    const svc = await until(app.microservices[1], (s) => s.instance_list[0]?.status !== 'REQUESTED');
    // O statuses.py:36 and the root schedulers (O scheduler/calculate/schedulers/interfaces/calculate.go:16-21).
    assert.equal(svc.instance_list[0].status, 'NoActiveClusterWithCapacity');
    assert.equal(typeof svc.instance_list[0].status_detail, 'string');
    assert.equal(svc.status, 'NoActiveClusterWithCapacity');
  });

  test('instance_list once placed and running: instance_number, status RUNNING, publicip, cluster and worker ids', async () => {
    sim = await SimCluster.start(h, 'oak1');
    const app = loads(await get('/api/applications')).find((a: { application_name: string }) => a.application_name === 'nettime');
    const [clientId, serverId] = app.microservices;
    // The unplaced instance is retried when the cluster appears; scale the server to 2 and the client to 1 (run-test2.py:128-132).
    assert.equal((await h.call('POST', `/api/service/${serverId}/instance`, undefined, admin)).status, 200);
    assert.equal((await h.call('POST', `/api/service/${clientId}/instance`, undefined, admin)).status, 200);
    await until(serverId, (s) => s.instance_list.length === 2 && s.instance_list.every((i: { status: string }) => i.status === 'CLUSTER_SCHEDULED'));
    await until(clientId, (s) => s.instance_list[0]?.status === 'CLUSTER_SCHEDULED');
    for (const n of [0, 1]) await sim.running(serverId, n);
    await sim.running(clientId, 0);
    // A run-test2.py:66-87: every instance "RUNNING", the client's publicip used as http://<publicip>:50002/.
    const server = loads(await get(`/api/service/${serverId}`));
    const client = loads(await get(`/api/service/${clientId}`));
    assert.deepEqual(server.instance_list.map((i: { instance_number: number }) => i.instance_number), [0, 1]);
    for (const i of [...server.instance_list, ...client.instance_list]) assert.equal(i.status, 'RUNNING');
    const ci = client.instance_list[0];
    assert.equal(ci.publicip, WORKER_IP);
    // CLI client.go:222-238: instance_number and host_port ints, the rest strings.
    assert.equal(ci.instance_number, 0);
    assert.equal(ci.host_port, 50002);
    assert.equal(ci.cluster_id, sim.id);
    assert.equal(ci.worker_id, 'w1');
    assert.equal(typeof ci.cluster_location, 'string');
    assert.equal(typeof ci.status_detail, 'string');
    assert.equal(typeof ci.last_modified_timestamp, 'number');
    assert.equal(server.status, 'RUNNING');
  });

  test('DELETE …/instance/:instance_number → 200 {"message": "ok"}; the instance leaves instance_list', async () => {
    const app = loads(await get('/api/applications')).find((a: { application_name: string }) => a.application_name === 'nettime');
    const serverId = app.microservices[1];
    // O deployment_blueprints.py:19-25; D api.service.ts:93-95 deletes by instance.instance_number.
    const r = await h.call('DELETE', `/api/service/${serverId}/instance/1`, undefined, admin);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body, { message: 'ok' });
    // O resource-abstractor/db/jobs_db.py:161-166 pulls the instance out of instance_list.
    const svc = loads(await get(`/api/service/${serverId}`));
    assert.deepEqual(svc.instance_list.map((i: { instance_number: number }) => i.instance_number), [0]);
    assert.equal((await h.call('DELETE', `/api/service/${serverId}/instance/1`, undefined, admin)).status, 404, 'it is gone');
  });

  test('negative scheduling outcomes carry Oakestra\'s names', async () => {
    const app = loads(await get('/api/applications')).find((a: { application_name: string }) => a.application_name === 'nettime');
    const serverId = app.microservices[1];
    // O cluster_orchestrator/cluster-manager/clients/job_management.py:204 and statuses.py:38-39.
    sim!.decide = () => ({ accepted: false, status: 'NO_WORKER_CAPACITY', reason: 'full' });
    assert.equal((await h.call('POST', `/api/service/${serverId}/instance`, undefined, admin)).status, 200);
    let svc = await until(serverId, (s) => s.instance_list.some((i: { instance_number: number; status: string }) => i.instance_number === 2 && i.status !== 'REQUESTED'));
    assert.equal(svc.instance_list.find((i: { instance_number: number }) => i.instance_number === 2).status, 'NO_WORKER_CAPACITY');
    sim!.decide = () => ({ accepted: false, status: 'NO_QUALIFIED_WORKER', reason: 'no match' });
    assert.equal((await h.call('POST', `/api/service/${serverId}/instance`, undefined, admin)).status, 200);
    svc = await until(serverId, (s) => s.instance_list.some((i: { instance_number: number; status: string }) => i.instance_number === 3 && i.status !== 'REQUESTED'));
    assert.equal(svc.instance_list.find((i: { instance_number: number }) => i.instance_number === 3).status, 'NO_QUALIFIED_WORKER_FOUND');
    for (const i of svc.instance_list) assert.ok(OAK_STATUSES.has(i.status), i.status);
    sim!.decide = () => ({ accepted: true, worker_id: 'w1' });
    for (const n of [2, 3]) assert.equal((await h.call('DELETE', `/api/service/${serverId}/instance/${n}`, undefined, admin)).status, 200);
  });

  test('GET /api/application/:id, /api/applications, /api/applications/:userid, /api/services/:appid: JSON strings', async () => {
    const apps = loads(await get('/api/applications/'));
    const app = apps.find((a: { application_name: string }) => a.application_name === 'nettime');
    // O applications_blueprints.py:50-63 (one application), :108-128 (a user's, 401 for another id), :131-148.
    const one = loads(await get(`/api/application/${app.applicationID}`));
    assert.deepEqual(one, app);
    const userId = JSON.parse(Buffer.from(admin.split('.')[1] as string, 'base64url').toString()).sub as string;
    assert.deepEqual(loads(await get(`/api/applications/${userId}`)), apps);
    assert.equal((await get('/api/applications/someone-else')).status, 401);
    // O services_blueprints.py:125-142; D api.service.ts:85-87.
    const svcs = loads(await get(`/api/services/${app.applicationID}`));
    assert.deepEqual(svcs.map((s: { microserviceID: string }) => s.microserviceID), app.microservices);
  });

  test('PUT /api/application/:id with the object as the dashboard sends it → 200 {"message": "Application is updated"}', async () => {
    const app = loads(await get('/api/applications')).find((a: { application_name: string }) => a.application_name === 'nettime');
    // D api.service.ts:43-45 sends the fetched application back; O applications_blueprints.py:77-84.
    const r = await h.call('PUT', `/api/application/${app.applicationID}`, { ...app, application_desc: 'changed' }, admin);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body, { message: 'Application is updated' });
    assert.equal(loads(await get(`/api/application/${app.applicationID}`)).application_desc, 'changed');
  });

  test('POST /api/service adds to an application → 200 {job_id, …}; PUT /api/service/:id with an SLA → 200', async () => {
    const app = loads(await get('/api/applications')).find((a: { application_name: string }) => a.application_name === 'other');
    const sla = nettime('aaaa', 'other') as { applications: Record<string, unknown>[] };
    const ms = { ...(sla.applications[0]!.microservices as Record<string, unknown>[])[0], microservice_name: 'extra', port: '' };
    // O blueprints/services_blueprints.py:97-117, services/service_management.py:40-92.
    const r = await h.call('POST', '/api/service/', { ...sla, applications: [{ ...sla.applications[0], applicationID: app.applicationID, microservices: [ms] }] }, admin);
    assert.equal(r.status, 200, r.text);
    assert.equal(typeof r.body.job_id, 'string');
    assert.deepEqual(r.body.failed_services, []);
    assert.deepEqual(loads(await get(`/api/application/${app.applicationID}`)).microservices.at(-1), r.body.job_id);
    // O services_blueprints.py:73-94 takes applications[0].microservices[0].
    const put = await h.call('PUT', `/api/service/${r.body.job_id}`, { ...sla, applications: [{ ...sla.applications[0], microservices: [{ ...ms, memory: 60 }] }] }, admin);
    assert.equal(put.status, 200, put.text);
    assert.equal(loads(await get(`/api/service/${r.body.job_id}`)).memory, 60);
    // The dashboard's form: the fetched service object itself, Oakestra's fields and all.
    const fetched = loads(await get(`/api/service/${r.body.job_id}`));
    assert.equal((await h.call('PUT', `/api/service/${r.body.job_id}`, { ...fetched, memory: 70 }, admin)).status, 200);
    assert.equal(loads(await get(`/api/service/${r.body.job_id}`)).memory, 70);
    // O services_blueprints.py:56-71.
    const del = await h.call('DELETE', `/api/service/${r.body.job_id}`, undefined, admin);
    assert.equal(del.status, 200);
    assert.deepEqual(del.body, { message: 'Job deleted' });
  });

  test('GET /api/clusters[/active]: JSON text, `_id` a plain string, Oakestra cluster fields', async () => {
    // CLI client.go:294-328 (`_id` string, active bool, active_nodes int), :524-538; O clusters_blueprints.py:58-85, :130-138.
    for (const path of ['/api/clusters/', '/api/clusters', '/api/clusters/active']) {
      const r = await get(path);
      assert.equal(r.status, 200, r.text);
      const c = (r.body as { _id: unknown; cluster_name: string; active: boolean; active_nodes: number; virtualization: string[] }[]).find((x) => x._id === sim!.id);
      assert.ok(c, `${path} lists the cluster`);
      assert.equal(c.cluster_name, 'oak1');
      assert.equal(c.active, true);
      assert.equal(c.active_nodes, 1);
      assert.deepEqual(c.virtualization, ['process']);
    }
  });

  test('cross-origin: preflight answered, CORS headers on answers and on errors', async () => {
    // D reaches root at environment.apiUrl from its own origin (D src/app/shared/util/rest.service.ts:20-26).
    const pre = await fetch(`${h.url}/api/application/`, { method: 'OPTIONS', headers: { origin: 'http://dash.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' } });
    assert.ok(pre.status === 204 || pre.status === 200);
    assert.equal(pre.headers.get('access-control-allow-origin'), '*');
    assert.match(pre.headers.get('access-control-allow-headers') ?? '', /authorization/i);
    assert.equal((await fetch(`${h.url}/api/services`, { headers: { authorization: `Bearer ${admin}` } })).headers.get('access-control-allow-origin'), '*');
    const denied = await fetch(`${h.url}/api/services`);
    assert.equal(denied.status, 401);
    assert.equal(denied.headers.get('access-control-allow-origin'), '*');
  });

  test('bad input: 401 without a token, 404 for another user\'s ids, 409 duplicate, 4xx with a reason for an invalid SLA; nothing stored, never 5xx', async () => {
    const app = loads(await get('/api/applications')).find((a: { application_name: string }) => a.application_name === 'nettime');
    const sid = app.microservices[1];
    const routes: [string, string][] = [
      ['POST', '/api/application'], ['GET', '/api/applications'], ['GET', `/api/applications/x`], ['GET', `/api/application/${app.applicationID}`],
      ['PUT', `/api/application/${app.applicationID}`], ['DELETE', `/api/application/${app.applicationID}`], ['POST', '/api/service'],
      ['GET', '/api/services'], ['GET', `/api/services/${app.applicationID}`], ['GET', `/api/service/${sid}`], ['PUT', `/api/service/${sid}`],
      ['DELETE', `/api/service/${sid}`], ['POST', `/api/service/${sid}/instance`], ['DELETE', `/api/service/${sid}/instance/0`],
      ['GET', '/api/clusters'], ['GET', '/api/clusters/active'],
    ];
    const before = loads(await get('/api/services'));
    for (const [method, path] of routes) {
      // O roles/securityUtils.py jwt_auth_required: 401 without a token.
      assert.equal((await h.call(method, path, method === 'POST' || method === 'PUT' ? {} : undefined)).status, 401, `${method} ${path}`);
    }
    // O services/service_management.py:144-151 and application_management.py:93-97 look ids up among the
    // caller's applications only: another user's id is 404.
    for (const [method, path] of routes.filter(([, p]) => p.includes(sid) || p.includes(app.applicationID))) {
      const r = await h.call(method, path, method === 'PUT' ? { application_desc: 'stolen' } : undefined, alice);
      assert.equal(r.status, 404, `${method} ${path} as another user: ${r.text}`);
    }
    // O application_management.py:25-31: the same name and namespace again is 409.
    const dup = await h.call('POST', '/api/application', nettime('bbbbb'), admin);
    assert.equal(dup.status, 409, dup.text);
    assert.ok(typeof dup.body.message === 'string' && dup.body.message.length > 0);
    // O application_management.py:19-23: an SLA that does not parse is a 4xx with the reason.
    const invalid: unknown[] = [
      { ...nettime('cc'), sla_version: 'v9' },
      { sla_version: 'v2.0', applications: [{ application_name: 'x', application_namespace: 'y', microservices: [{ microservice_name: 'svc' }] }] },
      { sla_version: 'v2.0', applications: 'nope' },
      null,
      [],
    ];
    for (const body of invalid) {
      const r = await h.call('POST', '/api/application', body, admin);
      assert.ok(r.status >= 400 && r.status < 500, `${JSON.stringify(body)} → ${r.status}`);
      assert.ok(typeof r.body.message === 'string' && r.body.message.length > 0, r.text);
    }
    const broken = await h.call('POST', '/api/application', undefined, admin, { text: '{"sla_version": ', contentType: 'application/json' });
    assert.equal(broken.status, 400);
    assert.equal((await h.call('DELETE', `/api/service/${sid}/instance/abc`, undefined, admin)).status, 400);
    assert.equal((await h.call('DELETE', `/api/service/${sid}/instance/999`, undefined, admin)).status, 404);
    assert.equal((await h.call('POST', '/api/service/nope/instance', undefined, admin)).status, 404);
    assert.deepEqual(loads(await get('/api/services')), before, 'nothing stored or changed');
    assert.equal(loads(await get(`/api/application/${app.applicationID}`)).application_desc, 'changed');
  });

  test('both surfaces are in the OpenAPI document', async () => {
    const doc = await get('/api/docs/json');
    for (const p of ['/api/application', '/api/service/{id}/instance', '/api/services', '/api/auth/login', '/api/v1/application', '/api/v1/service/{id}/instance']) {
      assert.ok(doc.body.paths[p], `OpenAPI lacks ${p}`);
    }
  });

  test('cleanup as Oakestra\'s scripts do it: DELETE every applicationID found through GET /api/services; the list ends empty', async () => {
    // A cleanup.py:23-33 (and run-test2.py:32-43): GET /api/services, json.loads, DELETE /api/application/<applicationID>.
    const seen = loads(await get('/api/services'));
    assert.ok(seen.length > 0);
    for (const s of seen) {
      const r = await h.call('DELETE', `/api/application/${s.applicationID}`, undefined, admin);
      // O applications_blueprints.py:65-75: 200 {"message": "Application Deleted"}; a second service of an
      // application already deleted finds it gone.
      assert.ok(r.status === 200 || r.status === 404, r.text);
      if (r.status === 200) assert.deepEqual(r.body, { message: 'Application Deleted' });
    }
    assert.deepEqual(loads(await get('/api/services')), []);
    assert.deepEqual(loads(await get('/api/applications')).filter((a: { userId: string; application_name: string }) => a.userId === 'admin' && a.application_name === 'nettime'), []);
  });
});
