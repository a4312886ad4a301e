// The gateway's Rucio module against a real Rucio server (scripts/rucio-server.sh: rucio 41.5.1,
// SQLite) that accepts the test provider's JWTs: the gateway exchanges each user's token for the
// audience Rucio expects and acts as that user.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { basic as basicAuth, bearer, client, SINGLE_USER, startTestGateway, waitForRun, type TestGateway } from '../support/gateway.js';
import { AUDIENCE, GATEWAY_CLIENT, startOidcProvider } from '../support/oidc-provider.mjs';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const SCRIPT = join(REPO, 'scripts', 'rucio-server.sh');

interface Op {
  issuer: string;
  token(client: string): Promise<string>;
  sign(claims: Record<string, unknown>): Promise<string>;
  close(): Promise<void>;
}

let op: Op;
let gw: TestGateway;
let runDir: string;
let rucio: { url: string; root_userpass: { account: string; username: string; password: string } };

async function api(user: string, method: string, path: string, body?: unknown, token?: string) {
  const bearer = token ?? (await op.token(user));
  const res = await fetch(`${gw.url}/api/af/rucio/test${path}`, {
    method,
    headers: { authorization: `Bearer ${bearer}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return res;
}

const ndjson = async (res: Response) =>
  (await res.text())
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);

beforeAll(async () => {
  op = (await startOidcProvider({ ttl: 600 })) as Op;
  runDir = mkdtempSync(join(tmpdir(), 'af-rucio-'));
  execFileSync('bash', [SCRIPT, 'start', runDir], {
    env: { ...process.env, RUCIO_OIDC_ISSUER: op.issuer },
    stdio: ['ignore', 'ignore', 'inherit'],
    timeout: 240_000,
  });
  rucio = JSON.parse(readFileSync(join(runDir, 'rucio.json'), 'utf8')) as typeof rucio;
  gw = await startTestGateway(
    {
      accounts: { name_template: 'af-{user}' }, // real accounts: scripts/test-accounts.sh
      auth: {
        type: 'oidc',
        oidc: { issuer: op.issuer, audience: [AUDIENCE], client_id: GATEWAY_CLIENT.id, client_secret: GATEWAY_CLIENT.secret, clock_skew: 0 },
      },
      tokens: { exchange_audiences: ['rucio'] },
      rucio: { instances: [{ name: 'test', url: rucio.url, auth: 'exchange', audience: 'rucio', default_scheme: 'davs' }] },
    },
    { prefix: 'af-rucio-gw-' },
  );
}, 300_000);

afterAll(async () => {
  await gw?.close();
  if (runDir) execFileSync('bash', [SCRIPT, 'stop', runDir], { stdio: 'ignore', timeout: 60_000 });
  await op?.close();
  if (runDir) rmSync(runDir, { recursive: true, force: true });
}, 120_000);

describe('Rucio through the gateway, as the user', () => {
  it('lists the instances and says who the user is at Rucio', async () => {
    const list = await fetch(`${gw.url}/api/af/rucio/instances`, { headers: { authorization: `Bearer ${await op.token('alice')}` } });
    expect(((await list.json()) as { instances: { name: string }[] }).instances.map((i) => i.name)).toEqual(['test']);
    const who = await api('alice', 'GET', '/whoami');
    expect(who.status).toBe(200);
    expect(((await who.json()) as { account: string }).account).toBe('alice');
  });

  it('finds datasets by wildcard and type', async () => {
    const res = await api('alice', 'GET', '/search/data26?name=ds.mc.*&type=dataset');
    expect(res.headers.get('content-type')).toContain('application/x-json-stream');
    const names = (await ndjson(res)).map((d) => d.name).sort();
    expect(names).toEqual(['ds.mc.2026', 'ds.mc.2027']);
    const content = await ndjson(await api('alice', 'GET', '/dids/data26/cont.mc/content'));
    expect(content.map((d) => d.name).sort()).toEqual(['ds.mc.2026', 'ds.mc.2027']);
  });

  it('goes from a dataset to its files to their replicas per scheme', async () => {
    const files = await ndjson(await api('alice', 'GET', '/dids/data26/ds.small/files'));
    expect(files.length).toBe(5);
    expect(files[0]).toMatchObject({ scope: 'data26', bytes: expect.any(Number), adler32: expect.stringMatching(/^[0-9a-f]{8}$/) });
    for (const scheme of ['davs', 'root']) {
      const replicas = await ndjson(
        await api('alice', 'POST', '/replicas', { dids: [{ scope: 'data26', name: 'ds.small' }], schemes: [scheme], sort: 'random' }),
      );
      expect(replicas.length).toBe(5);
      const pfns = replicas.flatMap((r) => Object.keys(r.pfns as object));
      expect(pfns.length).toBeGreaterThanOrEqual(5);
      for (const p of pfns) expect(p.startsWith(`${scheme}://`)).toBe(true);
    }
    const onB = await ndjson(
      await api('alice', 'POST', '/replicas', {
        dids: [{ scope: 'data26', name: 'ds.small' }],
        schemes: ['davs'],
        rse_expression: 'SITE-B_DISK',
        sort: 'random',
      }),
    );
    expect(onB.every((r) => Object.keys(r.rses as object).join() === 'SITE-B_DISK')).toBe(true);
    const meta = await (await api('alice', 'GET', '/dids/data26/ds.small')).json();
    expect(meta).toMatchObject({ scope: 'data26', name: 'ds.small', type: 'DATASET', length: 5 });
  });

  it('streams a 20,000-file dataset: files and replicas, without holding it whole', async () => {
    const t0 = Date.now();
    const res = await api('alice', 'GET', '/dids/data26/ds.big/files');
    expect(res.headers.get('transfer-encoding')).toBe('chunked');
    let lines = 0;
    let firstRowMs = -1;
    const decoder = new TextDecoder();
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      if (firstRowMs < 0) firstRowMs = Date.now() - t0;
      lines += (decoder.decode(chunk, { stream: true }).match(/\n/g) ?? []).length;
    }
    expect(lines).toBe(20_000);
    const replicas = await api('alice', 'POST', '/replicas', { dids: [{ scope: 'data26', name: 'ds.big' }], schemes: ['root'], sort: 'random' });
    const rows = await ndjson(replicas);
    expect(rows.length).toBe(20_000);
    expect(Object.keys(rows[19_999]!.pfns as object)[0]).toMatch(/^root:\/\//);
    expect(firstRowMs).toBeGreaterThanOrEqual(0);
  }, 120_000);

  it('makes a dataset available on an RSE and follows the rule', async () => {
    const res = await api('alice', 'POST', '/rules', { dids: [{ scope: 'data26', name: 'ds.small' }], rse_expression: 'SITE-B_DISK', lifetime: 3600 });
    expect(res.status).toBe(201);
    const { rule_ids } = (await res.json()) as { rule_ids: string[] };
    expect(rule_ids).toHaveLength(1);
    const rule = (await (await api('alice', 'GET', `/rules/${rule_ids[0]}`)).json()) as Record<string, unknown>;
    expect(rule).toMatchObject({ id: rule_ids[0], account: 'alice', rse_expression: 'SITE-B_DISK', state: 'OK' });
    const rules = await ndjson(await api('alice', 'GET', '/dids/data26/ds.small/rules'));
    expect(rules.map((r) => r.id)).toContain(rule_ids[0]);
  });

  it('registers files a job wrote as replicas in a new dataset of the user', async () => {
    const res = await api('alice', 'POST', '/register', {
      rse: 'SITE-A_SCRATCHDISK',
      dataset: { scope: 'user.alice', name: 'ds.alice.outputs' },
      files: [
        { name: 'hist.0001.root', bytes: 1234, adler32: '0a1b2c3d' },
        { name: 'hist.0002.root', bytes: 5678, adler32: '0f1e2d3c' },
      ],
    });
    expect(res.status).toBe(201);
    expect(await res.json()).toEqual({
      dataset: { scope: 'user.alice', name: 'ds.alice.outputs' },
      created: true,
      files: 2,
      registered: 2,
      rse: 'SITE-A_SCRATCHDISK',
    });
    const files = await ndjson(await api('alice', 'GET', '/dids/user.alice/ds.alice.outputs/files'));
    expect(files.map((f) => f.name).sort()).toEqual(['hist.0001.root', 'hist.0002.root']);
    const replicas = await ndjson(
      await api('alice', 'POST', '/replicas', { dids: [{ scope: 'user.alice', name: 'ds.alice.outputs' }], schemes: ['davs'], sort: 'random' }),
    );
    expect(replicas.every((r) => Object.keys(r.rses as object).join() === 'SITE-A_SCRATCHDISK')).toBe(true);
  });

  it('says clearly when a DID does not exist, when permission is missing, and when input is bad', async () => {
    const unknown = await api('alice', 'GET', '/dids/data26/no.such.dataset/files');
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { error: string }).error).toBe(
      "Rucio (test): Data identifier 'data26:no.such.dataset' not found (DataIdentifierNotFound)",
    );
    const denied = await api('bob', 'POST', '/rules', {
      dids: [{ scope: 'user.alice', name: 'ds.alice.ntuples' }],
      rse_expression: 'SITE-A_DISK',
      lifetime: 3600,
    });
    expect(denied.status).toBe(403);
    expect(((await denied.json()) as { error: string }).error).toContain('Account bob can not add replication rule');
    const noRse = await api('alice', 'POST', '/rules', { dids: [{ scope: 'data26', name: 'ds.small' }], rse_expression: 'NO_SUCH_RSE' });
    expect([409, 422]).toContain(noRse.status);
    expect(((await noRse.json()) as { error: string }).error).toMatch(/RSE/);
    const badFilters = await api('alice', 'GET', '/search/data26?name=ds.*&filters=%5B1%5D');
    expect(badFilters.status).toBe(400);
    expect(((await badFilters.json()) as { error: string }).error).toMatch(/filters must be a JSON object/);
    const invalid = await api('alice', 'POST', '/replicas', { dids: [] });
    expect(invalid.status).toBe(422);
    expect(((await invalid.json()) as { error: string }).error).toMatch(/dids/);
    const noInstance = await fetch(`${gw.url}/api/af/rucio/elsewhere/scopes`, { headers: { authorization: `Bearer ${await op.token('alice')}` } });
    expect(noInstance.status).toBe(404);
    expect(((await noInstance.json()) as { error: string }).error).toContain('Rucio instance elsewhere');
  });

  it('refuses an expired token with a message that says so', async () => {
    const now = Math.floor(Date.now() / 1000);
    const expired = await op.sign({ iss: op.issuer, sub: 'alice', aud: AUDIENCE, scope: 'openid compute.create compute.read', iat: now - 600, exp: now - 60 });
    const later = await api('alice', 'GET', '/whoami', undefined, expired);
    expect(later.status).toBe(401);
    expect(((await later.json()) as { error: string }).error).toMatch(/Access token refused: .*expired/);
  });
});

describe('service mode (userpass, admin-configured)', () => {
  it('acts as the configured service account for every user', async () => {
    const u = rucio.root_userpass;
    process.env.AF_GATEWAY_RUCIO_PASSWORD_SVC = u.password; // the password comes by environment
    const svc = await startTestGateway(
      {
        ...SINGLE_USER,
        rucio: {
          instances: [
            { name: 'svc', url: rucio.url, auth: 'userpass', account: u.account, username: u.username },
            { name: 'svcw', url: rucio.url, auth: 'userpass', account: u.account, username: u.username, password: u.password, allow_writes: true },
          ],
        },
      },
      { prefix: 'af-rucio-svc-' },
    );
    try {
      const basic = basicAuth('carol');
      const who = await fetch(`${svc.url}/api/af/rucio/svc/whoami`, { headers: basic });
      expect(who.status).toBe(200);
      expect(((await who.json()) as { account: string }).account).toBe('root');
      const found = await (await fetch(`${svc.url}/api/af/rucio/svc/search/data26?name=ds.small&type=dataset`, { headers: basic })).text();
      expect(found).toContain('ds.small');
      const post = (instance: string, path: string, body: unknown) =>
        fetch(`${svc.url}/api/af/rucio/${instance}${path}`, {
          method: 'POST',
          headers: { ...basic, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
      // listing replicas is a POST that only reads: allowed
      const replicas = await post('svc', '/replicas', { dids: [{ scope: 'data26', name: 'ds.small' }], schemes: ['davs'] });
      expect(replicas.status).toBe(200);
      // carol would write as root, in everyone's name: rules and registrations are refused, naming the key
      const rule = { dids: [{ scope: 'data26', name: 'ds.small' }], rse_expression: 'SITE-A_DISK', lifetime: 3600 };
      const register = {
        rse: 'SITE-A_SCRATCHDISK',
        dataset: { scope: 'data26', name: 'ds.carol.outputs' },
        files: [{ name: 'carol.0001.root', bytes: 1, adler32: '00000001' }],
      };
      for (const [path, body] of [
        ['/rules', rule],
        ['/register', register],
      ] as const) {
        const refused = await post('svc', path, body);
        expect(refused.status).toBe(403);
        const answer = (await refused.json()) as { error: string; code: string };
        expect(answer.code).toBe('rucio_read_only');
        expect(answer.error).toMatch(/allow_writes: true on the rucio instance svc/);
      }
      const untouched = await fetch(`${svc.url}/api/af/rucio/svc/dids/data26/ds.carol.outputs`, { headers: basic });
      expect(untouched.status).toBe(404); // nothing was registered before the refusal
      // where the admin allowed it, the service account writes
      const made = await post('svcw', '/rules', { ...rule, rse_expression: 'SITE-A_DISK|SITE-B_DISK' });
      expect(made.status, await made.clone().text()).toBe(201);
    } finally {
      delete process.env.AF_GATEWAY_RUCIO_PASSWORD_SVC;
      await svc.close();
    }
  });
});

describe('a Rucio dataset as the scatter input of a workflow', () => {
  /**
   * Alice starts (201) a workflow of one stage per-file: a step for each file of the dataset `did`
   * (its root PFN as url; `more` adds parameters: ", name: value"), running `cmd` and publishing with `publisher`.
   */
  async function startPerFile(did: string, more: string, cmd: string, publisher: string) {
    const spec = `stages:
  - name: per-file
    dependencies: [init]
    scheduler:
      scheduler_type: multistep-stage
      parameters: {url: {rucio: {instance: test, did: '${did}', scheme: root}}${more}}
      scatter: {method: zip, parameters: [url]}
      step:
        process: {process_type: string-interpolated-cmd, cmd: '${cmd}'}
        publisher: ${publisher}
        environment: {environment_type: localproc-env}
`;
    const alice = client(gw, bearer(await op.token('alice')));
    const sub = await alice.post('/api/af/workflows', { entry: 'wf.yml', files: { 'wf.yml': spec } });
    expect(sub.status).toBe(201);
    return { alice, id: (sub.json as { id: string }).id };
  }

  it('makes one step per file of the dataset, each given its PFN for the chosen scheme', async () => {
    const { alice, id } = await startPerFile(
      'data26:ds.small',
      ", out: '{workdir}/url.txt'",
      'echo {url} > {out}',
      '{publisher_type: frompar-pub, outputmap: {url: url}}',
    );
    type Dag = { run: { status: string }; nodes: { id: string; state: string; parameters: { url: string }; outputs: { url: string }; message?: string }[] };
    const dag = (await waitForRun(alice, id, { until: (d) => ['SUCCESS', 'FAILED'].includes(d.run.status), timeoutMs: 30_000 })) as unknown as Dag;
    expect(dag.run.status, JSON.stringify(dag.nodes.map((n) => n.message))).toBe('SUCCESS');
    const steps = dag.nodes.filter((n) => n.id !== 'init');
    expect(steps.map((n) => n.id)).toEqual(['per-file:0', 'per-file:1', 'per-file:2', 'per-file:3', 'per-file:4']);
    for (const [i, n] of steps.entries()) {
      expect(n.parameters.url).toMatch(new RegExp(`^root://.*file\\.small\\.000${i + 1}\\.root$`));
      expect(n.outputs.url).toBe(n.parameters.url);
    }
  }, 60_000);

  it('fails the stage with a message when the dataset does not exist', async () => {
    const { alice, id } = await startPerFile('data26:no.such.dataset', '', 'echo {url}', '{publisher_type: constant-pub, publish: {}}');
    type Dag = { run: { status: string; message?: string }; stages: { name: string; state: string; message?: string }[] };
    const dag = (await waitForRun(alice, id, { until: (d) => d.run.status !== 'RUNNING', timeoutMs: 20_000 })) as unknown as Dag;
    expect(dag.run.status).toBe('FAILED');
    expect(dag.stages.find((s) => s.name === 'per-file')).toMatchObject({ state: 'FAILED', message: expect.stringContaining('data26:no.such.dataset') });
  }, 60_000);
});
