// What the worker-group API tests share: a gateway with real Dask processes (local backend, a
// heartbeat a second) and a group "big" next to default, a wait for a condition, and such a gateway
// with a cluster of carol's running on it for a whole file's tests.
import { afterAll, beforeAll } from 'vitest';
import { basic, client, SINGLE_USER, startTestGateway, type TestGateway } from './gateway.js';

/** The worker group "big": two memory units a worker, the Dask resource big, at most 2 workers per cluster. */
export const BIG = { name: 'big', description: 'more memory', worker_memory: 2, resources: { big: 1 }, max_workers: 2 };

/** A gateway whose clusters have the groups `groups` (default: big) next to default; each test state in a directory named after `prefix`. */
export function startGroupGateway(prefix: string, groups: Record<string, unknown>[] = [BIG]): Promise<TestGateway> {
  return startTestGateway({ ...SINGLE_USER, cluster: { heartbeat_period: 1 }, worker_groups: groups }, { prefix });
}

/** Asks `get` every 250 ms until `ok` says yes (then returns what it got), for `ms` at the most. */
export async function until<T>(what: string, get: () => Promise<T>, ok: (v: T) => boolean, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`${what} within ${ms} ms; last: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * For the tests of a file: a gateway of startGroupGateway(prefix) with a cluster of carol's RUNNING on
 * it before them (90 s at the most), the cluster deleted and the gateway closed after them. `api` asks
 * as the user it is given (carol by default), each request bounded by `timeoutMs`.
 */
export function carolsGroupCluster(prefix: string, timeoutMs: number) {
  let gw: TestGateway | undefined;
  const carol = {
    /** The cluster's name, once it runs. */
    name: '',
    api: (method: string, path: string, user = 'carol', body?: unknown) => client(gw!, basic(user), { timeoutMs }).call(method, path, body),
  };
  beforeAll(async () => {
    gw = await startGroupGateway(prefix);
    carol.name = (await carol.api('POST', '/api/v1/clusters/', 'carol', {})).json.name as string;
    await until(
      'the cluster running',
      () => carol.api('GET', `/api/af/clusters/${carol.name}`),
      (r) => r.json.status === 'RUNNING',
    );
  }, 90_000);
  afterAll(async () => {
    if (gw && carol.name) await carol.api('DELETE', `/api/v1/clusters/${carol.name}`);
    await gw?.close();
  });
  return carol;
}
