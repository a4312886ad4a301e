// Parsing a submitted bundle's YAML/JSON files. The yaml library costs ~5 µs per value and is
// quadratic in a mapping's keys (measured: a 0.9 MB mapping of 60,000 keys took 57 s), so a hostile
// bundle would stall the event loop however its $refs are bounded. Small bundles are parsed here;
// larger ones in a worker thread with a heap cap and a deadline, a few at a time. Either way each
// document is checked (values counted, nesting measured, without recursion) before the loader walks it.
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { parse as parseYaml } from 'yaml';

/** YAML as yadage's PyYAML reads it: merge keys (`<<: *anchor`) included. The worker below passes the same. */
const YAML_OPTIONS = { merge: true } as const;
import { AppError } from '../errors.js';

/** What the loader may build from a bundle (shared with workflow-loader.ts, which enforces the rest). */
export const BUNDLE_LIMITS = {
  /** Values (objects, lists, scalars) in the parsed files together, and in the resolved workflow. */
  values: 100_000,
  /** Nesting of objects and lists in a file and in the resolved workflow. */
  nesting: 64,
  /** $refs followed while resolving. */
  refs: 1_000,
  /** $refs inside $refs. */
  refDepth: 20,
  /** Characters of strings and keys in the resolved workflow. */
  bytes: 4 * 1024 * 1024,
} as const;

/** Bundles up to this many characters are parsed on the event loop (tens of ms at worst; the examples are 2 KB). */
const IN_THREAD_CHARS = 4 * 1024;
const WORKER_DEADLINE_MS = 5_000;
const WORKER_HEAP_MB = 128;
const MAX_WORKERS = 2;
const MAX_PER_USER = 2;
/** Files of one user's steps (fromyaml-pub) read at once: they wait for it rather than being refused, and leave the other reader to other users. */
const MAX_PER_USER_STEPS = 1;

export type ParsedFile = { value: unknown } | { error: string };
export type ParsedBundle = Map<string, ParsedFile>;

/** Values and nesting of a parsed document, walked with an explicit stack; a message when over a limit. */
function measure(value: unknown, budget: { values: number }, limits: typeof BUNDLE_LIMITS): string | null {
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (--budget.values < 0) return `it holds more than ${limits.values.toLocaleString('en')} values (with the bundle's other files)`;
    if (!v || typeof v !== 'object') continue;
    if (depth > limits.nesting) return `it nests objects and lists more than ${limits.nesting} deep`;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth + 1]);
  }
  return null;
}

/** How a value sent with a request (a run's init parameters) nests too deep, if it does; walked without recursion. */
export function nestingProblem(value: unknown, maxDepth: number = BUNDLE_LIMITS.nesting): string | null {
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (!v || typeof v !== 'object') continue;
    if (depth > maxDepth) return `nests objects and lists more than ${maxDepth} deep`;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth + 1]);
  }
  return null;
}

function tryJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

// Self-contained (its helpers come as arguments): the worker gets its source text.
function parseAll(files: Record<string, string>, parse: (text: string) => unknown, limits: typeof BUNDLE_LIMITS, check: typeof measure): ParsedBundle {
  const out: ParsedBundle = new Map();
  const budget = { values: limits.values };
  for (const [file, text] of Object.entries(files)) {
    if (budget.values < 0) {
      out.set(file, { error: `${file} was not read: the bundle's files together hold more than ${limits.values.toLocaleString('en')} values` });
      continue;
    }
    let value: unknown;
    try {
      // JSON (a YAML subset) by the native parser: a thousand times faster on long lists.
      value = /^\s*[[{]/.test(text) ? tryJson(text) : undefined;
      if (value === undefined) value = parse(text);
    } catch (err) {
      out.set(file, { error: `${file} is not valid YAML or JSON: ${(err as Error).message.split('\n')[0]}` });
      continue;
    }
    const tooBig = check(value, budget, limits);
    out.set(file, tooBig ? { error: `${file} is too large to be a workflow: ${tooBig}` } : { value });
  }
  return out;
}

// The worker runs this file's own parseAll; in a TypeScript test run there is no .js next to this
// module, so the worker gets the few lines it needs as source text, with the yaml library by path.
const yamlPath = createRequire(import.meta.url).resolve('yaml');
const workerSource = `
const { parentPort, workerData } = require('node:worker_threads');
const { parse } = require(workerData.yamlPath);
const measure = ${measure.toString()};
const tryJson = ${tryJson.toString()};
const parseAll = ${parseAll.toString()};
parentPort.postMessage(parseAll(workerData.files, (text) => parse(text, { merge: true }), workerData.limits, measure));
`;

let running = 0;
const queue: (() => void)[] = [];
const perUser = new Map<string, number>();
/** Steps' files waiting for their owner's other readings to end. */
const waitingSteps = new Map<string, (() => void)[]>();

function parseInWorker(files: Record<string, string>): Promise<ParsedBundle> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(workerSource, {
      eval: true,
      workerData: { yamlPath, files, limits: BUNDLE_LIMITS },
      resourceLimits: { maxOldGenerationSizeMb: WORKER_HEAP_MB, maxYoungGenerationSizeMb: 16 },
      env: {},
    });
    const timer = setTimeout(() => {
      void worker.terminate();
      reject(
        new AppError(
          422,
          'invalid_workflow',
          `The workflow's files could not be read within ${WORKER_DEADLINE_MS / 1000} s; a workflow is a few small YAML files (this bundle has ${Object.values(
            files,
          )
            .reduce((n, t) => n + t.length, 0)
            .toLocaleString('en')} characters)`,
        ),
      );
    }, WORKER_DEADLINE_MS);
    worker.once('message', (m: ParsedBundle) => {
      clearTimeout(timer);
      void worker.terminate();
      resolve(m);
    });
    worker.once('error', (err) => {
      clearTimeout(timer);
      void worker.terminate();
      const heap = (err as NodeJS.ErrnoException).code === 'ERR_WORKER_OUT_OF_MEMORY';
      reject(
        heap
          ? new AppError(422, 'invalid_workflow', `The workflow's files need more than ${WORKER_HEAP_MB} MB to read; a workflow is a few small YAML files`)
          : err,
      );
    });
  });
}

/**
 * Every file of a bundle parsed (or why not). `owner` bounds how many bundles one user has being
 * parsed at once (429 beyond); the gateway parses at most MAX_WORKERS large bundles together. A file
 * a user's step wrote (`step`: a fromyaml-pub publisher) waits instead until the owner's other
 * readings ended, one at a time, so that however many steps publish at once another user's bundle
 * finds a reader soon.
 */
export async function parseBundle(files: Record<string, string>, owner: string, opts: { step?: boolean } = {}): Promise<ParsedBundle> {
  const chars = Object.values(files).reduce((n, t) => n + t.length, 0);
  if (chars <= IN_THREAD_CHARS) return parseBundleSync(files);
  while ((perUser.get(owner) ?? 0) >= (opts.step ? MAX_PER_USER_STEPS : MAX_PER_USER)) {
    if (!opts.step) {
      throw new AppError(429, 'too_many_requests', `User ${owner} has ${MAX_PER_USER} workflow bundles being read already; wait for them to finish`);
    }
    await new Promise<void>((r) => waitingSteps.set(owner, [...(waitingSteps.get(owner) ?? []), r]));
  }
  perUser.set(owner, (perUser.get(owner) ?? 0) + 1);
  try {
    // A finished parse hands its slot to the next in line (so a newcomer cannot slip in between).
    if (running >= MAX_WORKERS) await new Promise<void>((r) => queue.push(r));
    else running++;
    try {
      return await parseInWorker(files);
    } finally {
      const next = queue.shift();
      if (next) next();
      else running--;
    }
  } finally {
    const left = (perUser.get(owner) ?? 1) - 1;
    if (left) perUser.set(owner, left);
    else perUser.delete(owner);
    // the owner's next step file (it checks again)
    const steps = waitingSteps.get(owner);
    const next = steps?.shift();
    if (!steps?.length) waitingSteps.delete(owner);
    next?.();
  }
}

/** The same, on the calling thread: for small bundles, the command line and tests. */
export function parseBundleSync(files: Record<string, string>): ParsedBundle {
  return parseAll(files, (text) => parseYaml(text, YAML_OPTIONS), BUNDLE_LIMITS, measure);
}
