// The embedded store: one SQLite file in WAL mode, schema versioned by PRAGMA user_version.
import Database from 'better-sqlite3';
import type { InstanceState } from '../protocol/instance-states.ts';
import type {
  AddressRecord, ApplicationRecord, ClusterAggregate, ClusterRecord, InstanceEvent, InstanceRecord, RetryRecord, RootStore,
  ServiceRecord, UserRecord, WorkerSubnetRecord,
} from './store.ts';

/** Append only: each entry moves the schema one version up. */
const MIGRATIONS: string[] = [
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

type Row = Record<string, unknown>;

function service(r: Row): ServiceRecord {
  return { ...(r as unknown as ServiceRecord), spec: JSON.parse(r.spec as string) };
}
function cluster(r: Row): ClusterRecord {
  return { ...(r as unknown as ClusterRecord), aggregate: r.aggregate ? (JSON.parse(r.aggregate as string) as ClusterAggregate) : null };
}

export class SqliteStore implements RootStore {
  private readonly db: Database.Database;

  constructor(file: string) {
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

  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private all(sql: string, ...args: unknown[]): Row[] {
    return this.db.prepare(sql).all(...args) as Row[];
  }
  private one(sql: string, ...args: unknown[]): Row | undefined {
    return this.db.prepare(sql).get(...args) as Row | undefined;
  }
  private run(sql: string, ...args: unknown[]): number {
    return this.db.prepare(sql).run(...args).changes;
  }

  getSetting(key: string): string | undefined {
    return this.one('SELECT value FROM settings WHERE key = ?', key)?.value as string | undefined;
  }
  setSetting(key: string, value: string): void {
    this.run('INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value', key, value);
  }

  insertUser(u: UserRecord): void {
    this.run('INSERT INTO users (id, username, password_hash, role, created_at) VALUES (@id, @username, @password_hash, @role, @created_at)', u);
  }
  userById(id: string): UserRecord | undefined {
    return this.one('SELECT * FROM users WHERE id = ?', id) as UserRecord | undefined;
  }
  userByName(username: string): UserRecord | undefined {
    return this.one('SELECT * FROM users WHERE username = ?', username) as UserRecord | undefined;
  }
  listUsers(): UserRecord[] {
    return this.all('SELECT * FROM users ORDER BY created_at, username') as unknown as UserRecord[];
  }
  updateUserPassword(id: string, hash: string): void {
    this.run('UPDATE users SET password_hash = ? WHERE id = ?', hash, id);
  }

  insertApplication(a: ApplicationRecord): void {
    this.run('INSERT INTO applications (id, owner, name, namespace, "desc", created_at) VALUES (@id, @owner, @name, @namespace, @desc, @created_at)', a);
  }
  application(id: string): ApplicationRecord | undefined {
    return this.one('SELECT * FROM applications WHERE id = ?', id) as ApplicationRecord | undefined;
  }
  applicationByName(owner: string, name: string, namespace: string): ApplicationRecord | undefined {
    return this.one('SELECT * FROM applications WHERE owner = ? AND name = ? AND namespace = ?', owner, name, namespace) as ApplicationRecord | undefined;
  }
  listApplications(owner?: string): ApplicationRecord[] {
    const rows = owner === undefined
      ? this.all('SELECT * FROM applications ORDER BY created_at, rowid')
      : this.all('SELECT * FROM applications WHERE owner = ? ORDER BY created_at, rowid', owner);
    return rows as unknown as ApplicationRecord[];
  }
  updateApplication(a: ApplicationRecord): void {
    this.run('UPDATE applications SET name = @name, namespace = @namespace, "desc" = @desc WHERE id = @id', a);
  }
  deleteApplication(id: string): void {
    this.run('DELETE FROM applications WHERE id = ?', id);
  }

  insertService(s: ServiceRecord): void {
    this.run(
      `INSERT INTO services (id, app_id, owner, name, namespace, spec, rr_ip, rr_ip_v6, closest_ip, closest_ip_v6, next_n, created_at)
       VALUES (@id, @app_id, @owner, @name, @namespace, @spec, @rr_ip, @rr_ip_v6, @closest_ip, @closest_ip_v6, @next_n, @created_at)`,
      { ...s, spec: JSON.stringify(s.spec) },
    );
  }
  service(id: string): ServiceRecord | undefined {
    const r = this.one('SELECT * FROM services WHERE id = ?', id);
    return r && service(r);
  }
  listServices(appId: string): ServiceRecord[] {
    return this.all('SELECT * FROM services WHERE app_id = ? ORDER BY created_at, rowid', appId).map(service);
  }
  allServices(): ServiceRecord[] {
    return this.all('SELECT * FROM services ORDER BY created_at, rowid').map(service);
  }
  updateService(s: ServiceRecord): void {
    this.run(
      `UPDATE services SET name = @name, namespace = @namespace, spec = @spec, rr_ip = @rr_ip, rr_ip_v6 = @rr_ip_v6,
       closest_ip = @closest_ip, closest_ip_v6 = @closest_ip_v6, next_n = @next_n WHERE id = @id`,
      { ...s, spec: JSON.stringify(s.spec) },
    );
  }
  deleteService(id: string): void {
    this.run('DELETE FROM instance_events WHERE service_id = ?', id);
    this.run('DELETE FROM instance_retries WHERE service_id = ?', id);
    this.run('DELETE FROM instances WHERE service_id = ?', id);
    this.run('DELETE FROM services WHERE id = ?', id);
  }

  insertInstance(i: InstanceRecord): void {
    this.run(
      `INSERT INTO instances (service_id, n, state, reason, cluster_id, worker_id, instance_ip, instance_ip_v6, ns_ip, ns_ip_v6,
       tunnel_endpoint, created_at, updated_at) VALUES (@service_id, @n, @state, @reason, @cluster_id, @worker_id, @instance_ip,
       @instance_ip_v6, @ns_ip, @ns_ip_v6, @tunnel_endpoint, @created_at, @updated_at)`,
      i,
    );
  }
  instance(serviceId: string, n: number): InstanceRecord | undefined {
    return this.one('SELECT * FROM instances WHERE service_id = ? AND n = ?', serviceId, n) as InstanceRecord | undefined;
  }
  listInstances(serviceId: string): InstanceRecord[] {
    return this.all('SELECT * FROM instances WHERE service_id = ? ORDER BY n', serviceId) as unknown as InstanceRecord[];
  }
  instancesInState(states: InstanceState[]): InstanceRecord[] {
    if (states.length === 0) return [];
    return this.all(`SELECT * FROM instances WHERE state IN (${states.map(() => '?').join(',')}) ORDER BY created_at`, ...states) as unknown as InstanceRecord[];
  }
  updateInstance(i: InstanceRecord): void {
    this.run(
      `UPDATE instances SET state = @state, reason = @reason, cluster_id = @cluster_id, worker_id = @worker_id, ns_ip = @ns_ip,
       ns_ip_v6 = @ns_ip_v6, tunnel_endpoint = @tunnel_endpoint, updated_at = @updated_at WHERE service_id = @service_id AND n = @n`,
      i,
    );
  }
  listRetries(): RetryRecord[] {
    return this.all('SELECT * FROM instance_retries') as unknown as RetryRecord[];
  }
  putRetry(r: RetryRecord): void {
    this.run(
      `INSERT INTO instance_retries (service_id, n, retries, last_retry, failures, next_retry)
       VALUES (@service_id, @n, @retries, @last_retry, @failures, @next_retry)
       ON CONFLICT(service_id, n) DO UPDATE SET retries = excluded.retries, last_retry = excluded.last_retry,
       failures = excluded.failures, next_retry = excluded.next_retry`,
      r,
    );
  }
  deleteRetry(serviceId: string, n: number): void {
    this.run('DELETE FROM instance_retries WHERE service_id = ? AND n = ?', serviceId, n);
  }
  addInstanceEvent(serviceId: string, n: number, e: InstanceEvent): void {
    this.run('INSERT INTO instance_events (service_id, n, state, reason, ts) VALUES (?, ?, ?, ?, ?)', serviceId, n, e.state, e.reason, e.ts);
  }
  instanceEvents(serviceId: string, n: number): InstanceEvent[] {
    return this.all('SELECT state, reason, ts FROM instance_events WHERE service_id = ? AND n = ? ORDER BY seq', serviceId, n) as unknown as InstanceEvent[];
  }
  countInstancesByState(): Map<InstanceState, number> {
    const rows = this.all('SELECT state, COUNT(*) AS c FROM instances GROUP BY state');
    return new Map(rows.map((r) => [r.state as InstanceState, r.c as number]));
  }

  upsertCluster(c: ClusterRecord): void {
    this.run(
      `INSERT INTO clusters (id, name, location, api_url, token, registered_at, last_seen, aggregate)
       VALUES (@id, @name, @location, @api_url, @token, @registered_at, @last_seen, @aggregate)
       ON CONFLICT(id) DO UPDATE SET name = excluded.name, location = excluded.location, api_url = excluded.api_url,
       token = excluded.token, registered_at = excluded.registered_at, last_seen = excluded.last_seen, aggregate = excluded.aggregate`,
      { ...c, aggregate: c.aggregate ? JSON.stringify(c.aggregate) : null },
    );
  }
  cluster(id: string): ClusterRecord | undefined {
    const r = this.one('SELECT * FROM clusters WHERE id = ?', id);
    return r && cluster(r);
  }
  clusterByName(name: string): ClusterRecord | undefined {
    const r = this.one('SELECT * FROM clusters WHERE name = ?', name);
    return r && cluster(r);
  }
  listClusters(): ClusterRecord[] {
    return this.all('SELECT * FROM clusters ORDER BY name').map(cluster);
  }
  touchCluster(id: string, lastSeen: number, aggregate: ClusterAggregate | null): void {
    this.run('UPDATE clusters SET last_seen = ?, aggregate = COALESCE(?, aggregate) WHERE id = ?', lastSeen, aggregate ? JSON.stringify(aggregate) : null, id);
  }

  insertSubnet(s: WorkerSubnetRecord): void {
    this.run(
      'INSERT INTO worker_subnets (cluster_id, worker_id, block, subnet_v4, subnet_v6, created_at) VALUES (@cluster_id, @worker_id, @block, @subnet_v4, @subnet_v6, @created_at)',
      s,
    );
  }
  subnet(clusterId: string, workerId: string): WorkerSubnetRecord | undefined {
    return this.one('SELECT * FROM worker_subnets WHERE cluster_id = ? AND worker_id = ?', clusterId, workerId) as WorkerSubnetRecord | undefined;
  }
  listSubnets(): WorkerSubnetRecord[] {
    return this.all('SELECT * FROM worker_subnets ORDER BY block') as unknown as WorkerSubnetRecord[];
  }
  deleteSubnet(clusterId: string, workerId: string): boolean {
    return this.run('DELETE FROM worker_subnets WHERE cluster_id = ? AND worker_id = ?', clusterId, workerId) > 0;
  }

  insertAddress(a: AddressRecord): void {
    this.run('INSERT INTO addresses (address, family, kind, service_id, instance_n) VALUES (@address, @family, @kind, @service_id, @instance_n)', a);
  }
  addressOwner(address: string): AddressRecord | undefined {
    return this.one('SELECT * FROM addresses WHERE address = ?', address) as AddressRecord | undefined;
  }
  listAddresses(): AddressRecord[] {
    return this.all('SELECT * FROM addresses') as unknown as AddressRecord[];
  }
  deleteAddressesOf(serviceId: string, instanceN?: number): void {
    if (instanceN === undefined) this.run('DELETE FROM addresses WHERE service_id = ?', serviceId);
    else this.run('DELETE FROM addresses WHERE service_id = ? AND instance_n = ?', serviceId, instanceN);
  }
  deletePolicyAddresses(serviceId: string): void {
    this.run('DELETE FROM addresses WHERE service_id = ? AND instance_n IS NULL', serviceId);
  }
}
