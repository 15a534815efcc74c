// Canopy's applications, services and instances as Oakestra's clients read them (the ATC'23 scripts,
// the `oak` CLIs, the dashboard): Mongo-style `_id: {$oid}`, `microservices` as id strings,
// `instance_list` with `instance_number`/`status`/`publicip`, Oakestra's status names. Only a
// translation of the service layer's views: nothing here decides or stores anything.
import { parsePorts } from '../../descriptor/ports.ts';
import type { ApplicationView, ServiceView } from '../catalog.ts';
import type { ClusterRegistry } from '../clusters.ts';
import type { InstanceView } from '../instance-view.ts';
import type { InstanceState } from '../../protocol/instance-states.ts';
import type { ClusterRecord } from '../store.ts';

export interface Oid {
  $oid: string;
}

export interface OakApplication {
  _id: Oid;
  applicationID: string;
  application_name: string;
  application_namespace: string;
  application_desc: string;
  /** Oakestra keeps the owner's user name here. */
  userId: string;
  /** Service ids in the SLA's order (clients index them). */
  microservices: string[];
}

export interface OakInstance {
  instance_number: number;
  status: string;
  status_detail: string;
  cluster_id: string;
  cluster_location: string;
  worker_id: string;
  /** The worker's address for the service's host port mappings, "" until placed. */
  publicip: string;
  host_ip: string;
  host_port?: number;
  /** Seconds since the epoch, as Oakestra's clusters report it. */
  last_modified_timestamp: number;
}

export interface OakCluster {
  _id: string;
  cluster_name: string;
  cluster_location: string;
  active: boolean;
  active_nodes: number;
  virtualization: string[];
  total_cpu_cores: number;
  vcpus: number;
  memory_in_mb: number;
  memory: number;
  total_gpu_cores: number;
  vgpus: number;
  last_modified_timestamp: number;
}

/** What the translation needs besides the views: cluster names, liveness, locations, worker addresses. */
export interface OakLookup {
  clusters: ClusterRegistry;
  workerAddress(serviceId: string, n: number): string | null;
}

export const oid = (id: string): Oid => ({ $oid: id });

export function oakApplication(a: ApplicationView): OakApplication {
  return {
    _id: oid(a.applicationID),
    applicationID: a.applicationID,
    application_name: a.application_name,
    application_namespace: a.application_namespace,
    application_desc: a.application_desc,
    userId: a.owner,
    microservices: a.microservices.map((m) => m.microserviceID),
  };
}

/**
 * Oakestra's name for a state. Canopy's one "no cluster" outcome splits the way Oakestra's root
 * scheduler reports it: against a cluster the SLA names (unknown, inactive, full), or against all.
 */
export function oakStatus(state: InstanceState, s: Pick<ServiceView, 'constraints'>, clusters: ClusterRegistry): string {
  switch (state) {
    case 'NO_QUALIFIED_WORKER':
      return 'NO_QUALIFIED_WORKER_FOUND';
    case 'NO_CLUSTER_FOUND': {
      const direct = s.constraints.find((c) => c.type === 'direct' && c.cluster !== undefined);
      const target = direct?.type === 'direct' ? direct.cluster : undefined;
      if (target === undefined) return 'NoActiveClusterWithCapacity';
      const c = clusters.list().find((x) => x.name === target);
      if (!c) return 'TargetClusterNotFound';
      return clusters.isActive(c) ? 'TargetClusterNoCapacity' : 'TargetClusterNotActive';
    }
    default:
      return state;
  }
}

function oakInstance(s: ServiceView, i: InstanceView, look: OakLookup): OakInstance {
  const cluster = i.cluster_id ? look.clusters.get(i.cluster_id) : undefined;
  const ip = look.workerAddress(s.microserviceID, i.instance_n) ?? '';
  let hostPort: number | undefined;
  try {
    hostPort = parsePorts(s.port)[0]?.host;
  } catch {
    hostPort = undefined; // a stored port field was validated on the way in; nothing to add otherwise
  }
  return {
    instance_number: i.instance_n,
    status: oakStatus(i.state, s, look.clusters),
    status_detail: i.reason,
    cluster_id: i.cluster_id ?? '',
    cluster_location: cluster?.location ?? '',
    worker_id: i.worker_id ?? '',
    publicip: ip,
    host_ip: ip,
    ...(hostPort !== undefined ? { host_port: hostPort } : {}),
    last_modified_timestamp: Date.parse(i.updated_at) / 1000,
  };
}

/** Oakestra's job object. Undeployed instances leave `instance_list`, as Oakestra removes them. */
export function oakService(s: ServiceView, app: Pick<ApplicationView, 'application_name' | 'application_namespace'>, look: OakLookup): Record<string, unknown> {
  const { instances, name, rr_ip, rr_ip_v6, closest_ip, closest_ip_v6, created_at, ...ms } = s;
  void closest_ip; void closest_ip_v6; void created_at;
  const latest = [...instances].sort((a, b) => Date.parse(b.updated_at) - Date.parse(a.updated_at))[0];
  return {
    ...ms,
    _id: oid(s.microserviceID),
    app_name: app.application_name,
    app_ns: app.application_namespace,
    job_name: name,
    service_name: s.microservice_name,
    service_ns: s.microservice_namespace,
    image: s.code,
    virtualization: s.virtualization === 'container' ? 'docker' : s.virtualization,
    RR_ip: rr_ip,
    RR_ip_v6: rr_ip_v6,
    // Oakestra's job has no status before its first deployment request.
    ...(latest ? { status: oakStatus(latest.state, s, look.clusters), status_detail: latest.reason } : {}),
    instance_list: instances.filter((i) => i.state !== 'UNDEPLOYED').map((i) => oakInstance(s, i, look)),
  };
}

/**
 * A service object as a client sends it back (the dashboard edits what it fetched): Oakestra's added
 * fields dropped, `docker` back to `container`, so the descriptor validator sees a microservice.
 */
export function fromOakService(body: unknown): unknown {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return body;
  const o = { ...(body as Record<string, unknown>) };
  for (const k of ['_id', 'applicationID', 'app_name', 'app_ns', 'job_name', 'service_name', 'service_ns', 'image', 'RR_ip', 'RR_ip_v6',
    'status', 'status_detail', 'instance_list', 'next_instance_progressive_number']) delete o[k];
  if (o.virtualization === 'docker') o.virtualization = 'container';
  return o;
}

export function oakCluster(c: ClusterRecord, active: boolean): OakCluster {
  const a = c.aggregate;
  const cpus = Math.floor(a?.free.vcpus ?? 0);
  const mem = Math.floor(a?.free.memory_mb ?? 0);
  const gpus = Math.floor(a?.free.gpus ?? 0);
  return {
    _id: c.id,
    cluster_name: c.name,
    cluster_location: c.location,
    active,
    active_nodes: a?.workers_active ?? 0,
    virtualization: a?.virtualizations.map((v) => (v === 'container' ? 'docker' : v)) ?? [],
    total_cpu_cores: cpus,
    vcpus: cpus,
    memory_in_mb: mem,
    memory: mem,
    total_gpu_cores: gpus,
    vgpus: gpus,
    last_modified_timestamp: c.last_seen / 1000,
  };
}
