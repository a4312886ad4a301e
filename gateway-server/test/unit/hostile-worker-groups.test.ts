// Worker groups against a hostile user: the user owns the scheduler process (client.run_on_scheduler
// can patch it), so its heartbeats and its answers to the gateway's retire requests are theirs to
// forge. Whatever it says, the gateway's limits must hold: workers it asked to retire are still
// running until the backend or the scheduler reports them gone, and they count.
import { beforeEach, describe, expect, it } from 'vitest';
import type { Heartbeat } from '@af-gateway/schemas';
import type { ClusterManager } from '../../src/clusters/cluster-manager.js';
import { advance, names, schedulerHeartbeat } from '../support/engine-clock.js';
import { engineCluster, groupEngine } from '../support/group-engine.js';
import type { ClusterRecord } from '../../src/clusters/model.js';

const mallory = { name: 'mallory', groups: [], admin: false };

const CLUSTER = engineCluster({ heartbeat_timeout: 60 });
const HPC = { name: 'hpc', description: 'Slurm nodes', backend: { type: 'slurm' }, worker_cores: 4, worker_memory: 8, resources: { hpc: 1 }, max_workers: 4 };

// The hostile scheduler says yes to every request and does nothing.
// (slow: it answers only when the test says so, as a scheduler busy elsewhere would)
let slow = false;
const pending: ((status: number) => void)[] = [];
const engine = groupEngine({
  prefix: 'af-unit-hostile-groups-',
  config: { cluster: CLUSTER, worker_groups: [HPC] },
  backends: ['hpc'],
  heartbeat,
  answer: () => (slow ? new Promise<number>((r) => pending.push(r)) : 200),
});

const live = (m: ClusterManager, c: ClusterRecord) => (m.activeWorkers(c.name) ?? []).filter((w) => w.status === 'STARTING' || w.status === 'RUNNING');

function heartbeat(c: ClusterRecord, m: ClusterManager, over: Partial<Heartbeat> = {}): Heartbeat {
  return schedulerHeartbeat(c, names(live(m, c)), over);
}

beforeEach(() => {
  slow = false;
  pending.length = 0;
});

describe('worker groups under a hostile scheduler', () => {
  it("hold a group's limit when the scheduler ignores the gateway's retire requests and the group is scaled down and up again", async () => {
    const m = await engine.manager();
    const c = await engine.running(m, mallory, 0);
    for (let round = 0; round < 3; round++) {
      await m.scaleGroup(c.name, 'hpc', 4);
      await advance(0);
      // Every worker connects; the scheduler lists them all as active, before and after the retire.
      await m.heartbeat(c.name, heartbeat(c, m));
      await advance(0);
      await m.scaleGroup(c.name, 'hpc', 0);
      await advance(0);
      await m.heartbeat(c.name, heartbeat(c, m));
      await advance(CLUSTER.check_period);
    }
    expect(engine.told.filter((b) => b.op === 'retire').length).toBeGreaterThan(0);
    // The retired workers never left: the group's own limit of 4 holds over them, and the group says why it waits.
    expect(engine.hpc.alive('worker').length).toBeLessThanOrEqual(4);
    await m.scaleGroup(c.name, 'hpc', 4);
    await advance(0);
    expect(engine.hpc.alive('worker')).toHaveLength(4);
    const g = m.groupsJson(c, m.activeWorkers(c.name)!).find((x) => x.name === 'hpc')!;
    expect(g).toMatchObject({ target: 4, running: 4 });
    expect(g.message).toMatch(
      /^4 workers of hpc wait for room: worker group hpc's limit of 4 workers per cluster .*\(counting 4 workers still being retired\)$/,
    );
    // Once the scheduler lets them go, the group starts its own and stops saying it waits.
    const retired = names(live(m, c).filter((w) => w.closeExpected));
    await m.heartbeat(c.name, heartbeat(c, m, { active_workers: [], closed_workers: retired }));
    await advance(0);
    expect(m.groupsJson(c, m.activeWorkers(c.name)!).find((x) => x.name === 'hpc')).toMatchObject({ target: 4, starting: 4, message: '' });
    expect(engine.hpc.alive('worker')).toHaveLength(4);
  });

  it('hold the user limit when the scheduler reports every worker as closing but never lets one go', async () => {
    const m = await engine.manager({ policy: { user_limits: { max_workers: 3 } } });
    const c = await engine.running(m, mallory, 3);
    for (let round = 0; round < 4; round++) {
      await advance(0);
      const ws = live(m, c);
      await m.heartbeat(c.name, heartbeat(c, m, { count: 3, active_workers: [], closing_workers: names(ws) }));
      await advance(CLUSTER.check_period);
    }
    expect(engine.main.alive('worker').length).toBeLessThanOrEqual(3);
  });
  it('hold the user limit when scales of two clusters and a group race while the schedulers are slow to answer', async () => {
    const m = await engine.manager({ policy: { user_limits: { max_workers: 4 } } });
    const a = await engine.running(m, mallory, 0);
    const b = await engine.running(m, mallory, 0);
    slow = true;
    // Each is within the limit alone (nothing runs yet); together they ask for 12.
    const asked = [m.scaleGroup(a.name, 'default', 4), m.scaleGroup(b.name, 'default', 4), m.scaleGroup(a.name, 'hpc', 4)];
    await advance(0);
    slow = false;
    for (const r of pending.splice(0)) r(200);
    await Promise.allSettled(asked);
    for (let round = 0; round < 3; round++) {
      for (const c of [a, b]) await m.heartbeat(c.name, heartbeat(c, m, { count: 4 }));
      await advance(CLUSTER.check_period);
    }
    expect(engine.main.alive('worker').length + engine.hpc.alive('worker').length).toBeLessThanOrEqual(4);
  });
  it('hold the user limit when the scheduler keeps the overflow workers the gateway hands back', async () => {
    const m = await engine.manager({ policy: { user_limits: { max_workers: 4 } }, default_worker_group: { overflow: { group: 'hpc', after: 60 } } });
    const c = await engine.running(m, mallory, 0);
    engine.main.initialState = () => ({ alive: true, waiting: 'HTCondor job 7.0 is waiting for a slot' });
    // (what this scheduler reports: every live worker whose job runs, retired or not)
    const connected = () => names(live(m, c).filter((w) => (engine.hpc.workerNamed(w.name) ?? engine.main.workerNamed(w.name))?.state.waiting === undefined));
    for (let t = 0; t < 64; t += 16) {
      await m.heartbeat(c.name, heartbeat(c, m, { count: 2, active_workers: connected() }));
      await advance(16);
    }
    expect(engine.hpc.alive('worker')).toHaveLength(2); // default's two queued, two more in hpc: the limit of 4
    await m.heartbeat(c.name, heartbeat(c, m, { count: 2, active_workers: connected() }));
    for (const w of live(m, c).filter((x) => x.group === 'default')) engine.main.run(engine.main.workerNamed(w.name)!);
    await advance(CLUSTER.check_period);
    expect(engine.told.filter((b) => b.op === 'retire').flatMap((b) => b.workers as string[])).toHaveLength(2);
    await m.heartbeat(c.name, heartbeat(c, m, { count: 2, active_workers: connected() }));
    // hpc's own target of 2 fits the limit on paper (default has 2), but the 2 handed back still run.
    await m.scaleGroup(c.name, 'hpc', 2);
    await advance(CLUSTER.check_period);
    await m.heartbeat(c.name, heartbeat(c, m, { count: 2, active_workers: connected() }));
    await advance(CLUSTER.check_period);
    expect(engine.main.alive('worker').length + engine.hpc.alive('worker').length).toBeLessThanOrEqual(4);
  });
});
