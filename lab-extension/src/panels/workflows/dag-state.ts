// A run's DAG as the view holds it: what GET /api/af/workflows/{id} answered, with the event
// stream's 'workflow-dag' deltas merged in (changed or new nodes by id, new edges, all stages).
// Pure: the model and the tests use it alike.
import type { WorkflowDag, WorkflowNode, WorkflowRun, WorkflowState } from '@af-gateway/schemas';

export type DagStage = WorkflowDag['stages'][number];
export type DagEdge = WorkflowDag['edges'][number];
export type StepCounts = Record<WorkflowState, number>;

export const STATES: readonly WorkflowState[] = ['DEFINED', 'RUNNING', 'SUCCESS', 'FAILED', 'CANCELLED'];

export const emptyCounts = (): StepCounts => ({ DEFINED: 0, RUNNING: 0, SUCCESS: 0, FAILED: 0, CANCELLED: 0 });

export interface DagState {
  run: WorkflowRun;
  stages: DagStage[];
  nodes: Map<string, WorkflowNode>;
  /** Each stage's nodes by their index (a singlestep stage and init have theirs at 0). */
  byStage: Map<string, WorkflowNode[]>;
  edges: DagEdge[];
  edgeKeys: Set<string>;
}

/** What a merge changed: `structure` when stages, the node set or the edges did (layout again). */
export interface DagChange {
  structure: boolean;
  nodes: number;
  /** The ids of the nodes the delta carried (changed or new). */
  ids?: string[];
}

const edgeKey = (e: DagEdge) => `${e.from}\u0000${e.to}`;

function place(state: DagState, node: WorkflowNode): void {
  let list = state.byStage.get(node.stage);
  if (!list) state.byStage.set(node.stage, (list = []));
  list[node.index ?? 0] = node;
}

export function createDagState(dag: WorkflowDag): DagState {
  const state: DagState = { run: dag.run, stages: dag.stages, nodes: new Map(), byStage: new Map(), edges: [], edgeKeys: new Set() };
  mergeDag(state, { ...dag, stages: dag.stages });
  return state;
}

/** A stage's shape in the layout: what decides its box and where its nodes go. */
export function stageSignature(stages: DagStage[]): string {
  return stages.map((s) => `${s.name}|${s.type}|${s.state}|${s.dependencies.join(',')}`).join(';');
}

/** Merges a delta (or a full DAG) into `state`, in place. */
export function mergeDag(state: DagState, delta: WorkflowDag): DagChange {
  let structure = false;
  if (delta.run) state.run = delta.run;
  if (delta.stages && delta.stages.length) {
    if (stageSignature(delta.stages) !== stageSignature(state.stages)) structure = true;
    state.stages = delta.stages;
  }
  for (const node of delta.nodes ?? []) {
    const old = state.nodes.get(node.id);
    if (!old) structure = true;
    else if (old.stage !== node.stage || (old.index ?? 0) !== (node.index ?? 0)) {
      structure = true;
      const list = state.byStage.get(old.stage);
      if (list && list[old.index ?? 0] === old) delete list[old.index ?? 0];
    }
    state.nodes.set(node.id, node);
    place(state, node);
  }
  for (const e of delta.edges ?? []) {
    const k = edgeKey(e);
    if (state.edgeKeys.has(k)) continue;
    state.edgeKeys.add(k);
    state.edges.push(e);
    structure = true;
  }
  return { structure, nodes: delta.nodes?.length ?? 0, ids: (delta.nodes ?? []).map((n) => n.id) };
}

/** Steps per state in each stage. */
export function countsByStage(state: DagState): Map<string, StepCounts> {
  const out = new Map<string, StepCounts>();
  for (const [stage, list] of state.byStage) {
    const c = emptyCounts();
    for (const n of list) if (n) c[n.state]++;
    out.set(stage, c);
  }
  return out;
}

/** Steps per state over the whole DAG (without the inits, the run's and its subworkflows', which are no steps). */
export function totalCounts(byStage: Map<string, StepCounts>): StepCounts {
  const total = emptyCounts();
  for (const [stage, c] of byStage) {
    if (isInitStage(stage)) continue;
    for (const s of STATES) total[s] += c[s];
  }
  return total;
}

/** The inits drawn: the run's and its subworkflows' (parameters, no steps; the legend counts them apart). */
export function initCount(state: DagState): number {
  let n = 0;
  for (const [stage, list] of state.byStage) if (isInitStage(stage)) for (const node of list) if (node) n++;
  return n;
}

/** How many slots a stage's box needs: its nodes by index (a gap keeps its place). */
export function stageSlots(state: DagState, stage: string): number {
  return state.byStage.get(stage)?.length ?? 0;
}

/** Stages that skipped (never applied, as yadage leaves them). */
export function skippedStages(state: DagState): number {
  let n = 0;
  for (const s of state.stages) if (s.state === 'SKIPPED') n++;
  return n;
}

// Subworkflows: a stage running a workflow makes one scope per item (`nested[0]`) whose stages live
// under scoped names (`nested[0].stage1`, deeper `a[0].b[1].c`). Stage names hold no brackets, so
// `[INDEX].` separates the levels even when names hold dots.

/** The run's init or a subworkflow's (`nested[0].init`): parameters, no step. */
export const isInitStage = (stage: string): boolean => stage === 'init' || stage.endsWith('].init');

/** The scope a stage's full name lives in ('' at the top): `a[0].b[1].c` → `a[0].b[1]`. */
export function scopeOfStage(name: string): string {
  const i = name.lastIndexOf('].');
  return i < 0 ? '' : name.slice(0, i + 1);
}

/** The stage that made a scope: `a[0].b[1]` → `a[0].b`. */
export const stageOfScope = (scope: string): string => scope.slice(0, scope.lastIndexOf('['));

/** The scope's position among its stage's scopes: `a[0].b[12]` → 12. */
export const scopeIndex = (scope: string): number => Number(scope.slice(scope.lastIndexOf('[') + 1, -1));

/** The stages whose scopes hold a stage, outermost first: `a[0].b[1].c` → [`a`, `a[0].b`]. */
export function ancestorStages(name: string): string[] {
  const out: string[] = [];
  for (let i = name.indexOf('].'); i >= 0; i = name.indexOf('].', i + 2)) out.push(stageOfScope(name.slice(0, i + 1)));
  return out;
}

/** A name without the scope it lives in (`nested[0].stage1` → `stage1`; `a[0].b[1]` in `a[0]` → `b[1]`). */
export const shortName = (name: string, scope: string): string => (scope && name.startsWith(`${scope}.`) ? name.slice(scope.length + 1) : name);

/** The stage a node id belongs to ('init', 'STAGE', 'STAGE:INDEX'). */
export function stageOfNodeId(id: string): string {
  const i = id.lastIndexOf(':');
  return i > 0 && /^\d+$/.test(id.slice(i + 1)) ? id.slice(0, i) : id;
}
