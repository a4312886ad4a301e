// The batch scripts the Slurm backend gives sbatch (on its standard input): a header of #SBATCH
// directives, then plain POSIX shell. Two encoders, one per sink:
//   - directive values: sbatch reads an #SBATCH line as words (whitespace splits, quotes group, a
//     backslash escapes, # starts a comment, "hetjob"/"packjob" anywhere splits the job): a value
//     holding any of those is refused, never escaped;
//   - shell words: single-quoted ('\'' for a quote); a value with a control character is refused.
// Every value a user controls (the worker environment) is a shell word after the header, where
// sbatch no longer looks for directives; names and ids are checked before they are written.
import { daskTlsArgs, schedulerJobArgs } from '../backend.js';

/** What the facility's configuration asks of every job (backend.slurm). */
export interface SlurmJobSettings {
  partition: string | null;
  /** Slurm's account (what the jobs are charged to), not the POSIX account. */
  account: string | null;
  qos: string | null;
  timeLimit: string | null;
  /** The admin's extra options (checked with checkSbatchOptions). */
  options: string[];
}

/** What every job of a cluster shares. */
interface DaskJobSpec {
  settings: SlurmJobSettings;
  jobName: string;
  comment: string;
  python: string;
  environment: Record<string, string>;
  /** The jobs' working directory (the account's): their logs go there. */
  jobDir: string;
  cert: string;
  key: string;
  bearerToken: string;
}

export interface WorkerScriptSpec extends DaskJobSpec {
  workerNames: string[];
  schedulerAddress: string;
  cores: number;
  memoryGiB: number;
  /** GPUs of each worker (worker_groups[].gpus): #SBATCH --gres=<gpuGres>:<gpus>. 0 or absent: none. */
  gpus?: number;
  /** The GRES the GPUs are asked for as (backend.slurm.gpu_gres): a name, or name:type. */
  gpuGres?: string;
}

export interface SchedulerScriptSpec extends DaskJobSpec {
  cluster: string;
  apiToken: string;
  apiUrl: string;
  host: string;
  heartbeatPeriod: number;
  adaptivePeriod: number;
  idleTimeout: number;
  cores: number;
  memoryGiB: number;
}

export interface StepScriptSpec {
  settings: SlurmJobSettings;
  jobName: string;
  comment: string;
  /** One array task per step: its node id, directory, wrapper script and the step's own variables. */
  steps: { node: string; dir: string; wrapper: string; env: Record<string, string> }[];
  /** The variables every step of the submission shares. */
  environment: Record<string, string>;
  cpus: number;
  memoryGiB: number;
}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f]/;

/** A word for the shell: single-quoted; control characters (a line break, NUL) are refused. */
export function shellWord(w: string): string {
  if (CONTROL.test(w)) throw new Error(`${JSON.stringify(w.slice(0, 80))} cannot go into a batch script (it has control characters)`);
  return `'${w.replace(/'/g, `'\\''`)}'`;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** `export NAME='value'` lines; a name that is not a variable name is refused. */
function exports(env: Record<string, string>): string[] {
  return Object.entries(env).map(([k, v]) => {
    if (!ENV_NAME.test(k)) throw new Error(`${JSON.stringify(k.slice(0, 80))} is not an environment variable name`);
    return `export ${k}=${shellWord(v)}`;
  });
}

/**
 * One #SBATCH line. Its value must be one word of sbatch's own reading: no whitespace, quote,
 * backslash, # or control character, and not the words that split a job into components.
 */
export function directive(name: string, value?: string): string {
  if (!/^[a-z][a-z-]*$/.test(name)) throw new Error(`${JSON.stringify(name.slice(0, 80))} is not an sbatch option name`);
  if (value === undefined) return `#SBATCH --${name}`;
  // eslint-disable-next-line no-control-regex
  if (value === '' || /[\s'"\\#\x00-\x1f\x7f]/.test(value) || /hetjob|packjob/i.test(value)) {
    throw new Error(
      `${JSON.stringify(value.slice(0, 80))} cannot be the value of an #SBATCH --${name} line (empty, or whitespace, quotes, \\, # or control characters)`,
    );
  }
  return `#SBATCH --${name}=${value}`;
}

/**
 * The admin's extra options (backend.slurm.sbatch_options) a job may carry: what only shapes where
 * and how its resources are allocated. Everything else is refused — options that would run the job
 * as someone else (--uid, --gid), move or reopen its files (--chdir, --output, --error, --input,
 * --open-mode, --umask), change its environment (--export, --export-file, --get-user-env), run
 * something other than the script (--wrap, --container, --bb, --bbf), hide it from the gateway's
 * queries or change how it is named and tagged (--clusters, --job-name, --comment, --array), hold
 * or chain it (--hold, --dependency, --begin), or repeat what has a key of its own or comes from
 * the cluster options (--partition, --account, --qos, --time, --nodes, --ntasks, --cpus-per-task,
 * --mem, --mem-per-cpu).
 * 'value': --key=value; 'flag': --key alone; 'either': both; 'expr': a value that may also hold
 * the feature operators & | [ ] * (constraints); 'hosts': a host list, which may hold [ ] (node[1-4]).
 */
export const SBATCH_OPTIONS: ReadonlyMap<string, 'value' | 'flag' | 'either' | 'expr' | 'hosts'> = new Map([
  ['constraint', 'expr'],
  ['prefer', 'expr'],
  ['gres', 'value'],
  ['gres-flags', 'value'],
  ['gpus', 'value'],
  ['gpus-per-node', 'value'],
  ['gpus-per-task', 'value'],
  ['gpus-per-socket', 'value'],
  ['cpus-per-gpu', 'value'],
  ['mem-per-gpu', 'value'],
  ['gpu-bind', 'value'],
  ['gpu-freq', 'value'],
  ['cpu-freq', 'value'],
  ['mem-bind', 'value'],
  ['hint', 'value'],
  ['distribution', 'value'],
  ['sockets-per-node', 'value'],
  ['cores-per-socket', 'value'],
  ['threads-per-core', 'value'],
  ['extra-node-info', 'value'],
  ['core-spec', 'value'],
  ['thread-spec', 'value'],
  ['tmp', 'value'],
  ['exclude', 'hosts'],
  ['nodelist', 'hosts'],
  ['reservation', 'value'],
  ['licenses', 'value'],
  ['wckey', 'value'],
  ['switches', 'value'],
  ['network', 'value'],
  ['power', 'value'],
  ['mcs-label', 'value'],
  ['acctg-freq', 'value'],
  ['profile', 'value'],
  ['signal', 'value'],
  ['nice', 'value'],
  ['mail-type', 'value'],
  ['mail-user', 'value'],
  ['delay-boot', 'value'],
  ['exclusive', 'either'],
  ['oversubscribe', 'flag'],
  ['requeue', 'flag'],
  ['no-requeue', 'flag'],
  ['contiguous', 'flag'],
  ['spread-job', 'flag'],
  ['use-min-nodes', 'flag'],
  ['overcommit', 'flag'],
]);

const OWN_KEYS: Record<string, string> = {
  partition: 'backend.slurm.partition',
  account: 'backend.slurm.account',
  qos: 'backend.slurm.qos',
  time: 'backend.slurm.time_limit',
  'cpus-per-task': "the cluster options (the workers' cores)",
  mem: "the cluster options (the workers' memory)",
  'mem-per-cpu': "the cluster options (the workers' memory)",
};

/** No shell or directive metacharacter: letters, digits and . , : = + @ / - _ only. */
const PLAIN_VALUE = /^[A-Za-z0-9_.,:=+@/-]+$/;
const EXPR_VALUE = /^[A-Za-z0-9_.,:=+@/&|[\]*-]+$/;
const HOSTS_VALUE = /^[A-Za-z0-9_.,:=+@/[\]-]+$/;
const VALUES = { value: PLAIN_VALUE, either: PLAIN_VALUE, flag: PLAIN_VALUE, expr: EXPR_VALUE, hosts: HOSTS_VALUE };
const EXTRA_CHARACTERS = { value: '', either: '', flag: '', expr: ' & | [ ] *', hosts: ' [ ]' };

/** The admin's extra options, each checked against the allow-list (one message naming every refused option). */
export function checkSbatchOptions(options: readonly string[]): string[] {
  const problems: string[] = [];
  for (const opt of options) {
    const m = /^--([a-z][a-z-]*)(?:=(.*))?$/s.exec(opt);
    if (!m) {
      problems.push(`${JSON.stringify(opt.slice(0, 80))} is not --key or --key=value`);
      continue;
    }
    const [, key, value] = m as unknown as [string, string, string | undefined];
    const kind = SBATCH_OPTIONS.get(key);
    if (!kind) {
      problems.push(OWN_KEYS[key] ? `--${key} comes from ${OWN_KEYS[key]}` : `--${key} is not one the gateway allows (see docs/backends.md, Slurm)`);
      continue;
    }
    if (value === undefined && kind !== 'flag' && kind !== 'either') problems.push(`--${key} needs a value (--${key}=...)`);
    else if (value !== undefined && kind === 'flag') problems.push(`--${key} takes no value`);
    else if (value !== undefined && !VALUES[kind].test(value))
      problems.push(`--${key}=${JSON.stringify(value.slice(0, 80))} has characters other than letters, digits and . , : = + @ / - _${EXTRA_CHARACTERS[kind]}`);
    else if (value !== undefined && /hetjob|packjob/i.test(value)) problems.push(`--${key}=${value} holds a word sbatch treats as a job separator`);
  }
  if (problems.length) throw new Error(`backend.slurm.sbatch_options: ${problems.join('; ')}`);
  return [...options];
}

const NAME_LIST = /^[A-Za-z0-9_.+-]{1,128}(,[A-Za-z0-9_.+-]{1,128}){0,31}$/;
const NAME = /^[A-Za-z0-9_.+-]{1,128}$/;
const TIME_LIMIT = /^(\d{1,7}(:\d{1,2}){0,2}|\d{1,5}-\d{1,2}(:\d{1,2}){0,2}|UNLIMITED|INFINITE|unlimited|infinite)$/;

/** The configured partition, account, QOS and time limit as sbatch takes them (else an Error naming the key). */
export function checkSettings(s: SlurmJobSettings): SlurmJobSettings {
  const bad: string[] = [];
  if (s.partition !== null && !NAME_LIST.test(s.partition))
    bad.push(`partition ${JSON.stringify(s.partition.slice(0, 80))} is not a partition name (or a comma-separated list)`);
  if (s.account !== null && !NAME.test(s.account)) bad.push(`account ${JSON.stringify(s.account.slice(0, 80))} is not a Slurm account name`);
  if (s.qos !== null && !NAME.test(s.qos)) bad.push(`qos ${JSON.stringify(s.qos.slice(0, 80))} is not a QOS name`);
  if (s.timeLimit !== null && !TIME_LIMIT.test(s.timeLimit))
    bad.push(`time_limit ${JSON.stringify(s.timeLimit.slice(0, 80))} is not a Slurm time (minutes, [days-]hours:minutes[:seconds], or UNLIMITED)`);
  if (bad.length) throw new Error(`backend.slurm: ${bad.join('; ')}`);
  return { ...s, options: checkSbatchOptions(s.options) };
}

/** The header every job shares: its name and tag, one task on one node, resources, the facility's settings; the environment of sbatch is not exported (NIL). */
function header(
  spec: { settings: SlurmJobSettings; jobName: string; comment: string },
  job: { array?: number; cpus: number; memoryGiB: number; chdir?: string; output: string; gres?: string },
) {
  const s = spec.settings;
  const lines = ['#!/bin/sh', directive('job-name', spec.jobName), directive('comment', spec.comment)];
  if (job.array !== undefined) {
    if (!Number.isSafeInteger(job.array) || job.array < 1) throw new Error(`cannot submit an array of ${job.array} tasks`);
    lines.push(directive('array', `0-${job.array - 1}`));
  }
  lines.push(
    directive('nodes', '1'),
    directive('ntasks', '1'),
    directive('cpus-per-task', String(Math.max(1, Math.ceil(job.cpus)))),
    directive('mem', `${Math.max(1, Math.ceil(job.memoryGiB * 1024))}M`),
    ...(job.gres ? [directive('gres', job.gres)] : []),
    directive('export', 'NIL'),
    directive('output', job.output),
  );
  if (job.chdir) lines.push(directive('chdir', job.chdir));
  if (s.partition) lines.push(directive('partition', s.partition));
  if (s.account) lines.push(directive('account', s.account));
  if (s.qos) lines.push(directive('qos', s.qos));
  if (s.timeLimit) lines.push(directive('time', s.timeLimit));
  for (const opt of checkSbatchOptions(s.options)) {
    const eq = opt.indexOf('=');
    lines.push(eq < 0 ? directive(opt.slice(2)) : directive(opt.slice(2, eq), opt.slice(eq + 1)));
  }
  return lines;
}

/** `case` arms that set variables per array task; any other task id ends the job with a message. */
function perTask(rows: Record<string, string>[], what: string): string[] {
  return [
    'case "${SLURM_ARRAY_TASK_ID:-}" in',
    ...rows.map(
      (vars, i) =>
        `${i}) ${Object.entries(vars)
          .map(([k, v]) => `${k}=${shellWord(v)}`)
          .join('; ')} ;;`,
    ),
    `*) echo "AF Gateway: no ${what} for array task \${SLURM_ARRAY_TASK_ID:-}" >&2; exit 1 ;;`,
    'esac',
  ];
}

const DASK_NAME = /^[A-Za-z0-9_-]{1,64}$/;
/** backend.slurm.gpu_gres: a GRES name, optionally with its type. */
const GPU_GRES = /^[A-Za-z][A-Za-z0-9_]{0,63}(:[A-Za-z0-9_.+-]{1,64})?$/;

/**
 * How the jobs start Dask: `python -c RUN_MODULE <module> ARGS` is `python -m <module> ARGS`, except
 * that the process keeps its name. Dask renames itself "dask worker [...]" when setproctitle is
 * installed, and Slurm's proctrack/linuxproc reads /proc/PID/stat word by word: a process whose name
 * has a space is not seen as the job's, so scancel ended the job (COMPLETING for ever) and left Dask
 * running. (Checked with Slurm 22.05.)
 */
export const RUN_MODULE = 'import runpy, sys; sys.modules["setproctitle"] = None; runpy.run_module(sys.argv.pop(1), run_name="__main__", alter_sys=True)';

/** One scale step of a cluster: a job array, one task per worker, each running `dask worker --name <its name>`. */
export function workerScript(spec: WorkerScriptSpec): string {
  for (const n of spec.workerNames) if (!DASK_NAME.test(n)) throw new Error(`worker name ${JSON.stringify(n.slice(0, 80))} cannot be submitted`);
  const gpus = spec.gpus ?? 0;
  if (!Number.isSafeInteger(gpus) || gpus < 0) throw new Error(`cannot ask for ${gpus} GPUs per worker`);
  const gpuGres = spec.gpuGres ?? 'gpu';
  if (gpus && !GPU_GRES.test(gpuGres)) throw new Error(`${JSON.stringify(gpuGres.slice(0, 80))} is not a GRES name (gpu, or name:type such as gpu:a100)`);
  const args = [
    '-c',
    RUN_MODULE,
    'distributed.cli.dask_worker',
    spec.schedulerAddress,
    '--nthreads',
    String(Math.max(1, Math.floor(spec.cores))),
    '--memory-limit',
    String(Math.floor(spec.memoryGiB * 2 ** 30)),
    '--no-nanny',
    '--no-dashboard',
    '--death-timeout',
    '60',
    ...daskTlsArgs(spec.cert, spec.key),
  ];
  return [
    ...header(spec, {
      array: spec.workerNames.length,
      cpus: spec.cores,
      memoryGiB: spec.memoryGiB,
      chdir: spec.jobDir,
      output: `${spec.jobDir}/slurm-%A_%a.out`,
      // name[:type]:count, allocated on the job's one node
      gres: gpus ? `${gpuGres}:${gpus}` : undefined,
    }),
    '# AF Gateway: Dask workers (one per array task). Written by the gateway; every value is quoted.',
    // (the user's environment first: what the gateway sets after it, the task's name included, wins)
    ...exports(spec.environment),
    ...perTask(
      spec.workerNames.map((n) => ({ AF_WORKER: n })),
      'worker',
    ),
    ...exports({ DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION: 'True', BEARER_TOKEN_FILE: spec.bearerToken }),
    `exec ${shellWord(spec.python)} ${args.map(shellWord).join(' ')} --name "$AF_WORKER" >>${shellWord(`${spec.jobDir}/`)}"$AF_WORKER"'.log' 2>&1`,
    '',
  ].join('\n');
}

/** A cluster's scheduler as a job of its own, with the gateway's preloads (heartbeats to apiUrl, worker groups). */
export function schedulerScript(spec: SchedulerScriptSpec): string {
  const args = [
    '-c',
    RUN_MODULE,
    'distributed.cli.dask_scheduler',
    // (dask-gateway's service, then the worker groups' preload: without it the scheduler would retire group workers for the default count)
    ...schedulerJobArgs(spec, spec.cert, spec.key),
  ];
  return [
    ...header(spec, { cpus: spec.cores, memoryGiB: spec.memoryGiB, chdir: spec.jobDir, output: `${spec.jobDir}/slurm-%j.out` }),
    '# AF Gateway: the Dask scheduler of a cluster. Written by the gateway; every value is quoted.',
    ...exports(spec.environment),
    ...exports({
      DASK_GATEWAY_API_URL: spec.apiUrl,
      DASK_GATEWAY_API_TOKEN: spec.apiToken, // a path: the preload reads the token from the file
      DASK_GATEWAY_CLUSTER_NAME: spec.cluster,
      DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION: 'True',
      BEARER_TOKEN_FILE: spec.bearerToken,
    }),
    `exec ${shellWord(spec.python)} ${args.map(shellWord).join(' ')} >>${shellWord(`${spec.jobDir}/scheduler.log`)} 2>&1`,
    '',
  ].join('\n');
}

/**
 * A stage's workflow steps: one array task per step, each running its wrapper in its directory
 * (which the wrapper's log and exit code file are in). Slurm's own output of a task goes nowhere:
 * what the script itself prints goes to the step's .af/slurm.out.
 */
export function stepScript(spec: StepScriptSpec): string {
  for (const s of spec.steps) {
    // (a node in a subworkflow names its scope: sub[0].read, map[2].inner:1)
    if (!/^[A-Za-z0-9_.:[\]-]{1,256}$/.test(s.node)) throw new Error(`step ${JSON.stringify(s.node.slice(0, 80))} cannot be submitted (its name)`);
    for (const k of Object.keys(s.env)) if (!ENV_NAME.test(k)) throw new Error(`${JSON.stringify(k.slice(0, 80))} is not an environment variable name`);
  }
  const perStepNames = [...new Set(spec.steps.flatMap((s) => Object.keys(s.env)))];
  return [
    ...header(spec, { array: spec.steps.length, cpus: spec.cpus, memoryGiB: spec.memoryGiB, output: '/dev/null' }),
    '# AF Gateway: workflow steps (one per array task). Written by the gateway; every value is quoted.',
    ...exports(spec.environment),
    ...perTask(
      spec.steps.map((s) => ({ AF_STEP_DIR: s.dir, AF_STEP_WRAPPER: s.wrapper, ...s.env })),
      'step',
    ),
    ...(perStepNames.length ? [`export ${perStepNames.join(' ')}`] : []),
    'cd "$AF_STEP_DIR" || exit 1',
    'exec /bin/sh "$AF_STEP_WRAPPER" >>"$AF_STEP_DIR/.af/slurm.out" 2>&1',
    '',
  ].join('\n');
}
