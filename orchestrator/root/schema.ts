// Root's schema, one list of migrations for both stores. Written in SQLite's dialect; postgres()
// adapts the few words that differ, so both databases always have the same tables and columns.

/** Append only: each entry moves the schema one version up. */
export const MIGRATIONS: string[] = [
  `CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
   CREATE TABLE users (id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL,
     role TEXT NOT NULL, created_at INTEGER NOT NULL);
   CREATE TABLE applications (id TEXT PRIMARY KEY, owner TEXT NOT NULL REFERENCES users(id), name TEXT NOT NULL,
     namespace TEXT NOT NULL, "desc" TEXT NOT NULL, created_at INTEGER NOT NULL, UNIQUE (owner, name, namespace));
   CREATE TABLE services (id TEXT PRIMARY KEY, app_id TEXT NOT NULL REFERENCES applications(id), owner TEXT NOT NULL,
     name TEXT NOT NULL, namespace TEXT NOT NULL, spec TEXT NOT NULL, rr_ip TEXT NOT NULL, rr_ip_v6 TEXT NOT NULL,
     closest_ip TEXT NOT NULL, closest_ip_v6 TEXT NOT NULL, next_n INTEGER NOT NULL, created_at INTEGER NOT NULL,
     UNIQUE (app_id, name, namespace));
   CREATE TABLE instances (service_id TEXT NOT NULL REFERENCES services(id), n INTEGER NOT NULL, state TEXT NOT NULL,
     reason TEXT NOT NULL, cluster_id TEXT, worker_id TEXT, instance_ip TEXT NOT NULL, instance_ip_v6 TEXT NOT NULL,
     ns_ip TEXT, ns_ip_v6 TEXT, tunnel_endpoint TEXT, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
     PRIMARY KEY (service_id, n));
   CREATE INDEX instances_state ON instances(state);
   CREATE TABLE instance_events (service_id TEXT NOT NULL, n INTEGER NOT NULL, seq INTEGER PRIMARY KEY AUTOINCREMENT,
     state TEXT NOT NULL, reason TEXT NOT NULL, ts INTEGER NOT NULL);
   CREATE INDEX instance_events_of ON instance_events(service_id, n);
   CREATE TABLE clusters (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, location TEXT NOT NULL, api_url TEXT NOT NULL,
     token TEXT NOT NULL, registered_at INTEGER NOT NULL, last_seen INTEGER NOT NULL, aggregate TEXT);
   CREATE TABLE worker_subnets (cluster_id TEXT NOT NULL, worker_id TEXT NOT NULL, block INTEGER NOT NULL UNIQUE,
     subnet_v4 TEXT NOT NULL, subnet_v6 TEXT NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY (cluster_id, worker_id));
   CREATE TABLE addresses (address TEXT PRIMARY KEY, family INTEGER NOT NULL, kind TEXT NOT NULL,
     service_id TEXT NOT NULL, instance_n INTEGER);
   CREATE INDEX addresses_of ON addresses(service_id, instance_n);`,
  `CREATE TABLE instance_retries (service_id TEXT NOT NULL, n INTEGER NOT NULL, retries INTEGER NOT NULL,
     last_retry INTEGER, failures INTEGER NOT NULL, next_retry INTEGER NOT NULL, PRIMARY KEY (service_id, n));`,
];

/**
 * A migration in PostgreSQL's dialect: times are milliseconds (64-bit), AUTOINCREMENT is a sequence,
 * and the tables listed "in creation order" (ORDER BY created_at, rowid) get the rowid SQLite has
 * implicitly.
 */
export function postgres(sql: string): string {
  return sql
    .replace(/INTEGER PRIMARY KEY AUTOINCREMENT/g, 'BIGSERIAL PRIMARY KEY')
    .replace(/\bINTEGER\b/g, 'BIGINT')
    .replace(/CREATE TABLE (applications|services) \(/g, 'CREATE TABLE $1 (rowid BIGSERIAL, ');
}
