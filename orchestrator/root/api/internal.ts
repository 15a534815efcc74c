// Cluster-facing routes (docs/protocols.md, "Root ↔ cluster"). Unlike Oakestra's, all authenticated:
// registration with the root's join key, everything else with the cluster's own token.
import type { FastifyInstance } from 'fastify';
import { ApiError } from '../errors.ts';
import { parseReportedInstance, type ReportedInstance } from '../../protocol/root-cluster.ts';
import { MAX_REPORTED_WORKERS, parseNetworkSummary, parseWorkerNetViews, type NetworkSummary, type WorkerNetView } from '../../protocol/network.ts';

/** The report's network summary and worker list, as far as they are well-formed (older clusters send neither). */
function networkOf(b: { network?: unknown; workers?: unknown }): { network?: NetworkSummary; workers?: WorkerNetView[] } {
  const network = parseNetworkSummary(b.network);
  return { ...(network && { network }), ...(b.workers !== undefined && { workers: parseWorkerNetViews(b.workers) }) };
}
import { bearer, clusterCaller, type ApiContext } from './context.ts';

interface Id { Params: { id: string } }

const CLUSTER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const nonNegative = { type: 'number', minimum: 0 } as const;
const stringList = { type: 'array', maxItems: 32, items: { type: 'string', maxLength: 32 } } as const;
const clusterId = { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } } as const;

export function internalRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const tags = ['internal (clusters)'];

  app.post<{ Body: { name: string; location: string; api_url: string } }>('/api/internal/clusters/register', {
    schema: {
      tags, summary: 'Register a cluster with the join key; returns its id and token (re-registering rotates the token)',
      body: {
        type: 'object', required: ['name', 'api_url'],
        properties: { name: { type: 'string', maxLength: 63 }, location: { type: 'string', maxLength: 128 }, api_url: { type: 'string', maxLength: 512 } },
      },
    },
  }, async (req, reply) => {
    if (!ctx.checkJoinKey(bearer(req))) throw new ApiError(401, 'missing or wrong cluster join key');
    const { name, api_url } = req.body;
    const errors = [];
    if (!CLUSTER_NAME.test(name)) errors.push({ path: '/name', message: 'must be 1-63 of letters, digits, . _ -' });
    let url: URL | null = null;
    try {
      url = new URL(api_url);
    } catch {
      /* reported below */
    }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) errors.push({ path: '/api_url', message: 'must be an http(s) URL' });
    if (errors.length) throw new ApiError(422, 'invalid registration', errors);
    if (await ctx.clusters.isRevoked(name)) throw new ApiError(403, `cluster ${name} was revoked`);
    const { record, rotated } = await ctx.clusters.register(name, req.body.location ?? '', api_url);
    ctx.log.info(rotated ? 'cluster re-registered' : 'cluster registered', { cluster: name, cluster_id: record.id, api_url });
    return reply.code(rotated ? 200 : 201).send({ cluster_id: record.id, token: record.token, overlay_tunnel: ctx.overlayTunnel });
  });

  app.post<Id & { Body: { free: { vcpus: number; memory_mb: number; gpus?: number }; workers_active: number; virtualizations?: string[]; architectures?: string[]; max_worker?: { vcpus: number; memory_mb: number }; network?: unknown; workers?: unknown; instances?: unknown[] } }>(
    '/api/internal/clusters/:id/report', {
      schema: {
        tags, summary: 'Aggregate report (every 5 s, and soon after a change): free capacity and instance state changes', params: clusterId,
        body: {
          type: 'object', required: ['free', 'workers_active'],
          properties: {
            free: { type: 'object', required: ['vcpus', 'memory_mb'], properties: { vcpus: nonNegative, memory_mb: nonNegative, gpus: nonNegative } },
            workers_active: { type: 'integer', minimum: 0 },
            virtualizations: stringList,
            architectures: stringList,
            max_worker: { type: 'object', required: ['vcpus', 'memory_mb'], properties: { vcpus: nonNegative, memory_mb: nonNegative } },
            network: { type: 'object' },
            workers: { type: 'array', maxItems: MAX_REPORTED_WORKERS },
            instances: { type: 'array', maxItems: 100000 },
          },
        },
      },
    }, async (req) => {
      const c = await clusterCaller(ctx, req);
      const b = req.body;
      await ctx.clusters.report(c.id, {
        free: { vcpus: b.free.vcpus, memory_mb: b.free.memory_mb, gpus: b.free.gpus ?? 0 },
        workers_active: b.workers_active,
        virtualizations: b.virtualizations ?? [],
        architectures: b.architectures ?? [],
        ...(b.max_worker && { max_worker: { vcpus: b.max_worker.vcpus, memory_mb: b.max_worker.memory_mb } }),
        ...networkOf(b),
      });
      const entries = (b.instances ?? []).map(parseReportedInstance);
      const valid = entries.filter((e): e is ReportedInstance => e !== null);
      const { undeploy, ignored } = await ctx.instances.applyReport(c, valid);
      return {
        ok: true, undeploy, ignored: ignored + entries.length - valid.length,
        overlay_tunnel: ctx.overlayTunnel, peers: await ctx.instances.peers.forCluster(c.id), peers_version: await ctx.instances.peers.version(),
      };
    });

  app.post<Id & { Body: { worker_id: string } }>('/api/internal/clusters/:id/subnets', {
    schema: {
      tags, summary: "A worker's subnets (the same again for a known worker)", params: clusterId,
      body: { type: 'object', required: ['worker_id'], properties: { worker_id: { type: 'string', minLength: 1, maxLength: 128 } } },
    },
  }, async (req) => {
    const c = await clusterCaller(ctx, req);
    const subnets = await ctx.addresses.workerSubnet(c.id, req.body.worker_id);
    ctx.instances.peers.invalidate();
    return subnets;
  });

  app.delete<{ Params: { id: string; worker_id: string } }>('/api/internal/clusters/:id/subnets/:worker_id', {
    schema: { tags, summary: "Release a worker's subnets" },
  }, async (req) => {
    const c = await clusterCaller(ctx, req);
    if (!(await ctx.addresses.releaseWorkerSubnet(c.id, req.params.worker_id))) throw new ApiError(404, `worker ${req.params.worker_id} has no subnet`);
    ctx.instances.peers.invalidate();
    return { ok: true };
  });

  app.get<{ Params: { id: string; address: string } }>('/api/internal/clusters/:id/routes/:address', {
    schema: { tags, summary: 'Route query for a service or instance address' },
  }, async (req) => {
    const c = await clusterCaller(ctx, req);
    const route = await ctx.instances.routes.route(req.params.address, c.id);
    if (!route) throw new ApiError(404, `no service owns ${req.params.address}`);
    return route;
  });
}
