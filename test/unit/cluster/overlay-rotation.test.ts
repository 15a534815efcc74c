// The overlay key root rotates when a worker is revoked: the cluster passes the new one to every
// worker, and never goes back to a key root replaced, even when a report answer computed before the
// rotation arrives after it (that would let the revoked worker's key back in).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { InstanceIndex } from '../../../orchestrator/cluster/instance-index.ts';
import { newCounters, type ClusterContext } from '../../../orchestrator/cluster/context.ts';
import { PeerDistribution } from '../../../orchestrator/cluster/peer-distribution.ts';
import { WorkerRegistry } from '../../../orchestrator/cluster/worker-registry.ts';
import { topics } from '../../../orchestrator/mqtt/topics.ts';
import { memoryLogger } from '../../../orchestrator/protocol/log.ts';
import { nextTunnelKey, type TunnelKey } from '../../../orchestrator/protocol/tunnel-identity.ts';
import { RootAnswerError } from '../../../orchestrator/protocol/root-cluster.ts';

test('a rotated overlay key goes to every worker; the replaced one is never taken back from a late answer', () => {
  const published: { topic: string; payload: string }[] = [];
  const registry = new WorkerRegistry(3000);
  registry.workers.set('w1', { id: 'w1' } as never);
  registry.workers.set('w2', { id: 'w2' } as never);
  const ctx: ClusterContext = {
    name: 'c1', log: memoryLogger(), index: new InstanceIndex(), registry, counters: newCounters(),
    publish: (topic, payload) => published.push({ topic, payload }), clusterId: () => 'cid-1', saveSoon: () => {},
  };
  const old: TunnelKey = { key_id: 128, key: randomBytes(32).toString('hex'), encrypt: false };
  const peers = new PeerDistribution(ctx, old);
  const next = nextTunnelKey(old);
  peers.takeOverlayNews({ overlay: next, problems: [] });
  assert.deepEqual(peers.overlayTunnel, next);
  assert.deepEqual(published.map((p) => p.topic).sort(), [topics.overlayKey('w1'), topics.overlayKey('w2')]);
  assert.ok(published.every((p) => (JSON.parse(p.payload) as TunnelKey).key === next.key));
  published.length = 0;
  peers.takeOverlayNews({ overlay: old, problems: [] });
  assert.deepEqual(peers.overlayTunnel, next, 'the old key stays replaced');
  assert.equal(published.length, 0);
  assert.equal(ctx.counters.overlay_keys_stale, 1);
  peers.close();
});

test('root\'s push of a rotated overlay key (POST /api/overlay-key) is taken like an answer; a malformed one changes nothing', () => {
  const published: string[] = [];
  const registry = new WorkerRegistry(3000);
  registry.workers.set('w1', { id: 'w1' } as never);
  const ctx: ClusterContext = {
    name: 'c1', log: memoryLogger(), index: new InstanceIndex(), registry, counters: newCounters(),
    publish: (topic) => published.push(topic), clusterId: () => 'cid-1', saveSoon: () => {},
  };
  const old: TunnelKey = { key_id: 128, key: randomBytes(32).toString('hex'), encrypt: false };
  const peers = new PeerDistribution(ctx, old);
  const next = nextTunnelKey(old);
  for (const bad of [null, {}, { overlay_tunnel: { key_id: 129, key: 'short', encrypt: false } }, { overlay_tunnel: null }]) {
    assert.throws(() => peers.overlayKeyFromRoot(bad), RootAnswerError, JSON.stringify(bad));
  }
  assert.deepEqual(peers.overlayTunnel, old, 'refused pushes leave the key');
  assert.equal(published.length, 0);
  assert.deepEqual(peers.overlayKeyFromRoot({ overlay_tunnel: next }), { key_id: next.key_id });
  assert.deepEqual(peers.overlayTunnel, next);
  assert.deepEqual(published, [topics.overlayKey('w1')], 'the worker gets it at once');
  // A push of the key it replaced (a stale replica) is ignored like a late answer.
  assert.deepEqual(peers.overlayKeyFromRoot({ overlay_tunnel: old }), { key_id: next.key_id });
  assert.equal(ctx.counters.overlay_key_pushes, 2);
  assert.equal(ctx.counters.overlay_keys_stale, 1);
  peers.close();
});
