// Logout ends the caller's session: its row, its cookie and every WebSocket opened on it (the event
// stream, a dashboard's). Sockets of a session that expired or was ended on another replica close too.
// A page of another origin can neither log the user out nor change anything with their cookie.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { basic, login as loginAs, request, SINGLE_USER, startTestGateway, wsUrl, type TestGateway } from '../support/gateway.js';
import { Sessions } from '../../src/auth/sessions.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { SecretBox } from '../../src/store/crypto.js';

let gw: TestGateway;
let origin: string;

async function call(method: string, path: string, headers: Record<string, string>, body?: unknown) {
  const r = await request(gw, method, path, { headers, body });
  return { status: r.status, setCookie: r.headers.get('set-cookie'), json: r.json as Record<string, string> };
}

/** A session cookie for `user`, as a browser keeps it after its first request. */
const login = (user: string) => loginAs(gw, basic(user));

/** A WebSocket on the cookie alone, from the gateway's own pages; resolves once it is open. */
function openSocket(path: string, cookie: string, from = origin): Promise<{ ws: WebSocket; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl(gw, path), { headers: cookie ? { cookie } : {}, origin: from });
    const closed = new Promise<void>((r) => ws.once('close', () => r()));
    ws.once('open', () => resolve({ ws, closed }));
    ws.once('unexpected-response', (_q, res) => reject(new Error(`upgrade of ${path} answered ${res.statusCode}`)));
    ws.on('error', () => undefined);
  });
}

const within = <T>(p: Promise<T>, ms: number, what: string) =>
  Promise.race([p, new Promise<never>((_r, reject) => setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms))]);

beforeAll(async () => {
  gw = await startTestGateway(SINGLE_USER, { prefix: 'af-logout-' });
  origin = gw.url;
});

afterAll(async () => {
  await gw?.close();
});

describe('POST /api/af/logout', () => {
  it('is refused from another origin, and so is any other change made with the cookie', async () => {
    const cookie = await login('alice');
    const evil = { cookie, origin: 'http://evil.example' };
    const out = await call('POST', '/api/af/logout', evil);
    expect(out.status).toBe(403);
    expect(out.json).toMatchObject({ code: 'cross_origin', error: expect.stringMatching(/gateway's own pages/) });
    expect(out.setCookie).toBeNull();
    const create = await call('POST', '/api/v1/clusters/', evil, {});
    expect(create).toMatchObject({ status: 403, json: { code: 'cross_origin' } });
    expect((await call('GET', '/api/af/clusters', { cookie })).json).toEqual({ clusters: [] }); // nothing made, still logged in
  });

  it("ends the session: row, cookie, the event stream's and dashboards' WebSockets, and the dashboard capabilities it opened", async () => {
    const cookie = await login('alice');
    const created = await call('POST', '/api/v1/clusters/', basic('alice'), {});
    expect(created.status).toBe(201);
    const name = created.json.name!;
    try {
      const running = await call('GET', `/api/v1/clusters/${name}?wait`, basic('alice'));
      expect(running.json.status).toBe('RUNNING');
      const events = await openSocket('/api/af/events', cookie);
      const dashboard = await openSocket(`/clusters/${name}/status/ws`, cookie);
      // the dashboard page as a browser opens it: the cookie once, then a sandboxed page at a
      // capability path (opaque origin, no cookie) whose bokeh socket rides on the capability
      const page = await fetch(`${gw.url}/clusters/${name}/status`, { headers: { cookie }, redirect: 'manual' });
      expect(page.status).toBe(303);
      const capabilityPage = page.headers.get('location')!;
      expect(capabilityPage).toMatch(new RegExp(`^/clusters/${name}/~[^/]+/status$`));
      expect((await fetch(gw.url + capabilityPage, { redirect: 'manual' })).status).toBe(200);
      const sandboxed = await openSocket(`${capabilityPage}/ws`, '', 'null');
      // bob's session is not alice's: his stream stays open
      const bobs = await openSocket('/api/af/events', await login('bob'));

      const out = await call('POST', '/api/af/logout', { cookie, origin });
      expect(out.status).toBe(204);
      expect(out.setCookie).toMatch(/^af-gateway-session=; Path=\/; HttpOnly; SameSite=Lax; Max-Age=0/);
      await within(events.closed, 2000, 'the event stream closes');
      await within(dashboard.closed, 2000, "the dashboard's WebSocket closes");
      await within(sandboxed.closed, 2000, "the sandboxed dashboard page's WebSocket closes");
      // the capability ended with the session: its page goes back to the login, its socket is refused
      const again = await fetch(gw.url + capabilityPage, { redirect: 'manual' });
      expect(again.status).toBe(303);
      expect(again.headers.get('location')).toBe(`/clusters/${name}/status`);
      await expect(openSocket(`${capabilityPage}/ws`, '', 'null')).rejects.toThrow(/answered 401/);
      expect(bobs.ws.readyState).toBe(WebSocket.OPEN);
      bobs.ws.close();

      // the old cookie opens nothing any more
      expect((await call('GET', '/api/af/clusters', { cookie })).status).toBe(401);
      await expect(openSocket('/api/af/events', cookie)).rejects.toThrow(/answered 401/);
      // logging out again (a stale tab) still clears the cookie
      expect((await call('POST', '/api/af/logout', { cookie, origin })).status).toBe(204);
    } finally {
      await call('DELETE', `/api/v1/clusters/${name}`, basic('alice'));
    }
  });
});

describe('sockets of a session that ends elsewhere', () => {
  /** A connected TCP socket, standing for an upgraded WebSocket's. */
  async function socketPair(): Promise<{ client: net.Socket; server: net.Socket; close(): void }> {
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const accepted = new Promise<net.Socket>((r) => srv.once('connection', r));
    const client = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
    const server = await accepted;
    return {
      client,
      server,
      close: () => {
        client.destroy();
        server.destroy();
        srv.close();
      },
    };
  }
  const closedSoon = (s: net.Socket, ms: number) => within(new Promise<void>((r) => (s.destroyed ? r() : s.once('close', () => r()))), ms, 'the socket closes');

  it('closes them when the session expires, or when another replica logs it out', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'af-logout-store-'));
    const store = new SqliteStore(join(dir, 'state.sqlite'), SecretBox.fromBase64(randomBytes(32).toString('base64')));
    try {
      const here = new Sessions(store, 3600, false, 100);
      const there = new Sessions(store, 3600, false, 100); // another replica on the same state
      // a session that ends with its credential, 1 s from now
      const short = (await here.create({ name: 'alice', groups: [], admin: false, expiresAt: Date.now() + 1000 })).split(';')[0]!;
      const long = (await here.create({ name: 'alice', groups: [], admin: false })).split(';')[0]!;
      const a = await socketPair();
      const b = await socketPair();
      const withHeader = await socketPair();
      here.bindSocket({ cookie: short }, a.server);
      here.bindSocket({ cookie: long }, b.server);
      here.bindSocket({ cookie: long, authorization: 'Bearer x' }, withHeader.server); // rides on its own credential
      await closedSoon(a.server, 3000);
      expect(b.server.destroyed).toBe(false);
      await there.end(long);
      await closedSoon(b.server, 1000);
      expect(withHeader.server.destroyed).toBe(false);
      here.close();
      for (const p of [a, b, withHeader]) p.close();
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
