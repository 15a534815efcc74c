// The cluster's worker admission with a fake bus (a list of what it publishes) and a state folder of
// its own: registration answers, a revoked worker's name barred for good, the tunnel key rotated
// and retained for the workers that remain, and the new key kept across a restart.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WorkerAdmission, ClusterError } from '../../../orchestrator/cluster/admission.ts';
import { InstanceIndex } from '../../../orchestrator/cluster/instance-index.ts';
import { newCounters, type ClusterContext } from '../../../orchestrator/cluster/context.ts';
import { PeerDistribution } from '../../../orchestrator/cluster/peer-distribution.ts';
import { RouteService } from '../../../orchestrator/cluster/route-service.ts';
import { RootReporter } from '../../../orchestrator/cluster/root-reporter.ts';
import { Placer } from '../../../orchestrator/cluster/placer.ts';
import { WorkerRegistry } from '../../../orchestrator/cluster/worker-registry.ts';
import { CredentialStore } from '../../../orchestrator/mqtt/credentials.ts';
import { topics } from '../../../orchestrator/mqtt/topics.ts';
import { memoryLogger } from '../../../orchestrator/protocol/log.ts';

function setup(dir: string) {
  const published: { topic: string; payload: string; retain: boolean }[] = [];
  const registry = new WorkerRegistry(3000);
  const ctx: ClusterContext = {
    name: 'c1', log: memoryLogger(), index: new InstanceIndex(), registry, counters: newCounters(),
    publish: (topic, payload, retain = false) => published.push({ topic, payload, retain }),
    clusterId: () => null,
    saveSoon: () => {},
  };
  const peers = new PeerDistribution(ctx, undefined);
  const routes = new RouteService(ctx, undefined, (w) => peers.tunnelIdOf(w));
  const reporter = new RootReporter(ctx, undefined, { location: '48,11', apiUrl: 'http://127.0.0.1:1' }, peers, async () => {});
  const placer = new Placer(ctx, routes, { workerDead: () => {} });
  const creds = new CredentialStore(join(dir, 'credentials.json'));
  const admission = new WorkerAdmission(ctx, {
    stateDir: dir, encryptPayload: false, creds, root: undefined, peers, routes, reporter, placer,
    // An external broker: registration waits for the password file.
    broker: () => ({ workerUrl: 'mqtts://198.19.250.1:10002', embedded: undefined }),
  });
  // The credential store writes its file 50 ms after a change: flushed before the folder is removed.
  return { admission, registry, creds, published, ctx, close: () => { reporter.close(); peers.close(); creds.flush(); } };
}

/** A state folder for one test, removed after it together with every setup opened on it. */
function tempDir(t: TestContext): { dir: string; open: { close(): void }[] } {
  const dir = mkdtempSync(join(tmpdir(), 'canopy-admission-'));
  const open: { close(): void }[] = [];
  t.after(() => {
    for (const o of open) o.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { dir, open };
}

test('register, revoke: the name is barred, the tunnel key rotates and is retained for the others, and survives a restart', async (t) => {
  const { dir, open } = tempDir(t);
  const a = setup(dir);
  open.push(a);

  const w1 = await a.admission.register('W1');
  assert.equal(w1.worker_id, 'w1', 'names are lower-cased');
  assert.equal(w1.mqtt.url, 'mqtts://198.19.250.1:10002');
  assert.equal(w1.mqtt.username, 'w1');
  assert.ok(a.creds.has('w1'));
  assert.deepEqual(w1.tunnel, a.admission.tunnelKey);
  await a.admission.register('w2');
  await assert.rejects(a.admission.register('bad name!'), (e: unknown) => e instanceof ClusterError && e.statusCode === 400 && /must match/.test(e.message));

  const before = a.admission.tunnelKey;
  assert.equal(await a.admission.revoke('w1'), true);
  assert.equal(a.creds.has('w1'), false, 'its credentials stop working');
  assert.equal(a.registry.workers.has('w1'), false);
  const after = a.admission.tunnelKey;
  assert.equal(after.key_id, before.key_id + 1);
  assert.notDeepEqual(after, before);
  const keys = a.published.filter((p) => p.topic === topics.tunnelKey('w1') || p.topic === topics.tunnelKey('w2'));
  assert.deepEqual(keys.map((p) => [p.topic, p.retain, JSON.parse(p.payload).key_id]), [[topics.tunnelKey('w2'), true, after.key_id]],
    'the new key, retained, for the remaining worker only');
  assert.equal(a.ctx.counters.tunnel_key_rotations, 1);
  await assert.rejects(a.admission.register('w1'), (e: unknown) => e instanceof ClusterError && e.statusCode === 403 && /revoked/.test(e.message));
  assert.equal(await a.admission.revoke('nobody'), false);
  assert.equal(await a.admission.remove('nobody'), false);

  // A restarted cluster (same state folder) keeps the rotated key and the bar.
  const b = setup(dir);
  open.push(b);
  assert.deepEqual(b.admission.tunnelKey, after);
  await assert.rejects(b.admission.register('w1'), /revoked/);
});

test('remove: a worker leaves for good, its credentials go, and it may register again', async (t) => {
  const { dir, open } = tempDir(t);
  const a = setup(dir);
  open.push(a);
  await a.admission.register('w1');
  const key = a.admission.tunnelKey;
  assert.equal(await a.admission.remove('w1'), true);
  assert.equal(a.creds.has('w1'), false);
  assert.equal(a.registry.workers.has('w1'), false);
  assert.deepEqual(a.admission.tunnelKey, key, 'leaving is not a revocation: no new key');
  assert.equal((await a.admission.register('w1')).worker_id, 'w1');
});
