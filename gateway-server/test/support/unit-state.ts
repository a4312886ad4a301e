// What the unit tests of the cluster manager and the workflow engine run on: fake timers (the clock
// and its timers; setImmediate stays real), a SQLite state store in a fresh directory, and an
// in-memory backend.
import { vi } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { MemoryBackend } from '../../src/backends/memory/memory-backend.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { SecretBox } from '../../src/store/crypto.js';

export interface UnitState {
  dir: string;
  store: SqliteStore;
  backend: MemoryBackend;
}

/** Fakes the clock (from 2026-01-01T00:00:00Z) and opens a store in a new directory named after `prefix`. */
export function openUnitState(prefix: string): UnitState {
  vi.useFakeTimers({ now: new Date('2026-01-01T00:00:00Z'), toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const store = new SqliteStore(join(dir, 'state.sqlite'), SecretBox.fromBase64(randomBytes(32).toString('base64')));
  return { dir, store, backend: new MemoryBackend() };
}

/** Closes what the test started on the state (managers, engines), then the clock, the store and the directory. */
export async function closeUnitState(state: Pick<UnitState, 'dir' | 'store'>, started: { close(): Promise<unknown> }[]): Promise<void> {
  for (const s of started) await s.close();
  vi.useRealTimers();
  await state.store.close();
  rmSync(state.dir, { recursive: true, force: true });
}
