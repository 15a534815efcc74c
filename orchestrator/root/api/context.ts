// What the route modules share: the domain objects, and the two ways a request proves who it is.
import type {} from '@fastify/jwt';
import type {} from '@fastify/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '../../protocol/log.ts';
import type { AddressAllocator } from '../addresses.ts';
import type { Caller, Catalog } from '../catalog.ts';
import type { ClusterRegistry } from '../clusters.ts';
import { ApiError } from '../errors.ts';
import type { InstanceManager } from '../instances.ts';
import type { Metrics } from '../metrics.ts';
import type { ClusterRecord, Role } from '../store.ts';
import type { Users } from '../users.ts';
import { API_V1 } from './paths.ts';
import type { OverlayTunnel } from '../../protocol/root-cluster.ts';
import type { LoginThrottle } from '../login-throttle.ts';
import type { OverlayKeyPushOutcome } from '../overlay-key-push.ts';
import type { UserRecord } from '../store.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** A request body schema for the OpenAPI document only; the handler validates the body itself. */
    docBody?: unknown;
  }
}

declare module '@fastify/jwt' {
  interface FastifyJWT {
    /** `typ: 'refresh'` marks a refresh token (Oakestra's /api/auth/refresh): never an access token. */
    payload: { sub: string; name: string; role: Role; typ?: 'refresh'; roles?: string[]; exp?: number };
    user: { sub: string; name: string; role: Role; typ?: 'refresh'; roles?: string[] };
  }
}

export interface ApiContext {
  catalog: Catalog;
  users: Users;
  clusters: ClusterRegistry;
  instances: InstanceManager;
  addresses: AddressAllocator;
  metrics: Metrics;
  log: Logger;
  /** Checks the join key a cluster registers with. */
  checkJoinKey(key: string): boolean;
  /** The overlay tunnel key root hands to every cluster (registration and report answers). */
  overlayTunnel: OverlayTunnel;
  /** Replaces the overlay key (stored) after a revocation; ctx.overlayTunnel is then the new one. */
  rotateOverlayTunnel?: () => Promise<OverlayTunnel>;
  /** Pushes the (rotated) overlay key to every active cluster but `except` at once (overlay-key-push.ts). */
  pushOverlayKey?: (overlay: OverlayTunnel, except?: string) => Promise<OverlayKeyPushOutcome>;
  /** Failed logins per user and address (both login routes). */
  loginThrottle: LoginThrottle;
  /** Lifetime of /api/v1 access tokens (default ACCESS_TTL_S; tests shorten it). */
  accessTtlS?: number;
}

/**
 * A login attempt through the throttle: 429 (with Retry-After) without checking the password when
 * this address, or this user from it, failed too often lately; otherwise the answer comes after the
 * throttle's delay. The user, or undefined for a wrong name or password.
 */
export async function throttledLogin(ctx: ApiContext, req: FastifyRequest, reply: FastifyReply, username: string, password: string): Promise<UserRecord | undefined> {
  const v = ctx.loginThrottle.check(username, req.ip);
  if (v.refuse) {
    ctx.log.warn('login throttled', { username, address: req.ip, retry_after_s: v.retryAfterS });
    void reply.header('retry-after', String(v.retryAfterS));
    throw new ApiError(429, `too many failed logins; try again in ${v.retryAfterS} s`);
  }
  if (v.delayMs > 0) await new Promise((r) => setTimeout(r, v.delayMs));
  const u = await ctx.users.login(username, password);
  if (u) ctx.loginThrottle.succeeded(username, req.ip);
  else ctx.loginThrottle.failed(username, req.ip);
  return u;
}

const callers = new WeakMap<FastifyRequest, Caller>();

/** Routes that need no user token: both logins, the API docs, health (metrics-access.ts may close it), and the cluster-facing routes (own auth). */
function isPublic(url: string): boolean {
  return !url.startsWith('/api/') || url === '/api/health' || url === `${API_V1}/auth/login` || url === '/api/auth/login' || url === '/api/auth/refresh'
    || url === `${API_V1}/auth/refresh` || url.startsWith('/api/docs') || url.startsWith('/api/internal/');
}

/**
 * onRequest hook: checks the JWT before the body is even parsed, so a request without a valid token
 * gets 401 whatever else is wrong with it. Unknown routes fall through to 404.
 */
export function authenticate(ctx: ApiContext) {
  return async (req: FastifyRequest): Promise<void> => {
    const url = req.routeOptions.url;
    // A CORS preflight carries no credentials by design; it is answered without touching any data.
    if (url === undefined || isPublic(url) || req.method === 'OPTIONS') return;
    try {
      await req.jwtVerify();
      if (req.user.typ === 'refresh') throw new Error('a refresh token');
    } catch {
      throw new ApiError(401, `missing or invalid token: log in at POST ${API_V1}/auth/login and send Authorization: Bearer <token>`);
    }
    const u = await ctx.users.byId(req.user.sub);
    if (!u) throw new ApiError(401, 'the user of this token no longer exists');
    callers.set(req, { id: u.id, username: u.username, role: u.role });
  };
}

/** The user the authenticate hook found for this request. */
export async function caller(_ctx: ApiContext, req: FastifyRequest): Promise<Caller> {
  const c = callers.get(req);
  if (!c) throw new ApiError(401, 'missing or invalid token');
  return c;
}

export function bearer(req: FastifyRequest): string {
  const h = req.headers.authorization ?? '';
  return h.startsWith('Bearer ') ? h.slice(7).trim() : '';
}

/** The cluster named in the path, if the request carries its token; 401 otherwise. */
export async function clusterCaller(ctx: ApiContext, req: FastifyRequest<{ Params: { id: string } }>): Promise<ClusterRecord> {
  const c = await ctx.clusters.authenticate(req.params.id, bearer(req));
  if (!c) throw new ApiError(401, 'missing or wrong cluster token for this cluster');
  return c;
}

export function created(reply: FastifyReply, body: unknown): FastifyReply {
  return reply.code(201).send(body);
}
