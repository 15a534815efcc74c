// An instance as root's API shows it (GET …/instances, the CLI's status): the record, its cluster's
// name, its retry schedule while unplaced, and its history, with times as ISO strings.
import type { InstanceState } from '../protocol/instance-states.ts';
import type { InstanceEvent, InstanceRecord, RootStore } from './store.ts';

export interface InstanceView {
  instance_n: number;
  state: InstanceState;
  reason: string;
  cluster_id: string | null;
  cluster_name: string | null;
  worker_id: string | null;
  instance_ip: string;
  instance_ip_v6: string;
  ns_ip: string | null;
  ns_ip_v6: string | null;
  created_at: string;
  updated_at: string;
  /**
   * While unplaced: scheduling runs since it was first left unplaced (kept across root restarts), the
   * last one, and when root retries it at the latest (sooner if room appears). A run that ends in
   * the same state adds no history entry; it only updates `reason`.
   */
  retries: number;
  last_retry: string | null;
  next_retry: string | null;
  history: { state: InstanceState; reason: string; ts: string }[];
  /**
   * False when no cluster could ever run it as the clusters are now (see placeable.ts): waiting for
   * room is pointless. `unplaceable_reason` then says why.
   */
  placeable: boolean;
  unplaceable_reason?: string;
}

/** Where the view's other parts come from. */
export interface ViewSources {
  store: RootStore;
  /** The history, when the caller has it (a fresh instance): not read again. */
  history?: InstanceEvent[];
  clusterName(id: string): string | undefined;
  /** The retry schedule of an unplaced instance (undefined when it has none). */
  retry(i: InstanceRecord): { retries: number; last_retry?: number | null; next_retry?: number | null } | undefined;
  /** Whether some cluster could ever run it (placeable.ts). */
  placeability(i: InstanceRecord): Promise<{ placeable: boolean; unplaceable_reason?: string }>;
}

export async function instanceView(i: InstanceRecord, from: ViewSources): Promise<InstanceView> {
  const r = from.retry(i);
  const [events, placeable] = await Promise.all([from.history ?? from.store.instanceEvents(i.service_id, i.n), from.placeability(i)]);
  const iso = (t: number | null | undefined): string | null => (typeof t === 'number' ? new Date(t).toISOString() : null);
  return {
    instance_n: i.n,
    state: i.state,
    reason: i.reason,
    cluster_id: i.cluster_id,
    cluster_name: i.cluster_id ? (from.clusterName(i.cluster_id) ?? null) : null,
    worker_id: i.worker_id,
    instance_ip: i.instance_ip,
    instance_ip_v6: i.instance_ip_v6,
    ns_ip: i.ns_ip,
    ns_ip_v6: i.ns_ip_v6,
    created_at: new Date(i.created_at).toISOString(),
    updated_at: new Date(i.updated_at).toISOString(),
    retries: r?.retries ?? 0,
    last_retry: iso(r?.last_retry),
    next_retry: iso(r?.next_retry),
    history: events.map((e) => ({ ...e, ts: new Date(e.ts).toISOString() })),
    ...placeable,
  };
}
