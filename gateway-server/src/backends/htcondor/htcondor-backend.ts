// HTCondor backend: schedulers run as local processes (next to the gateway), workers as HTCondor
// jobs. Worker starts asked for together are submitted together (one cluster id, one proc per
// worker); one condor_q -json per poll answers every check; removals are batched into one condor_rm.
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, readdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { FastifyBaseLogger } from 'fastify';
import { instanceName, type Backend, type ProcessState, type SchedulerLaunch, type StepLaunch, type WorkerLaunch } from '../backend.js';
import type { BackendHandle } from '../../clusters/model.js';
import { CommandRunner } from '../batch/command-runner.js';
import { logTail, stepBaseEnv, type LocalBackend } from '../local/local-backend.js';
import { JOB_ATTRIBUTES, jobId, jobState, parseJobAds, parseTerseSubmit, type JobAd } from './condor-output.js';
import { classAdString, schedulerSubmitDescription, stepSubmitDescription, workerSubmitDescription, type PoolSettings } from './submit-description.js';
import { errorMessage } from '../../errors.js';

export interface HTCondorConfig {
  command_prefix: string[];
  environment: Record<string, string>;
  auth_method: 'default' | 'scitokens' | 'idtokens' | 'fs';
  python: string | null;
  universe: 'vanilla' | 'container' | 'docker';
  container_image: string | null;
  requirements: string | null;
  accounting_group: string | null;
  request_disk: string;
  submit_extra: Record<string, string>;
  shared_filesystem: boolean;
  file_owner: string | null;
  scheduler_host: string;
  scheduler_in_job: boolean;
  poll_period: number;
  command_timeout: number;
}

export interface HTCondorBackendOptions {
  config: HTCondorConfig;
  /** Runs the schedulers. */
  local: LocalBackend;
  python: string;
  dataDir: string;
  /** Where the state lives (StateStore.identity); the instance ClassAd value derives from it. */
  stateIdentity?: string;
  log: FastifyBaseLogger;
}

interface JobHandle extends BackendHandle {
  kind: 'htcondor-job';
  job: string;
  cluster: string;
  worker: string;
  log: string;
}

const isJob = (h: BackendHandle): h is JobHandle => h.kind === 'htcondor-job';

interface Pending<L> {
  launch: L;
  resolve: (h: BackendHandle) => void;
  reject: (e: unknown) => void;
}

/** Starts asked for within GATHER_MS under one key are submitted together (one job cluster). */
class Gathered<L> {
  private readonly pending = new Map<string, Pending<L>[]>();

  constructor(private readonly submit: (batch: Pending<L>[]) => Promise<void>) {}

  add(key: string, launch: L): Promise<BackendHandle> {
    return new Promise((resolve, reject) => {
      let batch = this.pending.get(key);
      if (!batch) {
        batch = [];
        this.pending.set(key, batch);
        setTimeout(() => {
          this.pending.delete(key);
          void this.submit(batch!);
        }, GATHER_MS);
      }
      batch.push({ launch, resolve, reject });
    });
  }
}

/** How long worker starts are gathered into one submission (a scale step asks for all at once). */
const GATHER_MS = 50;

export class HTCondorBackend implements Backend {
  readonly kind = 'htcondor';
  /** Tags every job of this gateway (its data directory identifies it across restarts). */
  readonly instance: string;
  private readonly runner: CommandRunner;
  private readonly workerStarts = new Gathered<WorkerLaunch>((batch) => this.submitWorkers(batch));
  private readonly stepStarts = new Gathered<StepLaunch>((batch) => this.submitSteps(batch));
  private readonly removals = new Map<string, { resolve: () => void; reject: (e: unknown) => void }[]>();
  private removalTimer: ReturnType<typeof setTimeout> | null = null;
  private jobs = new Map<string, JobAd>();
  private polledAt = 0;
  private polling: Promise<void> | null = null;
  /** Jobs that left the queue: their last ClassAd from condor_history. */
  private readonly finished = new Map<string, JobAd>();
  private readonly traversable = new Set<string>();

  constructor(private readonly opts: HTCondorBackendOptions) {
    this.instance = instanceName(opts.stateIdentity ?? resolve(opts.dataDir));
    this.runner = new CommandRunner({ prefix: opts.config.command_prefix, env: opts.config.environment, timeoutMs: opts.config.command_timeout * 1000 });
  }

  async startScheduler(launch: SchedulerLaunch): Promise<BackendHandle> {
    const cfg = this.opts.config;
    if (!cfg.scheduler_in_job) return this.opts.local.startScheduler(launch);
    const { cluster, files } = launch;
    await this.shareWorkDir(files.dir);
    const description = schedulerSubmitDescription({
      ...this.commonSpec(cluster, files),
      apiToken: files.token,
      apiUrl: launch.apiUrl,
      host: cfg.scheduler_host,
      heartbeatPeriod: launch.heartbeatPeriod,
      adaptivePeriod: launch.adaptivePeriod,
      idleTimeout: cluster.settings.idle_timeout,
    });
    const file = join(files.dir, 'scheduler.sub');
    await writeFile(file, description, { mode: 0o644 });
    const { stdout } = await this.runner.run(['condor_submit', '-terse', file], this.authEnv(files.bearerToken));
    const ids = parseTerseSubmit(stdout);
    this.opts.log.info({ cluster: cluster.name, job: `${ids.clusterId}.${ids.first}` }, 'submitted scheduler job');
    this.polledAt = 0;
    const handle: JobHandle = { kind: 'htcondor-job', job: `${ids.clusterId}.${ids.first}`, cluster: cluster.name, worker: 'scheduler', log: join(files.dir, 'scheduler.log') };
    return handle;
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
  private commonSpec(cluster: WorkerLaunch['cluster'], files: WorkerLaunch['files']) {
    const cfg = this.opts.config;
    return {
      instance: this.instance,
      cluster: cluster.name,
      owner: cluster.username,
      python: cfg.python ?? this.opts.python,
      environment: cluster.settings.environment,
      workDir: files.dir,
      cert: files.cert,
      key: files.key,
      bearerToken: files.bearerToken,
      sharedFilesystem: cfg.shared_filesystem,
      ...this.poolSettings(),
    };
  }

  /** A scale step's workers become one submission. */
  startWorker(launch: WorkerLaunch): Promise<BackendHandle> {
    return this.workerStarts.add(launch.cluster.name, launch);
  }

  /** Workflow steps started together (a stage's steps) become one submission. */
  startStep(launch: StepLaunch): Promise<BackendHandle> {
    const { AF_WORKFLOW_STEP: _step, ...shared } = launch.env;
    return this.stepStarts.add(`${launch.run}\u0000${launch.image ?? ''}\u0000${JSON.stringify(shared)}`, launch);
  }

  private async submitSteps(batch: Pending<StepLaunch>[]): Promise<void> {
    const first = batch[0]?.launch;
    if (!first) return;
    try {
      for (const p of batch) await this.shareStepDir(p.launch.workdir);
      const { AF_WORKFLOW_STEP: _node, ...env } = first.env;
      const description = stepSubmitDescription({
        instance: this.instance,
        run: first.run,
        owner: first.owner,
        steps: batch.map((p) => ({ node: p.launch.node, dir: p.launch.workdir })),
        environment: { PATH: stepBaseEnv().PATH ?? '/usr/bin:/bin', ...env },
        image: first.image ?? null,
        cpus: first.cpus,
        memoryGiB: first.memory,
        ...this.poolSettings(),
      });
      const file = join(dirname(first.workdir), `.af-submit-${randomBytes(6).toString('hex')}.sub`);
      await writeFile(file, description, { mode: 0o644 });
      const { stdout } = await this.runner.run(['condor_submit', '-terse', file], this.authEnv(null));
      const ids = parseTerseSubmit(stdout);
      if (ids.last - ids.first + 1 !== batch.length) throw new Error(`condor_submit queued ${ids.last - ids.first + 1} jobs for ${batch.length} steps`);
      this.opts.log.info({ run: first.run, job_cluster: ids.clusterId, steps: batch.length }, 'submitted workflow step jobs');
      batch.forEach((p, i) => {
        const handle: JobHandle = { kind: 'htcondor-job', job: `${ids.clusterId}.${ids.first + i}`, cluster: '', worker: p.launch.node, log: p.launch.log };
        p.resolve(handle);
      });
      this.polledAt = 0;
    } catch (err) {
      for (const p of batch) p.reject(err);
    }
  }

  /** backend.htcondor.file_owner as numbers, or null when the jobs' user is not configured. */
  private fileOwner(): [number, number] | null {
    const owner = this.opts.config.file_owner;
    if (!owner) return null;
    const [uid, gid] = owner.split(':').map(Number);
    if (!Number.isInteger(uid) || !Number.isInteger(gid)) throw new Error(`backend.htcondor.file_owner must be uid:gid, not ${owner}`);
    return [uid!, gid!];
  }

  /** The jobs' user writes in the step's directory; its parents only need to be traversable. */
  private async shareStepDir(dir: string): Promise<void> {
    const ids = this.fileOwner();
    if (!ids) return;
    const [uid, gid] = ids;
    // Below the gateway's data dir (0700) the jobs' user needs to pass through it; a workspace_root
    // elsewhere is the admin's shared filesystem and keeps its permissions.
    const data = resolve(this.opts.dataDir);
    if (dir.startsWith(data + '/') && !this.traversable.has(data)) {
      await chmod(data, 0o711).catch(() => undefined);
      this.traversable.add(data);
    }
    const chownTree = async (d: string): Promise<void> => {
      await chown(d, uid, gid);
      for (const e of await readdir(d, { withFileTypes: true })) {
        if (e.isDirectory()) await chownTree(join(d, e.name));
        else await chown(join(d, e.name), uid, gid).catch(() => undefined);
      }
    };
    await chownTree(dir);
  }

  describe(handle: BackendHandle): string {
    return isJob(handle) ? `HTCondor job ${handle.job}` : `process ${String(handle.pid)}`;
  }

  /** Environment of condor_submit / condor_rm for a cluster owner's jobs. */
  private authEnv(bearerTokenFile: string | null): Record<string, string> {
    const method = this.opts.config.auth_method;
    if (method === 'default') return {};
    const env: Record<string, string> = { _condor_SEC_DEFAULT_AUTHENTICATION_METHODS: method.toUpperCase() };
    if (method === 'scitokens' && bearerTokenFile) env._condor_SCITOKENS_FILE = bearerTokenFile;
    return env;
  }

  private async submitWorkers(batch: Pending<WorkerLaunch>[]): Promise<void> {
    const first = batch[0];
    if (!first) return;
    const { cluster, files } = first.launch;
    try {
      await this.shareWorkDir(files.dir);
      const description = workerSubmitDescription({
        ...this.commonSpec(cluster, files),
        workerNames: batch.map((p) => p.launch.worker.name),
        schedulerAddress: cluster.schedulerAddress,
        cores: cluster.settings.worker_cores,
        memoryGiB: cluster.settings.worker_memory,
      });
      const file = join(files.dir, `submit-${Date.now()}.sub`);
      await writeFile(file, description, { mode: 0o644 });
      const { stdout } = await this.runner.run(['condor_submit', '-terse', file], this.authEnv(files.bearerToken));
      const ids = parseTerseSubmit(stdout);
      if (ids.last - ids.first + 1 !== batch.length) throw new Error(`condor_submit queued ${ids.last - ids.first + 1} jobs for ${batch.length} workers`);
      this.opts.log.info({ cluster: cluster.name, job_cluster: ids.clusterId, workers: batch.length }, 'submitted worker jobs');
      batch.forEach((p, i) => {
        const handle: JobHandle = {
          kind: 'htcondor-job',
          job: `${ids.clusterId}.${ids.first + i}`,
          cluster: cluster.name,
          worker: p.launch.worker.name,
          log: join(files.dir, `${p.launch.worker.name}.log`),
        };
        p.resolve(handle);
      });
      this.polledAt = 0; // the next check looks at the queue again
    } catch (err) {
      for (const p of batch) p.reject(err);
    }
  }

  /** Lets the jobs' user read the cluster's files when the facility says who that is. */
  private async shareWorkDir(dir: string): Promise<void> {
    const ids = this.fileOwner();
    if (!ids) return;
    const [uid, gid] = ids;
    // The parents only need to be traversable (once); the cluster's directory becomes the jobs' own.
    for (const d of [resolve(this.opts.dataDir), dirname(dir)]) {
      if (this.traversable.has(d)) continue;
      await chmod(d, 0o711).catch(() => undefined);
      this.traversable.add(d);
    }
    await mkdir(dir, { recursive: true });
    await chown(dir, uid, gid);
    for (const f of await readdir(dir)) await chown(join(dir, f), uid, gid).catch(() => undefined);
  }

  async stop(handle: BackendHandle): Promise<void> {
    if (!isJob(handle)) return this.opts.local.stop(handle);
    const ad = this.jobs.get(handle.job);
    if (this.polledAt && !ad) return; // not in the queue any more
    await new Promise<void>((res, rej) => {
      const waiters = this.removals.get(handle.job) ?? [];
      waiters.push({ resolve: res, reject: rej });
      this.removals.set(handle.job, waiters);
      if (!this.removalTimer) this.removalTimer = setTimeout(() => void this.removeQueued(), GATHER_MS);
    });
  }

  private async removeQueued(): Promise<void> {
    this.removalTimer = null;
    const batch = new Map(this.removals);
    this.removals.clear();
    if (batch.size === 0) return;
    const ids = [...batch.keys()];
    try {
      await this.runner.run(['condor_rm', ...ids], this.authEnv(null));
    } catch (err) {
      // Jobs that already left the queue make condor_rm complain; that is what we wanted.
      if (!/not found|Couldn't find|no jobs/i.test(errorMessage(err))) {
        for (const w of batch.values()) for (const x of w) x.reject(err);
        return;
      }
    }
    for (const id of ids) this.jobs.delete(id);
    for (const w of batch.values()) for (const x of w) x.resolve();
  }

  async check(handle: BackendHandle): Promise<ProcessState> {
    if (!isJob(handle)) return this.opts.local.check(handle);
    await this.poll();
    const ad = this.jobs.get(handle.job) ?? this.finished.get(handle.job) ?? (await this.history(handle.job));
    const state = jobState(ad, Date.now());
    if (!state.alive && !ad?.HoldReason) state.detail = `${state.detail}; ${await logTail(handle.log)}`;
    return state;
  }

  /** One condor_q for every job of this gateway, at most once per poll period (concurrent checks share it). */
  private poll(): Promise<void> {
    if (Date.now() - this.polledAt < this.opts.config.poll_period * 1000) return Promise.resolve();
    this.polling ??= (async () => {
      try {
        const { stdout } = await this.runner.run([
          'condor_q', '-allusers', '-json',
          '-constraint', `AfGatewayInstance == ${classAdString(this.instance)}`,
          '-attributes', JOB_ATTRIBUTES.join(','),
        ]);
        this.jobs = new Map(parseJobAds(stdout).map((ad) => [jobId(ad), ad]));
        this.polledAt = Date.now();
      } finally {
        this.polling = null;
      }
    })();
    return this.polling;
  }

  /** The last ClassAd of a job that left the queue (why it ended). */
  private async history(job: string): Promise<JobAd | undefined> {
    try {
      const { stdout } = await this.runner.run(['condor_history', '-json', '-limit', '1', '-attributes', JOB_ATTRIBUTES.join(','), job]);
      const ad = parseJobAds(stdout)[0];
      if (ad) this.finished.set(job, ad);
      return ad;
    } catch {
      return undefined;
    }
  }

  async removeOrphans(live: BackendHandle[]): Promise<void> {
    this.polledAt = 0;
    await this.poll();
    const keep = new Set(live.filter(isJob).map((h) => h.job));
    // Workflow steps are the workflow engine's: it adopts them after a restart.
    const orphans = [...this.jobs.entries()].filter(([id, ad]) => !keep.has(id) && !ad.AfGatewayWorkflow).map(([id]) => id);
    if (orphans.length === 0) return;
    this.opts.log.warn({ jobs: orphans }, 'removing HTCondor jobs no cluster of this gateway owns');
    await Promise.all(orphans.map((job) => this.stop({ kind: 'htcondor-job', job, cluster: '', worker: '', log: '' })));
  }

  async close(): Promise<void> {
    await this.opts.local.close();
  }
}
