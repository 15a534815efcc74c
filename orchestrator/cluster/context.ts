// What the cluster's managers share: the instance index, the worker registry, the counters, and the
// cluster's few outward actions (publish on the broker, save state soon). Each manager takes this
// and the other managers it calls, so none reaches into another's tables.
import type { Logger } from '../protocol/log.ts';
import type { InstanceIndex } from './instance-index.ts';
import type { WorkerRegistry } from './worker-registry.ts';

export function newCounters() {
  return {
    heartbeats: 0, dropped: 0, placements: 0, declined: 0, replaced: 0, deaths: 0, queries: 0, reports_ok: 0, reports_failed: 0,
    reports_early: 0, peer_pushes: 0, peer_lists_stale: 0, tunnel_key_rotations: 0, overlay_keys_stale: 0, overlay_key_pushes: 0,
  };
}

export type ClusterCounters = ReturnType<typeof newCounters>;

export interface ClusterContext {
  readonly name: string;
  readonly log: Logger;
  readonly index: InstanceIndex;
  readonly registry: WorkerRegistry;
  readonly counters: ClusterCounters;
  /** Publishes on the cluster's broker (dropped while it has none). */
  publish(topic: string, payload: string, retain?: boolean): void;
  /** Root's id for this cluster (null until registered). */
  clusterId(): string | null;
  /** The cluster's state changed: write cluster.json soon. */
  saveSoon(): void;
}
