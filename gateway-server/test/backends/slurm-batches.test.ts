// The Slurm backend on the list contract: what one call of the engine costs in Slurm commands, and
// as which account each runs. A stand-in for the Slurm tools (a shell script after the command
// prefix) records each call and the account it acts as, numbers submissions like slurmctld, and
// answers squeue (with the query's own marker) from a queue of running, pending and ended jobs.
// The real cluster is in test/e2e/test_slurm_backend.py.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SlurmBackend } from '../../src/backends/slurm/slurm-backend.js';
import type { AccountResolver } from '../../src/accounts/accounts.js';
import type { BackendHandle, ClusterRecord, WorkerRecord } from '../../src/clusters/model.js';
import type { StepLaunch } from '../../src/backends/backend.js';
import { slurmTestBackend, slurmTestConfig } from '../support/slurm-config.js';
import { condorTestCluster } from '../support/htcondor-config.js';

let dir: string;
let standin: string;

/** Every user's account is the test's own uid (no files change hands here), under the user's name. */
const accounts: AccountResolver = {
  resolve: async (user) => {
    if (user === 'nobody') throw new Error('no account for nobody');
    return { name: `af-${user}`, uid: process.getuid!(), gid: process.getgid!(), home: '/nonexistent' };
  },
};

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'af-slurm-batches-'));
  standin = join(dir, 'slurm-standin');
  // $1 is --as=ACCOUNT (the prefix). sbatch: ids 20, 21, … (af-broken is refused); squeue: the
  // queue below, each line behind the marker the query's -o starts with (with -j, only those
  // arrays; a lone -j of a forgotten id fails as Slurm does); scancel: af-denied is refused.
  writeFileSync(
    standin,
    `#!/bin/sh
as="\${1#--as=}"; shift
cmd="$1"; shift
echo "$as $cmd $*" >> "${dir}/calls"
case "$cmd" in
  sbatch)
    id=$(flock "${dir}/lock" sh -c 'id=$(cat "${dir}/next" 2>/dev/null || echo 20); echo $((id + 1)) > "${dir}/next"; echo $id')
    cat > "${dir}/script.$id"
    [ "$as" = af-broken ] && { echo "sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified" >&2; exit 1; }
    echo "$id";;
  squeue)
    while [ $# -gt 0 ]; do case "$1" in -o) fmt="$2"; shift;; -j) jobs="$2"; shift;; -t) states="$2"; shift;; esac; shift; done
    m="\${fmt%%|*}"
    [ "$jobs" = 99 ] && { echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1; }
    [ -z "$jobs" ] && echo "ALL-JOBS" >> "${dir}/calls"
    name=$(cat "${dir}/name" 2>/dev/null)
    me=$(id -un)
    # names and comments only when the format asks for them (%j|%k last); then mallory's job 36,
    # listed first, has a comment with line breaks that forge lines of alice's jobs 20_0 and 35
    case "$fmt" in *'|%j|%k') text=1;; *) text=;; esac
    # (only -t all lists the jobs that ended)
    { [ -n "$text" ] && printf '%s\n' "$m|36|36|af-mallory|RUNNING|None|N/A|N/A|vm|evil|x" "$m|20_0|20|af-alice|FAILED|None|N/A|N/A|vm|$name.w.c1|af-owner:YWxpY2U" "$m|35|35|af-alice|RUNNING|None|N/A|N/A|vm|$name.w.c9|af-owner:YWxpY2U"
      cat; } <<EOF | { [ "$states" = all ] && cat || grep -v '|TIMEOUT|'; } | { [ -n "$text" ] && cat || sed 's/|[^|]*|[^|]*$//'; }
$m|20_0|20|af-alice|RUNNING|None|2026-12-07T04:00:00|2026-12-07T04:00:05|vm|$name.w.c1|af-owner:YWxpY2U
$m|20_1|20|af-alice|PENDING|QOSMaxJobsPerUserLimit|2026-12-07T04:00:00|N/A|n/a|$name.w.c1|af-owner:YWxpY2U
$m|21_0|21|af-bob|TIMEOUT|TimeLimit|2026-12-07T04:00:00|2026-12-07T04:00:05|vm|$name.w.c2|af-owner:Ym9i
$m|22|22|af-bob|RUNNING|None|2026-12-07T04:00:00|2026-12-07T04:00:05|vm|$name.s.c2|af-owner:Ym9i
$m|30_0|30|af-bob|RUNNING|None|N/A|N/A|vm|$name.w.gone|af-owner:Ym9i
$m|31|31|af-mallory|RUNNING|None|N/A|N/A|vm|$name.w.forged|af-owner:Ym9i
$m|32_0|32|af-bob|RUNNING|None|N/A|N/A|vm|$name.r.0123456789ab|af-owner:Ym9i
$m|33|33|af-bob|PENDING|Priority|N/A|N/A|n/a|af-gateway-ffffffffffff.w.other|af-owner:Ym9i
$m|34|34|$me|RUNNING|None|N/A|N/A|vm|$name.w.mine|af-owner:YWxpY2U
$m|35|35|af-alice|RUNNING|None|N/A|N/A|vm|myjob|(null)
EOF
    ;;
  scancel)
    [ "$as" = af-denied ] && { echo "scancel: error: Kill job error on job id 40: Access/permission denied" >&2; exit 1; }
    exit 0;;
  sinfo) echo "vm|127.0.0.1|vm";;
esac
`,
  );
  chmodSync(standin, 0o755);
});

afterEach(() => {
  for (const f of readdirSync(dir)) if (f === 'calls' || f === 'next' || f === 'name' || f.startsWith('script.')) rmSync(join(dir, f), { force: true });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const calls = () => readFileSync(join(dir, 'calls'), 'utf8').trim().split('\n');

function backend(over: Parameters<typeof slurmTestConfig>[0] = {}, singleUser = false): SlurmBackend {
  const data = mkdtempSync(join(dir, 'data-'));
  mkdirSync(join(data, 'clusters'));
  const b = slurmTestBackend(slurmTestConfig({ command_prefix: [standin, '--as={account}'], ...over }), accounts, data, singleUser);
  writeFileSync(join(dir, 'name'), b.instance);
  return b;
}

function launchesOf(b: SlurmBackend, name: string, username: string, workers: string[]) {
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

describe('the Slurm backend takes lists', () => {
  it('submits one job array per cluster of a startWorkers call, as each owner, results in the order asked', async () => {
    const b = backend();
    const [a1, a2] = launchesOf(b, 'c1', 'alice', ['c1-a', 'c1-b']);
    const [b1] = launchesOf(b, 'c2', 'bob', ['c2-a']);
    const results = await b.startWorkers([a1!, b1!, a2!]);
    expect(calls().sort()).toEqual(['af-alice sbatch --parsable', 'af-bob sbatch --parsable']);
    const ids = results.map(job);
    // c1's two workers are tasks 0 and 1 of one array; c2's worker is task 0 of another
    expect(ids[0]!.split('_')[0]).toBe(ids[2]!.split('_')[0]);
    expect([ids[0]!.split('_')[1], ids[2]!.split('_')[1]]).toEqual(['0', '1']);
    expect(ids[1]).toMatch(/^2[01]_0$/);
    expect(results.map((r) => (r instanceof Error ? null : r.worker))).toEqual(['c1-a', 'c2-a', 'c1-b']);
    // the array's script names the workers in task order and carries the gateway's name and the owner
    const script = readFileSync(join(dir, `script.${ids[0]!.split('_')[0]}`), 'utf8');
    expect(script).toContain(`#SBATCH --job-name=${b.instance}.w.c1\n#SBATCH --comment=af-owner:YWxpY2U\n#SBATCH --array=0-1\n`);
    expect(script).toContain("0) AF_WORKER='c1-a' ;;\n1) AF_WORKER='c1-b' ;;\n");
  });

  it("submits a GPU group's workers with --gres of backend.slurm.gpu_gres, and refuses an image (no container runtime) without submitting", async () => {
    const b = backend({ gpu_gres: 'gpu:a100' });
    const gpu = launchesOf(b, 'c11', 'alice', ['c11-a_gpu', 'c11-b_gpu']).map((l) => ({ ...l, worker: { ...l.worker, group: 'gpu' }, gpus: 2 }));
    const results = await b.startWorkers(gpu);
    expect(results.map(job)).toEqual(['20_0', '20_1']);
    const script = readFileSync(join(dir, 'script.20'), 'utf8');
    expect(script).toContain('#SBATCH --mem=1024M\n#SBATCH --gres=gpu:a100:2\n#SBATCH --export=NIL\n');
    const imaged = launchesOf(b, 'c12', 'alice', ['c12-a_img']).map((l) => ({ ...l, worker: { ...l.worker, group: 'img' }, image: 'registry/dask:1' }));
    const [refused] = await b.startWorkers(imaged);
    expect(refused).toBeInstanceOf(Error);
    expect((refused as Error).message).toMatch(/the Slurm backend runs no container images/);
    expect(calls()).toEqual(['af-alice sbatch --parsable']); // only the GPU group's submission
  });

  it('splits a scale step larger than max_array_size into several arrays', async () => {
    const b = backend({ max_array_size: 2 });
    const results = await b.startWorkers(launchesOf(b, 'c3', 'alice', ['w0', 'w1', 'w2', 'w3', 'w4']));
    expect(results.map(job)).toEqual(['20_0', '20_1', '21_0', '21_1', '22_0']);
    expect(calls()).toHaveLength(3);
  });

  it("fails only the launches of a submission sbatch refused; the other cluster's start", async () => {
    const b = backend();
    const [ok] = launchesOf(b, 'c4', 'alice', ['c4-a']);
    const [bad1, bad2] = launchesOf(b, 'c5', 'broken', ['c5-a', 'c5-b']);
    const results = await b.startWorkers([bad1!, ok!, bad2!]);
    expect((results[0] as Error).message).toMatch(/Invalid account or account\/partition/);
    expect(results[2]).toBeInstanceOf(Error);
    expect(job(results[1])).toMatch(/^2[01]_0$/);
  });

  it('answers a check of many jobs with one squeue of their arrays, as the gateway: running, pending with the reason, timed out', async () => {
    const b = backend();
    const handles = (await b.startWorkers(launchesOf(b, 'c1', 'alice', ['c1-a', 'c1-b']))) as BackendHandle[];
    const [timedOut] = (await b.startWorkers(launchesOf(b, 'c2', 'bob', ['c2-a']))) as BackendHandle[];
    rmSync(join(dir, 'calls'));
    const states = await b.check([...handles, timedOut!]);
    const me = process.env.USER ?? (await import('node:os')).userInfo().username;
    expect(calls()).toEqual([
      // (no names or comments: free text a job's owner could make look like lines of other jobs)
      expect.stringMatching(new RegExp(`^${me} squeue -h -r -t all -o [0-9a-f]{24}\\|%i\\|%F\\|%u\\|%T\\|%r\\|%V\\|%S\\|%B -j 20,21$`)),
    ]);
    expect(states[0]).toEqual({ alive: true, startedAt: Date.UTC(2026, 11, 7, 4, 0, 5) });
    expect(states[1]).toMatchObject({
      alive: true,
      waiting: expect.stringMatching(/^Slurm job 20_1 is pending for \d+ s: QOSMaxJobsPerUserLimit \(the QOS's limit/),
    });
    expect(states[2]).toMatchObject({
      alive: false,
      detail: expect.stringMatching(/^Slurm job 21_0 reached its time limit \(TimeLimit\); no log was written$/),
    });
    // every check asks again (no cache between calls)
    await b.check([timedOut!]);
    expect(calls().filter((l) => l.includes('squeue'))).toHaveLength(2);
  });

  it('reports a job Slurm has forgotten as gone (squeue -j of one unknown id fails)', async () => {
    const b = backend();
    const h = { kind: 'slurm-job', job: '99_0', cluster: 'c', worker: 'w', log: join(dir, 'none.log'), owner: 'alice', uid: process.getuid!() };
    expect(await b.check([h])).toEqual([{ alive: false, detail: 'Slurm job 99_0 is no longer in the queue; no log was written' }]);
  });

  it('cancels the jobs of one stop call with one scancel per account, and fails on a refusal', async () => {
    const b = backend();
    const alice = (await b.startWorkers(launchesOf(b, 'c1', 'alice', ['c1-a', 'c1-b']))) as BackendHandle[];
    const bob = (await b.startWorkers(launchesOf(b, 'c2', 'bob', ['c2-a']))) as BackendHandle[];
    rmSync(join(dir, 'calls'));
    await b.stop([alice[0]!, bob[0]!, alice[1]!]);
    expect(calls().sort()).toEqual([`af-alice scancel ${alice[0]!.job} ${alice[1]!.job}`, `af-bob scancel ${bob[0]!.job}`]);
    await b.stop([]);
    expect(calls()).toHaveLength(2);
    const denied = { kind: 'slurm-job', job: '40', cluster: 'c', worker: 'scheduler', log: '', owner: 'denied', uid: null };
    await expect(b.stop([denied])).rejects.toThrow(/Access\/permission denied/);
  });

  it("after a restart cancels its own orphaned workers and schedulers as their owners; leaves steps, forgeries and other gateways' jobs", async () => {
    const b = backend();
    const live = { kind: 'slurm-job', job: '20_0', cluster: 'c1', worker: 'c1-a', log: '', owner: 'alice', uid: null };
    await b.removeOrphans([live]);
    const [query, ...rest] = calls();
    expect(query).toMatch(/ squeue -h -r -t PENDING,RUNNING,SUSPENDED,CONFIGURING,REQUEUED,REQUEUE_HOLD,RESIZING,STOPPED -o /);
    expect(query).not.toContain(' -j ');
    expect(query).toMatch(/\|%B\|%j\|%k$/);
    // 20_0 is tracked; 20_1 (alice's), 22 and 30_0 (bob's) are orphans; 31 is mallory's job
    // claiming bob, 32_0 a workflow step, 33 another gateway's (21_0 ended: not listed); 34 is the
    // gateway account's job naming alice; 35 is alice's own job, which mallory's comment printed
    // first as an orphan of the gateway's: an id on two lines is believed on neither
    expect(rest.filter((l) => l !== 'ALL-JOBS').sort()).toEqual(['af-alice scancel 20_1', 'af-bob scancel 22 30_0']);
  });

  it("single-user: cancels only its own account's orphans, not other users' jobs named like its own", async () => {
    const b = backend({ command_prefix: [standin, '--as=self'] }, true);
    await b.removeOrphans([]);
    // 34 is the only job of the gateway's account; as an operator its scancel would end anyone's
    expect(calls().filter((l) => l.includes('scancel'))).toEqual(['self scancel 34']);
  });

  it("takes a scheduler job's heartbeat addresses only on the node Slurm runs it on (asked once), and refuses any other host", async () => {
    const b = backend();
    const scheduler = { kind: 'slurm-job', job: '22', cluster: 'c2', worker: 'scheduler', log: '', owner: 'bob', uid: null };
    const cluster = { name: 'c2', scheduler } as unknown as ClusterRecord;
    const reported = { scheduler: 'tls://127.0.0.1:4000', dashboard: 'http://127.0.0.1:8787', api: 'http://127.0.0.1:9000/' };
    expect(await b.schedulerAddresses(cluster, reported)).toEqual({
      scheduler: 'tls://127.0.0.1:4000',
      dashboard: 'http://127.0.0.1:8787',
      api: 'http://127.0.0.1:9000',
    });
    expect(calls().map((l) => l.split(' ').slice(1, 2)[0])).toEqual(['squeue', 'sinfo']);
    expect(calls()[0]).toContain(' -j 22');
    for (const host of ['169.254.169.254', '10.96.0.1', 'kubernetes.default.svc']) {
      await expect(b.schedulerAddresses(cluster, { ...reported, api: `http://${host}:443` })).rejects.toMatchObject({
        statusCode: 422,
        code: 'address_not_backend',
      });
    }
    // the node's addresses were noted: no more queries
    expect(calls()).toHaveLength(2);
  });

  it('submits a stage of workflow steps as one array of their owner, and refuses a step with a container image', async () => {
    const b = backend();
    const step = (node: string, image?: string): StepLaunch => ({
      run: '0123456789ab',
      node,
      owner: 'alice',
      workdir: join(dir, node),
      wrapper: join(dir, node, '.af', 'run.sh'),
      log: join(dir, node, '.af', 'log'),
      env: { AF_WORKFLOW_RUN: '0123456789ab', AF_WORKFLOW_STEP: node },
      image,
      cpus: 1,
      memory: 2,
    });
    const steps = (await b.startSteps([step('map0'), step('map1')])) as BackendHandle[];
    expect(steps.map((s) => s.job)).toEqual(['20_0', '20_1']);
    expect(calls()).toEqual(['af-alice sbatch --parsable']);
    expect(readFileSync(join(dir, 'script.20'), 'utf8')).toContain(`#SBATCH --job-name=${b.instance}.r.0123456789ab\n`);
    const [refused] = await b.startSteps([step('img', 'docker.io/library/busybox')]);
    expect((refused as Error).message).toMatch(/runs no container images.*workflows.images: ignore/);
  });

  it('refuses a command prefix that would submit every user as the gateway, and extra options it does not allow', () => {
    expect(() => backend({ command_prefix: [] })).toThrow(/every user's jobs as the gateway's own account/);
    expect(() => backend({ command_prefix: [] }, true)).not.toThrow();
    expect(() => backend({ sbatch_options: ['--uid=0'] })).toThrow(/--uid is not one the gateway allows/);
    expect(() => backend({ sbatch_options: ['--export=ALL', '--chdir=/'] })).toThrow(/--export is not one.*--chdir is not one/);
  });
});
