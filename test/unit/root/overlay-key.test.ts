// Root's overlay tunnel key: created once, kept in the database across restarts, and a corrupt
// stored value is reported rather than silently replaced (workers hold the key); a rotated key is
// pushed to the active clusters at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteStore } from '../../../orchestrator/root/sqlite-store.ts';
import { loadOverlayTunnel, loadSecrets } from '../../../orchestrator/root/secrets.ts';
import { OVERLAY_KEY_ID } from '../../../orchestrator/protocol/root-cluster.ts';
import { nextTunnelKey, validTunnelKey } from '../../../orchestrator/protocol/tunnel-identity.ts';
import { ClusterRegistry } from '../../../orchestrator/root/clusters.ts';
import { pushOverlayKey } from '../../../orchestrator/root/overlay-key-push.ts';
import { memoryLogger } from '../../../orchestrator/protocol/log.ts';

async function withDir(f: (file: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'canopy-ok-'));
  try {
    await f(join(dir, 'root.db'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('the overlay key is generated on the first start and read back unchanged after a restart', () => withDir(async (file) => {
  let store = new SqliteStore(file);
  const first = (await loadSecrets(store, 'ck', () => {})).overlayTunnel;
  await store.close();
  assert.ok(validTunnelKey(first));
  assert.equal(first.key_id, OVERLAY_KEY_ID);
  assert.notEqual(first.key_id, 1, 'distinct from the key id clusters use');
  assert.equal(first.encrypt, false, 'authenticated, like the clusters\' keys');
  store = new SqliteStore(file);
  try {
    assert.deepEqual((await loadSecrets(store, undefined, () => {})).overlayTunnel, first, 'same key after a restart');
  } finally {
    await store.close();
  }
}));

test('two roots do not share an overlay key', () => withDir(async (file) => {
  const a = new SqliteStore(file);
  const b = new SqliteStore(`${file}.other`);
  try {
    assert.notEqual((await loadOverlayTunnel(a)).key, (await loadOverlayTunnel(b)).key);
  } finally {
    await a.close();
    await b.close();
  }
}));

test('a corrupt stored overlay key is a clear error and is left in place', () => withDir(async (file) => {
  const store = new SqliteStore(file);
  try {
    for (const bad of ['not json', JSON.stringify({ key_id: 128, key: 'abc', encrypt: false }), JSON.stringify({ key_id: 999, key: 'a'.repeat(64), encrypt: false })]) {
      await store.setSetting('overlay_tunnel_key', bad);
      await assert.rejects(loadOverlayTunnel(store), /overlay_tunnel_key is malformed; delete that row/);
      assert.equal(await store.getSetting('overlay_tunnel_key'), bad, 'nothing overwritten');
    }
  } finally {
    await store.close();
  }
}));

test('a rotated overlay key is pushed to every active cluster but the one told with the revocation; a failed push is tried again and named', async () => {
  const store = new SqliteStore(':memory:');
  const reg = await new ClusterRegistry(store, Date.now, 15_000).load();
  try {
    const agg = { free: { vcpus: 1, memory_mb: 1024, gpus: 0 }, workers_active: 1, virtualizations: ['process'], architectures: ['amd64'] };
    const ids: Record<string, string> = {};
    for (const name of ['a', 'b', 'c', 'flaky', 'down']) {
      ids[name] = (await reg.register(name, '', `http://${name}.invalid/`)).record.id;
      await reg.report(ids[name], agg);
    }
    // A revoked cluster is inactive at once: it never hears the new key.
    await reg.revoke((await reg.register('revoked', '', 'http://revoked.invalid/')).record.id);
    const sent: string[] = [];
    let flakyCalls = 0;
    const overlay = nextTunnelKey({ key_id: OVERLAY_KEY_ID, key: '00'.repeat(32), encrypt: false });
    const counted: string[] = [];
    const out = await pushOverlayKey({
      clusters: reg, overlay, log: memoryLogger(), except: ids.a, count: (l) => counted.push(l.outcome!),
      send: async (c, k) => {
        assert.deepEqual(k, overlay);
        if (c.name === 'down') throw new Error('connection refused');
        if (c.name === 'flaky' && flakyCalls++ === 0) throw new Error('timed out');
        sent.push(c.name);
      },
    });
    assert.deepEqual(sent.sort(), ['b', 'c', 'flaky']);
    assert.deepEqual(out.told, ['b', 'c', 'flaky']);
    assert.deepEqual(out.missed, [{ cluster: 'down', error: 'connection refused' }]);
    assert.deepEqual(counted.sort(), ['failed', 'ok', 'ok', 'ok']);
  } finally {
    reg.close();
    await store.close();
  }
});
