// The lifecycle engine: moves every cluster PENDING → RUNNING → STOPPING → STOPPED (or FAILED),
// driven by scheduler heartbeats and a periodic check of processes and timeouts. It persists each
// step before acting on it, so a gateway restarted after a crash adopts what still runs and reaps
// what does not. Backends only start, stop and check processes; all decisions are made here.
import { EventEmitter } from 'node:events';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import type { FastifyBaseLogger } from 'fastify';
import type { AfWorkerGroup, Heartbeat, ScaleResult } from '@af-gateway/schemas';
import { withDefaults, type Backend, type EngineBackend, type ProcessState } from '../backends/backend.js';
import type { ResolvedConfig } from '../config.js';
import { AppError, conflict, errorMessage, forbidden, notFound, unprocessable } from '../errors.js';
import type { StateStore } from '../store/state-store.js';
import type { ClusterOptions } from './cluster-options.js';
import { Policy, type Usage, type WorkerCap } from './policy.js';
import type { User } from '../auth/authenticator.js';
import { clusterFiles } from './cluster-files.js';
import {
  ACTIVE_STATUSES,
  DEFAULT_GROUP,
  isActive,
  type BackendHandle,
  type ClusterRecord,
  type ClusterStatus,
  type WorkerRecord,
  workerIsLive,
} from './model.js';
import { newClusterKeypair } from './tls-keypair.js';
import { ADAPTIVE_WINDOW, readGroupDemand, steer, withinRange, type GroupRange, type LowDemand } from './group-adaptive.js';
import { accessRefusal, groupDaskResources, type GroupConfig } from './group-profiles.js';

/** Answer of scale and adapt (scale-result.json). */
export type { ScaleResult };

/**
 * Tells a scheduler to scale or adapt: POSTs `body` to its dask-gateway API at `apiAddress` with
 * the cluster's token and resolves to the HTTP status (rejects when the scheduler does not answer).
 */
export type SchedulerCall = (apiAddress: string, token: string, body: Record<string, unknown>) => Promise<number>;

export interface ClusterManagerDeps {
  store: StateStore;
  backend: Backend;
  config: ResolvedConfig;
  log: FastifyBaseLogger;
  /** How the gateway reaches schedulers' APIs; default: HTTP (postToScheduler). Tests inject their own. */
  schedulerCall?: SchedulerCall;
  /** The backend of each worker group (worker_groups) that has one of its own; the others use `backend`. */
  groupBackends?: ReadonlyMap<string, Backend>;
}

/** What one tracked cluster holds in memory. */
interface ActiveEntry {
  cluster: ClusterRecord;
  workers: Map<string, WorkerRecord>;
  launches: Set<Promise<unknown>>;
  startingWorkers: number;
  /** Failed starts in a row of each non-default group (the default group's are cluster.workerFailures). */
  groupFailures: Map<string, number>;
  /** The last notable event of each non-default group (why it stopped starting workers). */
  groupMessages: Map<string, string>;
  /** Each overflowing group's workers that had waited too long at the last look (to tell "room again" from "fewer wanted"). */
  overflowWaited?: Map<string, Set<string>>;
  /** Groups whose starts failed cluster.worker_max_failures times in a row: no overflow goes there until they are scaled again. */
  overflowBroken?: Set<string>;
  /** Why each group starts fewer workers than its target now (a limit, counting workers still being retired), as said in groupMessages. */
  heldBack?: Map<string, string>;
  /** The last valid demand the scheduler reported for each group (af_group_demand). */
  demand?: Map<string, number>;
  /** Adaptive groups whose demand is below their target: since when, and the most wanted since. */
  lowDemand?: Map<string, LowDemand>;
  /** Why adaptive scaling gives a group fewer workers than it wants now (a limit), as said in groupMessages. */
  adaptLimited?: Map<string, string>;
  /** The groups op is on its way to the scheduler. */
  tellingGroups?: boolean;
  /** Warnings already logged for this cluster (a hostile or broken scheduler would repeat them every heartbeat). */
  warned?: Set<string>;
}

/**
 * POSTs to a scheduler's dask-gateway API. With node:http, not fetch(): the scheduler's port is
 * whatever its OS gave it, and fetch() refuses the Fetch standard's "bad ports" (6000, 10080, …).
 */
export const postToScheduler: SchedulerCall = (apiAddress, token, body) => {
  const payload = JSON.stringify(body);
  return new Promise<number>((resolve, reject) => {
    const req = httpRequest(
      `${apiAddress}/api/comm`,
      {
        method: 'POST',
        headers: { Authorization: `token ${token}`, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) },
        timeout: 10_000,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('no answer within 10 s')));
    req.on('error', reject);
    req.end(payload);
  });
};

/** A worker to end, how and why. */
type WorkerEnd = [WorkerRecord, 'STOPPED' | 'FAILED', string];

interface ClusterEvents {
  cluster: [ClusterRecord];
  worker: [ClusterRecord, WorkerRecord];
}

const now = () => Date.now();
/** How long the periodic check holds the event loop before it lets heartbeats and API calls in. */
const CHECK_SLICE_MS = 4;
/** A function to await between pieces of a long pass: it yields (to I/O) once `ms` have passed since the last yield. */
function timeSlicer(ms: number): () => Promise<void> | undefined {
  let since = performance.now();
  return () => {
    if (performance.now() - since < ms) return undefined;
    return new Promise<void>((resolve) =>
      setImmediate(() => {
        since = performance.now();
        resolve();
      }),
    );
  };
}
/** The fields of a cluster record a heartbeat may change and the state store keeps: all but lastHeartbeat and the secrets and certificate it never touches. */
const NOT_COMPARED = new Set(['lastHeartbeat', 'tlsCert', 'tlsKey', 'token']);
function persistedKey(c: ClusterRecord): string {
  return JSON.stringify(c, function (this: unknown, key: string, value: unknown) {
    return this === c && NOT_COMPARED.has(key) ? undefined : value;
  });
}
const randomHex = (bytes: number) => randomBytes(bytes).toString('hex');
const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
const lowerFirst = (s: string) => s.charAt(0).toLowerCase() + s.slice(1);
/** A worker whose process may still run: live, or being stopped (a stop's grace period can last seconds), so it counts against the limits. */
const holdsSlot = (w: WorkerRecord) => workerIsLive(w) || w.status === 'STOPPING';
/** A string a user's process made, as a log line shows it: at most 200 characters. */
const clip = (s: string) => (s.length > 200 ? `${s.slice(0, 200)}…` : s);

export class ClusterManager extends EventEmitter<ClusterEvents> {
  readonly policy: Policy;
  /** Clusters that are PENDING, RUNNING or STOPPING, with their workers. */
  private readonly active = new Map<string, ActiveEntry>();
  /** The same entries by owner: a user's list and the limits of a cluster read its owner's only, not 10,000 others. */
  private readonly activeByUser = new Map<string, Set<ActiveEntry>>();
  private readonly ending = new Map<string, Promise<void>>();
  /** Clusters being created: past the limits check, not yet on record (they count against the limits). */
  private readonly creating = new Set<ClusterRecord>();
  /**
   * Workers whose start is in flight (no handle yet), with how they were ended meanwhile: their
   * process may still appear, so they hold their slot until the launch has stopped it.
   */
  private readonly launching = new Map<WorkerRecord, WorkerEnd | null>();
  private checkTimer: NodeJS.Timeout | undefined;
  private checking = false;
  /** When the last restart recovery ran (ms); starting workers are timed from then at the earliest. */
  private recoveredAt = 0;
  private apiUrl = '';
  private readonly cfg: ResolvedConfig['cluster'];
  private readonly backend: EngineBackend;
  private readonly schedulerCall: SchedulerCall;
  /** The configured worker groups besides default, in config order. */
  private readonly groupConfigs: ReadonlyMap<string, GroupConfig>;
  /** The backend of each group that has its own (each distinct backend wrapped once). */
  private readonly groupBackends = new Map<string, EngineBackend>();
  /** Where each group with an overflow sends the workers it cannot place, and after how many seconds of waiting. */
  private readonly overflows: ReadonlyMap<string, { group: string; after: number }>;

  constructor(private readonly deps: ClusterManagerDeps) {
    super();
    this.setMaxListeners(0);
    this.cfg = deps.config.cluster;
    this.backend = withDefaults(deps.backend);
    this.schedulerCall = deps.schedulerCall ?? postToScheduler;
    this.policy = new Policy(deps.config.policy, deps.config.cluster_options, deps.config.cluster.max_workers);
    this.groupConfigs = new Map((deps.config.worker_groups ?? []).map((g) => [g.name, g]));
    const overflows = new Map<string, { group: string; after: number }>();
    const defaultOverflow = deps.config.default_worker_group?.overflow;
    if (defaultOverflow) overflows.set(DEFAULT_GROUP, defaultOverflow);
    for (const g of this.groupConfigs.values()) if (g.overflow) overflows.set(g.name, g.overflow);
    this.overflows = overflows;
    const wrapped = new Map<Backend, EngineBackend>([[deps.backend, this.backend]]);
    for (const [group, b] of deps.groupBackends ?? []) {
      if (!this.groupConfigs.has(group)) throw new Error(`a backend was given for worker group ${group}, which the config does not define`);
      if (!wrapped.has(b)) wrapped.set(b, withDefaults(b));
      this.groupBackends.set(group, wrapped.get(b)!);
    }
  }

  // --- worker groups --------------------------------------------------------------------------

  /** The backend a group's workers run on. */
  private backendOf(group: string): EngineBackend {
    return this.groupBackends.get(group) ?? this.backend;
  }

  /** The names of a cluster's groups: default first, then the configured ones. */
  groupNames(): string[] {
    return [DEFAULT_GROUP, ...this.groupConfigs.keys()];
  }

  /** A group's target: for default the scheduler's count; for another group what it was scaled to plus the overflow it takes. */
  private targetOf(c: ClusterRecord, group: string): number {
    return group === DEFAULT_GROUP ? c.count : (c.groupTargets[group] ?? 0) + this.overflowInto(c, group);
  }

  /** Workers the engine runs in `group` for groups that overflow into it. */
  private overflowInto(c: ClusterRecord, group: string): number {
    let n = 0;
    for (const [source, count] of Object.entries(c.overflow ?? {})) if (this.overflows.get(source)?.group === group) n += count;
    return n;
  }

  /** A group's batch system in words ("HTCondor", "Slurm"). */
  private systemOf(group: string): string {
    const kind = this.backendOf(group).kind;
    return { htcondor: 'HTCondor', slurm: 'Slurm', kubernetes: 'Kubernetes', local: 'the local machine' }[kind] ?? kind;
  }

  /** Cores and memory (GiB) of one worker of a group. */
  private shapeOf(c: ClusterRecord, group: string): { cores: number; memory: number } {
    const g = this.groupConfigs.get(group);
    return { cores: g?.worker_cores ?? c.settings.worker_cores, memory: g?.worker_memory ?? c.settings.worker_memory };
  }

  /** The cluster as a group's workers see it: the group's size, and its Dask resources in the environment. */
  private clusterForGroup(c: ClusterRecord, group: string): ClusterRecord {
    const g = this.groupConfigs.get(group);
    if (!g) return c;
    const { cores, memory } = this.shapeOf(c, group);
    const environment = { ...c.settings.environment };
    // (one JSON value keeps the labels' case; Dask reads it as the worker's resources)
    const resources = groupDaskResources(g);
    if (Object.keys(resources).length) environment.DASK_DISTRIBUTED__WORKER__RESOURCES = JSON.stringify(resources);
    return { ...c, settings: { ...c.settings, worker_cores: cores, worker_memory: memory, environment } };
  }

  /** What each group of a cluster counts against the limits: the workers it wants or has, whichever is more. */
  private groupUsage(c: ClusterRecord, workers: Iterable<WorkerRecord>): Map<string, number> {
    const live = new Map<string, number>();
    for (const w of workers) if (holdsSlot(w)) live.set(w.group, (live.get(w.group) ?? 0) + 1);
    const out = new Map<string, number>();
    for (const g of new Set([...this.groupNames(), ...live.keys()])) out.set(g, Math.max(this.targetOf(c, g), live.get(g) ?? 0));
    return out;
  }

  /** The most workers a group of `c` may have now, counting every group of every cluster. */
  private capFor(c: ClusterRecord, group: string): WorkerCap | null {
    const entry = this.active.get(c.name);
    const others = { workers: 0, cores: 0, memory: 0 };
    for (const [g, n] of this.groupUsage(c, entry?.workers.values() ?? [])) {
      if (g === group) continue;
      const s = this.shapeOf(c, g);
      others.workers += n;
      others.cores += n * s.cores;
      others.memory += n * s.memory;
    }
    let cap = this.policy.workerCap(c, this.usageFor(c), { ...this.shapeOf(c, group), others });
    const own = this.groupConfigs.get(group)?.max_workers;
    if (own != null && (!cap || own < cap.max))
      cap = { max: own, reason: `worker group ${group}'s limit of ${own} workers per cluster (worker_groups[].max_workers)` };
    return cap;
  }

  /** A cluster's groups for people: targets, counts, pending workers and why they wait. */
  groupsJson(c: ClusterRecord, workers: readonly WorkerRecord[]): AfWorkerGroup[] {
    const messages = this.active.get(c.name)?.groupMessages;
    return this.groupNames().map((name) => {
      const g = this.groupConfigs.get(name);
      const mine = workers.filter((w) => w.group === name && workerIsLive(w));
      const waiting = mine.filter((w) => w.status === 'STARTING' && w.waitingSince != null);
      const { cores, memory } = this.shapeOf(c, name);
      const refused = this.refusalOf(c, name);
      return {
        name,
        description: g ? g.description : 'The workers the dask-gateway client scales',
        backend: this.backendOf(name).kind,
        worker_cores: cores,
        worker_memory: memory,
        resources: g ? groupDaskResources(g) : {},
        max_workers: g?.max_workers ?? null,
        gpus: g?.gpus ?? 0,
        image: g?.image ?? null,
        available: refused === null,
        unavailable_reason: refused ?? '',
        target: isActive(c) ? this.targetOf(c, name) : 0,
        starting: mine.filter((w) => w.status === 'STARTING').length,
        running: mine.filter((w) => w.status === 'RUNNING').length,
        pending: waiting.length,
        pending_reasons: [...new Set(waiting.map((w) => w.message).filter(Boolean))],
        message: messages?.get(name) ?? '',
        adaptive: name === DEFAULT_GROUP ? (c.adaptive ?? null) : (c.groupAdaptive?.[name] ?? null),
        overflow: this.overflowJson(c, name),
      };
    });
  }

  /** Why the cluster's owner may not use a group (worker_groups[].access), or null; default is everyone's. */
  private refusalOf(c: ClusterRecord, group: string): string | null {
    const g = this.groupConfigs.get(group);
    return g ? accessRefusal(g, c) : null;
  }

  /** A 403 saying why, for a group the cluster's owner may not use. */
  private mayUse(c: ClusterRecord, group: string): void {
    const refused = this.refusalOf(c, group);
    if (refused) throw forbidden(refused);
  }

  private overflowJson(c: ClusterRecord, group: string): AfWorkerGroup['overflow'] {
    const o = this.overflows.get(group);
    return o ? { group: o.group, after: o.after, workers: c.overflow?.[group] ?? 0 } : null;
  }

  /** Adopts what survived a restart, then starts the periodic check. `apiUrl` is where schedulers heartbeat. */
  async start(apiUrl: string): Promise<void> {
    this.apiUrl = apiUrl;
    await this.recover();
    this.checkTimer = setInterval(() => void this.checkAll(), this.cfg.check_period * 1000);
    this.checkTimer.unref();
  }

  async close(): Promise<void> {
    clearInterval(this.checkTimer);
    if (this.cfg.stop_on_shutdown) {
      await Promise.all([...this.active.values()].map(({ cluster }) => this.end(cluster, 'STOPPED', 'the gateway shut down')));
    }
    await Promise.all(this.ending.values());
  }

  // --- queries --------------------------------------------------------------------------------

  async get(name: string): Promise<ClusterRecord | undefined> {
    return this.active.get(name)?.cluster ?? (await this.deps.store.loadCluster(name));
  }

  async workersOf(name: string): Promise<WorkerRecord[]> {
    const entry = this.active.get(name);
    return entry ? [...entry.workers.values()] : await this.deps.store.loadWorkers(name);
  }

  /**
   * Clusters in the given statuses that this gateway drives, with their live workers, from memory
   * (no state store read): for event snapshots, metrics and token updates.
   */
  activeClusters(statuses: readonly ClusterStatus[], username?: string): { cluster: ClusterRecord; workers: WorkerRecord[] }[] {
    // (one user's from the per-user index: a Lab session's snapshot does not walk 10,000 clusters)
    return [...(username === undefined ? this.active.values() : (this.activeByUser.get(username) ?? []))]
      .filter((e) => statuses.includes(e.cluster.status) && (username === undefined || e.cluster.username === username))
      .map((e) => ({ cluster: e.cluster, workers: [...e.workers.values()] }));
  }

  /** The live workers of a cluster this gateway drives; undefined once it ended (ask workersOf). */
  activeWorkers(name: string): WorkerRecord[] | undefined {
    const entry = this.active.get(name);
    return entry && [...entry.workers.values()];
  }

  async list(username: string | undefined, statuses: readonly ClusterStatus[]): Promise<ClusterRecord[]> {
    const activeWanted = statuses.filter((s) => ACTIVE_STATUSES.includes(s));
    const endedWanted = statuses.filter((s) => !ACTIVE_STATUSES.includes(s));
    const out = [...(username === undefined ? this.active.values() : (this.activeByUser.get(username) ?? []))]
      .map((e) => e.cluster)
      .filter((c) => activeWanted.includes(c.status) && (username === undefined || c.username === username));
    if (endedWanted.length) out.push(...(await this.deps.store.loadClusters(endedWanted, username)));
    return out.sort((a, b) => a.startTime - b.startTime);
  }

  /** The scheduler's TLS address for the SNI proxy, only while the cluster is running. */
  schedulerRoute(name: string): string | undefined {
    const c = this.active.get(name)?.cluster;
    return c?.status === 'RUNNING' ? c.schedulerAddress : undefined;
  }

  async checkToken(name: string, token: string): Promise<boolean> {
    const c = await this.get(name);
    if (!c) return false;
    const a = Buffer.from(c.token);
    const b = Buffer.from(token);
    return a.length === b.length && timingSafeEqual(a, b);
  }

  /** Resolves at the cluster's next change, or after `timeoutMs`. */
  waitForChange(name: string, timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const onChange = (c: ClusterRecord) => {
        if (c.name === name) done();
      };
      const timer = setTimeout(() => done(), timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.off('cluster', onChange);
        resolve();
      };
      this.on('cluster', onChange);
    });
  }

  // --- commands -------------------------------------------------------------------------------

  /** The options form this user is offered. */
  optionsFor(user: User): ClusterOptions {
    return this.policy.optionsFor(user);
  }

  async create(user: User, requestedOptions: unknown): Promise<ClusterRecord> {
    const form = this.policy.optionsFor(user);
    const options = form.parse(requestedOptions);
    // Clusters still being created count too: parallel creates cannot pass a limit together.
    this.policy.checkCreate(user, [...[...this.active.values()].map((e) => e.cluster), ...this.creating]);
    const settings = form.settings(options, this.cfg);
    const username = user.name;
    const name = randomHex(16);
    const cluster: ClusterRecord = {
      name,
      displayName: form.displayName(options),
      username,
      groups: [...user.groups],
      options,
      settings,
      status: 'PENDING',
      stopRequested: false,
      token: randomBytes(32).toString('base64url'),
      tlsCert: '', // (made below)
      tlsKey: '',
      scheduler: null,
      schedulerAddress: '',
      dashboardAddress: '',
      apiAddress: '',
      count: 0,
      groupTargets: {},
      adaptive: null,
      startTime: now(),
      stopTime: null,
      lastHeartbeat: null,
      message: 'starting the scheduler',
      workerFailures: 0,
      workDir: join(this.deps.config.data_dir, 'clusters', name),
    };
    this.creating.add(cluster);
    try {
      const { cert, key } = await newClusterKeypair(name);
      cluster.tlsCert = cert;
      cluster.tlsKey = key;
      // A multi-user backend keeps the files in the owner's own directory; a user without a usable
      // account is refused here (403), before anything exists.
      cluster.workDir = await this.backend.clusterWorkDir(cluster);
      await this.deps.store.saveCluster(cluster); // nothing is started before the cluster is on record
      this.addActive(name, { cluster, workers: new Map(), launches: new Set(), startingWorkers: 0, groupFailures: new Map(), groupMessages: new Map() });
    } finally {
      this.creating.delete(cluster);
    }
    this.changed(cluster);
    this.deps.log.info({ cluster: name, user: username }, 'cluster submitted');
    this.track(cluster, () => this.launchScheduler(cluster));
    return cluster;
  }

  private async launchScheduler(c: ClusterRecord): Promise<void> {
    try {
      const files = await this.backend.writeClusterFiles(c);
      if (c.workDir !== files.dir) throw new Error('the backend wrote the cluster files elsewhere than its work dir');
      const handle = await this.backend.startScheduler({
        cluster: c,
        files,
        apiUrl: this.apiUrl,
        heartbeatPeriod: this.cfg.heartbeat_period,
        adaptivePeriod: this.cfg.adaptive_period,
      });
      if (c.status !== 'PENDING') {
        // Stopped or failed while the process was being started: it must not outlive the cluster.
        await this.backend.stop([handle]);
        return;
      }
      c.scheduler = handle;
      void this.save(c);
    } catch (err) {
      void this.end(c, 'FAILED', `the scheduler could not be started: ${errorMessage(err)}`); // not awaited: ending waits for this launch
    }
  }

  async stop(name: string): Promise<void> {
    const c = this.active.get(name)?.cluster;
    if (!c) {
      if (!(await this.deps.store.loadCluster(name))) throw notFound(`Cluster ${name}`);
      return; // already ended
    }
    c.stopRequested = true;
    await this.end(c, 'STOPPED', 'stopped on request');
  }

  private async runningCluster(name: string): Promise<ClusterRecord> {
    const c = await this.get(name);
    if (!c) throw notFound(`Cluster ${name}`);
    if (c.status !== 'RUNNING' || c.stopRequested) {
      throw conflict(`Cluster ${name} is ${c.status.toLowerCase()}, not running; it can only be scaled while running`, 'not_running');
    }
    return c;
  }

  /** What each active cluster counts against the limits: the workers it wants or has, whichever is more. */
  /**
   * What the limits on `c` may count: nothing without a limit on workers, cores or memory; its owner's
   * clusters when only policy.user_limits has one; every cluster when a group of the owner has one
   * (Policy.workerCap picks the clusters each limit covers). A heartbeat of one of 10,000 clusters
   * then reads a few, not all.
   */
  private usageFor(c: ClusterRecord): Usage[] {
    const p = this.deps.config.policy;
    const limited = (l: { max_workers?: number | null; max_cores?: number | null; max_memory?: number | null } | undefined) =>
      l !== undefined && (l.max_workers != null || l.max_cores != null || l.max_memory != null);
    const groupLimits = (p.group_limits ?? {}) as Record<string, Parameters<typeof limited>[0]>;
    if (c.groups.some((g) => limited(groupLimits[g]))) return this.usage(this.active.values());
    if (limited(p.user_limits)) return this.usage(this.activeByUser.get(c.username) ?? []);
    return [];
  }

  private addActive(name: string, entry: ActiveEntry): void {
    this.active.set(name, entry);
    let mine = this.activeByUser.get(entry.cluster.username);
    if (!mine) this.activeByUser.set(entry.cluster.username, (mine = new Set()));
    mine.add(entry);
  }

  private removeActive(name: string): void {
    const entry = this.active.get(name);
    if (!entry) return;
    this.active.delete(name);
    const mine = this.activeByUser.get(entry.cluster.username);
    mine?.delete(entry);
    if (mine && !mine.size) this.activeByUser.delete(entry.cluster.username);
  }

  private usage(entries: Iterable<ActiveEntry>): Usage[] {
    return [...entries].map(({ cluster, workers }) => {
      const u: Usage = { cluster, workers: 0, cores: 0, memory: 0 };
      for (const [g, n] of this.groupUsage(cluster, workers.values())) {
        const s = this.shapeOf(cluster, g);
        u.workers += n;
        u.cores += n * s.cores;
        u.memory += n * s.memory;
      }
      return u;
    });
  }

  async scale(name: string, count: number): Promise<ScaleResult> {
    const c = await this.runningCluster(name);
    const cap = this.capFor(c, DEFAULT_GROUP);
    let msg: string | null = null;
    if (cap && count > cap.max) {
      msg = `Scale request of ${count} workers exceeds ${cap.reason}; scaling to ${cap.max} instead.`;
      count = cap.max;
    }
    await this.tellScheduler(c, { op: 'scale', count });
    c.adaptive = null;
    await this.save(c);
    this.changed(c);
    return { ok: msg === null, msg };
  }

  async adapt(name: string, minimum: number | null, maximum: number | null, active: boolean): Promise<ScaleResult> {
    const c = await this.runningCluster(name);
    if (minimum !== null && maximum !== null && minimum > maximum) {
      throw unprocessable(`Adaptive minimum (${minimum}) must not be larger than maximum (${maximum})`, 'invalid_range');
    }
    const cap = active ? this.capFor(c, DEFAULT_GROUP) : null;
    let msg: string | null = null;
    if (cap) {
      const min0 = minimum ?? 0;
      const max0 = maximum ?? cap.max;
      if (min0 > cap.max || max0 > cap.max) {
        msg =
          `Adaptive range minimum=${min0}, maximum=${max0} exceeds ${cap.reason}; ` +
          `using minimum=${Math.min(min0, cap.max)}, maximum=${Math.min(max0, cap.max)} instead.`;
      }
      minimum = Math.min(min0, cap.max);
      maximum = Math.min(max0, cap.max);
    }
    await this.tellScheduler(c, { op: 'adapt', minimum, maximum, active });
    c.adaptive = active ? { minimum, maximum } : null;
    await this.save(c);
    this.changed(c);
    return { ok: msg === null, msg };
  }

  /**
   * Sets the target of one worker group (the AF API). All or nothing: an unknown group is a 404, a
   * count beyond a limit a 422 naming the limit and what is possible, and nothing changes then.
   * The default group is the scheduler's count, as the dask-gateway client's scale sets it.
   */
  async scaleGroup(name: string, group: string, count: number): Promise<AfWorkerGroup> {
    const c = await this.runningCluster(name);
    this.knownGroup(c, group);
    this.mayUse(c, group);
    if (!Number.isInteger(count) || count < 0) throw unprocessable(`A worker count must be a whole number of at least 0, not ${count}`, 'invalid_count');
    const cap = this.capFor(c, group);
    // (workers a group runs for another group's overflow count too)
    const taken = group === DEFAULT_GROUP ? 0 : this.overflowInto(c, group);
    if (cap && count + taken > cap.max) {
      const possible = Math.max(0, cap.max - taken);
      const overflow = taken ? ` (${taken} of its workers run for other groups' overflow)` : '';
      throw unprocessable(
        `Scaling worker group ${group} to ${count} workers exceeds ${cap.reason}${overflow}; at most ${possible} ${possible === 1 ? 'is' : 'are'} possible now. Ask for fewer, or scale another group or cluster down first.`,
        'limit_workers',
      );
    }
    if (group === DEFAULT_GROUP) {
      await this.tellScheduler(c, { op: 'scale', count });
      c.adaptive = null;
      c.count = count;
    } else {
      c.groupTargets = { ...c.groupTargets, [group]: count };
      // A count set by hand turns the group's adaptive scaling off, as dask-gateway's scale does for default.
      this.stopAdapting(c, group);
      this.active.get(c.name)?.groupMessages.delete(group);
      this.active.get(c.name)?.overflowBroken?.delete(group);
    }
    await this.save(c);
    this.deps.log.info({ cluster: c.name, group, count }, 'worker group scaled');
    this.changed(c);
    this.reconcileWorkers(c);
    return this.groupJson(c, group);
  }

  /** A 404 for a group the cluster does not have. */
  private knownGroup(c: ClusterRecord, group: string): void {
    if (!this.groupNames().includes(group)) {
      throw notFound(`Worker group ${JSON.stringify(group.slice(0, 40))} of cluster ${c.name} (its groups are ${this.groupNames().join(', ')})`);
    }
  }

  private groupJson(c: ClusterRecord, group: string): AfWorkerGroup {
    return this.groupsJson(c, this.activeWorkers(c.name) ?? []).find((g) => g.name === group)!;
  }

  /**
   * Turns a group's adaptive scaling on between `minimum` and `maximum` (AF API), or off. For default
   * it is the dask-gateway adapt (the scheduler's own loop sizes default). For another group the
   * scheduler reports the group's demand in its heartbeats and the engine sizes the group within the
   * range and the limits. As scale: an unknown group is a 404, minimum > maximum a 422, and a range
   * past a limit is capped, the group's message saying what is used; nothing changes when the
   * scheduler does not take the groups (409).
   */
  async adaptGroup(name: string, group: string, minimum: number | null, maximum: number | null, active: boolean): Promise<AfWorkerGroup> {
    const c = await this.runningCluster(name);
    this.knownGroup(c, group);
    this.mayUse(c, group);
    if (minimum !== null && maximum !== null && minimum > maximum) {
      throw unprocessable(`Adaptive minimum (${minimum}) must not be larger than maximum (${maximum})`, 'invalid_range');
    }
    for (const [what, v] of [
      ['minimum', minimum],
      ['maximum', maximum],
    ] as const) {
      if (v !== null && (!Number.isInteger(v) || v < 0))
        throw unprocessable(`Adaptive ${what} must be a whole number of at least 0, not ${v}`, 'invalid_range');
    }
    const entry = this.active.get(c.name);
    if (group === DEFAULT_GROUP) {
      const { msg } = await this.adapt(name, minimum, maximum, active);
      if (msg) entry?.groupMessages.set(group, msg);
      return this.groupJson(c, group);
    }
    let range: GroupRange | null = null;
    let msg = '';
    if (active) {
      const cap = this.capFor(c, group);
      range = { minimum: minimum ?? 0, maximum };
      if (cap) {
        const taken = this.overflowInto(c, group);
        const possible = Math.max(0, cap.max - taken);
        if (range.minimum > possible || (range.maximum ?? 0) > possible) {
          const used = { minimum: Math.min(range.minimum, possible), maximum: range.maximum === null ? null : Math.min(range.maximum, possible) };
          const overflow = taken ? ` (${taken} of its workers run for other groups' overflow)` : '';
          msg =
            `Adaptive range minimum=${range.minimum}, maximum=${range.maximum} of worker group ${group} exceeds ${cap.reason}${overflow}; ` +
            `using minimum=${used.minimum}, maximum=${used.maximum} instead.`;
          range = used;
        }
      }
      // The scheduler works the demand out from the groups' resources: told first, so a scheduler
      // that does not answer leaves nothing changed.
      await this.tellScheduler(c, { op: 'groups', groups: this.groupResources() });
    }
    if (!range) {
      this.stopAdapting(c, group);
      entry?.adaptLimited?.delete(group);
    } else {
      c.groupAdaptive = { ...c.groupAdaptive, [group]: range };
      entry?.lowDemand?.delete(group);
      // A range asked for now applies now: a target outside it moves into it at once.
      const current = c.groupTargets[group] ?? 0;
      const inRange = withinRange(current, range);
      if (inRange !== current) c.groupTargets = { ...c.groupTargets, [group]: inRange };
      if (msg) entry?.groupMessages.set(group, msg);
      else entry?.groupMessages.delete(group);
      if (entry) this.adaptGroups(c, entry);
    }
    await this.save(c);
    this.deps.log.info({ cluster: c.name, group, adaptive: range, target: c.groupTargets[group] ?? 0 }, 'worker group adaptive scaling set');
    this.changed(c);
    this.reconcileWorkers(c);
    return this.groupJson(c, group);
  }

  /** Each non-default group's Dask resources, as the scheduler's groups op takes them. */
  private groupResources(): Record<string, Record<string, number>> {
    return Object.fromEntries([...this.groupConfigs.values()].map((g) => [g.name, groupDaskResources(g)]));
  }

  private stopAdapting(c: ClusterRecord, group: string): void {
    if (c.groupAdaptive?.[group]) {
      const { [group]: _, ...rest } = c.groupAdaptive;
      c.groupAdaptive = rest;
    }
    this.active.get(c.name)?.lowDemand?.delete(group);
  }

  /** Tells the scheduler to scale or adapt; a 409 when it does not answer or refuses. */
  private async tellScheduler(c: ClusterRecord, body: Record<string, unknown>): Promise<void> {
    let status: number;
    try {
      status = await this.schedulerCall(c.apiAddress, c.token, body);
    } catch (err) {
      throw new AppError(409, 'scheduler_unreachable', `The scheduler of cluster ${c.name} did not answer: ${errorMessage(err)}`, { cause: err });
    }
    if (status < 200 || status >= 300) {
      throw new AppError(409, 'scheduler_refused', `The scheduler of cluster ${c.name} refused the request (HTTP ${status})`);
    }
  }

  // --- heartbeats -----------------------------------------------------------------------------

  async heartbeat(name: string, hb: Heartbeat): Promise<void> {
    const live = () => {
      const entry = this.active.get(name);
      const c = entry?.cluster;
      return entry && c && !c.stopRequested && (c.status === 'PENDING' || c.status === 'RUNNING') ? entry : null;
    };
    const first = live();
    if (!first) return; // a straggler from a cluster that already ended
    const reported = { scheduler: hb.scheduler_address, dashboard: hb.dashboard_address, api: hb.api_address };
    let at: typeof reported;
    try {
      // The backend says where the scheduler really is; the heartbeat gives only its ports.
      at = await this.backend.schedulerAddresses(first.cluster, reported);
    } catch (err) {
      // (the addresses are the owner's to make, as long as the body allows: logged cut short, and once)
      const shown = { scheduler: clip(reported.scheduler), dashboard: clip(reported.dashboard), api: clip(reported.api) };
      const why = errorMessage(err);
      this.warnOnce(
        first.cluster,
        first,
        `refused addresses ${JSON.stringify(shown)}: ${why}`,
        'refused a heartbeat with addresses the backend does not accept',
        {
          reported: shown,
          err: why,
        },
      );
      throw err;
    }
    const entry = live(); // it may have ended while the backend looked
    if (!entry) return;
    const c = entry.cluster;
    const before = persistedKey(c);
    c.lastHeartbeat = now();
    if (c.status === 'RUNNING' && (at.scheduler !== c.schedulerAddress || at.api !== c.apiAddress)) {
      // A scheduler that started again elsewhere (a batch system reran its job): follow it, or
      // every scale request and client connection would go to the old, dead address.
      // (once per address: a scheduler flipping between two at every heartbeat writes two lines, not one per heartbeat)
      this.warnOnce(c, entry, `moved to ${at.scheduler} ${at.api}`, 'the scheduler reports new addresses; it was restarted', {
        was: c.apiAddress,
        now: at.api,
      });
      c.schedulerAddress = at.scheduler;
      c.dashboardAddress = at.dashboard;
      c.apiAddress = at.api;
    }
    if (c.status === 'PENDING') {
      c.schedulerAddress = at.scheduler;
      c.dashboardAddress = at.dashboard;
      c.apiAddress = at.api;
      c.status = 'RUNNING';
      c.message = '';
      this.deps.log.info({ cluster: name, ms: now() - c.startTime }, 'cluster running');
    }
    // The scheduler decides adaptive counts itself; limits still bind (another cluster may have grown).
    const cap = this.capFor(c, DEFAULT_GROUP);
    c.count = cap ? Math.min(hb.count, cap.max) : hb.count;
    this.takeDemand(c, entry, hb.af_group_demand);

    const active = new Set(hb.active_workers);
    const closing = new Set(hb.closing_workers);
    const closed = new Set(hb.closed_workers);
    const left: WorkerEnd[] = [];
    for (const w of entry.workers.values()) {
      if (!workerIsLive(w)) continue;
      if (closing.has(w.name)) {
        w.closeExpected = true;
        if (w.status === 'STARTING') this.workerRunning(c, w);
        else this.saveWorker(c, w);
      } else if (active.has(w.name)) {
        if (w.status === 'STARTING') this.workerRunning(c, w);
      } else if (closed.has(w.name)) {
        left.push([w, w.closeExpected ? 'STOPPED' : 'FAILED', w.closeExpected ? 'retired by the scheduler' : 'left the scheduler unexpectedly']);
      }
    }
    if (left.length) this.replaceWorkers(c, left);
    this.adaptGroups(c, entry);
    // Most heartbeats change nothing the state store keeps: no write for them (10,000 clusters heartbeat
    // 1,000 times a second). The time of the last one is not kept: a restart gives every cluster it adopts a fresh one.
    if (persistedKey(c) !== before) void this.save(c);
    this.changed(c);
    this.reconcileWorkers(c);
  }

  // --- adaptive worker groups -----------------------------------------------------------------

  /**
   * Reads the demand a heartbeat reports for each group (user code: only known groups and sane whole
   * numbers are kept, the rest is logged once and ignored). A heartbeat without it comes from a
   * scheduler that does not know the groups yet (new, or started again): it is told them.
   */
  private takeDemand(c: ClusterRecord, entry: ActiveEntry, raw: unknown): void {
    if (!this.groupConfigs.size || c.status !== 'RUNNING') return;
    if (raw === undefined) {
      this.tellGroups(c, entry);
      return;
    }
    const { demand, problems } = readGroupDemand(raw, new Set(this.groupConfigs.keys()));
    if (problems.length) this.warnOnce(c, entry, `demand: ${problems.join('; ')}`, "ignored parts of the scheduler's af_group_demand");
    for (const [group, n] of demand) (entry.demand ??= new Map()).set(group, n);
  }

  /** Sends the scheduler the groups' resources (one call at a time; again whenever a heartbeat shows it does not know them). */
  private tellGroups(c: ClusterRecord, entry: ActiveEntry): void {
    if (entry.tellingGroups || !c.apiAddress) return;
    entry.tellingGroups = true;
    this.schedulerCall(c.apiAddress, c.token, { op: 'groups', groups: this.groupResources() })
      .then(
        (status) => (status >= 200 && status < 300 ? undefined : this.warnOnce(c, entry, `groups: HTTP ${status}`, 'the scheduler refused the worker groups')),
        (err: unknown) => this.warnOnce(c, entry, `groups: ${errorMessage(err)}`, 'could not tell the scheduler the worker groups'),
      )
      .finally(() => (entry.tellingGroups = false));
  }

  private warnOnce(c: ClusterRecord, entry: ActiveEntry, what: string, msg: string, fields: Record<string, unknown> = {}): void {
    const warned = (entry.warned ??= new Set());
    if (warned.has(what) || warned.size >= 20) return;
    warned.add(what);
    this.deps.log.warn({ cluster: c.name, user: c.username, what: what.slice(0, 500), ...fields }, msg);
  }

  /**
   * Moves each adaptive group's target toward its demand, clamped to the group's range and the
   * limits: up at once, down once the demand stayed lower for ADAPTIVE_WINDOW adaptive periods (the
   * workers then retire gracefully, as for any scale-down). Returns whether a target changed; the
   * caller saves and reconciles.
   */
  private adaptGroups(c: ClusterRecord, entry: ActiveEntry): boolean {
    if (c.status !== 'RUNNING' || c.stopRequested) return false;
    const t = now();
    const windowMs = ADAPTIVE_WINDOW * this.cfg.adaptive_period * 1000;
    let moved = false;
    for (const [group, range] of Object.entries(c.groupAdaptive ?? {})) {
      if (!this.groupConfigs.has(group)) continue;
      const current = c.groupTargets[group] ?? 0;
      const demand = entry.demand?.get(group) ?? current;
      const cap = this.capFor(c, group);
      const possible = cap ? Math.max(0, cap.max - this.overflowInto(c, group)) : Infinity;
      const inRange = withinRange(demand, range);
      const wanted = Math.min(inRange, possible);
      this.sayAdaptLimited(
        c,
        entry,
        group,
        wanted < inRange ? `adaptive scaling wants ${plural(inRange, 'worker')} of ${group}; ${wanted} possible: ${cap!.reason}` : '',
      );
      const next = steer(current, wanted, t, windowMs, entry.lowDemand?.get(group));
      if (next.low) (entry.lowDemand ??= new Map()).set(group, next.low);
      else entry.lowDemand?.delete(group);
      if (next.target === current) continue;
      c.groupTargets = { ...c.groupTargets, [group]: next.target };
      this.deps.log.info({ cluster: c.name, group, from: current, to: next.target, demand }, 'adaptive scaling of a worker group');
      moved = true;
    }
    return moved;
  }

  /** Says (or, with '', stops saying) why adaptive scaling gives a group less than it wants; only a change is sent. */
  private sayAdaptLimited(c: ClusterRecord, entry: ActiveEntry, group: string, msg: string): void {
    const said = entry.adaptLimited?.get(group) ?? '';
    if (said === msg) return;
    if (msg) (entry.adaptLimited ??= new Map()).set(group, msg);
    else entry.adaptLimited?.delete(group);
    if (msg) entry.groupMessages.set(group, msg);
    else if (entry.groupMessages.get(group) === said) entry.groupMessages.delete(group);
    this.changed(c);
  }

  private workerRunning(c: ClusterRecord, w: WorkerRecord): void {
    w.status = 'RUNNING';
    w.waitingSince = null;
    if (w.group === DEFAULT_GROUP) c.workerFailures = 0;
    else this.active.get(c.name)?.groupFailures.delete(w.group);
    this.saveWorker(c, w);
  }

  /** Starts or stops workers so that each group's live workers match its target (default: the scheduler's count). */
  private reconcileWorkers(c: ClusterRecord): void {
    const entry = this.active.get(c.name);
    if (!entry || c.status !== 'RUNNING' || c.stopRequested) return;
    for (const group of this.groupNames()) {
      const all = [...entry.workers.values()].filter((w) => w.group === group && holdsSlot(w));
      const live = all.filter((w) => workerIsLive(w) && !w.closeExpected);
      const delta = this.targetOf(c, group) - live.length;
      if (delta > 0) {
        // At most cluster.launch_batch worker starts in flight per cluster, asked for in one call; when
        // it returns the next batch starts, so a request for millions of workers neither floods the
        // backend nor stalls the gateway. Workers being retired still run until they are reported
        // gone (a user's scheduler may never let them go), so they count against the limits here.
        const cap = this.capFor(c, group);
        const room = cap ? Math.max(0, cap.max - all.length) : Infinity;
        const n = Math.min(delta, room, Math.max(0, this.cfg.launch_batch - entry.startingWorkers));
        const retiring = all.length > live.length ? ` (counting ${plural(all.length - live.length, 'worker')} still being retired)` : '';
        this.sayHeldBack(c, entry, group, room < delta ? `${plural(delta - room, 'worker')} of ${group} wait for room: ${cap!.reason}${retiring}` : '');
        if (n > 0) {
          this.track(c, async () => {
            await this.launchWorkers(c, group, n);
            setImmediate(() => this.reconcileWorkers(c));
          });
        }
      } else if (delta < 0) {
        // Workers still starting are cancelled first (newest first); connected ones are retired by
        // the scheduler: for default it picks them itself (its count), for a group the gateway names them.
        const starting = live.filter((w) => w.status === 'STARTING').reverse();
        const cancel = starting.slice(0, -delta);
        this.replaceWorkers(
          c,
          cancel.map((w): WorkerEnd => [w, 'STOPPED', 'no longer needed']),
        );
        if (group !== DEFAULT_GROUP && cancel.length < -delta) {
          this.retireWorkers(c, live.filter((w) => w.status === 'RUNNING').slice(0, -delta - cancel.length));
        }
      }
    }
  }

  /** Says (or, with '', stops saying) why a group starts fewer workers than its target; only a change is sent. */
  private sayHeldBack(c: ClusterRecord, entry: ActiveEntry, group: string, msg: string): void {
    const said = entry.heldBack?.get(group);
    if ((said ?? '') === msg && (!msg || entry.groupMessages.get(group) === msg)) return;
    if (msg) (entry.heldBack ??= new Map()).set(group, msg);
    else entry.heldBack?.delete(group);
    if (msg) entry.groupMessages.set(group, msg);
    else if (entry.groupMessages.get(group) === said) entry.groupMessages.delete(group);
    this.changed(c);
  }

  /** Asks the scheduler to retire connected workers of a group gracefully; they end when it reports them closed. */
  private retireWorkers(c: ClusterRecord, workers: WorkerRecord[]): void {
    if (!workers.length) return;
    for (const w of workers) {
      w.closeExpected = true;
      w.message = 'retiring: no longer needed';
      this.saveWorker(c, w);
    }
    const undo = (why: string) => {
      this.deps.log.warn({ cluster: c.name, workers: workers.map((w) => w.name), why }, 'the scheduler did not retire workers; trying again later');
      for (const w of workers) {
        if (!workerIsLive(w)) continue;
        w.closeExpected = false;
        w.message = '';
        this.saveWorker(c, w);
      }
    };
    this.schedulerCall(c.apiAddress, c.token, { op: 'retire', workers: workers.map((w) => w.name) }).then(
      (status) => (status >= 200 && status < 300 ? undefined : undo(`HTTP ${status}`)),
      (err: unknown) => undo(errorMessage(err)),
    );
  }

  /** Starts `n` workers of a cluster's group with one backend call. */
  private async launchWorkers(c: ClusterRecord, group: string, n: number): Promise<void> {
    const entry = this.active.get(c.name);
    if (!entry) return;
    const workers: WorkerRecord[] = [];
    for (let i = 0; i < n; i++) {
      const w: WorkerRecord = {
        cluster: c.name,
        // A group's workers carry its name after a "_" (never in default's): the scheduler's preload
        // tells them from default's by it (python/af_gateway_groups_preload.py).
        name: `${c.name.slice(0, 8)}-${randomHex(4)}${group === DEFAULT_GROUP ? '' : `_${group}`}`,
        group,
        status: 'STARTING',
        handle: null,
        startTime: now(),
        stopTime: null,
        closeExpected: false,
        message: '',
        waitingSince: null,
      };
      entry.workers.set(w.name, w);
      this.saveWorker(c, w); // checkpoint before the process exists
      workers.push(w);
    }
    entry.startingWorkers += n;
    for (const w of workers) this.launching.set(w, null);
    let results: Array<BackendHandle | Error>;
    try {
      const files = clusterFiles(c);
      const shaped = this.clusterForGroup(c, group);
      const g = this.groupConfigs.get(group);
      const profile = g && (g.gpus || g.image) ? { gpus: g.gpus, image: g.image } : {};
      results = await this.backendOf(group).startWorkers(workers.map((worker) => ({ cluster: shaped, worker, files, ...profile })));
    } catch (err) {
      results = workers.map(() => (err instanceof Error ? err : new Error(String(err))));
    } finally {
      entry.startingWorkers -= n;
    }
    const undo: BackendHandle[] = [];
    const failed: [WorkerRecord, string][] = [];
    workers.forEach((w, i) => {
      const r = results[i] ?? new Error('the backend returned no result for it');
      if (r instanceof Error) {
        failed.push([w, `could not be started: ${errorMessage(r)}`]);
        return;
      }
      w.handle = r;
      // Stopped (or its cluster ended) while the process was being started: it must not outlive that.
      if (!workerIsLive(w) || !this.active.has(c.name)) undo.push(r);
      else this.saveWorker(c, w);
    });
    const endedMeanwhile = workers.flatMap((w) => {
      const end = this.launching.get(w);
      this.launching.delete(w);
      return end ? [end] : [];
    });
    if (undo.length) await this.backendOf(group).stop(undo);
    if (endedMeanwhile.length) {
      this.finishEnds(c, endedMeanwhile);
      this.reconcileWorkers(c);
    }
    if (failed.length) this.workersStartFailed(c, failed);
  }

  /**
   * Runs a launch (start a process, then record or undo it) as part of the cluster: ending the
   * cluster waits for launches in flight, so nothing it started outlives it.
   */
  private track(c: ClusterRecord, launch: () => Promise<void>): void {
    const launches = this.active.get(c.name)?.launches;
    const running: Promise<void> = launch()
      .catch((err: unknown) => this.deps.log.error({ cluster: c.name, err: errorMessage(err) }, 'launch failed'))
      .finally(() => launches?.delete(running));
    launches?.add(running);
  }

  /**
   * Workers that did not start: each counts against cluster.worker_max_failures (in a row, per
   * group). The default group reaching it fails the cluster; another group is scaled to 0 with the
   * reason as its message, so a broken backend of one group leaves the others running.
   */
  private workersStartFailed(c: ClusterRecord, failed: [WorkerRecord, string][]): void {
    const entry = this.active.get(c.name);
    let limitReached: string | undefined;
    for (const [w, reason] of failed) {
      let failures: number;
      if (w.group === DEFAULT_GROUP) failures = c.workerFailures += 1;
      else {
        failures = (entry?.groupFailures.get(w.group) ?? 0) + 1;
        entry?.groupFailures.set(w.group, failures);
      }
      this.deps.log.warn({ cluster: c.name, worker: w.name, group: w.group, failures }, `worker ${reason}`);
      if (failures < this.cfg.worker_max_failures) continue;
      const why = `${failures} workers in a row failed to start; the last one ${reason}`;
      if (w.group === DEFAULT_GROUP) limitReached ??= why;
      else if ((c.groupTargets[w.group] ?? 0) > 0 || this.overflowInto(c, w.group) > 0) {
        // (and it takes no more overflow: the groups that overflow into it wait in their own queues)
        const took = this.overflowInto(c, w.group) > 0;
        // (an adaptive group would be scaled up again at the next heartbeat, and fail again: its adaptive scaling goes too)
        const adaptive = c.groupAdaptive?.[w.group] !== undefined;
        c.groupTargets = { ...c.groupTargets, [w.group]: 0 };
        this.stopAdapting(c, w.group);
        c.overflow = Object.fromEntries(Object.entries(c.overflow ?? {}).filter(([source]) => this.overflows.get(source)?.group !== w.group));
        if (took) (entry!.overflowBroken ??= new Set()).add(w.group);
        const more = `${adaptive ? ' (adaptive scaling off)' : ''}${took ? ', and takes no overflow until it is scaled again' : ''}`;
        entry?.groupFailures.delete(w.group);
        entry?.groupMessages.set(w.group, `${why}; the group was scaled to 0${more}`);
        c.message = `worker group ${w.group}: ${why}; the group was scaled to 0${more}`;
        this.changed(c);
      }
    }
    this.replaceWorkers(
      c,
      failed.map(([w, reason]): WorkerEnd => [w, 'FAILED', reason]),
    );
    if (limitReached !== undefined) {
      void this.end(c, 'FAILED', limitReached);
    } else {
      void this.save(c);
      this.reconcileWorkers(c);
    }
  }

  /** Ends workers: one backend call stops them all, then each is recorded as `status` and leaves the list. */
  private async endWorkers(c: ClusterRecord, ends: WorkerEnd[]): Promise<void> {
    const ending = ends.filter(([w]) => workerIsLive(w));
    if (!ending.length) return;
    for (const [w, , reason] of ending) {
      w.status = 'STOPPING';
      w.message = reason;
      this.saveWorker(c, w);
    }
    // (a worker still being launched is stopped by its launch, which then finishes its end)
    const held = new Set(ending.filter(([w]) => this.launching.has(w)).map(([w]) => w));
    for (const end of ending) if (held.has(end[0])) this.launching.set(end[0], end);
    // One stop per backend the workers run on; one backend failing does not keep the others' workers running.
    await Promise.all(
      [...this.byBackend(ending.map(([w]) => w))].map(async ([backend, ws]) => {
        const handles = ws.flatMap((w) => (w.handle ? [w.handle] : []));
        try {
          if (handles.length) await backend.stop(handles);
        } catch (err) {
          this.deps.log.warn({ cluster: c.name, workers: ws.map((w) => w.name), err: errorMessage(err) }, 'could not stop workers');
        }
      }),
    );
    this.finishEnds(
      c,
      ending.filter(([w]) => !held.has(w)),
    );
  }

  /** Records stopped workers as ended and takes them off the list. */
  private finishEnds(c: ClusterRecord, ends: WorkerEnd[]): void {
    for (const [w, status, reason] of ends) {
      w.status = status;
      w.stopTime = now();
      // The worker leaves the list, so its failure stays readable as the cluster's last event.
      if (status === 'FAILED' && isActive(c) && !this.ending.has(c.name)) {
        c.message = `worker ${w.name} failed: ${reason}`;
        void this.save(c);
      }
      this.saveWorker(c, w);
      this.active.get(c.name)?.workers.delete(w.name);
    }
  }

  /** Ends workers of a running cluster, then starts what their slots held back (a stop frees its slot only once the process is gone). */
  private replaceWorkers(c: ClusterRecord, ends: WorkerEnd[]): void {
    if (!ends.some(([w]) => workerIsLive(w))) return;
    void this.endWorkers(c, ends).then(() => this.reconcileWorkers(c));
  }

  /** Workers by the backend they run on. */
  private byBackend(workers: Iterable<WorkerRecord>): Map<EngineBackend, WorkerRecord[]> {
    const out = new Map<EngineBackend, WorkerRecord[]>();
    for (const w of workers) {
      const b = this.backendOf(w.group);
      out.set(b, [...(out.get(b) ?? []), w]);
    }
    return out;
  }

  // --- ending ---------------------------------------------------------------------------------

  /** Moves a cluster to STOPPED or FAILED and stops everything it runs. Idempotent. */
  private end(c: ClusterRecord, final: 'STOPPED' | 'FAILED', reason: string): Promise<void> {
    const running = this.ending.get(c.name);
    if (running) return running;
    if (c.status === 'STOPPED' || c.status === 'FAILED') return Promise.resolve();
    const work = this.doEnd(c, final, reason).finally(() => this.ending.delete(c.name));
    this.ending.set(c.name, work);
    return work;
  }

  private async doEnd(c: ClusterRecord, final: 'STOPPED' | 'FAILED', reason: string): Promise<void> {
    const entry = this.active.get(c.name);
    // FAILED is shown at once (clients waiting for the start give up); STOPPED once all is gone.
    c.status = final === 'FAILED' ? 'FAILED' : 'STOPPING';
    c.message = reason;
    if (final === 'FAILED') c.stopTime = now();
    await this.save(c);
    this.changed(c);
    (final === 'FAILED' ? this.deps.log.warn : this.deps.log.info).call(this.deps.log, { cluster: c.name, reason }, `cluster ${final.toLowerCase()}`);
    // Starts in flight finish first (each stops its own process once it sees the cluster ending).
    while (entry?.launches.size) await Promise.allSettled([...entry.launches]);
    const workers = entry ? [...entry.workers.values()] : [];
    await this.endWorkers(
      c,
      workers.map((w): WorkerEnd => [w, 'STOPPED', 'the cluster ended']),
    );
    try {
      if (c.scheduler) await this.backend.stop([c.scheduler]);
    } catch (err) {
      this.deps.log.warn({ cluster: c.name, err: errorMessage(err) }, 'could not stop scheduler');
    }
    c.status = final;
    c.stopTime ??= now();
    await this.save(c);
    this.removeActive(c.name);
    try {
      await this.backend.removeClusterFiles(c, final === 'FAILED');
    } catch (err) {
      this.deps.log.warn({ cluster: c.name, err: errorMessage(err) }, "could not remove the cluster's files");
    }
    this.changed(c);
  }

  // --- periodic check -------------------------------------------------------------------------

  /** One backend call checks every scheduler and worker of the clusters driven; then each cluster is judged. */
  private async checkAll(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    try {
      // The whole pass yields to heartbeats and API calls whenever it has held the event loop for
      // CHECK_SLICE_MS: gathering 110,000 handles of 10,000 clusters or judging them all in one go held
      // it for 50-100 ms every check_period (heartbeat p99 ~50 ms at 5,000 clusters on a quiet machine).
      const slice = timeSlicer(CHECK_SLICE_MS);
      const entries: ActiveEntry[] = [];
      for (const e of this.active.values()) {
        if (!this.ending.has(e.cluster.name) && (e.cluster.status === 'PENDING' || e.cluster.status === 'RUNNING')) entries.push(e);
      }
      const workerHandles = ({ cluster, workers }: ActiveEntry, backend: EngineBackend, into: BackendHandle[] = []): BackendHandle[] => {
        if (cluster.status !== 'RUNNING') return into;
        for (const w of workers.values()) if (workerIsLive(w) && w.handle && this.backendOf(w.group) === backend) into.push(w.handle);
        return into;
      };
      // The main backend runs the schedulers (and the workers of groups without a backend of their own).
      const handlesOf = (e: ActiveEntry, into: BackendHandle[] = []): BackendHandle[] => {
        if (e.cluster.scheduler) into.push(e.cluster.scheduler);
        return workerHandles(e, this.backend, into);
      };
      // (a cluster that ends meanwhile is still checked with the handles it had: its judging skips it)
      const handles: BackendHandle[] = [];
      /** Where each entry's handles start in `handles` (and, last, where they end). */
      const spans: number[] = [];
      for (const e of entries) {
        spans.push(handles.length);
        handlesOf(e, handles);
        await slice();
      }
      spans.push(handles.length);
      /** The main backend's answer, in the order of `handles`; null when it failed (then `states` has what each cluster's own check gave). */
      let list: ProcessState[] | null = null;
      /** States of handles outside `list`: of other backends, or of the clusters checked one by one. */
      const states = new Map<BackendHandle, ProcessState>();
      /** Clusters whose processes could not be checked: left as they are until a check answers. */
      const unchecked = new Set<string>();
      try {
        list = handles.length ? await this.backend.check(handles) : [];
      } catch (err) {
        this.deps.log.error({ handles: handles.length, err: errorMessage(err) }, 'checking processes failed; checking each cluster on its own');
        // One cluster's processes (a user's job the backend cannot read) must not stop every
        // other cluster from being judged: each is checked alone, a failure skips only its own.
        for (const e of entries) {
          const own = handlesOf(e);
          if (!own.length) continue;
          try {
            (await this.backend.check(own)).forEach((s, i) => states.set(own[i]!, s));
          } catch (err) {
            unchecked.add(e.cluster.name);
            this.deps.log.error(
              { cluster: e.cluster.name, err: errorMessage(err) },
              'checking the processes of a cluster failed; trying again at the next check',
            );
          }
        }
      }
      // Each other backend of a worker group: one call for all its workers. When it fails, its workers
      // are left as they are until a check answers; the rest of each cluster is judged as usual.
      await Promise.all(
        [...new Set(this.groupBackends.values())]
          .filter((b) => b !== this.backend)
          .map(async (backend) => {
            const own = entries.flatMap((e) => workerHandles(e, backend));
            if (!own.length) return;
            try {
              (await backend.check(own)).forEach((s, i) => states.set(own[i]!, s));
            } catch (err) {
              this.deps.log.error({ backend: backend.kind, handles: own.length, err: errorMessage(err) }, "checking a worker group's backend failed");
            }
          }),
      );
      for (let i = 0; i < entries.length; i++) {
        const { cluster } = entries[i]!;
        if (unchecked.has(cluster.name)) continue;
        await slice();
        // Each cluster's own states in a small map made for it and dropped after it: one map of every
        // handle (110,000 at 10,000 clusters) lived through the whole pass, and every young-generation
        // GC meanwhile copied it (pauses of 5-13 ms every check_period).
        let stateOf = (h: BackendHandle) => states.get(h);
        if (list) {
          const own = new Map<BackendHandle, ProcessState>();
          for (let j = spans[i]!; j < spans[i + 1]!; j++) own.set(handles[j]!, list[j]!);
          stateOf = (h) => own.get(h) ?? states.get(h);
        }
        try {
          await this.checkCluster(cluster, stateOf);
        } catch (err) {
          this.deps.log.error({ cluster: cluster.name, err: errorMessage(err) }, 'cluster check failed');
        }
      }
    } finally {
      this.checking = false;
    }
  }

  /** Judges a cluster on the states of its processes (handles started after the check are judged at the next one). */
  private async checkCluster(c: ClusterRecord, stateOf: (h: BackendHandle) => ProcessState | undefined): Promise<void> {
    if (this.ending.has(c.name)) return;
    const t = now();
    if (c.status === 'PENDING') {
      const state = c.scheduler ? stateOf(c.scheduler) : undefined;
      if (state && !state.alive) {
        await this.end(c, 'FAILED', `the scheduler exited before it was ready; ${state.detail ?? ''}`.trim());
      } else if (t - c.startTime > this.cfg.start_timeout * 1000) {
        await this.end(c, 'FAILED', `the scheduler did not start within ${this.cfg.start_timeout} s (cluster.start_timeout)`);
      }
      return;
    }
    if (c.status !== 'RUNNING') return;
    const state = c.scheduler ? stateOf(c.scheduler) : { alive: false, detail: 'no scheduler process is known' };
    if (!state) return;
    if (!state.alive) {
      await this.end(c, 'FAILED', `the scheduler process exited; ${state.detail ?? ''}`.trim());
      return;
    }
    if (c.lastHeartbeat !== null && t - c.lastHeartbeat > this.cfg.heartbeat_timeout * 1000) {
      await this.end(c, 'FAILED', `no heartbeat from the scheduler for ${this.cfg.heartbeat_timeout} s (cluster.heartbeat_timeout)`);
      return;
    }
    const entry = this.active.get(c.name);
    const failedToStart: [WorkerRecord, string][] = [];
    const exited: WorkerEnd[] = [];
    for (const w of entry ? [...entry.workers.values()] : []) {
      if (!workerIsLive(w)) continue;
      const ws = w.handle ? stateOf(w.handle) : undefined;
      if (w.handle && !ws) continue; // started after the check
      if (w.status === 'STARTING') {
        if (ws?.alive && ws.waiting) {
          // Queued in a batch system: tell the user why, and only time the start once it runs.
          if (w.message !== ws.waiting || w.waitingSince == null) {
            w.message = ws.waiting;
            w.waitingSince ??= t;
            this.saveWorker(c, w);
          }
          continue;
        }
        if (w.waitingSince != null && ws) {
          w.waitingSince = null;
          w.message = '';
          this.saveWorker(c, w);
        }
        // A restart gives starting workers a full timeout: they may have connected while we were down.
        const since = Math.max(w.startTime, ws?.startedAt ?? 0, this.recoveredAt);
        if (ws && !ws.alive) failedToStart.push([w, `exited before connecting to the scheduler; ${ws.detail ?? ''}`.trim()]);
        else if (t - since > this.cfg.worker_start_timeout * 1000)
          failedToStart.push([w, `did not connect within ${this.cfg.worker_start_timeout} s (cluster.worker_start_timeout)`]);
      } else if (ws && !ws.alive) {
        exited.push([
          w,
          w.closeExpected ? 'STOPPED' : 'FAILED',
          w.closeExpected ? 'retired by the scheduler' : `exited unexpectedly; ${ws.detail ?? ''}`.trim(),
        ]);
      }
    }
    if (failedToStart.length) this.workersStartFailed(c, failedToStart);
    if (exited.length) {
      await this.endWorkers(c, exited);
      this.reconcileWorkers(c);
    }
    this.balanceOverflow(c);
    // (a group's demand may have stayed low for the window since the last heartbeat)
    if (entry && !this.ending.has(c.name) && this.adaptGroups(c, entry)) {
      void this.save(c);
      this.changed(c);
      this.reconcileWorkers(c);
    }
  }

  /**
   * Overflow: for each group with one, as many workers run in its overflow group as it has workers that
   * waited for a slot longer than `after` (their jobs stay queued), within the limits. As its workers
   * start (or are no longer wanted) the overflow group gets back to its own size: workers still
   * starting there are cancelled, connected ones retired gracefully by the scheduler.
   */
  private balanceOverflow(c: ClusterRecord): void {
    const entry = this.active.get(c.name);
    if (!entry || !this.overflows.size || c.status !== 'RUNNING' || c.stopRequested || this.ending.has(c.name)) return;
    const t = now();
    let moved = false;
    for (const [source, o] of this.overflows) {
      if (entry.overflowBroken?.has(o.group)) continue;
      const mine = [...entry.workers.values()].filter((w) => w.group === source && workerIsLive(w) && !w.closeExpected);
      const waited = mine.filter((w) => w.status === 'STARTING' && w.waitingSince != null && t - w.waitingSince >= o.after * 1000);
      const have = c.overflow?.[source] ?? 0;
      const before = entry.overflowWaited?.get(source);
      (entry.overflowWaited ??= new Map()).set(source, new Set(waited.map((w) => w.name)));
      let want = waited.length;
      let limited = '';
      // Never into a group the owner may not use: the workers wait in their own queue (and any there go back).
      const refused = this.refusalOf(c, o.group);
      if (refused) {
        want = 0;
        limited = `; none overflow into ${o.group}: ${lowerFirst(refused)}`;
      } else if (want > have) {
        // Limits count everything: this group's queued workers, the overflow group's own and what it runs for others.
        const cap = this.capFor(c, o.group);
        const room = cap ? Math.max(0, cap.max - this.targetOf(c, o.group)) : Infinity;
        if (room < want - have) limited = `; ${want - have - room} more would exceed ${cap!.reason}`;
        want = have + Math.min(want - have, room);
      }
      if (want === have) {
        const msg = `${plural(waited.length, 'worker')} of ${source} wait for ${this.systemOf(source)} slots${limited}`;
        if (limited && waited.length && entry.groupMessages.get(source) !== msg) {
          entry.groupMessages.set(source, msg);
          if (refused) {
            c.message = msg;
            void this.save(c);
            this.deps.log.info({ cluster: c.name, group: source, into: o.group }, msg);
          }
          this.changed(c);
        }
        continue;
      }
      const { [source]: _, ...rest } = c.overflow ?? {};
      c.overflow = want ? { ...rest, [source]: want } : rest;
      let msg: string;
      if (want > have) {
        const longest = Math.round((t - Math.min(...waited.map((w) => w.waitingSince!))) / 1000);
        msg = `${plural(waited.length, 'worker')} of ${source} waited ${longest} s for ${this.systemOf(source)} slots: starting ${want - have} in ${o.group} (${this.systemOf(o.group)})${limited}`;
      } else if (refused) {
        // (a gateway restarted with a new access rule: what ran there for this owner goes back)
        msg = `retiring ${plural(have - want, 'worker')} of ${o.group} that ${source} overflowed into: ${lowerFirst(refused)}`;
      } else {
        // (after a restart nothing was seen before: a worker of the group that no longer waits says there is room)
        const room = mine.some((w) => w.waitingSince == null && (!before || before.has(w.name)));
        msg = `${room ? `${this.systemOf(source)} has room again` : `${source} needs fewer workers`}: retiring ${plural(have - want, 'worker')} of ${o.group}`;
      }
      entry.groupMessages.set(source, msg);
      c.message = msg;
      this.deps.log.info({ cluster: c.name, group: source, into: o.group, from: have, to: want }, msg);
      moved = true;
    }
    if (!moved) return;
    void this.save(c);
    this.changed(c);
    this.reconcileWorkers(c);
  }

  // --- restart recovery -----------------------------------------------------------------------

  /** Adopts the clusters on record: one backend call checks their schedulers, one their workers. */
  private async recover(): Promise<void> {
    const backend = this.backend;
    this.recoveredAt = now();
    const adopting: { c: ClusterRecord; workers: Map<string, WorkerRecord> }[] = [];
    for (const c of await this.deps.store.loadClusters(ACTIVE_STATUSES)) {
      const workers = new Map((await this.deps.store.loadWorkers(c.name)).filter(workerIsLive).map((w) => [w.name, w]));
      this.addActive(c.name, { cluster: c, workers, launches: new Set(), startingWorkers: 0, groupFailures: new Map(), groupMessages: new Map() });
      if (c.status === 'STOPPING' || c.stopRequested) {
        void this.end(c, 'STOPPED', 'stop finished after a gateway restart');
        continue;
      }
      adopting.push({ c, workers });
    }
    const schedulers = adopting.flatMap(({ c }) => (c.scheduler ? [c.scheduler] : []));
    const schedulerStates = new Map<BackendHandle, ProcessState>();
    if (schedulers.length) (await backend.check(schedulers)).forEach((s, i) => schedulerStates.set(schedulers[i]!, s));
    const alive: typeof adopting = [];
    for (const a of adopting) {
      const state = (a.c.scheduler && schedulerStates.get(a.c.scheduler)) || { alive: false, detail: 'its process was never recorded' };
      if (!state.alive) void this.end(a.c, 'FAILED', `the scheduler was gone when the gateway restarted; ${state.detail ?? ''}`.trim());
      else alive.push(a);
    }
    // One check per backend the workers run on. A group's backend that cannot answer leaves its
    // workers adopted as they are (the periodic check judges them once it answers).
    const workerStates = new Map<BackendHandle, ProcessState>();
    const unknown = new Set<WorkerRecord>();
    for (const [b, ws] of this.byBackend(alive.flatMap(({ workers }) => [...workers.values()]))) {
      const handles = ws.flatMap((w) => (w.handle ? [w.handle] : []));
      if (!handles.length) continue;
      try {
        (await b.check(handles)).forEach((s, i) => workerStates.set(handles[i]!, s));
      } catch (err) {
        if (b === backend) throw err;
        this.deps.log.error({ backend: b.kind, err: errorMessage(err) }, "could not check a worker group's workers after the restart; judging them later");
        for (const w of ws) unknown.add(w);
      }
    }
    for (const { c, workers } of alive) {
      const gone = [...workers.values()].filter((w) => !unknown.has(w) && !(w.handle && workerStates.get(w.handle)?.alive));
      await this.endWorkers(
        c,
        gone.map((w): WorkerEnd => [w, 'FAILED', 'exited while the gateway was down']),
      );
      c.lastHeartbeat = now(); // the scheduler's heartbeat back-off gets a full timeout to reach us again
      this.dropRefusedGroups(c);
      await this.save(c);
      this.deps.log.info({ cluster: c.name, status: c.status, workers: workers.size }, 'adopted cluster after restart');
    }
    // Each backend removes what it runs for this gateway that none of its own handles refers to.
    const live = new Map<EngineBackend, BackendHandle[]>([
      [backend, []],
      ...[...this.groupBackends.values()].map((b): [EngineBackend, BackendHandle[]] => [b, []]),
    ]);
    for (const entry of this.active.values()) {
      if (entry.cluster.scheduler) live.get(backend)!.push(entry.cluster.scheduler);
      for (const w of entry.workers.values()) if (workerIsLive(w) && w.handle) live.get(this.backendOf(w.group))?.push(w.handle);
    }
    for (const entry of this.active.values()) {
      for (const w of entry.workers.values()) {
        // A worker of a group the config no longer has: its backend is gone with it, so nothing can stop or check it.
        if (w.group !== DEFAULT_GROUP && !this.groupConfigs.has(w.group)) {
          this.deps.log.warn({ cluster: entry.cluster.name, worker: w.name, group: w.group }, 'a worker of a group the config no longer defines');
        }
      }
    }
    await Promise.all(
      [...live].map(([b, handles]) =>
        b.removeOrphans(handles).catch((err: unknown) => this.deps.log.warn({ backend: b.kind, err: errorMessage(err) }, 'could not remove orphaned workers')),
      ),
    );
  }

  /**
   * After a restart with a new access rule (worker_groups[].access): each group the owner may no
   * longer use goes to 0 with its adaptive scaling off, saying why; its workers are then retired.
   */
  private dropRefusedGroups(c: ClusterRecord): void {
    const entry = this.active.get(c.name);
    for (const group of this.groupConfigs.keys()) {
      const refused = this.refusalOf(c, group);
      if (!refused || ((c.groupTargets[group] ?? 0) === 0 && !c.groupAdaptive?.[group])) continue;
      c.groupTargets = { ...c.groupTargets, [group]: 0 };
      this.stopAdapting(c, group);
      entry?.groupMessages.set(group, `Scaled to 0 after the gateway restarted: ${lowerFirst(refused)}`);
      this.deps.log.warn({ cluster: c.name, user: c.username, group }, 'a worker group its owner may no longer use was scaled to 0');
    }
  }

  // --- persistence and events -----------------------------------------------------------------

  // Writes are queued in order by the store; a failed one is logged (the in-memory state stays
  // authoritative while this process serves). Routes that acknowledge a change await them.
  private save(c: ClusterRecord): Promise<void> {
    return this.deps.store.saveCluster(c).catch((err: unknown) => this.writeFailed(c.name, err));
  }

  private saveWorker(c: ClusterRecord, w: WorkerRecord): void {
    void this.deps.store.saveWorker(w).catch((err: unknown) => this.writeFailed(c.name, err));
    this.emit('worker', c, w);
  }

  private writeFailed(cluster: string, err: unknown): void {
    this.deps.log.error({ cluster, err: errorMessage(err) }, 'could not write to the state store');
  }

  private changed(c: ClusterRecord): void {
    this.emit('cluster', c);
  }
}
