// Simulated clusters for root's HA test and the root-ha bench: small fastify servers on loopback that
// speak the cluster side of docs/protocols.md over real HTTP (placements, removals, route and peer
// pushes), and register and report through the cluster's own root client, so they fail over between
// root replicas as a real cluster does. Each placement is written down, so a test can tell an
// instance placed twice (on two clusters) from one offered twice to the same cluster (idempotent).
import Fastify, { type FastifyInstance } from 'fastify';
import { RootClient } from '../orchestrator/cluster/root-client.ts';
import type { PlacementOffer } from '../orchestrator/protocol/root-cluster.ts';

export interface SimClusterOptions {
  /** Root URLs, comma-separated (replicas). */
  root: string;
  joinKey: string;
  name: string;
  location?: string;
  /** Standing free capacity reported (default: plenty). */
  free?: { vcpus: number; memory_mb: number; gpus: number };
  reportIntervalMs?: number;
}

export class SimCluster {
  /** instance key (service_id/n) → how many offers it got. */
  readonly offers = new Map<string, number>();
  readonly removals: string[] = [];
  readonly client: RootClient;
  url = '';
  private timer: NodeJS.Timeout | undefined;

  private constructor(readonly o: SimClusterOptions, private readonly app: FastifyInstance) {
    this.client = new RootClient(o.root, o.joinKey);
  }

  static async start(o: SimClusterOptions): Promise<SimCluster> {
    const app = Fastify({ bodyLimit: 1 << 22 });
    const c = new SimCluster(o, app);
    app.post<{ Body: PlacementOffer }>('/api/placements', async (req) => {
      const key = `${req.body.service.service_id}/${req.body.instance_n}`;
      c.offers.set(key, (c.offers.get(key) ?? 0) + 1);
      return { accepted: true, worker_id: `${o.name}-w1` };
    });
    app.delete<{ Params: { sid: string; n: string } }>('/api/placements/:sid/:n', async (req) => {
      c.removals.push(`${req.params.sid}/${req.params.n}`);
      return { ok: true };
    });
    app.post('/api/routes', async () => ({ ok: true }));
    app.post('/api/peers', async () => ({ peers: 0 }));
    await app.listen({ host: '127.0.0.1', port: 0 });
    c.url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    await c.client.register(o.name, o.location ?? '', c.url);
    await c.report();
    c.timer = setInterval(() => void c.report().catch(() => undefined), o.reportIntervalMs ?? 1000);
    return c;
  }

  report(): Promise<unknown> {
    return this.client.report({
      free: this.o.free ?? { vcpus: 1e6, memory_mb: 1e9, gpus: 0 },
      workers_active: 1, virtualizations: ['process', 'container'], architectures: ['amd64'],
      max_worker: { vcpus: 1e6, memory_mb: 1e9 }, instances: [],
    });
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.app.close();
  }
}

/** Instances offered to more than one of `clusters`: placed twice. */
export function placedTwice(clusters: readonly SimCluster[]): string[] {
  const seen = new Map<string, number>();
  for (const c of clusters) for (const k of c.offers.keys()) seen.set(k, (seen.get(k) ?? 0) + 1);
  return [...seen].filter(([, n]) => n > 1).map(([k]) => k);
}
