// The worker daemon's local HTTP API: status with reasons, instance logs (stdout/stderr), /metrics.
import Fastify, { type FastifyInstance } from 'fastify';
import type { NodeEngine } from './node-engine.ts';
import { instanceKey } from './runtime/exit.ts';

export async function startWorkerApi(engine: NodeEngine, host: string, port: number): Promise<FastifyInstance> {
  const app = Fastify({ logger: false });

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

  await app.listen({ host, port });
  return app;
}
