// Root's own secrets, kept in its database: the cluster join key (only its hash) and the JWT secret.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { RootStore } from './store.ts';

const sha256 = (s: string) => createHash('sha256').update(s).digest();

export interface RootSecrets {
  jwtSecret: string;
  checkJoinKey(key: string): boolean;
}

/**
 * Loads the secrets, creating them on the first start. A join key given by the operator replaces
 * the stored one; a generated one is passed to `announce` once and never stored in clear.
 */
export function loadSecrets(store: RootStore, clusterKey: string | undefined, announce: (line: string) => void): RootSecrets {
  let joinKeyHash = store.getSetting('cluster_join_key_sha256');
  if (clusterKey) {
    joinKeyHash = sha256(clusterKey).toString('hex');
    store.setSetting('cluster_join_key_sha256', joinKeyHash);
  } else if (!joinKeyHash) {
    const key = randomBytes(24).toString('base64url');
    joinKeyHash = sha256(key).toString('hex');
    store.setSetting('cluster_join_key_sha256', joinKeyHash);
    announce(`canopy root: cluster join key ${key} (shown once; set CANOPY_CLUSTER_KEY to choose it)`);
  }
  const joinKey = Buffer.from(joinKeyHash, 'hex');
  let jwtSecret = store.getSetting('jwt_secret');
  if (!jwtSecret) {
    jwtSecret = randomBytes(32).toString('base64url');
    store.setSetting('jwt_secret', jwtSecret);
  }
  return { jwtSecret, checkJoinKey: (key) => key !== '' && timingSafeEqual(sha256(key), joinKey) };
}
