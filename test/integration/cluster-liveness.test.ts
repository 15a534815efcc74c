// A cluster (embedded broker, HTTP API) with two real worker node engines over MQTT on loopback, and a
// small stand-in for root: registration and reports, placement accept/decline with reasons, a worker
// that stops heartbeating is declared dead after 3 s and its instance re-placed on the other worker,
// the interested worker gets the route change, the stray copy is removed when the first worker comes
// back, and malformed payloads are dropped while the cluster keeps going.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { Cluster } from '../../orchestrator/cluster/cluster.ts';
import { startClusterApi } from '../../orchestrator/cluster/api.ts';
import { NodeEngine } from '../../orchestrator/worker/node-engine.ts';
import type { InstanceNetwork, AttachRequest, Attachment } from '../../orchestrator/worker/net-seam.ts';
import { connectMqtt } from '../../orchestrator/mqtt/client.ts';
import { topics } from '../../orchestrator/mqtt/topics.ts';
import { memoryLogger } from '../../orchestrator/protocol/log.ts';
import type { ClusterToWorker } from '../../proxy/route-messages.ts';
import type { Report } from '../../orchestrator/protocol/root-cluster.ts';
import { waitFor } from '../../harness/loopback.ts';



/** Root's side of docs/protocols.md, as far as a cluster calls it. */
async function standInRoot(): Promise<{ app: FastifyInstance; url: string; reports: Report[]; token: string }> {
  const app = Fastify();
  const reports: Report[] = [];
  const token = 'cluster-token-1';
  const subnets = new Map<string, number>();
  app.post('/api/internal/clusters/register', async (req, reply) => {
    if (req.headers.authorization !== 'Bearer join-root') return reply.code(401).send({ error: 'bad join key' });
    return { cluster_id: 'c-1', token };
  });
  app.post('/api/internal/clusters/c-1/report', async (req, reply) => {
    if (req.headers.authorization !== `Bearer ${token}`) return reply.code(401).send({ error: 'bad token' });
    reports.push(req.body as Report);
    return { ok: true };
  });
  app.post('/api/internal/clusters/c-1/subnets', async (req) => {
    const w = (req.body as { worker_id: string }).worker_id;
    if (!subnets.has(w)) subnets.set(w, subnets.size);
    return { subnet_v4: `10.18.${subnets.get(w)}.0/24`, subnet_v6: `fdc0:18:${subnets.get(w)}::/64` };
  });
  app.get('/api/internal/clusters/c-1/routes/:address', async (_req, reply) => reply.code(404).send({ error: 'none' }));
  await app.listen({ host: '127.0.0.1', port: 0 });
  const a = app.server.address() as { port: number };
  return { app, url: `http://127.0.0.1:${a.port}`, reports, token };
}

/** Stands in for the net manager: gives each instance a namespace address, wires nothing. */
class AddressOnly implements InstanceNetwork {
  private next = 2;
  constructor(private readonly prefix: string) {}
  async attach(_r: AttachRequest): Promise<Attachment> {
    return { ns_ip: `${this.prefix}.${this.next++}` };
  }
  async detach(): Promise<void> {}
  async close(): Promise<void> {}
}

test('cluster with two workers: placement, liveness, re-placement, route push, reconcile, bad payloads', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'canopy-cl-'));
  const root = await standInRoot();
  const log = memoryLogger();
  const suffix = String(process.pid % 100000);
  let cluster: Cluster | undefined;
  let api: FastifyInstance | undefined;
  const engines: NodeEngine[] = [];
  try {
    cluster = await Cluster.start({
      name: 'c1', location: '48.1,11.5,50', stateDir: join(dir, 'cluster'), apiUrl: 'http://127.0.0.1:0',
      root: { url: root.url, joinKey: 'join-root' }, workerJoinKey: 'join-workers',
      mqtt: { embedded: { host: '127.0.0.1', port: 0 } }, reportIntervalMs: 500, log,
    });
    api = await startClusterApi(cluster, { host: '127.0.0.1', port: 0, workerJoinKey: 'join-workers' });
    const apiUrl = `http://127.0.0.1:${(api.server.address() as { port: number }).port}`;
    await waitFor('registration with root', () => cluster!.rootToken);

    // A wrong join key gets nothing.
    const refused = await fetch(`${apiUrl}/api/workers/register`, {
      method: 'POST', headers: { authorization: 'Bearer nope', 'content-type': 'application/json' }, body: '{"name":"x"}',
    });
    assert.equal(refused.status, 401);

    for (const [i, name] of [`wa${suffix}`, `wb${suffix}`].entries()) {
      engines.push(await NodeEngine.start({
        name, clusterUrl: apiUrl, joinKey: 'join-workers', stateDir: join(dir, name),
        capacity: { vcpus: 2, memory_mb: 1024 }, location: '48.1,11.6', tunnelEndpoint: `198.18.0.${i + 1}:50103`,
        net: new AddressOnly(`10.18.${i}`), log: log.child({ worker: name }),
        backoff: { initialMs: 200, maxMs: 1000, resetAfterMs: 10_000 },
      }));
    }
    const wa = engines[0]!;
    await waitFor('both workers alive', () => cluster!.registry.alive().length === 2);
    assert.equal(wa.identity.subnet_v4, '10.18.0.0/24', 'subnet from root in the registration answer');

    const place = (body: unknown) => fetch(`${apiUrl}/api/placements`, {
      method: 'POST', headers: { authorization: `Bearer ${root.token}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
    });
    const offer = (n: number, micro: Record<string, unknown>) => ({
      service: {
        service_id: 'svc1', app: 'app', appns: 'ns', svc: 'web', svcns: 'ns', rr_ip: '10.30.0.10', closest_ip: '10.30.0.11',
        microservice: { virtualization: 'process', cmd: ['sleep', '600'], memory: 64, vcpus: 0.5, ...micro },
      },
      instance_n: n, instance_ip: `10.30.1.${n + 1}`,
    });

    // Placement without root's token is refused.
    const noToken = await fetch(`${apiUrl}/api/placements`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(offer(0, {})) });
    assert.equal(noToken.status, 401);
    const badBody = await place({ service: { service_id: 'svc1' }, instance_n: -1 });
    assert.equal(badBody.status, 400);

    // Declines carry the status and the reason.
    const tooBig = await (await place(offer(5, { vcpus: 16 }))).json() as Record<string, unknown>;
    assert.equal(tooBig.accepted, false);
    assert.equal(tooBig.status, 'NO_WORKER_CAPACITY');
    assert.match(String(tooBig.reason), /vCPU free < 16/);
    const wrongArch = await (await place(offer(6, { constraints: [{ type: 'arch', arch: ['riscv64'] }] }))).json() as Record<string, unknown>;
    assert.equal(wrongArch.status, 'NO_QUALIFIED_WORKER');
    assert.match(String(wrongArch.reason), /not in \[riscv64\]/);

    // Accepted placement → RUNNING on a worker.
    const ok = await (await place(offer(0, { constraints: [{ type: 'anti_affinity' }] }))).json() as Record<string, unknown>;
    assert.equal(ok.accepted, true);
    const first = engines.find((e) => e.workerId === ok.worker_id)!;
    const other = engines.find((e) => e !== first)!;
    const ci = cluster.instances.get('svc1#0')!;
    await waitFor('instance RUNNING', () => ci.lifecycle.state === 'RUNNING');
    assert.match(ci.lifecycle.history.find((h) => h.state === 'NODE_SCHEDULED')!.reason, /best fit/);
    assert.ok(ci.ns_ip?.startsWith('10.18.'), 'namespace address reported by the worker');

    // The other worker is interested in the service (as its semantic layer would be after a query).
    const updates: ClusterToWorker[] = [];
    other.routeLink().onMessage((m) => updates.push(m));
    other.routeLink().send({ type: 'interest_add', service_id: 'svc1' });
    const answers: ClusterToWorker[] = [];
    other.routeLink().onMessage((m) => { if (m.type === 'table_result') answers.push(m); });
    other.routeLink().send({ type: 'table_query', query_id: 'q1', address: '10.30.0.10' });
    const answer = await waitFor('table query answer', () => answers[0]);
    assert.ok(answer.type === 'table_result' && answer.route?.instances[0]?.worker_id === first.workerId);
    await waitFor('interest registered', () => cluster!.interestedIn('svc1').includes(other.workerId));

    // Coordinates reported by a worker are relayed to the workers that report theirs.
    other.routeLink().send({ type: 'coordinate_report', worker_id: other.workerId, coord: { vec: [1, 2], height: 0.5, error: 0.4 }, rtt_ms: {} });
    const peers = await waitFor('coordinates relayed', () => updates.find((m) => m.type === 'coordinates'));
    assert.ok(peers.type === 'coordinates' && peers.entries.some((e) => e.worker_id === other.workerId && e.coord.vec[1] === 2));

    // Root sees the aggregate and the instance's states.
    await waitFor('a report with the RUNNING instance', () => root.reports.some((r) => r.instances.some((i) => i.service_id === 'svc1' && i.state === 'RUNNING')));
    const last = root.reports[root.reports.length - 1]!;
    assert.equal(last.workers_active, 2);
    assert.deepEqual(last.virtualizations, ['process']);
    assert.ok(last.free.vcpus <= 3.5 && last.free.memory_mb <= 2048 - 64);

    // The first worker falls silent.
    const t0 = Date.now();
    first.pauseHeartbeats(true);
    let lastHeard = 0;
    const deadAt = await new Promise<number>((resolve) => cluster!.once('worker-dead', (id) => {
      lastHeard = cluster!.registry.workers.get(id)!.lastSeen;
      resolve(Date.now());
    }));
    await waitFor('re-placed instance RUNNING on the other worker', () => ci.worker === other.workerId && ci.lifecycle.state === 'RUNNING');
    const runningAt = Date.now();
    const pushed = await waitFor('route update with the new instance', () => updates.find((m) =>
      m.type === 'route_update' && m.route.instances.some((i) => i.worker_id === other.workerId)));
    const pushedAt = Date.now();
    t.diagnostic(`silent ${deadAt - lastHeard} ms when declared dead; from the pause: dead ${deadAt - t0} ms, RUNNING elsewhere ${runningAt - t0} ms, route pushed ${pushedAt - t0} ms`);
    console.log(`# liveness: silent ${deadAt - lastHeard} ms when declared dead; from the pause: dead ${deadAt - t0} ms, RUNNING elsewhere ${runningAt - t0} ms, route pushed ${pushedAt - t0} ms`);
    // The last heartbeat went out up to 1 s before the pause: silence is counted from it.
    assert.ok(deadAt - lastHeard >= 3000, `declared dead after only ${deadAt - lastHeard} ms of silence`);
    assert.ok(pushed.type === 'route_update' && pushed.route.instances.length === 1);
    const reasons = ci.lifecycle.history.map((h) => `${h.state}: ${h.reason}`).join('\n');
    // The reason names the silence it saw: at least the 3 s dead-after, however slow the machine.
    const silence = new RegExp(`CLUSTER_SCHEDULED: worker ${first.workerId} silent for (\\d+\\.\\d) s`).exec(reasons);
    assert.ok(silence && Number(silence[1]) >= 3, `reason names the silence: ${reasons}`);
    assert.match(reasons, /NODE_SCHEDULED: re-placed after worker .* best fit/);

    // It comes back: the stray copy on it is removed, the live one stays; nothing is duplicated.
    first.pauseHeartbeats(false);
    await waitFor('stray instance removed from the returning worker', () => first.instances.size === 0);
    assert.equal(other.instances.size, 1);
    assert.equal([...other.instances.values()][0]!.state, 'RUNNING');
    assert.equal(ci.worker, other.workerId);

    // Malformed payloads from a worker are logged and dropped; the cluster keeps going.
    const before = cluster.counters.dropped;
    const hbBefore = cluster.counters.heartbeats;
    // A third, registered worker of its own (sharing a live worker's client id would take its session over).
    const reg = await (await fetch(`${apiUrl}/api/workers/register`, {
      method: 'POST', headers: { authorization: 'Bearer join-workers', 'content-type': 'application/json' }, body: JSON.stringify({ name: `bad${suffix}` }),
    })).json() as { worker_id: string; mqtt: { username: string; password: string } };
    const bad = reg.worker_id;
    const raw = await connectMqtt(cluster.mqttUrl, reg.mqtt, { reconnectPeriod: 0 });
    raw.publish(topics.information(bad), '{"not":"a heartbeat"}', { qos: 1 });
    raw.publish(topics.job(bad), Buffer.from([0xde, 0xad, 0xbe, 0xef]), { qos: 1 });
    raw.publish(topics.tableQueryRequest(bad), JSON.stringify({ type: 'table_query', query_id: 'x', address: 'not-an-ip' }), { qos: 1 });
    raw.publish(topics.interest(bad), JSON.stringify({ type: 'table_result', query_id: 'x', route: null }), { qos: 1 });
    await waitFor('four drops', () => cluster!.counters.dropped >= before + 4);
    raw.end(true);
    await waitFor('heartbeats still processed', () => cluster!.counters.heartbeats > hbBefore + 2);
    assert.ok(log.lines.some((l) => l.msg === 'malformed message dropped' && /invalid heartbeat/.test(String(l.error))));

    // Undeploy through the API: gone from the worker within a moment.
    const del = await fetch(`${apiUrl}/api/placements/svc1/0`, { method: 'DELETE', headers: { authorization: `Bearer ${root.token}` } });
    assert.equal(del.status, 200);
    await waitFor('undeployed on the worker', () => other.instances.size === 0);
    const withdrawn = await waitFor('route withdrawn', () => updates.find((m) => m.type === 'route_withdraw'));
    assert.equal(withdrawn.type, 'route_withdraw');

    const metrics = await (await fetch(`${apiUrl}/metrics`)).text();
    assert.match(metrics, /canopy_cluster_workers_alive 2/);
    assert.match(metrics, /canopy_cluster_deaths_total 1/);

    // A worker that leaves for good: its daemon stops, then the operator removes it.
    const leaving = first.workerId;
    const password = first.identity.mqtt.password;
    await first.close({ undeploy: true });
    const gone = await fetch(`${apiUrl}/api/workers/${leaving}`, { method: 'DELETE', headers: { authorization: 'Bearer join-workers' } });
    assert.equal(gone.status, 200);
    assert.equal(cluster.registry.workers.has(leaving), false);
    await assert.rejects(connectMqtt(cluster.mqttUrl, { username: leaving, password }, { reconnectPeriod: 0 }), /Not authorized|Bad username|refused/i);
    const again = await fetch(`${apiUrl}/api/workers/${leaving}`, { method: 'DELETE', headers: { authorization: 'Bearer join-workers' } });
    assert.equal(again.status, 404);
  } finally {
    for (const e of engines) await e.close({ undeploy: true }).catch(() => {});
    await api?.close();
    await cluster?.close();
    await root.app.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
