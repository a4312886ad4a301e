// HTCondor backend: schedulers and workers run as HTCondor jobs of the cluster owner's account
// (schedulers next to the gateway, through the local backend, with scheduler_in_job: false).
// The engines hand over lists: the workers of one call are one condor_submit per cluster (one job
// cluster, one proc per worker), a call's steps one per run and environment, one check call is one
// condor_q -json, one stop call one condor_rm per account. This file builds the commands;
// condor-output.ts parses what they print.
//
// Every user is hostile. Jobs are the user's own: submitted and removed as the user's account
// (the command prefix names {account}/{uid}/{gid}, or the schedd maps the user's SciToken to it),
// so their Owner is that account and they can touch nothing of the gateway's or of other users.
// What the account gets of the cluster's files, and how, is ../batch/batch-backend.ts's. Submit
// descriptions go to condor_submit on stdin (no file a user could swap), and every condor command
// gets an environment built from scratch (../batch/command-runner.ts).
import { join } from 'node:path';
import type { ResolvedConfig } from '../../config.js';
import type { ProcessState, SchedulerLaunch, StepLaunch, WorkerLaunch } from '../backend.js';
import type { BackendHandle } from '../../clusters/model.js';
import type { UserAccount } from '../../accounts/accounts.js';
import { BatchBackend, groupBy, type BatchBackendOptions, type BatchJobHandle } from '../batch/batch-backend.js';
import { CommandRunner, prefixNamesAccount } from '../batch/command-runner.js';
import { gatewayUid, userLogTail } from '../batch/handoff.js';
import { stepBaseEnv } from '../local/local-backend.js';
import { JOB_ATTRIBUTES, jobHosts, jobId, jobState, parseJobAds, parseTerseSubmit, type JobAd } from './condor-output.js';
import { classAdString, schedulerSubmitDescription, stepSubmitDescription, workerSubmitDescription, type PoolSettings } from './submit-description.js';
import { explainRefusal, noTokenError, readTokenClaims } from './scitokens.js';
import { errorMessage } from '../../errors.js';

/**
 * The HTCondor backend's settings (backend.htcondor), as the config schema types them with their
 * defaults filled. file_owner is refused (it ran every user's jobs as one account); poll_period is
 * unused since the engines batch their checks (one condor_q per check call).
 */
export type HTCondorConfig = ResolvedConfig['backend']['htcondor'];

export interface HTCondorBackendOptions extends BatchBackendOptions {
  config: HTCondorConfig;
}

/** Why a configuration would run every user's jobs as one account, or null when it does not. */
export function sharedAccountProblem(config: HTCondorConfig, singleUser: boolean): string | null {
  if (config.file_owner) {
    return "backend.htcondor.file_owner is no longer supported: it ran every user's jobs as one account. Jobs now run as each user's own account (see accounts); remove the key";
  }
  if (singleUser || prefixNamesAccount(config.command_prefix) || config.auth_method === 'scitokens') return null;
  return (
    "backend.htcondor would submit every user's jobs as the gateway's own account: put {account} (or {uid}/{gid}) in " +
    'backend.htcondor.command_prefix so that each user\'s jobs are submitted as their account (e.g. [sudo, -n, -u, "{account}", --]), ' +
    "or use auth_method: scitokens (the schedd maps each user's token to their account), or set backend.local.single_user: true for one person"
  );
}

interface JobHandle extends BatchJobHandle {
  kind: 'htcondor-job';
  /** The owner's token file (SciTokens authentication of condor_rm). */
  token: string | null;
}

/** The most job clusters one condor_q names in its constraint (about 25 bytes each on the command line). */
const MAX_NAMED_CLUSTERS = 1000;

export class HTCondorBackend extends BatchBackend<JobHandle> {
  readonly kind = 'htcondor';
  private readonly runner: CommandRunner;
  /** Jobs that left the queue: their last ClassAd from condor_history. */
  private readonly finished = new Map<string, JobAd>();

  constructor(private readonly opts: HTCondorBackendOptions) {
    super(opts, opts.config.scheduler_in_job);
    const problem = sharedAccountProblem(opts.config, opts.singleUser ?? false);
    if (problem) throw new Error(problem);
    this.runner = new CommandRunner({ prefix: opts.config.command_prefix, env: opts.config.environment, timeoutMs: opts.config.command_timeout * 1000 });
  }

  protected isJob(h: BackendHandle): h is JobHandle {
    return h.kind === 'htcondor-job';
  }

  /** condor_submit of a description (on stdin) as the account. */
  private submit(description: string, account: UserAccount, tokenFile: string | null) {
    return this.withToken(tokenFile, account, 'submit jobs', (env) =>
      this.runner.run(['condor_submit', '-terse', '-'], { as: account, env, input: description }),
    );
  }

  /**
   * Runs a condor command that acts for the owner (submit, remove) with the authentication
   * environment. With SciTokens the owner's token file must be there (the condor tools would
   * otherwise look for some token elsewhere: never a token the gateway did not choose), and a
   * refusal of the schedd becomes a message that says why and what to do.
   */
  private async withToken<T>(tokenFile: string | null, account: UserAccount, action: string, run: (env: Record<string, string>) => Promise<T>): Promise<T> {
    if (this.opts.config.auth_method !== 'scitokens') return run(this.authEnv(tokenFile));
    if (!tokenFile) throw noTokenError(action);
    // A new cluster's first token is being written alongside its scheduler's start.
    await this.tokenWritten(tokenFile);
    const claims = await readTokenClaims(tokenFile);
    if (!claims) throw noTokenError(action);
    try {
      return await run(this.authEnv(tokenFile));
    } catch (err) {
      throw explainRefusal(err, claims, account.name, action);
    }
  }

  /** Submits a description that queues `count` procs (of `what`): their job ids in order, or an error when the schedd queued another number. */
  private async submitQueue(description: string, account: UserAccount, tokenFile: string | null, count: number, what: string) {
    const ids = parseTerseSubmit((await this.submit(description, account, tokenFile)).stdout);
    const queued = ids.last - ids.first + 1;
    if (queued !== count) throw new Error(`condor_submit queued ${queued} jobs for ${count} ${what}`);
    return { clusterId: ids.clusterId, jobs: Array.from({ length: count }, (_, i) => `${ids.clusterId}.${ids.first + i}`) };
  }

  protected async submitScheduler(launch: SchedulerLaunch, account: UserAccount, jobDir: string): Promise<JobHandle> {
    const cfg = this.opts.config;
    const { cluster, files } = launch;
    const description = schedulerSubmitDescription({
      ...this.commonSpec(cluster, files, jobDir),
      apiToken: files.token,
      apiUrl: launch.apiUrl,
      host: cfg.scheduler_host,
      heartbeatPeriod: launch.heartbeatPeriod,
      adaptivePeriod: launch.adaptivePeriod,
      idleTimeout: cluster.settings.idle_timeout,
    });
    const { stdout } = await this.submit(description, account, files.bearerToken);
    const ids = parseTerseSubmit(stdout);
    this.opts.log.info({ cluster: cluster.name, job: `${ids.clusterId}.${ids.first}`, account: account.name }, 'submitted scheduler job');
    return {
      kind: 'htcondor-job',
      job: `${ids.clusterId}.${ids.first}`,
      cluster: cluster.name,
      worker: 'scheduler',
      log: join(jobDir, 'scheduler.log'),
      owner: cluster.username,
      uid: account.uid,
      token: files.bearerToken,
    };
  }

  private poolSettings(): PoolSettings {
    const cfg = this.opts.config;
    return {
      universe: cfg.universe,
      containerImage: cfg.container_image,
      requirements: cfg.requirements,
      accountingGroup: cfg.accounting_group,
      requestDisk: cfg.request_disk,
      extra: cfg.submit_extra,
    };
  }

  /** What every job of a cluster shares in its submit description. */
  private commonSpec(cluster: WorkerLaunch['cluster'], files: WorkerLaunch['files'], jobDir: string) {
    const cfg = this.opts.config;
    return {
      instance: this.instance,
      cluster: cluster.name,
      owner: cluster.username,
      python: cfg.python ?? this.opts.python,
      environment: cluster.settings.environment,
      workDir: files.dir,
      jobDir,
      cert: files.cert,
      key: files.key,
      bearerToken: files.bearerToken,
      sharedFilesystem: cfg.shared_filesystem,
      ...this.poolSettings(),
    };
  }

  protected async submitSteps(batch: StepLaunch[], account: UserAccount): Promise<JobHandle[]> {
    const first = batch[0]!;
    const { AF_WORKFLOW_STEP: _node, BEARER_TOKEN_FILE: tokenFile, ...env } = first.env;
    const description = stepSubmitDescription({
      instance: this.instance,
      run: first.run,
      owner: first.owner,
      steps: batch.map((p) => ({ node: p.node, dir: p.workdir })),
      environment: { PATH: stepBaseEnv().PATH ?? '/usr/bin:/bin', ...env },
      stepToken: !!tokenFile,
      image: first.image ?? null,
      cpus: first.cpus,
      memoryGiB: first.memory,
      ...this.poolSettings(),
    });
    // with SciTokens the submission authenticates with the owner's token the engine wrote for the steps (the same in each)
    const ids = await this.submitQueue(description, account, tokenFile ?? null, batch.length, 'steps');
    this.opts.log.info({ run: first.run, job_cluster: ids.clusterId, steps: batch.length, account: account.name }, 'submitted workflow step jobs');
    return batch.map((p, i): JobHandle => ({
      kind: 'htcondor-job',
      job: ids.jobs[i]!,
      cluster: '',
      worker: p.node,
      log: p.log,
      owner: first.owner,
      uid: account.uid,
      token: null,
    }));
  }

  protected describeJob(h: JobHandle): string {
    return `HTCondor job ${h.job}`;
  }

  /** The machine the schedd says the job runs on (the startd's addresses, its alias, the slot's machine). */
  protected async lookUpHosts(h: JobHandle): Promise<Set<string>> {
    return jobHosts((await this.queue(h.job)).get(h.job));
  }

  /**
   * Environment of condor_submit / condor_rm for a cluster owner's jobs (over the runner's minimal
   * one). The method is the client's only one: a facility's SEC_CLIENT_AUTHENTICATION_METHODS would
   * otherwise win over SEC_DEFAULT_AUTHENTICATION_METHODS, and the tools could authenticate as the
   * account they run as (FS, IDTOKENS of the gateway) instead of with the owner's token.
   */
  private authEnv(bearerTokenFile: string | null): Record<string, string> {
    const method = this.opts.config.auth_method;
    if (method === 'default') return {};
    const env: Record<string, string> = {
      _condor_SEC_DEFAULT_AUTHENTICATION_METHODS: method.toUpperCase(),
      _condor_SEC_CLIENT_AUTHENTICATION_METHODS: method.toUpperCase(),
    };
    if (method === 'scitokens' && bearerTokenFile) env._condor_SCITOKENS_FILE = bearerTokenFile;
    return env;
  }

  protected async submitWorkers(batch: WorkerLaunch[], account: UserAccount, jobDir: string): Promise<JobHandle[]> {
    // (one worker group's launches: they share the cluster's shape, GPUs and image)
    const { cluster, files, gpus, image } = batch[0]!;
    const description = workerSubmitDescription({
      ...this.commonSpec(cluster, files, jobDir),
      workerNames: batch.map((p) => p.worker.name),
      schedulerAddress: cluster.schedulerAddress,
      cores: cluster.settings.worker_cores,
      memoryGiB: cluster.settings.worker_memory,
      gpus: gpus ?? 0,
      image: image ?? null,
    });
    const ids = await this.submitQueue(description, account, files.bearerToken, batch.length, 'workers');
    this.opts.log.info({ cluster: cluster.name, job_cluster: ids.clusterId, workers: batch.length, account: account.name }, 'submitted worker jobs');
    return batch.map((p, i): JobHandle => ({
      kind: 'htcondor-job',
      job: ids.jobs[i]!,
      cluster: cluster.name,
      worker: p.worker.name,
      log: join(jobDir, `${p.worker.name}.log`),
      owner: cluster.username,
      uid: account.uid,
      token: files.bearerToken,
    }));
  }

  /** One condor_rm per account among the jobs (a user may remove only their own); jobs that already left the queue count as removed. */
  protected async stopJobs(jobs: JobHandle[]): Promise<void> {
    const groups = groupBy(jobs, (h) => JSON.stringify([h.owner ?? null, h.token ?? null]));
    const failures: unknown[] = [];
    await Promise.all(
      [...groups.values()].map(async (group) => {
        const { owner, token } = group[0]!.item;
        const ids = [...new Set(group.map((g) => g.item.job))];
        try {
          const account = await this.account(owner ?? undefined);
          await this.withToken(token ?? null, account, 'remove jobs', (env) => this.runner.run(['condor_rm', ...ids], { as: account, env }));
        } catch (err) {
          // Jobs that already left the queue make condor_rm complain; that is what we wanted.
          if (!/not found|Couldn't find|no jobs/i.test(errorMessage(err))) failures.push(err);
        }
      }),
    );
    if (failures.length) throw failures[0];
  }

  /** One condor_q for every job asked about; a job no longer queued is looked up in the history (once: its end does not change). */
  protected async checkJobs(jobs: JobHandle[]): Promise<ProcessState[]> {
    // Only the job clusters asked about: anyone can tag jobs with this gateway's instance, and a
    // flood of such jobs must not be what every check reads (and holds in memory). (Beyond
    // MAX_NAMED_CLUSTERS the constraint would outgrow a command line: every tagged job is listed.)
    const clusterIds = [...new Set(jobs.flatMap((h) => /^(\d+)\.\d+$/.exec(h.job)?.[1] ?? []))];
    const queued = !clusterIds.length
      ? new Map<string, JobAd>()
      : await this.queue(undefined, clusterIds.length <= MAX_NAMED_CLUSTERS ? clusterIds : undefined);
    const now = Date.now();
    const out: ProcessState[] = [];
    for (const h of jobs) {
      const ad = queued.get(h.job) ?? this.finished.get(h.job) ?? (await this.history(h.job));
      this.noteHosts(h, jobHosts(queued.get(h.job)));
      const state = jobState(ad, now);
      if (!state.alive && !ad?.HoldReason) state.detail = `${state.detail}; ${await userLogTail(h.log, h.uid ?? gatewayUid())}`;
      out.push(state);
    }
    return out;
  }

  /** One condor_q of this gateway's jobs (or of one of them, or of some job clusters), as the gateway's own account. */
  private async queue(job?: string, clusterIds?: string[]): Promise<Map<string, JobAd>> {
    const only = job ? /^(\d+)\.(\d+)$/.exec(job) : null;
    if (job && !only) throw new Error(`not an HTCondor job id: ${job}`);
    if (clusterIds?.some((id) => !/^\d+$/.test(id))) throw new Error('not HTCondor job cluster ids');
    const clusters = clusterIds ? ` && (${clusterIds.map((id) => `ClusterId == ${id}`).join(' || ')})` : '';
    const constraint = `AfGatewayInstance == ${classAdString(this.instance)}${only ? ` && ClusterId == ${only[1]} && ProcId == ${only[2]}` : clusters}`;
    const { stdout } = await this.runner.run(['condor_q', '-allusers', '-json', '-constraint', constraint, '-attributes', JOB_ATTRIBUTES.join(',')], {
      as: this.self,
    });
    return new Map(parseJobAds(stdout).map((ad) => [jobId(ad), ad]));
  }

  /** The last ClassAd of a job that left the queue (why it ended). */
  private async history(job: string): Promise<JobAd | undefined> {
    try {
      const { stdout } = await this.runner.run(['condor_history', '-json', '-limit', '1', '-attributes', JOB_ATTRIBUTES.join(','), job], { as: this.self });
      const ad = parseJobAds(stdout)[0];
      if (ad) this.finished.set(job, ad);
      return ad;
    } catch {
      return undefined;
    }
  }

  protected async removeOrphanJobs(live: BackendHandle[]): Promise<void> {
    const queued = await this.queue();
    const keep = new Set(live.filter((h) => this.isJob(h)).map((h) => h.job));
    // Workflow steps are the workflow engine's: it adopts them after a restart.
    const candidates = [...queued.entries()].filter(([id, ad]) => !keep.has(id) && !ad.AfGatewayWorkflow);
    const orphans: [string, string | undefined][] = [];
    for (const [id, ad] of candidates) {
      // Anyone can tag a job with this gateway's instance: only jobs whose Owner is the account of
      // the user they name are this gateway's to remove.
      const account = await this.account(ad.AfGatewayOwner).catch(() => null);
      if (!this.opts.singleUser && (!account || !ad.AfGatewayOwner || ad.Owner !== account.name)) {
        this.opts.log.warn(
          { job: id, owner: ad.Owner, tagged: ad.AfGatewayOwner },
          "an HTCondor job carries this gateway's tag but not its owner's account: left alone",
        );
        continue;
      }
      orphans.push([id, ad.AfGatewayOwner]);
    }
    if (orphans.length === 0) return;
    this.opts.log.warn({ jobs: orphans.map(([id]) => id) }, 'removing HTCondor jobs no cluster of this gateway owns');
    await this.stop(
      orphans.map(([job, owner]): JobHandle => ({ kind: 'htcondor-job', job, cluster: '', worker: '', log: '', owner: owner ?? null, uid: null, token: null })),
    );
  }
}
