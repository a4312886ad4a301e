// Bundles built to exhaust the gateway, sent as an attacker would: a $ref fan-out, a YAML mapping
// the parser is quadratic in, and cartesian scatters known at submission and only at run time. Each
// is refused (or its run fails) with a message naming the limit, while /api/health keeps answering
// within a second and the gateway's memory stays modest.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { WorkflowDag, WorkflowRun } from '@af-gateway/schemas';
import { basic, client, request, runEnded, SINGLE_USER, startTestGateway, waitForRun, type TestGateway } from '../support/gateway.js';

type ErrorBody = { error: string; code: string; details?: { path: string; file?: string; message: string }[] };

let gw: TestGateway;
const mallory = () => client(gw, basic('mallory'), { timeoutMs: 20_000 });

async function post<T>(path: string, body: unknown, user = 'mallory'): Promise<{ status: number; body: T; ms: number }> {
  const r = await client(gw, basic(user), { timeoutMs: 30_000 }).post(`/api/af/workflows${path}`, body);
  return { status: r.status, body: r.json as T, ms: r.ms };
}

/** Submits a bundle as mallory and follows its run until it ends (or `withinMs` passed). */
async function runToTheEnd(files: Record<string, string>, withinMs: number, pollMs: number): Promise<WorkflowDag> {
  const r = await post<WorkflowRun>('', { entry: 'workflow.yml', files });
  expect(r.status).toBe(201);
  const deadline = Date.now() + withinMs;
  return waitForRun(mallory(), r.body.id, { until: (d) => runEnded(d) || Date.now() > deadline, timeoutMs: withinMs + 60_000, pollMs });
}

/**
 * Runs `attack` while asking /api/health one request after another: the slowest answer (the gateway
 * runs in this process, so a blocked event loop delays it by as long) and the peak growth of rss.
 */
async function underAttack<T>(attack: () => Promise<T>): Promise<{ result: T; worstHealthMs: number; probes: number; rssGrowthMb: number }> {
  const rss0 = process.memoryUsage().rss;
  let peak = rss0;
  let worst = 0;
  let probes = 0;
  let done = false;
  const prober = (async () => {
    while (!done) {
      const t0 = performance.now();
      const res = await request(gw, 'GET', '/api/health', { timeoutMs: 20_000 });
      expect(res.status).toBe(200);
      worst = Math.max(worst, performance.now() - t0);
      probes++;
      peak = Math.max(peak, process.memoryUsage().rss);
      await sleep(50);
    }
  })();
  try {
    const result = await attack();
    return { result, worstHealthMs: worst, probes, rssGrowthMb: (peak - rss0) / 1e6 };
  } finally {
    done = true;
    await prober;
  }
}

const step = (publisher = '{publisher_type: constant-pub, publish: {}}') =>
  `{process: {process_type: string-interpolated-cmd, cmd: 'true'}, publisher: ${publisher}, environment: {environment_type: localproc-env}}`;

/** The stage gen after init: one step that publishes the YAML mapping entries `publish`. */
const genStage = (publish: string) => `  - name: gen
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      step: ${step(`{publisher_type: constant-pub, publish: {${publish}}}`)}
`;

/** A zip stage of `steps` steps over i, each also given gen's published list many (the same value for all). */
const fanStage = (name: string, steps: number) => `  - name: ${name}
    dependencies: [gen]
    scheduler:
      scheduler_type: multistep-stage
      parameters: {i: ${JSON.stringify(Array.from({ length: steps }, (_, i) => i))}, shared: {stages: gen, output: many, unwrap: true}}
      scatter: {method: zip, parameters: [i]}
      step: ${step()}
`;

/**
 * The gateway stayed responsive under the attack (no health probe took 3 s: a liveness bound, generous
 * because a loaded 2-core machine stalled a probe 1.9 s once; an attack that blocks the loop takes far
 * longer) and grew by less than 300 MB; logged for the record.
 */
function expectStayedHealthy(m: { worstHealthMs: number; rssGrowthMb: number }, more: Record<string, unknown> = {}): void {
  console.log(expect.getState().currentTestName, { ...more, ...m });
  expect(m.worstHealthMs).toBeLessThan(3000);
  expect(m.rssGrowthMb).toBeLessThan(300);
}

/** A cartesian stage over four parameters a, b, c, d. */
const cartesianStage = (name: string, deps: string, params: string) => `  - name: ${name}
    dependencies: [${deps}]
    scheduler:
      scheduler_type: multistep-stage
      parameters: {${params}}
      scatter: {method: cartesian, parameters: [a, b, c, d]}
      step: ${step()}
`;

const sixty = Array.from({ length: 60 }, (_, i) => i);

beforeAll(async () => {
  gw = await startTestGateway({ ...SINGLE_USER, auth: { type: 'simple' }, workflows: { poll_period: 0.2 } }, { prefix: 'af-wf-hostile-' });
  // A warm gateway (route code compiled), as it is after its first minutes of service.
  const warm = await post<{ valid: boolean }>('/validate', {
    entry: 'w.yml',
    files: { 'w.yml': `stages:\n  - name: s\n    dependencies: [init]\n    scheduler: {scheduler_type: singlestep-stage, step: ${step()}}\n` },
  });
  expect(warm.body.valid).toBe(true);
});

afterAll(async () => {
  await gw?.close();
});

describe('hostile workflow bundles', () => {
  it('refuses a 1 KB $ref fan-out (8 refs per level, 7 levels: 2 million copies) at once, naming the limit and where', async () => {
    const files: Record<string, string> = { 'workflow.yml': `stages:\n  - name: bomb\n    dependencies: [init]\n    scheduler: {$ref: 'l0.yml'}\n` };
    for (let d = 0; d < 7; d++) files[`l${d}.yml`] = JSON.stringify({ x: Array.from({ length: 8 }, () => ({ $ref: `l${d + 1}.yml` })) });
    files['l7.yml'] = JSON.stringify({ s: 'x'.repeat(64) });
    expect(JSON.stringify(files).length).toBeLessThan(2048);

    const { result: r, worstHealthMs, rssGrowthMb } = await underAttack(() => post<ErrorBody>('', { entry: 'workflow.yml', files }));
    expect(r.status).toBe(422);
    expect(r.body.code).toBe('invalid_workflow');
    expect(r.body.details).toHaveLength(1);
    expect(r.body.details![0]!.message).toMatch(/more than 1,000 \$refs/);
    expect(r.body.details![0]!.path).toMatch(/^\$\.stages\[0\]\.scheduler\.x\[0\]/);
    expect(r.body.details![0]!.file).toMatch(/^l\d\.yml$/);
    expect(r.ms).toBeLessThan(2000);
    expectStayedHealthy({ worstHealthMs, rssGrowthMb }, { ms: (r as { ms?: number }).ms });

    // The check route says the same (it shares the loader).
    const v = await post<{ valid: boolean; errors: { message: string }[] }>('/validate', { entry: 'workflow.yml', files });
    expect([v.status, v.body.valid]).toEqual([200, false]);
    expect(v.body.errors[0]!.message).toMatch(/more than 1,000 \$refs/);
  }, 30_000);

  it('refuses a $ref fan-out of large values by the values it would make', async () => {
    const files: Record<string, string> = {
      'workflow.yml': `stages:\n  - name: bomb\n    dependencies: [init]\n    scheduler: {$ref: 'wide.yml'}\n`,
      'wide.yml': JSON.stringify({ x: Array.from({ length: 200 }, () => ({ $ref: 'list.yml' })) }),
      'list.yml': JSON.stringify(Array.from({ length: 5000 }, (_, i) => i)),
    };
    const { result: r, worstHealthMs, rssGrowthMb } = await underAttack(() => post<ErrorBody>('', { entry: 'workflow.yml', files }));
    expect(r.status).toBe(422);
    expect(r.body.details![0]).toMatchObject({ file: 'list.yml', message: expect.stringMatching(/more than 100,000 values/) });
    expectStayedHealthy({ worstHealthMs, rssGrowthMb }, { ms: (r as { ms?: number }).ms });
  }, 30_000);

  it('reads a 0.9 MB YAML mapping (quadratic in the yaml library: about a minute) off the event loop and gives up in bounded time', async () => {
    const files = { 'workflow.yml': Array.from({ length: 60_000 }, (_, i) => `k${i}: v${i}`).join('\n') };
    // three at once from one user: two are read (in two workers, beside the event loop), the third waits its turn no more
    const {
      result: all,
      worstHealthMs,
      rssGrowthMb,
    } = await underAttack(() => Promise.all([1, 2, 3].map(() => post<ErrorBody>('', { entry: 'workflow.yml', files }))));
    const r = all.find((x) => x.status === 422)!;
    expect(all.map((x) => x.status).sort()).toEqual([422, 422, 429]);
    expect(all.find((x) => x.status === 429)!.body).toMatchObject({
      code: 'too_many_requests',
      error: 'User mallory has 2 workflow bundles being read already; wait for them to finish',
    });
    expect(r.body.error).toMatch(/could not be read within 5 s/);
    expect(Math.max(...all.map((x) => x.ms))).toBeLessThan(10_000);
    expectStayedHealthy({ worstHealthMs, rssGrowthMb }, { ms: (r as { ms?: number }).ms });
  }, 30_000);

  it('refuses at submission a cartesian scatter over 4 lists of 60 (12,960,000 steps), by arithmetic, and makes nothing', async () => {
    const files = {
      'workflow.yml': `stages:\n${cartesianStage('bomb', 'init', ['a', 'b', 'c', 'd'].map((p) => `${p}: {stages: init, output: ${p}, unwrap: true}`).join(', '))}`,
    };
    const before = (await mallory().get('/api/af/workflows')).json as { runs: WorkflowRun[] };
    const {
      result: r,
      worstHealthMs,
      rssGrowthMb,
    } = await underAttack(() => post<ErrorBody>('', { entry: 'workflow.yml', files, parameters: { a: sixty, b: sixty, c: sixty, d: sixty } }));
    expect(r.status).toBe(422);
    expect(r.body.code).toBe('invalid_workflow');
    expect(r.body.details).toEqual([
      {
        path: '$.stages[0].scheduler.scatter',
        message: 'a cartesian scatter over 4 lists of 60 (a, b, c, d) makes 12,960,000 steps; workflows.max_steps is 20,000',
      },
    ]);
    expect(r.body.error).toContain('12,960,000 steps');
    expect(r.ms).toBeLessThan(2000);
    expectStayedHealthy({ worstHealthMs, rssGrowthMb }, { ms: (r as { ms?: number }).ms });

    // literal lists in the spec are sized the same way
    const literal = {
      'workflow.yml': `stages:\n${cartesianStage('bomb', 'init', ['a', 'b', 'c', 'd'].map((p) => `${p}: ${JSON.stringify(sixty)}`).join(', '))}`,
    };
    const l = await post<ErrorBody>('', { entry: 'workflow.yml', files: literal });
    expect(l.status).toBe(422);
    expect(l.body.details![0]!.message).toContain('makes 12,960,000 steps');
    // batches are cut from each list before the product (yadage's order): 30 batches of 2 per list make 30^4 steps
    const batched = { 'workflow.yml': literal['workflow.yml'].replace('scatter: {method: cartesian', 'batchsize: 2\n      scatter: {method: cartesian') };
    const b = await post<ErrorBody>('', { entry: 'workflow.yml', files: batched });
    expect(b.status).toBe(422);
    expect(b.body.details![0]!.message).toBe(
      'a cartesian scatter over 4 lists of 60 (a, b, c, d) in batches of 2 makes 810,000 steps; workflows.max_steps is 20,000',
    );
    const checked = await post<{ valid: boolean; errors: { path: string; message: string }[] }>('/validate', { entry: 'workflow.yml', files: literal });
    expect([checked.status, checked.body.valid, checked.body.errors[0]?.message]).toEqual([
      200,
      false,
      'a cartesian scatter over 4 lists of 60 (a, b, c, d) makes 12,960,000 steps; workflows.max_steps is 20,000',
    ]);
    const after = (await mallory().get('/api/af/workflows')).json as { runs: WorkflowRun[] };
    expect(after.runs.length).toBe(before.runs.length);
  }, 30_000);

  it.each([
    {
      what: 'a stage whose 19,000 steps would each hold a 200 KB list an earlier step published (3.8 GB), without building them',
      publish: `many: ${JSON.stringify(Array.from({ length: 2000 }, (_, i) => `${i}`.padStart(100, 'x')))}`,
      stage: fanStage('fan', 19_000),
      failed: 'fan',
      message: 'its 19,000 steps would hold more than 8 MiB of parameters together (a value every step gets counts in each); pass big lists in a file',
    },
    {
      what: 'a stage that scatters over 4 lists of 60 an earlier step published, without building them',
      publish: ['a', 'b', 'c', 'd'].map((p) => `${p}: ${JSON.stringify(sixty)}`).join(', '),
      stage: cartesianStage('bomb', 'gen', ['a', 'b', 'c', 'd'].map((p) => `${p}: {stages: gen, output: ${p}, unwrap: true}`).join(', ')),
      failed: 'bomb',
      message: 'a cartesian scatter over 4 lists of 60 (a, b, c, d) makes 12,960,000 steps; this run may have 19,999 more (workflows.max_steps is 20,000)',
    },
  ])(
    'fails at run time $what',
    async ({ publish, stage, failed, message }) => {
      const files = { 'workflow.yml': `stages:\n${genStage(publish)}${stage}` };
      const { result: dag, worstHealthMs, rssGrowthMb } = await underAttack(() => runToTheEnd(files, 20_000, 100));
      expect(dag.run.status).toBe('FAILED');
      expect(dag.stages.find((s) => s.name === failed)).toMatchObject({ state: 'FAILED', message });
      expect(dag.nodes.map((n) => n.id)).toEqual(['init', 'gen']);
      expectStayedHealthy({ worstHealthMs, rssGrowthMb });
    },
    40_000,
  );

  it('fails at run time the stages that would take a run past 16 MiB of parameters, though each stage alone stays under 8 MiB', async () => {
    const big = JSON.stringify(Array.from({ length: 4000 }, (_, i) => `${i}`.padStart(100, 'x')));
    const files = {
      'workflow.yml': `stages:
${genStage(`many: ${big}`)}${['f1', 'f2', 'f3', 'f4', 'f5'].map((name) => fanStage(name, 19)).join('')}`,
    };
    const { result: dag, worstHealthMs, rssGrowthMb } = await underAttack(() => runToTheEnd(files, 30_000, 200));
    expect(dag.run.status).toBe('FAILED');
    expect(dag.stages.filter((s) => s.state === 'APPLIED').map((s) => s.name)).toEqual(['init', 'gen', 'f1', 'f2']);
    expect(dag.stages.find((s) => s.name === 'f3')).toMatchObject({
      state: 'FAILED',
      message: expect.stringMatching(
        /^its 19 steps would hold more than \d\.\d MiB of parameters, what this run's steps may still hold \(16 MiB in all\); pass big lists in a file$/,
      ),
    });
    expectStayedHealthy({ worstHealthMs, rssGrowthMb });
  }, 60_000);

  it('refuses bundle file names that cannot all be kept (a file and a directory of one name) with a 422, leaving nothing', async () => {
    const files = {
      'w.yml': `stages:\n  - name: s\n    dependencies: [init]\n    scheduler: {scheduler_type: singlestep-stage, step: ${step()}}\n`,
      a: 'x',
      'a/b': 'y',
    };
    const workspaces = () => readdirSync(join(gw.dataDir, 'workflows')).length;
    const before = workspaces();
    const r = await post<ErrorBody>('', { entry: 'w.yml', files });
    expect([r.status, r.body.code]).toEqual([422, 'bad_file_name']);
    expect(r.body.error).toContain('"a/b" cannot be kept with the bundle\'s other files');
    const escape = await post<ErrorBody>('', { entry: 'w.yml', files: { ...files, a: undefined, 'a/b': undefined, '../../x': 'z' } });
    expect([escape.status, escape.body.code]).toEqual([422, 'bad_file_name']);
    const runs = (await mallory().get('/api/af/workflows')).json as { runs: WorkflowRun[] };
    expect(runs.runs.filter((x) => x.entry === 'w.yml')).toEqual([]);
    expect(workspaces()).toBe(before);
  });

  it('refuses init parameters nested 100,000 deep (JSON.parse takes them; every JSON.stringify of the run overflowed the stack) with a 422, leaving nothing', async () => {
    const workspaces = () => readdirSync(join(gw.dataDir, 'workflows')).length;
    const before = workspaces();
    const files = {
      'deep.yml': `stages:\n  - name: s\n    dependencies: [init]\n    scheduler: {scheduler_type: singlestep-stage, parameters: {x: {step: init, output: x}}, step: ${step()}}\n`,
    };
    for (const x of ['['.repeat(100_000) + ']'.repeat(100_000), '{"a":'.repeat(100_000) + '1' + '}'.repeat(100_000)]) {
      const body = `{"entry":"deep.yml","files":${JSON.stringify(files)},"parameters":{"x":${x}}}`;
      const send = (path: string) => client(gw, basic('mallory'), { timeoutMs: 10_000 }).post(`/api/af/workflows${path}`, body);
      const r = await send('');
      const refused = r.json as ErrorBody;
      expect([r.status, refused.code]).toEqual([422, 'invalid_parameters']);
      expect(refused.error).toMatch(/parameters\.x nests objects and lists more than 64 deep/);
      const v = (await send('/validate')).json as { valid: boolean; errors: { path: string; message: string }[] };
      expect(v.valid).toBe(false);
      expect(v.errors[0]!.message).toMatch(/parameters\.x nests objects and lists more than 64 deep/);
    }
    const runs = (await mallory().get('/api/af/workflows')).json as { runs: WorkflowRun[] };
    expect(runs.runs.filter((x) => x.entry === 'deep.yml')).toEqual([]);
    expect(workspaces()).toBe(before);
  });
});
