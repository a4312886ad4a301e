// The dask-gateway v1 API, as the unmodified `dask_gateway` client uses it.
import type { FastifyInstance } from 'fastify';
import type { ClusterManager } from '../clusters/cluster-manager.js';
import { parseStatuses } from './status-filter.js';
import { clusterJson } from './cluster-json.js';
import { authorizedCluster } from './route-auth.js';
import type { SchemaTypeProvider } from './type-provider.js';

const LONG_POLL_MS = 20_000;
const nameParams = {
  type: 'object',
  required: ['cluster_name'],
  properties: { cluster_name: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' } },
} as const;
const errors = { '4xx': { $ref: 'error.json' }, '5xx': { $ref: 'error.json' } } as const;

/** dask-gateway's query flags: present without value, or a non-zero integer, mean true. */
const flag = (v: string | undefined) => v !== undefined && (v === '' || (/^\d+$/.test(v) && Number(v) !== 0) || v === 'true');

export async function daskGatewayRoutes(fastify: FastifyInstance, opts: { clusters: ClusterManager }): Promise<void> {
  const app = fastify.withTypeProvider<SchemaTypeProvider>();
  const { clusters } = opts;

  app.get(
    '/api/v1/options',
    {
      schema: { tags: ['dask-gateway'], summary: 'The cluster options form', response: { 200: { $ref: 'options-spec.json' }, ...errors } },
    },
    async (req) => ({ cluster_options: clusters.optionsFor(req.user!).spec() }),
  );

  app.get(
    '/api/v1/clusters/',
    {
      schema: {
        tags: ['dask-gateway'],
        summary: "The caller's clusters, by default those pending or running",
        querystring: { type: 'object', properties: { status: { type: 'string', description: 'Comma-separated statuses' } } },
        response: { 200: { $ref: 'cluster-list.json' }, ...errors },
      },
    },
    async (req) => {
      const statuses = parseStatuses(req.query.status, ['PENDING', 'RUNNING']);
      const list = await clusters.list(req.user!.name, statuses);
      return Object.fromEntries(list.map((c) => [c.name, clusterJson(c)]));
    },
  );

  app.post(
    '/api/v1/clusters/',
    {
      schema: {
        tags: ['dask-gateway'],
        summary: 'Create a cluster',
        body: { $ref: 'create-cluster.json' },
        response: { 201: { $ref: 'create-cluster-result.json' }, ...errors },
      },
    },
    async (req, reply) => {
      const c = await clusters.create(req.user!, req.body.cluster_options ?? {});
      return reply.code(201).send({ name: c.name });
    },
  );

  app.get(
    '/api/v1/clusters/:cluster_name',
    {
      schema: {
        tags: ['dask-gateway'],
        summary: 'One cluster; with ?wait, waits up to 20 s while it is starting',
        params: nameParams,
        querystring: { type: 'object', properties: { wait: { type: 'string' } } },
        response: { 200: { $ref: 'cluster.json' }, ...errors },
      },
    },
    async (req) => {
      const name = req.params.cluster_name;
      let c = await authorizedCluster(req, clusters, name);
      if (flag(req.query.wait)) {
        const deadline = Date.now() + LONG_POLL_MS;
        while (c.status === 'PENDING' && Date.now() < deadline) {
          await clusters.waitForChange(name, deadline - Date.now());
          c = (await clusters.get(name)) ?? c;
        }
      }
      return clusterJson(c);
    },
  );

  app.delete(
    '/api/v1/clusters/:cluster_name',
    {
      config: { auth: 'user-or-cluster' },
      schema: {
        tags: ['dask-gateway'],
        summary: 'Stop a cluster and everything it runs',
        params: nameParams,
        response: { 204: { type: 'null', description: 'Stopped' }, ...errors },
      },
    },
    async (req, reply) => {
      await authorizedCluster(req, clusters, req.params.cluster_name);
      await clusters.stop(req.params.cluster_name);
      return reply.code(204).send();
    },
  );

  app.post(
    '/api/v1/clusters/:cluster_name/scale',
    {
      schema: {
        tags: ['dask-gateway'],
        summary: 'Ask for a number of workers (turns adaptive scaling off)',
        params: nameParams,
        body: { $ref: 'scale.json' },
        response: { 200: { $ref: 'scale-result.json' }, ...errors },
      },
    },
    async (req) => {
      await authorizedCluster(req, clusters, req.params.cluster_name);
      return clusters.scale(req.params.cluster_name, req.body.count);
    },
  );

  app.post(
    '/api/v1/clusters/:cluster_name/adapt',
    {
      schema: {
        tags: ['dask-gateway'],
        summary: 'Scale adaptively between minimum and maximum (decided in the scheduler)',
        params: nameParams,
        body: { $ref: 'adapt.json' },
        response: { 200: { $ref: 'scale-result.json' }, ...errors },
      },
    },
    async (req) => {
      await authorizedCluster(req, clusters, req.params.cluster_name);
      const b = req.body;
      return clusters.adapt(req.params.cluster_name, b.minimum ?? null, b.maximum ?? null, b.active ?? true);
    },
  );

  app.post(
    '/api/v1/clusters/:cluster_name/heartbeat',
    {
      config: { auth: 'cluster' },
      schema: {
        tags: ['dask-gateway'],
        summary: "The scheduler's heartbeat (cluster token only)",
        params: nameParams,
        body: { $ref: 'heartbeat.json' },
        response: { 204: { type: 'null', description: 'Recorded' }, ...errors },
      },
    },
    async (req, reply) => {
      await clusters.heartbeat(req.params.cluster_name, req.body);
      return reply.code(204).send();
    },
  );
}
