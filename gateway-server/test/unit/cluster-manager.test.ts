// The lifecycle engine on its own: ClusterManager driven by the in-memory backend, with fake timers
// and an injected scheduler call — no Dask, no network, no sleeping. Each test plays the part of
// the scheduler (heartbeats) and of the processes (the memory backend's records), and checks what
// the engine decides: timeouts, failure counting, waiting jobs, adoption after a restart, stops.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import type { FastifyBaseLogger } from 'fastify';
import type { Heartbeat } from '@af-gateway/schemas';
import { resolveConfig } from '../../src/config.js';
import { ClusterManager, type SchedulerCall } from '../../src/clusters/cluster-manager.js';
import { MemoryBackend } from '../../src/backends/memory/memory-backend.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { closeUnitState, openUnitState } from '../support/unit-state.js';
import { advance, schedulerHeartbeat } from '../support/engine-clock.js';
import type { ClusterRecord } from '../../src/clusters/model.js';

const alice = { name: 'alice', groups: [], admin: false };
const log = pino({ level: 'silent' }) as unknown as FastifyBaseLogger;

// Short periods keep the numbers readable; the rules are the engine's, whatever the values.
const CLUSTER = {
  check_period: 1,
  start_timeout: 30,
  worker_start_timeout: 20,
  worker_max_failures: 3,
  heartbeat_timeout: 60,
  launch_batch: 4,
  stop_on_shutdown: false,
};

let dir: string;
let store: SqliteStore;
let backend: MemoryBackend;
let managers: ClusterManager[];
let told: { api: string; body: Record<string, unknown> }[];
let schedulerAnswer: () => Promise<number>;

const schedulerCall: SchedulerCall = async (api, _token, body) => {
  told.push({ api, body });
  return schedulerAnswer();
};

function config(cluster: Record<string, unknown> = {}) {
  return resolveConfig({ data_dir: dir, backend: { local: { single_user: true } }, cluster: { ...CLUSTER, ...cluster } });
}

async function manager(cluster: Record<string, unknown> = {}): Promise<ClusterManager> {
  const m = new ClusterManager({ store, backend, config: config(cluster), log, schedulerCall });
  managers.push(m);
  await m.start('http://gateway.test/api');
  return m;
}

/** A heartbeat naming no connected workers (the engine's own shape: engine-clock's schedulerHeartbeat). */
const heartbeat = (c: ClusterRecord, over: Partial<Heartbeat> = {}): Heartbeat => schedulerHeartbeat(c, [], over);

/** A cluster whose scheduler started and sent its first heartbeat. */
async function running(m: ClusterManager, count = 0): Promise<ClusterRecord> {
  const c = await m.create(alice, {});
  await advance(0);
  expect(backend.schedulerOf(c.name)).toBeDefined();
  await m.heartbeat(c.name, heartbeat(c, { count }));
  await advance(0);
  expect(c.status).toBe('RUNNING');
  return c;
}

const liveWorkers = (m: ClusterManager, c: ClusterRecord) => m.activeWorkers(c.name) ?? [];

beforeEach(() => {
  ({ dir, store, backend } = openUnitState('af-unit-cm-'));
  managers = [];
  told = [];
  schedulerAnswer = async () => 200;
});

afterEach(async () => {
  await closeUnitState({ dir, store }, managers);
});

describe('the scheduler start', () => {
  it('fails the cluster when no heartbeat comes within cluster.start_timeout, and stops the scheduler', async () => {
    const m = await manager();
    const c = await m.create(alice, {});
    await advance(CLUSTER.start_timeout - 1);
    expect(c.status).toBe('PENDING');
    await advance(2 + CLUSTER.check_period);
    expect(c.status).toBe('FAILED');
    expect(c.message).toMatch(/did not start within 30 s \(cluster\.start_timeout\)/);
    expect(backend.schedulerOf(c.name)!.stopped).toBe(true);
    expect((await store.loadCluster(c.name))!.status).toBe('FAILED');
  });

  it('fails the cluster at the next check when the scheduler exits before its first heartbeat, with the exit reason', async () => {
    const m = await manager();
    const c = await m.create(alice, {});
    await advance(0);
    backend.exit(backend.schedulerOf(c.name)!, 1, 'ImportError: no module named dask');
    await advance(CLUSTER.check_period);
    expect(c.status).toBe('FAILED');
    expect(c.message).toBe('the scheduler exited before it was ready; ImportError: no module named dask');
  });

  it('fails the cluster when the scheduler cannot be started at all', async () => {
    backend.failStarts = (_l, role) => (role === 'scheduler' ? 'no quota left' : null);
    const m = await manager();
    const c = await m.create(alice, {});
    await advance(0);
    expect(c.status).toBe('FAILED');
    expect(c.message).toBe('the scheduler could not be started: no quota left');
  });

  it('stops a scheduler whose start was still in flight when the cluster was stopped', async () => {
    let release!: () => void;
    backend.startDelay = new Promise<void>((r) => (release = r));
    const m = await manager();
    const c = await m.create(alice, {});
    await advance(0);
    expect(backend.alive('scheduler')).toHaveLength(0);
    const stopping = m.stop(c.name);
    await advance(0);
    expect(c.status).toBe('STOPPING');
    release();
    await stopping;
    expect(c.status).toBe('STOPPED');
    expect(backend.schedulerOf(c.name)!.stopped).toBe(true);
    expect(backend.alive()).toHaveLength(0);
  });
});

describe('limits', () => {
  it('parallel creates of one user (mallory) cannot pass policy.user_limits.max_clusters together', async () => {
    const cfg = resolveConfig({
      data_dir: dir,
      backend: { local: { single_user: true } },
      cluster: CLUSTER,
      policy: { user_limits: { max_clusters: 1 } },
    });
    const m = new ClusterManager({ store, backend, config: cfg, log, schedulerCall });
    managers.push(m);
    await m.start('http://gateway.test/api');
    const mallory = { name: 'mallory', groups: [], admin: false };
    const tries = await Promise.allSettled([m.create(mallory, {}), m.create(mallory, {}), m.create(mallory, {})]);
    expect(tries.filter((t) => t.status === 'fulfilled')).toHaveLength(1);
    expect(tries.filter((t) => t.status === 'rejected').map((t) => (t as PromiseRejectedResult).reason.code)).toEqual(['limit_clusters', 'limit_clusters']);
    expect(m.activeClusters(['PENDING', 'RUNNING'], 'mallory')).toHaveLength(1);
    await expect(m.create(alice, {})).resolves.toMatchObject({ username: 'alice' }); // her limit is her own
  });
});

describe('workers', () => {
  it('starts what a heartbeat asks for in one backend call, at most cluster.launch_batch at a time', async () => {
    const m = await manager();
    const c = await running(m, 10);
    await advance(0);
    expect(backend.calls.startWorkers).toEqual([4, 4, 2]);
    expect(liveWorkers(m, c)).toHaveLength(10);
    expect(liveWorkers(m, c).every((w) => w.status === 'STARTING' && w.handle)).toBe(true);
  });

  it('checks every scheduler and worker of every cluster with one backend call per check', async () => {
    const m = await manager();
    const a = await running(m, 2);
    const b = await running(m, 3);
    await advance(0);
    backend.calls.check.length = 0;
    await advance(CLUSTER.check_period);
    expect(backend.calls.check).toEqual([2 + 5]);
    expect([a.status, b.status]).toEqual(['RUNNING', 'RUNNING']);
  });

  it("a process whose check fails (mallory's) fails only its own cluster's check: the other clusters are still judged", async () => {
    const m = await manager();
    const a = await running(m, 1);
    const mc = await m.create({ name: 'mallory', groups: [], admin: false }, {});
    await advance(0);
    await m.heartbeat(mc.name, heartbeat(mc));
    await advance(0);
    expect(mc.status).toBe('RUNNING');
    // Whatever mallory's scheduler makes the backend choke on, a list holding it is refused whole.
    backend.checkFails = (p) => (p?.owner === mc.name ? new Error('condor_q printed something unreadable') : null);
    backend.exit(backend.schedulerOf(a.name)!, 1, 'Killed');
    await advance(CLUSTER.check_period);
    expect(a.status).toBe('FAILED');
    expect(a.message).toContain('the scheduler process exited; Killed');
    expect(mc.status).toBe('RUNNING'); // its own check failed: it is left as it was until a check answers
    backend.checkFails = null;
    backend.exit(backend.schedulerOf(mc.name)!, 1, 'gone');
    await advance(CLUSTER.check_period);
    expect(mc.status).toBe('FAILED');
  });

  it('marks workers running when the scheduler reports them, and a failure count is reset by a worker that connects', async () => {
    const m = await manager();
    const c = await running(m, 1);
    await advance(0);
    const [w] = liveWorkers(m, c);
    backend.exit(backend.workerNamed(w!.name)!, 1, 'Killed');
    await advance(CLUSTER.check_period);
    expect(c.workerFailures).toBe(1);
    expect(c.message).toBe(`worker ${w!.name} failed: exited before connecting to the scheduler; Killed`);
    await advance(0);
    const [next] = liveWorkers(m, c);
    expect(next!.name).not.toBe(w!.name);
    await m.heartbeat(c.name, heartbeat(c, { count: 1, active_workers: [next!.name] }));
    expect(next!.status).toBe('RUNNING');
    expect(c.workerFailures).toBe(0);
  });

  it('counts a worker that does not connect within cluster.worker_start_timeout, retries, and fails the cluster after worker_max_failures in a row', async () => {
    const m = await manager();
    const c = await running(m, 1);
    const started: string[] = [];
    for (let i = 1; i <= CLUSTER.worker_max_failures; i++) {
      await advance(0);
      const [w] = liveWorkers(m, c);
      started.push(w!.name);
      // (the scheduler keeps its heartbeat up, without the worker)
      await advance(CLUSTER.worker_start_timeout - 1);
      await m.heartbeat(c.name, heartbeat(c, { count: 1 }));
      expect(w!.status).toBe('STARTING');
      await advance(1 + CLUSTER.check_period);
      expect(w!.status).toBe('FAILED');
      expect(backend.workerNamed(w!.name)!.stopped).toBe(true);
      expect(c.workerFailures).toBe(i);
    }
    expect(new Set(started).size).toBe(3);
    expect(c.status).toBe('FAILED');
    expect(c.message).toBe('3 workers in a row failed to start; the last one did not connect within 20 s (cluster.worker_start_timeout)');
    expect(backend.alive()).toHaveLength(0);
  });

  it('counts each of a batch of failed starts, the others going on', async () => {
    let n = 0;
    backend.failStarts = (_l, role) => (role === 'worker' && ++n % 2 === 0 ? 'the batch system said no' : null);
    const m = await manager();
    const c = await running(m, 2);
    expect(backend.calls.startWorkers[0]).toBe(2);
    await advance(0);
    expect(c.workerFailures).toBe(1);
    expect(c.message).toMatch(/failed: could not be started: the batch system said no$/);
    expect(c.status).toBe('RUNNING');
    expect(liveWorkers(m, c).filter((w) => w.handle)).toHaveLength(2); // the failed one was replaced
  });

  it('does not count time spent waiting for a slot against the start timeout, and reports why it waits', async () => {
    const m = await manager();
    const c = await running(m, 1);
    await advance(0);
    const [w] = liveWorkers(m, c);
    const p = backend.workerNamed(w!.name)!;
    backend.wait(p, 'HTCondor job 12.0 is waiting for a slot: no machine matches');
    for (let i = 0; i < 5; i++) {
      await advance(CLUSTER.worker_start_timeout);
      await m.heartbeat(c.name, heartbeat(c, { count: 1 }));
    }
    expect(w!.status).toBe('STARTING');
    expect(w!.message).toBe('HTCondor job 12.0 is waiting for a slot: no machine matches');
    expect(c.workerFailures).toBe(0);
    // It runs now: the start timeout counts from then.
    backend.run(p);
    await advance(CLUSTER.worker_start_timeout - 2);
    expect(w!.status).toBe('STARTING');
    await advance(2 + CLUSTER.check_period);
    expect(w!.status).toBe('FAILED');
    expect(w!.message).toMatch(/did not connect within 20 s/);
  });

  it('reports a held job as the worker failure with the hold reason', async () => {
    const m = await manager();
    const c = await running(m, 1);
    await advance(0);
    const [w] = liveWorkers(m, c);
    backend.exit(backend.workerNamed(w!.name)!, 1, 'HTCondor held job 12.0: Error from slot1: out of memory');
    await advance(CLUSTER.check_period);
    expect(w!.status).toBe('FAILED');
    expect(c.message).toBe(`worker ${w!.name} failed: exited before connecting to the scheduler; HTCondor held job 12.0: Error from slot1: out of memory`);
  });

  it('replaces a running worker that exits unexpectedly, without counting it as a failed start', async () => {
    const m = await manager();
    const c = await running(m, 1);
    await advance(0);
    const [w] = liveWorkers(m, c);
    await m.heartbeat(c.name, heartbeat(c, { count: 1, active_workers: [w!.name] }));
    backend.exit(backend.workerNamed(w!.name)!, 137, 'killed (OOM)');
    await advance(CLUSTER.check_period);
    expect(w!.status).toBe('FAILED');
    expect(w!.message).toBe('exited unexpectedly; killed (OOM)');
    expect(c.workerFailures).toBe(0);
    await advance(0);
    expect(liveWorkers(m, c)).toHaveLength(1);
    expect(liveWorkers(m, c)[0]!.name).not.toBe(w!.name);
  });

  it('retires workers the scheduler closes and cancels starting ones no longer needed, with one stop call each', async () => {
    const m = await manager();
    const c = await running(m, 3);
    await advance(0);
    const [a, b, d] = liveWorkers(m, c);
    await m.heartbeat(c.name, heartbeat(c, { count: 3, active_workers: [a!.name] }));
    backend.calls.stop.length = 0;
    await m.heartbeat(c.name, heartbeat(c, { count: 1, active_workers: [a!.name] }));
    await advance(0);
    expect(backend.calls.stop).toEqual([2]);
    expect([b!.status, d!.status]).toEqual(['STOPPED', 'STOPPED']);
    expect(b!.message).toBe('no longer needed');
    await m.heartbeat(c.name, heartbeat(c, { count: 0, closing_workers: [a!.name] }));
    await m.heartbeat(c.name, heartbeat(c, { count: 0, closed_workers: [a!.name] }));
    await advance(0);
    expect(a!.status).toBe('STOPPED');
    expect(a!.message).toBe('retired by the scheduler');
    expect(backend.alive('worker')).toHaveLength(0);
  });

  it('stops workers whose start was in flight when the cluster was stopped', async () => {
    const m = await manager();
    const c = await running(m, 0);
    let release!: () => void;
    backend.startDelay = new Promise<void>((r) => (release = r));
    await m.heartbeat(c.name, heartbeat(c, { count: 3 }));
    await advance(0);
    const stopping = m.stop(c.name);
    await advance(0);
    release();
    await stopping;
    expect(c.status).toBe('STOPPED');
    expect(backend.alive()).toHaveLength(0);
    expect(backend.alive('worker')).toHaveLength(0);
    expect((await store.loadWorkers(c.name)).every((w) => w.status === 'STOPPED')).toBe(true);
  });

  it('fails a running cluster whose scheduler exits or stops sending heartbeats', async () => {
    const m = await manager();
    const a = await running(m, 1);
    const b = await running(m, 0);
    await advance(0);
    backend.exit(backend.schedulerOf(a.name)!, 1, 'Segmentation fault');
    await advance(CLUSTER.check_period);
    expect(a.status).toBe('FAILED');
    expect(a.message).toBe('the scheduler process exited; Segmentation fault');
    expect(backend.alive('worker')).toHaveLength(0);
    await advance(CLUSTER.heartbeat_timeout);
    expect(b.status).toBe('FAILED');
    expect(b.message).toMatch(/no heartbeat from the scheduler for 60 s/);
  });

  it('goes on checking after the backend failed to answer once', async () => {
    const m = await manager();
    const c = await running(m, 0);
    backend.checkError = new Error('condor_q: schedd not reachable');
    await advance(CLUSTER.check_period * 3);
    expect(c.status).toBe('RUNNING');
    backend.checkError = null;
    backend.exit(backend.schedulerOf(c.name)!, 2);
    await advance(CLUSTER.check_period);
    expect(c.status).toBe('FAILED');
  });
});

describe('scale and adapt', () => {
  it('tell the scheduler through the injected call, and a silent scheduler is a 409', async () => {
    const m = await manager();
    const c = await running(m);
    expect(await m.scale(c.name, 5)).toEqual({ ok: true, msg: null });
    expect(await m.adapt(c.name, 1, 4, true)).toEqual({ ok: true, msg: null });
    expect(told).toEqual([
      { api: 'http://127.0.0.1:8788', body: { op: 'scale', count: 5 } },
      { api: 'http://127.0.0.1:8788', body: { op: 'adapt', minimum: 1, maximum: 4, active: true } },
    ]);
    schedulerAnswer = () => Promise.reject(new Error('connection refused'));
    await expect(m.scale(c.name, 2)).rejects.toMatchObject({ statusCode: 409, code: 'scheduler_unreachable' });
    schedulerAnswer = async () => 500;
    await expect(m.scale(c.name, 2)).rejects.toMatchObject({ statusCode: 409, code: 'scheduler_refused' });
  });
});

describe('a restart', () => {
  it('adopts live clusters and workers with one check call each, ends what exited meanwhile, and removes orphans', async () => {
    const first = await manager();
    const live = await running(first, 2);
    const dead = await running(first, 0);
    await advance(0);
    const [w1, w2] = liveWorkers(first, live);
    await first.heartbeat(live.name, heartbeat(live, { count: 2, active_workers: [w1!.name, w2!.name] }));
    await first.close();
    await store.flush();
    // While the gateway is down: one worker and one scheduler exit; a crash left an orphan behind.
    backend.exit(backend.workerNamed(w2!.name)!, 1);
    backend.exit(backend.schedulerOf(dead.name)!, 1, 'killed');
    const orphan = backend.orphan('worker', 'gone-cluster', 'gone-1');
    backend.calls.check.length = 0;
    backend.calls.removeOrphans = 0;

    const second = await manager();
    await advance(0);
    expect(backend.calls.check).toEqual([2, 2]); // the schedulers, then the adopted clusters' workers
    const adopted = (await second.get(live.name))!;
    expect(adopted.status).toBe('RUNNING');
    const workers = second.activeWorkers(live.name)!;
    expect(workers.map((w) => w.name)).toContain(w1!.name);
    expect(workers.map((w) => w.name)).not.toContain(w2!.name);
    expect((await store.loadWorkers(live.name)).find((w) => w.name === w2!.name)).toMatchObject({
      status: 'FAILED',
      message: 'exited while the gateway was down',
    });
    expect((await second.get(dead.name))!.status).toBe('FAILED');
    expect((await second.get(dead.name))!.message).toBe('the scheduler was gone when the gateway restarted; killed');
    expect(orphan.stopped).toBe(true);
    expect(backend.workerNamed(w1!.name)!.stopped).toBe(false);
    expect(backend.calls.removeOrphans).toBe(1);
  });

  it('gives adopted starting workers a full start timeout from the restart, and finishes stops that were under way', async () => {
    const first = await manager();
    const c = await running(first, 1);
    const stopping = await running(first, 0);
    await advance(0);
    const [w] = liveWorkers(first, c);
    stopping.stopRequested = true;
    await store.saveCluster(stopping);
    await first.close();
    await advance(CLUSTER.worker_start_timeout - 5); // most of the start timeout passed while the gateway was down

    const second = await manager();
    await advance(0);
    expect((await second.get(stopping.name))!.status).toBe('STOPPED');
    expect(backend.schedulerOf(stopping.name)!.stopped).toBe(true);
    const adopted = second.activeWorkers(c.name)!.find((x) => x.name === w!.name)!;
    await second.heartbeat(c.name, heartbeat(c, { count: 1 }));
    await advance(10);
    expect(adopted.status).toBe('STARTING');
    await second.heartbeat(c.name, heartbeat(c, { count: 1 }));
    await advance(CLUSTER.worker_start_timeout);
    expect(adopted.status).toBe('FAILED');
  });
});
