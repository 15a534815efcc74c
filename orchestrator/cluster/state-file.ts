// The cluster's durable state (root registration, workers' subnets, instances), one JSON file written
// atomically and coalesced: a burst of changes costs one write.
import { readFileSync, writeFileSync, renameSync, mkdirSync, existsSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Registration } from './root-client.ts';
import type { StoredInstance } from './placements.ts';
import type { OverlayTunnel } from '../protocol/root-cluster.ts';

export interface ClusterState {
  root: Registration | null;
  workers: Record<string, { registeredAt: number; subnet_v4: string | null; subnet_v6: string | null }>;
  instances: StoredInstance[];
  /** Root's overlay key, kept so workers get it even when root is unreachable at the next start. */
  overlay_tunnel?: OverlayTunnel | null;
}

export function emptyState(): ClusterState {
  return { root: null, workers: {}, instances: [] };
}

export function loadState(file: string): ClusterState {
  if (!existsSync(file)) return emptyState();
  const s = JSON.parse(readFileSync(file, 'utf8')) as Partial<ClusterState>;
  return { root: s.root ?? null, workers: s.workers ?? {}, instances: s.instances ?? [], overlay_tunnel: s.overlay_tunnel ?? null };
}

export class StateWriter {
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly file: string, private readonly snapshot: () => ClusterState, private readonly delayMs = 100) {}

  schedule(): void {
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, this.delayMs);
  }

  flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    mkdirSync(dirname(this.file), { recursive: true });
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, JSON.stringify(this.snapshot()), { mode: 0o600 });
    renameSync(tmp, this.file);
  }
}
