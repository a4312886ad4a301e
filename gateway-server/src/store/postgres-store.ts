// The state store in PostgreSQL, for several gateway replicas sharing one database. One replica
// serves at a time: it holds a session-level advisory lock on a connection of its own, the others
// wait for it (standbys). PostgreSQL drops the lock the moment that connection ends, so when the
// serving replica dies a standby takes over and adopts its clusters and runs exactly as a restarted
// gateway would.
//
// Writes go out in the order they were made (one queue), and reads wait for the writes before them,
// so callers see the same order as with SQLite even when they do not await a write.
import pg from 'pg';
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

// PostgreSQL's schema versions: the shared migrations and its own, in the order they shipped.
// Append only (a new shared migration is appended here too; a test checks none is missing).
export const PG_MIGRATIONS = [
  MIGRATIONS[0]!,
  MIGRATIONS[1]!,
  MIGRATIONS[2]!,
  // workers keep their insertion order (SQLite has its rowid for that)
  'ALTER TABLE workers ADD COLUMN seq BIGSERIAL',
  MIGRATIONS[3]!,
];

/** Advisory lock keys (any two int4 values no other user of the database picks). */
const LEADER_LOCK = [0x61666777, 1] as const; // 'afgw', 1
const MIGRATION_LOCK = [0x61666777, 2] as const;

export interface PostgresStoreOptions {
  url: string;
  poolSize: number;
  box: SecretBox;
  /** Connection errors of idle clients (the pool replaces them). */
  warn: (msg: string, err: unknown) => void;
}

export class PostgresStore implements StateStore {
  readonly kind = 'postgresql';
  private stateIdentity = '';
  private readonly pool: pg.Pool;
  private readonly box: SecretBox;
  private writes: Promise<unknown> = Promise.resolve();
  private leaderClient: pg.Client | undefined;

  private constructor(private readonly opts: PostgresStoreOptions) {
    this.box = opts.box;
    this.pool = new pg.Pool({ connectionString: opts.url, max: opts.poolSize, connectionTimeoutMillis: 10_000 });
    this.pool.on('error', (err) => opts.warn('an idle PostgreSQL connection failed', err));
  }

  /** Connects and brings the schema up to date (one replica at a time). */
  static async open(opts: PostgresStoreOptions): Promise<PostgresStore> {
    const store = new PostgresStore(opts);
    try {
      await store.migrate();
    } catch (err) {
      await store.pool.end().catch(() => {});
      throw err;
    }
    return store;
  }

  private migrate(): Promise<void> {
    return this.transaction(async (client) => {
      await client.query('SELECT pg_advisory_xact_lock($1, $2)', [...MIGRATION_LOCK]);
      await client.query('CREATE TABLE IF NOT EXISTS af_gateway_schema (version INTEGER NOT NULL)');
      const { rows } = await client.query<{ version: number }>('SELECT version FROM af_gateway_schema');
      const version = rows[0]?.version ?? 0;
      if (version > PG_MIGRATIONS.length) {
        throw new Error(`the database was written by a newer gateway (schema ${version} > ${PG_MIGRATIONS.length})`);
      }
      for (let v = version; v < PG_MIGRATIONS.length; v++) await client.query(PG_MIGRATIONS[v]!);
      if (rows.length === 0) await client.query('INSERT INTO af_gateway_schema (version) VALUES ($1)', [PG_MIGRATIONS.length]);
      else await client.query('UPDATE af_gateway_schema SET version = $1', [PG_MIGRATIONS.length]);
      // The identity is chosen once, when the database is first used, and kept: replicas that
      // spell the host differently, or a moved database, still name the same pods and jobs.
      await client.query('CREATE TABLE IF NOT EXISTS af_gateway_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)');
      const u = new URL(this.opts.url);
      await client.query(`INSERT INTO af_gateway_meta (key, value) VALUES ('identity', $1) ON CONFLICT (key) DO NOTHING`, [
        `postgresql://${u.hostname}:${u.port || 5432}${u.pathname}`,
      ]);
      const meta = await client.query<{ value: string }>(`SELECT value FROM af_gateway_meta WHERE key = 'identity'`);
      this.stateIdentity = meta.rows[0]!.value;
    });
  }

  /** Where the state lives, for the backends' instance name (see StateStore.identity). */
  get identity(): string {
    return this.stateIdentity;
  }

  /** Takes over the identity of the state copied in (copy-state), so the same pods and jobs stay ours. */
  async adoptIdentity(identity: string): Promise<void> {
    await this.write(() => this.pool.query(`UPDATE af_gateway_meta SET value = $1 WHERE key = 'identity'`, [identity]));
    this.stateIdentity = identity;
  }

  async flush(): Promise<void> {
    await this.writes;
  }

  async close(): Promise<void> {
    await this.writes.catch(() => {});
    await this.leaderClient?.end().catch(() => {});
    await this.pool.end();
  }

  // --- ordering -------------------------------------------------------------------------------

  private write(run: () => Promise<unknown>): Promise<void> {
    const p = this.writes.then(run);
    this.writes = p.catch(() => {});
    return p.then(() => {});
  }

  private async read<R extends pg.QueryResultRow>(sql: string, args: unknown[] = []): Promise<R[]> {
    await this.writes;
    return (await this.pool.query<R>(sql, args)).rows;
  }

  private async transaction(run: (client: pg.PoolClient) => Promise<void>): Promise<void> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      await run(client);
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  }

  // --- clusters and workers ---------------------------------------------------------------------

  saveCluster(c: ClusterRecord): Promise<void> {
    const r = clusterToRow(c, this.box);
    return this.write(() =>
      this.pool.query(
        `INSERT INTO clusters (name, username, status, start_time, stop_time, data, secrets)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (name) DO UPDATE SET status = excluded.status, stop_time = excluded.stop_time,
           data = excluded.data, secrets = excluded.secrets`,
        [r.name, r.username, r.status, r.start_time, r.stop_time, r.data, r.secrets],
      ),
    );
  }

  async loadClusters(statuses: readonly ClusterStatus[], username?: string): Promise<ClusterRecord[]> {
    const rows =
      username === undefined
        ? await this.read<ClusterRow>('SELECT * FROM clusters WHERE status = ANY($1) ORDER BY start_time', [statuses])
        : await this.read<ClusterRow>('SELECT * FROM clusters WHERE username = $1 AND status = ANY($2) ORDER BY start_time', [username, statuses]);
    return rows.map((r) => rowToCluster(r, this.box));
  }

  async loadCluster(name: string): Promise<ClusterRecord | undefined> {
    const [row] = await this.read<ClusterRow>('SELECT * FROM clusters WHERE name = $1', [name]);
    return row && rowToCluster(row, this.box);
  }

  saveWorker(w: WorkerRecord): Promise<void> {
    const r = workerToRow(w);
    return this.write(() =>
      this.pool.query(
        `INSERT INTO workers (cluster, name, status, data) VALUES ($1, $2, $3, $4)
         ON CONFLICT (cluster, name) DO UPDATE SET status = excluded.status, data = excluded.data`,
        [r.cluster, r.name, r.status, r.data],
      ),
    );
  }

  async loadWorkers(cluster: string): Promise<WorkerRecord[]> {
    const rows = await this.read<{ cluster: string; name: string; status: string; data: string }>(
      'SELECT cluster, name, status, data FROM workers WHERE cluster = $1 ORDER BY seq',
      [cluster],
    );
    return rows.map(rowToWorker);
  }

  async countByStatus(): Promise<Record<string, number>> {
    const rows = await this.read<{ status: string; n: string }>('SELECT status, count(*) AS n FROM clusters GROUP BY status');
    return Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
  }

  // --- sessions and tokens ----------------------------------------------------------------------

  saveSession(tokenHash: string, user: string, expires: number, hub?: SessionSecrets): Promise<void> {
    const sealed = hub ? this.box.seal(hub.hubToken) : null;
    return this.write(() =>
      this.pool.query(
        `INSERT INTO sessions (token_hash, "user", expires, hub_token, hub_checked) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (token_hash) DO UPDATE SET "user" = excluded."user", expires = excluded.expires,
           hub_token = excluded.hub_token, hub_checked = excluded.hub_checked`,
        [tokenHash, user, expires, sealed, hub?.hubChecked ?? null],
      ),
    );
  }

  confirmSession(tokenHash: string, user: string, hubChecked: number): Promise<void> {
    return this.write(() =>
      this.pool.query('UPDATE sessions SET "user" = $1, hub_checked = $2 WHERE token_hash = $3 AND (hub_checked IS NULL OR hub_checked < $2)', [
        user,
        hubChecked,
        tokenHash,
      ]),
    );
  }

  async findSession(tokenHash: string, now: number): Promise<StoredSession | undefined> {
    const [row] = await this.read<SessionRow>('SELECT "user", expires, hub_token, hub_checked FROM sessions WHERE token_hash = $1 AND expires > $2', [
      tokenHash,
      now,
    ]);
    return row && rowToSession(row, this.box);
  }

  pruneSessions(now: number): Promise<void> {
    return this.write(() => this.pool.query('DELETE FROM sessions WHERE expires <= $1', [now]));
  }

  deleteSession(tokenHash: string): Promise<void> {
    return this.write(() => this.pool.query('DELETE FROM sessions WHERE token_hash = $1', [tokenHash]));
  }

  saveTokens(username: string, data: object, secrets: object): Promise<void> {
    const sealed = this.box.seal(JSON.stringify(secrets));
    return this.write(() =>
      this.pool.query(
        `INSERT INTO tokens (username, data, secrets) VALUES ($1, $2, $3)
         ON CONFLICT (username) DO UPDATE SET data = excluded.data, secrets = excluded.secrets`,
        [username, JSON.stringify(data), sealed],
      ),
    );
  }

  async loadTokens(): Promise<{ username: string; data: unknown; secrets: unknown }[]> {
    const rows = await this.read<{ username: string; data: string; secrets: string }>('SELECT username, data, secrets FROM tokens');
    return rows.map((r) => ({ username: r.username, data: JSON.parse(r.data), secrets: JSON.parse(this.box.open(r.secrets)) }));
  }

  deleteTokens(username: string): Promise<void> {
    return this.write(() => this.pool.query('DELETE FROM tokens WHERE username = $1', [username]));
  }

  // --- workflow runs ----------------------------------------------------------------------------

  saveWorkflow(run: WorkflowRunKey, data: object, nodes: { id: string; seq: number }[] = [], spec?: object): Promise<void> {
    const runArgs = [run.id, run.username, run.status, run.created, JSON.stringify(data), JSON.stringify(spec ?? null)];
    const ids = nodes.map((n) => n.id);
    const seqs = nodes.map((n) => n.seq);
    const datas = nodes.map((n) => JSON.stringify(n));
    return this.write(() =>
      this.transaction(async (client) => {
        await client.query(
          `INSERT INTO workflow_runs (id, username, status, created, data, spec) VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (id) DO UPDATE SET status = excluded.status, data = excluded.data`,
          runArgs,
        );
        if (nodes.length === 0) return;
        await client.query(
          `INSERT INTO workflow_nodes (run, id, seq, data)
           SELECT $1, * FROM unnest($2::text[], $3::integer[], $4::text[])
           ON CONFLICT (run, id) DO UPDATE SET data = excluded.data`,
          [run.id, ids, seqs, datas],
        );
      }),
    );
  }

  async loadWorkflowRuns(statuses?: readonly string[], username?: string): Promise<WorkflowRunRow[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    if (statuses) {
      args.push(statuses);
      where.push(`status = ANY($${args.length})`);
    }
    if (username !== undefined) {
      args.push(username);
      where.push(`username = $${args.length}`);
    }
    const rows = await this.read<{ id: string; username: string; status: string; created: string; data: string }>(
      `SELECT id, username, status, created, data FROM workflow_runs ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY created DESC`,
      args,
    );
    return rows.map((r) => ({ ...r, created: Number(r.created), data: JSON.parse(r.data) as unknown }));
  }

  async loadWorkflowRun(id: string): Promise<(WorkflowRunRow & { spec: unknown }) | undefined> {
    const [r] = await this.read<{ id: string; username: string; status: string; created: string; data: string; spec: string }>(
      'SELECT id, username, status, created, data, spec FROM workflow_runs WHERE id = $1',
      [id],
    );
    return r && { ...r, created: Number(r.created), data: JSON.parse(r.data) as unknown, spec: JSON.parse(r.spec) as unknown };
  }

  async loadWorkflowNodes(run: string): Promise<unknown[]> {
    const rows = await this.read<{ data: string }>('SELECT data FROM workflow_nodes WHERE run = $1 ORDER BY seq', [run]);
    return rows.map((r) => JSON.parse(r.data) as unknown);
  }

  deleteWorkflow(id: string): Promise<void> {
    return this.write(() => this.pool.query('DELETE FROM workflow_runs WHERE id = $1', [id]));
  }

  // --- leadership -------------------------------------------------------------------------------

  async waitForLeadership(pollMs: number, waiting: () => void): Promise<Leadership> {
    const queryTimeout = Math.max(2 * pollMs, 5_000);
    const sleep = () => new Promise((r) => setTimeout(r, pollMs));
    let said = false;
    for (;;) {
      const client = new pg.Client({ connectionString: this.opts.url, connectionTimeoutMillis: 10_000, query_timeout: queryTimeout, keepAlive: true });
      let failed: Error | undefined;
      client.on('error', (err) => (failed = err)); // the pending query fails too; unhandled, it would end the process
      try {
        await client.connect();
        // The holder notices a dead lease connection within one probe period plus a query timeout
        // and exits. The server must not release the lock before that, but should not wait for the
        // kernel's default of two hours either (a node that vanished): keepalives on this session.
        const holderNotices = Math.ceil((pollMs + queryTimeout) / 1000);
        await client.query(`SET tcp_keepalives_idle = ${holderNotices + 2}; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3`);
        for (;;) {
          const { rows } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS ok', [...LEADER_LOCK]);
          if (rows[0]?.ok) return this.holdLease(client, pollMs, queryTimeout);
          if (!said) {
            said = true;
            try {
              waiting();
            } catch (err) {
              throw new CallerStop(err);
            }
          }
          await sleep();
        }
      } catch (err) {
        await client.end().catch(() => {});
        if (err instanceof CallerStop) throw err.cause;
        // A standby outlives a database restart: it waits on a new connection.
        this.opts.warn('the connection waiting for the state store lease failed; connecting again', failed ?? err);
        await sleep();
      }
    }
  }

  private holdLease(client: pg.Client, pollMs: number, queryTimeout: number): Leadership {
    let lost: ((reason: string) => void) | undefined;
    let lostReason: string | undefined;
    const lose = (reason: string) => {
      if (lostReason !== undefined) return;
      lostReason = reason;
      lost?.(reason);
    };
    client.removeAllListeners('error');
    client.on('error', (err) => lose(`the connection holding the lease failed: ${err.message}`));
    client.on('end', () => lose('the connection holding the lease ended'));
    this.leaderClient = client;
    // A connection can die silently (a network partition): ask on it regularly so the loss is
    // noticed within a probe period and a query timeout, before the server gives the lease away.
    // A process that was frozen longer than that (its timers late) gives up as well.
    let answered = Date.now();
    const probe = setInterval(() => {
      if (Date.now() - answered > 2 * pollMs + queryTimeout) {
        lose(`the lease was not confirmed for ${Math.round((Date.now() - answered) / 1000)} s (the process was stalled)`);
        return;
      }
      client.query('SELECT 1').then(
        () => (answered = Date.now()),
        (err: Error) => lose(`the connection holding the lease did not answer: ${err.message}`),
      );
    }, pollMs);
    probe.unref();
    return {
      onLost: (listener) => {
        lost = listener;
        if (lostReason !== undefined) listener(lostReason);
      },
      release: async () => {
        clearInterval(probe);
        lostReason ??= 'released';
        this.leaderClient = undefined;
        await client.end().catch(() => {});
      },
    };
  }
}

/** Wraps what the caller's `waiting` callback threw, so it ends the wait instead of a reconnect. */
class CallerStop extends Error {
  constructor(cause: unknown) {
    super('stopped by the caller', { cause });
  }
}
