// How many steps a multistep stage makes, by arithmetic on its lists' lengths: the product for a
// cartesian scatter, the common length for zip, after each list is grouped into batches or parts
// (yadage's batchsize and partitionsize). It is checked against
// workflows.max_steps before any step is built (a cartesian scatter over four lists of 60 is
// 12,960,000 steps: building them first took 24 s and 3.5 GB of the gateway's event loop).
import type { WorkflowSpec } from '@af-gateway/schemas';
import type { WorkflowProblem } from './workflow-loader.js';

export interface ScatterList {
  name: string;
  length: number;
}

export type ScatterSize = { steps: number } | { error: string };

/** How a multistep stage groups each scattered list before combining them (yadage's batchsize and partitionsize). */
export interface Grouping {
  batchsize?: number;
  partitionsize?: number;
}

const n = (x: number) => x.toLocaleString('en');

/** "a cartesian scatter over 4 lists of 60 (a, b, c, d)" */
export function describeScatter(method: string, lists: ScatterList[], group: Grouping = {}): string {
  const lengths = [...new Set(lists.map((l) => l.length))];
  const over =
    lengths.length === 1 ? `${lists.length} list${lists.length === 1 ? '' : 's'} of ${n(lengths[0]!)}` : `lists of ${lists.map((l) => n(l.length)).join(', ')}`;
  const grouped = group.batchsize ? ` in batches of ${n(group.batchsize)}` : group.partitionsize ? ` in ${n(group.partitionsize)} parts each` : '';
  return `a ${method} scatter over ${over} (${lists.map((l) => l.name).join(', ')})${grouped}`;
}

/** How many groups a list of `length` items makes: batches of batchsize, or partitionsize parts (fewer when the list is shorter). */
export function groupCount(length: number, group: Grouping = {}): number {
  if (group.batchsize) return Math.ceil(length / group.batchsize);
  if (group.partitionsize) return Math.min(group.partitionsize, length);
  return length;
}

/**
 * Steps of a scatter, as yadage makes them: each scattered list is first grouped (batches or parts),
 * then the groups are zipped or combined, so a batched cartesian scatter makes the product of each
 * list's batch count.
 */
export function scatterSize(method: string, lists: ScatterList[], group: Grouping = {}): ScatterSize {
  if (method === 'zip') {
    const lengths = new Set(lists.map((l) => l.length));
    if (lengths.size > 1) return { error: `scatter zip needs lists of one length; ${lists.map((l) => `${l.name} has ${n(l.length)}`).join(', ')}` };
    return { steps: groupCount(lists[0]?.length ?? 0, group) };
  }
  return { steps: lists.reduce((p, l) => p * groupCount(l.length, group), 1) }; // a float: past 2^53 it is still far above any limit
}

/** The message when a stage would make more steps than allowed. */
export function tooManySteps(method: string, lists: ScatterList[], group: Grouping, steps: number, maxSteps: number, left?: number): string {
  const what = `${describeScatter(method, lists, group)} makes ${n(steps)} steps`;
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
  if ('step' in value || 'rucio' in value || 'expression_type' in value) return undefined;
  if (!('stages' in value) && !('steps' in value)) return 1;
  const ref = value as { stages?: string | string[]; steps?: string | string[]; output: string; unwrap?: boolean; flatten?: boolean };
  const sel = ref.stages ?? ref.steps!;
  const exprs = Array.isArray(sel) ? sel : [sel];
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
    const group = { batchsize: sch.batchsize, partitionsize: sch.partitionsize };
    const size = scatterSize(sch.scatter.method, lists, group);
    const path = `$.stages[${i}].scheduler.scatter`;
    if ('error' in size) problems.push({ path, message: size.error });
    else if (size.steps > maxSteps) problems.push({ path, message: tooManySteps(sch.scatter.method, lists, group, size.steps, maxSteps) });
    else total += size.steps;
  });
  if (!problems.length && allKnown && total > maxSteps) {
    problems.push({ path: '$.stages', message: `the stages make ${n(total)} steps together; workflows.max_steps is ${n(maxSteps)}` });
  }
  return problems;
}
