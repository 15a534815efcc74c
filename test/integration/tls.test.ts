// Every control link is TLS (SPEC §10), with real servers on loopback: root's API, the cluster's API
// and its embedded broker (mqtts) serve only TLS with certificates from a CA made for the test; a
// cluster registers with root and a worker joins the cluster and its broker through them, pinning the
// CA. A client that does not trust the CA fails the handshake; plain HTTP and plain MQTT to a TLS port
// get no answer; a certificate for another name is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import type { FastifyInstance } from 'fastify';
import { Cluster } from '../../orchestrator/cluster/cluster.ts';
import { startClusterApi } from '../../orchestrator/cluster/api.ts';
import { NodeEngine } from '../../orchestrator/worker/node-engine.ts';
import { memoryLogger, jsonLogger } from '../../orchestrator/protocol/log.ts';
import { pinCa } from '../../orchestrator/protocol/tls.ts';
import { RootServer } from '../../orchestrator/root/server.ts';
import { createCa, issueCert } from '../../orchestrator/tls/certs.ts';
import { freePort, waitFor } from '../../harness/loopback.ts';

/** One GET over https with exactly `ca` trusted; resolves with the status or rejects with the TLS error. */
function httpsGet(url: string, ca: string | undefined, servername?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ca, servername, agent: false, timeout: 5000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

function plainGet(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { agent: false, timeout: 5000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** Whether an MQTT CONNECT with these options gets a CONNACK; false on refusal, close or timeout. */
function mqttConnects(url: string, o: mqtt.IClientOptions): Promise<boolean> {
  return new Promise((resolve) => {
    const c = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 3000, ...o });
    const done = (ok: boolean): void => {
      c.removeAllListeners();
      c.on('error', () => {});
      c.end(true);
      resolve(ok);
    };
    c.once('connect', () => done(true));
    c.once('error', () => done(false));
    c.once('close', () => done(false));
  });
}

test('root, cluster and MQTT speak only TLS; the tiers join through it pinning the CA; others are refused', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'canopy-tls-'));
  const ca = createCa();
  const otherCa = createCa('Some other CA');
  const rootPem = issueCert(ca, { name: 'root', sans: ['127.0.0.1'] });
  const clusterPem = issueCert(ca, { name: 'cluster', sans: ['127.0.0.1'] });
  const log = memoryLogger();
  let root: RootServer | undefined;
  let cluster: Cluster | undefined;
  let api: FastifyInstance | undefined;
  let engine: NodeEngine | undefined;
  pinCa(ca.cert);
  try {
    root = await RootServer.start({ dataDir: join(dir, 'root'), host: '127.0.0.1', port: 0, adminPassword: 'pw-root-admin', clusterKey: 'ck',
      log: jsonLogger({ component: 'root' }, 'error'), announce: () => undefined, tls: rootPem });
    assert.match(root.url, /^https:\/\//);
    const mqttPort = await freePort();
    const apiPort = await freePort();
    const apiUrl = `https://127.0.0.1:${apiPort}`;
    cluster = await Cluster.start({
      name: 'tls1', location: '0,0,0', stateDir: join(dir, 'cluster'), apiUrl, workerJoinKey: 'wk',
      root: { url: root.url, joinKey: 'ck' },
      mqtt: { embedded: { host: '127.0.0.1', port: mqttPort, tls: clusterPem } }, log: log.child({ c: 1 }),
    });
    api = await startClusterApi(cluster, { host: '127.0.0.1', port: apiPort, workerJoinKey: 'wk', tls: clusterPem });
    const mqttUrl = `mqtts://127.0.0.1:${mqttPort}`;
    await waitFor('cluster registered at root over https', () => cluster!.root?.registration !== undefined, 20_000);

    // A worker registers over https and joins the broker over mqtts, both verified against the CA.
    engine = await NodeEngine.start({ name: `wt${process.pid % 100000}`, clusterUrl: apiUrl, joinKey: 'wk', stateDir: join(dir, 'worker'),
      capacity: { vcpus: 1, memory_mb: 256 }, log: log.child({ w: 1 }) });
    assert.equal(engine.identity.mqtt.url, mqttUrl, 'workers are handed the mqtts URL');
    await waitFor('worker alive at the cluster over mqtts', () => cluster!.registry.alive().length === 1, 20_000);

    for (const url of [root.url, apiUrl]) {
      assert.equal(await httpsGet(`${url}/metrics`, ca.cert), 200, `${url} with the CA`);
      // Without the CA (the system's trust store) and with another CA: the handshake fails.
      await assert.rejects(httpsGet(`${url}/metrics`, undefined), /unable to verify|self.signed|certificate/i, `${url} without the CA`);
      await assert.rejects(httpsGet(`${url}/metrics`, otherCa.cert), /unable to verify|self.signed|certificate/i, `${url} with another CA`);
      // Plain HTTP to the TLS port: no HTTP answer at all.
      await assert.rejects(plainGet(`${url.replace('https:', 'http:')}/metrics`), `plain HTTP to ${url}`);
    }

    // A certificate for another name: refused even though the CA signed it.
    const elsewhere = issueCert(ca, { name: 'elsewhere', sans: ['192.0.2.1'] });
    const rogue = await RootServer.start({ dataDir: join(dir, 'rogue'), host: '127.0.0.1', port: 0, adminPassword: 'x-rogue-pw', clusterKey: 'ck',
      log: jsonLogger({ component: 'rogue' }, 'error'), announce: () => undefined, tls: elsewhere });
    try {
      await assert.rejects(httpsGet(`${rogue.url}/metrics`, ca.cert), /altnames|does not match/i);
    } finally {
      await rogue.close();
    }

    // MQTT with the worker's own credentials (the probe takes its session for a moment; it reconnects).
    const worker = engine.identity;
    const id = { clientId: worker.mqtt.username, username: worker.mqtt.username, password: worker.mqtt.password };
    assert.equal(await mqttConnects(mqttUrl, { ...id, ca: ca.cert, rejectUnauthorized: true }), true, 'mqtts with the CA');
    await waitFor('worker back after the probe took its session', () => engine!.connected, 20_000);
    assert.equal(await mqttConnects(mqttUrl, { ...id, ca: otherCa.cert, rejectUnauthorized: true }), false, 'mqtts with another CA');
    assert.equal(await mqttConnects(mqttUrl, { ...id, rejectUnauthorized: true }), false, 'mqtts without the CA');
    assert.equal(await mqttConnects(`mqtt://127.0.0.1:${mqttPort}`, id), false, 'plain MQTT to the mqtts port');
  } finally {
    pinCa(undefined);
    await engine?.close({ undeploy: true }).catch(() => {});
    await api?.close();
    await cluster?.close();
    await root?.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
