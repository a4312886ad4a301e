// The list contract's shared pieces: eachBounded (one result per item, in order, failures in place,
// at most `limit` at once), ItemBackend (single-item backends answer lists) and withDefaults (the one
// place optional hooks get their defaults, the backend's own methods still called on it).
import { describe, expect, it } from 'vitest';
import {
  eachBounded,
  ItemBackend,
  joinedChecks,
  withDefaults,
  type Backend,
  type ProcessState,
  type SchedulerAddresses,
  type WorkerLaunch,
} from '../../src/backends/backend.js';
import { MemoryBackend } from '../../src/backends/memory/memory-backend.js';
import type { BackendHandle, ClusterRecord } from '../../src/clusters/model.js';

describe('eachBounded', () => {
  it('answers in order, a failure as its Error in its place, never more than the limit at once', async () => {
    let running = 0;
    let most = 0;
    const out = await eachBounded([5, 1, 4, 2, 3, 0], 2, async (n) => {
      running++;
      most = Math.max(most, running);
      await new Promise((r) => setTimeout(r, n));
      running--;
      if (n === 4) throw new Error('four failed');
      return n * 10;
    });
    expect(most).toBe(2);
    expect(out.map((r) => (r instanceof Error ? r.message : r))).toEqual([50, 10, 'four failed', 20, 30, 0]);
    expect(await eachBounded([], 4, async () => 1)).toEqual([]);
  });
});

/** A single-item backend: pids in a set. */
class Processes extends ItemBackend {
  readonly kind = 'processes';
  readonly running = new Set<number>();
  private next = 0;
  async startScheduler(): Promise<BackendHandle> {
    return { pid: ++this.next };
  }
  async startWorker(l: WorkerLaunch): Promise<BackendHandle> {
    if (l.worker.name === 'bad') throw new Error('no such program');
    const pid = ++this.next;
    this.running.add(pid);
    return { pid };
  }
  async stopOne(h: BackendHandle): Promise<void> {
    if (h.pid === 99) throw new Error('permission denied');
    this.running.delete(h.pid as number);
  }
  async checkOne(h: BackendHandle): Promise<ProcessState> {
    return this.running.has(h.pid as number) ? { alive: true } : { alive: false, detail: 'exited' };
  }
  schedulerAddresses(_c: ClusterRecord, r: SchedulerAddresses): SchedulerAddresses {
    return r;
  }
  async close(): Promise<void> {}
}

const launch = (name: string) => ({ cluster: {} as ClusterRecord, worker: { name }, files: {} }) as WorkerLaunch;

describe('ItemBackend', () => {
  it('runs lists through the single-item methods: one result per launch, one state per handle', async () => {
    const b = new Processes();
    const started = await b.startWorkers([launch('a'), launch('bad'), launch('c')]);
    expect(started[0]).toEqual({ pid: 1 });
    expect(started[1]).toBeInstanceOf(Error);
    expect(started[2]).toEqual({ pid: 2 });
    await b.stop([{ pid: 1 }]);
    expect(await b.check([{ pid: 1 }, { pid: 2 }])).toEqual([{ alive: false, detail: 'exited' }, { alive: true }]);
  });

  it('stops every handle it can and then says which could not be stopped', async () => {
    const b = new Processes();
    await b.startWorkers([launch('a'), launch('b')]);
    await expect(b.stop([{ pid: 99 }, { pid: 1 }, { pid: 2 }])).rejects.toThrow(/1 of 3 could not be stopped: permission denied/);
    expect(b.running.size).toBe(0);
  });
});

describe('withDefaults', () => {
  it('fills the optional hooks of a backend that has none', async () => {
    const bare: Backend = {
      kind: 'bare',
      startScheduler: async () => ({ id: 1 }),
      startWorkers: async (ls) => ls.map(() => ({ id: 2 })),
      stop: async () => undefined,
      check: async (hs) => hs.map(() => ({ alive: true })),
      schedulerAddresses: (_c, r) => r,
      close: async () => undefined,
    };
    const b = withDefaults(bare);
    expect(b.runsSteps).toBe(false);
    const [step] = await b.startSteps([{ run: 'r', node: 'n' } as never]);
    expect(step).toBeInstanceOf(Error);
    expect((step as Error).message).toMatch(/the bare backend runs no workflow steps/);
    await expect(b.removeOrphans([])).resolves.toBeUndefined();
    await expect(b.release({ id: 1 })).resolves.toBeUndefined();
    await expect(b.clusterWorkDir({ workDir: '/data/clusters/c1' } as ClusterRecord)).resolves.toBe('/data/clusters/c1');
    expect(() => b.onChange(() => undefined)).not.toThrow();
    expect(b.describe({ id: 7 })).toBe('bare {"id":7}');
    expect(withDefaults(b)).toBe(b); // wrapped once
  });

  it("keeps a backend's own hooks and its state (methods run on the backend itself)", async () => {
    const memory = new MemoryBackend();
    const b = withDefaults(memory);
    expect(b.runsSteps).toBe(true);
    const [h] = await b.startSteps([{ run: 'r1', node: 'a', env: {} } as never]);
    expect(memory.stepOf('r1', 'a')?.handle).toBe(h);
    expect(b.describe(h as BackendHandle)).toMatch(/^memory process /);
    expect(memory.calls.startSteps).toEqual([1]);
    expect(withDefaults(new MemoryBackend({ steps: false })).runsSteps).toBe(false);
  });
});

describe('joinedChecks', () => {
  it("joins the calls of one turn into one check; a handle the backend chokes on (mallory's run) fails only its own caller", async () => {
    const memory = new MemoryBackend();
    const [alice1, alice2, mallory] = (await memory.startSteps([
      { run: 'alice-run', node: 'a', env: {} } as never,
      { run: 'alice-run', node: 'b', env: {} } as never,
      { run: 'mallory-run', node: 'x', env: {} } as never,
    ])) as BackendHandle[];
    memory.exit(memory.get(alice2)!, 3);
    const check = joinedChecks(memory);
    const both = await Promise.all([check([alice1!, alice2!]), check([mallory!])]);
    expect(memory.calls.check).toEqual([3]);
    expect(both.map((states) => states.map((s) => s.alive))).toEqual([[true, false], [true]]);

    memory.calls.check.length = 0;
    memory.checkFails = (p) => (p?.owner === 'mallory-run' ? new Error('condor_q printed something unreadable') : null);
    const [forAlice, forMallory] = await Promise.allSettled([check([alice1!, alice2!]), check([mallory!])]);
    expect(forAlice).toEqual({ status: 'fulfilled', value: [{ alive: true }, expect.objectContaining({ alive: false })] });
    expect(forMallory).toEqual({ status: 'rejected', reason: new Error('condor_q printed something unreadable') });
    expect(memory.calls.check).toEqual([3, 2, 1]); // the joined call, then each caller alone
  });
});
