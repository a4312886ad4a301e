// What the scale benchmark (bench/bench_scale.mjs) relies on: heartbeats that change nothing kept
// cost no state store write, the memory backend hands out what a scheduler would be given (its
// launch log), and a configuration picks that backend only with the benchmark's switch.
import { describe, expect, it, vi } from 'vitest';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, resolveConfig } from '../../src/config.js';
import { MemoryBackend } from '../../src/backends/memory/memory-backend.js';
import type { ClusterRecord } from '../../src/clusters/model.js';
import { managerState } from '../support/manager-state.js';
import { advance, countHeartbeat as beat } from '../support/engine-clock.js';

const alice = { name: 'alice', groups: [], admin: false };

const u = managerState({
  prefix: 'af-scale-hb-',
  config: { cluster: { check_period: 1 } },
  backend: (dir) => new MemoryBackend({ launchLog: join(dir, 'launches.jsonl') }),
});

describe('heartbeats and the state store', () => {
  it('writes the cluster for a heartbeat that changes what is kept (running, a new count), not for one that changes nothing', async () => {
    const m = await u.manager();
    const c: ClusterRecord = await m.create(alice, {});
    await advance(0);
    expect(c.scheduler).not.toBeNull();
    const saves = vi.spyOn(u.store, 'saveCluster');
    await m.heartbeat(c.name, beat(0));
    expect(c.status).toBe('RUNNING');
    expect(saves).toHaveBeenCalledTimes(1);
    for (let i = 0; i < 5; i++) {
      await advance(10);
      await m.heartbeat(c.name, beat(0));
    }
    expect(saves).toHaveBeenCalledTimes(1);
    expect(c.lastHeartbeat).toBe(Date.now()); // kept in memory all the same: the heartbeat timeout reads it
    await m.heartbeat(c.name, beat(2));
    expect(saves).toHaveBeenCalledTimes(2);
    expect((await u.store.loadCluster(c.name))!.count).toBe(2);
    await advance(0);
    expect(m.activeWorkers(c.name)).toHaveLength(2);
  });

  it('still fails a cluster whose heartbeats stop (the time of the last one lives in memory)', async () => {
    const m = await u.manager();
    const c = await m.create(alice, {});
    await advance(0);
    expect(c.scheduler).not.toBeNull();
    await m.heartbeat(c.name, beat(0));
    await advance(10);
    await m.heartbeat(c.name, beat(0));
    await advance(resolveConfig({}).cluster.heartbeat_timeout + 2);
    expect(c.status).toBe('FAILED');
    expect(c.message).toMatch(/no heartbeat/);
  });
});

describe("the memory backend's launch log", () => {
  it("appends each scheduler start (cluster, token, heartbeat URL) and each cluster's new workers, in a file only the gateway's account reads", async () => {
    const m = await u.manager();
    const c = await m.create(alice, {});
    await advance(0);
    await m.heartbeat(c.name, beat(3));
    await advance(0);
    await u.backend.launchLogWritten();
    const file = join(u.dir, 'launches.jsonl');
    const lines = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines[0]).toEqual({ scheduler: c.name, token: c.token, api_url: 'http://gateway.test/api' });
    const workers = lines.slice(1).flatMap((l) => (l.workers === c.name ? (l.names as string[]) : []));
    expect(workers.sort()).toEqual(
      m
        .activeWorkers(c.name)!
        .map((w) => w.name)
        .sort(),
    );
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('writes nothing without a launch log', async () => {
    const quiet = new MemoryBackend();
    const m = await u.manager({}, quiet);
    await m.create(alice, {});
    await advance(0);
    expect(quiet.alive('scheduler')).toHaveLength(1);
    expect(() => statSync(join(u.dir, 'launches.jsonl'))).toThrow();
  });
});

describe('choosing the memory backend', () => {
  it('refuses backend.type memory unless AF_GATEWAY_ALLOW_MEMORY_BACKEND=1, saying what to choose instead', () => {
    for (const env of [{}, { AF_GATEWAY_ALLOW_MEMORY_BACKEND: 'yes' }, { AF_GATEWAY_ALLOW_MEMORY_BACKEND: '' }]) {
      expect(() => resolveConfig({ backend: { type: 'memory' } }, u.dir, env)).toThrow(ConfigError);
      expect(() => resolveConfig({ backend: { type: 'memory' } }, u.dir, env)).toThrow(
        /backend\.type is memory, a backend that runs nothing.*choose local, htcondor, kubernetes or slurm.*AF_GATEWAY_ALLOW_MEMORY_BACKEND=1/,
      );
    }
    expect(resolveConfig({ backend: { type: 'memory' } }, u.dir, { AF_GATEWAY_ALLOW_MEMORY_BACKEND: '1' }).backend.type).toBe('memory');
  });

  it("refuses a worker group's memory backend the same way", () => {
    const raw = { worker_groups: [{ name: 'fake', backend: { type: 'memory' } }] };
    expect(() => resolveConfig(raw, u.dir, {})).toThrow(/worker_groups\[0\]\.backend\.type is memory/);
    expect(resolveConfig(raw, u.dir, { AF_GATEWAY_ALLOW_MEMORY_BACKEND: '1' }).worker_groups[0]!.backend!.type).toBe('memory');
  });
});
