// The store's queries, written once for both databases: each implementation supplies how a statement
// runs (`all`, `run`) and how a transaction is held; placeholders are `?` (pg-store numbers them).
import type { InstanceState } from '../protocol/instance-states.ts';
import type {
  AddressRecord, ApplicationRecord, ClusterAggregate, ClusterRecord, InstanceEvent, InstanceRecord, PlacementContext, ReplicaNote, RetryRecord,
  RootStore, ServiceRecord, UserRecord, WorkerSubnetRecord,
} from './store.ts';

export type Row = Record<string, unknown>;

/** PostgreSQL's implicit-order column (schema.ts) is not part of any record. */
function plain<T>(r: Row): T {
  const { rowid, ...rest } = r;
  void rowid;
  return rest as T;
}
/** Returned with a services row: its application's name and namespace (one statement, no join needed). */
export const APP_NAMES = '(SELECT name FROM applications WHERE applications.id = services.app_id) AS app_name, (SELECT namespace FROM applications WHERE applications.id = services.app_id) AS app_namespace';

/** takeInstanceNumberOf's answer from an updated services row with APP_NAMES. */
export function takenRow(r: Row): { n: number; service: ServiceRecord; app: string; appns: string } {
  const { app_name, app_namespace, ...rest } = r;
  return { n: Number(r.next_n) - 1, service: serviceRow(rest), app: (app_name as string | null) ?? '', appns: (app_namespace as string | null) ?? '' };
}

/** What placementContext selects, from `instances i` with PLACEMENT_JOINS (service columns prefixed s_, application a_). */
export const PLACEMENT_COLUMNS = `i.*, s.app_id AS s_app_id, s.owner AS s_owner, s.name AS s_name, s.namespace AS s_namespace, s.spec AS s_spec,
  s.rr_ip AS s_rr_ip, s.rr_ip_v6 AS s_rr_ip_v6, s.closest_ip AS s_closest_ip, s.closest_ip_v6 AS s_closest_ip_v6, s.next_n AS s_next_n,
  s.created_at AS s_created_at, a.name AS a_name, a.namespace AS a_namespace`;
export const PLACEMENT_JOINS = 'JOIN services s ON s.id = i.service_id LEFT JOIN applications a ON a.id = s.app_id';

/** A PLACEMENT_COLUMNS row as a PlacementContext. */
export function placementRow(r: Row): PlacementContext {
  const instance: Row = {};
  const svc: Row = { id: r.service_id };
  for (const [k, v] of Object.entries(r)) {
    if (k.startsWith('s_')) svc[k.slice(2)] = v;
    else if (k !== 'a_name' && k !== 'a_namespace') instance[k] = v;
  }
  return {
    instance: instance as unknown as InstanceRecord,
    service: serviceRow(svc),
    app: (r.a_name as string | null) ?? '',
    appns: (r.a_namespace as string | null) ?? '',
  };
}

/** A services row as a record (spec parsed). */
export function serviceRow(r: Row): ServiceRecord {
  return { ...plain<ServiceRecord>(r), spec: JSON.parse(r.spec as string) };
}
function cluster(r: Row): ClusterRecord {
  return { ...plain<ClusterRecord>(r), aggregate: r.aggregate ? (JSON.parse(r.aggregate as string) as ClusterAggregate) : null };
}

/** An instance address was taken meanwhile: claimAndCreateInstance rolls back and answers false. */
class AddressClaimed extends Error {}

export abstract class SqlStore implements RootStore {
  abstract readonly kind: 'sqlite' | 'postgres';
  /** Appended to a SELECT that locks its row until the transaction ends ('' where writers are serialized anyway). */
  protected abstract readonly forUpdate: string;
  abstract transaction<T>(fn: () => Promise<T>): Promise<T>;
  abstract close(): Promise<void>;
  protected abstract all(sql: string, args: unknown[]): Promise<Row[]>;
  /** Whether the calling code runs inside a transaction of this store. */
  protected abstract inTransaction(): boolean;
  /** Runs a write; resolves to the number of rows it changed. */
  protected abstract run(sql: string, args: unknown[]): Promise<number>;

  private async one(sql: string, args: unknown[]): Promise<Row | undefined> {
    return (await this.all(sql, args))[0];
  }

  async getSetting(key: string): Promise<string | undefined> {
    return (await this.one('SELECT value FROM settings WHERE key = ?', [key]))?.value as string | undefined;
  }
  async setSetting(key: string, value: string): Promise<void> {
    await this.run('INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value', [key, value]);
  }

  async initSetting(key: string, value: string): Promise<string> {
    await this.run('INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT DO NOTHING', [key, value]);
    return (await this.getSetting(key)) as string;
  }

  async insertUser(u: UserRecord): Promise<void> {
    await this.run('INSERT INTO users (id, username, password_hash, role, created_at) VALUES (?, ?, ?, ?, ?)', [u.id, u.username, u.password_hash, u.role, u.created_at]);
  }
  async userById(id: string): Promise<UserRecord | undefined> {
    return (await this.one('SELECT * FROM users WHERE id = ?', [id])) as UserRecord | undefined;
  }
  async userByName(username: string): Promise<UserRecord | undefined> {
    return (await this.one('SELECT * FROM users WHERE username = ?', [username])) as UserRecord | undefined;
  }
  async listUsers(): Promise<UserRecord[]> {
    return (await this.all('SELECT * FROM users ORDER BY created_at, username', [])) as unknown as UserRecord[];
  }
  async updateUserPassword(id: string, hash: string): Promise<void> {
    await this.run('UPDATE users SET password_hash = ? WHERE id = ?', [hash, id]);
  }

  async insertApplication(a: ApplicationRecord): Promise<void> {
    await this.run('INSERT INTO applications (id, owner, name, namespace, "desc", created_at) VALUES (?, ?, ?, ?, ?, ?)', [a.id, a.owner, a.name, a.namespace, a.desc, a.created_at]);
  }
  async application(id: string): Promise<ApplicationRecord | undefined> {
    const r = await this.one('SELECT * FROM applications WHERE id = ?', [id]);
    return r && plain<ApplicationRecord>(r);
  }
  async applicationByName(owner: string, name: string, namespace: string): Promise<ApplicationRecord | undefined> {
    const r = await this.one('SELECT * FROM applications WHERE owner = ? AND name = ? AND namespace = ?', [owner, name, namespace]);
    return r && plain<ApplicationRecord>(r);
  }
  async listApplications(owner?: string): Promise<ApplicationRecord[]> {
    const rows = owner === undefined
      ? await this.all('SELECT * FROM applications ORDER BY created_at, rowid', [])
      : await this.all('SELECT * FROM applications WHERE owner = ? ORDER BY created_at, rowid', [owner]);
    return rows.map((r) => plain<ApplicationRecord>(r));
  }
  async updateApplication(a: ApplicationRecord): Promise<void> {
    await this.run('UPDATE applications SET name = ?, namespace = ?, "desc" = ? WHERE id = ?', [a.name, a.namespace, a.desc, a.id]);
  }
  async deleteApplication(id: string): Promise<void> {
    await this.run('DELETE FROM applications WHERE id = ?', [id]);
  }

  async insertService(s: ServiceRecord): Promise<void> {
    await this.run(
      `INSERT INTO services (id, app_id, owner, name, namespace, spec, rr_ip, rr_ip_v6, closest_ip, closest_ip_v6, next_n, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [s.id, s.app_id, s.owner, s.name, s.namespace, JSON.stringify(s.spec), s.rr_ip, s.rr_ip_v6, s.closest_ip, s.closest_ip_v6, s.next_n, s.created_at],
    );
  }
  async service(id: string): Promise<ServiceRecord | undefined> {
    const r = await this.one('SELECT * FROM services WHERE id = ?', [id]);
    return r && serviceRow(r);
  }
  async serviceForUpdate(id: string): Promise<ServiceRecord | undefined> {
    const r = await this.one(`SELECT * FROM services WHERE id = ?${this.forUpdate}`, [id]);
    return r && serviceRow(r);
  }
  async takeInstanceNumber(serviceId: string): Promise<number | undefined> {
    const r = await this.one('UPDATE services SET next_n = next_n + 1 WHERE id = ? RETURNING next_n', [serviceId]);
    return r === undefined ? undefined : Number(r.next_n) - 1;
  }
  async takeInstanceNumberOf(serviceId: string, owner?: string): Promise<{ n: number; service: ServiceRecord; app: string; appns: string } | undefined> {
    const r = await this.one(`UPDATE services SET next_n = next_n + 1 WHERE id = ?${owner === undefined ? '' : ' AND owner = ?'} RETURNING *, ${APP_NAMES}`,
      owner === undefined ? [serviceId] : [serviceId, owner]);
    return r && takenRow(r);
  }
  async listServices(appId: string): Promise<ServiceRecord[]> {
    return (await this.all('SELECT * FROM services WHERE app_id = ? ORDER BY created_at, rowid', [appId])).map(serviceRow);
  }
  async allServices(): Promise<ServiceRecord[]> {
    return (await this.all('SELECT * FROM services ORDER BY created_at, rowid', [])).map(serviceRow);
  }
  async updateService(s: ServiceRecord): Promise<void> {
    await this.run(
      // next_n is not written: takeInstanceNumber alone moves it, so a record read earlier cannot undo a deploy.
      `UPDATE services SET name = ?, namespace = ?, spec = ?, rr_ip = ?, rr_ip_v6 = ?, closest_ip = ?, closest_ip_v6 = ? WHERE id = ?`,
      [s.name, s.namespace, JSON.stringify(s.spec), s.rr_ip, s.rr_ip_v6, s.closest_ip, s.closest_ip_v6, s.id],
    );
  }
  async deleteService(id: string): Promise<void> {
    await this.run('DELETE FROM instance_events WHERE service_id = ?', [id]);
    await this.run('DELETE FROM instance_retries WHERE service_id = ?', [id]);
    await this.run('DELETE FROM instances WHERE service_id = ?', [id]);
    await this.run('DELETE FROM services WHERE id = ?', [id]);
  }

  async insertInstance(i: InstanceRecord): Promise<void> {
    await this.run(
      `INSERT INTO instances (service_id, n, state, reason, cluster_id, worker_id, instance_ip, instance_ip_v6, ns_ip, ns_ip_v6,
       tunnel_endpoint, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [i.service_id, i.n, i.state, i.reason, i.cluster_id, i.worker_id, i.instance_ip, i.instance_ip_v6, i.ns_ip, i.ns_ip_v6, i.tunnel_endpoint, i.created_at, i.updated_at],
    );
  }
  async instance(serviceId: string, n: number): Promise<InstanceRecord | undefined> {
    return (await this.one('SELECT * FROM instances WHERE service_id = ? AND n = ?', [serviceId, n])) as InstanceRecord | undefined;
  }
  async listInstances(serviceId: string): Promise<InstanceRecord[]> {
    return (await this.all('SELECT * FROM instances WHERE service_id = ? ORDER BY n', [serviceId])) as unknown as InstanceRecord[];
  }
  async instancesInState(states: InstanceState[]): Promise<InstanceRecord[]> {
    if (states.length === 0) return [];
    return (await this.all(`SELECT * FROM instances WHERE state IN (${states.map(() => '?').join(',')}) ORDER BY created_at`, states)) as unknown as InstanceRecord[];
  }
  async updateInstance(i: InstanceRecord): Promise<void> {
    await this.run(
      `UPDATE instances SET state = ?, reason = ?, cluster_id = ?, worker_id = ?, ns_ip = ?, ns_ip_v6 = ?, tunnel_endpoint = ?, updated_at = ?
       WHERE service_id = ? AND n = ?`,
      [i.state, i.reason, i.cluster_id, i.worker_id, i.ns_ip, i.ns_ip_v6, i.tunnel_endpoint, i.updated_at, i.service_id, i.n],
    );
  }
  /** Both writes or neither: inside a caller's transaction they are part of it (no savepoint needed). */
  private async atomically(fn: () => Promise<void>): Promise<void> {
    if (this.inTransaction()) await fn();
    else await this.transaction(fn);
  }
  async createInstance(i: InstanceRecord, first: InstanceEvent): Promise<void> {
    await this.atomically(async () => {
      await this.insertInstance(i);
      await this.addInstanceEvent(i.service_id, i.n, first);
    });
  }
  async claimAndCreateInstance(i: InstanceRecord, first: InstanceEvent, note?: ReplicaNote): Promise<boolean> {
    try {
      await this.transaction(async () => {
        const claim = (address: string, family: 4 | 6) => this.claimAddress({ address, family, kind: 'instance', service_id: i.service_id, instance_n: i.n });
        if (!(await claim(i.instance_ip, 4)) || !(await claim(i.instance_ip_v6, 6))) throw new AddressClaimed();
        await this.createInstance(i, first);
        if (note) await this.sendNote(note);
      });
      return true;
    } catch (err) {
      if (err instanceof AddressClaimed) return false;
      throw err;
    }
  }
  async recordTransition(i: InstanceRecord, event?: InstanceEvent, expect?: { state: InstanceState; cluster_id: string | null }): Promise<boolean> {
    if (!event && !expect) {
      await this.updateInstance(i);
      return true;
    }
    let written = false;
    await this.atomically(async () => {
      if (expect) {
        const now = await this.instance(i.service_id, i.n);
        if (!now || now.state !== expect.state || now.cluster_id !== expect.cluster_id) return;
      }
      await this.updateInstance(i);
      if (event) await this.addInstanceEvent(i.service_id, i.n, event);
      written = true;
    });
    return written;
  }
  async placementContext(serviceId: string, n: number): Promise<PlacementContext | undefined> {
    const r = await this.one(`SELECT ${PLACEMENT_COLUMNS} FROM instances i ${PLACEMENT_JOINS} WHERE i.service_id = ? AND i.n = ?`, [serviceId, n]);
    return r && placementRow(r);
  }
  /** Sends `note` to the other replicas when the transaction commits; a store without replicas has none to send. */
  protected async sendNote(note: ReplicaNote): Promise<void> {
    void note;
    throw new Error(`a ${this.kind} store has no other root replicas to notify`);
  }
  async listRetries(): Promise<RetryRecord[]> {
    return (await this.all('SELECT * FROM instance_retries', [])) as unknown as RetryRecord[];
  }
  async putRetry(r: RetryRecord): Promise<void> {
    await this.run(
      `INSERT INTO instance_retries (service_id, n, retries, last_retry, failures, next_retry) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT(service_id, n) DO UPDATE SET retries = excluded.retries, last_retry = excluded.last_retry,
       failures = excluded.failures, next_retry = excluded.next_retry`,
      [r.service_id, r.n, r.retries, r.last_retry, r.failures, r.next_retry],
    );
  }
  async deleteRetry(serviceId: string, n: number): Promise<void> {
    await this.run('DELETE FROM instance_retries WHERE service_id = ? AND n = ?', [serviceId, n]);
  }
  async addInstanceEvent(serviceId: string, n: number, e: InstanceEvent): Promise<void> {
    await this.run('INSERT INTO instance_events (service_id, n, state, reason, ts) VALUES (?, ?, ?, ?, ?)', [serviceId, n, e.state, e.reason, e.ts]);
  }
  async instanceEvents(serviceId: string, n: number): Promise<InstanceEvent[]> {
    return (await this.all('SELECT state, reason, ts FROM instance_events WHERE service_id = ? AND n = ? ORDER BY seq', [serviceId, n])) as unknown as InstanceEvent[];
  }
  async countInstancesByState(): Promise<Map<InstanceState, number>> {
    const rows = await this.all('SELECT state, COUNT(*) AS c FROM instances GROUP BY state', []);
    return new Map(rows.map((r) => [r.state as InstanceState, Number(r.c)]));
  }

  async upsertCluster(c: ClusterRecord): Promise<void> {
    await this.run(
      `INSERT INTO clusters (id, name, location, api_url, token, registered_at, last_seen, aggregate) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT(id) DO UPDATE SET name = excluded.name, location = excluded.location, api_url = excluded.api_url,
       token = excluded.token, registered_at = excluded.registered_at, last_seen = excluded.last_seen, aggregate = excluded.aggregate`,
      [c.id, c.name, c.location, c.api_url, c.token, c.registered_at, c.last_seen, c.aggregate ? JSON.stringify(c.aggregate) : null],
    );
  }
  async cluster(id: string): Promise<ClusterRecord | undefined> {
    const r = await this.one('SELECT * FROM clusters WHERE id = ?', [id]);
    return r && cluster(r);
  }
  async clusterByName(name: string): Promise<ClusterRecord | undefined> {
    const r = await this.one('SELECT * FROM clusters WHERE name = ?', [name]);
    return r && cluster(r);
  }
  async listClusters(): Promise<ClusterRecord[]> {
    return (await this.all('SELECT * FROM clusters ORDER BY name', [])).map(cluster);
  }
  async touchCluster(id: string, lastSeen: number, aggregate: ClusterAggregate | null): Promise<void> {
    await this.run('UPDATE clusters SET last_seen = ?, aggregate = COALESCE(?, aggregate) WHERE id = ?', [lastSeen, aggregate ? JSON.stringify(aggregate) : null, id]);
  }

  async insertSubnet(s: WorkerSubnetRecord): Promise<boolean> {
    return (await this.run(
      'INSERT INTO worker_subnets (cluster_id, worker_id, block, subnet_v4, subnet_v6, created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING',
      [s.cluster_id, s.worker_id, s.block, s.subnet_v4, s.subnet_v6, s.created_at],
    )) > 0;
  }
  async subnet(clusterId: string, workerId: string): Promise<WorkerSubnetRecord | undefined> {
    return (await this.one('SELECT * FROM worker_subnets WHERE cluster_id = ? AND worker_id = ?', [clusterId, workerId])) as WorkerSubnetRecord | undefined;
  }
  async listSubnets(): Promise<WorkerSubnetRecord[]> {
    return (await this.all('SELECT * FROM worker_subnets ORDER BY block', [])) as unknown as WorkerSubnetRecord[];
  }
  async deleteSubnet(clusterId: string, workerId: string): Promise<boolean> {
    return (await this.run('DELETE FROM worker_subnets WHERE cluster_id = ? AND worker_id = ?', [clusterId, workerId])) > 0;
  }

  async claimAddress(a: AddressRecord): Promise<boolean> {
    return (await this.run(
      'INSERT INTO addresses (address, family, kind, service_id, instance_n) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING',
      [a.address, a.family, a.kind, a.service_id, a.instance_n],
    )) > 0;
  }
  async addressOwner(address: string): Promise<AddressRecord | undefined> {
    return (await this.one('SELECT * FROM addresses WHERE address = ?', [address])) as AddressRecord | undefined;
  }
  async listAddresses(): Promise<AddressRecord[]> {
    return (await this.all('SELECT * FROM addresses', [])) as unknown as AddressRecord[];
  }
  async deleteAddressesOf(serviceId: string, instanceN?: number): Promise<void> {
    if (instanceN === undefined) await this.run('DELETE FROM addresses WHERE service_id = ?', [serviceId]);
    else await this.run('DELETE FROM addresses WHERE service_id = ? AND instance_n = ?', [serviceId, instanceN]);
  }
  async deletePolicyAddresses(serviceId: string): Promise<void> {
    await this.run('DELETE FROM addresses WHERE service_id = ? AND instance_n IS NULL', [serviceId]);
  }
}
