// Outputs into the lake, the gateway's routes, against a real Rucio server (scripts/rucio-server.sh:
// rucio 41.5.1, SQLite) as the calling user: POST upload-urls says where on an RSE to write each
// file and what Rucio already has under its name; POST register is safe to repeat (a file already
// on the RSE with the same checksum is not registered again) and refuses other content under a
// name Rucio has, naming it. Rucio alone would take a second registration with another checksum
// without a word (it keeps the first), which is why these tests look at what Rucio holds after each call.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { AUDIENCE, GATEWAY_CLIENT, startOidcProvider } from '../support/oidc-provider.mjs';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const SCRIPT = join(REPO, 'scripts', 'rucio-server.sh');
const RSE = 'SITE-A_SCRATCHDISK';

let op: { issuer: string; token(client: string): Promise<string>; close(): Promise<void> };
let gw: TestGateway;
let runDir: string;
let rucio: { url: string; rses: Record<string, { davs: string }> };

async function api(user: string, path: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> & { error?: string; code?: string } }> {
  const res = await fetch(`${gw.url}/api/af/rucio/test${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${await op.token(user)}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

async function get(user: string, path: string): Promise<Record<string, unknown>[]> {
  const res = await fetch(`${gw.url}/api/af/rucio/test${path}`, { headers: { authorization: `Bearer ${await op.token(user)}` } });
  expect(res.status, path).toBe(200);
  return (await res.text())
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** The RSEs Rucio lists replicas of a file on, as alice sees them. */
async function replicaRses(scope: string, name: string): Promise<string[]> {
  const res = await fetch(`${gw.url}/api/af/rucio/test/replicas`, {
    method: 'POST',
    headers: { authorization: `Bearer ${await op.token('alice')}`, 'content-type': 'application/json' },
    body: JSON.stringify({ dids: [{ scope, name }], schemes: ['davs'] }),
  });
  const line = (await res.text()).split('\n').find(Boolean);
  return line ? Object.keys((JSON.parse(line) as { rses: Record<string, unknown> }).rses) : [];
}

type UploadFile = { scope: string; name: string; pfn: string; exists: { adler32: string | null; bytes: number | null; on_rse: boolean } | null };

beforeAll(async () => {
  op = await startOidcProvider({ ttl: 600 });
  runDir = mkdtempSync(join(tmpdir(), 'af-rucio-lake-'));
  execFileSync('bash', [SCRIPT, 'start', runDir], {
    env: { ...process.env, RUCIO_OIDC_ISSUER: op.issuer },
    stdio: ['ignore', 'ignore', 'inherit'],
    timeout: 240_000,
  });
  rucio = JSON.parse(readFileSync(join(runDir, 'rucio.json'), 'utf8')) as typeof rucio;
  gw = await startTestGateway(
    {
      accounts: { name_template: 'af-{user}' },
      auth: {
        type: 'oidc',
        oidc: { issuer: op.issuer, audience: [AUDIENCE], client_id: GATEWAY_CLIENT.id, client_secret: GATEWAY_CLIENT.secret, clock_skew: 0 },
      },
      tokens: { exchange_audiences: ['rucio'] },
      rucio: { instances: [{ name: 'test', url: rucio.url, auth: 'exchange', audience: 'rucio', default_scheme: 'davs' }] },
    },
    { prefix: 'af-rucio-lake-gw-' },
  );
}, 300_000);

afterAll(async () => {
  await gw?.close();
  if (runDir) execFileSync('bash', [SCRIPT, 'stop', runDir], { stdio: 'ignore', timeout: 60_000 });
  await op?.close();
  if (runDir) rmSync(runDir, { recursive: true, force: true });
}, 120_000);

describe('upload-urls: where to write, and what Rucio has', () => {
  it('gives each file its davs PFN on the RSE, in the order asked, and null for names Rucio does not have', async () => {
    const res = await api('alice', '/upload-urls', {
      rse: RSE,
      scope: 'user.alice',
      files: [{ name: 'nb/hist.b.root' }, { name: 'nb/hist.a.root' }, { scope: 'user.alice', name: 'plain.root' }],
    });
    expect(res.status, JSON.stringify(res.json)).toBe(200);
    const files = res.json.files as UploadFile[];
    expect(files.map((f) => `${f.scope}:${f.name}`)).toEqual(['user.alice:nb/hist.b.root', 'user.alice:nb/hist.a.root', 'user.alice:plain.root']);
    for (const f of files) {
      // Rucio's deterministic path under the RSE's davs prefix: <prefix>user/alice/<2 hex>/<2 hex>/<name>
      expect(f.pfn.startsWith(`${rucio.rses[RSE]!.davs}user/alice/`), f.pfn).toBe(true);
      expect(f.pfn.endsWith(`/${f.name}`)).toBe(true);
      expect(f.exists).toBeNull();
    }
    expect(res.json.rse).toBe(RSE);
  });

  it('says what Rucio already has: checksum, size and whether the RSE holds it', async () => {
    const file = { name: 'known.0001.root', bytes: 1234, adler32: '0A1B2C3D' };
    const reg = await api('alice', '/register', { rse: RSE, dataset: { scope: 'user.alice', name: 'ds.lake.known' }, files: [file] });
    expect(reg.status, JSON.stringify(reg.json)).toBe(201);
    const here = await api('alice', '/upload-urls', { rse: RSE, scope: 'user.alice', files: [{ name: file.name }, { name: 'unknown.root' }] });
    const [known, unknown] = here.json.files as UploadFile[];
    expect(known!.exists).toEqual({ adler32: '0a1b2c3d', bytes: 1234, on_rse: true });
    expect(unknown!.exists).toBeNull();
    // the same file as seen for another RSE: Rucio has it, that RSE does not
    const there = await api('alice', '/upload-urls', { rse: 'SITE-A_DISK', scope: 'user.alice', files: [{ name: file.name }] });
    expect((there.json.files as UploadFile[])[0]!.exists).toEqual({ adler32: '0a1b2c3d', bytes: 1234, on_rse: false });
  });

  it('answers 10,000 names at once (Rucio asked in batches) and refuses 10,001', async () => {
    const names = Array.from({ length: 10_000 }, (_, i) => ({ name: `bulk/out.${String(i).padStart(5, '0')}.root` }));
    const t0 = Date.now();
    const res = await api('alice', '/upload-urls', { rse: RSE, scope: 'user.alice', files: names });
    expect(res.status, JSON.stringify(res.json).slice(0, 300)).toBe(200);
    const files = res.json.files as UploadFile[];
    expect(files).toHaveLength(10_000);
    expect(new Set(files.map((f) => f.pfn)).size).toBe(10_000);
    expect(files[9_999]!.name).toBe('bulk/out.09999.root');
    expect(Date.now() - t0).toBeLessThan(100_000);
    const tooMany = await api('alice', '/upload-urls', { rse: RSE, scope: 'user.alice', files: [...names, { name: 'one.more.root' }] });
    expect(tooMany.status).toBe(422);
    expect(tooMany.json.error).toMatch(/files/);
  }, 120_000);

  it('makes the dataset named as the caller, so that a stranger is refused before writing anything', async () => {
    const dataset = { scope: 'user.alice', name: 'ds.lake.next' };
    const first = await api('alice', '/upload-urls', { rse: RSE, dataset, files: [{ name: 'next.root' }] });
    expect(first.status, JSON.stringify(first.json)).toBe(200);
    expect(first.json.dataset).toEqual({ ...dataset, created: true });
    expect((first.json.files as UploadFile[])[0]).toMatchObject({ scope: 'user.alice', name: 'next.root', exists: null }); // the dataset's scope
    const again = await api('alice', '/upload-urls', { rse: RSE, dataset, files: [{ name: 'next.root' }] });
    expect(again.json.dataset).toEqual({ ...dataset, created: false });
    for (const target of [dataset, { scope: 'user.alice', name: 'ds.lake.by.bob' }]) {
      const bob = await api('bob', '/upload-urls', { rse: RSE, dataset: target, files: [{ name: 'forged.root' }] });
      expect(bob.status).toBe(403);
      expect(bob.json).toMatchObject({
        code: 'rucio_access_denied',
        error: 'Rucio (test): Account bob can not add data identifier to scope user.alice.  (AccessDenied)',
      });
    }
    const made = await fetch(`${gw.url}/api/af/rucio/test/dids/user.alice/ds.lake.by.bob`, { headers: { authorization: `Bearer ${await op.token('alice')}` } });
    expect(made.status).toBe(404);
  });

  it('says what to change: no scope, an unknown RSE, a name that is a dataset', async () => {
    const noScope = await api('alice', '/upload-urls', { rse: RSE, files: [{ scope: 'user.alice', name: 'a.root' }, { name: 'b.root' }] });
    expect(noScope.status).toBe(422);
    expect(noScope.json.error).toBe('files[1] (b.root) has no scope: give it one, or give the request a scope (or dataset) for all files');
    const noRse = await api('alice', '/upload-urls', { rse: 'NO_SUCH_RSE', scope: 'user.alice', files: [{ name: 'a.root' }] });
    expect(noRse.status).toBe(404);
    expect(noRse.json.error).toContain("RSE 'NO_SUCH_RSE' cannot be found");
    const badRse = await api('alice', '/upload-urls', { rse: 'SITE-A|SITE-B', scope: 'user.alice', files: [{ name: 'a.root' }] });
    expect(badRse.status).toBe(422);
    const dataset = await api('alice', '/upload-urls', { rse: RSE, scope: 'user.alice', files: [{ name: 'ds.alice.ntuples' }] });
    expect(dataset.status).toBe(409);
    expect(dataset.json).toMatchObject({
      code: 'file_conflict',
      error: 'user.alice:ds.alice.ntuples is a DATASET in Rucio, not a file: give the file another name',
    });
  });
});

describe('register: safe to repeat', () => {
  const dataset = { scope: 'user.alice', name: 'ds.lake.outputs' };
  const files = [
    { name: 'lake/hist.0001.root', bytes: 100, adler32: '11112222' },
    { name: 'lake/hist.0002.root', bytes: 200, adler32: '33334444' },
  ];

  it('registers files once: a repeated request registers nothing and changes nothing', async () => {
    const first = await api('alice', '/register', { rse: RSE, dataset, files, lifetime: 3600 });
    expect(first.status, JSON.stringify(first.json)).toBe(201);
    expect(first.json).toEqual({ dataset, created: true, files: 2, registered: 2, rse: RSE });
    const again = await api('alice', '/register', { rse: RSE, dataset, files, lifetime: 3600 });
    expect(again.status, JSON.stringify(again.json)).toBe(201);
    expect(again.json).toEqual({ dataset, created: false, files: 2, registered: 0, rse: RSE });
    const content = await get('alice', `/dids/${dataset.scope}/${dataset.name}/files`);
    expect(content.map((f) => [f.name, f.bytes, f.adler32]).sort()).toEqual(files.map((f) => [f.name, f.bytes, f.adler32]));
    for (const f of files) expect(await replicaRses(dataset.scope, f.name)).toEqual([RSE]);
    // one rule of alice's keeps the dataset on the RSE, however often it is registered
    const rules = await get('alice', `/dids/${dataset.scope}/${dataset.name}/rules`);
    expect(rules.map((r) => [r.account, r.rse_expression])).toEqual([['alice', RSE]]);
    expect(rules[0]!.expires_at).toBeTruthy();
  });

  it('adds a new file to the dataset next to those already there, registering only it', async () => {
    const more = [...files, { name: 'lake/hist.0003.root', bytes: 300, adler32: '55556666' }];
    const res = await api('alice', '/register', { rse: RSE, dataset, files: more });
    expect(res.json).toEqual({ dataset, created: false, files: 3, registered: 1, rse: RSE });
    expect((await get('alice', `/dids/${dataset.scope}/${dataset.name}/files`)).map((f) => f.name).sort()).toEqual(more.map((f) => f.name));
  });

  it('refuses other content under a registered name with a 409 naming the file, and registers none of the request', async () => {
    const changed = [
      { name: 'lake/hist.0004.root', bytes: 400, adler32: '77778888' },
      { name: 'lake/hist.0001.root', bytes: 100, adler32: '99990000' },
    ];
    const res = await api('alice', '/register', { rse: RSE, dataset, files: changed });
    expect(res.status).toBe(409);
    expect(res.json.code).toBe('file_conflict');
    expect(res.json.error).toBe(
      'user.alice:lake/hist.0001.root is already in Rucio with other content (adler32 11112222, 100 bytes; this one: adler32 99990000, 100 bytes): ' +
        "Rucio keeps a name's content for good, so give the file another name",
    );
    const names = (await get('alice', `/dids/${dataset.scope}/${dataset.name}/files`)).map((f) => f.name);
    expect(names).not.toContain('lake/hist.0004.root');
    expect(await replicaRses('user.alice', 'lake/hist.0004.root')).toEqual([]);
    // the same name twice with two contents in one request
    const twice = await api('alice', '/register', {
      rse: RSE,
      dataset,
      files: [
        { name: 'lake/twice.root', bytes: 1, adler32: '00000001' },
        { name: 'lake/twice.root', bytes: 2, adler32: '00000002' },
      ],
    });
    expect(twice.status).toBe(409);
    expect(twice.json.error).toBe('user.alice:lake/twice.root is named twice in the request with other content');
  });

  it("lets no one else register into a user's dataset, and says so in Rucio's words", async () => {
    // bob's files, in alice's scope or his own, into alice's dataset: refused before anything is made
    for (const scope of ['user.alice', 'user.bob']) {
      const res = await api('bob', '/register', { rse: RSE, dataset, files: [{ scope, name: 'lake/forged.root', bytes: 6, adler32: '0abc0def' }] });
      expect(res.status, scope).toBe(403);
      expect(res.json).toMatchObject({
        code: 'rucio_access_denied',
        error: 'Rucio (test): Account bob can not add data identifier to scope user.alice.  (AccessDenied)',
      });
      expect(await replicaRses(scope, 'lake/forged.root')).toEqual([]);
    }
    const names = (await get('alice', `/dids/${dataset.scope}/${dataset.name}/files`)).map((f) => f.name);
    expect(names.some((n) => String(n).includes('forged'))).toBe(false);
    // nor make a dataset in her scope
    const make = await api('bob', '/register', {
      rse: RSE,
      dataset: { scope: 'user.alice', name: 'ds.made.by.bob' },
      files: [{ scope: 'user.bob', name: 'forged.root', bytes: 6, adler32: '0abc0def' }],
    });
    expect(make.status).toBe(403);
    expect(make.json.error).toContain('Account bob can not add data identifier to scope user.alice');
    // nor put files under names in her scope through a dataset of his own
    const squat = await api('bob', '/register', {
      rse: RSE,
      dataset: { scope: 'user.bob', name: 'ds.bob.squat' },
      files: [{ scope: 'user.alice', name: 'lake/hist.0005.root', bytes: 6, adler32: '0abc0def' }],
    });
    expect(squat.status).toBe(403);
    expect(squat.json.error).toContain('account bob can not add file DIDs on SITE-A_SCRATCHDISK');
    expect(await replicaRses('user.alice', 'lake/hist.0005.root')).toEqual([]);
  });
});
