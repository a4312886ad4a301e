// OIDC bearer authentication against a real OpenID provider: the auth matrix over every kind of
// route, and key rotation.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import * as jose from 'jose';
import { createServer, type Server } from 'node:http';
import { ConfigError, resolveConfig } from '../../src/config.js';
import { makeLogger, startGateway } from '../../src/server.js';
import { bearer, handshakeStatus, request, oidcGatewaySettings, startTestGateway, type TestGateway } from '../support/gateway.js';
import { OidcAuthenticator } from '../../src/auth/oidc-authenticator.js';
import { OidcIssuer } from '../../src/auth/oidc-issuer.js';
import { startOidcProvider, AUDIENCE } from '../support/oidc-provider.mjs';

interface Op {
  issuer: string;
  token(client: string, o?: { scope?: string; resource?: string }): Promise<string>;
  sign(claims: Record<string, unknown>, o?: { key?: jose.JWK }): Promise<string>;
  rotate(): Promise<void>;
  close(): Promise<void>;
}

let op: Op;
let gw: TestGateway;
let aliceCluster: string;

async function status(method: string, path: string, headers: Record<string, string>, body?: unknown) {
  const r = await request(gw, method, path, { headers, body });
  return { status: r.status, json: r.json as Record<string, string>, challenge: r.headers.get('www-authenticate') };
}

const wsStatus = (headers: Record<string, string>) => handshakeStatus(gw, '/api/af/events', headers);

/** The provider's current signing key as a PEM public key, as anyone may fetch it from its JWKS. */
async function issuerPublicKeyPem(): Promise<string> {
  const meta = (await (await fetch(`${op.issuer}/.well-known/openid-configuration`)).json()) as { jwks_uri: string };
  const { keys } = (await (await fetch(meta.jwks_uri)).json()) as { keys: jose.JWK[] };
  const key = (await jose.importJWK(
    keys.find((k) => k.kid === 'key-1')!,
    'RS256',
    { extractable: true },
  )) as CryptoKey;
  return jose.exportSPKI(key);
}

beforeAll(async () => {
  op = (await startOidcProvider()) as Op;
  gw = await startTestGateway(oidcGatewaySettings(op.issuer, AUDIENCE, 5), { prefix: 'af-oidc-' });
  const created = await status('POST', '/api/v1/clusters/', bearer(await op.token('alice')), {});
  expect(created.status).toBe(201);
  aliceCluster = created.json.name!;
});

afterAll(async () => {
  await gw?.close();
  await op?.close();
});

describe('auth matrix', () => {
  const now = () => Math.floor(Date.now() / 1000);
  const claims = (over: Record<string, unknown> = {}) => ({
    iss: op.issuer,
    sub: 'alice',
    aud: AUDIENCE,
    scope: 'compute.create',
    iat: now(),
    exp: now() + 300,
    'wlcg.groups': ['/cms'],
    ...over,
  });

  const cases: [string, () => Promise<Record<string, string>>, number, RegExp][] = [
    ['no token', async () => ({}), 401, /Authentication required/],
    ['an empty bearer', async () => ({ authorization: 'Bearer ' }), 401, /no token/],
    ['expired', async () => bearer(await op.sign(claims({ iat: now() - 600, exp: now() - 300 }))), 401, /expired/],
    ['not yet valid', async () => bearer(await op.sign(claims({ nbf: now() + 600 }))), 401, /not valid yet/],
    [
      'bad signature',
      async () => {
        const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
        const forged = { ...(await jose.exportJWK(privateKey)), kid: 'key-1', alg: 'RS256' };
        return bearer(await op.sign(claims(), { key: forged }));
      },
      401,
      /signature does not verify/,
    ],
    ['unknown issuer', async () => bearer(await op.sign(claims({ iss: 'http://127.0.0.1:1/other' }))), 401, /another issuer/],
    ['wrong audience', async () => bearer(await op.token('alice', { resource: 'urn:other-service' })), 401, /not meant for this gateway/],
    ['missing scope', async () => bearer(await op.token('alice', { scope: 'openid compute.read' })), 403, /lacks the scope compute.create/],
    ['not a JWT', async () => bearer('opaque-token-without-introspection'), 401, /not a JWT/],
    // algorithm confusion: an HMAC keyed with the issuer's published public key, which anyone can compute
    [
      'HS256 keyed with the public key',
      async () => {
        const pem = await issuerPublicKeyPem();
        const forged = await new jose.SignJWT(claims()).setProtectedHeader({ alg: 'HS256', kid: 'key-1', typ: 'at+jwt' }).sign(new TextEncoder().encode(pem));
        return bearer(forged);
      },
      401,
      /signed with HS256, which this gateway does not accept/,
    ],
    [
      'an unsigned token (alg none)',
      async () => {
        const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
        return bearer(`${part({ alg: 'none', typ: 'JWT' })}.${part(claims())}.`);
      },
      401,
      /signed with none, which this gateway does not accept/,
    ],
  ];

  it.each(cases)('%s is refused on the API, the dashboards and the event stream', async (_what, headers, code, message) => {
    const h = await headers();
    const api = await status('GET', '/api/v1/clusters/', h);
    expect(api.status).toBe(code);
    expect(api.json.error).toMatch(message);
    expect(api.challenge).toMatch(/^Bearer realm="af-gateway"/);
    expect((await status('GET', `/clusters/${aliceCluster}/status`, h)).status).toBe(code);
    expect((await status('POST', `/api/v1/clusters/${aliceCluster}/scale`, h, { count: 1 })).status).toBe(code);
    expect((await status('GET', '/api/af/token', h)).status).toBe(code);
    expect((await status('GET', '/api/af/token/access', h)).status).toBe(code);
    expect(await wsStatus(h)).toBe(code);
  });

  it('lets the owner in everywhere', async () => {
    const h = bearer(await op.token('alice'));
    expect((await status('GET', `/api/v1/clusters/${aliceCluster}?wait`, h)).status).toBe(200);
    expect((await status('GET', `/clusters/${aliceCluster}/status`, h)).status).toBe(303); // to the page's sandboxed capability path
    expect(await wsStatus(h)).toBe(101);
    // the token the request carried is what the broker knows of alice (no refresh token)
    expect((await status('GET', '/api/af/token', h)).json).toMatchObject({ user: 'alice', source: 'request', refresh: { state: 'none' } });
    const access = (await status('GET', '/api/af/token/access', h)).json;
    expect(jose.decodeJwt(access.access_token!)).toMatchObject({ sub: 'alice', aud: AUDIENCE });
    const mine = await status('GET', '/api/af/clusters', h);
    expect(mine.json).toMatchObject({ clusters: [expect.objectContaining({ name: aliceCluster, owner: 'alice' })] });
  });

  it("keeps another user's cluster out of reach, and lets an admin group in", async () => {
    const bob = bearer(await op.token('bob'));
    expect((await status('GET', `/api/v1/clusters/${aliceCluster}`, bob)).status).toBe(403);
    expect((await status('GET', `/clusters/${aliceCluster}/status`, bob)).status).toBe(403);
    expect((await status('POST', `/api/v1/clusters/${aliceCluster}/scale`, bob, { count: 1 })).status).toBe(403);
    const admin = bearer(await op.token('admin'));
    expect((await status('GET', `/api/v1/clusters/${aliceCluster}`, admin)).status).toBe(200);
    expect((await status('GET', '/api/af/clusters?all=true', admin)).status).toBe(200);
    expect((await status('GET', '/metrics', admin)).status).toBe(200);
    expect((await status('GET', '/metrics', bob)).status).toBe(403);
  });
});

describe('key rotation', () => {
  it('accepts tokens signed with a new key once the provider publishes it', async () => {
    await op.rotate();
    const fresh = await op.token('alice');
    expect(jose.decodeProtectedHeader(fresh).kid).toBe('key-2');
    expect((await status('GET', '/api/v1/clusters/', bearer(fresh))).status).toBe(200);
  });
});

describe('configuration refused or pinned', () => {
  const oidcConfig = (oidc: Record<string, unknown>) => resolveConfig({ auth: { type: 'oidc', oidc: { issuer: op.issuer, ...oidc } } }).auth.oidc;

  it('refuses to start without an audience unless allow_any_audience is set, naming the keys', async () => {
    const start = startGateway(
      resolveConfig({ listen: '127.0.0.1:0', data_dir: join(gw.dataDir, 'no-aud'), auth: { type: 'oidc', oidc: { issuer: op.issuer } } }),
      makeLogger('silent'),
    );
    await expect(start).rejects.toThrow(ConfigError);
    await expect(start).rejects.toThrow(/auth\.oidc\.audience.*auth\.oidc\.allow_any_audience: true/);
    // the provider behind a JupyterHub gateway (the token broker's) is held to the same rule
    expect(() => new OidcAuthenticator(new OidcIssuer(oidcConfig({})), [], [])).toThrow(/auth\.oidc\.audience/);
    const any = new OidcAuthenticator(new OidcIssuer(oidcConfig({ allow_any_audience: true })), [], []);
    const other = await op.token('alice', { resource: 'urn:other-service' });
    expect((await any.verify(other)).name).toBe('alice');
  });

  it('accepts only the configured algorithms (auth.oidc.algorithms)', async () => {
    const esOnly = new OidcAuthenticator(new OidcIssuer(oidcConfig({ audience: [AUDIENCE], algorithms: ['ES256'] })), [], []);
    await expect(esOnly.verify(await op.token('alice'))).rejects.toMatchObject({
      statusCode: 401,
      message: expect.stringMatching(/signed with RS256.*auth\.oidc\.algorithms: ES256/),
    });
    expect(() => resolveConfig({ auth: { oidc: { algorithms: ['HS256'] } } })).toThrow(ConfigError);
    expect(() => resolveConfig({ auth: { oidc: { algorithms: ['none'] } } })).toThrow(ConfigError);
  });
});

describe('introspection answers', () => {
  // A stand-in introspection endpoint (RFC 7662): the test provider always names its issuer, but the
  // RFC makes iss optional and a federating endpoint may vouch for other issuers' tokens.
  let answer: Record<string, unknown> = {};
  let standIn: Server;
  let auth: OidcAuthenticator;
  beforeAll(async () => {
    standIn = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer)));
    await new Promise<void>((r) => standIn.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(standIn.address() as { port: number }).port}/introspect`;
    const cfg = resolveConfig({
      auth: {
        type: 'oidc',
        oidc: { issuer: op.issuer, audience: [AUDIENCE], client_id: 'af-gateway', client_secret: 'x', introspection: { enabled: true, url } },
      },
    }).auth.oidc;
    auth = new OidcAuthenticator(new OidcIssuer(cfg), [], []);
  });
  afterAll(() => new Promise<void>((r) => standIn.close(() => r())));

  const exp = () => Math.floor(Date.now() / 1000) + 300;
  it.each([
    ['names no issuer', () => ({ active: true, sub: 'mallory', aud: AUDIENCE, exp: exp() }), /names no issuer/],
    [
      'names another issuer',
      () => ({ active: true, iss: 'https://other.example/', sub: 'mallory', aud: AUDIENCE, exp: exp() }),
      /issued by https:\/\/other\.example\//,
    ],
    ['says active as a string', () => ({ active: 'true', iss: op.issuer, sub: 'mallory', aud: AUDIENCE, exp: exp() }), /not active/],
  ])('refuses a token whose introspection %s', async (_what, body, message) => {
    answer = body();
    await expect(auth.verify('opaque-token')).rejects.toMatchObject({ statusCode: 401, message: expect.stringMatching(message) });
  });

  it('accepts an active token of the configured issuer', async () => {
    answer = { active: true, iss: op.issuer, sub: 'alice', aud: AUDIENCE, exp: exp() };
    expect((await auth.verify('opaque-token')).name).toBe('alice');
  });
});
