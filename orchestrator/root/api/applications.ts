// Applications, services and instances (SPEC §7). Descriptor bodies are validated by the descriptor
// module (so every error has its JSON path); their schemas reach the OpenAPI document through
// `config.docBody` (see server.ts) instead of fastify's own body validation.
import type { FastifyInstance } from 'fastify';
import { descriptorSchema, microserviceSchema } from '../../descriptor/schema.ts';
import { caller, created, type ApiContext } from './context.ts';
import { API_V1 } from './paths.ts';

const bearer = [{ bearer: [] }];
const idParam = { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } } as const;
const deployQuery = {
  type: 'object',
  properties: { deploy: { type: 'boolean', description: 'also deploy one instance of every new service' } },
} as const;

interface Id { Params: { id: string } }

export function applicationRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.post<{ Querystring: { deploy?: boolean } }>(`${API_V1}/application`, {
    schema: { tags: ['applications'], summary: 'Create the applications and services of an SLA (v2.0)', security: bearer, querystring: deployQuery },
    config: { docBody: descriptorSchema },
  }, async (req, reply) => {
    const who = await caller(ctx, req);
    return created(reply, await ctx.catalog.createFromDescriptor(who, req.body, req.query.deploy === true));
  });

  app.get(`${API_V1}/applications`, { schema: { tags: ['applications'], summary: 'Your applications (all, for admins)', security: bearer } }, async (req) =>
    ctx.catalog.listApplications(await caller(ctx, req)));

  app.get<Id>(`${API_V1}/application/:id`, { schema: { tags: ['applications'], summary: 'One application', security: bearer, params: idParam } }, async (req) =>
    ctx.catalog.getApplication(await caller(ctx, req), req.params.id));

  app.put<Id>(`${API_V1}/application/:id`, {
    schema: {
      tags: ['applications'], summary: 'Change description; rename while nothing runs', security: bearer, params: idParam,
    },
    config: { docBody: { type: 'object', properties: { application_name: { type: 'string' }, application_namespace: { type: 'string' }, application_desc: { type: 'string' } } } },
  }, async (req) => ctx.catalog.updateApplication(await caller(ctx, req), req.params.id, req.body));

  app.delete<Id>(`${API_V1}/application/:id`, { schema: { tags: ['applications'], summary: 'Undeploy and delete an application', security: bearer, params: idParam } }, async (req) => {
    await ctx.catalog.deleteApplication(await caller(ctx, req), req.params.id);
    return { deleted: req.params.id };
  });

  app.get<{ Params: { appid: string } }>(`${API_V1}/services/:appid`, {
    schema: { tags: ['services'], summary: 'Services of an application', security: bearer, params: { type: 'object', properties: { appid: { type: 'string', maxLength: 64 } } } },
  }, async (req) => ctx.catalog.listServices(await caller(ctx, req), req.params.appid));

  app.post<{ Querystring: { deploy?: boolean } }>(`${API_V1}/service`, {
    schema: { tags: ['services'], summary: 'Add the microservices of an SLA to existing applications (applicationID set)', security: bearer, querystring: deployQuery },
    config: { docBody: descriptorSchema },
  }, async (req, reply) => {
    const who = await caller(ctx, req);
    return created(reply, await ctx.catalog.addServices(who, req.body, req.query.deploy === true));
  });

  app.get<Id>(`${API_V1}/service/:id`, { schema: { tags: ['services'], summary: 'One service with its instances, states and history', security: bearer, params: idParam } }, async (req) =>
    ctx.catalog.getService(await caller(ctx, req), req.params.id));

  app.put<Id>(`${API_V1}/service/:id`, {
    schema: { tags: ['services'], summary: 'Replace a microservice definition (applies to instances deployed afterwards)', security: bearer, params: idParam },
    config: { docBody: microserviceSchema },
  }, async (req) => ctx.catalog.updateService(await caller(ctx, req), req.params.id, req.body));

  app.delete<Id>(`${API_V1}/service/:id`, { schema: { tags: ['services'], summary: 'Undeploy and delete a service', security: bearer, params: idParam } }, async (req) => {
    await ctx.catalog.deleteService(await caller(ctx, req), req.params.id);
    return { deleted: req.params.id };
  });

  app.post<Id>(`${API_V1}/service/:id/instance`, {
    schema: { tags: ['instances'], summary: 'Deploy one more instance (scheduled in the background)', security: bearer, params: idParam },
  }, async (req, reply) => reply.code(202).send(await ctx.catalog.deployInstance(await caller(ctx, req), req.params.id)));

  app.delete<{ Params: { id: string; n: number } }>(`${API_V1}/service/:id/instance/:n`, {
    schema: {
      tags: ['instances'], summary: 'Undeploy one instance', security: bearer,
      params: { type: 'object', required: ['id', 'n'], properties: { id: { type: 'string', maxLength: 64 }, n: { type: 'integer', minimum: 0, maximum: 1e9 } } },
    },
  }, async (req) => ctx.catalog.undeployInstance(await caller(ctx, req), req.params.id, req.params.n));
}
