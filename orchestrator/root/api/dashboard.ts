// What the browser dashboard needs beyond the REST API: its static files at `/`, the live change feed
// (GET /api/v1/events, server-sent events), an instance's logs followed through root and its cluster
// (the browser cannot reach workers: they sit in other networks, and the page loads nothing from outside root),
// and a cluster's own status (its workers). All but the static files need a user token, sent as the
// Authorization header: the page reads both streams with fetch(), so no token appears in a URL.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { extname, join } from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { unseen } from '../../protocol/instance-logs.ts';
import { ApiError } from '../errors.ts';
import type { RootEvent, RootEvents } from '../events.ts';
import { caller, type ApiContext } from './context.ts';
import { API_V1 } from './paths.ts';
import { clusterStatus } from '../cluster-client.ts';
import { readInstanceLogs } from './logs.ts';

/** Where scripts/build-dashboard.ts writes the bundle. */
export const DASHBOARD_DIST = join(import.meta.dirname, '../../../dashboard/dist');
const KEEPALIVE_MS = 15_000;
const LOG_POLL_MS = 1000;
const LOG_BYTES = 65536;

/** The browser itself refuses anything from outside root (edge sites are often offline). */
const CSP = "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.map': 'application/json',
};

export interface DashboardOptions {
  events: RootEvents;
  dist?: string;
}

/** Server-sent events on a hijacked reply; ends on client close or root's close. */
function openStream(req: FastifyRequest, reply: FastifyReply, streams: Set<() => void>): { send: (event: string, data: unknown) => void; onClose: (fn: () => void) => void } {
  reply.hijack();
  reply.raw.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  reply.raw.write(': canopy\n\n');
  const closers: (() => void)[] = [];
  const keepalive = setInterval(() => reply.raw.write(': keepalive\n\n'), KEEPALIVE_MS);
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    clearInterval(keepalive);
    streams.delete(close);
    for (const fn of closers) fn();
    reply.raw.end();
  };
  streams.add(close);
  req.raw.on('close', close);
  return {
    send: (event, data) => {
      if (!closed) reply.raw.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    },
    onClose: (fn) => closers.push(fn),
  };
}

export function dashboardRoutes(app: FastifyInstance, ctx: ApiContext, o: DashboardOptions): void {
  const dist = o.dist ?? DASHBOARD_DIST;
  const streams = new Set<() => void>();
  // Open streams would keep app.close() waiting for ever.
  app.addHook('onClose', async () => {
    for (const close of [...streams]) close();
  });

  // Static files: only names that exist in dist (read per request, so a rebuild needs no restart).
  const file = (name: string, reply: FastifyReply): FastifyReply => {
    const names = existsSync(dist) ? readdirSync(dist) : [];
    if (!names.includes(name)) {
      if (name === 'index.html') {
        return reply.code(503).type('text/plain; charset=utf-8').send('The dashboard is not built: run `npm run build:dashboard` (scripts/install-deps.sh does it).\n');
      }
      return reply.code(404).send({ error: `no file ${name}` });
    }
    if (name === 'index.html') void reply.header('content-security-policy', CSP);
    return reply
      .type(TYPES[extname(name)] ?? 'application/octet-stream')
      .header('cache-control', name === 'index.html' ? 'no-cache' : 'public, max-age=300')
      .header('x-content-type-options', 'nosniff')
      .send(readFileSync(join(dist, name)));
  };
  app.get('/', { schema: { hide: true } }, async (_req, reply) => file('index.html', reply));
  app.get<{ Params: { name: string } }>('/assets/:name', { schema: { hide: true } }, async (req, reply) => file(req.params.name, reply));

  app.get(`${API_V1}/events`, {
    schema: { tags: ['dashboard'], summary: 'Live changes (server-sent events): instance, catalog and cluster events', security: [{ bearer: [] }] },
  }, async (req, reply) => {
    const who = await caller(ctx, req);
    const stream = openStream(req, reply, streams);
    const listener = (e: RootEvent): void => {
      if (who.role !== 'admin' && e.type === 'instance' && e.owner !== who.id) return;
      if (who.role !== 'admin' && e.type === 'catalog' && e.owner !== null && e.owner !== who.id) return;
      const { owner: _owner, ...rest } = e as RootEvent & { owner?: string | null };
      stream.send(e.type, rest);
    };
    o.events.on('event', listener);
    stream.onClose(() => o.events.off('event', listener));
    stream.send('ready', { user: who.username, role: who.role });
  });

  app.get<{ Params: { sid: string; n: number } }>(`${API_V1}/dashboard/logs/:sid/:n`, {
    schema: {
      tags: ['dashboard'], summary: "Follow an instance's stdout and stderr (server-sent events), relayed from its worker", security: [{ bearer: [] }],
      params: { type: 'object', required: ['sid', 'n'], properties: { sid: { type: 'string', maxLength: 64 }, n: { type: 'integer', minimum: 0, maximum: 1e9 } } },
    },
  }, async (req, reply) => {
    const who = await caller(ctx, req);
    const { sid, n } = req.params;
    const service = await ctx.catalog.getService(who, sid); // 403/404 before the stream opens
    if (!service.instances.some((i) => i.instance_n === n)) throw new ApiError(404, `${service.name} has no instance ${n}`);
    const stream = openStream(req, reply, streams);
    const seen = new Map<string, string>();
    let lastProblem = '';
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    stream.onClose(() => {
      stopped = true;
      if (timer) clearTimeout(timer);
    });
    const problem = (message: string): void => {
      if (message !== lastProblem) stream.send('problem', { message });
      lastProblem = message;
    };
    const poll = async (): Promise<void> => {
      try {
        for (const st of ['stdout', 'stderr'] as const) {
          const cur = await readInstanceLogs(ctx, who, sid, n, st, LOG_BYTES);
          const fresh = unseen(seen.get(st) ?? '', cur);
          if (fresh) stream.send('log', { stream: st, text: fresh });
          seen.set(st, cur);
        }
        lastProblem = '';
      } catch (e) {
        problem((e as Error).message);
      }
    };
    const loop = async (): Promise<void> => {
      await poll();
      if (!stopped) timer = setTimeout(() => void loop(), LOG_POLL_MS);
    };
    void loop();
  });

  app.get<{ Params: { id: string } }>(`${API_V1}/dashboard/clusters/:id`, {
    schema: {
      tags: ['dashboard'], summary: "A cluster's workers and the instances on them, from the cluster's own status", security: [{ bearer: [] }],
      params: { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } },
    },
  }, async (req) => {
    const who = await caller(ctx, req);
    const c = ctx.clusters.get(req.params.id);
    if (!c) throw new ApiError(404, `cluster ${req.params.id} not found`);
    let status: { workers?: unknown[]; instances?: { service_id: string; instance_n: number; worker: string | null; state: string }[] };
    try {
      status = (await clusterStatus(c)) as typeof status;
    } catch (e) {
      throw new ApiError(502, `cluster ${c.name} did not answer its status at ${c.api_url}: ${(e as Error).message}`);
    }
    const names = new Map<string, string>();
    const visible = new Set<string>();
    const listed = Array.isArray(status.instances) ? status.instances : [];
    for (const sid of new Set(listed.map((i) => i?.service_id).filter((x): x is string => typeof x === 'string'))) {
      try {
        names.set(sid, (await ctx.catalog.getService(who, sid)).name);
        visible.add(sid);
      } catch {
        // not the caller's: left out
      }
    }
    return {
      cluster_id: c.id,
      name: c.name,
      workers: Array.isArray(status.workers) ? status.workers : [],
      instances: listed
        .filter((i) => typeof i?.service_id === 'string' && visible.has(i.service_id))
        .map((i) => ({ service_id: i.service_id, service: names.get(i.service_id), instance_n: i.instance_n, worker: i.worker, state: i.state })),
    };
  });
}
