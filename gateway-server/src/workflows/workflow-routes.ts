// /api/af/workflows: check and submit yadage-style workflows, follow their runs (DAG, streamed step
// logs), cancel, retry, delete, and fetch output files from a run's workspace.
import { realpath } from 'node:fs/promises';
import { relative, resolve, sep, isAbsolute } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import type { WorkflowValidation } from '@af-gateway/schemas';
import { AppError, notFound } from '../errors.js';
import { openConfined, UnsafePathError } from '../files/no-follow.js';
import type { SchemaTypeProvider } from '../api/type-provider.js';
import { readWorkflow } from './workflow-loader.js';
import { stepFiles } from './step-files.js';
import { MAX_DATA_BYTES } from './run-data.js';
import { requiredParameters, type WorkflowEngine } from './workflow-engine.js';

const errors = { '4xx': { $ref: 'error.json' }, '5xx': { $ref: 'error.json' } } as const;
const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: '^[0-9a-f]{12}$' } } } as const;
const LOG_POLL_MS = 300;

/** The largest submission: the bundle and up to MAX_DATA_BYTES of input files, base64-encoded. */
const RUN_BODY_LIMIT = 1024 * 1024 + Math.ceil((MAX_DATA_BYTES * 4) / 3) + 64 * 1024;

export async function workflowRoutes(fastify: FastifyInstance, opts: { engine: WorkflowEngine }): Promise<void> {
  const app = fastify.withTypeProvider<SchemaTypeProvider>();
  const { engine } = opts;

  app.post(
    '/api/af/workflows/validate',
    {
      schema: {
        tags: ['workflows'],
        summary: 'Check a yadage-style workflow and its step files; every problem with its JSON path and file',
        body: { $ref: 'workflow-bundle.json' },
        response: { 200: { $ref: 'workflow-validation.json' }, ...errors },
      },
    },
    async (req): Promise<WorkflowValidation> => {
      const { spec, problems } = await readWorkflow(req.body.entry, req.body.files, req.user!.name);
      const tooLarge = spec ? engine.parameterProblems(spec, req.body.parameters ?? {}) : [];
      return spec && !tooLarge.length
        ? { valid: true, stages: spec.stages.map((s) => s.name), parameters: requiredParameters(spec), errors: [] }
        : { valid: false, errors: spec ? tooLarge : problems };
    },
  );

  app.post(
    '/api/af/workflows',
    {
      // a run may carry its input files (8 MiB decoded, as base64 a third more) beside its bundle
      bodyLimit: RUN_BODY_LIMIT,
      schema: {
        tags: ['workflows'],
        summary: 'Run a workflow: its files, init parameters and where its steps run',
        body: { $ref: 'workflow-bundle.json' },
        response: { 201: { $ref: 'workflow-run.json' }, ...errors },
      },
    },
    async (req, reply) => reply.code(201).send(await engine.submit(req.user!, req.body)),
  );

  app.get(
    '/api/af/workflows',
    {
      schema: {
        tags: ['workflows'],
        summary: "The caller's workflow runs (an admin's: everyone's), newest first",
        response: { 200: { $ref: 'workflow-run-list.json' }, ...errors },
      },
    },
    async (req) => ({ runs: await engine.list(req.user!) }),
  );

  app.get(
    '/api/af/workflows/:id',
    {
      schema: {
        tags: ['workflows'],
        summary: 'A run with its DAG: stages, steps (nodes) with their states, parameters and outputs, edges',
        params: idParams,
        response: { 200: { $ref: 'workflow-dag.json' }, ...errors },
      },
    },
    async (req) => engine.get(req.user!, req.params.id),
  );

  app.post(
    '/api/af/workflows/:id/cancel',
    {
      schema: {
        tags: ['workflows'],
        summary: 'Stop a run: running steps are stopped, the rest will not start',
        params: idParams,
        response: { 200: { $ref: 'workflow-run.json' }, ...errors },
      },
    },
    async (req) => engine.cancel(req.user!, req.params.id),
  );

  app.post(
    '/api/af/workflows/:id/retry',
    {
      schema: {
        tags: ['workflows'],
        summary: 'Run the failed or cancelled steps of a finished run again',
        params: idParams,
        response: { 200: { $ref: 'workflow-run.json' }, ...errors },
      },
    },
    async (req) => engine.retry(req.user!, req.params.id),
  );

  app.delete(
    '/api/af/workflows/:id',
    {
      schema: { tags: ['workflows'], summary: 'Delete a finished run and its workspace', params: idParams, response: { 204: { type: 'null' }, ...errors } },
    },
    async (req, reply) => {
      await engine.remove(req.user!, req.params.id);
      return reply.code(204).send();
    },
  );

  app.get(
    '/api/af/workflows/:id/nodes/:node/log',
    {
      schema: {
        tags: ['workflows'],
        summary: "A step's log (stdout and stderr of every attempt); with follow=true it streams until the step finished",
        params: {
          type: 'object',
          required: ['id', 'node'],
          properties: { id: idParams.properties.id, node: { type: 'string', minLength: 1, maxLength: 200 } },
        },
        querystring: { type: 'object', properties: { follow: { type: 'boolean', default: false } } },
        response: { 200: { description: 'The log', content: { 'text/plain': { schema: { type: 'string' } } } }, ...errors },
      },
    },
    async (req, reply) => {
      const { node, live, workspace } = await engine.node(req.user!, req.params.id, req.params.node);
      const file = stepFiles(node.workdir).log;
      reply.type('text/plain; charset=utf-8').header('cache-control', 'no-store').header('x-content-type-options', 'nosniff');
      // The step writes its own directory: its log is opened without following links out of the run.
      const openLog = () =>
        openConfined(workspace, file).catch((err: unknown) => {
          if (err instanceof UnsafePathError) throw new AppError(409, 'unsafe_file', `The step's log cannot be shown: ${err.message}`);
          throw err;
        });
      if (!req.query.follow) {
        const fh = await openLog();
        return reply.send(fh ? fh.createReadStream() : '');
      }
      let closed = false;
      req.raw.on('close', () => (closed = true));
      async function* follow(): AsyncGenerator<Buffer> {
        let offset = 0;
        for (;;) {
          const stillRunning = live(); // asked before reading: the last read after the end sees everything
          const fh = await openLog().catch(() => null);
          if (fh) {
            try {
              for (;;) {
                const buf = Buffer.alloc(64 * 1024);
                const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
                if (!bytesRead) break;
                offset += bytesRead;
                yield buf.subarray(0, bytesRead);
              }
            } finally {
              await fh.close();
            }
          }
          if (!stillRunning || closed) return;
          await sleep(LOG_POLL_MS);
        }
      }
      return reply.send(Readable.from(follow()));
    },
  );

  app.get(
    '/api/af/workflows/:id/files/*',
    {
      schema: {
        tags: ['workflows'],
        summary: "A file of the run's workspace (an output), by its path relative to the workspace",
        params: { type: 'object', required: ['id'], properties: { id: idParams.properties.id, '*': { type: 'string' } } },
        response: { 200: { description: 'The file', content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } }, ...errors },
      },
    },
    async (req, reply) => {
      const workspace = await engine.workspaceOf(req.user!, req.params.id);
      const wanted = req.params['*'] ?? '';
      if (!wanted || isAbsolute(wanted)) throw new AppError(400, 'bad_path', "Name a file by its path relative to the run's workspace");
      const root = await realpath(workspace).catch(() => workspace);
      // Resolved by its name only: following the links a step planted (realpath) would tell which
      // paths outside the workspace exist, as the gateway sees them (400 for one that does, 404 else).
      const full = resolve(root, wanted);
      const rel = relative(root, full);
      if (!rel || rel.startsWith('..') || isAbsolute(rel) || rel.split(sep)[0] === '..')
        throw new AppError(400, 'bad_path', `${wanted} is outside the run's workspace`);
      const fh = await openConfined(root, full).catch((err: unknown) => {
        if (err instanceof UnsafePathError) throw new AppError(400, 'not_a_file', `${wanted} cannot be downloaded: ${err.message.replace(full, wanted)}`);
        throw err;
      });
      if (!fh) throw notFound(`File ${wanted} in the run's workspace`);
      const st = await fh.stat();
      return reply
        .type('application/octet-stream')
        .header('content-length', st.size)
        .header('content-disposition', `attachment; filename="${encodeURIComponent(full.split(sep).pop()!)}"`)
        .send(fh.createReadStream());
    },
  );
}
