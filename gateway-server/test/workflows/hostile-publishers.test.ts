// Publisher globs aimed outside the step's directory, sent as an attacker would: patterns that say so
// by themselves are refused at submission (422, nothing made); a parameter that points elsewhere, or a
// link to /etc the step planted in its own directory, fails the step instead of listing /etc.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { WorkflowDag, WorkflowRun } from '@af-gateway/schemas';
import { basic, client, SINGLE_USER, startTestGateway, waitForRun, type TestGateway } from '../support/gateway.js';

type ErrorBody = { error: string; code: string; details?: { path: string; file?: string; message: string }[] };

let gw: TestGateway;
const mallory = () => client(gw, basic('mallory'), { timeoutMs: 20_000 });

async function call<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const r = await mallory().call(method, `/api/af/workflows${path}`, body);
  return { status: r.status, body: r.json as T };
}

const finished = (id: string): Promise<WorkflowDag> => waitForRun(mallory(), id, { timeoutMs: 20_000, pollMs: 100 });

/** Starts a run (it must be accepted: 201) and waits for its end. */
async function runToEnd(body: Record<string, unknown>): Promise<WorkflowDag> {
  const r = await call<WorkflowRun>('POST', '', body);
  expect(r.status).toBe(201);
  return finished(r.body.id);
}

/** One stage running `script`, published by `publisher` (YAML flow text). */
/** The finished run's 'plant' step, which every run here has: its outputs and its working directory. */
function plant(dag: WorkflowDag): { outputs: unknown; workdir: string } {
  const node = dag.nodes.find((n) => n.id === 'plant');
  if (!node?.workdir) throw new Error(`no step 'plant' with a working directory in ${JSON.stringify(dag.nodes.map((n) => n.id))}`);
  return { outputs: node.outputs, workdir: node.workdir };
}

const workflow = (script: string, publisher: string, parameters = '{}') => ({
  'workflow.yml': `stages:
  - name: plant
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: ${parameters}
      step:
        process: {process_type: interpolated-script-cmd, script: ${JSON.stringify(script)}}
        publisher: ${publisher}
        environment: {environment_type: localproc-env}
`,
});

beforeAll(async () => {
  gw = await startTestGateway({ ...SINGLE_USER, auth: { type: 'simple' }, workflows: { poll_period: 0.2 } }, { prefix: 'af-wf-pub-' });
});

afterAll(async () => {
  await gw?.close();
});

describe('publisher globs stay in the step directory', () => {
  it('refuses at submission globs that leave the step directory by themselves, and makes nothing', async () => {
    const before = (await call<{ runs: WorkflowRun[] }>('GET', '')).body.runs.length;
    const cases: [string, string, RegExp][] = [
      [
        '{publisher_type: fromglob-pub, outputkey: f, globexpression: "../../*"}',
        '$.stages[0].scheduler.step.publisher.globexpression',
        /climbs out of the step's directory with \.\./,
      ],
      ['{publisher_type: fromglob-pub, outputkey: f, globexpression: "/etc/*"}', '$.stages[0].scheduler.step.publisher.globexpression', /is an absolute path/],
      ['{publisher_type: interpolated-pub, glob: true, publish: {f: "{workdir}/../../../*"}}', '$.stages[0].scheduler.step.publisher.publish.f', /climbs out/],
      [
        '{publisher_type: interpolated-pub, glob: true, publish: {f: ["{workdir}/*.txt", "/etc/*"]}}',
        '$.stages[0].scheduler.step.publisher.publish.f[1]',
        /is an absolute path/,
      ],
    ];
    for (const [publisher, path, message] of cases) {
      const r = await call<ErrorBody>('POST', '', { entry: 'workflow.yml', files: workflow('true', publisher) });
      expect(r.status, publisher).toBe(422);
      expect(r.body.code).toBe('invalid_workflow');
      expect(r.body.details).toEqual([{ path, file: 'workflow.yml', message: expect.stringMatching(message) }]);
    }
    expect((await call<{ runs: WorkflowRun[] }>('GET', '')).body.runs.length).toBe(before);
  });

  it('fails the step whose glob names a link it planted to /etc, listing nothing of /etc', async () => {
    const dag = await runToEnd({
      entry: 'workflow.yml',
      files: workflow('ln -s /etc {workdir}/etc && touch {workdir}/own.txt', '{publisher_type: fromglob-pub, outputkey: f, globexpression: "etc/*"}'),
    });
    expect(dag.run.status).toBe('FAILED');
    const node = dag.nodes.find((n) => n.id === 'plant')!;
    expect(node.message).toMatch(
      /outputs could not be published: publisher: .*etc, a symbolic link in the step's directory; a publisher does not follow links/,
    );
    expect(node.outputs).toEqual({});
    expect(JSON.stringify(dag)).not.toMatch(/passwd|hostname/);
  });

  it("does not enter a planted link while matching **, and publishes the step's own files", async () => {
    const r = await call<WorkflowRun>('POST', '', {
      entry: 'workflow.yml',
      files: workflow(
        'ln -s /etc {workdir}/etc && mkdir -p {workdir}/sub && touch {workdir}/own.conf {workdir}/sub/deep.conf',
        '{publisher_type: fromglob-pub, outputkey: f, globexpression: "**/*.conf"}',
      ),
    });
    const dag = await finished(r.body.id);
    expect(dag.run.status).toBe('SUCCESS');
    const { outputs, workdir } = plant(dag);
    expect(outputs).toEqual({ f: [join(workdir, 'own.conf'), join(workdir, 'sub', 'deep.conf')] });
  });

  it('matches a glob of many stars against a long file name in linear time (a backtracking regular expression blocked the event loop)', async () => {
    // '*a' seven times then '*b' against 60 a's: picomatch's regular expression backtracked seconds on
    // the event loop (every extra star or character multiplies it: nine stars on a 250-character name were hours)
    const name = 'a'.repeat(60);
    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    const dag = await runToEnd({
      entry: 'workflow.yml',
      files: workflow(
        `touch {workdir}/${name} {workdir}/${name}b {workdir}/.ab`,
        `{publisher_type: fromglob-pub, outputkey: f, globexpression: "${'*a'.repeat(7)}*b"}`,
      ),
    });
    delay.disable();
    expect(dag.run.status).toBe('SUCCESS');
    const { outputs, workdir } = plant(dag);
    expect(outputs).toEqual({ f: [join(workdir, `${name}b`)] });
    expect(delay.max / 1e6).toBeLessThan(1000);
  });

  it('fails the step whose publisher would repeat a 400 KB parameter into megabytes of outputs', async () => {
    const x = Array.from({ length: 10_000 }, (_, i) => `${i}`.padStart(40, 'x'));
    const keys = Array.from({ length: 10 }, (_, i) => `k${i}: "{x}"`).join(', ');
    const dag = await runToEnd({
      entry: 'workflow.yml',
      files: workflow('true', `{publisher_type: interpolated-pub, publish: {${keys}}}`, '{x: {stages: init, output: x, unwrap: true}}'),
      parameters: { x },
    });
    expect(dag.run.status).toBe('FAILED');
    const node = dag.nodes.find((n) => n.id === 'plant')!;
    expect(node.message).toMatch(/outputs could not be published: publisher k2: what the step publishes would be more than 1,048,576 characters long/);
    expect(node.outputs).toEqual({});
  });

  it('fails the steps whose outputs would take the run past 16 MiB of published outputs', async () => {
    const big = JSON.stringify(Array.from({ length: 4000 }, (_, i) => `${i}`.padStart(200, 'x')));
    const files = {
      'workflow.yml': `stages:
  - name: plant
    dependencies: [init]
    scheduler:
      scheduler_type: multistep-stage
      parameters: {i: ${JSON.stringify(Array.from({ length: 25 }, (_, i) => i))}}
      scatter: {method: zip, parameters: [i]}
      step:
        process: {process_type: string-interpolated-cmd, cmd: 'true'}
        publisher: {publisher_type: constant-pub, publish: {many: ${big}}}
        environment: {environment_type: localproc-env}
`,
    };
    const dag = await runToEnd({ entry: 'workflow.yml', files, max_parallel: 4 });
    expect(dag.run.status).toBe('FAILED');
    const ok = dag.nodes.filter((n) => n.stage === 'plant' && n.state === 'SUCCESS');
    const failed = dag.nodes.filter((n) => n.state === 'FAILED');
    expect(ok.length).toBe(20); // 20 × 0.8 MB fit in 16 MiB
    expect(failed.length).toBeGreaterThan(0);
    expect(failed[0]!.message).toMatch(
      /^it exited 0 but its outputs could not be published: its outputs weigh more than what this run's steps may still publish \(\d\.\d of 16 MiB\); publish files, not their contents$/,
    );
  }, 60_000);

  it('fails the step whose glob a parameter points at /etc (known only when the step ran)', async () => {
    const dag = await runToEnd({
      entry: 'workflow.yml',
      files: workflow(
        'true',
        '{publisher_type: interpolated-pub, glob: true, publish: {f: "{where}/*"}}',
        '{where: {stages: init, output: where, unwrap: true}}',
      ),
      parameters: { where: '/etc' },
    });
    expect(dag.run.status).toBe('FAILED');
    const node = dag.nodes.find((n) => n.id === 'plant')!;
    expect(node.message).toContain(`publisher: the glob /etc/* is outside the step's directory ${node.workdir}`);
    expect(JSON.stringify(dag)).not.toMatch(/passwd|hostname/);

    // ..-climbing through a parameter, as relative_paths joins it
    const up = await call<WorkflowRun>('POST', '', {
      entry: 'workflow.yml',
      files: workflow(
        'true',
        '{publisher_type: interpolated-pub, glob: true, relative_paths: true, publish: {f: "{where}/*"}}',
        '{where: {stages: init, output: where, unwrap: true}}',
      ),
      parameters: { where: '../../../../../../../../etc' },
    });
    const upDag = await finished(up.body.id);
    expect(upDag.run.status).toBe('FAILED');
    expect(upDag.nodes.find((n) => n.id === 'plant')!.message).toMatch(/publisher: the glob \/etc\/\* is outside the step's directory/);
  });
});
