// Root's calls to a cluster's API (docs/protocols.md, "cluster, root-facing routes"), authenticated
// with the cluster's own token. Answers are checked before use: a cluster is another process, and a
// malformed answer must become a reason in an instance's status, not an exception in root.
import type { PlacementAnswer, PlacementOffer, RemotePeer, RouteInfo } from '../protocol/root-cluster.ts';
import type { ClusterRecord } from './store.ts';
import { bearerJsonCall } from '../bearer-json-call.ts';

export const CLUSTER_CALL_TIMEOUT_MS = 5000;

/**
 * Root's four calls to a cluster, injected into the instance manager (as wireguard-go injects its
 * conn.Bind): the product uses HTTP (httpClusterLink); unit tests hand in a fake, with no server.
 */
export interface ClusterLink {
  offer(cluster: ClusterRecord, offer: PlacementOffer): Promise<PlacementAnswer>;
  remove(cluster: ClusterRecord, serviceId: string, n: number): Promise<void>;
  pushRoute(cluster: ClusterRecord, route: RouteInfo): Promise<void>;
  pushPeers(cluster: ClusterRecord, peers: RemotePeer[], version: number): Promise<void>;
}

export class ClusterCallError extends Error {}

function call(cluster: ClusterRecord, method: string, path: string, body?: unknown): Promise<unknown> {
  return bearerJsonCall({ base: cluster.api_url, method, path, bearer: cluster.token, body, timeoutMs: CLUSTER_CALL_TIMEOUT_MS },
    (message) => new ClusterCallError(message));
}

export async function offerPlacement(cluster: ClusterRecord, offer: PlacementOffer): Promise<PlacementAnswer> {
  const a = (await call(cluster, 'POST', 'api/placements', offer)) as Record<string, unknown>;
  if (a?.accepted === true && typeof a.worker_id === 'string') return { accepted: true, worker_id: a.worker_id };
  if (a?.accepted === false) {
    const status = a.status === 'NO_WORKER_CAPACITY' ? 'NO_WORKER_CAPACITY' : 'NO_QUALIFIED_WORKER';
    return { accepted: false, status, reason: typeof a.reason === 'string' ? a.reason.slice(0, 500) : 'declined without a reason' };
  }
  throw new ClusterCallError('answered a placement without `accepted`');
}

export async function removePlacement(cluster: ClusterRecord, serviceId: string, n: number): Promise<void> {
  await call(cluster, 'DELETE', `api/placements/${encodeURIComponent(serviceId)}/${n}`);
}

export async function pushRoute(cluster: ClusterRecord, route: RouteInfo): Promise<void> {
  await call(cluster, 'POST', 'api/routes', route);
}

/** The other clusters' workers that run instances, as in a report answer's `peers` (POST api/peers). */
export async function pushPeers(cluster: ClusterRecord, peers: RemotePeer[], version: number): Promise<void> {
  await call(cluster, 'POST', 'api/peers', { peers, peers_version: version });
}

export const httpClusterLink: ClusterLink = {
  offer: offerPlacement,
  remove: removePlacement,
  pushRoute,
  pushPeers,
};
