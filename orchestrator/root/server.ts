// The root orchestrator: REST API (SPEC §7) on fastify, SQLite store, address allocation, cluster
// registry, scheduling. start() returns once it listens; close() stops everything it started.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import fastifyJwt from '@fastify/jwt';
import swagger from '@fastify/swagger';
import { jsonLogger, type Logger } from '../protocol/log.ts';
import { AddressAllocator, AddressSpaceExhausted, DEFAULT_PLAN, type AddressPlan } from './addresses.ts';
import { loadOverlayTunnel, loadSecrets, rotateOverlayTunnel } from './secrets.ts';
import { applicationRoutes } from './api/applications.ts';
import { authRoutes } from './api/auth.ts';
import { clusterRoutes } from './api/clusters.ts';
import { dashboardRoutes } from './api/dashboard.ts';
import { lazyDocs } from './api/docs.ts';
import { authenticate, type ApiContext } from './api/context.ts';
import { internalRoutes } from './api/internal.ts';
import { logRoutes } from './api/logs.ts';
import { LoginThrottle } from './login-throttle.ts';
import { oakestraRoutes } from './oakestra/routes.ts';
import { Catalog } from './catalog.ts';
import { CLUSTER_SILENCE_MS, ClusterRegistry } from './clusters.ts';
import { ApiError, storeErrorStatus } from './errors.ts';
import { watchStore } from './events.ts';
import { InstanceManager } from './instances.ts';
import { Metrics } from './metrics.ts';
import { SqliteStore } from './sqlite-store.ts';
import { PgStore } from './pg-store.ts';
import { PgCoordinator, SoloCoordinator, type Coordinator } from './replicas.ts';
import type { RootStore } from './store.ts';
import type { ServerTls } from '../protocol/tls.ts';
import { Users } from './users.ts';

export interface RootOptions {
  /** Directory of the SQLite database (created if missing). */
  dataDir: string;
  /**
   * Where root keeps its state: 'sqlite' (the default: root.db in dataDir) or a postgres:// URL,
   * which several root replicas may share (SPEC §11).
   */
  store?: string;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Password of `admin` on the first start; generated and announced when absent. */
  adminPassword?: string;
  /** Join key clusters register with; kept from the last start, or generated and announced. */
  clusterKey?: string;
  plan?: Partial<AddressPlan>;
  clusterSilenceMs?: number;
  bodyLimit?: number;
  log?: Logger;
  /** Where secrets generated on first start are shown once (default: stderr). */
  announce?: (line: string) => void;
  /** Serve https only (SPEC §10): a plain connection fails the handshake. */
  tls?: ServerTls;
  /** Lifetime of /api/v1 access tokens in seconds (default 15 min). */
  accessTtlS?: number;
}

/** JSON deeper than this is refused before parsing: no descriptor needs it, and deep values overflow the stack later. */
export const MAX_JSON_DEPTH = 32;

function jsonDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (inString) {
      if (ch === 92) i++;
      else if (ch === 34) inString = false;
    } else if (ch === 34) inString = true;
    else if (ch === 123 || ch === 91) max = Math.max(max, ++depth);
    else if (ch === 125 || ch === 93) depth--;
  }
  return max;
}

/** The store `opts.store` names; a PostgreSQL that cannot be reached rejects with StoreUnavailable. */
async function openStore(opts: RootOptions): Promise<RootStore> {
  const spec = opts.store ?? 'sqlite';
  if (/^postgres(ql)?:\/\//.test(spec)) return PgStore.open(spec);
  if (spec !== 'sqlite') throw new Error(`--store: 'sqlite' or a postgres:// URL, got ${JSON.stringify(spec)}`);
  mkdirSync(opts.dataDir, { recursive: true });
  return new SqliteStore(join(opts.dataDir, 'root.db'));
}

export class RootServer {
  private constructor(
    readonly app: FastifyInstance,
    readonly store: RootStore,
    private readonly clusters: ClusterRegistry,
    private readonly instances: InstanceManager,
    readonly coordinator: Coordinator,
    readonly url: string,
    private readonly log: Logger,
  ) {}

  static async start(opts: RootOptions): Promise<RootServer> {
    const log = opts.log ?? jsonLogger({ component: 'root' });
    const announce = opts.announce ?? ((line: string) => process.stderr.write(`${line}\n`));
    const store = await openStore(opts);
    const coordinator: Coordinator = store instanceof PgStore ? new PgCoordinator(store, log) : new SoloCoordinator();
    const events = watchStore(store, (e) => coordinator.hint({ kind: 'event', event: e }));
    let clusters: ClusterRegistry | undefined;
    let instances: InstanceManager | undefined;
    // Oakestra's collection routes end in a slash and its scripts call them without one: both forms match.
    // With TLS the server is an https.Server; the routes see the same request and reply objects.
    const app = Fastify({ ...(opts.tls ? { https: { cert: opts.tls.cert, key: opts.tls.key } } : {}), logger: false, routerOptions: { ignoreTrailingSlash: true }, bodyLimit: opts.bodyLimit ?? 1 << 20, ajv: { customOptions: { allErrors: true } } });
    try {
      // The plan first: a bad flag must fail before any secret is generated and shown.
      const addresses = await new AddressAllocator(store, { ...DEFAULT_PLAN, ...opts.plan }).load();
      const users = new Users(store);
      const boot = await users.bootstrap(opts.adminPassword);
      if (boot.generated) announce(`canopy root: created user admin with password ${boot.generated} (shown once; set CANOPY_ADMIN_PASSWORD to choose it)`);
      else if (!boot.created && opts.adminPassword && !(await users.login('admin', opts.adminPassword))) {
        log.warn('admin exists with another password; CANOPY_ADMIN_PASSWORD applies only on the first start');
      }

      const secrets = await loadSecrets(store, opts.clusterKey, announce);

      const metrics = new Metrics();
      clusters = await new ClusterRegistry(store, Date.now, opts.clusterSilenceMs ?? CLUSTER_SILENCE_MS).load();
      clusters.changed = (id) => coordinator.publish({ kind: 'cluster', id });
      instances = new InstanceManager(store, addresses, clusters, log, metrics, { coordinator });
      const catalog = new Catalog(store, addresses, instances);
      const inst = instances;
      clusters.on('active', (c) => {
        log.info('cluster active', { cluster: c.name, cluster_id: c.id });
        inst.retryUnplaced('cluster_active', `cluster ${c.name} became active`);
      });
      clusters.on('room', (c, grew) => {
        log.info('cluster reports more room', { cluster: c.name, cluster_id: c.id, grew });
        inst.retryUnplaced('cluster_room', `cluster ${c.name} reported more room: ${grew}`);
      });
      clusters.on('inactive', (c) => log.warn('cluster inactive', { cluster: c.name, cluster_id: c.id, silent_ms: Date.now() - c.last_seen }));
      const reg = clusters;
      metrics.gauge('canopy_root_clusters', 'Registered clusters by liveness', () => {
        const all = reg.list();
        const active = all.filter((c) => reg.isActive(c)).length;
        return [[{ state: 'active' }, active], [{ state: 'inactive' }, all.length - active]];
      });
      metrics.gauge('canopy_root_leader', 'Whether this root replica holds the leader lease (1) or follows (0)', () => [[{ replica: coordinator.replicaId }, coordinator.isLeader() ? 1 : 0]]);
      const countRequest = metrics.counter('canopy_root_http_requests_total', 'HTTP requests by route and status');

      const ctx: ApiContext = {
        catalog, users, clusters, instances, addresses, metrics, log,
        checkJoinKey: secrets.checkJoinKey, overlayTunnel: secrets.overlayTunnel, loginThrottle: new LoginThrottle(), accessTtlS: opts.accessTtlS,
      };
      ctx.rotateOverlayTunnel = async () => {
        ctx.overlayTunnel = await rotateOverlayTunnel(store, ctx.overlayTunnel);
        await coordinator.publish({ kind: 'overlay-key' });
        return ctx.overlayTunnel;
      };

      const defaultJson = app.getDefaultJsonParser('error', 'error');
      app.removeContentTypeParser('application/json');
      app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
        if (jsonDepth(body as string) > MAX_JSON_DEPTH) {
          done(new ApiError(400, `JSON nested deeper than ${MAX_JSON_DEPTH} levels`, [{ path: '', message: `nested deeper than ${MAX_JSON_DEPTH} levels` }]), undefined);
          return;
        }
        defaultJson(req, body as string, done);
      });
      app.setErrorHandler((err: FastifyError | ApiError | AddressSpaceExhausted, req, reply) => {
        if (err instanceof ApiError) return reply.code(err.status).send({ error: err.message, errors: err.errors });
        const mapped = storeErrorStatus(err);
        if (mapped) {
          if (mapped.status >= 500) log.warn('request failed: store unavailable', { method: req.method, url: req.url, error: (err as Error).message });
          return reply.code(mapped.status).send({ error: mapped.message, errors: [{ path: '', message: mapped.message }] });
        }
        if (err instanceof AddressSpaceExhausted) {
          log.error('address space exhausted', { method: req.method, url: req.url, error: err.message });
          return reply.code(503).send({ error: err.message, errors: [{ path: '', message: err.message }] });
        }
        if (err.validation) {
          const errors = err.validation.map((v) => {
            const missing = (v.params as { missingProperty?: string }).missingProperty;
            return { path: `${v.instancePath}${missing ? `/${missing}` : ''}`, message: missing ? 'is required' : (v.message ?? 'is invalid') };
          });
          return reply.code(400).send({ error: `invalid ${err.validationContext ?? 'request'}`, errors });
        }
        const status = err.statusCode ?? 500;
        if (status < 500) return reply.code(status).send({ error: err.message, errors: [{ path: '', message: err.message }] });
        log.error('request failed', { method: req.method, url: req.url, error: String(err.stack ?? err) });
        return reply.code(500).send({ error: 'internal error (logged)' });
      });
      app.setNotFoundHandler((req, reply) => reply.code(404).send({ error: `no route ${req.method} ${req.url.split('?')[0]}` }));
      app.addHook('onRequest', authenticate(ctx));
      app.addHook('onResponse', async (req, reply) => {
        countRequest({ method: req.method, route: req.routeOptions.url ?? 'unknown', status: String(reply.statusCode) });
      });

      await app.register(fastifyJwt, { secret: secrets.jwtSecret });
      await app.register(swagger, {
        transform: ({ schema, url, route }) => {
          const docBody = route.config?.docBody;
          return { schema: docBody ? { ...schema, body: docBody } : schema, url };
        },
        openapi: {
          info: {
            title: 'Canopy root API', version: '0.1.0',
            description: "Two surfaces over one service layer (SPEC §7): Canopy's own API under /api/v1 (objects, 201/202, errors with JSON paths), and Oakestra's API at Oakestra's paths in Oakestra's wire format (tag `oakestra`; many answers are a JSON string holding the document, as Oakestra sends them).",
          },
          components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
        },
      });
      lazyDocs(app);
      authRoutes(app, ctx);
      applicationRoutes(app, ctx);
      clusterRoutes(app, ctx);
      internalRoutes(app, ctx);
      logRoutes(app, ctx);
      await app.register(oakestraRoutes(ctx));
      dashboardRoutes(app, ctx, { events });
      app.get('/metrics', { schema: { hide: true } }, async (_req, reply) =>
        reply.type('text/plain; version=0.0.4').send(await metrics.render()));

      const host = opts.host ?? '127.0.0.1';
      await app.listen({ host, port: opts.port ?? 10000 });
      const addr = app.server.address();
      const port = typeof addr === 'object' && addr ? addr.port : opts.port;
      const url = `${opts.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`;
      coordinator.on('message', (m) => {
        switch (m.kind) {
          case 'cluster':
            reg.refresh(m.id).catch((err: unknown) => log.warn('could not refresh a cluster', { cluster_id: m.id, error: String(err) }));
            break;
          case 'schedule':
            inst.scheduleFromPeer(m.service_id, m.n, m.retry === true);
            break;
          case 'peers':
            inst.peers.invalidate();
            break;
          case 'events':
            for (const e of m.events) void events.fromPeer(e);
            break;
          case 'overlay-key':
            // Otherwise this replica's report answers would hand the revoked worker's key out again.
            loadOverlayTunnel(store).then((k) => {
              ctx.overlayTunnel = k;
            }, (err: unknown) => log.warn('could not read the rotated overlay key', { error: String(err) }));
            break;
        }
      });
      coordinator.on('leader', (on) => {
        // The new leader takes over what the old one had in hand: REQUESTED instances and retries.
        if (on) inst.resume().catch((err: unknown) => log.error('could not resume scheduling', { error: String(err) }));
      });
      if (coordinator instanceof PgCoordinator) await coordinator.start();
      else await instances.resume();
      log.info('root ready', { url, tls: Boolean(opts.tls), data: opts.dataDir, store: store.kind, replica: coordinator.replicaId, leader: coordinator.isLeader(), clusters: clusters.list().length });
      return new RootServer(app, store, clusters, instances, coordinator, url, log);
    } catch (err) {
      await app.close().catch(() => undefined);
      await coordinator.close();
      await instances?.close();
      clusters?.close();
      await store.close();
      throw err;
    }
  }

  async close(): Promise<void> {
    await this.app.close();
    // First: the lease goes with it, so a successor need not wait.
    await this.coordinator.close();
    await this.instances.close();
    this.clusters.close();
    await this.store.close();
    this.log.info('root stopped');
  }
}
