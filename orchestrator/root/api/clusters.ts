// Clusters as users see them: name, location, liveness, last aggregate. Tokens never leave root.
import type { FastifyInstance } from 'fastify';
import type { ClusterRecord } from '../store.ts';
import type { OverlayTunnel } from '../../protocol/root-cluster.ts';
import { caller, type ApiContext } from './context.ts';
import { ApiError } from '../errors.ts';
import { ClusterCallError, revokeWorkerAt } from '../cluster-client.ts';
import { API_V1 } from './paths.ts';
import type { OverlayKeyPushOutcome } from '../overlay-key-push.ts';

/** What a revocation's answer says about the rotated overlay key: its id and which clusters have it. */
function keyNews(overlay: OverlayTunnel, pushed: OverlayKeyPushOutcome | undefined, alsoTold?: string): { key_id: number; clusters_told: string[]; clusters_missed: OverlayKeyPushOutcome['missed'] } {
  const told = [...(alsoTold ? [alsoTold] : []), ...(pushed?.told ?? [])].sort();
  return { key_id: overlay.key_id, clusters_told: told, clusters_missed: pushed?.missed ?? [] };
}

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
  // `canopy cluster revoke`: its token stops working now and its name may not register again.
  app.post<{ Params: { id: string } }>(`${API_V1}/clusters/:id/revoke`, {
    schema: {
      tags: ['clusters'], summary: 'Revoke a cluster (admins only): its token is refused from now on, its name may not register again, its instances are re-placed on the other clusters', security: [{ bearer: [] }],
      params: { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } },
    },
  }, async (req) => {
    const who = await caller(ctx, req);
    if (who.role !== 'admin') throw new ApiError(403, 'only admins revoke clusters');
    const c = ctx.clusters.list().find((x) => x.id === req.params.id || x.name === req.params.id);
    if (!c) throw new ApiError(404, `no cluster ${req.params.id}`);
    const formerly = { ...c };
    await ctx.clusters.revoke(c.id);
    // Root will never hear from it again: what it ran is placed on the other clusters.
    const replaced = await ctx.instances.replaceFromRevoked(formerly, `cluster ${c.name} was revoked`);
    // Its workers hold the overlay key: a new one, pushed to the other clusters at once (the revoked
    // one is inactive now, so it is not among them).
    const overlay = await ctx.rotateOverlayTunnel?.();
    const pushed = overlay && ctx.pushOverlayKey ? await ctx.pushOverlayKey(overlay) : undefined;
    ctx.log.warn('cluster revoked', { cluster: c.name, cluster_id: c.id, by: who.username, instances_replaced: replaced, ...(overlay ? { overlay_key_id: overlay.key_id } : {}) });
    return { revoked: c.name, cluster_id: c.id, instances_replaced: replaced, ...(overlay ? { overlay_key: keyNews(overlay, pushed) } : {}) };
  });
  // `canopy worker revoke`: the worker's cluster cuts it off (credentials, session, peers, instances).
  app.post<{ Params: { worker: string }; Querystring: { cluster?: string } }>(`${API_V1}/workers/:worker/revoke`, {
    schema: {
      tags: ['clusters'], summary: "Revoke a worker (admins only): its credentials and session end, it may not register again, its instances are re-placed", security: [{ bearer: [] }],
      params: { type: 'object', required: ['worker'], properties: { worker: { type: 'string', maxLength: 63 } } },
      querystring: { type: 'object', properties: { cluster: { type: 'string', maxLength: 64 } } },
    },
  }, async (req) => {
    const who = await caller(ctx, req);
    if (who.role !== 'admin') throw new ApiError(403, 'only admins revoke workers');
    const all = ctx.clusters.list();
    const named = req.query.cluster;
    const candidates = named ? all.filter((c) => c.id === named || c.name === named) : all;
    if (named && candidates.length === 0) throw new ApiError(404, `no cluster ${named}`);
    if (candidates.length > 1) throw new ApiError(400, `worker names are unique per cluster only: name its cluster (cluster=${candidates.map((c) => c.name).join('|')})`);
    const c = candidates[0];
    if (!c) throw new ApiError(404, 'no cluster is registered');
    // The revoked worker holds the overlay key: a new one, stored first, goes to its cluster with the
    // revocation and to every other cluster at the same moment, so that no two clusters disagree on
    // it for longer than a round trip (their workers drop datagrams sealed with a retired key).
    let overlay: OverlayTunnel | undefined;
    if (ctx.rotateOverlayTunnel) {
      overlay = await ctx.rotateOverlayTunnel();
      ctx.log.warn('overlay key rotated', { key_id: overlay.key_id, reason: `worker ${req.params.worker} revoked` });
    }
    const pushing = overlay && ctx.pushOverlayKey ? ctx.pushOverlayKey(overlay, c.id) : undefined;
    try {
      if (!(await revokeWorkerAt(c, req.params.worker, overlay))) throw new ApiError(404, `cluster ${c.name} has no worker ${req.params.worker}`);
    } catch (e) {
      if (e instanceof ClusterCallError) throw new ApiError(502, `cluster ${c.name}: ${e.message}`);
      throw e;
    } finally {
      // Pushed whatever the revocation's outcome: the key was rotated already, and clusters must follow.
      await pushing;
    }
    ctx.log.warn('worker revoked', { worker: req.params.worker, cluster: c.name, by: who.username });
    return { revoked: req.params.worker, cluster: c.name, ...(overlay ? { overlay_key: keyNews(overlay, await pushing, c.name) } : {}) };
  });
}
