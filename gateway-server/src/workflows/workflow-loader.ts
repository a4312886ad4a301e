// Reading a yadage-style workflow: the entry file and the step files its $refs name (relative to the
// referring file), resolved into one document, checked against schemas/json/workflow-spec.json and
// for what a schema cannot say (unique stages, known dependencies, no cycles, references to earlier
// stages, scattered parameters that exist). Every problem comes with its JSON path and file.
import { posix } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { WorkflowSpec } from '@af-gateway/schemas';
import { bodyAjv } from '../schemas.js';
import { templateFields, TemplateError } from './templates.js';

export interface WorkflowProblem {
  path: string;
  file?: string;
  message: string;
}

export interface LoadedWorkflow {
  spec: WorkflowSpec | null;
  problems: WorkflowProblem[];
}

/** Parameters of the workflow itself are published by the implicit stage yadage calls init. */
export const INIT_STAGE = 'init';
const MAX_REF_DEPTH = 20;

const jsonPath = (segments: (string | number)[]) =>
  '$' + segments.map((s) => (typeof s === 'number' ? `[${s}]` : /^[A-Za-z_][A-Za-z0-9_]*$/.test(s) ? `.${s}` : `[${JSON.stringify(s)}]`)).join('');

export function loadWorkflow(entry: string, files: Record<string, string>): LoadedWorkflow {
  const problems: WorkflowProblem[] = [];
  const parsed = new Map<string, unknown>();
  /** Which file each resolved subtree came from, by path prefix. */
  const origins: { prefix: string; file: string }[] = [{ prefix: '$', file: entry }];

  const readFile = (file: string, at: string, from: string): unknown => {
    if (parsed.has(file)) return parsed.get(file);
    const text = files[file];
    if (text === undefined) {
      problems.push({ path: at, file: from, message: `${file} is not among the workflow's files (${Object.keys(files).join(', ')})` });
      return undefined;
    }
    try {
      const value: unknown = parseYaml(text);
      parsed.set(file, value);
      return value;
    } catch (err) {
      problems.push({ path: at, file, message: `${file} is not valid YAML or JSON: ${(err as Error).message.split('\n')[0]}` });
      return undefined;
    }
  };

  const resolve = (value: unknown, file: string, segments: (string | number)[], depth: number): unknown => {
    const at = jsonPath(segments);
    if (Array.isArray(value)) return value.map((v, i) => resolve(v, file, [...segments, i], depth));
    if (!value || typeof value !== 'object') return value;
    const obj = value as Record<string, unknown>;
    if (typeof obj.$ref === 'string') {
      if (depth >= MAX_REF_DEPTH) {
        problems.push({ path: at, file, message: `$ref ${obj.$ref} nests more than ${MAX_REF_DEPTH} deep (a cycle?)` });
        return undefined;
      }
      const [target, fragment = ''] = obj.$ref.split('#', 2) as [string, string?];
      const targetFile = target ? posix.normalize(posix.join(posix.dirname(file), target)) : file;
      if (targetFile.startsWith('../') || posix.isAbsolute(targetFile)) {
        problems.push({ path: at, file, message: `$ref ${obj.$ref} points outside the workflow's directory` });
        return undefined;
      }
      let doc = readFile(targetFile, at, file);
      for (const key of fragment.split('/').filter(Boolean).map((k) => k.replace(/~1/g, '/').replace(/~0/g, '~'))) {
        if (!doc || typeof doc !== 'object' || !(key in (doc as object))) {
          if (doc !== undefined) problems.push({ path: at, file, message: `$ref ${obj.$ref}: ${targetFile} has nothing at #${fragment}` });
          return undefined;
        }
        doc = (doc as Record<string, unknown>)[key];
      }
      origins.push({ prefix: at, file: targetFile });
      return resolve(doc, targetFile, segments, depth + 1);
    }
    return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, resolve(v, file, [...segments, k], depth)]));
  };

  const root = readFile(entry, '$', entry);
  if (root === undefined) return { spec: null, problems };
  const spec = resolve(root, entry, [], 0);
  if (problems.length) return { spec: null, problems };

  const fileAt = (path: string) =>
    origins.filter((o) => path === o.prefix || path.startsWith(o.prefix + '.') || path.startsWith(o.prefix + '[')).sort((a, b) => b.prefix.length - a.prefix.length)[0]?.file;

  const validate = bodyAjv.getSchema('workflow-spec.json')!;
  if (!validate(spec)) {
    const seen = new Set<string>();
    for (const e of validate.errors ?? []) {
      if (e.keyword === 'if' || e.keyword === 'anyOf' || e.keyword === 'oneOf') continue; // their branches say more
      const segments = e.instancePath.split('/').slice(1).map((s) => (/^\d+$/.test(s) ? Number(s) : s.replace(/~1/g, '/').replace(/~0/g, '~')));
      const path = jsonPath(segments);
      const detail = e.keyword === 'required' ? `${(e.params as { missingProperty: string }).missingProperty} is missing` : e.keyword === 'enum' ? `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.join(', ')}` : e.message ?? 'is invalid';
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
  if (Array.isArray(deps)) return deps;
  // yadage's jsonpath_ready expressions name stages as {stages.<name>} paths; the stage names are what matter here.
  return deps.expressions.map((e) => e.replace(/^\{?\s*stages\.?/, '').replace(/[}\s].*$/, '').replace(/\.output.*$/, ''));
}

function checkStages(wf: WorkflowSpec, problems: WorkflowProblem[], fileAt: (path: string) => string | undefined): void {
  const names = new Map<string, number>();
  wf.stages.forEach((s, i) => {
    if (s.name === INIT_STAGE) problems.push({ path: `$.stages[${i}].name`, file: fileAt(`$.stages[${i}]`), message: `${INIT_STAGE} is the workflow's own parameters; name the stage differently` });
    else if (names.has(s.name)) problems.push({ path: `$.stages[${i}].name`, file: fileAt(`$.stages[${i}]`), message: `stage ${s.name} is defined twice (also $.stages[${names.get(s.name)}])` });
    else names.set(s.name, i);
  });
  const deps = new Map(wf.stages.map((s) => [s.name, dependenciesOf(s)]));
  wf.stages.forEach((s, i) => {
    for (const d of deps.get(s.name) ?? []) {
      if (d !== INIT_STAGE && !names.has(d)) problems.push({ path: `$.stages[${i}].dependencies`, file: fileAt(`$.stages[${i}]`), message: `depends on stage ${d}, which the workflow does not define` });
    }
  });
  // Cycles: depth-first search over the dependency graph.
  const state = new Map<string, 'open' | 'done'>();
  const visit = (n: string, trail: string[]): void => {
    if (state.get(n) === 'done') return;
    if (state.get(n) === 'open') {
      const i = names.get(n) ?? 0;
      problems.push({ path: `$.stages[${i}].dependencies`, file: fileAt(`$.stages[${i}]`), message: `dependency cycle: ${[...trail.slice(trail.indexOf(n)), n].join(' -> ')}` });
      return;
    }
    state.set(n, 'open');
    for (const d of deps.get(n) ?? []) if (names.has(d)) visit(d, [...trail, n]);
    state.set(n, 'done');
  };
  for (const n of names.keys()) visit(n, []);
  // References to outputs must name init or a stage this one (transitively) depends on; scatter names its parameters.
  const upstream = (n: string, seen = new Set<string>()): Set<string> => {
    for (const d of deps.get(n) ?? []) if (!seen.has(d)) { seen.add(d); upstream(d, seen); }
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
          problems.push({ path: `$.stages[${i}].scheduler.parameters.${p}`, file: fileAt(`$.stages[${i}].scheduler`), message: `refers to outputs of ${stageName}, which is not among this stage's dependencies` });
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
            problems.push({ path: `$.stages[${i}].scheduler.step.process.${field}`, file: fileAt(`$.stages[${i}].scheduler.step.process`), message: `uses {${f}}, which is not a parameter of stage ${s.name} (it has ${Object.keys(params).join(', ') || 'none'}); write {{ and }} for literal braces` });
          }
        }
      } catch (err) {
        if (!(err instanceof TemplateError)) throw err;
        problems.push({ path: `$.stages[${i}].scheduler.step.process.${field}`, file: fileAt(`$.stages[${i}].scheduler.step.process`), message: err.message });
      }
    }
    for (const p of s.scheduler.scatter?.parameters ?? []) {
      if (!(p in params)) problems.push({ path: `$.stages[${i}].scheduler.scatter.parameters`, file: fileAt(`$.stages[${i}].scheduler`), message: `scatters ${p}, which is not one of the stage's parameters` });
    }
  });
}
