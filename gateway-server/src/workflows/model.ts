// What the workflow engine keeps per run and per node; persisted through the state store.
import type { Subinits, WorkflowSpec, WorkflowState } from '@af-gateway/schemas';
import type { BackendHandle } from '../clusters/model.js';

export type { WorkflowState };
export type StageSpec = WorkflowSpec['stages'][number];
export type StepSpec = NonNullable<StageSpec['scheduler']['step']>;
/** A stage's register (an AF extension): where its steps' files go in Rucio. */
export type RegisterSpec = NonNullable<StageSpec['register']>;
export type StageState = 'WAITING' | 'APPLIED' | 'SKIPPED' | 'FAILED';

/** Where a run's inits find its input data: directories relative to the data root (run-data.ts). */
export interface RunDataDirs {
  initdir: string;
  subinits?: Subinits;
}

export interface StageRecord {
  name: string;
  type: 'init' | StageSpec['scheduler']['scheduler_type'];
  dependencies: string[];
  state: StageState;
  message?: string;
  /** The scope a subworkflow's stage lives in (`nested[0]`); absent at the root. */
  scope?: string;
  /** Where a subworkflow's stage is in the run's workflow (a JSON pointer); root stages are found by name. */
  spec?: string;
}

export interface NodeRecord {
  id: string;
  /** Order of creation (the store keeps nodes in it). */
  seq: number;
  stage: string;
  index: number | null;
  state: WorkflowState;
  parameters: Record<string, unknown>;
  outputs: Record<string, unknown>;
  /** Nodes whose outputs this one reads (the DAG's edges into it). */
  after: string[];
  command?: string;
  interpreter?: string;
  workdir: string;
  image?: string;
  /** What the step's par_mounts hold, in their order (written to .af/parmount-K before each attempt). */
  parmounts?: string[];
  /** The DIDs its stage's register put into Rucio for it. */
  registered?: string[];
  /** An init's directories (its data directory, or those of the nodes its values came from): what a subworkflow's init after it searches, as yadage's read-only init states. */
  readdirs?: string[];
  /** The step a case chose (a JSON pointer into the run's workflow; for a subworkflow's init, the workflow); absent when it is the stage's own. */
  step?: string;
  attempts: number;
  exit_code: number | null;
  started: number | null;
  finished: number | null;
  job?: string;
  message?: string;
  handle: BackendHandle | null;
}

export interface RunRecord {
  id: string;
  name: string;
  username: string;
  groups: string[];
  status: WorkflowState;
  backend: string;
  created: number;
  finished: number | null;
  message: string;
  entry: string;
  /** Where the run's inits find its input data (relative to .af/data/ in the workspace); absent when it was sent none. */
  data?: RunDataDirs;
  /** The resolved workflow (the submitted files are kept in the workspace, under .af/workflow/). */
  spec: WorkflowSpec;
  parameters: Record<string, unknown>;
  retries: number;
  maxParallel: number;
  workspace: string;
  stages: StageRecord[];
  cancelRequested: string | null;
}

export const FINISHED: readonly WorkflowState[] = ['SUCCESS', 'FAILED', 'CANCELLED'];
export const isFinished = (s: WorkflowState) => FINISHED.includes(s);

/** The step a stage runs (the loader refused stages that run none). */
export function stepOf(stage: StageSpec): StepSpec {
  const step = stage.scheduler.step;
  if (!step) throw new Error(`stage ${stage.name} runs no step`);
  return step;
}

/**
 * Sets an own property: plain assignment of a key named `__proto__` (a parameter or output a user
 * may name so) would change the object's prototype and lose the value.
 */
export function setOwn(obj: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}
