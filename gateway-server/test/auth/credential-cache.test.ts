// Credentials are verified once, not on every request: a client that sends the same Authorization
// header each time (curl, scripts, monitoring) is checked once and shares one login session instead
// of a new session row per request. The cache keys on the whole header, so any other credential —
// a wrong password after the right one, a changed byte of a token — is verified (and refused) on
// its own; nothing outlives a token's exp, a Hub token is asked about again after a minute, and a
// logout ends the shared session. Expired session rows are pruned.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { Identifier } from '../../src/auth/identify.js';
import { Sessions } from '../../src/auth/sessions.js';
import { SimpleAuthenticator } from '../../src/auth/simple-authenticator.js';
import { OidcAuthenticator } from '../../src/auth/oidc-authenticator.js';
import { OidcIssuer } from '../../src/auth/oidc-issuer.js';
import { CredentialCache } from '../../src/auth/credential-cache.js';
import type { Authenticator, User } from '../../src/auth/authenticator.js';
import { AppError } from '../../src/errors.js';
import { resolveConfig } from '../../src/config.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { SecretBox } from '../../src/store/crypto.js';
import { basic, request, SINGLE_USER, startTestGateway } from '../support/gateway.js';
import { startOidcProvider, AUDIENCE } from '../support/oidc-provider.mjs';

let dir: string;
let file: string;
let store: SqliteStore;
let sessions: Sessions;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'af-credcache-'));
  file = join(dir, 'state.sqlite');
  store = new SqliteStore(file, SecretBox.fromBase64(randomBytes(32).toString('base64')));
  sessions = new Sessions(store, 3600, false);
});

afterEach(async () => {
  vi.useRealTimers();
  sessions.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Session rows in the state file, as another reader sees them. */
function sessionRows(): number {
  const db = new Database(file, { readonly: true });
  try {
    return (db.prepare('SELECT COUNT(*) AS n FROM sessions').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

/** Wraps an authenticator, counting the credentials it is asked to verify. */
function counting(inner: Authenticator): Authenticator & { calls: number } {
  const a = {
    calls: 0,
    challenge: inner.challenge,
    get cacheSeconds() {
      return inner.cacheSeconds;
    },
    authenticate(h: string) {
      a.calls++;
      return inner.authenticate(h);
    },
  };
  return a;
}

/** Bearer tokens from a table: what a provider or the Hub would say of each; anything else is refused. */
function tokenTable(table: Map<string, User>, cacheSeconds?: number): Authenticator {
  return {
    challenge: 'Bearer',
    cacheSeconds,
    async authenticate(h) {
      if (!h.startsWith('Bearer ')) return null;
      const user = table.get(h.slice('Bearer '.length));
      if (!user) throw new AppError(401, 'invalid_credentials', 'no such token');
      return user;
    },
  };
}

const cookieOf = (setCookie: string | undefined) => setCookie?.split(';')[0];
const status = (p: Promise<unknown>) =>
  p.then(
    () => 200,
    (err: unknown) => (err instanceof AppError ? err.statusCode : 500),
  );

describe('a credential sent on every request', () => {
  it('is verified once and gets one session, however many requests carry it without a cookie', async () => {
    const auth = counting(new SimpleAuthenticator('s3cret', []));
    const id = new Identifier(auth, sessions);
    const header = basic('alice', 's3cret');
    // a burst at once (a new client's 64 connections), then one after another
    const burst = await Promise.all(Array.from({ length: 64 }, () => id.identify(header)));
    const serial = [];
    for (let i = 0; i < 200; i++) serial.push(await id.identify(header));
    const all = [...burst, ...serial];
    expect(all.every((r) => r.user.name === 'alice')).toBe(true);
    expect(auth.calls).toBe(1);
    expect(sessionRows()).toBe(1);
    // each answer still carries the cookie (the dask_gateway client keeps it), the same one
    const cookies = new Set(all.map((r) => cookieOf(r.setCookie)));
    expect(cookies.size).toBe(1);
    const [cookie] = [...cookies];
    expect(cookie).toMatch(/^af-gateway-session=[\w-]{43}$/);
    // with its cookie the client is known without a word more, and no cookie is set again
    const again = await id.identify({ ...header, cookie: cookie! });
    expect(again).toEqual({ user: { name: 'alice', groups: [], admin: false } });
    expect((await id.identify({ cookie: cookie! })).user.name).toBe('alice');
    expect(sessionRows()).toBe(1);
  });

  it('keys on the whole credential: a wrong password after the right one is still a 401', async () => {
    const auth = counting(new SimpleAuthenticator('s3cret', []));
    const id = new Identifier(auth, sessions);
    expect((await id.identify(basic('alice', 's3cret'))).user.name).toBe('alice');
    for (const wrong of ['s3cre', 's3cret ', 'S3CRET', 's3cret\u0000', '']) {
      expect(await status(id.identify(basic('alice', wrong)))).toBe(401);
    }
    // a header that differs only in how it is written is verified on its own (and here accepted)
    const b64 = Buffer.from('alice:s3cret').toString('base64');
    expect((await id.identify({ authorization: `basic ${b64}` })).user.name).toBe('alice');
    expect(await status(id.identify({ authorization: `Basic ${b64.slice(0, -2)}` }))).toBe(401);
    expect(auth.calls).toBe(1 + 5 + 2);
    // failures are never cached: the wrong password is checked (and refused) again
    expect(await status(id.identify(basic('alice', 'wrong')))).toBe(401);
    expect(auth.calls).toBe(9);
  });

  it('keeps no credential: its key is an HMAC with a key of this process', () => {
    const header = basic('alice', 's3cret').authorization;
    const a = new CredentialCache();
    const b = new CredentialCache();
    const key = a.keyOf(header);
    expect(key).toMatch(/^[\w-]{43}$/);
    expect(key).not.toContain(header.slice(6));
    expect(key).not.toBe(createHash('sha256').update(header).digest('base64url'));
    expect(b.keyOf(header)).not.toBe(key); // another process, another key
    expect(a.keyOf(header + ' ')).not.toBe(key);
  });

  it('stays bounded: the least recently used credential goes first', () => {
    const cache = new CredentialCache(3);
    const user: User = { name: 'u', groups: [], admin: false };
    const until = Date.now() + 60_000;
    for (const k of ['a', 'b', 'c']) cache.set(k, { user, until });
    expect(cache.get('a')).toBeDefined(); // a used: b is now the oldest
    cache.set('d', { user, until });
    expect(cache.size).toBe(3);
    expect(cache.get('b')).toBeUndefined();
    expect(['a', 'c', 'd'].every((k) => cache.get(k))).toBe(true);
  });

  it('ends with a logout: the old cookie opens nothing, and the credential gets a new session', async () => {
    const id = new Identifier(new SimpleAuthenticator(null, []), sessions);
    const first = cookieOf((await id.identify(basic('alice'))).setCookie)!;
    await sessions.end(first);
    expect(await status(id.identify({ cookie: first }))).toBe(401);
    const second = cookieOf((await id.identify(basic('alice'))).setCookie)!;
    expect(second).not.toBe(first);
    expect((await id.identify({ cookie: second })).user.name).toBe('alice');
    expect(sessionRows()).toBe(1);
  });
});

describe('the answer from memory alone (identifyNow, what most requests take)', () => {
  it('agrees with identify, and never answers what needs a check: a new or wrong credential, a session to open, a cookie not yet read', async () => {
    const auth = counting(new SimpleAuthenticator('s3cret', []));
    const id = new Identifier(auth, sessions);
    const alice = basic('alice', 's3cret');
    const conn = {}; // a keep-alive connection
    expect(id.identifyNow(alice, '/', conn)).toBeUndefined(); // not verified yet
    const first = await id.identify(alice);
    const now = id.identifyNow(alice, '/', conn);
    expect(now).toEqual(first); // the same user and the same session's cookie
    expect(id.identifyNow(alice, '/base/', conn)?.setCookie).toContain('Path=/base/');
    // another header on the same connection (a proxy's shared connection) is keyed on its own
    for (const wrong of [basic('alice', 's3cre'), basic('bob', 'nope'), { authorization: alice.authorization.slice(0, -2) }]) {
      expect(id.identifyNow(wrong, '/', conn)).toBeUndefined();
      expect(await status(id.identify(wrong))).toBe(401);
      expect(id.identifyNow(alice, '/', conn)?.user.name).toBe('alice'); // and back
    }
    // a cookie is answered once it was read from the store; an unknown one never
    const cookie = cookieOf(first.setCookie)!;
    expect(id.identifyNow({ cookie }, '/', conn)).toBeUndefined();
    expect((await id.identify({ cookie })).user.name).toBe('alice');
    expect(id.identifyNow({ cookie }, '/', conn)).toEqual({ user: first.user });
    expect(id.identifyNow({ cookie: 'af-gateway-session=' + 'x'.repeat(43) })).toBeUndefined();
    expect(id.identifyNow({})).toBeUndefined(); // the 401 comes from identify
    // a logout: the cookie and the credential's session are no longer answered from memory
    await sessions.end(cookie);
    expect(id.identifyNow({ cookie }, '/', conn)).toBeUndefined();
    expect(id.identifyNow(alice, '/', conn)).toBeUndefined();
    expect(auth.calls).toBe(4);
  });
});

describe('how long a verified credential is trusted', () => {
  it('a Hub token is asked about again after its minute: a revoked one is refused, a good one keeps its session', async () => {
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() });
    const table = new Map<string, User>([
      ['hub-a', { name: 'alice', groups: ['cms'], admin: false }],
      ['hub-b', { name: 'bob', groups: [], admin: false }],
    ]);
    const auth = counting(tokenTable(table, 60));
    const id = new Identifier(auth, sessions);
    const a = cookieOf((await id.identify({ authorization: 'Bearer hub-a' })).setCookie);
    await id.identify({ authorization: 'Bearer hub-b' });
    vi.advanceTimersByTime(59_000);
    await id.identify({ authorization: 'Bearer hub-a' });
    expect(auth.calls).toBe(2);
    vi.advanceTimersByTime(2_000);
    table.delete('hub-b'); // revoked at the Hub
    expect(await status(id.identify({ authorization: 'Bearer hub-b' }))).toBe(401);
    const again = await id.identify({ authorization: 'Bearer hub-a' });
    expect(auth.calls).toBe(4);
    expect(cookieOf(again.setCookie)).toBe(a); // the same user: the same session, no new row
    expect(sessionRows()).toBe(2);
    // the Hub now says alice is in other groups: a session of its own with them
    vi.advanceTimersByTime(61_000);
    table.set('hub-a', { name: 'alice', groups: ['atlas'], admin: false });
    const moved = await id.identify({ authorization: 'Bearer hub-a' });
    expect(cookieOf(moved.setCookie)).not.toBe(a);
    expect(moved.user.groups).toEqual(['atlas']);
  });

  describe('a bearer token of the provider', () => {
    interface Op {
      issuer: string;
      sign(claims: Record<string, unknown>): Promise<string>;
      close(): Promise<void>;
    }
    let op: Op;
    beforeAll(async () => {
      op = (await startOidcProvider()) as Op;
    });
    afterAll(async () => {
      await op?.close();
    });

    it('is refused past its exp even though it was cached, and its session ends with it', async () => {
      const oidc = resolveConfig({ auth: { type: 'oidc', oidc: { issuer: op.issuer, audience: [AUDIENCE], clock_skew: 5 } } }).auth.oidc;
      const auth = counting(new OidcAuthenticator(new OidcIssuer(oidc), [], []));
      const id = new Identifier(auth, sessions);
      const now = Math.floor(Date.now() / 1000);
      const token = await op.sign({ iss: op.issuer, sub: 'alice', aud: AUDIENCE, iat: now, exp: now + 120 });
      const header = { authorization: `Bearer ${token}` };
      const first = await id.identify(header);
      expect(first.user.name).toBe('alice');
      const maxAge = Number(/Max-Age=(\d+)/.exec(first.setCookie!)![1]);
      expect(maxAge).toBeGreaterThan(110); // the session ends with the token
      expect(maxAge).toBeLessThanOrEqual(120);
      vi.useFakeTimers({ toFake: ['Date'], now: Date.now() });
      vi.advanceTimersByTime(100_000);
      await id.identify(header);
      expect(auth.calls).toBe(1);
      vi.advanceTimersByTime(20_000 + 6_000); // past exp and the provider's clock skew
      await expect(id.identify(header)).rejects.toMatchObject({ statusCode: 401, message: expect.stringMatching(/expired/) });
      await expect(id.identify({ cookie: cookieOf(first.setCookie)! })).rejects.toMatchObject({ statusCode: 401 });
      expect(auth.calls).toBe(2);
    });
  });
});

describe('a hostile user with what they know of another', () => {
  it("gets nothing from variants of alice's cookie or token, and stays bob with alice's cookie beside his own token", async () => {
    const table = new Map<string, User>([
      ['token-of-alice-0123456789', { name: 'alice', groups: [], admin: false }],
      ['token-of-bob-9876543210', { name: 'bob', groups: [], admin: false }],
    ]);
    const id = new Identifier(tokenTable(table), sessions);
    const alice = await id.identify({ authorization: 'Bearer token-of-alice-0123456789' });
    const cookie = cookieOf(alice.setCookie)!;
    const value = cookie.split('=')[1]!;
    const hashOfValue = createHash('sha256').update(value).digest('hex');
    const cookieVariants = [
      `af-gateway-session=${value}x`,
      `af-gateway-session=${value.slice(0, -1)}`,
      `af-gateway-session=${value.toUpperCase()}`,
      `af-gateway-session=${hashOfValue}`, // what the store keeps opens nothing
      `AF-GATEWAY-SESSION=${value}`,
      `af-gateway-sessionx=${value}`,
      `af-gateway-session=; af-gateway-session=${value}`,
      `af-gateway-session=${encodeURIComponent(value + '\u0000')}`,
    ];
    for (const c of cookieVariants) expect(await status(id.identify({ cookie: c })), c).toBe(401);
    const tokenVariants = ['token-of-alice-012345678', 'token-of-alice-0123456789x', 'TOKEN-OF-ALICE-0123456789', 'token-of-alice-0123456789\u0000', ''];
    for (const t of tokenVariants) expect(await status(id.identify({ authorization: `Bearer ${t}` })), t).toBe(401);
    // bob's own token with alice's cookie: bob, with a session of his own
    const bob = await id.identify({ authorization: 'Bearer token-of-bob-9876543210', cookie });
    expect(bob.user.name).toBe('bob');
    expect(cookieOf(bob.setCookie)).not.toBe(cookie);
    // a wrong token beside alice's cookie is a 401, not alice
    expect(await status(id.identify({ authorization: 'Bearer token-of-alice-0123456789x', cookie }))).toBe(401);
  });
});

describe('a cookie sent on every request', () => {
  it('is read from the store once per 10 s; a logout here forgets it at once, one on another replica within 10 s', async () => {
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() });
    let reads = 0;
    const find = store.findSession.bind(store);
    store.findSession = (key, now) => {
      reads++;
      return find(key, now);
    };
    const other = new Sessions(store, 3600, false); // another replica on the same state
    const cookie = cookieOf(await other.create({ name: 'alice', groups: [], admin: false }))!;
    for (let i = 0; i < 100; i++) expect((await sessions.resolve(cookie))?.name).toBe('alice');
    expect(reads).toBe(1);
    vi.advanceTimersByTime(10_001);
    expect((await sessions.resolve(cookie))?.name).toBe('alice');
    expect(reads).toBe(2);
    await other.end(cookie); // ended over there
    vi.advanceTimersByTime(10_001);
    expect(await sessions.resolve(cookie)).toBeUndefined();
    // ended here: refused on the next request
    const mine = cookieOf(await sessions.create({ name: 'bob', groups: [], admin: false }))!;
    expect((await sessions.resolve(mine))?.name).toBe('bob');
    await sessions.end(mine);
    expect(await sessions.resolve(mine)).toBeUndefined();
    other.close();
  });
});

describe('session rows', () => {
  it('expire and are pruned: at once when pruning starts, then every period', async () => {
    const now = Date.now();
    await store.saveSession('gone-1', '{"name":"alice"}', now - 1000);
    await store.saveSession('live', '{"name":"bob"}', now + 3_600_000);
    await store.saveSession('gone-2', '{"name":"carol"}', now + 150);
    sessions.startPruning(100, (err) => {
      throw err;
    });
    expect(sessionRows()).toBe(2);
    await vi.waitFor(() => expect(sessionRows()).toBe(1), { timeout: 3000, interval: 50 });
    expect((await store.findSession('live', Date.now()))?.user).toBe('{"name":"bob"}');
  });

  it('through the gateway: many Basic requests without a cookie leave one row', async () => {
    const gw = await startTestGateway(SINGLE_USER, { prefix: 'af-credcache-gw-' });
    try {
      const cookies = new Set<string | null>();
      for (let round = 0; round < 10; round++) {
        const answers = await Promise.all(Array.from({ length: 20 }, () => request(gw, 'GET', '/api/v1/clusters/', { headers: basic('alice') })));
        for (const a of answers) {
          expect(a.status).toBe(200);
          cookies.add(a.headers.get('set-cookie')?.split(';')[0] ?? null);
        }
      }
      expect(cookies.size).toBe(1);
      const db = new Database(join(gw.dataDir, 'state.sqlite'), { readonly: true });
      try {
        expect((db.prepare('SELECT COUNT(*) AS n FROM sessions').get() as { n: number }).n).toBe(1);
      } finally {
        db.close();
      }
    } finally {
      await gw.close();
    }
  });
});
