import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
// The launch-only contract every backend fulfils. Lifecycle, retries, limits and persistence live in
// clusters/; a backend only starts, stops and checks processes (or jobs, or pods).
import type { BackendHandle, ClusterRecord, WorkerRecord } from '../clusters/model.js';
import { AppError } from '../errors.js';
import { removeClusterFiles, writeClusterFiles } from '../clusters/cluster-files.js';

export interface SchedulerAddresses {
  scheduler: string;
  dashboard: string;
  api: string;
}

/** One address a heartbeat reported, taken apart: SCHEME://HOST:PORT (an IPv6 host without brackets). */
export interface ReportedAddress {
  host: string;
  port: number;
}

/**
 * Parses an address from a heartbeat (the user's word): SCHEME://HOST:PORT with an optional
 * trailing slash and nothing else — no user info, path, query or odd characters in the host.
 * Anything else is a 422 naming which address was wrong.
 */
export function parseReportedAddress(address: string, what: string): ReportedAddress {
  const m = /^[a-z][a-z0-9+.-]{0,15}:\/\/(\[[0-9a-f:.]+\]|[a-z0-9.-]{1,253}):(\d{1,5})\/?$/i.exec(address.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || !(port >= 1 && port <= 65535)) {
    throw new AppError(422, 'bad_address', `The heartbeat's ${what} address ${JSON.stringify(address.slice(0, 100))} is not SCHEME://HOST:PORT`);
  }
  const host = m[1]!.startsWith('[') ? m[1]!.slice(1, -1) : m[1]!;
  if (m[1]!.startsWith('[') && isIP(host) !== 6) throw new AppError(422, 'bad_address', `The heartbeat's ${what} address has a malformed IPv6 host`);
  return { host: host.toLowerCase(), port };
}

/** HOST:PORT for a URL (IPv6 hosts in brackets). */
export function hostPort(host: string, port: number): string {
  return `${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
}

/**
 * python/af_gateway_groups_preload.py as a preload's text (one line, no quoting a submit file or a
 * shell could trip on): it makes the scheduler's count the default group's and lets the gateway
 * retire named workers of a group. Text, not a module name, so it reaches schedulers in jobs and pods.
 */
const GROUPS_PRELOAD_TEXT = `import base64; exec(base64.b64decode(b'${readFileSync(
  join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'python', 'af_gateway_groups_preload.py'),
).toString('base64')}').decode())`;

/** The scheduler's preloads: dask-gateway's service (heartbeats, scale, adapt), then the gateway's worker groups. Its --dg-* flags follow. */
export const SCHEDULER_PRELOADS: readonly string[] = ['--preload', 'dask_gateway.scheduler_preload', '--preload', GROUPS_PRELOAD_TEXT];

/**
 * A scheduler's flags when it runs as a batch job on `s.host` (HTCondor, Slurm): TLS with the cluster's
 * certificate, ports chosen on that host, the preloads and their --dg-* settings.
 */
export function schedulerJobArgs(
  s: { host: string; heartbeatPeriod: number; adaptivePeriod: number; idleTimeout: number },
  cert: string,
  key: string,
): string[] {
  return [
    '--protocol',
    'tls',
    '--host',
    s.host,
    '--port',
    '0',
    '--dashboard-address',
    `${s.host}:0`,
    ...daskTlsArgs(cert, key),
    ...SCHEDULER_PRELOADS,
    '--dg-api-address',
    `${s.host}:0`,
    '--dg-heartbeat-period',
    String(s.heartbeatPeriod),
    '--dg-adaptive-period',
    String(s.adaptivePeriod),
    '--dg-idle-timeout',
    String(s.idleTimeout),
  ];
}

/** The flags that make a Dask process speak TLS with the cluster's certificate (which is also its CA) and key. */
export function daskTlsArgs(cert: string, key: string): string[] {
  return ['--tls-ca-file', cert, '--tls-cert', cert, '--tls-key', key];
}

/**
 * The addresses a backend accepts from a scheduler whose process it knows runs on one of `hosts`:
 * each reported host must be one of them (else a 422 the caller logs), the schemes are the
 * backend's, only the ports are the scheduler's.
 */
export function addressesOnHosts(reported: SchedulerAddresses, hosts: ReadonlySet<string>, where: string, dashboardScheme = 'http'): SchedulerAddresses {
  const on = (address: string, what: string) => {
    const a = parseReportedAddress(address, what);
    if (!hosts.has(a.host)) {
      throw new AppError(
        422,
        'address_not_backend',
        `The heartbeat says the ${what} listens on ${a.host}, but the scheduler runs on ${[...hosts].join(', ') || 'no known machine'} (${where}); heartbeats cannot move a scheduler elsewhere`,
      );
    }
    return hostPort(a.host, a.port);
  };
  return {
    scheduler: `tls://${on(reported.scheduler, 'scheduler')}`,
    dashboard: reported.dashboard ? `${dashboardScheme}://${on(reported.dashboard, 'dashboard')}` : '',
    api: `http://${on(reported.api, 'API')}`,
  };
}

export interface SchedulerLaunch {
  cluster: ClusterRecord;
  /** Files the scheduler reads: cert, key and API token, already written to the work dir. */
  files: ClusterFiles;
  /** Where the scheduler's preload posts heartbeats (…/api). */
  apiUrl: string;
  heartbeatPeriod: number;
  adaptivePeriod: number;
}

export interface WorkerLaunch {
  /** The cluster as the worker's group sizes it (settings: its cores, memory and Dask resources). */
  cluster: ClusterRecord;
  worker: WorkerRecord;
  files: ClusterFiles;
  /** GPUs the worker gets (worker_groups[].gpus); absent or 0: none. A backend that cannot give them fails the start. */
  gpus?: number;
  /** The container image of the worker (worker_groups[].image); absent or null: the backend's own. A backend that runs no images fails the start. */
  image?: string | null;
}

/** The launches' GPUs and image, when a backend can honour neither: an Error naming what it cannot do, else null. */
export function unsupportedProfile(l: WorkerLaunch, backend: string): Error | null {
  if ((l.gpus ?? 0) > 0) return new Error(`the ${backend} backend cannot give workers GPUs (worker_groups[].gpus)`);
  if (l.image) return new Error(`the ${backend} backend runs no container images (worker_groups[].image)`);
  return null;
}

export interface ClusterFiles {
  dir: string;
  cert: string;
  key: string;
  /** The cluster's API token (heartbeats). */
  token: string;
  /** The owner's access token, kept fresh by the token broker (BEARER_TOKEN_FILE). */
  bearerToken: string;
}

export interface ProcessState {
  alive: boolean;
  /** When not alive: what is known of the end (exit code, last log lines). */
  detail?: string;
  /**
   * Alive but not running yet, and why (a batch job waiting for a slot). The engine reports it to
   * the user and does not count the wait against the worker's start timeout.
   */
  waiting?: string;
  /** When the process really began to run (ms), if later than its start was asked for. */
  startedAt?: number;
  /** A finished workflow step's exit code, when the backend knows it (else the engine reads the step's file). */
  exitCode?: number;
}

/** One workflow step to run as a job: a wrapper script that writes the step's log and exit code. */
export interface StepLaunch {
  run: string;
  node: string;
  owner: string;
  /** The step's directory, shared with the job (it exists). */
  workdir: string;
  /** A shell script (run with /bin/sh) that runs the step, appends its output to `log` and writes its exit code. */
  wrapper: string;
  log: string;
  env: Record<string, string>;
  /** The container image the step asked for, when images are honoured. */
  image?: string;
  cpus: number;
  /** GiB */
  memory: number;
}

/**
 * The contract the engines call. Batch-shaped, as dask-gateway's jobqueue base: the engines gather
 * what one tick or request needs (every worker to start, every handle to check or stop) and make
 * one call, so a batch system costs one command per call. Handles are made and read only here, in
 * backends/. A backend that acts on one thing at a time (a process, a pod) extends ItemBackend.
 */
export interface Backend {
  readonly kind: string;
  /**
   * Starts a cluster's scheduler. One at a time: a cluster has one, started when its owner asks,
   * and gathering several users' creates would only delay each of them.
   */
  startScheduler(launch: SchedulerLaunch): Promise<BackendHandle>;
  /** Starts workers: one result per launch, in order; one that fails (an Error) does not fail the others. */
  startWorkers(launches: WorkerLaunch[]): Promise<Array<BackendHandle | Error>>;
  /** Stops what is behind the handles and everything it started. Idempotent: gone is stopped. */
  stop(handles: BackendHandle[]): Promise<void>;
  /** Whether the processes/jobs/pods behind the handles still run: one state per handle, in order. */
  check(handles: BackendHandle[]): Promise<ProcessState[]>;
  /**
   * After a restart, given the handles the engine still tracks: removes what the backend runs for
   * this gateway that none of them refers to (e.g. jobs left in a batch queue). Optional.
   */
  removeOrphans?(live: BackendHandle[]): Promise<void>;
  /** Starts workflow steps, as startWorkers; check() and stop() then work on their handles. Optional: backends without it run no workflows. */
  startSteps?(launches: StepLaunch[]): Promise<Array<BackendHandle | Error>>;
  /** What runs a handle, for people: "process 1234", "HTCondor job 12.0". */
  describe?(handle: BackendHandle): string;
  /** Registers a listener called when something the backend runs may have changed state (a process exited, a pod changed), so callers need not wait for their next poll. Optional. */
  onChange?(listener: () => void): void;
  /** Hands a cluster's refreshed owner token to where its processes read it, when that is not the local file (e.g. a Secret). Optional. */
  updateToken?(cluster: ClusterRecord, token: string): Promise<void>;
  /**
   * Where a new cluster's files go, when not under the gateway's data dir (a multi-user backend: a
   * directory of the owner's). May refuse the owner (an AppError). Optional.
   */
  clusterWorkDir?(cluster: ClusterRecord): Promise<string>;
  /**
   * Writes a cluster's TLS pair and API token into its workDir, where its processes read them.
   * Optional: else the gateway writes them itself. A multi-user backend writes them as the owner.
   */
  writeClusterFiles?(cluster: ClusterRecord): Promise<ClusterFiles>;
  /** Removes what writeClusterFiles wrote (the logs stay when keepLogs). Optional, as above. */
  removeClusterFiles?(cluster: ClusterRecord, keepLogs: boolean): Promise<void>;
  /** Replaces the owner's access token file in the cluster's directory. Optional: else the gateway writes it. */
  writeBearerToken?(cluster: ClusterRecord, token: string): Promise<void>;
  /** Lets a run's owner work in the run's new workspace (e.g. the owner's account gets access). Optional. */
  shareRunWorkspace?(dir: string, owner: string): Promise<void>;
  /** Cleans up after a finished step (e.g. deletes its Job). Optional. */
  release?(handle: BackendHandle): Promise<void>;
  /**
   * Where the gateway and workers reach a scheduler, given what its heartbeat reported: the host is
   * where this backend launched it (loopback, the job's machine, the pod), never the heartbeat's
   * word alone; a report naming another host is a 422 (the caller logs it).
   */
  schedulerAddresses(cluster: ClusterRecord, reported: SchedulerAddresses): SchedulerAddresses | Promise<SchedulerAddresses>;
  close(): Promise<void>;
}

/** The hooks withDefaults() fills in; the gateway's file and token hooks stay optional (their absence means "the gateway does it"). */
type Defaulted =
  'removeOrphans' | 'startSteps' | 'describe' | 'onChange' | 'clusterWorkDir' | 'writeClusterFiles' | 'removeClusterFiles' | 'shareRunWorkspace' | 'release';

/** A backend whose optional hooks all answer: what the engines call. */
export type EngineBackend = Backend &
  Required<Pick<Backend, Defaulted>> & {
    /** Whether the backend runs workflow steps (it has its own startSteps). */
    readonly runsSteps: boolean;
  };

/**
 * The one place the optional hooks get their defaults: no orphans to remove, no steps (each start
 * an Error), a plain description, no change events, the cluster's work dir as it is and its files
 * written and removed by the gateway itself (clusters/cluster-files.ts), nothing to share or release. The engines wrap their backend once, so no caller writes `backend.x?.()`.
 */
export function withDefaults(b: Backend): EngineBackend {
  if ('runsSteps' in b) return b as EngineBackend;
  const noSteps = (launches: StepLaunch[]) => Promise.resolve(launches.map(() => new Error(`the ${b.kind} backend runs no workflow steps`)));
  const filled: Pick<EngineBackend, Defaulted | 'runsSteps'> = {
    runsSteps: typeof b.startSteps === 'function',
    removeOrphans: b.removeOrphans ? (live) => b.removeOrphans!(live) : () => Promise.resolve(),
    startSteps: b.startSteps ? (launches) => b.startSteps!(launches) : noSteps,
    describe: b.describe ? (h) => b.describe!(h) : (h) => `${b.kind} ${JSON.stringify(h)}`,
    onChange: b.onChange ? (listener) => b.onChange!(listener) : () => undefined,
    clusterWorkDir: b.clusterWorkDir ? (c) => b.clusterWorkDir!(c) : (c) => Promise.resolve(c.workDir),
    writeClusterFiles: b.writeClusterFiles ? (c) => b.writeClusterFiles!(c) : async (c) => writeClusterFiles(c),
    removeClusterFiles: b.removeClusterFiles ? (c, keepLogs) => b.removeClusterFiles!(c, keepLogs) : async (c, keepLogs) => removeClusterFiles(c, keepLogs),
    shareRunWorkspace: b.shareRunWorkspace ? (dir, owner) => b.shareRunWorkspace!(dir, owner) : () => Promise.resolve(),
    release: b.release ? (h) => b.release!(h) : () => Promise.resolve(),
  };
  // The backend stays itself (its `this`, its other methods); the defaults answer only where it has none.
  return new Proxy(b, {
    get: (target, key) => {
      if (key in filled) return filled[key as keyof typeof filled];
      const value: unknown = Reflect.get(target, key, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
    has: (target, key) => key in filled || Reflect.has(target, key),
  }) as EngineBackend;
}

/** How many single starts, stops or checks an ItemBackend runs at once for one list. */
export const ITEM_CONCURRENCY = 16;

/**
 * Runs `fn` over `items` with at most `limit` at once; each result in the item's place, a failure
 * as its Error (the others go on).
 */
export async function eachBounded<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<Array<R | Error>> {
  const out = new Array<R | Error>(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!);
      } catch (err) {
        out[i] = err instanceof Error ? err : new Error(String(err));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return out;
}

/**
 * The list contract for a backend that acts on one thing at a time (local processes, Kubernetes
 * pods): it writes the single-item methods, this base runs lists through them with bounded
 * concurrency. stop() fails when any stop failed (after trying all); check() fails when any check did.
 */
export abstract class ItemBackend implements Backend {
  abstract readonly kind: string;
  protected readonly concurrency: number = ITEM_CONCURRENCY;
  abstract startScheduler(launch: SchedulerLaunch): Promise<BackendHandle>;
  abstract startWorker(launch: WorkerLaunch): Promise<BackendHandle>;
  abstract stopOne(handle: BackendHandle): Promise<void>;
  abstract checkOne(handle: BackendHandle): Promise<ProcessState>;
  abstract schedulerAddresses(cluster: ClusterRecord, reported: SchedulerAddresses): SchedulerAddresses | Promise<SchedulerAddresses>;
  abstract close(): Promise<void>;

  startWorkers(launches: WorkerLaunch[]): Promise<Array<BackendHandle | Error>> {
    return eachBounded(launches, this.concurrency, (l) => this.startWorker(l));
  }

  async stop(handles: BackendHandle[]): Promise<void> {
    const failed = (await eachBounded(handles, this.concurrency, (h) => this.stopOne(h))).filter((r): r is Error => r instanceof Error);
    if (failed.length) throw new AggregateError(failed, `${failed.length} of ${handles.length} could not be stopped: ${failed[0]!.message}`);
  }

  async check(handles: BackendHandle[]): Promise<ProcessState[]> {
    const states = await eachBounded(handles, this.concurrency, (h) => this.checkOne(h));
    const failed = states.find((s): s is Error => s instanceof Error);
    if (failed) throw failed;
    return states as ProcessState[];
  }
}

/**
 * One backend check for every caller that asks in the same turn of the event loop: the workflow
 * engine ticks each run on its own, but all runs tick together on the poll, so a batch system is
 * asked once for all their steps instead of once per run. No delay: the calls made in one synchronous
 * stretch (the poll kicking every run) are joined when it ends; later calls make the next query.
 * When the joined check fails, each caller's handles are checked again on their own.
 */
export function joinedChecks(backend: Pick<Backend, 'check'>): (handles: BackendHandle[]) => Promise<ProcessState[]> {
  let queued: Array<{ handles: BackendHandle[]; resolve: (s: ProcessState[]) => void; reject: (e: unknown) => void }> = [];
  const flush = () => {
    const calls = queued;
    queued = [];
    backend.check(calls.flatMap((c) => c.handles)).then(
      (states) => {
        let at = 0;
        for (const c of calls) {
          c.resolve(states.slice(at, at + c.handles.length));
          at += c.handles.length;
        }
      },
      (err: unknown) => {
        if (calls.length === 1) return calls[0]!.reject(err);
        // One caller's handles (a user's job the backend cannot read) must not fail every other
        // caller's check: each is asked again alone, so a failure reaches only its own caller.
        for (const c of calls) backend.check(c.handles).then(c.resolve, c.reject);
      },
    );
  };
  return (handles) => {
    if (!handles.length) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      if (!queued.length) queueMicrotask(flush);
      queued.push({ handles, resolve, reject });
    });
  };
}

/**
 * The label / ClassAd value that marks what one gateway (or one set of replicas) started: derived
 * from where its state lives, so replicas sharing a database agree on it and two gateways with
 * separate state never touch each other's pods or jobs.
 */
export function instanceName(stateIdentity: string): string {
  return `af-gateway-${createHash('sha256').update(stateIdentity).digest('hex').slice(0, 12)}`;
}
