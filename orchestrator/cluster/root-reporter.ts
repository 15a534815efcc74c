// Reports to root: registers if needed, then sends the aggregate (free resources, active workers,
// virtualizations, architectures) and the instance changes queued since the last report. Periodic,
// and within REPORT_SOON_MS of a change root must know (never two in flight); a failed report keeps
// its changes for the next one.
import type { InstanceChange, Report } from '../protocol/root-cluster.ts';
import { MAX_REPORTED_WORKERS, summarize, type NetCoordinate } from '../protocol/network.ts';
import { CoalescedRun } from '../coalesced-run.ts';
import type { ClusterContext } from './context.ts';
import type { PeerDistribution } from './peer-distribution.ts';
import { RootCallError, type RootClient } from './root-client.ts';

const MAX_QUEUED_CHANGES = 10_000;
/**
 * How long a change waits for others before the report that carries it: root learns of a new
 * RUNNING instance in ~REPORT_SOON_MS instead of up to a report interval, so a caller in another
 * cluster is admitted by the server's worker at once (docs/decisions.md, overlay across clusters).
 */
export const REPORT_SOON_MS = 200;

export class RootReporter {
  private changes: InstanceChange[] = [];
  private reporting = false;
  private closed = false;
  /** Reports to root: periodic, and soon after a change (never two in flight). */
  private readonly reports: CoalescedRun;
  /** The last report reached root: only then do changes trigger early reports (no hammering a root that is down). */
  private rootAnswered = false;

  constructor(
    private readonly c: ClusterContext,
    readonly root: RootClient | undefined,
    private readonly o: {
      location: string;
      apiUrl: string;
      /** Workers' coordinates and the best RTTs to `latency` targets, for the network summary. */
      network?: () => { coords: ReadonlyMap<string, NetCoordinate>; probes: Record<string, number> };
    },
    private readonly peers: PeerDistribution,
    /** Gets every registered worker that has none a subnet from root (after a report got through). */
    private readonly ensureSubnets: () => Promise<void>,
  ) {
    this.reports = new CoalescedRun(() => this.report(), REPORT_SOON_MS);
  }

  /** Queues an instance change for the next report. */
  queue(change: InstanceChange): void {
    this.changes.push(change);
    if (this.changes.length > MAX_QUEUED_CHANGES) this.changes.splice(0, this.changes.length - MAX_QUEUED_CHANGES);
  }

  /** A report now (the periodic one). */
  now(): void {
    void this.reports.now();
  }

  /** Root should hear of a change soon (an instance's state, a worker's liveness): report early. */
  soon(): void {
    if (!this.root || !this.rootAnswered || this.closed) return;
    if (!this.reports.pending) this.c.counters.reports_early++;
    this.reports.request();
  }

  aggregate(): Omit<Report, 'instances'> {
    const free = { vcpus: 0, memory_mb: 0, gpus: 0 };
    const virt = new Set<string>();
    const arch = new Set<string>();
    // The biggest worker bounds what one instance can ever get here (root fails such a deploy at once).
    const maxWorker = { vcpus: 0, memory_mb: 0 };
    let active = 0;
    for (const w of this.c.registry.alive()) {
      if (!w.hb) continue;
      active++;
      maxWorker.vcpus = Math.max(maxWorker.vcpus, w.hb.cpu.cores);
      maxWorker.memory_mb = Math.max(maxWorker.memory_mb, w.hb.memory_mb.total);
      const p = this.c.index.pendingOn(w.id);
      free.vcpus += Math.max(0, w.hb.cpu.free - p.vcpus);
      free.memory_mb += Math.max(0, w.hb.memory_mb.free - p.memory_mb);
      for (const v of w.hb.virtualizations) virt.add(v);
      arch.add(w.hb.arch);
    }
    const agg = { free, workers_active: active, virtualizations: [...virt].sort(), architectures: [...arch].sort(), max_worker: maxWorker };
    const net = this.o.network?.();
    if (!net) return agg;
    const alive = this.c.registry.alive();
    return {
      ...agg,
      network: summarize(alive.map((w) => net.coords.get(w.id)), net.probes),
      // One by one for `canopy status --workers` (the summary above covers every worker).
      workers: [...this.c.registry.workers.values()].slice(0, MAX_REPORTED_WORKERS).map((w) => ({
        id: w.id, alive: w.alive, location: w.hb?.location ?? null, coord: net.coords.get(w.id) ?? null,
      })),
    };
  }

  /** Registers if needed, then sends the aggregate and the queued instance changes. */
  async report(): Promise<void> {
    if (!this.root || this.reporting || this.closed) return;
    this.reporting = true;
    const batch = this.changes;
    this.changes = [];
    try {
      if (!this.root.registration) {
        const { registration, news } = await this.root.register(this.c.name, this.o.location, this.o.apiUrl);
        this.c.saveSoon();
        this.c.log.info('registered with root', { cluster_id: registration.cluster_id });
        this.peers.takeOverlayNews(news);
      }
      try {
        this.peers.takeOverlayNews(await this.root.report({ ...this.aggregate(), instances: batch }));
      } catch (e) {
        if (e instanceof RootCallError && (e.status === 401 || e.status === 403 || e.status === 404)) {
          this.c.log.warn('root refused our token: registering again', { error: e.message });
          this.root.registration = undefined;
        }
        throw e;
      }
      this.c.counters.reports_ok++;
      this.rootAnswered = true;
      await this.ensureSubnets();
    } catch (e) {
      this.c.counters.reports_failed++;
      this.rootAnswered = false;
      this.changes = [...batch, ...this.changes].slice(-MAX_QUEUED_CHANGES);
      this.c.log.warn('report to root failed', { error: (e as Error).message, queued: this.changes.length });
    } finally {
      this.reporting = false;
    }
  }

  close(): void {
    this.closed = true;
    this.reports.close();
  }
}
