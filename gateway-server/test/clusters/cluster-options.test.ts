import { describe, expect, it } from 'vitest';
import { ClusterOptions } from '../../src/clusters/cluster-options.js';
import { resolveConfig } from '../../src/config.js';
import { AppError } from '../../src/errors.js';

const config = resolveConfig({
  cluster_options: [
    { field: 'worker_cores', type: 'int', default: 2, min: 1, max: 8, target: 'worker_cores' },
    { field: 'worker_memory', type: 'float', default: 4, min: 1, max: 32, target: 'worker_memory' },
    { field: 'image', type: 'select', options: ['coffea', 'root'], label: 'Image' },
    { field: 'debug', type: 'bool' },
    { field: 'note', type: 'string', default: 'x' },
    { field: 'environment', type: 'mapping', target: 'environment' },
  ],
});
const options = new ClusterOptions(config.cluster_options);
/** A form as the gateway builds one: the configured fields pass the config's schema first. */
const form = (cluster_options: unknown[]) => new ClusterOptions(resolveConfig({ cluster_options }).cluster_options);

function rejects(values: unknown): AppError {
  try {
    options.parse(values);
  } catch (err) {
    if (err instanceof AppError) return err;
    throw err;
  }
  throw new Error('accepted');
}

describe('ClusterOptions', () => {
  it('publishes the dask-gateway option spec with defaults', () => {
    expect(options.spec()).toEqual([
      { field: 'display_name', label: 'Name', default: '', spec: { type: 'string' } },
      { field: 'worker_cores', label: 'worker_cores', default: 2, spec: { type: 'int', min: 1, max: 8 } },
      { field: 'worker_memory', label: 'worker_memory', default: 4, spec: { type: 'float', min: 1, max: 32 } },
      { field: 'image', label: 'Image', default: 'coffea', spec: { type: 'select', options: ['coffea', 'root'] } },
      { field: 'debug', label: 'debug', default: false, spec: { type: 'bool' } },
      { field: 'note', label: 'note', default: 'x', spec: { type: 'string' } },
      { field: 'environment', label: 'environment', default: {}, spec: { type: 'mapping' } },
    ]);
  });

  it('fills defaults for missing values', () => {
    expect(options.parse({ worker_cores: 3 })).toEqual({
      display_name: '',
      worker_cores: 3,
      worker_memory: 4,
      image: 'coffea',
      debug: false,
      note: 'x',
      environment: {},
    });
    expect(options.parse(null)).toMatchObject({ worker_cores: 2 });
  });

  it('refuses unknown options with a 422 naming them', () => {
    const err = rejects({ worker_gpus: 1 });
    expect(err.statusCode).toBe(422);
    expect(err.message).toContain("'worker_gpus'");
    expect(err.message).toContain('worker_cores');
  });

  it.each([
    [{ worker_cores: 0 }, 'at least 1'],
    [{ worker_cores: 9 }, 'at most 8'],
    [{ worker_cores: 1.5 }, 'integer'],
    [{ worker_cores: '2' }, 'integer'],
    [{ worker_memory: 'lots' }, 'number'],
    [{ image: 'ubuntu' }, 'one of coffea, root'],
    [{ debug: 'yes' }, 'true or false'],
    [{ note: 3 }, 'string'],
    [{ environment: [1] }, 'mapping'],
    [{ environment: { A: 1 } }, 'strings'],
    // what a hostile user sends to reach a submit description, a pod spec or a shell
    [{ note: 'x\nqueue 1000' }, 'control character U+000A'],
    [{ note: 'x\u2028y' }, 'control character U+2028'],
    [{ note: 'x'.repeat(4097) }, 'longer than 4096'],
    [{ environment: { 'A=B': 'x' } }, 'not an environment variable name'],
    [{ environment: { '1A': 'x' } }, 'not an environment variable name'],
    [{ environment: { 'A B': 'x' } }, 'not an environment variable name'],
    [{ environment: { A: 'x\r\n+Owner = "root"' } }, 'control character U+000D'],
    [{ environment: { A: 'x\u0000' } }, 'control character U+0000'],
    [{ environment: { A: 'x'.repeat(5000) } }, 'longer than 4096'],
    [{ environment: Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`V${i}`, 'x'])) }, 'at most 256 keys'],
  ])('refuses %j (%s)', (values, words) => {
    const err = rejects(values);
    expect(err.statusCode).toBe(422);
    expect(err.message).toContain(Object.keys(values)[0]);
    expect(err.message).toContain(words);
  });

  it('takes ordinary environments, tabs and unicode included', () => {
    const env = { PATH: '/opt/bin:/usr/bin', _X: 'a\tb', GREETING: 'grüß dich, $HOME' };
    expect(options.parse({ environment: env }).environment).toEqual(env);
  });

  // NVIDIA's container runtime (and AMD's) read these when it makes a container: NVIDIA_VISIBLE_DEVICES=all
  // in a pod or a docker job without a GPU limit hands it every GPU of the node, a GPU group's access and
  // the scheduler's accounting notwithstanding. GPUs are the admin's to give (worker_groups[].gpus).
  it.each([
    ['NVIDIA_VISIBLE_DEVICES', 'all'],
    ['NVIDIA_VISIBLE_DEVICES', '0,1'],
    ['NVIDIA_DRIVER_CAPABILITIES', 'all'],
    ['NVIDIA_MIG_CONFIG_DEVICES', 'all'],
    ['NVIDIA_REQUIRE_CUDA', 'cuda>=1'],
    ['nvidia_visible_devices', 'all'],
    ['AMD_VISIBLE_DEVICES', 'all'],
  ])('refuses %s in the environment (container runtimes hand out devices by it)', (name, value) => {
    const err = rejects({ environment: { A: 'x', [name]: value } });
    expect(err.statusCode).toBe(422);
    expect(err.message).toContain(name);
    expect(err.message).toContain('GPU');
  });

  it('still takes what only narrows the devices a process was given (CUDA_VISIBLE_DEVICES)', () => {
    expect(options.parse({ environment: { CUDA_VISIBLE_DEVICES: '0', NVIDIA: 'x', MY_NVIDIA_VISIBLE_DEVICES: 'all' } }).environment).toEqual({
      CUDA_VISIBLE_DEVICES: '0',
      NVIDIA: 'x',
      MY_NVIDIA_VISIBLE_DEVICES: 'all',
    });
  });

  it('quotes a long refused value only in part', () => {
    expect(rejects({ note: 'y'.repeat(10_000) + '\n' }).message.length).toBeLessThan(400);
  });

  it('refuses values nested 100,000 deep with a 422, not a stack overflow (JSON.parse takes them)', () => {
    const deep = JSON.parse('['.repeat(100_000) + ']'.repeat(100_000)) as unknown;
    expect(rejects({ worker_cores: deep }).message).toMatch(/worker_cores.*integer/);
    expect(rejects({ environment: { A: deep } }).message).toMatch(/environment.*strings/);
    const free = form([{ field: 'labels', type: 'mapping', target: null }]);
    let err: unknown;
    try {
      free.parse({ labels: { a: deep } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).message).toMatch(/labels.*nests objects and lists more than 32 deep/);
    expect(free.parse({ labels: { a: { b: [1, 2] } } })).toEqual({ display_name: '', labels: { a: { b: [1, 2] } } });
  });

  it('maps targeted options onto the cluster settings', () => {
    const values = options.parse({ worker_cores: 4, worker_memory: 8, environment: { A: 'b' } });
    expect(options.settings(values, { ...config.cluster, environment: { SITE: 'x' } })).toEqual({
      worker_cores: 4,
      worker_memory: 8,
      environment: { SITE: 'x', A: 'b' },
      idle_timeout: 0,
    });
  });

  it('refuses a config whose default breaks its own bounds', () => {
    expect(() => form([{ field: 'n', type: 'int', default: 0, min: 1, target: null }])).toThrow(/at least 1/);
  });
});

describe('display name', () => {
  const named = (display_name: unknown) => options.displayName(options.parse({ display_name }));
  const refusal = (display_name: unknown) => rejects({ display_name });

  it('is offered by every form, first, and kept trimmed on the cluster', () => {
    expect(form([]).spec()).toEqual([{ field: 'display_name', label: 'Name', default: '', spec: { type: 'string' } }]);
    const values = options.parse({ display_name: '  ttbar skim, 2018  ' });
    expect(values.display_name).toBe('ttbar skim, 2018');
    expect(options.displayName(values)).toBe('ttbar skim, 2018');
    expect(options.displayName(options.parse({}))).toBe('');
    expect(named(' \u00a0 ')).toBe(''); // spaces only: no name
  });

  it('takes any printable text as it is, markup included (the Lab shows it as text)', () => {
    expect(named('<img src=x onerror=alert(1)>')).toBe('<img src=x onerror=alert(1)>');
    expect(named('Höhenstrahlung — Λ_b → J/ψ Λ')).toBe('Höhenstrahlung — Λ_b → J/ψ Λ');
    expect(named('x'.repeat(64))).toBe('x'.repeat(64));
    // 64 characters, not 64 UTF-16 units
    expect(named('🚀'.repeat(64))).toBe('🚀'.repeat(64));
  });

  it.each([
    [3, 'must be a string'],
    [null, 'must be a string'],
    ['x'.repeat(65), 'is 65 characters long; at most 64'],
    ['🚀'.repeat(65), 'is 65 characters long; at most 64'],
    ['a\nb', 'U+000A'],
    ['a\tb', 'U+0009'],
    ['a\u0000b', 'U+0000'],
    ['a\u0085b', 'U+0085'],
    ['a\u2028b', 'U+2028'],
    ['a\u2029b', 'U+2029'],
    // what makes one name look like another: bidi overrides, zero-width characters
    ['abc\u202Egpj.exe', 'U+202E'],
    ['adm\u200Bin', 'U+200B'],
    ['a\uFEFFb', 'U+FEFF'],
    ['a\uD800b', 'U+D800'],
    ['a\uE000b', 'U+E000'],
  ])('refuses %j (%s) with a 422 naming the option', (value, words) => {
    const err = refusal(value);
    expect(err.statusCode).toBe(422);
    expect(err.code).toBe('invalid_option');
    expect(err.message).toContain("'display_name'");
    expect(err.message).toContain(words);
  });

  it('refuses a 10-million-character name by its length and quotes it only in part', () => {
    const err = refusal(' n'.repeat(5_000_000));
    expect(err.message).toContain('longer than 64 characters');
    expect(err.message.length).toBeLessThan(400);
  });

  // A name the Lab draws outside its own line (marks stacked 60 high over the rows of other clusters, in an
  // admin's list too) or as nothing (Hangul fillers are letters, Braille's blank a symbol: "printable").
  it.each([
    ['a' + '\u0336\u0301\u0353\u034e\u0330'.repeat(12), 'combining marks'],
    ['a\u0301\u0302\u0303\u0304\u0305', 'combining marks'],
    ['\u0301abc', 'combining mark'],
    ['\u3164', 'U+3164'],
    ['alice\u3164', 'U+3164'],
    ['a\u115Fb', 'U+115F'],
    ['a\u1160b', 'U+1160'],
    ['a\uFFA0b', 'U+FFA0'],
    ['\u2800\u2800', 'U+2800'],
  ])('refuses %j, which would not look like one line of text (%s)', (value, words) => {
    const err = refusal(value);
    expect(err.statusCode).toBe(422);
    expect(err.message).toContain('display_name');
    expect(err.message).toContain(words);
  });

  it('takes the marks languages put on a letter (up to four in a row)', () => {
    for (const name of ['Phở bò', 'ế ộ ự', 'नमस्ते दुनिया', 'שָׁלוֹם', 'e\u0301\u0302\u0323\u0304', 'བཀྲ་ཤིས་', '한국어 클러스터']) expect(named(name)).toBe(name);
  });

  it('lets the config place and label the name itself', () => {
    const own = form([
      { field: 'worker_cores', type: 'int', default: 1, min: 1, max: 2, target: 'worker_cores' },
      { field: 'title', type: 'string', label: 'Cluster title', target: 'display_name' },
    ]);
    expect(own.spec().map((f) => [f.field, f.label])).toEqual([
      ['worker_cores', 'worker_cores'],
      ['title', 'Cluster title'],
    ]);
    expect(own.displayName(own.parse({ title: ' mine ' }))).toBe('mine');
    expect(() => own.parse({ title: 'a\nb' })).toThrow(/'title'.*U\+000A/);
    expect(() => own.parse({ display_name: 'x' })).toThrow(/Unknown cluster option 'display_name'/);
  });

  it('refuses a config that targets display_name twice or with another type', () => {
    expect(() =>
      form([
        { field: 'a', type: 'string', target: 'display_name' },
        { field: 'b', type: 'string', target: 'display_name' },
      ]),
    ).toThrow(/a, b all target display_name/);
    expect(() => form([{ field: 'n', type: 'int', target: 'display_name' }])).toThrow(/must be of type string/);
    expect(() => form([{ field: 'n', type: 'string', default: 'x\ny', target: 'display_name' }])).toThrow(/U\+000A/);
  });
});
