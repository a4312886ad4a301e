// What the cluster manager's tests on one in-memory backend run on: for each test a fresh unit state
// (fake clock, SQLite store, in-memory backend) and the managers the test started on it, closed after
// the test. Each test file says only its cluster settings and what it does to the backend.
import { afterEach, beforeEach } from 'vitest';
import pino from 'pino';
import type { FastifyBaseLogger } from 'fastify';
import { resolveConfig } from '../../src/config.js';
import { ClusterManager } from '../../src/clusters/cluster-manager.js';
import type { MemoryBackend } from '../../src/backends/memory/memory-backend.js';
import { closeUnitState, openUnitState, type UnitState } from './unit-state.js';

export const silentLog = pino({ level: 'silent' }) as unknown as FastifyBaseLogger;

export interface ManagerStateOptions {
  /** How each test's state directory is named. */
  prefix: string;
  /** The configuration next to data_dir and the (local, single-user) backend: cluster, policy, ... */
  config?: Record<string, unknown>;
  /** The test's backend, made in its directory (default: openUnitState's plain in-memory backend). */
  backend?: (dir: string) => MemoryBackend;
}

export interface ManagerState extends UnitState {
  /** The managers started on this test's state, closed after it. */
  managers: ClusterManager[];
  /** A started manager on this test's store; `over` goes on top of the file's configuration (shallow), `backend` instead of the test's. */
  manager(over?: Record<string, unknown>, backend?: MemoryBackend): Promise<ClusterManager>;
}

/** Registers the beforeEach and afterEach that give each test of the file its own state; read it through the returned object. */
export function managerState(opts: ManagerStateOptions): ManagerState {
  const state = {
    managers: [] as ClusterManager[],
    async manager(over: Record<string, unknown> = {}, backend?: MemoryBackend) {
      const config = resolveConfig({ data_dir: state.dir, backend: { local: { single_user: true } }, ...opts.config, ...over });
      const m = new ClusterManager({ store: state.store, backend: backend ?? state.backend, config, log: silentLog, schedulerCall: async () => 200 });
      state.managers.push(m);
      await m.start('http://gateway.test/api');
      return m;
    },
  } as ManagerState;

  beforeEach(() => {
    Object.assign(state, openUnitState(opts.prefix));
    if (opts.backend) state.backend = opts.backend(state.dir);
    state.managers = [];
  });

  afterEach(async () => {
    await closeUnitState(state, state.managers);
  });

  return state;
}
