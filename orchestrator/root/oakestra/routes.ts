// Oakestra's root API at Oakestra's paths, in Oakestra's wire format (SPEC §7), so its scripts, `oak`
// CLIs and dashboard work unchanged. A thin translation over the same service layer as Canopy's own
// API (/api/v1): requests are reshaped, answers re-encoded; nothing is decided or stored here.
// Where Oakestra answers `json_util.dumps(x)` the body is a JSON string holding the document
// ("double-encoded"); its clients do `json.loads(resp.json())`. Errors are Oakestra's framework shape
// {code, status, message} plus Canopy's per-field `errors`; another user's ids answer 404 as in
// Oakestra, whose queries filter by owner.
import { STATUS_CODES } from 'node:http';
import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import { descriptorSchema, microserviceSchema } from '../../descriptor/schema.ts';
import { AddressSpaceExhausted } from '../addresses.ts';
import type { ApplicationView, Caller, ServiceView } from '../catalog.ts';
import { ApiError, storeErrorStatus } from '../errors.ts';
import { REFRESH_TTL_S, TOKEN_TTL_S, expiresAtLeast } from '../api/auth.ts';
import { caller, throttledLogin, type ApiContext } from '../api/context.ts';
import { oakestraUserRoutes, oakRoles } from './users.ts';
import { fromOakService, oakApplication, oakCluster, oakService, type OakLookup } from './views.ts';

const tags = ['oakestra'];
const bearer = [{ bearer: [] }];
const doc = (summary: string, auth = true, docBody?: unknown) => ({
  schema: { tags, summary, ...(auth ? { security: bearer } : {}) },
  ...(docBody ? { config: { docBody } } : {}),
});
const loginBody = { type: 'object', required: ['username', 'password'], properties: { username: { type: 'string' }, password: { type: 'string' } } };

interface Id { Params: { id: string } }

/** The body Oakestra's handlers give through `json_util.dumps`: a JSON string literal holding the JSON. */
function twice(reply: FastifyReply, x: unknown): FastifyReply {
  return reply.code(200).type('application/json').send(JSON.stringify(JSON.stringify(x)));
}

function cors(reply: FastifyReply): void {
  reply.header('access-control-allow-origin', '*');
  reply.header('access-control-allow-headers', 'Authorization, Content-Type');
  reply.header('access-control-allow-methods', 'GET, POST, PUT, DELETE, OPTIONS');
  reply.header('access-control-max-age', '600');
}

/**
 * Oakestra's dashboard registers an application before it has services and drops empty values from
 * what it sends: an application without `microservices` has none.
 */
function withServiceLists(body: unknown): unknown {
  const apps = (body as { applications?: unknown } | null)?.applications;
  if (!Array.isArray(apps)) return body;
  return {
    ...(body as object),
    applications: apps.map((a: unknown) => (typeof a === 'object' && a !== null && !Array.isArray(a) && !('microservices' in a) ? { ...a, microservices: [] } : a)),
  };
}

function errorBody(status: number, message: string, errors: unknown[] = []) {
  return { code: status, status: STATUS_CODES[status] ?? 'Error', message, ...(errors.length ? { errors } : {}) };
}

/** The plugin: register with `app.register(oakestraRoutes(ctx))` so its error shape and CORS stay here. */
export function oakestraRoutes(ctx: ApiContext) {
  return async (app: FastifyInstance): Promise<void> => {
    const lookFor = async (serviceId: string): Promise<OakLookup> => {
      const addresses = await ctx.catalog.workerAddresses(serviceId);
      return { clusters: ctx.clusters, workerAddress: (_sid, n) => addresses.get(n) ?? null };
    };
    const oakServices = (list: ServiceView[], a: ApplicationView) => Promise.all(list.map(async (s) => oakService(s, a, await lookFor(s.microserviceID))));

    app.addHook('onRequest', async (_req, reply) => cors(reply));
    app.setErrorHandler((err: FastifyError | ApiError | AddressSpaceExhausted, req, reply) => {
      cors(reply);
      if (err instanceof ApiError) {
        // Another user's object is "not found" here, as in Oakestra.
        const status = err.status === 403 ? 404 : err.status;
        return reply.code(status).send(errorBody(status, status === 404 && err.status === 403 ? 'not found' : err.message, err.errors));
      }
      if (err instanceof AddressSpaceExhausted) return reply.code(503).send(errorBody(503, err.message));
      const mapped = storeErrorStatus(err);
      if (mapped) return reply.code(mapped.status).send(errorBody(mapped.status, mapped.message));
      const status = err.statusCode ?? 500;
      if (status < 500) return reply.code(status).send(errorBody(status, err.message));
      ctx.log.error('request failed', { method: req.method, url: req.url, error: String(err.stack ?? err) });
      return reply.code(500).send(errorBody(500, 'internal error (logged)'));
    });

    // A dashboard served from another origin asks first; the answer names no data.
    app.options('/api/*', { schema: { hide: true } }, async (_req, reply) => reply.code(204).send());

    const own = (who: Caller, a: ApplicationView) => a.owner === who.username;
    const appOf = (who: Caller, id: string) => ctx.catalog.getApplication(who, id);
    const service = async (who: Caller, id: string) => {
      const s = await ctx.catalog.getService(who, id);
      return oakService(s, await appOf(who, s.applicationID), await lookFor(id));
    };

    // ---- auth ----
    app.post('/api/auth/login', doc('Oakestra login: {username, password} → {token, refresh_token}; names match in any case', false, loginBody), async (req, reply) => {
      const b = req.body as { username?: unknown; password?: unknown } | null;
      if (typeof b?.username !== 'string' || typeof b.password !== 'string') throw new ApiError(400, 'username and password are required');
      const u = b.username.length <= 64 && b.password.length <= 1024 ? await throttledLogin(ctx, req, reply, b.username, b.password) : undefined;
      if (!u) throw new ApiError(401, 'invalid username or password');
      // `roles` as Oakestra's tokens carry them: its dashboard reads them from the token.
      const claims = { sub: u.id, name: u.username, role: u.role, roles: oakRoles(u.role) };
      return {
        token: app.jwt.sign({ ...claims, ...expiresAtLeast(TOKEN_TTL_S) }),
        refresh_token: app.jwt.sign({ ...claims, typ: 'refresh', ...expiresAtLeast(REFRESH_TTL_S) }),
      };
    });

    app.post('/api/auth/refresh', doc('Oakestra token refresh: Authorization: Bearer <refresh_token> → {token}', false), async (req) => {
      try {
        await req.jwtVerify();
      } catch {
        throw new ApiError(401, 'missing or invalid refresh token');
      }
      if (req.user.typ !== 'refresh') throw new ApiError(401, 'not a refresh token');
      const u = await ctx.users.byId(req.user.sub);
      if (!u) throw new ApiError(404, 'User does not exists');
      return { token: app.jwt.sign({ sub: u.id, name: u.username, role: u.role, roles: oakRoles(u.role), ...expiresAtLeast(TOKEN_TTL_S) }) };
    });

    // ---- applications ----
    app.post('/api/application', doc('Oakestra: register the applications of an SLA; 200 with a JSON string of all your applications', true, descriptorSchema), async (req, reply) => {
      const who = await caller(ctx, req);
      await ctx.catalog.createFromDescriptor(who, withServiceLists(req.body), false);
      return twice(reply, (await ctx.catalog.listApplications(who)).filter((a) => own(who, a)).map(oakApplication));
    });

    app.get('/api/applications', doc('Oakestra: applications (yours; all for admins), as a JSON string'), async (req, reply) =>
      twice(reply, (await ctx.catalog.listApplications(await caller(ctx, req))).map(oakApplication)));

    app.get<{ Params: { userid: string } }>('/api/applications/:userid', doc("Oakestra: the user's applications (the caller's own id only), as a JSON string"), async (req, reply) => {
      const who = await caller(ctx, req);
      if (req.params.userid !== who.id) throw new ApiError(401, 'Unauthorized');
      return twice(reply, (await ctx.catalog.listApplications(who)).filter((a) => own(who, a)).map(oakApplication));
    });

    app.get<Id>('/api/application/:id', doc('Oakestra: one application, as a JSON string'), async (req, reply) =>
      twice(reply, oakApplication(await appOf(await caller(ctx, req), req.params.id))));

    app.put<Id>('/api/application/:id', doc('Oakestra: change name, namespace (while nothing runs) or description'), async (req) => {
      // Oakestra's clients send the whole object back; the catalog reads only the fields it may change.
      await ctx.catalog.updateApplication(await caller(ctx, req), req.params.id, req.body);
      return { message: 'Application is updated' };
    });

    app.delete<Id>('/api/application/:id', doc('Oakestra: undeploy and delete an application with its services'), async (req) => {
      await ctx.catalog.deleteApplication(await caller(ctx, req), req.params.id);
      return { message: 'Application Deleted' };
    });

    // ---- services ----
    app.post('/api/service', doc('Oakestra: add the services of an SLA to an existing application (applications[0].applicationID)', true, descriptorSchema), async (req) => {
      const { services } = await ctx.catalog.addServices(await caller(ctx, req), req.body, false);
      return {
        job_id: services.at(-1)?.microserviceID ?? '',
        deployed_services: services.map((s) => ({ service_name: s.microservice_name, status: 200 })),
        failed_services: [],
      };
    });

    app.get('/api/services', doc('Oakestra: every service you can see (all for admins), as a JSON string'), async (req, reply) => {
      const who = await caller(ctx, req);
      const out = [];
      for (const a of await ctx.catalog.listApplications(who)) out.push(...(await oakServices(await ctx.catalog.listServices(who, a.applicationID), a)));
      return twice(reply, out);
    });

    app.get<{ Params: { appid: string } }>('/api/services/:appid', doc("Oakestra: an application's services, as a JSON string"), async (req, reply) => {
      const who = await caller(ctx, req);
      const a = await appOf(who, req.params.appid);
      return twice(reply, await oakServices(await ctx.catalog.listServices(who, a.applicationID), a));
    });

    app.get<Id>('/api/service/:id', doc('Oakestra: one service with instance_list, as a JSON string'), async (req, reply) =>
      twice(reply, await service(await caller(ctx, req), req.params.id)));

    app.put<Id>('/api/service/:id', doc('Oakestra: replace a service definition (an SLA with one microservice, or the service object)', true, { oneOf: [descriptorSchema, microserviceSchema] }), async (req) => {
      const b = req.body as { applications?: { microservices?: unknown[] }[] } | null;
      const ms = Array.isArray(b?.applications) ? b.applications[0]?.microservices?.[0] : b;
      await ctx.catalog.updateService(await caller(ctx, req), req.params.id, fromOakService(ms));
      return {};
    });

    app.delete<Id>('/api/service/:id', doc('Oakestra: undeploy and delete a service'), async (req) => {
      await ctx.catalog.deleteService(await caller(ctx, req), req.params.id);
      return { message: 'Job deleted' };
    });

    // ---- instances ----
    app.post<Id>('/api/service/:id/instance', doc('Oakestra: deploy one more instance; 200 {"message": "ok"}, scheduled in the background'), async (req) => {
      await ctx.catalog.deployInstance(await caller(ctx, req), req.params.id);
      return { message: 'ok' };
    });

    app.delete<{ Params: { id: string; n: string } }>('/api/service/:id/instance/:n', doc('Oakestra: undeploy the instance with this instance_number'), async (req) => {
      const who = await caller(ctx, req);
      if (!/^[0-9]{1,9}$/.test(req.params.n)) throw new ApiError(400, 'the instance number must be a non-negative integer');
      const n = Number(req.params.n);
      try {
        await ctx.catalog.undeployInstance(who, req.params.id, n);
      } catch (e) {
        // Oakestra drops undeployed instances from instance_list: one undeployed already is gone.
        if (e instanceof ApiError && e.status === 409) throw new ApiError(404, `instance ${n} of service ${req.params.id} not found`);
        throw e;
      }
      return { message: 'ok' };
    });

    oakestraUserRoutes(app, ctx);

    // ---- clusters ----
    app.get('/api/clusters', doc('Oakestra: all clusters (JSON text, `_id` a plain string)'), async (req, reply) => {
      await caller(ctx, req);
      return reply.type('application/json').send(JSON.stringify(ctx.clusters.list().map((c) => oakCluster(c, ctx.clusters.isActive(c)))));
    });

    app.get('/api/clusters/active', doc('Oakestra: active clusters (JSON text)'), async (req, reply) => {
      await caller(ctx, req);
      return reply.type('application/json').send(JSON.stringify(ctx.clusters.list().filter((c) => ctx.clusters.isActive(c)).map((c) => oakCluster(c, true))));
    });
  };
}
