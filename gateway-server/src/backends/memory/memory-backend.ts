// In-memory backend: schedulers, workers and workflow steps are records whose state a test sets.
// Nothing runs and nothing touches the disk (writeClusterFiles only names the usual paths).
// Every operation is O(1) per handle, so scale tests can drive thousands of clusters.
//
// Usage (fast engine tests):
//   const backend = new MemoryBackend();
//   const manager = new ClusterManager({ store, backend, config, log, schedulerCall });
//   await manager.create(user, {});                       // backend.schedulerOf(name) is now its record
//   backend.exit(backend.schedulerOf(name)!, 1, 'boom');  // the next check sees it gone
//   backend.wait(backend.workerNamed(w)!, 'held: no slot'); // alive, not running yet
//   backend.run(backend.workerNamed(w)!);                  // running (startedAt: now)
//   backend.failStarts = (launch) => 'no quota';           // starts fail with that message
//   backend.startDelay = promise;                          // starts hang until it resolves
// Steps: backend.stepOf(run, node) gives the record; backend.exit(rec, code) ends it with that exit
// code (reported as ProcessState.exitCode). Adoption after a restart: give a new engine the same
// backend (its processes "survived"); orphan(...) adds a process no engine knows.
// backend.calls counts the list calls and their sizes (startWorkers, startSteps, check, stop).
//
// As a gateway's backend (backend.type memory, benchmarks only: the config is refused without
// AF_GATEWAY_ALLOW_MEMORY_BACKEND=1), `launchLog` names a file (mode 0600, in the gateway's data dir)
// where each start is appended as a JSON line: what a real scheduler would be handed in its files
// (cluster name, token, heartbeat URL) and each worker's name, so that a load generator can send the
// heartbeats a scheduler would.
import { appendFile } from 'node:fs/promises';
import {
  addressesOnHosts,
  type Backend,
  type ClusterFiles,
  type ProcessState,
  type SchedulerAddresses,
  type SchedulerLaunch,
  type StepLaunch,
  type WorkerLaunch,
} from '../backend.js';
import type { BackendHandle, ClusterRecord } from '../../clusters/model.js';
import { clusterFiles } from '../../clusters/cluster-files.js';

export type MemoryRole = 'scheduler' | 'worker' | 'step';

/** What check() reports for a handle it never started. States are replaced, never changed, so check() hands out the process's own (no copy of 110,000 states per check at 10,000 clusters). */
const NO_SUCH_PROCESS: ProcessState = Object.freeze({ alive: false, detail: 'no such process' });

/** One "process": what the backend started, and the state a test gave it. */
export interface MemoryProcess {
  readonly id: string;
  readonly role: MemoryRole;
  /** The cluster (scheduler, worker) or the run (step). */
  readonly owner: string;
  /** The worker's or step's name (the scheduler's is "scheduler"). */
  readonly name: string;
  readonly handle: BackendHandle;
  /** What check() reports. */
  state: ProcessState;
  /** stop() was called for it (it is then not alive). */
  stopped: boolean;
  /** The launch it was started with (a WorkerLaunch, SchedulerLaunch or StepLaunch). */
  readonly launch: unknown;
}

export interface MemoryCalls {
  startScheduler: number;
  /** The size of each startWorkers / startSteps / check / stop call, in order. */
  startWorkers: number[];
  startSteps: number[];
  check: number[];
  stop: number[];
  removeOrphans: number;
}

export interface MemoryBackendOptions {
  /** Where schedulers "listen" (heartbeats must name it): default 127.0.0.1. */
  host?: string;
  /** Whether startSteps exists (a backend that runs workflow steps): default true. */
  steps?: boolean;
  /** A file each start is appended to as a JSON line (see above); none by default. */
  launchLog?: string;
}

export class MemoryBackend implements Backend {
  readonly kind = 'memory';
  private readonly procs = new Map<string, MemoryProcess>();
  private readonly schedulers = new Map<string, MemoryProcess>();
  private readonly workers = new Map<string, MemoryProcess>();
  private readonly steps = new Map<string, MemoryProcess>();
  private readonly listeners: (() => void)[] = [];
  private seq = 0;
  private readonly host: string;
  private readonly launchLog: string | undefined;
  /** Appends to launchLog in order (one write at a time). */
  private logged: Promise<void> = Promise.resolve();
  readonly calls: MemoryCalls = { startScheduler: 0, startWorkers: [], startSteps: [], check: [], stop: [], removeOrphans: 0 };
  /** Returns a reason to fail a start with (an Error in its place), or null to start it. */
  failStarts: ((launch: WorkerLaunch | SchedulerLaunch | StepLaunch, role: MemoryRole) => string | null) | null = null;
  /** When set, every start waits for it (a slow backend; a stop or cancel can come meanwhile). */
  startDelay: Promise<unknown> | null = null;
  /** When set, check() rejects with it (the batch system does not answer). */
  checkError: Error | null = null;
  /** When set, a check() call holding a handle it returns an Error for rejects with that Error (one bad item fails its whole list). */
  checkFails: ((p: MemoryProcess | undefined) => Error | null) | null = null;
  /** The state new processes start in: default alive and running. */
  initialState: () => ProcessState = () => ({ alive: true });

  constructor(opts: MemoryBackendOptions = {}) {
    this.host = opts.host ?? '127.0.0.1';
    this.launchLog = opts.launchLog;
    if (opts.steps === false) (this as { startSteps?: unknown }).startSteps = undefined;
  }

  // --- what a test reads and sets ------------------------------------------------------------

  /** The record behind a handle. */
  get(handle: BackendHandle | null | undefined): MemoryProcess | undefined {
    return handle ? this.procs.get(String(handle.id)) : undefined;
  }

  /** The newest scheduler started for a cluster. */
  schedulerOf(cluster: string): MemoryProcess | undefined {
    return this.schedulers.get(cluster);
  }

  /** A worker by its name (WorkerRecord.name). */
  workerNamed(name: string): MemoryProcess | undefined {
    return this.workers.get(name);
  }

  /** A step by run and node (the newest attempt). */
  stepOf(run: string, node: string): MemoryProcess | undefined {
    return this.steps.get(`${run}\u0000${node}`);
  }

  /** Every process still alive (not stopped, not exited), of one role or all. */
  alive(role?: MemoryRole): MemoryProcess[] {
    return [...this.procs.values()].filter((p) => p.state.alive && (role === undefined || p.role === role));
  }

  /** Ends a process: an exit code (steps: reported as exitCode) and what is known of the end. */
  exit(p: MemoryProcess, code = 1, detail = `exited with code ${code}`): void {
    p.state = { alive: false, detail, exitCode: p.role === 'step' ? code : undefined };
    this.changed();
  }

  /** Alive but not running yet, and why ("held: …", "idle: no slot"). */
  wait(p: MemoryProcess, reason: string): void {
    p.state = { alive: true, waiting: reason };
    this.changed();
  }

  /** Running, since `startedAt` (ms; default now). */
  run(p: MemoryProcess, startedAt = Date.now()): void {
    p.state = { alive: true, startedAt };
    this.changed();
  }

  /** A process of this gateway that no engine knows (left behind by a crash). */
  orphan(role: Exclude<MemoryRole, 'step'>, owner: string, name: string = role): MemoryProcess {
    return this.add(role, owner, name, null);
  }

  // --- the Backend contract --------------------------------------------------------------------

  async startScheduler(launch: SchedulerLaunch): Promise<BackendHandle> {
    this.calls.startScheduler++;
    if (this.startDelay) await this.startDelay;
    const why = this.failStarts?.(launch, 'scheduler');
    if (why) throw new Error(why);
    const p = this.add('scheduler', launch.cluster.name, 'scheduler', launch);
    this.schedulers.set(launch.cluster.name, p);
    this.log({ scheduler: launch.cluster.name, token: launch.cluster.token, api_url: launch.apiUrl });
    return p.handle;
  }

  async startWorkers(launches: WorkerLaunch[]): Promise<Array<BackendHandle | Error>> {
    this.calls.startWorkers.push(launches.length);
    if (this.startDelay) await this.startDelay;
    const handles = launches.map((l) => {
      const why = this.failStarts?.(l, 'worker');
      if (why) return new Error(why);
      const p = this.add('worker', l.cluster.name, l.worker.name, l);
      this.workers.set(l.worker.name, p);
      return p.handle;
    });
    const started = launches.filter((_, i) => !(handles[i] instanceof Error));
    const byCluster = new Map<string, string[]>();
    for (const l of started) byCluster.set(l.cluster.name, [...(byCluster.get(l.cluster.name) ?? []), l.worker.name]);
    for (const [cluster, names] of byCluster) this.log({ workers: cluster, names });
    return handles;
  }

  async startSteps(launches: StepLaunch[]): Promise<Array<BackendHandle | Error>> {
    this.calls.startSteps.push(launches.length);
    if (this.startDelay) await this.startDelay;
    return launches.map((l) => {
      const why = this.failStarts?.(l, 'step');
      if (why) return new Error(why);
      const p = this.add('step', l.run, l.node, l);
      this.steps.set(`${l.run}\u0000${l.node}`, p);
      return p.handle;
    });
  }

  async stop(handles: BackendHandle[]): Promise<void> {
    this.calls.stop.push(handles.length);
    for (const h of handles) {
      const p = this.get(h);
      if (!p || p.stopped) continue;
      p.stopped = true;
      if (p.state.alive) p.state = { alive: false, detail: 'stopped', exitCode: p.role === 'step' ? 143 : undefined };
    }
  }

  async check(handles: BackendHandle[]): Promise<ProcessState[]> {
    this.calls.check.push(handles.length);
    if (this.checkError) throw this.checkError;
    for (const h of handles) {
      const err = this.checkFails?.(this.get(h));
      if (err) throw err;
    }
    const out: ProcessState[] = [];
    for (let i = 0; i < handles.length; i++) {
      out.push(this.get(handles[i])?.state ?? NO_SUCH_PROCESS);
      if (i % 2000 === 1999) await new Promise((resolve) => setImmediate(resolve));
    }
    return out;
  }

  /** Stops the schedulers and workers none of `live` refers to (steps are the workflow engine's). */
  async removeOrphans(live: BackendHandle[]): Promise<void> {
    this.calls.removeOrphans++;
    const keep = new Set(live.map((h) => String(h.id)));
    const orphans = [...this.procs.values()].filter((p) => p.role !== 'step' && p.state.alive && !keep.has(p.id));
    if (orphans.length) await this.stop(orphans.map((p) => p.handle));
  }

  describe(handle: BackendHandle): string {
    return `memory process ${String(handle.id)}`;
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  /** The usual paths; nothing is written (no keys, no disk). */
  async writeClusterFiles(c: ClusterRecord): Promise<ClusterFiles> {
    return clusterFiles(c);
  }

  async removeClusterFiles(): Promise<void> {}

  schedulerAddresses(_c: ClusterRecord, reported: SchedulerAddresses): SchedulerAddresses {
    return addressesOnHosts(reported, new Set([this.host]), 'the memory backend');
  }

  async close(): Promise<void> {}

  // --- internals -----------------------------------------------------------------------------

  private add(role: MemoryRole, owner: string, name: string, launch: unknown): MemoryProcess {
    const id = String(++this.seq);
    const p: MemoryProcess = { id, role, owner, name, handle: { kind: 'memory', id, role, name }, state: this.initialState(), stopped: false, launch };
    this.procs.set(id, p);
    if (role === 'scheduler' && !launch) this.schedulers.set(owner, p);
    if (role === 'worker' && !launch) this.workers.set(name, p);
    return p;
  }

  /** Resolves when what was started so far is in the launch log. */
  launchLogWritten(): Promise<void> {
    return this.logged;
  }

  /**
   * Appends a line to the launch log after the writes before it. Not awaited by the start: the engine
   * records the handle first, so a heartbeat sent on reading the line finds the start complete. A
   * failed write is left out of the log (the load generator then waits for that start in vain and says so).
   */
  private log(line: object): void {
    const file = this.launchLog;
    if (!file) return;
    const text = `${JSON.stringify(line)}\n`;
    this.logged = this.logged.then(() => appendFile(file, text, { mode: 0o600 }).catch(() => undefined));
  }

  private changed(): void {
    for (const l of this.listeners) l();
  }
}
