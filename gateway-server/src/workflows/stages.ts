// Applying a stage once its dependencies finished: its parameters are resolved from the outputs of
// earlier steps (or a Rucio dataset), a multistep stage is scattered into one step per parameter set,
// and each step gets its directory and its command. Publishers run after a step succeeded.
import { isAbsolute, join, relative, resolve } from 'node:path';
import { openConfined } from '../files/no-follow.js';
import { parseBundle } from './bundle-parser.js';
import { formatDeep, formatTemplate, MAX_FORMATTED, TemplateError } from './templates.js';
import { setOwn, stepOf, type NodeRecord, type RunRecord, type StageRecord, type StageSpec, type StepSpec } from './model.js';
import { parseSelector, scoped, stageDir, stageSpecOf } from './scopes.js';
import { jq, jqFirst, JqError, JQ_LIMITS, type JqOptions } from './jq.js';
import { stepFiles } from './step-files.js';
import { INIT_STAGE } from './workflow-loader.js';
import { scatterSize, tooManySteps, type Grouping } from './scatter-size.js';
import { confinePattern, GlobError, globConfined } from './publisher-globs.js';
import { existsConfined, MAX_INIT_GLOBS, MAX_INIT_LOOKUPS, nodeDirs, resolveInitValues, subinitDir } from './run-data.js';

export class StageError extends Error {}

/** Applying a stage was given up because its run is to stop (cancelled, the gateway closing): the stage stays as it was. */
export class ApplyStopped extends Error {}

/**
 * A stage's references reach at most this many nodes per step as edges (the DAG stays drawable), and
 * its steps together at most MAX_EDGES_PER_STAGE (20,000 steps sharing a parameter read from 2,000
 * steps would otherwise make 40 million). Edges are what the DAG shows; a step waits for its stage's
 * dependencies as a whole (the engine), so fewer edges never start a step early.
 */
const MAX_EDGES_PER_STEP = 2000;
const MAX_EDGES_PER_STAGE = 200_000;
/**
 * Characters of parameters a stage's steps hold together: each step keeps its own copy (store, event
 * stream), so a list shared by every step counts once per step.
 */
const MAX_STAGE_PARAMETERS = 8 * 1024 * 1024;
/** The same for all steps of a run together (many stages each under the stage's limit). */
export const MAX_RUN_PARAMETERS = 16 * 1024 * 1024;

/** Bytes of a fromyaml-pub file. */
const MAX_YAML_OUTPUTS = 1024 * 1024;

/** Characters of outputs the steps of a run may publish together (each is kept and sent per step). */
export const MAX_RUN_OUTPUTS = 16 * 1024 * 1024;

/**
 * Characters a run's steps may hold beyond their parameters: their commands, par_mounts, and what
 * {workdir} adds to parameters. Each is made per step from the parameters (a template may repeat a
 * parameter hundreds of times) and kept and sent per step like them.
 */
export const MAX_RUN_HELD = 32 * 1024 * 1024;

/** What the commands and par_mounts of a run's existing steps weigh (a run taken up again after a restart). */
export function heldWeight(nodes: Iterable<NodeRecord>): number {
  let weight = 0;
  for (const n of nodes) weight += (n.command?.length ?? 0) + (n.parmounts ?? []).reduce((w, t) => w + t.length, 0);
  return weight;
}

/** What the parameters (or outputs) of a run's existing steps weigh (a run taken up again after a restart), at most past the limit. */
export function parametersWeight(nodes: Iterable<NodeRecord>, of: 'parameters' | 'outputs' = 'parameters', limit = MAX_RUN_PARAMETERS): number {
  let weight = 0;
  for (const n of nodes) {
    weight += sizeOf(n[of], limit);
    if (weight > limit) break;
  }
  return weight;
}

/** About the size of a value as JSON, walked without recursion; stops once past `limit`. */
export function sizeOf(value: unknown, limit: number): number {
  let size = 0;
  const stack: unknown[] = [value];
  while (stack.length && size <= limit) {
    const x = stack.pop();
    if (typeof x === 'string') size += x.length + 2;
    else if (Array.isArray(x)) {
      size += 2 + x.length;
      for (const y of x) stack.push(y);
    } else if (x && typeof x === 'object') {
      for (const [k, y] of Object.entries(x)) {
        size += k.length + 4;
        stack.push(y);
      }
    } else size += 8;
  }
  return size;
}

const mib = (chars: number) => {
  const m = chars / 1024 / 1024;
  return `${Number.isInteger(m) ? m : m.toFixed(1)} MiB`;
};

/** The first `max` distinct ids of a list, without building more. */
function firstDistinct(ids: Iterable<string>, max: number): string[] {
  const out = new Set<string>();
  for (const id of ids) {
    if (out.size >= max) break;
    out.add(id);
  }
  return [...out];
}

export interface ApplyContext {
  run: RunRecord;
  /** The stage being applied: its full (scoped) name and the JSON pointer of its spec in the run's workflow. */
  stage: { full: string; pointer: string };
  /** The scope selectors are read in ('' at the root; `nested[0]` inside a subworkflow). */
  scope: string;
  /** The nodes of a stage, by its full name. */
  nodesOf(stage: string): NodeRecord[];
  /** A node by its id. */
  node(id: string): NodeRecord | undefined;
  /** The scheduler type of a stage (full name), or 'init'. */
  stageType(stage: string): string | undefined;
  /** The indices of the scopes a stage running a subworkflow made (empty for a stage running steps). */
  scopesOf(stage: string): number[];
  /** The stages of a scope applied so far (their own names, in order): what yadage's jq scripts see of the scope. */
  stagesIn(scope: string): string[];
  /** Whether a stage (full name) runs a subworkflow rather than steps. */
  runsWorkflow(stage: string): boolean;
  /** A value a stage of `scope` registered (register_values) under this key, the latest applied first; undefined when none did. */
  registered(scope: string, key: string): { value: unknown } | undefined;
  /** PFNs of a Rucio dataset's files for a scheme, as the run's owner. */
  rucioFiles(ref: { instance: string; did: string; scheme?: string }): Promise<string[]>;
  nextSeq(): number;
  /** Whether the run is to stop now (cancelled, the gateway closing): a stage's jq work, which may take minutes, then gives up (ApplyStopped). */
  stopped?(): boolean;
  /** How many more steps the run may get, of workflows.max_steps. */
  stepsLeft: number;
  maxSteps: number;
  /** Characters of parameters the run's steps may still hold (MAX_RUN_PARAMETERS in all); the stage spends what it makes. */
  parameters: { left: number };
  /** Characters the run's steps may still hold beyond their parameters (MAX_RUN_HELD in all); the stage spends what it makes. */
  held?: { left: number };
  /** Values the stage's parameters may still gather from earlier steps (MAX_STAGE_GATHERED); set when the stage is applied. */
  gathered?: { left: number };
  /** Names the stage's subworkflow inits may still look up in their data (run-data.ts); set when the stage is applied. */
  lookups?: { lookups: number; globs: number };
}

/** A subworkflow to start: its scope (`nested[0]`), its init parameters, the nodes they came from and where its stages are in the workflow. */
export interface NewScope {
  scope: string;
  parameters: Record<string, unknown>;
  after: string[];
  workflow: string;
  /** What the scope's init read: its subinit data directory and the directories of the nodes its parameters came from. */
  readdirs: string[];
}

/** Values one parameter may gather from earlier steps (a flattened reduce over every map output). */
const MAX_GATHERED = 100_000;
/**
 * Values a stage's parameters (and expressions) may gather together: each parameter's are built before
 * the stage's are weighed, and thousands of parameters each naming a map stage ten times made gigabytes.
 */
const MAX_STAGE_GATHERED = 2 * MAX_GATHERED;
/** Characters of a rendered command (the kernel's argument limit is 2 MiB anyway). */
const MAX_COMMAND = 1024 * 1024;

/** A resolved parameter: its value, the nodes it came from and, for a list, each item's node. */
interface Resolved {
  value: unknown;
  template: boolean;
  sources: string[];
  itemSources?: string[][];
}

type RefValue = { stages: string | string[]; output: string; unwrap?: boolean; flatten?: boolean };

const isObject = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

/** What a selector names: steps, or the scopes of a stage that runs a subworkflow (whose registered values it then reads). */
type Selection = { nodes: NodeRecord[] } | { scopes: string[] };

/** The items a selector's index names: all, or the one whose own index (not its position) it is. */
const pick = <T>(items: T[], indexOf: (item: T) => number, index: number | '*' | undefined, what: () => string): T[] => {
  if (index === undefined || index === '*') return items;
  const got = items.find((x) => indexOf(x) === index);
  if (got === undefined) throw new StageError(`${what()} has no ${index}`);
  return [got];
};

/**
 * `map`, `map[2]`, `map[*]` in the stage's scope; `nested[0].stage1` and `nested[*].stage1` into the
 * scopes of a stage that ran a subworkflow; `init` is the scope's own parameters.
 */
function select(ctx: ApplyContext, expr: string): Selection {
  const parts = parseSelector(expr);
  if (!parts) throw new StageError(`cannot read the stage selector ${JSON.stringify(expr)} (use NAME, NAME[INDEX], NAME[*] or NAME[INDEX].SUBSTAGE)`);
  let prefixes = [ctx.scope];
  for (const p of parts.slice(0, -1)) {
    prefixes = prefixes.flatMap((pre) => {
      const full = scoped(pre, p.name);
      return pick(
        ctx.scopesOf(full),
        (k) => k,
        p.index,
        () => `${expr}: stage ${full}'s subworkflows (${ctx.scopesOf(full).join(', ') || 'none'})`,
      ).map((k) => `${full}[${k}]`);
    });
  }
  const last = parts[parts.length - 1]!;
  const fulls = prefixes.map((pre) => scoped(pre, last.name));
  const mixed = fulls.find((f) => ctx.runsWorkflow(f) && ctx.nodesOf(f).length);
  if (mixed)
    throw new StageError(
      `${expr}: stage ${mixed} made both steps and subworkflows (its cases chose both), which one selector cannot read (yadage refuses it too)`,
    );
  if (fulls.some((f) => ctx.runsWorkflow(f))) {
    return {
      scopes: fulls.flatMap((f) =>
        pick(
          ctx.scopesOf(f),
          (k) => k,
          last.index,
          () => `${expr}: stage ${f}'s subworkflows`,
        ).map((k) => `${f}[${k}]`),
      ),
    };
  }
  return {
    nodes: fulls.flatMap((f) =>
      pick(
        ctx.nodesOf(f),
        (n) => n.index ?? 0,
        last.index,
        () => `${expr}: stage ${f}'s steps`,
      ),
    ),
  };
}

function outputOf(n: NodeRecord, key: string): unknown {
  if (!(key in n.outputs)) {
    const what = n.stage === INIT_STAGE ? `the workflow has no parameter ${key}` : `step ${n.id} published no output ${key}`;
    throw new StageError(`${what} (it has: ${Object.keys(n.outputs).join(', ') || 'nothing'})`);
  }
  return n.outputs[key];
}

/** A registered value of a scope, evaluated there (what a selector of a subworkflow stage's output reads). */
async function scopeValue(ctx: ApplyContext, scope: string, key: string, depth: number): Promise<Resolved> {
  const got = ctx.registered(scope, key);
  if (!got) throw new StageError(`the subworkflow ${scope} registered no value ${key} (register_values)`);
  if (depth >= MAX_VALUE_DEPTH) throw new StageError(`value ${key}: registered values name each other more than ${MAX_VALUE_DEPTH} deep (a loop?)`);
  return resolveParameter({ ...ctx, scope }, got.value, depth + 1);
}

async function resolveStagesRef(ctx: ApplyContext, ref: RefValue, depth: number): Promise<Resolved> {
  const exprs = Array.isArray(ref.stages) ? ref.stages : [ref.stages];
  const stageLeft = ctx.gathered ?? { left: MAX_STAGE_GATHERED };
  const tooMany = () =>
    new StageError(
      `the stage's parameters gather more than ${MAX_STAGE_GATHERED.toLocaleString('en')} values from earlier steps together; pass big lists in a file`,
    );
  let pairs: { v: unknown; src: string }[] = [];
  for (const e of exprs) {
    const sel = select(ctx, e);
    // counted before they are gathered: with the stage's other parameters', not after each is built
    if (pairs.length + ('nodes' in sel ? sel.nodes.length : sel.scopes.length) > stageLeft.left) throw tooMany();
    if ('nodes' in sel) pairs.push(...sel.nodes.map((n) => ({ v: outputOf(n, ref.output), src: n.id })));
    else
      for (const scope of sel.scopes) {
        const r = await scopeValue(ctx, scope, ref.output, depth);
        pairs.push({ v: r.value, src: r.sources[0] ?? scoped(scope, INIT_STAGE) });
      }
    if (pairs.length > MAX_GATHERED) break;
  }
  if (pairs.length > MAX_GATHERED)
    throw new StageError(`it gathers ${pairs.length.toLocaleString('en')} values from ${exprs.join(', ')}; at most ${MAX_GATHERED.toLocaleString('en')}`);
  if (ref.flatten) {
    // One level, as yadage does: a step's list joins the others' items; lists inside it stay lists.
    const flat: { v: unknown; src: string }[] = [];
    for (const p of pairs) {
      for (const v of Array.isArray(p.v) ? p.v : [p.v]) {
        if (flat.push({ v, src: p.src }) > MAX_GATHERED) {
          throw new StageError(`flattened, it gathers more than ${MAX_GATHERED.toLocaleString('en')} values from ${exprs.join(', ')}`);
        }
      }
    }
    pairs = flat;
  }
  if ((stageLeft.left -= pairs.length) < 0) throw tooMany();
  const sources = [...new Set(pairs.map((p) => p.src))];
  if (ref.unwrap && pairs.length === 1) {
    const only = pairs[0]!;
    return { value: only.v, template: false, sources, itemSources: Array.isArray(only.v) ? only.v.map(() => [only.src]) : undefined };
  }
  return { value: pairs.map((p) => p.v), template: false, sources, itemSources: pairs.map((p) => [p.src]) };
}

/** Registered values may name other registered values; past this depth it is a loop. */
const MAX_VALUE_DEPTH = 16;

async function resolveParameter(ctx: ApplyContext, value: unknown, depth = 0): Promise<Resolved> {
  if (isObject(value) && value.expression_type === 'fromvalue') {
    const key = String(value.key);
    if (value.scope !== undefined) {
      // a value registered inside one subworkflow
      const sel = select(ctx, String(value.scope));
      if (!('scopes' in sel) || sel.scopes.length !== 1) throw new StageError(`value ${key}: scope ${String(value.scope)} names no single subworkflow`);
      return { ...(await scopeValue(ctx, sel.scopes[0]!, key, depth)), template: false };
    }
    const got = ctx.registered(ctx.scope, key);
    if (!got) throw new StageError(`no stage registered a value ${key}`);
    if (depth >= MAX_VALUE_DEPTH) throw new StageError(`value ${key}: registered values name each other more than ${MAX_VALUE_DEPTH} deep (a loop?)`);
    const r = await resolveParameter(ctx, got.value, depth + 1);
    return { ...r, template: false };
  }
  // `steps` is yadage's other name for `stages`; expression_type: stage-output-selector says what the keys already say.
  if (isObject(value) && ('stages' in value || 'steps' in value)) {
    return resolveStagesRef(ctx, { ...(value as unknown as RefValue), stages: (value.stages ?? value.steps) as string | string[] }, depth);
  }
  if (isObject(value) && 'step' in value) {
    const sel = select(ctx, String(value.step));
    if ('scopes' in sel) {
      if (sel.scopes.length !== 1) throw new StageError(`{step: ${String(value.step)}} names ${sel.scopes.length} subworkflows; name one as STAGE[INDEX]`);
      if (value.output === undefined) throw new StageError(`{step: ${String(value.step)}} names a subworkflow: say which registered value it reads (output)`);
      return { ...(await scopeValue(ctx, sel.scopes[0]!, String(value.output), depth)), template: false };
    }
    if (sel.nodes.length !== 1) throw new StageError(`{step: ${String(value.step)}} names ${sel.nodes.length} steps; name one as STAGE[INDEX]`);
    const n = sel.nodes[0]!;
    return { value: value.output === undefined ? n.outputs : outputOf(n, String(value.output)), template: false, sources: [n.id] };
  }
  if (isObject(value) && 'rucio' in value) {
    const ref = value.rucio as { instance: string; did: string; scheme?: string };
    const files = await ctx.rucioFiles(ref);
    return { value: files, template: false, sources: [] };
  }
  return { value, template: typeof value === 'string' || Array.isArray(value), sources: [] };
}

/** yadage interpolates only {workdir} into literal parameters; anything else in braces stays. */
function withWorkdir(value: unknown, workdir: string, grown: { chars: number }): unknown {
  if (typeof value === 'string') {
    const out = value.replaceAll('{workdir}', workdir);
    grown.chars += out.length - value.length;
    return out;
  }
  if (Array.isArray(value)) return value.map((v) => withWorkdir(v, workdir, grown));
  if (isObject(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, withWorkdir(v, workdir, grown)]));
  return value;
}

/**
 * The steps of a scope as yadage's jq scripts see them: each applied stage's steps as
 * {_nodeid}, a subworkflow stage's scopes as objects of their own stages.
 */
function stepsView(ctx: ApplyContext, scope: string): Record<string, unknown> {
  const view: Record<string, unknown> = {};
  for (const name of ctx.stagesIn(scope)) {
    const full = scoped(scope, name);
    const scopes = ctx.scopesOf(full);
    view[name] = scopes.length ? scopes.map((k) => stepsView(ctx, `${full}[${k}]`)) : ctx.nodesOf(full).map((n) => ({ _nodeid: n.id }));
  }
  return view;
}

const isRef = (v: unknown, key: string): v is Record<string, unknown> => isObject(v) && Object.hasOwn(v, key);

/** Replaces every object with `key` in a value (depth first) by what `f` makes of it. */
async function replaceObjects(v: unknown, key: string, f: (o: Record<string, unknown>) => Promise<unknown> | unknown): Promise<unknown> {
  if (isRef(v, key)) return f(v);
  if (Array.isArray(v)) {
    const out: unknown[] = [];
    for (const x of v) out.push(await replaceObjects(x, key, f));
    return out;
  }
  if (isObject(v)) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) setOwn(out, k, await replaceObjects(x, key, f));
    return out;
  }
  return v;
}

/**
 * A node's outputs with every scalar replaced by a pointer to it ({$wflowpointer: {step, result}}), as
 * yadage hands them to jq; refused (StageError) once it would be more than jq takes as input.
 */
function pointerized(v: unknown, step: string, path = '', room = { chars: JQ_LIMITS.inputBytes }): unknown {
  if (Array.isArray(v)) return v.map((x, i) => pointerized(x, step, `${path}/${i}`, room));
  if (isObject(v))
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, pointerized(x, step, `${path}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`, room)]));
  if ((room.chars -= 40 + step.length + path.length) < 0)
    throw new StageError(`bindings: step ${step}'s results as pointers would be more than ${mib(JQ_LIMITS.inputBytes)}, more than a jq script reads`);
  return { $wflowpointer: { step, result: path } };
}

/** The options of a jq call applying a stage: the run owner's work (served in turn with other users'); none once the run is to stop. */
function jqOpts(ctx: ApplyContext): JqOptions {
  if (ctx.stopped?.()) throw new ApplyStopped('the run is to stop');
  return { owner: ctx.run.username };
}

const jqStage = async (ctx: ApplyContext, what: string, filter: string, input: unknown, all = false): Promise<unknown> => {
  const opts = jqOpts(ctx);
  try {
    return all ? await jq(filter, input, opts) : await jqFirst(filter, input, opts);
  } catch (err) {
    if (err instanceof JqError) throw new StageError(`${what}: ${err.message}`);
    throw err;
  }
};

/**
 * A jq-stage's items: its bindings, with each {$wflowref: [node selector, result script]} replaced by
 * the script's outputs over the selected steps' results (scalars as pointers, so where a value came
 * from stays known), run through the stepscript (a list of parameter sets); the pointers are then
 * read, and the postscript applied to each set.
 */
async function jqStageSets(ctx: ApplyContext, stage: StageSpec): Promise<ParameterSet[]> {
  const sch = stage.scheduler;
  const view = stepsView(ctx, ctx.scope);
  const nodeById = new Map<string, NodeRecord>();
  for (const name of ctx.stagesIn(ctx.scope)) for (const n of ctx.nodesOf(scoped(ctx.scope, name))) nodeById.set(n.id, n);
  // What the $wflowrefs read becomes the stepscript's input: bounded like it as it is made (a selector may name one step a thousand times).
  const bindsRoom = { chars: JQ_LIMITS.inputBytes };
  const binds = await replaceObjects(sch.bindings ?? {}, '$wflowref', async (ref) => {
    const pair = ref.$wflowref;
    if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== 'string' || typeof pair[1] !== 'string') {
      throw new StageError('bindings: $wflowref must be [node selector, result script], two jq scripts');
    }
    const nodes = await jqStage(ctx, `bindings: $wflowref node selector ${pair[0]}`, pair[0], view, true);
    return replaceObjects(nodes, '_nodeid', async (o) => {
      const n = nodeById.get(String(o._nodeid));
      if (!n) throw new StageError(`bindings: $wflowref selected ${String(o._nodeid)}, which is not a step of this scope`);
      const result = await jqStage(ctx, `bindings: $wflowref result script ${pair[1]}`, pair[1], pointerized(n.outputs, n.id), true);
      if ((bindsRoom.chars -= sizeOf(result, bindsRoom.chars)) < 0)
        throw new StageError(`bindings: what the $wflowrefs read would be more than ${mib(JQ_LIMITS.inputBytes)}, more than the stepscript reads`);
      return result;
    });
  });
  const items = await jqStage(ctx, `stepscript`, sch.stepscript ?? '[.]', binds);
  if (!Array.isArray(items)) throw new StageError(`stepscript made ${items === null ? 'null' : typeof items}, not a list of parameter sets`);
  if (items.length > ctx.stepsLeft) {
    throw new StageError(
      `stepscript made ${items.length.toLocaleString('en')} steps; this run may have ${ctx.stepsLeft.toLocaleString('en')} more (workflows.max_steps is ${ctx.maxSteps.toLocaleString('en')})`,
    );
  }
  const sets: ParameterSet[] = [];
  // the items' parameters together, weighed as each is made (a postscript may make megabytes of each)
  const cap = Math.min(MAX_STAGE_PARAMETERS, ctx.parameters.left);
  let weight = 0;
  for (const [i, item] of items.entries()) {
    const sources = new Set<string>();
    // what the item's pointers read, bounded like the postscript's input as it is read (a thousand pointers may name one big result)
    let room = JQ_LIMITS.inputBytes;
    const finalized = await replaceObjects(item, '$wflowpointer', (o) => {
      const p = o.$wflowpointer as { step?: unknown; result?: unknown };
      const n = nodeById.get(String(p?.step));
      if (!n || typeof p.result !== 'string') throw new StageError(`stepscript item ${i}: a $wflowpointer names no step of this scope`);
      sources.add(n.id);
      let at: unknown = n.outputs;
      for (const key of p.result
        .split('/')
        .slice(1)
        .map((k) => k.replace(/~1/g, '/').replace(/~0/g, '~'))) {
        if (!at || typeof at !== 'object' || !Object.hasOwn(at, key)) throw new StageError(`stepscript item ${i}: step ${n.id} has nothing at ${p.result}`);
        at = (at as Record<string, unknown>)[key];
      }
      if ((room -= sizeOf(at, room)) < 0)
        throw new StageError(
          `stepscript item ${i}: what its $wflowpointers read would be more than ${mib(JQ_LIMITS.inputBytes)}, more than the postscript reads`,
        );
      return at;
    });
    const values = await jqStage(ctx, `postscript`, sch.postscript ?? '.', finalized);
    if (!isObject(values))
      throw new StageError(`item ${i} of the stepscript is ${Array.isArray(values) ? 'a list' : typeof values}, not an object of parameters`);
    if ((weight += sizeOf(values, cap - weight)) > cap)
      throw new StageError(`its steps would hold more than ${mib(cap)} of parameters (item ${i + 1} of the stepscript's ${items.length} passed it)`);
    sets.push({ values, sources: [...sources] });
  }
  ctx.parameters.left -= weight;
  return sets;
}

interface ParameterSet {
  values: Record<string, unknown>;
  sources: string[];
}

function scatter(stage: StageSpec, resolved: Map<string, Resolved>, stepsLeft: number, maxSteps: number, budget: { left: number }): ParameterSet[] {
  // The stage's own limit, or what the run has left when that is less.
  const cap = Math.min(MAX_STAGE_PARAMETERS, budget.left);
  const tooHeavy = (what: string) =>
    new StageError(
      cap < MAX_STAGE_PARAMETERS
        ? `${what} more than ${mib(Math.max(0, cap))} of parameters, what this run's steps may still hold (${mib(MAX_RUN_PARAMETERS)} in all); pass big lists in a file`
        : `${what} more than ${mib(MAX_STAGE_PARAMETERS)} of parameters together (a value every step gets counts in each); pass big lists in a file`,
    );
  const sch = stage.scheduler;
  const common: Record<string, unknown> = {};
  const commonSources = new Set<string>();
  for (const [k, r] of resolved) {
    if (sch.scatter?.parameters.includes(k)) continue;
    setOwn(common, k, r.value);
    r.sources.forEach((s) => commonSources.add(s));
  }
  const commonSize = sizeOf(common, cap);
  if (sch.scheduler_type === 'singlestep-stage' || !sch.scatter) {
    if (commonSize > cap) throw tooHeavy('its parameters hold');
    budget.left -= commonSize;
    return [{ values: common, sources: firstDistinct(commonSources, MAX_EDGES_PER_STEP) }];
  }
  const group = { batchsize: sch.batchsize, partitionsize: sch.partitionsize };
  // Each scattered list is grouped first (batches or parts, as yadage does), then the groups are combined.
  const lists = sch.scatter.parameters.map((p) => {
    const r = resolved.get(p)!;
    const items = Array.isArray(r.value) ? r.value : [r.value];
    const itemSources = r.itemSources ?? items.map(() => r.sources);
    const bounds = groupBounds(items.length, group);
    return {
      name: p,
      length: items.length,
      items: bounds ? bounds.map(([a, b]) => items.slice(a, b)) : items,
      itemSources: bounds ? bounds.map(([a, b]) => itemSources.slice(a, b).flat()) : itemSources,
    };
  });
  // Counted before anything is built: a cartesian product grows faster than any list in it.
  const shape = lists.map((l) => ({ name: l.name, length: l.length }));
  const size = scatterSize(sch.scatter.method, shape, group);
  if ('error' in size) throw new StageError(size.error);
  if (size.steps > stepsLeft) throw new StageError(tooManySteps(sch.scatter.method, shape, group, size.steps, maxSteps, stepsLeft));
  // What the steps' parameters weigh together, also before building them: shared values once per
  // step, each scattered item once per step it lands in (a cartesian product repeats them).
  let weight = commonSize * size.steps;
  for (const l of lists) {
    if (weight > cap) break;
    const repeats = sch.scatter.method === 'zip' || !l.items.length ? 1 : size.steps / l.items.length;
    weight += sizeOf(l.items, cap) * repeats;
  }
  if (weight > cap) throw tooHeavy(`its ${size.steps.toLocaleString('en')} steps would hold`);
  budget.left -= weight;
  let combos: { values: Record<string, unknown>; sources: string[] }[];
  if (sch.scatter.method === 'zip') {
    const count = lists[0]?.items.length ?? 0;
    combos = Array.from({ length: count }, (_, i) => ({
      values: Object.fromEntries(lists.map((l) => [l.name, l.items[i]])),
      sources: lists.flatMap((l) => l.itemSources[i] ?? []),
    }));
  } else {
    combos = [{ values: {}, sources: [] }];
    for (const l of lists) {
      combos = combos.flatMap((c) =>
        l.items.map((item, i) => ({ values: { ...c.values, [l.name]: item }, sources: [...c.sources, ...(l.itemSources[i] ?? [])] })),
      );
    }
  }
  const perStep = Math.max(1, Math.min(MAX_EDGES_PER_STEP, Math.floor(MAX_EDGES_PER_STAGE / Math.max(1, combos.length))));
  const shared = [...commonSources];
  return combos.map((c) => ({ values: { ...common, ...c.values }, sources: firstDistinct([...c.sources, ...shared.slice(0, perStep)], perStep) }));
}

/** [start, end) of each group of a list (batches of batchsize, or partitionsize parts as yadage cuts them); null when it is not grouped. */
function groupBounds(length: number, group: Grouping): [number, number][] | null {
  if (group.batchsize)
    return Array.from({ length: Math.ceil(length / group.batchsize) }, (_, i) => [i * group.batchsize!, Math.min(length, (i + 1) * group.batchsize!)]);
  if (!group.partitionsize) return null;
  const parts = Math.min(group.partitionsize, length);
  const out: [number, number][] = [];
  let end = 0;
  // yadage's parts: the k-th of p parts has floor((length + k) / p) items, the shorter ones first.
  for (let k = 0; k < parts; k++) out.push([end, (end += Math.floor((length + k) / parts))]);
  return out;
}

export function renderCommand(step: StepSpec, values: Record<string, unknown>): { command: string; interpreter: string } {
  const p = step.process as { process_type: string; cmd?: string; script?: string; interpreter?: string };
  if (p.process_type === 'string-interpolated-cmd') return { command: formatTemplate(p.cmd!, values), interpreter: 'sh' };
  return { command: formatTemplate(p.script!, values), interpreter: p.interpreter ?? 'sh' };
}

export function stepImage(step: StepSpec): string | undefined {
  const env = step.environment as { environment_type: string; image?: string; imagetag?: string } | null;
  if (env?.environment_type !== 'docker-encapsulated' || !env.image) return undefined;
  return env.imagetag ? `${env.image}:${env.imagetag}` : env.image;
}

export function stepEnv(step: StepSpec): Record<string, string> {
  const env = step.environment as { env?: Record<string, string> } | null;
  return env?.env ?? {};
}

/**
 * The value applied stages of a scope registered under a key (register_values), the later stage's when
 * several did. `stages`: the run's stage records, or (faster) those of the scope, in the run's order.
 */
export function registeredValue(run: RunRecord, scope: string, key: string, stages: readonly StageRecord[] = run.stages): { value: unknown } | undefined {
  for (let i = stages.length - 1; i >= 0; i--) {
    const rec = stages[i]!;
    if (rec.state !== 'APPLIED' || rec.type === 'init' || (rec.scope ?? '') !== scope) continue;
    const values = stageSpecOf(run, rec).scheduler.register_values;
    if (values && Object.hasOwn(values, key)) return { value: values[key] };
  }
  return undefined;
}

/** Whether a value counts as there, as yadage (Python) decides: not null, false, 0, an empty string, list or object. */
export function truthy(v: unknown): boolean {
  if (v === null || v === undefined || v === false || v === 0 || v === '') return false;
  if (Array.isArray(v)) return v.length > 0;
  if (isObject(v)) return Object.keys(v).length > 0;
  return true;
}

/**
 * For an expressions_fulfilled dependency: null when every expression has a value, else why not.
 * (yadage never applies such a stage; the run ends without it.)
 */
export async function unfulfilledExpression(ctx: ApplyContext, stage: StageSpec): Promise<string | null> {
  const deps = stage.dependencies;
  if (!deps || Array.isArray(deps) || deps.dependency_type !== 'expressions_fulfilled') return null;
  ctx.gathered ??= { left: MAX_STAGE_GATHERED };
  for (const [i, e] of (deps.expressions as unknown[]).entries()) {
    let value: unknown;
    try {
      value = (await resolveParameter(ctx, e)).value;
    } catch (err) {
      if (!(err instanceof StageError)) throw err;
      return `expression ${i + 1} of its dependencies has no value (${err.message})`;
    }
    if (!truthy(value)) return `expression ${i + 1} of its dependencies is empty (${JSON.stringify(value)?.slice(0, 80)})`;
  }
  return null;
}

/** A step that runs nothing (process or environment null, noop-env) and only publishes. */
export function publishesOnly(step: StepSpec): boolean {
  const env = step.environment as { environment_type?: string } | null;
  return step.process === null || env === null || env.environment_type === 'noop-env';
}

/** Where a step's k-th par_mount is written (in its .af/ directory, which the gateway writes without following links). */
export function parmountFile(workdir: string, k: number): string {
  return join(stepFiles(workdir).dir, `parmount-${k}`);
}

/** A command with every whole occurrence of a path (not part of a longer path) replaced by another. */
function replacePath(command: string, path: string, by: string): string {
  const esc = path.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  return command.replace(new RegExp(`(?<![A-Za-z0-9_.+/-])${esc}(?![A-Za-z0-9_.+/-])`, 'g'), () => by);
}

/** pyJson's text would be longer than it may be. */
class TooLong extends Error {}

/**
 * JSON as Python's json.dumps writes it (what yadage's jq binding prints): ", " and ": " between items,
 * non-ASCII escaped. Throws TooLong once it would be longer than `max` characters, before building
 * more (a jq output of megabytes of non-ASCII text is six times as long escaped).
 */
export function pyJson(v: unknown, max = Infinity): string {
  const parts: string[] = [];
  let room = max;
  const put = (s: string) => {
    if ((room -= s.length) < 0) throw new TooLong();
    parts.push(s);
  };
  const write = (x: unknown): void => {
    if (Array.isArray(x)) {
      put('[');
      x.forEach((y, i) => {
        if (i) put(', ');
        write(y);
      });
      return put(']');
    }
    if (x && typeof x === 'object') {
      put('{');
      let first = true;
      for (const [k, y] of Object.entries(x)) {
        if (!first) put(', ');
        first = false;
        write(k);
        put(': ');
        write(y);
      }
      return put('}');
    }
    if (typeof x === 'string' && x.length + 2 > room) throw new TooLong(); // never shorter escaped
    const text = JSON.stringify(x) ?? 'null';
    put(typeof x === 'string' ? text.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`) : text);
  };
  write(v);
  return parts.join('');
}

/** What applying a stage made: steps to run, and subworkflows to start (each a scope with its own stages). */
export interface Applied {
  nodes: NodeRecord[];
  scopes: NewScope[];
}

/** What one scheduled item runs: a step (the stage's own, or a case's at `pointer`), a subworkflow, or nothing (no case held). */
type Runs = { step: StepSpec; pointer?: string } | { workflow: string } | null;

/** For a stage with cases: the first case whose jq condition holds for the item's parameters (as yadage decides, Python's truth). */
async function chooseCase(ctx: ApplyContext, stage: StageSpec, values: Record<string, unknown>): Promise<Runs> {
  const cases = stage.scheduler.cases ?? [];
  for (const [j, c] of cases.entries()) {
    let holds: unknown;
    try {
      holds = await jqFirst(c.if, values, jqOpts(ctx));
    } catch (err) {
      if (err instanceof JqError && err.kind === 'no-output') holds = null;
      else if (err instanceof JqError) throw new StageError(`case ${j + 1} (if: ${c.if.slice(0, 80)}): ${err.message}`);
      else throw err;
    }
    if (!truthy(holds)) continue;
    if (c.step) return { step: c.step as StepSpec, pointer: `${ctx.stage.pointer}/scheduler/cases/${j}/step` };
    return { workflow: `${ctx.stage.pointer}/scheduler/cases/${j}/workflow` };
  }
  return null;
}

/**
 * The directories a new scope's init reads, as yadage's read-only init state: those of the nodes its
 * parameters came from (a step's own directory, an init's what it read) and its subinit data directory.
 */
function scopeReadDirs(ctx: ApplyContext, scope: string, sources: string[]): string[] {
  const dirs: string[] = [];
  for (const id of new Set(sources)) {
    const n = ctx.node(id);
    if (n) dirs.push(...nodeDirs(n));
  }
  const sub = subinitDir(ctx.run, scope, ctx.stageType);
  if (sub) dirs.push(sub);
  return dirs;
}

/** The steps and subworkflows of a stage whose dependencies all finished. Throws StageError with a message for people. */
export async function applyStage(ctx: ApplyContext, stage: StageSpec, dependencyNodes: NodeRecord[]): Promise<Applied> {
  ctx.gathered ??= { left: MAX_STAGE_GATHERED };
  const resolved = new Map<string, Resolved>();
  for (const [k, v] of Object.entries(stage.scheduler.parameters ?? {})) {
    try {
      resolved.set(k, await resolveParameter(ctx, v));
    } catch (err) {
      throw new StageError(`parameter ${k}: ${(err as Error).message}`);
    }
  }
  const jqItems = stage.scheduler.scheduler_type === 'jq-stage';
  const sets = jqItems ? await jqStageSets(ctx, stage) : scatter(stage, resolved, ctx.stepsLeft, ctx.maxSteps, ctx.parameters);
  if (sets.length > ctx.stepsLeft) {
    throw new StageError(
      `it would make ${sets.length.toLocaleString('en')} steps; this run may have ${ctx.stepsLeft.toLocaleString('en')} more (workflows.max_steps is ${ctx.maxSteps.toLocaleString('en')})`,
    );
  }
  const full = ctx.stage.full;
  const multi = stage.scheduler.scheduler_type !== 'singlestep-stage';
  const perStep = Math.max(1, Math.min(MAX_EDGES_PER_STEP, Math.floor(MAX_EDGES_PER_STAGE / Math.max(1, sets.length))));
  const fallbackAfter = dependencyNodes.length ? dependencyNodes.slice(0, perStep).map((n) => n.id) : [scoped(ctx.scope, INIT_STAGE)];
  const out: Applied = { nodes: [], scopes: [] };
  // what the stage's steps hold beyond their parameters, spent from the run's MAX_RUN_HELD
  const held = { chars: 0 };
  const holdsTooMuch = () =>
    ctx.held &&
    held.chars > ctx.held.left &&
    new StageError(
      `its steps' commands, par_mounts and parameters with {workdir} filled in would hold more than ${mib(Math.max(0, ctx.held.left))}, what this run's steps may still hold (${mib(MAX_RUN_HELD)} in all); pass big lists in a file`,
    );
  for (const set of sets) {
    const after = (set.sources.length ? set.sources : fallbackAfter).slice(0, perStep);
    // (cases see the parameters as yadage's jq does: before {workdir} is filled in)
    const runs: Runs = stage.scheduler.cases
      ? await chooseCase(ctx, stage, set.values)
      : stage.scheduler.workflow
        ? { workflow: `${ctx.stage.pointer}/scheduler/workflow` }
        : { step: stepOf(stage) };
    if (!runs) continue; // no case held: nothing runs for this item, as in yadage
    // yadage numbers a stage's steps and subworkflows in the order it makes them
    // (one count for both, as yadage keeps a stage's steps and subworkflows in one list: their directories never meet)
    const made = out.nodes.length + out.scopes.length;
    const scope = 'workflow' in runs ? `${full}[${made}]` : undefined;
    const index = multi && !scope ? made : null;
    const workdir = join(ctx.run.workspace, stageDir(scope ?? full), index === null ? '' : String(index));
    const values: Record<string, unknown> = {};
    // (a jq-stage's items are made by a script: every string in them may name {workdir}, as packtivity reads them)
    for (const [k, v] of Object.entries(set.values)) setOwn(values, k, jqItems || resolved.get(k)?.template ? withWorkdir(v, workdir, held) : v);
    if (scope) {
      const tooMuch = holdsTooMuch();
      if (tooMuch) throw tooMuch;
      // its init finds files as yadage's: in its one read-only directory (workflow_opts relative, discover)
      const readdirs = scopeReadDirs(ctx, scope, set.sources);
      const opts = stage.scheduler.workflow_opts ?? {};
      let parameters: Record<string, unknown>;
      try {
        parameters = await resolveInitValues(
          ctx.run.workspace,
          readdirs,
          values,
          { discover: opts.discover === true, relative: opts.relative !== false },
          (ctx.lookups ??= { lookups: MAX_INIT_LOOKUPS, globs: MAX_INIT_GLOBS }),
        );
      } catch (err) {
        if (err instanceof GlobError) throw new StageError(`the init of subworkflow ${scope}: ${err.message}`);
        throw err;
      }
      out.scopes.push({ scope, parameters, after, workflow: (runs as { workflow: string }).workflow, readdirs });
      continue;
    }
    const step = (runs as { step: StepSpec; pointer?: string }).step;
    const pointer = (runs as { pointer?: string }).pointer;
    let rendered: { command: string; interpreter: string } | undefined;
    try {
      if (!publishesOnly(step)) rendered = renderCommand(step, { ...values, workdir });
    } catch (err) {
      if (err instanceof TemplateError) throw new StageError(`its command cannot be made: ${err.message}`);
      throw err;
    }
    // par_mounts: files made from the parameters by jq, found by the command where a container would mount them
    let parmounts: string[] | undefined;
    const mounts = (step.environment as { par_mounts?: { mountpath: string; jqscript: string }[] } | null)?.par_mounts ?? [];
    if (rendered && mounts.length) {
      parmounts = [];
      let size = 0;
      const tooMuch = () => new StageError(`its par_mounts would hold more than ${MAX_COMMAND.toLocaleString('en')} characters; pass big lists in a file`);
      for (const [k, m] of mounts.entries()) {
        let text: string;
        try {
          // (written only as far as the par_mounts' room: megabytes of output are refused before they are escaped on the event loop)
          const lines: string[] = [];
          let room = MAX_COMMAND - size;
          for (const v of await jq(m.jqscript, values, jqOpts(ctx))) {
            const line = pyJson(v, room);
            room -= line.length + 1;
            lines.push(line);
          }
          text = lines.join('\n');
        } catch (err) {
          if (err instanceof JqError) throw new StageError(`par_mounts[${k}] (${m.mountpath}): ${err.message}`);
          if (err instanceof TooLong) throw tooMuch();
          throw err;
        }
        if ((size += text.length) > MAX_COMMAND) throw tooMuch();
        parmounts.push(text);
        rendered.command = replacePath(rendered.command, m.mountpath, parmountFile(workdir, k));
      }
    }
    if (rendered && rendered.command.length > MAX_COMMAND) {
      throw new StageError(
        `its command would be ${rendered.command.length.toLocaleString('en')} characters long; at most ${MAX_COMMAND.toLocaleString('en')} (pass long lists in a file)`,
      );
    }
    held.chars += (rendered?.command.length ?? 0) + (parmounts ?? []).reduce((w, t) => w + t.length, 0);
    const tooMuch = holdsTooMuch();
    if (tooMuch) throw tooMuch;
    out.nodes.push({
      id: multi ? `${full}:${index}` : full,
      seq: ctx.nextSeq(),
      stage: full,
      index,
      state: 'DEFINED',
      parameters: values,
      outputs: {},
      after,
      command: rendered?.command,
      interpreter: rendered?.interpreter,
      workdir,
      image: stepImage(step),
      ...(pointer ? { step: pointer } : {}),
      ...(parmounts ? { parmounts } : {}),
      attempts: 0,
      exit_code: null,
      started: null,
      finished: null,
      handle: null,
    } satisfies NodeRecord);
  }
  const tooMuch = holdsTooMuch();
  if (tooMuch) throw tooMuch;
  if (ctx.held) ctx.held.left -= held.chars;
  return out;
}

/**
 * What a step publishes after it succeeded. Throws StageError when an expected file is missing or a
 * glob would leave the step's directory (`root` is the run's workspace, the gateway's own directory;
 * `owner` the run's owner, whose work its jq scripts and YAML files are).
 */
export async function publish(step: StepSpec, node: NodeRecord, root: string, owner?: string): Promise<Record<string, unknown>> {
  const pub = step.publisher as {
    publisher_type: string;
    outputmap?: Record<string, unknown>;
    outputkey?: string;
    globexpression?: string;
    publish?: Record<string, unknown>;
    yamlfile?: string;
    glob?: boolean;
    relative_paths?: boolean;
  };
  const values = { ...node.parameters, workdir: node.workdir };
  const inWorkdir = async (pattern: string) => {
    try {
      return await globConfined(root, node.workdir, confinePattern(pattern, node.workdir));
    } catch (err) {
      if (err instanceof GlobError) throw new StageError(`publisher: ${err.message}`);
      throw err;
    }
  };
  switch (pub.publisher_type) {
    case 'frompar-pub': {
      // Each string leaf of the outputmap names a parameter; objects and lists around them keep their shape.
      const leaf = (v: unknown, at: string): unknown => {
        if (typeof v === 'string') {
          if (!Object.hasOwn(node.parameters, v)) throw new StageError(`publisher: the step has no parameter ${v} (outputmap ${at})`);
          return node.parameters[v];
        }
        if (Array.isArray(v)) return v.map((x, i) => leaf(x, `${at}[${i}]`));
        if (isObject(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, leaf(x, `${at}.${k}`)]));
        return v;
      };
      return Object.fromEntries(Object.entries(pub.outputmap ?? {}).map(([out, par]) => [out, leaf(par, out)]));
    }
    case 'fromglob-pub':
      return { [pub.outputkey!]: await inWorkdir(pub.globexpression!) };
    case 'interpolated-pub': {
      // Leaf by leaf, as packtivity does: each string is formatted (Python's str() of the values), made
      // absolute with relative_paths, and with glob replaced by its matches when there are any.
      const budget = { chars: MAX_FORMATTED }; // what one step publishes, all keys together
      const leaf = async (v: unknown): Promise<unknown> => {
        if (Array.isArray(v)) {
          const out: unknown[] = [];
          for (const x of v) out.push(await leaf(x));
          return out;
        }
        if (isObject(v)) {
          const out: Record<string, unknown> = {};
          for (const [k, x] of Object.entries(v)) setOwn(out, k, await leaf(x));
          return out;
        }
        if (typeof v !== 'string') return v;
        let text = formatDeep(v, values, budget) as string;
        if (pub.relative_paths && !text.startsWith('/')) text = join(node.workdir, text);
        if (!pub.glob) return text;
        const matches = await inWorkdir(text);
        return matches.length ? matches : text;
      };
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(pub.publish ?? {})) {
        try {
          setOwn(out, k, await leaf(v));
        } catch (err) {
          if (err instanceof StageError) throw err;
          throw new StageError(`publisher ${k}: ${(err as Error).message}`);
        }
      }
      return out;
    }
    case 'fromparjq-pub': {
      // A jq script over the parameters makes the outputs; a string leaf naming a file in the step's
      // directory (tryExact) becomes its path, else with glob its matches (confined to the directory).
      const p = pub as unknown as { script?: string; tryExact?: boolean; glob?: boolean; relative_paths?: boolean };
      let result: unknown;
      try {
        result = await jqFirst(p.script ?? '.', node.parameters, { owner });
      } catch (err) {
        if (err instanceof JqError) throw new StageError(`publisher: ${err.message}`);
        throw err;
      }
      if (!isObject(result))
        throw new StageError(`publisher: its jq script made ${Array.isArray(result) ? 'a list' : 'a single value'}, not an object of outputs`);
      const leaf = async (v: unknown): Promise<unknown> => {
        if (Array.isArray(v)) return Promise.all(v.map(leaf));
        if (isObject(v)) return Object.fromEntries(await Promise.all(Object.entries(v).map(async ([k, x]) => [k, await leaf(x)])));
        if (typeof v !== 'string') return v;
        const search = p.relative_paths && !isAbsolute(v) ? join(node.workdir, v) : v;
        const inside = !relative(node.workdir, resolve(node.workdir, search)).startsWith('..');
        if ((p.tryExact ?? true) && inside && (await existsConfined(root, resolve(node.workdir, search)))) return search;
        if (p.glob) {
          const matches = await inWorkdir(search);
          if (matches.length) return matches;
        }
        return v;
      };
      return (await leaf(result)) as Record<string, unknown>;
    }
    case 'fromyaml-pub': {
      // A YAML file the step wrote in its directory holds its outputs (read like a bundle's file: bounded, off the event loop when big).
      const name = String(pub.yamlfile);
      const file = resolve(node.workdir, name);
      if (relative(node.workdir, file).startsWith('..') || isAbsolute(relative(node.workdir, file))) {
        throw new StageError(`publisher: yamlfile ${name} is not inside the step's directory`);
      }
      const fh = await openConfined(root, file);
      if (!fh) throw new StageError(`publisher: the step wrote no ${name} (or it is not a plain file)`);
      let text: string;
      try {
        const { size } = await fh.stat();
        if (size > MAX_YAML_OUTPUTS)
          throw new StageError(`publisher: ${name} is ${size.toLocaleString('en')} bytes; at most ${MAX_YAML_OUTPUTS.toLocaleString('en')}`);
        text = await fh.readFile('utf8');
      } finally {
        await fh.close();
      }
      const parsed = (await parseBundle({ [name]: text }, owner ?? `publisher:${node.id}`, { step: true })).get(name)!;
      if ('error' in parsed) throw new StageError(`publisher: ${parsed.error}`);
      if (!isObject(parsed.value))
        throw new StageError(`publisher: ${name} holds ${Array.isArray(parsed.value) ? 'a list' : 'a single value'}, not an object of outputs`);
      return parsed.value;
    }
    case 'constant-pub':
      return { ...(pub.publish ?? {}) };
    default:
      throw new StageError(`unknown publisher ${pub.publisher_type}`);
  }
}
