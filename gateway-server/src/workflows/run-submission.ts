// What a submission becomes before the engine runs it: the checks of its init parameters, the new
// run's record with its init node, and the submitted files kept in the run's workspace.
import { mkdir, writeFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative } from 'node:path';
import type { WorkflowBundle, WorkflowSpec } from '@af-gateway/schemas';
import type { User } from '../auth/authenticator.js';
import { AppError, errorMessage } from '../errors.js';
import { nestingProblem } from './bundle-parser.js';
import { keptWorkflowDir } from './step-files.js';
import { dependenciesOf, INIT_STAGE } from './workflow-loader.js';
import type { NodeRecord, RunDataDirs, RunRecord, StageRecord } from './model.js';
import { dataRoot, DEFAULT_INITDIR } from './run-data.js';

/**
 * An init parameter nested too deep to be kept and sent, in words: JSON.parse takes any depth, but
 * a run is serialised recursively (state store, event stream, commands), which overflowed the stack.
 */
export function tooDeepParameter(parameters: Record<string, unknown>): string | null {
  for (const [name, value] of Object.entries(parameters)) {
    const deep = nestingProblem(value);
    if (deep) return `parameters.${name.slice(0, 100)} ${deep}`;
  }
  return null;
}

/** Init parameters the workflow reads ({stages: init, output: NAME}), in order of first use. */
export function requiredParameters(spec: { stages: { scheduler: { parameters?: Record<string, unknown> } }[] }): string[] {
  const names: string[] = [];
  for (const s of spec.stages) {
    for (const v of Object.values(s.scheduler.parameters ?? {})) {
      if (!v || typeof v !== 'object' || Array.isArray(v) || !('stages' in v)) continue;
      const ref = v as { stages: string | string[]; output: string };
      const stages = Array.isArray(ref.stages) ? ref.stages : [ref.stages];
      if (stages.some((x) => x.split('[')[0] === INIT_STAGE) && !names.includes(ref.output)) names.push(ref.output);
    }
  }
  return names;
}

/** A run's name when the submission gives none: the entry's directory, else its file name. */
export function defaultName(entry: string): string {
  const dir = basename(dirname(entry));
  const base = dir && dir !== '.' ? dir : basename(entry).replace(/\.(ya?ml|json)$/i, '');
  return (
    base
      .replace(/[^A-Za-z0-9_.-]/g, '-')
      .replace(/^[^A-Za-z0-9]+/, '')
      .slice(0, 64) || 'workflow'
  );
}

export interface NewRun {
  id: string;
  user: User;
  body: WorkflowBundle;
  spec: WorkflowSpec;
  backend: string;
  workspace: string;
  retries: number;
  maxParallel: number;
  /** Where the run's inits find its input data, when it was sent some. */
  data?: RunDataDirs;
}

/** A new run's record (running, its init stage applied) and its init node, whose outputs are the parameters. */
export function newRun(r: NewRun): { run: RunRecord; init: NodeRecord } {
  const parameters = r.body.parameters ?? {};
  const run: RunRecord = {
    id: r.id,
    name: r.body.name ?? defaultName(r.body.entry),
    username: r.user.name,
    groups: r.user.groups,
    status: 'RUNNING',
    backend: r.backend,
    created: Date.now(),
    finished: null,
    message: '',
    entry: r.body.entry,
    spec: r.spec,
    parameters,
    retries: r.retries,
    maxParallel: r.maxParallel,
    workspace: r.workspace,
    ...(r.data ? { data: r.data } : {}),
    stages: [
      { name: INIT_STAGE, type: 'init', dependencies: [], state: 'APPLIED' },
      ...r.spec.stages.map((s): StageRecord => ({ name: s.name, type: s.scheduler.scheduler_type, dependencies: dependenciesOf(s, r.spec), state: 'WAITING' })),
    ],
    cancelRequested: null,
  };
  const init: NodeRecord = {
    id: INIT_STAGE,
    seq: 0,
    stage: INIT_STAGE,
    index: null,
    state: 'SUCCESS',
    parameters,
    outputs: parameters,
    after: [],
    workdir: r.workspace,
    // what a subworkflow reading the parameters searches: the data's init directory, as yadage's init state (it exists only when data was sent)
    readdirs: [join(dataRoot(r.workspace), r.data?.initdir ?? DEFAULT_INITDIR)],
    attempts: 0,
    exit_code: null,
    started: run.created,
    finished: run.created,
    handle: null,
  };
  return { run, init };
}

/**
 * Keeps the files as submitted, so a run can be inspected and re-run as it was (the gateway's own:
 * written before the owner may enter the workspace). A name outside the bundle, or one that is a
 * file and a directory at once, is a 422.
 */
export async function keepBundleFiles(workspace: string, files: Record<string, string>): Promise<void> {
  const kept = keptWorkflowDir(workspace);
  for (const [file, text] of Object.entries(files)) {
    const target = join(kept, file);
    const rel = relative(kept, target);
    if (!rel || rel.startsWith('..') || isAbsolute(rel) || file.includes('\0')) {
      throw new AppError(422, 'bad_file_name', `files: ${JSON.stringify(file.slice(0, 200))} is not a relative path inside the bundle`);
    }
    try {
      await mkdir(dirname(target), { recursive: true });
      await writeFile(target, text);
    } catch (err) {
      // e.g. both `a` and `a/b`: one name is a file and a directory at once
      throw new AppError(
        422,
        'bad_file_name',
        `files: ${JSON.stringify(file.slice(0, 200))} cannot be kept with the bundle's other files (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}); give each file its own path`,
      );
    }
  }
}
