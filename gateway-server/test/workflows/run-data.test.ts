// A run's input data, run for real on the local backend: files sent with the submission are kept
// read-only under the workspace's .af/data/, the workflow's init finds its files there (a relative
// name becomes its path, a pattern its matches), subworkflows' inits find theirs in their subinit
// directories (yadage's names: a singlestep stage by name, a multistep stage's items as NAME_i) or
// in the one directory their values came from; and what a hostile user sends or plants gets a 4xx
// or stays a plain string, never a look outside the run.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { WorkflowDag, WorkflowRun } from '@af-gateway/schemas';
import { basic, client, runEnded, SINGLE_USER, startTestGateway, waitForRun, type TestGateway } from '../support/gateway.js';

let gw: TestGateway;
let dataDir: string;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'af-rd-'));
  gw = await startTestGateway({ ...SINGLE_USER, workflows: { poll_period: 0.2 } }, { dataDir });
});

afterAll(async () => {
  await gw?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

const alice = () => client(gw, basic('alice'));

async function submit(body: Record<string, unknown>) {
  return alice().post('/api/af/workflows', { entry: 'workflow.yml', ...body });
}

async function run(body: Record<string, unknown>): Promise<WorkflowDag> {
  const r = await submit(body);
  expect(r.status, JSON.stringify(r.json)).toBe(201);
  return waitForRun(alice(), (r.body as WorkflowRun).id, { until: runEnded, timeoutMs: 60_000 });
}

const node = (dag: WorkflowDag, id: string) => {
  const n = dag.nodes.find((x) => x.id === id);
  if (!n) throw new Error(`no node ${id} among ${dag.nodes.map((x) => x.id).join(', ')}`);
  return n;
};

const runDirs = () => {
  const root = join(gw.dataDir, 'workflows');
  return new Set(existsSync(root) ? readdirSync(root) : []);
};

const STEPS = `cat:
  process: {process_type: string-interpolated-cmd, cmd: 'cat {inputs} {more} > {out}'}
  environment: {environment_type: localproc-env}
  publisher: {publisher_type: frompar-pub, outputmap: {file: out}}
touch:
  process: {process_type: string-interpolated-cmd, cmd: 'echo made > {workdir}/made.txt; {extra}'}
  environment: {environment_type: localproc-env}
  publisher: {publisher_type: constant-pub, publish: {done: yes}}
`;

describe("a run's input data", () => {
  it("keeps the files read-only in the workspace; the workflow's init finds a name and a pattern there", async () => {
    const dag = await run({
      files: {
        'steps.yml': STEPS,
        'workflow.yml': `stages:
  - name: read
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {inputs: {stages: init, output: first, unwrap: true}, more: {stages: init, output: rest, unwrap: true}, out: '{workdir}/all.txt'}
      step: {$ref: 'steps.yml#/cat'}
`,
      },
      parameters: { first: 'a.txt', rest: 'more/*.dat', words: 'hello world' },
      data: {
        initdir: 'in',
        files: {
          'in/a.txt': 'alpha\n',
          'in/more/2.dat': { base64: Buffer.from('two\n').toString('base64') },
          'in/more/1.dat': 'one\n',
          'elsewhere.dat': 'no\n',
        },
      },
    });
    expect(dag.run.status, dag.run.message).toBe('SUCCESS');
    const ws = dag.run.workspace!;
    const init = node(dag, 'init');
    // a name became its path, a pattern its sorted matches, a plain string stayed
    expect(init.outputs).toEqual({
      first: join(ws, '.af/data/in/a.txt'),
      rest: [join(ws, '.af/data/in/more/1.dat'), join(ws, '.af/data/in/more/2.dat')],
      words: 'hello world',
    });
    expect(readFileSync(join(ws, 'read/all.txt'), 'utf8')).toBe('alpha\none\ntwo\n');
    expect(statSync(join(ws, '.af/data/in/more/2.dat')).mode & 0o777).toBe(0o644);
    expect(statSync(join(ws, '.af/data/in/more')).mode & 0o777).toBe(0o755);
  });

  it("finds subworkflows' files in their subinit directories, by yadage's names, and in the one directory their values came from", async () => {
    const dag = await run({
      files: {
        'steps.yml': STEPS,
        'sub.yml': `stages:
  - name: read
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {inputs: {stages: init, output: initfile, unwrap: true}, more: '', out: '{workdir}/out.txt'}
      step: {$ref: 'steps.yml#/cat'}
`,
        'outer.yml': `stages:
  - name: points
    dependencies: [init]
    scheduler:
      scheduler_type: multistep-stage
      parameters: {n: [1, 2], initfile: '*.txt'}
      scatter: {method: zip, parameters: [n]}
      workflow: {$ref: sub.yml}
      workflow_opts: {discover: true}
`,
        'workflow.yml': `stages:
  - name: single
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {initfile: 'initfile.txt'}
      workflow: {$ref: sub.yml}
  - name: grid
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {label: grid}
      workflow: {$ref: outer.yml}
  - name: maker
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {extra: 'true'}
      step: {$ref: 'steps.yml#/touch'}
  - name: after
    dependencies: [maker]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {done: {stages: maker, output: done, unwrap: true}, initfile: made.txt}
      workflow: {$ref: sub.yml}
`,
      },
      data: {
        files: {
          'sig/initfile.txt': 'signal\n',
          'pts/p0/a.txt': 'p0a\n',
          'pts/p0/b.txt': 'p0b\n',
          'pts/p1/c.txt': 'p1c\n',
        },
        subinits: { single: 'sig', grid: { points_0: 'pts/p0', points_1: { _data: 'pts/p1' } } },
      },
    });
    expect(dag.run.status, dag.run.message).toBe('SUCCESS');
    const ws = dag.run.workspace!;
    expect(node(dag, 'single[0].init').outputs).toEqual({ initfile: join(ws, '.af/data/sig/initfile.txt') });
    expect(readFileSync(join(ws, 'single/0/read/out.txt'), 'utf8')).toBe('signal\n');
    // multistep items by NAME_i, discover turning the pattern into each directory's matches
    expect(node(dag, 'grid[0].points[0].init').outputs.initfile).toEqual([join(ws, '.af/data/pts/p0/a.txt'), join(ws, '.af/data/pts/p0/b.txt')]);
    expect(readFileSync(join(ws, 'grid/0/points/0/read/out.txt'), 'utf8')).toBe('p0a\np0b\n');
    expect(readFileSync(join(ws, 'grid/0/points/1/read/out.txt'), 'utf8')).toBe('p1c\n');
    // relative (yadage's default): a name of a file in the one step its values came from becomes its path
    expect(node(dag, 'after[0].init').outputs.initfile).toBe(join(ws, 'maker/made.txt'));
    expect(readFileSync(join(ws, 'after/0/read/out.txt'), 'utf8')).toBe('made\n');
  });

  it('gives a 4xx for data outside the run, two files at one path or too many bytes, and leaves nothing behind', async () => {
    const files = { 'steps.yml': STEPS, 'workflow.yml': `stages: []\n` };
    const before = runDirs();
    const refused: [Record<string, unknown>, number, RegExp][] = [
      [{ files: { '../escape.txt': 'x' } }, 422, /data\.files: "\.\.\/escape\.txt" is not a relative path inside the run's data/],
      [{ files: { '/etc/cron.d/x': 'x' } }, 422, /is not a relative path inside the run's data/],
      [{ files: { 'a/../../x': 'x' } }, 422, /is not a relative path/],
      [{ files: { a: 'x', 'a/b': 'y' } }, 422, /"a\/b" cannot be kept with the run's other files .*give each file its own path/],
      [{ files: { a: 'x' }, initdir: '../..' }, 422, /data\.initdir: "\.\.\/\.\." is not a relative path inside the run's data/],
      [{ files: { a: 'x' }, subinits: { s: { t: '/etc' } } }, 422, /data\.subinits\.s\.t: "\/etc" is not a relative path/],
      [{ files: { a: 'x' }, subinits: { s: { _data: { deeper: 'x' } } } }, 422, /data\.subinits|subinits/],
      [{ files: { a: 'x'.repeat(5 << 20), b: 'y'.repeat(4 << 20) } }, 413, /more than 8 MiB.*belong in storage/],
      [{ files: { a: { base64: 'not base64!' } } }, 422, /data\.files\.a\.base64: must match pattern/],
    ];
    for (const [data, status, message] of refused) {
      const r = await submit({ files, data });
      expect(r.status, `${JSON.stringify(data).slice(0, 100)}: ${JSON.stringify(r.json).slice(0, 300)}`).toBe(status);
      expect((r.json as { error: string }).error, JSON.stringify(r.json)).toMatch(message);
    }
    expect(runDirs()).toEqual(before);
  });

  it("searches only the run's own files: a planted link is not followed, an absolute pattern is not matched", async () => {
    const dag = await run({
      files: {
        'steps.yml': STEPS,
        'sub.yml': `stages:
  - name: read
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {inputs: {stages: init, output: through, unwrap: true}, more: '', out: '{workdir}/out.txt'}
      step: {$ref: 'steps.yml#/cat'}
`,
        'workflow.yml': `stages:
  - name: maker
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {extra: 'ln -s / {workdir}/root'}
      step: {$ref: 'steps.yml#/touch'}
  - name: exact
    dependencies: [maker]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {done: {stages: maker, output: done, unwrap: true}, through: root/etc/hostname, absolute: '/etc/*', up: '../../*'}
      workflow: {$ref: sub.yml}
      workflow_opts: {discover: true}
  - name: globbed
    dependencies: [maker]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {done: {stages: maker, output: done, unwrap: true}, through: 'root/etc/*'}
      workflow: {$ref: sub.yml}
      workflow_opts: {discover: true}
`,
      },
      data: { files: { 'init/x.txt': 'x' } },
    });
    expect(dag.run.status).toBe('FAILED');
    // the name through the link stays a name (the step then fails on it, as a user's own mistake); absolute and climbing patterns stay as written
    expect(node(dag, 'exact[0].init').outputs).toMatchObject({ through: 'root/etc/hostname', absolute: '/etc/*', up: '../../*' });
    // a pattern that would walk into the link fails its stage, saying why
    const globbed = dag.stages.find((s) => s.name === 'globbed');
    expect(globbed?.state).toBe('FAILED');
    expect(globbed?.message).toMatch(/the init of subworkflow globbed\[0\]: .*symbolic link/);
  });
});
