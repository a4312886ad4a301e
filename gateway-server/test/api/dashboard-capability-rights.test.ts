// A dashboard capability (the sandboxed page's address) issued to an admin's login session for
// another user's cluster keeps only the rights of that session: a hostile admin demoted at the Hub
// who kept the page's address cannot open the dashboard's WebSocket with it once the session was
// confirmed at the Hub again; nor can one whose cookie came with an Authorization header that
// proved nobody keep it past a logout. The Hub is a STAND-IN (a function answering for /user); the
// dashboard is a plain TCP server that counts the connections proxied to it.
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { DashboardCapabilities, dashboardProxy, dashboardUpgradeHandler } from '../../src/api/dashboard-proxy.js';
import { routeAuth } from '../../src/api/route-auth.js';
import { Identifier } from '../../src/auth/identify.js';
import { Sessions } from '../../src/auth/sessions.js';
import type { User } from '../../src/auth/authenticator.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { SecretBox } from '../../src/store/crypto.js';

let dir: string;
let store: SqliteStore;
let dashboard: net.Server;
let gateway: http.Server;
let connections = 0;
let mallory: User = { name: 'mallory', groups: ['ops'], admin: true };
let carol: User = { name: 'carol', groups: [], admin: true };
let sessions: Sessions;
let app: FastifyInstance;
/** Every socket either server saw, destroyed at the end (a proxied WebSocket stays open). */
const sockets = new Set<net.Socket>();

/**
 * The status line the gateway answers a dashboard WebSocket upgrade at `path` with; `keep` gets the
 * socket, left open. `headers`: a sandboxed page's (Origin: null) unless given.
 */
function upgrade(path: string, keep?: (s: net.Socket) => void, headers: Record<string, string> = { origin: 'null' }): Promise<string> {
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`);
  return new Promise((resolve, reject) => {
    const s = net.connect((gateway.address() as net.AddressInfo).port, '127.0.0.1', () =>
      s.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra.join('')}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n\r\n`,
      ),
    );
    let got = '';
    s.on('data', (d: Buffer) => {
      got += d.toString();
      if (got.includes('\r\n')) {
        resolve(got.split('\r\n')[0]!);
        if (keep) keep(s);
        else s.destroy();
      }
    });
    s.on('error', reject);
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'af-dash-rights-'));
  store = new SqliteStore(join(dir, 'state.sqlite'), SecretBox.fromBase64(randomBytes(32).toString('base64')));
  sessions = new Sessions(store, 86_400, false);
  sessions.confirmAtHub({ cacheSeconds: 60, confirm: async (token) => (token === 'carol-hub-token' ? carol : mallory) });
  dashboard = net.createServer((s) => {
    sockets.add(s);
    connections++;
    s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
  });
  await new Promise<void>((r) => dashboard.listen(0, '127.0.0.1', r));
  const cluster = {
    name: 'c1',
    username: 'bob',
    status: 'RUNNING',
    dashboardAddress: `http://127.0.0.1:${(dashboard.address() as net.AddressInfo).port}`,
  };
  const clusters = { get: async (name: string) => (name === 'c1' ? cluster : undefined) } as never;
  // an authenticator that takes carol's Hub token (and keeps it with the session it opens for it), and no other Authorization header
  const hubToken = (authorization: string) => (authorization === 'token carol-hub-token' ? 'carol-hub-token' : undefined);
  const identifier = new Identifier(
    { challenge: 'jupyterhub', cacheSeconds: 60, authenticate: async (a) => (hubToken(a) ? carol : null), sessionToken: hubToken },
    sessions,
  );
  app = Fastify();
  app.addSchema({ $id: 'error.json', type: 'object' }); // what the dashboard route's error answers refer to
  await app.register(routeAuth, { identifier, clusters, metricsToken: null, basePath: '/' });
  await app.register(dashboardProxy, { clusters, identifier, basePath: '/', capabilities, sessions });
  await app.ready();
  const handler = dashboardUpgradeHandler({
    clusters,
    identifier,
    log: pino({ level: 'silent' }) as unknown as FastifyBaseLogger,
    capabilities,
    sessions,
  });
  gateway = http.createServer((_q, res) => res.writeHead(404).end());
  gateway.on('upgrade', (req, socket, head) => {
    sockets.add(socket as net.Socket);
    void handler(req, socket, head);
  });
  await new Promise<void>((r) => gateway.listen(0, '127.0.0.1', r));
});

afterAll(async () => {
  await app?.close();
  sessions?.close();
  for (const s of sockets) s.destroy();
  await new Promise((r) => gateway?.close(r));
  await new Promise((r) => dashboard?.close(r));
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});
afterEach(() => vi.useRealTimers());

const capabilities = new DashboardCapabilities();

describe("a dashboard capability issued to an admin's Hub login session", () => {
  it('opens the dashboard while the session is an admin, and no longer once the Hub demoted it', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const t0 = Date.now();
    const cookie = (await sessions.create(mallory, '/', 'hub-token')).split(';')[0]!;
    const key = sessions.keyOf({ cookie })!;
    const cap = capabilities.issue('mallory', 'c1', key); // what the credentialed dashboard path issued to the admin
    let open!: net.Socket;
    expect(await upgrade(`/clusters/c1/~${cap}/status/ws`, (s) => (open = s))).toMatch(/^HTTP\/1.1 101/);
    expect(connections).toBe(1);
    const closed = new Promise<void>((r) => open.once('close', () => r()));

    mallory = { ...mallory, admin: false, groups: [] }; // demoted at the Hub
    vi.setSystemTime(t0 + 61_000); // past the Hub cache period: the next use asks the Hub
    expect(await upgrade(`/clusters/c1/~${cap}/status/ws`)).toMatch(/^HTTP\/1.1 403/);
    expect(connections, 'connections proxied to the dashboard').toBe(1);
    // and the dashboard socket it opened as an admin is closed (at the confirmation that demoted it)
    expect(await Promise.race([closed.then(() => 'closed'), new Promise((r) => setTimeout(() => r('still open'), 5000))])).toBe('closed');
  });

  it('closes the dashboard WebSocket of an admin demoted at the Hub who makes no other request (the socket asks again itself)', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const t0 = Date.now();
    mallory = { name: 'mallory', groups: ['ops'], admin: true };
    const cookie = (await sessions.create(mallory, '/', 'hub-token')).split(';')[0]!;
    const cap = capabilities.issue('mallory', 'c1', sessions.keyOf({ cookie })!);
    let open!: net.Socket;
    expect(await upgrade(`/clusters/c1/~${cap}/status/ws`, (s) => (open = s))).toMatch(/^HTTP\/1.1 101/);
    const closed = new Promise<void>((r) => open.once('close', () => r()));

    mallory = { ...mallory, admin: false, groups: [] }; // demoted at the Hub; she keeps only this socket
    vi.setSystemTime(t0 + 61_000);
    const after = await Promise.race([closed.then(() => 'closed'), new Promise((r) => setTimeout(() => r('still open'), 8000))]);
    expect(after, 'the socket 8 s after its session was due at the Hub').toBe('closed');
  }, 15_000);
});

describe("a request with the cookie of an admin's session and an Authorization header that proves nobody", () => {
  // carol, an admin, adds a junk Authorization header to her cookie: her identity still comes from
  // the cookie's session, so what she opens with it must end with that session too.
  it('gets a dashboard capability and a dashboard WebSocket of another user that end with the session (its logout)', async () => {
    const carol: User = { name: 'carol', groups: [], admin: true };
    const cookie = (await sessions.create(carol)).split(';')[0]!;
    const headers = { cookie, authorization: 'Bearer not-a-credential-of-this-gateway' };
    const issued = await app.inject({ method: 'GET', url: '/clusters/c1/status', headers });
    expect(issued.statusCode, issued.body).toBe(303);
    const cap = /\/~([^/]+)\//.exec(String(issued.headers.location))![1]!;
    let open!: net.Socket;
    expect(await upgrade('/clusters/c1/status/ws', (s) => (open = s), { ...headers, origin: 'http://127.0.0.1' })).toMatch(/^HTTP\/1.1 101/);
    const closed = new Promise<void>((r) => open.once('close', () => r()));

    await sessions.end(cookie); // carol logs out
    expect(await upgrade(`/clusters/c1/~${cap}/status/ws`), 'the capability after the logout').toMatch(/^HTTP\/1.1 401/);
    const after = await Promise.race([closed.then(() => 'closed'), new Promise((r) => setTimeout(() => r('still open'), 5000))]);
    expect(after, "the dashboard WebSocket opened with the session's cookie, after the logout").toBe('closed');
  });
});

describe("a dashboard address issued to an admin's Hub token (Authorization header, no cookie)", () => {
  it('follows the Hub: refused once the Hub demoted her and the session opened for the token was due', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const t0 = Date.now();
    carol = { name: 'carol', groups: [], admin: true };
    const issued = await app.inject({ method: 'GET', url: '/clusters/c1/status', headers: { authorization: 'token carol-hub-token' } });
    expect(issued.statusCode, issued.body).toBe(303);
    const cap = /\/~([^/]+)\//.exec(String(issued.headers.location))![1]!;
    expect(await upgrade(`/clusters/c1/~${cap}/status/ws`)).toMatch(/^HTTP\/1.1 101/);

    carol = { ...carol, admin: false }; // demoted at the Hub; she keeps the address
    vi.setSystemTime(t0 + 61_000);
    expect(await upgrade(`/clusters/c1/~${cap}/status/ws`), 'the address a minute after the demotion').toMatch(/^HTTP\/1.1 403/);
  });
});
