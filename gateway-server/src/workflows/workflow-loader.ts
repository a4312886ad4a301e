// Reading a yadage-style workflow: the entry file and the step files its $refs name (relative to the
// referring file), resolved into one document, checked against schemas/json/workflow-spec.json and
// for what a schema cannot say (unique stages, known dependencies, no cycles, references to earlier
// stages, scattered parameters that exist). Every problem comes with its JSON path and file.
import { posix } from 'node:path';
import type { WorkflowSpec, WorkflowValidation } from '@af-gateway/schemas';
import { bodyAjv } from '../schemas.js';
import { templateFields, TemplateError } from './templates.js';
import { BUNDLE_LIMITS, parseBundle, parseBundleSync, type ParsedBundle } from './bundle-parser.js';
import { staticGlobProblems } from './publisher-globs.js';

/** One problem of a workflow, at its JSON path: an item of workflow-validation.json's errors (and of an error's details). */
export type WorkflowProblem = WorkflowValidation['errors'][number];

export interface LoadedWorkflow {
  spec: WorkflowSpec | null;
  problems: WorkflowProblem[];
}

/** Parameters of the workflow itself are published by the implicit stage yadage calls init. */
export const INIT_STAGE = 'init';

/** What the schema's patterns mean, in words a workflow's author can act on. */
const PATTERN_WORDS: Record<string, string> = {
  '^[A-Za-z_][A-Za-z0-9_]{0,255}$': 'is not an environment variable name (letters, digits and _, not starting with a digit)',
  '^[^\\u0000-\\u0008\\u000a-\\u001f\\u007f]*$': 'contains a control character (newlines and the like are refused; tab is fine)',
  '^[A-Za-z0-9_./+-]+( [A-Za-z0-9_./+-]+)*$': 'is not a program to run (letters, digits, _ . / + - and single spaces only)',
  '^[^\\s\\u0000-\\u001f\\u007f]+$': 'is not an image name (no spaces or control characters)',
  '^[A-Za-z0-9_.-]*$': 'is not an image tag (letters, digits, _ . -)',
};
/** Schema errors reported at most (each with its path and file). */
const MAX_PROBLEMS = 100;

const jsonPath = (segments: (string | number)[]) =>
  '$' + segments.map((s) => (typeof s === 'number' ? `[${s}]` : /^[A-Za-z_][A-Za-z0-9_]*$/.test(s) ? `.${s}` : `[${JSON.stringify(s)}]`)).join('');

/** Reads a bundle on the calling thread (small bundles, tests). */
export function loadWorkflow(entry: string, files: Record<string, string>): LoadedWorkflow {
  return resolveWorkflow(entry, Object.keys(files), parseBundleSync(files));
}

/** Reads a bundle a user sent: large ones are parsed off the event loop (see bundle-parser.ts). */
export async function readWorkflow(entry: string, files: Record<string, string>, owner: string): Promise<LoadedWorkflow> {
  return resolveWorkflow(entry, Object.keys(files), await parseBundle(files, owner));
}

/** A limit of BUNDLE_LIMITS was reached: resolution stops at once, before building more. */
class LimitReached extends Error {
  constructor(readonly problem: WorkflowProblem) {
    super(problem.message);
  }
}

function resolveWorkflow(entry: string, names: string[], parsed: ParsedBundle): LoadedWorkflow {
  const problems: WorkflowProblem[] = [];
  /** Which file each resolved subtree came from, by path prefix. */
  const origins: { prefix: string; file: string }[] = [{ prefix: '$', file: entry }];
  const L = BUNDLE_LIMITS;
  let values = 0;
  let chars = 0;
  let refs = 0;
  const limit = (segments: (string | number)[], file: string, message: string) =>
    new LimitReached({ path: jsonPath(segments), file, message: `${message}; refused before resolving further` });

  const readFile = (file: string, at: string, from: string): unknown => {
    const got = parsed.get(file);
    if (got === undefined) {
      problems.push({
        path: at,
        file: from,
        message: `${file} is not among the workflow's files (${names.slice(0, 20).join(', ')}${names.length > 20 ? ', …' : ''})`,
      });
      return undefined;
    }
    if ('error' in got) {
      problems.push({ path: at, file, message: got.error });
      return undefined;
    }
    return got.value;
  };

  // Every value built is counted before it is built: nested $refs multiply what they include (a
  // 1 KB bundle can name millions of values), so the walk stops at the first limit it meets.
  const resolve = (value: unknown, file: string, segments: (string | number)[], depth: number): unknown => {
    if (++values > L.values)
      throw limit(segments, file, `the workflow resolves to more than ${L.values.toLocaleString('en')} values (nested $refs multiply what they include)`);
    if (segments.length > L.nesting) throw limit(segments, file, `the workflow nests objects and lists more than ${L.nesting} deep`);
    if (typeof value === 'string' && (chars += value.length) > L.bytes) {
      throw limit(segments, file, `the workflow resolves to more than ${L.bytes / 1024 / 1024} MiB of text (nested $refs multiply what they include)`);
    }
    if (Array.isArray(value)) return value.map((v, i) => resolve(v, file, [...segments, i], depth));
    if (!value || typeof value !== 'object') return value;
    const obj = value as Record<string, unknown>;
    if (typeof obj.$ref === 'string') {
      const at = jsonPath(segments);
      if (++refs > L.refs) throw limit(segments, file, `the workflow follows more than ${L.refs.toLocaleString('en')} $refs`);
      if (depth >= L.refDepth) {
        problems.push({ path: at, file, message: `$ref ${obj.$ref} nests more than ${L.refDepth} deep (a cycle?)` });
        return undefined;
      }
      const [target, fragment = ''] = obj.$ref.split('#', 2) as [string, string?];
      const targetFile = target ? posix.normalize(posix.join(posix.dirname(file), target)) : file;
      if (targetFile.startsWith('../') || posix.isAbsolute(targetFile)) {
        problems.push({ path: at, file, message: `$ref ${obj.$ref} points outside the workflow's directory` });
        return undefined;
      }
      let doc = readFile(targetFile, at, file);
      for (const key of fragment
        .split('/')
        .filter(Boolean)
        .map((k) => k.replace(/~1/g, '/').replace(/~0/g, '~'))) {
        if (!doc || typeof doc !== 'object' || !Object.hasOwn(doc, key)) {
          if (doc !== undefined) problems.push({ path: at, file, message: `$ref ${obj.$ref}: ${targetFile} has nothing at #${fragment}` });
          return undefined;
        }
        doc = (doc as Record<string, unknown>)[key];
      }
      origins.push({ prefix: at, file: targetFile });
      return resolve(doc, targetFile, segments, depth + 1);
    }
    return Object.fromEntries(
      Object.entries(obj).map(([k, v]) => {
        if ((chars += k.length) > L.bytes) throw limit(segments, file, `the workflow resolves to more than ${L.bytes / 1024 / 1024} MiB of text`);
        return [k, resolve(v, file, [...segments, k], depth)];
      }),
    );
  };

  const root = readFile(entry, '$', entry);
  if (root === undefined) return { spec: null, problems };
  let spec: unknown;
  try {
    spec = resolve(root, entry, [], 0);
  } catch (err) {
    if (err instanceof LimitReached) return { spec: null, problems: [err.problem] };
    throw err;
  }
  if (problems.length) return { spec: null, problems };

  const fileAt = (path: string) =>
    origins
      .filter((o) => path === o.prefix || path.startsWith(o.prefix + '.') || path.startsWith(o.prefix + '['))
      .sort((a, b) => b.prefix.length - a.prefix.length)[0]?.file;

  const validate = bodyAjv.getSchema('workflow-spec.json')!;
  if (!validate(spec)) {
    const seen = new Set<string>();
    for (const e of validate.errors ?? []) {
      if (problems.length >= MAX_PROBLEMS) break;
      if (e.keyword === 'if' || e.keyword === 'anyOf' || e.keyword === 'oneOf' || e.keyword === 'propertyNames') continue; // their branches say more
      const segments = e.instancePath
        .split('/')
        .slice(1)
        .map((s) => (/^\d+$/.test(s) ? Number(s) : s.replace(/~1/g, '/').replace(/~0/g, '~')));
      // An error about a key (propertyNames) names the key itself.
      const key0 = (e as { propertyName?: string }).propertyName;
      if (key0 !== undefined) segments.push(key0.length > 64 ? `${key0.slice(0, 64)}…` : key0);
      const path = jsonPath(segments);
      const detail =
        e.keyword === 'required'
          ? `${(e.params as { missingProperty: string }).missingProperty} is missing`
          : e.keyword === 'enum'
            ? `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.join(', ')}`
            : e.keyword === 'pattern'
              ? (PATTERN_WORDS[(e.params as { pattern: string }).pattern] ?? e.message ?? 'is invalid')
              : (e.message ?? 'is invalid');
      const key = `${path} ${detail}`;
      if (seen.has(key)) continue;
      seen.add(key);
      problems.push({ path, file: fileAt(path), message: detail });
    }
    return { spec: null, problems };
  }
  const wf = spec as WorkflowSpec;
  checkStages(wf, problems, fileAt);
  return problems.length ? { spec: null, problems } : { spec: wf, problems };
}

export function dependenciesOf(stage: WorkflowSpec['stages'][number]): string[] {
  const deps = stage.dependencies;
  if (!deps) return [];
  // Each named once: readiness is checked per dependency on every tick.
  if (Array.isArray(deps)) return [...new Set(deps)];
  // yadage's jsonpath_ready expressions name stages as {stages.<name>} paths; the stage names are what matter here.
  return [
    ...new Set(
      deps.expressions.map((e) =>
        e
          .replace(/^\{?\s*stages\.?/, '')
          .replace(/[}\s].*$/, '')
          .replace(/\.output.*$/, ''),
      ),
    ),
  ];
}

function checkStages(wf: WorkflowSpec, problems: WorkflowProblem[], fileAt: (path: string) => string | undefined): void {
  const names = new Map<string, number>();
  wf.stages.forEach((s, i) => {
    if (s.name === INIT_STAGE)
      problems.push({
        path: `$.stages[${i}].name`,
        file: fileAt(`$.stages[${i}]`),
        message: `${INIT_STAGE} is the workflow's own parameters; name the stage differently`,
      });
    else if (names.has(s.name))
      problems.push({
        path: `$.stages[${i}].name`,
        file: fileAt(`$.stages[${i}]`),
        message: `stage ${s.name} is defined twice (also $.stages[${names.get(s.name)}])`,
      });
    else names.set(s.name, i);
  });
  const deps = new Map(wf.stages.map((s) => [s.name, dependenciesOf(s)]));
  wf.stages.forEach((s, i) => {
    for (const d of deps.get(s.name) ?? []) {
      if (d !== INIT_STAGE && !names.has(d))
        problems.push({
          path: `$.stages[${i}].dependencies`,
          file: fileAt(`$.stages[${i}]`),
          message: `depends on stage ${d}, which the workflow does not define`,
        });
    }
  });
  // Cycles: depth-first search over the dependency graph.
  const state = new Map<string, 'open' | 'done'>();
  const visit = (n: string, trail: string[]): void => {
    if (state.get(n) === 'done') return;
    if (state.get(n) === 'open') {
      const i = names.get(n) ?? 0;
      problems.push({
        path: `$.stages[${i}].dependencies`,
        file: fileAt(`$.stages[${i}]`),
        message: `dependency cycle: ${[...trail.slice(trail.indexOf(n)), n].join(' -> ')}`,
      });
      return;
    }
    state.set(n, 'open');
    for (const d of deps.get(n) ?? []) if (names.has(d)) visit(d, [...trail, n]);
    state.set(n, 'done');
  };
  for (const n of names.keys()) visit(n, []);
  // References to outputs must name init or a stage this one (transitively) depends on; scatter names its parameters.
  const upstream = (n: string, seen = new Set<string>()): Set<string> => {
    for (const d of deps.get(n) ?? [])
      if (!seen.has(d)) {
        seen.add(d);
        upstream(d, seen);
      }
    return seen;
  };
  wf.stages.forEach((s, i) => {
    const before = upstream(s.name);
    const params = (s.scheduler.parameters ?? {}) as Record<string, unknown>;
    for (const [p, v] of Object.entries(params)) {
      if (!v || typeof v !== 'object' || Array.isArray(v) || !('stages' in v)) continue;
      const refs = (v as { stages: string | string[] }).stages;
      for (const r of Array.isArray(refs) ? refs : [refs]) {
        const stageName = r.split(/[.[]/)[0]!;
        if (stageName !== INIT_STAGE && !before.has(stageName)) {
          problems.push({
            path: `$.stages[${i}].scheduler.parameters.${p}`,
            file: fileAt(`$.stages[${i}].scheduler`),
            message: `refers to outputs of ${stageName}, which is not among this stage's dependencies`,
          });
        }
      }
    }
    // Commands may only use the stage's parameters (and workdir): a typo fails here, not in the middle of a run.
    const proc = s.scheduler.step.process as { process_type: string; cmd?: string; script?: string };
    const template = proc.process_type === 'string-interpolated-cmd' ? proc.cmd : proc.script;
    const field = proc.process_type === 'string-interpolated-cmd' ? 'cmd' : 'script';
    if (typeof template === 'string') {
      try {
        for (const f of templateFields(template)) {
          if (f !== 'workdir' && !(f in params)) {
            problems.push({
              path: `$.stages[${i}].scheduler.step.process.${field}`,
              file: fileAt(`$.stages[${i}].scheduler.step.process`),
              message: `uses {${f}}, which is not a parameter of stage ${s.name} (it has ${Object.keys(params).join(', ') || 'none'}); write {{ and }} for literal braces`,
            });
          }
        }
      } catch (err) {
        if (!(err instanceof TemplateError)) throw err;
        problems.push({ path: `$.stages[${i}].scheduler.step.process.${field}`, file: fileAt(`$.stages[${i}].scheduler.step.process`), message: err.message });
      }
    }
    // A publisher's glob that says by itself it leaves the step's directory is refused now.
    const pub = s.scheduler.step.publisher as { publisher_type: string; globexpression?: string; glob?: boolean; publish?: Record<string, unknown> };
    const pubPath = `$.stages[${i}].scheduler.step.publisher`;
    if (pub.publisher_type === 'fromglob-pub' && typeof pub.globexpression === 'string') {
      problems.push(...staticGlobProblems(pub.globexpression, `${pubPath}.globexpression`, fileAt(pubPath)));
    }
    if (pub.publisher_type === 'interpolated-pub' && pub.glob) {
      for (const [k, v] of Object.entries(pub.publish ?? {})) {
        (Array.isArray(v) ? v : [v]).forEach((t, j) => {
          if (typeof t === 'string')
            problems.push(...staticGlobProblems(t, `${pubPath}.publish${jsonPath([k]).slice(1)}${Array.isArray(v) ? `[${j}]` : ''}`, fileAt(pubPath)));
        });
      }
    }
    for (const p of s.scheduler.scatter?.parameters ?? []) {
      if (!(p in params))
        problems.push({
          path: `$.stages[${i}].scheduler.scatter.parameters`,
          file: fileAt(`$.stages[${i}].scheduler`),
          message: `scatters ${p}, which is not one of the stage's parameters`,
        });
    }
  });
}
