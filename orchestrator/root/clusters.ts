// Registered clusters and their liveness. Records live in the store; this keeps a write-through
// copy in memory because scheduling reads every cluster for every decision.
import { EventEmitter } from 'node:events';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { parseLocation, type Location } from '../descriptor/location.ts';
import type { ClusterView } from './scheduler.ts';
import type { ClusterAggregate, ClusterRecord, RootStore } from './store.ts';

export const CLUSTER_SILENCE_MS = 15_000;

export class ClusterRevokedError extends Error {}

export interface ClusterRegistryEvents {
  /** A cluster reported for the first time since it registered, or after being inactive. */
  active: [ClusterRecord];
  /** An active cluster's report shows more room than its previous one (what grew, for the logs). */
  room: [ClusterRecord, string];
  /** A cluster has not reported for CLUSTER_SILENCE_MS. */
  inactive: [ClusterRecord];
}

const EPS = 1e-9;

/**
 * What `next` offers that `prev` did not: more free vCPUs, memory or GPUs, more active workers, a
 * new virtualization or architecture. Empty if nothing grew. Any growth counts, since root cannot
 * tell which instance it lets in.
 */
export function roomGrowth(prev: ClusterAggregate, next: ClusterAggregate): string[] {
  const out: string[] = [];
  if (next.free.vcpus > prev.free.vcpus + EPS) out.push(`free vCPUs ${prev.free.vcpus} → ${next.free.vcpus}`);
  if (next.free.memory_mb > prev.free.memory_mb + EPS) out.push(`free memory ${prev.free.memory_mb} → ${next.free.memory_mb} MB`);
  if (next.free.gpus > prev.free.gpus + EPS) out.push(`free GPUs ${prev.free.gpus} → ${next.free.gpus}`);
  if (next.workers_active > prev.workers_active) out.push(`active workers ${prev.workers_active} → ${next.workers_active}`);
  const added = (a: string[], b: string[]) => b.filter((x) => !a.includes(x));
  const virt = added(prev.virtualizations, next.virtualizations);
  if (virt.length) out.push(`runs ${virt.join(', ')} now`);
  const arch = added(prev.architectures, next.architectures);
  if (arch.length) out.push(`has ${arch.join(', ')} workers now`);
  return out;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

export class ClusterRegistry extends EventEmitter<ClusterRegistryEvents> {
  private readonly byId = new Map<string, ClusterRecord>();
  /** Capacity root has promised away since the cluster's last report. */
  private readonly reserved = new Map<string, { vcpus: number; memory_mb: number; gpus: number }>();
  private readonly wasActive = new Map<string, boolean>();
  /** Parsed once: views() runs for every scheduling decision. */
  private readonly locations = new Map<string, Location | null>();
  private readonly timer: NodeJS.Timeout;
  /** Told after each registration and report is stored (the other root replicas refresh from the store). */
  changed: (id: string) => Promise<void> = async () => undefined;

  constructor(
    private readonly store: RootStore,
    private readonly now: () => number = Date.now,
    readonly silenceMs = CLUSTER_SILENCE_MS,
  ) {
    super();
    this.timer = setInterval(() => this.sweep(), Math.min(1000, silenceMs / 3));
    this.timer.unref();
  }

  /** Reads the registered clusters; call once, before use. */
  async load(): Promise<this> {
    for (const c of await this.store.listClusters()) {
      this.remember(c);
      // After a root restart every cluster must report again before it counts as active.
      this.wasActive.set(c.id, false);
    }
    return this;
  }

  private remember(c: ClusterRecord): void {
    this.byId.set(c.id, c);
    this.locations.set(c.id, parseLocation(c.location));
  }

  /**
   * Another replica registered or heard from cluster `id` (its row changed): take the stored row,
   * keeping this replica's reservations. Liveness follows the stored last_seen.
   */
  async refresh(id: string): Promise<void> {
    const c = await this.store.cluster(id);
    if (!c) return;
    const mine = this.byId.get(id);
    if (mine && mine.token === c.token && mine.last_seen >= c.last_seen) return;
    const prev = mine?.aggregate ?? null;
    // A newer report shows what the cluster really has: what was promised before is in it.
    if (!mine || mine.token !== c.token || c.last_seen > mine.last_seen) this.reserved.delete(id);
    this.remember(c);
    if (this.isActive(c)) {
      const wasActive = this.wasActive.get(id) === true;
      this.markSeen(c);
      const grew = wasActive && prev && c.aggregate ? roomGrowth(prev, c.aggregate) : [];
      if (grew.length) this.emit('room', c, grew.join(', '));
    }
  }

  close(): void {
    clearInterval(this.timer);
    this.removeAllListeners();
  }

  private sweep(): void {
    for (const c of this.byId.values()) {
      const active = this.isActive(c);
      if (this.wasActive.get(c.id) && !active) {
        this.wasActive.set(c.id, false);
        this.emit('inactive', c);
      }
    }
  }

  private markSeen(c: ClusterRecord): void {
    if (!this.wasActive.get(c.id)) {
      this.wasActive.set(c.id, true);
      this.emit('active', c);
    }
  }

  isActive(c: ClusterRecord): boolean {
    return c.last_seen > 0 && this.now() - c.last_seen < this.silenceMs;
  }

  private async revokedNames(): Promise<string[]> {
    try {
      const v = JSON.parse((await this.store.getSetting('revoked_clusters')) ?? '[]') as unknown;
      return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
    } catch {
      return [];
    }
  }

  async isRevoked(name: string): Promise<boolean> {
    return (await this.revokedNames()).includes(name);
  }

  /**
   * Cuts a cluster off (`canopy cluster revoke`): its token is replaced by one nobody holds, so its
   * next report or call is refused (401); it counts as inactive at once, so nothing is placed there;
   * and its name may not register again (the join key alone no longer lets it back).
   */
  async revoke(id: string): Promise<ClusterRecord | undefined> {
    const c = this.byId.get(id);
    if (!c) return undefined;
    await this.store.setSetting('revoked_clusters', JSON.stringify([...new Set([...(await this.revokedNames()), c.name])]));
    c.token = randomBytes(32).toString('base64url');
    c.last_seen = 0;
    await this.store.upsertCluster(c);
    // The other root replicas drop the old token from their copies too.
    await this.changed(id);
    this.reserved.delete(id);
    if (this.wasActive.get(id)) {
      this.wasActive.set(id, false);
      this.emit('inactive', c);
    }
    return c;
  }

  /** Registers a cluster, or rotates the token of an existing one of the same name. */
  async register(name: string, location: string, apiUrl: string): Promise<{ record: ClusterRecord; rotated: boolean }> {
    if (await this.isRevoked(name)) throw new ClusterRevokedError(`cluster ${name} was revoked`);
    const existing = await this.store.clusterByName(name);
    const now = this.now();
    const record: ClusterRecord = {
      id: existing?.id ?? randomBytes(12).toString('hex'),
      name,
      location,
      api_url: apiUrl,
      token: randomBytes(32).toString('base64url'),
      registered_at: now,
      last_seen: now,
      aggregate: existing?.aggregate ?? null,
    };
    await this.store.upsertCluster(record);
    await this.changed(record.id);
    this.remember(record);
    this.reserved.delete(record.id);
    // 'active' waits for the first report: before it root knows nothing the scheduler could use.
    this.wasActive.set(record.id, false);
    return { record, rotated: existing !== undefined };
  }

  /**
   * The cluster whose id and token match, or undefined. Constant time in the token. Tokens live in
   * the store: a cluster registered (or re-registered) through another replica is looked up there.
   */
  async authenticate(id: string, token: string): Promise<ClusterRecord | undefined> {
    const match = (c: ClusterRecord | undefined) => (c && timingSafeEqual(digest(c.token), digest(token)) ? c : undefined);
    const known = match(this.byId.get(id));
    if (known) return known;
    const stored = await this.store.cluster(id);
    if (!match(stored)) return undefined;
    await this.refresh(id);
    return this.byId.get(id);
  }

  async report(id: string, aggregate: ClusterAggregate): Promise<void> {
    const c = this.byId.get(id);
    if (!c) return;
    const prev = c.aggregate;
    const wasActive = this.wasActive.get(id) === true;
    c.last_seen = this.now();
    c.aggregate = aggregate;
    this.reserved.delete(id);
    await this.store.touchCluster(id, c.last_seen, aggregate);
    await this.changed(id);
    this.markSeen(c);
    // A cluster that just became active was announced as 'active' already.
    const grew = wasActive && prev ? roomGrowth(prev, aggregate) : [];
    if (grew.length) this.emit('room', c, grew.join(', '));
  }

  /** Root just placed an instance there: count it against the cluster until its next report. */
  reserve(id: string, demand: { vcpus: number; memory: number; vgpus: number }): void {
    const r = this.reserved.get(id) ?? { vcpus: 0, memory_mb: 0, gpus: 0 };
    r.vcpus += demand.vcpus;
    r.memory_mb += demand.memory;
    r.gpus += demand.vgpus;
    this.reserved.set(id, r);
  }

  /**
   * An instance root had placed there was undeployed: count its demand as free again until the
   * cluster's next report (which shows what the cluster really has), so a retry can offer it there.
   */
  release(id: string, demand: { vcpus: number; memory: number; vgpus: number }): void {
    this.reserve(id, { vcpus: -demand.vcpus, memory: -demand.memory, vgpus: -demand.vgpus });
  }

  get(id: string): ClusterRecord | undefined {
    return this.byId.get(id);
  }

  list(): ClusterRecord[] {
    return [...this.byId.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** What the scheduler sees: liveness and free capacity net of reservations. */
  views(): ClusterView[] {
    const out: ClusterView[] = [];
    // One clock read for all (this runs for every placement, over every cluster).
    const now = this.now();
    for (const c of this.byId.values()) {
      const r = this.reserved.get(c.id);
      const a = c.aggregate;
      out.push({
        id: c.id,
        name: c.name,
        active: c.last_seen > 0 && now - c.last_seen < this.silenceMs,
        location: this.locations.get(c.id) ?? null,
        aggregate: a && r
          ? { ...a, free: { vcpus: a.free.vcpus - r.vcpus, memory_mb: a.free.memory_mb - r.memory_mb, gpus: a.free.gpus - r.gpus } }
          : a,
      });
    }
    return out;
  }
}
