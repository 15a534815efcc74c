// Routes across clusters: root answers a cluster's route query for an address it does not know (and
// remembers that the cluster asked), and pushes the service's route to every cluster that asked
// whenever its running instances change.
import type { Logger } from '../protocol/log.ts';
import type { RouteInfo } from '../protocol/root-cluster.ts';
import { tunnelIdForSubnet } from '../protocol/tunnel-identity.ts';
import { parseIp } from '../descriptor/ip.ts';
import { serviceFullName } from '../names.ts';
import type { ClusterLink } from './cluster-client.ts';
import type { ClusterRegistry } from './clusters.ts';
import type { RootStore, ServiceRecord } from './store.ts';

/** A worker's tunnel sender id, from the subnet root gave it (undefined if it has none). */
export async function workerTunnelId(store: RootStore, clusterId: string | null, workerId: string | null): Promise<number | undefined> {
  const subnet = clusterId && workerId ? await store.subnet(clusterId, workerId) : undefined;
  if (!subnet) return undefined;
  try {
    return tunnelIdForSubnet(subnet.subnet_v4);
  } catch {
    return undefined;
  }
}

/** A service's application name and namespace ('' when the application is gone). */
export async function appNameOf(store: RootStore, s: ServiceRecord): Promise<[string, string]> {
  const a = await store.application(s.app_id);
  return [a?.name ?? '', a?.namespace ?? ''];
}

export class RouteService {
  /** service id → clusters that asked for its route (and get pushes when it changes). */
  private readonly interest = new Map<string, Set<string>>();

  constructor(
    private readonly store: RootStore,
    private readonly clusters: ClusterRegistry,
    private readonly link: ClusterLink,
    private readonly log: Logger,
  ) {}

  /** Route answer for a service or instance address; records the asking cluster's interest. */
  async route(address: string, askingCluster: string | null): Promise<RouteInfo | undefined> {
    const ip = parseIp(address);
    const owner = ip && (await this.store.addressOwner(ip.text));
    if (!owner) return undefined;
    if (askingCluster) {
      const set = this.interest.get(owner.service_id) ?? new Set<string>();
      set.add(askingCluster);
      this.interest.set(owner.service_id, set);
    }
    return this.routeInfo(owner.service_id);
  }

  async routeInfo(serviceId: string): Promise<RouteInfo | undefined> {
    const s = await this.store.service(serviceId);
    if (!s) return undefined;
    const [app, appns] = await appNameOf(this.store, s);
    const running = (await this.store.listInstances(s.id)).filter((i) => i.state === 'RUNNING' && i.ns_ip && i.worker_id && i.tunnel_endpoint);
    const tunnelIds = await Promise.all(running.map((i) => workerTunnelId(this.store, i.cluster_id, i.worker_id)));
    return {
      service_id: s.id,
      name: serviceFullName(app, appns, s.name, s.namespace),
      rr_ip: s.rr_ip, rr_ip_v6: s.rr_ip_v6, closest_ip: s.closest_ip, closest_ip_v6: s.closest_ip_v6,
      // Only instances a worker can reach: a route entry without its namespace address, worker or
      // tunnel endpoint (not reported yet) would make the cluster reject the whole route.
      instances: running.map((i, k) => {
        const tunnelId = tunnelIds[k];
        return {
          n: i.n, instance_ip: i.instance_ip, instance_ip_v6: i.instance_ip_v6, ns_ip: i.ns_ip, ns_ip_v6: i.ns_ip_v6,
          worker_id: i.worker_id, cluster_id: i.cluster_id, tunnel_endpoint: i.tunnel_endpoint,
          ...(tunnelId === undefined ? {} : { tunnel_id: tunnelId }),
        };
      }),
    };
  }

  /** Pushes a service's route to the clusters that asked about it (except the one that reported). */
  async pushIfInterested(serviceId: string, except?: string): Promise<void> {
    const set = this.interest.get(serviceId);
    if (!set || set.size === 0) return;
    const route = (await this.routeInfo(serviceId)) ?? {
      service_id: serviceId, name: '', rr_ip: '', rr_ip_v6: '', closest_ip: '', closest_ip_v6: '', instances: [],
    };
    for (const id of set) {
      const c = id === except ? undefined : this.clusters.get(id);
      if (!c || !this.clusters.isActive(c)) continue;
      this.link.pushRoute(c, route).catch((err: unknown) =>
        this.log.warn('route push failed', { cluster: c.name, service_id: serviceId, error: String(err) }));
    }
  }

  /** Forgets a deleted service's interest after telling interested clusters that it is gone. */
  async forget(serviceId: string): Promise<void> {
    await this.pushIfInterested(serviceId);
    this.interest.delete(serviceId);
  }
}
