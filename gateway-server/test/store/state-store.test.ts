// The state store's contract, against both implementations: SQLite (one gateway) and a real
// PostgreSQL server (several replicas), plus what only PostgreSQL does (the serving lease).
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { SecretBox } from '../../src/store/crypto.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { PostgresStore } from '../../src/store/postgres-store.js';
import type { StateStore } from '../../src/store/state-store.js';
import type { ClusterRecord, WorkerRecord } from '../../src/clusters/model.js';
import { startPostgres, type PostgresServer } from '../support/postgres-server.js';

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'af-store-'));
  dirs.push(d);
  return d;
};
const opened: StateStore[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((s) => s.close().catch(() => {})));
  dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true }));
});

let server: PostgresServer;
beforeAll(() => {
  server = startPostgres();
}, 60_000);
afterAll(() => server?.stop());

const newKey = () => SecretBox.fromBase64(randomBytes(32).toString('base64'));
const warn = () => {};

const cluster = (over: Partial<ClusterRecord> = {}): ClusterRecord => ({
  name: 'c1',
  username: 'alice',
  groups: ['/cms'],
  options: { worker_cores: 1 },
  adaptive: { minimum: 0, maximum: 3 },
  settings: { worker_cores: 1, worker_memory: 1, environment: {}, idle_timeout: 0 },
  status: 'RUNNING',
  stopRequested: false,
  token: 'TOKEN-SECRET-123',
  tlsCert: 'CERT',
  tlsKey: 'KEY-SECRET-456',
  scheduler: { pid: 1, startTicks: '2' },
  schedulerAddress: 'tls://127.0.0.1:1',
  dashboardAddress: '',
  apiAddress: '',
  count: 2,
  groupTargets: {},
  startTime: 1_700_000_000_000,
  stopTime: null,
  lastHeartbeat: null,
  message: '',
  workerFailures: 0,
  workDir: '/x',
  ...over,
});
const worker = (name: string, over: Partial<WorkerRecord> = {}): WorkerRecord => ({
  cluster: 'c1',
  name,
  group: 'default',
  status: 'RUNNING',
  handle: { pid: 5, startTicks: '6' },
  startTime: 1,
  stopTime: null,
  closeExpected: false,
  message: '',
  ...over,
});

/** Each kind: a way to open a store on fresh storage, and to open the same storage again. */
const kinds: { kind: string; fresh: (box: SecretBox) => Promise<{ store: StateStore; reopen: (box: SecretBox) => Promise<StateStore> }> }[] = [
  {
    kind: 'sqlite',
    fresh: async (box) => {
      const file = join(tmp(), 'state.sqlite');
      return { store: new SqliteStore(file, box), reopen: async (b) => new SqliteStore(file, b) };
    },
  },
  {
    kind: 'postgresql',
    fresh: async (box) => {
      const url = await server.newDatabase();
      const open = (b: SecretBox) => PostgresStore.open({ url, poolSize: 3, box: b, warn });
      return { store: await open(box), reopen: open };
    },
  },
];

describe.each(kinds)('state store: $kind', ({ kind, fresh }) => {
  const open = async (box = newKey()) => {
    const f = await fresh(box);
    opened.push(f.store);
    return {
      ...f,
      reopen: async (b: SecretBox) => {
        const s = await f.reopen(b);
        opened.push(s);
        return s;
      },
    };
  };

  it('round-trips clusters and workers; a reopened store reads what was written', async () => {
    const box = newKey();
    const { store, reopen } = await open(box);
    await store.saveCluster(cluster());
    await store.saveCluster(cluster({ name: 'c2', username: 'bob', status: 'STOPPED', stopTime: 1_700_000_000_500, startTime: 1_700_000_000_100 }));
    await store.saveWorker(worker('w1'));
    await store.saveWorker(worker('w0', { status: 'FAILED', message: 'exit 1' }));
    await store.saveWorker(worker('w1', { status: 'STOPPED' })); // an update keeps its place
    await store.close();

    const again = await reopen(box);
    expect(await again.loadCluster('c1')).toEqual(cluster());
    expect(await again.loadCluster('nope')).toBeUndefined();
    expect((await again.loadClusters(['RUNNING'], 'alice')).map((c) => c.name)).toEqual(['c1']);
    expect(await again.loadClusters(['RUNNING'], 'bob')).toEqual([]);
    expect((await again.loadClusters(['RUNNING', 'STOPPED'])).map((c) => [c.name, c.stopTime])).toEqual([
      ['c1', null],
      ['c2', 1_700_000_000_500],
    ]);
    expect((await again.loadWorkers('c1')).map((w) => [w.name, w.status])).toEqual([
      ['w1', 'STOPPED'],
      ['w0', 'FAILED'],
    ]);
    expect(await again.countByStatus()).toEqual({ RUNNING: 1, STOPPED: 1 });
  });

  it('reads clusters and workers written before worker groups as having only the default group', async () => {
    const { store } = await open();
    const { groupTargets: _targets, ...old } = cluster({ name: 'c-old' });
    await store.saveCluster(old as unknown as ClusterRecord);
    const { group: _group, ...oldWorker } = worker('w-old', { cluster: 'c-old' });
    await store.saveWorker(oldWorker as unknown as WorkerRecord);
    await store.saveCluster(cluster({ name: 'c-new', groupTargets: { hpc: 3 } }));
    await store.saveWorker(worker('w-new', { cluster: 'c-new', group: 'hpc' }));
    expect((await store.loadCluster('c-old'))!.groupTargets).toEqual({});
    expect((await store.loadWorkers('c-old')).map((w) => w.group)).toEqual(['default']);
    expect((await store.loadCluster('c-new'))!.groupTargets).toEqual({ hpc: 3 });
    expect((await store.loadWorkers('c-new')).map((w) => w.group)).toEqual(['hpc']);
  });

  it('keeps secrets sealed at rest and cannot open them with another key', async () => {
    const { store, reopen } = await open();
    await store.saveCluster(cluster());
    await store.saveTokens('alice', { user: 'alice', exp: 5 }, { accessToken: 'ACCESS-SECRET-789', refreshToken: null });
    await store.close();
    const other = await reopen(newKey());
    await expect(other.loadCluster('c1')).rejects.toThrow();
    await expect(other.loadTokens()).rejects.toThrow();
  });

  it('expires sessions and prunes them', async () => {
    const { store } = await open();
    await store.saveSession('h1', '{"name":"alice"}', 2000);
    await store.saveSession('h2', '{"name":"bob"}', 5000);
    expect(await store.findSession('h1', 1000)).toEqual({ user: '{"name":"alice"}', expires: 2000 });
    expect(await store.findSession('h1', 3000)).toBeUndefined();
    await store.pruneSessions(3000);
    expect(await store.findSession('h1', 1000)).toBeUndefined();
    expect(await store.findSession('h2', 3000)).toEqual({ user: '{"name":"bob"}', expires: 5000 });
    await store.deleteSession('h2'); // a logout
    expect(await store.findSession('h2', 3000)).toBeUndefined();
  });

  it('keeps token state per user', async () => {
    const { store } = await open();
    await store.saveTokens('alice', { user: 'alice', n: 1 }, { accessToken: 'a1', refreshToken: 'r1' });
    await store.saveTokens('alice', { user: 'alice', n: 2 }, { accessToken: 'a2', refreshToken: 'r2' });
    await store.saveTokens('bob', { user: 'bob' }, { accessToken: 'b', refreshToken: null });
    await store.deleteTokens('bob');
    expect(await store.loadTokens()).toEqual([{ username: 'alice', data: { user: 'alice', n: 2 }, secrets: { accessToken: 'a2', refreshToken: 'r2' } }]);
  });

  it('stores workflow runs with their nodes; the spec only once; delete removes the nodes', async () => {
    const { store } = await open();
    const key = { id: 'r1', username: 'alice', status: 'RUNNING', created: 1_700_000_000_000 };
    const nodes = Array.from({ length: 1500 }, (_, i) => ({ id: `map:${i}`, seq: i, state: 'DEFINED' }));
    await store.saveWorkflow(key, { n: 1 }, nodes, { stages: ['spec'] });
    const changed = { id: 'map:7', seq: 7, state: 'SUCCESS' }; // (a node is stored whole: the store reads only id and seq)
    await store.saveWorkflow({ ...key, status: 'SUCCESS' }, { n: 2 }, [changed], { stages: ['changed'] });
    await store.saveWorkflow({ id: 'r2', username: 'bob', status: 'FAILED', created: 1_700_000_000_001 }, { n: 3 });
    expect(await store.loadWorkflowRun('r1')).toEqual({ ...key, status: 'SUCCESS', data: { n: 2 }, spec: { stages: ['spec'] } });
    expect((await store.loadWorkflowRuns()).map((r) => r.id)).toEqual(['r2', 'r1']); // newest first
    expect((await store.loadWorkflowRuns(['SUCCESS'], 'alice')).map((r) => [r.id, r.created])).toEqual([['r1', 1_700_000_000_000]]);
    const back = (await store.loadWorkflowNodes('r1')) as { id: string; state: string }[];
    expect(back).toHaveLength(1500);
    expect(back[7]).toEqual({ id: 'map:7', seq: 7, state: 'SUCCESS' });
    await store.deleteWorkflow('r1');
    expect(await store.loadWorkflowRun('r1')).toBeUndefined();
    expect(await store.loadWorkflowNodes('r1')).toEqual([]);
  });

  it('applies writes in the order they were made, even when nobody waits for them', async () => {
    const { store } = await open();
    const statuses = ['PENDING', 'RUNNING', 'STOPPING', 'STOPPED'] as const;
    for (let i = 0; i < 40; i++) void store.saveCluster(cluster({ status: statuses[i % 4]!, count: i }));
    const last = await store.loadCluster('c1'); // a read waits for the writes before it
    expect([last?.status, last?.count]).toEqual(['STOPPED', 39]);
  });

  if (kind === 'sqlite') {
    it('writes no secret in clear into the file', async () => {
      const dir = tmp();
      const file = join(dir, 'state.sqlite');
      const store = new SqliteStore(file, newKey());
      await store.saveCluster(cluster());
      await store.close();
      const raw = readFileSync(file).toString('latin1') + readFileSync(file + '-wal', { flag: 'a+' }).toString('latin1');
      expect(raw).toContain('tls://127.0.0.1:1');
      expect(raw).not.toContain('TOKEN-SECRET-123');
      expect(raw).not.toContain('KEY-SECRET-456');
    });
  }
});

describe('PostgreSQL specifics', () => {
  it('runs every shared migration, in order', async () => {
    const { PG_MIGRATIONS } = await import('../../src/store/postgres-store.js');
    const { MIGRATIONS } = await import('../../src/store/state-store.js');
    expect(PG_MIGRATIONS.filter((m) => MIGRATIONS.includes(m))).toEqual(MIGRATIONS);
  });

  it('keeps the identity the database was first opened with (the backends name pods and jobs after it)', async () => {
    const url = await server.newDatabase();
    const first = await PostgresStore.open({ url, poolSize: 1, box: newKey(), warn });
    opened.push(first);
    expect(first.identity).toBe(`postgresql://127.0.0.1:${new URL(url).port}${new URL(url).pathname}`);
    await first.adoptIdentity('/var/lib/af-gateway');
    const spelledOtherwise = await PostgresStore.open({ url: url.replace('127.0.0.1', 'localhost'), poolSize: 1, box: newKey(), warn });
    opened.push(spelledOtherwise);
    expect(spelledOtherwise.identity).toBe('/var/lib/af-gateway');
  });

  it('writes no secret in clear into the database', async () => {
    const url = await server.newDatabase();
    const store = await PostgresStore.open({ url, poolSize: 2, box: newKey(), warn });
    opened.push(store);
    await store.saveCluster(cluster());
    await store.saveTokens('alice', {}, { accessToken: 'ACCESS-SECRET-789' });
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    const dump = JSON.stringify((await c.query('SELECT * FROM clusters')).rows) + JSON.stringify((await c.query('SELECT * FROM tokens')).rows);
    await c.end();
    expect(dump).toContain('tls://127.0.0.1:1');
    for (const secret of ['TOKEN-SECRET-123', 'KEY-SECRET-456', 'ACCESS-SECRET-789']) expect(dump).not.toContain(secret);
  });

  it('two replicas starting at once migrate the schema once', async () => {
    const url = await server.newDatabase();
    const both = await Promise.all([0, 1].map(() => PostgresStore.open({ url, poolSize: 2, box: newKey(), warn })));
    opened.push(...both);
    await both[0]!.saveSession('h', 'u', 10);
    expect(await both[1]!.findSession('h', 1)).toEqual({ user: 'u', expires: 10 });
  });

  it('one replica holds the lease; a standby takes over the moment the holder goes', async () => {
    const url = await server.newDatabase();
    const box = newKey();
    const [a, b] = await Promise.all([0, 1].map(() => PostgresStore.open({ url, poolSize: 2, box, warn })));
    opened.push(a!, b!);
    const leaseA = await a!.waitForLeadership(200, () => {
      throw new Error('the first replica must not wait');
    });
    let bWaiting = false;
    let bServes = false;
    const leaseBPromise = b!
      .waitForLeadership(200, () => (bWaiting = true))
      .then((l) => {
        bServes = true;
        return l;
      });
    await new Promise((r) => setTimeout(r, 800));
    expect([bWaiting, bServes]).toEqual([true, false]);
    const t0 = Date.now();
    await leaseA.release();
    const leaseB = await leaseBPromise;
    expect(Date.now() - t0).toBeLessThan(2000);
    await leaseB.release();
  });

  it('the holder learns when its lease connection dies (so it can stop serving)', async () => {
    const url = await server.newDatabase();
    const store = await PostgresStore.open({ url, poolSize: 2, box: newKey(), warn });
    opened.push(store);
    const lease = await store.waitForLeadership(200, () => {});
    const lost = new Promise<string>((resolve) => lease.onLost(resolve));
    // What a database failover or a network cut does: the server ends the lease's session.
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()`);
    await admin.end();
    await expect(lost).resolves.toMatch(/lease/);
    await lease.release();
  });

  it('names the database without its password when it cannot connect', async () => {
    const { openStateStore } = await import('../../src/store/open-store.js');
    const { resolveConfig } = await import('../../src/config.js');
    const config = resolveConfig({
      data_dir: tmp(),
      encrypt_key: randomBytes(32).toString('base64'),
      state_store: { postgresql_url: 'postgresql://af:hunter2-secret@127.0.0.1:1/af_gateway' },
    });
    const err = await openStateStore(config, warn).then(
      () => null,
      (e: Error) => e,
    );
    expect(err?.message).toMatch(/could not open the PostgreSQL state store at postgresql:\/\/af:\*\*\*@127\.0\.0\.1:1\/af_gateway/);
    expect(err?.message).not.toContain('hunter2');
  });

  it('refuses PostgreSQL without a shared encryption key', async () => {
    const { openStateStore } = await import('../../src/store/open-store.js');
    const { resolveConfig } = await import('../../src/config.js');
    const saved = process.env.AF_GATEWAY_ENCRYPT_KEY;
    delete process.env.AF_GATEWAY_ENCRYPT_KEY;
    try {
      const config = resolveConfig({ data_dir: tmp(), state_store: { postgresql_url: server.url } });
      await expect(openStateStore(config, warn)).rejects.toThrow(/needs encrypt_key/);
    } finally {
      if (saved !== undefined) process.env.AF_GATEWAY_ENCRYPT_KEY = saved;
    }
  });
});

describe('SecretBox', () => {
  it('generates a key file readable only by its owner when none is configured', () => {
    const dir = tmp();
    const box = SecretBox.load(null, dir);
    expect(statSync(join(dir, 'encrypt.key')).mode & 0o777).toBe(0o600);
    expect(SecretBox.load(null, dir).open(box.seal('x'))).toBe('x');
  });
});
