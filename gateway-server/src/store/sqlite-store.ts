// Durable state in one SQLite file (WAL): clusters, workers, login sessions, token state and workflow runs. Every change is
// written through at once, so `kill -9` of the gateway loses nothing that was acknowledged.
// Secrets (cluster token, TLS key) are sealed with the SecretBox before they touch the disk.
import Database from 'better-sqlite3';
import type { ClusterRecord, ClusterStatus, WorkerRecord } from '../clusters/model.js';
import type { SecretBox } from './crypto.js';

const SCHEMA_VERSION = 3;

const MIGRATIONS = [
  `CREATE TABLE clusters (
     name TEXT PRIMARY KEY,
     username TEXT NOT NULL,
     status TEXT NOT NULL,
     start_time INTEGER NOT NULL,
     stop_time INTEGER,
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
     user TEXT NOT NULL,
     expires INTEGER NOT NULL
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
     created INTEGER NOT NULL,
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
];

interface ClusterRow {
  name: string;
  username: string;
  status: string;
  start_time: number;
  stop_time: number | null;
  data: string;
  secrets: string;
}

type ClusterData = Omit<ClusterRecord, 'name' | 'username' | 'status' | 'startTime' | 'stopTime' | 'token' | 'tlsKey'>;

export class StateStore {
  private readonly db: Database.Database;

  constructor(file: string, private readonly box: SecretBox) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    this.migrate();
  }

  private migrate(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) {
      throw new Error(`state file was written by a newer gateway (schema ${version} > ${SCHEMA_VERSION})`);
    }
    for (let v = version; v < SCHEMA_VERSION; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v]!);
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  close(): void {
    this.db.close();
  }

  // --- clusters -------------------------------------------------------------------------------

  saveCluster(c: ClusterRecord): void {
    const { name, username, status, startTime, stopTime, token, tlsKey, ...data } = c;
    this.db
      .prepare(
        `INSERT INTO clusters (name, username, status, start_time, stop_time, data, secrets)
         VALUES (@name, @username, @status, @startTime, @stopTime, @data, @secrets)
         ON CONFLICT (name) DO UPDATE SET status = excluded.status, stop_time = excluded.stop_time,
           data = excluded.data, secrets = excluded.secrets`,
      )
      .run({
        name,
        username,
        status,
        startTime,
        stopTime,
        data: JSON.stringify(data satisfies ClusterData),
        secrets: this.box.seal(JSON.stringify({ token, tlsKey })),
      });
  }

  private toCluster(row: ClusterRow): ClusterRecord {
    const data = JSON.parse(row.data) as ClusterData;
    const secrets = JSON.parse(this.box.open(row.secrets)) as { token: string; tlsKey: string };
    return {
      ...data,
      groups: data.groups ?? [], // written before group limits existed
      name: row.name,
      username: row.username,
      status: row.status as ClusterStatus,
      startTime: row.start_time,
      stopTime: row.stop_time,
      token: secrets.token,
      tlsKey: secrets.tlsKey,
    };
  }

  loadClusters(statuses: readonly ClusterStatus[], username?: string): ClusterRecord[] {
    const marks = statuses.map(() => '?').join(',');
    const rows = (
      username === undefined
        ? this.db.prepare(`SELECT * FROM clusters WHERE status IN (${marks}) ORDER BY start_time`).all(...statuses)
        : this.db
            .prepare(`SELECT * FROM clusters WHERE username = ? AND status IN (${marks}) ORDER BY start_time`)
            .all(username, ...statuses)
    ) as ClusterRow[];
    return rows.map((r) => this.toCluster(r));
  }

  loadCluster(name: string): ClusterRecord | undefined {
    const row = this.db.prepare('SELECT * FROM clusters WHERE name = ?').get(name) as ClusterRow | undefined;
    return row && this.toCluster(row);
  }

  // --- workers --------------------------------------------------------------------------------

  saveWorker(w: WorkerRecord): void {
    const { cluster, name, status, ...data } = w;
    this.db
      .prepare(
        `INSERT INTO workers (cluster, name, status, data) VALUES (?, ?, ?, ?)
         ON CONFLICT (cluster, name) DO UPDATE SET status = excluded.status, data = excluded.data`,
      )
      .run(cluster, name, status, JSON.stringify(data));
  }

  loadWorkers(cluster: string): WorkerRecord[] {
    const rows = this.db.prepare('SELECT * FROM workers WHERE cluster = ? ORDER BY rowid').all(cluster) as {
      cluster: string;
      name: string;
      status: string;
      data: string;
    }[];
    return rows.map((r) => ({ ...(JSON.parse(r.data) as object), cluster: r.cluster, name: r.name, status: r.status }) as WorkerRecord);
  }

  // --- sessions -------------------------------------------------------------------------------

  /** `user` is the JSON of the authenticated identity (name, groups): no secret. */
  saveSession(tokenHash: string, user: string, expires: number): void {
    this.db.prepare('INSERT OR REPLACE INTO sessions (token_hash, user, expires) VALUES (?, ?, ?)').run(tokenHash, user, expires);
  }

  findSession(tokenHash: string, now: number): string | undefined {
    const row = this.db.prepare('SELECT user, expires FROM sessions WHERE token_hash = ?').get(tokenHash) as
      | { user: string; expires: number }
      | undefined;
    return row && row.expires > now ? row.user : undefined;
  }

  pruneSessions(now: number): void {
    this.db.prepare('DELETE FROM sessions WHERE expires <= ?').run(now);
  }

  // --- the token broker's per-user state: facts in clear, tokens sealed ---------------------------

  saveTokens(username: string, data: object, secrets: object): void {
    this.db
      .prepare('INSERT OR REPLACE INTO tokens (username, data, secrets) VALUES (?, ?, ?)')
      .run(username, JSON.stringify(data), this.box.seal(JSON.stringify(secrets)));
  }

  loadTokens(): { username: string; data: unknown; secrets: unknown }[] {
    const rows = this.db.prepare('SELECT * FROM tokens').all() as { username: string; data: string; secrets: string }[];
    return rows.map((r) => ({ username: r.username, data: JSON.parse(r.data), secrets: JSON.parse(this.box.open(r.secrets)) }));
  }

  deleteTokens(username: string): void {
    this.db.prepare('DELETE FROM tokens WHERE username = ?').run(username);
  }

  // --- workflow runs ----------------------------------------------------------------------------

  /**
   * Writes the run and the given nodes in one transaction. The resolved spec is written with the
   * first save only: it never changes, and a run's frequent saves stay small.
   */
  saveWorkflow(run: { id: string; username: string; status: string; created: number }, data: object, nodes: { id: string; seq: number }[] = [], spec?: object): void {
    const runStmt = this.db.prepare(
      `INSERT INTO workflow_runs (id, username, status, created, data, spec) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET status = excluded.status, data = excluded.data`,
    );
    const nodeStmt = this.db.prepare(
      `INSERT INTO workflow_nodes (run, id, seq, data) VALUES (?, ?, ?, ?)
       ON CONFLICT (run, id) DO UPDATE SET data = excluded.data`,
    );
    this.db.transaction(() => {
      runStmt.run(run.id, run.username, run.status, run.created, JSON.stringify(data), JSON.stringify(spec ?? null));
      for (const n of nodes) nodeStmt.run(run.id, n.id, n.seq, JSON.stringify(n));
    })();
  }

  /** Runs without their specs, newest first. */
  loadWorkflowRuns(statuses?: readonly string[], username?: string): { id: string; username: string; status: string; created: number; data: unknown }[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (statuses) {
      where.push(`status IN (${statuses.map(() => '?').join(',')})`);
      args.push(...statuses);
    }
    if (username !== undefined) {
      where.push('username = ?');
      args.push(username);
    }
    const rows = this.db
      .prepare(`SELECT id, username, status, created, data FROM workflow_runs ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY created DESC`)
      .all(...args) as { id: string; username: string; status: string; created: number; data: string }[];
    return rows.map((r) => ({ ...r, data: JSON.parse(r.data) as unknown }));
  }

  /** One run with its spec. */
  loadWorkflowRun(id: string): { id: string; username: string; status: string; data: unknown; spec: unknown } | undefined {
    const r = this.db.prepare('SELECT id, username, status, data, spec FROM workflow_runs WHERE id = ?').get(id) as
      | { id: string; username: string; status: string; data: string; spec: string }
      | undefined;
    return r && { ...r, data: JSON.parse(r.data) as unknown, spec: JSON.parse(r.spec) as unknown };
  }

  loadWorkflowNodes(run: string): unknown[] {
    const rows = this.db.prepare('SELECT data FROM workflow_nodes WHERE run = ? ORDER BY seq').all(run) as { data: string }[];
    return rows.map((r) => JSON.parse(r.data) as unknown);
  }

  deleteWorkflow(id: string): void {
    this.db.prepare('DELETE FROM workflow_runs WHERE id = ?').run(id);
  }

  countByStatus(): Record<string, number> {
    const rows = this.db.prepare('SELECT status, count(*) AS n FROM clusters GROUP BY status').all() as { status: string; n: number }[];
    return Object.fromEntries(rows.map((r) => [r.status, r.n]));
  }
}
