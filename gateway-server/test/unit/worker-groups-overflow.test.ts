// Overflow between worker groups in the lifecycle engine (issue 21, part 4): the default group on one
// in-memory backend overflows into an "hpc" group on another after its workers waited 60 s for a
// slot. Fake timers, an injected scheduler call. Checks what a user relies on: nothing moves before
// the time, the missing workers start in hpc after it (default's jobs stay queued), they are handed
// back (cancelled, or retired through the scheduler) as default's workers start, limits count every
// worker of both groups, and a restarted gateway carries on where the first one was.
import { describe, expect, it } from 'vitest';
import type { Heartbeat } from '@af-gateway/schemas';
import { ConfigError } from '../../src/config.js';
import type { ClusterManager } from '../../src/clusters/cluster-manager.js';
import { advance, group, names, schedulerHeartbeat, workersOf } from '../support/engine-clock.js';
import { engineCluster, groupEngine } from '../support/group-engine.js';
import type { ClusterRecord } from '../../src/clusters/model.js';

const alice = { name: 'alice', groups: [], admin: false };

const CLUSTER = engineCluster();
const HPC = { name: 'hpc', description: 'Slurm nodes', backend: { type: 'slurm' }, resources: { hpc: 1 } };
const AFTER = 60;
const QUEUED = { alive: true, waiting: 'HTCondor job 7.0 is waiting for a slot' };

const engine = groupEngine({
  prefix: 'af-unit-overflow-',
  config: { cluster: CLUSTER, worker_groups: [HPC], default_worker_group: { overflow: { group: 'hpc', after: AFTER } } },
  backends: ['hpc'],
});

/** What the scheduler reports: every live worker whose job runs is connected (queued jobs have not started). */
function heartbeat(c: ClusterRecord, m: ClusterManager, over: Partial<Heartbeat> = {}): Heartbeat {
  const connected = (m.activeWorkers(c.name) ?? []).filter((w) => (w.status === 'STARTING' || w.status === 'RUNNING') && !w.closeExpected);
  return schedulerHeartbeat(
    c,
    names(connected.filter((w) => (engine.hpc.workerNamed(w.name) ?? engine.main.workerNamed(w.name))?.state.waiting === undefined)),
    over,
  );
}

/** A running cluster whose default group wants `count` workers, each queued on the main backend (its pool is full). */
async function queued(m: ClusterManager, count: number): Promise<ClusterRecord> {
  const c = await m.create(alice, {});
  await advance(0);
  await m.heartbeat(c.name, heartbeat(c, m, { count: 0 }));
  expect(c.status).toBe('RUNNING');
  engine.main.initialState = () => QUEUED;
  await m.heartbeat(c.name, heartbeat(c, m, { count }));
  await advance(CLUSTER.check_period);
  expect(group(m, c, 'default')).toMatchObject({ starting: count, pending: count });
  return c;
}

describe('overflow from a full pool into another group', () => {
  it('starts the missing workers in the overflow group once they waited `after` seconds, not before, and keeps the queued jobs', async () => {
    const m = await engine.manager();
    const c = await queued(m, 3);
    await advance(AFTER - 10);
    expect(engine.hpc.alive('worker')).toHaveLength(0);
    expect(group(m, c, 'default').overflow).toEqual({ group: 'hpc', after: AFTER, workers: 0 });
    await advance(15);
    expect(engine.hpc.alive('worker')).toHaveLength(3);
    expect(engine.main.alive('worker')).toHaveLength(3); // default's jobs stay queued
    expect(c.message).toMatch(/^3 workers of default waited 6\d s for memory slots: starting 3 in hpc \(memory\)$/);
    expect(group(m, c, 'default')).toMatchObject({ target: 3, pending: 3, overflow: { group: 'hpc', workers: 3 }, message: c.message });
    expect(group(m, c, 'hpc')).toMatchObject({ target: 3, starting: 3, overflow: null });
    expect(c.groupTargets).toEqual({}); // what the user scaled hpc to is unchanged
    // They connect; default's jobs still wait: nothing more starts, however long it lasts.
    await m.heartbeat(c.name, heartbeat(c, m));
    await advance(120);
    expect(engine.hpc.alive('worker')).toHaveLength(3);
    expect(engine.hpc.calls.startWorkers).toEqual([3]);
  });

  it('hands the overflow workers back as the pool has room again: connected ones retired through the scheduler', async () => {
    const m = await engine.manager();
    const c = await queued(m, 3);
    await advance(AFTER + 2);
    await m.heartbeat(c.name, heartbeat(c, m)); // the three hpc workers connect
    await advance(0);
    expect(group(m, c, 'hpc')).toMatchObject({ running: 3 });
    // Two of default's jobs start: their workers connect; hpc keeps one.
    for (const w of workersOf(m, c, 'default').slice(0, 2)) engine.main.run(engine.main.workerNamed(w.name)!);
    await advance(CLUSTER.check_period);
    expect(c.message).toBe('memory has room again: retiring 2 workers of hpc');
    expect(group(m, c, 'default').overflow).toEqual({ group: 'hpc', after: AFTER, workers: 1 });
    const retire = engine.told.filter((b) => b.op === 'retire');
    expect(retire).toHaveLength(1);
    const retired = retire[0]!.workers as string[];
    expect(retired).toHaveLength(2);
    expect(retired.every((n) => n.endsWith('_hpc'))).toBe(true);
    expect(engine.hpc.calls.stop).toEqual([]); // graceful: the scheduler closes them, nothing is killed
    await m.heartbeat(c.name, heartbeat(c, m, { closed_workers: retired }));
    await advance(0);
    expect(engine.hpc.alive('worker')).toHaveLength(1);
    expect(group(m, c, 'hpc')).toMatchObject({ target: 1, running: 1 });
    expect((await engine.store.loadWorkers(c.name)).filter((w) => retired.includes(w.name)).map((w) => w.status)).toEqual(['STOPPED', 'STOPPED']);
    // The last one starts: hpc is back to its own size (0); the default group never lost a worker.
    engine.main.run(engine.main.workerNamed(workersOf(m, c, 'default').find((w) => w.waitingSince != null)!.name)!);
    await advance(CLUSTER.check_period);
    expect(c.overflow).toEqual({});
    expect(group(m, c, 'hpc').target).toBe(0);
    expect(engine.main.alive('worker')).toHaveLength(3);
  });

  it('cancels overflow workers still starting when fewer are wanted, and says why', async () => {
    const m = await engine.manager();
    const c = await queued(m, 2);
    engine.hpc.initialState = () => ({ alive: true, waiting: 'Slurm job 4_0 is pending: Priority' });
    await advance(AFTER + 2);
    expect(engine.hpc.alive('worker')).toHaveLength(2);
    // The user scales default to 0: its queued jobs are cancelled, and so are hpc's starting ones.
    await m.heartbeat(c.name, heartbeat(c, m, { count: 0 }));
    await advance(CLUSTER.check_period);
    expect(engine.main.alive('worker')).toHaveLength(0);
    expect(engine.hpc.alive('worker')).toHaveLength(0);
    expect(c.message).toBe('default needs fewer workers: retiring 2 workers of hpc');
    expect(engine.told.filter((b) => b.op === 'retire')).toEqual([]);
  });

  it('counts every worker of both groups against the limits: the queued ones too', async () => {
    const m = await engine.manager({ policy: { user_limits: { max_workers: 4 } } });
    const c = await queued(m, 3);
    await advance(AFTER + 2);
    // 3 queued in default + 1 in hpc = 4
    expect(engine.hpc.alive('worker')).toHaveLength(1);
    expect(c.message).toMatch(/starting 1 in hpc \(memory\); 2 more would exceed policy.user_limits \(user alice\) max_workers = 4/);
    await advance(30);
    expect(engine.hpc.alive('worker')).toHaveLength(1);
    // and the user cannot scale hpc past it either
    await expect(m.scaleGroup(c.name, 'hpc', 1)).rejects.toMatchObject({
      statusCode: 422,
      message: expect.stringMatching(/\(1 of its workers run for other groups' overflow\); at most 0 are possible now/),
    });
  });

  it('keeps the overflow consistent across a restart: adopted, not started twice, handed back later', async () => {
    const m1 = await engine.manager();
    const c = await queued(m1, 2);
    await advance(AFTER + 2);
    expect(engine.hpc.alive('worker')).toHaveLength(2);
    await m1.heartbeat(c.name, heartbeat(c, m1));
    await advance(0);
    // The gateway dies (no stop).
    engine.crash(m1);
    const m2 = await engine.manager();
    const c2 = (await m2.get(c.name))!;
    expect(c2.overflow).toEqual({ default: 2 });
    await m2.heartbeat(c2.name, heartbeat(c2, m2));
    await advance(CLUSTER.check_period * 3);
    expect(engine.hpc.calls.startWorkers).toEqual([2]);
    expect(engine.hpc.alive('worker')).toHaveLength(2);
    expect(group(m2, c2, 'default')).toMatchObject({ pending: 2, overflow: { workers: 2 } });
    expect(workersOf(m2, c2, 'default').every((w) => w.waitingSince != null && Date.now() - w.waitingSince > AFTER * 1000)).toBe(true);
    // One of default's jobs starts: one hpc worker is retired by the restarted gateway.
    engine.main.run(engine.main.workerNamed(workersOf(m2, c2, 'default')[0]!.name)!);
    await advance(CLUSTER.check_period);
    expect(c2.overflow).toEqual({ default: 1 });
    expect(c2.message).toBe('memory has room again: retiring 1 worker of hpc');
    expect(engine.told.filter((b) => b.op === 'retire').flatMap((b) => b.workers as string[])).toHaveLength(1);
  });

  it('stops overflowing into a group whose starts keep failing, leaving the queued workers waiting', async () => {
    const m = await engine.manager();
    const c = await queued(m, 2);
    engine.hpc.failStarts = () => 'sbatch: Invalid account specified';
    await advance(AFTER + CLUSTER.check_period * 6);
    expect(c.status).toBe('RUNNING');
    expect(c.overflow).toEqual({});
    expect(group(m, c, 'hpc').message).toMatch(
      /failed to start; the last one could not be started: sbatch: Invalid account specified; the group was scaled to 0, and takes no overflow/,
    );
    const tries = engine.hpc.calls.startWorkers.reduce((a, n) => a + n, 0);
    expect(tries).toBeLessThanOrEqual(CLUSTER.worker_max_failures + 1);
    await advance(60);
    expect(engine.hpc.calls.startWorkers.reduce((a, n) => a + n, 0)).toBe(tries);
    expect(group(m, c, 'default')).toMatchObject({ pending: 2 });
    // Scaling hpc again (the admin fixed its account) lets the overflow go there again.
    engine.hpc.failStarts = null;
    await m.scaleGroup(c.name, 'hpc', 0);
    await advance(CLUSTER.check_period * 2);
    expect(engine.hpc.alive('worker')).toHaveLength(2);
  });

  it('refuses an overflow into an unknown group, into itself, or into a group that overflows in turn', () => {
    expect(() => engine.config({ default_worker_group: { overflow: { group: 'gpu', after: 1 } } })).toThrow(
      /overflow.group names gpu, which worker_groups does not define/,
    );
    const alone = { default_worker_group: {} };
    expect(() => engine.config({ ...alone, worker_groups: [{ ...HPC, overflow: { group: 'hpc', after: 1 } }] })).toThrow(/names the group itself/);
    expect(() =>
      engine.config({
        ...alone,
        worker_groups: [
          { ...HPC, overflow: { group: 'cloud', after: 1 } },
          { name: 'cloud', overflow: { group: 'hpc', after: 5 } },
        ],
      }),
    ).toThrow(/overflows in turn/);
    expect(() => engine.config({ worker_groups: [HPC, { name: 'cloud' }] })).not.toThrow(); // default into hpc
    expect(() => engine.config({ default_worker_group: { overflow: { group: 'hpc' } } })).toThrow(ConfigError);
    expect(() => engine.config({ default_worker_group: { overflow: { group: 'hpc', after: -1 } } })).toThrow(ConfigError);
  });
});
