// Per-worker MQTT credentials and ACL, against the embedded aedes broker and against a Mosquitto 2
// started here on loopback with the password and ACL files the cluster generates.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tcpConnect } from 'node:net';
import type { MqttClient } from 'mqtt';
import { CredentialStore, CLUSTER_USER, type Credentials } from '../../orchestrator/mqtt/credentials.ts';
import { EmbeddedBroker } from '../../orchestrator/mqtt/broker.ts';
import { keepMosquittoFiles, mosquittoConf } from '../../orchestrator/mqtt/mosquitto.ts';
import { connectMqtt } from '../../orchestrator/mqtt/client.ts';
import { topics } from '../../orchestrator/mqtt/topics.ts';
import { memoryLogger } from '../../orchestrator/protocol/log.ts';
import { Cluster } from '../../orchestrator/cluster/cluster.ts';
import { startClusterApi } from '../../orchestrator/cluster/api.ts';
import { NodeEngine } from '../../orchestrator/worker/node-engine.ts';
import { freePort, sleep } from '../../harness/loopback.ts';
import { binaryMissing, skipOrFail } from '../support/facility.ts';


async function waitListening(port: number, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = tcpConnect(port, '127.0.0.1', () => { c.destroy(); resolve(true); });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listening on ${port}`);
}


function subscribe(c: MqttClient, topic: string): Promise<number> {
  return new Promise((resolve, reject) => {
    c.subscribe(topic, { qos: 1 }, (err, granted) => {
      // mqtt.js 5 reports a refused subscription (SUBACK 128) as an error carrying the packet.
      if (err && err.name === 'ErrorWithSubackPacket') return resolve(128);
      if (err) return reject(err);
      resolve(granted?.[0]?.qos ?? -1);
    });
  });
}

function collect(c: MqttClient): Array<{ topic: string; payload: string }> {
  const got: Array<{ topic: string; payload: string }> = [];
  c.on('message', (topic, payload) => got.push({ topic, payload: payload.toString() }));
  return got;
}

async function aclScenario(url: string, creds: { cluster: Credentials; w1: Credentials; w2: Credentials }, broker: string): Promise<void> {
  const clients: MqttClient[] = [];
  try {
    const cluster = await connectMqtt(url, creds.cluster, { clientId: `${CLUSTER_USER}-test`, reconnectPeriod: 0 });
    clients.push(cluster);
    const w1 = await connectMqtt(url, creds.w1, { reconnectPeriod: 0 });
    clients.push(w1);
    const w2 = await connectMqtt(url, creds.w2, { reconnectPeriod: 0 });
    clients.push(w2);
    const atCluster = collect(cluster);
    const atW1 = collect(w1);
    const atW2 = collect(w2);

    await subscribe(cluster, 'nodes/+/information');
    assert.notEqual(await subscribe(w1, topics.deploy('w1')), 128, `${broker}: w1 may subscribe to its own deploy topic`);
    // aedes refuses the subscription (SUBACK 128); Mosquitto 2 grants it and filters every delivery
    // by the read ACL. Either way w1 must never receive w2's messages, which is checked below.
    const refused = [await subscribe(w1, topics.deploy('w2')), await subscribe(w1, 'nodes/#')];
    if (broker === 'aedes') assert.deepEqual(refused, [128, 128], 'aedes refuses foreign subscriptions');
    assert.notEqual(await subscribe(w2, topics.deploy('w2')), 128);
    assert.notEqual(await subscribe(w1, topics.serviceUpdates('s1')), 128, `${broker}: route updates are readable`);

    cluster.publish(topics.deploy('w2'), 'for-w2', { qos: 1 });
    cluster.publish(topics.deploy('w1'), 'for-w1', { qos: 1 });
    cluster.publish(topics.serviceUpdates('s1'), 'route', { qos: 1 });
    await sleep(300);
    assert.deepEqual(atW1.map((m) => m.payload).sort(), ['for-w1', 'route'], `${broker}: w1 sees only its own messages`);
    assert.deepEqual(atW2.map((m) => m.payload), ['for-w2']);

    // w1 pretends to be w2: the cluster must never see it; then its own heartbeat gets through.
    w1.publish(topics.information('w2'), 'spoofed', { qos: 0 });
    w1.publish(topics.deploy('w1'), 'self-deploy', { qos: 0 });
    await sleep(300);
    const w1b = await connectMqtt(url, creds.w1, { reconnectPeriod: 0 });
    clients.push(w1b);
    w1b.publish(topics.information('w1'), 'genuine', { qos: 1 });
    await sleep(300);
    assert.deepEqual(atCluster.map((m) => `${m.topic} ${m.payload}`), ['nodes/w1/information genuine'], broker);
    assert.ok(!atW1.some((m) => m.payload === 'self-deploy'), `${broker}: a worker cannot publish orders to itself`);

    await assert.rejects(connectMqtt(url, { username: 'w1', password: 'wrong' }, { reconnectPeriod: 0 }),
      /Not authorized|Bad username|refused/i, `${broker}: wrong password`);
    await assert.rejects(connectMqtt(url, { username: 'w9', password: creds.w1.password }, { reconnectPeriod: 0 }),
      /Not authorized|Bad username|refused/i, `${broker}: unknown user`);
  } finally {
    for (const c of clients) c.end(true);
  }
}

function issueAll(store: CredentialStore): { cluster: Credentials; w1: Credentials; w2: Credentials } {
  return { cluster: store.issue(CLUSTER_USER), w1: store.issue('w1'), w2: store.issue('w2') };
}

test('embedded aedes broker: each worker is confined to its own topics', async () => {
  const store = new CredentialStore();
  const creds = issueAll(store);
  const log = memoryLogger();
  const broker = await EmbeddedBroker.start({ host: '127.0.0.1', port: 0, credentials: store, log });
  try {
    await aclScenario(broker.url, creds, 'aedes');
    // A client id that is not the username is refused (no session takeover).
    await assert.rejects(connectMqtt(broker.url, creds.w1, { clientId: 'w2', reconnectPeriod: 0 }), /Not authorized|refused/i);
    assert.ok(broker.stats.denied >= 3);
    assert.ok(log.lines.some((l) => l.msg === 'mqtt publish denied' && l.topic === 'nodes/w2/information'));
  } finally {
    await broker.close();
  }
});

test('external Mosquitto with the generated password and ACL files', async (t) => {
  // mosquitto -h exits 3 after printing help; only a missing binary counts.
  const missing = binaryMissing('mosquitto', ['-h']);
  if (missing) return skipOrFail(t, missing);
  const dir = mkdtempSync(join(tmpdir(), 'canopy-mosq-'));
  chmodSync(dir, 0o755); // mosquitto drops to its own user before reading the files
  let proc: ChildProcess | undefined;
  try {
    const store = new CredentialStore(join(dir, 'credentials.json'));
    const creds = issueAll(store);
    const files = keepMosquittoFiles(store, dir);
    const port = await freePort();
    const conf = join(dir, 'mosquitto.conf');
    writeFileSync(conf, mosquittoConf(files, '127.0.0.1', port));
    proc = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    await waitListening(port).catch((e: Error) => { throw new Error(`${e.message}: ${stderr}`); });
    await aclScenario(`mqtt://127.0.0.1:${port}`, creds, 'mosquitto');
    // A worker that connects with another's client id gets its own (use_username_as_clientid):
    // the other worker keeps its session.
    const w2 = await connectMqtt(`mqtt://127.0.0.1:${port}`, creds.w2, { reconnectPeriod: 0 });
    let w2Closed = false;
    w2.on('close', () => { w2Closed = true; });
    const fake = await connectMqtt(`mqtt://127.0.0.1:${port}`, creds.w1, { clientId: 'w2', reconnectPeriod: 0 });
    await sleep(300);
    assert.equal(w2Closed, false, 'w2 was not kicked off by a client claiming its id');
    fake.end(true);
    w2.end(true);
  } finally {
    if (proc && proc.exitCode === null) {
      const exited = new Promise((r) => proc!.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a cluster on an external Mosquitto: generated files, reload on registration, worker heartbeats arrive', async (t) => {
  const missing = binaryMissing('mosquitto', ['-h']);
  if (missing) return skipOrFail(t, missing);
  const dir = mkdtempSync(join(tmpdir(), 'canopy-mosq-cl-'));
  chmodSync(dir, 0o755);
  const stateDir = join(dir, 'cluster');
  let proc: ChildProcess | undefined;
  let cluster: Cluster | undefined;
  let api: Awaited<ReturnType<typeof startClusterApi>> | undefined;
  let engine: NodeEngine | undefined;
  try {
    // The operator's Mosquitto points at the files the cluster keeps (created empty here first).
    const files = keepMosquittoFiles(new CredentialStore(), join(stateDir, 'mosquitto'));
    const port = await freePort();
    const conf = join(dir, 'mosquitto.conf');
    writeFileSync(conf, mosquittoConf(files, '127.0.0.1', port));
    proc = spawn('mosquitto', ['-c', conf], { stdio: 'ignore' });
    await waitListening(port);
    const log = memoryLogger();
    cluster = await Cluster.start({
      name: 'c1', location: '0,0,0', stateDir, apiUrl: 'http://127.0.0.1:0', workerJoinKey: 'k',
      mqtt: { external: { url: `mqtt://127.0.0.1:${port}`, reload: () => proc!.kill('SIGHUP') } }, log,
    });
    api = await startClusterApi(cluster, { host: '127.0.0.1', port: 0, workerJoinKey: 'k' });
    const apiUrl = `http://127.0.0.1:${(api.server.address() as { port: number }).port}`;
    engine = await NodeEngine.start({
      name: `wm${process.pid % 100000}`, clusterUrl: apiUrl, joinKey: 'k', stateDir: join(dir, 'worker'),
      capacity: { vcpus: 1, memory_mb: 256 }, log,
    });
    const until = Date.now() + 15_000;
    while (cluster.registry.alive().length === 0 && Date.now() < until) await sleep(50);
    assert.equal(cluster.registry.alive().length, 1, 'the worker heartbeats through Mosquitto');
    // The cluster's orders reach the worker through Mosquitto too.
    const placed = cluster.place({
      service: { service_id: 'm1', app: 'a', appns: 'b', svc: 'c', svcns: 'd', microservice: { virtualization: 'process', cmd: ['sleep', '30'], memory: 16, vcpus: 0.1 } },
      instance_n: 0,
    });
    assert.equal(placed.accepted, true);
    while (cluster.instances.get('m1#0')?.lifecycle.state !== 'RUNNING' && Date.now() < until) await sleep(50);
    assert.equal(cluster.instances.get('m1#0')?.lifecycle.state, 'RUNNING');
  } finally {
    await engine?.close({ undeploy: true }).catch(() => {});
    await api?.close();
    await cluster?.close();
    if (proc && proc.exitCode === null) {
      const exited = new Promise((r) => proc!.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  }
});
