// The instances a cluster holds, as root offered them, and the service routes built from them.
import { isIPv4, isIPv6 } from 'node:net';
import { Lifecycle, type Transition, type InstanceState } from '../protocol/instance-states.ts';
import type { DeployOrder, InstanceSpec } from '../mqtt/messages.ts';
import type { ServiceRoute, PortSpec, InstanceRoute } from '../../proxy/route-messages.ts';
import type { PlacementNeed } from './scheduler.ts';
import type { Connectivity, PlacementOffer } from '../protocol/root-cluster.ts';

export interface ClusterInstance {
  offer: PlacementOffer;
  worker: string | null;
  lifecycle: Lifecycle;
  ns_ip: string | null;
  ns_ip_v6: string | null;
  /** Progress within the current state, newer than the last transition's reason (not stored). */
  note?: string;
  /** Why its worker reports it overloaded (SPEC §5.3), while it does; routes then mark it unhealthy
   *  so that `closest` sends new flows elsewhere (not stored: the next heartbeat says it again). */
  overloaded?: string;
}

export interface StoredInstance {
  offer: PlacementOffer;
  worker: string | null;
  history: Transition[];
  ns_ip: string | null;
  ns_ip_v6: string | null;
}

export function instanceId(serviceId: string, n: number): string {
  return `${serviceId}#${n}`;
}

export function needOf(offer: PlacementOffer): PlacementNeed {
  const m = offer.service.microservice;
  return {
    service_id: offer.service.service_id,
    virtualization: m.virtualization ?? 'container',
    vcpus: Math.max(0, Number(m.vcpus ?? 0) || 0),
    memory_mb: Math.max(0, Number(m.memory ?? 0) || 0),
    constraints: Array.isArray(m.constraints) ? m.constraints : [],
    connectivity: connectivityOf(m.connectivity),
  };
}

/**
 * The well-formed entries of an offer's `connectivity[]`. Root validated the descriptor, so anything
 * else came from an older or foreign sender: it is left out rather than failing the placement.
 */
function connectivityOf(v: unknown): Connectivity[] {
  if (!Array.isArray(v)) return [];
  const out: Connectivity[] = [];
  for (const e of v as unknown[]) {
    if (typeof e !== 'object' || e === null) continue;
    const { target_microservice_id: target, con_constraints: cons } = e as Record<string, unknown>;
    if (typeof target !== 'string' || target.length === 0 || !Array.isArray(cons)) continue;
    const kept = (cons as unknown[]).filter((k): k is { type: string; threshold: number } => typeof k === 'object' && k !== null
      && typeof (k as Record<string, unknown>).type === 'string' && Number.isFinite((k as Record<string, unknown>).threshold));
    if (kept.length > 0) out.push({ target_microservice_id: target, con_constraints: kept.map((k) => ({ type: k.type, threshold: k.threshold })) });
  }
  return out;
}

export function specOf(offer: PlacementOffer): InstanceSpec {
  const m = offer.service.microservice;
  const spec: InstanceSpec = {
    virtualization: m.virtualization ?? 'container',
    cmd: m.cmd ?? [],
    memory: Math.max(0, Number(m.memory ?? 0) || 0),
    vcpus: Math.max(0, Number(m.vcpus ?? 0) || 0),
  };
  if (m.args) spec.args = m.args;
  if (m.environment) spec.environment = m.environment;
  if (m.code) spec.code = m.code;
  if (m.one_shot !== undefined) spec.one_shot = m.one_shot;
  if (m.port) spec.port = m.port;
  return spec;
}

export function deployOrder(offer: PlacementOffer): DeployOrder {
  const s = offer.service;
  const o: DeployOrder = {
    service_id: s.service_id,
    instance_n: offer.instance_n,
    name: { app: s.app, appns: s.appns, svc: s.svc, svcns: s.svcns },
    spec: specOf(offer),
  };
  if (offer.instance_ip) o.instance_ip = offer.instance_ip;
  if (offer.instance_ip_v6) o.instance_ip_v6 = offer.instance_ip_v6;
  return o;
}

/** Container ports of a descriptor `port` field ("host:container[/proto];…" or "container"). */
export function parsePorts(port: string | undefined): PortSpec[] {
  if (!port) return [];
  const out: PortSpec[] = [];
  for (const item of port.split(';')) {
    const [mapping, protoRaw] = item.trim().split('/');
    if (!mapping) continue;
    const parts = mapping.split(':');
    const p = Number(parts[parts.length - 1]);
    const proto = protoRaw === 'udp' ? 'udp' : 'tcp';
    if (Number.isInteger(p) && p >= 1 && p <= 65535 && !out.some((x) => x.port === p && x.proto === proto)) out.push({ port: p, proto });
  }
  return out;
}

const ip4 = (s: string | null | undefined): string | null => (s && isIPv4(s) ? s : null);
const ip6 = (s: string | null | undefined): string | null => (s && isIPv6(s) ? s.toLowerCase() : null);

/**
 * The route of one service as this cluster sees it. Only RUNNING instances whose worker has a tunnel
 * endpoint and that have a namespace address are reachable, so only those are listed; an overloaded
 * one is listed as unhealthy.
 */
export function buildRoute(
  instances: readonly ClusterInstance[],
  endpointOf: (workerId: string) => string | undefined,
  clusterId: string | null,
  tunnelIdOf?: (workerId: string) => number | undefined,
): ServiceRoute | undefined {
  const first = instances[0];
  if (!first) return undefined;
  const s = first.offer.service;
  const routes: InstanceRoute[] = [];
  for (const i of instances) {
    if (i.lifecycle.state !== 'RUNNING' || !i.worker) continue;
    const ep = endpointOf(i.worker);
    const instanceIp = ip4(i.offer.instance_ip);
    const nsIp = ip4(i.ns_ip);
    if (!ep || !instanceIp || !nsIp) continue;
    const tunnelId = tunnelIdOf?.(i.worker);
    routes.push({
      ...(tunnelId === undefined ? {} : { tunnel_id: tunnelId }),
      n: i.offer.instance_n,
      instance_ip: instanceIp,
      instance_ip_v6: ip6(i.offer.instance_ip_v6),
      ns_ip: nsIp,
      ns_ip_v6: ip6(i.ns_ip_v6),
      worker_id: i.worker,
      cluster_id: clusterId,
      tunnel_endpoint: ep,
      // Overloaded: still listed (flows already on it stay, and a service whose instances are all
      // overloaded still answers), but policies prefer the others for new flows.
      healthy: i.overloaded === undefined,
    });
  }
  routes.sort((a, b) => a.n - b.n);
  return {
    service_id: s.service_id,
    name: `${s.app}.${s.appns}.${s.svc}.${s.svcns}`.toLowerCase(),
    rr_ip: ip4(s.rr_ip),
    rr_ip_v6: ip6(s.rr_ip_v6),
    closest_ip: ip4(s.closest_ip),
    closest_ip_v6: ip6(s.closest_ip_v6),
    default_policy: 'rr',
    ports: parsePorts(s.microservice.port),
    instances: routes,
  };
}

export function newInstance(offer: PlacementOffer, state: InstanceState, reason: string): ClusterInstance {
  return { offer, worker: null, lifecycle: new Lifecycle(state, reason), ns_ip: null, ns_ip_v6: null };
}

export function storeInstance(i: ClusterInstance): StoredInstance {
  return { offer: i.offer, worker: i.worker, history: [...i.lifecycle.history], ns_ip: i.ns_ip, ns_ip_v6: i.ns_ip_v6 };
}

export function loadInstance(s: StoredInstance): ClusterInstance {
  const first = s.history[0]!;
  const l = new Lifecycle(first.state, first.reason, 50, first.ts);
  for (const t of s.history.slice(1)) l.tryTo(t.state, t.reason, t.ts);
  return { offer: s.offer, worker: s.worker, lifecycle: l, ns_ip: s.ns_ip, ns_ip_v6: s.ns_ip_v6 };
}
