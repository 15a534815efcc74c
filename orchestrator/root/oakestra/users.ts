// The user routes Oakestra's dashboard reads after login: itself (for its id, which it then uses in
// GET /api/applications/:userid) and its roles. Oakestra names a user by its name in the token's
// `sub`; Canopy's tokens carry the user id there, so both routes take either. Only oneself.
import type { FastifyInstance } from 'fastify';
import { ApiError } from '../errors.ts';
import type { Role } from '../store.ts';
import { caller, type ApiContext } from '../api/context.ts';
import { oid } from './views.ts';

/** Oakestra's role names (oakestra/dashboard src/app/root/enums/roles.ts). */
export function oakRoles(role: Role): string[] {
  return role === 'admin' ? ['Admin'] : ['Application_Provider'];
}

export function oakestraUserRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const self = async (req: { params: { username: string } }, who: Awaited<ReturnType<typeof caller>>) => {
    const asked = req.params.username;
    if (asked !== who.id && asked.toLowerCase() !== who.username) throw new ApiError(404, `user ${asked} not found`);
    const u = await ctx.users.byId(who.id);
    if (!u) throw new ApiError(404, `user ${asked} not found`);
    return u;
  };
  const schema = (summary: string) => ({ schema: { tags: ['oakestra'], summary, security: [{ bearer: [] }] } });

  app.get<{ Params: { username: string } }>('/api/user/:username', schema('Oakestra: yourself, by name or id (JSON text)'), async (req, reply) => {
    const u = await self(req, await caller(ctx, req));
    const body = { _id: oid(u.id), name: u.username, email: '', created_at: new Date(u.created_at).toISOString(), roles: oakRoles(u.role) };
    return reply.type('application/json').send(JSON.stringify(body));
  });

  app.get<{ Params: { username: string } }>('/api/permission/:username', schema('Oakestra: your roles'), async (req) => {
    const u = await self(req, await caller(ctx, req));
    return { roles: oakRoles(u.role) };
  });
}
