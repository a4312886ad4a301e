// The adaptive route of worker groups (PUT|POST /api/af/clusters/{name}/groups/{group}/adapt) on a
// gateway with a real cluster (local backend, real Dask scheduler with the groups preload): the range
// is set (the scheduler takes the groups), capped by the group's limit with a message saying what is
// used, shown in the groups list, turned off by a scale; an unknown group is a 404, a bad range a 422,
// another user gets the 403 the scale route gives, and nothing changes on a refusal.
import { describe, expect, it } from 'vitest';
import type { AfWorkerGroup } from '@af-gateway/schemas';
import { bodyAjv } from '../../src/schemas.js';
import { carolsGroupCluster } from '../support/group-gateway.js';

const carol = carolsGroupCluster('af-adapt-groups-', 20_000);
const api = carol.api;
const validGroup = bodyAjv.getSchema('af-worker-group.json')!;
const big = async () => ((await api('GET', `/api/af/clusters/${carol.name}/groups`)).json as { groups: AfWorkerGroup[] }).groups.find((g) => g.name === 'big')!;
const adapt = (body: unknown, user = 'carol', method = 'PUT', group = 'big') => api(method, `/api/af/clusters/${carol.name}/groups/${group}/adapt`, user, body);

describe('adaptive worker groups API', () => {
  it('refuses another user (403, as scale), an unknown group (404) and a bad range (422), changing nothing', async () => {
    for (const method of ['PUT', 'POST']) {
      const r = await adapt({ minimum: 0, maximum: 1 }, 'mallory', method);
      expect(r.status, method).toBe(403);
      expect(r.text).not.toMatch(/more memory|default, big/);
    }
    const unknown = await adapt({ minimum: 0, maximum: 1 }, 'carol', 'PUT', 'gpu');
    expect(unknown.status).toBe(404);
    expect(unknown.json.error).toMatch(/its groups are default, big/);
    const reversed = await adapt({ minimum: 2, maximum: 1 });
    expect(reversed.status).toBe(422);
    expect(reversed.json.error).toMatch(/minimum \(2\) must not be larger than maximum \(1\)/);
    for (const body of [{ minimum: -1 }, { maximum: 1.5 }, { minimum: '1' }, { active: 'yes' }, { maximum: [2] }]) {
      expect((await adapt(body)).status, JSON.stringify(body)).toBe(422);
    }
    expect(await big()).toMatchObject({ target: 0, adaptive: null });
  });

  it('sets the range (capped by the group limit, saying so), shows it, and a scale turns it off', async () => {
    const r = await adapt({ minimum: 1, maximum: 5 });
    expect(r.status).toBe(200);
    expect(validGroup(r.json), JSON.stringify(validGroup.errors)).toBe(true);
    expect(r.json).toMatchObject({ name: 'big', adaptive: { minimum: 1, maximum: 2 }, target: 1 });
    expect(r.json.message).toMatch(/worker group big's limit of 2 workers per cluster .*using minimum=1, maximum=2 instead/);
    expect(await big()).toMatchObject({ adaptive: { minimum: 1, maximum: 2 }, target: 1 });
    // POST does the same (as dask-gateway's adapt); active false turns it off and leaves the target.
    const off = await adapt({ active: false }, 'carol', 'POST');
    expect(off.json).toMatchObject({ adaptive: null, target: 1 });
    await adapt({ minimum: 0, maximum: 2 });
    const scaled = await api('PUT', `/api/af/clusters/${carol.name}/groups/big/scale`, 'carol', { count: 0 });
    expect(scaled.json).toMatchObject({ adaptive: null, target: 0 });
    // default: the dask-gateway adapt, shown as the cluster's adaptive range too
    const d = await adapt({ minimum: 0, maximum: 3 }, 'carol', 'PUT', 'default');
    expect(d.json).toMatchObject({ name: 'default', adaptive: { minimum: 0, maximum: 3 } });
    expect((await api('GET', `/api/af/clusters/${carol.name}`)).json.adaptive).toEqual({ minimum: 0, maximum: 3 });
  }, 60_000);
});
