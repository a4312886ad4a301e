// /api/af/workflows: check and submit yadage-style workflows, follow their runs (DAG, streamed step
// logs), cancel, retry, delete, and fetch output files from a run's workspace.
import { realpath } from 'node:fs/promises';
import { relative, resolve, sep, isAbsolute } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { WorkflowValidation } from '@af-gateway/schemas';
import { AppError, notFound } from '../errors.js';
import { openConfined, UnsafePathError } from '../files/no-follow.js';
import type { SchemaTypeProvider } from '../api/type-provider.js';
import { readWorkflow } from './workflow-loader.js';
import { stepFiles } from './step-files.js';
import { MAX_DATA_BYTES, MAX_SUBINIT_DEPTH } from './run-data.js';
import { requiredParameters, type WorkflowEngine } from './workflow-engine.js';

const errors = { '4xx': { $ref: 'error.json' }, '5xx': { $ref: 'error.json' } } as const;
const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: '^[0-9a-f]{12}$' } } } as const;
const LOG_POLL_MS = 300;

/** What a submission held before runs carried data (app.ts's bodyLimit), and what all of it but data.files still may. */
const BODY_WITHOUT_FILES = 1024 * 1024;
/** The largest submission: the bundle and up to MAX_DATA_BYTES of input files, base64-encoded. */
const RUN_BODY_LIMIT = BODY_WITHOUT_FILES + Math.ceil((MAX_DATA_BYTES * 4) / 3) + 64 * 1024;
/** Submissions bigger than BODY_WITHOUT_FILES one user may have read and handled at once. */
const BIG_BODIES_PER_USER = 2;

/**
 * A submission's data.subinits nest at most MAX_SUBINIT_DEPTH deep, checked with an explicit stack
 * before the schema is: its validator recurses into subinits, and 100,000 nested objects (500 KB)
 * overflowed its stack, a 500 (run-data.ts checks the same depth again, with each key's path).
 */
function subinitsTooDeep(body: unknown): boolean {
  const data = body && typeof body === 'object' ? (body as { data?: unknown }).data : undefined;
  const top = data && typeof data === 'object' ? (data as { subinits?: unknown }).subinits : undefined;
  const stack: [unknown, number][] = [[top, 1]];
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (!v || typeof v !== 'object') continue;
    if (depth > MAX_SUBINIT_DEPTH) return true;
    for (const x of Object.values(v)) stack.push([x, depth + 1]);
  }
  return false;
}

/**
 * Whether the submission without data.files is more than `limit` characters as JSON (estimated
 * from its strings, keys and numbers, with an explicit stack: parameters may nest deep), stopping
 * as soon as it is.
 */
function withoutFilesLargerThan(body: unknown, limit: number): boolean {
  const given = (body as { data?: { files?: unknown } } | null)?.data?.files;
  const files = given && typeof given === 'object' ? given : undefined; // (skipped by identity)
  let size = 0;
  const stack: unknown[] = [body];
  while (stack.length) {
    const v = stack.pop();
    if (v === files) continue;
    if (typeof v === 'string') size += v.length + 3;
    else if (v && typeof v === 'object') {
      size += 2;
      if (Array.isArray(v)) for (const x of v) stack.push(x);
      else
        for (const [k, x] of Object.entries(v)) {
          size += k.length + 4;
          stack.push(x);
        }
    } else size += String(v).length + 1;
    if (size > limit) return true;
  }
  return false;
}

export async function workflowRoutes(fastify: FastifyInstance, opts: { engine: WorkflowEngine }): Promise<void> {
  const app = fastify.withTypeProvider<SchemaTypeProvider>();
  const { engine } = opts;
  const bigBodies = new Map<string, number>();

  const checkSubinits = async (req: FastifyRequest) => {
    if (subinitsTooDeep(req.body)) throw new AppError(422, 'invalid_data', `data.subinits: subinits nest more than ${MAX_SUBINIT_DEPTH} levels`);
  };

  app.post(
    '/api/af/workflows/validate',
    {
      preValidation: checkSubinits,
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
      // Each such body is read whole and parsed (17 MB of the gateway's memory while it is handled):
      // 100 of mallory's at once grew it by 420 MB. A user's big submissions are read two at a time;
      // more are refused before their bodies are read (the count is given back when the answer is done).
      preParsing: async (req, reply, payload) => {
        if (Number(req.headers['content-length'] ?? Infinity) <= BODY_WITHOUT_FILES) return payload;
        const user = req.user!.name;
        const n = bigBodies.get(user) ?? 0;
        if (n >= BIG_BODIES_PER_USER) {
          throw new AppError(429, 'too_many_requests', `User ${user} is sending ${n} runs with data already; send the next when one of them has been answered`);
        }
        bigBodies.set(user, n + 1);
        reply.raw.once('close', () => {
          const left = (bigBodies.get(user) ?? 1) - 1;
          if (left) bigBodies.set(user, left);
          else bigBodies.delete(user);
        });
        return payload;
      },
      // The room above BODY_WITHOUT_FILES is for data.files only: the bundle, parameters and subinits
      // are kept in the run's record and written with each of its saves (11 MiB of parameters were taken).
      preValidation: async (req) => {
        await checkSubinits(req);
        if (Number(req.headers['content-length'] ?? Infinity) > BODY_WITHOUT_FILES && withoutFilesLargerThan(req.body, BODY_WITHOUT_FILES)) {
          throw new AppError(
            413,
            'body_too_large',
            `The submission without data.files is more than ${BODY_WITHOUT_FILES / 1024 / 1024} MiB; the bundle, parameters and subinits must fit in that (put large inputs in data.files or in storage)`,
          );
        }
      },
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
