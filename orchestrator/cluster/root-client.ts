// The cluster's calls to root (docs/protocols.md, root ↔ cluster). Every call has a timeout and
// turns any failure into a RootCallError with a sentence; callers retry on their own schedule.
import { bearerJsonCall } from '../bearer-json-call.ts';
import { parseOverlayTunnel, parseRemotePeers, RootAnswerError, type OverlayTunnel, type RemotePeer, type Report } from '../protocol/root-cluster.ts';

export const ROOT_CALL_TIMEOUT_MS = 5000;

export class RootCallError extends Error {
  constructor(message: string, readonly status?: number) {
    super(message);
  }
}

export interface Registration {
  cluster_id: string;
  token: string;
}

export interface Subnets {
  subnet_v4: string;
  subnet_v6: string | null;
}

/**
 * What root adds to its registration and report answers for the overlay. A malformed field is
 * named in `problems` and left out; the call itself still counts (root has taken the report).
 */
export interface OverlayNews {
  overlay?: OverlayTunnel;
  /** Only in report answers: the workers of other clusters that may send to ours. */
  peers?: RemotePeer[];
  /** Root's `peers_version` of that list (absent from an older root). */
  peersVersion?: number;
  problems: string[];
}

/** `peers_version`: a non-negative integer, or absent. */
function parsePeersVersion(v: unknown): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new RootAnswerError(`peers_version must be a non-negative integer: ${JSON.stringify(v)}`);
  return v;
}

/** The overlay fields of a root answer (`peers` only when `withPeers`). */
export function overlayNews(a: Record<string, unknown>, withPeers: boolean): OverlayNews {
  const news: OverlayNews = { problems: [] };
  try {
    const k = parseOverlayTunnel(a.overlay_tunnel);
    if (k) news.overlay = k;
  } catch (e) {
    if (!(e instanceof RootAnswerError)) throw e;
    news.problems.push(e.message);
  }
  if (withPeers && 'peers' in a) {
    const { peers, rejected } = parseRemotePeers(a.peers);
    news.peers = peers;
    news.problems.push(...rejected);
    try {
      news.peersVersion = parsePeersVersion(a.peers_version);
    } catch (e) {
      if (!(e instanceof RootAnswerError)) throw e;
      news.problems.push(e.message);
    }
  }
  return news;
}

/**
 * The body of root's POST /api/peers: `{ peers: [...] }`, the same list a report answer carries. Unlike
 * an answer (which root sends in reply to something else that still counts), a push carries nothing
 * else, so any malformed entry refuses it whole: the cluster keeps the peers it had.
 */
export function parsePeersPush(body: unknown): { peers: RemotePeer[]; version?: number } {
  if (typeof body !== 'object' || body === null || Array.isArray(body) || !('peers' in body)) {
    throw new RootAnswerError('body must be an object { peers: [...] }');
  }
  const { peers, rejected } = parseRemotePeers((body as { peers: unknown }).peers);
  if (rejected.length) {
    const more = rejected.length > 3 ? `; and ${rejected.length - 3} more` : '';
    throw new RootAnswerError(`peers refused, nothing changed: ${rejected.slice(0, 3).join('; ')}${more}`);
  }
  return { peers, version: parsePeersVersion((body as { peers_version?: unknown }).peers_version) };
}

export class RootClient {
  registration: Registration | undefined;

  private readonly urls: string[];
  private current = 0;

  /** `rootUrl`: one URL, or root replicas' URLs separated by commas (SPEC §11): calls fail over. */
  constructor(readonly rootUrl: string, private readonly joinKey: string) {
    this.urls = rootUrl.split(',').map((u) => u.trim()).filter((u) => u !== '');
  }

  /**
   * Calls the replica that answered last; one that is unreachable or answers 5xx (root's database
   * away: nothing changed) hands the call to the next. Registration and tokens are in root's
   * database, so every replica accepts this cluster.
   */
  private async call(method: string, path: string, bearer: string, body?: unknown): Promise<unknown> {
    let last: unknown;
    for (let k = 0; k < Math.max(1, this.urls.length); k++) {
      const at = (this.current + k) % Math.max(1, this.urls.length);
      try {
        const answer = await bearerJsonCall({ base: this.urls[at] ?? this.rootUrl, method, path, bearer, body, timeoutMs: ROOT_CALL_TIMEOUT_MS },
          (message, status) => new RootCallError(`root ${message}`, status));
        this.current = at;
        return answer;
      } catch (e) {
        if (!(e instanceof RootCallError) || (e.status !== undefined && e.status < 500)) throw e;
        last = e;
      }
    }
    throw last;
  }

  private token(): { id: string; token: string } {
    if (!this.registration) throw new RootCallError('not registered with root yet');
    return { id: encodeURIComponent(this.registration.cluster_id), token: this.registration.token };
  }

  async register(name: string, location: string, apiUrl: string): Promise<{ registration: Registration; news: OverlayNews }> {
    const a = (await this.call('POST', 'api/internal/clusters/register', this.joinKey, { name, location, api_url: apiUrl })) as Record<string, unknown>;
    if (typeof a.cluster_id !== 'string' || typeof a.token !== 'string') throw new RootCallError('registration answer lacks cluster_id or token');
    this.registration = { cluster_id: a.cluster_id, token: a.token };
    return { registration: this.registration, news: overlayNews(a, false) };
  }

  async report(r: Report): Promise<OverlayNews> {
    const { id, token } = this.token();
    const a = await this.call('POST', `api/internal/clusters/${id}/report`, token, r);
    return overlayNews(typeof a === 'object' && a !== null ? a as Record<string, unknown> : {}, true);
  }

  async subnets(workerId: string): Promise<Subnets> {
    const { id, token } = this.token();
    const a = (await this.call('POST', `api/internal/clusters/${id}/subnets`, token, { worker_id: workerId })) as Record<string, unknown>;
    if (typeof a.subnet_v4 !== 'string') throw new RootCallError('subnet answer lacks subnet_v4');
    return { subnet_v4: a.subnet_v4, subnet_v6: typeof a.subnet_v6 === 'string' ? a.subnet_v6 : null };
  }

  async releaseSubnets(workerId: string): Promise<void> {
    const { id, token } = this.token();
    await this.call('DELETE', `api/internal/clusters/${id}/subnets/${encodeURIComponent(workerId)}`, token);
  }

  /** A route for an address outside this cluster; undefined when root knows none (404). */
  async route(address: string): Promise<unknown> {
    const { id, token } = this.token();
    try {
      return await this.call('GET', `api/internal/clusters/${id}/routes/${encodeURIComponent(address)}`, token);
    } catch (e) {
      if (e instanceof RootCallError && e.status === 404) return undefined;
      throw e;
    }
  }
}
