// Simple authentication with a facility provider (auth.oidc), as the demo runs it: Basic names any user,
// and a bearer token of that provider proves its own user, whose token the broker then keeps for the
// user's clusters (the demo's notebooks read storage through their workers with it). Only where simple
// authentication is one person on loopback: with a shared password, bearer tokens are not taken.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { authSetup } from '../../src/auth/auth-setup.js';
import { resolveConfig } from '../../src/config.js';
import { basic, bearer, request, startTestGateway, type TestGateway } from '../support/gateway.js';
import { startOidcProvider, AUDIENCE, GATEWAY_CLIENT } from '../support/oidc-provider.mjs';

let op: {
  issuer: string;
  token(client: string, opts?: { scope?: string; resource?: string }): Promise<string>;
  sign(claims: Record<string, unknown>): Promise<string>;
  close(): Promise<void>;
};
let gw: TestGateway;

const provider = () => ({
  issuer: op.issuer,
  audience: [AUDIENCE],
  client_id: GATEWAY_CLIENT.id,
  client_secret: GATEWAY_CLIENT.secret,
  clock_skew: 0,
});

/** Every file called `name` below `dir`. */
function findFiles(dir: string, name: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...findFiles(p, name));
    else if (e.name === name) out.push(p);
  }
  return out;
}

beforeAll(async () => {
  op = await startOidcProvider({ ttl: 300 });
  gw = await startTestGateway(
    { auth: { type: 'simple', oidc: provider() }, backend: { type: 'local', local: { single_user: true } } },
    { prefix: 'af-simple-bearer-' },
  );
});

afterAll(async () => {
  await gw?.close();
  await op?.close();
});

describe('simple authentication with a facility provider', () => {
  it("takes the provider's bearer token as proof of its user, and Basic as before", async () => {
    const token = await op.token('alice');
    const me = await request(gw, 'GET', '/api/af/token', { headers: bearer(token) });
    expect(me.status).toBe(200);
    expect(me.json).toMatchObject({ user: 'alice', source: 'request', subject: 'alice', issuer: op.issuer });
    expect(JSON.stringify(me.json)).not.toContain(token);
    const byName = await request(gw, 'GET', '/api/v1/clusters/', { headers: basic('alice') });
    expect(byName.status).toBe(200);
  });

  it('refuses bearer tokens the provider did not sign, expired ones and ones for another audience', async () => {
    const now = Math.floor(Date.now() / 1000);
    const forged = (await op.token('alice')).split('.').slice(0, 2).join('.') + '.' + Buffer.from('not the signature').toString('base64url');
    const expired = await op.sign({ iss: op.issuer, sub: 'alice', aud: AUDIENCE, scope: 'compute.create', iat: now - 600, exp: now - 300 });
    const elsewhere = await op.sign({ iss: op.issuer, sub: 'alice', aud: 'someone-else', scope: 'compute.create', iat: now, exp: now + 300 });
    for (const t of [forged, expired, elsewhere, 'not-a-jwt']) {
      const r = await request(gw, 'GET', '/api/v1/clusters/', { headers: bearer(t) });
      expect(r.status, t.slice(0, 20)).toBe(401);
      expect(String((r.json as { message?: string }).message ?? '')).not.toContain(t);
    }
  });

  it("hands the bearer token to the clusters of its user (not to another user's)", async () => {
    const created = await request(gw, 'POST', '/api/v1/clusters/', { headers: basic('alice'), body: {} });
    expect(created.status).toBe(201);
    const cluster = (created.json as { name: string }).name;
    try {
      // (the broker keeps the token that lives longest: this one outlives the first test's)
      const now = Math.floor(Date.now() / 1000);
      const aliceToken = await op.sign({ iss: op.issuer, sub: 'alice', aud: AUDIENCE, scope: 'compute.create storage.read:/', iat: now, exp: now + 900 });
      const bobToken = await op.token('bob');
      expect((await request(gw, 'GET', '/api/af/token', { headers: bearer(bobToken) })).status).toBe(200);
      expect((await request(gw, 'GET', '/api/af/token', { headers: bearer(aliceToken) })).status).toBe(200);
      const deadline = Date.now() + 30_000;
      let seen = '';
      while (Date.now() < deadline) {
        const files = findFiles(gw.dataDir, 'bearer-token').filter((f) => f.includes(cluster));
        seen = files.length ? readFileSync(files[0]!, 'utf8').trim() : '';
        if (seen === aliceToken) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(seen).toBe(aliceToken);
      const file = findFiles(gw.dataDir, 'bearer-token').find((f) => f.includes(cluster))!;
      expect(statSync(file).mode & 0o077).toBe(0);
      // bob's token proved bob: alice's cluster is not his to see
      const bobs = await request(gw, 'GET', '/api/v1/clusters/', { headers: bearer(bobToken) });
      expect(bobs.status).toBe(200);
      expect(Object.keys(bobs.json as Record<string, unknown>)).not.toContain(cluster);
      expect(Object.keys((await request(gw, 'GET', '/api/v1/clusters/', { headers: bearer(aliceToken) })).json as object)).toContain(cluster);
    } finally {
      await request(gw, 'DELETE', `/api/v1/clusters/${cluster}`, { headers: basic('alice') });
    }
  });

  it('takes no bearer tokens when simple authentication has a shared password, nor without a provider', async () => {
    const token = await op.token('alice');
    const withPassword = authSetup(resolveConfig({ auth: { type: 'simple', simple: { password: 'shared' }, oidc: provider() } }), '127.0.0.1');
    expect(await withPassword.authenticator.authenticate(`Bearer ${token}`)).toBeNull();
    expect(withPassword.oidc).toBeDefined(); // still the broker's provider for hand-overs
    const noProvider = authSetup(resolveConfig({ auth: { type: 'simple' } }), '127.0.0.1');
    expect(await noProvider.authenticator.authenticate(`Bearer ${token}`)).toBeNull();
    const demo = authSetup(resolveConfig({ auth: { type: 'simple', oidc: provider() } }), '127.0.0.1');
    expect(await demo.authenticator.authenticate(`Bearer ${token}`)).toMatchObject({ name: 'alice' });
  });
});
