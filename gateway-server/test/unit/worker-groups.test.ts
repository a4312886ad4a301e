// Worker groups in the lifecycle engine: a cluster's default group on the main backend and an "hpc"
// group on a backend of its own (two in-memory backends), with fake timers and an injected scheduler
// call. Checks what a user relies on: each group's workers start and stop on its own backend, limits
// count every group, scale-down of a group retires that group's workers through the scheduler, a
// restart adopts both groups, and one group's backend failing leaves the other group alone.
import { describe, expect, it } from 'vitest';
import type { Heartbeat } from '@af-gateway/schemas';
import { ConfigError } from '../../src/config.js';
import type { ClusterManager } from '../../src/clusters/cluster-manager.js';
import type { WorkerLaunch } from '../../src/backends/backend.js';
import { advance, group, names, schedulerHeartbeat, workersOf } from '../support/engine-clock.js';
import { engineCluster, groupEngine } from '../support/group-engine.js';
import type { ClusterRecord } from '../../src/clusters/model.js';

const alice = { name: 'alice', groups: [], admin: false };

const CLUSTER = engineCluster({ heartbeat_timeout: 60 });
const HPC = { name: 'hpc', description: 'Slurm nodes', backend: { type: 'slurm' }, worker_cores: 4, worker_memory: 8, resources: { hpc: 1 } };

const engine = groupEngine({ prefix: 'af-unit-groups-', config: { cluster: CLUSTER, worker_groups: [HPC] }, backends: ['hpc'], heartbeat });

function heartbeat(c: ClusterRecord, m: ClusterManager, over: Partial<Heartbeat> = {}): Heartbeat {
  const live = (m.activeWorkers(c.name) ?? []).filter((w) => w.status === 'STARTING' || w.status === 'RUNNING');
  return schedulerHeartbeat(c, names(live.filter((w) => !w.closeExpected)), over);
}

describe('worker groups', () => {
  it('start each group on its own backend, with its size and Dask resources, and list targets and counts', async () => {
    const m = await engine.manager();
    const c = await engine.running(m, alice, 2);
    const g = await m.scaleGroup(c.name, 'hpc', 3);
    expect(g).toMatchObject({ name: 'hpc', backend: 'memory', target: 3, worker_cores: 4, worker_memory: 8, resources: { hpc: 1 } });
    await advance(0);
    expect(
      engine.main
        .alive('worker')
        .map((p) => p.name)
        .sort(),
    ).toEqual(names(workersOf(m, c, 'default')).sort());
    expect(engine.main.alive('worker')).toHaveLength(2);
    expect(engine.hpc.alive('worker')).toHaveLength(3);
    for (const p of engine.hpc.alive('worker')) {
      const l = p.launch as WorkerLaunch;
      expect(l.worker.group).toBe('hpc');
      expect(l.worker.name).toMatch(/_hpc$/);
      expect(l.cluster.settings).toMatchObject({ worker_cores: 4, worker_memory: 8 });
      expect(JSON.parse(l.cluster.settings.environment.DASK_DISTRIBUTED__WORKER__RESOURCES!)).toEqual({ hpc: 1 });
    }
    for (const p of engine.main.alive('worker'))
      expect((p.launch as WorkerLaunch).cluster.settings.environment.DASK_DISTRIBUTED__WORKER__RESOURCES).toBeUndefined();
    // The scheduler's heartbeat (default's count) changes nothing of hpc's.
    await m.heartbeat(c.name, heartbeat(c, m, { count: 1 }));
    await advance(0);
    expect(engine.hpc.alive('worker')).toHaveLength(3);
    expect(m.groupsJson(c, m.activeWorkers(c.name)!).map((x) => [x.name, x.target, x.starting + x.running])).toEqual([
      ['default', 1, 2], // the scheduler retires one of default's connected workers itself
      ['hpc', 3, 3],
    ]);
    expect(engine.told.filter((b) => b.op === 'retire')).toEqual([]);
  });

  it('refuse unknown groups and counts past a limit, naming the limit, and change nothing then', async () => {
    const m = await engine.manager({ policy: { user_limits: { max_cores: 10 } } });
    const c = await engine.running(m, alice, 2); // 2 cores of default
    await expect(m.scaleGroup(c.name, 'gpu', 1)).rejects.toMatchObject({ statusCode: 404, message: expect.stringMatching(/its groups are default, hpc/) });
    // 8 cores left: two hpc workers of 4 cores; three would need 12.
    await expect(m.scaleGroup(c.name, 'hpc', 3)).rejects.toMatchObject({
      statusCode: 422,
      code: 'limit_workers',
      message: expect.stringMatching(
        /max_cores = 10 cores, of which 2 cores are used by other clusters and this cluster's other worker groups; at most 2 are possible now/,
      ),
    });
    expect(c.groupTargets).toEqual({});
    await advance(0);
    expect(engine.hpc.alive('worker')).toHaveLength(0);
    await m.scaleGroup(c.name, 'hpc', 2);
    await advance(0);
    expect(engine.hpc.alive('worker')).toHaveLength(2);
    // Now default is capped by hpc's 8 cores: the scheduler asking for 5 gets 2.
    await m.heartbeat(c.name, heartbeat(c, m, { count: 5 }));
    expect(c.count).toBe(2);
    // A second cluster of alice's has no room left at all.
    const d = await engine.running(m, alice, 0);
    await expect(m.scaleGroup(d.name, 'hpc', 1)).rejects.toMatchObject({ statusCode: 422 });
  });

  it('retire a group through the scheduler when it scales down: starting workers are cancelled, connected ones named to the scheduler', async () => {
    const m = await engine.manager();
    const c = await engine.running(m, alice, 0);
    await m.scaleGroup(c.name, 'hpc', 3);
    await advance(0);
    const [a, b] = workersOf(m, c, 'hpc');
    await m.heartbeat(c.name, heartbeat(c, m, { active_workers: [a!.name, b!.name] })); // two connected, one still starting
    await advance(0);
    await m.scaleGroup(c.name, 'hpc', 1);
    await advance(0);
    // The starting one is cancelled by its backend; one connected one is retired by the scheduler.
    expect(engine.hpc.alive('worker')).toHaveLength(2);
    const retire = engine.told.filter((x) => x.op === 'retire');
    expect(retire).toHaveLength(1);
    const retired = (retire[0]!.workers as string[])[0]!;
    expect([a!.name, b!.name]).toContain(retired);
    expect(engine.main.calls.stop).toEqual([]);
    // The scheduler closes it: it is recorded as STOPPED (not a failure) and its job is stopped.
    await m.heartbeat(c.name, heartbeat(c, m, { active_workers: [a!.name, b!.name].filter((n) => n !== retired), closed_workers: [retired] }));
    await advance(0);
    expect(engine.hpc.alive('worker')).toHaveLength(1);
    expect(group(m, c, 'hpc')).toMatchObject({ target: 1, running: 1, starting: 0 });
    expect((await engine.store.loadWorkers(c.name)).find((w) => w.name === retired)).toMatchObject({ status: 'STOPPED', group: 'hpc' });
  });

  it("report a group's waiting workers and why, and keep its wait out of the start timeout", async () => {
    const m = await engine.manager();
    const c = await engine.running(m, alice, 0);
    engine.hpc.initialState = () => ({ alive: true, waiting: 'Slurm: Resources' });
    await m.scaleGroup(c.name, 'hpc', 2);
    await advance(CLUSTER.worker_start_timeout + 5);
    expect(group(m, c, 'hpc')).toMatchObject({ starting: 2, pending: 2, pending_reasons: ['Slurm: Resources'] });
    expect(c.status).toBe('RUNNING');
  });

  it("leave the default group running when the group's backend fails: its checks are skipped, its failed starts scale only it to 0", async () => {
    const m = await engine.manager();
    const c = await engine.running(m, alice, 1);
    await advance(0);
    engine.hpc.checkError = new Error('squeue: cannot reach slurmctld');
    await m.scaleGroup(c.name, 'hpc', 1);
    await advance(CLUSTER.check_period * 3);
    expect(c.status).toBe('RUNNING');
    expect(engine.main.alive('worker')).toHaveLength(1);
    engine.hpc.checkError = null;
    engine.hpc.failStarts = () => 'sbatch: Invalid account';
    for (const p of engine.hpc.alive('worker')) engine.hpc.exit(p, 1, 'sbatch refused');
    await advance(CLUSTER.check_period * 5);
    expect(c.status).toBe('RUNNING');
    expect(group(m, c, 'hpc')).toMatchObject({ target: 0, starting: 0 });
    expect(group(m, c, 'hpc').message).toMatch(
      /3 workers in a row failed to start; the last one could not be started: sbatch: Invalid account; the group was scaled to 0/,
    );
    expect(engine.main.alive('worker')).toHaveLength(1);
    expect(group(m, c, 'default')).toMatchObject({ target: 1, message: '' });
  });

  it('adopt both groups after a restart, each checked on its own backend, and remove only each backend’s orphans', async () => {
    const m1 = await engine.manager();
    const c = await engine.running(m1, alice, 2);
    await m1.scaleGroup(c.name, 'hpc', 2);
    await advance(0);
    await m1.heartbeat(c.name, heartbeat(c, m1));
    await advance(0);
    const before = new Map((m1.activeWorkers(c.name) ?? []).map((w) => [w.name, w.group]));
    expect([...before.values()].sort()).toEqual(['default', 'default', 'hpc', 'hpc']);
    // The gateway dies (no stop); one hpc job ended meanwhile, and Slurm has a job nobody tracks.
    engine.crash(m1);
    const [gone] = engine.hpc.alive('worker');
    engine.hpc.exit(gone!, 1, 'node failure');
    const orphan = engine.hpc.orphan('worker', c.name, 'stray');
    const m2 = await engine.manager();
    const adopted = m2.activeWorkers(c.name)!;
    expect(adopted.filter((w) => w.group === 'default')).toHaveLength(2);
    expect(adopted.filter((w) => w.group === 'hpc').map((w) => w.name)).toEqual(
      names(engine.hpc.alive('worker').filter((p) => p !== orphan && p.name !== 'stray')).filter((n) => before.has(n)),
    );
    expect(orphan.stopped).toBe(true);
    expect(engine.main.alive('worker')).toHaveLength(2); // the main backend did not take hpc's workers for orphans
    expect(engine.main.calls.removeOrphans).toBe(2);
    expect(engine.hpc.calls.removeOrphans).toBe(2);
    // The restarted gateway still knows hpc's target and replaces the lost worker on Slurm.
    const c2 = (await m2.get(c.name))!;
    await m2.heartbeat(c.name, heartbeat(c2, m2));
    await advance(0);
    expect(engine.hpc.alive('worker')).toHaveLength(2);
    expect(group(m2, c2, 'hpc')).toMatchObject({ target: 2 });
  });

  it('stop every group’s workers on their backends when the cluster stops', async () => {
    const m = await engine.manager();
    const c = await engine.running(m, alice, 2);
    await m.scaleGroup(c.name, 'hpc', 2);
    await advance(0);
    await m.stop(c.name);
    expect(engine.main.alive('worker')).toHaveLength(0);
    expect(engine.hpc.alive('worker')).toHaveLength(0);
    expect(c.status).toBe('STOPPED');
  });

  it('refuse a config whose groups share a name, or name one default', () => {
    expect(() => engine.config({ worker_groups: [HPC, HPC] })).toThrow(ConfigError);
    expect(() => engine.config({ worker_groups: [{ ...HPC, name: 'default' }] })).toThrow(/worker_groups/);
    expect(() => engine.config({ worker_groups: [{ ...HPC, resources: { 'bad label': 1 } }] })).toThrow(/worker_groups/);
  });
});
