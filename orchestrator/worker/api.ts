// The worker daemon's local HTTP API: status with reasons, instance logs (stdout/stderr), /metrics.
// Status and logs answer only a caller with the worker's API token (SPEC §10, no side doors): the
// token is a file in the worker's state directory (mode 0600), so reading it proves the caller is
// the operator on that host. Users read logs through root. /metrics and /api/health stay open: counters
// and liveness only.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import type { NodeEngine } from './node-engine.ts';
import { instanceKey } from './runtime/exit.ts';
import type { ServerTls } from '../protocol/tls.ts';

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
}

export async function startWorkerApi(engine: NodeEngine, o: WorkerApiOptions): Promise<FastifyInstance> {
  const app = Fastify({ ...(o.tls ? { https: { cert: o.tls.cert, key: o.tls.key } } : {}), logger: false });
  const want = Buffer.from(o.token);
  const authorized = (req: FastifyRequest): boolean => {
    const h = req.headers.authorization;
    const got = Buffer.from(h?.startsWith('Bearer ') ? h.slice(7) : '');
    return got.length === want.length && timingSafeEqual(got, want);
  };
  app.addHook('onRequest', async (req, reply) => {
    const url = req.routeOptions.url;
    if (url === '/metrics' || url === '/api/health' || url === undefined) return;
    if (!authorized(req)) return reply.code(401).send({ error: `missing or wrong API token (the worker's ${apiTokenFile('<data>')}); users read logs through root: canopy logs` });
  });
  app.get('/api/health', async () => ({ ok: true }));

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
