// The gateway's HTTP API on a real server with real Dask processes (local backend).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processesWith } from '../support/processes.js';
import { basic, heartbeat, request, schedulerApiStandIn, SINGLE_USER, startTestGateway, type TestGateway } from '../support/gateway.js';

let gw: TestGateway;
const alice = basic('alice');
const bob = basic('bob');

const call = (method: string, path: string, headers: Record<string, string> = {}, body?: string) => request(gw, method, path, { headers, body });

const afGatewayProcesses = (cluster: string) => processesWith('af-gateway:', cluster);

beforeAll(async () => {
  gw = await startTestGateway(
    {
      ...SINGLE_USER,
      auth: { admin_users: ['root-admin'] },
      metrics: { bearer_token: 'scrape-me' },
      cluster: { max_workers: 2 },
    },
    { prefix: 'af-api-' },
  );
});

afterAll(async () => {
  await gw?.close();
});

describe('authentication', () => {
  it('challenges with Basic and then remembers the login in a cookie', async () => {
    const anon = await call('GET', '/api/v1/clusters/');
    expect(anon.status).toBe(401);
    expect(anon.headers.get('www-authenticate')).toBe('Basic realm="af-gateway"');
    expect(anon.json.error).toMatch(/Authentication required/);

    const login = await call('GET', '/api/v1/clusters/', alice);
    expect(login.status).toBe(200);
    const cookie = login.headers.get('set-cookie')!;
    expect(cookie).toMatch(/^af-gateway-session=[\w-]+; Path=\/; HttpOnly; SameSite=Lax/);

    const again = await call('GET', '/api/v1/clusters/', { cookie: cookie.split(';')[0]! });
    expect(again.status).toBe(200);
    expect(await call('GET', '/api/v1/clusters/', { cookie: 'af-gateway-session=forged' })).toMatchObject({ status: 401 });
  });

  it('refuses malformed user names', async () => {
    const r = await call('GET', '/api/v1/options', basic('al ice'));
    expect(r.status).toBe(401);
  });

  it('serves health, version and the OpenAPI document without login', async () => {
    expect((await call('GET', '/api/health')).json).toEqual({ status: 'pass', checks: { state: 'ok', backend: 'ok' } });
    expect((await call('GET', '/api/version')).json).toEqual({ version: expect.stringMatching(/^\d+\.\d+\.\d+/) });
    const doc = (await call('GET', '/api/af/openapi.json')).json as { openapi: string; paths: Record<string, unknown> };
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining(['/api/v1/options', '/api/v1/clusters/', '/api/v1/clusters/{cluster_name}', '/api/v1/clusters/{cluster_name}/scale']),
    );
  });

  it('keeps /metrics for the scraper token and administrators', async () => {
    expect((await call('GET', '/metrics', alice)).status).toBe(403);
    const scraped = await call('GET', '/metrics', { authorization: 'Bearer scrape-me' });
    expect(scraped.status).toBe(200);
    expect(scraped.text).toContain('af_gateway_clusters');
    expect((await call('GET', '/metrics', basic('root-admin'))).status).toBe(200);
  });
});

describe('bad input creates nothing', () => {
  it.each([
    ['malformed JSON', '{"cluster_options": ', 400, /Malformed JSON body/],
    ['unknown option', '{"cluster_options": {"worker_gpus": 2}}', 422, /worker_gpus/],
    ['out-of-range option', '{"cluster_options": {"worker_cores": 99}}', 422, /worker_cores.*at most 4/],
    ['wrong body type', '{"cluster_options": 5}', 422, /cluster_options/],
  ])('%s', async (_what, body, status, message) => {
    const before = (await call('GET', '/api/v1/clusters/?status=pending,running,stopping,stopped,failed', alice)).json;
    const r = await call('POST', '/api/v1/clusters/', alice, body);
    expect(r.status).toBe(status);
    expect(r.json.error).toMatch(message);
    expect(r.json.request_id).toBeTruthy();
    const after = (await call('GET', '/api/v1/clusters/?status=pending,running,stopping,stopped,failed', alice)).json;
    expect(after).toEqual(before);
  });

  it('answers 404 for an unknown cluster and 422 for an unknown status filter', async () => {
    expect(await call('GET', '/api/v1/clusters/nope', alice)).toMatchObject({ status: 404, json: { error: 'Cluster nope not found' } });
    expect((await call('POST', '/api/v1/clusters/nope/scale', alice, '{"count": 1}')).status).toBe(404);
    expect((await call('DELETE', '/api/v1/clusters/nope', alice)).status).toBe(404);
    const r = await call('GET', '/api/v1/clusters/?status=sleeping', alice);
    expect(r.status).toBe(422);
    expect(r.json.error).toMatch(/sleeping/);
  });

  it('refuses heartbeats without the cluster token', async () => {
    const r = await call('POST', '/api/v1/clusters/nope/heartbeat', { authorization: 'token guess' }, '{}');
    expect(r.status).toBe(401);
  });
});

describe('a cluster on real processes', () => {
  let name: string;

  it('starts, and the long poll returns once it runs', async () => {
    const created = await call('POST', '/api/v1/clusters/', alice, '{"cluster_options": {"worker_cores": 1}}');
    expect(created.status).toBe(201);
    name = created.json.name as string;
    expect(name).toMatch(/^[0-9a-f]{32}$/);
    let c = (await call('GET', `/api/v1/clusters/${name}?wait`, alice)).json;
    for (let i = 0; i < 5 && c.status === 'PENDING'; i++) c = (await call('GET', `/api/v1/clusters/${name}?wait`, alice)).json;
    expect(c).toMatchObject({
      name,
      status: 'RUNNING',
      dashboard_route: `/clusters/${name}/status`,
      options: { worker_cores: 1, worker_memory: 1, environment: {} },
    });
    expect(Object.keys(c).sort()).toEqual(['dashboard_route', 'name', 'options', 'start_time', 'status', 'stop_time', 'tls_cert', 'tls_key']);
    expect(c.tls_cert).toMatch(/BEGIN CERTIFICATE/);
    expect(c.tls_key).toMatch(/BEGIN PRIVATE KEY/);
    expect(afGatewayProcesses(name).some((p) => p.includes('af-gateway: scheduler'))).toBe(true);
  });

  it('is invisible and untouchable for another user', async () => {
    expect(Object.keys((await call('GET', '/api/v1/clusters/', bob)).json)).not.toContain(name);
    for (const [method, path, body] of [
      ['GET', `/api/v1/clusters/${name}`, undefined],
      ['POST', `/api/v1/clusters/${name}/scale`, '{"count": 1}'],
      ['POST', `/api/v1/clusters/${name}/adapt`, '{"minimum": 0, "maximum": 1}'],
      ['DELETE', `/api/v1/clusters/${name}`, undefined],
      ['GET', `/clusters/${name}/status`, undefined],
    ] as const) {
      const r = await call(method, path, bob, body);
      expect(r.status, `${method} ${path}`).toBe(403);
      expect(r.json.error).toMatch(/may not access cluster/);
    }
  });

  it('serves the dashboard to its owner only', async () => {
    expect((await call('GET', `/clusters/${name}/status`)).status).toBe(401);
    expect((await call('GET', `/clusters/${name}/status`, bob)).status).toBe(403);
    // the owner's credentials are sent once and answered with the sandboxed page's capability path
    const issued = await call('GET', `/clusters/${name}/status`, alice);
    expect(issued.status).toBe(303);
    const location = issued.headers.get('location')!;
    expect(location).toMatch(new RegExp(`^/clusters/${name}/~[\\w-]{40,}/status$`));
    const page = await call('GET', location);
    expect(page.status).toBe(200);
    expect(page.text).toContain('bokeh');
    expect(page.headers.get('content-security-policy')).toMatch(/^sandbox allow-scripts/);
    // the capability is sealed: the page's scripts read neither who opened it nor anything else
    const capability = location.split('/')[3]!.slice(1);
    expect(Buffer.from(capability, 'base64url').toString('latin1')).not.toContain('alice');
    // altered by one character, it opens nothing (back to the credentialed path)
    const altered = capability.slice(0, 20) + (capability[20] === 'A' ? 'B' : 'A') + capability.slice(21);
    const refused = await call('GET', `/clusters/${name}/~${altered}/status`);
    expect(refused.status).toBe(303);
    expect(refused.headers.get('location')).toBe(`/clusters/${name}/status`);
  });

  it('validates scale requests and clamps to the per-cluster limit', async () => {
    const neg = await call('POST', `/api/v1/clusters/${name}/scale`, alice, '{"count": -1}');
    expect(neg.status).toBe(422);
    expect(neg.json.error).toMatch(/count: must be >= 0/);
    expect((await call('POST', `/api/v1/clusters/${name}/scale`, alice, '{"count": "2"}')).status).toBe(422);
    const badRange = await call('POST', `/api/v1/clusters/${name}/adapt`, alice, '{"minimum": 3, "maximum": 1}');
    expect(badRange.status).toBe(422);
    const over = await call('POST', `/api/v1/clusters/${name}/scale`, alice, '{"count": 5}');
    expect(over.json).toEqual({ ok: false, msg: expect.stringMatching(/limit of 2 workers per cluster.*scaling to 2/) });
    const within = await call('POST', `/api/v1/clusters/${name}/scale`, alice, '{"count": 0}');
    expect(within.json).toEqual({ ok: true, msg: null });
  });

  it('reaches a scheduler whose API port is one fetch() refuses (10080: the OS may give it)', async () => {
    // A stand-in for the scheduler's API on a "bad port"; the cluster is pointed at it by a heartbeat
    // with its own token (the real scheduler's next heartbeat points it back).
    // A real heartbeat landing between ours and the scale request points the cluster back: then the
    // scale went to the real scheduler, and we point it at the stand-in again (a few tries at most).
    const fake = await schedulerApiStandIn(10080);
    try {
      for (let attempt = 1; attempt <= 5 && fake.told.length === 0; attempt++) {
        const beat = await heartbeat(gw, name, { scheduler_address: 'tls://127.0.0.1:1', dashboard_address: '', api_address: 'http://127.0.0.1:10080' });
        expect(beat.status).toBe(204);
        const scaled = await call('POST', `/api/v1/clusters/${name}/scale`, alice, '{"count": 1}');
        expect([scaled.status, scaled.json]).toEqual([200, { ok: true, msg: null }]);
      }
      expect(fake.told).toEqual([{ path: '/api/comm', auth: 'token', body: { op: 'scale', count: 1 } }]);
    } finally {
      await fake.close();
    }
  });

  it('stops and leaves no process behind', async () => {
    expect((await call('DELETE', `/api/v1/clusters/${name}`, alice)).status).toBe(204);
    const c = (await call('GET', `/api/v1/clusters/${name}`, alice)).json;
    expect(c).toMatchObject({ status: 'STOPPED', dashboard_route: null, tls_cert: null, tls_key: null });
    expect(c.stop_time).toEqual(expect.any(Number));
    expect(afGatewayProcesses(name)).toEqual([]);
    const stopped = (await call('GET', '/api/v1/clusters/?status=stopped', alice)).json;
    expect(Object.keys(stopped)).toContain(name);
    expect((await call('POST', `/api/v1/clusters/${name}/scale`, alice, '{"count": 1}')).status).toBe(409);
  });
});
