// A scheduler that starts again elsewhere (a batch system reran its job) reports new addresses in
// its heartbeats: the gateway must follow them, or scale requests go to the dead address.
// Real gateway, real scheduler process (local backend); the "moved" scheduler's API is a small
// HTTP server of the test that records what the gateway tells it.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { basic, client, heartbeat, request, schedulerApiStandIn, SINGLE_USER, startTestGateway, waitForCluster, type TestGateway } from '../support/gateway.js';

let gw: TestGateway;
let moved: Awaited<ReturnType<typeof schedulerApiStandIn>>;
const alice = basic('alice');

beforeAll(async () => {
  gw = await startTestGateway(
    { ...SINGLE_USER, cluster: { heartbeat_period: 600, heartbeat_timeout: 1800 }, metrics: { bearer_token: 'scrape' } },
    { prefix: 'af-moves-' },
  );
  moved = await schedulerApiStandIn();
});

afterAll(async () => {
  await gw?.close();
  await moved?.close();
});

it('follows a running scheduler to the addresses its heartbeat reports', async () => {
  const api = client(gw, alice);
  const name = (await api.expect(201, 'POST', '/api/v1/clusters/', '{}')).json.name as string;
  expect((await waitForCluster(api, name, 6)).status).toBe('RUNNING');
  // (the clusters gauge is read from the state store on each scrape)
  const metrics = (await request(gw, 'GET', '/metrics', { headers: { authorization: 'Bearer scrape' } })).text;
  expect(metrics).toMatch(/^af_gateway_clusters\{status="RUNNING"\} 1$/m);

  const hb = await heartbeat(gw, name, { scheduler_address: 'tls://127.0.0.1:1', dashboard_address: '', api_address: `http://127.0.0.1:${moved.port}` });
  expect(hb.status).toBeLessThan(300);

  const scaled = await api.post(`/api/v1/clusters/${name}/scale`, '{"count": 0}');
  expect(scaled.status).toBeLessThan(300);
  expect(moved.told).toEqual([{ path: '/api/comm', auth: 'token', body: { op: 'scale', count: 0 } }]);
  await api.delete(`/api/v1/clusters/${name}`);
}, 60_000);
