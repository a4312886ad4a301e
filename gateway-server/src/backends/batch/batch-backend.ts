// What every batch-system backend (HTCondor, Slurm) shares: jobs of the cluster owner's account,
// schedulers either next to the gateway (the local backend) or in a job, the engines' lists turned
// into one submission per cluster (workers) or per stage (steps), and the cluster's files handed to
// the jobs' account without ever acting through a path that account controls. A subclass adds only
// its command builder and output parser: how a batch is submitted, checked, stopped and described.
//
// What the account gets of the gateway's directories (see ./handoff.ts):
//   data_dir/                 the gateway's (o+x only; its plain files closed to others)
//     clusters/               the gateway's (o+x only)
//       <cluster>/            the gateway's, 0710 with the account's group: no one else passes
//         dask.crt dask.pem api-token bearer-token    the account's, 0600
//         jobs/               the account's, 0700: the jobs' working directory and logs
//   a workflow step's directory (and what the engine wrote in it) becomes the account's, 02700.
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, lchown, lstat, open, rename, unlink } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import type { FastifyBaseLogger } from 'fastify';
import {
  addressesOnHosts,
  instanceName,
  type Backend,
  type ClusterFiles,
  type ProcessState,
  type SchedulerAddresses,
  type SchedulerLaunch,
  type StepLaunch,
  type WorkerLaunch,
} from '../backend.js';
import type { BackendHandle, ClusterRecord } from '../../clusters/model.js';
import { clusterFiles, writeClusterFiles } from '../../clusters/cluster-files.js';
import type { AccountResolver, UserAccount } from '../../accounts/accounts.js';
import type { LocalBackend } from '../local/local-backend.js';
import { AppError } from '../../errors.js';
import { assertGatewayPath, gatewayUid, handFileTo, handTreeTo, makeTraversable, ownedSubdir, removeTree } from './handoff.js';

export interface BatchBackendOptions {
  /** Runs the schedulers that stay next to the gateway. */
  local: LocalBackend;
  python: string;
  dataDir: string;
  /** Where the state lives (StateStore.identity); the instance tag of the jobs derives from it. */
  stateIdentity?: string;
  log: FastifyBaseLogger;
  /** The POSIX account of each gateway user: their jobs run as it. */
  accounts: AccountResolver;
  /** backend.local.single_user: every job is the gateway's own account's (one person, loopback). */
  singleUser?: boolean;
  /** Where workflow runs keep their directories (workflows.workspace_root); default data_dir/workflows. */
  workspaceRoot?: string;
}

/** What every batch job handle records (handles recorded before a field existed may lack it: read with ?? fallbacks). */
export interface BatchJobHandle extends BackendHandle {
  job: string;
  /** The cluster's name ('' for a workflow step). */
  cluster: string;
  /** The worker's name, 'scheduler', or the step's node id. */
  worker: string;
  log: string;
  /** The gateway user the job is for (its account submits and removes it). */
  owner: string | null;
  /** The uid of that account: the owner a log tail must have. */
  uid: number | null;
}

/** Puts items in groups by key, keeping each item's index in the list it came from. */
export function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, { item: T; index: number }[]> {
  const groups = new Map<string, { item: T; index: number }[]>();
  items.forEach((item, index) => {
    const k = key(item);
    let g = groups.get(k);
    if (!g) groups.set(k, (g = []));
    g.push({ item, index });
  });
  return groups;
}

export const asError = (err: unknown): Error => (err instanceof Error ? err : new Error(String(err)));

/**
 * Runs `submit` once per group of `items` (by `key`) and puts each group's results back in the
 * items' places; a group whose submission fails fails only its own items.
 */
export async function submitInGroups<T, R>(items: readonly T[], key: (item: T) => string, submit: (batch: T[]) => Promise<R[]>): Promise<Array<R | Error>> {
  const out = new Array<R | Error>(items.length);
  await Promise.all(
    [...groupBy(items, key).values()].map(async (group) => {
      const batch = group.map((g) => g.item);
      const results = await submit(batch).catch((err: unknown) => batch.map(() => asError(err)));
      group.forEach((g, i) => (out[g.index] = results[i]!));
    }),
  );
  return out;
}

/**
 * The key that puts a run's steps with the same owner, image, resources and environment (a stage's
 * steps) into one submission. A step's own variables (its node id, its token file in its own
 * directory) do not split it: each backend's submission gives every step its own.
 */
export function stepGroupKey(l: StepLaunch): string {
  const { AF_WORKFLOW_STEP: _step, BEARER_TOKEN_FILE: _token, ...shared } = l.env;
  return `${l.run}\u0000${l.owner}\u0000${l.image ?? ''}\u0000${l.cpus}\u0000${l.memory}\u0000${JSON.stringify(shared)}`;
}

/** How often heartbeats of schedulers not yet seen running may make the queue be looked at early. */
const FORCED_POLL_MS = 1000;

export abstract class BatchBackend<H extends BatchJobHandle> implements Backend {
  abstract readonly kind: string;
  /** Tags every job of this gateway (its data directory identifies it across restarts). */
  readonly instance: string;
  /** The gateway's own account: queries act for it, and every job in single-user mode. */
  protected readonly self: UserAccount;
  protected readonly dataDir: string;
  protected readonly workspaceRoot: string;
  /** Where each scheduler job was last seen running (by check), for heartbeats' addresses. */
  private readonly schedulerHosts = new Map<string, Set<string>>();
  /** When a heartbeat last made the queue be looked at before its time (schedulerAddresses). */
  private lookedUpAt = 0;
  /** Token files the broker is writing (writeBearerToken): a submission with one waits for it. */
  private readonly tokenWrites = new Map<string, Promise<void>>();

  constructor(
    protected readonly batch: BatchBackendOptions,
    /** Whether schedulers run as jobs (else next to the gateway, through the local backend). */
    protected readonly schedulerInJob: boolean,
  ) {
    this.instance = instanceName(batch.stateIdentity ?? resolve(batch.dataDir));
    const me = userInfo();
    this.self = { name: me.username, uid: me.uid, gid: me.gid, home: me.homedir };
    this.dataDir = resolve(batch.dataDir);
    this.workspaceRoot = resolve(batch.workspaceRoot ?? join(batch.dataDir, 'workflows'));
  }

  /** Whether a handle is one of this backend's jobs (else a scheduler of the local backend). */
  protected abstract isJob(h: BackendHandle): h is H;
  /** Submits a cluster's scheduler as a job of `account`, whose jobs work in `jobDir`. */
  protected abstract submitScheduler(launch: SchedulerLaunch, account: UserAccount, jobDir: string): Promise<H>;
  /** Submits the workers of one cluster (one scale step): one handle per launch, in order. */
  protected abstract submitWorkers(batch: WorkerLaunch[], account: UserAccount, jobDir: string): Promise<H[]>;
  /** Submits a stage's steps (their directories are the account's already): one handle per launch, in order. */
  protected abstract submitSteps(batch: StepLaunch[], account: UserAccount): Promise<H[]>;
  /** Removes the jobs (gone is removed). */
  protected abstract stopJobs(jobs: H[]): Promise<void>;
  /** One state per job, in order. */
  protected abstract checkJobs(jobs: H[]): Promise<ProcessState[]>;
  /** Where a scheduler job runs now, asked of the batch system (empty while it does not run). */
  protected abstract lookUpHosts(h: H): Promise<Set<string>>;
  /** What runs a job handle, for people. */
  protected abstract describeJob(h: H): string;
  /** After a restart: removes this gateway's jobs that no live handle refers to. */
  protected abstract removeOrphanJobs(live: BackendHandle[]): Promise<void>;

  /**
   * After a restart: this backend's orphaned jobs, and the orphaned schedulers it ran next to the
   * gateway through the local backend (which the engine never asks itself when the main backend is a
   * batch system and schedulers run next to it). The local backend's search is safe to run more than once.
   */
  async removeOrphans(live: BackendHandle[]): Promise<void> {
    const failures: unknown[] = [];
    await Promise.all([
      this.removeOrphanJobs(live).catch((err: unknown) => failures.push(err)),
      this.schedulerInJob ? undefined : this.batch.local.removeOrphans(live.filter((h) => !this.isJob(h))).catch((err: unknown) => failures.push(err)),
    ]);
    if (failures.length) throw failures[0];
  }

  /** The account a user's jobs run as. */
  protected account(user: string | undefined): Promise<UserAccount> {
    if (this.batch.singleUser || user === undefined) return Promise.resolve(this.self);
    return this.batch.accounts.resolve(user);
  }

  async startScheduler(launch: SchedulerLaunch): Promise<BackendHandle> {
    if (!this.schedulerInJob) return this.batch.local.startScheduler(launch);
    const account = await this.account(launch.cluster.username);
    const jobDir = await this.shareWorkDir(launch.files, account);
    return this.submitScheduler(launch, account, jobDir);
  }

  /** One submission per cluster and worker shape among the launches (its owner's account submits it). */
  startWorkers(launches: WorkerLaunch[]): Promise<Array<BackendHandle | Error>> {
    return submitInGroups(
      launches,
      // (the engine starts one group's workers per call; launches of several groups never share a submission's size, GPUs or image)
      (l) => JSON.stringify([l.cluster.name, l.worker.group, l.gpus ?? 0, l.image ?? null]),
      async (batch) => {
        const account = await this.account(batch[0]!.cluster.username);
        const jobDir = await this.shareWorkDir(batch[0]!.files, account);
        return this.submitWorkers(batch, account, jobDir);
      },
    );
  }

  /** Steps of one run with the same image and environment (a stage's steps) become one submission. */
  startSteps(launches: StepLaunch[]): Promise<Array<BackendHandle | Error>> {
    return submitInGroups(launches, stepGroupKey, async (batch) => {
      const account = await this.account(batch[0]!.owner);
      for (const p of batch) await this.shareStepDir(p.workdir, account);
      return this.submitSteps(batch, account);
    });
  }

  /** Stops the jobs among the handles (the subclass's gathered removal) and the local schedulers. */
  async stop(handles: BackendHandle[]): Promise<void> {
    const jobs = handles.filter((h) => this.isJob(h));
    const local = handles.filter((h) => !this.isJob(h));
    const failures: unknown[] = [];
    await Promise.all([
      local.length ? this.batch.local.stop(local).catch((err: unknown) => failures.push(err)) : undefined,
      jobs.length ? this.stopJobs(jobs).catch((err: unknown) => failures.push(err)) : undefined,
    ]);
    for (const h of jobs) this.schedulerHosts.delete(h.job);
    if (failures.length) throw failures[0];
  }

  /** One query of the batch system for every job handle; local handles go to the local backend. */
  async check(handles: BackendHandle[]): Promise<ProcessState[]> {
    const out = new Array<ProcessState>(handles.length);
    const local = handles.map((h, i) => ({ h, i })).filter(({ h }) => !this.isJob(h));
    if (local.length) {
      const states = await this.batch.local.check(local.map(({ h }) => h));
      local.forEach(({ i }, k) => (out[i] = states[k]!));
    }
    const jobs = handles.map((h, i) => ({ h, i })).filter((x): x is { h: H; i: number } => this.isJob(x.h));
    if (!jobs.length) return out;
    const states = await this.checkJobs(jobs.map(({ h }) => h));
    jobs.forEach(({ i }, k) => (out[i] = states[k]!));
    return out;
  }

  /** Remembers where a scheduler job runs (forgets it once it does not); checkJobs calls it with what the query said. */
  protected noteHosts(h: H, hosts: Set<string>): void {
    if (h.worker !== 'scheduler') return;
    if (hosts.size) this.schedulerHosts.set(h.job, hosts);
    else this.schedulerHosts.delete(h.job);
  }

  describe(handle: BackendHandle): string {
    return this.isJob(handle) ? this.describeJob(handle) : `process ${String(handle.pid)}`;
  }

  /**
   * A scheduler in a job may only name the machine the batch system says its job runs on; one next
   * to the gateway is the local backend's. The first heartbeat can beat the next poll, so a job not
   * yet seen running is looked up once more.
   */
  async schedulerAddresses(c: ClusterRecord, reported: SchedulerAddresses): Promise<SchedulerAddresses> {
    const h = c.scheduler;
    if (!this.schedulerInJob) return this.batch.local.schedulerAddresses(c, reported);
    if (!h || !this.isJob(h)) throw new AppError(409, 'not_running', `Cluster ${c.name} has no scheduler job yet`);
    let hosts = this.schedulerHosts.get(h.job) ?? new Set<string>();
    if (!hosts.size && Date.now() - this.lookedUpAt >= FORCED_POLL_MS) {
      // Not seen running yet (a forged report for a running job does not make the gateway ask again;
      // nor, more than once a second, one for a job that stays pending: its owner holds the API token).
      this.lookedUpAt = Date.now();
      hosts = await this.lookUpHosts(h);
      this.noteHosts(h, hosts);
    }
    return addressesOnHosts(reported, hosts, this.describeJob(h));
  }

  /**
   * Gives the account what its jobs need of the cluster's directory and returns the jobs' own
   * directory. The cluster's directory stays the gateway's (the token broker keeps writing the
   * owner's token there), open only to the account's group; the TLS files and tokens become the
   * account's (0600) and the jobs write in jobs/ (the account's, 0700). A directory that is the
   * account's already (handed over by the local backend's launcher) is used as it is.
   */
  protected async shareWorkDir(files: ClusterFiles, account: UserAccount): Promise<string> {
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

  /**
   * With schedulers next to the gateway on a multi-user gateway, the local backend's per-user
   * launcher keeps the cluster's files in the owner's directory, written as the owner: the worker
   * jobs then use that directory as it is.
   */
  private filesAreLocal(): boolean {
    return !this.schedulerInJob && this.batch.local.multiUser === true && typeof this.batch.local.writeClusterFiles === 'function';
  }

  /** Where a new cluster's files go; a user without a usable account is refused (403) before anything exists. */
  async clusterWorkDir(c: ClusterRecord): Promise<string> {
    if (this.filesAreLocal() && this.batch.local.clusterWorkDir) return this.batch.local.clusterWorkDir(c);
    await this.account(c.username);
    return c.workDir;
  }

  async writeClusterFiles(c: ClusterRecord): Promise<ClusterFiles> {
    if (this.filesAreLocal()) return this.batch.local.writeClusterFiles(c);
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
      if (this.batch.local.removeClusterFiles) return this.batch.local.removeClusterFiles(c, keepLogs);
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

  /** Resolves once a token file being written (writeBearerToken) is there; at once when none is. */
  protected async tokenWritten(file: string): Promise<void> {
    await this.tokenWrites.get(file)?.catch(() => undefined);
  }

  private async replaceBearerToken(c: ClusterRecord, token: string): Promise<void> {
    if (this.filesAreLocal() && this.batch.local.writeBearerToken) return this.batch.local.writeBearerToken(c, token);
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

  async close(): Promise<void> {
    await this.batch.local.close();
  }
}
