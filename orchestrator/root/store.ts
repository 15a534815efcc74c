// Root's persistent state behind one asynchronous interface, with two implementations: SQLite
// (sqlite-store.ts, embedded, the default) and PostgreSQL (pg-store.ts, shared by several root
// replicas). Both run the same migrations (schema.ts). `transaction` makes a group of calls atomic,
// which is what "a rejected descriptor stores nothing" and the address allocator rely on: every
// store call made while `fn` runs (in its async context, nested calls included) belongs to it.
import type { Microservice } from '../descriptor/types.ts';
import type { InstanceState } from '../protocol/instance-states.ts';
import type { NetworkSummary, WorkerNetView } from '../protocol/network.ts';

export type Role = 'admin' | 'user';

export interface UserRecord {
  id: string;
  username: string;
  password_hash: string;
  role: Role;
  created_at: number;
}

export interface ApplicationRecord {
  id: string;
  owner: string;
  name: string;
  namespace: string;
  desc: string;
  created_at: number;
}

export interface ServiceRecord {
  id: string;
  app_id: string;
  owner: string;
  name: string;
  namespace: string;
  spec: Microservice;
  rr_ip: string;
  rr_ip_v6: string;
  closest_ip: string;
  closest_ip_v6: string;
  /** Number the next instance gets (instance numbers are never reused within a service). */
  next_n: number;
  created_at: number;
}

export interface InstanceRecord {
  service_id: string;
  n: number;
  state: InstanceState;
  reason: string;
  cluster_id: string | null;
  worker_id: string | null;
  instance_ip: string;
  instance_ip_v6: string;
  ns_ip: string | null;
  ns_ip_v6: string | null;
  tunnel_endpoint: string | null;
  created_at: number;
  updated_at: number;
}

/** Root's retries of an unplaced instance (orchestrator/root/retry.ts), kept across restarts. */
export interface RetryRecord {
  service_id: string;
  n: number;
  retries: number;
  last_retry: number | null;
  /** Runs that ended unplaced in a row: the backoff's exponent. */
  failures: number;
  next_retry: number;
}

export interface InstanceEvent {
  state: InstanceState;
  reason: string;
  ts: number;
}

/** What a cluster last reported (docs/protocols.md). */
export interface ClusterAggregate {
  free: { vcpus: number; memory_mb: number; gpus: number };
  workers_active: number;
  virtualizations: string[];
  architectures: string[];
  /** The largest single worker's totals (older clusters do not send it). */
  max_worker?: { vcpus: number; memory_mb: number };
  /** Workers' network positions and latency probes (SPEC §12; older clusters do not send it). */
  network?: NetworkSummary;
  /** Workers one by one, for `canopy status --workers`. */
  workers?: WorkerNetView[];
}

export interface ClusterRecord {
  id: string;
  name: string;
  location: string;
  api_url: string;
  /** Per-cluster secret; root also presents it when it calls the cluster. */
  token: string;
  registered_at: number;
  /** Last registration or report (ms since epoch); 0 = never. */
  last_seen: number;
  aggregate: ClusterAggregate | null;
}

export interface WorkerSubnetRecord {
  cluster_id: string;
  worker_id: string;
  /** Block index in the worker-subnet space; the v4 and v6 blocks share it. */
  block: number;
  subnet_v4: string;
  subnet_v6: string;
  created_at: number;
}

export type AddressKind = 'rr' | 'closest' | 'instance';

export interface AddressRecord {
  address: string;
  family: 4 | 6;
  kind: AddressKind;
  service_id: string;
  instance_n: number | null;
}

/** A message to the other root replicas (PostgreSQL NOTIFY on `channel`). */
export interface ReplicaNote {
  channel: string;
  payload: string;
}

export interface PlacementContext {
  instance: InstanceRecord;
  service: ServiceRecord;
  /** The application's name and namespace ('' if it is gone). */
  app: string;
  appns: string;
}

export interface RootStore {
  /** Runs `fn` atomically; a rejection rolls everything back. Nested calls join the outer one. */
  transaction<T>(fn: () => Promise<T>): Promise<T>;
  close(): Promise<void>;
  /** 'sqlite' or 'postgres', for logs and metrics. */
  readonly kind: 'sqlite' | 'postgres';

  getSetting(key: string): Promise<string | undefined>;
  setSetting(key: string, value: string): Promise<void>;
  /** Stores `value` unless the key has one; resolves to the value stored (first writer wins). */
  initSetting(key: string, value: string): Promise<string>;

  insertUser(u: UserRecord): Promise<void>;
  userById(id: string): Promise<UserRecord | undefined>;
  userByName(username: string): Promise<UserRecord | undefined>;
  listUsers(): Promise<UserRecord[]>;
  updateUserPassword(id: string, hash: string): Promise<void>;

  insertApplication(a: ApplicationRecord): Promise<void>;
  application(id: string): Promise<ApplicationRecord | undefined>;
  applicationByName(owner: string, name: string, namespace: string): Promise<ApplicationRecord | undefined>;
  /** All applications, or only those of `owner`. */
  listApplications(owner?: string): Promise<ApplicationRecord[]>;
  updateApplication(a: ApplicationRecord): Promise<void>;
  deleteApplication(id: string): Promise<void>;

  insertService(s: ServiceRecord): Promise<void>;
  service(id: string): Promise<ServiceRecord | undefined>;
  /** The service, locked until the transaction ends. */
  serviceForUpdate(id: string): Promise<ServiceRecord | undefined>;
  /** Writes name, namespace, spec and policy addresses (never next_n: see takeInstanceNumber). */
  /**
   * Takes the service's next instance number in one atomic statement (undefined: no such service).
   * Outside any transaction it commits at once, so concurrent deploys of one service do not wait for
   * each other's whole transaction; a deploy that fails afterwards leaves a gap in the numbers.
   */
  takeInstanceNumber(serviceId: string): Promise<number | undefined>;
  /**
   * takeInstanceNumber with the service read in the same statement (a deploy through the API): the
   * number, the service after the take and its application's names; undefined, with nothing taken, when there is no such
   * service or `owner` is given and does not own it.
   */
  takeInstanceNumberOf(serviceId: string, owner?: string): Promise<{ n: number; service: ServiceRecord; app: string; appns: string } | undefined>;
  listServices(appId: string): Promise<ServiceRecord[]>;
  allServices(): Promise<ServiceRecord[]>;
  updateService(s: ServiceRecord): Promise<void>;
  deleteService(id: string): Promise<void>;

  insertInstance(i: InstanceRecord): Promise<void>;
  instance(serviceId: string, n: number): Promise<InstanceRecord | undefined>;
  listInstances(serviceId: string): Promise<InstanceRecord[]>;
  instancesInState(states: InstanceState[]): Promise<InstanceRecord[]>;
  updateInstance(i: InstanceRecord): Promise<void>;
  /** A new instance with its first history entry, atomically. */
  createInstance(i: InstanceRecord, first: InstanceEvent): Promise<void>;
  /**
   * A new instance with its first history entry and the claims of its two instance addresses
   * (`instance_ip`, `instance_ip_v6`), atomically: false, with nothing written, when either address is
   * taken. `note` reaches the other root replicas if and only if this commits.
   */
  claimAndCreateInstance(i: InstanceRecord, first: InstanceEvent, note?: ReplicaNote): Promise<boolean>;
  /**
   * An instance's new state, with its history entry when the state changed, atomically. With
   * `expect`, only if the stored instance still has that state and cluster (compare and set): false,
   * with nothing written, when it moved on meanwhile.
   */
  recordTransition(i: InstanceRecord, event?: InstanceEvent, expect?: { state: InstanceState; cluster_id: string | null }): Promise<boolean>;
  /** What scheduling an instance needs, in one read: the instance, its service and its application's names. */
  placementContext(serviceId: string, n: number): Promise<PlacementContext | undefined>;
  addInstanceEvent(serviceId: string, n: number, e: InstanceEvent): Promise<void>;
  instanceEvents(serviceId: string, n: number): Promise<InstanceEvent[]>;
  countInstancesByState(): Promise<Map<InstanceState, number>>;
  listRetries(): Promise<RetryRecord[]>;
  putRetry(r: RetryRecord): Promise<void>;
  deleteRetry(serviceId: string, n: number): Promise<void>;

  upsertCluster(c: ClusterRecord): Promise<void>;
  cluster(id: string): Promise<ClusterRecord | undefined>;
  clusterByName(name: string): Promise<ClusterRecord | undefined>;
  listClusters(): Promise<ClusterRecord[]>;
  touchCluster(id: string, lastSeen: number, aggregate: ClusterAggregate | null): Promise<void>;

  /** Records a worker's subnets unless the block or the worker has one already (then false). */
  insertSubnet(s: WorkerSubnetRecord): Promise<boolean>;
  subnet(clusterId: string, workerId: string): Promise<WorkerSubnetRecord | undefined>;
  listSubnets(): Promise<WorkerSubnetRecord[]>;
  deleteSubnet(clusterId: string, workerId: string): Promise<boolean>;

  /** Records an address unless it is taken (then false): the one atomic check-and-set of allocation. */
  claimAddress(a: AddressRecord): Promise<boolean>;
  addressOwner(address: string): Promise<AddressRecord | undefined>;
  listAddresses(): Promise<AddressRecord[]>;
  /** All of a service's addresses, or one instance's. */
  deleteAddressesOf(serviceId: string, instanceN?: number): Promise<void>;
  /** A service's policy addresses (rr, closest), not its instances'. */
  deletePolicyAddresses(serviceId: string): Promise<void>;
}

/** A write broke a uniqueness rule (an address or name taken by a concurrent request). */
export class StoreConflict extends Error {}

/** The database cannot be reached; the request may be retried once it is back. */
export class StoreUnavailable extends Error {}
