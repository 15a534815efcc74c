// Bodies of root's calls to a cluster's API (docs/protocols.md, "cluster, root-facing routes"): one
// declaration for both ends, so root's sender (root/cluster-client.ts) and the cluster's receiver
// (cluster/api.ts, cluster/placements.ts) cannot drift apart. The types say what the cluster accepts
// (its JSON schema in cluster/api.ts), which is looser than what root sends.
import type { Constraint } from './cluster/scheduler.ts';

/** The descriptor's microservice object, as far as the cluster reads it. */
export interface OfferedMicroservice {
  virtualization?: string;
  cmd?: string[];
  args?: string[];
  environment?: string[];
  code?: string;
  memory?: number;
  vcpus?: number;
  one_shot?: boolean;
  port?: string;
  constraints?: Constraint[];
}

/** POST /api/placements body. */
export interface PlacementOffer {
  service: {
    service_id: string;
    app: string;
    appns: string;
    svc: string;
    svcns: string;
    microservice: OfferedMicroservice;
    rr_ip?: string | null;
    rr_ip_v6?: string | null;
    closest_ip?: string | null;
    closest_ip_v6?: string | null;
  };
  instance_n: number;
  instance_ip?: string | null;
  instance_ip_v6?: string | null;
}

/** POST /api/placements answer. */
export type PlacementAnswer =
  | { accepted: true; worker_id: string }
  | { accepted: false; status: 'NO_WORKER_CAPACITY' | 'NO_QUALIFIED_WORKER'; reason: string };

/** POST /api/routes body, and root's answer to a cluster's route query. */
export interface RouteInfo {
  service_id: string;
  name: string;
  rr_ip: string;
  rr_ip_v6: string;
  closest_ip: string;
  closest_ip_v6: string;
  instances: {
    n: number;
    instance_ip: string;
    instance_ip_v6: string;
    ns_ip: string | null;
    ns_ip_v6: string | null;
    worker_id: string | null;
    cluster_id: string | null;
    tunnel_endpoint: string | null;
  }[];
}
