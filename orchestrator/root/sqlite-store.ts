// The embedded store: one SQLite file in WAL mode, schema versioned by PRAGMA user_version.
// better-sqlite3 is synchronous and holds one connection, so a transaction whose body awaits must
// keep every other caller's statements out of it until it ends: transactions take a lock, and a
// statement outside any transaction waits while one is open. Statements of the transaction itself
// are recognized by their async context (AsyncLocalStorage), nested calls included.
import { AsyncLocalStorage } from 'node:async_hooks';
import Database from 'better-sqlite3';
import { MIGRATIONS } from './schema.ts';
import { SqlStore, type Row } from './sql-store.ts';
import { StoreConflict } from './store.ts';

function translate(err: unknown): unknown {
  const code = (err as { code?: unknown }).code;
  if (code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE') return new StoreConflict((err as Error).message);
  return err;
}

export class SqliteStore extends SqlStore {
  readonly kind = 'sqlite' as const;
  protected readonly forUpdate = '';
  private readonly db: Database.Database;
  private readonly inTx = new AsyncLocalStorage<{ depth: number }>();
  /** Settles when the open transaction (if any) ends. */
  private lock: Promise<void> | null = null;
  /** Prepared once: preparing is a good part of a statement's cost. */
  private readonly statements = new Map<string, Database.Statement>();

  constructor(file: string) {
    super();
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 2000');
    this.migrate();
  }

  private migrate(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version > MIGRATIONS.length) {
      throw new Error(`database schema version ${version} is newer than this root (${MIGRATIONS.length}); refusing to touch it`);
    }
    for (let v = version; v < MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v] as string);
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  /** Whether a statement must wait: another caller's transaction is open. Check again after each wait. */
  private mustWait(): boolean {
    return this.lock !== null && this.inTx.getStore() === undefined;
  }

  async transaction<T>(fn: () => Promise<T>): Promise<T> {
    const outer = this.inTx.getStore();
    if (outer) {
      // A nested transaction is a savepoint: its failure undoes only its own writes.
      const name = `sp${outer.depth + 1}`;
      this.db.exec(`SAVEPOINT ${name}`);
      try {
        const result = await this.inTx.run({ depth: outer.depth + 1 }, fn);
        this.db.exec(`RELEASE ${name}`);
        return result;
      } catch (err) {
        this.db.exec(`ROLLBACK TO ${name}; RELEASE ${name}`);
        throw translate(err);
      }
    }
    // Checked and taken in one synchronous step: every waiter re-checks after it wakes.
    while (this.lock) await this.lock;
    let release = (): void => undefined;
    this.lock = new Promise((resolve) => { release = resolve; });
    try {
      this.db.exec('BEGIN IMMEDIATE');
      try {
        const result = await this.inTx.run({ depth: 0 }, fn);
        this.db.exec('COMMIT');
        return result;
      } catch (err) {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
        throw translate(err);
      }
    } finally {
      this.lock = null;
      release();
    }
  }

  async close(): Promise<void> {
    while (this.mustWait()) await this.lock;
    if (this.db.open) this.db.close();
  }

  private prepared(sql: string): Database.Statement {
    let s = this.statements.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  protected inTransaction(): boolean {
    return this.inTx.getStore() !== undefined;
  }

  protected async all(sql: string, args: unknown[]): Promise<Row[]> {
    while (this.mustWait()) await this.lock;
    try {
      return this.prepared(sql).all(...args) as Row[];
    } catch (err) {
      throw translate(err);
    }
  }

  protected async run(sql: string, args: unknown[]): Promise<number> {
    while (this.mustWait()) await this.lock;
    try {
      return this.prepared(sql).run(...args).changes;
    } catch (err) {
      throw translate(err);
    }
  }
}
