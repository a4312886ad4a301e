// Profiles and limits from group claims, with real tokens from a real OpenID provider and real
// Dask processes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, client, startTestGateway, waitForCluster, type TestGateway } from '../support/gateway.js';
import { startOidcProvider, AUDIENCE } from '../support/oidc-provider.mjs';

let op: { issuer: string; token(c: string): Promise<string>; close(): Promise<void> };
let gw: TestGateway;
const tokens: Record<string, string> = {};

const call = (who: string, method: string, path: string, body?: unknown) => client(gw, bearer(tokens[who]!)).call(method, path, body);

async function running(who: string, name: string) {
  if ((await waitForCluster(client(gw, bearer(tokens[who]!)), name, 10)).status !== 'RUNNING') throw new Error(`${name} did not start`);
}

beforeAll(async () => {
  op = await startOidcProvider();
  for (const who of ['alice', 'bob', 'ci-pipeline']) tokens[who] = await op.token(who);
  gw = await startTestGateway(
    {
      accounts: { name_template: 'af-{user}' }, // real accounts: scripts/test-accounts.sh
      auth: { type: 'oidc', oidc: { issuer: op.issuer, audience: [AUDIENCE] } },
      policy: {
        profiles: [
          {
            name: 'cms',
            groups: ['/cms'],
            cluster_options: [
              { field: 'worker_cores', type: 'int', default: 2, min: 1, max: 8, target: 'worker_cores' },
              { field: 'image', type: 'select', options: ['coffea-base', 'coffea-dask'] },
            ],
          },
        ],
        user_limits: { max_clusters: 1 },
        group_limits: { '/cms': { max_cores: 6 } },
      },
    },
    { prefix: 'af-policy-' },
  );
});

afterAll(async () => {
  await gw?.close();
  await op?.close();
});

describe('profiles', () => {
  it('offers each group its own options form', async () => {
    const cms = (await call('alice', 'GET', '/api/v1/options')).json.cluster_options as { field: string; default: unknown }[];
    expect(cms.map((f) => [f.field, f.default])).toEqual([
      ['display_name', ''], // every form offers a name
      ['worker_cores', 2],
      ['image', 'coffea-base'],
    ]);
    const other = (await call('bob', 'GET', '/api/v1/options')).json.cluster_options as { field: string }[];
    expect(other.map((f) => f.field)).toEqual(['display_name', 'worker_cores', 'worker_memory', 'environment']);
    // an option of another group's profile is unknown to bob
    const r = await call('bob', 'POST', '/api/v1/clusters/', { cluster_options: { image: 'coffea-dask' } });
    expect(r.status).toBe(422);
    expect(r.json.error).toMatch(/'image'/);
  });
});

describe('limits', () => {
  let aliceCluster: string;
  let ciCluster: string;

  it('refuses a second cluster over the per-user limit, naming it', async () => {
    const first = await call('alice', 'POST', '/api/v1/clusters/', { cluster_options: { worker_cores: 2 } });
    expect(first.status).toBe(201);
    aliceCluster = first.json.name as string;
    const second = await call('alice', 'POST', '/api/v1/clusters/', {});
    expect(second.status).toBe(422);
    expect(second.json.error).toMatch(/policy\.user_limits \(user alice\) allows 1 active cluster and 1 is running/);
    const list = (await call('alice', 'GET', '/api/af/clusters')).json.clusters as unknown[];
    expect(list).toHaveLength(1);
  });

  it("counts a group's members together: cores used by one leave less for another", async () => {
    await running('alice', aliceCluster);
    // alice's workers have 2 cores each: 6 cores allow 3 workers
    expect((await call('alice', 'POST', `/api/v1/clusters/${aliceCluster}/scale`, { count: 5 })).json).toEqual({
      ok: false,
      msg: expect.stringMatching(/exceeds policy\.group_limits\["\/cms"\] max_cores = 6 cores.*scaling to 3 instead/),
    });
    const ci = await call('ci-pipeline', 'POST', '/api/v1/clusters/', { cluster_options: { worker_cores: 1 } });
    ciCluster = ci.json.name as string;
    await running('ci-pipeline', ciCluster);
    const squeezed = await call('ci-pipeline', 'POST', `/api/v1/clusters/${ciCluster}/adapt`, { minimum: 0, maximum: 4 });
    expect(squeezed.json).toEqual({ ok: false, msg: expect.stringMatching(/max_cores = 6 cores, of which 6 cores are used by other clusters.*maximum=0/) });
    // bob is not in /cms: unaffected
    const bob = await call('bob', 'POST', '/api/v1/clusters/', {});
    expect(bob.status).toBe(201);
    await running('bob', bob.json.name as string);
    expect((await call('bob', 'POST', `/api/v1/clusters/${bob.json.name}/scale`, { count: 4 })).json).toEqual({ ok: true, msg: null });
    expect((await call('bob', 'DELETE', `/api/v1/clusters/${bob.json.name}`)).status).toBe(204);
  });

  it('frees the share once a cluster has scaled down', async () => {
    expect((await call('alice', 'POST', `/api/v1/clusters/${aliceCluster}/scale`, { count: 0 })).json).toEqual({ ok: true, msg: null });
    for (let i = 0; ; i++) {
      const w = (await call('alice', 'GET', `/api/af/clusters/${aliceCluster}`)).json.workers as { requested: number; starting: number; running: number };
      if (w.requested === 0 && w.starting === 0 && w.running === 0) break;
      if (i > 100) throw new Error(`alice's workers did not go: ${JSON.stringify(w)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect((await call('ci-pipeline', 'POST', `/api/v1/clusters/${ciCluster}/scale`, { count: 6 })).json).toEqual({ ok: true, msg: null });
    await call('alice', 'DELETE', `/api/v1/clusters/${aliceCluster}`);
    await call('ci-pipeline', 'DELETE', `/api/v1/clusters/${ciCluster}`);
  });
});
