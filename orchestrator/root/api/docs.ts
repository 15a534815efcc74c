// The API documentation at /api/docs (OpenAPI JSON/YAML and the Swagger UI), loaded on its first
// request: swagger-ui and its static file server cost root's start memory it rarely needs (issue 16).
// @fastify/swagger stays on the main app, where it must see every route being added; the first
// request to /api/docs builds a small Fastify app with the finished document (static mode) and the
// UI, and every docs request is answered by it (inject), so paths and answers are the plugins' own.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { StaticDocumentSpec } from '@fastify/swagger';

export const DOCS_PREFIX = '/api/docs';

/** Headers of the inner answer that belong to its own connection, not to the one we answer on. */
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'date']);

export function lazyDocs(app: FastifyInstance): void {
  let ui: Promise<FastifyInstance> | undefined;
  const build = async (): Promise<FastifyInstance> => {
    const [{ default: Fastify }, { default: swagger }, { default: swaggerUi }] = await Promise.all([
      import('fastify'), import('@fastify/swagger'), import('@fastify/swagger-ui'),
    ]);
    const inner = Fastify({ logger: false });
    // The document root builds is OpenAPI 3.0; the type of app.swagger() is the union of every version.
    await inner.register(swagger, { mode: 'static', specification: { document: app.swagger() as StaticDocumentSpec['document'] } });
    await inner.register(swaggerUi, { routePrefix: DOCS_PREFIX });
    await inner.ready();
    return inner;
  };
  const forward = async (req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    ui ??= build().catch((e: unknown) => {
      ui = undefined;
      throw e;
    });
    const r = await (await ui).inject({ method: req.method as 'GET' | 'HEAD', url: req.url, headers: req.headers });
    // Not a docs path: root's own 404, as for any other unknown path.
    if (r.statusCode === 404) {
      reply.callNotFound();
      return reply;
    }
    for (const [k, v] of Object.entries(r.headers)) if (!HOP.has(k.toLowerCase()) && v !== undefined) void reply.header(k, v);
    return reply.code(r.statusCode).send(r.rawPayload);
  };
  app.get(DOCS_PREFIX, { schema: { hide: true } }, forward);
  app.get(`${DOCS_PREFIX}/*`, { schema: { hide: true } }, forward);
}
