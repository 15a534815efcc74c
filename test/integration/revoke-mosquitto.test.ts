// Revoking a worker when the cluster's broker is Mosquitto (Debian's 2.0) instead of the embedded one
// (SPEC §10): the worker's open session must close within a second all the same, and its reconnects
// be refused. The cluster rewrites the password file without the worker and signals the broker
// (--mosquitto-pid-file); on that reload Mosquitto checks every connected client against the new file
// and disconnects the ones no longer in it. The other worker's session is untouched.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { binaryMissing, unavailable } from '../support/facility.ts';
import { poll } from '../support/in-process-stack.ts';
import { freePort, sleep } from '../../harness/loopback.ts';
import { Cluster } from '../../orchestrator/cluster/cluster.ts';
import { startClusterApi } from '../../orchestrator/cluster/api.ts';
import { NodeEngine } from '../../orchestrator/worker/node-engine.ts';
import { CredentialStore } from '../../orchestrator/mqtt/credentials.ts';
import { keepMosquittoFiles, mosquittoConf, reloadByPidFile } from '../../orchestrator/mqtt/mosquitto.ts';
import { memoryLogger } from '../../orchestrator/protocol/log.ts';

const listening = (port: number): Promise<boolean> => new Promise((resolve) => {
  const s = connect(port, '127.0.0.1', () => {
    s.destroy();
    resolve(true);
  });
  s.on('error', () => resolve(false));
});

test('on Mosquitto a revoked worker\'s session is closed at once and its reconnects refused', { skip: unavailable(binaryMissing('mosquitto', ['-h'])), timeout: 90_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'canopy-revoke-mq-'));
  const log = memoryLogger();
  // Mosquitto started as root drops to its own user before reading the files.
  chmodSync(dir, 0o755);
  const stateDir = join(dir, 'cluster');
  const files = keepMosquittoFiles(new CredentialStore(), join(stateDir, 'mosquitto'));
  chmodSync(stateDir, 0o755);
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(conf, mosquittoConf(files, '127.0.0.1', port));
  const broker = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let brokerLog = '';
  broker.stderr.on('data', (b: Buffer) => {
    brokerLog += b.toString();
  });
  const pidFile = join(dir, 'mosquitto.pid');
  writeFileSync(pidFile, String(broker.pid));
  let cluster: Cluster | undefined;
  let api: Awaited<ReturnType<typeof startClusterApi>> | undefined;
  const engines: NodeEngine[] = [];
  try {
    await poll('mosquitto listens', async () => listening(port), 10_000);
    const reloads: string[] = [];
    const reload = reloadByPidFile(pidFile, (m) => reloads.push(m));
    const apiPort = await freePort();
    const apiUrl = `http://127.0.0.1:${apiPort}`;
    cluster = await Cluster.start({
      name: 'mq', location: '48.1,11.5,100', stateDir, apiUrl, workerJoinKey: 'wk',
      mqtt: { external: { url: `mqtt://127.0.0.1:${port}`, reload } }, reportIntervalMs: 1000, log,
    });
    api = await startClusterApi(cluster, { host: '127.0.0.1', port: apiPort, workerJoinKey: 'wk' });
    for (const name of [`wmqa${process.pid % 100000}`, `wmqb${process.pid % 100000}`]) {
      engines.push(await NodeEngine.start({ name, clusterUrl: apiUrl, joinKey: 'wk', stateDir: join(dir, name), capacity: { vcpus: 1, memory_mb: 512 }, location: '48.1,11.6', log }));
    }
    const [victim, other] = engines as [NodeEngine, NodeEngine];
    await poll('both workers connected to Mosquitto', async () => victim.connected && other.connected, 15_000);
    await poll('the cluster sees both alive', async () => [...cluster!.registry.workers.values()].filter((w) => w.alive).length === 2, 15_000);

    assert.equal(await cluster.revokeWorker(victim.workerId), true);
    // Within the second the issue asks for.
    await poll('the revoked worker\'s session is closed', async () => !victim.connected, 1000);
    // It keeps reconnecting with the password it was given: Mosquitto refuses it.
    await sleep(3000);
    assert.equal(victim.connected, false, `its reconnects are refused (broker log: ${brokerLog.slice(-500)})`);
    assert.equal(other.connected, true, 'the other worker\'s session is untouched');
    assert.ok([...cluster.registry.workers.values()].some((w) => w.id === other.workerId && w.alive), 'and it keeps heartbeating');
    assert.deepEqual(reloads, [], 'every reload signal reached the broker');
  } finally {
    for (const e of engines) await e.close().catch(() => {});
    await api?.close();
    await cluster?.close();
    broker.kill('SIGTERM');
    await new Promise((r) => (broker.exitCode !== null ? r(undefined) : broker.once('exit', r)));
    rmSync(dir, { recursive: true, force: true });
  }
});
