// Subworkflows and cases, run for real on the local backend: a stage running a workflow makes a scope
// per item (`nested[0]`) whose stages live under scoped names, nested scopes, selectors into them
// (`nested[0].output`, `map[*].count`), values a subworkflow registered, and cases chosen by jq.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { WorkflowDag, WorkflowRun } from '@af-gateway/schemas';
import { basic, client, runEnded, SINGLE_USER, startTestGateway, waitForRun, type TestGateway } from '../support/gateway.js';

let gw: TestGateway;
let dataDir: string;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'af-ys-'));
  gw = await startTestGateway({ ...SINGLE_USER, workflows: { poll_period: 0.2 } }, { dataDir });
});

afterAll(async () => {
  await gw?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

async function run(files: Record<string, string>, parameters: Record<string, unknown> = {}): Promise<WorkflowDag> {
  const alice = client(gw, basic('alice'));
  const r = await alice.post('/api/af/workflows', { entry: 'workflow.yml', files, parameters });
  expect(r.status, JSON.stringify(r.json)).toBe(201);
  return waitForRun(alice, (r.body as WorkflowRun).id, { until: runEnded, timeoutMs: 60_000 });
}

const node = (dag: WorkflowDag, id: string) => {
  const n = dag.nodes.find((x) => x.id === id);
  if (!n) throw new Error(`no node ${id} among ${dag.nodes.map((x) => x.id).join(', ')}`);
  return n;
};

const STEPS = `write:
  process: {process_type: string-interpolated-cmd, cmd: 'echo {text} > {out}'}
  environment: {environment_type: localproc-env}
  publisher: {publisher_type: frompar-pub, outputmap: {file: out}}
count:
  process: {process_type: interpolated-script-cmd, script: 'cat {files} | wc -l > {out}'}
  environment: {environment_type: localproc-env}
  publisher: {publisher_type: frompar-pub, outputmap: {file: out}}
`;

describe('subworkflows on the local backend', () => {
  it('runs nested subworkflows in their own scopes, with selectors into them from outside', async () => {
    const dag = await run(
      {
        'steps.yml': STEPS,
        'inner.yml': `stages:
  - name: leaf
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {text: {stages: init, output: word, unwrap: true}, out: '{workdir}/leaf.txt'}
      step: {$ref: 'steps.yml#/write'}
`,
        'middle.yml': `stages:
  - name: deeper
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {word: {stages: init, output: word, unwrap: true}}
      workflow: {$ref: inner.yml}
  - name: collect
    dependencies: [deeper]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {files: {stages: 'deeper[*].leaf', output: file}, out: '{workdir}/n.txt'}
      step: {$ref: 'steps.yml#/count'}
`,
        'workflow.yml': `stages:
  - name: nested
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {word: {stages: init, output: word, unwrap: true}}
      workflow: {$ref: middle.yml}
  - name: after
    dependencies: [nested]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {text: {stages: 'nested[0].collect', output: file, unwrap: true}, out: '{workdir}/after.txt'}
      step: {$ref: 'steps.yml#/write'}
`,
      },
      { word: 'deep' },
    );
    expect([dag.run.status, dag.run.message]).toEqual(['SUCCESS', '3 steps succeeded']);
    expect(dag.nodes.map((n) => n.id)).toEqual([
      'init',
      'nested[0].init',
      'nested[0].deeper[0].init',
      'nested[0].deeper[0].leaf',
      'nested[0].collect',
      'after',
    ]);
    const leaf = node(dag, 'nested[0].deeper[0].leaf');
    expect(leaf.workdir).toBe(join(dag.run.workspace, 'nested', '0', 'deeper', '0', 'leaf'));
    expect(node(dag, 'nested[0].deeper[0].init').workdir).toBe(join(dag.run.workspace, 'nested', '0', 'deeper', '0'));
    expect(readFileSync(leaf.outputs.file as string, 'utf8')).toBe('deep\n');
    expect(node(dag, 'nested[0].collect').parameters.files).toEqual([leaf.outputs.file]);
    expect(node(dag, 'after').parameters.text).toBe(node(dag, 'nested[0].collect').outputs.file);
    // the scopes' stages are in the DAG, each waiting on its own scope's stages
    const stages = Object.fromEntries(dag.stages.map((s) => [s.name, s.dependencies]));
    expect(stages['nested[0].collect']).toEqual(['nested[0].deeper']);
    expect(stages['nested[0].deeper[0].leaf']).toEqual(['nested[0].deeper[0].init']);
    expect(dag.edges).toContainEqual({ from: 'nested[0].deeper[0].leaf', to: 'nested[0].collect' });
  });

  it('scatters a subworkflow over a list and reads every scope, and what the scopes registered', async () => {
    const dag = await run(
      {
        'steps.yml': STEPS,
        'workflow.yml': `stages:
  - name: map
    dependencies: [init]
    scheduler:
      scheduler_type: multistep-stage
      parameters: {text: {stages: init, output: words, unwrap: true}}
      scatter: {method: zip, parameters: [text]}
      workflow:
        stages:
          - name: one
            dependencies: [init]
            scheduler:
              scheduler_type: singlestep-stage
              parameters: {text: {stages: init, output: text, unwrap: true}, out: '{workdir}/w.txt'}
              register_values: {made: {stages: one, output: file, unwrap: true}}
              step: {$ref: 'steps.yml#/write'}
  - name: reduce
    dependencies: [map]
    scheduler:
      scheduler_type: singlestep-stage
      parameters:
        files: {stages: 'map[*].one', output: file}
        registered: {stages: map, output: made}
        second: {expression_type: fromvalue, scope: 'map[1]', key: made}
        out: '{workdir}/n.txt'
      step: {$ref: 'steps.yml#/count'}
`,
      },
      { words: ['a', 'b', 'c'] },
    );
    expect([dag.run.status, dag.run.message]).toEqual(['SUCCESS', '4 steps succeeded']);
    const files = [0, 1, 2].map((i) => node(dag, `map[${i}].one`).outputs.file);
    expect(files.map((f) => readFileSync(f as string, 'utf8'))).toEqual(['a\n', 'b\n', 'c\n']);
    const reduce = node(dag, 'reduce');
    expect(reduce.parameters.files).toEqual(files);
    expect(reduce.parameters.registered).toEqual(files);
    expect(reduce.parameters.second).toBe(files[1]);
    expect(readFileSync(reduce.outputs.file as string, 'utf8').trim()).toBe('3');
  });

  const casesFlow = {
    'steps.yml': STEPS,
    'workflow.yml': `stages:
  - name: pick
    dependencies: [init]
    scheduler:
      scheduler_type: multistep-stage
      parameters: {n: {stages: init, output: ns, unwrap: true}, text: small, out: '{workdir}/out.txt'}
      scatter: {method: zip, parameters: [n]}
      cases:
        - {if: '.n < 2', step: {$ref: 'steps.yml#/write'}}
        - if: '.n >= 2 and .n < 10'
          workflow:
            stages:
              - name: big
                dependencies: [init]
                scheduler:
                  scheduler_type: singlestep-stage
                  parameters: {text: {stages: init, output: n, unwrap: true}, out: '{workdir}/big.txt'}
                  step: {$ref: 'steps.yml#/write'}
  - name: after
    dependencies: [pick]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {files: {stages: pick, output: file}, out: '{workdir}/n.txt'}
      step: {$ref: 'steps.yml#/count'}
`,
  };

  it('runs for each item the first case whose jq condition holds: a step, a subworkflow, or nothing', async () => {
    const dag = await run(casesFlow, { ns: [1, 5, 20, 0] });
    // 1 and 0 ran the step, 5 a subworkflow, 20 nothing; numbered together in the order they were made, as yadage does
    expect(dag.nodes.map((n) => n.id)).toEqual(['init', 'pick:0', 'pick:2', 'pick[1].init', 'pick[1].big']);
    expect([node(dag, 'pick:0').parameters.n, node(dag, 'pick:2').parameters.n]).toEqual([1, 0]);
    expect([node(dag, 'pick:2').workdir, node(dag, 'pick[1].big').workdir]).toEqual([
      join(dag.run.workspace, 'pick', '2'),
      join(dag.run.workspace, 'pick', '1', 'big'),
    ]);
    // which case chose each, for the DAG to show the branch taken
    expect([node(dag, 'pick:0').case, node(dag, 'pick[1].init').case]).toEqual([0, 1]);
    expect(dag.stages.find((s) => s.name === 'pick[1].big')!.scope).toBe('pick[1]');
    expect(readFileSync(node(dag, 'pick[1].big').outputs.file as string, 'utf8')).toBe('5\n');
    // a stage that made steps and subworkflows cannot be read by one selector: yadage refuses it too
    expect([dag.run.status, dag.run.message]).toEqual([
      'FAILED',
      'stage after failed: parameter files: pick: stage pick made both steps and subworkflows (its cases chose both), which one selector cannot read (yadage refuses it too)',
    ]);
    // items all on one side are read as usual
    const steps = await run(casesFlow, { ns: [1, 0] });
    expect([steps.run.status, node(steps, 'after').parameters.files]).toEqual([
      'SUCCESS',
      [node(steps, 'pick:0').outputs.file, node(steps, 'pick:1').outputs.file],
    ]);
  });

  it('skips a cases stage where no case held, and the stages after it, as yadage does', async () => {
    const dag = await run(casesFlow, { ns: [50] });
    expect([dag.run.status, dag.run.message]).toEqual(['SUCCESS', '0 steps succeeded']);
    expect(dag.stages.filter((s) => s.name !== 'init').map((s) => [s.name, s.state, s.message])).toEqual([
      ['pick', 'SKIPPED', 'no case held: nothing runs'],
      ['after', 'SKIPPED', 'not applied: stage pick it depends on was not applied'],
    ]);
  });

  it('fails the stage with jq’s own words when a condition does not compile or errs', async () => {
    const bad = { ...casesFlow, 'workflow.yml': casesFlow['workflow.yml'].replace("if: '.n < 2'", 'if: \'.n | error("no good")\'') };
    const dag = await run(bad, { ns: [1] });
    expect(dag.run.status).toBe('FAILED');
    expect(dag.run.message).toMatch(/^stage pick failed: case 1 \(if: \.n \| error\("no good"\)\): .*no good/);
  });

  it('refuses selectors that do not lead into a subworkflow, naming the part that is wrong', async () => {
    const alice = client(gw, basic('alice'));
    const files = {
      'steps.yml': STEPS,
      'workflow.yml': `stages:
  - name: plain
    dependencies: [init]
    scheduler: {scheduler_type: singlestep-stage, parameters: {text: x, out: '{workdir}/x'}, step: {$ref: 'steps.yml#/write'}}
  - name: sub
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      workflow: {stages: [{name: inner, dependencies: [init], scheduler: {scheduler_type: singlestep-stage, parameters: {text: y, out: '{workdir}/y'}, step: {$ref: 'steps.yml#/write'}}}]}
  - name: reader
    dependencies: [plain, sub]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {files: {stages: 'plain[0].inner', output: file}, b: {stages: 'sub[0].nothere', output: file}, c: {stages: 'sub[*].inner', output: file}, out: '{workdir}/z'}
      step: {$ref: 'steps.yml#/count'}
`,
    };
    const r = await alice.post('/api/af/workflows/validate', {
      entry: 'workflow.yml',
      files: { ...files, 'workflow.yml': files['workflow.yml'].replace('files}', 'files}') },
    });
    const errors = (r.json as { errors: { path: string; message: string }[] }).errors.map((e) => `${e.path}: ${e.message}`);
    expect(errors, errors.join('\n')).toEqual([
      '$.stages[2].scheduler.parameters.files: plain[0].inner: stage plain runs steps, not a subworkflow',
      '$.stages[2].scheduler.parameters.b: sub[0].nothere: the subworkflow of sub has no stage nothere',
    ]);
  });
});
