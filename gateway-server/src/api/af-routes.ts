// AF Gateway's own cluster API (/api/af/clusters): the richer view panels need, including why a
// cluster failed and what each worker is doing.
import type { FastifyInstance } from 'fastify';
import type { ConnectInfo } from '@af-gateway/schemas';
import type { ClusterManager } from '../clusters/cluster-manager.js';
import { forbidden } from '../errors.js';
import { parseStatuses } from './status-filter.js';
import { afClusterJson } from './cluster-json.js';
import { authorizedCluster } from './route-auth.js';
import type { SchemaTypeProvider } from './type-provider.js';

const errors = { '4xx': { $ref: 'error.json' }, '5xx': { $ref: 'error.json' } } as const;

/** How kernels reach this gateway, known once it listens (the port may be chosen by the OS). */
export type ConnectTarget = () => Omit<ConnectInfo, 'username'>;

export async function afRoutes(fastify: FastifyInstance, opts: { clusters: ClusterManager; connectTarget: ConnectTarget }): Promise<void> {
  const app = fastify.withTypeProvider<SchemaTypeProvider>();
  const { clusters } = opts;

  app.get(
    '/api/af/connect-info',
    {
      schema: {
        tags: ['af'],
        summary: "How the caller's notebook kernels connect the dask_gateway client (address, proxy address, auth)",
        response: { 200: { $ref: 'connect-info.json' }, ...errors },
      },
    },
    async (req) => ({ ...opts.connectTarget(), username: req.user!.name }),
  );

  app.get(
    '/api/af/clusters',
    {
      schema: {
        tags: ['af'],
        summary: "The caller's clusters (all users' with all=true, for administrators)",
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            status: { type: 'string', description: 'Comma-separated statuses; default pending,running,stopping' },
            all: { type: 'boolean', default: false },
          },
        },
        response: { 200: { $ref: 'af-cluster-list.json' }, ...errors },
      },
    },
    async (req) => {
      const statuses = parseStatuses(req.query.status, ['PENDING', 'RUNNING', 'STOPPING']);
      if (req.query.all && !req.user!.admin) throw forbidden("Only administrators may list every user's clusters");
      const list = await clusters.list(req.query.all ? undefined : req.user!.name, statuses);
      return {
        clusters: await Promise.all(
          list.map(async (c) => {
            const workers = await clusters.workersOf(c.name);
            return afClusterJson(c, workers, clusters.groupsJson(c, workers));
          }),
        ),
      };
    },
  );

  app.get(
    '/api/af/clusters/:cluster_name',
    {
      schema: {
        tags: ['af'],
        summary: 'One cluster with its workers and, when it failed, the reason',
        params: { type: 'object', required: ['cluster_name'], properties: { cluster_name: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' } } },
        response: { 200: { $ref: 'af-cluster.json' }, ...errors },
      },
    },
    async (req) => {
      const c = await authorizedCluster(req, clusters, req.params.cluster_name);
      const workers = await clusters.workersOf(c.name);
      return afClusterJson(c, workers, clusters.groupsJson(c, workers));
    },
  );

  const clusterParam = { cluster_name: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' } } as const;
  const groupParams = {
    type: 'object',
    required: ['cluster_name', 'group'],
    properties: { ...clusterParam, group: { type: 'string', minLength: 1, maxLength: 64 } },
  } as const;

  app.get(
    '/api/af/clusters/:cluster_name/groups',
    {
      schema: {
        tags: ['af'],
        summary: "A cluster's worker groups (default first) with their targets, starting, running and pending workers and why they wait",
        params: { type: 'object', required: ['cluster_name'], properties: clusterParam },
        response: { 200: { $ref: 'af-worker-group-list.json' }, ...errors },
      },
    },
    async (req) => {
      const c = await authorizedCluster(req, clusters, req.params.cluster_name);
      return { groups: clusters.groupsJson(c, await clusters.workersOf(c.name)) };
    },
  );

  // PUT (idempotent: the target, the range) and POST (as the dask-gateway scale and adapt routes) do the same.
  for (const method of ['PUT', 'POST'] as const) {
    app.route({
      method,
      url: '/api/af/clusters/:cluster_name/groups/:group/scale',
      schema: {
        tags: ['af'],
        summary:
          "Sets a worker group's target (default: what the dask-gateway client's scale sets). 404 for a group the cluster does not have, 422 past a limit (nothing changes then)",
        params: groupParams,
        body: { $ref: 'scale.json' },
        response: { 200: { $ref: 'af-worker-group.json' }, ...errors },
      },
      handler: async (req) => {
        const c = await authorizedCluster(req, clusters, req.params.cluster_name);
        return clusters.scaleGroup(c.name, req.params.group, req.body.count);
      },
    });
    app.route({
      method,
      url: '/api/af/clusters/:cluster_name/groups/:group/adapt',
      schema: {
        tags: ['af'],
        summary:
          "Scales a worker group adaptively between minimum and maximum (active false: off, the workers stay). For default it is the dask-gateway client's adapt; another group follows the demand of the tasks that need its resources, which its scheduler reports. 404 for a group the cluster does not have, 422 for minimum > maximum; a range past a limit is capped and the group's message says what is used",
        params: groupParams,
        body: { $ref: 'adapt.json' },
        response: { 200: { $ref: 'af-worker-group.json' }, ...errors },
      },
      handler: async (req) => {
        const c = await authorizedCluster(req, clusters, req.params.cluster_name);
        const b = req.body;
        return clusters.adaptGroup(c.name, req.params.group, b.minimum ?? null, b.maximum ?? null, b.active ?? true);
      },
    });
  }
}
