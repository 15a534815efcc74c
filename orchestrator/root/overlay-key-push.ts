// Root's rotated overlay key, pushed to every active cluster at once (POST api/overlay-key). The
// workers drop datagrams sealed with a retired key, so a cluster that learned the new key only with
// its next report answer (every 5 s) would lose its cross-cluster traffic with the clusters that
// switched first until then. The report answer still carries the key: a missed push costs at most
// that delay, never the key.
import type { OverlayTunnel } from '../protocol/root-cluster.ts';
import type { Logger } from '../protocol/log.ts';
import type { ClusterRegistry } from './clusters.ts';
import type { ClusterRecord } from './store.ts';
import { bearerJsonCall } from '../bearer-json-call.ts';
import { CLUSTER_CALL_TIMEOUT_MS, ClusterCallError } from './cluster-client.ts';

export type SendOverlayKey = (cluster: ClusterRecord, overlay: OverlayTunnel) => Promise<void>;

/** The cluster's POST /api/overlay-key, with root's token for it. */
export const httpSendOverlayKey: SendOverlayKey = async (cluster, overlay) => {
  await bearerJsonCall({ base: cluster.api_url, method: 'POST', path: 'api/overlay-key', bearer: cluster.token, body: { overlay_tunnel: overlay }, timeoutMs: CLUSTER_CALL_TIMEOUT_MS },
    (message, status) => new ClusterCallError(message, status));
};

export interface OverlayKeyPushOutcome {
  /** Names of the clusters that took the key. */
  told: string[];
  /** Clusters the push did not reach, with why (they get the key with their next report answer). */
  missed: Array<{ cluster: string; error: string }>;
}

/** A second try after this long: a cluster busy for a moment should not wait for its next report. */
const RETRY_AFTER_MS = 300;

/**
 * Pushes `overlay` to every active cluster but `except` (the one that gets it with the revocation
 * itself), all at once; resolves when each took it or failed twice. Inactive clusters are skipped:
 * they are unreachable or revoked, and a returning one gets the key with its first report answer.
 */
export async function pushOverlayKey(o: {
  clusters: ClusterRegistry;
  overlay: OverlayTunnel;
  send?: SendOverlayKey;
  log: Logger;
  count?: (labels: Record<string, string>) => void;
  except?: string;
}): Promise<OverlayKeyPushOutcome> {
  const send = o.send ?? httpSendOverlayKey;
  const targets = o.clusters.list().filter((c) => c.id !== o.except && o.clusters.isActive(c));
  const out: OverlayKeyPushOutcome = { told: [], missed: [] };
  await Promise.all(targets.map(async (c) => {
    try {
      await send(c, o.overlay);
    } catch {
      await new Promise((r) => setTimeout(r, RETRY_AFTER_MS));
      try {
        await send(c, o.overlay);
      } catch (e) {
        o.count?.({ outcome: 'failed' });
        o.log.warn('overlay key push failed; the cluster gets the key with its next report answer', { cluster: c.name, key_id: o.overlay.key_id, error: (e as Error).message });
        out.missed.push({ cluster: c.name, error: (e as Error).message });
        return;
      }
    }
    o.count?.({ outcome: 'ok' });
    out.told.push(c.name);
  }));
  out.told.sort();
  if (targets.length) o.log.info('overlay key pushed', { key_id: o.overlay.key_id, told: out.told, missed: out.missed.map((m) => m.cluster) });
  return out;
}
