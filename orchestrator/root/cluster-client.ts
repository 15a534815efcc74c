// Root's calls to a cluster's API (docs/protocols.md, "cluster, root-facing routes"), authenticated
// with the cluster's own token. Answers are checked before use: a cluster is another process, and a
// malformed answer must become a reason in an instance's status, not an exception in root.
import type { PlacementAnswer, PlacementOffer, RouteInfo } from '../root-cluster-messages.ts';
import type { ClusterRecord } from './store.ts';

export const CLUSTER_CALL_TIMEOUT_MS = 5000;

export class ClusterCallError extends Error {}

async function call(cluster: ClusterRecord, method: string, path: string, body?: unknown): Promise<unknown> {
  const url = new URL(path, cluster.api_url.endsWith('/') ? cluster.api_url : `${cluster.api_url}/`);
  let res: Response;
  try {
    res = await fetch(url, {
      method,
      headers: { authorization: `Bearer ${cluster.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(CLUSTER_CALL_TIMEOUT_MS),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    throw new ClusterCallError(`unreachable at ${cluster.api_url}: ${cause ?? (err as Error).message}`);
  }
  const text = await res.text().catch(() => '');
  if (!res.ok) throw new ClusterCallError(`answered HTTP ${res.status} to ${method} ${url.pathname}: ${text.slice(0, 200)}`);
  try {
    return text === '' ? {} : JSON.parse(text);
  } catch {
    throw new ClusterCallError(`answered ${method} ${url.pathname} with something that is not JSON`);
  }
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
