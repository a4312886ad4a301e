// A run's input data attacked by mallory, who submits what she likes and whose steps fill their own
// directories with what she likes (trees, 99,000 files, FIFOs, links swapped while the gateway
// looks). The inits' lookups must stay in their one directory, never follow a link, and cost the
// gateway bounded work however many strings and patterns she sends; the submission route must read
// only what it took before runs carried data, beside the files, and nest subinits no deeper than its
// validator can walk; the data survive a gateway restart mid-run. Each attack that found a weakness
// is kept as its regression (the figures before the mend are in the comments).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { WorkflowDag, WorkflowRun } from '@af-gateway/schemas';
import { basic, client, runEnded, SINGLE_USER, startTestGateway, waitForRun, type Reply, type TestGateway } from '../support/gateway.js';

let gw: TestGateway;
const as = (user: string) => client(gw, basic(user), { timeoutMs: 60_000 });
const mallory = () => as('mallory');

beforeAll(async () => {
  gw = await startTestGateway({ ...SINGLE_USER, auth: { type: 'simple' }, workflows: { poll_period: 0.2 } }, { prefix: 'af-wf-hrd-' });
});

afterAll(async () => {
  await gw?.close();
});

const EMPTY = { 'workflow.yml': 'stages: []\n' };

const submit = (body: Record<string, unknown>, user = 'mallory'): Promise<Reply> => as(user).post('/api/af/workflows', { entry: 'workflow.yml', ...body });

async function runToEnd(body: Record<string, unknown>, timeoutMs = 60_000): Promise<WorkflowDag> {
  const r = await submit(body);
  expect(r.status, r.text.slice(0, 500)).toBe(201);
  return waitForRun(mallory(), (r.json as unknown as WorkflowRun).id, { until: runEnded, timeoutMs, pollMs: 100 });
}

const node = (dag: WorkflowDag, id: string) => {
  const n = dag.nodes.find((x) => x.id === id);
  if (!n) throw new Error(`no node ${id} among ${dag.nodes.map((x) => x.id).join(', ')}`);
  return n;
};
const stage = (dag: WorkflowDag, name: string) => dag.stages.find((s) => s.name === name);

const runDirs = () => {
  const root = join(gw.dataDir, 'workflows');
  return new Set(existsSync(root) ? readdirSync(root) : []);
};

/** A step running `script` (shell, {…} interpolated) that publishes its directory as `dir`. */
const step = (script: string) => `
      step:
        process: {process_type: interpolated-script-cmd, script: ${JSON.stringify(script)}}
        environment: {environment_type: localproc-env}
        publisher: {publisher_type: frompar-pub, outputmap: {dir: dir}}`;

/** A stage starting an empty subworkflow whose init reads `params` in the one directory its values came from: maker's. */
const lookStage = (name: string, params: Record<string, unknown>, after = ['maker']) => `
  - name: ${name}
    dependencies: ${JSON.stringify(after)}
    scheduler:
      scheduler_type: singlestep-stage
      parameters: ${JSON.stringify({ from: { stages: 'maker', output: 'dir', unwrap: true }, ...params })}
      workflow: {stages: []}
      workflow_opts: {discover: true}`;

/** `maker` runs `script` in its directory, then the look stages' inits search that directory. */
const makerThen = (script: string, ...stages: string[]) => ({
  files: {
    'workflow.yml': `stages:
  - name: maker
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {dir: '{workdir}'}${step(`cd {workdir} && ${script}`)}
${stages.join('\n')}
`,
  },
});

describe("the inits' lookups cost bounded work", () => {
  it("matches a submission's 1,000 costly patterns within one budget: a 422 in about a second, the event loop never held long", async () => {
    // Before: each of 1,000 patterns spent its own 20M match steps on names like these, 203 s of the
    // event loop (in 0.4 s pieces) for one 800 KB submission; now the init's patterns share 40M.
    const files: Record<string, string> = {};
    for (let i = 0; i < 1000; i++) files[`init/${'a'.repeat(200)}${i}`] = 'x';
    const parameters: Record<string, string> = {};
    for (let i = 0; i < 1000; i++) parameters[`p${i}`] = `*${'a'.repeat(500)}{0..255}Z${'#'.repeat(i % 7)}`;
    const before = runDirs();
    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    const r = await submit({ files: EMPTY, parameters, data: { files } });
    delay.disable();
    expect(r.status, r.text.slice(0, 300)).toBe(422);
    expect((r.json as { error: string }).error).toMatch(/^the workflow's init: its patterns would take more than 40,000,000 match steps together \(at \*a+/);
    expect(r.ms).toBeLessThan(15_000);
    expect(delay.max / 1e6).toBeLessThan(1000);
    expect(runDirs()).toEqual(before);
  });

  it('still matches 1,000 simple patterns over 1,000 data files, each to its file', async () => {
    const files: Record<string, string> = {};
    const parameters: Record<string, string> = {};
    for (let i = 0; i < 1000; i++) {
      files[`init/f${String(i).padStart(4, '0')}.txt`] = String(i);
      parameters[`p${i}`] = `f${String(i).padStart(4, '0')}.t?t`;
    }
    const r = await submit({ files: EMPTY, parameters, data: { files } });
    expect(r.status, r.text.slice(0, 300)).toBe(201);
    const dag = await waitForRun(mallory(), (r.json as unknown as WorkflowRun).id, { until: runEnded, pollMs: 100 });
    const outputs = node(dag, 'init').outputs;
    expect(outputs.p7).toEqual([join(dag.run.workspace!, '.af/data/init/f0007.txt')]);
    expect(Object.values(outputs).every((v) => Array.isArray(v) && v.length === 1)).toBe(true);
  });

  it("lists a step's directory of 99,000 files for one stage's patterns within one budget", async () => {
    // Before: each pattern listed all 99,000 entries (0.14 s each, the event loop busy): 100 patterns
    // took 13.7 s, and a stage may hold 1,000. Now a stage's patterns look at 1,000,000 entries together.
    const pats = Array.from({ length: 20 }, (_, i) => `f*Q${i}`);
    const dag = await runToEnd(makerThen('seq -f f%g 99000 | xargs touch', lookStage('look', { pats })));
    expect(dag.run.status).toBe('FAILED');
    expect(stage(dag, 'look')?.message).toMatch(
      /^the init of subworkflow look\[0\]: its patterns would look at more than 1,000,000 directory entries together \(at f\*Q1\d\); pass fewer or simpler patterns$/,
    );
    const maker = node(dag, 'maker');
    expect(dag.run.finished! - maker.finished!).toBeLessThan(10_000);
  });

  it('walks a looked-up name at most 32 directories deep (and 4,096 characters long), and a stage opens at most 50,000 entries looking names up', async () => {
    // Before: each name was walked from the workspace, whole, twice: 450 names 1,000 directories deep
    // (a tree mallory's step made) kept the gateway opening directories for 91 s.
    const deep = `${'a/'.repeat(40)}x`;
    const fits = `${'a/'.repeat(31)}y`;
    // (and one past PATH_MAX is not split and joined at all: 900 KB of 'a/a/…' took 0.3 s of the event loop)
    const long = `${'./'.repeat(2100)}a`;
    const flood = Array.from({ length: 1600 }, (_, i) => `${'a/'.repeat(31)}n${i}`);
    const dag = await runToEnd(
      makerThen(
        'for i in $(seq 40); do mkdir a && cd a; done; touch x; cd $(printf "../%.0s" $(seq 9)) && touch y',
        lookStage('look', { deep, fits, long }),
        lookStage('flood', { flood }),
      ),
    );
    const dir = node(dag, 'maker').workdir!;
    expect(readdirSync(join(dir, 'a/'.repeat(40)))).toEqual(['x']);
    // a name deeper than any data file stays the string it was, though it names a file
    expect(node(dag, 'look[0].init').outputs).toMatchObject({ deep, fits: join(dir, fits), long });
    expect(stage(dag, 'flood')?.message).toBe(
      'the init of subworkflow flood[0]: its init would open more than 50,000 files and directories looking up names in its data; pass fewer names',
    );
  });

  it('looks FIFOs up without waiting for a writer', async () => {
    const params = { a: 'fifo', b: 'fifo/x', c: 'fif?', d: 'd/p', e: 'd/*' };
    const dag = await runToEnd(makerThen('mkfifo fifo && mkdir d && mkfifo d/p', lookStage('look', params)), 20_000);
    expect(dag.run.status, dag.run.message).toBe('SUCCESS');
    // a FIFO is neither a file nor a directory: each stays the string it was
    expect(node(dag, 'look[0].init').outputs).toMatchObject(params);
  });
});

describe("the inits' lookups stay in their directory", () => {
  it('never finds a name through a link swapped in while the init searches', async () => {
    // `swap` turns d into a link to / and back, thousands of times, while look's init looks up
    // d/etc/passwd 2,000 times and globs' matches d/* 200 times: walked by descriptor without
    // following links, d/etc/passwd is never found, and a glob meeting the link says so.
    const swap = `cd {from} && end=$(( $(date +%s) + 6 )); while [ $(date +%s) -lt $end ]; do mv d d.real; ln -s / d; sleep 0.002; rm d; mv d.real d; done`;
    const dag = await runToEnd(
      makerThen(
        'mkdir d && echo x > d/x.txt',
        `  - name: swap
    dependencies: [maker]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {from: {stages: maker, output: dir, unwrap: true}, dir: '{workdir}'}${step(swap)}
  - name: pause
    dependencies: [maker]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {dir: '{workdir}'}${step('sleep 1.5')}`,
        lookStage('look', { passwd: Array(2000).fill('d/etc/passwd'), x: Array(2000).fill('d/x.txt') }, ['maker', 'pause']),
        lookStage('globs', { g: Array(200).fill('d/*') }, ['maker', 'pause']),
      ),
    );
    const dir = node(dag, 'maker').workdir!;
    const swapNode = node(dag, 'swap');
    const look = node(dag, 'look[0].init');
    // the lookups ran while the links were being swapped
    expect(look.started!).toBeGreaterThan(swapNode.started!);
    expect(look.started!).toBeLessThan(swapNode.finished!);
    expect(new Set(look.outputs.passwd as string[])).toEqual(new Set(['d/etc/passwd']));
    for (const v of new Set(look.outputs.x as string[])) expect(['d/x.txt', join(dir, 'd/x.txt')]).toContain(v);
    // (d was a link, or between its two lives, for some of the lookups: the race was run)
    expect((look.outputs.x as string[]).filter((v) => v === 'd/x.txt').length).toBeGreaterThan(0);
    const globs = stage(dag, 'globs')!;
    if (globs.state === 'FAILED') expect(globs.message).toMatch(/^the init of subworkflow globs\[0\]: the glob d\/\* meets d, a symbolic link/);
    else
      for (const v of (node(dag, 'globs[0].init').outputs.g as unknown[]).map((g) => JSON.stringify(g)))
        expect(['"d/*"', JSON.stringify([join(dir, 'd/x.txt')])]).toContain(v);
  });

  it("keeps alice's run out of reach of mallory's lookups and data directories", async () => {
    const alice = await submit({ files: EMPTY, data: { files: { 'init/secret.txt': 'alice\n' } } }, 'alice');
    expect(alice.status).toBe(201);
    const aliceRun = alice.json as unknown as WorkflowRun;
    const aliceData = join(aliceRun.workspace!, '.af/data/init');
    // strings naming her data (absolute, or climbing out of mallory's run) stay as written, patterns match nothing
    const parameters = {
      abs: `${aliceData}/secret.txt`,
      absglob: `${aliceData}/*`,
      up: `../../../../${aliceRun.id}/.af/data/init/secret.txt`,
      upglob: `../../../../${aliceRun.id}/.af/data/init/*`,
    };
    const r = await submit({ files: EMPTY, parameters, data: { files: { 'init/mine.txt': 'm' } } });
    expect(r.status, r.text).toBe(201);
    const dag = await waitForRun(mallory(), (r.json as unknown as WorkflowRun).id, { until: runEnded, pollMs: 100 });
    expect(node(dag, 'init').outputs).toEqual(parameters);
    // a data directory outside her run is refused
    for (const data of [{ initdir: `../../${aliceRun.id}/.af/data/init` }, { subinits: { s: aliceData } }, { subinits: { s: { _data: '../x' } } }]) {
      const refused = await submit({ files: EMPTY, data: { files: { 'init/mine.txt': 'm' }, ...data } });
      expect(refused.status).toBe(422);
      expect((refused.json as { error: string }).error).toMatch(/is not a relative path inside the run's data/);
    }
    // a link her step plants to alice's data is not followed: the name stays, the pattern fails its stage
    const linked = await runToEnd(makerThen(`ln -s ${aliceData} peek`, lookStage('look', { f: 'peek/secret.txt' }), lookStage('globs', { g: 'peek/*' })));
    expect(node(linked, 'look[0].init').outputs.f).toBe('peek/secret.txt');
    expect(stage(linked, 'globs')?.message).toMatch(/the glob peek\/\* meets peek, a symbolic link/);
  });

  it('finds subinits by their own keys only: stages named constructor and toString get no inherited directory', async () => {
    const sub = (name: string) => `
  - name: ${name}
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {f: f.txt}
      workflow: {stages: []}`;
    const dag = await runToEnd({
      files: { 'workflow.yml': `stages:${sub('constructor')}${sub('toString')}${sub('hasOwnProperty')}\n` },
      data: { files: { 'sig/f.txt': 'x' }, subinits: { constructor: 'sig' } },
    });
    expect(dag.run.status, dag.run.message).toBe('SUCCESS');
    expect(node(dag, 'constructor[0].init').outputs.f).toBe(join(dag.run.workspace!, '.af/data/sig/f.txt'));
    expect(node(dag, 'toString[0].init').outputs.f).toBe('f.txt');
    expect(node(dag, 'hasOwnProperty[0].init').outputs.f).toBe('f.txt');
  });
});

describe('what a submission may carry', () => {
  it('keeps each data file at its own path, and refuses names that collide, climb or cannot be made, leaving nothing', async () => {
    const nfc = 'caf\u00e9.txt';
    const nfd = 'cafe\u0301.txt';
    const dag = await runToEnd({
      files: EMPTY,
      parameters: { nfc, nfd, upper: 'A.txt', dots: '..x' },
      data: { files: { [`init/${nfc}`]: 'nfc', [`init/${nfd}`]: 'nfd', 'init/A.txt': 'A', 'init/a.txt': 'a', 'init/..x': 'dots' } },
    });
    const data = join(dag.run.workspace!, '.af/data/init');
    expect(node(dag, 'init').outputs).toEqual({ nfc: join(data, nfc), nfd: join(data, nfd), upper: join(data, 'A.txt'), dots: join(data, '..x') });
    expect([nfc, nfd, 'A.txt', 'a.txt', '..x'].map((f) => readFileSync(join(data, f), 'utf8'))).toEqual(['nfc', 'nfd', 'A', 'a', 'dots']);

    const before = runDirs();
    const refused: [Record<string, unknown>, RegExp][] = [
      [{ files: { 'a/b': 'x', 'a/./b': 'y' } }, /"a\/b" cannot be kept with the run's other files \(EEXIST\)/],
      [{ files: { a: 'x', 'a/': 'y' } }, /"a" cannot be kept with the run's other files/],
      [{ files: { 'a/b': 'x', a: 'y' } }, /"a" cannot be kept with the run's other files/],
      [{ files: { 'x\\y': 'x' } }, /is not a relative path inside the run's data/],
      [{ files: { 'x\0y': 'x' } }, /is not a relative path inside the run's data/],
      [{ files: { [`${'n'.repeat(256)}`]: 'x' } }, /cannot be kept with the run's other files \(ENAMETOOLONG\)/],
      [{ files: { [`${'d'.repeat(200)}/`.repeat(31) + 'f']: 'x' } }, /cannot be kept with the run's other files \(ENAMETOOLONG\)/],
      [{ files: { [`${'d/'.repeat(32)}f`]: 'x' } }, /is not a relative path inside the run's data/],
      // Before: a 70 KB submission of 1,000 files each 31 new directories deep made 31,000 of them (6.3 s)
      [{ files: Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`${i}/${'b/'.repeat(30)}f`, 'x'])) }, /make more than 1,000 directories/],
    ];
    for (const [d, message] of refused) {
      const r = await submit({ files: EMPTY, data: d });
      expect(r.status, `${JSON.stringify(d).slice(0, 100)}: ${r.text.slice(0, 300)}`).toBe(422);
      expect((r.json as { error: string }).error).toMatch(message);
    }
    expect(runDirs()).toEqual(before);
  });

  it('refuses prototype keys, and subinits nested past 16 levels before the validator recurses into them (never a 500)', async () => {
    const post = (path: string, text: string) => mallory().call('POST', `/api/af/workflows${path}`, text);
    const body = (subinits: string) => `{"entry":"workflow.yml","files":${JSON.stringify(EMPTY)},"data":{"files":{"a":"x"},"subinits":${subinits}}}`;
    for (const sub of ['{"__proto__":"x"}', '{"s":{"__proto__":{"_data":"x"}}}', '{"constructor":{"prototype":"x"}}']) {
      const r = await post('', body(sub));
      expect(r.status, r.text).toBe(400);
    }
    // Before: 100,000 nested objects (500 KB) overflowed the schema validator's stack, a 500 on both routes
    for (const depth of [17, 100_000]) {
      for (const path of ['', '/validate']) {
        const r = await post(path, body(`${'{"a":'.repeat(depth)}"x"${'}'.repeat(depth)}`));
        expect(r.status, `${path} ${depth}: ${r.text.slice(0, 200)}`).toBe(422);
        expect((r.json as { error: string }).error).toBe('data.subinits: subinits nest more than 16 levels');
      }
    }
  });

  it('takes the room above 1 MiB for data files only: a bigger bundle, parameters or subinits are a 413', async () => {
    // Before: the raised limit took 11 MiB of parameters (kept in the run's record, written with each
    // of its saves and sent in every view of the run) and 3 MB bundles, where 1 MiB was the bound.
    const before = runDirs();
    const manyDirs = Object.fromEntries(Array.from({ length: 600 }, (_, i) => [`s${i}`, 'd'.repeat(1000)]));
    const tooBig: Record<string, unknown>[] = [
      { files: EMPTY, parameters: { big: 'p'.repeat(3 << 20) } },
      { files: EMPTY, parameters: { big: Array(600_000).fill(1) }, data: { files: { a: 'x' } } },
      { files: { ...EMPTY, 'a.yml': 'x'.repeat(900_000), 'b.yml': 'x'.repeat(900_000) } },
      { files: EMPTY, data: { files: { a: 'x' }, subinits: { a: manyDirs, b: manyDirs } } },
    ];
    for (const body of tooBig) {
      const r = await submit(body);
      expect(r.status, r.text.slice(0, 300)).toBe(413);
      expect((r.json as { error: string }).error).toMatch(/^The submission without data\.files is more than 1 MiB/);
    }
    expect(runDirs()).toEqual(before);
    // 8 MiB of files beside a small bundle still go
    const ok = await submit({ files: EMPTY, data: { files: { 'init/big': { base64: Buffer.alloc(8 * 1024 * 1024 - 16, 1).toString('base64') } } } });
    expect(ok.status, ok.text.slice(0, 300)).toBe(201);
  });

  it("reads two of a user's big submissions at once and refuses more before reading them; other users and later submissions go", async () => {
    // Before: each 12 MiB body was read and parsed whatever else the user was sending; 100 of
    // mallory's at once grew the gateway by 420 MB (17 MB each).
    const big = JSON.stringify({
      entry: 'workflow.yml',
      files: EMPTY,
      data: { files: { 'init/big': { base64: Buffer.alloc(2 << 20, 2).toString('base64') } } },
    });
    const slow = Array.from({ length: 2 }, () => {
      const req = http.request(`${gw.url}/api/af/workflows`, {
        method: 'POST',
        headers: { ...basic('mallory'), 'content-type': 'application/json', 'content-length': String(big.length) },
      });
      req.on('error', () => undefined);
      req.write(big.slice(0, 1000)); // and no more, for now
      return req;
    });
    try {
      await sleep(500);
      const third = await mallory().call('POST', '/api/af/workflows', big);
      expect(third.status, third.text.slice(0, 200)).toBe(429);
      expect((third.json as { error: string }).error).toBe(
        'User mallory is sending 2 runs with data already; send the next when one of them has been answered',
      );
      expect((await as('bob').call('POST', '/api/af/workflows', big)).status).toBe(201);
      // a small submission is not held back
      expect((await submit({ files: EMPTY })).status).toBe(201);
    } finally {
      for (const req of slow) req.destroy();
    }
    // aborted uploads give their place back
    let status = 0;
    for (let i = 0; i < 50 && status !== 201; i++) {
      await sleep(100);
      status = (await mallory().call('POST', '/api/af/workflows', big)).status;
    }
    expect(status).toBe(201);
    const twice = await Promise.all([0, 1].map(() => mallory().call('POST', '/api/af/workflows', big)));
    expect(twice.map((r) => r.status)).toEqual([201, 201]);
  });
});

describe('a run with data across a gateway restart', () => {
  it("finds subworkflows' files by the subinits and read directories it kept", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'af-wf-hrd-restart-'));
    const start = () =>
      startTestGateway({ ...SINGLE_USER, auth: { type: 'simple' }, workflows: { poll_period: 0.2 }, cluster: { stop_on_shutdown: false } }, { dataDir });
    let g = await start();
    try {
      const api = () => client(g, basic('mallory'), { timeoutMs: 30_000 });
      const r = await api().post('/api/af/workflows', {
        entry: 'workflow.yml',
        files: {
          'workflow.yml': `stages:
  - name: outer
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {f: a.txt}
      workflow: {$ref: outer.yml}
  - name: late
    dependencies: [outer]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {x: f.txt}
      workflow: {stages: []}
`,
          'outer.yml': `stages:
  - name: wait
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      step:
        process: {process_type: string-interpolated-cmd, cmd: 'sleep 3'}
        environment: {environment_type: localproc-env}
        publisher: {publisher_type: constant-pub, publish: {}}
  - name: inner
    dependencies: [wait]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {g: {stages: init, output: f, unwrap: true}, h: b.txt}
      workflow: {stages: []}
`,
        },
        data: { files: { 'pts/a.txt': 'a', 'pts/b.txt': 'b', 'sig/f.txt': 'f' }, subinits: { outer: 'pts', late: 'sig' } },
      });
      expect(r.status, r.text).toBe(201);
      const id = (r.json as unknown as WorkflowRun).id;
      await waitForRun(api(), id, { until: (d) => d.nodes.some((n) => n.id === 'outer[0].wait' && n.state === 'RUNNING'), timeoutMs: 20_000, pollMs: 100 });
      await g.close(); // the step goes on without the gateway
      await sleep(300);
      g = await start();
      const dag = await waitForRun(api(), id, { until: runEnded, timeoutMs: 30_000, pollMs: 100 });
      expect(dag.run.status, dag.run.message).toBe('SUCCESS');
      const data = join(dag.run.workspace!, '.af/data');
      // inner's values came from outer's init, which read pts (NodeRecord.readdirs, kept); late's subinit is sig (RunRecord.data, kept)
      expect(node(dag, 'outer[0].inner[0].init').outputs).toEqual({ g: join(data, 'pts/a.txt'), h: join(data, 'pts/b.txt') });
      expect(node(dag, 'late[0].init').outputs).toEqual({ x: join(data, 'sig/f.txt') });
    } finally {
      await g.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 60_000);
});
