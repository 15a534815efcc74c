// Root's persistent state behind one interface. The embedded implementation is SQLite
// (sqlite-store.ts). Calls are synchronous: root runs as one process, and `transaction` makes a group
// of calls atomic, which is what "a rejected descriptor stores nothing" and the address allocator rely
// on. A server database would implement the same interface over a write-through in-memory copy.
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

export interface RootStore {
  transaction<T>(fn: () => T): T;
  close(): void;

  getSetting(key: string): string | undefined;
  setSetting(key: string, value: string): void;

  insertUser(u: UserRecord): void;
  userById(id: string): UserRecord | undefined;
  userByName(username: string): UserRecord | undefined;
  listUsers(): UserRecord[];
  updateUserPassword(id: string, hash: string): void;

  insertApplication(a: ApplicationRecord): void;
  application(id: string): ApplicationRecord | undefined;
  applicationByName(owner: string, name: string, namespace: string): ApplicationRecord | undefined;
  /** All applications, or only those of `owner`. */
  listApplications(owner?: string): ApplicationRecord[];
  updateApplication(a: ApplicationRecord): void;
  deleteApplication(id: string): void;

  insertService(s: ServiceRecord): void;
  service(id: string): ServiceRecord | undefined;
  listServices(appId: string): ServiceRecord[];
  allServices(): ServiceRecord[];
  updateService(s: ServiceRecord): void;
  deleteService(id: string): void;

  insertInstance(i: InstanceRecord): void;
  instance(serviceId: string, n: number): InstanceRecord | undefined;
  listInstances(serviceId: string): InstanceRecord[];
  instancesInState(states: InstanceState[]): InstanceRecord[];
  updateInstance(i: InstanceRecord): void;
  addInstanceEvent(serviceId: string, n: number, e: InstanceEvent): void;
  instanceEvents(serviceId: string, n: number): InstanceEvent[];
  countInstancesByState(): Map<InstanceState, number>;
  listRetries(): RetryRecord[];
  putRetry(r: RetryRecord): void;
  deleteRetry(serviceId: string, n: number): void;

  upsertCluster(c: ClusterRecord): void;
  cluster(id: string): ClusterRecord | undefined;
  clusterByName(name: string): ClusterRecord | undefined;
  listClusters(): ClusterRecord[];
  touchCluster(id: string, lastSeen: number, aggregate: ClusterAggregate | null): void;

  insertSubnet(s: WorkerSubnetRecord): void;
  subnet(clusterId: string, workerId: string): WorkerSubnetRecord | undefined;
  listSubnets(): WorkerSubnetRecord[];
  deleteSubnet(clusterId: string, workerId: string): boolean;

  insertAddress(a: AddressRecord): void;
  addressOwner(address: string): AddressRecord | undefined;
  listAddresses(): AddressRecord[];
  /** All of a service's addresses, or one instance's. */
  deleteAddressesOf(serviceId: string, instanceN?: number): void;
  /** A service's policy addresses (rr, closest), not its instances'. */
  deletePolicyAddresses(serviceId: string): void;
}
