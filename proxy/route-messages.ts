// The route message set between a worker's semantic layer and its cluster. The cluster carries these
// objects over MQTT unchanged (JSON on nodes/<id>/net/… and jobs/<service>/updates), so every field is
// validated on receipt: a malformed message becomes a RouteMessageError naming the offending path,
// never a crash and never a half-applied route.
import { isIPv4, isIPv6 } from 'node:net';

export const POLICIES = ['rr', 'closest'] as const;
export type Policy = (typeof POLICIES)[number];

/** One instance of a service, as the cluster knows it. */
export interface InstanceRoute {
  /** Instance number within the service (the `<n>` of `.instance.<n>` and of the DNS selector). */
  n: number;
  /** Stable instance IP (service range) that reaches exactly this instance. */
  instance_ip: string;
  instance_ip_v6: string | null;
  /** Namespace address on its worker's subnet; changes when the instance moves. */
  ns_ip: string;
  ns_ip_v6: string | null;
  worker_id: string;
  cluster_id: string | null;
  /** host:port of the worker's tunnel socket ("[v6]:port" for IPv6). */
  tunnel_endpoint: string;
  /** The sender id of that worker's tunnel headers (absent from sources that have no tunnel). */
  tunnel_id?: number;
  /** false: failed or overloaded; kept for existing flows, never picked for new ones. */
  healthy: boolean;
}

export interface PortSpec {
  port: number;
  proto: 'tcp' | 'udp';
}

/** Everything a worker needs to reach one service (SPEC §3, docs/protocols.md route answer). */
export interface ServiceRoute {
  service_id: string;
  /** Full name `<app>.<appns>.<svc>.<svcns>` (SPEC §2), lower-case. */
  name: string;
  rr_ip: string | null;
  rr_ip_v6: string | null;
  closest_ip: string | null;
  closest_ip_v6: string | null;
  /** The policy of a DNS name without selector. */
  default_policy: Policy;
  /** Container ports the service listens on (answered in SRV records). */
  ports: PortSpec[];
  instances: InstanceRoute[];
}

/** A Vivaldi coordinate (2-D plus height, milliseconds). */
export interface Coordinate {
  vec: [number, number];
  height: number;
  /** Local error estimate in [0, 1.5]; lower is more trusted. */
  error: number;
}

export interface WorkerCoordinate {
  worker_id: string;
  coord: Coordinate;
}

// ---- worker → cluster (nodes/<id>/net/tablequery/request and nodes/<id>/net/…) ----

/** Ask for the service behind one address (any of its service IPs or instance IPs) or one full name. */
export interface TableQuery {
  type: 'table_query';
  /** Correlates the result; unique per worker while outstanding. */
  query_id: string;
  address?: string;
  name?: string;
}

/** Keep (add) or stop (remove) pushing updates of a service to this worker. */
export interface InterestMessage {
  type: 'interest_add' | 'interest_remove';
  service_id: string;
}

/** This worker's own coordinate and its direct measurements, for the cluster to relay. */
export interface CoordinateReport {
  type: 'coordinate_report';
  worker_id: string;
  coord: Coordinate;
  rtt_ms: Record<string, number>;
}

// ---- cluster → worker (nodes/<id>/net/tablequery/result, jobs/<service>/updates, nodes/<id>/net/…) ----

export interface TableResult {
  type: 'table_result';
  query_id: string;
  /** null: no service has that address or name (the worker caches the miss briefly). */
  route: ServiceRoute | null;
}

/** Full replacement of a service's route; applied at once by every interested worker. */
export interface RouteUpdate {
  type: 'route_update';
  route: ServiceRoute;
}

/** Instances (or, without `instances`, the whole service) are gone. */
export interface RouteWithdraw {
  type: 'route_withdraw';
  service_id: string;
  instances?: number[];
}

/** Coordinates of other workers (the cluster relays what workers report). */
export interface Coordinates {
  type: 'coordinates';
  entries: WorkerCoordinate[];
}

/** A tunnel peer the cluster admitted: data from other sender ids is dropped (SPEC §5.4). */
export interface TunnelPeer {
  worker_id: string;
  tunnel_id: number;
  tunnel_endpoint: string;
}

/** The full set of admitted peers of the cluster (replaces the previous set). */
export interface Peers {
  type: 'peers';
  entries: TunnelPeer[];
}

export type WorkerToCluster = TableQuery | InterestMessage | CoordinateReport;
export type ClusterToWorker = TableResult | RouteUpdate | RouteWithdraw | Coordinates | Peers;
export type RouteMessage = WorkerToCluster | ClusterToWorker;

export class RouteMessageError extends Error {
  readonly path: string;
  constructor(path: string, why: string) {
    super(`${path}: ${why}`);
    this.path = path;
  }
}

// ---- validation ----

type Obj = Record<string, unknown>;

function obj(v: unknown, path: string): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new RouteMessageError(path, 'must be an object');
  return v as Obj;
}

function str(v: unknown, path: string, max = 256): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > max) {
    throw new RouteMessageError(path, `must be a non-empty string of at most ${max} characters`);
  }
  return v;
}

function int(v: unknown, path: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new RouteMessageError(path, `must be an integer in [${min}, ${max}]`);
  }
  return v;
}

function num(v: unknown, path: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
    throw new RouteMessageError(path, `must be a number in [${min}, ${max}]`);
  }
  return v;
}

function ip4(v: unknown, path: string): string {
  if (typeof v !== 'string' || !isIPv4(v)) throw new RouteMessageError(path, 'must be an IPv4 address');
  return v;
}

function ip6(v: unknown, path: string): string {
  if (typeof v !== 'string' || !isIPv6(v) || v.includes('%')) throw new RouteMessageError(path, 'must be an IPv6 address');
  return v.toLowerCase();
}

function opt<T>(v: unknown, path: string, f: (v: unknown, path: string) => T): T | null {
  return v === undefined || v === null ? null : f(v, path);
}

const NAME_LABEL = /^[a-z0-9]{1,30}$/;

function fullName(v: unknown, path: string): string {
  const s = str(v, path, 200).toLowerCase();
  const labels = s.split('.');
  if (labels.length !== 4 || !labels.every((l) => NAME_LABEL.test(l))) {
    throw new RouteMessageError(path, 'must be <app>.<appns>.<svc>.<svcns>, each [a-z0-9]{1,30}');
  }
  return s;
}

function endpoint(v: unknown, path: string): string {
  const s = str(v, path, 64);
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(s);
  const host = m ? (m[1] ?? m[2]) : undefined;
  const port = m ? Number(m[3]) : 0;
  if (!m || port < 1 || port > 65535 || !(m[1] ? isIPv6(host ?? '') : isIPv4(host ?? ''))) {
    throw new RouteMessageError(path, 'must be host:port (IPv4) or [host]:port (IPv6)');
  }
  return s;
}

function instanceRoute(v: unknown, path: string): InstanceRoute {
  const o = obj(v, path);
  return {
    n: int(o.n, `${path}.n`, 0, 1_000_000),
    instance_ip: ip4(o.instance_ip, `${path}.instance_ip`),
    instance_ip_v6: opt(o.instance_ip_v6, `${path}.instance_ip_v6`, ip6),
    ns_ip: ip4(o.ns_ip, `${path}.ns_ip`),
    ns_ip_v6: opt(o.ns_ip_v6, `${path}.ns_ip_v6`, ip6),
    worker_id: str(o.worker_id, `${path}.worker_id`, 128),
    cluster_id: opt(o.cluster_id, `${path}.cluster_id`, (x, p) => str(x, p, 128)),
    tunnel_endpoint: endpoint(o.tunnel_endpoint, `${path}.tunnel_endpoint`),
    healthy: o.healthy === undefined ? true : bool(o.healthy, `${path}.healthy`),
    ...(o.tunnel_id === undefined ? {} : { tunnel_id: int(o.tunnel_id, `${path}.tunnel_id`, 1, 0xffffffff) }),
  };
}

function bool(v: unknown, path: string): boolean {
  if (typeof v !== 'boolean') throw new RouteMessageError(path, 'must be a boolean');
  return v;
}

function list<T>(v: unknown, path: string, max: number, f: (v: unknown, path: string) => T): T[] {
  if (!Array.isArray(v)) throw new RouteMessageError(path, 'must be an array');
  if (v.length > max) throw new RouteMessageError(path, `must have at most ${max} entries`);
  return v.map((x, i) => f(x, `${path}[${i}]`));
}

function portSpec(v: unknown, path: string): PortSpec {
  const o = obj(v, path);
  const proto = o.proto ?? 'tcp';
  if (proto !== 'tcp' && proto !== 'udp') throw new RouteMessageError(`${path}.proto`, 'must be "tcp" or "udp"');
  return { port: int(o.port, `${path}.port`, 1, 65535), proto };
}

export function parseServiceRoute(v: unknown, path = 'route'): ServiceRoute {
  const o = obj(v, path);
  const policy = o.default_policy ?? 'rr';
  if (!POLICIES.includes(policy as Policy)) {
    throw new RouteMessageError(`${path}.default_policy`, `must be one of ${POLICIES.join(', ')}`);
  }
  const instances = list(o.instances, `${path}.instances`, 4096, instanceRoute);
  const seen = new Set<number>();
  instances.forEach((inst, i) => {
    if (seen.has(inst.n)) throw new RouteMessageError(`${path}.instances[${i}].n`, `duplicate instance number ${inst.n}`);
    seen.add(inst.n);
  });
  const route: ServiceRoute = {
    service_id: str(o.service_id, `${path}.service_id`, 128),
    name: fullName(o.name, `${path}.name`),
    rr_ip: opt(o.rr_ip, `${path}.rr_ip`, ip4),
    rr_ip_v6: opt(o.rr_ip_v6, `${path}.rr_ip_v6`, ip6),
    closest_ip: opt(o.closest_ip, `${path}.closest_ip`, ip4),
    closest_ip_v6: opt(o.closest_ip_v6, `${path}.closest_ip_v6`, ip6),
    default_policy: policy as Policy,
    ports: o.ports === undefined ? [] : list(o.ports, `${path}.ports`, 64, portSpec),
    instances,
  };
  const clash = routeAddressClash(route, path);
  if (clash) throw clash;
  return route;
}

/**
 * Every address of a route must reach one thing: the service table indexes each address once, so a
 * second instance on an instance IP (or an instance on the rr/closest IP) would silently take the
 * first one's traffic. Returns the error naming the later of the two, or null. The service table
 * checks it too, before changing anything, for routes that come in process without being parsed.
 */
export function routeAddressClash(route: ServiceRoute, path = 'route'): RouteMessageError | null {
  const owner = new Map<string, string>();
  const claim = (ip: string | null, at: string, what: string): RouteMessageError | null => {
    if (ip === null) return null;
    const key = canonicalIp(ip);
    const first = owner.get(key);
    if (first !== undefined) return new RouteMessageError(at, `${what} ${ip} is already used by ${first}`);
    owner.set(key, at);
    return null;
  };
  const policy: [string | null, string][] = [
    [route.rr_ip, 'rr_ip'], [route.rr_ip_v6, 'rr_ip_v6'], [route.closest_ip, 'closest_ip'], [route.closest_ip_v6, 'closest_ip_v6'],
  ];
  for (const [ip, field] of policy) {
    const e = claim(ip, `${path}.${field}`, 'address');
    if (e) return e;
  }
  for (const [i, inst] of route.instances.entries()) {
    const e = claim(inst.instance_ip, `${path}.instances[${i}].instance_ip`, 'instance IP')
      ?? claim(inst.instance_ip_v6, `${path}.instances[${i}].instance_ip_v6`, 'instance IP');
    if (e) return e;
  }
  return null;
}

/** One spelling per address, so "fdc0:30::2" and "fdc0:30:0::2" are seen as the same. */
function canonicalIp(ip: string): string {
  if (isIPv4(ip)) return ip;
  return new URL(`http://[${ip}]/`).hostname;
}

function coordinate(v: unknown, path: string): Coordinate {
  const o = obj(v, path);
  if (!Array.isArray(o.vec) || o.vec.length !== 2) throw new RouteMessageError(`${path}.vec`, 'must be [x, y]');
  return {
    vec: [num(o.vec[0], `${path}.vec[0]`, -1e6, 1e6), num(o.vec[1], `${path}.vec[1]`, -1e6, 1e6)],
    height: num(o.height, `${path}.height`, 0, 1e6),
    error: num(o.error, `${path}.error`, 0, 1.5),
  };
}

function rttMap(v: unknown, path: string): Record<string, number> {
  const o = obj(v, path);
  const keys = Object.keys(o);
  if (keys.length > 4096) throw new RouteMessageError(path, 'must have at most 4096 entries');
  const out: Record<string, number> = {};
  for (const k of keys) out[str(k, `${path} key`, 128)] = num(o[k], `${path}.${k}`, 0, 600_000);
  return out;
}

/** Validates one received message. Throws RouteMessageError (with the JSON path) when malformed. */
export function parseRouteMessage(v: unknown): RouteMessage {
  const o = obj(v, 'message');
  switch (o.type) {
    case 'table_query': {
      const q: TableQuery = { type: 'table_query', query_id: str(o.query_id, 'message.query_id', 64) };
      if (o.address !== undefined) {
        const a = str(o.address, 'message.address', 64);
        if (!isIPv4(a) && !isIPv6(a)) throw new RouteMessageError('message.address', 'must be an IPv4 or IPv6 address');
        q.address = isIPv6(a) ? a.toLowerCase() : a;
      }
      if (o.name !== undefined) q.name = fullName(o.name, 'message.name');
      if ((q.address === undefined) === (q.name === undefined)) {
        throw new RouteMessageError('message', 'needs exactly one of address and name');
      }
      return q;
    }
    case 'interest_add':
    case 'interest_remove':
      return { type: o.type, service_id: str(o.service_id, 'message.service_id', 128) };
    case 'coordinate_report':
      return {
        type: 'coordinate_report',
        worker_id: str(o.worker_id, 'message.worker_id', 128),
        coord: coordinate(o.coord, 'message.coord'),
        rtt_ms: o.rtt_ms === undefined ? {} : rttMap(o.rtt_ms, 'message.rtt_ms'),
      };
    case 'table_result':
      return {
        type: 'table_result',
        query_id: str(o.query_id, 'message.query_id', 64),
        route: o.route === null || o.route === undefined ? null : parseServiceRoute(o.route, 'message.route'),
      };
    case 'route_update':
      return { type: 'route_update', route: parseServiceRoute(o.route, 'message.route') };
    case 'route_withdraw': {
      const w: RouteWithdraw = { type: 'route_withdraw', service_id: str(o.service_id, 'message.service_id', 128) };
      if (o.instances !== undefined) w.instances = list(o.instances, 'message.instances', 4096, (x, p) => int(x, p, 0, 1_000_000));
      return w;
    }
    case 'coordinates':
      return {
        type: 'coordinates',
        entries: list(o.entries, 'message.entries', 4096, (x, p) => {
          const e = obj(x, p);
          return { worker_id: str(e.worker_id, `${p}.worker_id`, 128), coord: coordinate(e.coord, `${p}.coord`) };
        }),
      };
    case 'peers':
      return {
        type: 'peers',
        entries: list(o.entries, 'message.entries', 4096, (x, p) => {
          const e = obj(x, p);
          return {
            worker_id: str(e.worker_id, `${p}.worker_id`, 128),
            tunnel_id: int(e.tunnel_id, `${p}.tunnel_id`, 1, 0xffffffff),
            tunnel_endpoint: endpoint(e.tunnel_endpoint, `${p}.tunnel_endpoint`),
          };
        }),
      };
    default:
      throw new RouteMessageError('message.type', 'unknown message type');
  }
}

/** The messages a cluster may send to a worker; anything else (even if valid) is rejected. */
export function parseClusterToWorker(v: unknown): ClusterToWorker {
  const m = parseRouteMessage(v);
  switch (m.type) {
    case 'table_result': case 'route_update': case 'route_withdraw': case 'coordinates': case 'peers': return m;
    default: throw new RouteMessageError('message.type', `${m.type} is sent by workers, not to them`);
  }
}

/** The messages a worker may send to its cluster. */
export function parseWorkerToCluster(v: unknown): WorkerToCluster {
  const m = parseRouteMessage(v);
  switch (m.type) {
    case 'table_query': case 'interest_add': case 'interest_remove': case 'coordinate_report': return m;
    default: throw new RouteMessageError('message.type', `${m.type} is sent by the cluster, not by workers`);
  }
}

/** What carries the message set between one worker and its cluster (MQTT in production; in-memory in
 *  tests). Delivery may be asynchronous; send never throws on a closed or slow link. */
export interface RouteLink {
  send(msg: WorkerToCluster): void;
  /** Every valid message from the cluster. Returns an unsubscribe function. */
  onMessage(listener: (msg: ClusterToWorker) => void): () => void;
}
