// Driving the lifecycle engine under vitest's fake timers, and what its tests say as a scheduler.
import { vi } from 'vitest';
import type { Heartbeat } from '@af-gateway/schemas';
import type { ClusterManager } from '../../src/clusters/cluster-manager.js';
import type { ClusterRecord } from '../../src/clusters/model.js';

/** Lets what is due settle (setImmediate stays real: each launch batch asks for the next with it). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) {
    await new Promise((r) => setImmediate(r));
    await vi.advanceTimersByTimeAsync(0);
  }
}

/** Settles, moves the clock by `seconds` (timers fire on the way), settles again. */
export async function advance(seconds: number): Promise<void> {
  await settle();
  await vi.advanceTimersByTimeAsync(seconds * 1000);
  await settle();
}

/** Names of workers or of the memory backend's processes. */
export const names = (ws: readonly { name: string }[]) => ws.map((w) => w.name);

/** A cluster's live workers of one group. */
export const workersOf = (m: ClusterManager, c: ClusterRecord, g: string) => (m.activeWorkers(c.name) ?? []).filter((w) => w.group === g);

/** A group as the groups API shows it. */
export const group = (m: ClusterManager, c: ClusterRecord, name: string) => m.groupsJson(c, m.activeWorkers(c.name) ?? []).find((g) => g.name === name)!;

/** A scheduler's heartbeat asking for `count` workers, naming `active` as connected and `closed` as gone. */
export function countHeartbeat(count: number, active: string[] = [], closed: string[] = []): Heartbeat {
  return {
    scheduler_address: 'tls://127.0.0.1:8786',
    dashboard_address: 'http://127.0.0.1:8787',
    api_address: 'http://127.0.0.1:8788',
    count,
    active_workers: active,
    closing_workers: [],
    closed_workers: closed,
  };
}

/** A scheduler's heartbeat naming `active` as its connected workers (the count: the cluster's own). */
export function schedulerHeartbeat(c: ClusterRecord, active: string[], over: Partial<Heartbeat> = {}): Heartbeat {
  return { ...countHeartbeat(c.count, active), ...over };
}
