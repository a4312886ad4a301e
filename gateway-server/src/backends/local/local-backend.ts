// Local backend: Dask schedulers and workers as processes on the gateway's machine, each in its own
// process group (stopped as a whole), forked from a warm launcher or started fresh.
//
// Two modes. Single-user (backend.local.single_user, the demo): one launcher runs as the gateway
// and so does everything it starts. Multi-user (a facility): each user account gets its own warm
// launcher, started through sudo as that account, and every process, file, log read and signal of
// that user's clusters goes through it — the gateway never runs user code nor touches a path inside
// a user's directory with its own rights.
import { statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { constants as osConstants, networkInterfaces } from 'node:os';
import { execFile, spawn } from 'node:child_process';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyBaseLogger } from 'fastify';
import {
  daskTlsArgs,
  eachBounded,
  hostPort,
  ItemBackend,
  parseReportedAddress,
  type ClusterFiles,
  type ProcessState,
  type SchedulerAddresses,
  type SchedulerLaunch,
  type StepLaunch,
  type WorkerLaunch,
  SCHEDULER_PRELOADS,
  unsupportedProfile,
} from '../backend.js';
import type { BackendHandle, ClusterRecord } from '../../clusters/model.js';
import type { AccountResolver, UserAccount } from '../../accounts/accounts.js';
import { AppError, errorMessage } from '../../errors.js';
import { describeLogTail, logTail } from '../../files/log-tail.js';
import { replaceConfined } from '../../files/no-follow.js';
import { clusterFiles, removeClusterFiles, writeClusterFiles } from '../../clusters/cluster-files.js';
import { execLaunch, Launcher, toStarted, type LaunchSpec } from './launcher-client.js';
import { isRunning, readProcStat, stopProcessGroup, type GroupSignaller } from './process-group.js';
import { logSessionNice, setSessionNice } from './session-nice.js';
import { LaunchRecords, newLaunchId, planOrphanRemoval, procTable, type LaunchRecord, type ProcessTable } from './launch-records.js';

/** Processes remembered for the orphan search at most (a gateway that never searches stops there). */
const MAX_SEEN = 100_000;
const WILDCARD_HOSTS = new Set(['', '0.0.0.0', '::', '[::]']);
const LAUNCHER = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'python', 'af_gateway_launcher.py');

export interface LocalBackendOptions {
  python: string;
  prefork: boolean;
  nanny: boolean;
  stopGracePeriod: number;
  dataDir: string;
  log: FastifyBaseLogger;
  /** Address schedulers listen on (127.0.0.1 unless workers run elsewhere). */
  schedulerHost?: string;
  /** Everything runs as the gateway (one person on loopback). Else `accounts` and `sudo` are needed. */
  singleUser: boolean;
  accounts?: AccountResolver;
  sudo?: string;
  /** Seconds an unused per-user launcher is kept. */
  launcherIdleTimeout?: number;
  /**
   * Schedulers' dashboards speak TLS and take only the gateway's proxy (a client certificate of
   * the cluster's CA): on a shared machine any account can connect to a loopback port.
   */
  dashboardTls?: boolean;
  /**
   * Autogroup nice (1-19) each new session of users' processes gets, so that, with the kernel's
   * per-session fair share (sched_autogroup_enabled=1), users' Dask processes and steps cannot starve
   * the gateway; the process's own nice where autogroup is off. 0: left alone.
   */
  sessionNice?: number;
  /** Where the machine's processes are read for orphan removal (tests give their own). */
  processTable?: ProcessTable;
}

interface LocalHandle extends BackendHandle {
  pid: number;
  startTicks: string;
  log: string;
  // (and `launch`: the launch record of a scheduler or worker, launch-records.ts; none for steps and older handles)
}

const asLocal = (h: BackendHandle): LocalHandle => {
  if (typeof h.pid !== 'number' || typeof h.startTicks !== 'string') throw new Error('not a local backend handle');
  return h as LocalHandle;
};

/** The environment of a launcher: built from scratch, so no secret of the gateway reaches user processes. */
function launcherEnv(): Record<string, string> {
  return { ...stepBaseEnv(), PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin' };
}

export class LocalBackend extends ItemBackend {
  readonly kind = 'local';
  /** Single-user mode's launcher (when prefork). */
  private readonly launcher: Launcher | undefined;
  /** Multi-user mode: one warm launcher per user account. */
  private readonly userLaunchers = new Map<string, Launcher>();
  private readonly reaper: NodeJS.Timeout | undefined;
  /** What this gateway launched, in its data directory: how it finds its orphans after a crash. */
  private readonly records: LaunchRecords;
  /** Marks the records this gateway process makes: launches in flight are never orphans. */
  private readonly generation = newLaunchId();
  /**
   * pid:startTicks of every process this gateway process started, checked or stopped until it
   * looked for orphans. After a restart the engines check every handle they adopt before orphans
   * are removed, and the same local backend may serve several of them (schedulers next to a batch
   * backend, a local worker group): nothing any of them knows is an orphan, whichever asks.
   */
  private readonly seen = new Set<string>();
  /** Whether `seen` still grows: until the orphan search (or too many to hold, then no search). */
  private seenState: 'open' | 'closed' | 'overflowed' = 'open';
  private bootId: Promise<string> | undefined;

  constructor(private readonly opts: LocalBackendOptions) {
    super();
    logSessionNice(opts.sessionNice ?? 0, opts.log);
    this.records = new LaunchRecords(join(opts.dataDir, 'local-launches'));
    if (opts.singleUser) {
      if (opts.prefork) {
        this.launcher = new Launcher([opts.python, LAUNCHER, 'serve'], launcherEnv(), join(opts.dataDir, 'launcher.log'), opts.log);
        this.launcher.warmUp();
      }
    } else {
      if (!opts.accounts) throw new Error('the multi-user local backend needs an account resolver');
      const idleMs = (opts.launcherIdleTimeout ?? 300) * 1000;
      this.reaper = setInterval(() => this.closeIdleLaunchers(idleMs), Math.min(idleMs, 30_000));
      this.reaper.unref();
    }
  }

  get multiUser(): boolean {
    return !this.opts.singleUser;
  }

  // --- multi-user plumbing ----------------------------------------------------------------------

  private async account(user: string): Promise<UserAccount> {
    return this.opts.accounts!.resolve(user);
  }

  private async launcherFor(account: string): Promise<Launcher> {
    let l = this.userLaunchers.get(account);
    if (!l) {
      const logDir = join(this.opts.dataDir, 'launchers');
      await mkdir(logDir, { recursive: true, mode: 0o700 });
      // sudo -n: never prompt; the facility's rule allows exactly this command as the users' accounts.
      const argv = [this.opts.sudo ?? 'sudo', '-n', '-u', account, this.opts.python, LAUNCHER, 'serve'];
      l = new Launcher(argv, launcherEnv(), join(logDir, `${account}.log`), this.opts.log, `the launcher of account ${account}`);
      l.onExited = () => this.changeListeners.forEach((listener) => listener()); // a step ended: check now
      this.userLaunchers.set(account, l);
    }
    return l;
  }

  private closeIdleLaunchers(idleMs: number): void {
    for (const [account, l] of this.userLaunchers) {
      if (!l.busy && Date.now() - l.lastUsed > idleMs) {
        l.close();
        this.userLaunchers.delete(account);
      }
    }
  }

  /** Where a user's cluster keeps its files: in the account's home, made and written by the account. */
  private userClusterDir(account: UserAccount, cluster: string): string {
    return join(account.home, '.af-gateway', 'clusters', cluster);
  }

  async clusterWorkDir(c: ClusterRecord): Promise<string> {
    if (this.opts.singleUser) return c.workDir;
    return this.userClusterDir(await this.account(c.username), c.name);
  }

  /** Writes the cluster's TLS pair and API token where its processes read them. */
  async writeClusterFiles(c: ClusterRecord): Promise<ClusterFiles> {
    if (this.opts.singleUser) return writeClusterFiles(c);
    const account = await this.account(c.username);
    const launcher = await this.launcherFor(account.name);
    await launcher.request({ op: 'prepare', dir: c.workDir, files: { 'dask.crt': c.tlsCert, 'dask.pem': c.tlsKey, 'api-token': c.token } });
    return clusterFiles(c);
  }

  async removeClusterFiles(c: ClusterRecord, keepLogs: boolean): Promise<void> {
    if (this.opts.singleUser) return removeClusterFiles(c, keepLogs);
    const account = await this.account(c.username);
    const launcher = await this.launcherFor(account.name);
    await launcher.request({ op: 'remove', dir: c.workDir, keep: keepLogs ? ['.log'] : [] });
  }

  /** Replaces the owner's access token file of a running cluster (multi-user: as the owner). */
  async writeBearerToken(c: ClusterRecord, token: string): Promise<void> {
    if (this.opts.singleUser) {
      await mkdir(c.workDir, { recursive: true, mode: 0o700 });
      return replaceConfined(c.workDir, clusterFiles(c).bearerToken, token + '\n'); // readers never see half a token
    }
    const account = await this.account(c.username);
    const launcher = await this.launcherFor(account.name);
    await launcher.request({ op: 'write', path: clusterFiles(c).bearerToken, text: token + '\n' });
  }

  // --- processes --------------------------------------------------------------------------------

  async startScheduler(l: SchedulerLaunch): Promise<BackendHandle> {
    const { cluster, files } = l;
    return this.launch(cluster.username, {
      role: 'scheduler',
      title: `af-gateway: scheduler ${cluster.name} (${cluster.username})`,
      args: [
        '--protocol',
        'tls',
        '--host',
        this.opts.schedulerHost ?? '127.0.0.1',
        '--port',
        '0',
        '--dashboard-address',
        '127.0.0.1:0',
        ...daskTlsArgs(files.cert, files.key),
        ...SCHEDULER_PRELOADS,
        '--dg-api-address',
        '127.0.0.1:0',
        '--dg-heartbeat-period',
        String(l.heartbeatPeriod),
        '--dg-adaptive-period',
        String(l.adaptivePeriod),
        '--dg-idle-timeout',
        String(cluster.settings.idle_timeout),
      ],
      env: {
        ...cluster.settings.environment,
        DASK_GATEWAY_API_URL: l.apiUrl,
        DASK_GATEWAY_API_TOKEN: files.token, // a path: the preload reads the token from the file
        DASK_GATEWAY_CLUSTER_NAME: cluster.name,
        DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION: 'True',
        BEARER_TOKEN_FILE: files.bearerToken,
        ...(this.opts.dashboardTls
          ? {
              DASK_DISTRIBUTED__SCHEDULER__DASHBOARD__TLS__CERT: files.cert,
              DASK_DISTRIBUTED__SCHEDULER__DASHBOARD__TLS__KEY: files.key,
              DASK_DISTRIBUTED__SCHEDULER__DASHBOARD__TLS__CA_FILE: files.cert,
            }
          : {}),
      },
      cwd: files.dir,
      log: join(files.dir, 'scheduler.log'),
      pidfile: join(files.dir, 'scheduler.pid'),
      dashboard_tls: this.opts.dashboardTls === true,
    });
  }

  async startWorker(l: WorkerLaunch): Promise<BackendHandle> {
    // (the config refuses such a group on this backend; a launch that still asks fails, never runs without)
    const unsupported = unsupportedProfile(l, 'local');
    if (unsupported) throw unsupported;
    const { cluster, worker, files } = l;
    const s = cluster.settings;
    return this.launch(cluster.username, {
      role: 'worker',
      title: `af-gateway: worker ${cluster.name} ${worker.name} (${cluster.username})`,
      args: [
        cluster.schedulerAddress,
        '--name',
        worker.name,
        '--nthreads',
        String(s.worker_cores),
        '--memory-limit',
        String(Math.floor(s.worker_memory * 2 ** 30)),
        this.opts.nanny ? '--nanny' : '--no-nanny',
        '--host',
        '127.0.0.1',
        '--no-dashboard',
        '--death-timeout',
        '60',
        ...daskTlsArgs(files.cert, files.key),
      ],
      env: {
        ...s.environment,
        DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION: 'True',
        BEARER_TOKEN_FILE: files.bearerToken, // kept fresh by the token broker
      },
      cwd: files.dir,
      log: join(files.dir, `${worker.name}.log`),
      pidfile: join(files.dir, `${worker.name}.pid`),
    });
  }

  /**
   * Lets a run's owner work in its workspace (multi-user): POSIX ACLs give the owner's account rwx
   * on the gateway's run directory and make everything created in it, by either side, accessible
   * to both (default ACL entries). No one else gets in. The gateway then reads and writes there only
   * with the confined file helpers, as the owner may have planted links.
   */
  async shareRunWorkspace(dir: string, owner: string): Promise<void> {
    if (this.opts.singleUser) return;
    const account = await this.account(owner);
    const blocked = closedAncestor(dirname(dir));
    if (blocked) {
      throw new AppError(
        409,
        'workspace_unreachable',
        `This gateway cannot run workflow steps on the local backend now: users' accounts cannot pass through ${blocked}. Its administrators must allow it (o+x) or set workflows.workspace_root elsewhere.`,
      );
    }
    const gateway = process.getuid?.() ?? 0;
    const acl = [`u:${account.uid}:rwx`, `d:u:${account.uid}:rwx`, `d:u:${gateway}:rwx`, 'm::rwx', 'd:m::rwx', 'd:g::---', 'd:o::---'].join(',');
    await new Promise<void>((resolve, reject) => {
      execFile('setfacl', ['-m', acl, '--', dir], { env: { PATH: '/usr/bin:/bin' }, timeout: 30_000 }, (err, _out, stderr) =>
        err
          ? reject(
              new Error(
                `setfacl could not share the run's workspace with ${account.name}: ${stderr.trim() || err.message} (is the acl package installed and the filesystem mounted with ACLs?)`,
              ),
            )
          : resolve(),
      );
    });
  }

  startSteps(launches: StepLaunch[]): Promise<Array<BackendHandle | Error>> {
    return eachBounded(launches, this.concurrency, (l) => this.startStep(l));
  }

  /** A workflow step: its wrapper in a new process group, with only the environment a step needs; as its owner in multi-user mode. */
  async startStep(l: StepLaunch): Promise<BackendHandle> {
    if (!this.opts.singleUser) {
      const account = await this.account(l.owner);
      const env = {
        PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
        LANG: process.env.LANG ?? 'C.UTF-8',
        HOME: account.home,
        USER: account.name,
        LOGNAME: account.name,
        ...l.env,
      };
      const started = toStarted(
        await (
          await this.launcherFor(account.name)
        ).request({ op: 'step', command: ['/bin/sh', l.wrapper], env, cwd: l.workdir, session_nice: this.opts.sessionNice ?? 0 }),
        'starting the step',
      );
      const handle: LocalHandle = { pid: started.pid, startTicks: started.start_ticks, log: l.log, account: account.name };
      return handle;
    }
    const child = spawn('/bin/sh', [l.wrapper], {
      cwd: l.workdir,
      detached: true,
      stdio: 'ignore',
      env: { ...stepBaseEnv(), ...l.env },
    });
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('spawn', () => resolve(child.pid!));
    });
    child.unref();
    child.once('exit', () => this.changeListeners.forEach((l) => l()));
    await setSessionNice(pid, this.opts.sessionNice ?? 0, this.opts.log);
    const stat = await readProcStat(pid);
    const handle: LocalHandle = { pid, startTicks: stat?.startTicks ?? '', log: l.log };
    return handle;
  }

  /**
   * Where the gateway reaches a scheduler it started here: the host is where it made the scheduler
   * listen (never what the heartbeat says), only the ports come from the report, and the schemes
   * are fixed (https for a TLS dashboard). A heartbeat is the user's word: a forged one can then
   * point only at a loopback port, where the dashboard proxy's TLS (the cluster's CA, both ways)
   * and the API's token reach nothing but that cluster's own scheduler.
   */
  schedulerAddresses(_c: ClusterRecord, reported: SchedulerAddresses): SchedulerAddresses {
    const port = (address: string, what: string) => parseReportedAddress(address, what).port;
    let host = this.opts.schedulerHost ?? '127.0.0.1';
    if (WILDCARD_HOSTS.has(host)) {
      // Listening everywhere: the scheduler names the address workers should use, which must be
      // one of this machine's own.
      const said = parseReportedAddress(reported.scheduler, 'scheduler').host;
      const own = new Set(Object.values(networkInterfaces()).flatMap((l) => (l ?? []).map((i) => i.address.toLowerCase())));
      if (!own.has(said))
        throw new AppError(
          422,
          'address_not_backend',
          `The heartbeat says the scheduler listens on ${said}, which is not an address of the gateway's machine where it runs`,
        );
      host = said;
    }
    return {
      scheduler: `tls://${hostPort(host, port(reported.scheduler, 'scheduler'))}`,
      dashboard: reported.dashboard ? `${this.opts.dashboardTls ? 'https' : 'http'}://127.0.0.1:${port(reported.dashboard, 'dashboard')}` : '',
      api: `http://127.0.0.1:${port(reported.api, 'API')}`,
    };
  }

  describe(handle: BackendHandle): string {
    return `process ${String(handle.pid)}`;
  }

  private readonly changeListeners: (() => void)[] = [];

  onChange(listener: () => void): void {
    this.changeListeners.push(listener);
  }

  private async launch(user: string, launchSpec: LaunchSpec): Promise<BackendHandle> {
    const spec: LaunchSpec = { ...launchSpec, session_nice: this.opts.sessionNice ?? 0 };
    const account = this.opts.singleUser ? undefined : await this.account(user);
    // Recorded before the launcher is asked: the gateway may die before it answers.
    const record: LaunchRecord = {
      id: newLaunchId(),
      gen: this.generation,
      boot: await (this.bootId ??= (this.opts.processTable ?? procTable).bootId()),
      at: Date.now(),
      role: spec.role,
      title: spec.title,
      uid: account?.uid ?? process.getuid?.() ?? 0,
      account: account?.name ?? null,
    };
    await this.records.write(record);
    let handle: LocalHandle;
    if (account) {
      // (sudo keeps the gateway's HOME: Dask's config and caches go to the user's own)
      const env = { ...spec.env, HOME: account.home, USER: account.name, LOGNAME: account.name };
      const started = await (await this.launcherFor(account.name)).fork({ ...spec, env });
      handle = { pid: started.pid, startTicks: started.start_ticks, log: spec.log, account: account.name, launch: record.id };
    } else {
      const pid = this.launcher ? (await this.launcher.fork(spec)).pid : await execLaunch(this.opts.python, LAUNCHER, spec, launcherEnv());
      const stat = await readProcStat(pid);
      // A process that is already gone keeps an empty start time: check() then reports its log.
      handle = { pid, startTicks: stat?.startTicks ?? '', log: spec.log, launch: record.id };
    }
    if (!handle.startTicks) {
      await this.records.forget(record.id);
      return handle;
    }
    this.note(handle);
    // (failing here leaves the first record: the next restart finds the process by it)
    await this.records
      .write({ ...record, pid: handle.pid, startTicks: handle.startTicks })
      .catch((err: unknown) => this.opts.log.warn({ pid: handle.pid, err: errorMessage(err) }, 'could not complete a launch record'));
    return handle;
  }

  /**
   * After a restart: stops the schedulers and workers this gateway launched (its records say so, and
   * the kernel that they are still those processes, of the accounts they were launched as) that none
   * of the handles it tracks refers to. Workflow steps are never recorded: the workflow engine adopts
   * them. Each orphan is stopped as its account (multi-user: through that account's launcher).
   */
  async removeOrphans(live: BackendHandle[]): Promise<void> {
    if (this.seenState === 'overflowed') {
      this.opts.log.warn('local orphans are not looked for: this gateway started or checked too many processes before the search to tell them apart');
      return;
    }
    this.seenState = 'closed';
    const records = (await this.records.list()).filter((r) => r.gen !== this.generation);
    if (!records.length) return;
    const known = new Set(this.seen);
    for (const h of live) if (typeof h.pid === 'number' && typeof h.startTicks === 'string') known.add(`${h.pid}:${h.startTicks}`);
    const protect = new Set([process.pid, process.ppid]);
    const plan = await planOrphanRemoval(records, known, protect, this.opts.processTable);
    for (const { record, why } of plan.leftAlone) {
      this.opts.log.warn({ pid: record.pid, title: record.title, account: record.account }, `a process this gateway once launched is left alone: ${why}`);
    }
    await Promise.all([...plan.forget, ...plan.leftAlone.map((l) => l.record)].map((r) => this.records.forget(r.id)));
    if (!plan.orphans.length) return;
    this.opts.log.warn(
      { processes: plan.orphans.map((o) => ({ pid: o.pid, title: o.record.title, account: o.record.account })) },
      'stopping local processes no cluster of this gateway owns',
    );
    const results = await eachBounded(plan.orphans, this.concurrency, async ({ record, pid, startTicks }) => {
      const h: LocalHandle = { pid, startTicks, log: '', launch: record.id, ...(record.account ? { account: record.account } : {}) };
      await this.stopOne(h);
    });
    const failed = results.filter((r): r is Error => r instanceof Error);
    if (failed.length)
      throw new AggregateError(failed, `${failed.length} of ${plan.orphans.length} orphaned processes could not be stopped: ${failed[0]!.message}`);
  }

  /** Remembers a process as one the gateway knows, until the orphan search. */
  private note(h: LocalHandle): void {
    if (this.seenState !== 'open') return;
    this.seen.add(`${h.pid}:${h.startTicks}`);
    if (this.seen.size > MAX_SEEN) {
      this.seenState = 'overflowed';
      this.seen.clear();
    }
  }

  /** Signals as the handle's account, through its launcher (multi-user), or as the gateway. */
  private signaller(h: LocalHandle): GroupSignaller | undefined {
    const account = typeof h.account === 'string' ? h.account : undefined;
    if (!account) return undefined;
    return async (pgid, signal) => {
      const answer = await (
        await this.launcherFor(account)
      ).request({
        op: 'kill',
        pid: pgid,
        start_ticks: h.startTicks,
        signal: signal === 0 ? 0 : osConstants.signals[signal],
      });
      return answer.sent === true;
    };
  }

  async stopOne(handle: BackendHandle): Promise<void> {
    const h = asLocal(handle);
    if (!h.startTicks) return;
    this.note(h);
    await stopProcessGroup(h.pid, h.startTicks, this.opts.stopGracePeriod, this.signaller(h));
    if (typeof h.launch === 'string') {
      await this.records
        .forget(h.launch)
        .catch((err: unknown) => this.opts.log.warn({ pid: h.pid, err: errorMessage(err) }, 'could not remove a launch record'));
    }
  }

  async checkOne(handle: BackendHandle): Promise<ProcessState> {
    const h = asLocal(handle);
    if (h.startTicks) this.note(h);
    if (h.startTicks && (await isRunning(h.pid, h.startTicks))) return { alive: true };
    if (typeof h.account === 'string') {
      // The log is in the user's directory: read as the user, so a planted link leads nowhere.
      const answer = await (
        await this.launcherFor(h.account)
      )
        .request({ op: 'tail', path: h.log, max_bytes: 16_384 })
        .catch((): Record<string, unknown> => ({ missing: true }));
      return { alive: false, detail: typeof answer.text === 'string' ? describeLogTail(answer.text) : 'no log was written' };
    }
    return { alive: false, detail: await logTail(h.log) };
  }

  async close(): Promise<void> {
    if (this.reaper) clearInterval(this.reaper);
    this.launcher?.close();
    for (const l of this.userLaunchers.values()) l.close();
    this.userLaunchers.clear();
  }
}

/** The first directory at or above `dir` that other accounts cannot pass through (no o+x), if any. */
export function closedAncestor(dir: string): string | null {
  for (let d = resolve(dir); ; d = dirname(d)) {
    try {
      if ((statSync(d).mode & 0o001) === 0) return d;
    } catch {
      // not made yet: its parents decide
    }
    if (dirname(d) === d) return null;
  }
}

/** What a step inherits from the gateway's environment: enough to find programs, nothing secret. */
export function stepBaseEnv(): Record<string, string> {
  const keep = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR', 'USER', 'LOGNAME'];
  return Object.fromEntries(keep.flatMap((k) => (process.env[k] === undefined ? [] : [[k, process.env[k]!]])));
}
