// A scheduler that starts again elsewhere (a batch system reran its job) reports new addresses in
// its heartbeats: the gateway must follow them, or scale requests go to the dead address.
// Real gateway, real scheduler process (local backend); the "moved" scheduler's API is a small
// HTTP server of the test that records what the gateway tells it.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { resolveConfig } from '../../src/config.js';
import { makeLogger, startGateway, type RunningGateway } from '../../src/server.js';

let gw: RunningGateway;
let dataDir: string;
let moved: Server;
const told: unknown[] = [];
const alice = { authorization: 'Basic ' + Buffer.from('alice:').toString('base64') };

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'af-moves-'));
  // Heartbeats every 10 minutes: after its first one the real scheduler stays quiet during the test.
  gw = await startGateway(
    resolveConfig({ listen: '127.0.0.1:0', data_dir: dataDir, backend: { local: { single_user: true } }, cluster: { heartbeat_period: 600, heartbeat_timeout: 1800 }, metrics: { bearer_token: 'scrape' } }),
    makeLogger('warn'),
  );
  moved = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      told.push({ path: req.url, auth: req.headers.authorization?.split(' ')[0], body: JSON.parse(body) as unknown });
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => moved.listen(0, '127.0.0.1', r));
});

afterAll(async () => {
  await gw?.close();
  moved?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

it('follows a running scheduler to the addresses its heartbeat reports', async () => {
  const created = await fetch(`${gw.url}/api/v1/clusters/`, { method: 'POST', headers: { ...alice, 'content-type': 'application/json' }, body: '{}' });
  const { name } = (await created.json()) as { name: string };
  let status = '';
  for (let i = 0; i < 6 && status !== 'RUNNING'; i++) {
    status = ((await (await fetch(`${gw.url}/api/v1/clusters/${name}?wait`, { headers: alice })).json()) as { status: string }).status;
  }
  expect(status).toBe('RUNNING');
  // (the clusters gauge is read from the state store on each scrape)
  const metrics = await (await fetch(`${gw.url}/metrics`, { headers: { authorization: 'Bearer scrape' } })).text();
  expect(metrics).toMatch(/^af_gateway_clusters\{status="RUNNING"\} 1$/m);

  const token = readFileSync(join(dataDir, 'clusters', name, 'api-token'), 'utf8').trim();
  const port = (moved.address() as AddressInfo).port;
  const hb = await fetch(`${gw.url}/api/v1/clusters/${name}/heartbeat`, {
    method: 'POST',
    headers: { authorization: `token ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      scheduler_address: 'tls://127.0.0.1:1', dashboard_address: '', api_address: `http://127.0.0.1:${port}`,
      count: 0, active_workers: [], closing_workers: [], closed_workers: [],
    }),
  });
  expect(hb.status).toBeLessThan(300);

  const scaled = await fetch(`${gw.url}/api/v1/clusters/${name}/scale`, { method: 'POST', headers: { ...alice, 'content-type': 'application/json' }, body: '{"count": 0}' });
  expect(scaled.status).toBeLessThan(300);
  expect(told).toEqual([{ path: '/api/comm', auth: 'token', body: { op: 'scale', count: 0 } }]);
  await fetch(`${gw.url}/api/v1/clusters/${name}`, { method: 'DELETE', headers: alice });
}, 60_000);
