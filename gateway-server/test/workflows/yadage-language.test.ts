// Parts of yadage's language beyond stages and steps, run for real on the local backend: registered
// values read with fromvalue, the steps alias, steps that only publish, expressions_fulfilled
// dependencies (a stage never applied when they are empty, as yadage leaves it), batches and parts
// cut from each scattered list before they are combined, and one-level flattening.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { WorkflowDag, WorkflowRun } from '@af-gateway/schemas';
import { basic, client, runEnded, SINGLE_USER, startTestGateway, waitForRun, type TestGateway } from '../support/gateway.js';

let gw: TestGateway;
let dataDir: string;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'af-yl-'));
  gw = await startTestGateway({ ...SINGLE_USER, workflows: { poll_period: 0.2 } }, { dataDir });
});

afterAll(async () => {
  await gw?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

/** Submits one workflow file and waits for the run to end. */
async function run(workflow: string, parameters: Record<string, unknown> = {}): Promise<WorkflowDag> {
  const alice = client(gw, basic('alice'));
  const r = await alice.post('/api/af/workflows', { entry: 'workflow.yml', files: { 'workflow.yml': workflow }, parameters });
  expect(r.status, JSON.stringify(r.json)).toBe(201);
  return waitForRun(alice, (r.body as WorkflowRun).id, { until: runEnded, timeoutMs: 60_000 });
}

const node = (dag: WorkflowDag, id: string) => dag.nodes.find((n) => n.id === id)!;

const shell = (cmd: string) => `{process: {process_type: string-interpolated-cmd, cmd: ${JSON.stringify(cmd)}}, environment: {environment_type: localproc-env}`;

describe('yadage language on the local backend', () => {
  it('reads a registered value with fromvalue, evaluated when it is read (HELLO WORLD, not the expression pasted as JSON)', async () => {
    const dag = await run(
      `stages:
  - name: hello
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      parameters:
        msg: {stages: init, output: msg, unwrap: true}
        outputfile: '{workdir}/hello.txt'
      register_values:
        greeting: {expression_type: stage-output-selector, stages: hello, output: output, unwrap: true}
      step: ${shell('echo {msg} > {outputfile}')}, publisher: {publisher_type: interpolated-pub, publish: {output: '{outputfile}'}}}
  - name: shout
    dependencies: [hello]
    scheduler:
      scheduler_type: singlestep-stage
      parameters:
        inputfile: {expression_type: fromvalue, key: greeting}
        outputfile: '{workdir}/world.txt'
      step: ${shell("tr '[a-z]' '[A-Z]' < {inputfile} > {outputfile}")}, publisher: {publisher_type: interpolated-pub, publish: {output: '{outputfile}'}}}
`,
      { msg: 'hello world' },
    );
    expect([dag.run.status, dag.run.message]).toEqual(['SUCCESS', '2 steps succeeded']);
    expect(node(dag, 'shout').parameters.inputfile).toBe(node(dag, 'hello').outputs.output);
    expect(readFileSync(node(dag, 'shout').outputs.output as string, 'utf8')).toBe('HELLO WORLD\n');
    expect(dag.edges).toContainEqual({ from: 'hello', to: 'shout' });
  });

  it('runs steps that only publish (process null, environment null, noop-env) without starting anything', async () => {
    const dag = await run(
      `stages:
  - name: pick
    dependencies: [init]
    scheduler:
      scheduler_type: multistep-stage
      parameters: [{key: item, value: {steps: init, output: items, unwrap: true}}]
      scatter: {method: zip, parameters: [item]}
      step: {process: null, environment: null, publisher: {publisher_type: frompar-pub, outputmap: {chosen: item, nested: {again: [item]}}}}
  - name: note
    dependencies: [pick]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {all: {steps: pick, output: chosen}}
      step:
        process: {process_type: string-interpolated-cmd, cmd: 'exit 3'}
        environment: {environment_type: noop-env}
        publisher: {publisher_type: constant-pub, publish: {said: nothing}}
`,
      { items: ['a', 'b'] },
    );
    expect([dag.run.status, dag.run.message], JSON.stringify(dag.stages)).toEqual(['SUCCESS', '3 steps succeeded']);
    expect(node(dag, 'pick:1').outputs).toEqual({ chosen: 'b', nested: { again: ['b'] } });
    expect(node(dag, 'note').parameters.all).toEqual(['a', 'b']);
    // nothing ran: no job, no exit code, no command (the noop-env's `exit 3` was not run)
    for (const id of ['pick:0', 'pick:1', 'note'])
      expect([node(dag, id).job, node(dag, id).exit_code, node(dag, id).command]).toEqual([undefined, null, undefined]);
  });

  const gated = (files: string) => `stages:
  - name: find
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {files: {stages: init, output: files, unwrap: true}}
      register_values:
        found: {stages: find, output: files, unwrap: true}
      step: {process: null, environment: null, publisher: {publisher_type: frompar-pub, outputmap: {files: files}}}
  - name: process
    dependencies: {dependency_type: expressions_fulfilled, expressions: [{expression_type: fromvalue, key: found}]}
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {files: {expression_type: fromvalue, key: found}, out: '{workdir}/n.txt'}
      step: ${shell('echo {files} | wc -w > {out}')}, publisher: {publisher_type: frompar-pub, outputmap: {count: out}}}
  - name: after
    dependencies: [process]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {n: {stages: process, output: count, unwrap: true}}
      step: {process: null, environment: null, publisher: {publisher_type: frompar-pub, outputmap: {n: n}}}
${files}`;

  it('applies an expressions_fulfilled stage once its expressions have values, and never when one is empty (the run still succeeds, as in yadage)', async () => {
    const full = await run(gated(''), { files: ['x', 'y', 'z'] });
    expect([full.run.status, full.run.message]).toEqual(['SUCCESS', '3 steps succeeded']);
    expect(readFileSync(node(full, 'process').outputs.count as string, 'utf8').trim()).toBe('3');
    expect(full.stages.find((s) => s.name === 'process')!.dependencies).toEqual(['find']);

    const empty = await run(gated(''), { files: [] });
    expect([empty.run.status, empty.run.message]).toEqual(['SUCCESS', '1 step succeeded']);
    expect(empty.nodes.map((n) => n.id)).toEqual(['init', 'find']);
    const states = Object.fromEntries(empty.stages.map((s) => [s.name, [s.state, s.message]]));
    expect(states.process).toEqual(['SKIPPED', 'not applied: expression 1 of its dependencies is empty ([])']);
    expect(states.after).toEqual(['SKIPPED', 'not applied: stage process it depends on was not applied']);
  });

  it('cuts batches and parts from each scattered list before combining them, and flattens one level', async () => {
    const dag = await run(`stages:
  - name: grid
    dependencies: [init]
    scheduler:
      scheduler_type: multistep-stage
      parameters: {a: [1, 2, 3], b: [x, y, z, w]}
      batchsize: 2
      scatter: {method: cartesian, parameters: [a, b]}
      step: {process: null, environment: null, publisher: {publisher_type: frompar-pub, outputmap: {a: a, b: b}}}
  - name: parts
    dependencies: [init]
    scheduler:
      scheduler_type: multistep-stage
      parameters: {v: [1, 2, 3, 4, 5, 6, 7]}
      partitionsize: 3
      scatter: {method: zip, parameters: [v]}
      step: {process: null, environment: null, publisher: {publisher_type: frompar-pub, outputmap: {v: v}}}
  - name: gather
    dependencies: [grid, parts]
    scheduler:
      scheduler_type: singlestep-stage
      parameters:
        flat: {stages: parts, output: v, flatten: true}
        nested: {stages: 'grid[0]', output: a}
      step: {process: null, environment: null, publisher: {publisher_type: frompar-pub, outputmap: {flat: flat, nested: nested}}}
`);
    expect(dag.run.status).toBe('SUCCESS');
    // batches of 2 of a (2) times batches of 2 of b (2): 4 steps, each with a batch of each
    const grid = dag.nodes.filter((n) => n.stage === 'grid').map((n) => [n.parameters.a, n.parameters.b]);
    expect(grid).toEqual([
      [
        [1, 2],
        ['x', 'y'],
      ],
      [
        [1, 2],
        ['z', 'w'],
      ],
      [[3], ['x', 'y']],
      [[3], ['z', 'w']],
    ]);
    // 7 items in 3 parts: 2, 2, 3 (yadage's cut)
    expect(dag.nodes.filter((n) => n.stage === 'parts').map((n) => n.parameters.v)).toEqual([
      [1, 2],
      [3, 4],
      [5, 6, 7],
    ]);
    expect(node(dag, 'gather').outputs).toEqual({ flat: [1, 2, 3, 4, 5, 6, 7], nested: [[1, 2]] });
  });

  it("renders values as packtivity does (Python's str(), lists as words in commands) and publishes leaf by leaf", async () => {
    const dag = await run(`stages:
  - name: write
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {flag: true, none: null, words: [a, b], nested: [[1, 2], {k: v}], out: '{workdir}/said.txt'}
      step:
        process:
          process_type: interpolated-script-cmd
          script: |
            cat > {out} <<'EOF'
            {flag} {none} {words} {nested}
            EOF
            touch {workdir}/p1.dat {workdir}/p2.dat
        environment: {environment_type: localproc-env}
        publisher:
          publisher_type: interpolated-pub
          glob: true
          relative_paths: true
          publish:
            files: ['*.dat', 'none*.txt']
            text: 'words={words}'
            one: '{out}'
`);
    expect(dag.run.status).toBe('SUCCESS');
    const w = node(dag, 'write');
    expect(readFileSync(w.parameters.out as string, 'utf8')).toBe("True None a b [1, 2] {'k': 'v'}\n");
    const dir = w.workdir!;
    // each pattern its own list of matches; one matching nothing stays as written (made absolute), as in yadage
    expect(w.outputs).toEqual({
      files: [[join(dir, 'p1.dat'), join(dir, 'p2.dat')], join(dir, 'none*.txt')],
      text: join(dir, "words=['a', 'b']"),
      one: [w.parameters.out],
    });
  });

  it('writes par_mounts from the parameters by jq where the command reads them, and publishes with fromparjq-pub and fromyaml-pub', async () => {
    const dag = await run(
      `stages:
  - name: make
    dependencies: [init]
    scheduler:
      scheduler_type: multistep-stage
      parameters: {n: {stages: init, output: ns, unwrap: true}, out: '{workdir}/n.txt'}
      scatter: {method: zip, parameters: [n]}
      step:
        process: {process_type: string-interpolated-cmd, cmd: 'echo {n} > {out}; printf "extra: [{n}, x]\\nsame: {n}\\n" > {workdir}/more.yml'}
        environment: {environment_type: localproc-env}
        publisher: {publisher_type: fromyaml-pub, yamlfile: more.yml}
  - name: gather
    dependencies: [make]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {inputs: {stages: make, output: same}, out: '{workdir}/all.txt', label: 'ünï'}
      step:
        process:
          process_type: interpolated-script-cmd
          script: |
            cat /parmounts/inputs > {out}
            cat /parmounts/label >> {out}
            echo /parmounts/inputs2 >> {out}
        environment:
          environment_type: docker-encapsulated
          image: busybox
          par_mounts:
            - {mountpath: /parmounts/inputs, jqscript: '.inputs[]'}
            - {mountpath: /parmounts/label, jqscript: '{l: .label, n: (.inputs | length)}'}
        publisher: {publisher_type: fromparjq-pub, script: '{total: (.inputs | add), file: "all.txt", none: "nothere.txt"}', relative_paths: true}
`,
      { ns: [3, 4] },
    );
    expect([dag.run.status, dag.run.message]).toEqual(['SUCCESS', '3 steps succeeded']);
    expect(node(dag, 'make:1').outputs).toEqual({ extra: [4, 'x'], same: 4 });
    const g = node(dag, 'gather');
    // one JSON value per line, as yadage's jq binding writes them; a longer path is left alone
    expect(readFileSync(join(g.workdir!, 'all.txt'), 'utf8')).toBe('3\n4{"l": "\\u00fcn\\u00ef", "n": 2}/parmounts/inputs2\n');
    expect(g.command).toContain(`cat ${join(g.workdir!, '.af', 'parmount-0')} > `);
    // the file that exists in the step's directory becomes its path; one that does not stays as written
    expect(g.outputs).toEqual({ total: 7, file: join(g.workdir!, 'all.txt'), none: 'nothere.txt' });
  });

  it('makes a jq-stage’s steps from its bindings: $wflowref reads steps’ results, the stepscript makes one parameter set per step', async () => {
    const dag = await run(
      `stages:
  - name: map
    dependencies: [init]
    scheduler:
      scheduler_type: multistep-stage
      parameters: {x: {stages: init, output: xs, unwrap: true}}
      scatter: {method: zip, parameters: [x]}
      step: {process: null, environment: null, publisher: {publisher_type: frompar-pub, outputmap: {value: x, pair: [x, x]}}}
  - name: pick
    dependencies: [map]
    scheduler:
      scheduler_type: jq-stage
      bindings:
        values: {$wflowref: ['.map[]', '.value']}
        total: 3
      stepscript: '.total as $n | [.values[] | .[0]] | map({v: ., n: $n, out: "{workdir}/v.txt"})'
      postscript: '. + {tag: "post"}'
      step:
        process: {process_type: string-interpolated-cmd, cmd: 'echo {v} {tag} > {out}'}
        environment: {environment_type: localproc-env}
        publisher: {publisher_type: frompar-pub, outputmap: {file: out, v: v}}
`.replace('$$n', '.total'),
      { xs: [5, 7] },
    );
    expect([dag.run.status, dag.run.message]).toEqual(['SUCCESS', '4 steps succeeded']);
    expect(dag.nodes.filter((n) => n.stage === 'pick').map((n) => [n.id, n.parameters])).toEqual([
      ['pick:0', { v: 5, n: 3, out: join(dag.run.workspace, 'pick', '0', 'v.txt'), tag: 'post' }],
      ['pick:1', { v: 7, n: 3, out: join(dag.run.workspace, 'pick', '1', 'v.txt'), tag: 'post' }],
    ]);
    expect(readFileSync(node(dag, 'pick:1').outputs.file as string, 'utf8')).toBe('7 post\n');
    // a value read through a pointer keeps its edge to the step it came from
    expect(dag.edges).toContainEqual({ from: 'map:1', to: 'pick:1' });
  });

  it('refuses at submission a jq script that does not compile, naming where it is', async () => {
    const alice = client(gw, basic('alice'));
    const r = await alice.post('/api/af/workflows/validate', {
      entry: 'workflow.yml',
      files: {
        'workflow.yml': `stages:
  - name: pick
    dependencies: [init]
    scheduler: {scheduler_type: jq-stage, bindings: {}, stepscript: '[.a | nosuch(1)]', step: {process: null, environment: null, publisher: {publisher_type: fromparjq-pub, script: '{a: .}'}}}
`,
      },
    });
    expect((r.json as { errors: { path: string; message: string }[] }).errors.map((e) => `${e.path}: ${e.message}`)).toEqual([
      '$.stages[0].scheduler.stepscript: jq script "[.a | nosuch(1)]" does not compile: nosuch/1 is not defined at <top-level>, line 1',
    ]);
  });

  it('keeps a parameter named __proto__ like any other (list form, command, outputs)', async () => {
    const dag = await run(`stages:
  - name: odd
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: [{key: __proto__, value: kept}, {key: out, value: '{workdir}/p.txt'}]
      step:
        process: {process_type: string-interpolated-cmd, cmd: 'echo {__proto__} > {out}'}
        environment: {environment_type: localproc-env}
        publisher: {publisher_type: frompar-pub, outputmap: {p: __proto__, nested: {__proto__: __proto__}}}
`);
    expect(dag.run.status).toBe('SUCCESS');
    const odd = node(dag, 'odd');
    expect(Object.keys(odd.parameters)).toEqual(['__proto__', 'out']);
    expect(readFileSync(odd.parameters.out as string, 'utf8')).toBe('kept\n');
    expect(JSON.stringify(odd.outputs)).toBe('{"p":"kept","nested":{"__proto__":"kept"}}');
  });

  it('fails a stage whose registered values name each other in a loop, saying so', async () => {
    const dag = await run(`stages:
  - name: a
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      register_values: {x: {expression_type: fromvalue, key: y}, y: {expression_type: fromvalue, key: x}}
      step: {process: null, environment: null, publisher: {publisher_type: constant-pub, publish: {}}}
  - name: b
    dependencies: [a]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {v: {expression_type: fromvalue, key: x}}
      step: {process: null, environment: null, publisher: {publisher_type: frompar-pub, outputmap: {v: v}}}
`);
    expect(dag.run.status).toBe('FAILED');
    expect(dag.run.message).toMatch(/^stage b failed: parameter v: value [xy]: registered values name each other more than 16 deep \(a loop\?\)$/);
  });

  it('refuses at submission a fromvalue nobody registers, or registered by a stage this one does not wait for', async () => {
    const alice = client(gw, basic('alice'));
    const wf = (deps: string) => `stages:
  - name: a
    dependencies: [init]
    scheduler: {scheduler_type: singlestep-stage, register_values: {x: 1}, step: {process: null, environment: null, publisher: {publisher_type: constant-pub, publish: {}}}}
  - name: b
    dependencies: ${deps}
    scheduler: {scheduler_type: singlestep-stage, parameters: {v: {expression_type: fromvalue, key: x}, w: {expression_type: fromvalue, key: nope}}, step: {process: null, environment: null, publisher: {publisher_type: constant-pub, publish: {}}}}
`;
    const r = await alice.post('/api/af/workflows/validate', { entry: 'workflow.yml', files: { 'workflow.yml': wf('[init]') } });
    expect((r.json as { errors: { path: string; message: string }[] }).errors.map((e) => `${e.path}: ${e.message}`)).toEqual([
      "$.stages[1].scheduler.parameters.v: reads the value x, registered by stage a, which is not among this stage's dependencies",
      '$.stages[1].scheduler.parameters.w: reads the value nope, which no stage registers (register_values)',
    ]);
  });
});
