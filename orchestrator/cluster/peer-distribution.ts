// The overlay's tunnel peers as the cluster's workers learn them: root's overlay key (retained on each
// worker's own topic), and the admitted peers (this cluster's registered workers with a subnet and an
// endpoint, plus the other clusters' workers root lists), retained on every worker's peers topic.
import { topics } from '../mqtt/topics.ts';
import type { ClusterToWorker } from '../../proxy/route-messages.ts';
import { parseOverlayTunnel, RootAnswerError, type OverlayTunnel, type RemotePeer } from '../protocol/root-cluster.ts';
import { tunnelIdForSubnet } from '../protocol/tunnel-identity.ts';
import type { ClusterContext } from './context.ts';
import { parsePeersPush, type OverlayNews } from './root-client.ts';

/**
 * How this cluster's workers name a worker of another cluster. Worker names are unique within a
 * cluster only, and the workers key their tunnel peers, RTTs and "is this instance mine" by name: a
 * remote namesake must neither be taken for a local worker nor replace one. A local name never
 * contains `@` ([a-z0-9-]), so the two cannot collide.
 */
export function remoteWorkerName(workerId: string, clusterId: string): string {
  return `${workerId}@${clusterId}`;
}

export class PeerDistribution {
  overlayTunnel: OverlayTunnel | undefined;
  /** Workers of other clusters that run instances (from root's report answers and pushes). */
  private remotePeers: RemotePeer[] = [];
  /** root's peers_version of remotePeers (0: none seen); an older list is dropped. */
  private remotePeersVersion = 0;
  private peersSent = '';
  private peersTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Overlay keys root replaced (kept in memory): never taken back from a late or stale answer. */
  private readonly replacedOverlayKeys = new Set<string>();

  constructor(private readonly c: ClusterContext, overlayTunnel: OverlayTunnel | undefined) {
    this.overlayTunnel = overlayTunnel;
  }

  get remotePeerCount(): number {
    return this.remotePeers.length;
  }

  /** A worker's tunnel sender id, from its subnet (undefined until it has one). */
  tunnelIdOf(workerId: string): number | undefined {
    const s = this.c.registry.workers.get(workerId)?.subnet_v4;
    return s ? tunnelIdForSubnet(s) : undefined;
  }

  /** Retains root's overlay key on the worker's own topic: a running worker switches to it at once. */
  publishOverlayTunnel(workerId: string): void {
    if (this.overlayTunnel) this.c.publish(topics.overlayKey(workerId), JSON.stringify(this.overlayTunnel), true);
  }

  /** Takes what root's answer says about the overlay: its key, and the other clusters' workers. */
  takeOverlayNews(news: OverlayNews): void {
    for (const p of news.problems) this.c.log.warn('root answer field ignored', { error: p });
    if (news.overlay && this.replacedOverlayKeys.has(news.overlay.key)) {
      // A report answer root computed before it rotated the key (after a revocation) arrived late, or
      // a root replica has not reloaded it: going back would let the revoked worker in again.
      this.c.counters.overlay_keys_stale++;
    } else if (news.overlay && JSON.stringify(news.overlay) !== JSON.stringify(this.overlayTunnel)) {
      if (this.overlayTunnel) {
        this.c.log.warn('root handed out a different overlay key', { was: this.overlayTunnel.key_id, now: news.overlay.key_id });
        this.replacedOverlayKeys.add(this.overlayTunnel.key);
      }
      this.overlayTunnel = news.overlay;
      this.c.saveSoon();
      for (const w of this.c.registry.workers.keys()) this.publishOverlayTunnel(w);
      this.c.log.info('overlay key from root', { key_id: news.overlay.key_id });
    }
    if (!news.peers) return;
    if (news.peersVersion !== undefined) {
      // A report answer root computed before its latest push can arrive after it.
      if (news.peersVersion < this.remotePeersVersion) {
        this.c.counters.peer_lists_stale++;
        return;
      }
      this.remotePeersVersion = news.peersVersion;
    }
    if (JSON.stringify(news.peers) !== JSON.stringify(this.remotePeers)) {
      this.remotePeers = news.peers;
      this.publishPeers();
    }
  }

  /**
   * POST /api/peers: root pushes the other clusters' workers as soon as one of them gains its first
   * running instance, instead of waiting for this cluster's next report. Taken exactly like the
   * `peers` of a report answer; a malformed push is refused whole (RootAnswerError, 400).
   */
  peersFromRoot(body: unknown): { peers: number } {
    const { peers, version } = parsePeersPush(body);
    this.c.counters.peer_pushes++;
    this.takeOverlayNews({ peers, peersVersion: version, problems: [] });
    return { peers: peers.length };
  }

  /**
   * POST /api/overlay-key: root pushes its rotated overlay key to every cluster at once, so that the
   * workers of all clusters switch within a round trip of each other. Taken like the `overlay_tunnel`
   * of a report answer (a key root replaced before is never taken back); a malformed body is refused
   * (RootAnswerError, 400) and the cluster keeps its key.
   */
  overlayKeyFromRoot(body: unknown): { key_id: number | null } {
    const overlay = parseOverlayTunnel(typeof body === 'object' && body !== null ? (body as { overlay_tunnel?: unknown }).overlay_tunnel : undefined);
    if (!overlay) throw new RootAnswerError('body must be an object { overlay_tunnel: { key_id, key, encrypt } }');
    this.c.counters.overlay_key_pushes++;
    this.takeOverlayNews({ overlay, problems: [] });
    return { key_id: this.overlayTunnel?.key_id ?? null };
  }

  /**
   * The admitted tunnel peers (registered workers with a subnet and an endpoint), retained on every
   * worker's peers topic whenever the set changes: a worker accepts tunnel data only from these.
   * Changes are coalesced (one broadcast per 200 ms however many workers join), and a worker that
   * appears or comes back gets the current set on its own topic only: broadcasting to every worker
   * on every join cost O(workers²) publishes and exhausted the heap at 10 000 workers.
   */
  publishPeers(newcomer?: string): void {
    if (newcomer) {
      if (this.peersSent) this.c.publish(topics.coordinatePeers(newcomer), this.peersSent, true);
    }
    this.peersTimer ??= setTimeout(() => {
      this.peersTimer = undefined;
      if (this.closed) return;
      const entries = [];
      for (const w of this.c.registry.workers.values()) {
        const id = this.tunnelIdOf(w.id);
        const ep = w.hb?.tunnel_endpoint;
        if (id !== undefined && ep) entries.push({ worker_id: w.id, tunnel_id: id, tunnel_endpoint: ep });
      }
      const own = new Set(entries.map((e) => e.tunnel_id));
      for (const r of this.remotePeers) {
        if (own.has(r.tunnel_id)) continue;
        entries.push({ worker_id: remoteWorkerName(r.worker_id, r.cluster_id), tunnel_id: r.tunnel_id, tunnel_endpoint: r.tunnel_endpoint });
      }
      entries.sort((a, b) => a.tunnel_id - b.tunnel_id);
      const msg = JSON.stringify({ type: 'peers', entries } satisfies ClusterToWorker);
      if (msg === this.peersSent) return;
      this.peersSent = msg;
      for (const w of this.c.registry.workers.keys()) this.c.publish(topics.coordinatePeers(w), msg, true);
    }, 200);
  }

  close(): void {
    this.closed = true;
    if (this.peersTimer) clearTimeout(this.peersTimer);
  }
}
