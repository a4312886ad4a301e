// Local backend: Dask schedulers and workers as processes on the gateway's machine, each in its own
// process group (stopped as a whole), forked from a warm launcher or started fresh.
import { readFile } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyBaseLogger } from 'fastify';
import type { Backend, ProcessState, SchedulerLaunch, StepLaunch, WorkerLaunch } from '../backend.js';
import type { BackendHandle } from '../../clusters/model.js';
import { execLaunch, PreforkLauncher, type LaunchSpec } from './launcher-client.js';
import { isRunning, readProcStat, stopProcessGroup } from './process-group.js';

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
}

interface LocalHandle extends BackendHandle {
  pid: number;
  startTicks: string;
  log: string;
}

const asLocal = (h: BackendHandle): LocalHandle => {
  if (typeof h.pid !== 'number' || typeof h.startTicks !== 'string') throw new Error('not a local backend handle');
  return h as LocalHandle;
};

export class LocalBackend implements Backend {
  readonly kind = 'local';
  private readonly launcher: PreforkLauncher | undefined;

  constructor(private readonly opts: LocalBackendOptions) {
    if (opts.prefork) {
      this.launcher = new PreforkLauncher(opts.python, LAUNCHER, join(opts.dataDir, 'launcher.log'), opts.log);
      this.launcher.warmUp();
    }
  }

  async startScheduler(l: SchedulerLaunch): Promise<BackendHandle> {
    const { cluster, files } = l;
    return this.launch({
      role: 'scheduler',
      title: `af-gateway: scheduler ${cluster.name} (${cluster.username})`,
      args: [
        '--protocol', 'tls',
        '--host', this.opts.schedulerHost ?? '127.0.0.1',
        '--port', '0',
        '--dashboard-address', '127.0.0.1:0',
        '--tls-ca-file', files.cert,
        '--tls-cert', files.cert,
        '--tls-key', files.key,
        '--preload', 'dask_gateway.scheduler_preload',
        '--dg-api-address', '127.0.0.1:0',
        '--dg-heartbeat-period', String(l.heartbeatPeriod),
        '--dg-adaptive-period', String(l.adaptivePeriod),
        '--dg-idle-timeout', String(cluster.settings.idle_timeout),
      ],
      env: {
        ...cluster.settings.environment,
        DASK_GATEWAY_API_URL: l.apiUrl,
        DASK_GATEWAY_API_TOKEN: files.token, // a path: the preload reads the token from the file
        DASK_GATEWAY_CLUSTER_NAME: cluster.name,
        DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION: 'True',
        BEARER_TOKEN_FILE: files.bearerToken,
      },
      cwd: files.dir,
      log: join(files.dir, 'scheduler.log'),
      pidfile: join(files.dir, 'scheduler.pid'),
    });
  }

  async startWorker(l: WorkerLaunch): Promise<BackendHandle> {
    const { cluster, worker, files } = l;
    const s = cluster.settings;
    return this.launch({
      role: 'worker',
      title: `af-gateway: worker ${cluster.name} ${worker.name} (${cluster.username})`,
      args: [
        cluster.schedulerAddress,
        '--name', worker.name,
        '--nthreads', String(s.worker_cores),
        '--memory-limit', String(Math.floor(s.worker_memory * 2 ** 30)),
        this.opts.nanny ? '--nanny' : '--no-nanny',
        '--host', '127.0.0.1',
        '--no-dashboard',
        '--death-timeout', '60',
        '--tls-ca-file', files.cert,
        '--tls-cert', files.cert,
        '--tls-key', files.key,
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

  /** A workflow step: its wrapper in a new process group, with only the environment a step needs. */
  async startStep(l: StepLaunch): Promise<BackendHandle> {
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
    const stat = await readProcStat(pid);
    const handle: LocalHandle = { pid, startTicks: stat?.startTicks ?? '', log: l.log };
    return handle;
  }

  describe(handle: BackendHandle): string {
    return `process ${String(handle.pid)}`;
  }

  private readonly changeListeners: (() => void)[] = [];

  onChange(listener: () => void): void {
    this.changeListeners.push(listener);
  }

  private async launch(spec: LaunchSpec): Promise<BackendHandle> {
    const pid = this.launcher
      ? await this.launcher.fork(spec)
      : await execLaunch(this.opts.python, LAUNCHER, spec);
    const stat = await readProcStat(pid);
    // A process that is already gone keeps an empty start time: check() then reports its log.
    const handle: LocalHandle = { pid, startTicks: stat?.startTicks ?? '', log: spec.log };
    return handle;
  }

  async stop(handle: BackendHandle): Promise<void> {
    const h = asLocal(handle);
    if (!h.startTicks) return;
    await stopProcessGroup(h.pid, h.startTicks, this.opts.stopGracePeriod);
  }

  async check(handle: BackendHandle): Promise<ProcessState> {
    const h = asLocal(handle);
    if (h.startTicks && (await isRunning(h.pid, h.startTicks))) return { alive: true };
    return { alive: false, detail: await logTail(h.log) };
  }

  async close(): Promise<void> {
    this.launcher?.close();
  }
}

/** What a step inherits from the gateway's environment: enough to find programs, nothing secret. */
export function stepBaseEnv(): Record<string, string> {
  const keep = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR', 'USER', 'LOGNAME'];
  return Object.fromEntries(keep.flatMap((k) => (process.env[k] === undefined ? [] : [[k, process.env[k]!]])));
}

/** The last meaningful lines of a process log: what a person needs to see why it ended. */
export async function logTail(file: string, lines = 6): Promise<string> {
  try {
    const text = await readFile(file, 'utf8');
    const tail = text.trimEnd().split('\n').slice(-lines).join('\n');
    return tail ? `last log lines:\n${tail}` : 'its log is empty';
  } catch {
    return 'no log was written';
  }
}
