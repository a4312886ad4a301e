// Adaptive scaling of a worker group in the lifecycle engine: the "hpc" group on its own in-memory
// backend follows the demand its scheduler reports in heartbeats (af_group_demand), within the range
// the user set and the limits. Fake timers, an injected scheduler call. Checks what a user relies on:
// up at once, down only after the demand stayed lower for the window and then by graceful retirement,
// a scale by hand turns it off, a restarted gateway keeps the range, the scheduler is told the groups
// when it does not know them, and a forged demand moves nothing beyond what the user allowed.
import { beforeEach, describe, expect, it } from 'vitest';
import type { Heartbeat } from '@af-gateway/schemas';
import type { ClusterManager } from '../../src/clusters/cluster-manager.js';
import { readGroupDemand, steer } from '../../src/clusters/group-adaptive.js';
import { advance, group, names, schedulerHeartbeat, workersOf } from '../support/engine-clock.js';
import { engineCluster, groupEngine } from '../support/group-engine.js';
import type { ClusterRecord } from '../../src/clusters/model.js';

const alice = { name: 'alice', groups: [], admin: false };

const ADAPTIVE_PERIOD = 2;
const WINDOW = 3 * ADAPTIVE_PERIOD; // seconds the demand must stay lower before a scale-down
const CLUSTER = engineCluster({ adaptive_period: ADAPTIVE_PERIOD });
const HPC = { name: 'hpc', description: 'Slurm nodes', backend: { type: 'slurm' }, worker_cores: 4, resources: { hpc: 1 } };
const BIG = { name: 'big', description: 'more memory', worker_memory: 4 };

// The scheduler's answer to the gateway's calls (an error: the call fails).
let answer: number | Error;
const engine = groupEngine({
  prefix: 'af-unit-adaptive-',
  config: { cluster: CLUSTER, worker_groups: [HPC, BIG] },
  backends: ['hpc'],
  answer: () => {
    if (answer instanceof Error) throw answer;
    return answer;
  },
});

/** A scheduler that knows the groups: every live worker not being retired is connected; `demand` is its af_group_demand. */
function heartbeat(c: ClusterRecord, m: ClusterManager, demand: unknown = {}, over: Partial<Heartbeat> = {}): Heartbeat {
  const live = (m.activeWorkers(c.name) ?? []).filter((w) => (w.status === 'STARTING' || w.status === 'RUNNING') && !w.closeExpected);
  return { ...schedulerHeartbeat(c, names(live), over), af_group_demand: demand } as Heartbeat;
}

/** Reports `demand` and lets what follows settle. */
async function report(m: ClusterManager, c: ClusterRecord, demand: unknown): Promise<void> {
  await m.heartbeat(c.name, heartbeat(c, m, demand));
  await advance(0);
}

async function running(m: ClusterManager, count = 0): Promise<ClusterRecord> {
  const c = await m.create(alice, {});
  await advance(0);
  // (a new scheduler does not know the groups: its heartbeats have no af_group_demand until it is told)
  await m.heartbeat(c.name, schedulerHeartbeat(c, [], { count }));
  await advance(0);
  await m.heartbeat(c.name, heartbeat(c, m, {}, { count }));
  await advance(0);
  expect(c.status).toBe('RUNNING');
  return c;
}

/** Retirements the engine asked of the scheduler, by worker name. */
const retired = () => engine.told.filter((b) => b.op === 'retire').flatMap((b) => b.workers as string[]);

beforeEach(() => {
  answer = 200;
});

describe('adaptive worker groups', () => {
  it('follow the demand within the range: up at once, down after the window, by graceful retirement', async () => {
    const m = await engine.manager();
    const c = await running(m);
    const g = await m.adaptGroup(c.name, 'hpc', 1, 3, true);
    // The scheduler is told the groups' resources; the minimum applies at once.
    expect(engine.told.find((b) => b.op === 'groups')).toEqual({ op: 'groups', groups: { hpc: { hpc: 1 }, big: {} } });
    expect(g).toMatchObject({ name: 'hpc', target: 1, adaptive: { minimum: 1, maximum: 3 }, message: '' });
    await advance(0);
    expect(engine.hpc.alive('worker')).toHaveLength(1);

    await report(m, c, { hpc: 5 }); // more than the maximum
    expect(group(m, c, 'hpc').target).toBe(3);
    expect(engine.hpc.alive('worker')).toHaveLength(3);

    // Less demand: nothing moves within the window (a short rise in it counts), then down to the most wanted in it.
    await report(m, c, { hpc: 1 });
    await advance(WINDOW / 2);
    await report(m, c, { hpc: 2 });
    await report(m, c, { hpc: 0 });
    await advance(WINDOW / 2 - 1);
    expect(group(m, c, 'hpc').target).toBe(3);
    expect(retired()).toEqual([]);
    await advance(2);
    expect(group(m, c, 'hpc').target).toBe(2);
    expect(retired()).toHaveLength(1); // a connected worker: retired by the scheduler, not killed
    expect(engine.hpc.calls.stop).toEqual([]);
    // Another window later: the minimum, never below it.
    await advance(WINDOW + 1);
    expect(group(m, c, 'hpc').target).toBe(1);
    expect(retired()).toHaveLength(2);
    // Default is the scheduler's business: hpc's demand changed nothing of it.
    expect(group(m, c, 'default')).toMatchObject({ target: 0, adaptive: null });
    expect(engine.main.alive('worker')).toHaveLength(0);
  });

  it('cap the range and the demand by the limits, saying what is used', async () => {
    const m = await engine.manager({ policy: { user_limits: { max_cores: 10 } } });
    const c = await running(m, 2); // default: 2 workers of 1 core; 8 cores left: two hpc workers of 4
    const g = await m.adaptGroup(c.name, 'hpc', 0, 10, true);
    expect(g.adaptive).toEqual({ minimum: 0, maximum: 2 });
    expect(g.message).toMatch(
      /^Adaptive range minimum=0, maximum=10 of worker group hpc exceeds .*max_cores = 10 cores.*; using minimum=0, maximum=2 instead\.$/,
    );
    await report(m, c, { hpc: 4 });
    expect(group(m, c, 'hpc').target).toBe(2);
    expect(engine.hpc.alive('worker')).toHaveLength(2);

    // No maximum: the limits alone bound it, and the group says what holds it back.
    await m.adaptGroup(c.name, 'hpc', null, null, true);
    await report(m, c, { hpc: 6 });
    expect(group(m, c, 'hpc')).toMatchObject({ target: 2, adaptive: { minimum: 0, maximum: null } });
    expect(group(m, c, 'hpc').message).toMatch(/^adaptive scaling wants 6 workers of hpc; 2 possible: .*max_cores = 10 cores/);
    expect(engine.hpc.alive('worker')).toHaveLength(2);
    // A smaller range applies at once (one worker retired gracefully), and nothing is held back any more.
    const smaller = await m.adaptGroup(c.name, 'hpc', 0, 1, true);
    expect(smaller).toMatchObject({ target: 1, adaptive: { minimum: 0, maximum: 1 }, message: '' });
    await report(m, c, { hpc: 6 });
    expect(group(m, c, 'hpc')).toMatchObject({ target: 1, message: '' });
    expect(retired()).toHaveLength(1);
  });

  it('refuse an unknown group and minimum > maximum, and change nothing when the scheduler does not take the groups', async () => {
    const m = await engine.manager();
    const c = await running(m);
    await expect(m.adaptGroup(c.name, 'gpu', 0, 2, true)).rejects.toMatchObject({
      statusCode: 404,
      message: expect.stringMatching(/its groups are default, hpc, big/),
    });
    await expect(m.adaptGroup(c.name, 'hpc', 3, 2, true)).rejects.toMatchObject({ statusCode: 422, code: 'invalid_range' });
    answer = new Error('connect ECONNREFUSED');
    await expect(m.adaptGroup(c.name, 'hpc', 2, 4, true)).rejects.toMatchObject({ statusCode: 409 });
    answer = 500;
    await expect(m.adaptGroup(c.name, 'hpc', 2, 4, true)).rejects.toMatchObject({ statusCode: 409 });
    expect(group(m, c, 'hpc')).toMatchObject({ target: 0, adaptive: null });
    expect(c.groupAdaptive ?? {}).toEqual({});
    expect(await engine.store.loadCluster(c.name)).toMatchObject({ groupTargets: {} });
    await advance(0);
    expect(engine.hpc.alive('worker')).toHaveLength(0);
  });

  it('turn off when the group is scaled by hand, or with active false; the workers stay', async () => {
    const m = await engine.manager();
    const c = await running(m);
    await m.adaptGroup(c.name, 'hpc', 0, 4, true);
    await report(m, c, { hpc: 2 });
    expect(group(m, c, 'hpc').target).toBe(2);
    const scaled = await m.scaleGroup(c.name, 'hpc', 3);
    expect(scaled).toMatchObject({ target: 3, adaptive: null });
    await report(m, c, { hpc: 0 });
    await advance(WINDOW + 2);
    expect(group(m, c, 'hpc').target).toBe(3);

    await m.adaptGroup(c.name, 'big', 1, 2, true);
    expect(group(m, c, 'big')).toMatchObject({ target: 1, adaptive: { minimum: 1, maximum: 2 } });
    const off = await m.adaptGroup(c.name, 'big', null, null, false);
    expect(off).toMatchObject({ target: 1, adaptive: null });
    await report(m, c, { big: 2 });
    expect(group(m, c, 'big').target).toBe(1);
  });

  it('turn off when the group keeps failing to start, instead of starting failing workers again at every heartbeat', async () => {
    const m = await engine.manager();
    const c = await running(m);
    engine.hpc.failStarts = () => 'sbatch: Invalid account';
    await m.adaptGroup(c.name, 'hpc', 0, 4, true);
    await report(m, c, { hpc: 3 });
    await advance(CLUSTER.check_period * 3);
    expect(group(m, c, 'hpc')).toMatchObject({ target: 0, adaptive: null, starting: 0 });
    expect(group(m, c, 'hpc').message).toMatch(/3 workers in a row failed to start; .*Invalid account; the group was scaled to 0 \(adaptive scaling off\)$/);
    const starts = engine.hpc.calls.startWorkers.length;
    await report(m, c, { hpc: 3 });
    await advance(WINDOW);
    expect(group(m, c, 'hpc').target).toBe(0);
    expect(engine.hpc.calls.startWorkers).toHaveLength(starts);
    expect(c.status).toBe('RUNNING');
  });

  it("map default to the dask-gateway adapt: the scheduler's own loop sizes it", async () => {
    const m = await engine.manager({ cluster: { ...CLUSTER, max_workers: 5 } });
    const c = await running(m);
    const g = await m.adaptGroup(c.name, 'default', 1, 8, true);
    expect(engine.told.filter((b) => b.op === 'adapt')).toEqual([{ op: 'adapt', minimum: 1, maximum: 5, active: true }]);
    expect(g).toMatchObject({ name: 'default', adaptive: { minimum: 1, maximum: 5 } });
    expect(g.message).toMatch(/exceeds this gateway's limit of 5 workers per cluster .*using minimum=1, maximum=5 instead/);
    // A demand for default in af_group_demand is not read: default's count is the heartbeat's count.
    await report(m, c, { default: 4 });
    expect(group(m, c, 'default').target).toBe(0);
    await m.scaleGroup(c.name, 'default', 2);
    expect(group(m, c, 'default').adaptive).toBeNull();
  });

  it('keep the range over a restart, and tell a scheduler that does not know the groups (new, or started again) about them', async () => {
    const m1 = await engine.manager();
    const c = await running(m1);
    expect(engine.told.filter((b) => b.op === 'groups')).toEqual([{ op: 'groups', groups: { hpc: { hpc: 1 }, big: {} } }]);
    await m1.adaptGroup(c.name, 'hpc', 1, 4, true);
    await report(m1, c, { hpc: 3 });
    expect(group(m1, c, 'hpc').target).toBe(3);
    // The gateway dies (no stop) and another one starts on the same state.
    engine.crash(m1);
    const m2 = await engine.manager();
    const c2 = (await m2.get(c.name))!;
    expect(group(m2, c2, 'hpc')).toMatchObject({ target: 3, adaptive: { minimum: 1, maximum: 4 } });
    // Its scheduler was started again and lost the groups: its heartbeat has no af_group_demand.
    engine.told = [];
    await m2.heartbeat(c.name, schedulerHeartbeat(c2, names(m2.activeWorkers(c.name)!)));
    await advance(0);
    expect(engine.told.filter((b) => b.op === 'groups')).toHaveLength(1);
    await report(m2, c2, { hpc: 4 });
    expect(group(m2, c2, 'hpc').target).toBe(4);
    await report(m2, c2, { hpc: 0 });
    await advance(WINDOW + 1);
    expect(group(m2, c2, 'hpc').target).toBe(1);
  });

  it('take from a forged demand only known groups and whole numbers in bounds, and move nothing past the range and the limits', async () => {
    const m = await engine.manager({ cluster: { ...CLUSTER, max_workers: 6 } });
    const c = await running(m);
    await m.adaptGroup(c.name, 'hpc', 0, 2, true);
    const forged: unknown[] = [
      { gpu: 5, default: 9, __proto__: 3, constructor: 4 },
      { hpc: -5 },
      { hpc: 1e9 },
      { hpc: '3' },
      { hpc: 1.5 },
      { hpc: null },
      { hpc: [3] },
      { hpc: { n: 3 } },
      'hpc=3',
      [3],
      null,
      Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`g${i}`, 1])),
    ];
    for (const d of forged) await report(m, c, d);
    await advance(WINDOW + 1);
    expect(group(m, c, 'hpc').target).toBe(0);
    expect(engine.hpc.alive('worker')).toHaveLength(0);
    expect(c.groupTargets.hpc ?? 0).toBe(0);
    expect(workersOf(m, c, 'big')).toEqual([]);
    // A group that is not adaptive: its demand moves nothing.
    await report(m, c, { big: 3 });
    expect(group(m, c, 'big').target).toBe(0);
    // The most a scheduler can get: the maximum the user set.
    await report(m, c, { hpc: 100_000 });
    expect(group(m, c, 'hpc').target).toBe(2);
    expect(engine.hpc.alive('worker')).toHaveLength(2);
    // A scheduler asking the most it may for every group gets no more than the cluster's limit in all.
    await m.adaptGroup(c.name, 'big', null, null, true);
    await report(m, c, { hpc: 100_000, big: 100_000 });
    expect(group(m, c, 'big').target).toBe(4);
    expect((m.activeWorkers(c.name) ?? []).length).toBeLessThanOrEqual(6);
  });
});

describe('the demand rules', () => {
  it('read only known groups with whole numbers from 0 to the bound', () => {
    const groups = new Set(['hpc', 'big']);
    expect(readGroupDemand({ hpc: 2, big: 0 }, groups)).toEqual({
      demand: new Map([
        ['hpc', 2],
        ['big', 0],
      ]),
      problems: [],
    });
    const r = readGroupDemand(JSON.parse('{"hpc": 1e999, "big": -1, "__proto__": 2, "x": 1}'), groups);
    expect(r.demand.size).toBe(0);
    expect(r.problems).toHaveLength(4);
    expect(readGroupDemand('x'.repeat(1e6), groups).problems[0]!.length).toBeLessThan(100);
  });

  it('steer up at once and down to the most wanted once the window passed', () => {
    expect(steer(2, 5, 0, 6000, undefined)).toEqual({ target: 5 });
    expect(steer(5, 1, 0, 6000, undefined)).toEqual({ target: 5, low: { since: 0, most: 1 } });
    expect(steer(5, 3, 3000, 6000, { since: 0, most: 1 })).toEqual({ target: 5, low: { since: 0, most: 3 } });
    expect(steer(5, 0, 6000, 6000, { since: 0, most: 3 })).toEqual({ target: 3 });
    expect(steer(5, 5, 6000, 6000, { since: 0, most: 3 })).toEqual({ target: 5 });
  });
});
