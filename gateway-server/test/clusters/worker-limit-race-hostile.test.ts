// Mallory against the limits after the scale work (0343ca5: a heartbeat's limits read only the
// clusters a configured limit covers; 09e13d3/f8f524a: stopping and cancelled workers hold their
// slot). Her schedulers are hers: she sends what heartbeats she likes, many at once, on several
// clusters, scaling up and down in a race. Never may her workers exceed policy.user_limits, nor
// her group's together with alice's exceed policy.group_limits; and once she is back under the
// limits, alice's cluster in the same group gets what is left.
import { describe, expect, it } from 'vitest';
import type { ClusterRecord } from '../../src/clusters/model.js';
import { managerState } from '../support/manager-state.js';
import { advance, countHeartbeat as beat } from '../support/engine-clock.js';

const mallory = { name: 'mallory', groups: ['physics'], admin: false };
const alice = { name: 'alice', groups: ['physics'], admin: false };

const u = managerState({
  prefix: 'af-limit-race-',
  config: { cluster: { check_period: 1, start_timeout: 30, worker_start_timeout: 20, launch_batch: 8, stop_on_shutdown: false } },
});

/** Worker processes alive per cluster (a stop under way included: the memory backend's stop is at once). */
function workersOf(clusters: ClusterRecord[]): number {
  const names = new Set(clusters.map((c) => c.name));
  return u.backend.alive('worker').filter((p) => names.has(p.owner)).length;
}

describe('racing heartbeats against the limits', () => {
  it('keep mallory within user_limits and her group within group_limits, and leave alice what is left', async () => {
    const m = await u.manager({ policy: { user_limits: { max_workers: 3 }, group_limits: { physics: { max_workers: 5 } } } });
    const a = await m.create(alice, {});
    const mine = [await m.create(mallory, {}), await m.create(mallory, {}), await m.create(mallory, {})];
    await advance(0);
    for (const c of [a, ...mine]) await m.heartbeat(c.name, beat(0));
    await advance(0);

    let mostMallory = 0;
    let mostGroup = 0;
    const sample = () => {
      mostMallory = Math.max(mostMallory, workersOf(mine));
      mostGroup = Math.max(mostGroup, workersOf([a, ...mine]));
    };
    // slow starts: a start in flight when the next race comes
    const start = u.backend.startWorkers.bind(u.backend);
    u.backend.startWorkers = async (launches) => {
      const r = await start(launches);
      sample();
      return r;
    };
    for (let round = 0; round < 6; round++) {
      // 30 heartbeats at once over her 3 clusters, asking for 50 workers each, or 0 (closing all), mixed
      await Promise.all(
        mine.flatMap((c) =>
          Array.from({ length: 10 }, (_, i) => {
            const live = u.backend
              .alive('worker')
              .filter((p) => p.owner === c.name)
              .map((p) => p.name);
            return (round + i) % 3 === 0 ? m.heartbeat(c.name, beat(0, [], live)) : m.heartbeat(c.name, beat(50, live));
          }),
        ),
      );
      sample();
      await advance(0);
      sample();
      await advance(1);
      sample();
    }
    expect(mostMallory).toBeLessThanOrEqual(3);
    expect(mostGroup).toBeLessThanOrEqual(5);

    // she settles at 50 each: still 3 at most; alice asks for 4 and gets the group's remaining 2
    for (let i = 0; i < 4; i++) {
      for (const c of mine) {
        const live = u.backend
          .alive('worker')
          .filter((p) => p.owner === c.name)
          .map((p) => p.name);
        await m.heartbeat(c.name, beat(50, live));
      }
      await m.heartbeat(
        a.name,
        beat(
          4,
          u.backend
            .alive('worker')
            .filter((p) => p.owner === a.name)
            .map((p) => p.name),
        ),
      );
      await advance(1);
      sample();
    }
    expect(workersOf(mine)).toBe(3);
    expect(workersOf([a])).toBe(2);
    expect(mostMallory).toBeLessThanOrEqual(3);
    expect(mostGroup).toBeLessThanOrEqual(5);
  });
});
