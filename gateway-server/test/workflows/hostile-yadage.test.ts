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
  it('refuses a par_mount of megabytes of non-ASCII text before escaping it on the event loop', async () => {
    // jq makes 4 MB of 'é' (in its worker); escaped as Python's json.dumps writes it, 24 MB, built on
    // the event loop (0.85 s) for each step before the 1 MiB of par_mounts refused it
    const files = {
      'workflow.yml': `stages:
  - name: mount
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      step:
        process: {process_type: string-interpolated-cmd, cmd: 'cat /m'}
        environment: {environment_type: docker-encapsulated, image: busybox, par_mounts: [{mountpath: /m, jqscript: '"é" * 4000000'}]}
        publisher: {publisher_type: constant-pub, publish: {}}
`,
    };
    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    const dag = await runToEnd('mallory', files);
    delay.disable();
    expect(dag.run.message).toBe('stage mount failed: its par_mounts would hold more than 1,048,576 characters; pass big lists in a file');
    expect(delay.max / 1e6).toBeLessThan(400);
  });

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

describe('publishers reading what a step wrote (held)', () => {
  const publishing = (cmd: string, publisher: string) => ({
    'workflow.yml': `stages:
  - name: plant
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      step:
        process: {process_type: string-interpolated-cmd, cmd: ${JSON.stringify(cmd)}}
        environment: {environment_type: localproc-env}
        publisher: ${publisher}
`,
  });
  const failure = (dag: WorkflowDag) => dag.nodes.find((n) => n.id === 'plant')!;

  it('fromyaml-pub reads only a plain file in the step’s directory, and refuses YAML bombs', async () => {
    const cases: [string, string, RegExp][] = [
      ['true', '../../../../etc/passwd', /yamlfile \.\.\/\.\.\/\.\.\/\.\.\/etc\/passwd is not inside the step's directory/],
      ['true', '/etc/passwd', /yamlfile \/etc\/passwd is not inside the step's directory/],
      ['ln -s /etc/passwd {workdir}/out.yml', 'out.yml', /refused to use .*out\.yml: it is a symbolic link/],
      ['ln -s /etc {workdir}/sub', 'sub/passwd', /refused to use .*sub: (a symbolic link is on its way|something on its way is not a directory)/],
      [
        'ln /etc/passwd {workdir}/out.yml 2>/dev/null || ln -s /etc/passwd {workdir}/out.yml',
        'out.yml',
        /refused to use .*out\.yml: it (has other names|is a symbolic link)/,
      ],
      // a billion laughs by aliases, and by merge keys
      [
        `printf 'a: &a [x, x, x, x, x, x, x, x, x, x]\\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\\ne: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\\n' > {workdir}/out.yml`,
        'out.yml',
        /publisher: out\.yml is not valid YAML or JSON: Excessive alias count/,
      ],
      [
        `(echo 'a0: &a0 {{k0: 1, k1: 1, k2: 1, k3: 1, k4: 1, k5: 1, k6: 1, k7: 1}}'; for i in $(seq 1 30); do echo "a$i: &a$i {{<<: *a$((i-1)), z$i: *a$((i-1))}}"; done) > {workdir}/out.yml`,
        'out.yml',
        /publisher: out\.yml (is not valid YAML or JSON: Excessive alias count|is too large to be a workflow)/,
      ],
    ];
    for (const [cmd, yamlfile, message] of cases) {
      const t0 = performance.now();
      const dag = await runToEnd('mallory', publishing(cmd, `{publisher_type: fromyaml-pub, yamlfile: ${JSON.stringify(yamlfile)}}`));
      expect(dag.run.status, cmd).toBe('FAILED');
      expect(failure(dag).message, cmd).toMatch(message);
      expect(failure(dag).outputs).toEqual({});
      expect(JSON.stringify(dag), cmd).not.toMatch(/root:x:0/);
      expect(performance.now() - t0).toBeLessThan(10_000);
    }
  }, 120_000);

  it('fromparjq-pub turns into paths only plain files of the step’s directory, and globs nothing outside it', async () => {
    const dag = await runToEnd(
      'mallory',
      publishing(
        'ln -s /etc/passwd {workdir}/link && mkdir {workdir}/d && ln -s /etc {workdir}/d/etc && touch {workdir}/own',
        `{publisher_type: fromparjq-pub, relative_paths: true, script: '{a: "/etc/passwd", b: "../../../../../etc/passwd", c: "link", d: "d/etc/passwd", e: "own"}'}`,
      ),
    );
    expect(dag.run.status).toBe('SUCCESS');
    // what exists outside (or behind a link) is left as written, exactly as what does not
    expect(failure(dag).outputs).toEqual({ a: '/etc/passwd', b: '../../../../../etc/passwd', c: 'link', d: 'd/etc/passwd', e: `${failure(dag).workdir}/own` });
    const globbed = await runToEnd('mallory', publishing('true', `{publisher_type: fromparjq-pub, glob: true, script: '{a: "/etc/*"}'}`));
    expect(globbed.run.status).toBe('FAILED');
    expect(failure(globbed).message).toMatch(/publisher: the glob \/etc\/\* is outside the step's directory/);
  });
});

describe('other runs, seen from mallory’s (held)', () => {
  it('gives bob’s runs and nodes away through no id, selector or pointer', async () => {
    const bobs = await runToEnd('bob', BOB);
    expect(bobs.run.status).toBe('SUCCESS');
    const bobNode = bobs.nodes.find((n) => n.stage === 'pick')!.id;
    // the API: his run, his node's log, his files
    for (const path of [`/${bobs.run.id}`, `/${bobs.run.id}/nodes/${bobNode}/log`, `/${bobs.run.id}/files/pick/0/.af/log`])
      expect((await mallory().get(`/api/af/workflows${path}`)).status, path).toBe(404);
    // a jq-stage pointing at his node (by its id) or selecting it
    const pointing = (stepscript: string, bindings = '{}') => ({
      'workflow.yml': `stages:
  - name: mine
    dependencies: [init]
    scheduler: {scheduler_type: singlestep-stage, step: {process: null, environment: null, publisher: {publisher_type: constant-pub, publish: {x: 1}}}}
  - name: steal
    dependencies: [mine]
    scheduler:
      scheduler_type: jq-stage
      bindings: ${bindings}
      stepscript: '${stepscript}'
      step: {process: null, environment: null, publisher: {publisher_type: frompar-pub, outputmap: {got: got}}}
`,
    });
    const attempts: [Record<string, string>, RegExp][] = [
      [pointing(`[{got: {"$wflowpointer": {step: "${bobNode}", result: "/x"}}}]`), /stepscript item 0: a \$wflowpointer names no step of this scope/],
      [pointing(`[{got: {"$wflowpointer": {step: "mine", result: "/__proto__"}}}]`), /stepscript item 0: step mine has nothing at \/__proto__/],
      [
        pointing('[{got: .v}]', `{v: {$wflowref: ['[{_nodeid: "${bobNode}"}]', '.']}}`),
        new RegExp(`bindings: \\$wflowref selected ${bobNode}, which is not a step of this scope`),
      ],
    ];
    for (const [files, message] of attempts) {
      const dag = await runToEnd('mallory', files);
      expect(dag.run.status).toBe('FAILED');
      expect(dag.run.message).toMatch(message);
    }
    // a selector naming a scope of a stage that made none, or another run's stage
    const r = await mallory().post('/api/af/workflows/validate', {
      entry: 'workflow.yml',
      files: {
        'workflow.yml': `stages:\n  - name: x\n    dependencies: [init]\n    scheduler: {scheduler_type: singlestep-stage, parameters: {v: {stages: 'pick[0].x', output: x}}, step: ${NOOP}}\n`,
      },
    });
    expect((r.json as Problems).valid).toBe(false);
  });
});

describe('strict validation of hostile shapes (held)', () => {
  it('answers 422 (never 500) for every shape the walk before the schema might trip over', async () => {
    const step = NOOP;
    const stage = (scheduler: string, deps = '[init]') => `stages:\n  - name: a\n    dependencies: ${deps}\n    scheduler: ${scheduler}\n`;
    const bundles = [
      'stages: {a: 1}',
      'stages: [null, 1, "x", []]',
      '[1, 2]',
      '"just a string"',
      'stages:\n  - {name: "a[0].b", dependencies: [init], scheduler: {scheduler_type: singlestep-stage, step: ' + step + '}}',
      'stages:\n  - {name: "../x", dependencies: [init], scheduler: {scheduler_type: singlestep-stage, step: ' + step + '}}',
      stage(`{scheduler_type: singlestep-stage, parameters: [null, 1, {key: 1, value: 2}, {key: a}], step: ${step}}`),
      stage(`{scheduler_type: singlestep-stage, cases: {a: 1}}`),
      stage(`{scheduler_type: singlestep-stage, cases: [null, 1, {if: 5}, {if: '.', step: 1, workflow: 2}]}`),
      stage(`{scheduler_type: singlestep-stage, workflow: {stages: [null, {scheduler: 1}, {name: b, scheduler: {cases: 7}}]}}`),
      stage(`{scheduler_type: singlestep-stage, register_values: [1], step: ${step}}`),
      stage(`{scheduler_type: jq-stage, bindings: 1, stepscript: 2, postscript: [], step: ${step}}`),
      stage(
        `{scheduler_type: singlestep-stage, step: {process: {process_type: string-interpolated-cmd, cmd: 'x /m'}, environment: {environment_type: docker-encapsulated, image: i, par_mounts: [{mountpath: '/m; rm -rf ~', jqscript: '.'}]}, publisher: {publisher_type: constant-pub, publish: {}}}}`,
      ),
      stage(
        `{scheduler_type: singlestep-stage, step: {process: {process_type: string-interpolated-cmd, cmd: x}, environment: {environment_type: docker-encapsulated, image: i, par_mounts: {a: 1}}, publisher: {publisher_type: fromparjq-pub, script: 3}}}`,
      ),
      stage(
        `{scheduler_type: singlestep-stage, step: ${step}}`,
        '{dependency_type: expressions_fulfilled, expressions: [null, 5, {expression_type: fromvalue}, {stages: 7}]}',
      ),
      stage(`{scheduler_type: singlestep-stage, parameters: {x: {stages: [1, null], output: {}}}, step: ${step}}`),
      stage(`{scheduler_type: multistep-stage, parameters: {x: [1]}, scatter: {method: zip, parameters: x}, step: ${step}}`),
      stage(
        `{scheduler_type: singlestep-stage, step: {process: {process_type: string-interpolated-cmd, cmd: '{x[0].__proto__}'}, environment: null, publisher: {publisher_type: constant-pub, publish: {}}}}`,
      ),
      // a subworkflow that is the workflow itself ($ref recursion)
      stage(`{scheduler_type: singlestep-stage, workflow: {$ref: 'workflow.yml'}}`),
    ];
    for (const text of bundles) {
      for (const path of ['/api/af/workflows/validate', '/api/af/workflows']) {
        const r = await mallory().post(path, { entry: 'workflow.yml', files: { 'workflow.yml': text } });
        if (path.endsWith('validate')) {
          expect(r.status, text).toBe(200);
          expect((r.json as Problems).valid, text).toBe(false);
        } else expect(r.status, text).toBe(422);
      }
    }
  });
});

describe('a jq-stage made to expand on the gateway', () => {
  /** The peak growth of this process's memory (the gateway runs in it) while `f` runs. */
  async function peakGrowthMb<T>(f: () => Promise<T>): Promise<{ result: T; mb: number }> {
    const rss0 = process.memoryUsage().rss;
    let peak = rss0;
    const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 10);
    try {
      return { result: await f(), mb: (peak - rss0) / 1e6 };
    } finally {
      clearInterval(timer);
    }
  }
  const jqStage = (before: string, scheduler: string) => ({
    'workflow.yml': `stages:
  - name: map
    dependencies: [init]
    scheduler: {scheduler_type: singlestep-stage, parameters: {big: {stages: init, output: big, unwrap: true}}, step: {process: null, environment: null, publisher: {publisher_type: frompar-pub, outputmap: {big: big}}}}
  - name: pick
    dependencies: [map]
    scheduler:
      scheduler_type: jq-stage
${before}      ${scheduler}
      step: ${NOOP}
`,
  });

  it('weighs each item, each $wflowref result and what each item’s pointers read as they are made, not after 400 MB of them', async () => {
    const big = 'b'.repeat(1_000_000);
    const attempts: [Record<string, string>, RegExp][] = [
      // a postscript making 4 MB of each of 300 items (1.2 GB before the stage's 8 MiB were checked: 456 MB measured with 100)
      [
        jqStage(`      bindings: {}\n      stepscript: '[range(300) | {i: .}]'\n      postscript: '. + {pad: ("x" * 4000000)}'\n`, ''),
        /^stage pick failed: its steps would hold more than 8 MiB of parameters \(item 3 of the stepscript's 300 passed it\)$/,
      ],
      // a selector naming one step 300 times, its result script making 4 MB each (830 MB measured with 100 before jq refused the stepscript's input)
      [
        jqStage(`      bindings: {v: {$wflowref: ['[range(300) | {_nodeid: "map"}]', '"x" * 4000000']}}\n      stepscript: '[{a: 1}]'\n`, ''),
        /^stage pick failed: bindings: what the \$wflowrefs read would be more than 8 MiB, more than the stepscript reads$/,
      ],
      // 100,000 pointers to the same 1 MB result in one item: 100 GB as the postscript's JSON input
      [
        jqStage(`      bindings: {}\n      stepscript: '[{all: [range(100000) | {"$wflowpointer": {step: "map", result: "/big"}}]}]'\n`, ''),
        /^stage pick failed: stepscript item 0: what its \$wflowpointers read would be more than 8 MiB, more than the postscript reads$/,
      ],
    ];
    for (const [files, message] of attempts) {
      const t0 = performance.now();
      const { result: dag, mb } = await peakGrowthMb(() => runToEnd('mallory', files, { big }));
      expect(dag.run.status).toBe('FAILED');
      expect(dag.run.message).toMatch(message);
      // (jq's workers live in this process too: the one of mallory's share may grow its 256 MB of WebAssembly memory)
      expect(mb, dag.run.message).toBeLessThan(450);
      expect(performance.now() - t0).toBeLessThan(15_000);
    }
  }, 120_000);
});

describe('subworkflows multiplied (held)', () => {
  it('fails a run whose nested scatters of subworkflows would pass workflows.max_steps, before making the stages past it', async () => {
    // 200 subworkflows each scattering 196 more: 39,200 scopes
    const files = {
      'workflow.yml': `stages:
  - name: outer
    dependencies: [init]
    scheduler:
      scheduler_type: multistep-stage
      parameters: {i: {stages: init, output: is, unwrap: true}}
      scatter: {method: zip, parameters: [i]}
      workflow:
        stages:
          - name: inner
            dependencies: [init]
            scheduler:
              scheduler_type: multistep-stage
              parameters: {j: {stages: init, output: i, unwrap: true}, k: {stages: init, output: i, unwrap: true}}
              scatter: {method: cartesian, parameters: [j, k]}
              workflow: {stages: [{name: leaf, dependencies: [init], scheduler: {scheduler_type: singlestep-stage, step: ${NOOP}}}]}
`,
    };
    const is = Array.from({ length: 200 }, (_, i) => Array.from({ length: 14 }, (_, j) => i * 14 + j));
    const dag = await runToEnd('mallory', files, { is }, 120_000);
    expect(dag.run.status).toBe('FAILED');
    expect(dag.run.message).toMatch(/subworkflows would bring the run to [\d,]+ stages; workflows.max_steps \(20,000\) bounds stages too/);
    expect(dag.stages.length).toBeLessThanOrEqual(20_000);
    expect(dag.nodes.length).toBeLessThanOrEqual(20_000);
  }, 180_000);
});

describe('parameters gathering from thousands of steps', () => {
  it('counts what all of a stage’s parameters gather together, before gathering it', async () => {
    // 400 parameters each naming a 10,000-step map stage ten times: each gathered 100,000 values (its
    // own limit) before the stage's parameters were weighed; 3.3 GB and 23 s of a blocked event loop
    const params = Array.from({ length: 400 }, (_, i) => `p${i}: {stages: [map, map, map, map, map, map, map, map, map, map], output: x}`).join(', ');
    const files = {
      'workflow.yml': `stages:
  - name: map
    dependencies: [init]
    scheduler: {scheduler_type: multistep-stage, parameters: {x: {stages: init, output: xs, unwrap: true}}, scatter: {method: zip, parameters: [x]}, step: {process: null, environment: null, publisher: {publisher_type: frompar-pub, outputmap: {x: x}}}}
  - name: gather
    dependencies: [map]
    scheduler: {scheduler_type: singlestep-stage, parameters: {${params}}, step: ${NOOP}}
`,
    };
    const rss0 = process.memoryUsage().rss;
    let peak = rss0;
    const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 10);
    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    const dag = await runToEnd('mallory', files, { xs: Array.from({ length: 10_000 }, (_, i) => i) }, 120_000);
    delay.disable();
    clearInterval(timer);
    expect(dag.run.message).toBe(
      "stage gather failed: parameter p2: the stage's parameters gather more than 200,000 values from earlier steps together; pass big lists in a file",
    );
    expect(delay.max / 1e6).toBeLessThan(1_500);
    expect((peak - rss0) / 1e6).toBeLessThan(500);
  }, 180_000);
});
