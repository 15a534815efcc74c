// Who may read /metrics and /api/health on root, a cluster and a worker (SPEC §10: "/metrics and a
// bare health check may stay open where configured"). By default both stay open, as Prometheus and
// load balancers expect: /metrics carries counters only, and health is a bare `{ok:true}`. An
// operator whose underlay is shared closes them: with a metrics token, /metrics answers only
// `Authorization: Bearer <token>` (Prometheus' `authorization` scrape setting sends it); with
// health closed too, so does /api/health.
import { timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';

export const METRICS_TOKEN_ENV = 'CANOPY_METRICS_TOKEN';
export const CLOSE_HEALTH_ENV = 'CANOPY_CLOSE_HEALTH';

export interface MetricsAccess {
  /** Required as a bearer token on /metrics (and on /api/health when `closeHealth`); unset: open. */
  token?: string;
  /** /api/health answers only the token too (needs `token`). */
  closeHealth?: boolean;
}

/** The access from the command line and the environment (an empty variable means unset); throws on a bad combination. */
export function metricsAccessFrom(o: { metricsToken?: string; closeHealth?: boolean }, env: NodeJS.ProcessEnv = process.env): MetricsAccess {
  const token = o.metricsToken || env[METRICS_TOKEN_ENV] || undefined;
  const closeHealth = o.closeHealth === true || env[CLOSE_HEALTH_ENV] === '1' || env[CLOSE_HEALTH_ENV] === 'true';
  if (token !== undefined && token.length < 16) throw new Error(`--metrics-token (${METRICS_TOKEN_ENV}) must be at least 16 characters`);
  if (closeHealth && token === undefined) throw new Error(`--close-health needs --metrics-token (${METRICS_TOKEN_ENV}): the token is what a health check then sends`);
  return { token, ...(closeHealth ? { closeHealth } : {}) };
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Why a request for `path` is refused (401), or undefined when it may go on: only /metrics and
 * /api/health are judged here, and only when closed; every other route keeps its own checks.
 */
export function metricsRefusal(access: MetricsAccess | undefined, path: string | undefined, authorization: string | undefined): string | undefined {
  const token = access?.token;
  if (token === undefined) return undefined;
  const closed = path === '/metrics' || (path === '/api/health' && access?.closeHealth === true);
  if (!closed) return undefined;
  const h = authorization ?? '';
  if (h.startsWith('Bearer ') && same(h.slice(7).trim(), token)) return undefined;
  return `${path} is closed on this daemon: send Authorization: Bearer <the metrics token> (--metrics-token, ${METRICS_TOKEN_ENV})`;
}

/** metricsRefusal as a Fastify onRequest hook (root and the cluster). */
export function metricsGate(access: MetricsAccess | undefined) {
  return async (req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    const refused = metricsRefusal(access, req.routeOptions.url, req.headers.authorization);
    return refused === undefined ? undefined : reply.code(401).header('www-authenticate', 'Bearer').send({ error: refused });
  };
}
