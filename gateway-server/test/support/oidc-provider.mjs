// A real OpenID provider for the tests (the certified `oidc-provider` package), issuing JWT access
// tokens with WLCG groups through the client-credentials grant. Each client's id is the token's
// `sub`, so clients stand for users here: alice, bob, admin and a CI pipeline.
//
// As a module: `startOidcProvider()`; run directly (`node oidc-provider.mjs`), it starts one on a
// free port, prints {"issuer": ...} as one JSON line and serves until stdin closes or SIGTERM.
//
// HTTP by default. With `tls: {cert, key, ca}` (PEM text; run directly: the files named by
// OIDC_TLS_CERT, OIDC_TLS_KEY and OIDC_TLS_CA) it serves HTTPS and its issuer is
// https://127.0.0.1:PORT, as a real issuer's must be for storage (XRootD's SciTokens plugin) and
// HTCondor to fetch its keys; `ca` is what its own helpers (token(), browserLogin()) trust.
//
// Storage (WLCG profile): clients may ask for storage.read:/, storage.create:/ and storage.modify:/
// and for the resource https://wlcg.cern.ch/jwt/v1/any (the WLCG "any" audience) or a storage
// endpoint's own URL (https://, davs:// or root:// on 127.0.0.1 or localhost), which becomes the
// token's `aud`. Every access token carries "wlcg.ver": "1.0", which tells token libraries
// (scitokens-cpp) to read its scopes as the WLCG profile's.
//
// Run directly, it also answers lines on stdin: {"sign": {claims}} prints {"token": "<JWT>"}, the
// claims signed with its current key (tokens no client could get: expired ones, other scopes). Only
// the process that started it can ask; nothing of this is reachable over the network.
import Provider, { errors } from 'oidc-provider';
import * as jose from 'jose';
import https from 'node:https';
import { readFileSync } from 'node:fs';

export const CLIENTS = {
  alice: { secret: 'alice-secret', groups: ['/cms', '/af/users'] },
  bob: { secret: 'bob-secret', groups: ['/atlas', '/af/users'] },
  admin: { secret: 'admin-secret', groups: ['/af/admins'] },
  'ci-pipeline': { secret: 'ci-secret', groups: ['/cms', '/cms/ci'] },
};
export const AUDIENCE = 'af-gateway';
const SCOPES = ['openid', 'offline_access', 'compute.create', 'compute.read', 'storage.read:/', 'storage.create:/', 'storage.modify:/'];
export const WLCG_ANY_AUDIENCE = 'https://wlcg.cern.ch/jwt/v1/any';
// a storage endpoint's URL as a resource indicator: its own audience
const STORAGE_RESOURCE = /^(https|davs|root):\/\/(127\.0\.0\.1|localhost)(:[0-9]{1,5})?\/?$/;

async function newKey(kid) {
  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  return { ...(await jose.exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
}

export const GATEWAY_CLIENT = { id: 'af-gateway', secret: 'af-gateway-secret' };
export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

/**
 * fetch(), or with `ca` (PEM) a small stand-in for it over node:https that trusts that CA (Node's
 * fetch reads extra CAs only at start, from NODE_EXTRA_CA_CERTS): status, ok, headers.get,
 * headers.getSetCookie, text(), json(); redirects are never followed (callers pass redirect: 'manual').
 */
function fetcher(ca) {
  if (!ca) return fetch;
  return (url, { method = 'GET', headers = {}, body } = {}) =>
    new Promise((resolve, reject) => {
      const req = https.request(url, { method, headers, ca, timeout: 30_000 }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const header = (name) => res.headers[name.toLowerCase()];
          resolve({
            status: res.statusCode,
            ok: res.statusCode >= 200 && res.statusCode < 300,
            headers: {
              get: (name) =>
                [header(name)]
                  .flat()
                  .filter((v) => v !== undefined)
                  .join(', ') || null,
              getSetCookie: () => [header('set-cookie') ?? []].flat(),
            },
            text: async () => text,
            json: async () => JSON.parse(text),
          });
        });
      });
      req.on('timeout', () => req.destroy(new Error(`request to ${url} timed out`)));
      req.on('error', reject);
      req.end(body === undefined ? undefined : String(body)); // a string or URLSearchParams, as fetch() takes
    });
}

/**
 * Starts a provider on 127.0.0.1:port (0 = free port). `rotate()` restarts it on the same port
 * with a new signing key (the old one still published), as a provider rotating its keys does.
 *
 * @param {object} [options]
 * @param {number} [options.port] 0 = a free port
 * @param {number} [options.ttl] access tokens' lifetime in seconds
 * @param {string[]} [options.redirectUris] the gateway client's redirect URIs
 * @param {Record<string, unknown>[]} [options.extraClients] more clients, e.g. JupyterHub's own login client
 * @param {{ cert: string | Buffer, key: string | Buffer, ca?: string | Buffer } | null} [options.tls] serve HTTPS with this certificate
 */
export async function startOidcProvider({ port = 0, ttl = 300, redirectUris = [], extraClients = [], tls = null } = {}) {
  let keys = [await newKey('key-1')];
  let server;
  let issuer;
  const scheme = tls ? 'https' : 'http';
  const resources = { [`urn:${AUDIENCE}`]: AUDIENCE, 'urn:other-service': 'other-service', [WLCG_ANY_AUDIENCE]: WLCG_ANY_AUDIENCE };
  const audienceOf = (resource) => resources[resource] ?? (STORAGE_RESOURCE.test(resource) ? resource.replace(/\/$/, '') : undefined);
  const request = fetcher(tls?.ca);

  const boot = async (listenPort) => {
    const provisional = `${scheme}://127.0.0.1:${listenPort}`;
    const provider = new Provider(provisional, {
      clients: [
        ...Object.entries(CLIENTS).map(([id, c]) => ({
          client_id: id,
          client_secret: c.secret,
          grant_types: ['client_credentials'],
          redirect_uris: [],
          response_types: [],
          scope: SCOPES.join(' '),
        })),
        // the gateway's own confidential client: login (code + PKCE) and refresh tokens
        {
          client_id: GATEWAY_CLIENT.id,
          client_secret: GATEWAY_CLIENT.secret,
          grant_types: ['authorization_code', 'refresh_token', TOKEN_EXCHANGE],
          response_types: ['code'],
          redirect_uris: redirectUris.length ? redirectUris : ['http://127.0.0.1:1/unused'],
          scope: SCOPES.join(' '),
        },
        // e.g. JupyterHub's own login client: [{client_id, client_secret, redirect_uris}]
        ...extraClients.map((c) => ({
          grant_types: ['authorization_code', 'refresh_token'],
          response_types: ['code'],
          scope: SCOPES.join(' '),
          ...c,
        })),
      ],
      scopes: SCOPES,
      jwks: { keys },
      cookies: { keys: ['test-cookie-key'] },
      features: {
        devInteractions: { enabled: true }, // its login form takes any user name: accounts are the CLIENTS keys
        clientCredentials: { enabled: true },
        introspection: { enabled: true },
        revocation: { enabled: true },
        resourceIndicators: {
          enabled: true,
          defaultResource: () => `urn:${AUDIENCE}`,
          useGrantedResource: () => true,
          getResourceServerInfo: (_ctx, resource) => {
            const audience = audienceOf(resource);
            if (!audience) throw new errors.InvalidTarget(`unknown resource ${resource}`);
            return { scope: SCOPES.join(' '), audience, accessTokenFormat: 'jwt', accessTokenTTL: ttl };
          },
        },
      },
      ttl: { ClientCredentials: ttl, AccessToken: ttl },
      // groups of the user (accountId) for logins, of the client for client credentials
      extraTokenClaims: async (_ctx, token) => ({ 'wlcg.ver': '1.0', 'wlcg.groups': CLIENTS[token.accountId ?? token.clientId]?.groups ?? [] }),
    });
    provider.on('server_error', (_ctx, err) => console.error('oidc-provider error:', err));
    // RFC 8693 token exchange, as INDIGO IAM offers it: oidc-provider has no built-in handler, so the
    // harness registers one through the provider's grant-type extension point. It trades a valid
    // access token of this issuer for one with the requested audience, same subject and groups.
    provider.registerGrantType(
      TOKEN_EXCHANGE,
      async (ctx) => {
        const { subject_token: subjectToken, subject_token_type: subjectType, audience } = ctx.oidc.params;
        const fail = (error, description) => {
          ctx.status = 400;
          ctx.body = { error, error_description: description };
        };
        if (subjectType !== ACCESS_TOKEN_TYPE) return fail('invalid_request', 'subject_token_type must be an access token');
        if (!audience) return fail('invalid_target', 'audience is required');
        let claims;
        try {
          const set = jose.createLocalJWKSet({ keys: keys.map(({ kty, n, e, kid, alg, use }) => ({ kty, n, e, kid, alg, use })) });
          ({ payload: claims } = await jose.jwtVerify(subjectToken, set, { issuer: provisional }));
        } catch (err) {
          return fail('invalid_grant', `subject_token: ${err.message}`);
        }
        const now = Math.floor(Date.now() / 1000);
        const priv = await jose.importJWK(keys[0], 'RS256');
        const token = await new jose.SignJWT({
          sub: claims.sub,
          scope: claims.scope,
          client_id: ctx.oidc.client.clientId,
          'wlcg.ver': '1.0',
          'wlcg.groups': claims['wlcg.groups'] ?? [],
          aud: audience,
        })
          .setProtectedHeader({ alg: 'RS256', kid: keys[0].kid, typ: 'at+jwt' })
          .setIssuer(provisional)
          .setIssuedAt(now)
          .setExpirationTime(now + ttl)
          .setJti(crypto.randomUUID())
          .sign(priv);
        ctx.body = { access_token: token, issued_token_type: ACCESS_TOKEN_TYPE, token_type: 'Bearer', expires_in: ttl };
      },
      ['subject_token', 'subject_token_type', 'audience', 'requested_token_type', 'resource', 'scope'],
    );
    await new Promise((resolve, reject) => {
      server = tls ? https.createServer({ cert: tls.cert, key: tls.key }, provider.callback()) : null;
      server = server ? server.listen(listenPort, '127.0.0.1', resolve) : provider.listen(listenPort, '127.0.0.1', resolve);
      server.once('error', reject);
    });
    return provider;
  };

  // Bind once to learn a free port, then start the provider with its issuer on that port; never a
  // port fetch() refuses (the gateway could not reach its issuer: "bad port").
  if (port === 0) {
    const net = await import('node:net');
    const bad = new Set(JSON.parse(readFileSync(new URL('../../../test-harness/fetch-bad-ports.json', import.meta.url), 'utf8')).ports);
    do {
      port = await new Promise((resolve) => {
        const s = net.createServer().listen(0, '127.0.0.1', () => {
          const p = s.address().port;
          s.close(() => resolve(p));
        });
      });
    } while (bad.has(port));
  }
  issuer = `${scheme}://127.0.0.1:${port}`;
  await boot(port);

  const stop = () => new Promise((resolve) => (server.closeAllConnections?.(), server.close(() => resolve())));

  return {
    issuer,
    port,
    /** A real access token for `client` (its id is the `sub`) with the given scopes and resource. */
    async token(client, { scope = 'openid compute.create compute.read', resource = `urn:${AUDIENCE}` } = {}) {
      const res = await request(`${issuer}/token`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: 'Basic ' + Buffer.from(`${client}:${CLIENTS[client].secret}`).toString('base64'),
        },
        body: new URLSearchParams({ grant_type: 'client_credentials', scope, resource }),
      });
      const body = await res.json();
      if (!res.ok) throw new Error(`token request failed: ${JSON.stringify(body)}`);
      return body.access_token;
    },
    /** Signs arbitrary claims with the provider's current key (for tokens no client could get). */
    async sign(claims, { header = {}, key = keys[0] } = {}) {
      const priv = await jose.importJWK(key, 'RS256');
      return new jose.SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: key.kid, typ: 'at+jwt', ...header }).sign(priv);
    },
    /**
     * A user's login through the provider's login and consent pages, as a browser would do it,
     * starting at `startUrl` (the gateway's /api/af/login or the provider's /auth). Returns the
     * final redirect (to the client's redirect_uri) and the cookies set by the origin of `startUrl`.
     */
    async browserLogin(startUrl, login) {
      const jar = new Map(); // origin -> Map(name -> value)
      const cookieHeader = (url) => [...(jar.get(new URL(url).origin) ?? new Map())].map(([k, v]) => `${k}=${v}`).join('; ');
      const keep = (url, res) => {
        const origin = new URL(url).origin;
        if (!jar.has(origin)) jar.set(origin, new Map());
        for (const c of res.headers.getSetCookie()) {
          const [pair] = c.split(';');
          const eq = pair.indexOf('=');
          jar.get(origin).set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
        }
      };
      let url = startUrl;
      let method = 'GET';
      let body;
      for (let hop = 0; hop < 20; hop++) {
        const res = await request(url, {
          method,
          redirect: 'manual',
          headers: { cookie: cookieHeader(url), ...(body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
          body,
        });
        keep(url, res);
        method = 'GET';
        body = undefined;
        if (res.status >= 300 && res.status < 400) {
          const next = new URL(res.headers.get('location'), url).toString();
          if (!next.startsWith(issuer) && !next.startsWith(new URL(startUrl).origin)) {
            return { location: next, cookies: cookieHeader(startUrl) }; // leaving both: the client's redirect_uri
          }
          url = next;
          continue;
        }
        const html = await res.text();
        if (res.status !== 200) return { status: res.status, body: html, cookies: cookieHeader(startUrl), url };
        const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1];
        const prompt = /name="prompt" value="([^"]+)"/.exec(html)?.[1];
        if (!action || !prompt) return { status: res.status, body: html, cookies: cookieHeader(startUrl), url };
        url = new URL(action, url).toString();
        method = 'POST';
        body = new URLSearchParams(prompt === 'login' ? { prompt, login, password: 'any' } : { prompt }).toString();
      }
      throw new Error('too many redirects in the login');
    },
    /** Restarts with a new signing key first; the old key stays published for tokens in flight. */
    async rotate() {
      await stop();
      keys = [await newKey(`key-${keys.length + 1}`), ...keys];
      await boot(port);
    },
    close: stop,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { OIDC_TLS_CERT: certFile, OIDC_TLS_KEY: keyFile, OIDC_TLS_CA: caFile } = process.env;
  if (Boolean(certFile) !== Boolean(keyFile)) throw new Error('OIDC_TLS_CERT and OIDC_TLS_KEY go together');
  const tls = certFile ? { cert: readFileSync(certFile), key: readFileSync(keyFile), ca: caFile ? readFileSync(caFile) : undefined } : null;
  const op = await startOidcProvider({
    ttl: Number(process.env.OIDC_TTL ?? 300),
    port: Number(process.env.OIDC_PORT ?? 0),
    extraClients: JSON.parse(process.env.OIDC_EXTRA_CLIENTS ?? '[]'),
    tls,
  });
  console.log(JSON.stringify({ issuer: op.issuer, audience: AUDIENCE, clients: Object.fromEntries(Object.entries(CLIENTS).map(([k, v]) => [k, v.secret])) }));
  const quit = async () => {
    await op.close();
    process.exit(0);
  };
  // one request a line: {"sign": {claims}} -> {"token": ...}; anything else -> {"error": ...}
  const { createInterface } = await import('node:readline');
  createInterface({ input: process.stdin, crlfDelay: Infinity }).on('line', async (line) => {
    if (!line.trim()) return;
    try {
      const req = JSON.parse(line);
      if (!req || typeof req.sign !== 'object' || req.sign === null) throw new Error('expected {"sign": {claims}}');
      console.log(JSON.stringify({ token: await op.sign(req.sign) }));
    } catch (err) {
      console.log(JSON.stringify({ error: err.message }));
    }
  });
  process.stdin.on('end', quit);
  process.on('SIGTERM', quit);
  process.on('SIGINT', quit);
}
