// What a cluster's heartbeats can write into the gateway's log. The heartbeat route takes the
// cluster's own API token, which is in its owner's directory: any owner can post heartbeats of their
// making, as many and as large as the request limits allow. Accepted heartbeats log nothing; what the
// gateway says about odd ones must not grow with the heartbeat's size or their number: a refused
// address is logged in a bounded form, and each new address a scheduler reports only once.
import { afterEach, beforeEach, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import pino from 'pino';
import type { FastifyBaseLogger } from 'fastify';
import { resolveConfig } from '../../src/config.js';
import { ClusterManager } from '../../src/clusters/cluster-manager.js';
import type { MemoryBackend } from '../../src/backends/memory/memory-backend.js';
import type { SqliteStore } from '../../src/store/sqlite-store.js';
import { AppError } from '../../src/errors.js';
import { closeUnitState, openUnitState } from '../support/unit-state.js';
import { advance, schedulerHeartbeat } from '../support/engine-clock.js';

const mallory = { name: 'mallory', groups: [], admin: false };

let dir: string;
let store: SqliteStore;
let backend: MemoryBackend;
let managers: ClusterManager[];
let lines: string[];

beforeEach(() => {
  ({ dir, store, backend } = openUnitState('af-unit-hb-log-'));
  managers = [];
  lines = [];
});

afterEach(async () => {
  await closeUnitState({ dir, store }, managers);
});

async function runningCluster() {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  const log = pino({ level: 'info' }, sink) as unknown as FastifyBaseLogger;
  const config = resolveConfig({ data_dir: dir, backend: { local: { single_user: true } }, cluster: { heartbeat_timeout: 600 } });
  const m = new ClusterManager({ store, backend, config, log, schedulerCall: async () => 200 });
  managers.push(m);
  await m.start('http://gateway.test/api');
  const c = await m.create(mallory, {});
  await advance(0);
  await m.heartbeat(c.name, schedulerHeartbeat(c, []));
  await advance(0);
  expect(c.status).toBe('RUNNING');
  return { m, c };
}

const bytes = () => lines.reduce((n, l) => n + Buffer.byteLength(l) + 1, 0);

it('logs a refused address in a bounded form, however long the heartbeat made it', async () => {
  const { m, c } = await runningCluster();
  const before = bytes();
  const long = `tls://${'a'.repeat(900_000)}.example:8786`;
  for (let i = 0; i < 20; i++) {
    const err = await m.heartbeat(c.name, schedulerHeartbeat(c, [], { scheduler_address: long })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).statusCode).toBe(422);
  }
  const written = lines.slice(-20).filter((l) => l.includes('refused a heartbeat'));
  expect(written.length).toBeGreaterThan(0); // the refusal is logged
  expect(bytes() - before).toBeLessThan(20 * 2_000); // not 20 x 900 kB
  expect(c.schedulerAddress).toBe('tls://127.0.0.1:8786');
});

it('logs each new address a scheduler reports once, not at every heartbeat that flips between two', async () => {
  const { m, c } = await runningCluster();
  const before = lines.length;
  for (let i = 0; i < 200; i++) {
    const port = 9000 + (i % 2);
    await m.heartbeat(c.name, schedulerHeartbeat(c, [], { api_address: `http://127.0.0.1:${port}` }));
    // the gateway still follows the scheduler to the address it reports now
    expect(c.apiAddress).toBe(`http://127.0.0.1:${port}`);
  }
  await advance(0);
  const moved = lines.slice(before).filter((l) => l.includes('the scheduler reports new addresses'));
  expect(moved.length).toBeGreaterThan(0);
  expect(moved.length).toBeLessThanOrEqual(2);
});
