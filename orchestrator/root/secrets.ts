// Root's own secrets, kept in its database: the cluster join key (only its hash), the JWT secret and
// the deployment's overlay tunnel key (handed to clusters, see protocol/root-cluster.ts).
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { RootStore } from './store.ts';
import { OVERLAY_KEY_ID, type OverlayTunnel } from '../protocol/root-cluster.ts';
import { nextTunnelKey, validTunnelKey } from '../protocol/tunnel-identity.ts';

const sha256 = (s: string) => createHash('sha256').update(s).digest();

export interface RootSecrets {
  jwtSecret: string;
  checkJoinKey(key: string): boolean;
  overlayTunnel: OverlayTunnel;
}

const OVERLAY_SETTING = 'overlay_tunnel_key';

/** Stores `value` under `key` unless some value is there already; returns the one that is. */
async function settleOnce(store: RootStore, key: string, value: string): Promise<string> {
  return store.initSetting(key, value);
}

/**
 * The overlay key, created on the first start and kept: workers hold it, so a new one would cut
 * every cross-cluster flow until all clusters and workers learn it. Payloads are authenticated, not
 * encrypted, as with the clusters' own keys.
 */
export async function loadOverlayTunnel(store: RootStore): Promise<OverlayTunnel> {
  const stored = await store.getSetting(OVERLAY_SETTING);
  if (stored !== undefined) {
    let k: unknown;
    try {
      k = JSON.parse(stored);
    } catch {
      k = undefined;
    }
    if (!validTunnelKey(k)) throw new Error(`root's stored ${OVERLAY_SETTING} is malformed; delete that row of the settings table to generate a new key (clusters and workers then learn it on their next report)`);
    return k;
  }
  const k: OverlayTunnel = { key_id: OVERLAY_KEY_ID, key: randomBytes(32).toString('hex'), encrypt: false };
  // Replicas starting together: the first one's key wins, every replica hands out that one.
  return (await settleOnce(store, OVERLAY_SETTING, JSON.stringify(k))) === JSON.stringify(k) ? k : loadOverlayTunnel(store);
}

/**
 * Loads the secrets, creating them on the first start. A join key given by the operator replaces
 * the stored one; a generated one is passed to `announce` once and never stored in clear.
 */
export async function loadSecrets(store: RootStore, clusterKey: string | undefined, announce: (line: string) => void): Promise<RootSecrets> {
  let joinKeyHash = await store.getSetting('cluster_join_key_sha256');
  if (clusterKey) {
    joinKeyHash = sha256(clusterKey).toString('hex');
    await store.setSetting('cluster_join_key_sha256', joinKeyHash);
  } else if (!joinKeyHash) {
    const key = randomBytes(24).toString('base64url');
    const mine = sha256(key).toString('hex');
    joinKeyHash = await settleOnce(store, 'cluster_join_key_sha256', mine);
    if (joinKeyHash === mine) announce(`canopy root: cluster join key ${key} (shown once; set CANOPY_CLUSTER_KEY to choose it)`);
  }
  const joinKey = Buffer.from(joinKeyHash, 'hex');
  // In the store, so that every replica signs and accepts the same tokens.
  const jwtSecret = (await store.getSetting('jwt_secret')) ?? (await settleOnce(store, 'jwt_secret', randomBytes(32).toString('base64url')));
  const overlayTunnel = await loadOverlayTunnel(store);
  return { jwtSecret, overlayTunnel, checkJoinKey: (key) => key !== '' && timingSafeEqual(sha256(key), joinKey) };
}

/**
 * A new overlay key after a worker was revoked (it holds the old one): stored before any cluster
 * hears of it, so root never hands the old one out again, even after a restart.
 */
export async function rotateOverlayTunnel(store: RootStore, old: OverlayTunnel): Promise<OverlayTunnel> {
  const k = nextTunnelKey(old);
  await store.setSetting(OVERLAY_SETTING, JSON.stringify(k));
  return k;
}
