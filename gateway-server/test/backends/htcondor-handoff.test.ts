// What the HTCondor backend hands a job's account, and that it never acts through what the jobs
// plant: real files, real lchown to a uid that is not the gateway's (so these run as root, as CI
// does), and a stand-in for the condor tools (the real pool is in test/e2e/test_htcondor_pool.py).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, chownSync, existsSync, lchownSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AccountResolver } from '../../src/accounts/accounts.js';
import { condorTestBackend, condorTestCluster, condorTestConfig } from '../support/htcondor-config.js';
import type { WorkerRecord } from '../../src/clusters/model.js';
import type { StepLaunch } from '../../src/backends/backend.js';

const root = process.getuid?.() === 0;
const USER = { uid: 54321, gid: 54321 }; // no gateway's, no real account's: only ownership matters here
const accounts: AccountResolver = { resolve: async (user) => ({ name: `af-${user}`, ...USER, home: '/nonexistent' }) };

let dir: string;
let standin: string;

const config = condorTestConfig({ poll_period: 0.2 });

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'af-condor-handoff-'));
  chmodSync(dir, 0o755);
  standin = join(dir, 'condor-standin');
  // condor_submit: one job; condor_q: an empty queue; condor_history: the job exited 1.
  writeFileSync(
    standin,
    `#!/bin/sh
shift
case "$1" in
  condor_submit) cat > /dev/null; echo "17.0 - 17.0";;
  condor_history) echo '[{"ClusterId": 17, "ProcId": 0, "JobStatus": 4, "ExitCode": 1}]';;
esac
`,
  );
  chmodSync(standin, 0o755);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function gateway(name: string) {
  const data = join(dir, name, 'data');
  mkdirSync(join(data, 'clusters'), { recursive: true, mode: 0o700 });
  chmodSync(data, 0o700);
  writeFileSync(join(data, 'state.sqlite'), "every user's refresh token", { mode: 0o644 });
  writeFileSync(join(data, 'encrypt.key'), 'the key', { mode: 0o600 });
  const backend = condorTestBackend({ ...config, command_prefix: [standin, '--as={account}'] }, accounts, data);
  return { data, backend };
}

function cluster(data: string, name: string) {
  const work = join(data, 'clusters', name);
  mkdirSync(work, { mode: 0o700 });
  const { files, cluster: c } = condorTestCluster(work, name, 'alice');
  for (const f of [files.cert, files.key, files.token]) writeFileSync(f, 'secret', { mode: 0o600 });
  return { c, files };
}

/** A root-owned file a hostile job would like the gateway to give it (or read to it). */
function target(name: string): string {
  const t = join(dir, name);
  writeFileSync(t, 'root only', { mode: 0o600 });
  return t;
}

/** The one result of a list call, or its error thrown. */
async function one<T>(results: Promise<Array<T | Error>>): Promise<T> {
  const [r] = await results;
  if (r instanceof Error) throw r;
  return r!;
}

const owner = (p: string) => {
  const s = lstatSync(p);
  return { uid: s.uid, gid: s.gid, mode: s.mode & 0o7777 };
};

describe.skipIf(!root)('the cluster directory handed to the job account', () => {
  it("gives the account its TLS files and a jobs/ directory, keeps the directory the gateway's, and closes the data dir's files", async () => {
    const { data, backend } = gateway('g1');
    const { c, files } = cluster(data, 'c1');
    const h = await one(backend.startWorkers([{ cluster: c, worker: { name: 'c1-a' } as WorkerRecord, files }]));
    for (const f of [files.cert, files.key, files.token]) expect(owner(f)).toEqual({ ...USER, mode: 0o600 });
    expect(owner(files.dir)).toEqual({ uid: 0, gid: USER.gid, mode: 0o710 });
    expect(owner(join(files.dir, 'jobs'))).toEqual({ ...USER, mode: 0o700 });
    expect(h.log).toBe(join(files.dir, 'jobs', 'c1-a.log'));
    // the jobs pass through the data dir and clusters/, and can open nothing else in it
    expect(owner(data).mode).toBe(0o711);
    expect(owner(join(data, 'clusters')).mode).toBe(0o711);
    expect(owner(join(data, 'state.sqlite'))).toEqual({ uid: 0, gid: 0, mode: 0o600 });
    expect(owner(join(data, 'encrypt.key')).mode).toBe(0o600);
  });

  it('never changes the owner of what a job planted in jobs/ when more workers are submitted', async () => {
    const { data, backend } = gateway('g2');
    const { c, files } = cluster(data, 'c2');
    await one(backend.startWorkers([{ cluster: c, worker: { name: 'c2-a' } as WorkerRecord, files }]));
    const t = target('t-cluster');
    const jobs = join(files.dir, 'jobs');
    // what the job (its account) plants: a link to the target, and a directory with one in it
    symlinkSync(t, join(jobs, 'dask.pem'));
    lchownSync(join(jobs, 'dask.pem'), USER.uid, USER.gid);
    mkdirSync(join(jobs, 'sub'));
    symlinkSync(t, join(jobs, 'sub', 'x'));
    chownSync(join(jobs, 'sub'), USER.uid, USER.gid);
    await one(backend.startWorkers([{ cluster: c, worker: { name: 'c2-b' } as WorkerRecord, files }]));
    expect(owner(t)).toEqual({ uid: 0, gid: 0, mode: 0o600 });
    expect(lstatSync(join(jobs, 'sub', 'x')).uid).toBe(0);
  });

  it('refuses a key file that became a link', async () => {
    const { data, backend } = gateway('g3');
    const { c, files } = cluster(data, 'c3');
    rmSync(files.key);
    symlinkSync(target('t-key'), files.key);
    await expect(one(backend.startWorkers([{ cluster: c, worker: { name: 'c3-a' } as WorkerRecord, files }]))).rejects.toThrow(/not a plain file/);
    expect(owner(join(dir, 't-key')).uid).toBe(0);
  });

  it("reads a failed job's log only if it is a regular file of the account, never through a link", async () => {
    const { data, backend } = gateway('g4');
    const { c, files } = cluster(data, 'c4');
    const h = await one(backend.startWorkers([{ cluster: c, worker: { name: 'c4-a' } as WorkerRecord, files }]));
    writeFileSync(join(dir, 't-secret'), 'SECRET-OF-THE-GATEWAY\n', { mode: 0o600 });
    symlinkSync(join(dir, 't-secret'), h.log as string);
    let state = (await backend.check([h]))[0]!;
    expect(state.alive).toBe(false);
    expect(state.detail).toContain('exited with code 1');
    expect(state.detail).not.toContain('SECRET');
    rmSync(h.log as string);
    writeFileSync(h.log as string, 'Traceback: worker failed\n');
    chownSync(h.log as string, USER.uid, USER.gid);
    state = (await backend.check([h]))[0]!;
    expect(state.detail).toContain('Traceback: worker failed');
  });

  it('removes the cluster directory without following the links its jobs planted', async () => {
    const { data, backend } = gateway('g5');
    const { c, files } = cluster(data, 'c5');
    await one(backend.startWorkers([{ cluster: c, worker: { name: 'c5-a' } as WorkerRecord, files }]));
    const outside = join(dir, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'keep'), 'keep me');
    const jobs = join(files.dir, 'jobs');
    symlinkSync(outside, join(jobs, 'd'));
    mkdirSync(join(jobs, 'deep', 'er'), { recursive: true });
    symlinkSync(join(outside, 'keep'), join(jobs, 'deep', 'er', 'f'));
    await backend.removeClusterFiles(c, true); // a failed cluster: secrets go, logs stay
    expect(existsSync(files.key)).toBe(false);
    expect(existsSync(jobs)).toBe(true);
    await backend.removeClusterFiles(c, false);
    expect(existsSync(files.dir)).toBe(false);
    expect(readFileSync(join(outside, 'keep'), 'utf8')).toBe('keep me');
  });

  it('writes a fresh owner token the account can read at once', async () => {
    const { data, backend } = gateway('g6');
    const { c, files } = cluster(data, 'c6');
    await backend.writeBearerToken(c, 'access-token-1');
    expect(readFileSync(files.bearerToken, 'utf8')).toBe('access-token-1\n');
    expect(owner(files.bearerToken)).toEqual({ ...USER, mode: 0o600 });
  });
});

describe.skipIf(!root)('a workflow step directory handed to the job account', () => {
  function step(data: string, run: string, rel: string): StepLaunch {
    const workdir = join(data, 'workflows', run, rel);
    mkdirSync(join(workdir, '.af'), { recursive: true });
    writeFileSync(join(workdir, '.af', 'command'), 'echo hi');
    writeFileSync(join(workdir, '.af', 'run.sh'), '#!/bin/sh\n');
    return {
      run,
      node: rel.replace('/', ':'),
      owner: 'alice',
      workdir,
      wrapper: join(workdir, '.af', 'run.sh'),
      log: join(workdir, '.af', 'log'),
      env: {},
      cpus: 1,
      memory: 1,
    };
  }

  it('hands the tree over before the first job, and a retry never walks it again', async () => {
    const { data, backend } = gateway('s1');
    const s = step(data, 'run1', 'map/0');
    await one(backend.startSteps([s]));
    expect(owner(s.workdir)).toEqual({ ...USER, mode: 0o2700 });
    expect(owner(join(s.workdir, '.af'))).toMatchObject({ uid: USER.uid, mode: 0o2755 }); // setgid: later files are the account group's
    expect(owner(join(s.workdir, '.af', 'command')).uid).toBe(USER.uid);
    expect(owner(join(data, 'workflows', 'run1'))).toEqual({ uid: 0, gid: USER.gid, mode: 0o710 }); // only the account passes
    // the first attempt's job plants links to a root-owned file everywhere in its directory
    const t = target('t-step');
    for (const p of [join(s.workdir, '.af', 'evil'), join(s.workdir, 'out')]) {
      symlinkSync(t, p);
      lchownSync(p, USER.uid, USER.gid);
    }
    rmSync(join(s.workdir, '.af', 'run.sh'));
    symlinkSync(t, join(s.workdir, '.af', 'run.sh'));
    await one(backend.startSteps([s])); // the retry
    expect(owner(t)).toEqual({ uid: 0, gid: 0, mode: 0o600 });
  });

  it('refuses a step directory inside a directory the account can write to', async () => {
    const { data, backend } = gateway('s2');
    const s = step(data, 'run2', 'x/y');
    chownSync(join(data, 'workflows', 'run2', 'x'), USER.uid, USER.gid);
    await expect(one(backend.startSteps([s]))).rejects.toThrow(/belongs to uid 54321/);
    expect(owner(s.workdir).uid).toBe(0);
  });
});
