// The state store in one SQLite file (WAL) under data_dir: the default, for one gateway process.
// The calls are synchronous underneath; they return settled promises to fit the StateStore contract,
// so a write has reached the file when the call returns, awaited or not.
import { dirname, resolve } from 'node:path';
import { chmodSync, closeSync, openSync } from 'node:fs';
import Database from 'better-sqlite3';
import type { ClusterRecord, ClusterStatus, WorkerRecord } from '../clusters/model.js';
import type { SecretBox } from './crypto.js';
import {
  clusterToRow,
  rowToCluster,
  rowToWorker,
  workerToRow,
  type ClusterRow,
  type Leadership,
  type StateStore,
  type StoredSession,
  type SessionRow,
  type SessionSecrets,
  rowToSession,
  type WorkflowRunKey,
  type WorkflowRunRow,
  MIGRATIONS,
} from './state-store.js';

export class SqliteStore implements StateStore {
  readonly kind = 'sqlite';
  readonly identity: string;
  private readonly db: Database.Database;
  private readonly statements = new Map<string, Database.Statement>();

  constructor(
    file: string,
    private readonly box: SecretBox,
  ) {
    this.identity = resolve(dirname(file)); // the data directory, as before there were two stores
    // Only the gateway reads its state (every user's refresh token): 0600 before SQLite opens it,
    // and SQLite gives its -wal and -shm files the database file's mode.
    closeSync(openSync(file, 'a', 0o600));
    chmodSync(file, 0o600);
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    this.migrate();
  }

  private migrate(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version > MIGRATIONS.length) {
      throw new Error(`state file was written by a newer gateway (schema ${version} > ${MIGRATIONS.length})`);
    }
    for (let v = version; v < MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v]!);
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  /**
   * The prepared statement of this SQL, compiled once: preparing costs more than running a
   * statement that reads one row by its key (a session looked up per request). The texts are this
   * file's, a few dozen at most (IN lists vary only with the number of statuses asked for).
   */
  private sql(text: string): Database.Statement {
    let stmt = this.statements.get(text);
    if (!stmt) this.statements.set(text, (stmt = this.db.prepare(text)));
    return stmt;
  }

  /** Writes reach the file before their call returns. */
  async flush(): Promise<void> {}

  async close(): Promise<void> {
    this.db.close();
  }

  /** One gateway per state file: nothing to wait for. */
  async waitForLeadership(): Promise<Leadership> {
    return { onLost: () => {}, release: async () => {} };
  }

  // --- clusters -------------------------------------------------------------------------------

  async saveCluster(c: ClusterRecord): Promise<void> {
    this.sql(
      `INSERT INTO clusters (name, username, status, start_time, stop_time, data, secrets)
         VALUES (@name, @username, @status, @start_time, @stop_time, @data, @secrets)
         ON CONFLICT (name) DO UPDATE SET status = excluded.status, stop_time = excluded.stop_time,
           data = excluded.data, secrets = excluded.secrets`,
    ).run(clusterToRow(c, this.box));
  }

  async loadClusters(statuses: readonly ClusterStatus[], username?: string): Promise<ClusterRecord[]> {
    const marks = statuses.map(() => '?').join(',');
    const rows = (
      username === undefined
        ? this.sql(`SELECT * FROM clusters WHERE status IN (${marks}) ORDER BY start_time`).all(...statuses)
        : this.sql(`SELECT * FROM clusters WHERE username = ? AND status IN (${marks}) ORDER BY start_time`).all(username, ...statuses)
    ) as ClusterRow[];
    return rows.map((r) => rowToCluster(r, this.box));
  }

  async loadCluster(name: string): Promise<ClusterRecord | undefined> {
    const row = this.sql('SELECT * FROM clusters WHERE name = ?').get(name) as ClusterRow | undefined;
    return row && rowToCluster(row, this.box);
  }

  // --- workers --------------------------------------------------------------------------------

  async saveWorker(w: WorkerRecord): Promise<void> {
    const r = workerToRow(w);
    this.sql(
      `INSERT INTO workers (cluster, name, status, data) VALUES (?, ?, ?, ?)
         ON CONFLICT (cluster, name) DO UPDATE SET status = excluded.status, data = excluded.data`,
    ).run(r.cluster, r.name, r.status, r.data);
  }

  async loadWorkers(cluster: string): Promise<WorkerRecord[]> {
    const rows = this.sql('SELECT * FROM workers WHERE cluster = ? ORDER BY rowid').all(cluster) as {
      cluster: string;
      name: string;
      status: string;
      data: string;
    }[];
    return rows.map(rowToWorker);
  }

  // --- sessions -------------------------------------------------------------------------------

  async saveSession(tokenHash: string, user: string, expires: number, hub?: SessionSecrets): Promise<void> {
    this.sql('INSERT OR REPLACE INTO sessions (token_hash, user, expires, hub_token, hub_checked) VALUES (?, ?, ?, ?, ?)').run(
      tokenHash,
      user,
      expires,
      hub ? this.box.seal(hub.hubToken) : null,
      hub?.hubChecked ?? null,
    );
  }

  async confirmSession(tokenHash: string, user: string, hubChecked: number): Promise<void> {
    this.sql('UPDATE sessions SET user = ?, hub_checked = ? WHERE token_hash = ? AND (hub_checked IS NULL OR hub_checked < ?)').run(
      user,
      hubChecked,
      tokenHash,
      hubChecked,
    );
  }

  async findSession(tokenHash: string, now: number): Promise<StoredSession | undefined> {
    const row = this.sql('SELECT user, expires, hub_token, hub_checked FROM sessions WHERE token_hash = ?').get(tokenHash) as SessionRow | undefined;
    return row && Number(row.expires) > now ? rowToSession(row, this.box) : undefined;
  }

  async pruneSessions(now: number): Promise<void> {
    this.sql('DELETE FROM sessions WHERE expires <= ?').run(now);
  }

  async deleteSession(tokenHash: string): Promise<void> {
    this.sql('DELETE FROM sessions WHERE token_hash = ?').run(tokenHash);
  }

  // --- the token broker's per-user state: facts in clear, tokens sealed ---------------------------

  async saveTokens(username: string, data: object, secrets: object): Promise<void> {
    this.sql('INSERT OR REPLACE INTO tokens (username, data, secrets) VALUES (?, ?, ?)').run(
      username,
      JSON.stringify(data),
      this.box.seal(JSON.stringify(secrets)),
    );
  }

  async loadTokens(): Promise<{ username: string; data: unknown; secrets: unknown }[]> {
    const rows = this.sql('SELECT * FROM tokens').all() as { username: string; data: string; secrets: string }[];
    return rows.map((r) => ({ username: r.username, data: JSON.parse(r.data), secrets: JSON.parse(this.box.open(r.secrets)) }));
  }

  async deleteTokens(username: string): Promise<void> {
    this.sql('DELETE FROM tokens WHERE username = ?').run(username);
  }

  // --- workflow runs ----------------------------------------------------------------------------

  async saveWorkflow(run: WorkflowRunKey, data: object, nodes: { id: string; seq: number }[] = [], spec?: object): Promise<void> {
    const runStmt = this.sql(
      `INSERT INTO workflow_runs (id, username, status, created, data, spec) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET status = excluded.status, data = excluded.data`,
    );
    const nodeStmt = this.sql(
      `INSERT INTO workflow_nodes (run, id, seq, data) VALUES (?, ?, ?, ?)
       ON CONFLICT (run, id) DO UPDATE SET data = excluded.data`,
    );
    this.db.transaction(() => {
      runStmt.run(run.id, run.username, run.status, run.created, JSON.stringify(data), JSON.stringify(spec ?? null));
      for (const n of nodes) nodeStmt.run(run.id, n.id, n.seq, JSON.stringify(n));
    })();
  }

  async loadWorkflowRuns(statuses?: readonly string[], username?: string): Promise<WorkflowRunRow[]> {
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
    const rows = this.sql(
      `SELECT id, username, status, created, data FROM workflow_runs ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY created DESC`,
    ).all(...args) as { id: string; username: string; status: string; created: number; data: string }[];
    return rows.map((r) => ({ ...r, data: JSON.parse(r.data) as unknown }));
  }

  async loadWorkflowRun(id: string): Promise<(WorkflowRunRow & { spec: unknown }) | undefined> {
    const r = this.sql('SELECT id, username, status, created, data, spec FROM workflow_runs WHERE id = ?').get(id) as
      { id: string; username: string; status: string; created: number; data: string; spec: string } | undefined;
    return r && { ...r, data: JSON.parse(r.data) as unknown, spec: JSON.parse(r.spec) as unknown };
  }

  async loadWorkflowNodes(run: string): Promise<unknown[]> {
    const rows = this.sql('SELECT data FROM workflow_nodes WHERE run = ? ORDER BY seq').all(run) as { data: string }[];
    return rows.map((r) => JSON.parse(r.data) as unknown);
  }

  async deleteWorkflow(id: string): Promise<void> {
    this.sql('DELETE FROM workflow_runs WHERE id = ?').run(id);
  }

  async countByStatus(): Promise<Record<string, number>> {
    const rows = this.sql('SELECT status, count(*) AS n FROM clusters GROUP BY status').all() as { status: string; n: number }[];
    return Object.fromEntries(rows.map((r) => [r.status, r.n]));
  }
}
