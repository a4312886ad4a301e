// Reading a yadage-style workflow: the entry file and the step files its $refs name (relative to the
// referring file), resolved into one document, checked against schemas/json/workflow-spec.json and
// for what a schema cannot say (unique stages, known dependencies, no cycles, references to earlier
// stages, scattered parameters that exist). Every problem comes with its JSON path and file.
import { posix } from 'node:path';
import type { WorkflowSpec, WorkflowValidation } from '@af-gateway/schemas';
import type { StageSpec, StepSpec } from './model.js';
import { bodyAjv } from '../schemas.js';
import { templateFields, TemplateError } from './templates.js';
import { BUNDLE_LIMITS, parseBundle, parseBundleSync, type ParsedBundle } from './bundle-parser.js';
import { staticGlobProblems } from './publisher-globs.js';
import { jsonPath, normaliseParameters, unsupportedFeatures, type FeatureProblem } from './yadage-features.js';
import { parseSelector } from './scopes.js';
import { JqError, jqProblem } from './jq.js';
import { AppError } from '../errors.js';

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

/** Reads a bundle on the calling thread (small bundles, tests). */
export function loadWorkflow(entry: string, files: Record<string, string>): LoadedWorkflow {
  return resolveWorkflow(entry, Object.keys(files), parseBundleSync(files));
}

/**
 * Reads a bundle a user sent: large ones are parsed off the event loop (see bundle-parser.ts), and
 * every jq script in it is compiled, so a typo is a 422 now rather than a failed stage later. The
 * compiling is the owner's jq work (served in turn with other users') and bounded by JQ_COMPILE_MS.
 */
export async function readWorkflow(entry: string, files: Record<string, string>, owner: string): Promise<LoadedWorkflow> {
  const loaded = resolveWorkflow(entry, Object.keys(files), await parseBundle(files, owner));
  if (!loaded.spec) return loaded;
  const problems: WorkflowProblem[] = [];
  const budget = { ms: JQ_COMPILE_MS };
  for (const { path, filter } of jqScripts(loaded.spec).slice(0, MAX_JQ_SCRIPTS)) {
    let problem: string | null;
    try {
      problem = await jqProblem(filter, { owner, budget });
    } catch (err) {
      if (err instanceof JqError && err.kind === 'budget') {
        problems.push({
          path,
          message: `the workflow's jq scripts took more than ${JQ_COMPILE_MS / 1000} s of jq time to compile together; refused before compiling the rest`,
        });
        break;
      }
      if (err instanceof JqError && err.kind === 'busy')
        throw new AppError(429, 'too_many_requests', `The workflow's jq scripts cannot be checked now: ${err.detail}`);
      throw err;
    }
    if (problem) problems.push({ path, message: `jq script ${JSON.stringify(filter.slice(0, 80))} does not compile: ${problem}` });
  }
  return problems.length ? { spec: null, problems } : loaded;
}

/** jq scripts compiled at submission (the rest are compiled when they run). */
const MAX_JQ_SCRIPTS = 200;
/** jq time all of a submission's scripts may take to compile (a script compiles in milliseconds; some take jq seconds). */
export const JQ_COMPILE_MS = 5_000;

/** Every jq script of a workflow with its JSON path: cases' conditions, jq-stage scripts, par_mounts, fromparjq-pub. */
function jqScripts(wf: WorkflowSpec, base = '$'): { path: string; filter: string }[] {
  const out: { path: string; filter: string }[] = [];
  const step = (st: StepSpec | undefined, at: string) => {
    if (!st) return;
    const env = st.environment as { par_mounts?: { jqscript: string }[] } | null;
    env?.par_mounts?.forEach((m, k) => out.push({ path: `${at}.environment.par_mounts[${k}].jqscript`, filter: m.jqscript }));
    const pub = st.publisher as { publisher_type: string; script?: string };
    if (pub.publisher_type === 'fromparjq-pub' && pub.script) out.push({ path: `${at}.publisher.script`, filter: pub.script });
  };
  wf.stages.forEach((s, i) => {
    const at = `${base}.stages[${i}].scheduler`;
    const sch = s.scheduler;
    if (sch.stepscript) out.push({ path: `${at}.stepscript`, filter: sch.stepscript });
    if (sch.postscript) out.push({ path: `${at}.postscript`, filter: sch.postscript });
    step(sch.step as StepSpec | undefined, `${at}.step`);
    if (sch.workflow) out.push(...jqScripts(sch.workflow, `${at}.workflow`));
    (sch.cases ?? []).forEach((c, j) => {
      out.push({ path: `${at}.cases[${j}].if`, filter: c.if });
      step(c.step as StepSpec | undefined, `${at}.cases[${j}].step`);
      if (c.workflow) out.push(...jqScripts(c.workflow, `${at}.cases[${j}].workflow`));
    });
  });
  return out;
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

  // yadage's list form of parameters becomes the object form; parts of the language the gateway
  // does not run are refused by name before the schema would bury them in errors.
  const features: FeatureProblem[] = [];
  normaliseParameters(spec, features);
  features.push(...unsupportedFeatures(spec));
  if (features.length) {
    return { spec: null, problems: features.map((f) => ({ path: jsonPath(f.segments), file: fileAt(jsonPath(f.segments)), message: f.message })) };
  }

  const validate = bodyAjv.getSchema('workflow-spec.json')!;
  if (!validate(spec)) {
    const seen = new Set<string>();
    // An object whose type (process_type, publisher_type, …) is unknown has no known keys: say only the type.
    const badType = new Set(
      (validate.errors ?? []).filter((e) => e.keyword === 'enum' && /_type$/.test(e.instancePath)).map((e) => e.instancePath.replace(/\/[^/]*$/, '')),
    );
    for (const e of validate.errors ?? []) {
      if (e.keyword === 'unevaluatedProperties' && badType.has(e.instancePath)) continue;
      if (problems.length >= MAX_PROBLEMS) break;
      if (e.keyword === 'if' || e.keyword === 'anyOf' || e.keyword === 'oneOf' || e.keyword === 'propertyNames') continue; // their branches say more
      const unknownKey =
        e.keyword === 'additionalProperties'
          ? (e.params as { additionalProperty: string }).additionalProperty
          : e.keyword === 'unevaluatedProperties'
            ? (e.params as { unevaluatedProperty: string }).unevaluatedProperty
            : undefined;
      const segments = e.instancePath
        .split('/')
        .slice(1)
        .map((s) => (/^\d+$/.test(s) ? Number(s) : s.replace(/~1/g, '/').replace(/~0/g, '~')));
      // An error about a key (propertyNames) names the key itself.
      const key0 = (e as { propertyName?: string }).propertyName ?? unknownKey;
      if (key0 !== undefined) segments.push(key0.length > 64 ? `${key0.slice(0, 64)}…` : key0);
      const path = jsonPath(segments);
      const detail =
        unknownKey !== undefined
          ? 'is not a key of yadage or of the gateway here (a typo, or a key from another version?)'
          : e.keyword === 'const'
            ? `must be ${JSON.stringify((e.params as { allowedValue: unknown }).allowedValue)}`
            : e.keyword === 'required'
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
    // Only combinator errors: say the first one rather than nothing.
    if (!problems.length) {
      const e = validate.errors?.[0];
      problems.push({ path: jsonPath(e?.instancePath.split('/').slice(1) ?? []), message: e?.message ?? 'is invalid' });
    }
    return { spec: null, problems };
  }
  const wf = spec as WorkflowSpec;
  checkStages(wf, problems, fileAt);
  return problems.length ? { spec: null, problems } : { spec: wf, problems };
}

/** The stage of this workflow a selector (NAME, NAME[INDEX], NAME[*], NAME[INDEX].SUBSTAGE…) starts from; undefined when it is not one. */
export function selectorStage(selector: string): string | undefined {
  return parseSelector(selector)?.[0]?.name;
}

/** The stage selectors of a dependency list (plain or jsonpath_ready); expressions_fulfilled names none. */
function dependencySelectors(stage: StageSpec): string[] {
  const deps = stage.dependencies;
  if (!deps) return [];
  if (Array.isArray(deps)) return deps;
  if (deps.dependency_type === 'expressions_fulfilled') return [];
  return deps.expressions as string[];
}

/** The stages a value reads (selectors of expressions), with the key they are under. */
function selectorsIn(value: unknown): string[] {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return [];
  const v = value as Record<string, unknown>;
  const sel = v.stages ?? v.steps ?? v.step ?? (v.expression_type === 'fromvalue' ? v.scope : undefined);
  if (sel === undefined) return [];
  return (Array.isArray(sel) ? sel : [sel]).filter((s): s is string => typeof s === 'string');
}

/** The stages registering each value (register_values), in the workflow's order. */
function registrations(wf: WorkflowSpec): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const st of wf.stages) for (const k of Object.keys(st.scheduler.register_values ?? {})) out.set(k, [...(out.get(k) ?? []), st.name]);
  return out;
}

const fromvalueKey = (v: unknown): string | undefined =>
  v && typeof v === 'object' && (v as Record<string, unknown>).expression_type === 'fromvalue' ? String((v as Record<string, unknown>).key) : undefined;

/**
 * The stages a stage waits for. expressions_fulfilled waits for the stages its expressions read: those
 * a selector names, and for a registered value the stages registering it and those its expression reads.
 */
export function dependenciesOf(stage: StageSpec, wf: WorkflowSpec): string[] {
  // Each named once: readiness is checked per dependency on every tick. The loader checked that each is a selector.
  const names = dependencySelectors(stage).map((d) => selectorStage(d) ?? d);
  const deps = stage.dependencies;
  if (deps && !Array.isArray(deps) && deps.dependency_type === 'expressions_fulfilled') {
    const regs = registrations(wf);
    const specs = new Map(wf.stages.map((s) => [s.name, s]));
    const seen = new Set<string>();
    const read = (v: unknown): void => {
      names.push(...selectorsIn(v).map((d) => selectorStage(d) ?? d));
      const key = fromvalueKey(v);
      if (key === undefined || seen.has(key)) return;
      seen.add(key);
      for (const st of regs.get(key) ?? []) {
        names.push(st);
        read(specs.get(st)?.scheduler.register_values?.[key]);
      }
    };
    (deps.expressions as unknown[]).forEach(read);
  }
  return [...new Set(names)];
}

type Problem = (path: string, at: string, message: string) => void;

/** Which keys each scheduler type takes besides scheduler_type (the schema allows the union of them). */
const SCHEDULER_KEYS: Record<string, string[]> = {
  'singlestep-stage': ['parameters', 'step', 'workflow', 'workflow_opts', 'cases', 'register_values'],
  'multistep-stage': ['parameters', 'step', 'workflow', 'workflow_opts', 'cases', 'register_values', 'scatter', 'batchsize', 'partitionsize'],
  'jq-stage': ['bindings', 'stepscript', 'postscript', 'step', 'workflow', 'workflow_opts', 'register_values'],
};

/** What the schema cannot say about one scheduler: which keys go with its type, and exactly one thing to run. */
function checkScheduler(s: StageSpec, at: string, problem: Problem): void {
  const sch = s.scheduler as unknown as Record<string, unknown>;
  const type = String(sch.scheduler_type);
  const allowed = SCHEDULER_KEYS[type] ?? [];
  for (const k of Object.keys(sch)) {
    if (k !== 'scheduler_type' && !allowed.includes(k)) problem(`${at}.${k}`, at, `${k} is not a key of a ${type} (it takes ${allowed.join(', ')})`);
  }
  const runs = ['step', 'workflow', 'cases'].filter((k) => k in sch);
  if (runs.length !== 1) {
    const want = type === 'jq-stage' ? 'step or workflow' : 'step, workflow or cases';
    problem(at, at, runs.length ? `has ${runs.join(' and ')}: give exactly one of ${want}` : `says nothing to run: give one of ${want}`);
  }
  if (type === 'multistep-stage' && !sch.scatter) problem(at, at, 'scatter is missing');
  if ('batchsize' in sch && 'partitionsize' in sch) problem(at, at, 'has batchsize and partitionsize: give at most one');
  if (type === 'jq-stage' && !('bindings' in sch)) problem(at, at, 'bindings is missing');
}

/** A selector must be NAME, NAME[INDEX] or NAME[*]; `stages`, `steps` and `step` are alternatives. */
function checkSelector(value: unknown, at: string, problem: Problem): void {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return;
  const v = value as Record<string, unknown>;
  const given = ['stages', 'steps', 'step'].filter((k) => k in v);
  if (!given.length && v.expression_type !== 'stage-output-selector') return; // a literal object or another expression
  if (!given.length) problem(at, at, 'selects nothing: give one of stages, steps or step');
  if (given.length > 1) problem(at, at, `has ${given.join(' and ')}: select with exactly one of them (stages and steps are the same)`);
  for (const s of selectorsIn(v)) {
    if (!selectorStage(s)) problem(at, at, `cannot read the stage selector ${JSON.stringify(s)} (use NAME, NAME[INDEX], NAME[*] or NAME[INDEX].SUBSTAGE)`);
  }
}

/** The subworkflows a stage may run (its workflow, or its cases' workflows). */
const subworkflowsOf = (st: StageSpec): WorkflowSpec[] =>
  [st.scheduler.workflow, ...(st.scheduler.cases ?? []).map((c) => c.workflow)].filter((w): w is WorkflowSpec => !!w);

/** A selector into subworkflows (`a[0].b`) must follow stages that run subworkflows to a stage that exists there. */
function checkScopedSelector(sel: string, wf: WorkflowSpec, at: string, problem: Problem): void {
  const parts = parseSelector(sel);
  if (!parts || parts.length < 2) return;
  let stages: StageSpec[] = wf.stages;
  for (const [k, part] of parts.entries()) {
    // every subworkflow has its init: `archived[*].init` reads the parameters its init published
    if (k > 0 && k === parts.length - 1 && part.name === INIT_STAGE) return;
    const st = stages.find((x) => x.name === part.name);
    if (!st) {
      if (k > 0) problem(at, at, `${sel}: the subworkflow of ${parts[k - 1]!.name} has no stage ${part.name}`);
      return;
    }
    if (k === parts.length - 1) return;
    const subs = subworkflowsOf(st);
    if (!subs.length) {
      problem(at, at, `${sel}: stage ${part.name} runs steps, not a subworkflow`);
      return;
    }
    stages = subs.flatMap((w) => w.stages);
  }
}

function checkStages(wf: WorkflowSpec, problems: WorkflowProblem[], fileAt: (path: string) => string | undefined, base = '$'): void {
  const problem: Problem = (path, at, message) => problems.push({ path, file: fileAt(at), message });
  const names = new Map<string, number>();
  wf.stages.forEach((s, i) => {
    if (s.name === INIT_STAGE)
      problem(`${base}.stages[${i}].name`, `${base}.stages[${i}]`, `${INIT_STAGE} is the workflow's own parameters; name the stage differently`);
    else if (names.has(s.name))
      problem(`${base}.stages[${i}].name`, `${base}.stages[${i}]`, `stage ${s.name} is defined twice (also $.stages[${names.get(s.name)}])`);
    else names.set(s.name, i);
  });
  wf.stages.forEach((s, i) => {
    const at = `${base}.stages[${i}]`;
    checkScheduler(s, `${at}.scheduler`, problem);
    dependencySelectors(s).forEach((d) => {
      if (!selectorStage(d))
        problem(`${at}.dependencies`, at, `cannot read the stage selector ${JSON.stringify(d)} (use NAME, NAME[INDEX], NAME[*] or NAME[INDEX].SUBSTAGE)`);
    });
    const deps = s.dependencies;
    if (deps && !Array.isArray(deps) && deps.dependency_type === 'expressions_fulfilled')
      (deps.expressions as unknown[]).forEach((e, j) => checkSelector(e, `${at}.dependencies.expressions[${j}]`, problem));
    for (const [k, v] of Object.entries(s.scheduler.parameters ?? {})) checkSelector(v, `${at}.scheduler.parameters${jsonPath([k]).slice(1)}`, problem);
    for (const [k, v] of Object.entries(s.scheduler.register_values ?? {}))
      checkSelector(v, `${at}.scheduler.register_values${jsonPath([k]).slice(1)}`, problem);
  });
  const deps = new Map(wf.stages.map((s) => [s.name, dependenciesOf(s, wf)]));
  wf.stages.forEach((s, i) => {
    for (const d of deps.get(s.name) ?? []) {
      if (d !== INIT_STAGE && !names.has(d))
        problem(`${base}.stages[${i}].dependencies`, `${base}.stages[${i}]`, `depends on stage ${d}, which the workflow does not define`);
    }
  });
  // Cycles: depth-first search over the dependency graph.
  const state = new Map<string, 'open' | 'done'>();
  const visit = (n: string, trail: string[]): void => {
    if (state.get(n) === 'done') return;
    if (state.get(n) === 'open') {
      const i = names.get(n) ?? 0;
      problem(`${base}.stages[${i}].dependencies`, `${base}.stages[${i}]`, `dependency cycle: ${[...trail.slice(trail.indexOf(n)), n].join(' -> ')}`);
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
  const regs = registrations(wf);
  wf.stages.forEach((s, i) => {
    const before = upstream(s.name);
    const params = (s.scheduler.parameters ?? {}) as Record<string, unknown>;
    // A registered value is read from a stage this one waits for (yadage registers it when that stage is applied).
    const reads: [string, unknown][] = [
      ...Object.entries(params).map(([p, v]): [string, unknown] => [`.scheduler.parameters${jsonPath([p]).slice(1)}`, v]),
      ...Object.entries(s.scheduler.register_values ?? {}).map(([p, v]): [string, unknown] => [`.scheduler.register_values${jsonPath([p]).slice(1)}`, v]),
    ];
    const deps0 = s.dependencies;
    if (deps0 && !Array.isArray(deps0) && deps0.dependency_type === 'expressions_fulfilled')
      (deps0.expressions as unknown[]).forEach((e, j) => reads.push([`.dependencies.expressions[${j}]`, e]));
    for (const [where, v] of reads) {
      const key = fromvalueKey(v);
      // (a value registered inside a subworkflow, read with scope, is looked for when it is read)
      if (key === undefined || (v as Record<string, unknown>).scope !== undefined) continue;
      const by = regs.get(key) ?? [];
      if (!by.length) problem(`${base}.stages[${i}]${where}`, `${base}.stages[${i}]`, `reads the value ${key}, which no stage registers (register_values)`);
      // (a registered value is evaluated where it is read: only that it exists is checked here)
      else if (!where.startsWith('.scheduler.register_values') && !by.some((r) => before.has(r)))
        problem(
          `${base}.stages[${i}]${where}`,
          `${base}.stages[${i}]`,
          `reads the value ${key}, registered by stage ${by.join(', ')}, which is not among this stage's dependencies`,
        );
    }
    for (const [p, v] of Object.entries(params)) {
      for (const r of selectorsIn(v)) {
        const stageName = selectorStage(r);
        if (stageName && stageName !== INIT_STAGE && !before.has(stageName)) {
          problem(
            `${base}.stages[${i}].scheduler.parameters${jsonPath([p]).slice(1)}`,
            `${base}.stages[${i}].scheduler`,
            `refers to outputs of ${stageName}, which is not among this stage's dependencies`,
          );
        }
      }
    }
    // (a jq-stage's parameters are made by its script: its commands are checked when they are made)
    const step = s.scheduler.scheduler_type === 'jq-stage' ? undefined : (s.scheduler.step as StepSpec | undefined);
    if (step) checkStep(step, `${base}.stages[${i}].scheduler.step`, s.name, params, problem);
    for (const p of s.scheduler.scatter?.parameters ?? []) {
      if (!(p in params))
        problem(
          `${base}.stages[${i}].scheduler.scatter.parameters`,
          `${base}.stages[${i}].scheduler`,
          `scatters ${p}, which is not one of the stage's parameters`,
        );
    }
  });
  // Subworkflows are workflows of their own: their names, dependencies and references are checked in them.
  wf.stages.forEach((s, i) => {
    const at = `${base}.stages[${i}].scheduler`;
    const params = (s.scheduler.parameters ?? {}) as Record<string, unknown>;
    if (s.scheduler.workflow) checkStages(s.scheduler.workflow, problems, fileAt, `${at}.workflow`);
    (s.scheduler.cases ?? []).forEach((c, j) => {
      if (c.workflow) checkStages(c.workflow, problems, fileAt, `${at}.cases[${j}].workflow`);
      if (c.step) checkStep(c.step as StepSpec, `${at}.cases[${j}].step`, s.name, params, problem);
      if (!c.step === !c.workflow) problem(`${at}.cases[${j}]`, at, 'give exactly one of step and workflow');
    });
    for (const [p, v] of Object.entries(params))
      for (const sel of selectorsIn(v)) checkScopedSelector(sel, wf, `${at}.parameters${jsonPath([p]).slice(1)}`, problem);
  });
}

/** A step's command may only use the stage's parameters (and workdir); a publisher's glob that says by itself it leaves the step's directory is refused. */
function checkStep(step: StepSpec, at: string, stage: string, params: Record<string, unknown>, problem: Problem): void {
  // Commands may only use the stage's parameters (and workdir): a typo fails here, not in the middle of a run.
  const proc = step.process as { process_type: string; cmd?: string; script?: string } | null;
  if (proc) {
    const field = proc.process_type === 'string-interpolated-cmd' ? 'cmd' : 'script';
    const template = proc[field];
    if (typeof template === 'string') {
      try {
        for (const f of templateFields(template)) {
          if (f !== 'workdir' && !(f in params)) {
            problem(
              `${at}.process.${field}`,
              `${at}.process`,
              `uses {${f}}, which is not a parameter of stage ${stage} (it has ${Object.keys(params).join(', ') || 'none'}); write {{ and }} for literal braces`,
            );
          }
        }
      } catch (err) {
        if (!(err instanceof TemplateError)) throw err;
        problem(`${at}.process.${field}`, `${at}.process`, err.message);
      }
    }
  }
  const pub = step.publisher as { publisher_type: string; globexpression?: string; glob?: boolean; publish?: unknown };
  const pubPath = `${at}.publisher`;
  const globProblems = (pattern: string, path: string) => staticGlobProblems(pattern, path, undefined).forEach((p) => problem(p.path, pubPath, p.message));
  if (pub.publisher_type === 'fromglob-pub' && typeof pub.globexpression === 'string') globProblems(pub.globexpression, `${pubPath}.globexpression`);
  if (pub.publisher_type === 'interpolated-pub' && pub.glob) {
    const publish = pub.publish;
    const leaves = publish && typeof publish === 'object' && !Array.isArray(publish) ? Object.entries(publish) : [['', publish] as [string, unknown]];
    for (const [k, v] of leaves) {
      (Array.isArray(v) ? v : [v]).forEach((t, j) => {
        if (typeof t === 'string') globProblems(t, `${pubPath}.publish${k ? jsonPath([k]).slice(1) : ''}${Array.isArray(v) ? `[${j}]` : ''}`);
      });
    }
  }
}
