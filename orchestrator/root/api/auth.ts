// Login and user management.
import type { FastifyInstance } from 'fastify';
import { ApiError } from '../errors.ts';
import { MIN_PASSWORD, USERNAME } from '../users.ts';
import { caller, created, throttledLogin, type ApiContext } from './context.ts';
import { API_V1 } from './paths.ts';

/** Lifetime of an access token on Oakestra's surface (its clients keep one for a whole run). */
export const TOKEN_TTL_S = 12 * 3600;
/** Lifetime of an access token on /api/v1 (SPEC §10: short-lived; renewed with the refresh token). */
export const ACCESS_TTL_S = 15 * 60;
/** Lifetime of a refresh token (both surfaces). */
export const REFRESH_TTL_S = 7 * 24 * 3600;

/**
 * The expiry claim of a token that lives at least `ttlS` seconds: every token root signs, access and
 * refresh, on both API surfaces. JWT times are whole seconds and an `expiresIn` rounds the expiry
 * down, so a token could expire up to a second before `expires_in` said (a 1 s token within a
 * millisecond of being issued). Rounded up instead, it lives ttlS to ttlS + 1 s.
 */
export function expiresAtLeast(ttlS: number, nowMs = Date.now()): { exp: number } {
  return { exp: Math.ceil(nowMs / 1000) + ttlS };
}

export function authRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.post<{ Body: { username: string; password: string } }>(`${API_V1}/auth/login`, {
    schema: {
      tags: ['auth'],
      summary: 'Exchange a username and password for a JWT',
      body: {
        type: 'object', required: ['username', 'password'], additionalProperties: false,
        properties: { username: { type: 'string', maxLength: 64 }, password: { type: 'string', maxLength: 1024 } },
      },
    },
  }, async (req, reply) => {
    const u = await throttledLogin(ctx, req, reply, req.body.username.toLowerCase(), req.body.password);
    if (!u) throw new ApiError(401, 'wrong username or password');
    const ttl = ctx.accessTtlS ?? ACCESS_TTL_S;
    const token = app.jwt.sign({ sub: u.id, name: u.username, role: u.role, ...expiresAtLeast(ttl) });
    const refresh = app.jwt.sign({ sub: u.id, name: u.username, role: u.role, typ: 'refresh', ...expiresAtLeast(REFRESH_TTL_S) });
    return { token, username: u.username, role: u.role, expires_in: ttl, refresh_token: refresh, refresh_expires_in: REFRESH_TTL_S };
  });

  // A new access token for a refresh token (Authorization: Bearer <refresh_token>), while its user exists.
  app.post(`${API_V1}/auth/refresh`, {
    schema: { tags: ['auth'], summary: 'Exchange a refresh token (Authorization: Bearer) for a new access token', security: [{ bearer: [] }] },
  }, async (req) => {
    try {
      await req.jwtVerify();
    } catch {
      throw new ApiError(401, 'missing, invalid or expired refresh token: log in again');
    }
    if (req.user.typ !== 'refresh') throw new ApiError(401, 'not a refresh token');
    const u = await ctx.users.byId(req.user.sub);
    if (!u) throw new ApiError(401, 'the user of this token no longer exists');
    const ttl = ctx.accessTtlS ?? ACCESS_TTL_S;
    return { token: app.jwt.sign({ sub: u.id, name: u.username, role: u.role, ...expiresAtLeast(ttl) }), username: u.username, role: u.role, expires_in: ttl };
  });

  app.post<{ Body: { username: string; password: string; role?: 'admin' | 'user' } }>(`${API_V1}/users`, {
    schema: {
      tags: ['auth'],
      summary: 'Create a user (admins only)',
      security: [{ bearer: [] }],
      body: {
        type: 'object', required: ['username', 'password'], additionalProperties: false,
        properties: {
          username: { type: 'string', maxLength: 64 },
          password: { type: 'string', maxLength: 1024 },
          role: { type: 'string', enum: ['admin', 'user'] },
        },
      },
    },
  }, async (req, reply) => {
    const who = await caller(ctx, req);
    if (who.role !== 'admin') throw new ApiError(403, 'only admins create users');
    const username = req.body.username.toLowerCase();
    const errors = [];
    if (!USERNAME.test(username)) errors.push({ path: '/username', message: 'must be 1-64 of a-z 0-9 . _ - starting with a letter or digit' });
    if (req.body.password.length < MIN_PASSWORD) errors.push({ path: '/password', message: `must be at least ${MIN_PASSWORD} characters` });
    if (errors.length) throw new ApiError(422, 'invalid user', errors);
    if (await ctx.users.exists(username)) throw new ApiError(409, `user ${username} exists`, [{ path: '/username', message: 'is taken' }]);
    const u = await ctx.users.create(username, req.body.password, req.body.role ?? 'user');
    return created(reply, { id: u.id, username: u.username, role: u.role });
  });

  app.get(`${API_V1}/users`, { schema: { tags: ['auth'], summary: 'List users (admins only)', security: [{ bearer: [] }] } }, async (req) => {
    const who = await caller(ctx, req);
    if (who.role !== 'admin') throw new ApiError(403, 'only admins list users');
    return (await ctx.users.list()).map((u) => ({ id: u.id, username: u.username, role: u.role, created_at: new Date(u.created_at).toISOString() }));
  });
}
