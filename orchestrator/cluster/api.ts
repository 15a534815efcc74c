// The cluster's HTTP API: root-facing routes (placements, routes, peers; root's per-cluster token), the
// worker registration route (worker join key), and status and /metrics for operators.
import { timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { Cluster, ClusterError } from './cluster.ts';
import { RootAnswerError, type PlacementOffer } from '../protocol/root-cluster.ts';
import { RouteMessageError } from '../../proxy/route-messages.ts';
import type { ServerTls } from '../protocol/tls.ts';
import { LogRelayError } from './log-relay.ts';
import { logBytes } from '../protocol/instance-logs.ts';
import { validTunnelKey } from '../protocol/tunnel-identity.ts';
import { metricsGate, type MetricsAccess } from '../metrics-access.ts';

function bearer(req: FastifyRequest): string | undefined {
  const h = req.headers.authorization;
  return h?.startsWith('Bearer ') ? h.slice(7) : undefined;
}

function same(a: string | undefined, b: string | undefined): boolean {
  if (a === undefined || b === undefined) return false;
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

const strOrNull = { type: ['string', 'null'], maxLength: 64 };

const placementSchema = {
  type: 'object',
  required: ['service', 'instance_n'],
  properties: {
    service: {
      type: 'object',
      required: ['service_id', 'app', 'appns', 'svc', 'svcns', 'microservice'],
      properties: {
        service_id: { type: 'string', minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' },
        app: { type: 'string', maxLength: 30 },
        appns: { type: 'string', maxLength: 30 },
        svc: { type: 'string', maxLength: 30 },
        svcns: { type: 'string', maxLength: 30 },
        microservice: {
          type: 'object',
          properties: {
            virtualization: { type: 'string', maxLength: 32 },
            cmd: { type: 'array', items: { type: 'string' }, maxItems: 256 },
            args: { type: 'array', items: { type: 'string' }, maxItems: 256 },
            environment: { type: 'array', items: { type: 'string' }, maxItems: 256 },
            memory: { type: 'number', minimum: 0 },
            vcpus: { type: 'number', minimum: 0 },
            one_shot: { type: 'boolean' },
            port: { type: 'string', maxLength: 1024 },
            constraints: { type: 'array', maxItems: 64, items: { type: 'object', required: ['type'], properties: { type: { type: 'string' } } } },
          },
        },
        rr_ip: strOrNull, rr_ip_v6: strOrNull, closest_ip: strOrNull, closest_ip_v6: strOrNull,
      },
    },
    instance_n: { type: 'integer', minimum: 0, maximum: 1_000_000 },
    instance_ip: strOrNull,
    instance_ip_v6: strOrNull,
  },
};

export interface ClusterApiOptions {
  host: string;
  port: number;
  workerJoinKey: string;
  /** Serve https only (SPEC §10). */
  tls?: ServerTls;
  /** Who may read /metrics and /api/health (open by default; metrics-access.ts). */
  metricsAccess?: MetricsAccess;
}

export async function startClusterApi(cluster: Cluster, o: ClusterApiOptions): Promise<FastifyInstance> {
  const app = Fastify({ ...(o.tls ? { https: { cert: o.tls.cert, key: o.tls.key } } : {}), logger: false, bodyLimit: 1 << 20 });

  app.addHook('onRequest', metricsGate(o.metricsAccess));

  const rootOnly = async (req: FastifyRequest): Promise<void> => {
    const token = cluster.rootToken;
    if (token === undefined) throw new ClusterError('this cluster is not registered with root yet', 503);
    if (!same(bearer(req), token)) throw new ClusterError('missing or wrong cluster token', 401);
  };

  app.setErrorHandler((err, _req, reply) => {
    const e = err as Error & { statusCode?: number; validation?: unknown };
    const status = e instanceof ClusterError || e instanceof LogRelayError ? e.statusCode : e instanceof RouteMessageError || e instanceof RootAnswerError ? 400 : e.statusCode ?? 500;
    if (status >= 500) cluster.log.error('api error', { error: e.message });
    void reply.code(status).send({ error: e.message });
  });

  app.post<{ Body: { name: string } }>('/api/workers/register', {
    schema: { body: { type: 'object', required: ['name'], properties: { name: { type: 'string', minLength: 1, maxLength: 63 } } } },
  }, async (req) => {
    if (!same(bearer(req), o.workerJoinKey)) throw new ClusterError('missing or wrong worker join key', 401);
    return cluster.registerWorker(req.body.name);
  });

  app.delete<{ Params: { id: string } }>('/api/workers/:id', async (req, reply) => {
    if (!same(bearer(req), o.workerJoinKey)) throw new ClusterError('missing or wrong worker join key', 401);
    if (!(await cluster.removeWorker(req.params.id))) return reply.code(404).send({ error: `no worker ${req.params.id}` });
    return { ok: true };
  });

  // Root revokes a worker for the operator (canopy worker revoke).
  // Root sends its rotated overlay key along (the revoked worker holds the old one).
  app.post<{ Params: { id: string }; Body: unknown }>('/api/workers/:id/revoke', { preHandler: rootOnly }, async (req, reply) => {
    const overlay = (req.body as { overlay_tunnel?: unknown } | null)?.overlay_tunnel;
    if (overlay !== undefined && !validTunnelKey(overlay)) return reply.code(400).send({ error: 'overlay_tunnel must be { key_id: 0..255, key: 64 hex digits, encrypt: boolean }' });
    if (!(await cluster.revokeWorker(req.params.id, overlay))) return reply.code(404).send({ error: `no worker ${req.params.id}` });
    return { ok: true, revoked: req.params.id };
  });

  // Root's overlay key, pushed at once when root rotates it (a worker or a cluster was revoked).
  app.post('/api/overlay-key', { preHandler: rootOnly }, async (req) => ({ ok: true, ...cluster.peers.overlayKeyFromRoot(req.body) }));

  app.post<{ Body: PlacementOffer }>('/api/placements', { preHandler: rootOnly, schema: { body: placementSchema } },
    async (req) => cluster.placeMeasured(req.body));

  app.delete<{ Params: { sid: string; n: string } }>('/api/placements/:sid/:n', { preHandler: rootOnly }, async (req) => {
    const n = Number(req.params.n);
    if (!Number.isInteger(n) || n < 0) throw new ClusterError('instance number must be a non-negative integer', 400);
    cluster.remove(req.params.sid, n);
    return { ok: true };
  });

  app.post('/api/routes', { preHandler: rootOnly }, async (req) => {
    cluster.routeFromRoot(req.body);
    return { ok: true };
  });

  // The whole body is checked by parsePeersPush (a RootAnswerError is a 400); the schema only bounds it.
  app.post('/api/peers', { preHandler: rootOnly, schema: { body: { type: 'object', required: ['peers'], properties: { peers: { type: 'array', maxItems: 100_000 }, peers_version: { type: 'integer', minimum: 0 } } } } },
    async (req) => ({ ok: true, ...cluster.peersFromRoot(req.body) }));

  // Root reads an instance's logs for a user it has authorized (protocol/instance-logs.ts).
  app.get<{ Params: { sid: string; n: string }; Querystring: { stream?: string; bytes?: string } }>('/api/instances/:sid/:n/logs', { preHandler: rootOnly }, async (req) => {
    const n = Number(req.params.n);
    if (!Number.isInteger(n) || n < 0) throw new ClusterError('instance number must be a non-negative integer', 400);
    const stream = req.query.stream ?? 'stdout';
    if (stream !== 'stdout' && stream !== 'stderr') throw new ClusterError('stream must be stdout or stderr', 400);
    return { text: await cluster.logs.read(req.params.sid, n, stream, logBytes(req.query.bytes)) };
  });

  // Root (its dashboard) asks with its cluster token; nobody else reads the cluster's workers and instances.
  app.get('/api/status', { preHandler: rootOnly }, async () => cluster.status());
  app.get('/api/health', async () => ({ ok: true }));
  app.get('/metrics', async (_req, reply) => {
    void reply.type('text/plain; version=0.0.4');
    return cluster.metrics();
  });

  await app.listen({ host: o.host, port: o.port });
  return app;
}
