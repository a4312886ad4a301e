// The durable state: clusters, workers, login sessions, token state and workflow runs. Two
// implementations: SQLite in data_dir (one gateway, the default) and PostgreSQL (several replicas,
// one of which serves at a time; see `waitForLeadership`). Every change is written through, so
// `kill -9` of the gateway loses nothing that was acknowledged.
//
// Secrets (cluster token, TLS key, users' tokens) are sealed with the SecretBox before they leave
// the process; the row shapes and the sealing are shared here so both stores write the same thing.
import type { ClusterRecord, ClusterStatus, WorkerRecord } from '../clusters/model.js';
import type { SecretBox } from './crypto.js';

export interface WorkflowRunKey {
  id: string;
  username: string;
  status: string;
  created: number;
}

export interface WorkflowRunRow extends WorkflowRunKey {
  data: unknown;
}

/** A login session as stored: the JSON of its user and when it expires (ms since the epoch). */
export interface StoredSession {
  user: string;
  expires: number;
  /**
   * The JupyterHub OAuth access token of a Hub login (sealed in the row, opened here), and when
   * the Hub last confirmed it (ms since the epoch): sessions.ts asks the Hub about it again.
   */
  hubToken?: string;
  hubChecked?: number;
}

/** What a session keeps besides its user: the Hub login's token, sealed at rest. */
export interface SessionSecrets {
  hubToken: string;
  /** When the Hub confirmed the token (ms since the epoch). */
  hubChecked: number;
}

export interface Leadership {
  /** Called (once) when this replica can no longer be sure it is the only one serving. */
  onLost(listener: (reason: string) => void): void;
  release(): Promise<void>;
}

export interface StateStore {
  /** `sqlite` or `postgresql`: shown in the health check and the log. */
  readonly kind: string;
  /** Where the state lives, without credentials: replicas sharing it get the same backend instance name. */
  readonly identity: string;
  /** Resolves once every write made so far has reached the storage. */
  flush(): Promise<void>;
  close(): Promise<void>;

  saveCluster(c: ClusterRecord): Promise<void>;
  loadClusters(statuses: readonly ClusterStatus[], username?: string): Promise<ClusterRecord[]>;
  loadCluster(name: string): Promise<ClusterRecord | undefined>;
  saveWorker(w: WorkerRecord): Promise<void>;
  loadWorkers(cluster: string): Promise<WorkerRecord[]>;
  countByStatus(): Promise<Record<string, number>>;

  /** `user` is the JSON of the authenticated identity (name, groups): no secret. `hub` is sealed before it is written. */
  saveSession(tokenHash: string, user: string, expires: number, hub?: SessionSecrets): Promise<void>;
  /**
   * A Hub login's session confirmed again at the Hub: its user as the Hub says now and when it was
   * asked. No row is made where there is none (the session ended meanwhile), and none is changed
   * whose confirmation was asked later (another replica's, stored first): a stale answer (an admin
   * demoted in between) is not written over a fresh one.
   */
  confirmSession(tokenHash: string, user: string, hubChecked: number): Promise<void>;
  /** The session of this hash unless it expired by `now`. */
  findSession(tokenHash: string, now: number): Promise<StoredSession | undefined>;
  pruneSessions(now: number): Promise<void>;
  /** Removes one session (a logout). */
  deleteSession(tokenHash: string): Promise<void>;

  saveTokens(username: string, data: object, secrets: object): Promise<void>;
  loadTokens(): Promise<{ username: string; data: unknown; secrets: unknown }[]>;
  deleteTokens(username: string): Promise<void>;

  /**
   * Writes the run and the given nodes in one transaction. The resolved spec is written with the
   * first save only: it never changes, and a run's frequent saves stay small.
   */
  saveWorkflow(run: WorkflowRunKey, data: object, nodes?: { id: string; seq: number }[], spec?: object): Promise<void>;
  /** Runs without their specs, newest first. */
  loadWorkflowRuns(statuses?: readonly string[], username?: string): Promise<WorkflowRunRow[]>;
  /** One run with its spec. */
  loadWorkflowRun(id: string): Promise<(WorkflowRunRow & { spec: unknown }) | undefined>;
  loadWorkflowNodes(run: string): Promise<unknown[]>;
  deleteWorkflow(id: string): Promise<void>;

  /**
   * Resolves once this process may serve: at once for SQLite (one gateway per file); with
   * PostgreSQL when no other replica holds the lease, polling every `pollMs` meanwhile.
   */
  waitForLeadership(pollMs: number, waiting: () => void): Promise<Leadership>;
}

// --- the schema --------------------------------------------------------------------------------

/**
 * The tables, one migration per schema version, in SQL both stores run as written (BIGINT has
 * INTEGER affinity in SQLite; "user" is quoted because PostgreSQL reserves the word). A store may
 * add migrations of its own after these. Never edit one that shipped: add another.
 */
export const MIGRATIONS = [
  `CREATE TABLE clusters (
     name TEXT PRIMARY KEY,
     username TEXT NOT NULL,
     status TEXT NOT NULL,
     start_time BIGINT NOT NULL,
     stop_time BIGINT,
     data TEXT NOT NULL,
     secrets TEXT NOT NULL
   );
   CREATE INDEX clusters_user_status ON clusters (username, status);
   CREATE INDEX clusters_status ON clusters (status);
   CREATE TABLE workers (
     cluster TEXT NOT NULL REFERENCES clusters (name) ON DELETE CASCADE,
     name TEXT NOT NULL,
     status TEXT NOT NULL,
     data TEXT NOT NULL,
     PRIMARY KEY (cluster, name)
   );
   CREATE TABLE sessions (
     token_hash TEXT PRIMARY KEY,
     "user" TEXT NOT NULL,
     expires BIGINT NOT NULL
   );`,
  `CREATE TABLE tokens (
     username TEXT PRIMARY KEY,
     data TEXT NOT NULL,
     secrets TEXT NOT NULL
   );`,
  // Runs without their nodes (a 20,000-step run changes one node at a time; each is its own row).
  `CREATE TABLE workflow_runs (
     id TEXT PRIMARY KEY,
     username TEXT NOT NULL,
     status TEXT NOT NULL,
     created BIGINT NOT NULL,
     data TEXT NOT NULL,
     spec TEXT NOT NULL
   );
   CREATE INDEX workflow_runs_user ON workflow_runs (username, created);
   CREATE INDEX workflow_runs_status ON workflow_runs (status);
   CREATE TABLE workflow_nodes (
     run TEXT NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
     id TEXT NOT NULL,
     seq INTEGER NOT NULL,
     data TEXT NOT NULL,
     PRIMARY KEY (run, id)
   );`,
  // A Hub login's session keeps the Hub's OAuth token (sealed) to ask the Hub again who it is.
  `ALTER TABLE sessions ADD COLUMN hub_token TEXT;
   ALTER TABLE sessions ADD COLUMN hub_checked BIGINT;`,
];

// --- the shared row mapping -----------------------------------------------------------------------

/** A sessions row as both stores read it. */
export interface SessionRow {
  user: string;
  expires: number | string;
  hub_token: string | null;
  hub_checked: number | string | null;
}

export function rowToSession(row: SessionRow, box: SecretBox): StoredSession {
  const s: StoredSession = { user: row.user, expires: Number(row.expires) };
  if (row.hub_token !== null) {
    s.hubToken = box.open(row.hub_token);
    s.hubChecked = Number(row.hub_checked ?? 0);
  }
  return s;
}

export interface ClusterRow {
  name: string;
  username: string;
  status: string;
  start_time: number;
  stop_time: number | null;
  data: string;
  secrets: string;
}

type ClusterData = Omit<ClusterRecord, 'name' | 'username' | 'status' | 'startTime' | 'stopTime' | 'token' | 'tlsKey'>;

export function clusterToRow(c: ClusterRecord, box: SecretBox): ClusterRow {
  const { name, username, status, startTime, stopTime, token, tlsKey, ...data } = c;
  return {
    name,
    username,
    status,
    start_time: startTime,
    stop_time: stopTime,
    data: JSON.stringify(data satisfies ClusterData),
    secrets: box.seal(JSON.stringify({ token, tlsKey })),
  };
}

export function rowToCluster(row: ClusterRow, box: SecretBox): ClusterRecord {
  const data = JSON.parse(row.data) as ClusterData;
  const secrets = JSON.parse(box.open(row.secrets)) as { token: string; tlsKey: string };
  return {
    ...data,
    groups: data.groups ?? [], // written before group limits existed
    groupTargets: data.groupTargets ?? {}, // written before worker groups existed
    name: row.name,
    username: row.username,
    status: row.status as ClusterStatus,
    startTime: Number(row.start_time),
    stopTime: row.stop_time === null ? null : Number(row.stop_time),
    token: secrets.token,
    tlsKey: secrets.tlsKey,
  };
}

export function workerToRow(w: WorkerRecord): { cluster: string; name: string; status: string; data: string } {
  const { cluster, name, status, ...data } = w;
  return { cluster, name, status, data: JSON.stringify(data) };
}

export function rowToWorker(r: { cluster: string; name: string; status: string; data: string }): WorkerRecord {
  // (a worker written before worker groups existed is of the default group)
  return { group: 'default', ...(JSON.parse(r.data) as object), cluster: r.cluster, name: r.name, status: r.status } as WorkerRecord;
}
