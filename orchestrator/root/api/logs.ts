// An instance's logs through root (SPEC §10, no side doors): authorized like every other read of the
// instance (another user's service is a 404), then read by the instance's cluster from its worker
// over their existing links (protocol/instance-logs.ts). The CLI's `logs` and the dashboard use it;
// nobody needs to reach a worker.
import type { FastifyInstance } from 'fastify';
import { ApiError } from '../errors.ts';
import type { Caller } from '../catalog.ts';
import { ClusterCallError, clusterInstanceLogs } from '../cluster-client.ts';
import { logBytes, type LogStream } from '../../protocol/instance-logs.ts';
import { caller, type ApiContext } from './context.ts';
import { API_V1 } from './paths.ts';

/** The newest `bytes` of one stream of instance `n` of service `sid`, as `who` may read it. */
export async function readInstanceLogs(ctx: ApiContext, who: Caller, sid: string, n: number, stream: LogStream, bytes: number): Promise<string> {
  let service;
  try {
    service = await ctx.catalog.getService(who, sid);
  } catch (e) {
    // Another user's service is "not found" here (the issue's rule for logs): its output must not
    // even confirm that it exists.
    if (e instanceof ApiError && e.status === 403) throw new ApiError(404, `service ${sid} not found`);
    throw e;
  }
  const inst = service.instances.find((i) => i.instance_n === n);
  if (!inst) throw new ApiError(404, `${service.name} has no instance ${n}`);
  if (!inst.cluster_id || !inst.worker_id) throw new ApiError(409, `${service.name}#${n} is ${inst.state} and on no worker: ${inst.reason}`);
  const cluster = ctx.clusters.get(inst.cluster_id);
  if (!cluster) throw new ApiError(409, `${service.name}#${n}'s cluster ${inst.cluster_id} is not registered`);
  try {
    return await clusterInstanceLogs(cluster, sid, n, stream, bytes);
  } catch (e) {
    if (e instanceof ClusterCallError) {
      const gone = e.status === 404;
      throw new ApiError(gone ? 404 : 502, `${gone ? '' : `cluster ${cluster.name}: `}${e.message}`);
    }
    throw e;
  }
}

export function logRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get<{ Params: { id: string; n: number }; Querystring: { stream?: LogStream; bytes?: number } }>(`${API_V1}/service/:id/instance/:n/logs`, {
    schema: {
      tags: ['services'], summary: "An instance's stdout or stderr (the newest bytes), read from its worker through its cluster", security: [{ bearer: [] }],
      params: { type: 'object', required: ['id', 'n'], properties: { id: { type: 'string', maxLength: 64 }, n: { type: 'integer', minimum: 0, maximum: 1e9 } } },
      querystring: { type: 'object', properties: { stream: { type: 'string', enum: ['stdout', 'stderr'] }, bytes: { type: 'integer', minimum: 1, maximum: 1 << 20 } } },
    },
  }, async (req, reply) => {
    const who = await caller(ctx, req);
    const text = await readInstanceLogs(ctx, who, req.params.id, req.params.n, req.query.stream ?? 'stdout', logBytes(req.query.bytes));
    return reply.type('text/plain; charset=utf-8').send(text);
  });
}
