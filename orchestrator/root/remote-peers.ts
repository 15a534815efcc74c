// The workers that run instances, as tunnel peers for the other clusters (docs/decisions.md, overlay
// across clusters): computed once per change of the instances, not per report, and announced to the
// other clusters as soon as the set changes, so a new caller is admitted by a remote server's worker
// without waiting for that cluster's next report.
import type { RemotePeer } from '../protocol/root-cluster.ts';
import type { Logger } from '../protocol/log.ts';
import { CoalescedRun } from '../coalesced-run.ts';
import type { ClusterLink } from './cluster-client.ts';
import type { ClusterRegistry } from './clusters.ts';
import { workerTunnelId } from './route-service.ts';
import type { RootStore } from './store.ts';

function key(p: RemotePeer): string {
  return `${p.cluster_id}\n${p.worker_id}\n${p.tunnel_id}\n${p.tunnel_endpoint}`;
}

export class RemotePeerSet {
  private cached: Promise<RemotePeer[]> | undefined;
  private cachedKeys = '';
  private current = 0;
  /** The set as last announced (by takeChanges), as keys. */
  private announced = new Map<string, RemotePeer>();

  /** `scan` lists every cluster's peers (one per tunnel id); it runs at most once per invalidate(). */
  constructor(private readonly scan: () => RemotePeer[] | Promise<RemotePeer[]>) {}

  /** The instances changed in a way that may change the set (a RUNNING instance came, went or moved). */
  invalidate(): void {
    this.cached = undefined;
  }

  all(): Promise<RemotePeer[]> {
    if (!this.cached) {
      // One scan per invalidation, however many callers ask while it runs.
      const scan = Promise.resolve().then(() => this.scan()).then((peers) => {
        const keys = peers.map(key).sort().join('\0');
        if (keys !== this.cachedKeys || this.current === 0) {
          this.cachedKeys = keys;
          // Clock-based, so a restarted root still counts up from where the clusters last heard it.
          this.current = Math.max(this.current + 1, Date.now());
        }
        return peers;
      });
      scan.catch(() => {
        if (this.cached === scan) this.cached = undefined;
      });
      this.cached = scan;
    }
    return this.cached;
  }

  /**
   * The version of the set: larger whenever the set changed. Every list root sends (report answer or
   * push) carries it as `peers_version`, so a cluster can drop a list older than one it already has:
   * a report answer computed before a push may arrive after it.
   */
  async version(): Promise<number> {
    await this.all();
    return this.current;
  }

  /** What `clusterId` is told: every other cluster's peers. */
  async forCluster(clusterId: string): Promise<RemotePeer[]> {
    return (await this.all()).filter((p) => p.cluster_id !== clusterId);
  }

  /**
   * The clusters whose workers entered or left the set since the last call (empty when nothing
   * changed). Every cluster other than these, and each of these when another one changed, sees a
   * different list now.
   */
  async takeChanges(): Promise<Set<string>> {
    const now = new Map((await this.all()).map((p) => [key(p), p]));
    const changed = new Set<string>();
    for (const [k, p] of now) if (!this.announced.has(k)) changed.add(p.cluster_id);
    for (const [k, p] of this.announced) if (!now.has(k)) changed.add(p.cluster_id);
    this.announced = now;
    return changed;
  }
}

/** Whether cluster `id` sees a different list when the clusters in `changed` changed. */
export function seesChange(id: string, changed: ReadonlySet<string>): boolean {
  for (const c of changed) if (c !== id) return true;
  return false;
}

/**
 * Pushes to one cluster at a time per cluster: a push asked for while one is in flight goes out
 * after it, with the list as it is then, so an older list never lands after a newer one and a
 * burst of changes costs one push per cluster in flight plus one. A cluster is held only while it
 * has a push in flight or asked for, so clusters that come and go leave nothing behind.
 */
export class PeerAnnouncer {
  private readonly runs = new Map<string, CoalescedRun>();
  private closed = false;

  constructor(
    /** Sends cluster `id` its current list; rejects on failure. */
    private readonly send: (id: string) => Promise<void>,
    private readonly done: (id: string, error?: unknown) => void,
  ) {}

  announce(id: string): void {
    if (this.closed) return;
    let run = this.runs.get(id);
    if (!run) {
      run = new CoalescedRun(async () => {
        try {
          await this.send(id);
          this.done(id);
        } catch (e) {
          this.done(id, e);
        }
      }, 0, undefined, () => this.runs.delete(id));
      this.runs.set(id, run);
    }
    run.request();
  }

  /** Pushes in flight, for close() to wait on. */
  get busy(): number {
    let n = 0;
    for (const r of this.runs.values()) if (r.busy) n++;
    return n;
  }

  close(): void {
    this.closed = true;
    for (const r of this.runs.values()) r.close();
  }
}

/**
 * The remote-peer set over root's store, and its announcement: what a cluster's report answer and
 * root's pushes (ClusterLink.pushPeers) carry as `peers`.
 */
export class RemotePeerService {
  private readonly peers = new RemotePeerSet(() => this.scan());
  private readonly announcer: PeerAnnouncer;

  constructor(
    private readonly store: RootStore,
    private readonly clusters: ClusterRegistry,
    link: ClusterLink,
    log: Logger,
    countPush: (labels?: Record<string, string>) => void,
  ) {
    this.announcer = new PeerAnnouncer(
      async (id) => {
        const c = this.clusters.get(id);
        if (c) await link.pushPeers(c, await this.peers.forCluster(id), await this.peers.version());
      },
      (id, err) => {
        countPush({ outcome: err === undefined ? 'ok' : 'failed' });
        // The cluster's next report answer carries the same list: a lost push only delays admission.
        if (err !== undefined) log.warn('peers push failed', { cluster: this.clusters.get(id)?.name ?? id, error: String(err) });
      },
    );
  }

  /**
   * The workers of other clusters that run instances, for `askingCluster`'s tunnel peers: a worker
   * there may call one of this cluster's instances, and the answer goes back to it over the tunnel.
   * Only workers with running instances can be callers, so these are all a cluster needs.
   */
  forCluster(askingCluster: string): Promise<RemotePeer[]> {
    return this.peers.forCluster(askingCluster);
  }

  /** The version of what forCluster returns (RemotePeerSet.version). */
  version(): Promise<number> {
    return this.peers.version();
  }

  /** Something the set is computed from changed (an instance entered or left RUNNING, a subnet). */
  invalidate(): void {
    this.peers.invalidate();
  }

  /**
   * Tells every other active cluster at once when the remote-peer set changed (a worker ran its
   * first instance, or its last one stopped): its workers then admit a new caller within a round
   * trip instead of at their cluster's next report. `reporter` gets the list in its report answer.
   * Pushes run in the background; the report answer never waits for them.
   */
  async announce(reporter: string): Promise<void> {
    const changed = await this.peers.takeChanges();
    if (changed.size === 0) return;
    for (const c of this.clusters.list()) {
      if (c.id === reporter || !this.clusters.isActive(c) || !seesChange(c.id, changed)) continue;
      this.announcer.announce(c.id);
    }
  }

  close(): void {
    this.announcer.close();
  }

  /** Every cluster's workers that run instances: one scan of RUNNING instances, cached by `peers`. */
  private async scan(): Promise<RemotePeer[]> {
    const byId = new Map<number, RemotePeer>();
    for (const i of await this.store.instancesInState(['RUNNING'])) {
      if (!i.cluster_id || !i.worker_id || !i.tunnel_endpoint) continue;
      const tunnelId = await workerTunnelId(this.store, i.cluster_id, i.worker_id);
      if (tunnelId === undefined || byId.has(tunnelId)) continue;
      byId.set(tunnelId, { worker_id: i.worker_id, cluster_id: i.cluster_id, tunnel_id: tunnelId, tunnel_endpoint: i.tunnel_endpoint });
    }
    return [...byId.values()].sort((a, b) => a.tunnel_id - b.tunnel_id);
  }
}
