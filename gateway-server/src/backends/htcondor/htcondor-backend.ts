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
// The gateway hands the job's account exactly what its jobs need (see ../batch/handoff.ts):
//   data_dir/                 the gateway's (o+x only; its plain files closed to others)
//     clusters/               the gateway's (o+x only)
//       <cluster>/            the gateway's, 0710 with the account's group: no one else passes
//         dask.crt dask.pem api-token bearer-token    the account's, 0600
//         jobs/               the account's, 0700: initialdir, output, error and log of the jobs
//   a workflow step's directory (and what the engine wrote in it) becomes the account's, 0700.
// Submit descriptions go to condor_submit on stdin (no file a user could swap), and every condor
// command gets an environment built from scratch (../batch/command-runner.ts).
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, lchown, lstat, open, rename, unlink } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import type { FastifyBaseLogger } from 'fastify';
import type { ResolvedConfig } from '../../config.js';
import {
  addressesOnHosts,
  instanceName,
  type Backend,
  type SchedulerAddresses,
  type ClusterFiles,
  type ProcessState,
  type SchedulerLaunch,
  type StepLaunch,
  type WorkerLaunch,
} from '../backend.js';
import type { BackendHandle, ClusterRecord } from '../../clusters/model.js';
import { clusterFiles, writeClusterFiles } from '../../clusters/cluster-files.js';
import type { AccountResolver, UserAccount } from '../../accounts/accounts.js';
import { CommandRunner, prefixNamesAccount } from '../batch/command-runner.js';
import { assertGatewayPath, gatewayUid, handFileTo, handTreeTo, makeTraversable, ownedSubdir, removeTree, userLogTail } from '../batch/handoff.js';
import { stepBaseEnv, type LocalBackend } from '../local/local-backend.js';
import { JOB_ATTRIBUTES, jobHosts, jobId, jobState, parseJobAds, parseTerseSubmit, type JobAd } from './condor-output.js';
import { classAdString, schedulerSubmitDescription, stepSubmitDescription, workerSubmitDescription, type PoolSettings } from './submit-description.js';
import { explainRefusal, noTokenError, readTokenClaims } from './scitokens.js';
import { AppError, errorMessage } from '../../errors.js';

/**
 * The HTCondor backend's settings (backend.htcondor), as the config schema types them with their
 * defaults filled. file_owner is refused (it ran every user's jobs as one account); poll_period is
 * unused since the engines batch their checks (one condor_q per check call).
 */
export type HTCondorConfig = ResolvedConfig['backend']['htcondor'];

export interface HTCondorBackendOptions {
  config: HTCondorConfig;
  /** Runs the schedulers. */
  local: LocalBackend;
  python: string;
  dataDir: string;
  /** Where the state lives (StateStore.identity); the instance ClassAd value derives from it. */
  stateIdentity?: string;
  log: FastifyBaseLogger;
  /** The POSIX account of each gateway user: their jobs run as it. */
  accounts: AccountResolver;
  /** backend.local.single_user: every job is the gateway's own account's (one person, loopback). */
  singleUser?: boolean;
  /** Where workflow runs keep their directories (workflows.workspace_root); default data_dir/workflows. */
  workspaceRoot?: string;
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

interface JobHandle extends BackendHandle {
  kind: 'htcondor-job';
  job: string;
  cluster: string;
  worker: string;
  log: string;
  // (handles recorded before these existed lack them: read with ?? fallbacks)
  /** The gateway user the job is for (its account submits and removes it). */
  owner: string | null;
  /** The uid of that account: the owner a log tail must have. */
  uid: number | null;
  /** The owner's token file (SciTokens authentication of condor_rm). */
  token: string | null;
}

const isJob = (h: BackendHandle): h is JobHandle => h.kind === 'htcondor-job';

/** The most job clusters one condor_q names in its constraint (about 25 bytes each on the command line). */
const MAX_NAMED_CLUSTERS = 1000;

/** How often heartbeats of schedulers not yet seen running may make the queue be looked at early. */
const FORCED_POLL_MS = 1000;

/** Puts items in groups by key, keeping each item's index in the list it came from. */
function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, { item: T; index: number }[]> {
  const groups = new Map<string, { item: T; index: number }[]>();
  items.forEach((item, index) => {
    const k = key(item);
    let g = groups.get(k);
    if (!g) groups.set(k, (g = []));
    g.push({ item, index });
  });
  return groups;
}

const asError = (err: unknown) => (err instanceof Error ? err : new Error(String(err)));

export class HTCondorBackend implements Backend {
  readonly kind = 'htcondor';
  /** Tags every job of this gateway (its data directory identifies it across restarts). */
  readonly instance: string;
  private readonly runner: CommandRunner;
  /** Where each scheduler job was last seen running (by check), for heartbeats' addresses. */
  private readonly schedulerHosts = new Map<string, Set<string>>();
  /** When a heartbeat last made the queue be looked at before its time (schedulerAddresses). */
  private lookedUpAt = 0;
  /** Jobs that left the queue: their last ClassAd from condor_history. */
  private readonly finished = new Map<string, JobAd>();
  /** The gateway's own account: queries (condor_q, condor_history) act for it, and every job in single-user mode. */
  private readonly self: UserAccount;
  private readonly dataDir: string;
  private readonly workspaceRoot: string;
  /** Token files the broker is writing (writeBearerToken): a submission with one waits for it. */
  private readonly tokenWrites = new Map<string, Promise<void>>();

  constructor(private readonly opts: HTCondorBackendOptions) {
    const problem = sharedAccountProblem(opts.config, opts.singleUser ?? false);
    if (problem) throw new Error(problem);
    this.instance = instanceName(opts.stateIdentity ?? resolve(opts.dataDir));
    this.runner = new CommandRunner({ prefix: opts.config.command_prefix, env: opts.config.environment, timeoutMs: opts.config.command_timeout * 1000 });
    const me = userInfo();
    this.self = { name: me.username, uid: me.uid, gid: me.gid, home: me.homedir };
    this.dataDir = resolve(opts.dataDir);
    this.workspaceRoot = resolve(opts.workspaceRoot ?? join(opts.dataDir, 'workflows'));
  }

  /** The account a user's jobs run as. */
  private account(user: string | undefined): Promise<UserAccount> {
    if (this.opts.singleUser || user === undefined) return Promise.resolve(this.self);
    return this.opts.accounts.resolve(user);
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
    await this.tokenWrites.get(tokenFile)?.catch(() => undefined);
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

  async startScheduler(launch: SchedulerLaunch): Promise<BackendHandle> {
    const cfg = this.opts.config;
    if (!cfg.scheduler_in_job) return this.opts.local.startScheduler(launch);
    const { cluster, files } = launch;
    const account = await this.account(cluster.username);
    const jobDir = await this.shareWorkDir(files, account);
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
    const handle: JobHandle = {
      kind: 'htcondor-job',
      job: `${ids.clusterId}.${ids.first}`,
      cluster: cluster.name,
      worker: 'scheduler',
      log: join(jobDir, 'scheduler.log'),
      owner: cluster.username,
      uid: account.uid,
      token: files.bearerToken,
    };
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

  /** One condor_submit per cluster among the launches (its owner's account submits it). */
  async startWorkers(launches: WorkerLaunch[]): Promise<Array<BackendHandle | Error>> {
    const out = new Array<BackendHandle | Error>(launches.length);
    await Promise.all(
      [...groupBy(launches, (l) => l.cluster.name).values()].map(async (group) => {
        const batch = group.map((g) => g.item);
        const results = await this.submitWorkers(batch).catch((err: unknown) => batch.map(() => asError(err)));
        group.forEach((g, i) => (out[g.index] = results[i]!));
      }),
    );
    return out;
  }

  /** Steps of one run with the same image and environment (a stage's steps) become one submission. */
  async startSteps(launches: StepLaunch[]): Promise<Array<BackendHandle | Error>> {
    const out = new Array<BackendHandle | Error>(launches.length);
    const key = (l: StepLaunch) => {
      const { AF_WORKFLOW_STEP: _step, ...shared } = l.env;
      return `${l.run}\u0000${l.owner}\u0000${l.image ?? ''}\u0000${l.cpus}\u0000${l.memory}\u0000${JSON.stringify(shared)}`;
    };
    await Promise.all(
      [...groupBy(launches, key).values()].map(async (group) => {
        const batch = group.map((g) => g.item);
        const results = await this.submitSteps(batch).catch((err: unknown) => batch.map(() => asError(err)));
        group.forEach((g, i) => (out[g.index] = results[i]!));
      }),
    );
    return out;
  }

  private async submitSteps(batch: StepLaunch[]): Promise<BackendHandle[]> {
    const first = batch[0]!;
    const account = await this.account(first.owner);
    for (const p of batch) await this.shareStepDir(p.workdir, account);
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

  /**
   * A run's new workspace (the gateway's): its owner's steps pass through it to their directories
   * (root:<the account's group>, 0710); no other user enters it.
   */
  async shareRunWorkspace(dir: string, owner: string): Promise<void> {
    const account = await this.account(owner);
    if (account.uid === gatewayUid()) return;
    await this.passableFor(resolve(dir), account);
  }

  /** A directory of the gateway's that the account (its group) may pass through and no one else. */
  private async passableFor(dir: string, account: UserAccount): Promise<void> {
    const root = this.workspaceRoot;
    await assertGatewayPath(root, dir);
    const s = await lstat(dir);
    if (s.gid !== account.gid || (s.mode & 0o7777) !== 0o710) {
      await chmod(dir, 0o710); // the gateway's, checked just above (its parents too)
      await lchown(dir, gatewayUid(), account.gid);
    }
    if (root.startsWith(this.dataDir + sep)) await makeTraversable(this.dataDir);
    await makeTraversable(root);
  }

  /**
   * A step's directory, built by the workflow engine, becomes the account's (setgid, 02700: what
   * the engine writes in it later is the account's group's) before its first job exists; a retry
   * finds it the account's already and leaves it as it is (never walked again: the earlier attempt
   * may have planted links anywhere in it).
   */
  private async shareStepDir(dir: string, account: UserAccount): Promise<void> {
    if (account.uid === gatewayUid()) return; // single-user: the jobs are the gateway's own
    const root = this.workspaceRoot;
    const rel = relative(root, resolve(dir));
    if (rel === '' || rel.startsWith('..') || rel.startsWith(sep)) throw new Error(`the step directory ${dir} is not below the workspace root ${root}`);
    // Nothing between the workspace root and the step's directory may be a user's (or a link).
    await assertGatewayPath(root, dirname(resolve(dir)));
    // The run's directory: the step's account passes through it (when the engine did not ask yet).
    const workspace = join(root, rel.split(sep)[0]!);
    if (workspace !== resolve(dir)) await this.passableFor(workspace, account);
    await handTreeTo(resolve(dir), account, 0o2700);
  }

  describe(handle: BackendHandle): string {
    return isJob(handle) ? `HTCondor job ${handle.job}` : `process ${String(handle.pid)}`;
  }

  /**
   * A scheduler in a job may only name the machine the schedd says its job runs on (the startd's
   * addresses, its alias, the slot's machine); one next to the gateway is the local backend's.
   * The first heartbeat can beat the next poll, so a job not yet seen running is looked up once more.
   */
  async schedulerAddresses(c: ClusterRecord, reported: SchedulerAddresses): Promise<SchedulerAddresses> {
    const h = c.scheduler;
    if (!this.opts.config.scheduler_in_job) return this.opts.local.schedulerAddresses(c, reported);
    if (!h || !isJob(h)) throw new AppError(409, 'not_running', `Cluster ${c.name} has no scheduler job yet`);
    let hosts = this.schedulerHosts.get(h.job) ?? new Set<string>();
    if (!hosts.size && Date.now() - this.lookedUpAt >= FORCED_POLL_MS) {
      // Not seen running yet (a forged report for a running job does not make the gateway ask again;
      // nor, more than once a second, one for a job that stays idle: its owner holds the API token).
      this.lookedUpAt = Date.now();
      hosts = jobHosts((await this.queue(h.job)).get(h.job));
      this.noteHosts(h, hosts);
    }
    return addressesOnHosts(reported, hosts, `HTCondor job ${h.job}`);
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

  private async submitWorkers(batch: WorkerLaunch[]): Promise<BackendHandle[]> {
    const { cluster, files } = batch[0]!;
    const account = await this.account(cluster.username);
    const jobDir = await this.shareWorkDir(files, account);
    const description = workerSubmitDescription({
      ...this.commonSpec(cluster, files, jobDir),
      workerNames: batch.map((p) => p.worker.name),
      schedulerAddress: cluster.schedulerAddress,
      cores: cluster.settings.worker_cores,
      memoryGiB: cluster.settings.worker_memory,
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

  /**
   * Gives the account what its jobs need of the cluster's directory and returns the jobs' own
   * directory. The cluster's directory stays the gateway's (the token broker keeps writing the
   * owner's token there), open only to the account's group; the TLS files and tokens become the
   * account's (0600) and the jobs write in jobs/ (the account's, 0700). A directory that is the
   * account's already (handed over by the local backend's launcher) is used as it is.
   */
  private async shareWorkDir(files: ClusterFiles, account: UserAccount): Promise<string> {
    const jobDir = join(files.dir, 'jobs');
    const me = gatewayUid();
    if (account.uid === me) {
      await ownedSubdir(jobDir, account);
      return jobDir;
    }
    const dir = resolve(files.dir);
    const s = await lstat(dir);
    if (!s.isDirectory()) throw new Error(`refusing the cluster directory ${dir}: not a directory (a link?)`);
    if (s.uid === account.uid) return dir; // the account's own: used as it is, nothing in it touched
    if (s.uid !== me) throw new Error(`refusing the cluster directory ${dir}: it belongs to uid ${s.uid}`);
    await assertGatewayPath(this.dataDir, dir);
    for (const f of [files.cert, files.key, files.token, files.bearerToken]) await handFileTo(f, account);
    await ownedSubdir(jobDir, account);
    if (s.gid !== account.gid || (s.mode & 0o777) !== 0o710) {
      await chmod(dir, 0o710); // a directory of the gateway's, checked just above
      await lchown(dir, me, account.gid);
    }
    await makeTraversable(this.dataDir);
    await makeTraversable(dirname(dir));
    return jobDir;
  }

  /**
   * With scheduler_in_job: false on a multi-user gateway the schedulers run through the local
   * backend's per-user launcher, which keeps the cluster's files in the owner's directory, written
   * as the owner: the worker jobs then use that directory as it is.
   */
  private filesAreLocal(): boolean {
    return !this.opts.config.scheduler_in_job && this.opts.local.multiUser === true && typeof this.opts.local.writeClusterFiles === 'function';
  }

  /** Where a new cluster's files go; a user without a usable account is refused (403) before anything exists. */
  async clusterWorkDir(c: ClusterRecord): Promise<string> {
    if (this.filesAreLocal() && this.opts.local.clusterWorkDir) return this.opts.local.clusterWorkDir(c);
    await this.account(c.username);
    return c.workDir;
  }

  async writeClusterFiles(c: ClusterRecord): Promise<ClusterFiles> {
    if (this.filesAreLocal()) return this.opts.local.writeClusterFiles(c);
    return writeClusterFiles(c); // under the gateway's data dir; handed over before the first job
  }

  /**
   * Removes a cluster's files (the secrets only when its logs are kept). jobs/ is the account's: it
   * goes without following anything its jobs planted (removeTree).
   */
  async removeClusterFiles(c: ClusterRecord, keepLogs: boolean): Promise<void> {
    const files = clusterFiles(c);
    const dir = resolve(files.dir);
    if (!dir.startsWith(this.dataDir + sep)) {
      if (this.opts.local.removeClusterFiles) return this.opts.local.removeClusterFiles(c, keepLogs);
      throw new Error(`the cluster directory ${dir} is not the gateway's`);
    }
    await assertGatewayPath(this.dataDir, dirname(dir));
    if (!keepLogs) return removeTree(dir);
    for (const f of [files.cert, files.key, files.token, files.bearerToken]) {
      await unlink(f).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
    }
  }

  /** Replaces the owner's token file, readable by the jobs' account at once (never written through a link). */
  writeBearerToken(c: ClusterRecord, token: string): Promise<void> {
    // Submissions with this file wait for the write (SciTokens: the first one is the scheduler's).
    const file = clusterFiles(c).bearerToken;
    const writing = this.replaceBearerToken(c, token);
    this.tokenWrites.set(file, writing);
    const forget = () => {
      if (this.tokenWrites.get(file) === writing) this.tokenWrites.delete(file);
    };
    writing.then(forget, forget);
    return writing;
  }

  private async replaceBearerToken(c: ClusterRecord, token: string): Promise<void> {
    if (this.filesAreLocal() && this.opts.local.writeBearerToken) return this.opts.local.writeBearerToken(c, token);
    const account = await this.account(c.username);
    const files = clusterFiles(c);
    await assertGatewayPath(this.dataDir, resolve(files.dir));
    const tmp = join(files.dir, `.bearer-token.${randomBytes(6).toString('hex')}.tmp`);
    const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      await fh.writeFile(token + '\n');
      if (account.uid !== gatewayUid()) await fh.chown(account.uid, account.gid);
    } finally {
      await fh.close();
    }
    await rename(tmp, files.bearerToken);
  }

  /** The token broker wrote a fresh owner's token (as the gateway): the jobs' account must read it. */
  async updateToken(c: ClusterRecord): Promise<void> {
    if (this.filesAreLocal()) return; // the local backend wrote it as the owner
    const account = await this.account(c.username);
    if (account.uid === gatewayUid()) return;
    const files = clusterFiles(c);
    await assertGatewayPath(this.dataDir, resolve(files.dir));
    await handFileTo(files.bearerToken, account);
  }

  /**
   * One condor_rm per account among the handles (a user may remove only their own jobs); jobs that
   * already left the queue count as removed. Schedulers next to the gateway are the local backend's.
   */
  async stop(handles: BackendHandle[]): Promise<void> {
    const jobs = handles.filter(isJob);
    const local = handles.filter((h) => !isJob(h));
    const groups = groupBy(jobs, (h) => JSON.stringify([h.owner ?? null, h.token ?? null]));
    const failures: unknown[] = [];
    await Promise.all([
      local.length ? this.opts.local.stop(local).catch((err: unknown) => failures.push(err)) : undefined,
      ...[...groups.values()].map(async (group) => {
        const { owner, token } = group[0]!.item;
        const ids = [...new Set(group.map((g) => g.item.job))];
        try {
          const account = await this.account(owner ?? undefined);
          await this.withToken(token ?? null, account, 'remove jobs', (env) => this.runner.run(['condor_rm', ...ids], { as: account, env }));
        } catch (err) {
          // Jobs that already left the queue make condor_rm complain; that is what we wanted.
          if (!/not found|Couldn't find|no jobs/i.test(errorMessage(err))) failures.push(err);
        }
        for (const id of ids) this.schedulerHosts.delete(id);
      }),
    ]);
    if (failures.length) throw failures[0];
  }

  /**
   * One condor_q for every job of this gateway answers every job handle; a job no longer queued is
   * looked up in the history (once: its end does not change). Local handles go to the local backend.
   */
  async check(handles: BackendHandle[]): Promise<ProcessState[]> {
    const out = new Array<ProcessState>(handles.length);
    const local = handles.map((h, i) => ({ h, i })).filter(({ h }) => !isJob(h));
    if (local.length) {
      const states = await this.opts.local.check(local.map(({ h }) => h));
      local.forEach(({ i }, k) => (out[i] = states[k]!));
    }
    const jobs = handles.map((h, i) => ({ h, i })).filter((x): x is { h: JobHandle; i: number } => isJob(x.h));
    if (!jobs.length) return out;
    // Only the job clusters asked about: anyone can tag jobs with this gateway's instance, and a
    // flood of such jobs must not be what every check reads (and holds in memory). (Beyond
    // MAX_NAMED_CLUSTERS the constraint would outgrow a command line: every tagged job is listed.)
    const clusterIds = [...new Set(jobs.flatMap(({ h }) => /^(\d+)\.\d+$/.exec(h.job)?.[1] ?? []))];
    const queued = !clusterIds.length
      ? new Map<string, JobAd>()
      : await this.queue(undefined, clusterIds.length <= MAX_NAMED_CLUSTERS ? clusterIds : undefined);
    const now = Date.now();
    for (const { h, i } of jobs) {
      const ad = queued.get(h.job) ?? this.finished.get(h.job) ?? (await this.history(h.job));
      this.noteHosts(h, jobHosts(queued.get(h.job)));
      const state = jobState(ad, now);
      if (!state.alive && !ad?.HoldReason) state.detail = `${state.detail}; ${await userLogTail(h.log, h.uid ?? gatewayUid())}`;
      out[i] = state;
    }
    return out;
  }

  /** Remembers where a scheduler job runs (forgets it once it does not). */
  private noteHosts(h: JobHandle, hosts: Set<string>): void {
    if (h.worker !== 'scheduler') return;
    if (hosts.size) this.schedulerHosts.set(h.job, hosts);
    else this.schedulerHosts.delete(h.job);
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

  async removeOrphans(live: BackendHandle[]): Promise<void> {
    const queued = await this.queue();
    const keep = new Set(live.filter(isJob).map((h) => h.job));
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

  async close(): Promise<void> {
    await this.opts.local.close();
  }
}
