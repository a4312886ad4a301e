// The workflow engine on its own: WorkflowEngine driven by the in-memory backend with fake timers —
// no processes, no network, no sleeping. Each test plays the part of the steps (the memory
// backend's records: exit codes, waiting, running) and checks what the engine decides: success and
// failure, retries, cancel, waiting steps, adoption after a restart, the per-user cap.
//
// Steps' files (.af/command, .af/run.sh) are still written to a temporary workspace: the engine
// writes them before every start, and the tests check what a backend is given to run.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import type { FastifyBaseLogger } from 'fastify';
import type { WorkflowBundle, WorkflowDag, WorkflowRun } from '@af-gateway/schemas';
import { resolveConfig } from '../../src/config.js';
import { WorkflowEngine } from '../../src/workflows/workflow-engine.js';
import { MemoryBackend } from '../../src/backends/memory/memory-backend.js';
import type { StepLaunch } from '../../src/backends/backend.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { closeUnitState, openUnitState } from '../support/unit-state.js';
import { stepFiles } from '../../src/workflows/step-files.js';

const alice = { name: 'alice', groups: [], admin: false };
const bob = { name: 'bob', groups: [], admin: false };
const log = pino({ level: process.env.WF_LOG ?? 'silent' }) as unknown as FastifyBaseLogger;

const POLL = 1; // workflows.poll_period, seconds

let dir: string;
let store: SqliteStore;
let backend: MemoryBackend;
let engines: WorkflowEngine[];

function config(workflows: Record<string, unknown> = {}, cluster: Record<string, unknown> = {}) {
  return resolveConfig({ data_dir: dir, backend: { local: { single_user: true } }, cluster, workflows: { poll_period: POLL, ...workflows } });
}

async function engine(workflows: Record<string, unknown> = {}, cluster: Record<string, unknown> = {}): Promise<WorkflowEngine> {
  const e = new WorkflowEngine({ store, backends: new Map([['memory', backend]]), defaultBackend: 'memory', config: config(workflows, cluster), log });
  engines.push(e);
  await e.start();
  return e;
}

/** A real turn of the event loop: the engine's file writes finish (only timers are fake). */
const io = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Moves the clock by `seconds`, then lets the engine work (file writes, ticks): until `done` holds
 * (at most 3 s of real time), or for a few turns of the event loop when no condition is given.
 */
async function settle(seconds = 0, done?: () => boolean | Promise<boolean>): Promise<void> {
  if (seconds) await vi.advanceTimersByTimeAsync(seconds * 1000);
  const until = performance.now() + 3000; // real time: file writes and SQLite take what they take
  for (let turn = 0; done ? performance.now() < until : turn < 20; turn++) {
    await io();
    await vi.advanceTimersByTimeAsync(0);
    if (done && (await done())) return;
  }
}

const cmd = (c: string) =>
  `{process: {process_type: string-interpolated-cmd, cmd: '${c}'}, publisher: {publisher_type: constant-pub, publish: {done: yes}}, environment: {environment_type: localproc-env}}`;

/** prepare → fit (two steps in a row). */
const chain: WorkflowBundle = {
  entry: 'wf.yml',
  files: {
    'wf.yml': `stages:
  - name: prepare
    dependencies: [init]
    scheduler: {scheduler_type: singlestep-stage, step: ${cmd('echo prepare')}}
  - name: fit
    dependencies: [prepare]
    scheduler: {scheduler_type: singlestep-stage, step: ${cmd('echo fit')}}
`,
  },
};

/** One map stage over `n` values (steps fan:0 … fan:n-1, all ready at once). */
const fan = (n: number): WorkflowBundle => ({
  entry: 'wf.yml',
  files: {
    'wf.yml': `stages:
  - name: fan
    dependencies: [init]
    scheduler:
      scheduler_type: multistep-stage
      parameters: {i: ${JSON.stringify(Array.from({ length: n }, (_, i) => i))}}
      scatter: {method: zip, parameters: [i]}
      step: ${cmd('echo {i}')}
`,
  },
});

async function dag(e: WorkflowEngine, run: WorkflowRun, user = alice): Promise<WorkflowDag> {
  return e.get(user, run.id);
}

async function nodeOf(e: WorkflowEngine, run: WorkflowRun, id: string) {
  return (await dag(e, run)).nodes.find((n) => n.id === id);
}

/** The memory process of a run's step (the newest attempt), once the engine started it. */
async function started(run: WorkflowRun, node: string) {
  await settle(0, () => !!backend.stepOf(run.id, node));
  const p = backend.stepOf(run.id, node);
  expect(p, `step ${node} was started`).toBeDefined();
  return p!;
}

async function status(e: WorkflowEngine, run: WorkflowRun, want: string): Promise<WorkflowDag> {
  await settle(0, async () => (await dag(e, run)).run.status === want);
  const d = await dag(e, run);
  expect(d.run.status).toBe(want);
  return d;
}

beforeEach(() => {
  ({ dir, store, backend } = openUnitState('af-unit-wf-'));
  engines = [];
});

afterEach(async () => {
  await closeUnitState({ dir, store }, engines);
});

describe('a run', () => {
  it('runs its steps in dependency order and succeeds when they exit 0, with their outputs', async () => {
    const e = await engine();
    const run = await e.submit(alice, chain);
    expect(run).toMatchObject({ status: 'RUNNING', owner: 'alice', backend: 'memory', stages_total: 2 });

    const prepare = await started(run, 'prepare');
    expect(backend.stepOf(run.id, 'fit')).toBeUndefined(); // waits for prepare
    const launch = prepare.launch as StepLaunch;
    const files = stepFiles(launch.workdir);
    expect(launch).toMatchObject({ run: run.id, node: 'prepare', owner: 'alice', wrapper: files.wrapper, log: files.log });
    expect(launch.env).toMatchObject({ AF_WORKFLOW_RUN: run.id, AF_WORKFLOW_STEP: 'prepare' });
    expect(readFileSync(files.command, 'utf8')).toBe('echo prepare');
    expect(readFileSync(files.wrapper, 'utf8')).toContain(`# AF Gateway: step prepare of workflow run ${run.id}, attempt 1`);
    expect(await nodeOf(e, run, 'prepare')).toMatchObject({ state: 'RUNNING', attempts: 1, job: expect.stringMatching(/^memory process /) });

    backend.exit(prepare, 0); // the backend tells the engine at once (onChange): no poll needed
    const fit = await started(run, 'fit');
    expect(await nodeOf(e, run, 'prepare')).toMatchObject({ state: 'SUCCESS', exit_code: 0, outputs: { done: 'yes' } });
    backend.exit(fit, 0);

    const d = await status(e, run, 'SUCCESS');
    expect(d.run).toMatchObject({
      message: '2 steps succeeded',
      counts: { SUCCESS: 2, FAILED: 0, RUNNING: 0, DEFINED: 0, CANCELLED: 0 },
      outputs: { fit: { done: 'yes' } },
    });
    expect(d.edges).toEqual([
      { from: 'init', to: 'prepare' },
      { from: 'prepare', to: 'fit' },
    ]);
    // saved: a new engine lists it from the store
    expect((await store.loadWorkflowRun(run.id))!.status).toBe('SUCCESS');
  });

  it('fails when a step exits non-zero, with its exit code and log tail, and starts nothing after it', async () => {
    const e = await engine();
    const run = await e.submit(alice, chain);
    const prepare = await started(run, 'prepare');
    backend.exit(prepare, 3);
    const d = await status(e, run, 'FAILED');
    expect(d.nodes.find((n) => n.id === 'prepare')).toMatchObject({
      state: 'FAILED',
      exit_code: 3,
      attempts: 1,
      message: 'it exited with code 3; no log was written',
    });
    expect(d.run.message).toBe('step prepare failed: it exited with code 3; no log was written');
    expect(d.nodes.find((n) => n.id === 'fit')).toBeUndefined(); // its stage was never applied
    expect(backend.stepOf(run.id, 'fit')).toBeUndefined();
  });

  it('fails a step that ended without an exit status (killed), with what the backend knows', async () => {
    const e = await engine();
    const run = await e.submit(alice, chain);
    const prepare = await started(run, 'prepare');
    prepare.state = { alive: false, detail: 'the node was lost' }; // no exitCode, and the wrapper wrote none
    await settle(POLL);
    const d = await status(e, run, 'FAILED');
    expect(d.nodes.find((n) => n.id === 'prepare')!.message).toMatch(/^it ended without an exit status \(killed or removed: the node was lost\)/);
  });

  it('fails a step the backend could not start', async () => {
    backend.failStarts = () => 'no quota left';
    const e = await engine();
    const run = await e.submit(alice, chain);
    const d = await status(e, run, 'FAILED');
    expect(d.nodes.find((n) => n.id === 'prepare')).toMatchObject({ state: 'FAILED', attempts: 1, message: 'could not be started: no quota left' });
  });

  it('starts at most max_parallel steps at once, in one backend call, and the next as slots free', async () => {
    const e = await engine({ max_parallel_steps: 4 });
    const run = await e.submit(alice, { ...fan(6), max_parallel: 2 });
    await started(run, 'fan:1');
    expect(backend.alive('step').map((p) => p.name)).toEqual(['fan:0', 'fan:1']);
    expect(backend.calls.startSteps).toEqual([2]);
    backend.exit(backend.stepOf(run.id, 'fan:0')!, 0);
    await started(run, 'fan:2');
    expect(backend.alive('step').map((p) => p.name)).toEqual(['fan:1', 'fan:2']);
    for (let i = 1; i < 6; i++) {
      backend.exit(await started(run, `fan:${i}`), 0);
    }
    const d = await status(e, run, 'SUCCESS');
    expect(d.run.counts.SUCCESS).toBe(6);
    expect(d.run.outputs).toEqual({ fan: { done: ['yes', 'yes', 'yes', 'yes', 'yes', 'yes'] } });
  });
});

describe('submission', () => {
  const needsN: WorkflowBundle = {
    entry: 'wf.yml',
    files: {
      'wf.yml': `stages:
  - name: gen
    dependencies: [init]
    scheduler: {scheduler_type: singlestep-stage, parameters: {n: {stages: init, output: n, unwrap: true}}, step: ${cmd('echo {n}')}}
`,
    },
  };

  it('refuses a run without the init parameters it reads, on an unknown backend, or with a file outside the bundle (422), leaving no workspace', async () => {
    const e = await engine();
    await expect(e.submit(alice, needsN)).rejects.toMatchObject({ statusCode: 422, code: 'missing_parameters', message: expect.stringContaining('-p n=…') });
    await expect(e.submit(alice, { ...chain, backend: 'htcondor' })).rejects.toMatchObject({
      statusCode: 422,
      code: 'unknown_backend',
      message: expect.stringContaining('runs them on memory'),
    });
    await expect(e.submit(alice, { ...chain, files: { ...chain.files, '../escape.yml': 'x' } })).rejects.toMatchObject({
      statusCode: 422,
      code: 'bad_file_name',
    });
    expect(readdirSync(join(dir, 'workflows'))).toEqual([]);
    expect(backend.calls.startSteps).toEqual([]);
  });

  it('names the run after its entry, renders the step with the parameters and keeps the files as submitted', async () => {
    const e = await engine();
    const run = await e.submit(alice, { ...needsN, entry: 'fits/wf.yml', files: { 'fits/wf.yml': needsN.files['wf.yml']! }, parameters: { n: 7 } });
    expect(run).toMatchObject({ name: 'fits', parameters: { n: 7 } });
    const gen = await started(run, 'gen');
    expect(readFileSync(stepFiles((gen.launch as StepLaunch).workdir).command, 'utf8')).toBe('echo 7');
    expect(readFileSync(join(dir, 'workflows', run.id, '.af', 'workflow', 'fits', 'wf.yml'), 'utf8')).toBe(needsN.files['wf.yml']);
  });
});

describe('retries', () => {
  it("starts a failed step again up to the run's retries, then fails the run", async () => {
    const e = await engine({ step_retries: 0 });
    const run = await e.submit(alice, { ...chain, retries: 2 });
    const first = await started(run, 'prepare');
    backend.exit(first, 1);
    await settle(0, () => backend.stepOf(run.id, 'prepare') !== first);
    const second = backend.stepOf(run.id, 'prepare')!;
    expect(second).not.toBe(first);
    expect(await nodeOf(e, run, 'prepare')).toMatchObject({ state: 'RUNNING', attempts: 2 });
    expect(readFileSync((second.launch as StepLaunch).wrapper, 'utf8')).toContain('attempt 2');

    backend.exit(second, 1);
    await settle(0, () => backend.stepOf(run.id, 'prepare') !== second);
    const third = backend.stepOf(run.id, 'prepare')!;
    backend.exit(third, 1);
    const d = await status(e, run, 'FAILED');
    expect(d.nodes.find((n) => n.id === 'prepare')).toMatchObject({ state: 'FAILED', attempts: 3, exit_code: 1 });
    expect(backend.calls.startSteps).toEqual([1, 1, 1]);
  });

  it('a retried step that then succeeds lets the run go on', async () => {
    const e = await engine({ step_retries: 1 });
    const run = await e.submit(alice, chain);
    const first = await started(run, 'prepare');
    backend.exit(first, 2);
    await settle(0, () => backend.stepOf(run.id, 'prepare') !== first);
    expect((await nodeOf(e, run, 'prepare'))!.message).toBeUndefined(); // running again: the failure note is gone
    backend.exit(backend.stepOf(run.id, 'prepare')!, 0);
    backend.exit(await started(run, 'fit'), 0);
    const d = await status(e, run, 'SUCCESS');
    expect(d.nodes.find((n) => n.id === 'prepare')).toMatchObject({ attempts: 2, exit_code: 0 });
  });

  it('a user retry of a failed run starts its failed steps from scratch', async () => {
    const e = await engine();
    const run = await e.submit(alice, chain);
    backend.exit(await started(run, 'prepare'), 1);
    await status(e, run, 'FAILED');
    const again = await e.retry(alice, run.id);
    expect(again.status).toBe('RUNNING');
    await settle(0, () => backend.alive('step').length === 1);
    expect(await nodeOf(e, run, 'prepare')).toMatchObject({ state: 'RUNNING', attempts: 1 });
    backend.exit(backend.stepOf(run.id, 'prepare')!, 0);
    backend.exit(await started(run, 'fit'), 0);
    await status(e, run, 'SUCCESS');
  });
});

describe('steps that wait', () => {
  it('keeps a step whose job waits for a slot (or is held) running, shows why, and never fails it for waiting', async () => {
    backend.initialState = () => ({ alive: true, waiting: 'idle: waiting for a slot' });
    const e = await engine();
    const run = await e.submit(alice, chain);
    const prepare = await started(run, 'prepare');
    await settle(POLL);
    expect(await nodeOf(e, run, 'prepare')).toMatchObject({ state: 'RUNNING', message: 'idle: waiting for a slot' });

    backend.wait(prepare, 'held: the job exceeded its memory request');
    await settle(0, async () => (await nodeOf(e, run, 'prepare'))!.message !== 'idle: waiting for a slot');
    expect(await nodeOf(e, run, 'prepare')).toMatchObject({ state: 'RUNNING', message: 'held: the job exceeded its memory request' });

    await settle(3600); // an hour held: the engine has no step timeout, the run just waits
    expect((await dag(e, run)).run.status).toBe('RUNNING');

    backend.run(prepare);
    await settle(0, async () => (await nodeOf(e, run, 'prepare'))!.message === undefined);
    expect(await nodeOf(e, run, 'prepare')).toMatchObject({ state: 'RUNNING' });
    expect((await nodeOf(e, run, 'prepare'))!.message).toBeUndefined();
    backend.exit(prepare, 0);
    backend.exit(await started(run, 'fit'), 0);
    await status(e, run, 'SUCCESS');
  });

  it('asks again later when checking fails (the batch system does not answer) instead of failing the step', async () => {
    const e = await engine();
    const run = await e.submit(alice, chain);
    const prepare = await started(run, 'prepare');
    backend.checkError = new Error('schedd does not answer');
    backend.exit(prepare, 0);
    await settle(POLL * 3);
    expect(await nodeOf(e, run, 'prepare')).toMatchObject({ state: 'RUNNING' });
    backend.checkError = null;
    await settle(POLL, async () => (await nodeOf(e, run, 'prepare'))!.state === 'SUCCESS');
    expect(await nodeOf(e, run, 'prepare')).toMatchObject({ state: 'SUCCESS' });
  });
});

describe('checks', () => {
  it('asks the backend once per poll for the running steps of every run, not once per run', async () => {
    const e = await engine();
    const runs = [await e.submit(alice, fan(2)), await e.submit(bob, fan(3)), await e.submit(alice, chain)];
    for (const r of runs.slice(0, 2)) await started(r, 'fan:1');
    await started(runs[1]!, 'fan:2');
    await started(runs[2]!, 'prepare');
    expect(backend.alive('step')).toHaveLength(6);
    await settle(POLL); // let any checks of the starts themselves pass
    const before = backend.calls.check.length;
    await settle(POLL);
    expect(backend.calls.check.slice(before)).toEqual([6]);
  });
});

describe('cancel', () => {
  it('stops the running steps with one backend call and cancels every unfinished step', async () => {
    const e = await engine();
    const run = await e.submit(alice, fan(3));
    await started(run, 'fan:2');
    const running = backend.alive('step');
    expect(running).toHaveLength(3);
    const stops = backend.calls.stop.length;

    await e.cancel(alice, run.id);
    const d = await status(e, run, 'CANCELLED');
    expect(backend.calls.stop.slice(stops)).toEqual([3]);
    for (const p of running) expect(p.stopped).toBe(true);
    expect(d.run.message).toBe('cancelled by alice');
    expect(d.nodes.filter((n) => n.stage === 'fan').map((n) => [n.state, n.message])).toEqual([
      ['CANCELLED', 'cancelled by alice'],
      ['CANCELLED', 'cancelled by alice'],
      ['CANCELLED', 'cancelled by alice'],
    ]);
    await expect(e.cancel(alice, run.id)).rejects.toMatchObject({ statusCode: 409, code: 'run_finished' });
  });

  it('hides a run from other users (404) and lets an admin cancel it', async () => {
    const e = await engine();
    const run = await e.submit(alice, chain);
    await started(run, 'prepare');
    await expect(e.cancel(bob, run.id)).rejects.toMatchObject({ statusCode: 404 });
    await e.cancel({ name: 'root', groups: [], admin: true }, run.id);
    const d = await status(e, run, 'CANCELLED');
    expect(d.run.message).toBe('cancelled by root');
  });
});

describe('restart', () => {
  it('a new engine over the same store adopts running steps: checks their handles, does not start them again', async () => {
    const first = await engine({}, { stop_on_shutdown: false });
    const run = await first.submit(alice, chain);
    const prepare = await started(run, 'prepare');
    await settle(1); // the batched save
    engines.splice(engines.indexOf(first), 1);
    await first.close(); // without cluster.stop_on_shutdown the step keeps running

    expect(prepare.stopped).toBe(false);
    const starts = backend.calls.startSteps.length;
    const second = await engine();
    await settle(POLL);
    expect(backend.calls.startSteps.length).toBe(starts); // adopted, not started again
    expect(await nodeOf(second, run, 'prepare')).toMatchObject({ state: 'RUNNING', attempts: 1 });

    backend.exit(prepare, 0);
    backend.exit(await started(run, 'fit'), 0);
    const d = await status(second, run, 'SUCCESS');
    expect(d.nodes.find((n) => n.id === 'prepare')).toMatchObject({ attempts: 1, exit_code: 0 });
  });

  it('takes up a run inside its subworkflows: scopes, their stages and steps come back from the store and the run goes on', async () => {
    const sub: WorkflowBundle = {
      entry: 'wf.yml',
      files: {
        'wf.yml': `stages:
  - name: map
    dependencies: [init]
    scheduler:
      scheduler_type: multistep-stage
      parameters: {i: [1, 2]}
      scatter: {method: zip, parameters: [i]}
      workflow:
        stages:
          - {name: one, dependencies: [init], scheduler: {scheduler_type: singlestep-stage, step: ${cmd('echo one')}}}
          - {name: two, dependencies: [one], scheduler: {scheduler_type: singlestep-stage, step: ${cmd('echo two')}}}
  - name: after
    dependencies: [map]
    scheduler: {scheduler_type: singlestep-stage, parameters: {done: {stages: 'map[*].two', output: done}}, step: ${cmd('echo {done}')}}
`,
      },
    };
    const first = await engine({}, { stop_on_shutdown: false });
    const run = await first.submit(alice, sub);
    backend.exit(await started(run, 'map[0].one'), 0);
    const two0 = await started(run, 'map[0].two');
    const one1 = await started(run, 'map[1].one');
    await settle(1); // the batched save
    engines.splice(engines.indexOf(first), 1);
    await first.close();

    const second = await engine();
    await settle(POLL);
    const d0 = await dag(second, run);
    expect(d0.stages.map((s) => `${s.name}:${s.state}`)).toEqual([
      'init:APPLIED',
      'map:APPLIED',
      'after:WAITING',
      'map[0].init:APPLIED',
      'map[0].one:APPLIED',
      'map[0].two:APPLIED',
      'map[1].init:APPLIED',
      'map[1].one:APPLIED',
      'map[1].two:WAITING',
    ]);
    // `after` waits for every stage of every scope of map
    backend.exit(two0, 0);
    backend.exit(one1, 0);
    await settle(POLL);
    expect((await dag(second, run)).nodes.some((n) => n.id === 'after')).toBe(false);
    backend.exit(await started(run, 'map[1].two'), 0);
    backend.exit(await started(run, 'after'), 0);
    const d = await status(second, run, 'SUCCESS');
    expect(d.run.message).toBe('5 steps succeeded');
    expect(d.run.counts).toEqual({ DEFINED: 0, RUNNING: 0, SUCCESS: 5, FAILED: 0, CANCELLED: 0 });
    expect(d.nodes.find((n) => n.id === 'after')!.parameters.done).toEqual(['yes', 'yes']);
  });

  it('with cluster.stop_on_shutdown, stops the steps at shutdown and starts them afresh (same attempt) after the restart', async () => {
    const first = await engine({}, { stop_on_shutdown: true });
    const run = await first.submit(alice, chain);
    const prepare = await started(run, 'prepare');
    engines.splice(engines.indexOf(first), 1);
    await first.close();
    expect(prepare.stopped).toBe(true);

    const second = await engine();
    await settle(0, () => backend.stepOf(run.id, 'prepare') !== prepare);
    expect(backend.stepOf(run.id, 'prepare')).not.toBe(prepare);
    expect(await nodeOf(second, run, 'prepare')).toMatchObject({ state: 'RUNNING', attempts: 1 });
  });
});

describe('subworkflows', () => {
  it('bound what they bring: a stage whose subworkflows would pass workflows.max_steps in stages fails, saying so, before any exists', async () => {
    const e = await engine({ max_steps: 12 });
    const stages = Array.from(
      { length: 4 },
      (_, k) => `          - {name: s${k}, dependencies: [init], scheduler: {scheduler_type: singlestep-stage, step: ${cmd('echo')}}}`,
    ).join('\n');
    const run = await e.submit(alice, {
      entry: 'wf.yml',
      files: {
        'wf.yml': `stages:
  - name: map
    dependencies: [init]
    scheduler:
      scheduler_type: multistep-stage
      parameters: {i: [1, 2, 3]}
      scatter: {method: zip, parameters: [i]}
      workflow:
        stages:
${stages}
`,
      },
    });
    const d = await status(e, run, 'FAILED');
    expect(d.run.message).toBe('stage map failed: its 3 subworkflows would bring the run to 17 stages; workflows.max_steps (12) bounds stages too');
    expect(d.nodes.map((n) => n.id)).toEqual(['init']);
    expect(backend.calls.startSteps.length).toBe(0);
  });
});

describe('the per-user cap', () => {
  it("refuses a run beyond workflows.max_active_runs_per_user (429), not other users', and frees a place when one ends", async () => {
    const e = await engine({ max_active_runs_per_user: 2 });
    const one = await e.submit(alice, chain);
    const two = await e.submit(alice, chain);
    await expect(e.submit(alice, chain)).rejects.toMatchObject({ statusCode: 429, code: 'limit_workflow_runs' });
    await expect(e.submit(bob, chain)).resolves.toMatchObject({ owner: 'bob' });

    await e.cancel(alice, one.id);
    await status(e, one, 'CANCELLED');
    const three = await e.submit(alice, chain);
    expect(three.status).toBe('RUNNING');
    // a retry counts like a submission
    await e.cancel(alice, two.id);
    await status(e, two, 'CANCELLED');
    await e.submit(alice, chain);
    await expect(e.retry(alice, two.id)).rejects.toMatchObject({ statusCode: 429 });
  });

  it('counts parallel submissions: of three at once with room for two, one is refused', async () => {
    const e = await engine({ max_active_runs_per_user: 2 });
    const results = await Promise.allSettled([e.submit(alice, chain), e.submit(alice, chain), e.submit(alice, chain)]);
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'fulfilled', 'rejected']);
  });
});

describe('what is told', () => {
  it('tells the run and DAG changes on its events, batched, with the owner', async () => {
    const e = await engine();
    const runs: [string, WorkflowRun][] = [];
    const dags: [string, WorkflowDag][] = [];
    e.on('run', (owner, r) => runs.push([owner, r]));
    e.on('dag', (owner, d) => dags.push([owner, d]));
    const run = await e.submit(alice, chain);
    await started(run, 'prepare');
    await settle(1);
    expect(runs.every(([owner]) => owner === 'alice')).toBe(true);
    expect(dags.flatMap(([, d]) => d.edges)).toEqual([{ from: 'init', to: 'prepare' }]);
    expect(dags.flatMap(([, d]) => d.nodes.map((n) => `${n.id}:${n.state}`))).toContain('prepare:RUNNING');
    expect(existsSync(join(dir, 'workflows', run.id, '.af', 'workflow', 'wf.yml'))).toBe(true);
  });
});
