// A session opened by a JupyterHub login follows the Hub for its whole life, not only at login:
// the gateway keeps the Hub's OAuth token with the session (sealed in the store, never logged) and
// asks the Hub's /user again at most once a cache period (60 s). A hostile admin demoted at the Hub
// who keeps their cookie loses the admin views within that period; a token the Hub revoked ends the
// session; requests inside the period cost no Hub call, and those that need one share it.
//
// The Hub here is a STAND-IN (a small HTTP server in this file), not JupyterHub: it answers the two
// calls the gateway makes, POST /hub/api/oauth2/token and GET /hub/api/user, as JupyterHub 2+ does
// (kind, name, admin, groups, the token's scopes; 403 for a token it does not know). The real Hub
// login is covered by test/e2e/test_jupyterhub_auth.py.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AddressInfo } from 'node:net';
import Database from 'better-sqlite3';
import WebSocket from 'ws';
import { resolveConfig } from '../../src/config.js';
import { makeLogger, startGateway, type RunningGateway } from '../../src/server.js';
import { freePort } from '../../../ui-tests/support/processes.mjs';
import { request, wsUrl } from '../support/gateway.js';

/** The Hub's cache period the gateway uses (JupyterHubAuthenticator.cacheSeconds), and the slack a loaded machine may need on top. */
const CACHE_MS = 60_000;
const SLACK_MS = 15_000;

interface HubUser {
  admin: boolean;
  groups: string[];
}

/** The stand-in Hub: users, the tokens it issued, and how often /user was asked about each token. */
class StandInHub {
  readonly users = new Map<string, HubUser>();
  /** Token → user name; a revoked token is removed. */
  readonly tokens = new Map<string, string>();
  readonly userCalls = new Map<string, number>();
  private readonly codes = new Map<string, string>();
  private server!: http.Server;
  url = '';

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** A code for the OAuth callback, as the Hub's authorize page hands one out for `name`. */
  codeFor(name: string): string {
    const code = randomBytes(8).toString('hex');
    this.codes.set(code, name);
    return code;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let body = '';
    for await (const chunk of req) body += String(chunk);
    const send = (status: number, json: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(json));
    };
    if (req.method === 'POST' && req.url === '/hub/api/oauth2/token') {
      const name = this.codes.get(new URLSearchParams(body).get('code') ?? '');
      if (!name) return send(400, { error: 'invalid_grant' });
      const token = `hub-oauth-SECRET-${randomBytes(16).toString('hex')}`;
      this.tokens.set(token, name);
      return send(200, { access_token: token, token_type: 'Bearer' });
    }
    if (req.method === 'GET' && req.url === '/hub/api/user') {
      const token = (req.headers.authorization ?? '').replace(/^token /, '');
      this.userCalls.set(token, (this.userCalls.get(token) ?? 0) + 1);
      const name = this.tokens.get(token);
      const user = name && this.users.get(name);
      if (!name || !user) return send(403, { status: 403, message: 'Missing or invalid credentials.' });
      return send(200, { kind: 'user', name, admin: user.admin, groups: user.groups, scopes: ['access:services!service=af-gateway'] });
    }
    send(404, { status: 404 });
  }

  close(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}

const hub = new StandInHub();
let gw: RunningGateway;
let dataDir: string;
let log = '';
const sink = new Writable({
  write(chunk: Buffer, _enc, done) {
    log += chunk.toString();
    done();
  },
});

/** Logs `name` in through the Hub as a browser does; returns the session cookie and the Hub token behind it. */
async function hubLogin(name: string): Promise<{ cookie: string; token: string }> {
  const start = await fetch(`${gw.url}/api/af/hub-login`, { redirect: 'manual' });
  expect(start.status).toBe(302);
  const state = new URL(start.headers.get('location')!, hub.url).searchParams.get('state')!;
  const stateCookie = start.headers.get('set-cookie')!.split(';')[0]!;
  const before = new Set(hub.tokens.keys());
  const back = await fetch(`${gw.url}/oauth_callback?code=${hub.codeFor(name)}&state=${state}`, { headers: { cookie: stateCookie }, redirect: 'manual' });
  expect(back.status, await back.clone().text()).toBe(302);
  const cookie = back.headers.getSetCookie().find((c) => c.startsWith('af-gateway-session='))!;
  expect(cookie).toBeDefined();
  const token = [...hub.tokens.keys()].find((t) => !before.has(t))!;
  return { cookie: cookie.split(';')[0]!, token };
}

/** An event stream on a cookie; resolves once its snapshot came. */
function openStream(cookie: string): Promise<{ ws: WebSocket; closed: Promise<number> }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl(gw, '/api/af/events'), { headers: { cookie }, origin: gw.url });
    const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
    ws.once('message', () => resolve({ ws, closed }));
    ws.once('unexpected-response', (_q, res) => reject(new Error(`the upgrade answered ${res.statusCode}`)));
    ws.on('error', () => undefined);
  });
}

/** Polls `probe` every 500 ms until it holds; the time it took (ms), or a failure after `limitMs`. */
async function until(probe: () => Promise<boolean>, limitMs: number, what: string): Promise<number> {
  const start = Date.now();
  while (!(await probe())) {
    if (Date.now() - start > limitMs) throw new Error(`${what}: not within ${limitMs} ms`);
    await sleep(500);
  }
  return Date.now() - start;
}

type Login = { cookie: string; token: string };
type Stream = Awaited<ReturnType<typeof openStream>>;
let mallory: Login;
let bob: Login;
let dave: Login;
let bobStream: Stream;

beforeAll(async () => {
  await hub.start();
  hub.users.set('mallory', { admin: true, groups: ['ops'] });
  hub.users.set('bob', { admin: false, groups: [] });
  hub.users.set('dave', { admin: false, groups: [] });
  dataDir = mkdtempSync(join(tmpdir(), 'af-hub-session-'));
  const config = resolveConfig({
    listen: `127.0.0.1:${await freePort()}`,
    data_dir: dataDir,
    accounts: { name_template: 'af-{user}' }, // no cluster is started: the accounts need not exist
    auth: { type: 'jupyterhub', jupyterhub: { api_url: `${hub.url}/hub/api`, api_token: 'service-token', client_id: 'service-af-gateway' } },
  });
  // debug: every line the gateway can write is written, to look for the Hub token in it
  gw = await startGateway(config, makeLogger('debug', sink));
  // all three logins are confirmed by the Hub now; the next confirmation is due in a minute
  mallory = await hubLogin('mallory');
  bob = await hubLogin('bob');
  dave = await hubLogin('dave');
  bobStream = await openStream(bob.cookie);
  expect((await request(gw, 'GET', '/api/af/clusters', { headers: { cookie: bob.cookie } })).status).toBe(200);
  hub.tokens.delete(bob.token); // revoked at the Hub (the second test looks at what became of bob)
});

afterAll(async () => {
  await gw?.close();
  await hub.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe('a Hub login session follows the Hub (stand-in Hub)', () => {
  it(
    'a demoted admin who keeps the cookie loses the admin views within the cache period, and the cached period costs no Hub call',
    async () => {
      const all = () => request(gw, 'GET', '/api/af/clusters?all=true', { headers: { cookie: mallory.cookie } });
      expect((await all()).status).toBe(200); // an admin now
      const stream = await openStream(mallory.cookie);
      const callsAtLogin = hub.userCalls.get(mallory.token) ?? 0;
      for (let i = 0; i < 50; i++) expect((await all()).status).toBe(200);
      expect(hub.userCalls.get(mallory.token) ?? 0, 'Hub calls for requests inside the cache period').toBe(callsAtLogin);

      hub.users.set('mallory', { admin: false, groups: [] }); // the Hub's admin takes the right away
      const demotedAt = Date.now();
      const took = await until(async () => (await all()).status === 403, CACHE_MS + SLACK_MS, "mallory's admin list refused");
      const refused = await all();
      expect(refused.json).toMatchObject({ error: expect.stringMatching(/Only administrators/) });
      // the stream that showed every user's clusters is closed for its rights (the existing re-check)
      expect(await Promise.race([stream.closed, sleep(SLACK_MS).then(() => 'open')])).toBe(4403);
      // mallory's own view still works: the session lives on with the rights the Hub gives now
      expect((await request(gw, 'GET', '/api/af/clusters', { headers: { cookie: mallory.cookie } })).status).toBe(200);
      console.log(`the demoted admin was refused ${took} ms after the Hub's change (${Date.now() - demotedAt} ms with the checks after it)`);

      // dave's session was last confirmed at his login, over a minute ago: a burst of his requests
      // that all need the Hub asks it once
      const before = hub.userCalls.get(dave.token) ?? 0;
      const burst = await Promise.all(Array.from({ length: 20 }, () => request(gw, 'GET', '/api/af/clusters', { headers: { cookie: dave.cookie } })));
      expect(burst.map((r) => r.status)).toEqual(Array(20).fill(200));
      expect((hub.userCalls.get(dave.token) ?? 0) - before, 'Hub calls for a burst of 20 requests').toBe(1);
    },
    CACHE_MS + 4 * SLACK_MS,
  );

  it(
    'a session whose Hub token was revoked ends: its event stream closes with 4401, the cookie gets a 401',
    async () => {
      // revoked a minute or more ago (before the first test): the stream's own re-check has asked the Hub by now
      expect(await Promise.race([bobStream.closed, sleep(CACHE_MS + SLACK_MS).then(() => 'still open')])).toBe(4401);
      const refused = await request(gw, 'GET', '/api/af/clusters', { headers: { cookie: bob.cookie } });
      expect(refused.status).toBe(401);
      // the session is gone, not only refused once: its row is removed
      const db = new Database(join(dataDir, 'state.sqlite'), { readonly: true });
      try {
        expect(db.prepare('SELECT COUNT(*) AS n FROM sessions WHERE "user" LIKE ?').get('%"bob"%')).toEqual({ n: 0 });
      } finally {
        db.close();
      }
    },
    CACHE_MS + 2 * SLACK_MS,
  );

  it('the Hub token is sealed in the store and never in the log', async () => {
    const carol = (hub.users.set('carol', { admin: false, groups: [] }), await hubLogin('carol'));
    expect((await request(gw, 'GET', '/api/af/clusters', { headers: { cookie: carol.cookie } })).status).toBe(200);
    const db = new Database(join(dataDir, 'state.sqlite'), { readonly: true });
    let rows: { user: string; hub_token: string | null }[];
    try {
      rows = db.prepare('SELECT "user", hub_token FROM sessions').all() as typeof rows;
    } finally {
      db.close();
    }
    const row = rows.find((r) => r.user.includes('"carol"'));
    expect(row?.hub_token, 'the session row keeps the Hub token').toMatch(/^v1:/);
    // no file of the data directory (the database, its WAL) holds any Hub token in clear
    for (const file of readdirSync(dataDir, { withFileTypes: true })
      .filter((f) => f.isFile())
      .map((f) => f.name)) {
      const bytes = readFileSync(join(dataDir, file));
      for (const token of [carol.token, mallory.token, dave.token]) expect(bytes.includes(token), `${file} holds a Hub token`).toBe(false);
    }
    expect(log.length).toBeGreaterThan(0);
    for (const token of [carol.token, mallory.token, bob.token, dave.token]) expect(log.includes(token), 'the log holds a Hub token').toBe(false);
    expect(log.includes('hub-oauth-SECRET')).toBe(false);
  });
});
