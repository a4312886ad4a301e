// The test OpenID provider itself, where storage relies on it: over HTTPS with a certificate of a CA
// its helpers are told to trust (as XRootD and HTCondor need a real HTTPS issuer), WLCG storage
// scopes and audiences, and the WLCG profile's version claim; HTTP stays the default.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as jose from 'jose';
import { startOidcProvider, WLCG_ANY_AUDIENCE } from './oidc-provider.mjs';

interface Op {
  issuer: string;
  token(client: string, o?: { scope?: string; resource?: string }): Promise<string>;
  close(): Promise<void>;
}

/** GET over HTTPS trusting `ca` only; the JSON body. */
function getJson(url: string, ca: Buffer): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    https
      .get(url, { ca, timeout: 10_000 }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve(JSON.parse(text) as Record<string, unknown>));
      })
      .on('error', reject);
  });
}

describe('the test OpenID provider over HTTPS', () => {
  let dir: string;
  let ca: Buffer;
  let op: Op;

  beforeAll(async () => {
    // a throw-away CA and a server certificate for 127.0.0.1 it signed (openssl, as scripts/test-ca.sh)
    dir = mkdtempSync(join(tmpdir(), 'af-op-tls-'));
    const sh = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe', timeout: 30_000 });
    sh('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=op test CA');
    sh('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
    execFileSync('sh', ['-c', 'printf "subjectAltName = IP:127.0.0.1, DNS:localhost\\n" > ext.cnf'], { cwd: dir });
    sh('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'ext.cnf', '-out', 'server.pem');
    ca = readFileSync(join(dir, 'ca.pem'));
    op = await startOidcProvider({ tls: { cert: readFileSync(join(dir, 'server.pem')), key: readFileSync(join(dir, 'server.key')), ca } });
  });

  afterAll(async () => {
    await op?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('is an https:// issuer whose discovery document and keys are served over TLS', async () => {
    expect(op.issuer).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const meta = await getJson(`${op.issuer}/.well-known/openid-configuration`, ca);
    expect(meta.issuer).toBe(op.issuer);
    expect(String(meta.jwks_uri).startsWith(`${op.issuer}/`)).toBe(true);
    const jwks = await getJson(String(meta.jwks_uri), ca);
    expect((jwks.keys as unknown[]).length).toBeGreaterThan(0);
  });

  it('is refused by a client that does not trust its CA', async () => {
    await expect(fetch(`${op.issuer}/.well-known/openid-configuration`)).rejects.toThrow();
  });

  it('issues WLCG storage tokens: storage scopes, the WLCG any audience, wlcg.ver, verified with its keys', async () => {
    const token = await op.token('alice', { scope: 'storage.read:/ storage.create:/ storage.modify:/', resource: WLCG_ANY_AUDIENCE });
    const meta = await getJson(`${op.issuer}/.well-known/openid-configuration`, ca);
    const jwks = jose.createLocalJWKSet((await getJson(String(meta.jwks_uri), ca)) as unknown as jose.JSONWebKeySet);
    const { payload } = await jose.jwtVerify(token, jwks, { issuer: op.issuer, audience: WLCG_ANY_AUDIENCE });
    expect(payload).toMatchObject({ sub: 'alice', scope: 'storage.read:/ storage.create:/ storage.modify:/', 'wlcg.ver': '1.0' });
    expect(payload['wlcg.groups']).toEqual(['/cms', '/af/users']);
  });

  it("takes a storage endpoint's own URL as the audience, and no other unknown resource", async () => {
    for (const url of ['https://127.0.0.1:1094', 'davs://localhost:8443', 'root://127.0.0.1:1094']) {
      const { aud } = jose.decodeJwt(await op.token('bob', { scope: 'storage.read:/', resource: url }));
      expect(aud).toBe(url);
    }
    await expect(op.token('bob', { scope: 'storage.read:/', resource: 'https://storage.example.org' })).rejects.toThrow(/invalid_target|resource/);
  });
});

describe('the test OpenID provider by default', () => {
  it('stays plain HTTP', async () => {
    const op = (await startOidcProvider()) as Op;
    try {
      expect(op.issuer).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const { iss, aud } = jose.decodeJwt(await op.token('alice'));
      expect([iss, aud]).toEqual([op.issuer, 'af-gateway']);
    } finally {
      await op.close();
    }
  });
});
