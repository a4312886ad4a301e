// /api/af/rucio/: dataset discovery, replicas, rules, upload URLs and output registration at the facility's
// Rucio instances, as the calling user. Rucio's NDJSON streams are passed through as they arrive,
// so a 100k-file dataset is never held in memory and its first rows reach the panel at once.
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { AppError, notFound } from '../errors.js';
import type { RucioClient } from './rucio-client.js';
import { clashError, ensureDataset, lookUp, nameClash, registerFiles, writePfns } from './rucio-lake.js';
import type { SchemaTypeProvider } from '../api/type-provider.js';

const errors = { '4xx': { $ref: 'error.json' }, '5xx': { $ref: 'error.json' } } as const;
const NDJSON = 'application/x-json-stream';
// Rucio's identifiers are ASCII: anything else it answers with a 500 (it echoes the value in a header).
const scopePart = { type: 'string', $ref: 'rucio-replicas-request.json#/$defs/scope' } as const;
const namePart = { type: 'string', $ref: 'rucio-replicas-request.json#/$defs/name' } as const;
const enc = encodeURIComponent;
/** A 200 whose body is JSON of `ref`, with the error answers. */
const answers = <R extends string>(ref: R) => ({ 200: { $ref: ref }, ...errors });
/** A 200 that streams NDJSON, one `ref` per line (described as the array of its lines), with the error answers. */
const streamOf = (ref: string, line: object = { $ref: ref }) => ({
  200: { description: `NDJSON: one ${ref.replace(/\.json$/, '')} per line`, content: { [NDJSON]: { schema: { type: 'array', items: line } } } },
  ...errors,
});

export async function rucioRoutes(fastify: FastifyInstance, opts: { instances: Map<string, RucioClient> }): Promise<void> {
  const app = fastify.withTypeProvider<SchemaTypeProvider>();
  const client = (name: string) => {
    const c = opts.instances.get(name);
    if (!c) throw notFound(`Rucio instance ${name} (this gateway knows ${[...opts.instances.keys()].join(', ') || 'none'})`);
    return c;
  };
  const stream = (reply: FastifyReply, res: Response) => {
    reply.type(NDJSON).header('cache-control', 'no-store');
    return reply.send(res.body ? Readable.fromWeb(res.body as import('node:stream/web').ReadableStream) : '');
  };
  const instanceParams = { type: 'object', required: ['instance'], properties: { instance: { type: 'string' } } } as const;
  const didParams = {
    type: 'object',
    required: ['instance', 'scope', 'name'],
    properties: { instance: { type: 'string' }, scope: scopePart, name: namePart },
  } as const;

  app.get(
    '/api/af/rucio/instances',
    {
      schema: { tags: ['rucio'], summary: 'The Rucio instances of this facility', response: { 200: { $ref: 'rucio-instance-list.json' }, ...errors } },
    },
    async () => ({ instances: [...opts.instances.values()].map((c) => ({ name: c.cfg.name, url: c.cfg.url, default_scheme: c.cfg.default_scheme })) }),
  );

  app.get(
    '/api/af/rucio/:instance/whoami',
    {
      schema: { tags: ['rucio'], summary: 'The Rucio account the caller acts as', params: instanceParams, response: answers('rucio-account.json') },
    },
    async (req) => client(req.params.instance).json(req.user!, 'GET', '/accounts/whoami'),
  );

  app.get(
    '/api/af/rucio/:instance/scopes',
    {
      schema: { tags: ['rucio'], summary: 'All scopes', params: instanceParams, response: answers('rucio-scope-list.json') },
    },
    async (req) => client(req.params.instance).json(req.user!, 'GET', '/scopes/'),
  );

  app.get(
    '/api/af/rucio/:instance/search/:scope',
    {
      schema: {
        tags: ['rucio'],
        summary: 'Search DIDs of a scope by name wildcard, type and metadata filters (NDJSON)',
        params: { type: 'object', required: ['instance', 'scope'], properties: { instance: { type: 'string' }, scope: scopePart } },
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            name: { type: 'string', default: '*', pattern: '^[!-~]+$', description: 'Name with * wildcards' },
            type: { $ref: 'rucio-search-type.json', default: 'collection' },
            filters: { type: 'string', description: 'More metadata filters as a JSON object, e.g. {"datatype":"AOD"}' },
            long: { type: 'boolean', default: true, description: 'Type, bytes and length with each name' },
          },
        },
        // long=false: each line is a name alone
        response: streamOf('rucio-did.json', { anyOf: [{ $ref: 'rucio-did.json' }, { type: 'string', description: 'A name (long=false)' }] }),
      },
    },
    async (req, reply) => {
      const q = new URLSearchParams({ type: req.query.type ?? 'collection', name: req.query.name ?? '*' });
      if (req.query.long !== false) q.set('long', '1');
      if (req.query.filters) {
        let extra: unknown;
        try {
          extra = JSON.parse(req.query.filters);
        } catch {
          extra = null;
        }
        if (!extra || typeof extra !== 'object' || Array.isArray(extra)) {
          throw new AppError(400, 'invalid_filters', 'filters must be a JSON object of metadata key: value, e.g. {"datatype": "AOD"}');
        }
        for (const [k, v] of Object.entries(extra)) q.set(k, String(v));
      }
      return stream(reply, await client(req.params.instance).request(req.user!, 'GET', `/dids/${enc(req.params.scope)}/dids/search?${q}`));
    },
  );

  app.get(
    '/api/af/rucio/:instance/dids/:scope/:name',
    {
      schema: { tags: ['rucio'], summary: 'A DID: type, size, length, status', params: didParams, response: answers('rucio-did.json') },
    },
    async (req) => client(req.params.instance).json(req.user!, 'GET', `/dids/${enc(req.params.scope)}/${enc(req.params.name)}?dynamic_depth=FILE`),
  );

  app.get(
    '/api/af/rucio/:instance/dids/:scope/:name/meta',
    {
      schema: { tags: ['rucio'], summary: 'Metadata of a DID', params: didParams, response: answers('rucio-did-meta.json') },
    },
    async (req) => client(req.params.instance).json(req.user!, 'GET', `/dids/${enc(req.params.scope)}/${enc(req.params.name)}/meta`),
  );

  app.get(
    '/api/af/rucio/:instance/dids/:scope/:name/content',
    {
      schema: { tags: ['rucio'], summary: 'What a container or dataset holds (NDJSON)', params: didParams, response: streamOf('rucio-did.json') },
    },
    async (req, reply) =>
      stream(reply, await client(req.params.instance).request(req.user!, 'GET', `/dids/${enc(req.params.scope)}/${enc(req.params.name)}/dids`)),
  );

  app.get(
    '/api/af/rucio/:instance/dids/:scope/:name/files',
    {
      schema: { tags: ['rucio'], summary: 'Files of a DID with sizes and checksums (NDJSON)', params: didParams, response: streamOf('rucio-file.json') },
    },
    async (req, reply) =>
      stream(reply, await client(req.params.instance).request(req.user!, 'GET', `/dids/${enc(req.params.scope)}/${enc(req.params.name)}/files`)),
  );

  app.get(
    '/api/af/rucio/:instance/dids/:scope/:name/rules',
    {
      schema: { tags: ['rucio'], summary: 'Replication rules of a DID (NDJSON)', params: didParams, response: streamOf('rucio-rule.json') },
    },
    async (req, reply) =>
      stream(reply, await client(req.params.instance).request(req.user!, 'GET', `/dids/${enc(req.params.scope)}/${enc(req.params.name)}/rules`)),
  );

  app.post(
    '/api/af/rucio/:instance/replicas',
    {
      schema: {
        tags: ['rucio'],
        summary: 'Replicas and PFNs of DIDs for the chosen schemes (NDJSON, one file per line)',
        params: instanceParams,
        body: { $ref: 'rucio-replicas-request.json' },
        response: streamOf('rucio-replica.json'),
      },
    },
    async (req, reply) => {
      const body: Record<string, unknown> = { dids: req.body.dids, all_states: false, ignore_availability: false };
      if (req.body.schemes?.length) body.schemes = req.body.schemes;
      if (req.body.rse_expression) body.rse_expression = req.body.rse_expression;
      if (req.body.sort) body.sort = req.body.sort;
      return stream(reply, await client(req.params.instance).request(req.user!, 'POST', '/replicas/list', body));
    },
  );

  app.post(
    '/api/af/rucio/:instance/rules',
    {
      schema: {
        tags: ['rucio'],
        summary: 'Make DIDs available on RSEs: a replication rule of the caller',
        params: instanceParams,
        body: { $ref: 'rucio-rule-request.json' },
        response: { 201: { $ref: 'rucio-rule-result.json' }, ...errors },
      },
    },
    async (req, reply) => {
      const c = client(req.params.instance);
      const who = await c.json<{ account: string }>(req.user!, 'GET', '/accounts/whoami');
      const ids = await c.json<string[]>(req.user!, 'POST', '/rules/', {
        dids: req.body.dids,
        account: who.account,
        copies: req.body.copies ?? 1,
        rse_expression: req.body.rse_expression,
        lifetime: req.body.lifetime === undefined ? 86400 : req.body.lifetime,
        grouping: 'DATASET',
        ...(req.body.comment ? { comment: req.body.comment } : {}),
      });
      return reply.code(201).send({ rule_ids: ids });
    },
  );

  app.get(
    '/api/af/rucio/:instance/rules/:id',
    {
      schema: {
        tags: ['rucio'],
        summary: 'A rule and its state (REPLICATING, OK, STUCK, …)',
        params: {
          type: 'object',
          required: ['instance', 'id'],
          properties: { instance: { type: 'string' }, id: { type: 'string', pattern: '^[0-9a-fA-F]{32}$' } },
        },
        response: answers('rucio-rule.json'),
      },
    },
    async (req) => client(req.params.instance).json(req.user!, 'GET', `/rules/${req.params.id}`),
  );

  app.post(
    '/api/af/rucio/:instance/upload-urls',
    {
      schema: {
        tags: ['rucio'],
        summary: 'Where on an RSE to write files (davs PFNs) and what Rucio already has under their names, before uploading and registering them',
        params: instanceParams,
        body: { $ref: 'rucio-upload-urls-request.json' },
        response: answers('rucio-upload-urls-result.json'),
      },
    },
    async (req) => {
      const c = client(req.params.instance);
      const { rse } = req.body;
      const scope = req.body.scope ?? req.body.dataset?.scope;
      const dids = req.body.files.map((f, i) => {
        const s = f.scope ?? scope;
        if (!s)
          throw new AppError(
            422,
            'invalid_request',
            `files[${i}] (${f.name}) has no scope: give it one, or give the request a scope (or dataset) for all files`,
          );
        return { scope: s, name: f.name };
      });
      const known = await lookUp(c, req.user!, rse, dids);
      const problems = dids.flatMap((d) => {
        const there = known.get(`${d.scope}:${d.name}`);
        const why = there && nameClash(d, there);
        return why ? [why] : [];
      });
      if (problems.length) throw clashError(problems);
      const pfns = await writePfns(c, req.user!, rse, dids);
      const files = dids.map((d) => {
        const pfn = pfns.get(`${d.scope}:${d.name}`);
        if (!pfn) throw new AppError(502, 'rucio_http_502', `Rucio (${c.cfg.name}) gave no davs PFN on ${rse} for ${d.scope}:${d.name}`);
        const there = known.get(`${d.scope}:${d.name}`);
        return { ...d, pfn, exists: there ? { adler32: there.adler32, bytes: there.bytes, on_rse: there.onRse } : null };
      });
      // the dataset last, so that nothing is made for a request refused above
      if (!req.body.dataset) return { rse, files };
      return { rse, dataset: { ...req.body.dataset, created: await ensureDataset(c, req.user!, req.body.dataset) }, files };
    },
  );

  app.post(
    '/api/af/rucio/:instance/register',
    {
      schema: {
        tags: ['rucio'],
        summary: 'Register files already on an RSE as replicas and attach them to a dataset (created if missing); safe to repeat',
        params: instanceParams,
        body: { $ref: 'rucio-register-request.json' },
        response: { 201: { $ref: 'rucio-register-result.json' }, ...errors },
      },
    },
    async (req, reply) => {
      const c = client(req.params.instance);
      const { rse, dataset, files, lifetime } = req.body;
      const records = files.map((f) => ({ ...f, scope: f.scope ?? dataset.scope }));
      const done = await registerFiles(c, req.user!, { rse, dataset, files: records, lifetime });
      return reply.code(201).send({ dataset, created: done.created, files: files.length, registered: done.registered, rse });
    },
  );
}
