// The shared store: PostgreSQL through the `pg` client, for several root replicas over one database
// (SPEC §11). The queries are sql-store.ts's; this file holds how they run. A transaction holds one
// pooled connection, found again by the async context of the calls made inside it (nested calls
// become savepoints). Rows that concurrent replicas fight over are settled by the database: unique
// keys (addresses, names), `SELECT … FOR UPDATE` (a service's instance counter) and INSERT … ON
// CONFLICT DO NOTHING (claims), never by a read followed by a write.
import { AsyncLocalStorage } from 'node:async_hooks';
import pg from 'pg';
import { MIGRATIONS, postgres } from './schema.ts';
import { APP_NAMES, PLACEMENT_COLUMNS, PLACEMENT_JOINS, placementRow, SqlStore, takenRow, type Row } from './sql-store.ts';
import { Batch } from './pg-batch.ts';
import { StoreConflict, StoreUnavailable, type InstanceEvent, type InstanceRecord, type PlacementContext, type ReplicaNote, type ServiceRecord } from './store.ts';
import type { InstanceState } from '../protocol/instance-states.ts';

/** Fails a request fast (503) rather than queueing it while the database is away. */
const CONNECT_TIMEOUT_MS = 3000;
/** Joined into a write: its transaction commits without waiting for the WAL flush (synchronous_commit off). */
const ASYNC_COMMIT = "(SELECT set_config('synchronous_commit', 'off', true)) AS async_commit";
/**
 * A write that lost an address claim and wrote nothing: a NULL in a NOT NULL address column (the
 * claim found its address taken), or a deadlock with another replica's claims of the same addresses
 * (PostgreSQL aborted this side; it is tried again with other candidates).
 */
function lostClaim(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === NOT_NULL_VIOLATION || code === '40P01';
}

type Taken = { n: number; service: ServiceRecord; app: string; appns: string };

/** SQLSTATE of a NULL in a NOT NULL column: claimAndCreateInstance's sign that an address was taken. */
const NOT_NULL_VIOLATION = '23502';
/** Serialization failures and deadlocks are retried: the transaction ran against a moving target. */
const TX_ATTEMPTS = 4;

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', '57P01', '57P02', '57P03', '53300']);

/** Whether `err` says the database could not be reached (as opposed to a query it refused). */
export function isConnectionError(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  if (!e) return false;
  if (typeof e.code === 'string' && (CONNECTION_CODES.has(e.code) || e.code.startsWith('08'))) return true;
  const m = typeof e.message === 'string' ? e.message : '';
  return /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|Connection ended|not queryable/i.test(m);
}

function translate(err: unknown): unknown {
  if (err instanceof StoreConflict || err instanceof StoreUnavailable) return err;
  const code = (err as { code?: unknown }).code;
  if (code === '23505') return new StoreConflict((err as Error).message);
  if (isConnectionError(err)) return new StoreUnavailable((err as Error).message || String((err as { code?: unknown }).code));
  return err;
}

/**
 * A query as PostgreSQL's named prepared statement: `?` placeholders numbered `$1, $2, …` (the
 * queries hold no literal question marks), and a name, so each connection parses and plans it once.
 */
const prepared = new Map<string, { name: string; text: string }>();
function statement(sql: string): { name: string; text: string } {
  let s = prepared.get(sql);
  if (!s) {
    let n = 0;
    s = { name: `canopy_${prepared.size}`, text: sql.replace(/\?/g, () => `$${++n}`) };
    prepared.set(sql, s);
  }
  return s;
}

/** Where a connection string points, without its password (for messages). */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'an unparsable postgres:// URL';
  }
}

// BIGINT (times in ms, counters) as numbers: every value root stores fits in 2^53.
const types = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === 20 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

export class PgStore extends SqlStore {
  readonly kind = 'postgres' as const;
  protected readonly forUpdate = ' FOR UPDATE';
  private readonly tx = new AsyncLocalStorage<{ client: pg.PoolClient; depth: number }>();
  private closed = false;

  private constructor(readonly pool: pg.Pool, readonly url: string) {
    super();
    // An idle connection the server dropped: the pool discards it; the next query opens another.
    pool.on('error', () => undefined);
  }

  /**
   * Connects, and migrates the schema (one replica at a time, under an advisory lock). Rejects with
   * StoreUnavailable, naming the server, when it cannot be reached.
   */
  static async open(url: string, o: { max?: number } = {}): Promise<PgStore> {
    const pool = new pg.Pool({ connectionString: url, max: o.max ?? 16, connectionTimeoutMillis: CONNECT_TIMEOUT_MS, types, application_name: 'canopy-root' });
    const store = new PgStore(pool, url);
    try {
      await store.migrate();
    } catch (err) {
      await pool.end().catch(() => undefined);
      const t = translate(err);
      if (t instanceof StoreUnavailable) throw new StoreUnavailable(`cannot reach PostgreSQL at ${redactUrl(url)}: ${t.message}`);
      throw t;
    }
    return store;
  }

  private async migrate(): Promise<void> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      // Replicas starting together: one migrates, the others wait here and find it done.
      await client.query("SELECT pg_advisory_xact_lock(hashtext('canopy-root-migrations'))");
      await client.query('CREATE TABLE IF NOT EXISTS canopy_schema (version INTEGER NOT NULL)');
      const r = await client.query<{ version: number }>('SELECT version FROM canopy_schema');
      let version = r.rows[0]?.version ?? 0;
      if (r.rows.length === 0) await client.query('INSERT INTO canopy_schema (version) VALUES (0)');
      if (version > MIGRATIONS.length) {
        throw new Error(`database schema version ${version} is newer than this root (${MIGRATIONS.length}); refusing to touch it`);
      }
      for (; version < MIGRATIONS.length; version++) {
        await client.query(postgres(MIGRATIONS[version] as string));
        await client.query('UPDATE canopy_schema SET version = $1', [version + 1]);
      }
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  async transaction<T>(fn: () => Promise<T>): Promise<T> {
    const outer = this.tx.getStore();
    if (outer) {
      const name = `sp${outer.depth + 1}`;
      await outer.client.query(`SAVEPOINT ${name}`).catch((e: unknown) => { throw translate(e); });
      try {
        const result = await this.tx.run({ client: outer.client, depth: outer.depth + 1 }, fn);
        await outer.client.query(`RELEASE SAVEPOINT ${name}`);
        return result;
      } catch (err) {
        await outer.client.query(`ROLLBACK TO SAVEPOINT ${name}`).catch(() => undefined);
        throw translate(err);
      }
    }
    for (let attempt = 1; ; attempt++) {
      const client = await this.pool.connect().catch((e: unknown) => { throw translate(e); });
      let broken = false;
      try {
        await client.query('BEGIN');
        const result = await this.tx.run({ client, depth: 0 }, fn);
        await client.query('COMMIT');
        return result;
      } catch (err) {
        // A connection lost mid-transaction never committed: nothing of it is in the database.
        broken = isConnectionError(err);
        if (!broken) await client.query('ROLLBACK').catch(() => { broken = true; });
        const code = (err as { code?: unknown }).code;
        if ((code === '40001' || code === '40P01') && attempt < TX_ATTEMPTS) continue;
        throw translate(err);
      } finally {
        client.release(broken ? true : undefined);
      }
    }
  }

  // The writes every placement makes, each one statement (one round trip, atomic by itself) instead
  // of a transaction of several: the hot path of deploys and transitions.
  override async createInstance(i: InstanceRecord, first: InstanceEvent): Promise<void> {
    await this.query(
      `WITH created AS (INSERT INTO instances (service_id, n, state, reason, cluster_id, worker_id, instance_ip, instance_ip_v6, ns_ip, ns_ip_v6,
       tunnel_endpoint, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?))
       INSERT INTO instance_events (service_id, n, state, reason, ts) VALUES (?, ?, ?, ?, ?)`,
      [i.service_id, i.n, i.state, i.reason, i.cluster_id, i.worker_id, i.instance_ip, i.instance_ip_v6, i.ns_ip, i.ns_ip_v6, i.tunnel_endpoint, i.created_at, i.updated_at,
        i.service_id, i.n, first.state, first.reason, first.ts],
    );
  }

  /**
   * One statement: both address claims (insert unless taken), the instance (whose address columns are
   * NOT NULL and take the claims' results, so a claim that found its address taken fails the whole
   * statement and nothing of it stays), its first history entry, and the note (sent on commit).
   */
  override async claimAndCreateInstance(i: InstanceRecord, first: InstanceEvent, note?: ReplicaNote): Promise<boolean> {
    // Inside a caller's transaction a failed statement would abort it: a savepoint keeps it alive.
    if (this.inTransaction()) return this.createOne(i, first, note, true);
    return this.creations.call({ i: { ...i }, first, note });
  }

  /** The deploy's write alone; `savepoint`: inside a caller's transaction. */
  private async createOne(i: InstanceRecord, first: InstanceEvent, note?: ReplicaNote, savepoint = false): Promise<boolean> {
    const sql = `WITH a4 AS (INSERT INTO addresses (address, family, kind, service_id, instance_n) VALUES (?, 4, 'instance', ?, ?) ON CONFLICT DO NOTHING RETURNING address),
       a6 AS (INSERT INTO addresses (address, family, kind, service_id, instance_n) VALUES (?, 6, 'instance', ?, ?) ON CONFLICT DO NOTHING RETURNING address),
       created AS (INSERT INTO instances (service_id, n, state, reason, cluster_id, worker_id, instance_ip, instance_ip_v6, ns_ip, ns_ip_v6,
         tunnel_endpoint, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, (SELECT address FROM a4), (SELECT address FROM a6), ?, ?, ?, ?, ?) RETURNING service_id, n),
       history AS (INSERT INTO instance_events (service_id, n, state, reason, ts) SELECT service_id, n, ?, ?, ? FROM created)
       ${note ? 'SELECT pg_notify(?, ?) FROM created' : 'SELECT 1 FROM created'}`;
    const args = [i.instance_ip, i.service_id, i.n, i.instance_ip_v6, i.service_id, i.n,
      i.service_id, i.n, i.state, i.reason, i.cluster_id, i.worker_id, i.ns_ip, i.ns_ip_v6, i.tunnel_endpoint, i.created_at, i.updated_at,
      first.state, first.reason, first.ts, ...(note ? [note.channel, note.payload] : [])];
    try {
      if (savepoint) await this.transaction(() => this.query(sql, args));
      else await this.query(sql, args);
      return true;
    } catch (err) {
      if (lostClaim(err)) return false;
      throw err;
    }
  }

  /**
   * Deploys arriving in one event-loop turn are written by one statement and one commit, all or
   * nothing: a candidate address taken meanwhile leaves one row without it, and the NOT NULL column
   * fails the whole statement. Then (rarely: cursors of two replicas met) each is written alone, to
   * learn which lost its claim.
   */
  private readonly creations = new Batch<{ i: InstanceRecord; first: InstanceEvent; note?: ReplicaNote }, boolean>(async (batch) => {
    if (batch.length > 1) {
      const col = <T>(f: (b: (typeof batch)[number]) => T): T[] => batch.map(f);
      try {
        await this.query(
          `WITH v AS (SELECT * FROM unnest(?::text[], ?::bigint[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[],
             ?::bigint[], ?::bigint[], ?::text[], ?::text[], ?::bigint[])
             AS v(service_id, n, state, reason, cluster_id, worker_id, instance_ip, instance_ip_v6, ns_ip, ns_ip_v6, tunnel_endpoint, created_at, updated_at,
               ev_state, ev_reason, ev_ts)),
           a4 AS (INSERT INTO addresses (address, family, kind, service_id, instance_n) SELECT instance_ip, 4, 'instance', service_id, n FROM v
             ON CONFLICT DO NOTHING RETURNING service_id, instance_n, address),
           a6 AS (INSERT INTO addresses (address, family, kind, service_id, instance_n) SELECT instance_ip_v6, 6, 'instance', service_id, n FROM v
             ON CONFLICT DO NOTHING RETURNING service_id, instance_n, address),
           created AS (INSERT INTO instances (service_id, n, state, reason, cluster_id, worker_id, instance_ip, instance_ip_v6, ns_ip, ns_ip_v6,
             tunnel_endpoint, created_at, updated_at)
             SELECT v.service_id, v.n, v.state, v.reason, v.cluster_id, v.worker_id, a4.address, a6.address, v.ns_ip, v.ns_ip_v6, v.tunnel_endpoint,
               v.created_at, v.updated_at
             FROM v LEFT JOIN a4 ON a4.service_id = v.service_id AND a4.instance_n = v.n LEFT JOIN a6 ON a6.service_id = v.service_id AND a6.instance_n = v.n
             RETURNING service_id, n),
           history AS (INSERT INTO instance_events (service_id, n, state, reason, ts)
             SELECT v.service_id, v.n, v.ev_state, v.ev_reason, v.ev_ts FROM created JOIN v ON v.service_id = created.service_id AND v.n = created.n)
           SELECT pg_notify(t.channel, t.payload) FROM unnest(?::text[], ?::text[]) AS t(channel, payload) WHERE t.channel IS NOT NULL`,
          [col((b) => b.i.service_id), col((b) => b.i.n), col((b) => b.i.state), col((b) => b.i.reason), col((b) => b.i.cluster_id), col((b) => b.i.worker_id),
            col((b) => b.i.instance_ip), col((b) => b.i.instance_ip_v6), col((b) => b.i.ns_ip), col((b) => b.i.ns_ip_v6), col((b) => b.i.tunnel_endpoint),
            col((b) => b.i.created_at), col((b) => b.i.updated_at), col((b) => b.first.state), col((b) => b.first.reason), col((b) => b.first.ts),
            col((b) => b.note?.channel ?? null), col((b) => b.note?.payload ?? null)],
        );
        return batch.map(() => true);
      } catch (err) {
        if (!lostClaim(err)) throw err;
      }
    }
    return Promise.all(batch.map((b) => this.createOne(b.i, b.first, b.note)));
  });

  /** The leader's reads before an offer, batched: one statement for a burst of placements. */
  private readonly contexts = new Batch<{ serviceId: string; n: number }, PlacementContext | undefined>(async (keys) => {
    const rows = await this.all(
      `SELECT ${PLACEMENT_COLUMNS} FROM unnest(?::text[], ?::bigint[]) AS k(service_id, n)
       JOIN instances i ON i.service_id = k.service_id AND i.n = k.n ${PLACEMENT_JOINS}`,
      [keys.map((k) => k.serviceId), keys.map((k) => k.n)],
    );
    const found = new Map(rows.map((r) => [`${String(r.service_id)}/${Number(r.n)}`, r]));
    return keys.map((k) => {
      const r = found.get(`${k.serviceId}/${k.n}`);
      return r && placementRow(r);
    });
  });

  override async placementContext(serviceId: string, n: number): Promise<PlacementContext | undefined> {
    if (this.inTransaction()) return super.placementContext(serviceId, n);
    return this.contexts.call({ serviceId, n });
  }

  /**
   * The leader's placements (compare and set with a history entry), batched: one statement and one
   * commit for a burst. Each row is written only if its own expectation holds; the answer says which.
   */
  private readonly placements = new Batch<{ i: InstanceRecord; event: InstanceEvent; expect: { state: InstanceState; cluster_id: string | null } }, boolean>(async (batch) => {
    const col = <T>(f: (b: (typeof batch)[number]) => T): T[] => batch.map(f);
    const rows = await this.all(
      `WITH v AS (SELECT * FROM unnest(?::text[], ?::bigint[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::bigint[],
         ?::text[], ?::text[], ?::text[], ?::text[], ?::bigint[])
         AS v(service_id, n, state, reason, cluster_id, worker_id, ns_ip, ns_ip_v6, tunnel_endpoint, updated_at, exp_state, exp_cluster, ev_state, ev_reason, ev_ts)),
       changed AS (UPDATE instances i SET state = v.state, reason = v.reason, cluster_id = v.cluster_id, worker_id = v.worker_id, ns_ip = v.ns_ip,
         ns_ip_v6 = v.ns_ip_v6, tunnel_endpoint = v.tunnel_endpoint, updated_at = v.updated_at
         FROM v WHERE i.service_id = v.service_id AND i.n = v.n AND i.state = v.exp_state AND i.cluster_id IS NOT DISTINCT FROM v.exp_cluster
         RETURNING i.service_id, i.n, v.ev_state, v.ev_reason, v.ev_ts),
       history AS (INSERT INTO instance_events (service_id, n, state, reason, ts) SELECT service_id, n, ev_state, ev_reason, ev_ts FROM changed)
       SELECT service_id, n FROM changed`,
      [col((b) => b.i.service_id), col((b) => b.i.n), col((b) => b.i.state), col((b) => b.i.reason), col((b) => b.i.cluster_id), col((b) => b.i.worker_id),
        col((b) => b.i.ns_ip), col((b) => b.i.ns_ip_v6), col((b) => b.i.tunnel_endpoint), col((b) => b.i.updated_at),
        col((b) => b.expect.state), col((b) => b.expect.cluster_id), col((b) => b.event.state), col((b) => b.event.reason), col((b) => b.event.ts)],
    );
    const written = new Set(rows.map((r) => `${String(r.service_id)}/${Number(r.n)}`));
    return batch.map((b) => written.has(`${b.i.service_id}/${b.i.n}`));
  });

  override async recordTransition(i: InstanceRecord, event?: InstanceEvent, expect?: { state: InstanceState; cluster_id: string | null }): Promise<boolean> {
    // The scheduler's placements (only those compare and set, and one run per instance at a time,
    // so one instance is never twice in a batch).
    if (event && expect && !this.inTransaction()) return this.placements.call({ i: { ...i }, event, expect });
    const set = 'UPDATE instances SET state = ?, reason = ?, cluster_id = ?, worker_id = ?, ns_ip = ?, ns_ip_v6 = ?, tunnel_endpoint = ?, updated_at = ? WHERE service_id = ? AND n = ?';
    const args: unknown[] = [i.state, i.reason, i.cluster_id, i.worker_id, i.ns_ip, i.ns_ip_v6, i.tunnel_endpoint, i.updated_at, i.service_id, i.n];
    // Compare and set: the row is written only while it still has the state and cluster read before.
    const guard = expect ? ' AND state = ? AND cluster_id IS NOT DISTINCT FROM ?' : '';
    if (expect) args.push(expect.state, expect.cluster_id);
    if (!event) return (await this.run(`${set}${guard}`, args)) > 0 || !expect;
    const written = await this.run(
      `WITH changed AS (${set}${guard} RETURNING service_id, n)
       INSERT INTO instance_events (service_id, n, state, reason, ts) SELECT service_id, n, ?, ?, ? FROM changed`,
      [...args, event.state, event.reason, event.ts],
    );
    return written > 0 || !expect;
  }

  /**
   * Committed without waiting for the disk (synchronous_commit off for this one statement): the
   * service's row is locked until the commit, so with a wait every deploy of one service would queue
   * behind the previous one's WAL flush. Safe: a number matters only once an instance holding it is
   * committed, and that commit (synchronous, later in the WAL) flushes this one with it.
   */
  override async takeInstanceNumber(serviceId: string): Promise<number | undefined> {
    if (this.inTransaction()) return super.takeInstanceNumber(serviceId);
    const r = (await this.all(`UPDATE services SET next_n = next_n + 1 FROM ${ASYNC_COMMIT} WHERE id = ? RETURNING next_n`, [serviceId]))[0];
    return r === undefined ? undefined : Number(r.next_n) - 1;
  }

  /**
   * Deploys of one service arriving in one event-loop turn take their numbers in one statement
   * (next_n moves by their count; each gets the next one in order of arrival), committed without
   * waiting for the disk as takeInstanceNumber.
   */
  private readonly takes = new Batch<{ serviceId: string; owner?: string }, Taken | undefined>(async (calls) => {
    const groups = new Map<string, number[]>();
    calls.forEach((c, k) => {
      const key = `${c.serviceId}\u0000${c.owner ?? '\u0000'}`;
      const g = groups.get(key);
      if (g) g.push(k);
      else groups.set(key, [k]);
    });
    const answers: (Taken | undefined)[] = calls.map(() => undefined);
    await Promise.all([...groups.values()].map(async (ks) => {
      const c = calls[ks[0] as number] as { serviceId: string; owner?: string };
      const r = (await this.all(
        `UPDATE services SET next_n = next_n + ? FROM ${ASYNC_COMMIT} WHERE id = ?${c.owner === undefined ? '' : ' AND owner = ?'} RETURNING services.*, ${APP_NAMES}`,
        c.owner === undefined ? [ks.length, c.serviceId] : [ks.length, c.serviceId, c.owner],
      ))[0];
      if (!r) return;
      const t = takenRow(r);
      const first = t.n - ks.length + 1;
      // Each its own record (deploy writes next_n into it); the parsed spec is shared, read only.
      ks.forEach((k, j) => (answers[k] = { ...t, n: first + j, service: { ...t.service, next_n: first + j + 1 } }));
    }));
    return answers;
  });

  override async takeInstanceNumberOf(serviceId: string, owner?: string): Promise<Taken | undefined> {
    if (this.inTransaction()) return super.takeInstanceNumberOf(serviceId, owner);
    return this.takes.call({ serviceId, owner });
  }

  protected override async sendNote(note: ReplicaNote): Promise<void> {
    await this.notify(note.channel, note.payload);
  }

  /** NOTIFY on `channel`; inside a transaction PostgreSQL delivers it only when that commits. */
  async notify(channel: string, payload: string): Promise<void> {
    await this.query('SELECT pg_notify(?, ?)', [channel, payload]);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }

  protected inTransaction(): boolean {
    return this.tx.getStore() !== undefined;
  }

  private async query(sql: string, args: unknown[]): Promise<pg.QueryResult> {
    const client = this.tx.getStore()?.client ?? this.pool;
    try {
      return await client.query({ ...statement(sql), values: args });
    } catch (err) {
      throw translate(err);
    }
  }

  protected async all(sql: string, args: unknown[]): Promise<Row[]> {
    return (await this.query(sql, args)).rows as Row[];
  }

  protected async run(sql: string, args: unknown[]): Promise<number> {
    return (await this.query(sql, args)).rowCount ?? 0;
  }
}
