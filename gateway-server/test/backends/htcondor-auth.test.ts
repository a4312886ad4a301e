// How the HTCondor backend runs the condor tools: as whom (the cluster owner's account through the
// prefix's {account}/{uid}/{gid}, or with their SciToken), with which environment (built from
// scratch: no secret of the gateway's), and which configurations it refuses (every user's jobs as
// one account). What a real schedd does with the owner's token (SCITOKENS authentication, the map
// to the owner's account, refusals of expired, foreign or under-scoped tokens, another user's
// token) is proved against the real pool in test/e2e/test_htcondor_scitokens.py. Here a recording
// condor tool (a shell script that records its argv, its whole environment and its input, and
// answers like the real tools) checks what the backend hands the tools, and what it does before
// and after them: no token, no command; a refusal explained from the token's own claims.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HTCondorBackend, sharedAccountProblem, type HTCondorConfig } from '../../src/backends/htcondor/htcondor-backend.js';
import { decodeClaims, explainRefusal } from '../../src/backends/htcondor/scitokens.js';
import type { LocalBackend } from '../../src/backends/local/local-backend.js';
import type { AccountResolver, UserAccount } from '../../src/accounts/accounts.js';
import { CommandError, CommandRunner } from '../../src/backends/batch/command-runner.js';
import { makeLogger } from '../../src/server.js';
import { condorTestBackend, condorTestCluster, condorTestConfig } from '../support/htcondor-config.js';
import type { WorkerRecord } from '../../src/clusters/model.js';

let dir: string;
let standin: string;
const config = (over: Partial<HTCondorConfig>): HTCondorConfig =>
  condorTestConfig({ environment: { _condor_SCHEDD_HOST: 'schedd.example.org', _condor_COLLECTOR_HOST: 'cm.example.org' }, auth_method: 'scitokens', ...over });

/** The test runs as some account; the users' accounts are the same here (no files change hands in this file). */
const me = { uid: process.getuid!(), gid: process.getgid!() };
const accounts: AccountResolver = {
  resolve: async (user: string): Promise<UserAccount> => {
    if (!/^[a-z]+$/.test(user)) throw new Error(`no account for ${user}`);
    return { name: `af-${user}`, uid: me.uid, gid: me.gid, home: '/nonexistent' };
  },
};

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'af-condor-standin-'));
  // Stand-in for the condor tools (after the prefix's own words): records the argv, the whole
  // environment and the input; prints a job id range for condor_submit (one proc per queued name).
  standin = join(dir, 'condor-standin');
  writeFileSync(
    standin,
    `#!/bin/sh
log="${dir}/calls"
while [ "$#" -gt 0 ] && [ "\${1#condor_}" = "$1" ]; do echo "PREFIX $1" >> "$log"; shift; done
{ echo "ARGV $*"; env | sort | sed 's/^/ENV /'; } >> "$log"
case "$1" in
  condor_submit) cat > "${dir}/submitted"; n=$(sed -n '/^queue .* from ($/,/^)$/p' "${dir}/submitted" | grep -vc -e '^queue' -e '^)$'); echo "17.0 - 17.$((n - 1))";;
  condor_q) echo '[{"ClusterId": 17, "ProcId": 0, "JobStatus": 2}]';;
esac
`,
  );
  chmodSync(standin, 0o755);
});

afterEach(() => rmSync(join(dir, 'calls'), { force: true }));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const calls = () => readFileSync(join(dir, 'calls'), 'utf8');

function clusterIn(root: string, name: string, username = 'alice') {
  const work = join(root, 'clusters', name);
  mkdirSync(work, { recursive: true, mode: 0o700 });
  return condorTestCluster(work, name, username);
}

const worker = (name: string) => ({ name }) as WorkerRecord;

/** A backend that keeps its state in `dataDir`; the users' accounts are `accounts` above. */
const backendIn = (dataDir: string, cfg: HTCondorConfig) => condorTestBackend(cfg, accounts, dataDir);

/** A JWT with these claims (unsigned: the backend only reads what a token says about itself). */
function jwt(claims: Record<string, unknown>): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'RS256', typ: 'at+jwt' })}.${part(claims)}.c2lnbmF0dXJl`;
}

const hour = () => Math.floor(Date.now() / 1000) + 3600;

describe("SciTokens: the owner's token", () => {
  it('no token file, no condor command: the submission fails saying how to give the gateway a token', async () => {
    const data = mkdtempSync(join(dir, 'data-'));
    const backend = backendIn(data, config({ command_prefix: [standin] }));
    const { cluster, files } = clusterIn(data, 'c0');
    const [result] = await backend.startWorkers([{ cluster, worker: worker('c0-a'), files }]);
    expect(result).toBeInstanceOf(Error);
    expect((result as Error).message).toMatch(
      /takes jobs only with their owner's own access token .*holds none of yours to submit jobs with: send the gateway a request with your token/,
    );
    // never run: a condor tool without _condor_SCITOKENS_FILE would look for some other token (/tmp/bt_u<uid>)
    expect(() => calls()).toThrow(/ENOENT/);
  });

  it('a submission waits for the token the broker is writing for the new cluster', async () => {
    const data = mkdtempSync(join(dir, 'data-'));
    const backend = backendIn(data, config({ command_prefix: [standin] }));
    const { cluster, files } = clusterIn(data, 'c1');
    const writing = backend.writeBearerToken(cluster, jwt({ sub: 'alice', exp: hour() }));
    const handles = await backend.startWorkers([{ cluster, worker: worker('c1-a'), files }]);
    await writing;
    expect(handles.map((h) => (h instanceof Error ? h.message : h.job))).toEqual(['17.0']);
    expect(calls()).toContain(`ENV _condor_SCITOKENS_FILE=${files.bearerToken}`);
  });

  it('a refusal of the schedd becomes what to do, from what the token says about itself', () => {
    const now = 2_000_000_000;
    const refused = (stderr: string, tool = 'condor_submit') =>
      new CommandError(tool, 1, stderr, `${tool} failed (exit 1): ${stderr.trim().split('\n').slice(-4).join(' ')}`);
    const authFailed = refused(
      '\nERROR: Failed to connect to local queue manager\nAUTHENTICATE:1003:Failed to authenticate with any method\nAUTHENTICATE:1004:Failed to authenticate using SCITOKENS\n',
    );
    const base = { iss: 'https://iam.example.org/', sub: 'a1b2', aud: 'https://wlcg.cern.ch/jwt/v1/any', scope: 'compute.read compute.create' };
    const message = (err: unknown) => (err as Error).message;

    const expired = message(explainRefusal(authFailed, decodeClaims(jwt({ ...base, exp: now - 90 })), 'af-alice', 'submit jobs', now));
    expect(expired).toMatch(
      /^the HTCondor schedd refused your access token: it expired 90 s ago \(at 2033-05-18T03:31:50\.000Z\)\. .*log in again.*refresh token/,
    );
    expect(expired).toContain('(condor_submit: AUTHENTICATE:1004:Failed to authenticate using SCITOKENS)');

    const unmapped = message(explainRefusal(authFailed, decodeClaims(jwt({ ...base, exp: now + 600 })), 'af-alice', 'submit jobs', now));
    expect(unmapped).toMatch(
      /valid 10 min more.*issuer https:\/\/iam\.example\.org\/, audience https:\/\/wlcg\.cern\.ch\/jwt\/v1\/any.*map https:\/\/iam\.example\.org\/,a1b2 to your account af-alice/,
    );

    const denied = refused(
      '\nERROR: Failed to connect to local queue manager\nSECMAN:2010:Received "DENIED" from server for user af-alice@localhost using method SCITOKENS.\n',
    );
    const scopes = message(explainRefusal(denied, decodeClaims(jwt({ ...base, exp: now + 600 })), 'af-alice', 'submit jobs', now));
    expect(scopes).toMatch(
      /took your access token as af-alice@localhost but it does not allow you to submit jobs: .*compute\.create, compute\.modify, compute\.cancel, and your token has compute\.read compute\.create \(missing: compute\.modify, compute\.cancel\)/,
    );

    const notOwner = refused('Permission denied to remove job 17.0\n', 'condor_rm');
    expect(message(explainRefusal(notOwner, decodeClaims(jwt({ ...base, exp: now + 600 })), 'af-alice', 'remove jobs', now))).toMatch(
      /^the HTCondor schedd refused to let your access token remove jobs: the jobs are not those of the account it maps your token \(https:\/\/iam\.example\.org\/,a1b2\) to/,
    );

    // anything else stays as it was; claims that are not short printable words are not repeated
    const other = refused('ERROR: Failed to parse command file\n');
    expect(explainRefusal(other, decodeClaims(jwt(base)), 'af-alice', 'submit jobs', now)).toBe(other);
    const odd = decodeClaims(jwt({ iss: 'https://x/\nforged line', sub: 'x'.repeat(500), aud: ['ok', 7], scope: 'a b\u0007' }));
    expect(odd).toEqual({ expiresAt: null, issuer: null, subject: null, audience: ['ok'], scopes: ['a'] });
    expect(decodeClaims('not a token')).toEqual({ expiresAt: null, issuer: null, subject: null, audience: [], scopes: [] });
  });
});

describe('the environment of the condor tools', () => {
  it('is built from scratch: a secret in the gateway environment never reaches condor_submit', async () => {
    const data = mkdtempSync(join(dir, 'data-'));
    process.env.AF_TEST_GATEWAY_SECRET = 'the-gateway-secret-3f1c';
    process.env.CONDOR_CONFIG = '/etc/condor/test_config';
    try {
      const backend = backendIn(data, config({ command_prefix: [standin] }));
      const { cluster, files } = clusterIn(data, 'c2');
      await backend.writeBearerToken(cluster, jwt({ sub: 'alice', exp: hour() }));
      expect((await backend.startWorkers([{ cluster, worker: worker('c2-a'), files }]))[0]).not.toBeInstanceOf(Error);
    } finally {
      delete process.env.AF_TEST_GATEWAY_SECRET;
      delete process.env.CONDOR_CONFIG;
    }
    const text = calls();
    expect(text).not.toContain('the-gateway-secret-3f1c');
    const names = [...text.matchAll(/^ENV ([^=]+)=/gm)].map((m) => m[1]!).filter((n) => !['PWD', 'SHLVL', '_', 'OLDPWD'].includes(n)); // what sh itself sets
    expect(names.sort()).toEqual(
      [
        'CONDOR_CONFIG',
        ...(process.env.LANG ? ['LANG'] : []),
        'PATH',
        '_condor_COLLECTOR_HOST',
        '_condor_SCHEDD_HOST',
        '_condor_SCITOKENS_FILE',
        '_condor_SEC_CLIENT_AUTHENTICATION_METHODS',
        '_condor_SEC_DEFAULT_AUTHENTICATION_METHODS',
      ].sort(),
    );
    expect(text).toContain('ENV CONDOR_CONFIG=/etc/condor/test_config');
    // the owner's token, and no other method: a facility's SEC_CLIENT_AUTHENTICATION_METHODS would win over DEFAULT
    expect(text).toContain(`ENV _condor_SCITOKENS_FILE=${join(data, 'clusters', 'c2', 'bearer-token')}`);
    expect(text).toContain('ENV _condor_SEC_CLIENT_AUTHENTICATION_METHODS=SCITOKENS');
    expect(text).toContain('ENV _condor_SEC_DEFAULT_AUTHENTICATION_METHODS=SCITOKENS');
    expect(text).toContain('ENV _condor_SCHEDD_HOST=schedd.example.org');
    expect(text).toContain('ENV _condor_COLLECTOR_HOST=cm.example.org');
    // the description went on stdin; the jobs write in the cluster's jobs/ directory, not next to its keys
    expect(text).toContain('ARGV condor_submit -terse -');
    expect(readFileSync(join(dir, 'submitted'), 'utf8')).toContain(`initialdir = ${join(data, 'clusters', 'c2', 'jobs')}\n`);
  });

  it('the runner passes nothing of the gateway environment but PATH, LANG and CONDOR_CONFIG', () => {
    process.env.AF_TEST_GATEWAY_SECRET = 'x';
    try {
      const env = new CommandRunner({ prefix: [], env: { A: '1' }, timeoutMs: 1000 }).environment({ B: '2' });
      expect(Object.keys(env).sort()).toEqual(
        ['A', 'B', ...(process.env.CONDOR_CONFIG ? ['CONDOR_CONFIG'] : []), ...(process.env.LANG ? ['LANG'] : []), 'PATH'].sort(),
      );
    } finally {
      delete process.env.AF_TEST_GATEWAY_SECRET;
    }
  });
});

describe('who the condor tools act for', () => {
  it("submits and removes as the owner's account ({account}, {uid}, {gid}) and queries as the gateway's", async () => {
    const data = mkdtempSync(join(dir, 'data-'));
    const backend = backendIn(data, config({ command_prefix: [standin, '--as={account}:{uid}:{gid}'], auth_method: 'fs' }));
    const { cluster, files } = clusterIn(data, 'c3', 'mallory');
    const [handle] = await backend.startWorkers([{ cluster, worker: worker('c3-a'), files }]);
    if (!handle || handle instanceof Error) throw handle ?? new Error('no handle');
    expect((await backend.check([handle]))[0]!.alive).toBe(true);
    await backend.stop([handle]);
    const lines = calls()
      .split('\n')
      .filter((l) => l.startsWith('PREFIX') || l.startsWith('ARGV'));
    const self = (await import('node:os')).userInfo().username;
    expect(lines).toEqual([
      `PREFIX --as=af-mallory:${me.uid}:${me.gid}`,
      'ARGV condor_submit -terse -',
      `PREFIX --as=${self}:${me.uid}:${me.gid}`,
      expect.stringMatching(/^ARGV condor_q -allusers -json /),
      `PREFIX --as=af-mallory:${me.uid}:${me.gid}`,
      'ARGV condor_rm 17.0',
    ]);
  });

  it('refuses an account that is not a POSIX name before it reaches the prefix', async () => {
    const runner = new CommandRunner({ prefix: [standin, '--as={account}'], env: {}, timeoutMs: 5000 });
    await expect(runner.run(['condor_q'], { as: { name: 'x;rm -rf /', uid: 1, gid: 1 } })).rejects.toThrow(/refusing account name/);
    await expect(runner.run(['condor_q'])).rejects.toThrow(/acts for none/);
  });

  it("refuses a configuration that would submit every user's jobs as one account", () => {
    const base = config({ auth_method: 'default', command_prefix: [] });
    expect(sharedAccountProblem(base, false)).toMatch(/every user's jobs as the gateway's own account.*\{account\}.*scitokens.*single_user/);
    expect(sharedAccountProblem({ ...base, command_prefix: ['ssh', 'submit01'] }, false)).toMatch(/command_prefix/);
    expect(sharedAccountProblem({ ...base, auth_method: 'fs' }, false)).not.toBeNull();
    expect(sharedAccountProblem({ ...base, command_prefix: ['sudo', '-n', '-u', '{account}', '--'] }, false)).toBeNull();
    expect(sharedAccountProblem({ ...base, command_prefix: ['chroot', '--userspec={uid}:{gid}', '/pool'] }, false)).toBeNull();
    expect(sharedAccountProblem({ ...base, auth_method: 'scitokens' }, false)).toBeNull();
    expect(sharedAccountProblem(base, true)).toBeNull();
    expect(sharedAccountProblem({ ...base, auth_method: 'scitokens', file_owner: '1000:1000' }, false)).toMatch(/file_owner is no longer supported/);
    expect(
      () => new HTCondorBackend({ config: base, accounts, local: {} as LocalBackend, python: '/opt/python', dataDir: dir, log: makeLogger('silent') }),
    ).toThrow(/backend\.local\.single_user/);
  });
});

describe('forged heartbeats', () => {
  it('do not make the gateway run condor_q once each while the scheduler job is not seen running on a machine', async () => {
    // The owner holds the cluster's API token, and a scheduler job can stay idle as long as they
    // like: each heartbeat for it used to force a fresh condor_q of every job of the gateway.
    const data = mkdtempSync(join(dir, 'data-'));
    const backend = backendIn(data, config({ command_prefix: [standin], poll_period: 30 }));
    const { cluster } = clusterIn(data, 'c3', 'mallory');
    cluster.scheduler = { kind: 'htcondor-job', job: '17.0', cluster: 'c3', worker: 'scheduler', log: '/dev/null', owner: 'mallory' };
    const forged = { scheduler: 'tls://10.1.2.3:8786', dashboard: 'http://10.1.2.3:8787', api: 'http://10.1.2.3:8788' };
    const refused = await Promise.allSettled(Array.from({ length: 30 }, async () => backend.schedulerAddresses(cluster, forged)));
    for (let i = 0; i < 30; i++) await backend.schedulerAddresses(cluster, forged).catch(() => undefined);
    expect(refused.every((r) => r.status === 'rejected')).toBe(true);
    expect(calls().match(/ARGV condor_q/g)?.length).toBeLessThanOrEqual(2);
  });
});
