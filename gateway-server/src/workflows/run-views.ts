// What the API and the event stream send about workflow runs: the engine's records (model.ts) as
// the wire formats workflow-run.json, workflow-dag.json and workflow-node.json, with states as
// workflow-state.json names them. Nothing here changes a record.
import type { WorkflowDag, WorkflowNode, WorkflowRun, WorkflowState } from '@af-gateway/schemas';
import { INIT_STAGE } from './workflow-loader.js';

/** The run's init stage or a subworkflow's (`nested[0].init`). */
export const isInitStage = (stage: string) => stage === INIT_STAGE || stage.endsWith(`].${INIT_STAGE}`);
import type { NodeRecord, RunRecord, StageRecord } from './model.js';

export type RunCounts = WorkflowRun['counts'];

/** Every state at zero. */
export function emptyCounts(): RunCounts {
  return { DEFINED: 0, RUNNING: 0, SUCCESS: 0, FAILED: 0, CANCELLED: 0 };
}

/** A run's steps per state, from the ids the engine keeps per state (the init nodes, the run's and its subworkflows', not counted). */
export function countsOf(byState: Record<WorkflowState, ReadonlySet<string>>, inits = 1): RunCounts {
  const counts = Object.fromEntries(Object.entries(byState).map(([state, ids]) => [state, ids.size])) as RunCounts;
  counts.SUCCESS -= inits;
  return counts;
}

/**
 * A run as workflow-run.json: its steps' counts (given, or counted from `nodesOf` when that is a
 * list) and the outputs of its last stages (those no stage depends on): a single step's outputs, or
 * a map stage's outputs gathered per key.
 */
export function runJson(run: RunRecord, nodesOf: NodeRecord[] | ((stage: string) => NodeRecord[]), counted?: RunCounts): WorkflowRun {
  let counts = counted;
  if (!counts) {
    counts = emptyCounts();
    for (const n of Array.isArray(nodesOf) ? nodesOf : []) if (!isInitStage(n.stage)) counts[n.state]++;
  }
  const ofStage = Array.isArray(nodesOf) ? (stage: string) => nodesOf.filter((n) => n.stage === stage) : nodesOf;
  const depended = new Set(run.stages.flatMap((s) => s.dependencies));
  const outputs: Record<string, unknown> = {};
  for (const s of run.stages) {
    if (s.type === 'init' || s.scope || depended.has(s.name) || s.state !== 'APPLIED') continue;
    const mine = ofStage(s.name).filter((n) => n.state === 'SUCCESS');
    if (!mine.length) continue;
    if (s.type === 'singlestep-stage') outputs[s.name] = mine[0]!.outputs;
    else {
      const keys = [...new Set(mine.flatMap((n) => Object.keys(n.outputs)))];
      outputs[s.name] = Object.fromEntries(keys.map((k) => [k, mine.map((n) => n.outputs[k])]));
    }
  }
  return {
    id: run.id,
    name: run.name,
    owner: run.username,
    status: run.status,
    backend: run.backend,
    created: run.created,
    finished: run.finished,
    ...(run.message ? { message: run.message } : {}),
    entry: run.entry,
    parameters: run.parameters,
    counts,
    stages_total: run.stages.filter((s) => s.type !== 'init').length,
    stages_applied: run.stages.filter((s) => s.type !== 'init' && s.state === 'APPLIED').length,
    workspace: run.workspace,
    outputs,
  };
}

/** A stage as workflow-dag.json lists it. */
export function stageJson(s: StageRecord): WorkflowDag['stages'][number] {
  return {
    name: s.name,
    type: s.type,
    dependencies: s.dependencies,
    state: s.state,
    ...(s.scope ? { scope: s.scope } : {}),
    ...(s.message ? { message: s.message } : {}),
  };
}

/** A step as workflow-node.json (the backend's handle and the interpreter stay inside). */
export function nodeJson(n: NodeRecord): WorkflowNode {
  const out: WorkflowNode = {
    id: n.id,
    stage: n.stage,
    index: n.index,
    state: n.state,
    parameters: n.parameters,
    outputs: n.outputs,
    workdir: n.workdir,
    attempts: n.attempts,
    exit_code: n.exit_code,
    started: n.started,
    finished: n.finished,
  };
  if (n.command !== undefined) out.command = n.command;
  if (n.image) out.image = n.image;
  if (n.job) out.job = n.job;
  if (n.message) out.message = n.message;
  if (n.registered) out.registered = n.registered;
  const chosen = n.step ? /\/cases\/(\d+)\/(step|workflow)$/.exec(n.step) : null;
  if (chosen) out.case = Number(chosen[1]);
  return out;
}

/** The edges into these nodes (from the nodes whose outputs each reads). */
export function edgesOf(nodes: Iterable<NodeRecord>): WorkflowDag['edges'] {
  return [...nodes].flatMap((n) => n.after.map((from) => ({ from, to: n.id })));
}

/**
 * A run as workflow-dag.json: the whole DAG for a GET, or (on the event stream) what changed since
 * the last message: the nodes given and the edges new since.
 */
export function dagJson(run: WorkflowRun, stages: readonly StageRecord[], nodes: readonly NodeRecord[], edges: WorkflowDag['edges']): WorkflowDag {
  return { run, stages: stages.map(stageJson), nodes: nodes.map(nodeJson), edges };
}
