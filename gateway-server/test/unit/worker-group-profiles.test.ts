// Worker groups as profiles (issue 21, item 3): a "gpu" group whose workers get GPUs and an image, and
// which only members of cms-gpu may use. The lifecycle engine with two in-memory backends, fake timers
// and an injected scheduler call; the config's refusals as resolveConfig gives them. Checks what a
// user relies on: the launches carry the group's GPUs and image, its workers carry the Dask resource
// GPU, a user outside the group gets a 403 that says why (and sees the group unavailable), nothing of
// theirs overflows into it, and a gateway restarted with a stricter rule takes the group back.
import { describe, expect, it } from 'vitest';
import type { Heartbeat } from '@af-gateway/schemas';
import { resolveConfig, ConfigError } from '../../src/config.js';
import type { ClusterManager } from '../../src/clusters/cluster-manager.js';
import type { WorkerLaunch } from '../../src/backends/backend.js';
import { advance, group, names, schedulerHeartbeat, workersOf } from '../support/engine-clock.js';
import { engineCluster, groupEngine } from '../support/group-engine.js';
import type { ClusterRecord } from '../../src/clusters/model.js';

const alice = { name: 'alice', groups: ['cms', 'cms-gpu'], admin: false };
const bob = { name: 'bob', groups: ['cms'], admin: false };

const CLUSTER = engineCluster();
const IMAGE = 'docker://registry.cern.ch/af/dask-gpu:2026.3';
const GPU = {
  name: 'gpu',
  description: 'A100 nodes',
  backend: { type: 'htcondor' },
  gpus: 2,
  image: IMAGE,
  resources: { fast: 1 },
  access: { groups: ['cms-gpu'] },
};
const REFUSED = 'Worker group gpu is for members of cms-gpu; ask your facility';
const QUEUED = { alive: true, waiting: 'HTCondor job 7.0 is waiting for a slot' };

const engine = groupEngine({ prefix: 'af-unit-profiles-', config: { cluster: CLUSTER, worker_groups: [GPU] }, backends: ['gpu'], heartbeat });

/** Every live worker whose process is not queued is connected. */
function heartbeat(c: ClusterRecord, m: ClusterManager, over: Partial<Heartbeat> = {}): Heartbeat {
  const connected = (m.activeWorkers(c.name) ?? []).filter((w) => (w.status === 'STARTING' || w.status === 'RUNNING') && !w.closeExpected);
  return schedulerHeartbeat(
    c,
    names(connected.filter((w) => (engine.gpu.workerNamed(w.name) ?? engine.main.workerNamed(w.name))?.state.waiting === undefined)),
    over,
  );
}

describe('a GPU worker group', () => {
  it("starts its workers with the group's GPUs and image, and gives them the Dask resource GPU next to the group's own labels", async () => {
    const m = await engine.manager();
    const c = await engine.running(m, alice, 1);
    const g = await m.scaleGroup(c.name, 'gpu', 2);
    expect(g).toMatchObject({ name: 'gpu', gpus: 2, image: IMAGE, resources: { fast: 1, GPU: 2 }, available: true, unavailable_reason: '' });
    await advance(0);
    expect(engine.gpu.alive('worker')).toHaveLength(2);
    for (const p of engine.gpu.alive('worker')) {
      const l = p.launch as WorkerLaunch;
      expect([l.worker.group, l.gpus, l.image]).toEqual(['gpu', 2, IMAGE]);
      expect(JSON.parse(l.cluster.settings.environment.DASK_DISTRIBUTED__WORKER__RESOURCES!)).toEqual({ fast: 1, GPU: 2 });
    }
    // default's workers: no GPUs, no image, no resources
    expect(engine.main.alive('worker')).toHaveLength(1);
    const d = engine.main.alive('worker')[0]!.launch as WorkerLaunch;
    expect([d.gpus, d.image, d.cluster.settings.environment.DASK_DISTRIBUTED__WORKER__RESOURCES]).toEqual([undefined, undefined, undefined]);
    expect(group(m, c, 'default')).toMatchObject({ gpus: 0, image: null, available: true });
    // The scheduler learns the same resources (tasks with resources={"GPU": 1} count toward gpu's demand).
    expect(engine.told.filter((b) => b.op === 'groups').at(-1)).toEqual({ op: 'groups', groups: { gpu: { fast: 1, GPU: 2 } } });
  });

  it('keeps the GPU label the admin gave the group instead of adding one', async () => {
    const m = await engine.manager({ worker_groups: [{ ...GPU, resources: { GPU: 1, fast: 1 } }] });
    const c = await engine.running(m, alice);
    expect(group(m, c, 'gpu')).toMatchObject({ gpus: 2, resources: { GPU: 1, fast: 1 } });
    await m.scaleGroup(c.name, 'gpu', 1);
    await advance(0);
    const l = engine.gpu.alive('worker')[0]!.launch as WorkerLaunch;
    expect(JSON.parse(l.cluster.settings.environment.DASK_DISTRIBUTED__WORKER__RESOURCES!)).toEqual({ GPU: 1, fast: 1 });
    expect(l.gpus).toBe(2);
  });
});

describe('who may use a group', () => {
  it('lets a member of cms-gpu scale and adapt it; refuses anyone else with a 403 that says why, and starts nothing for them', async () => {
    const m = await engine.manager();
    const mine = await engine.running(m, alice);
    const bobs = await engine.running(m, bob);
    for (const attempt of [
      () => m.scaleGroup(bobs.name, 'gpu', 1),
      () => m.adaptGroup(bobs.name, 'gpu', 0, 2, true),
      () => m.adaptGroup(bobs.name, 'gpu', null, null, false),
    ]) {
      await expect(attempt()).rejects.toMatchObject({ statusCode: 403, code: 'forbidden', message: REFUSED });
    }
    expect(bobs.groupTargets).toEqual({});
    expect(bobs.groupAdaptive ?? {}).toEqual({});
    expect(group(m, bobs, 'gpu')).toMatchObject({ available: false, unavailable_reason: REFUSED, target: 0, starting: 0, running: 0 });
    // default stays everyone's
    expect(group(m, bobs, 'default')).toMatchObject({ available: true, unavailable_reason: '' });
    await m.scaleGroup(bobs.name, 'default', 1);

    expect(await m.scaleGroup(mine.name, 'gpu', 1)).toMatchObject({ target: 1, available: true });
    expect(await m.adaptGroup(mine.name, 'gpu', 1, 3, true)).toMatchObject({ adaptive: { minimum: 1, maximum: 3 } });
    await advance(0);
    expect(engine.gpu.alive('worker').map((p) => p.owner)).toEqual([mine.name]);
    expect(workersOf(m, bobs, 'gpu')).toEqual([]);
  });

  it("names the groups it is open to, never the users it is open to (they are other people's)", async () => {
    const m = await engine.manager({ worker_groups: [{ ...GPU, access: { users: ['carol', 'alice'], groups: [] } }] });
    const bobs = await engine.running(m, bob);
    const why = 'Worker group gpu is for users the facility named; ask your facility';
    await expect(m.scaleGroup(bobs.name, 'gpu', 1)).rejects.toMatchObject({ statusCode: 403, message: why });
    expect(JSON.stringify(m.groupsJson(bobs, []))).not.toMatch(/carol|alice/);
    // alice is named; her groups do not matter
    const mine = await engine.running(m, { ...alice, groups: [] });
    expect(await m.scaleGroup(mine.name, 'gpu', 1)).toMatchObject({ target: 1 });
    // no one at all
    const closed = await engine.manager({ worker_groups: [{ ...GPU, access: { users: [], groups: [] } }] });
    const c = await engine.running(closed, alice);
    await expect(closed.scaleGroup(c.name, 'gpu', 1)).rejects.toMatchObject({ message: 'Worker group gpu is closed to every user; ask your facility' });
  });

  it("does not overflow a non-member's queued workers into the group, and says why; a member's go there", async () => {
    const m = await engine.manager({ default_worker_group: { overflow: { group: 'gpu', after: 60 } } });
    const bobs = await engine.running(m, bob);
    const mine = await engine.running(m, alice);
    engine.main.initialState = () => QUEUED;
    await m.heartbeat(bobs.name, heartbeat(bobs, m, { count: 2 }));
    await m.heartbeat(mine.name, heartbeat(mine, m, { count: 1 }));
    await advance(CLUSTER.check_period);
    expect(group(m, bobs, 'default')).toMatchObject({ starting: 2, pending: 2 });
    await advance(65);
    // alice's one waiting worker runs in gpu; bob's two wait in their queue
    expect(engine.gpu.alive('worker').map((p) => p.owner)).toEqual([mine.name]);
    expect(bobs.overflow ?? {}).toEqual({});
    const said = `2 workers of default wait for memory slots; none overflow into gpu: worker group gpu is for members of cms-gpu; ask your facility`;
    expect(group(m, bobs, 'default')).toMatchObject({ pending: 2, message: said, overflow: { group: 'gpu', workers: 0 } });
    expect(bobs.message).toBe(said);
    expect(mine.overflow).toEqual({ default: 1 });
    // however long they wait (alice's overflow worker connects and stays)
    await m.heartbeat(mine.name, heartbeat(mine, m));
    await advance(120);
    expect(engine.gpu.alive('worker').map((p) => p.owner)).toEqual([mine.name]);
  });

  it('takes the group back from a cluster whose owner a restarted gateway no longer lets use it', async () => {
    const m1 = await engine.manager({ worker_groups: [{ ...GPU, access: null }] });
    const c = await engine.running(m1, bob);
    await m1.scaleGroup(c.name, 'gpu', 2);
    await advance(0);
    await m1.heartbeat(c.name, heartbeat(c, m1));
    expect(workersOf(m1, c, 'gpu').map((w) => w.status)).toEqual(['RUNNING', 'RUNNING']);
    // The gateway dies (no stop) and comes back with the group closed to bob.
    engine.crash(m1);
    const m2 = await engine.manager();
    const c2 = (await m2.get(c.name))!;
    expect(c2.groupTargets).toEqual({ gpu: 0 });
    expect(group(m2, c2, 'gpu')).toMatchObject({
      available: false,
      target: 0,
      message: 'Scaled to 0 after the gateway restarted: worker group gpu is for members of cms-gpu; ask your facility',
    });
    // its workers are retired through the scheduler at the next heartbeat
    engine.told = [];
    await m2.heartbeat(c.name, heartbeat(c2, m2));
    const retired = engine.told.filter((b) => b.op === 'retire').map((b) => (b.workers as string[]).sort());
    expect(retired).toEqual([names(workersOf(m2, c2, 'gpu')).sort()]);
    expect(workersOf(m2, c2, 'gpu').map((w) => w.closeExpected)).toEqual([true, true]);
  });
});

describe('the config', () => {
  const base = (group: Record<string, unknown>, top: Record<string, unknown> = { local: { single_user: true } }) =>
    resolveConfig({ data_dir: '/tmp/af-unused', backend: top, worker_groups: [{ name: 'gpu', ...group }] });

  it('refuses at start GPUs or an image where the group runs on the local backend, and an image on Slurm, naming the key', () => {
    expect(() => base({ gpus: 1 })).toThrow(ConfigError);
    expect(() => base({ gpus: 1 })).toThrow(/^invalid configuration: worker_groups\[0\] \(gpu\)\.gpus: the local backend cannot give workers GPUs/);
    expect(() => base({ image: 'registry/dask:1' })).toThrow(/worker_groups\[0\] \(gpu\)\.image: the local backend runs no container images/);
    expect(() => base({ image: 'registry/dask:1', backend: { type: 'slurm' } })).toThrow(
      /worker_groups\[0\] \(gpu\)\.image: the Slurm backend runs no container images \(Slurm's --container needs an OCI runtime/,
    );
    // (the top-level backend is the group's when it has none of its own)
    expect(() => base({ image: 'registry/dask:1' }, { type: 'slurm', local: { single_user: true } })).toThrow(
      /\.image: the Slurm backend runs no container images/,
    );
    // both at once: one message naming each
    expect(() => base({ gpus: 1, image: 'x' })).toThrow(/\.gpus: the local backend .*; worker_groups\[0\] \(gpu\)\.image: the local backend/);
  });

  it("refuses GPUs the group's backend would ask for a second time in its own extra settings", () => {
    expect(() => base({ gpus: 1, backend: { type: 'slurm', slurm: { sbatch_options: ['--gres=gpu:1'] } } })).toThrow(
      /worker_groups\[0\] \(gpu\)\.gpus: the group's backend\.slurm\.sbatch_options already asks for --gres=gpu:1/,
    );
    expect(() => base({ gpus: 1, backend: { type: 'slurm', slurm: { sbatch_options: ['--gpus-per-node=2'] } } })).toThrow(/already asks for --gpus-per-node=2/);
    expect(() => base({ gpus: 1, backend: { type: 'htcondor', htcondor: { submit_extra: { Request_GPUs: '1' } } } })).toThrow(
      /\.gpus: the group's backend\.htcondor\.submit_extra sets request_gpus too/,
    );
    expect(() => base({ image: 'a/b:1', backend: { type: 'htcondor', htcondor: { submit_extra: { container_image: 'c/d:1' } } } })).toThrow(
      /\.image: the group's backend\.htcondor\.submit_extra sets container_image too/,
    );
  });

  it('takes GPUs and images where the backend gives them, and refuses what is not a count or an image reference', () => {
    expect(base({ gpus: 4, image: 'docker://registry.cern.ch/af/gpu:1', backend: { type: 'htcondor' } }).worker_groups[0]).toMatchObject({ gpus: 4 });
    expect(base({ gpus: 1, image: 'registry/dask:1', backend: { type: 'kubernetes' } }).worker_groups[0]).toMatchObject({ image: 'registry/dask:1' });
    expect(base({ gpus: 1, backend: { type: 'slurm', slurm: { sbatch_options: ['--constraint=a100'], gpu_gres: 'gpu:a100' } } }).worker_groups[0]!.gpus).toBe(
      1,
    );
    expect(base({}).worker_groups[0]).toMatchObject({ gpus: 0, image: null, access: null });
    expect(() => base({ gpus: -1, backend: { type: 'htcondor' } })).toThrow(/gpus: must be >= 0/);
    expect(() => base({ gpus: 0.5, backend: { type: 'htcondor' } })).toThrow(/gpus: must be integer/);
    expect(() => base({ image: 'a b', backend: { type: 'kubernetes' } })).toThrow(/image: must match pattern/);
    expect(() => base({ image: '$(ENV)', backend: { type: 'htcondor' } })).toThrow(/image: must match pattern/);
    expect(() => base({ access: { user: ['x'] } })).toThrow(/access: unknown key "user"/);
    expect(() => resolveConfig({ backend: { slurm: { gpu_gres: 'gpu 1' } } })).toThrow(/gpu_gres: must match pattern/);
  });
});
