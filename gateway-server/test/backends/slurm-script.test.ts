// The Slurm backend's batch scripts: what sbatch reads in their #SBATCH header, and what the shell
// does with the rest. Each script is also run by /bin/sh here (with a stand-in for Python that
// prints what it was given), so a value that would be executed, split or expanded shows up as such.
// The real cluster is in test/e2e/test_slurm_backend.py.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  checkSbatchOptions,
  checkSettings,
  directive,
  RUN_MODULE,
  schedulerScript,
  shellWord,
  stepScript,
  workerScript,
  type SlurmJobSettings,
  type WorkerScriptSpec,
} from '../../src/backends/slurm/sbatch-script.js';

let dir: string;
let python: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'af-slurm-script-'));
  // prints each argument on a line of its own, then the variables the tests look at
  python = join(dir, 'python');
  writeFileSync(python, `#!/bin/sh\nfor a in "$@"; do printf 'ARG %s\\n' "$a"; done\nenv | grep -E '^(EVIL|QUOTE|DASK_|BEARER|AF_|PATH=)' | sort\n`);
  chmodSync(python, 0o755);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const settings: SlurmJobSettings = {
  partition: 'debug',
  account: 'cms',
  qos: 'normal',
  timeLimit: '1-00:00:00',
  options: ['--constraint=intel&ib', '--exclusive'],
};

function spec(over: Partial<WorkerScriptSpec> = {}): WorkerScriptSpec {
  return {
    settings,
    jobName: 'af-gateway-0123456789ab.w.c0ffee',
    comment: 'af-owner:YWxpY2U',
    python,
    environment: { GREETING: "it's a test" },
    jobDir: join(dir, 'jobs'),
    cert: '/data/clusters/c0ffee/dask.crt',
    key: '/data/clusters/c0ffee/dask.pem',
    bearerToken: '/data/clusters/c0ffee/bearer-token',
    workerNames: ['c0ffee00-aaaa', 'c0ffee00-bbbb', 'c0ffee00-cccc'],
    schedulerAddress: 'tls://10.0.0.5:40000',
    cores: 2,
    memoryGiB: 1.5,
    ...over,
  };
}

/** The #SBATCH lines sbatch reads: those before the first line that is neither a comment nor blank. */
function directives(script: string): string[] {
  const out: string[] = [];
  for (const line of script.split('\n').slice(1)) {
    if (line.startsWith('#SBATCH')) out.push(line);
    else if (line.trim() !== '' && !line.startsWith('#')) break;
  }
  return out;
}

/** Runs a script's shell part as a task of its array, with the job's output directory made; returns what the stand-in printed. */
function runTask(script: string, task: number | null, logFile: string): string {
  const jobs = join(dir, 'jobs');
  execFileSync('mkdir', ['-p', jobs]);
  rmSync(logFile, { force: true });
  execFileSync('/bin/sh', ['-c', script], {
    env: { PATH: '/usr/bin:/bin', ...(task === null ? {} : { SLURM_ARRAY_TASK_ID: String(task) }) },
    stdio: 'pipe',
  });
  return readFileSync(logFile, 'utf8');
}

describe('worker job arrays', () => {
  it('is one array of one task per worker: one node, the cores and memory of the cluster options, the facility settings, no environment from sbatch', () => {
    const text = workerScript(spec());
    expect(text.startsWith('#!/bin/sh\n')).toBe(true);
    expect(directives(text)).toEqual([
      '#SBATCH --job-name=af-gateway-0123456789ab.w.c0ffee',
      '#SBATCH --comment=af-owner:YWxpY2U',
      '#SBATCH --array=0-2',
      '#SBATCH --nodes=1',
      '#SBATCH --ntasks=1',
      '#SBATCH --cpus-per-task=2',
      '#SBATCH --mem=1536M',
      '#SBATCH --export=NIL',
      `#SBATCH --output=${dir}/jobs/slurm-%A_%a.out`,
      `#SBATCH --chdir=${dir}/jobs`,
      '#SBATCH --partition=debug',
      '#SBATCH --account=cms',
      '#SBATCH --qos=normal',
      '#SBATCH --time=1-00:00:00',
      '#SBATCH --constraint=intel&ib',
      '#SBATCH --exclusive',
    ]);
  });

  it("asks for a worker group's GPUs as one --gres of the configured name (and type) per worker job, after its memory", () => {
    const text = workerScript(spec({ gpus: 2, gpuGres: 'gpu:a100' }));
    expect(directives(text).slice(3, 8)).toEqual([
      '#SBATCH --nodes=1',
      '#SBATCH --ntasks=1',
      '#SBATCH --cpus-per-task=2',
      '#SBATCH --mem=1536M',
      '#SBATCH --gres=gpu:a100:2',
    ]);
    expect(directives(workerScript(spec({ gpus: 1 })))).toContain('#SBATCH --gres=gpu:1');
    expect(directives(workerScript(spec({ gpus: 0, gpuGres: 'gpu' }))).join('\n')).not.toContain('--gres');
    // the GRES name is the admin's, checked as one directive word all the same
    expect(() => workerScript(spec({ gpus: 1, gpuGres: 'gpu:1 --uid=0' }))).toThrow(/not a GRES name/);
    expect(() => workerScript(spec({ gpus: 1.5 }))).toThrow(/cannot ask for 1.5 GPUs/);
  });

  it('runs, in task i, dask worker named as the i-th worker, with TLS and the token file, its output in <name>.log', () => {
    const out = runTask(workerScript(spec()), 1, join(dir, 'jobs', 'c0ffee00-bbbb.log'));
    const args = out.split('\n').flatMap((l) => (l.startsWith('ARG ') ? [l.slice(4)] : []));
    expect(args).toEqual([
      '-c',
      RUN_MODULE,
      'distributed.cli.dask_worker',
      'tls://10.0.0.5:40000',
      '--nthreads',
      '2',
      '--memory-limit',
      '1610612736',
      '--no-nanny',
      '--no-dashboard',
      '--death-timeout',
      '60',
      '--tls-ca-file',
      '/data/clusters/c0ffee/dask.crt',
      '--tls-cert',
      '/data/clusters/c0ffee/dask.crt',
      '--tls-key',
      '/data/clusters/c0ffee/dask.pem',
      '--name',
      'c0ffee00-bbbb',
    ]);
    expect(out).toContain('BEARER_TOKEN_FILE=/data/clusters/c0ffee/bearer-token\n');
    expect(out).toContain('DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION=True\n');
  });

  it("starts Dask as python -m would, with the arguments in place, and keeps the process's name (Slurm's linuxproc tracking cannot see a name with a space)", () => {
    const venv = join(__dirname, '..', '..', '..', '.venv', 'bin', 'python');
    writeFileSync(
      join(dir, 'probe_module.py'),
      'import sys\ntry:\n    import setproctitle\n    print("renames")\nexcept ImportError:\n    print("keeps its name")\nprint(sys.argv[1:])\n',
    );
    const out = execFileSync(existsSync(venv) ? venv : 'python3', ['-c', RUN_MODULE, 'probe_module', 'tls://x:1', '--name', 'w 1'], {
      env: { PATH: '/usr/bin:/bin', PYTHONPATH: dir },
      encoding: 'utf8',
    });
    expect(out).toBe("keeps its name\n['tls://x:1', '--name', 'w 1']\n");
  });

  it('ends a task the array has no worker for, with a message', () => {
    expect(() => execFileSync('/bin/sh', ['-c', workerScript(spec())], { env: { PATH: '/usr/bin:/bin', SLURM_ARRAY_TASK_ID: '7' }, stdio: 'pipe' })).toThrow(
      /no worker for array task 7/,
    );
  });

  it("passes a hostile user's environment values to the worker as they are: nothing in them runs, splits or becomes a directive", () => {
    const marker = join(dir, 'pwned');
    const evil = `$(touch ${marker}); \`touch ${marker}\`; ${'${HOME}'} ' " \\ | & ; > ${marker} # \n#SBATCH --uid=0`.replace('\n', ' ');
    const text = workerScript(spec({ environment: { EVIL: evil, QUOTE: "'" } }));
    expect(directives(text).some((l) => l.includes('uid'))).toBe(false);
    const out = runTask(text, 0, join(dir, 'jobs', 'c0ffee00-aaaa.log'));
    expect(out).toContain(`EVIL=${evil}\n`);
    expect(out).toContain(`QUOTE='\n`);
    expect(existsSync(marker)).toBe(false);
  });

  it("keeps each task's worker name whatever the user's environment names (AF_WORKER: the name and log file of the task)", () => {
    const text = workerScript(spec({ environment: { AF_WORKER: '../../mallory' } }));
    const out = runTask(text, 1, join(dir, 'jobs', 'c0ffee00-bbbb.log'));
    expect(out).toContain('ARG --name\nARG c0ffee00-bbbb\n');
    expect(existsSync(join(dir, 'mallory.log'))).toBe(false);
  });

  it('refuses environment values with line breaks or NUL, and names that are not variable names', () => {
    expect(() => workerScript(spec({ environment: { EVIL: 'a\n#SBATCH --uid=0' } }))).toThrow(/control characters/);
    expect(() => workerScript(spec({ environment: { EVIL: 'a\u0000b' } }))).toThrow(/control characters/);
    for (const name of ['A B', 'X;id', '$(id)', '1X', 'A=B', 'A\nB']) {
      expect(() => workerScript(spec({ environment: { [name]: 'v' } })), name).toThrow(/not an environment variable name/);
    }
  });

  it('refuses worker names, job names and paths that are not one directive word', () => {
    expect(() => workerScript(spec({ workerNames: ['a; touch /tmp/x'] }))).toThrow(/worker name/);
    expect(() => workerScript(spec({ workerNames: ['a\nb'] }))).toThrow(/worker name/);
    expect(() => workerScript(spec({ jobName: 'af x' }))).toThrow(/cannot be the value of an #SBATCH --job-name/);
    expect(() => workerScript(spec({ jobDir: '/data/my jobs' }))).toThrow(/#SBATCH --output/);
    expect(() => workerScript(spec({ jobDir: '/data/#jobs' }))).toThrow(/#SBATCH --output/);
    expect(() => workerScript(spec({ jobDir: "/data/it's" }))).toThrow(/#SBATCH --output/);
    expect(() => workerScript(spec({ comment: 'hetjob' }))).toThrow(/#SBATCH --comment/);
  });
});

describe('the scheduler job and step arrays', () => {
  it("runs the scheduler with both preloads (dask-gateway's, then the worker groups'), its API token file and the gateway address, its output in scheduler.log", () => {
    const { workerNames: _w, schedulerAddress: _s, ...common } = spec();
    const text = schedulerScript({
      ...common,
      cluster: 'c0ffee',
      apiToken: '/data/clusters/c0ffee/api-token',
      apiUrl: 'https://af.example.org/api',
      host: '0.0.0.0',
      heartbeatPeriod: 10,
      adaptivePeriod: 3,
      idleTimeout: 0,
      cores: 1,
      memoryGiB: 2,
    });
    expect(directives(text)).toContain('#SBATCH --mem=2048M');
    expect(directives(text).some((l) => l.startsWith('#SBATCH --array'))).toBe(false);
    const out = runTask(text, null, join(dir, 'jobs', 'scheduler.log'));
    // (then the worker groups' preload, its text one word the shell passes unchanged: Python runs it as a module's source)
    expect(out).toMatch(
      /ARG --preload\nARG dask_gateway\.scheduler_preload\nARG --preload\nARG (import base64; exec\(base64\.b64decode\(b'([A-Za-z0-9+/=]+)'\)\.decode\(\)\))\nARG --dg-api-address\nARG 0\.0\.0\.0:0\n/,
    );
    const encoded = /b'([A-Za-z0-9+/=]+)'/.exec(out)![1]!;
    expect(Buffer.from(encoded, 'base64').toString()).toBe(readFileSync(join(__dirname, '..', '..', 'python', 'af_gateway_groups_preload.py'), 'utf8'));
    expect(out).toContain('DASK_GATEWAY_API_URL=https://af.example.org/api\n');
    expect(out).toContain('DASK_GATEWAY_API_TOKEN=/data/clusters/c0ffee/api-token\n');
  });

  it('runs each step of a stage as one array task: its wrapper, in its directory, with its own token file', () => {
    const steps = ['map:0', 'sub[0].read'].map((node, i) => {
      const d = join(dir, `step${i}`);
      execFileSync('mkdir', ['-p', join(d, '.af')]);
      writeFileSync(join(d, '.af', 'run.sh'), 'pwd; echo "step=$AF_WORKFLOW_STEP token=$BEARER_TOKEN_FILE run=$AF_WORKFLOW_RUN evil=$EVIL"\n');
      return { node, dir: d, wrapper: join(d, '.af', 'run.sh'), env: { AF_WORKFLOW_STEP: node, BEARER_TOKEN_FILE: join(d, '.af', 'bearer-token') } };
    });
    const text = stepScript({
      settings: { ...settings, options: [] },
      jobName: 'af-gateway-0123456789ab.r.0123456789ab',
      comment: 'af-owner:YWxpY2U',
      steps,
      environment: { AF_WORKFLOW_RUN: '0123456789ab', EVIL: '$(id)' },
      cpus: 1.5,
      memoryGiB: 2,
    });
    expect(directives(text)).toContain('#SBATCH --array=0-1');
    expect(directives(text)).toContain('#SBATCH --cpus-per-task=2');
    expect(directives(text)).toContain('#SBATCH --output=/dev/null');
    const out = runTask(text, 1, join(dir, 'step1', '.af', 'slurm.out'));
    expect(out).toBe(`${dir}/step1\nstep=sub[0].read token=${dir}/step1/.af/bearer-token run=0123456789ab evil=$(id)\n`);
  });

  it('refuses a step whose node id is not one the engine makes', () => {
    const step = { node: 'a;b', dir: '/w/a', wrapper: '/w/a/.af/run.sh', env: {} };
    expect(() => stepScript({ settings, jobName: 'j', comment: 'c', steps: [step], environment: {}, cpus: 1, memoryGiB: 1 })).toThrow(/cannot be submitted/);
  });
});

describe("the admin's settings and extra options", () => {
  it('takes allowed options as --key=value or flags, in the order given', () => {
    const ok = [
      '--gres=gpu:1',
      '--exclusive',
      '--exclusive=user',
      '--constraint=[rack1*2&rack2*4]',
      '--nodelist=node[1-4],gpu01',
      '--mail-user=af@example.org',
    ];
    expect(checkSbatchOptions(ok)).toEqual(ok);
  });

  it('refuses options that change who runs the job, where its files go, its environment, what runs, or how the gateway finds it', () => {
    for (const opt of [
      '--uid=0',
      '--gid=0',
      '--chdir=/',
      '--output=/etc/passwd',
      '--error=/tmp/x',
      '--input=/etc/shadow',
      '--open-mode=append',
      '--umask=000',
      '--export=ALL',
      '--export-file=/etc/environment',
      '--get-user-env',
      '--wrap=id',
      '--container=/tmp/bundle',
      '--bb=capacity=1G',
      '--clusters=other',
      '--job-name=x',
      '--comment=x',
      '--array=0-99',
      '--hold',
      '--dependency=afterok:1',
      '--begin=now+1hour',
    ]) {
      expect(() => checkSbatchOptions([opt]), opt).toThrow(/is not one the gateway allows/);
    }
    expect(() => checkSbatchOptions(['--partition=x'])).toThrow(/comes from backend.slurm.partition/);
    expect(() => checkSbatchOptions(['--mem=100G'])).toThrow(/comes from the cluster options/);
    expect(() => checkSbatchOptions(['--cpus-per-task=64'])).toThrow(/comes from the cluster options/);
  });

  it('refuses values with shell or directive metacharacters, line breaks, and options not written as --key=value', () => {
    for (const opt of [
      '--constraint=a$(id)',
      '--gres=gpu;id',
      '--gres=gpu:1\n#SBATCH --uid=0',
      '--gres=gpu 1',
      "--gres='gpu'",
      '--gres=gpu#1',
      '--gres=`id`',
      '--nodelist=n(1)',
      '--gres=gpu[1]',
      '--gres=a&b',
      '--constraint=a>b',
    ]) {
      expect(() => checkSbatchOptions([opt]), JSON.stringify(opt)).toThrow(/characters other than/);
    }
    for (const opt of ['-p debug', '--', 'constraint=x', '--Constraint=x', '--gres']) {
      expect(() => checkSbatchOptions([opt]), opt).toThrow(/backend.slurm.sbatch_options/);
    }
    expect(() => checkSbatchOptions(['--exclusive', '--uid=0', '--gres=$x'])).toThrow(/--uid is not one.*; --gres="\$x" has characters/);
    expect(() => checkSbatchOptions(['--constraint=hetjob'])).toThrow(/job separator/);
  });

  it('checks partition, account, qos and time limit', () => {
    expect(checkSettings({ ...settings, partition: 'debug,hpc', timeLimit: '90' }).partition).toBe('debug,hpc');
    for (const t of ['30', '30:00', '08:00:00', '2-00', '2-12:30', '1-00:00:00', 'UNLIMITED'])
      expect(checkSettings({ ...settings, timeLimit: t }).timeLimit).toBe(t);
    expect(() => checkSettings({ ...settings, partition: 'debug\n#SBATCH --uid=0' })).toThrow(/partition/);
    expect(() => checkSettings({ ...settings, account: 'cms;id' })).toThrow(/account/);
    expect(() => checkSettings({ ...settings, qos: 'a b' })).toThrow(/qos/);
    expect(() => checkSettings({ ...settings, timeLimit: '1 day' })).toThrow(/time_limit/);
  });

  it('encodes shell words and directives, one encoder per sink', () => {
    expect(shellWord("it's")).toBe(`'it'\\''s'`);
    expect(() => shellWord('a\rb')).toThrow(/control characters/);
    expect(directive('exclusive')).toBe('#SBATCH --exclusive');
    expect(() => directive('--uid', '0')).toThrow(/not an sbatch option name/);
    expect(() => directive('comment', '')).toThrow(/cannot be the value/);
  });
});
