// Clusters as users see them: name, location, liveness, last aggregate. Tokens never leave root.
import type { FastifyInstance } from 'fastify';
import type { ClusterRecord } from '../store.ts';
import { caller, type ApiContext } from './context.ts';
import { API_V1 } from './paths.ts';

export function clusterRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const view = (c: ClusterRecord) => ({
    cluster_id: c.id,
    name: c.name,
    location: c.location,
    api_url: c.api_url,
    active: ctx.clusters.isActive(c),
    status: !ctx.clusters.isActive(c) ? `inactive: no report for ${Math.round((Date.now() - c.last_seen) / 1000)} s`
      : c.aggregate === null ? 'registered, no report yet' : 'active',
    registered_at: new Date(c.registered_at).toISOString(),
    last_seen: c.last_seen ? new Date(c.last_seen).toISOString() : null,
    aggregate: c.aggregate,
  });
  const schema = (summary: string) => ({ schema: { tags: ['clusters'], summary, security: [{ bearer: [] }] } });
  app.get(`${API_V1}/clusters`, schema('All registered clusters'), async (req) => {
    await caller(ctx, req);
    return ctx.clusters.list().map(view);
  });
  app.get(`${API_V1}/clusters/active`, schema('Clusters that reported within 15 s'), async (req) => {
    await caller(ctx, req);
    return ctx.clusters.list().filter((c) => ctx.clusters.isActive(c)).map(view);
  });
}
