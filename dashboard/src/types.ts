// The shapes of root's answers the dashboard reads (orchestrator/root/catalog.ts, instances.ts, api/clusters.ts).
export interface HistoryEntry {
  state: string;
  reason: string;
  ts: string;
}

export interface Instance {
  instance_n: number;
  state: string;
  reason: string;
  cluster_id: string | null;
  cluster_name: string | null;
  worker_id: string | null;
  instance_ip: string;
  instance_ip_v6: string;
  ns_ip: string | null;
  updated_at: string;
  history: HistoryEntry[];
}

export interface Service {
  microserviceID: string;
  applicationID: string;
  microservice_name: string;
  microservice_namespace: string;
  name: string;
  virtualization: string;
  memory: number;
  vcpus: number;
  rr_ip: string;
  rr_ip_v6: string;
  closest_ip: string;
  closest_ip_v6: string;
  instances: Instance[];
}

export interface Application {
  applicationID: string;
  application_name: string;
  application_namespace: string;
  application_desc: string;
  owner: string;
  microservices: { microserviceID: string; microservice_name: string; microservice_namespace: string }[];
}

export interface Cluster {
  cluster_id: string;
  name: string;
  location: string;
  active: boolean;
  status: string;
  last_seen: string | null;
  aggregate: {
    free: { vcpus: number; memory_mb: number; gpus: number };
    workers_active: number;
    virtualizations: string[];
    architectures: string[];
  } | null;
}

export interface ClusterDetail {
  cluster_id: string;
  name: string;
  workers: {
    id: string; alive: boolean; subnet_v4: string; arch: string | null; virtualizations: string[];
    cpu: { cores: number; free: number } | null; memory_mb: { total: number; free: number } | null; instances: number;
  }[];
  instances: { service_id: string; service?: string; instance_n: number; worker: string | null; state: string }[];
}

/** An undeployed instance stays listed with its history; everything else counts towards the scale. */
export const isLive = (i: Instance): boolean => i.state !== 'UNDEPLOYED';
