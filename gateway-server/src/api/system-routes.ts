// Health, version, the OpenAPI document and Prometheus metrics.
import type { FastifyInstance } from 'fastify';
import type { Metrics } from '../metrics.js';
import type { SchemaTypeProvider } from './type-provider.js';

export interface SystemRoutesOptions {
  version: string;
  metrics: Metrics;
  health: () => Promise<Record<string, string>>;
}

export async function systemRoutes(fastify: FastifyInstance, opts: SystemRoutesOptions): Promise<void> {
  const app = fastify.withTypeProvider<SchemaTypeProvider>();
  app.get(
    '/api/health',
    {
      config: { auth: 'none' },
      schema: { tags: ['system'], summary: 'Liveness and readiness', response: { 200: { $ref: 'health.json' }, 503: { $ref: 'health.json' } } },
    },
    async (_req, reply) => {
      const checks = await opts.health();
      const ok = Object.values(checks).every((v) => v === 'ok');
      return reply.code(ok ? 200 : 503).send({ status: ok ? 'pass' : 'fail', checks });
    },
  );

  // Liveness only (the process answers): a standby replica answers it too, but not /api/health.
  app.get(
    '/api/health/live',
    {
      config: { auth: 'none' },
      schema: { tags: ['system'], summary: 'Liveness (the process answers), for a liveness probe', response: { 200: { $ref: 'health.json' } } },
    },
    async () => ({ status: 'pass' as const, checks: { process: 'ok' } }),
  );

  app.get(
    '/api/version',
    {
      config: { auth: 'none' },
      schema: { tags: ['system'], summary: 'Server version', response: { 200: { $ref: 'version.json' } } },
    },
    async () => ({ version: opts.version }),
  );

  app.get(
    '/api/af/openapi.json',
    {
      config: { auth: 'none' },
      schema: {
        tags: ['system'],
        summary: 'This OpenAPI document',
        response: { 200: { type: 'object', additionalProperties: true, description: 'OpenAPI 3.1' } },
      },
    },
    async () => fastify.swagger(),
  );

  app.get(
    '/metrics',
    {
      config: { auth: 'metrics' },
      schema: {
        tags: ['system'],
        summary: 'Prometheus metrics (scraper token or an administrator)',
        response: {
          200: { description: 'Prometheus text format', content: { 'text/plain': { schema: { type: 'string' } } } },
          '4xx': { $ref: 'error.json' },
          '5xx': { $ref: 'error.json' },
        },
      },
    },
    async (_req, reply) => {
      return reply.type(opts.metrics.registry.contentType).send(await opts.metrics.registry.metrics());
    },
  );
}
