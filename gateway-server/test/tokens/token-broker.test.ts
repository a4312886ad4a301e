// The token broker against a real OpenID provider with short-lived access tokens: the gateway's
// login, a running cluster whose token file is kept fresh past the access-token lifetime, the
// token status and its events, and a revoked refresh token.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import * as jose from 'jose';
import WebSocket from 'ws';
import type { TokenStatus } from '@af-gateway/schemas';
import { bodyAjv } from '../../src/schemas.js';
import { freePort, request, startTestGateway, wsUrl, type TestGateway } from '../support/gateway.js';
import { startOidcProvider, AUDIENCE, GATEWAY_CLIENT } from '../support/oidc-provider.mjs';

const TTL = 8; // seconds an access token lives
const UNUSED_REDIRECT = 'http://127.0.0.1:1/elsewhere';
let op: {
  issuer: string;
  browserLogin(url: string, login: string): Promise<{ location?: string; cookies: string; status?: number; body?: string }>;
  close(): Promise<void>;
};
let gw: TestGateway;
let cookie: string;
const validStatus = bodyAjv.getSchema('token-status.json')!;

async function api(method: string, path: string, body?: unknown) {
  const r = await request(gw, method, path, { headers: { cookie }, body });
  return { status: r.status, json: r.json, body: r.body };
}

/** The cluster's files are in its owner's account (af-alice, made by scripts/test-accounts.sh). */
const workDirOf = (cluster: string) =>
  join(execFileSync('getent', ['passwd', 'af-alice'], { encoding: 'utf8' }).split(':')[5]!, '.af-gateway', 'clusters', cluster);
const jwks = () => jose.createRemoteJWKSet(new URL(`${op.issuer}/jwks`));

beforeAll(async () => {
  const port = await freePort();
  op = await startOidcProvider({ ttl: TTL, redirectUris: [`http://127.0.0.1:${port}/api/af/login/callback`, UNUSED_REDIRECT] });
  gw = await startTestGateway(
    {
      listen: `127.0.0.1:${port}`,
      accounts: { name_template: 'af-{user}' }, // real accounts: scripts/test-accounts.sh
      auth: {
        type: 'oidc',
        oidc: {
          issuer: op.issuer,
          audience: [AUDIENCE],
          client_id: GATEWAY_CLIENT.id,
          client_secret: GATEWAY_CLIENT.secret,
          token_params: { resource: `urn:${AUDIENCE}` },
          login_scopes: ['openid', 'offline_access', 'compute.create'],
          clock_skew: 0,
        },
      },
      tokens: { refresh_margin: 4, refresh_jitter: 0, retry_period: 1, exchange_audiences: ['rucio'] },
    },
    { prefix: 'af-broker-' },
  );
});

afterAll(async () => {
  await gw?.close();
  await op?.close();
});

describe('token broker', () => {
  let cluster: string;
  let firstToken: string;

  it('logs a user in through the provider and reports the token without revealing it', async () => {
    const login = await op.browserLogin(`${gw.url}/api/af/login?next=/api/af/token`, 'alice');
    expect(login.status).toBe(200);
    cookie = login.cookies;
    expect(cookie).toMatch(/af-gateway-session=/);
    const status = JSON.parse(login.body!) as TokenStatus;
    expect(validStatus(status)).toBe(true);
    expect(status).toMatchObject({
      user: 'alice',
      source: 'login',
      subject: 'alice',
      issuer: op.issuer,
      audience: [AUDIENCE],
      groups: ['/cms', '/af/users'],
      refresh: { state: 'ok' },
    });
    expect(status.seconds_left).toBeGreaterThan(0);
    expect(status.seconds_left).toBeLessThanOrEqual(TTL);
    expect(JSON.stringify(status)).not.toMatch(/eyJ/); // no JWT in the status
  });

  it('writes the token into a running cluster', async () => {
    const created = await api('POST', '/api/v1/clusters/', {});
    expect(created.status).toBe(201);
    cluster = created.json.name as string;
    for (let i = 0; i < 10 && (await api('GET', `/api/v1/clusters/${cluster}?wait`)).json.status !== 'RUNNING'; i++);
    firstToken = (await api('GET', '/api/af/token/access')).json.access_token as string;
    const file = join(workDirOf(cluster), 'bearer-token');
    expect(readFileSync(file, 'utf8').trim()).toBe(firstToken);
    const status = (await api('GET', '/api/af/token')).body as TokenStatus;
    expect(status.deliveries).toEqual([{ target: `cluster:${cluster}`, written_at: expect.any(Number), current: true }]);
  });

  it('exchanges the token for another audience (RFC 8693), only for configured audiences', async () => {
    const r = await api('GET', '/api/af/token/access?audience=rucio');
    expect(r.status).toBe(200);
    const token = r.json.access_token as string;
    const { payload } = await jose.jwtVerify(token, jwks(), { issuer: op.issuer, audience: 'rucio' });
    expect(payload).toMatchObject({ sub: 'alice', 'wlcg.groups': ['/cms', '/af/users'] });
    expect((await api('GET', '/api/af/token/access?audience=rucio')).json.access_token).toBe(token); // reused
    const other = await api('GET', '/api/af/token/access?audience=storage');
    expect(other.status).toBe(422);
    expect(other.json.error).toMatch(/tokens\.exchange_audiences/);
  });

  it('keeps the token file valid after the first access token expired, and says so on the stream', async () => {
    const ws = new WebSocket(wsUrl(gw, '/api/af/events'), { headers: { cookie } });
    const tokenEvents: TokenStatus[] = [];
    ws.on('message', (d) => {
      const e = JSON.parse(String(d));
      if (e.type === 'token') tokenEvents.push(e.token);
    });
    const firstExp = jose.decodeJwt(firstToken).exp! * 1000;
    await new Promise((r) => setTimeout(r, Math.max(0, firstExp - Date.now()) + 1500));
    expect(Date.now()).toBeGreaterThan(firstExp); // the first token is dead now
    const file = join(workDirOf(cluster), 'bearer-token');
    const current = readFileSync(file, 'utf8').trim();
    expect(current).not.toBe(firstToken);
    const { payload } = await jose.jwtVerify(current, jwks(), { issuer: op.issuer, audience: AUDIENCE });
    expect(payload.sub).toBe('alice');
    expect(payload.exp! * 1000).toBeGreaterThan(Date.now());
    expect(tokenEvents.length).toBeGreaterThan(0);
    expect(tokenEvents.at(-1)).toMatchObject({ source: 'login', refresh: { state: 'ok' }, deliveries: [{ current: true }] });
    ws.close();
  });

  it('shows a revoked refresh token as such, and the cluster keeps running', async () => {
    // A refresh token for the gateway's client obtained elsewhere (as a Hub would), handed over ...
    const verifier = jose.base64url.encode(crypto.getRandomValues(new Uint8Array(32)));
    const challenge = jose.base64url.encode(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier))));
    const auth = new URL(`${op.issuer}/auth`);
    for (const [k, v] of Object.entries({
      client_id: GATEWAY_CLIENT.id,
      response_type: 'code',
      redirect_uri: UNUSED_REDIRECT,
      scope: 'openid offline_access compute.create',
      resource: `urn:${AUDIENCE}`,
      prompt: 'consent',
      code_challenge: challenge,
      code_challenge_method: 'S256',
      state: 's',
    }))
      auth.searchParams.set(k, v);
    const { location } = await op.browserLogin(auth.toString(), 'alice');
    const code = new URL(location!).searchParams.get('code')!;
    const basic = 'Basic ' + Buffer.from(`${GATEWAY_CLIENT.id}:${GATEWAY_CLIENT.secret}`).toString('base64');
    const tokens = (await (
      await fetch(`${op.issuer}/token`, {
        method: 'POST',
        headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          grant_type: 'authorization_code',
          code,
          redirect_uri: UNUSED_REDIRECT,
          code_verifier: verifier,
          resource: `urn:${AUDIENCE}`,
        }),
      })
    ).json()) as { refresh_token: string };
    const handed = await api('PUT', '/api/af/token/refresh-token', { refresh_token: tokens.refresh_token });
    expect(handed.status).toBe(200);
    expect(handed.json).toMatchObject({ source: 'handed-over', refresh: { state: 'ok' } });
    // ... the broker rotates it on its first use; revoke what the provider issued, then refresh.
    const rotated = await api('POST', '/api/af/token/refresh');
    expect(rotated.json).toMatchObject({ refresh: { state: 'ok' } });
    const revokeAll = await fetch(`${op.issuer}/token/revocation`, {
      method: 'POST',
      headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: tokens.refresh_token, token_type_hint: 'refresh_token' }),
    });
    expect(revokeAll.status).toBe(200);
    const after = await api('POST', '/api/af/token/refresh');
    // Revoking a rotated refresh token revokes its whole grant in oidc-provider, so the broker's
    // current refresh token is refused too.
    expect(after.json).toMatchObject({ refresh: { state: 'revoked', message: expect.stringMatching(/no longer accepts the refresh token.*log in again/) } });
    expect((await api('GET', `/api/v1/clusters/${cluster}`)).json.status).toBe('RUNNING');
    expect(existsSync(join(workDirOf(cluster), 'bearer-token'))).toBe(true);
  });

  it('binds a login to the browser that began it (no login CSRF) and redirects only on its own origin', async () => {
    const start = await fetch(`${gw.url}/api/af/login?next=${encodeURIComponent('/\\evil.example/')}`, { redirect: 'manual' });
    expect(start.status).toBe(302);
    expect(start.headers.get('set-cookie')).toMatch(/^af-gateway-login=[^;]+; Path=\/; HttpOnly; SameSite=Lax/);
    const state = new URL(start.headers.get('location')!).searchParams.get('state')!;
    // the attacker sends the victim's browser to the callback of the attacker's login: no cookie
    const forged = await fetch(`${gw.url}/api/af/login/callback?state=${state}&code=attackers-code`, { redirect: 'manual' });
    expect(forged.status).toBe(400);
    expect(((await forged.json()) as { code: string }).code).toBe('login_not_yours');
  });

  it("refuses another user's refresh token and a bogus one", async () => {
    expect((await api('PUT', '/api/af/token/refresh-token', { refresh_token: 'not-a-refresh-token' })).status).toBe(422);
    expect((await api('PUT', '/api/af/token/refresh-token', {})).status).toBe(422);
    await api('DELETE', `/api/v1/clusters/${cluster}`);
  });
});

describe('login under a base path', () => {
  it('sends the provider a redirect URI under the base path (a gateway behind JupyterHub)', async () => {
    const behindHub = await startTestGateway(
      {
        accounts: { name_template: 'af-{user}' }, // real accounts: scripts/test-accounts.sh
        base_path: '/services/af-gateway/',
        auth: { type: 'oidc', oidc: { issuer: op.issuer, audience: [AUDIENCE], client_id: GATEWAY_CLIENT.id, client_secret: GATEWAY_CLIENT.secret } },
      },
      { prefix: 'af-broker-base-' },
    );
    try {
      const res = await fetch(`${behindHub.url}/services/af-gateway/api/af/login`, { redirect: 'manual' });
      expect(res.status).toBe(302);
      const to = new URL(res.headers.get('location')!);
      expect(to.searchParams.get('redirect_uri')).toBe(`${behindHub.url}/services/af-gateway/api/af/login/callback`);
      const stale = await fetch(`${behindHub.url}/services/af-gateway/api/af/login/callback?state=unknown&code=x`);
      expect(((await stale.json()) as { error: string }).error).toContain('start again at /services/af-gateway/api/af/login');
    } finally {
      await behindHub.close();
    }
  });
});
