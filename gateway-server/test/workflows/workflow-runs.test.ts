// Workflow runs end to end on the local backend: real step processes, publishers, the DAG growing as
// stages apply, step logs, output files, cancel, retry, and a run that goes on across a gateway restart.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';
import type { WorkflowDag, WorkflowRun, AfEvent } from '@af-gateway/schemas';
import { basic, client, runEnded, SINGLE_USER, startTestGateway, waitForRun, wsUrl, type TestGateway } from '../support/gateway.js';

const EXAMPLES = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'examples', 'workflows');
const read = (dir: string, ...files: string[]) => Object.fromEntries(files.map((f) => [f, readFileSync(join(EXAMPLES, dir, f), 'utf8')]));

let gw: TestGateway;
let dataDir: string;

async function api<T = unknown>(method: string, path: string, body?: unknown, user = 'alice'): Promise<{ status: number; body: T }> {
  const r = await client(gw, basic(user)).call(method, `/api/af/workflows${path}`, body);
  return { status: r.status, body: r.body as T };
}

const waitFor = (id: string, done: (d: WorkflowDag) => boolean, timeoutMs = 60_000) => waitForRun(client(gw, basic('alice')), id, { until: done, timeoutMs });
const finished = runEnded;

/** A gateway on the test's data dir (kept across restarts). */
const start = (extra: Record<string, unknown> = {}) =>
  startTestGateway({ ...SINGLE_USER, auth: { type: 'simple', admin_users: ['root'] }, workflows: { poll_period: 0.2 }, ...extra }, { dataDir });

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'af-wf-'));
  gw = await start();
});

afterAll(async () => {
  await gw?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('workflow runs on the local backend', () => {
  it('runs map-reduce: the map stage gets one step per file acquire made, reduce adds their counts', async () => {
    const events: AfEvent[] = [];
    const ws = new WebSocket(wsUrl(gw, '/api/af/events'), { headers: basic('alice') });
    ws.on('message', (m) => events.push(JSON.parse(String(m)) as AfEvent));
    await new Promise((r) => ws.once('open', r));

    const submitted = await api<WorkflowRun>('POST', '', {
      entry: 'workflow.yml',
      files: read('map-reduce', 'workflow.yml', 'steps.yml'),
      parameters: { nfiles: 5 },
    });
    expect(submitted.status).toBe(201);
    expect(submitted.body).toMatchObject({ owner: 'alice', status: 'RUNNING', backend: 'local', name: 'workflow', stages_total: 3 });
    const id = submitted.body.id;
    const dag = await waitFor(id, finished);
    ws.close();
    expect(dag.run.message).toBe('7 steps succeeded');
    expect(dag.run.status).toBe('SUCCESS');
    expect(dag.nodes.map((n) => n.id)).toEqual(['init', 'acquire', 'map:0', 'map:1', 'map:2', 'map:3', 'map:4', 'reduce']);
    expect(dag.run.counts).toEqual({ DEFINED: 0, RUNNING: 0, SUCCESS: 7, FAILED: 0, CANCELLED: 0 });
    // edges: init → acquire → each map step → reduce
    expect(dag.edges).toContainEqual({ from: 'init', to: 'acquire' });
    expect(dag.edges.filter((e) => e.from === 'acquire').length).toBe(5);
    expect(dag.edges.filter((e) => e.to === 'reduce').length).toBe(5);
    // file i holds `seq i`: i words; the total is 1+…+5
    const reduce = dag.nodes.find((n) => n.id === 'reduce')!;
    const total = reduce.outputs.total as string;
    expect(readFileSync(total, 'utf8').trim()).toBe('15');
    expect(dag.run.outputs).toEqual({ reduce: { total } });
    const map2 = dag.nodes.find((n) => n.id === 'map:2')!;
    expect(map2.parameters.inputfile).toBe(join(dag.run.workspace, 'acquire', 'files', 'part3.txt'));
    expect(map2.command).toBe(`sh -c 'wc -w < ${map2.parameters.inputfile as string} > ${join(dag.run.workspace, 'map', '2', 'count.txt')}'`);
    expect(map2.job).toMatch(/^process \d+$/);
    // the output file through the API, and the steps' own log
    const file = await api<string>('GET', `/${id}/files/reduce/total.txt`);
    expect([file.status, String(file.body).trim()]).toEqual([200, '15']);
    const log = await api<string>('GET', `/${id}/nodes/acquire/log`);
    expect(log.status).toBe(200);
    expect(log.body).toContain(`step acquire of workflow run ${id}, attempt 1`);
    // the event stream told the story: the map stage's steps appeared only after acquire succeeded
    const dagEvents = events.filter((e): e is Extract<AfEvent, { type: 'workflow-dag' }> => e.type === 'workflow-dag' && e.dag.run.id === id);
    const firstMap = dagEvents.findIndex((e) => e.dag.nodes.some((n) => n.stage === 'map'));
    const acquireDone = dagEvents.findIndex((e) => e.dag.nodes.some((n) => n.id === 'acquire' && n.state === 'SUCCESS'));
    expect(acquireDone).toBeGreaterThanOrEqual(0);
    expect(firstMap).toBeGreaterThanOrEqual(acquireDone);
    expect(events.some((e) => e.type === 'workflow' && e.run.id === id && e.run.status === 'SUCCESS')).toBe(true);
    // listed, and invisible to another user
    expect((await api<{ runs: WorkflowRun[] }>('GET', '')).body.runs.map((r) => r.id)).toContain(id);
    expect((await api<{ runs: WorkflowRun[] }>('GET', '', undefined, 'bob')).body.runs).toEqual([]);
    expect((await api('GET', `/${id}`, undefined, 'bob')).status).toBe(404);
    expect((await api('GET', `/${id}/files/reduce/total.txt`, undefined, 'bob')).status).toBe(404);
  }, 90_000);

  it('runs the select → fit chain with every publisher kind', async () => {
    const r = await api<WorkflowRun>('POST', '', {
      entry: 'workflow.yml',
      files: read('select-fit', 'workflow.yml', 'steps.yml'),
      parameters: { events: 1000, cut: 0.5 },
    });
    expect(r.status).toBe(201);
    const dag = await waitFor(r.body.id, finished);
    expect(dag.run.status, JSON.stringify(dag.nodes.map((n) => n.message))).toBe('SUCCESS');
    const fit = dag.nodes.find((n) => n.id === 'fit')!;
    const result = JSON.parse(readFileSync(fit.outputs.result as string, 'utf8')) as { selected: number; mean: number; model: string };
    expect(result.model).toBe('gauss');
    expect(result.selected).toBeGreaterThan(300);
    expect(result.selected).toBeLessThan(1000);
    expect(result.mean).toBeGreaterThan(0.5);
    const select = dag.nodes.find((n) => n.id === 'select')!;
    expect(select.outputs).toEqual({ selected: join(dag.run.workspace, 'select', 'selected.txt') });
    expect(select.parameters).toMatchObject({ events: 1000, cut: 0.5 });
    expect(select.image).toBe('alpine:3.20');
    const log = await api<string>('GET', `/${r.body.id}/nodes/select/log`);
    expect(log.body).toContain('image alpine:3.20 not used: the local backend runs steps on the host');
    expect(log.body).toContain(`kept ${result.selected} of 1000 events above 0.5`);
  }, 60_000);

  it('rejects invalid workflows with the JSON path of each problem, and makes nothing', async () => {
    const before = (await api<{ runs: WorkflowRun[] }>('GET', '')).body.runs.length;
    const files = read('map-reduce', 'workflow.yml', 'steps.yml');
    const bad = { ...files, 'steps.yml': files['steps.yml']!.replace('cmd: sh -c', 'command: sh -c') };
    const r = await api<{ code: string; details: { path: string; file: string; message: string }[] }>('POST', '', {
      entry: 'workflow.yml',
      files: bad,
      parameters: { nfiles: 2 },
    });
    expect(r.status).toBe(422);
    expect(r.body.code).toBe('invalid_workflow');
    expect(r.body.details).toContainEqual({ path: '$.stages[1].scheduler.step.process', file: 'steps.yml', message: 'cmd is missing' });

    const typo = { ...files, 'steps.yml': files['steps.yml']!.replace('{outputfile}', '{outputfle}') };
    const t = await api<{ details: { path: string; message: string }[] }>('POST', '', { entry: 'workflow.yml', files: typo, parameters: { nfiles: 2 } });
    expect(t.status).toBe(422);
    expect(t.body.details[0]).toMatchObject({ path: '$.stages[1].scheduler.step.process.cmd', message: expect.stringContaining('{outputfle}') });

    const missing = await api<{ code: string; error: string }>('POST', '', { entry: 'workflow.yml', files });
    expect([missing.status, missing.body.code]).toEqual([422, 'missing_parameters']);
    expect(missing.body.error).toContain('nfiles');
    const backend = await api<{ code: string; error: string }>('POST', '', { entry: 'workflow.yml', files, parameters: { nfiles: 1 }, backend: 'slurm' });
    expect([backend.status, backend.body.code]).toEqual([422, 'unknown_backend']);
    expect((await api('POST', '', '{"entry": "workflow.yml", "files": ')).status).toBe(400);
    expect((await api('POST', '', { entry: 'workflow.yml', files: 'not an object' })).status).toBe(422);
    expect((await api<{ runs: WorkflowRun[] }>('GET', '')).body.runs.length).toBe(before);
  });

  it('fails a run whose step fails, with its exit code and log; retry runs the failed step again', async () => {
    const marker = join(dataDir, 'second-attempt-ok');
    const files = {
      'wf.yml': `stages:
  - name: flaky
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {marker: ${JSON.stringify(marker)}}
      step:
        process: {process_type: interpolated-script-cmd, script: "if [ -e {marker} ]; then echo fine; else echo broken >&2; exit 3; fi"}
        publisher: {publisher_type: constant-pub, publish: {ok: true}}
        environment: {environment_type: localproc-env}
`,
    };
    const r = await api<WorkflowRun>('POST', '', { entry: 'wf.yml', files });
    const dag = await waitFor(r.body.id, finished);
    expect(dag.run.status).toBe('FAILED');
    const flaky = dag.nodes.find((n) => n.id === 'flaky')!;
    expect(flaky).toMatchObject({ state: 'FAILED', exit_code: 3, attempts: 1 });
    expect(flaky.message).toContain('it exited with code 3');
    expect(flaky.message).toContain('broken');
    expect(dag.run.message).toContain('step flaky failed');

    // a finished run cannot be cancelled; a failed one can be retried
    expect((await api('POST', `/${r.body.id}/cancel`)).status).toBe(409);
    await import('node:fs/promises').then((fs) => fs.writeFile(marker, ''));
    const again = await api<WorkflowRun>('POST', `/${r.body.id}/retry`);
    expect([again.status, again.body.status]).toEqual([200, 'RUNNING']);
    const after = await waitFor(r.body.id, finished);
    expect(after.run.status).toBe('SUCCESS');
    expect(after.nodes.find((n) => n.id === 'flaky')).toMatchObject({ state: 'SUCCESS', attempts: 1, outputs: { ok: true } });
    const log = await api<string>('GET', `/${r.body.id}/nodes/flaky/log`);
    expect(log.body).toContain('broken');
    expect(log.body).toContain('fine');
  }, 60_000);

  it('restarts a failed step by itself when retries are asked for', async () => {
    const counter = join(dataDir, 'attempts');
    const files = {
      'wf.yml': `stages:
  - name: third-time-lucky
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {counter: ${JSON.stringify(counter)}}
      step:
        process: {process_type: interpolated-script-cmd, script: "echo x >> {counter}; [ $(wc -l < {counter}) -ge 3 ]"}
        publisher: {publisher_type: frompar-pub, outputmap: {counter: counter}}
        environment: {environment_type: localproc-env}
`,
    };
    const r = await api<WorkflowRun>('POST', '', { entry: 'wf.yml', files, retries: 2 });
    const dag = await waitFor(r.body.id, finished);
    expect(dag.run.status).toBe('SUCCESS');
    expect(dag.nodes[1]).toMatchObject({ state: 'SUCCESS', attempts: 3 });
  }, 60_000);

  it('cancels a run: its running step is stopped, later stages never start', async () => {
    const files = {
      'wf.yml': `stages:
  - name: slow
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {pidfile: '{workdir}/pid'}
      step:
        process: {process_type: interpolated-script-cmd, script: "echo $$ > {pidfile}; sleep 60"}
        publisher: {publisher_type: constant-pub, publish: {}}
        environment: {environment_type: localproc-env}
  - name: after
    dependencies: [slow]
    scheduler:
      scheduler_type: singlestep-stage
      step:
        process: {process_type: string-interpolated-cmd, cmd: 'true'}
        publisher: {publisher_type: constant-pub, publish: {}}
        environment: {environment_type: localproc-env}
`,
    };
    const r = await api<WorkflowRun>('POST', '', { entry: 'wf.yml', files });
    const running = await waitFor(
      r.body.id,
      (d) => d.nodes.some((n) => n.id === 'slow' && n.state === 'RUNNING') && existsSync(join(d.run.workspace, 'slow', 'pid')),
    );
    await sleep(200);
    const pid = Number(readFileSync(join(running.run.workspace, 'slow', 'pid'), 'utf8'));
    expect(() => process.kill(pid, 0)).not.toThrow();
    // another user cannot cancel it
    expect((await api('POST', `/${r.body.id}/cancel`, undefined, 'bob')).status).toBe(404);
    expect((await api('POST', `/${r.body.id}/cancel`)).status).toBe(200);
    const dag = await waitFor(r.body.id, finished, 20_000);
    expect(dag.run).toMatchObject({ status: 'CANCELLED', message: 'cancelled by alice' });
    expect(dag.nodes.find((n) => n.id === 'slow')!.state).toBe('CANCELLED');
    expect(dag.nodes.some((n) => n.id === 'after')).toBe(false);
    expect(dag.stages.find((s) => s.name === 'after')!.state).toBe('WAITING');
    expect(() => process.kill(pid, 0)).toThrow();
    // a finished run can be deleted with its workspace
    expect((await api('DELETE', `/${r.body.id}`)).status).toBe(204);
    expect(existsSync(dag.run.workspace)).toBe(false);
    expect((await api('GET', `/${r.body.id}`)).status).toBe(404);
  }, 60_000);

  it("streams a running step's log until it finished, and keeps file reads inside the workspace", async () => {
    const files = {
      'wf.yml': `stages:
  - name: talk
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      step:
        process: {process_type: interpolated-script-cmd, script: "for i in 1 2 3; do echo line $i; sleep 0.5; done; echo secret > {workdir}/out.txt"}
        publisher: {publisher_type: interpolated-pub, publish: {out: out.txt}, relative_paths: true}
        environment: {environment_type: localproc-env}
`,
    };
    const r = await api<WorkflowRun>('POST', '', { entry: 'wf.yml', files });
    await waitFor(r.body.id, (d) => d.nodes.some((n) => n.id === 'talk'));
    const started = Date.now();
    const res = await fetch(`${gw.url}/api/af/workflows/${r.body.id}/nodes/talk/log?follow=true`, { headers: basic('alice') });
    const text = await res.text(); // ends when the step finished
    expect(Date.now() - started).toBeGreaterThan(700);
    expect(text).toMatch(/line 1\nline 2\nline 3\n$/);
    const dag = await waitFor(r.body.id, finished);
    expect(dag.nodes[1]!.outputs.out).toBe(join(dag.run.workspace, 'talk', 'out.txt'));
    for (const path of ['..%2F..%2Fstate.sqlite', 'talk', '%2Fetc%2Fpasswd', 'nothing/here']) {
      const f = await api<{ code: string }>('GET', `/${r.body.id}/files/${path}`);
      expect(f.status, path).toBeGreaterThanOrEqual(400);
      expect(f.status, path).toBeLessThan(500);
    }
  }, 60_000);
});

describe('a workflow run across a gateway restart', () => {
  it('adopts the step that kept running and finishes the run', async () => {
    await gw.close();
    gw = await start({ cluster: { stop_on_shutdown: false } });
    const files = {
      'wf.yml': `stages:
  - name: long
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {out: '{workdir}/done.txt'}
      step:
        process: {process_type: interpolated-script-cmd, script: "sleep 3; echo done > {out}"}
        publisher: {publisher_type: frompar-pub, outputmap: {out: out}}
        environment: {environment_type: localproc-env}
  - name: next
    dependencies: [long]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {in: {stages: long, output: out, unwrap: true}}
      step:
        process: {process_type: string-interpolated-cmd, cmd: 'cat {in}'}
        publisher: {publisher_type: constant-pub, publish: {}}
        environment: {environment_type: localproc-env}
`,
    };
    const r = await api<WorkflowRun>('POST', '', { entry: 'wf.yml', files });
    const running = await waitFor(r.body.id, (d) => d.nodes.some((n) => n.id === 'long' && n.state === 'RUNNING'));
    const job = running.nodes.find((n) => n.id === 'long')!.job;
    await gw.close(); // the step goes on without the gateway
    await sleep(500);
    gw = await start();
    const dag = await waitFor(r.body.id, finished, 30_000);
    expect(dag.run.status).toBe('SUCCESS');
    const long = dag.nodes.find((n) => n.id === 'long')!;
    expect(long).toMatchObject({ state: 'SUCCESS', attempts: 1, job });
    expect(readFileSync(long.outputs.out as string, 'utf8').trim()).toBe('done');
    expect(dag.nodes.find((n) => n.id === 'next')!.state).toBe('SUCCESS');
  }, 60_000);
});
