// The worker daemon's local HTTP API: status with reasons, instance logs (stdout/stderr), /metrics,
// the import of image archives (`canopy image import`).
// Status and logs answer only a caller with the worker's API token (SPEC §10, no side doors): the
// token is a file in the worker's state directory (mode 0600), so reading it proves the caller is
// the operator on that host. Users read logs through root. /metrics and /api/health stay open: counters
// and liveness only.
// Six fixed routes on node:http rather than a framework: fastify and its schema compiler cost an idle
// worker ~10 MB of its 64 MB (issue 16); root's and the cluster's larger APIs keep fastify.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { NodeEngine } from './node-engine.ts';
import { instanceKey } from './runtime/exit.ts';
import type { ServerTls } from '../protocol/tls.ts';
import { ImportError } from './container/import-error.ts';

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

/** The running API: its server (for its address) and how to stop it. */
export interface WorkerApi {
  server: Server | HttpsServer;
  close(): Promise<void>;
}

/** What a route answers: a status, and a JSON value or text. */
interface Answer { code?: number; json?: unknown; text?: string; type?: string }
type Handler = (req: IncomingMessage, url: URL, params: string[]) => Promise<Answer>;
interface Route { method: string; path: RegExp; open: boolean; handle: Handler }

const fail = (code: number, error: string): Answer => ({ code, json: { error } });

function send(res: ServerResponse, a: Answer): void {
  const body = a.text ?? JSON.stringify(a.json);
  res.writeHead(a.code ?? 200, {
    'content-type': a.text !== undefined ? (a.type ?? 'text/plain; charset=utf-8') : 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

function routes(engine: NodeEngine): Route[] {
  const health: Handler = async () => ({ json: { ok: true } });

  // An image archive is streamed to a file, never held in memory (the token check comes first).
  const importImage: Handler = async (req) => {
    const ct = engine.runtimes.get('container') as { importArchive?: (file: string) => Promise<string[]>; available?: () => boolean } | undefined;
    if (!ct?.importArchive || ct.available?.() === false) return fail(409, 'this worker has no container runtime answering (containerd)');
    if (req.headers['content-type'] !== 'application/x-tar') return fail(415, 'send the archive as application/x-tar');
    const dir = join(engine.o.stateDir, 'image-uploads');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const file = join(dir, `${randomBytes(8).toString('hex')}.tar`);
    try {
      await pipeline(req, createWriteStream(file, { mode: 0o600 }));
      return { json: { images: await ct.importArchive(file) } };
    } catch (e) {
      if (e instanceof ImportError) return fail(422, e.message);
      engine.log.warn('image import failed', { error: (e as Error).message });
      return fail(500, `import failed: ${(e as Error).message}`);
    } finally {
      rmSync(file, { force: true });
    }
  };

  const status: Handler = async () => ({
    json: {
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
    },
  });

  const logs: Handler = async (_req, url, [sid, nText]) => {
    const n = Number(nText);
    const stream = url.searchParams.get('stream') ?? 'stdout';
    if (!Number.isInteger(n) || n < 0) return fail(400, 'instance number must be a non-negative integer');
    if (stream !== 'stdout' && stream !== 'stderr') return fail(400, 'stream must be stdout or stderr');
    const bytes = Math.min(Math.max(Number(url.searchParams.get('bytes') ?? 65536) || 65536, 1), 1 << 20);
    const inst = engine.instances.get(instanceKey(sid!, n));
    if (!inst) return fail(404, `no instance ${sid}/${n} on this worker`);
    return { text: inst.logs(stream, bytes) };
  };

  const metrics: Handler = async () => {
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
    // The net manager's datapath, semantic table and DNS counters, when the worker has one.
    const net = (engine.net as { metrics?: () => string }).metrics?.() ?? '';
    return { text: `${lines.join('\n')}\n${net}`, type: 'text/plain; version=0.0.4' };
  };

  return [
    { method: 'GET', path: /^\/api\/health$/, open: true, handle: health },
    { method: 'GET', path: /^\/metrics$/, open: true, handle: metrics },
    { method: 'GET', path: /^\/api\/status$/, open: false, handle: status },
    { method: 'GET', path: /^\/api\/instances\/([^/]+)\/([^/]+)\/logs$/, open: false, handle: logs },
    { method: 'POST', path: /^\/api\/images\/import$/, open: false, handle: importImage },
  ];
}

export async function startWorkerApi(engine: NodeEngine, o: WorkerApiOptions): Promise<WorkerApi> {
  const table = routes(engine);
  const want = Buffer.from(o.token);
  const authorized = (req: IncomingMessage): boolean => {
    const h = req.headers.authorization;
    const got = Buffer.from(h?.startsWith('Bearer ') ? h.slice(7) : '');
    return got.length === want.length && timingSafeEqual(got, want);
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const answer = async (): Promise<Answer> => {
      let url: URL;
      try {
        url = new URL(req.url ?? '/', 'http://worker');
      } catch {
        return fail(400, 'bad request URL');
      }
      // HEAD is answered as GET without the body (node:http leaves the body out).
      const method = req.method === 'HEAD' ? 'GET' : req.method;
      for (const r of table) {
        const m = r.path.exec(url.pathname);
        if (!m || r.method !== method) continue;
        if (!r.open && !authorized(req)) {
          return fail(401, `missing or wrong API token (the worker's ${apiTokenFile('<data>')}); users read logs through root: canopy logs`);
        }
        let params: string[];
        try {
          params = m.slice(1).map((p) => decodeURIComponent(p));
        } catch {
          return fail(400, 'bad escape in the URL');
        }
        return r.handle(req, url, params);
      }
      return fail(404, `no route ${req.method ?? ''} ${url.pathname}`);
    };
    answer().then((a) => send(res, a), (e: unknown) => {
      engine.log.warn('worker API request failed', { url: req.url, error: (e as Error).message });
      if (!res.headersSent) send(res, fail(500, (e as Error).message));
      else res.destroy();
    });
  };

  const server = o.tls ? createHttpsServer({ cert: o.tls.cert, key: o.tls.key }, onRequest) : createHttpServer(onRequest);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    server,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      // Keep-alive connections that are idle would hold close() open.
      server.closeIdleConnections();
    }),
  };
}

