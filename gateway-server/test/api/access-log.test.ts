// The access log: a line per request at debug, at info only refusals, slow answers and changes, at
// warn failures; and never a secret, whatever the level: no Authorization (Basic password, bearer,
// Hub or cluster token), no cookie, nothing from a query string, no dashboard capability.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { accessLogLevel, loggedPath, SLOW_REQUEST_MS } from '../../src/app.js';
import { resolveConfig } from '../../src/config.js';
import { makeLogger, startGateway, type RunningGateway } from '../../src/server.js';
import { freePort } from '../../../ui-tests/support/processes.mjs';
import { basic, request } from '../support/gateway.js';

const PASSWORD = 'pw-SECRET-a1b2c3';
const SECRETS = {
  password: PASSWORD,
  basic: Buffer.from(`alice:${PASSWORD}`).toString('base64'),
  wrongBasic: Buffer.from('alice:wrong-SECRET-d4e5').toString('base64'),
  bearer: 'bearer-SECRET-f6g7h8',
  hub: 'hub-SECRET-i9j0',
  cluster: 'cluster-SECRET-k1l2',
  forgedCookie: 'cookie-SECRET-m3n4',
  query: 'query-SECRET-o5p6',
  code: 'code-SECRET-q7r8',
  capability: `capability-SECRET-s9t0${'A'.repeat(40)}`, // the shape of one (40-800 base64url characters)
  body: 'body-SECRET-u1v2',
};

interface Line {
  level: number;
  msg: string;
  method?: string;
  url?: string;
  status?: number;
}

let gw: RunningGateway;
let dataDir: string;
let text = '';
const sink = new Writable({
  write(chunk: Buffer, _enc, done) {
    text += chunk.toString();
    done();
  },
});
const lines = (): Line[] =>
  text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Line);

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'af-access-log-'));
  const config = resolveConfig({
    listen: `127.0.0.1:${await freePort()}`,
    data_dir: dataDir,
    auth: { type: 'simple', simple: { password: PASSWORD } },
  });
  // debug: every line the gateway can write about a request is written
  gw = await startGateway(config, makeLogger('debug', sink));
});

afterAll(async () => {
  await gw?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('access log', () => {
  it('holds no credential, cookie, query string or capability, at any level', async () => {
    const alice = { authorization: `Basic ${SECRETS.basic}` };
    const login = await request(gw, 'GET', `/api/v1/clusters/?token=${SECRETS.query}&access_token=${SECRETS.query}`, { headers: alice });
    expect(login.status).toBe(200);
    const cookie = login.headers.get('set-cookie')!.split(';')[0]!;
    const cookieValue = cookie.split('=')[1]!;
    const calls: [string, string, Record<string, string>, unknown?][] = [
      ['GET', '/api/v1/options', { cookie }],
      ['GET', '/api/v1/clusters/', { cookie: `af-gateway-session=${SECRETS.forgedCookie}` }],
      ['GET', '/api/v1/clusters/', { authorization: `Basic ${SECRETS.wrongBasic}` }],
      ['GET', '/api/v1/clusters/', { authorization: `Bearer ${SECRETS.bearer}` }],
      ['GET', '/api/v1/clusters/', { authorization: `jupyterhub ${SECRETS.hub}` }],
      ['POST', '/api/v1/clusters/c0ffee/heartbeat', { authorization: `token ${SECRETS.cluster}` }, { count: 1 }],
      ['GET', `/api/af/hub-login/callback?code=${SECRETS.code}&state=${SECRETS.code}`, {}],
      ['GET', `/api/af/login/callback?code=${SECRETS.code}&state=${SECRETS.code}`, {}],
      ['GET', `/no/such/route?token=${SECRETS.query}`, alice],
      ['GET', `/clusters/c0ffee/~${SECRETS.capability}/status`, {}],
      ['GET', `/clusters/c0ffee/%7E${SECRETS.capability}/status`, {}],
      ['GET', `/clusters/c0ffee/%7e${SECRETS.capability}/status?token=${SECRETS.query}`, alice],
      ['POST', '/api/v1/clusters/', alice, { cluster_options: SECRETS.body }],
      ['POST', '/api/v1/clusters/c0ffee/scale', alice, { count: SECRETS.body }],
    ];
    for (const [method, path, headers, body] of calls) {
      const r = await request(gw, method, path, { headers, body });
      expect(r.status, `${method} ${path}`).toBeGreaterThanOrEqual(200);
    }
    await new Promise((r) => setTimeout(r, 100)); // pino writes asynchronously
    const requestLines = lines().filter((l) => l.msg === 'request');
    expect(requestLines.length).toBeGreaterThanOrEqual(calls.length + 1); // every request was logged, so every one was looked at
    for (const [what, secret] of Object.entries({ ...SECRETS, cookieValue })) {
      expect(text.includes(secret), `the log holds the ${what}`).toBe(false);
    }
    expect(requestLines.filter((l) => l.url?.startsWith('/clusters/c0ffee/')).map((l) => l.url)).toEqual([
      '/clusters/c0ffee/~[capability]/status',
      '/clusters/c0ffee/~[capability]/status',
      '/clusters/c0ffee/~[capability]/status',
    ]);
  });

  it('writes reads at debug, and refusals and changes at info', async () => {
    text = '';
    const alice = basic('alice', PASSWORD);
    expect((await request(gw, 'GET', '/api/v1/clusters/', { headers: alice })).status).toBe(200);
    expect((await request(gw, 'GET', '/api/v1/clusters/', { headers: basic('alice', 'nope') })).status).toBe(401);
    expect((await request(gw, 'DELETE', '/api/v1/clusters/c0ffee', { headers: alice })).status).toBe(404);
    expect((await request(gw, 'POST', '/api/af/logout', { headers: { ...alice, origin: gw.url } })).status).toBe(204);
    await new Promise((r) => setTimeout(r, 100));
    const levels = lines()
      .filter((l) => l.msg === 'request')
      .map((l) => [l.method, l.status, l.level]);
    expect(levels).toEqual([
      ['GET', 200, 20],
      ['GET', 401, 30],
      ['DELETE', 404, 30],
      ['POST', 204, 30],
    ]);
  });

  it('chooses the level from the method, route, status and time', () => {
    const hb = '/api/v1/clusters/:cluster_name/heartbeat';
    expect(accessLogLevel('GET', '/api/v1/clusters/', 200, 3)).toBe('debug');
    expect(accessLogLevel('POST', hb, 200, 3)).toBe('debug');
    expect(accessLogLevel('POST', '/api/v1/clusters/', 201, 3)).toBe('info');
    expect(accessLogLevel('GET', '/api/v1/clusters/', 200, SLOW_REQUEST_MS)).toBe('info');
    expect(accessLogLevel('GET', '/api/v1/clusters/', 403, 3)).toBe('info');
    expect(accessLogLevel('POST', hb, 401, 3)).toBe('info');
    expect(accessLogLevel('GET', '/api/v1/clusters/', 503, 3)).toBe('warn');
  });

  it('shows paths without their query and capability', () => {
    expect(loggedPath('/api/v1/clusters/?token=x')).toBe('/api/v1/clusters/');
    expect(loggedPath('/clusters/c1/~abc/status?x=1')).toBe('/clusters/c1/~[capability]/status');
    expect(loggedPath('/clusters/c1/%7Eabc/status')).toBe('/clusters/c1/~[capability]/status');
    expect(loggedPath('/clusters/c1/status')).toBe('/clusters/c1/status');
  });
});
