// A worker being stopped still runs until its process is gone (SIGTERM, then a grace period of
// seconds before SIGKILL), so it counts against the limits: scaling 2 → 0 → 2 under a limit of 2
// must not start the replacements while the old workers are still stopping (issue 22 saw a third
// worker process for ~4 s). The in-memory backend's stop is held open here to stand for that grace.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Heartbeat } from '@af-gateway/schemas';
import type { MemoryBackend } from '../../src/backends/memory/memory-backend.js';
import type { BackendHandle, ClusterRecord } from '../../src/clusters/model.js';
import { managerState } from '../support/manager-state.js';
import { advance, schedulerHeartbeat } from '../support/engine-clock.js';

const alice = { name: 'alice', groups: [], admin: false };

const u = managerState({
  prefix: 'af-unit-grace-',
  config: { cluster: { check_period: 1, start_timeout: 30, worker_start_timeout: 20, launch_batch: 4, stop_on_shutdown: false, max_workers: 2 } },
});
/** Stops in their grace period: the processes still run until `release` is called. */
let stopNow: MemoryBackend['stop'];
let held: { handles: BackendHandle[]; release: () => void }[];

beforeEach(() => {
  held = [];
  const stop = u.backend.stop.bind(u.backend);
  stopNow = stop;
  u.backend.stop = (handles: BackendHandle[]) => new Promise<void>((resolve) => held.push({ handles, release: () => void stop(handles).then(resolve) }));
});

// vitest runs the after-hooks last registered first: the held stops end before managerState closes the managers
afterEach(() => {
  for (const h of held.splice(0)) h.release();
});

/** A heartbeat naming no connected workers (the engine's own shape: engine-clock's schedulerHeartbeat). */
const heartbeat = (c: ClusterRecord, over: Partial<Heartbeat> = {}): Heartbeat => schedulerHeartbeat(c, [], over);

/** Worker processes still running (a stop in its grace period included). */
const running = () => u.backend.alive('worker');

describe('a worker in its stop grace period', () => {
  it('counts against max_workers: scale 2 → 0 → 2 never runs a third worker process, and the replacements start once the old ones are gone', async () => {
    const m = await u.manager();
    const c = await m.create(alice, {});
    await advance(0);
    await m.heartbeat(c.name, heartbeat(c, { count: 2 }));
    await advance(0);
    const first = running().map((p) => p.name);
    expect(first).toHaveLength(2);
    await m.heartbeat(c.name, heartbeat(c, { count: 2, active_workers: first }));
    await advance(0);

    // scale to 0: the scheduler retires both; their stops are under way and held open (grace period)
    await m.heartbeat(c.name, heartbeat(c, { count: 0, closed_workers: first }));
    await advance(0);
    expect(held.flatMap((h) => h.handles)).toHaveLength(2);
    expect(running()).toHaveLength(2);

    // scale to 2 again while they are still stopping: nothing more may start
    for (let i = 0; i < 5; i++) {
      await m.heartbeat(c.name, heartbeat(c, { count: 2 }));
      await advance(1);
      expect(running().length).toBeLessThanOrEqual(2);
    }
    expect(running().map((p) => p.name)).toEqual(first);
    const waiting = m.groupsJson(c, m.activeWorkers(c.name) ?? []).find((g) => g.name === 'default');
    expect(JSON.stringify(waiting)).toMatch(/still being retired/);

    // the old processes are gone: the two replacements start, and still no more than two run
    for (const h of held.splice(0)) h.release();
    await advance(0);
    const second = running().map((p) => p.name);
    expect(second).toHaveLength(2);
    expect(second.filter((n) => first.includes(n))).toEqual([]);
  });

  it('counts a worker cancelled while its start is in flight until that start is undone: 2 → 0 → 2 during a slow start never runs more than 2', async () => {
    for (const h of held.splice(0)) h.release();
    const m = await u.manager();
    const c = await m.create(alice, {});
    await advance(0);
    await m.heartbeat(c.name, heartbeat(c, { count: 0 }));
    await advance(0);
    // stops are immediate here; starts hang until released, and the most processes alive after any start is kept
    u.backend.stop = stopNow;
    let release!: () => void;
    u.backend.startDelay = new Promise<void>((r) => (release = r));
    let most = 0;
    const start = u.backend.startWorkers.bind(u.backend);
    u.backend.startWorkers = async (launches) => {
      const r = await start(launches);
      most = Math.max(most, running().length);
      return r;
    };
    await m.heartbeat(c.name, heartbeat(c, { count: 2 }));
    await advance(0);
    await m.heartbeat(c.name, heartbeat(c, { count: 0 }));
    await advance(0);
    await m.heartbeat(c.name, heartbeat(c, { count: 2 }));
    await advance(0);
    release();
    u.backend.startDelay = null;
    await advance(1);
    await m.heartbeat(c.name, heartbeat(c, { count: 2 }));
    await advance(1);
    expect(most).toBeLessThanOrEqual(2);
    expect(running()).toHaveLength(2);
  });
});
