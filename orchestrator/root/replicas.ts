// Several root replicas over one PostgreSQL (SPEC §11, docs/decisions.md "root replicas"). Each
// replica serves the whole API; one is the leader and runs what must run once: scheduling (a
// follower's deploy is scheduled by the leader), retries of unplaced instances, resuming interrupted
// runs. Leadership is a PostgreSQL advisory lock held by a dedicated connection: it is released by the
// server the moment that connection dies (the process was killed, the host went away), and the other
// replicas try to take it every LEASE_POLL_MS. The same connection LISTENs: what one replica changes
// and another keeps in memory (clusters, the live event feed, the remote-peer set) is announced with
// NOTIFY, sent inside the writing transaction, so it arrives only if the change committed.
// With SQLite there is one replica: it always leads and hears only itself.
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { Logger } from '../protocol/log.ts';
import type { RootEvent } from './events.ts';
import type { PgStore } from './pg-store.ts';
import type { ReplicaNote } from './store.ts';

/** How often a follower tries to take the lease (and a lost control connection is reopened). */
export const LEASE_POLL_MS = 1000;
const CHANNEL = 'canopy_root';
/** The advisory lock's key: any constant no other program on the database uses. */
const LEADER_LOCK = 0x63616e6f; // "cano"
const BATCH_MS = 50;

export type ReplicaMessage =
  /** A cluster registered or reported through another replica: its stored row is newer. */
  | { kind: 'cluster'; id: string }
  /** An instance was created by a follower: the leader schedules it (retry: a report left it unplaced; retried on its backoff). */
  | { kind: 'schedule'; service_id: string; n: number; retry?: true }
  /** Instances entered or left RUNNING elsewhere: the remote-peer set must be read again. */
  | { kind: 'peers' }
  /** Changes for the live feed (GET /api/v1/events) of every replica's subscribers. */
  | { kind: 'events'; events: RootEvent[] }
  /** The overlay key was rotated (a worker was revoked): read it from the store again. */
  | { kind: 'overlay-key' };

export interface Coordinator extends EventEmitter<{ leader: [boolean]; message: [ReplicaMessage] }> {
  readonly replicaId: string;
  isLeader(): boolean;
  /** Sends to the other replicas; inside a store transaction it goes out on commit only. */
  publish(m: ReplicaMessage): Promise<void>;
  /** `m` as a note for a store write to carry (sent if that write commits); undefined with no other replicas. */
  note(m: ReplicaMessage): ReplicaNote | undefined;
  /**
   * Sends a hint soon, batched with others (at most one NOTIFY per BATCH_MS): the live feed and
   * cache invalidations, where a few milliseconds do not matter and one NOTIFY per write would.
   */
  hint(m: { kind: 'peers' } | { kind: 'event'; event: RootEvent }): void;
  close(): Promise<void>;
}

/** One replica alone (SQLite): always the leader, nobody to tell. */
export class SoloCoordinator extends EventEmitter<{ leader: [boolean]; message: [ReplicaMessage] }> implements Coordinator {
  readonly replicaId = 'solo';
  isLeader(): boolean {
    return true;
  }
  async publish(): Promise<void> {}
  note(): undefined {
    return undefined;
  }
  hint(): void {}
  async close(): Promise<void> {}
}

export class PgCoordinator extends EventEmitter<{ leader: [boolean]; message: [ReplicaMessage] }> implements Coordinator {
  readonly replicaId = randomBytes(6).toString('hex');
  private control: pg.Client | null = null;
  private leader = false;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private busy = false;
  private pendingEvents: RootEvent[] = [];
  private pendingPeers = false;
  private flushTimer: NodeJS.Timeout | null = null;

  constructor(private readonly store: PgStore, private readonly log: Logger) {
    super();
  }

  /** Opens the control connection and tries the lease once; later tries run on a timer. */
  async start(): Promise<void> {
    await this.tick();
    this.timer = setInterval(() => void this.tick(), LEASE_POLL_MS);
    this.timer.unref();
  }

  isLeader(): boolean {
    return this.leader;
  }

  async publish(m: ReplicaMessage): Promise<void> {
    const n = this.note(m);
    await this.store.notify(n.channel, n.payload);
  }

  note(m: ReplicaMessage): ReplicaNote {
    return { channel: CHANNEL, payload: JSON.stringify({ from: this.replicaId, ...m }) };
  }

  hint(m: { kind: 'peers' } | { kind: 'event'; event: RootEvent }): void {
    if (this.closed) return;
    if (m.kind === 'peers') this.pendingPeers = true;
    else if (this.pendingEvents.length < 2000) this.pendingEvents.push(m.event);
    this.flushTimer ??= setTimeout(() => void this.flush(), BATCH_MS);
  }

  private async flush(): Promise<void> {
    this.flushTimer = null;
    const events = this.pendingEvents;
    const peers = this.pendingPeers;
    this.pendingEvents = [];
    this.pendingPeers = false;
    try {
      if (peers) await this.publish({ kind: 'peers' });
      // NOTIFY payloads stay under 8000 bytes: the events go out in slices. Each event is made JSON
      // once (two a placement), and a slice's message is put together from those texts.
      const send = (slice: string[]) =>
        this.store.notify(CHANNEL, `{"from":${JSON.stringify(this.replicaId)},"kind":"events","events":[${slice.join(',')}]}`);
      let slice: string[] = [];
      let size = 0;
      for (const e of events) {
        const json = JSON.stringify(e);
        if (size + json.length + 1 > 6000 && slice.length) {
          await send(slice);
          slice = [];
          size = 0;
        }
        slice.push(json);
        size += json.length + 1;
      }
      if (slice.length) await send(slice);
    } catch (err) {
      // Only hints: the other replicas' views catch up with their next reads.
      this.log.warn('could not notify the other root replicas', { error: (err as Error).message });
    }
  }

  private setLeader(on: boolean, why: string): void {
    if (this.leader === on) return;
    this.leader = on;
    this.log.info(on ? 'root replica leads' : 'root replica follows', { replica: this.replicaId, why });
    this.emit('leader', on);
  }

  private async connect(): Promise<pg.Client> {
    // A leader that stops answering (its query times out) steps down by itself.
    const c = new pg.Client({
      connectionString: this.store.url, connectionTimeoutMillis: 3000, query_timeout: LEASE_POLL_MS * 2, application_name: 'canopy-root-control',
      keepAlive: true, keepAliveInitialDelayMillis: 1000,
    });
    c.on('error', () => this.drop('control connection failed'));
    c.on('end', () => this.drop('control connection closed'));
    c.on('notification', (n) => {
      if (n.channel !== CHANNEL || !n.payload) return;
      try {
        const m = JSON.parse(n.payload) as ReplicaMessage & { from: string };
        if (m.from !== this.replicaId) this.emit('message', m);
      } catch {
        this.log.warn('unreadable replica message ignored', { payload: n.payload.slice(0, 200) });
      }
    });
    await c.connect();
    // A leader whose host vanished (no FIN, no RST) must lose the lease within seconds, not at the
    // server's default keepalive (hours): the server probes this session's socket every second and
    // gives up on unacknowledged data after 3 s.
    await c.query('SET tcp_keepalives_idle = 1; SET tcp_keepalives_interval = 1; SET tcp_keepalives_count = 2; SET tcp_user_timeout = 3000');
    await c.query(`LISTEN ${CHANNEL}`);
    return c;
  }

  /** The connection that holds the lease is gone: so is the lease (the server released it). */
  private drop(why: string): void {
    const c = this.control;
    this.control = null;
    c?.removeAllListeners('end');
    c?.end().catch(() => undefined);
    this.setLeader(false, why);
  }

  private async tick(): Promise<void> {
    if (this.closed || this.busy) return;
    this.busy = true;
    try {
      if (!this.control) this.control = await this.connect();
      if (!this.leader) {
        const r = await this.control.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [LEADER_LOCK]);
        if (r.rows[0]?.ok) this.setLeader(true, 'took the lease');
      } else {
        // Still connected means still holding it; a query proves the connection is alive.
        await this.control.query('SELECT 1');
      }
    } catch (err) {
      this.drop(`database unreachable: ${(err as Error).message}`);
    } finally {
      this.busy = false;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (this.flushTimer) clearTimeout(this.flushTimer);
    const c = this.control;
    this.control = null;
    if (c) {
      c.removeAllListeners('end');
      // Ending the session releases the lease at once: a successor takes it at its next try.
      await c.end().catch(() => undefined);
    }
    this.leader = false;
  }
}
