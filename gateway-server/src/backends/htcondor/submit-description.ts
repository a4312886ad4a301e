// HTCondor submit descriptions of Dask workers: one description per scale step, queueing one proc
// per worker with the worker's name as a queue variable, so all of them share one cluster id and
// each runs `dask worker --name <its name>` (the name the scheduler reports in heartbeats).
import { daskTlsArgs, schedulerJobArgs } from '../backend.js';

/** What the facility's pool asks of every job, from backend.htcondor. */
export interface PoolSettings {
  universe: 'vanilla' | 'container' | 'docker';
  containerImage: string | null;
  requirements: string | null;
  accountingGroup: string | null;
  requestDisk: string;
  extra: Record<string, string>;
}

export interface WorkerJobSpec extends PoolSettings {
  /** Gateway instance tag, cluster name and owner, recorded as job attributes. */
  instance: string;
  cluster: string;
  owner: string;
  workerNames: string[];
  python: string;
  schedulerAddress: string;
  cores: number;
  memoryGiB: number;
  environment: Record<string, string>;
  /** The gateway's directory of the cluster (its TLS files and tokens, handed to the job's account). */
  workDir: string;
  /** The job's own directory (the account's): its initial directory, output, error and log files. */
  jobDir: string;
  cert: string;
  key: string;
  bearerToken: string;
  sharedFilesystem: boolean;
}

/** What a worker group adds to its workers' jobs (worker_groups[].gpus and image). */
export interface WorkerJobProfile {
  /** request_gpus of each worker's job; 0 or absent: none asked for. */
  gpus?: number;
  /** The container image of the workers (the admin's word, as HTCondor takes it); null or absent: the pool settings'. */
  image?: string | null;
}

/** A submit description holds one statement per line: no value may carry a line break. */
function oneLine(w: string): string {
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(w)) throw new Error(`${JSON.stringify(w.slice(0, 80))} cannot go into a submit description (it has control characters)`);
  return w;
}

/** A word of the new-syntax `arguments`/`environment` value: quoted when needed, quotes doubled. */
function word(w: string): string {
  oneLine(w);
  if (w !== '' && !/[\s'"]/.test(w)) return w;
  return `'${w.replace(/'/g, "''").replace(/"/g, '""')}'`;
}

/**
 * A literal value: condor_submit expands $(…), $ENV(…), $RANDOM_CHOICE(…) and the like anywhere in a
 * value, so every `$` of a value the gateway does not mean as a macro becomes $(DOLLAR). `$$` cannot
 * be carried (whatever it becomes, the job ad holds a match-time $$(…) substitution): refused.
 */
export function literal(w: string): string {
  if (oneLine(w).includes('$$'))
    throw new Error(`${JSON.stringify(w.slice(0, 80))} cannot go into a submit description ("$$" is HTCondor's match-time substitution)`);
  return w.replace(/\$/g, '$(DOLLAR)');
}

/** The `environment` value: each VAR=value a literal word. */
function environmentValue(env: Record<string, string>): string {
  for (const k of Object.keys(env)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new Error(`${JSON.stringify(k.slice(0, 80))} is not an environment variable name`);
  }
  return `"${Object.entries(env)
    .map(([k, v]) => word(`${k}=${literal(v)}`))
    .join(' ')}"`;
}

/** A ClassAd string literal. */
export function classAdString(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

const basename = (p: string) => p.slice(p.lastIndexOf('/') + 1);

export function workerSubmitDescription(spec: WorkerJobSpec & WorkerJobProfile): string {
  // Without a shared filesystem the files travel with the job and are found in its scratch dir.
  const file = (p: string) => (spec.sharedFilesystem ? p : basename(p));
  // A group's image runs its workers in that container: docker_image where the pool's jobs use the
  // docker universe, else the container universe (Apptainer/Singularity, or Docker, as the pool has it).
  const pool: CommonSpec = spec.image ? { ...spec, universe: spec.universe === 'docker' ? 'docker' : 'container', containerImage: literal(spec.image) } : spec;
  return daskJobDescription(pool, {
    args: [
      '-m',
      'distributed.cli.dask_worker',
      spec.schedulerAddress,
      '--name',
      '$(AfWorker)',
      '--nthreads',
      String(spec.cores),
      '--memory-limit',
      String(Math.floor(spec.memoryGiB * 2 ** 30)),
      '--no-nanny',
      '--no-dashboard',
      '--death-timeout',
      '60',
      ...daskTlsArgs(file(spec.cert), file(spec.key)),
    ],
    env: { ...spec.environment, DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION: 'True', BEARER_TOKEN_FILE: file(spec.bearerToken) },
    transfer: [spec.cert, spec.key, spec.bearerToken],
    names: spec.workerNames,
    cores: spec.cores,
    memoryGiB: spec.memoryGiB,
    gpus: spec.gpus ?? 0,
  });
}

export interface SchedulerJobSpec extends Omit<WorkerJobSpec, 'workerNames' | 'schedulerAddress' | 'cores' | 'memoryGiB'> {
  /** File with the cluster's API token (the preload's heartbeats). */
  apiToken: string;
  apiUrl: string;
  host: string;
  heartbeatPeriod: number;
  adaptivePeriod: number;
  idleTimeout: number;
}

/** The scheduler as an HTCondor job itself (one proc named "scheduler"). */
export function schedulerSubmitDescription(spec: SchedulerJobSpec): string {
  const file = (p: string) => (spec.sharedFilesystem ? p : basename(p));
  return daskJobDescription(spec, {
    args: ['-m', 'distributed.cli.dask_scheduler', ...schedulerJobArgs(spec, file(spec.cert), file(spec.key))],
    env: {
      ...spec.environment,
      DASK_GATEWAY_API_URL: spec.apiUrl,
      DASK_GATEWAY_API_TOKEN: file(spec.apiToken),
      DASK_GATEWAY_CLUSTER_NAME: spec.cluster,
      DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION: 'True',
      BEARER_TOKEN_FILE: file(spec.bearerToken),
    },
    transfer: [spec.cert, spec.key, spec.apiToken, spec.bearerToken],
    names: ['scheduler'],
    cores: 1,
    memoryGiB: 1,
  });
}

interface JobShape {
  args: string[];
  env: Record<string, string>;
  transfer: string[];
  /** One proc per name, each with $(AfWorker) set to it. */
  names: string[];
  cores: number;
  memoryGiB: number;
  /** request_gpus (0: the line is left out). */
  gpus?: number;
}

type CommonSpec = Omit<WorkerJobSpec, 'workerNames' | 'schedulerAddress' | 'cores' | 'memoryGiB' | 'environment'>;

function daskJobDescription(spec: CommonSpec, job: JobShape): string {
  const lines: [string, string][] = [
    ['universe', spec.universe],
    ['executable', spec.python],
    ['transfer_executable', 'false'],
    ['arguments', `"${job.args.map(word).join(' ')}"`],
    ['environment', environmentValue(job.env)],
    ['request_cpus', String(job.cores)],
    ['request_memory', String(Math.ceil(job.memoryGiB * 1024))],
    ...(job.gpus ? [['request_gpus', String(job.gpus)] as [string, string]] : []),
    ['request_disk', spec.requestDisk],
    ['initialdir', spec.jobDir],
    ['output', `${spec.jobDir}/$(AfWorker).out`],
    ['error', `${spec.jobDir}/$(AfWorker).log`],
    ['log', `${spec.jobDir}/htcondor-jobs.log`],
    // condor_rm sends SIGTERM, then SIGKILL after the vacate time (10 minutes by default): a worker
    // whose scheduler is gone may not finish closing, and the job would linger in the queue.
    ['job_max_vacate_time', '10'],
    ['+AfGatewayInstance', classAdString(spec.instance)],
    ['+AfGatewayCluster', classAdString(spec.cluster)],
    ['+AfGatewayOwner', classAdString(spec.owner)],
    ['+AfGatewayWorker', classAdString('$(AfWorker)')],
  ];
  if (spec.sharedFilesystem) {
    lines.push(['should_transfer_files', 'NO']);
  } else {
    lines.push(['should_transfer_files', 'YES'], ['when_to_transfer_output', 'ON_EXIT'], ['transfer_input_files', job.transfer.join(',')]);
  }
  if (spec.universe === 'container' && spec.containerImage) lines.push(['container_image', spec.containerImage]);
  if (spec.universe === 'docker' && spec.containerImage) lines.push(['docker_image', spec.containerImage]);
  if (spec.requirements) lines.push(['requirements', spec.requirements]);
  if (spec.accountingGroup) lines.push(['accounting_group', spec.accountingGroup], ['accounting_group_user', spec.owner]);
  for (const [k, v] of Object.entries(spec.extra)) lines.push([k, v]);
  for (const name of job.names) {
    if (!/^[A-Za-z0-9_-]+$/.test(name)) throw new Error(`worker name ${name} cannot be queued`);
  }
  return [...lines.map(([k, v]) => `${k} = ${v}`), `queue AfWorker from (`, ...job.names, ')', ''].join('\n');
}

export interface StepJobSpec extends PoolSettings {
  instance: string;
  run: string;
  owner: string;
  /** One proc per step: its node id and directory (the wrapper is DIR/.af/run.sh). */
  steps: { node: string; dir: string }[];
  environment: Record<string, string>;
  /** Each step's BEARER_TOKEN_FILE is its own directory's .af/bearer-token (the owner's token, which the engine writes). */
  stepToken?: boolean;
  /** A docker-encapsulated step's image: the container universe runs it. */
  image: string | null;
  cpus: number;
  memoryGiB: number;
}

/**
 * Workflow steps of one stage started together: one cluster id, one proc per step. Steps need a
 * filesystem shared with the gateway (their inputs are earlier steps' outputs, and the engine reads
 * what they publish), so nothing is transferred.
 */
export function stepSubmitDescription(spec: StepJobSpec): string {
  for (const s of spec.steps) {
    // (a node in a subworkflow names its scope: sub[0].read, map[2].inner:1)
    if (!/^[A-Za-z0-9_.:[\]-]+$/.test(s.node) || !/^[A-Za-z0-9_./:+-]+$/.test(s.dir)) {
      throw new Error(`step ${s.node} in ${s.dir} cannot be queued (its name or path has characters HTCondor's queue list cannot carry)`);
    }
  }
  const image = spec.image ?? (spec.universe === 'vanilla' ? null : spec.containerImage);
  const universe = spec.image ? 'container' : spec.universe;
  const lines: [string, string][] = [
    ['universe', universe],
    ['executable', '/bin/sh'],
    ['transfer_executable', 'false'],
    ['arguments', '"$(AfStepDir)/.af/run.sh"'],
    // (one description for the stage's steps: the token file's path is each proc's own, by the queue's AfStepDir)
    [
      'environment',
      spec.stepToken
        ? environmentValue(spec.environment).replace(/"$/, ' BEARER_TOKEN_FILE=$(AfStepDir)/.af/bearer-token"')
        : environmentValue(spec.environment),
    ],
    ['request_cpus', String(Math.max(1, Math.ceil(spec.cpus)))],
    ['request_memory', String(Math.ceil(spec.memoryGiB * 1024))],
    ['request_disk', spec.requestDisk],
    ['initialdir', '$(AfStepDir)'],
    ['output', '$(AfStepDir)/.af/htcondor.out'],
    ['error', '$(AfStepDir)/.af/htcondor.err'],
    ['log', '$(AfStepDir)/.af/htcondor.log'],
    ['job_max_vacate_time', '10'],
    ['should_transfer_files', 'NO'],
    ['+AfGatewayInstance', classAdString(spec.instance)],
    ['+AfGatewayWorkflow', classAdString(spec.run)],
    ['+AfGatewayOwner', classAdString(spec.owner)],
    ['+AfGatewayStep', classAdString('$(AfStep)')],
  ];
  // A workflow's image is the user's word (literal); the configured one is the admin's.
  if (universe === 'container' && image) lines.push(['container_image', spec.image ? `docker://${literal(spec.image)}` : image]);
  if (universe === 'docker' && image) lines.push(['docker_image', image]);
  if (spec.requirements) lines.push(['requirements', spec.requirements]);
  if (spec.accountingGroup) lines.push(['accounting_group', spec.accountingGroup], ['accounting_group_user', spec.owner]);
  for (const [k, v] of Object.entries(spec.extra)) lines.push([k, v]);
  return [...lines.map(([k, v]) => `${k} = ${v}`), 'queue AfStep, AfStepDir from (', ...spec.steps.map((s) => `${s.node}, ${s.dir}`), ')', ''].join('\n');
}
