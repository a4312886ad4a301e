// The workflow engine: runs yadage-style workflows as a DAG that grows while it runs. A stage is
// applied once every stage it depends on finished (so a map stage's width comes from what an earlier
// step published); each step runs as a job on the run's backend, in its own directory under the run's
// workspace; its publisher runs after it succeeded. Every change is written through to the state
// store, so after a restart running steps are checked again (adopted) and the run goes on.
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve } from 'node:path';
import type { FastifyBaseLogger } from 'fastify';
import type { WorkflowBundle, WorkflowDag, WorkflowRun, WorkflowSpec } from '@af-gateway/schemas';
import { joinedChecks, withDefaults, type Backend, type EngineBackend, type ProcessState, type StepLaunch } from '../backends/backend.js';
import type { BackendHandle } from '../clusters/model.js';
import type { StateStore } from '../store/state-store.js';
import type { ResolvedConfig } from '../config.js';
import type { User } from '../auth/authenticator.js';
import { AppError, conflict, errorMessage, notFound } from '../errors.js';
import { openConfined, removeTree, replaceConfined } from '../files/no-follow.js';
import type { FileToRegister } from '../rucio/rucio-upload.js';
import { dependenciesOf, INIT_STAGE, readWorkflow, type WorkflowProblem } from './workflow-loader.js';
import { ancestorStages, scoped, specAt, splitScoped, stageDir, stageSpecOf } from './scopes.js';
import {
  ApplyStopped,
  applyStage,
  heldWeight,
  MAX_RUN_HELD,
  MAX_RUN_OUTPUTS,
  MAX_RUN_PARAMETERS,
  parmountFile,
  parametersWeight,
  publish,
  sizeOf,
  StageError,
  stepEnv,
  registeredValue,
  unfulfilledExpression,
  type ApplyContext,
  type NewScope,
} from './stages.js';
import { checkStaticScatters } from './scatter-size.js';
import { dataDirs, initOutputs, keepDataFiles } from './run-data.js';
import { isFinished, stepOf, type NodeRecord, type RegisterSpec, type RunRecord, type StageRecord, type StageSpec, type StepSpec } from './model.js';
import { countsOf, dagJson, edgesOf, runJson } from './run-views.js';
import { readExitCode, readLogTail, STEP_FILE_MODE, stepFiles, writeStepFiles } from './step-files.js';
import { loadStepWrapperTemplate, stepWrapper } from './step-wrapper.js';
import { RunChanges, RunStore, SaveTimer, type WorkflowEvents } from './run-store.js';
import { keepBundleFiles, newRun, requiredParameters, tooDeepParameter } from './run-submission.js';
import { maySee, RunCap } from './run-access.js';

export { requiredParameters };

/** Stages whose register cannot be done here: an instance the gateway does not front, or a stage running a subworkflow. */
function registerProblems(wf: WorkflowSpec, instances: string[], base = '$'): WorkflowProblem[] {
  const out: WorkflowProblem[] = [];
  wf.stages.forEach((st, i) => {
    const at = `${base}.stages[${i}]`;
    const reg = st.register;
    if (reg && (st.scheduler.workflow || st.scheduler.cases?.some((c) => c.workflow))) {
      out.push({
        path: `${at}.register`,
        message: "register uploads a stage's step outputs; this stage runs a subworkflow (put register on the subworkflow's stages)",
      });
    }
    if (reg && !instances.includes(reg.instance)) {
      out.push({
        path: `${at}.register.instance`,
        message: instances.length
          ? `${reg.instance} is not one of this gateway's Rucio instances (${instances.join(', ')})`
          : 'this gateway fronts no Rucio instance to register files in',
      });
    }
    if (st.scheduler.workflow) out.push(...registerProblems(st.scheduler.workflow, instances, `${at}.scheduler.workflow`));
    (st.scheduler.cases ?? []).forEach((c, j) => c.workflow && out.push(...registerProblems(c.workflow, instances, `${at}.scheduler.cases[${j}].workflow`)));
  });
  return out;
}

/** Whether a path lies below a directory (by its words: the file is then opened without following links). */
const insideDir = (dir: string, p: string) => {
  const rel = relative(dir, p);
  return !!rel && !rel.startsWith('..') && !isAbsolute(rel);
};

/** Files one step may register in Rucio (a stage's register). */
const MAX_REGISTERED = 1000;

export interface WorkflowEngineDeps {
  store: StateStore;
  /** Backends steps may run on, by name (local always; the gateway's batch backend when configured). */
  backends: Map<string, Backend>;
  defaultBackend: string;
  config: ResolvedConfig;
  log: FastifyBaseLogger;
  /** PFNs of a Rucio dataset's files as a user; absent when the gateway fronts no Rucio. */
  rucioFiles?: (user: User, ref: { instance: string; did: string; scheme?: string }) => Promise<string[]>;
  /** Uploads a step's files to an RSE and registers them in Rucio as the user (a stage's register); the DIDs. */
  registerFiles?: (user: User, target: RegisterSpec, files: FileToRegister[]) => Promise<string[]>;
  /** The gateway's Rucio instances (a stage's register must name one). */
  rucioInstances?: string[];
  /** The user's current access token (the token broker's), or null: a step gets it as its BEARER_TOKEN_FILE. */
  userToken?: (user: string) => string | null;
  /** Calls back with a user's name whenever the broker holds a new token of theirs (running steps' files are renewed). */
  onUserToken?: (listener: (user: string) => void) => void;
}

interface ActiveRun {
  run: RunRecord;
  nodes: Map<string, NodeRecord>;
  byStage: Map<string, NodeRecord[]>;
  /** Node ids per state, in the order they got there: a tick looks only at the states it needs. */
  byState: Record<RunRecord['status'], Set<string>>;
  seq: number;
  /** What changed since the last flush (event stream and store). */
  changes: RunChanges;
  ticking: Promise<void> | null;
  again: boolean;
  /** Parameters the run's steps may still hold (stages.ts), weighed when a stage is first applied. */
  parameters?: { left: number };
  /** Outputs the run's steps may still publish, weighed when a step first publishes. */
  outputs?: { left: number };
  /** Commands and par_mounts the run's steps may still hold (stages.ts), weighed when a stage is first applied. */
  held?: { left: number };
  /** Stage records by full name (subworkflows add theirs as they start). */
  stageByName: Map<string, StageRecord>;
  /** Stage records by scope ('' at the root), in the run's order: a scope's stages without a walk over all the run's (thousands of scopes made that quadratic). */
  stagesByScope: Map<string, StageRecord[]>;
  /** For each stage running subworkflows, the indices of the scopes it made so far. */
  scopes: Map<string, number[]>;
}

export class WorkflowProblemsError extends AppError {
  constructor(readonly problems: WorkflowProblem[]) {
    super(422, 'invalid_workflow', `The workflow is not valid: ${problems.map((p) => `${p.path}${p.file ? ` (${p.file})` : ''}: ${p.message}`).join('; ')}`, {
      details: problems,
    });
  }
}

const FLUSH_MS = 200;

export class WorkflowEngine extends EventEmitter<WorkflowEvents> {
  private readonly active = new Map<string, ActiveRun>();
  /** The step backends with their optional hooks filled in, and each one's joined check. */
  private readonly backends = new Map<string, EngineBackend>();
  private readonly checks = new Map<string, (handles: BackendHandle[]) => Promise<ProcessState[]>>();
  private timer: NodeJS.Timeout | undefined;
  private readonly saves = new SaveTimer(FLUSH_MS, () => this.flush());
  private readonly runs: RunStore;
  private readonly cfg: ResolvedConfig['workflows'];
  private readonly root: string;
  private closed = false;

  constructor(private readonly deps: WorkflowEngineDeps) {
    super();
    this.setMaxListeners(0);
    this.cfg = deps.config.workflows;
    this.runs = new RunStore(deps.store);
    deps.onUserToken?.((user) => void this.renewStepTokens(user));
    this.cap = new RunCap(this.cfg.max_active_runs_per_user, (owner) => {
      let n = 0;
      for (const a of this.active.values()) if (a.run.username === owner) n++;
      return n;
    });
    this.root = this.cfg.workspace_root ?? join(deps.config.data_dir, 'workflows');
    // A step that ended is noticed at once, not at the next poll (which still catches anything missed).
    for (const [name, b] of deps.backends) {
      const backend = withDefaults(b);
      this.backends.set(name, backend);
      this.checks.set(name, joinedChecks(backend));
      backend.onChange(() => {
        for (const a of this.active.values()) if (a.run.backend === name && a.byState.RUNNING.size) this.kick(a);
      });
    }
  }

  get backendNames(): string[] {
    return [...this.backends.entries()].filter(([, b]) => b.runsSteps).map(([n]) => n);
  }

  /** Loads unfinished runs (steps that ran through a restart are checked again) and starts the clock. */
  async start(): Promise<void> {
    // Users' steps (as their own accounts) pass through to their run's directory; none can list the runs.
    await mkdir(this.root, { recursive: true, mode: 0o711 });
    loadStepWrapperTemplate();
    for (const id of await this.runs.unfinished()) {
      if (this.active.has(id)) continue;
      const run = (await this.runs.run(id))!;
      const nodes = await this.runs.nodes(run.id);
      const a = this.activate(run, nodes);
      for (const n of nodes) {
        // Started but never recorded as started: nothing runs for it.
        if (n.state === 'RUNNING' && !n.handle) this.setNode(a, n, { state: 'DEFINED', message: 'restarted after the gateway restarted' });
      }
      this.deps.log.info({ run: run.id, running: nodes.filter((n) => n.state === 'RUNNING').length }, 'workflow run resumed');
    }
    this.timer = setInterval(() => {
      for (const a of this.active.values()) this.kick(a);
    }, this.cfg.poll_period * 1000);
    this.timer.unref();
    for (const a of this.active.values()) this.kick(a);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await Promise.all([...this.active.values()].map((a) => a.ticking));
    if (this.deps.config.cluster.stop_on_shutdown) {
      // Stopped steps start again from scratch when the gateway comes back.
      for (const a of this.active.values()) {
        const running = [...a.nodes.values()].filter((n) => n.state === 'RUNNING' && n.handle);
        if (running.length)
          await this.backendOf(a.run)
            .stop(running.map((n) => n.handle!))
            .catch(() => undefined);
        for (const n of running) {
          this.setNode(a, n, {
            state: 'DEFINED',
            handle: null,
            attempts: Math.max(0, n.attempts - 1),
            message: 'stopped when the gateway shut down; starts again when it is back',
          });
        }
      }
    }
    this.flush();
    this.saves.stop();
  }

  // --- submission -------------------------------------------------------------------------------

  /** workflows.max_active_runs_per_user over the runs held here. */
  private readonly cap: RunCap;

  async submit(user: User, body: WorkflowBundle): Promise<WorkflowRun> {
    return this.cap.admit(user.name, () => this.submitNow(user, body));
  }

  /**
   * What is wrong with these init parameters for this workflow: one nested too deep to be kept and
   * sent, or stages whose scatter, known from the bundle and the parameters, would pass workflows.max_steps.
   */
  parameterProblems(spec: WorkflowSpec, parameters: Record<string, unknown>): WorkflowProblem[] {
    const deep = tooDeepParameter(parameters);
    return deep ? [{ path: '$', message: deep }] : checkStaticScatters(spec, parameters, this.cfg.max_steps);
  }

  private async submitNow(user: User, body: WorkflowBundle): Promise<WorkflowRun> {
    const { spec, problems } = await readWorkflow(body.entry, body.files, user.name);
    if (!spec) throw new WorkflowProblemsError(problems);
    const backendName = body.backend ?? this.deps.defaultBackend;
    const backend = this.backends.get(backendName);
    if (!backend?.runsSteps) {
      throw new AppError(
        422,
        'unknown_backend',
        this.backendNames.length
          ? `Steps cannot run on backend ${backendName}; this gateway runs them on ${this.backendNames.join(', ')} (workflows.backends)`
          : 'This gateway runs no workflow steps: its administrators allowed no step backend (workflows.backends)',
      );
    }
    const unregistrable = registerProblems(spec, this.deps.rucioInstances ?? []);
    if (unregistrable.length) throw new WorkflowProblemsError(unregistrable);
    const parameters = body.parameters ?? {};
    const missing = requiredParameters(spec).filter((p) => !(p in parameters));
    if (missing.length) {
      throw new AppError(
        422,
        'missing_parameters',
        `The workflow needs the parameter${missing.length > 1 ? 's' : ''} ${missing.join(', ')} (e.g. af-gateway run ${body.entry} ${missing.map((m) => `-p ${m}=…`).join(' ')})`,
      );
    }
    const deep = tooDeepParameter(parameters);
    if (deep) throw new AppError(422, 'invalid_parameters', deep);
    // Scatters the submission already determines are sized now, by arithmetic, before anything exists.
    const tooLarge = checkStaticScatters(spec, parameters, this.cfg.max_steps);
    if (tooLarge.length) throw new WorkflowProblemsError(tooLarge);
    const data = body.data ? dataDirs(body.data) : undefined;
    const id = randomBytes(6).toString('hex');
    const workspace = join(this.root, id);
    await mkdir(workspace, { recursive: true, mode: 0o700 });
    const retries = body.retries ?? this.cfg.step_retries;
    const maxParallel = Math.min(body.max_parallel ?? this.cfg.max_parallel_steps, this.cfg.max_parallel_steps);
    const { run, init } = newRun({ id, user, body, spec, backend: backendName, workspace, retries, maxParallel, data });
    try {
      await keepBundleFiles(workspace, body.files);
      if (body.data) {
        await keepDataFiles(workspace, body.data);
        // the init publishes what it finds in its data directory, as yadage's does (discover and relative)
        init.outputs = await initOutputs(run, init);
      }
      // Then the steps' owner may work in it (a multi-user local backend grants its account access).
      await backend.shareRunWorkspace(workspace, user.name);
    } catch (err) {
      await removeTree(workspace);
      throw err;
    }
    const a = this.activate(run, [init]);
    a.changes.added(INIT_STAGE, []);
    this.flush();
    this.deps.log.info({ run: id, user: user.name, backend: backendName, stages: spec.stages.length }, 'workflow submitted');
    this.kick(a);
    return this.runJson(a);
  }

  private activate(run: RunRecord, nodes: NodeRecord[]): ActiveRun {
    const byState = {
      DEFINED: new Set<string>(),
      RUNNING: new Set<string>(),
      SUCCESS: new Set<string>(),
      FAILED: new Set<string>(),
      CANCELLED: new Set<string>(),
    };
    const a: ActiveRun = {
      run,
      nodes: new Map(),
      byStage: new Map(),
      byState,
      seq: 0,
      changes: new RunChanges(),
      ticking: null,
      again: false,
      stageByName: new Map(),
      stagesByScope: new Map(),
      scopes: new Map(),
    };
    for (const st of run.stages) this.indexStage(a, st);
    for (const n of nodes) this.addNode(a, n);
    this.active.set(run.id, a);
    return a;
  }

  /** Init nodes: the run's and one per subworkflow started. */
  private initCount(a: ActiveRun): number {
    let n = 1;
    for (const list of a.scopes.values()) n += list.length;
    return n;
  }

  private indexStage(a: ActiveRun, st: StageRecord): void {
    a.stageByName.set(st.name, st);
    const inScope = a.stagesByScope.get(st.scope ?? '') ?? [];
    inScope.push(st);
    a.stagesByScope.set(st.scope ?? '', inScope);
    // a scope's init stage tells which stage made the scope, and its index
    if (st.type === 'init' && st.scope) {
      const m = /^(.*)\[(\d+)\]$/.exec(st.scope)!;
      const list = a.scopes.get(m[1]!) ?? [];
      list.push(Number(m[2]));
      a.scopes.set(m[1]!, list);
    }
  }

  /** The spec of a stage (root or inside a subworkflow) and the step a node runs. */
  private stageSpec(a: ActiveRun, name: string): StageSpec {
    return stageSpecOf(a.run, a.stageByName.get(name)!);
  }

  private stepOfNode(a: ActiveRun, n: NodeRecord): StepSpec {
    return n.step ? (specAt(a.run.spec, n.step) as unknown as StepSpec) : stepOf(this.stageSpec(a, n.stage));
  }

  /** Starts a subworkflow: its scope's init (the item's parameters as its outputs) and its stages, waiting. */
  private startScope(a: ActiveRun, sc: NewScope): void {
    const wf = specAt(a.run.spec, sc.workflow) as unknown as WorkflowSpec;
    const initName = scoped(sc.scope, INIT_STAGE);
    const records: StageRecord[] = [
      { name: initName, type: 'init', dependencies: [], state: 'APPLIED', scope: sc.scope },
      ...wf.stages.map((st, k): StageRecord => ({
        name: scoped(sc.scope, st.name),
        type: st.scheduler.scheduler_type,
        dependencies: dependenciesOf(st, wf).map((d) => scoped(sc.scope, d)),
        state: 'WAITING',
        scope: sc.scope,
        spec: `${sc.workflow}/stages/${k}`,
      })),
    ];
    for (const r of records) {
      a.run.stages.push(r);
      this.indexStage(a, r);
    }
    const now = Date.now();
    const init: NodeRecord = {
      id: initName,
      seq: a.seq++,
      stage: initName,
      index: null,
      state: 'SUCCESS',
      parameters: sc.parameters,
      outputs: sc.parameters,
      after: sc.after,
      readdirs: sc.readdirs,
      workdir: join(a.run.workspace, stageDir(sc.scope)),
      ...(sc.workflow.includes('/cases/') ? { step: sc.workflow } : {}),
      attempts: 0,
      exit_code: null,
      started: now,
      finished: now,
      handle: null,
    };
    this.addNode(a, init);
    a.changes.added(init.id, init.after);
  }

  private addNode(a: ActiveRun, n: NodeRecord): void {
    a.nodes.set(n.id, n);
    a.byState[n.state].add(n.id);
    const list = a.byStage.get(n.stage) ?? [];
    list.push(n);
    a.byStage.set(n.stage, list);
    a.seq = Math.max(a.seq, n.seq + 1);
  }

  // --- queries ----------------------------------------------------------------------------------

  /** The run if the user may see it (owner or admin); 404 otherwise, so ids of others do not leak. */
  private async visible(user: User, id: string): Promise<{ run: RunRecord; nodes: () => Promise<NodeRecord[]>; active?: ActiveRun }> {
    const a = this.active.get(id);
    if (a && maySee(user, a.run)) return { run: a.run, nodes: async () => [...a.nodes.values()], active: a };
    const run = a ? undefined : await this.runs.run(id);
    if (!run || !maySee(user, run)) throw notFound(`Workflow run ${id}`);
    return { run, nodes: () => this.runs.nodes(id) };
  }

  async list(user: User): Promise<WorkflowRun[]> {
    return (await this.runs.list(user.admin ? undefined : user.name)).map(({ run, summary }) => {
      const a = this.active.get(run.id);
      return a ? this.runJson(a) : (summary ?? runJson(run, []));
    });
  }

  async get(user: User, id: string): Promise<WorkflowDag> {
    const v = await this.visible(user, id);
    const nodes = await v.nodes();
    return dagJson(v.active ? this.runJson(v.active) : runJson(v.run, nodes), v.run.stages, nodes, edgesOf(nodes));
  }

  /** The node and whether it can still change (a log reader follows until it cannot). */
  async node(user: User, id: string, nodeId: string): Promise<{ node: NodeRecord; live: () => boolean; workspace: string }> {
    const v = await this.visible(user, id);
    const node = v.active?.nodes.get(nodeId) ?? (await v.nodes()).find((n) => n.id === nodeId);
    if (!node) throw notFound(`Step ${nodeId} of workflow run ${id}`);
    const a = v.active;
    return { node, workspace: v.run.workspace, live: () => !!a && this.active.has(id) && !isFinished(a.nodes.get(nodeId)!.state) };
  }

  async workspaceOf(user: User, id: string): Promise<string> {
    return (await this.visible(user, id)).run.workspace;
  }

  // --- actions ----------------------------------------------------------------------------------

  async cancel(user: User, id: string): Promise<WorkflowRun> {
    const v = await this.visible(user, id);
    if (!v.active) throw conflict(`Workflow run ${id} already finished (${v.run.status})`, 'run_finished');
    v.active.run.cancelRequested = user.name;
    this.kick(v.active);
    return this.runJson(v.active);
  }

  async retry(user: User, id: string): Promise<WorkflowRun> {
    const v = await this.visible(user, id);
    if (v.active) throw conflict(`Workflow run ${id} is still running; retry it once it finished`, 'run_active');
    if (v.run.status === 'SUCCESS') throw conflict(`Workflow run ${id} succeeded; there is nothing to retry`, 'run_succeeded');
    const run = v.run;
    const nodes = await v.nodes();
    if (this.active.has(id)) throw conflict(`Workflow run ${id} is already being retried`, 'run_active'); // a second click meanwhile
    this.cap.check(run.username); // the run counts against its owner's runs
    const a = this.activate(run, nodes);
    for (const n of a.nodes.values()) {
      if (n.state === 'FAILED' || n.state === 'CANCELLED')
        this.setNode(a, n, { state: 'DEFINED', attempts: 0, exit_code: null, finished: null, handle: null, message: `retried by ${user.name}` });
    }
    for (const s of run.stages) if (s.state === 'FAILED') Object.assign(s, { state: 'WAITING', message: undefined });
    Object.assign(run, { status: 'RUNNING', finished: null, message: '', cancelRequested: null });
    a.changes.touch();
    this.deps.log.info({ run: id, user: user.name }, 'workflow run retried');
    this.kick(a);
    return this.runJson(a);
  }

  async remove(user: User, id: string): Promise<void> {
    const v = await this.visible(user, id);
    if (v.active || this.active.has(id)) throw conflict(`Workflow run ${id} is still running; cancel it first`, 'run_active'); // (a retry meanwhile)
    await this.runs.delete(id);
    // The owner's steps could write in it (and may still run something that swaps its directories
    // for links meanwhile): removed by descriptors, never following a link.
    await removeTree(v.run.workspace);
    this.deps.log.info({ run: id, user: user.name }, 'workflow run deleted');
  }

  // --- the engine -------------------------------------------------------------------------------

  private backendOf(run: RunRecord): EngineBackend {
    const b = this.backends.get(run.backend);
    if (!b) throw new Error(`backend ${run.backend} is not configured any more`);
    return b;
  }

  /** Runs one tick of the run now, or once more after the one in progress. */
  private kick(a: ActiveRun): void {
    if (this.closed) return;
    if (a.ticking) {
      a.again = true;
      return;
    }
    a.ticking = (async () => {
      do {
        a.again = false;
        try {
          await this.tick(a);
        } catch (err) {
          this.deps.log.error({ err, run: a.run.id }, 'workflow tick failed');
        }
      } while (a.again && !this.closed);
    })().finally(() => {
      a.ticking = null;
    });
  }

  private async tick(a: ActiveRun): Promise<void> {
    const { run } = a;
    if (isFinished(run.status)) return;
    const backend = this.backendOf(run);
    if (run.cancelRequested) return this.cancelNow(a, backend);

    // 1. What the running steps are doing.
    // (one backend call for all of them: a batch system answers with one query)
    const running = [...a.byState.RUNNING].map((id) => a.nodes.get(id)!).filter((n) => n.handle);
    let states: ProcessState[] = [];
    try {
      if (running.length) states = await this.checks.get(run.backend)!(running.map((n) => n.handle!));
    } catch (err) {
      this.deps.log.warn({ err, run: a.run.id, steps: running.length }, 'checking steps failed; trying again');
    }
    await Promise.all(states.map((state, i) => this.checkNode(a, running[i]!, state)));

    // 2. Stages whose dependencies finished; each applied stage may free the next.
    let applied = true;
    while (applied && !this.failed(a)) {
      applied = false;
      const blocked = new Set<string>();
      const done = this.doneStages(a, blocked);
      const skipped = new Set([...run.stages.filter((s) => s.state === 'SKIPPED').map((s) => s.name), ...blocked]);
      for (const s of [...run.stages]) {
        if (run.cancelRequested || this.closed) return; // the next tick cancels (a stage's jq work gave up for it)
        if (s.state !== 'WAITING') continue;
        // yadage never applies a stage that waits on one never applied; the run ends without both.
        const notApplied = s.dependencies.find((d) => skipped.has(d));
        if (notApplied) {
          Object.assign(s, { state: 'SKIPPED', message: `not applied: stage ${notApplied} it depends on was not applied` });
          skipped.add(s.name);
          a.changes.touch();
          applied = true;
          continue;
        }
        if (!s.dependencies.every((d) => done.has(d))) continue;
        await this.apply(a, s);
        applied = true;
      }
    }

    // 3. Start what may start. After a failure nothing new starts; running steps finish.
    if (!this.failed(a)) {
      let slots = run.maxParallel - a.byState.RUNNING.size;
      const starting: NodeRecord[] = [];
      // A step waits for every step of the stages its stage depends on (its edges may be a sample of them).
      const done = slots > 0 ? this.doneStages(a) : new Set<string>();
      const stageReady = new Map(run.stages.map((s) => [s.name, s.dependencies.every((d) => done.has(d))]));
      for (const id of a.byState.DEFINED) {
        if (slots <= 0) break;
        const n = a.nodes.get(id)!;
        if (!stageReady.get(n.stage) || !n.after.every((dep) => a.nodes.get(dep)?.state === 'SUCCESS')) continue;
        slots--;
        starting.push(n);
      }
      // Together: a batch backend submits them as one job cluster.
      await this.startNodes(a, backend, starting);
    }

    // 4. Finished?
    if (!a.byState.RUNNING.size) {
      const failedStage = run.stages.find((s) => s.state === 'FAILED');
      const failedId = a.byState.FAILED.values().next().value as string | undefined;
      if (failedStage || failedId) {
        this.finish(
          a,
          'FAILED',
          failedStage ? `stage ${failedStage.name} failed: ${failedStage.message}` : `step ${failedId} failed: ${a.nodes.get(failedId!)!.message}`,
        );
      } else if (run.stages.every((s) => s.state === 'APPLIED' || s.state === 'SKIPPED') && a.byState.SUCCESS.size === a.nodes.size) {
        const steps = a.nodes.size - this.initCount(a);
        this.finish(a, 'SUCCESS', `${steps} step${steps === 1 ? '' : 's'} succeeded`);
      }
    }
    this.saves.soon();
  }

  private failed(a: ActiveRun): boolean {
    return a.run.stages.some((s) => s.state === 'FAILED') || a.byState.FAILED.size > 0;
  }

  /**
   * Stages applied whose steps all succeeded and, for a stage running subworkflows, whose subworkflows'
   * stages all did too: once per pass, so readiness costs the run's size, not its square. `blocked`
   * gets the stages a skipped stage inside their subworkflows keeps from ever finishing (yadage never
   * counts such a scope done).
   */
  private doneStages(a: ActiveRun, blocked?: Set<string>): Set<string> {
    const unfinished = new Set<string>();
    const own = (s: StageRecord) => s.state === 'APPLIED' && (a.byStage.get(s.name) ?? []).every((n) => n.state === 'SUCCESS');
    for (const s of a.run.stages) {
      if (own(s) || !s.scope) continue;
      for (const anc of ancestorStages(s.name)) {
        unfinished.add(anc);
        if (s.state === 'SKIPPED') blocked?.add(anc);
      }
    }
    const done = new Set<string>();
    for (const s of a.run.stages) if (own(s) && !unfinished.has(s.name)) done.add(s.name);
    return done;
  }

  private async apply(a: ActiveRun, s: StageRecord): Promise<void> {
    const spec = this.stageSpec(a, s.name);
    const user: User = { name: a.run.username, groups: a.run.groups, admin: false };
    const ctx: ApplyContext = {
      run: a.run,
      stage: { full: s.name, pointer: s.spec ?? `/stages/${a.run.spec.stages.indexOf(spec)}` },
      scope: s.scope ?? '',
      nodesOf: (stage) => a.byStage.get(stage) ?? [],
      node: (id) => a.nodes.get(id),
      stageType: (stage) => a.stageByName.get(stage)?.type,
      scopesOf: (stage) => a.scopes.get(stage) ?? [],
      stagesIn: (scope) => (a.stagesByScope.get(scope) ?? []).filter((r) => r.state === 'APPLIED').map((r) => splitScoped(r.name).name),
      runsWorkflow: (stage) =>
        a.scopes.has(stage) || (a.stageByName.get(stage)?.type !== 'init' && a.stageByName.has(stage) && !!this.stageSpec(a, stage).scheduler.workflow),
      registered: (scope, key) => registeredValue(a.run, scope, key, a.stagesByScope.get(scope) ?? []),
      rucioFiles: async (ref) => {
        if (!this.deps.rucioFiles) throw new StageError('this gateway fronts no Rucio instance');
        try {
          return await this.deps.rucioFiles(user, ref);
        } catch (err) {
          throw new StageError(errorMessage(err)); // Rucio's answer is the stage's reason
        }
      },
      nextSeq: () => a.seq++,
      // a stage's jq work may take minutes: a cancel or the gateway's shutdown does not wait for it
      stopped: () => !!a.run.cancelRequested || this.closed,
      // a subworkflow's init counts like a step here: scopes, too, are bounded by workflows.max_steps
      stepsLeft: this.cfg.max_steps - (a.nodes.size - 1),
      parameters: (a.parameters ??= { left: MAX_RUN_PARAMETERS - parametersWeight(a.nodes.values()) }),
      held: (a.held ??= { left: MAX_RUN_HELD - heldWeight(a.nodes.values()) }),
      maxSteps: this.cfg.max_steps,
    };
    try {
      const unfulfilled = await unfulfilledExpression(ctx, spec);
      if (unfulfilled) {
        Object.assign(s, { state: 'SKIPPED', message: `not applied: ${unfulfilled}` });
        a.changes.touch();
        return;
      }
      const applied = await applyStage(
        ctx,
        spec,
        s.dependencies.flatMap((d) => a.byStage.get(d) ?? []),
      );
      if (applied.scopes.length) {
        // Each subworkflow brings its stages: a run's stages are bounded like its steps (nested scatters multiply them).
        const adding = applied.scopes.reduce((n, sc) => n + 1 + (specAt(a.run.spec, sc.workflow) as unknown as WorkflowSpec).stages.length, 0);
        if (a.run.stages.length + adding > this.cfg.max_steps) {
          throw new StageError(
            `its ${applied.scopes.length.toLocaleString('en')} subworkflows would bring the run to ${(a.run.stages.length + adding).toLocaleString('en')} stages; workflows.max_steps (${this.cfg.max_steps.toLocaleString('en')}) bounds stages too`,
          );
        }
      }
      for (const n of applied.nodes) {
        this.addNode(a, n);
        a.changes.added(n.id, n.after);
      }
      for (const sc of applied.scopes) this.startScope(a, sc);
      if (applied.nodes.length || applied.scopes.length) {
        s.state = 'APPLIED';
        s.message = undefined;
      } else {
        // yadage counts a stage that made nothing as never ready: the stages after it never apply.
        s.state = 'SKIPPED';
        s.message = spec.scheduler.cases ? 'no case held: nothing runs' : 'it scattered over an empty list: no steps, and the stages after it do not run';
      }
    } catch (err) {
      if (err instanceof ApplyStopped) return; // applied again if the run goes on (after a restart)
      s.state = 'FAILED';
      s.message = err instanceof StageError ? err.message : `internal error: ${errorMessage(err)}`;
      if (!(err instanceof StageError)) this.deps.log.error({ err, run: a.run.id, stage: s.name }, 'applying a stage failed');
    }
    a.changes.touch();
  }

  /** Writes each step's files, then starts them all with one backend call. */
  private async startNodes(a: ActiveRun, backend: EngineBackend, all: NodeRecord[]): Promise<void> {
    // A step that runs nothing (process null, noop-env) only publishes, here and now.
    const nodes: NodeRecord[] = [];
    for (const n of all) {
      if (n.command !== undefined) nodes.push(n);
      else {
        this.setNode(a, n, { attempts: n.attempts + 1, started: Date.now(), finished: null, exit_code: null, message: undefined });
        await this.succeed(a, n);
      }
    }
    if (!nodes.length) return;
    const prepared = (await Promise.all(nodes.map((n) => this.prepareNode(a, backend, n)))).filter((p) => p !== null);
    if (!prepared.length) return;
    let results: Array<BackendHandle | Error>;
    try {
      results = await backend.startSteps(prepared.map((p) => p.launch));
    } catch (err) {
      results = prepared.map(() => (err instanceof Error ? err : new Error(String(err))));
    }
    prepared.forEach(({ n }, i) => {
      const handle = results[i] ?? new Error('the backend returned no result for it');
      if (handle instanceof Error) return this.fail(a, n, n.attempts + 1, `could not be started: ${errorMessage(handle)}`);
      this.setNode(a, n, {
        state: 'RUNNING',
        handle,
        attempts: n.attempts + 1,
        started: Date.now(),
        finished: null,
        exit_code: null,
        job: backend.describe(handle),
        message: undefined,
      });
    });
    this.flush(); // started steps are on disk before anything else happens: a restart adopts them
  }

  /** A step's files and launch; null when they could not be written (the step failed that attempt). */
  private async prepareNode(a: ActiveRun, backend: EngineBackend, n: NodeRecord): Promise<{ n: NodeRecord; launch: StepLaunch } | null> {
    const files = stepFiles(n.workdir);
    const attempt = n.attempts + 1;
    // The step's directory is writable by the step: a retry finds whatever it left there (links
    // included), so nothing is followed out of the run's workspace.
    try {
      const header = `AF Gateway: step ${n.id} of workflow run ${a.run.id}, attempt ${attempt}${n.image && backend.kind === 'local' ? ` (image ${n.image} not used: the local backend runs steps on the host)` : ''}`;
      const mounts = (n.parmounts ?? []).map((text, k) => ({ file: parmountFile(n.workdir, k), text }));
      // the owner's token, where WLCG token discovery finds it (storage, Rucio), renewed while the step runs
      const token = this.deps.userToken?.(a.run.username) ?? null;
      if (token) mounts.push({ file: files.bearerToken, text: `${token}\n` });
      await writeStepFiles(
        a.run.workspace,
        files,
        n.command ?? '',
        stepWrapper({ header, workdir: n.workdir, interpreter: n.interpreter ?? 'sh', files }),
        mounts,
      );
      const env: Record<string, string> = { ...stepEnv(this.stepOfNode(a, n)) };
      if (token) env.BEARER_TOKEN_FILE = files.bearerToken;
      const launch: StepLaunch = {
        run: a.run.id,
        node: n.id,
        owner: a.run.username,
        workdir: n.workdir,
        wrapper: files.wrapper,
        log: files.log,
        env: { ...env, AF_WORKFLOW_RUN: a.run.id, AF_WORKFLOW_STEP: n.id },
        image: this.cfg.images === 'honour' ? n.image : undefined,
        cpus: this.cfg.step_cpus,
        memory: this.cfg.step_memory,
      };
      return { n, launch };
    } catch (err) {
      this.fail(a, n, attempt, `could not be started: ${errorMessage(err)}`);
      return null;
    }
  }

  /** A user's new token into the token files of their running steps (never written through a link the step planted). */
  private async renewStepTokens(user: string): Promise<void> {
    const token = this.deps.userToken?.(user);
    if (!token) return;
    for (const a of this.active.values()) {
      if (a.run.username !== user) continue;
      for (const id of a.byState.RUNNING) {
        const n = a.nodes.get(id)!;
        await replaceConfined(a.run.workspace, stepFiles(n.workdir).bearerToken, `${token}\n`, STEP_FILE_MODE).catch((err: unknown) =>
          this.deps.log.warn({ run: a.run.id, node: n.id, err: errorMessage(err) }, "could not renew a step's token file"),
        );
      }
    }
  }

  private async checkNode(a: ActiveRun, n: NodeRecord, state: ProcessState): Promise<void> {
    if (state.alive) {
      if ((state.waiting ?? undefined) !== n.message) this.setNode(a, n, { message: state.waiting });
      return;
    }
    const code = state.exitCode ?? (await readExitCode(a.run.workspace, stepFiles(n.workdir)));
    if (code === 0) return this.succeed(a, n);
    const tail = await readLogTail(a.run.workspace, stepFiles(n.workdir), 8);
    const why =
      code === undefined ? `it ended without an exit status (killed or removed${state.detail ? `: ${state.detail}` : ''})` : `it exited with code ${code}`;
    this.fail(a, n, n.attempts, `${why}; ${tail}`, code ?? null);
  }

  /** A step that ran (or runs nothing) publishes its outputs; it fails when they cannot be published. */
  private async succeed(a: ActiveRun, n: NodeRecord): Promise<void> {
    {
      try {
        const outputs = await publish(this.stepOfNode(a, n), n, a.run.workspace, a.run.username);
        // Outputs are kept and sent per step: the run's together are bounded like its parameters.
        const budget = (a.outputs ??= { left: MAX_RUN_OUTPUTS - parametersWeight(a.nodes.values(), 'outputs', MAX_RUN_OUTPUTS) });
        const weight = sizeOf(outputs, Math.max(0, budget.left));
        if (weight > budget.left) {
          throw new StageError(
            `its outputs weigh more than what this run's steps may still publish (${(Math.max(0, budget.left) / 1024 / 1024).toFixed(1)} of ${MAX_RUN_OUTPUTS / 1024 / 1024} MiB); publish files, not their contents`,
          );
        }
        budget.left -= weight;
        const register = this.stageSpec(a, n.stage).register;
        const registered = register ? await this.registerOutputs(a, n, register, outputs) : undefined;
        this.setNode(a, n, {
          state: 'SUCCESS',
          outputs,
          ...(registered ? { registered } : {}),
          exit_code: n.command === undefined ? null : 0,
          finished: Date.now(),
          handle: null,
          message: undefined,
        });
      } catch (err) {
        const ran = n.command !== undefined;
        this.fail(a, n, n.attempts, `${ran ? 'it exited 0 but ' : ''}its outputs could not be published: ${errorMessage(err)}`, ran ? 0 : null);
      }
    }
  }

  /**
   * A stage's register: the files the step published (output values naming plain files in its own
   * directory) go to the RSE and into Rucio as the owner, named RUN-NAME.RUN-ID/PATH-IN-THE-RUN so a
   * retry finds the same names. Throws (the step fails, saying which file and why).
   */
  private async registerOutputs(a: ActiveRun, n: NodeRecord, spec: RegisterSpec, outputs: Record<string, unknown>): Promise<string[]> {
    if (!this.deps.registerFiles) throw new StageError('this gateway fronts no Rucio instance to register files in');
    const keys = spec.outputs ?? Object.keys(outputs);
    const paths = new Set<string>();
    // every output's files by default; the outputs named must name files of the step, and nothing else
    const collect = (k: string, v: unknown): void => {
      if (Array.isArray(v)) v.forEach((x) => collect(k, x));
      else if (v && typeof v === 'object') Object.values(v).forEach((x) => collect(k, x));
      else if (typeof v === 'string' && isAbsolute(v) && insideDir(n.workdir, v)) paths.add(resolve(v));
      else if (spec.outputs) throw new StageError(`register: output ${k} holds ${JSON.stringify(v)?.slice(0, 200)}, not a file in the step's directory`);
    };
    for (const k of keys) {
      if (!Object.hasOwn(outputs, k)) throw new StageError(`register: the step published no output ${k}`);
      collect(k, outputs[k]);
    }
    if (paths.size > MAX_REGISTERED)
      throw new StageError(
        `register: the step published ${paths.size.toLocaleString('en')} files; a step registers at most ${MAX_REGISTERED.toLocaleString('en')}`,
      );
    const root = a.run.workspace;
    const files: FileToRegister[] = [...paths].sort().map((p) => ({
      path: p,
      name: `${a.run.name}.${a.run.id}/${relative(root, p)}`,
      open: () => openConfined(root, p).catch(() => null),
    }));
    if (!files.length) return [];
    const user: User = { name: a.run.username, groups: a.run.groups, admin: false };
    return this.deps.registerFiles(user, spec, files);
  }

  private fail(a: ActiveRun, n: NodeRecord, attempts: number, message: string, exitCode: number | null = null): void {
    if (attempts <= a.run.retries && !a.run.cancelRequested) {
      this.setNode(a, n, {
        state: 'DEFINED',
        attempts,
        handle: null,
        exit_code: exitCode,
        message: `attempt ${attempts} failed (${message.split(';')[0]}); starting again`,
      });
      return;
    }
    this.setNode(a, n, { state: 'FAILED', attempts, handle: null, exit_code: exitCode, finished: Date.now(), message });
  }

  private async cancelNow(a: ActiveRun, backend: EngineBackend): Promise<void> {
    const by = a.run.cancelRequested!;
    const unfinished = [...a.nodes.values()].filter((n) => !isFinished(n.state));
    const handles = unfinished.flatMap((n) => (n.state === 'RUNNING' && n.handle ? [n.handle] : []));
    if (handles.length) await backend.stop(handles).catch((err) => this.deps.log.warn({ err, run: a.run.id }, 'stopping steps failed'));
    for (const n of unfinished) this.setNode(a, n, { state: 'CANCELLED', handle: null, finished: Date.now(), message: `cancelled by ${by}` });
    this.finish(a, 'CANCELLED', `cancelled by ${by}`);
  }

  private finish(a: ActiveRun, status: RunRecord['status'], message: string): void {
    Object.assign(a.run, { status, message, finished: Date.now() });
    a.changes.touch();
    this.flush();
    this.active.delete(a.run.id);
    this.deps.log.info({ run: a.run.id, status, message }, 'workflow run finished');
  }

  private setNode(a: ActiveRun, n: NodeRecord, change: Partial<NodeRecord>): void {
    const handle = n.handle;
    if (handle && change.handle === null && change.state && isFinished(change.state)) {
      void this.backends.get(a.run.backend)?.release(handle);
    }
    if (change.state && change.state !== n.state) {
      a.byState[n.state].delete(n.id);
      a.byState[change.state].add(n.id);
    }
    Object.assign(n, change);
    a.changes.node(n.id);
  }

  /** Saves what changed and tells the event stream (one message per run per flush). */
  private flush(): void {
    for (const a of [...this.active.values()]) {
      if (!a.changes.pending) continue;
      const changed = a.changes.take();
      const nodes = changed.nodes.map((id) => a.nodes.get(id)!);
      const summary = this.runJson(a);
      this.runs.save(a.run, summary, nodes).catch((err: unknown) => {
        this.deps.log.error({ run: a.run.id, err: errorMessage(err) }, 'could not write the workflow run to the state store; trying again');
        // written again with the next flush while the run is active
        a.changes.giveBack(changed.nodes);
        this.saves.soon();
      });
      this.emit('run', a.run.username, summary);
      this.emit('dag', a.run.username, dagJson(summary, a.run.stages, nodes, changed.edges));
    }
  }

  private runJson(a: ActiveRun): WorkflowRun {
    return runJson(a.run, (stage) => a.byStage.get(stage) ?? [], countsOf(a.byState, this.initCount(a)));
  }
}
