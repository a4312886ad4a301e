// A real OpenID provider for the tests (the certified `oidc-provider` package), issuing JWT access
// tokens with WLCG groups through the client-credentials grant. Each client's id is the token's
// `sub`, so clients stand for users here: alice, bob, admin and a CI pipeline.
//
// As a module: `startOidcProvider()`; run directly (`node oidc-provider.mjs`), it starts one on a
// free port, prints {"issuer": ...} as one JSON line and serves until stdin closes or SIGTERM.
import Provider from 'oidc-provider';
import * as jose from 'jose';

export const CLIENTS = {
  alice: { secret: 'alice-secret', groups: ['/cms', '/af/users'] },
  bob: { secret: 'bob-secret', groups: ['/atlas', '/af/users'] },
  admin: { secret: 'admin-secret', groups: ['/af/admins'] },
  'ci-pipeline': { secret: 'ci-secret', groups: ['/cms', '/cms/ci'] },
};
export const AUDIENCE = 'af-gateway';
const SCOPES = ['openid', 'offline_access', 'compute.create', 'compute.read', 'storage.read:/'];

async function newKey(kid) {
  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  return { ...(await jose.exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
}

/**
 * Starts a provider on 127.0.0.1:port (0 = free port). `rotate()` restarts it on the same port
 * with a new signing key (the old one still published), as a provider rotating its keys does.
 */
export async function startOidcProvider({ port = 0, ttl = 300 } = {}) {
  let keys = [await newKey('key-1')];
  let server;
  let issuer;
  const resources = { [`urn:${AUDIENCE}`]: AUDIENCE, 'urn:other-service': 'other-service' };

  const boot = async (listenPort) => {
    const provisional = `http://127.0.0.1:${listenPort}`;
    const provider = new Provider(provisional, {
      clients: Object.entries(CLIENTS).map(([id, c]) => ({
        client_id: id,
        client_secret: c.secret,
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        scope: SCOPES.join(' '),
      })),
      scopes: SCOPES,
      jwks: { keys },
      cookies: { keys: ['test-cookie-key'] },
      features: {
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        introspection: { enabled: true },
        revocation: { enabled: true },
        resourceIndicators: {
          enabled: true,
          defaultResource: () => `urn:${AUDIENCE}`,
          useGrantedResource: () => true,
          getResourceServerInfo: (_ctx, resource) => {
            if (!resources[resource]) throw new Error(`unknown resource ${resource}`);
            return { scope: SCOPES.join(' '), audience: resources[resource], accessTokenFormat: 'jwt', accessTokenTTL: ttl };
          },
        },
      },
      ttl: { ClientCredentials: ttl },
      extraTokenClaims: async (_ctx, token) => ({ 'wlcg.groups': CLIENTS[token.clientId]?.groups ?? [] }),
    });
    provider.on('server_error', (_ctx, err) => console.error('oidc-provider error:', err));
    await new Promise((resolve, reject) => {
      server = provider.listen(listenPort, '127.0.0.1', resolve);
      server.once('error', reject);
    });
    return provider;
  };

  // Bind once to learn a free port, then start the provider with its issuer on that port.
  if (port === 0) {
    const net = await import('node:net');
    port = await new Promise((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = s.address().port;
        s.close(() => resolve(p));
      });
    });
  }
  issuer = `http://127.0.0.1:${port}`;
  await boot(port);

  const stop = () => new Promise((resolve) => (server.closeAllConnections?.(), server.close(() => resolve())));

  return {
    issuer,
    port,
    /** A real access token for `client` (its id is the `sub`) with the given scopes and resource. */
    async token(client, { scope = 'openid compute.create compute.read', resource = `urn:${AUDIENCE}` } = {}) {
      const res = await fetch(`${issuer}/token`, {
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
  const op = await startOidcProvider({ ttl: Number(process.env.OIDC_TTL ?? 300) });
  console.log(JSON.stringify({ issuer: op.issuer, audience: AUDIENCE, clients: Object.fromEntries(Object.entries(CLIENTS).map(([k, v]) => [k, v.secret])) }));
  const quit = async () => {
    await op.close();
    process.exit(0);
  };
  process.stdin.on('end', quit);
  process.stdin.resume();
  process.on('SIGTERM', quit);
  process.on('SIGINT', quit);
}
