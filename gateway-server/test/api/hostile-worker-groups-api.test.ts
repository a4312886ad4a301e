// The worker groups API against hostile users, on a gateway with a real cluster (local backend, real
// Dask scheduler): another user can neither see, list nor scale carol's groups on any route; odd
// group names in the URL (dot segments, encoded slashes, over-long, unicode, Object.prototype's
// names) and counts that are not whole numbers, or are absurdly large, are refused with a 4xx that
// echoes no more than a short part of them, and change nothing.
import { describe, expect, it } from 'vitest';
import type { AfWorkerGroup } from '@af-gateway/schemas';
import { carolsGroupCluster } from '../support/group-gateway.js';

const carol = carolsGroupCluster('af-hostile-groups-', 10_000);
const api = carol.api;
const groups = async () => ((await api('GET', `/api/af/clusters/${carol.name}/groups`)).json as { groups: AfWorkerGroup[] }).groups;
const targets = async () => (await groups()).map((g) => [g.name, g.target]);

describe('worker groups API, hostile users', () => {
  it("gives another user nothing of carol's groups on any route or method", async () => {
    for (const [method, path, body] of [
      ['GET', `/api/af/clusters/${carol.name}/groups`, undefined],
      ['GET', `/api/af/clusters/${carol.name}`, undefined],
      ['PUT', `/api/af/clusters/${carol.name}/groups/big/scale`, { count: 1 }],
      ['POST', `/api/af/clusters/${carol.name}/groups/big/scale`, { count: 1 }],
      ['PUT', `/api/af/clusters/${carol.name}/groups/default/scale`, { count: 1 }],
    ] as const) {
      const r = await api(method, path, 'mallory', body);
      expect(r.status, `${method} ${path}`).toBe(403);
      expect(r.text).not.toMatch(/"big"|more memory|default, big/);
    }
    const listed = await api('GET', '/api/af/clusters', 'mallory');
    expect(listed.status).toBe(200);
    expect(listed.text).not.toContain(carol.name);
    expect(await targets()).toEqual([
      ['default', 0],
      ['big', 0],
    ]);
  });

  it('refuses odd group names in the URL with a 4xx (422 past the 64 characters a name may have, 404 otherwise), echoing at most a short part of them', async () => {
    const odd = [
      '..',
      '%2E%2E',
      '..%2Fbig',
      'big%2F..%2F..%2Fbig',
      'big%00',
      '%F0%9F%98%80',
      '%E2%80%AEgib',
      '__proto__',
      'constructor',
      'hasOwnProperty',
      'toString',
      'Big',
      'big%20',
      'x'.repeat(65),
      encodeURIComponent('é'.repeat(64)),
    ];
    for (const g of odd) {
      for (const method of ['PUT', 'POST']) {
        const r = await api(method, `/api/af/clusters/${carol.name}/groups/${g}/scale`, 'carol', { count: 1 });
        expect([400, 404, 422], `${method} ${g}: ${r.status} ${r.text.slice(0, 200)}`).toContain(r.status);
        expect(r.text.length).toBeLessThan(1000);
        expect(r.text).not.toContain('x'.repeat(41));
      }
    }
    expect(await targets()).toEqual([
      ['default', 0],
      ['big', 0],
    ]);
  });

  it('refuses counts that are not whole numbers of at least 0, or beyond the limits, and changes nothing', async () => {
    for (const count of ['1', 1.5, -1, null, true, [1], { n: 1 }, Number.MAX_SAFE_INTEGER, 1e300, 2 ** 53 + 2]) {
      const r = await api('PUT', `/api/af/clusters/${carol.name}/groups/big/scale`, 'carol', { count });
      expect([400, 422], `count ${JSON.stringify(count)}: ${r.status} ${r.text.slice(0, 200)}`).toContain(r.status);
    }
    for (const body of ['{"count": 1e999}', '{"count": NaN}', '{"count": 1, "count": 99}', '{"count":']) {
      const r = await api('PUT', `/api/af/clusters/${carol.name}/groups/big/scale`, 'carol', body);
      expect([400, 422], `${body}: ${r.status} ${r.text.slice(0, 200)}`).toContain(r.status);
    }
    expect(await targets()).toEqual([
      ['default', 0],
      ['big', 0],
    ]);
  });
});
