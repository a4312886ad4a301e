// Slurm backend: Dask workers (and, with scheduler_placement: job, schedulers) as Slurm jobs of the
// cluster owner's account; with scheduler_placement: local the schedulers run next to the gateway
// through the local backend. The engines hand over lists: a call's workers are one sbatch per
// cluster (a job array, one task per worker), a stage's steps one sbatch, a check one squeue for
// every job asked about, a stop one scancel per account. This file builds the commands;
// sbatch-script.ts writes the batch scripts and slurm-output.ts reads what the tools print.
//
// Every user is hostile. Jobs are the user's own: sbatch and scancel run as the user's account
// (command_prefix names {account}/{uid}/{gid}), so Slurm runs them as that account and only that
// account (or an operator) can cancel them. squeue and sinfo act for the gateway's own account.
// What the account gets of the cluster's files is ../batch/batch-backend.ts's; batch scripts go to
// sbatch on its standard input (no file a user could swap), with the environment of sbatch left
// out of the job (--export=NIL); every Slurm command gets an environment built from scratch.
import { randomBytes } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import type { ResolvedConfig } from '../../config.js';
import type { ProcessState, SchedulerLaunch, StepLaunch, WorkerLaunch } from '../backend.js';
import type { BackendHandle } from '../../clusters/model.js';
import type { UserAccount } from '../../accounts/accounts.js';
import { BatchBackend, groupBy, type BatchBackendOptions, type BatchJobHandle } from '../batch/batch-backend.js';
import { CommandError, CommandRunner, prefixNamesAccount } from '../batch/command-runner.js';
import { gatewayUid, userLogTail } from '../batch/handoff.js';
import { stepBaseEnv } from '../local/local-backend.js';
import { checkSettings, schedulerScript, stepScript, workerScript, type SlurmJobSettings } from './sbatch-script.js';
import { parseSbatch, parseSqueue, slurmJobState, squeueFormat, type SlurmJob } from './slurm-output.js';
import { errorMessage } from '../../errors.js';

/** The Slurm backend's settings (backend.slurm), as the config schema types them with their defaults filled. */
export type SlurmConfig = ResolvedConfig['backend']['slurm'];

export interface SlurmBackendOptions extends BatchBackendOptions {
  config: SlurmConfig;
}

/** What the Slurm tools get of the gateway's environment, when set there (and nothing else of it). */
const INHERITED = ['PATH', 'LANG', 'SLURM_CONF'] as const;

/** Why a configuration would run every user's jobs as one account, or null when it does not. */
export function slurmSharedAccountProblem(config: SlurmConfig, singleUser: boolean): string | null {
  if (singleUser || prefixNamesAccount(config.command_prefix)) return null;
  return (
    "backend.slurm would submit every user's jobs as the gateway's own account: put {account} (or {uid}/{gid}) in " +
    'backend.slurm.command_prefix so that each user\'s jobs are submitted as their account (e.g. [sudo, -n, -u, "{account}", --]), ' +
    'or set backend.local.single_user: true for one person'
  );
}

interface SlurmHandle extends BatchJobHandle {
  kind: 'slurm-job';
}

/** The most array job ids one squeue names (-j); beyond, it lists every job and keeps the ones asked about. */
const MAX_NAMED_JOBS = 2000;

/** What the job name says a job is: a cluster's workers (w), a cluster's scheduler (s), a run's steps (r). */
type JobKind = 'w' | 's' | 'r';

/** The owner in a job's comment: base64url, so any gateway user name is one directive word. */
const ownerTag = (user: string) => `af-owner:${Buffer.from(user, 'utf8').toString('base64url')}`;

function ownerOf(comment: string): string | null {
  const m = /^af-owner:([A-Za-z0-9_-]{1,400})$/.exec(comment);
  return m ? Buffer.from(m[1]!, 'base64url').toString('utf8') : null;
}

export class SlurmBackend extends BatchBackend<SlurmHandle> {
  readonly kind = 'slurm';
  private readonly runner: CommandRunner;
  private readonly settings: SlurmJobSettings;
  /** The node each scheduler job's hosts were noted for (its hosts are looked up once per node). */
  private readonly hostsOfNode = new Map<string, string>();

  constructor(private readonly opts: SlurmBackendOptions) {
    super(opts, opts.config.scheduler_placement === 'job');
    const problem = slurmSharedAccountProblem(opts.config, opts.singleUser ?? false);
    if (problem) throw new Error(problem);
    const cfg = opts.config;
    this.settings = checkSettings({ partition: cfg.partition, account: cfg.account, qos: cfg.qos, timeLimit: cfg.time_limit, options: cfg.sbatch_options });
    this.runner = new CommandRunner({
      prefix: cfg.command_prefix,
      env: cfg.environment,
      timeoutMs: cfg.command_timeout * 1000,
      inherit: INHERITED,
    });
  }

  protected isJob(h: BackendHandle): h is SlurmHandle {
    return h.kind === 'slurm-job';
  }

  /** The job name of what this gateway submits: its instance, what the job is, and the cluster or run. */
  private jobName(kind: JobKind, id: string): string {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) throw new Error(`${JSON.stringify(id.slice(0, 80))} cannot name a Slurm job`);
    return `${this.instance}.${kind}.${id}`;
  }

  /** sbatch of a script (on stdin) as the account: the job id. */
  private async sbatch(script: string, account: UserAccount): Promise<number> {
    const { stdout } = await this.runner.run(['sbatch', '--parsable'], { as: account, input: script });
    return parseSbatch(stdout);
  }

  private python(): string {
    return this.opts.config.python ?? this.opts.python;
  }

  protected async submitScheduler(launch: SchedulerLaunch, account: UserAccount, jobDir: string): Promise<SlurmHandle> {
    const cfg = this.opts.config;
    const { cluster, files } = launch;
    const script = schedulerScript({
      settings: this.settings,
      jobName: this.jobName('s', cluster.name),
      comment: ownerTag(cluster.username),
      python: this.python(),
      environment: cluster.settings.environment,
      jobDir,
      cert: files.cert,
      key: files.key,
      bearerToken: files.bearerToken,
      cluster: cluster.name,
      apiToken: files.token,
      apiUrl: launch.apiUrl,
      host: cfg.scheduler_host,
      heartbeatPeriod: launch.heartbeatPeriod,
      adaptivePeriod: launch.adaptivePeriod,
      idleTimeout: cluster.settings.idle_timeout,
      cores: cfg.scheduler_cores,
      memoryGiB: cfg.scheduler_memory,
    });
    const id = await this.sbatch(script, account);
    this.opts.log.info({ cluster: cluster.name, job: id, account: account.name }, 'submitted scheduler job');
    return {
      kind: 'slurm-job',
      job: String(id),
      cluster: cluster.name,
      worker: 'scheduler',
      log: join(jobDir, 'scheduler.log'),
      owner: cluster.username,
      uid: account.uid,
    };
  }

  /** One job array per cluster (several when a step is larger than max_array_size), one task per worker. */
  protected async submitWorkers(batch: WorkerLaunch[], account: UserAccount, jobDir: string): Promise<SlurmHandle[]> {
    // (one worker group's launches: they share the cluster's shape, GPUs and image)
    const { cluster, files, gpus, image } = batch[0]!;
    // (the config refuses a Slurm group with an image; a launch that still asks fails, never runs without it)
    if (image) throw new Error(`the Slurm backend runs no container images (worker_groups[].image ${image})`);
    const out: SlurmHandle[] = [];
    for (let at = 0; at < batch.length; at += this.opts.config.max_array_size) {
      const part = batch.slice(at, at + this.opts.config.max_array_size);
      const script = workerScript({
        settings: this.settings,
        jobName: this.jobName('w', cluster.name),
        comment: ownerTag(cluster.username),
        python: this.python(),
        environment: cluster.settings.environment,
        jobDir,
        cert: files.cert,
        key: files.key,
        bearerToken: files.bearerToken,
        workerNames: part.map((p) => p.worker.name),
        schedulerAddress: cluster.schedulerAddress,
        cores: cluster.settings.worker_cores,
        memoryGiB: cluster.settings.worker_memory,
        gpus: gpus ?? 0,
        gpuGres: this.opts.config.gpu_gres,
      });
      const id = await this.sbatch(script, account);
      this.opts.log.info({ cluster: cluster.name, job: id, workers: part.length, account: account.name }, 'submitted worker jobs');
      part.forEach((p, i) =>
        out.push({
          kind: 'slurm-job',
          job: `${id}_${i}`,
          cluster: cluster.name,
          worker: p.worker.name,
          log: join(jobDir, `${p.worker.name}.log`),
          owner: cluster.username,
          uid: account.uid,
        }),
      );
    }
    return out;
  }

  /** A stage's steps as one job array; each task runs its step's wrapper in its directory. */
  protected async submitSteps(batch: StepLaunch[], account: UserAccount): Promise<SlurmHandle[]> {
    const first = batch[0]!;
    if (first.image) {
      throw new Error(
        `the Slurm backend runs no container images (step ${first.node} asks for ${first.image}); workflows.images: ignore runs such steps on the node as they are`,
      );
    }
    const { AF_WORKFLOW_STEP: _node, BEARER_TOKEN_FILE: _token, ...shared } = first.env;
    const script = stepScript({
      settings: this.settings,
      jobName: this.jobName('r', first.run),
      comment: ownerTag(first.owner),
      steps: batch.map((p) => ({
        node: p.node,
        dir: p.workdir,
        wrapper: p.wrapper,
        env: {
          AF_WORKFLOW_STEP: p.node,
          ...(p.env.BEARER_TOKEN_FILE ? { BEARER_TOKEN_FILE: p.env.BEARER_TOKEN_FILE } : {}),
        },
      })),
      environment: { PATH: stepBaseEnv().PATH ?? '/usr/bin:/bin', ...shared },
      cpus: first.cpus,
      memoryGiB: first.memory,
    });
    const id = await this.sbatch(script, account);
    this.opts.log.info({ run: first.run, job: id, steps: batch.length, account: account.name }, 'submitted workflow step jobs');
    return batch.map((p, i): SlurmHandle => ({
      kind: 'slurm-job',
      job: `${id}_${i}`,
      cluster: '',
      worker: p.node,
      log: p.log,
      owner: first.owner,
      uid: account.uid,
    }));
  }

  protected describeJob(h: SlurmHandle): string {
    return `Slurm job ${h.job}`;
  }

  /** One scancel per account among the jobs (a user may cancel only their own); jobs already gone count as cancelled. */
  protected async stopJobs(jobs: SlurmHandle[]): Promise<void> {
    for (const h of jobs) this.hostsOfNode.delete(h.job);
    const failures: unknown[] = [];
    await Promise.all(
      [...groupBy(jobs, (h) => h.owner ?? '').values()].map(async (group) => {
        const ids = [...new Set(group.map((g) => g.item.job))];
        if (ids.some((id) => !/^\d+(_\d+)?$/.test(id))) return failures.push(new Error(`not Slurm job ids: ${ids.join(' ').slice(0, 200)}`));
        try {
          const account = await this.account(group[0]!.item.owner ?? undefined);
          await this.runner.run(['scancel', ...ids], { as: account });
        } catch (err) {
          // Jobs that already ended make scancel complain; that is what we wanted.
          if (!/Invalid job id|already completing or completed|Job has already finished/i.test(errorMessage(err))) failures.push(err);
        }
      }),
    );
    if (failures.length) throw failures[0];
  }

  /**
   * One squeue, as the gateway's own account, of the job arrays asked about (every job when there
   * are more than MAX_NAMED_JOBS), with -t all so that a job that just ended says how. Jobs' names
   * and comments only with `text` (free text a job's owner can make look like lines: slurm-output.ts).
   */
  private async queue(arrayJobs: string[] | null, states = 'all', text = false): Promise<Map<string, SlurmJob>> {
    if (arrayJobs?.some((id) => !/^\d+$/.test(id))) throw new Error('not Slurm job ids');
    const marker = randomBytes(12).toString('hex');
    const argv = ['squeue', '-h', '-r', '-t', states, '-o', squeueFormat(marker, text)];
    if (arrayJobs) argv.push('-j', arrayJobs.join(','));
    try {
      // (times in UTC, in the one format the parser reads, whatever the facility's defaults)
      const { stdout } = await this.runner.run(argv, { as: this.self, env: { TZ: 'UTC', SLURM_TIME_FORMAT: 'standard' } });
      return parseSqueue(stdout, marker, text);
    } catch (err) {
      // squeue -j with one job id that Slurm has forgotten fails; with several it lists the others
      if (arrayJobs?.length === 1 && err instanceof CommandError && /Invalid job id specified/.test(err.message)) return new Map();
      throw err;
    }
  }

  protected async checkJobs(jobs: SlurmHandle[]): Promise<ProcessState[]> {
    const arrayJobs = [...new Set(jobs.map((h) => h.job.split('_')[0]!))];
    const queued = await this.queue(arrayJobs.length <= MAX_NAMED_JOBS ? arrayJobs : null);
    const now = Date.now();
    const out: ProcessState[] = [];
    for (const h of jobs) {
      const job = queued.get(h.job);
      const state = slurmJobState(job, h.job, now);
      if (h.worker === 'scheduler') await this.noteNode(h, job?.state === 'RUNNING' ? job.node : null);
      if (!state.alive) state.detail = `${state.detail}; ${await userLogTail(h.log, h.uid ?? gatewayUid())}`;
      out.push(state);
    }
    return out;
  }

  /** Notes where a scheduler job runs: its node's addresses, looked up when the job is first seen there. */
  private async noteNode(h: SlurmHandle, node: string | null): Promise<void> {
    if (!node) {
      this.hostsOfNode.delete(h.job);
      return this.noteHosts(h, new Set());
    }
    if (this.hostsOfNode.get(h.job) === node) return;
    this.noteHosts(h, await this.nodeHosts(node));
    this.hostsOfNode.set(h.job, node);
  }

  /** Where a scheduler job runs now, asked of squeue. */
  protected async lookUpHosts(h: SlurmHandle): Promise<Set<string>> {
    const job = (await this.queue([h.job.split('_')[0]!])).get(h.job);
    if (job?.state !== 'RUNNING' || !job.node) return new Set();
    this.hostsOfNode.set(h.job, job.node);
    return this.nodeHosts(job.node);
  }

  /**
   * A node's names and addresses, as Slurm and the resolver know them (never what a job says):
   * its name, NodeAddr and NodeHostname from sinfo, and what they resolve to. A node that is this
   * machine also answers on loopback.
   */
  private async nodeHosts(node: string): Promise<Set<string>> {
    if (!/^[A-Za-z0-9_.-]{1,253}$/.test(node)) return new Set();
    const hosts = new Set<string>([node.toLowerCase()]);
    try {
      const { stdout } = await this.runner.run(['sinfo', '-h', '-N', '-n', node, '-o', '%N|%o|%n'], { as: this.self });
      for (const line of stdout.split('\n')) {
        const [name, addr, hostname] = line.trim().split('|');
        if (name !== node) continue;
        for (const v of [addr, hostname]) if (v && /^[A-Za-z0-9_.:-]{1,253}$/.test(v)) hosts.add(v.toLowerCase());
      }
    } catch (err) {
      this.opts.log.warn({ node, err: errorMessage(err) }, 'sinfo could not tell the addresses of a node');
    }
    for (const name of [...hosts]) {
      const found = await lookup(name, { all: true }).catch(() => []);
      for (const a of found) hosts.add(a.address.toLowerCase());
    }
    const own = new Set(Object.values(networkInterfaces()).flatMap((l) => (l ?? []).map((i) => i.address.toLowerCase())));
    if ([...hosts].some((a) => own.has(a) || a === '127.0.0.1' || a === '::1')) for (const a of ['127.0.0.1', '::1', 'localhost']) hosts.add(a);
    return hosts;
  }

  /**
   * After a restart: cancels the jobs this gateway submitted (by their job names) that no tracked
   * handle refers to, as the account of the user they name. Workflow steps are the workflow
   * engine's (it adopts them); a job whose user is not the account of the user its comment names
   * is not the gateway's (anyone can name a job like the gateway's) and is left alone, in
   * single-user mode too (the account is then the gateway's own, which may be an operator's).
   */
  protected async removeOrphanJobs(live: BackendHandle[]): Promise<void> {
    const keep = new Set(live.filter((h) => this.isJob(h)).map((h) => h.job));
    const prefix = `${this.instance}.`;
    const queued = await this.queue(null, 'PENDING,RUNNING,SUSPENDED,CONFIGURING,REQUEUED,REQUEUE_HOLD,RESIZING,STOPPED', true);
    const orphans: SlurmHandle[] = [];
    for (const job of queued.values()) {
      if (!job.name.startsWith(prefix) || keep.has(job.id)) continue;
      const kind = job.name.slice(prefix.length, prefix.length + 2);
      if (kind !== 'w.' && kind !== 's.') continue;
      const owner = ownerOf(job.comment);
      // (single-user: every job of this gateway is its own account's, whatever owner it names)
      const account = owner === null ? null : await this.account(owner).catch(() => null);
      if (!account || job.user !== account.name) {
        this.opts.log.warn(
          { job: job.id, user: job.user, comment: job.comment.slice(0, 100) },
          "a Slurm job carries this gateway's name but not its owner's account: left alone",
        );
        continue;
      }
      orphans.push({ kind: 'slurm-job', job: job.id, cluster: '', worker: '', log: '', owner, uid: null });
    }
    if (!orphans.length) return;
    this.opts.log.warn({ jobs: orphans.map((o) => o.job) }, 'cancelling Slurm jobs no cluster of this gateway owns');
    await this.stop(orphans);
  }
}
