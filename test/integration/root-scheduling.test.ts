// Root scheduling with simulated clusters: small fastify servers on loopback that speak the cluster
// side of docs/protocols.md over real HTTP, register with the join key and report like a cluster.
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import Fastify, { type FastifyInstance } from 'fastify';
import { CLUSTER_KEY, RootHarness } from './root-harness.ts';

type Decision = { accepted: true; worker_id: string } | { accepted: false; status: string; reason: string };

interface Report {
  free?: { vcpus: number; memory_mb: number; gpus: number };
  workers_active?: number;
  virtualizations?: string[];
  architectures?: string[];
}

class SimCluster {
  offers: { service_id: string; instance_n: number; auth: string }[] = [];
  removals: string[] = [];
  routes: { service_id: string; instances: { n: number }[] }[] = [];
  decide: () => Decision | Promise<Decision> = () => ({ accepted: true, worker_id: `${this.name}-w1` });
  id = '';
  token = '';
  url = '';
  /** The cluster's standing report, repeated while it is alive so root never takes it for silent. */
  private last: Report = {};
  private keepalive: NodeJS.Timeout | undefined;
  private constructor(readonly name: string, private readonly app: FastifyInstance, private readonly h: RootHarness) {}

  static async start(h: RootHarness, name: string, location: string, report: Report = {}): Promise<SimCluster> {
    const app = Fastify();
    const c = new SimCluster(name, app, h);
    app.post<{ Body: { service: { service_id: string }; instance_n: number } }>('/api/placements', async (req) => {
      c.offers.push({ service_id: req.body.service.service_id, instance_n: req.body.instance_n, auth: req.headers.authorization ?? '' });
      return c.decide();
    });
    app.delete<{ Params: { sid: string; n: string } }>('/api/placements/:sid/:n', async (req) => {
      c.removals.push(`${req.params.sid}/${req.params.n}`);
      return { ok: true };
    });
    app.post<{ Body: { service_id: string; instances: { n: number }[] } }>('/api/routes', async (req) => {
      c.routes.push(req.body);
      return { ok: true };
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    c.url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    const reg = await h.call('POST', '/api/internal/clusters/register', { name, location, api_url: c.url }, CLUSTER_KEY);
    assert.ok(reg.status === 201 || reg.status === 200, reg.text);
    c.id = reg.body.cluster_id;
    c.token = reg.body.token;
    await c.report(report);
    // A real cluster reports on a timer; so does this one, so that a loaded machine's slow test never
    // sees it go inactive between deploys (root's silence limit is short in these tests).
    c.keepalive = setInterval(() => void c.report(c.last).catch(() => {}), 300);
    return c;
  }

  /** Stops the periodic reports: root will take the cluster for silent. */
  silence(): void {
    clearInterval(this.keepalive);
  }

  async report(r: Report = {}, instances: unknown[] = []): Promise<{ undeploy: unknown[]; ignored: number }> {
    if (Object.keys(r).length > 0) this.last = r; // a report of instances only keeps the standing figures
    const res = await this.h.call('POST', `/api/internal/clusters/${this.id}/report`, {
      free: r.free ?? { vcpus: 4, memory_mb: 4096, gpus: 0 },
      workers_active: r.workers_active ?? 1,
      virtualizations: r.virtualizations ?? ['process', 'container'],
      architectures: r.architectures ?? ['amd64'],
      instances,
    }, this.token);
    assert.equal(res.status, 200, res.text);
    return res.body;
  }

  async close(): Promise<void> {
    this.silence();
    await this.app.close();
  }
}

/** Waits for a condition (no fixed sleeps: a loaded machine is slow, not wrong). */
async function waitUntil(what: string, f: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const sla = (name: string, ms: Record<string, unknown> = {}) => ({
  sla_version: 'v2.0',
  applications: [{
    applicationID: '', application_name: name, application_namespace: 'sched',
    microservices: [{ microservice_name: 'svc', microservice_namespace: 'sched', virtualization: 'process', cmd: ['sleep', '1000'], memory: 100, vcpus: 1, ...ms }],
  }],
});

describe('root scheduling', () => {
  let h: RootHarness;
  let token: string;
  let sims: SimCluster[] = [];
  let seq = 0;

  before(async () => {
    h = await RootHarness.start({ clusterSilenceMs: 1500 });
    token = await h.admin();
  });
  afterEach(async () => {
    // Each test has its own clusters: silence the previous ones and wait until root has let them go.
    await Promise.all(sims.map((s) => s.close()));
    const gone = new Set(sims.map((s) => s.name));
    sims = [];
    await waitUntil('the previous test\'s clusters inactive', async () =>
      ((await h.call('GET', '/api/v1/clusters/active', undefined, token)).body as { name: string }[]).every((c) => !gone.has(c.name)));
  });
  after(async () => h.close());

  async function cluster(name: string, location: string, report: Report = {}): Promise<SimCluster> {
    const c = await SimCluster.start(h, `${name}${seq}`, location, report);
    sims.push(c);
    return c;
  }

  /** Creates a service and one instance; waits until scheduling settled. */
  async function deploy(ms: Record<string, unknown> = {}): Promise<{ id: string; inst: Inst }> {
    const r = await h.call('POST', '/api/v1/application?deploy=true', sla(`app${++seq}`, ms), token);
    assert.equal(r.status, 201, r.text);
    const id = r.body.services[0].microserviceID;
    return { id, inst: await settled(id, 0) };
  }

  interface Inst { state: string; reason: string; cluster_name: string; instance_ip: string; history: { state: string }[] }

  async function settled(id: string, n: number): Promise<Inst> {
    for (const until = Date.now() + 20_000; Date.now() < until;) {
      const s = await h.call('GET', `/api/v1/service/${id}`, undefined, token);
      const inst = s.body.instances.find((x: { instance_n: number }) => x.instance_n === n);
      if (inst && inst.state !== 'REQUESTED') return inst;
      await new Promise((res) => setTimeout(res, 20));
    }
    throw new Error('scheduling never settled');
  }

  test('no cluster registered → NO_CLUSTER_FOUND with the reason; a cluster that registers then gets it', async () => {
    const { id, inst } = await deploy();
    assert.equal(inst.state, 'NO_CLUSTER_FOUND');
    assert.match(inst.reason, /no cluster/);
    const c = await cluster('late', '48.1,11.6');
    let now = inst;
    for (let i = 0; i < 100 && now.state !== 'CLUSTER_SCHEDULED'; i++) {
      await new Promise((res) => setTimeout(res, 20));
      now = await settled(id, 0);
    }
    assert.equal(now.state, 'CLUSTER_SCHEDULED');
    assert.equal(now.cluster_name, c.name);
    // The retry keeps the instance NO_CLUSTER_FOUND while it runs: no REQUESTED entry per retry.
    assert.deepEqual(now.history.map((e) => e.state), ['REQUESTED', 'NO_CLUSTER_FOUND', 'CLUSTER_SCHEDULED']);
    assert.match(now.reason, new RegExp(`on a retry \\(cluster ${c.name} became active\\) after NO_CLUSTER_FOUND`));
  });

  test('clusters are offered the instance in priority order: most free capacity first, with its token', async () => {
    const small = await cluster('small', '48.1,11.6', { free: { vcpus: 2, memory_mb: 1024, gpus: 0 } });
    const big = await cluster('big', '48.1,11.6', { free: { vcpus: 16, memory_mb: 32768, gpus: 0 } });
    const mid = await cluster('mid', '48.1,11.6', { free: { vcpus: 8, memory_mb: 8192, gpus: 0 } });
    const { id, inst } = await deploy();
    assert.equal(inst.state, 'CLUSTER_SCHEDULED');
    assert.equal(inst.cluster_name, big.name);
    assert.match(inst.reason, new RegExp(`placed on cluster ${big.name} \\(worker ${big.name}-w1\\)`));
    const mine = (c: SimCluster) => c.offers.filter((o) => o.service_id === id);
    assert.equal(mine(big).length, 1);
    assert.equal(mine(big)[0]?.auth, `Bearer ${big.token}`);
    assert.equal(mine(small).length + mine(mid).length, 0);
  });

  test('a cluster that declines passes the instance to the next; all declining gives their reasons', async () => {
    const a = await cluster('a', '48.1,11.6', { free: { vcpus: 16, memory_mb: 16384, gpus: 0 } });
    const b = await cluster('b', '48.1,11.6', { free: { vcpus: 8, memory_mb: 8192, gpus: 0 } });
    a.decide = () => ({ accepted: false, status: 'NO_WORKER_CAPACITY', reason: 'every worker is full' });
    const first = await deploy();
    assert.equal(first.inst.state, 'CLUSTER_SCHEDULED');
    assert.equal(first.inst.cluster_name, b.name);
    assert.match(first.inst.reason, /every worker is full/);
    assert.equal(a.offers.filter((o) => o.service_id === first.id).length, 1);

    b.decide = () => ({ accepted: false, status: 'NO_QUALIFIED_WORKER', reason: 'no worker runs process' });
    const second = await deploy();
    assert.equal(second.inst.state, 'NO_WORKER_CAPACITY', 'one cluster said capacity');
    assert.match(second.inst.reason, new RegExp(`${a.name} declined: NO_WORKER_CAPACITY every worker is full`));
    assert.match(second.inst.reason, new RegExp(`${b.name} declined: NO_QUALIFIED_WORKER no worker runs process`));

    a.decide = b.decide;
    const third = await deploy();
    assert.equal(third.inst.state, 'NO_QUALIFIED_WORKER');
  });

  test('an unreachable cluster is skipped with its reason', async () => {
    const dead = await cluster('dead', '48.1,11.6', { free: { vcpus: 64, memory_mb: 65536, gpus: 0 } });
    const live = await cluster('live', '48.1,11.6');
    await dead.close();
    const { inst } = await deploy();
    assert.equal(inst.cluster_name, live.name);
    assert.match(inst.reason, new RegExp(`${dead.name} unreachable`));
  });

  test('constraints: direct cluster, allowed clusters, geo distance, architecture, virtualization, resources', async () => {
    const munich = await cluster('munich', '48.14,11.58,20', { free: { vcpus: 4, memory_mb: 4096, gpus: 0 }, architectures: ['amd64'] });
    const berlin = await cluster('berlin', '52.52,13.40,20', { free: { vcpus: 32, memory_mb: 65536, gpus: 0 }, architectures: ['amd64', 'arm64'], virtualizations: ['process'] });
    const named = await cluster('noloc', 'somewhere', { free: { vcpus: 64, memory_mb: 131072, gpus: 1 } });

    const direct = await deploy({ constraints: [{ type: 'direct', cluster: munich.name }] });
    assert.equal(direct.inst.cluster_name, munich.name);

    const allowed = await deploy({ constraints: [{ type: 'clusters', allowed: [munich.name, berlin.name] }] });
    assert.equal(allowed.inst.cluster_name, berlin.name, 'the bigger of the allowed');

    // Within 100 km of Augsburg: Munich (~55 km) qualifies, Berlin (~500 km) does not; a cluster without coordinates cannot be checked.
    const geo = await deploy({ constraints: [{ type: 'geo', location: '48.37,10.90', threshold: 100 }] });
    assert.equal(geo.inst.cluster_name, munich.name);
    const far = await deploy({ constraints: [{ type: 'geo', location: '40.71,-74.00', threshold: 100 }] });
    assert.equal(far.inst.state, 'NO_CLUSTER_FOUND');
    assert.match(far.inst.reason, /km away \(limit 100 km\)/);
    assert.match(far.inst.reason, /has no coordinates/);

    const arm = await deploy({ constraints: [{ type: 'arch', arch: ['arm64'] }] });
    assert.equal(arm.inst.cluster_name, berlin.name);

    const container = await deploy({ virtualization: 'container', code: 'docker.io/library/nginx:1', cmd: [] });
    assert.equal(container.inst.cluster_name, named.name, 'berlin cannot run containers, noloc is biggest');

    const huge = await deploy({ memory: 200000 });
    assert.equal(huge.inst.state, 'NO_CLUSTER_FOUND');
    assert.match(huge.inst.reason, /not enough free memory/);

    const gpu = await deploy({ vgpus: 1 });
    assert.equal(gpu.inst.cluster_name, named.name);
  });

  test('a silent cluster becomes inactive and is not offered instances', async () => {
    const quiet = await cluster('quiet', '48.1,11.6', { free: { vcpus: 64, memory_mb: 65536, gpus: 0 } });
    const chatty = await cluster('chatty', '48.1,11.6');
    quiet.silence();
    await waitUntil('only the chatty cluster active', async () => {
      const active = await h.call('GET', '/api/v1/clusters/active', undefined, token);
      return JSON.stringify(active.body.map((c: { name: string }) => c.name)) === JSON.stringify([chatty.name]);
    });
    const { id, inst } = await deploy();
    assert.equal(inst.cluster_name, chatty.name);
    assert.equal(quiet.offers.filter((o) => o.service_id === id).length, 0);
  });

  test('reports drive the lifecycle; undeploy tells the cluster; routes go to interested clusters', async () => {
    const a = await cluster('home', '48.1,11.6', { free: { vcpus: 16, memory_mb: 16384, gpus: 0 } });
    const b = await cluster('away', '48.1,11.6');
    const { id, inst } = await deploy({ addresses: { rr_ip: `10.30.77.${seq + 10}` } });
    assert.equal(inst.cluster_name, a.name);
    const svc = (await h.call('GET', `/api/v1/service/${id}`, undefined, token)).body;
    // Cluster b asks for the route: it now hears about changes.
    const q = await h.call('GET', `/api/internal/clusters/${b.id}/routes/${svc.rr_ip}`, undefined, b.token);
    assert.equal(q.status, 200);
    assert.deepEqual(q.body.instances, []);

    const t0 = Date.now();
    await a.report({ free: { vcpus: 15, memory_mb: 16000, gpus: 0 } }, [
      { service_id: id, instance_n: 0, state: 'NODE_SCHEDULED', worker: 'home-w1', ts: t0 },
      { service_id: id, instance_n: 0, state: 'RUNNING', worker: 'home-w1', ts: t0 + 1, ns_ip: '10.18.0.2', tunnel_endpoint: '198.18.0.1:50103' },
    ]);
    const running = await settled(id, 0);
    assert.equal(running.state, 'RUNNING');
    assert.deepEqual(running.history.map((e) => e.state), ['REQUESTED', 'CLUSTER_SCHEDULED', 'NODE_SCHEDULED', 'RUNNING']);
    await waitUntil('a route push to b', async () => b.routes.length > 0);
    assert.equal(b.routes.at(-1)?.service_id, id);
    assert.deepEqual(b.routes.at(-1)?.instances.map((x) => x.n), [0]);
    assert.equal(a.routes.length, 0, 'the reporting cluster already knows');

    // Names and pinned addresses of a service with a live instance are fixed.
    const rename = await h.call('PUT', `/api/v1/service/${id}`, { ...svc, microservice_name: 'renamed' }, token);
    assert.equal(rename.status, 409);
    assert.equal(rename.body.errors[0].path, '/microservice_name');
    const apps = (await h.call('GET', '/api/v1/applications', undefined, token)).body as { applicationID: string; microservices: { microserviceID: string }[] }[];
    const appId = apps.find((a) => a.microservices.some((m) => m.microserviceID === id))?.applicationID;
    assert.equal((await h.call('PUT', `/api/v1/application/${appId}`, { application_name: 'renamed' }, token)).status, 409);
    const route = await h.call('GET', `/api/internal/clusters/${b.id}/routes/${running.instance_ip}`, undefined, b.token);
    assert.equal(route.body.instances[0].ns_ip, '10.18.0.2');
    assert.equal(route.body.instances[0].tunnel_endpoint, '198.18.0.1:50103');

    // A transition the lifecycle forbids is ignored, not applied.
    await a.report({}, [{ service_id: id, instance_n: 0, state: 'COMPLETED' }]);
    const back = await a.report({}, [{ service_id: id, instance_n: 0, state: 'RUNNING' }]);
    assert.equal(back.ignored, 1);
    assert.equal((await settled(id, 0)).state, 'COMPLETED');

    const second = await h.call('POST', `/api/v1/service/${id}/instance`, undefined, token);
    const placed = await settled(id, second.body.instance_n);
    const host = [a, b].find((c) => c.name === placed.cluster_name) as SimCluster;
    const del = await h.call('DELETE', `/api/v1/service/${id}/instance/${second.body.instance_n}`, undefined, token);
    assert.equal(del.body.state, 'UNDEPLOYED');
    await waitUntil('the removal reaches the cluster', async () => host.removals.length > 0);
    assert.deepEqual(host.removals, [`${id}/${second.body.instance_n}`]);
    // A cluster still reporting an undeployed instance is asked to remove it.
    const stale = await host.report({}, [{ service_id: id, instance_n: second.body.instance_n, state: 'RUNNING' }]);
    assert.deepEqual(stale.undeploy, [{ service_id: id, instance_n: second.body.instance_n }]);

    // A finished one-shot still has its files on a worker: undeploying it tells its cluster, and a
    // cluster still listing it as COMPLETED is asked again.
    const done = await h.call('DELETE', `/api/v1/service/${id}/instance/0`, undefined, token);
    assert.equal(done.body.state, 'UNDEPLOYED');
    for (let i = 0; i < 50 && !a.removals.includes(`${id}/0`); i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(a.removals.includes(`${id}/0`), `removals at ${a.name}: ${JSON.stringify(a.removals)}`);
    const completed = await a.report({}, [{ service_id: id, instance_n: 0, state: 'COMPLETED' }]);
    assert.deepEqual(completed.undeploy, [{ service_id: id, instance_n: 0 }]);
  });

  test('a cluster that reports the instance before root reads its acceptance keeps it', async () => {
    const slow = await cluster('slow', '48.1,11.6');
    slow.decide = async () => {
      await new Promise((r) => setTimeout(r, 400));
      return { accepted: true, worker_id: 'slow-w1' };
    };
    const r = await h.call('POST', '/api/v1/application?deploy=true', sla(`app${++seq}`), token);
    const id = r.body.services[0].microserviceID;
    await waitUntil('the offer reaches the slow cluster', async () => slow.offers.some((o) => o.service_id === id));
    await slow.report({}, [{ service_id: id, instance_n: 0, state: 'RUNNING', worker: 'slow-w1' }]);
    await new Promise((res) => setTimeout(res, 600));
    const inst = await settled(id, 0);
    assert.equal(inst.state, 'RUNNING');
    assert.equal(inst.cluster_name, slow.name);
    assert.deepEqual(slow.removals, []);
  });
});
