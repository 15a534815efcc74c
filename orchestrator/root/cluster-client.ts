// Root's calls to a cluster's API (docs/protocols.md, "cluster, root-facing routes"), authenticated
// with the cluster's own token. Answers are checked before use: a cluster is another process, and a
// malformed answer must become a reason in an instance's status, not an exception in root.
import type { OverlayTunnel, PlacementAnswer, PlacementOffer, RemotePeer, RouteInfo } from '../protocol/root-cluster.ts';
import type { ClusterRecord } from './store.ts';
import { bearerJsonCall } from '../bearer-json-call.ts';
import type { LogStream } from '../protocol/instance-logs.ts';

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

export class ClusterCallError extends Error {
  constructor(message: string, readonly status?: number) {
    super(message);
  }
}

function call(cluster: ClusterRecord, method: string, path: string, body?: unknown): Promise<unknown> {
  return bearerJsonCall({ base: cluster.api_url, method, path, bearer: cluster.token, body, timeoutMs: CLUSTER_CALL_TIMEOUT_MS },
    (message, status) => new ClusterCallError(message, status));
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

/** An instance's logs, read by the cluster from its worker (protocol/instance-logs.ts). */
export async function clusterInstanceLogs(cluster: ClusterRecord, serviceId: string, n: number, stream: LogStream, bytes: number): Promise<string> {
  const a = (await call(cluster, 'GET', `api/instances/${encodeURIComponent(serviceId)}/${n}/logs?stream=${stream}&bytes=${bytes}`)) as { text?: unknown };
  if (typeof a?.text !== 'string') throw new ClusterCallError('answered a log read without text');
  return a.text;
}

/** Cuts a worker of this cluster off (cluster POST /api/workers/:id/revoke); false when it has no such worker. */
export async function revokeWorkerAt(cluster: ClusterRecord, workerId: string, overlay?: OverlayTunnel): Promise<boolean> {
  try {
    // The rotated overlay key rides along, so the cluster's other workers switch to it at once.
    await call(cluster, 'POST', `api/workers/${encodeURIComponent(workerId)}/revoke`, overlay ? { overlay_tunnel: overlay } : {});
    return true;
  } catch (e) {
    if (e instanceof ClusterCallError && e.status === 404) return false;
    throw e;
  }
}

/** The cluster's own status (its workers and instances), for the dashboard. */
export function clusterStatus(cluster: ClusterRecord): Promise<unknown> {
  return call(cluster, 'GET', 'api/status');
}

export const httpClusterLink: ClusterLink = {
  offer: offerPlacement,
  remove: removePlacement,
  pushRoute,
  pushPeers,
};
