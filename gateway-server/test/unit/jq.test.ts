// jq for workflows (src/workflows/jq.ts): real jq 1.7 (jq-wasm) in worker threads. What the engine
// relies on: every output in order, jq's own error text, compile checks that run nothing, and bounds
// (time, sizes) that a hostile filter cannot get past, nor learn anything of the gateway through.
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// Set before the module (and so any worker) exists: a filter must never see it.
const SECRET = `jq-test-secret-${randomBytes(8).toString('hex')}`;
process.env.AF_JQ_TEST_SECRET = SECRET;
const { jq, jqFirst, jqProblem, JqError, JQ_LIMITS } = await import('../../src/workflows/jq.js');

/** The JqError a call rejects with (fails the test when it resolves or throws something else). */
async function jqError(p: Promise<unknown>): Promise<InstanceType<typeof JqError>> {
  const e = await p.then(
    (v) => new Error(`resolved with ${JSON.stringify(v)}`),
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(JqError);
  return e as InstanceType<typeof JqError>;
}

describe('outputs', () => {
  it('gives every output in order: .a[] three values, [.a[]] one array, empty none', async () => {
    const input = { a: [1, 'two', { three: 3 }] };
    expect(await jq('.a[]', input)).toEqual([1, 'two', { three: 3 }]);
    expect(await jq('[.a[]]', input)).toEqual([[1, 'two', { three: 3 }]]);
    expect(await jq('empty', input)).toEqual([]);
    expect(await jq('.', null)).toEqual([null]);
    expect(await jq('.', undefined)).toEqual([null]);
  });

  it('returns strings, numbers, null and booleans as JSON values', async () => {
    expect(await jq('"a\\nb", "é\\u2028", 1, -0.5, 1e3, null, true, false', null)).toEqual(['a\nb', 'é\u2028', 1, -0.5, 1000, null, true, false]);
    expect(await jq('.x', { x: 'text' })).toEqual(['text']);
    expect(await jq('-1', null)).toEqual([-1]); // a filter that starts with '-' is not an option
  });

  it('evaluates the filters yadage workflows use', async () => {
    const ctx = { inputs: ['a.root', 'b.root'], x: 7, values: [0, 1, 2, 3], pars: { nevents: 10, mass: 125 } };
    expect(await jq('.inputs[]', ctx)).toEqual(['a.root', 'b.root']);
    expect(await jq('{a: .x} | .a', ctx)).toEqual([7]);
    expect(await jq('.values | [.[] | select(. > 1)]', ctx)).toEqual([[2, 3]]);
    expect(await jq('.pars | to_entries', ctx)).toEqual([
      [
        { key: 'nevents', value: 10 },
        { key: 'mass', value: 125 },
      ],
    ]);
    expect(await jq('.pars.nevents > 5', ctx)).toEqual([true]);
    expect(await jq('def twice: . * 2; .values | map(twice)', ctx)).toEqual([[0, 2, 4, 6]]);
  });

  it('jqFirst takes the first output and refuses none', async () => {
    expect(await jqFirst('.a[]', { a: [5, 6] })).toBe(5);
    expect(await jqFirst('null', {})).toBeNull();
    const e = await jqError(jqFirst('.a[]', { a: [] }));
    expect(e.kind).toBe('no-output');
    expect(e.message).toBe("jq filter '.a[]' gave no output (one was needed)");
  });

  it('answers 20 concurrent calls each with its own result', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => jq('.n * 10, .tag', { n: i, tag: `call-${i}` })));
    results.forEach((r, i) => expect(r).toEqual([i * 10, `call-${i}`]));
  });
});

describe('errors', () => {
  it("reports a compile error with jq's own text and the filter", async () => {
    const syntax = await jqError(jq('.a[', {}));
    expect(syntax.kind).toBe('compile');
    expect(syntax.detail).toBe('syntax error, unexpected end of file at <top-level>, line 1');
    expect(syntax.message).toBe("jq filter '.a[' does not compile: syntax error, unexpected end of file at <top-level>, line 1");
    expect(syntax.message).not.toMatch(/Failed to execute|Unix shell|compile error$/);

    const undefinedFn = await jqError(jq('.x | foo(1)', {}));
    expect(undefinedFn.detail).toBe('foo/1 is not defined at <top-level>, line 1');
  });

  it("reports a runtime error with jq's text, even after some outputs", async () => {
    const iterate = await jqError(jq('.a[]', null));
    expect(iterate.kind).toBe('runtime');
    expect(iterate.message).toBe("jq filter '.a[]' failed: Cannot iterate over null (null)");
    const thrown = await jqError(jq('1, error("no \\(.x) here")', { x: 'muons' }));
    expect(thrown.detail).toBe('no muons here');
    const object = await jqError(jq('error({code: 3})', null));
    expect(object.detail).toBe('{"code":3}');
    // debug output is not an error, and is not mistaken for one
    expect(await jq('debug | . + 1', 1)).toEqual([2]);
    expect((await jqError(jq('debug | error("late")', 1))).detail).toBe('late');
    const halted = await jqError(jq('"stopped here\\n" | halt_error(4)', null));
    expect(halted.detail).toBe('stopped here (exit status 4)');
  });

  it("finds jq's message past a long echo of the filter or long debug output", async () => {
    const longFilter = `"${'x'.repeat(30_000)}" | .b[`; // jq echoes the 30 KB filter after its message
    expect((await jqError(jq(longFilter, {}))).detail).toBe('syntax error, unexpected end of file at <top-level>, line 1');
    expect(await jqProblem(longFilter)).toBe('syntax error, unexpected end of file at <top-level>, line 1');
    const started = performance.now();
    const noisy = await jqError(jq('[limit(100000; repeat("y"))] | debug | error("after debug")', null)); // stderr is written a few bytes at a time
    expect(noisy.detail).toBe('after debug');
    expect(performance.now() - started).toBeLessThan(1_500);
  });

  it('shortens a long filter in the message but keeps it whole on the error', async () => {
    const filter = `.a | ${'.b | '.repeat(40)}error("x")`;
    const e = await jqError(jq(filter, {}));
    expect(e.filter).toBe(filter);
    expect(e.message).toMatch(/^jq filter '\.a \| \.b \| .{60,}…' failed: x$/);
    expect(e.message.length).toBeLessThan(120);
  });

  it('jqProblem: null for good filters, jq message for bad ones, without running anything', async () => {
    for (const good of ['.', '.inputs[]', '[.[] | select(. > 1)]', 'def f: f; f', '[range(1e12)]', 'repeat(1)', '$ENV', 'input', '.a[]'])
      expect(await jqProblem(good), good).toBeNull();
    expect(await jqProblem('.a[')).toBe('syntax error, unexpected end of file at <top-level>, line 1');
    expect(await jqProblem('foo(1)')).toBe('foo/1 is not defined at <top-level>, line 1');
    expect(await jqProblem('$nope')).toBe('$nope is not defined at <top-level>, line 1');
    expect(await jqProblem('include "x"; .')).toBe('module not found: x');
    expect(await jqProblem('x'.repeat(JQ_LIMITS.filterChars + 1))).toBe('it is 65,537 characters long; at most 65,536');
  });
});

describe('bounds', () => {
  it('stops filters that loop forever within their limit; the next call works', async () => {
    for (const filter of ['def f: f; f', 'repeat(1)', '[range(1e12)]']) {
      const started = performance.now();
      const e = await jqError(jq(filter, null, { timeoutMs: 400 }));
      const took = performance.now() - started;
      expect(e.kind, filter).toBe('timeout');
      expect(e.message).toBe(`jq filter '${filter}' took longer than 0.4 s and was stopped`);
      expect(took).toBeLessThan(1_500);
      expect(await jq('.ok', { ok: filter })).toEqual([filter]);
    }
  });

  it('applies the default limit of 2 s; a stopped call fails alone', async () => {
    const started = performance.now();
    const [slow, ...quick] = await Promise.allSettled([jq('def f: f; f', null), ...Array.from({ length: 5 }, (_, i) => jq('. + 1', i))]);
    const took = performance.now() - started;
    expect(slow.status).toBe('rejected');
    expect(((slow as PromiseRejectedResult).reason as Error).message).toBe("jq filter 'def f: f; f' took longer than 2 s and was stopped");
    expect(took).toBeGreaterThanOrEqual(1_900);
    expect(took).toBeLessThan(4_000);
    expect(quick.map((r) => (r as PromiseFulfilledResult<unknown[]>).value)).toEqual([[1], [2], [3], [4], [5]]);
  });

  it('refuses an input over 8 MiB as JSON before running anything', async () => {
    const e = await jqError(jq('length', 'x'.repeat(JQ_LIMITS.inputBytes)));
    expect(e.kind).toBe('input');
    expect(e.message).toBe("The input of jq filter 'length' is 8,388,610 bytes as JSON; at most 8,388,608 (8.0 MiB)");
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    expect((await jqError(jq('.', circular))).kind).toBe('input');
  });

  it('refuses calls beyond 64 MiB of waiting input; the others all run', async () => {
    const big = 'x'.repeat(7.5 * 1024 * 1024);
    const settled = await Promise.allSettled(Array.from({ length: 12 }, () => jq('length', big, { timeoutMs: 10_000 })));
    const refused = settled.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason as InstanceType<typeof JqError>);
    const answered = settled.filter((r) => r.status === 'fulfilled').map((r) => (r as PromiseFulfilledResult<unknown[]>).value);
    expect(refused.length).toBeGreaterThanOrEqual(2); // 12 × 7.5 MiB: at most 2 running and 8 waiting fit
    expect(refused.map((e) => e.kind)).toEqual(refused.map(() => 'busy'));
    expect(refused[0]!.message).toMatch(
      /^jq filter 'length' was not run: the gateway has \d+ jq filters \(\d+\.\d MiB of input\) waiting already; try again later$/,
    );
    expect(answered).toEqual(answered.map(() => [big.length]));
    expect(await jq('length', 'abc')).toEqual([3]);
  });

  it('takes inputs and outputs of a few MiB in well under the limit', async () => {
    const big = { files: Array.from({ length: 120_000 }, (_, i) => `root://eos.example.org//store/file-${i}.root`) }; // 5.5 MiB
    const started = performance.now();
    expect(await jq('.files | length', big)).toEqual([120_000]);
    const [echoed] = await jq('.', big);
    expect(echoed).toEqual(big);
    expect(performance.now() - started).toBeLessThan(3_000);
  });

  it('refuses an output over 8 MiB, one output or many', async () => {
    for (const filter of ['"x" * 9000000', 'range(2000000)']) {
      const e = await jqError(jq(filter, null, { timeoutMs: 5_000 }));
      expect(e.kind, filter).toBe('output');
      expect(e.message).toBe(`jq filter '${filter}' printed more than 8.0 MiB of JSON; outputs are bounded`);
    }
    expect(await jq('"x" * 1000 | length', null)).toEqual([1000]);
  });

  it('fails a filter that needs more memory than the build has, and goes on', async () => {
    for (const filter of ['reduce range(40) as $i ("x"; . + .) | length', 'def f: [f]; f']) {
      const e = await jqError(jq(filter, null, { timeoutMs: 5_000 }));
      expect(e.kind, filter).toBe('memory');
      expect(e.message).toBe(`jq filter '${filter}' needed more than 256 MB of memory`);
      expect(await jq('1', null)).toEqual([1]);
    }
  });

  it('refuses a filter longer than 64 KiB, and an output nested deeper than jq prints', async () => {
    const e = await jqError(jq(`.${' '.repeat(JQ_LIMITS.filterChars)}`, null));
    expect(e.kind).toBe('filter');
    expect(e.detail).toBe('is 65,537 characters long; at most 65,536');
    const deep = await jqError(jq('reduce range(300) as $i (0; [.])', null));
    expect(deep.detail).toBe('an output nests deeper than jq prints (256 levels)');
    let nested: unknown = 0;
    for (let i = 0; i < 300; i++) nested = [nested];
    expect((await jqError(jq('.', nested))).detail).toMatch(/^parse error: Exceeds depth limit for parsing at line 1, column 257/);
  });
});

describe('isolation', () => {
  it("shows a filter nothing of the gateway's environment, files or process", async () => {
    const filters = [
      '$ENV',
      'env',
      '$ENV | keys',
      '[env[]] | join(" ")',
      'input_filename',
      '$__loc__',
      '$ARGS',
      'get_search_list',
      'get_jq_origin',
      'get_prog_origin',
      'input',
      '[inputs]',
      'input_line_number',
      'getpath(["AF_JQ_TEST_SECRET"])',
      '@sh "echo \\(env)"',
      '"/etc/passwd" | modulemeta',
      'include "/etc/passwd"; .',
      'import "/etc/passwd" as $p; $p',
      'import "/etc/hostname" as $h; $h',
      'include "/proc/self/environ"; .',
      'import "/proc/self/environ" as $e; $e',
      '[builtins]',
      'now | type',
    ];
    const seen: string[] = [];
    for (const filter of filters) {
      try {
        seen.push(JSON.stringify(await jq(filter, { probe: true })));
      } catch (e) {
        expect(e, filter).toBeInstanceOf(JqError);
        seen.push((e as Error).message);
      }
    }
    const all = seen.join('\n');
    expect(all).not.toContain(SECRET);
    expect(all).not.toContain('AF_JQ_TEST_SECRET');
    for (const hostValue of [process.cwd(), fileURLToPath(new URL('.', import.meta.url)), hostname(), 'root:x:0:0', process.env.PATH ?? '/usr/bin'])
      expect(all, hostValue).not.toContain(hostValue);
    // What jq sees instead: Emscripten's stand-in environment.
    expect(await jqFirst('$ENV', null)).toEqual({
      USER: 'web_user',
      LOGNAME: 'web_user',
      PATH: '/',
      PWD: '/',
      HOME: '/home/web_user',
      LANG: 'C.UTF-8',
      _: 'jq',
    });
    expect(await jqFirst('env | has("AF_JQ_TEST_SECRET")', null)).toBe(false);
    expect((await jqError(jq('include "/etc/passwd"; .', null))).detail).toBe('module not found: /etc/passwd');
  });
});
