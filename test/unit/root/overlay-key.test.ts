// Root's overlay tunnel key: created once, kept in the database across restarts, and a corrupt
// stored value is reported rather than silently replaced (workers hold the key).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteStore } from '../../../orchestrator/root/sqlite-store.ts';
import { loadOverlayTunnel, loadSecrets } from '../../../orchestrator/root/secrets.ts';
import { OVERLAY_KEY_ID } from '../../../orchestrator/protocol/root-cluster.ts';
import { validTunnelKey } from '../../../orchestrator/protocol/tunnel-identity.ts';

function withDir(f: (file: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'canopy-ok-'));
  try {
    f(join(dir, 'root.db'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('the overlay key is generated on the first start and read back unchanged after a restart', () => withDir((file) => {
  let store = new SqliteStore(file);
  const first = loadSecrets(store, 'ck', () => {}).overlayTunnel;
  store.close();
  assert.ok(validTunnelKey(first));
  assert.equal(first.key_id, OVERLAY_KEY_ID);
  assert.notEqual(first.key_id, 1, 'distinct from the key id clusters use');
  assert.equal(first.encrypt, false, 'authenticated, like the clusters\' keys');
  store = new SqliteStore(file);
  try {
    assert.deepEqual(loadSecrets(store, undefined, () => {}).overlayTunnel, first, 'same key after a restart');
  } finally {
    store.close();
  }
}));

test('two roots do not share an overlay key', () => withDir((file) => {
  const a = new SqliteStore(file);
  const b = new SqliteStore(`${file}.other`);
  try {
    assert.notEqual(loadOverlayTunnel(a).key, loadOverlayTunnel(b).key);
  } finally {
    a.close();
    b.close();
  }
}));

test('a corrupt stored overlay key is a clear error and is left in place', () => withDir((file) => {
  const store = new SqliteStore(file);
  try {
    for (const bad of ['not json', JSON.stringify({ key_id: 128, key: 'abc', encrypt: false }), JSON.stringify({ key_id: 999, key: 'a'.repeat(64), encrypt: false })]) {
      store.setSetting('overlay_tunnel_key', bad);
      assert.throws(() => loadOverlayTunnel(store), /overlay_tunnel_key is malformed; delete that row/);
      assert.equal(store.getSetting('overlay_tunnel_key'), bad, 'nothing overwritten');
    }
  } finally {
    store.close();
  }
}));
