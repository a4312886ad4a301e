// The HTCondor backend on the list contract: what one call of the engine costs in condor commands.
// A stand-in for the condor tools (a shell script after the command prefix) records each call and
// the account it acts as, numbers submissions like a schedd, and answers condor_q with a queue of
// one running, one idle and one held job. The real pool is in test/e2e/test_htcondor_pool.py.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HTCondorBackend } from '../../src/backends/htcondor/htcondor-backend.js';
import type { LocalBackend } from '../../src/backends/local/local-backend.js';
import { makeLogger } from '../../src/server.js';
import type { AccountResolver } from '../../src/accounts/accounts.js';
import type { BackendHandle, WorkerRecord } from '../../src/clusters/model.js';
import { condorTestBackend, condorTestCluster, condorTestConfig } from '../support/htcondor-config.js';

let dir: string;
let standin: string;

/** Every user's account is the test's own uid (no files change hands here), under the user's name. */
const accounts: AccountResolver = {
  resolve: async (user) => ({ name: `af-${user}`, uid: process.getuid!(), gid: process.getgid!(), home: '/nonexistent' }),
};

const config = condorTestConfig({ poll_period: 3 });

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'af-condor-batches-'));
  standin = join(dir, 'condor-standin');
  // $1 is --as=ACCOUNT (the prefix); submissions get cluster ids 20, 21, … (one proc per queued
  // name); the account af-broken is refused by the schedd.
  writeFileSync(
    standin,
    `#!/bin/sh
as="\${1#--as=}"; shift
echo "$as $*" >> "${dir}/calls"
case "$1" in
  condor_submit)
    cat > "${dir}/submitted.$$"
    [ "$as" = af-broken ] && { echo "ERROR: Failed to connect to local queue manager" >&2; exit 1; }
    n=$(sed -n '/^queue .* from ($/,/^)$/p' "${dir}/submitted.$$" | grep -vc -e '^queue' -e '^)$')
    # (submissions may come at once: the id is taken under a lock, as a schedd would)
    id=$(flock "${dir}/lock" sh -c 'id=$(cat "${dir}/next" 2>/dev/null || echo 20); echo $((id + 1)) > "${dir}/next"; echo $id')
    echo "$id.0 - $id.$((n - 1))";;
  condor_q)
    # mallory tagged a flood of her own jobs with this gateway's instance: a listing of every
    # tagged job (no job cluster named in the constraint) brings them along
    case "$*" in *ClusterId*) ;; *) echo "MALLORY-FLOOD" >> "${dir}/calls";; esac
    echo '[{"ClusterId": 20, "ProcId": 0, "JobStatus": 2, "JobCurrentStartDate": 1700000000},
    {"ClusterId": 20, "ProcId": 1, "JobStatus": 1, "LastRejMatchReason": "no match found"},
    {"ClusterId": 21, "ProcId": 0, "JobStatus": 5, "HoldReason": "Error from slot1: out of memory"}]';;
  condor_rm) exit 0;;
esac
`,
  );
  chmodSync(standin, 0o755);
});

afterEach(() => {
  rmSync(join(dir, 'calls'), { force: true });
  rmSync(join(dir, 'next'), { force: true });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const calls = () => readFileSync(join(dir, 'calls'), 'utf8').trim().split('\n');

function backend(): HTCondorBackend {
  const data = mkdtempSync(join(dir, 'data-'));
  mkdirSync(join(data, 'clusters'));
  return condorTestBackend({ ...config, command_prefix: [standin, '--as={account}'] }, accounts, data);
}

function launchesOf(b: HTCondorBackend, name: string, username: string, workers: string[]) {
  const work = join((b as unknown as { dataDir: string }).dataDir, 'clusters', name);
  mkdirSync(work, { recursive: true, mode: 0o700 });
  const { files, cluster } = condorTestCluster(work, name, username);
  return workers.map((w) => ({ cluster, worker: { name: w } as WorkerRecord, files }));
}

/** A result's job id (a batch handle records it as a string), or the error's message. */
const job = (r: BackendHandle | Error | undefined): string => {
  if (r instanceof Error) return `Error: ${r.message}`;
  if (typeof r?.job !== 'string') throw new Error(`no job id in the handle ${JSON.stringify(r)}`);
  return r.job;
};

describe('the HTCondor backend takes lists', () => {
  it('submits one job cluster per cluster of a startWorkers call, as each owner, results in the order asked', async () => {
    const b = backend();
    const [a1, a2] = launchesOf(b, 'c1', 'alice', ['c1-a', 'c1-b']);
    const [b1] = launchesOf(b, 'c2', 'bob', ['c2-a']);
    const results = await b.startWorkers([a1!, b1!, a2!]);
    const submits = calls().filter((l) => l.includes('condor_submit'));
    expect(submits.sort()).toEqual(['af-alice condor_submit -terse -', 'af-bob condor_submit -terse -']);
    const ids = results.map(job);
    // c1's two workers are procs 0 and 1 of one job cluster; c2's worker is another job cluster
    expect(ids[0]!.split('.')[0]).toBe(ids[2]!.split('.')[0]);
    expect([ids[0]!.split('.')[1], ids[2]!.split('.')[1]]).toEqual(['0', '1']);
    expect(ids[1]).toMatch(/^2[01]\.0$/);
    expect(ids[1]!.split('.')[0]).not.toBe(ids[0]!.split('.')[0]);
    expect(results.map((r) => (r instanceof Error ? null : r.worker))).toEqual(['c1-a', 'c2-a', 'c1-b']);
  });

  it("submits a GPU group's workers with the group's request_gpus and image, apart from the cluster's other group", async () => {
    const b = backend();
    const plain = launchesOf(b, 'c11', 'alice', ['c11-a']).map((l) => ({ ...l, worker: { ...l.worker, group: 'default' } }));
    const gpu = launchesOf(b, 'c11', 'alice', ['c11-b_gpu', 'c11-c_gpu']).map((l) => ({
      ...l,
      worker: { ...l.worker, group: 'gpu' },
      gpus: 1,
      image: 'docker://registry.cern.ch/af/dask-gpu:2026.3',
    }));
    const results = await b.startWorkers([gpu[0]!, plain[0]!, gpu[1]!]);
    expect(results.every((r) => !(r instanceof Error))).toBe(true);
    const descriptions = readdirSync(dir)
      .filter((f) => f.startsWith('submitted.'))
      .map((f) => readFileSync(join(dir, f), 'utf8'))
      .filter((d) => d.includes('c11'));
    expect(descriptions).toHaveLength(2);
    const withGpus = descriptions.find((d) => d.includes('c11-b_gpu'))!;
    expect(withGpus).toMatch(/\nqueue AfWorker from \(\nc11-b_gpu\nc11-c_gpu\n\)\n$/);
    expect(withGpus.split('\n')).toEqual(
      expect.arrayContaining(['universe = container', 'request_gpus = 1', 'container_image = docker://registry.cern.ch/af/dask-gpu:2026.3']),
    );
    const without = descriptions.find((d) => d.includes('c11-a'))!;
    expect(without).not.toMatch(/request_gpus|container_image/);
    expect(without).toContain('universe = vanilla\n');
  });

  it("fails only the launches of a submission the schedd refused; the other cluster's start", async () => {
    const b = backend();
    const [ok] = launchesOf(b, 'c3', 'alice', ['c3-a']);
    const [bad1, bad2] = launchesOf(b, 'c4', 'broken', ['c4-a', 'c4-b']);
    const results = await b.startWorkers([bad1!, ok!, bad2!]);
    expect(results[0]).toBeInstanceOf(Error);
    expect(results[2]).toBeInstanceOf(Error);
    expect((results[0] as Error).message).toMatch(/Failed to connect to local queue manager/);
    expect(job(results[1])).toBe('20.0');
  });

  it('answers a check of many jobs with one condor_q: running, waiting for a slot, held', async () => {
    const b = backend();
    const handles = (await b.startWorkers(launchesOf(b, 'c5', 'alice', ['c5-a', 'c5-b']))) as BackendHandle[];
    const [held] = (await b.startWorkers(launchesOf(b, 'c6', 'alice', ['c6-a']))) as BackendHandle[];
    rmSync(join(dir, 'calls'));
    const states = await b.check([...handles, held!]);
    expect(calls().filter((l) => l.includes('condor_q'))).toHaveLength(1);
    expect(calls().every((l) => l.includes('condor_q'))).toBe(true); // nothing else: no per-job lookups for queued jobs
    expect(states[0]).toEqual({ alive: true, startedAt: 1700000000_000 });
    expect(states[1]).toMatchObject({ alive: true, waiting: expect.stringMatching(/HTCondor job 20\.1 is waiting for a slot.*no match found/) });
    expect(states[2]).toEqual({ alive: false, detail: 'HTCondor held job 21.0: Error from slot1: out of memory' });
    // every check call asks the queue again (no cache between calls)
    await b.check([held!]);
    expect(calls().filter((l) => l.includes('condor_q'))).toHaveLength(2);
  });

  it("asks condor_q only for the job clusters of the handles checked, so jobs others tagged with the gateway's instance are not read", async () => {
    const b = backend();
    const handles = (await b.startWorkers(launchesOf(b, 'c9', 'alice', ['c9-a']))) as BackendHandle[];
    const [other] = (await b.startWorkers(launchesOf(b, 'c10', 'bob', ['c10-a']))) as BackendHandle[];
    rmSync(join(dir, 'calls'));
    await b.check([...handles, other!]);
    const queries = calls().filter((l) => l.includes('condor_q'));
    expect(queries).toHaveLength(1);
    expect(queries[0]).toContain('(ClusterId == 20 || ClusterId == 21)');
    expect(calls()).not.toContain('MALLORY-FLOOD');
  });

  it('removes the jobs of one stop call with one condor_rm per account', async () => {
    const b = backend();
    const alice = (await b.startWorkers(launchesOf(b, 'c7', 'alice', ['c7-a', 'c7-b']))) as BackendHandle[];
    const bob = (await b.startWorkers(launchesOf(b, 'c8', 'bob', ['c8-a']))) as BackendHandle[];
    rmSync(join(dir, 'calls'));
    await b.stop([alice[0]!, bob[0]!, alice[1]!]);
    expect(calls().sort()).toEqual([`af-alice condor_rm ${alice[0]!.job} ${alice[1]!.job}`, `af-bob condor_rm ${bob[0]!.job}`]);
    await b.stop([]);
    expect(calls()).toHaveLength(2);
  });

  it('after a restart, also has the local backend look for the orphaned schedulers it ran next to the gateway, telling it the live ones', async () => {
    const data = mkdtempSync(join(dir, 'data-'));
    mkdirSync(join(data, 'clusters'));
    const asked: BackendHandle[][] = [];
    const local = { removeOrphans: async (live: BackendHandle[]) => void asked.push(live) } as unknown as LocalBackend;
    const b = new HTCondorBackend({
      config: { ...config, command_prefix: [standin, '--as={account}'], scheduler_in_job: false },
      accounts,
      local,
      python: '/opt/python',
      dataDir: data,
      log: makeLogger('silent'),
    });
    const [worker] = (await b.startWorkers(launchesOf(b, 'c11', 'alice', ['c11-a']))) as BackendHandle[];
    const scheduler = { kind: 'local', pid: 4242, startTicks: '77', cluster: 'c11', worker: '', log: '' } as unknown as BackendHandle;
    await b.removeOrphans([worker!, scheduler]);
    expect(asked).toEqual([[scheduler]]);
    // the jobs were looked for as well
    expect(calls().some((l) => l.includes('condor_q'))).toBe(true);
  });
});
