// What the worker-group tests of the lifecycle engine run on: for each test a fresh unit state (fake
// clock, SQLite store, the main in-memory backend) and an in-memory backend of its own for each group
// that has one, a scheduler call that records what the gateway told it, and the managers the test
// started on that state, closed after it. Each test file keeps what its scheduler reports.
import { afterEach, beforeEach, expect } from 'vitest';
import pino from 'pino';
import type { FastifyBaseLogger } from 'fastify';
import type { Heartbeat } from '@af-gateway/schemas';
import type { User } from '../../src/auth/authenticator.js';
import { resolveConfig, type ResolvedConfig } from '../../src/config.js';
import { ClusterManager, type SchedulerCall } from '../../src/clusters/cluster-manager.js';
import type { ClusterRecord } from '../../src/clusters/model.js';
import { MemoryBackend } from '../../src/backends/memory/memory-backend.js';
import type { SqliteStore } from '../../src/store/sqlite-store.js';
import { closeUnitState, openUnitState } from './unit-state.js';
import { advance } from './engine-clock.js';

const log = pino({ level: 'silent' }) as unknown as FastifyBaseLogger;

/** The cluster settings of these tests: checks every second, a worker that does not connect in 20 s failed; `over` changes some. */
export function engineCluster(over: Record<string, unknown> = {}) {
  return {
    check_period: 1,
    start_timeout: 30,
    worker_start_timeout: 20,
    worker_max_failures: 3,
    heartbeat_timeout: 600,
    launch_batch: 8,
    stop_on_shutdown: false,
    ...over,
  };
}

export interface GroupEngineOptions<G extends string> {
  /** How each test's state directory is named. */
  prefix: string;
  /** The configuration next to data_dir and the main (local) backend: cluster, worker_groups, ... */
  config: Record<string, unknown>;
  /** The groups whose workers run on an in-memory backend of their own (the others on the main one). */
  backends: readonly G[];
  /** What the scheduler reports when `running` brings a cluster up (with `{ count }`). */
  heartbeat?: (c: ClusterRecord, m: ClusterManager, over: Partial<Heartbeat>) => Heartbeat;
  /** The scheduler's answer to a call once it is recorded (default 200; throwing: the call fails). */
  answer?: (body: Record<string, unknown>) => number | Promise<number>;
}

export interface GroupEngineState {
  dir: string;
  store: SqliteStore;
  /** The main backend (the default group's). */
  main: MemoryBackend;
  /** The bodies of the scheduler calls, in order. */
  told: Record<string, unknown>[];
  /** The gateway's configuration with `over` on top. */
  config(over?: Record<string, unknown>): ResolvedConfig;
  /** A started manager on this test's state (closed after the test). */
  manager(over?: Record<string, unknown>): Promise<ClusterManager>;
  /** A cluster of `user` brought to RUNNING by one heartbeat asking for `count` default workers. */
  running(m: ClusterManager, user: User, count?: number): Promise<ClusterRecord>;
  /** The gateway of `m` dies without stopping: its checks end, and it is not closed after the test. */
  crash(m: ClusterManager): void;
}

/** The state of the running test; each group of `backends` is a property holding its backend. */
export type GroupEngine<G extends string> = GroupEngineState & { [K in G]: MemoryBackend };

const RESERVED: string[] = ['dir', 'store', 'main', 'told', 'config', 'manager', 'running', 'crash'];

/** Registers the beforeEach and afterEach that give each test of the file its own engine state. */
export function groupEngine<G extends string>(opts: GroupEngineOptions<G>): GroupEngine<G> {
  const managers: ClusterManager[] = [];
  const schedulerCall: SchedulerCall = async (_api, _token, body) => {
    engine.told.push(body);
    return opts.answer ? opts.answer(body) : 200;
  };
  const engine = {
    told: [] as Record<string, unknown>[],
    config(over: Record<string, unknown> = {}) {
      return resolveConfig({ data_dir: engine.dir, backend: { local: { single_user: true } }, ...opts.config, ...over });
    },
    async manager(over: Record<string, unknown> = {}) {
      const groupBackends = new Map(opts.backends.map((g) => [g, engine[g]]));
      const m = new ClusterManager({ store: engine.store, backend: engine.main, config: engine.config(over), log, schedulerCall, groupBackends });
      managers.push(m);
      await m.start('http://gateway.test/api');
      return m;
    },
    async running(m: ClusterManager, user: User, count = 0) {
      if (!opts.heartbeat) throw new Error('groupEngine: running() needs the heartbeat option');
      const c = await m.create(user, {});
      await advance(0);
      await m.heartbeat(c.name, opts.heartbeat(c, m, { count }));
      await advance(0);
      expect(c.status).toBe('RUNNING');
      return c;
    },
    crash(m: ClusterManager) {
      clearInterval((m as unknown as { checkTimer: NodeJS.Timeout }).checkTimer);
      managers.splice(managers.indexOf(m), 1);
    },
  } as GroupEngine<G>;
  for (const g of opts.backends) if (RESERVED.includes(g)) throw new Error(`groupEngine: a group named ${g} would hide the engine's own ${g}`);

  beforeEach(() => {
    const state = openUnitState(opts.prefix);
    engine.dir = state.dir;
    engine.store = state.store;
    engine.main = state.backend;
    for (const g of opts.backends) (engine as Record<G, MemoryBackend>)[g] = new MemoryBackend();
    managers.length = 0;
    engine.told = [];
  });

  afterEach(async () => {
    await closeUnitState(engine, managers);
  });

  return engine;
}
