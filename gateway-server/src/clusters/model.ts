// The records the lifecycle engine keeps for each cluster and worker.
import type { ClusterStatus } from '@af-gateway/schemas';

export type { ClusterStatus };
export type WorkerStatus = 'STARTING' | 'RUNNING' | 'STOPPING' | 'STOPPED' | 'FAILED';

/** What a backend needs to find a scheduler or worker again (e.g. pid and start time). */
export type BackendHandle = Record<string, string | number | boolean | null>;

/** Settings derived from the cluster options and the config, fixed at creation. */
export interface ClusterSettings {
  worker_cores: number;
  /** GiB */
  worker_memory: number;
  environment: Record<string, string>;
  idle_timeout: number;
  /** A worker profile of the backend (backend.kubernetes.profiles), when a cluster option chose one. */
  worker_profile?: string;
}

export interface ClusterRecord {
  name: string;
  /** The readable name its owner gave it (the display_name option, trimmed); absent or empty: none. The name stays the key. */
  displayName?: string;
  username: string;
  /** The owner's groups when the cluster was created (group limits count it against them). */
  groups: string[];
  options: Record<string, unknown>;
  settings: ClusterSettings;
  status: ClusterStatus;
  /** A stop was asked for; the engine moves the cluster to STOPPED. */
  stopRequested: boolean;
  /** Shared secret of the scheduler's heartbeat and comm API. */
  token: string;
  tlsCert: string;
  tlsKey: string;
  scheduler: BackendHandle | null;
  schedulerAddress: string;
  dashboardAddress: string;
  apiAddress: string;
  /** Workers the scheduler wants (from heartbeats): the target of the default worker group. */
  count: number;
  /** The target of each other worker group (worker_groups in the config) by name; absent is 0. */
  groupTargets: Record<string, number>;
  /**
   * Overflow in progress, by the group whose workers wait for slots: how many workers the engine runs
   * for it in its overflow group (counted in that group's target). Absent: none.
   */
  overflow?: Record<string, number>;
  /** The adaptive range last asked for, or null when scaling is manual. */
  adaptive: { minimum: number | null; maximum: number | null } | null;
  /**
   * The adaptive range of each other worker group that scales adaptively (its target then follows the
   * demand its scheduler reports); absent: manual. Default's is `adaptive`.
   */
  groupAdaptive?: Record<string, { minimum: number; maximum: number | null }>;
  startTime: number;
  stopTime: number | null;
  lastHeartbeat: number | null;
  /** Why the cluster failed, or the last notable event. */
  message: string;
  workerFailures: number;
  workDir: string;
}

export interface WorkerRecord {
  cluster: string;
  name: string;
  /** Its worker group: `default`, or a worker_groups name (records from before groups read as default). */
  group: string;
  status: WorkerStatus;
  handle: BackendHandle | null;
  startTime: number;
  stopTime: number | null;
  /** The scheduler is retiring this worker, so its exit is expected. */
  closeExpected: boolean;
  message: string;
  /** Since when (ms) the backend reports it waiting for a slot (a queued job), or null. */
  waitingSince?: number | null;
}

/** The group the dask-gateway API and client scale. */
export const DEFAULT_GROUP = 'default';

export const ACTIVE_STATUSES: readonly ClusterStatus[] = ['PENDING', 'RUNNING', 'STOPPING'];
export const isActive = (c: { status: ClusterStatus }) => ACTIVE_STATUSES.includes(c.status);
export const workerIsLive = (w: WorkerRecord) => w.status === 'STARTING' || w.status === 'RUNNING';
