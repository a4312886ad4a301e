// The confirmation of Hub logins' sessions (sessions.ts) on its own, with a stand-in for the Hub's
// /user (a function the test answers): the grace while the Hub cannot be asked and the 503 after
// it, one Hub call for concurrent requests, a session in PostgreSQL that a standby taking over
// confirms with the same (sealed) token (and whose fresher answer an older one does not overwrite),
// and a session opened for a Hub token in an Authorization header. The whole path through a gateway is in hub-session-hostile.
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { HUB_GRACE_MS, SESSION_COOKIE, Sessions, type HubConfirmation } from '../../src/auth/sessions.js';
import type { User } from '../../src/auth/authenticator.js';
import { AppError } from '../../src/errors.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { PostgresStore } from '../../src/store/postgres-store.js';
import { SecretBox } from '../../src/store/crypto.js';
import { Identifier } from '../../src/auth/identify.js';
import { JupyterHubAuthenticator } from '../../src/auth/jupyterhub-authenticator.js';
import { startPostgres, type PostgresServer } from '../support/postgres-server.js';

const CACHE_S = 60;
const alice: User = { name: 'alice', groups: ['ops'], admin: true };

/** A stand-in Hub: `answer` decides each confirmation; `calls` counts them, by token. */
function standInHub(answer: (token: string) => Promise<User>): HubConfirmation & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    cacheSeconds: CACHE_S,
    confirm: (token) => {
      calls.push(token);
      return answer(token);
    },
  };
}

const cookieOf = (setCookie: string) => setCookie.split(';')[0]!;
const unreachable = () => Promise.reject(new AppError(503, 'hub_unreachable', 'JupyterHub could not be reached to check the token: connect ECONNREFUSED'));

let dir: string;
let store: SqliteStore;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'af-hub-confirm-'));
  store = new SqliteStore(join(dir, 'state.sqlite'), SecretBox.fromBase64(randomBytes(32).toString('base64')));
});
afterAll(async () => {
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});
afterEach(() => vi.useRealTimers());

describe('Hub login sessions', () => {
  it('keep the last answer for HUB_GRACE_MS while the Hub cannot be asked, asking it at most every 10 s, then refuse with a 503 until it answers', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const t0 = Date.now();
    let answer: (token: string) => Promise<User> = unreachable;
    const hub = standInHub((t) => answer(t));
    const sessions = new Sessions(store, 86_400, false);
    sessions.confirmAtHub(hub);
    const cookie = cookieOf(await sessions.create(alice, '/', 'hub-token-1'));

    vi.setSystemTime(t0 + 30_000);
    expect(await sessions.resolve(cookie)).toEqual(alice); // inside the cache period: no call
    expect(hub.calls).toEqual([]);

    vi.setSystemTime(t0 + CACHE_S * 1000 + 1000);
    expect(await sessions.resolve(cookie)).toEqual(alice); // due, the Hub is away: the last answer
    expect(hub.calls).toEqual(['hub-token-1']);
    vi.setSystemTime(t0 + CACHE_S * 1000 + 5000);
    expect(await sessions.resolve(cookie)).toEqual(alice);
    expect(hub.calls.length, 'a second call within 10 s of the first').toBe(1);
    vi.setSystemTime(t0 + CACHE_S * 1000 + 12_000);
    expect(await sessions.resolve(cookie)).toEqual(alice);
    expect(hub.calls.length).toBe(2);

    vi.setSystemTime(t0 + HUB_GRACE_MS + 1000); // the Hub last answered at login, over 5 minutes ago
    const refused = await sessions.resolve(cookie).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(refused).toBeInstanceOf(AppError);
    expect(refused).toMatchObject({ statusCode: 503, code: 'hub_unreachable', headers: { 'Retry-After': '30' } });
    expect((refused as Error).message).toMatch(/has not confirmed this login for 5 minutes .*try again/);

    answer = async () => ({ ...alice, admin: false }); // back, and alice is no admin any more
    expect(await sessions.resolve(cookie)).toEqual({ ...alice, admin: false });
  });

  it('ask the Hub once for concurrent requests, and end the session the Hub refuses', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const t0 = Date.now();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const hub = standInHub(async () => {
      await gate;
      throw new AppError(401, 'invalid_credentials', 'JupyterHub did not accept this API token (expired or revoked?)');
    });
    const sessions = new Sessions(store, 86_400, false);
    sessions.confirmAtHub(hub);
    const ended: string[] = [];
    sessions.onEnd((key) => ended.push(key));
    const cookie = cookieOf(await sessions.create(alice, '/', 'hub-token-2'));
    vi.setSystemTime(t0 + CACHE_S * 1000 + 1000);
    const all = Array.from({ length: 10 }, () => sessions.resolve(cookie));
    await new Promise((r) => setTimeout(r, 50));
    release();
    expect(await Promise.all(all)).toEqual(Array(10).fill(undefined));
    expect(hub.calls).toEqual(['hub-token-2']);
    expect(ended.length).toBe(1);
    expect(await store.findSession(ended[0]!, Date.now())).toBeUndefined(); // the row (and its token) is gone
  });
});

describe('a session opened for a Hub token in an Authorization header (the cookie the gateway hands back)', () => {
  // carol, an admin at the Hub, sends her Hub API token once (curl, the dask_gateway client), keeps
  // the Set-Cookie of the answer and uses only that cookie from then on. The real authenticator asks
  // a stand-in Hub's /user (an HTTP server here that answers as JupyterHub 2+ does).
  const hubUsers = new Map<string, { admin: boolean } | undefined>();
  let hubServer: http.Server;
  let hubUrl: string;
  beforeAll(async () => {
    hubServer = http.createServer((req, res) => {
      const token = (req.headers.authorization ?? '').replace(/^token /, '');
      const who = token === 'carol-hub-token' ? hubUsers.get('carol') : undefined;
      res.writeHead(who ? 200 : 403, { 'content-type': 'application/json' });
      res.end(JSON.stringify(who ? { kind: 'user', name: 'carol', admin: who.admin, groups: [], scopes: ['access:services'] } : { status: 403 }));
    });
    await new Promise<void>((r) => hubServer.listen(0, '127.0.0.1', r));
    hubUrl = `http://127.0.0.1:${(hubServer.address() as AddressInfo).port}/hub/api`;
  });
  afterAll(() => new Promise<void>((r) => (hubServer ? hubServer.close(() => r()) : r())));

  it('follows the Hub as a Hub login does: demoted there, the cookie loses the admin right after the cache period; revoked there, it ends', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const t0 = Date.now();
    hubUsers.set('carol', { admin: true });
    const hub = new JupyterHubAuthenticator(hubUrl, []);
    const sessions = new Sessions(store, 86_400, false);
    sessions.confirmAtHub({ confirm: (token) => hub.confirm(token), cacheSeconds: hub.cacheSeconds });
    const identifier = new Identifier(hub, sessions);
    const first = await identifier.identify({ authorization: 'jupyterhub carol-hub-token' });
    expect(first.user).toMatchObject({ name: 'carol', admin: true });
    const cookie = cookieOf(first.setCookie!);

    hubUsers.set('carol', { admin: false }); // the Hub's admin takes the right away
    vi.setSystemTime(t0 + CACHE_S * 1000 + 1000);
    expect((await identifier.identify({ cookie })).user, 'the cookie a minute after the demotion').toMatchObject({ name: 'carol', admin: false });

    hubUsers.set('carol', undefined); // and revokes her tokens
    vi.setSystemTime(t0 + 2 * (CACHE_S * 1000 + 1000));
    await expect(identifier.identify({ cookie })).rejects.toMatchObject({ statusCode: 401 });
    sessions.close();
  });
});

describe('a Hub login session on a gateway without a Hub to ask (auth.type changed since)', () => {
  it('is not honoured', async () => {
    const withHub = new Sessions(store, 86_400, false);
    withHub.confirmAtHub(standInHub(async () => alice));
    const cookie = cookieOf(await withHub.create(alice, '/', 'hub-token-3'));
    expect(await withHub.resolve(cookie)).toEqual(alice);
    expect(await new Sessions(store, 86_400, false).resolve(cookie)).toBeUndefined();
  });
});

describe('Hub login sessions in PostgreSQL', () => {
  let server: PostgresServer;
  beforeAll(() => {
    server = startPostgres();
  }, 60_000);
  afterAll(() => server?.stop());

  it('keep the token sealed in the row, and a standby that takes over confirms with it', async () => {
    const url = await server.newDatabase();
    const box = SecretBox.fromBase64(randomBytes(32).toString('base64')); // replicas share encrypt_key
    const warn = () => {};
    const serving = await PostgresStore.open({ url, poolSize: 2, box, warn });
    const standby = await PostgresStore.open({ url, poolSize: 2, box, warn });
    try {
      const token = `hub-oauth-SECRET-${randomBytes(8).toString('hex')}`;
      const first = new Sessions(serving, 86_400, false);
      first.confirmAtHub(standInHub(async () => alice));
      const cookie = cookieOf(await first.create(alice, '/', token));

      const raw = new pg.Client({ connectionString: url });
      await raw.connect();
      try {
        const { rows } = await raw.query<{ hub_token: string; hub_checked: string }>('SELECT hub_token, hub_checked FROM sessions');
        expect(rows.length).toBe(1);
        expect(rows[0]!.hub_token).toMatch(/^v1:/);
        expect(JSON.stringify(rows)).not.toContain(token);
      } finally {
        await raw.end();
      }

      // the standby takes over a minute later: it asks the Hub with the session's token, and takes its word
      vi.useFakeTimers({ toFake: ['Date'] });
      vi.setSystemTime(Date.now() + CACHE_S * 1000 + 1000);
      const hub = standInHub(async () => ({ ...alice, admin: false, groups: [] }));
      const second = new Sessions(standby, 86_400, false);
      second.confirmAtHub(hub);
      expect(await second.resolve(cookie)).toEqual({ ...alice, admin: false, groups: [] });
      expect(hub.calls).toEqual([token]);
      // and stores it: a third replica reads the new user without asking (inside the cache period)
      const third = new Sessions(standby, 86_400, false);
      const quiet = standInHub(async () => alice);
      third.confirmAtHub(quiet);
      expect(await third.resolve(cookie)).toEqual({ ...alice, admin: false, groups: [] });
      expect(quiet.calls).toEqual([]);
      expect(SESSION_COOKIE).toBe(cookie.split('=')[0]);
    } finally {
      await serving.close();
      await standby.close();
    }
  }, 60_000);

  it('keep the answer of the Hub asked last when two replicas confirm at once: the slower, older answer is not stored over it', async () => {
    // A takeover: the replica that served asked the Hub (carol still an admin), lost its lease and
    // got the answer late; the one that took over asked after the Hub demoted her, and stored that first.
    const url = await server.newDatabase();
    const box = SecretBox.fromBase64(randomBytes(32).toString('base64'));
    const warn = () => {};
    const serving = await PostgresStore.open({ url, poolSize: 2, box, warn });
    const standby = await PostgresStore.open({ url, poolSize: 2, box, warn });
    try {
      const carol: User = { name: 'carol', groups: [], admin: true };
      const demoted: User = { ...carol, admin: false };
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const slowHub = standInHub(async () => {
        await gate;
        return carol;
      });
      const old = new Sessions(serving, 86_400, false);
      old.confirmAtHub(slowHub);
      const cookie = cookieOf(await old.create(carol, '/', 'hub-token-carol'));

      vi.useFakeTimers({ toFake: ['Date'] });
      const t0 = Date.now();
      vi.setSystemTime(t0 + CACHE_S * 1000 + 1000);
      const slow = old.resolve(cookie); // asks the Hub; the answer comes late
      while (!slowHub.calls.length) await new Promise((r) => setTimeout(r, 10));
      vi.setSystemTime(t0 + CACHE_S * 1000 + 2000);
      const taker = new Sessions(standby, 86_400, false);
      taker.confirmAtHub(standInHub(async () => demoted));
      expect(await taker.resolve(cookie)).toEqual(demoted);
      release();
      expect(await slow).toEqual(carol); // the request on the old replica got the old answer

      vi.setSystemTime(t0 + CACHE_S * 1000 + 3000);
      const reader = new Sessions(standby, 86_400, false); // a process that reads the row, inside the cache period
      const quiet = standInHub(async () => carol);
      reader.confirmAtHub(quiet);
      expect(await reader.resolve(cookie), 'the stored user').toEqual(demoted);
      expect(quiet.calls).toEqual([]);
    } finally {
      await serving.close();
      await standby.close();
    }
  }, 60_000);
});
