// Who may use a worker group, through the API (worker_groups[].access), on a gateway with real Dask
// schedulers (local backend): the "gpu" group is for alice and members of cms-gpu. bob, who is
// neither, sees it greyed out (available: false and why), and his scale and adapt of it are refused
// with a 403 that says why and changes nothing; alice scales it and her worker connects.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AfWorkerGroup } from '@af-gateway/schemas';
import { bodyAjv } from '../../src/schemas.js';
import { basic, client, type TestGateway } from '../support/gateway.js';
import { startGroupGateway, until } from '../support/group-gateway.js';

let gw: TestGateway;
const started: string[] = [];
const validList = bodyAjv.getSchema('af-worker-group-list.json')!;
const api = (user: string, method: string, path: string, body?: unknown) => client(gw, basic(user), { timeoutMs: 10_000 }).call(method, path, body);
const REFUSED = 'Worker group gpu is for members of cms-gpu and users the facility named; ask your facility';

async function runningCluster(user: string): Promise<string> {
  const name = (await api(user, 'POST', '/api/v1/clusters/', {})).json.name as string;
  started.push(`${user}:${name}`);
  await until(
    `${user}'s cluster running`,
    () => api(user, 'GET', `/api/af/clusters/${name}`),
    (r) => r.json.status === 'RUNNING',
  );
  return name;
}

const groups = async (user: string, name: string) => {
  const r = await api(user, 'GET', `/api/af/clusters/${name}/groups`);
  expect(r.status).toBe(200);
  expect(validList(r.json), JSON.stringify(validList.errors)).toBe(true);
  return (r.json as { groups: AfWorkerGroup[] }).groups;
};

beforeAll(async () => {
  gw = await startGroupGateway('af-group-access-', [
    { name: 'gpu', description: 'the GPU nodes', resources: { gpu_node: 1 }, access: { users: ['alice'], groups: ['cms-gpu'] } },
  ]);
});

afterAll(async () => {
  for (const s of started) {
    const [user, name] = s.split(':') as [string, string];
    await api(user, 'DELETE', `/api/v1/clusters/${name}`).catch(() => undefined);
  }
  await gw?.close();
});

describe('worker group access through the API', () => {
  it('refuses bob the group with a 403 that says why and shows it to him greyed out; alice scales it and her worker runs', async () => {
    const [bobs, alices] = await Promise.all([runningCluster('bob'), runningCluster('alice')]);

    const listed = await groups('bob', bobs);
    expect(listed.map((g) => [g.name, g.available, g.unavailable_reason])).toEqual([
      ['default', true, ''],
      ['gpu', false, REFUSED],
    ]);
    // (the users the group is open to are never told)
    expect(JSON.stringify(listed)).not.toContain('alice');
    for (const [method, path, body] of [
      ['PUT', `/api/af/clusters/${bobs}/groups/gpu/scale`, { count: 1 }],
      ['POST', `/api/af/clusters/${bobs}/groups/gpu/scale`, { count: 0 }],
      ['PUT', `/api/af/clusters/${bobs}/groups/gpu/adapt`, { minimum: 0, maximum: 2 }],
      ['POST', `/api/af/clusters/${bobs}/groups/gpu/adapt`, { active: false }],
    ] as const) {
      const r = await api('bob', method, path, body);
      expect(r.status, `${method} ${path}`).toBe(403);
      expect(r.json.error).toBe(REFUSED);
    }
    expect((await groups('bob', bobs)).find((g) => g.name === 'gpu')).toMatchObject({ target: 0, starting: 0, running: 0, adaptive: null });
    // his default group is his to scale
    expect((await api('bob', 'PUT', `/api/af/clusters/${bobs}/groups/default/scale`, { count: 0 })).status).toBe(200);

    expect((await groups('alice', alices)).find((g) => g.name === 'gpu')).toMatchObject({ available: true, unavailable_reason: '' });
    const scaled = await api('alice', 'PUT', `/api/af/clusters/${alices}/groups/gpu/scale`, { count: 1 });
    expect(scaled.status).toBe(200);
    expect(scaled.json).toMatchObject({ name: 'gpu', target: 1, available: true });
    await until(
      "alice's gpu worker connected",
      async () => (await groups('alice', alices)).find((g) => g.name === 'gpu')!,
      (g) => g.running === 1,
    );
    expect((await groups('bob', bobs)).find((g) => g.name === 'gpu')).toMatchObject({ running: 0, starting: 0 });
  }, 120_000);
});
