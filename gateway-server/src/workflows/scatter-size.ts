// How many steps a multistep stage makes, by arithmetic on its lists' lengths: the product for a
// cartesian scatter, the common length for zip, divided into batches. It is checked against
// workflows.max_steps before any step is built (a cartesian scatter over four lists of 60 is
// 12,960,000 steps: building them first took 24 s and 3.5 GB of the gateway's event loop).
import type { WorkflowSpec } from '@af-gateway/schemas';
import type { WorkflowProblem } from './workflow-loader.js';

export interface ScatterList {
  name: string;
  length: number;
}

export type ScatterSize = { steps: number } | { error: string };

/** Parameter sets a scatter may make before they are batched (batchsize groups them into fewer steps). */
export const MAX_COMBINATIONS = 200_000;

const n = (x: number) => x.toLocaleString('en');

/** "a cartesian scatter over 4 lists of 60 (a, b, c, d)" */
export function describeScatter(method: string, lists: ScatterList[], batchsize?: number): string {
  const lengths = [...new Set(lists.map((l) => l.length))];
  const over =
    lengths.length === 1 ? `${lists.length} list${lists.length === 1 ? '' : 's'} of ${n(lengths[0]!)}` : `lists of ${lists.map((l) => n(l.length)).join(', ')}`;
  return `a ${method} scatter over ${over} (${lists.map((l) => l.name).join(', ')})${batchsize ? ` in batches of ${n(batchsize)}` : ''}`;
}

export function scatterSize(method: string, lists: ScatterList[], batchsize?: number): ScatterSize {
  let items: number;
  if (method === 'zip') {
    const lengths = new Set(lists.map((l) => l.length));
    if (lengths.size > 1) return { error: `scatter zip needs lists of one length; ${lists.map((l) => `${l.name} has ${n(l.length)}`).join(', ')}` };
    items = lists[0]?.length ?? 0;
  } else {
    items = lists.reduce((p, l) => p * l.length, 1); // a float: past 2^53 it is still far above any limit
  }
  if (batchsize && items > MAX_COMBINATIONS) {
    return { error: `${describeScatter(method, lists, batchsize)} makes ${n(items)} parameter sets before batching; at most ${n(MAX_COMBINATIONS)}` };
  }
  return { steps: batchsize ? Math.ceil(items / batchsize) : items };
}

/** The message when a stage would make more steps than allowed. */
export function tooManySteps(method: string, lists: ScatterList[], batchsize: number | undefined, steps: number, maxSteps: number, left?: number): string {
  const what = `${describeScatter(method, lists, batchsize)} makes ${n(steps)} steps`;
  return left !== undefined && left < maxSteps
    ? `${what}; this run may have ${n(left)} more (workflows.max_steps is ${n(maxSteps)})`
    : `${what}; workflows.max_steps is ${n(maxSteps)}`;
}

/** Values a stage reference gathers when flattened: nested lists are counted, not built. */
function flatCount(v: unknown): number {
  let count = 0;
  const stack: unknown[] = [v];
  while (stack.length) {
    const x = stack.pop();
    if (Array.isArray(x)) for (const y of x) stack.push(y);
    else count++;
  }
  return count;
}

/**
 * The length of a scattered parameter known before the run starts (a literal, or the workflow's own
 * parameters), as the engine will see it (stages.ts resolveStagesRef); undefined when it comes from
 * steps that have not run yet.
 */
function staticLength(value: unknown, parameters: Record<string, unknown>): number | undefined {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return Array.isArray(value) ? value.length : 1;
  if ('step' in value || 'rucio' in value) return undefined;
  if (!('stages' in value)) return 1;
  const ref = value as { stages: string | string[]; output: string; unwrap?: boolean; flatten?: boolean };
  const exprs = Array.isArray(ref.stages) ? ref.stages : [ref.stages];
  if (!exprs.every((e) => /^\s*init(\[(0|\*)\])?\s*$/.test(e)) || !Object.hasOwn(parameters, ref.output)) return undefined;
  const v = parameters[ref.output];
  const pairs = ref.flatten ? exprs.length * flatCount(v) : exprs.length;
  if (ref.unwrap && pairs === 1) return ref.flatten ? 1 : Array.isArray(v) ? v.length : 1;
  return pairs;
}

/** Problems of stages whose scatter, known from the submission alone, exceeds workflows.max_steps. */
export function checkStaticScatters(spec: WorkflowSpec, parameters: Record<string, unknown>, maxSteps: number): WorkflowProblem[] {
  const problems: WorkflowProblem[] = [];
  let total = 0;
  let allKnown = true;
  spec.stages.forEach((stage, i) => {
    const sch = stage.scheduler;
    if (sch.scheduler_type !== 'multistep-stage' || !sch.scatter) {
      total += 1;
      return;
    }
    const lists: ScatterList[] = [];
    for (const p of sch.scatter.parameters) {
      const length = staticLength((sch.parameters ?? {})[p], parameters);
      if (length === undefined) {
        allKnown = false;
        return;
      }
      lists.push({ name: p, length });
    }
    const size = scatterSize(sch.scatter.method, lists, sch.batchsize);
    const path = `$.stages[${i}].scheduler.scatter`;
    if ('error' in size) problems.push({ path, message: size.error });
    else if (size.steps > maxSteps) problems.push({ path, message: tooManySteps(sch.scatter.method, lists, sch.batchsize, size.steps, maxSteps) });
    else total += size.steps;
  });
  if (!problems.length && allKnown && total > maxSteps) {
    problems.push({ path: '$.stages', message: `the stages make ${n(total)} steps together; workflows.max_steps is ${n(maxSteps)}` });
  }
  return problems;
}
