// The worker daemon's local HTTP API: status with reasons, instance logs (stdout/stderr), /metrics,
// the import of image archives (`canopy image import`).
// Status and logs answer only a caller with the worker's API token (SPEC §10, no side doors): the
// token is a file in the worker's state directory (mode 0600), so reading it proves the caller is
// the operator on that host. Users read logs through root. /metrics and /api/health stay open (counters
// and liveness only) unless the operator closes them with a metrics token (metrics-access.ts).
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import type { NodeEngine } from './node-engine.ts';
import { instanceKey } from './runtime/exit.ts';
import type { ServerTls } from '../protocol/tls.ts';
import { createWriteStream, rmSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { ImportError } from './container/import-error.ts';
import { metricsGate, type MetricsAccess } from '../metrics-access.ts';

/** The API token file in a worker's state directory. */
export function apiTokenFile(stateDir: string): string {
  return join(stateDir, 'api-token');
}

/** The worker's API token: made once (mode 0600) and kept across restarts. */
export function loadOrCreateApiToken(stateDir: string): string {
  const f = apiTokenFile(stateDir);
  if (existsSync(f)) {
    const t = readFileSync(f, 'utf8').trim();
    if (t.length >= 16) return t;
  }
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const t = randomBytes(24).toString('base64url');
  writeFileSync(f, `${t}\n`, { mode: 0o600 });
  return t;
}

export interface WorkerApiOptions {
  host: string;
  port: number;
  /** Callers of status and logs send `Authorization: Bearer <token>`. */
  token: string;
  tls?: ServerTls;
  /** Who may read /metrics and /api/health (open by default; metrics-access.ts). */
  metricsAccess?: MetricsAccess;
}

export async function startWorkerApi(engine: NodeEngine, o: WorkerApiOptions): Promise<FastifyInstance> {
  const app = Fastify({ ...(o.tls ? { https: { cert: o.tls.cert, key: o.tls.key } } : {}), logger: false });
  const want = Buffer.from(o.token);
  const authorized = (req: FastifyRequest): boolean => {
    const h = req.headers.authorization;
    const got = Buffer.from(h?.startsWith('Bearer ') ? h.slice(7) : '');
    return got.length === want.length && timingSafeEqual(got, want);
  };
  app.addHook('onRequest', metricsGate(o.metricsAccess));
  app.addHook('onRequest', async (req, reply) => {
    const url = req.routeOptions.url;
    if (url === '/metrics' || url === '/api/health' || url === undefined) return;
    if (!authorized(req)) return reply.code(401).send({ error: `missing or wrong API token (the worker's ${apiTokenFile('<data>')}); users read logs through root: canopy logs` });
  });
  app.get('/api/health', async () => ({ ok: true }));

  // An image archive is streamed to a file, never held in memory (the token check above comes first).
  app.addContentTypeParser('application/x-tar', (_req, payload, done) => done(null, payload));
  app.post('/api/images/import', async (req, reply) => {
    const ct = engine.runtimes.get('container') as { importArchive?: (file: string) => Promise<string[]>; available?: () => boolean } | undefined;
    if (!ct?.importArchive || ct.available?.() === false) return reply.code(409).send({ error: 'this worker has no container runtime answering (containerd)' });
    if (req.headers['content-type'] !== 'application/x-tar') return reply.code(415).send({ error: 'send the archive as application/x-tar' });
    const dir = join(engine.o.stateDir, 'image-uploads');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const file = join(dir, `${randomBytes(8).toString('hex')}.tar`);
    try {
      await pipeline(req.body as Readable, createWriteStream(file, { mode: 0o600 }));
      return { images: await ct.importArchive(file) };
    } catch (e) {
      if (e instanceof ImportError) return reply.code(422).send({ error: e.message });
      engine.log.warn('image import failed', { error: (e as Error).message });
      return reply.code(500).send({ error: `import failed: ${(e as Error).message}` });
    } finally {
      rmSync(file, { force: true });
    }
  });

  app.get('/api/status', async () => ({
    worker_id: engine.workerId,
    connected: engine.connected,
    subnet_v4: engine.identity.subnet_v4,
    subnet_v6: engine.identity.subnet_v6,
    virtualizations: engine.virtualizations,
    resources: engine.heartbeatPayload(),
    instances: [...engine.instances.values()].map((i) => ({
      service_id: i.order.service_id, instance_n: i.order.instance_n, state: i.state, reason: i.reason,
      pid: i.pid ?? null, restarts: i.restartCount, ns_ip: i.attachment.ns_ip ?? null, history: i.lifecycle.history,
    })),
    counters: engine.counters,
  }));

  app.get<{ Params: { sid: string; n: string }; Querystring: { stream?: string; bytes?: string } }>(
    '/api/instances/:sid/:n/logs',
    async (req, reply) => {
      const n = Number(req.params.n);
      const stream = req.query.stream ?? 'stdout';
      if (!Number.isInteger(n) || n < 0) return reply.code(400).send({ error: 'instance number must be a non-negative integer' });
      if (stream !== 'stdout' && stream !== 'stderr') return reply.code(400).send({ error: 'stream must be stdout or stderr' });
      const bytes = Math.min(Math.max(Number(req.query.bytes ?? 65536) || 65536, 1), 1 << 20);
      const inst = engine.instances.get(instanceKey(req.params.sid, n));
      if (!inst) return reply.code(404).send({ error: `no instance ${req.params.sid}/${n} on this worker` });
      void reply.type('text/plain; charset=utf-8');
      return inst.logs(stream, bytes);
    },
  );

  app.get('/metrics', async (_req, reply) => {
    const states = new Map<string, number>();
    for (const i of engine.instances.values()) states.set(i.state, (states.get(i.state) ?? 0) + 1);
    const lines = [
      '# HELP canopy_worker_connected 1 while connected to the cluster broker',
      '# TYPE canopy_worker_connected gauge',
      `canopy_worker_connected ${engine.connected ? 1 : 0}`,
      '# HELP canopy_worker_instances instances on this worker by state',
      '# TYPE canopy_worker_instances gauge',
      ...[...states].map(([s, v]) => `canopy_worker_instances{state="${s}"} ${v}`),
      ...Object.entries(engine.counters).flatMap(([k, v]) => [`# TYPE canopy_worker_${k}_total counter`, `canopy_worker_${k}_total ${v}`]),
      // The daemon's own memory (issue 16: a worker in 64 MB): where it goes, without a profiler.
      '# HELP canopy_worker_memory_bytes the worker daemon\'s memory: rss, V8 heap used and total, external, array buffers',
      '# TYPE canopy_worker_memory_bytes gauge',
      ...Object.entries(process.memoryUsage()).map(([k, v]) => `canopy_worker_memory_bytes{kind="${k}"} ${v}`),
    ];
    void reply.type('text/plain; version=0.0.4');
    // The net manager's datapath, semantic table and DNS counters, when the worker has one.
    const net = (engine.net as { metrics?: () => string }).metrics?.() ?? '';
    return `${lines.join('\n')}\n${net}`;
  });

  await app.listen({ host: o.host, port: o.port });
  return app;
}
