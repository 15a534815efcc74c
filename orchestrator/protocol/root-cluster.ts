// Bodies of root's calls to a cluster's API (docs/protocols.md, "cluster, root-facing routes") and of a
// cluster's reports to root: one declaration for both ends, so root's side (root/cluster-client.ts,
// root/api/internal.ts) and the cluster's (cluster/api.ts, cluster/placements.ts, cluster/root-client.ts)
// cannot drift apart. The types say what the cluster accepts
// (its JSON schema in cluster/api.ts), which is looser than what root sends.
import type { InstanceState } from './instance-states.ts';
import { validTunnelKey, type TunnelKey } from './tunnel-identity.ts';
import type { NetworkSummary, WorkerNetView } from './network.ts';

/**
 * The constraint objects of a descriptor microservice, as far as the cluster reads them: looser than
 * the validated descriptor's (descriptor/types.ts), whose constraints are all of this shape.
 */
export interface Constraint {
  type: string;
  cluster?: string;
  node?: string;
  allowed?: readonly string[];
  location?: string;
  threshold?: number;
  arch?: readonly string[];
  area?: string;
  /** `latency`: an address the instance must reach within `threshold` ms (measured by the workers). */
  target?: string;
}

/** One `con_constraints` entry: `latency` in ms (Vivaldi estimate) or `geo` in km. */
export interface ConnectivityConstraint {
  type: string;
  threshold: number;
}

/** A `connectivity[]` entry of a descriptor microservice: place near another service's instances. */
export interface Connectivity {
  /** The target's service id (root resolves sibling names to ids). */
  target_microservice_id: string;
  con_constraints: readonly ConnectivityConstraint[];
}

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
  /** `connectivity[]` as in the descriptor; clusters that predate it ignore the field. */
  connectivity?: Connectivity[];
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
    /** The worker's tunnel sender id (from its subnet), so receivers can admit and address it. */
    tunnel_id?: number;
  }[];
}

/**
 * The deployment's overlay tunnel key, generated once by root (SPEC §5.4): clusters hand it to their
 * workers next to their own, so workers of different clusters can authenticate each other.
 * Travels as `overlay_tunnel` in the registration answer and in every report answer.
 */
export type OverlayTunnel = TunnelKey;

/** The key id of root's overlay key; clusters' own keys use 1 (tunnel-identity.ts). */
export const OVERLAY_KEY_ID = 128;

/**
 * A worker of another cluster that runs instances (report answer, `peers`): the cluster adds it to
 * its workers' tunnel peers, so replies to callers from that cluster are admitted and addressed.
 */
export interface RemotePeer {
  worker_id: string;
  cluster_id: string;
  tunnel_id: number;
  tunnel_endpoint: string;
}

/** A root answer field that is present but not what the contract says. */
export class RootAnswerError extends Error {}

/** `overlay_tunnel` of a root answer: undefined when absent (an older root), an error when malformed. */
export function parseOverlayTunnel(v: unknown): OverlayTunnel | undefined {
  if (v === undefined || v === null) return undefined;
  if (!validTunnelKey(v)) throw new RootAnswerError('overlay_tunnel must be { key_id: 0..255, key: 64 hex digits, encrypt: boolean }');
  return { key_id: v.key_id, key: v.key, encrypt: v.encrypt };
}

const ENDPOINT = /^(?:\[[0-9a-fA-F:.]+\]|\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/;

/** `peers` of a report answer: valid entries kept, each malformed one named in `rejected`. */
export function parseRemotePeers(v: unknown): { peers: RemotePeer[]; rejected: string[] } {
  if (v === undefined || v === null) return { peers: [], rejected: [] };
  if (!Array.isArray(v)) return { peers: [], rejected: ['peers must be an array'] };
  const peers: RemotePeer[] = [];
  const rejected: string[] = [];
  v.forEach((x: unknown, i) => {
    const e = (typeof x === 'object' && x !== null ? x : {}) as Record<string, unknown>;
    const ok = typeof e.worker_id === 'string' && e.worker_id.length > 0 && e.worker_id.length <= 128
      && typeof e.cluster_id === 'string' && e.cluster_id.length <= 128
      && Number.isInteger(e.tunnel_id) && (e.tunnel_id as number) >= 1 && (e.tunnel_id as number) <= 0xffffffff
      && typeof e.tunnel_endpoint === 'string' && ENDPOINT.test(e.tunnel_endpoint);
    if (!ok) {
      rejected.push(`peers[${i}] needs worker_id, cluster_id, tunnel_id 1..2^32-1 and tunnel_endpoint host:port`);
      return;
    }
    peers.push({ worker_id: e.worker_id as string, cluster_id: e.cluster_id as string, tunnel_id: e.tunnel_id as number, tunnel_endpoint: e.tunnel_endpoint as string });
  });
  return { peers, rejected };
}

/** One entry of a cluster's report: an instance's state change since the last report. */
export interface InstanceChange {
  service_id: string;
  instance_n: number;
  state: InstanceState;
  reason: string;
  worker: string | null;
  ts: number;
  /** The instance's namespace addresses and its worker's tunnel endpoint (for root's routes and views). */
  ns_ip?: string;
  ns_ip_v6?: string;
  tunnel_endpoint?: string;
}

/** A cluster's aggregate report (every 5 s, and soon after a change). */
export interface Report {
  free: { vcpus: number; memory_mb: number; gpus: number };
  workers_active: number;
  virtualizations: string[];
  architectures: string[];
  /** The largest single worker's total capacity: no instance that needs more can run here. */
  max_worker: { vcpus: number; memory_mb: number };
  /** Where the workers sit in the network (SPEC §12); clusters that predate it leave it out. */
  network?: NetworkSummary;
  /** The workers one by one (at most MAX_REPORTED_WORKERS), for `canopy status --workers`. */
  workers?: WorkerNetView[];
  instances: InstanceChange[];
}

/**
 * A report entry as root receives it: the shape is checked, the values are not trusted yet (a state
 * this root does not know is ignored later, one entry at a time).
 */
export type ReportedInstance = Omit<InstanceChange, 'state' | 'reason' | 'worker' | 'ts'> & {
  state: string;
  reason?: string;
  worker?: string;
  ts?: number;
};

/** A report entry as sent; null when it is not that shape (such entries are dropped one by one). */
export function parseReportedInstance(x: unknown): ReportedInstance | null {
  if (typeof x !== 'object' || x === null) return null;
  const e = x as Record<string, unknown>;
  if (typeof e.service_id !== 'string' || !Number.isInteger(e.instance_n) || typeof e.state !== 'string') return null;
  const str = (v: unknown, max: number): string | undefined => (typeof v === 'string' && v.length <= max ? v : undefined);
  return {
    service_id: e.service_id,
    instance_n: e.instance_n as number,
    state: e.state,
    reason: str(e.reason, 2000),
    worker: str(e.worker, 128),
    ts: typeof e.ts === 'number' ? e.ts : undefined,
    ns_ip: str(e.ns_ip, 45),
    ns_ip_v6: str(e.ns_ip_v6, 45),
    tunnel_endpoint: str(e.tunnel_endpoint, 64),
  };
}
