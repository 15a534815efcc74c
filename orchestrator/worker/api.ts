// The worker daemon's local HTTP API: status with reasons, instance logs (stdout/stderr), /metrics,
// and (with a token, api-token.ts) the import of image archives.
import Fastify, { type FastifyInstance } from 'fastify';
import { createWriteStream, mkdirSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import type { NodeEngine } from './node-engine.ts';
import { instanceKey } from './runtime/exit.ts';
import { bearerMatches } from './api-token.ts';
import { ImportError } from './container/image-import.ts';

export interface WorkerApiOptions {
  /** Bearer tokens that may change the worker (image import); none = no such calls. */
  tokens?: string[];
}

export async function startWorkerApi(engine: NodeEngine, host: string, port: number, o: WorkerApiOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({ logger: false });
  // An image archive is streamed to a file, never held in memory.
  app.addContentTypeParser('application/x-tar', (_req, payload, done) => done(null, payload));

  app.post('/api/images/import', async (req, reply) => {
    if (!bearerMatches(req.headers.authorization, o.tokens ?? [])) {
      return reply.code(401).send({ error: 'a worker API token is needed (Bearer: the api-token file in the worker\'s data dir, or the cluster\'s worker join key)' });
    }
    const ct = engine.runtimes.get('container') as { importArchive?: (file: string) => Promise<string[]>; available?: () => boolean } | undefined;
    if (!ct?.importArchive || ct.available?.() === false) return reply.code(409).send({ error: 'this worker has no container runtime answering (containerd)' });
    if (req.headers['content-type'] !== 'application/x-tar') return reply.code(415).send({ error: 'send the archive as application/x-tar' });
    const dir = join(engine.o.stateDir, 'image-uploads');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `${randomBytes(8).toString('hex')}.tar`);
    try {
      await pipeline(req.body as Readable, createWriteStream(file, { mode: 0o600 }));
      const images = await ct.importArchive(file);
      return { images };
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
    ];
    void reply.type('text/plain; version=0.0.4');
    // The net manager's datapath, semantic table and DNS counters, when the worker has one.
    const net = (engine.net as { metrics?: () => string }).metrics?.() ?? '';
    return `${lines.join('\n')}\n${net}`;
  });

  await app.listen({ host, port });
  return app;
}
