// The worker groups API on a gateway with real Dask processes (local backend): a group "big" next
// to default. Its workers carry their Dask resources and survive the scheduler's own count (the
// gateway's preload makes that count default's only); scaling the group down retires its worker
// through the scheduler. Another user can neither list nor scale the groups; bad requests change nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AfWorkerGroup } from '@af-gateway/schemas';
import { bodyAjv } from '../../src/schemas.js';
import { basic, client, type TestGateway } from '../support/gateway.js';
import { startGroupGateway, until } from '../support/group-gateway.js';

let gw: TestGateway;
const validList = bodyAjv.getSchema('af-worker-group-list.json')!;
const api = (method: string, path: string, user = 'carol', body?: unknown) => client(gw, basic(user)).call(method, path, body);

const groups = async (name: string) => ((await api('GET', `/api/af/clusters/${name}/groups`)).json as { groups: AfWorkerGroup[] }).groups;
const big = async (name: string) => (await groups(name)).find((g) => g.name === 'big')!;

beforeAll(async () => {
  gw = await startGroupGateway('af-groups-');
});

afterAll(async () => {
  await gw?.close();
});

describe('worker groups API', () => {
  it("lists and scales a cluster's groups; the group's worker keeps running under the scheduler's count and is retired on scale-down", async () => {
    const { json } = await api('POST', '/api/v1/clusters/', 'carol', {});
    const name = json.name as string;
    await until(
      'the cluster running',
      () => api('GET', `/api/af/clusters/${name}`),
      (r) => (r.json as { status: string }).status === 'RUNNING',
    );

    const listed = await api('GET', `/api/af/clusters/${name}/groups`);
    expect(listed.status).toBe(200);
    expect(validList(listed.json), JSON.stringify(validList.errors)).toBe(true);
    expect((listed.json as { groups: AfWorkerGroup[] }).groups.map((g) => [g.name, g.backend, g.target, g.worker_memory, g.resources])).toEqual([
      ['default', 'local', 0, 1, {}],
      ['big', 'local', 0, 2, { big: 1 }],
    ]);

    // Another user: neither sees nor scales them.
    expect((await api('GET', `/api/af/clusters/${name}/groups`, 'dave')).status).toBe(403);
    expect((await api('PUT', `/api/af/clusters/${name}/groups/big/scale`, 'dave', { count: 1 })).status).toBe(403);
    // Bad requests: unknown group, negative count, past the group's limit; nothing changes.
    const unknown = await api('PUT', `/api/af/clusters/${name}/groups/gpu/scale`, 'carol', { count: 1 });
    expect(unknown.status).toBe(404);
    expect(unknown.json.error).toMatch(/its groups are default, big/);
    expect((await api('PUT', `/api/af/clusters/${name}/groups/big/scale`, 'carol', { count: -1 })).status).toBe(422);
    const tooMany = await api('POST', `/api/af/clusters/${name}/groups/big/scale`, 'carol', { count: 3 });
    expect(tooMany.status).toBe(422);
    expect(tooMany.json.error).toMatch(/worker group big's limit of 2 workers per cluster \(worker_groups\[\]\.max_workers\); at most 2 are possible now/);
    expect((await big(name)).target).toBe(0);

    const scaled = await api('PUT', `/api/af/clusters/${name}/groups/big/scale`, 'carol', { count: 1 });
    expect(scaled.status).toBe(200);
    expect(scaled.json).toMatchObject({ name: 'big', target: 1 });
    await until(
      'the big worker connected',
      () => big(name),
      (g) => g.running === 1,
    );
    // Several heartbeats later (1 s apart) the scheduler, whose count is 0, has not retired it.
    await new Promise((r) => setTimeout(r, 4000));
    expect(await big(name)).toMatchObject({ target: 1, running: 1, starting: 0 });
    const cluster = (await api('GET', `/api/af/clusters/${name}`)).json as { workers: { list: { group?: string; status: string }[] } };
    expect(cluster.workers.list.filter((w) => w.status === 'RUNNING').map((w) => w.group)).toEqual(['big']);

    // Scale-down: the scheduler retires it (STOPPED, not FAILED).
    expect((await api('PUT', `/api/af/clusters/${name}/groups/big/scale`, 'carol', { count: 0 })).status).toBe(200);
    await until(
      'the big worker retired',
      () => big(name),
      (g) => g.running + g.starting === 0,
      30_000,
    );
    const after = (await api('GET', `/api/af/clusters/${name}`)).json as { message: string; workers: { list: { group?: string; status: string }[] } };
    expect(after.workers.list.filter((w) => w.group === 'big').map((w) => w.status)).toEqual([]);
    expect(after.message).not.toMatch(/failed/);
    expect((await api('DELETE', `/api/v1/clusters/${name}`)).status).toBe(204);
  }, 120_000);
});
