// Malformed requests to every root route, user-facing and cluster-facing, with valid credentials so
// that the bodies reach the handlers: no answer may be a 5xx, and the server keeps serving.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { CLUSTER_KEY, RootHarness } from './root-harness.ts';
import { fuzzRandom } from '../support/fuzz-random.ts';

const rng = fuzzRandom('root-fuzz');
const rnd = rng.next;
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;

function junk(depth = 0): unknown {
  const leaves = [null, true, false, 0, -1, 1e308, -1e-308, 3.5, '', 'x', '💥', '10.30.0.1', 'fdc0:30::1', 'RUNNING', '__proto__', 'a'.repeat(300)];
  if (depth > 3) return pick(leaves);
  switch (Math.floor(rnd() * 4)) {
    case 0:
      return Array.from({ length: Math.floor(rnd() * 4) }, () => junk(depth + 1));
    case 1: {
      const keys = ['sla_version', 'applications', 'microservices', 'application_name', 'microservice_name', 'virtualization', 'free', 'vcpus',
        'memory_mb', 'workers_active', 'instances', 'service_id', 'instance_n', 'state', 'worker_id', 'name', 'api_url', 'username', 'password',
        'addresses', 'rr_ip', 'constraints', 'type', 'port', 'cmd', 'applicationID'];
      return Object.fromEntries(Array.from({ length: 1 + Math.floor(rnd() * 5) }, () => [pick(keys), junk(depth + 1)]));
    }
    default:
      return pick(leaves);
  }
}

let h: RootHarness;
before(async () => {
  h = await RootHarness.start();
});
after(async () => h.close());

test('600 malformed requests across all routes: never a 5xx', async () => {
  const token = await h.admin();
  const reg = await h.call('POST', '/api/internal/clusters/register', { name: 'fuzz', location: '1,2', api_url: 'http://127.0.0.1:9' }, CLUSTER_KEY);
  const { cluster_id: cid, token: ct } = reg.body as { cluster_id: string; token: string };
  const created = await h.call('POST', '/api/v1/application', {
    sla_version: 'v2.0', applications: [{ application_name: 'f', application_namespace: 'f', microservices: [
      { microservice_name: 's', microservice_namespace: 'f', virtualization: 'process', cmd: ['x'] }] }],
  }, token);
  const app = created.body.applications[0].applicationID as string;
  const svc = created.body.services[0].microserviceID as string;
  const routes: [string, string, string][] = [
    ['POST', '/api/v1/auth/login', ''], ['POST', '/api/v1/users', token], ['POST', '/api/v1/application', token], ['PUT', `/api/v1/application/${app}`, token],
    ['POST', '/api/v1/service', token], ['PUT', `/api/v1/service/${svc}`, token], ['POST', `/api/v1/service/${svc}/instance`, token],
    ['POST', '/api/internal/clusters/register', CLUSTER_KEY], ['POST', `/api/internal/clusters/${cid}/report`, ct],
    ['POST', `/api/internal/clusters/${cid}/subnets`, ct], ['GET', `/api/internal/clusters/${cid}/routes/${encodeURIComponent('::ffff:1.2.3.4')}`, ct],
    ['GET', `/api/internal/clusters/${cid}/routes/${encodeURIComponent('%%')}`, ct], ['DELETE', `/api/v1/service/${svc}/instance/99999999999`, token],
  ];
  const bad: string[] = [];
  for (let i = 0; i < 600; i++) {
    const [method, path, auth] = pick(routes);
    const body = method === 'GET' || method === 'DELETE' ? undefined : junk();
    const r = await h.call(method, path, body, auth || undefined);
    if (r.status >= 500) bad.push(`${method} ${path} ${JSON.stringify(body)?.slice(0, 200)} → ${r.status} ${r.text.slice(0, 200)}`);
  }
  assert.deepEqual(bad, []);
  // A report full of junk instance entries is applied entry by entry.
  const r = await h.call('POST', `/api/internal/clusters/${cid}/report`, {
    free: { vcpus: 1, memory_mb: 1, gpus: 0 }, workers_active: 1,
    instances: [null, 5, { service_id: svc }, { service_id: svc, instance_n: 0, state: 'NOPE' }, { service_id: svc, instance_n: -1, state: 'RUNNING' }],
  }, ct);
  assert.equal(r.status, 200, r.text);
  assert.equal((await h.call('GET', `/api/v1/service/${svc}`, undefined, token)).status, 200, 'still serving');
});
