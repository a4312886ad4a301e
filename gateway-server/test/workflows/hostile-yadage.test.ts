// The yadage language sent by a hostile user (mallory) to a gateway another user (bob) shares: jq
// scripts that crash jq or hog its workers, par_mounts and publishers aimed at the gateway's files
// or memory, subworkflows and selectors that reach for other runs. Each attack is refused with a
// 4xx or fails mallory's own run, with a message naming the limit, while bob's work goes on.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { WorkflowDag, WorkflowRun } from '@af-gateway/schemas';
import { basic, client, runEnded, SINGLE_USER, startTestGateway, waitForRun, type TestGateway } from '../support/gateway.js';

type Problems = { valid?: boolean; error?: string; code?: string; errors?: { path: string; message: string }[]; details?: { path: string; message: string }[] };

let gw: TestGateway;
const as = (user: string) => client(gw, basic(user), { timeoutMs: 120_000 });
const mallory = () => as('mallory');

/** Starts a run as `user` (it must be accepted) and waits for its end. */
async function runToEnd(user: string, files: Record<string, string>, parameters: Record<string, unknown> = {}, timeoutMs = 60_000): Promise<WorkflowDag> {
  const r = await as(user).post('/api/af/workflows', { entry: 'workflow.yml', files, parameters });
  expect(r.status, r.text.slice(0, 300)).toBe(201);
  return waitForRun(as(user), (r.json as unknown as WorkflowRun).id, { until: runEnded, timeoutMs, pollMs: 100 });
}

/** Bob's everyday workflow: a cases stage choosing per item by a jq condition, each chosen step publishing its item. */
const BOB = {
  'workflow.yml': `stages:
  - name: pick
    dependencies: [init]
    scheduler:
      scheduler_type: multistep-stage
      parameters: {x: [1, 2, 3]}
      scatter: {method: zip, parameters: [x]}
      cases:
        - if: '.x > 1'
          step: {process: null, environment: null, publisher: {publisher_type: frompar-pub, outputmap: {x: x}}}
`,
};

/** A step that runs nothing and publishes nothing (YAML flow). */
const NOOP = '{process: null, environment: null, publisher: {publisher_type: constant-pub, publish: {}}}';

/** A jq string of `n` interpolations: jq's compiler trips over a few thousand of them (an assertion, or memory out of bounds). */
const interpolations = (n: number) => `"${'\\(1)'.repeat(n)}"`;

beforeAll(async () => {
  // (steps that only publish start all at once: thousands of subworkflows end in seconds)
  gw = await startTestGateway(
    { ...SINGLE_USER, auth: { type: 'simple' }, workflows: { poll_period: 0.2, max_parallel_steps: 20_000 } },
    { prefix: 'af-wf-yadage-' },
  );
});

afterAll(async () => {
  await gw?.close();
});

describe('jq scripts at submission', () => {
  it('refuses with a 422 naming its path (not a 500) a script that crashes jq’s compiler', async () => {
    for (const n of [3000, 4000]) {
      const files = {
        'workflow.yml': `stages:
  - name: a
    dependencies: [init]
    scheduler: {scheduler_type: singlestep-stage, cases: [{if: '${interpolations(n)}', step: ${NOOP}}]}
`,
      };
      const v = await mallory().post('/api/af/workflows/validate', { entry: 'workflow.yml', files });
      expect(v.status, v.text.slice(0, 300)).toBe(200);
      const body = v.json as Problems;
      expect(body.valid).toBe(false);
      expect(body.errors).toEqual([
        {
          path: '$.stages[0].scheduler.cases[0].if',
          message: expect.stringMatching(/^jq script "\S+" does not compile: jq stopped on it \(RuntimeError: [ -~]+\); write it more simply$/),
        },
      ]);
      const r = await mallory().post('/api/af/workflows', { entry: 'workflow.yml', files });
      expect(r.status, r.text.slice(0, 300)).toBe(422);
      expect((r.json as Problems).details![0]!.path).toBe('$.stages[0].scheduler.cases[0].if');
    }
  });
});

describe('jq workers shared with other users', () => {
  it('keeps bob’s run going while mallory floods /validate with scripts that each take jq 2 s to compile', async () => {
    // 25 scripts of 3,000 labels: jq's compiler is quadratic in them (about 2 s each, until stopped)
    const slow = 'label $a | '.repeat(3000) + '1';
    const files = {
      'workflow.yml': `stages:
  - name: a
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      cases: [${Array.from({ length: 25 }, () => `{if: '${slow}', step: ${NOOP}}`).join(', ')}]
`,
    };
    const floods: Promise<{ status: number; body: Problems; ms: number }>[] = [];
    for (let i = 0; i < 6; i++) {
      floods.push(
        mallory()
          .post('/api/af/workflows/validate', { entry: 'workflow.yml', files })
          .then((r) => ({ status: r.status, body: r.json as Problems, ms: r.ms })),
      );
      await sleep(300); // (two bundles of hers are read at once at most; then they wait for jq)
    }
    await sleep(1000);
    const t0 = performance.now();
    const dag = await runToEnd('bob', BOB);
    const bobMs = performance.now() - t0;
    expect([dag.run.status, dag.run.message]).toEqual(['SUCCESS', '2 steps succeeded']);
    expect(dag.nodes.filter((n) => n.stage === 'pick').map((n) => n.outputs)).toEqual([{ x: 2 }, { x: 3 }]);
    // Before: bob's 4 jq calls each waited behind every script mallory had queued (6 × 2 s / 2 workers each).
    expect(bobMs).toBeLessThan(5_000);

    // Mallory's submissions are bounded too: each gives up once its scripts used its share of jq time.
    for (const f of await Promise.all(floods)) {
      expect(f.status).toBe(200);
      expect(f.body.valid).toBe(false);
      expect(f.body.errors!.at(-1)!.message).toMatch(
        /^the workflow's jq scripts took more than 5 s of jq time to compile together; refused before compiling the rest$/,
      );
    }
  }, 240_000);
});

/** A cases stage over `items` items whose condition keeps jq busy 0.2 s each (minutes in all). */
const slowCases = (items: number) => ({
  'workflow.yml': `stages:
  - name: slow
    dependencies: [init]
    scheduler:
      scheduler_type: multistep-stage
      parameters: {x: ${JSON.stringify(Array.from({ length: items }, (_, i) => i))}}
      scatter: {method: zip, parameters: [x]}
      cases: [{if: 'now as $t0 | until(now - $t0 >= 0.2; .) | true', step: ${NOOP}}]
`,
});

describe('a stage whose jq takes minutes to apply', () => {
  it('is cancelled within a jq call, not once the stage is applied', async () => {
    const r = await mallory().post('/api/af/workflows', { entry: 'workflow.yml', files: slowCases(1000) });
    expect(r.status).toBe(201);
    const id = (r.json as unknown as WorkflowRun).id;
    await sleep(1500); // the stage is being applied (200 s of conditions)
    const t0 = performance.now();
    expect((await mallory().post(`/api/af/workflows/${id}/cancel`)).status).toBe(200);
    const dag = await waitForRun(mallory(), id, { until: runEnded, timeoutMs: 10_000, pollMs: 100 });
    expect(dag.run.status).toBe('CANCELLED');
    expect(performance.now() - t0).toBeLessThan(3_000);
    expect(dag.nodes.filter((n) => n.stage === 'slow')).toEqual([]);
  });

  it('does not hold the gateway’s shutdown, and is applied again after the restart', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'af-wf-yadage-restart-'));
    const settings = { ...SINGLE_USER, auth: { type: 'simple' }, workflows: { poll_period: 0.2 } };
    try {
      const first = await startTestGateway(settings, { dataDir });
      const r = await client(first, basic('mallory')).post('/api/af/workflows', { entry: 'workflow.yml', files: slowCases(1000) });
      expect(r.status).toBe(201);
      const id = (r.json as unknown as WorkflowRun).id;
      await sleep(1500);
      const t0 = performance.now();
      await first.close();
      expect(performance.now() - t0).toBeLessThan(3_000);

      const again = await startTestGateway(settings, { dataDir });
      try {
        const dag = (await client(again, basic('mallory')).get(`/api/af/workflows/${id}`)).json as unknown as WorkflowDag;
        expect(dag.run.status).toBe('RUNNING');
        expect(dag.stages.find((s) => s.name === 'slow')!.state).toBe('WAITING'); // not failed by the shutdown
        expect((await client(again, basic('mallory')).post(`/api/af/workflows/${id}/cancel`)).status).toBe(200);
      } finally {
        await again.close();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('what a run’s steps hold', () => {
  it('bounds the commands and par_mounts a stage makes from small parameters (a template repeating one)', async () => {
    // 64 steps, each with a 1,000-character parameter (64 KB of parameters in all) that its command
    // and its par_mount repeat 500 times: 64 × 1 MB, kept per step and sent with every view of the run
    const x = 'x'.repeat(1000);
    const files = {
      'workflow.yml': `stages:
  - name: amplify
    dependencies: [init]
    scheduler:
      scheduler_type: multistep-stage
      parameters: {i: ${JSON.stringify(Array.from({ length: 64 }, (_, i) => i))}, x: {stages: init, output: x, unwrap: true}}
      scatter: {method: zip, parameters: [i]}
      step:
        process: {process_type: string-interpolated-cmd, cmd: ': ${'{x}'.repeat(500)} /m'}
        environment: {environment_type: docker-encapsulated, image: busybox, par_mounts: [{mountpath: /m, jqscript: '[range(500)] | map($x) | add', }]}
        publisher: {publisher_type: constant-pub, publish: {}}
`.replace('$x', '"' + x + '"'),
    };
    const dag = await runToEnd('mallory', files, { x });
    expect(dag.run.status).toBe('FAILED');
    expect(dag.run.message).toMatch(
      /^stage amplify failed: its steps' commands, par_mounts and parameters with \{workdir\} filled in would hold more than 32 MiB, what this run's steps may still hold \(32 MiB in all\); pass big lists in a file$/,
    );
    expect(dag.nodes.filter((n) => n.stage === 'amplify')).toEqual([]);
  });
});

describe('fromyaml-pub files read beside other users’ bundles', () => {
  it('reads mallory’s slow YAML outputs in her share of the readers: bob’s bundle is read next, not after all of them', async () => {
    // 8 steps (two runs of 4 in parallel), each publishing a 0.9 MB YAML mapping the yaml library needs its whole 5 s for
    const slowYaml = {
      'workflow.yml': `stages:
  - name: plant
    dependencies: [init]
    scheduler:
      scheduler_type: multistep-stage
      parameters: {i: [0, 1, 2, 3]}
      scatter: {method: zip, parameters: [i]}
      step:
        process: {process_type: string-interpolated-cmd, cmd: "awk 'BEGIN {{ for (i = 0; i < 60000; i++) print \\"k\\" i \\": v\\" i }}' > {workdir}/out.yml"}
        environment: {environment_type: localproc-env}
        publisher: {publisher_type: fromyaml-pub, yamlfile: out.yml}
`,
    };
    const runs = await Promise.all([1, 2].map(() => mallory().post('/api/af/workflows', { entry: 'workflow.yml', files: slowYaml })));
    expect(runs.map((r) => r.status)).toEqual([201, 201]);
    const ids = runs.map((r) => (r.json as unknown as WorkflowRun).id);
    await waitForRun(mallory(), ids[1]!, {
      until: (d) => d.nodes.filter((n) => n.stage === 'plant' && n.state !== 'DEFINED').length === 4,
      timeoutMs: 20_000,
      pollMs: 50,
    });
    await sleep(1000); // her files are being read
    // bob's bundle is over 4 KB: read in a worker too
    const padded = { 'workflow.yml': `# ${'bob '.repeat(1500)}\n${BOB['workflow.yml']}` };
    const r = await as('bob').post('/api/af/workflows', { entry: 'workflow.yml', files: padded });
    expect(r.status, r.text.slice(0, 300)).toBe(201);
    // Before: it waited for the readings of hers queued ahead of it (5 s each, two at a time: 9 s here,
    // growing with her runs); hers are read one at a time now
    expect(r.ms).toBeLessThan(3_000);
    const bobDag = await waitForRun(as('bob'), (r.json as unknown as WorkflowRun).id, { until: runEnded, timeoutMs: 30_000 });
    expect(bobDag.run.status).toBe('SUCCESS');
    for (const id of ids) {
      const dag = await waitForRun(mallory(), id, { until: runEnded, timeoutMs: 120_000 });
      expect(dag.run.status).toBe('FAILED');
      expect(dag.nodes.find((n) => n.state === 'FAILED')!.message).toMatch(/its outputs could not be published: .*could not be read within 5 s/);
    }
  }, 180_000);
});

describe('subworkflows by the thousand', () => {
  it('reads what 6,000 scopes registered, and gives a jq-stage their steps, without blocking the event loop for seconds', async () => {
    // 6,000 subworkflows (18,000 stages), then three stages reading every scope: each read walked all the
    // run's stages once per scope (10^8 steps: 2.5 s of a blocked event loop for one such stage)
    const read = (name: string) => `  - name: ${name}
    dependencies: [nested]
    scheduler: {scheduler_type: singlestep-stage, parameters: {all: {stages: nested, output: v}}, step: {process: null, environment: null, publisher: {publisher_type: constant-pub, publish: {}}}}
`;
    const files = {
      'workflow.yml': `stages:
  - name: nested
    dependencies: [init]
    scheduler:
      scheduler_type: multistep-stage
      parameters: {i: {stages: init, output: is, unwrap: true}}
      scatter: {method: zip, parameters: [i]}
      workflow:
        stages:
          - name: s1
            dependencies: [init]
            scheduler: {scheduler_type: singlestep-stage, parameters: {i: {stages: init, output: i, unwrap: true}}, register_values: {v: {stages: s1, output: i, unwrap: true}}, step: {process: null, environment: null, publisher: {publisher_type: frompar-pub, outputmap: {i: i}}}}
          - name: s2
            dependencies: [s1]
            scheduler: {scheduler_type: singlestep-stage, step: ${NOOP}}
${read('gather')}${read('again')}  - name: pick
    dependencies: [nested]
    scheduler: {scheduler_type: jq-stage, bindings: {}, stepscript: '[{a: 1}]', step: ${NOOP}}
`,
    };
    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    const dag = await runToEnd('mallory', files, { is: Array.from({ length: 6000 }, (_, i) => i) }, 120_000);
    delay.disable();
    expect([dag.run.status, dag.run.message]).toEqual(['SUCCESS', '12003 steps succeeded']);
    expect(dag.nodes.find((n) => n.id === 'gather')!.parameters.all).toEqual(Array.from({ length: 6000 }, (_, i) => i));
    expect(delay.max / 1e6).toBeLessThan(1_500);
  }, 180_000);
});

describe('the gateway’s files, seen through what a step plants', () => {
  it('tells nothing of which paths outside the workspace exist through links a step planted in its directory', async () => {
    const dag = await runToEnd('mallory', {
      'workflow.yml': `stages:
  - name: plant
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      step:
        process: {process_type: string-interpolated-cmd, cmd: 'ln -s /etc/passwd {workdir}/there && ln -s /etc/no-such-file {workdir}/nothere && ln -s /etc {workdir}/etc && echo own > {workdir}/own.txt'}
        environment: {environment_type: localproc-env}
        publisher: {publisher_type: constant-pub, publish: {}}
`,
    });
    expect(dag.run.status).toBe('SUCCESS');
    const get = (path: string) => mallory().get(`/api/af/workflows/${dag.run.id}/files/${path}`);
    expect((await get('plant/own.txt')).text).toBe('own\n');
    // Before: a link to a file that exists answered 400 ("outside the run's workspace"), one to nothing 404.
    const answers = await Promise.all(['plant/there', 'plant/nothere', 'plant/etc/passwd', 'plant/etc/no-such-file'].map(get));
    expect(answers.map((a) => a.status)).toEqual([400, 400, 400, 400]);
    expect(answers.map((a) => (a.json as { code?: string }).code)).toEqual(['not_a_file', 'not_a_file', 'not_a_file', 'not_a_file']);
    // the same answer whether the target exists or not
    const said = answers.map((a) => (a.json as { error: string }).error);
    expect(said[0]!.replaceAll('plant/there', 'NAME')).toBe(said[1]!.replaceAll('plant/nothere', 'NAME'));
    expect(said[2]!.replaceAll('passwd', 'NAME')).toBe(said[3]!.replaceAll('no-such-file', 'NAME'));
    for (const a of answers) expect(a.text).not.toMatch(/root:/);
    expect((await get('plant/no-such-file')).status).toBe(404);
    expect((await get('..%2F..%2Fetc%2Fpasswd')).status).toBe(400);
  });
});
