// The HTCondor backend's command builder and output parser (the pool itself is exercised in
// htcondor-pool.test.ts against a real HTCondor).
import { describe, expect, it } from 'vitest';
import { jobHosts, jobState, parseJobAds, parseTerseSubmit, type JobAd } from '../../src/backends/htcondor/condor-output.js';
import { addressesOnHosts, parseReportedAddress } from '../../src/backends/backend.js';
import {
  schedulerSubmitDescription,
  stepSubmitDescription,
  workerSubmitDescription,
  type WorkerJobSpec,
} from '../../src/backends/htcondor/submit-description.js';

const spec: WorkerJobSpec = {
  instance: 'af-gateway-abc',
  cluster: 'c0ffee',
  owner: 'alice',
  workerNames: ['c0ffee00-aaaa', 'c0ffee00-bbbb', 'c0ffee00-cccc'],
  python: '/opt/venv/bin/python',
  schedulerAddress: 'tls://10.0.0.5:40000',
  cores: 2,
  memoryGiB: 1.5,
  environment: { GREETING: "it's a test" },
  workDir: '/data/clusters/c0ffee',
  jobDir: '/data/clusters/c0ffee/jobs',
  cert: '/data/clusters/c0ffee/dask.crt',
  key: '/data/clusters/c0ffee/dask.pem',
  bearerToken: '/data/clusters/c0ffee/bearer-token',
  sharedFilesystem: true,
  universe: 'vanilla',
  containerImage: null,
  requirements: '(OpSysAndVer == "AlmaLinux9")',
  accountingGroup: 'group_cms',
  requestDisk: '2GB',
  extra: { '+SingularityBind': '"/cvmfs"' },
};

describe('worker submit description', () => {
  it('queues one proc per worker under one cluster id, each named as the scheduler will see it', () => {
    const text = workerSubmitDescription(spec);
    expect(text).toMatch(/queue AfWorker from \(\nc0ffee00-aaaa\nc0ffee00-bbbb\nc0ffee00-cccc\n\)\n$/);
    expect(text).toContain(
      'arguments = "-m distributed.cli.dask_worker tls://10.0.0.5:40000 --name $(AfWorker) --nthreads 2 --memory-limit 1610612736 --no-nanny --no-dashboard --death-timeout 60 --tls-ca-file /data/clusters/c0ffee/dask.crt',
    );
    expect(text).toContain(
      `environment = "'GREETING=it''s a test' DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION=True BEARER_TOKEN_FILE=/data/clusters/c0ffee/bearer-token"`,
    );
    expect(text).toContain('request_cpus = 2\nrequest_memory = 1536\nrequest_disk = 2GB');
    expect(text).toContain('+AfGatewayWorker = "$(AfWorker)"');
    // the jobs write in their own directory, not next to the cluster's keys
    expect(text).toContain(
      'initialdir = /data/clusters/c0ffee/jobs\noutput = /data/clusters/c0ffee/jobs/$(AfWorker).out\nerror = /data/clusters/c0ffee/jobs/$(AfWorker).log\nlog = /data/clusters/c0ffee/jobs/htcondor-jobs.log',
    );
    expect(text).toContain('should_transfer_files = NO');
    expect(text).toContain('requirements = (OpSysAndVer == "AlmaLinux9")');
    expect(text).toContain('accounting_group = group_cms\naccounting_group_user = alice');
    expect(text).toContain('+SingularityBind = "/cvmfs"');
  });

  it('transfers the TLS files and token when there is no shared filesystem, and sets the image', () => {
    const text = workerSubmitDescription({ ...spec, sharedFilesystem: false, universe: 'container', containerImage: '/cvmfs/unpacked.cern.ch/dask:2026' });
    expect(text).toContain('--tls-ca-file dask.crt --tls-cert dask.crt --tls-key dask.pem');
    expect(text).toContain('transfer_input_files = /data/clusters/c0ffee/dask.crt,/data/clusters/c0ffee/dask.pem,/data/clusters/c0ffee/bearer-token');
    expect(text).toContain('universe = container\n');
    expect(text).toContain('container_image = /cvmfs/unpacked.cern.ch/dask:2026');
  });

  it("gives a worker group's jobs its GPUs (request_gpus) and runs them in its image: the container universe, or docker_image where the pool uses docker", () => {
    const lines = (text: string) => text.split('\n');
    const gpu = lines(workerSubmitDescription({ ...spec, gpus: 2, image: 'docker://registry.cern.ch/af/dask-gpu:2026.3' }));
    expect(gpu.slice(0, 1)).toEqual(['universe = container']);
    expect(gpu).toContain('request_gpus = 2');
    expect(gpu.slice(gpu.indexOf('request_cpus = 2'), gpu.indexOf('request_cpus = 2') + 4)).toEqual([
      'request_cpus = 2',
      'request_memory = 1536',
      'request_gpus = 2',
      'request_disk = 2GB',
    ]);
    expect(gpu.filter((l) => /^(container_image|docker_image) =/.test(l))).toEqual(['container_image = docker://registry.cern.ch/af/dask-gpu:2026.3']);
    // The group's image wins over the pool's; the docker universe keeps docker_image.
    const docker = lines(workerSubmitDescription({ ...spec, universe: 'docker', containerImage: 'pool/dask:1', image: 'af/dask-gpu:2' }));
    expect(docker[0]).toBe('universe = docker');
    expect(docker.filter((l) => /^(container_image|docker_image) =/.test(l))).toEqual(['docker_image = af/dask-gpu:2']);
    const pool = lines(
      workerSubmitDescription({ ...spec, universe: 'container', containerImage: '/cvmfs/pool.sif', image: '/cvmfs/unpacked.cern.ch/af/gpu:1' }),
    );
    expect(pool.filter((l) => /^(container_image|docker_image) =/.test(l))).toEqual(['container_image = /cvmfs/unpacked.cern.ch/af/gpu:1']);
    // Without GPUs or an image, nothing of the kind is asked for.
    const plain = workerSubmitDescription({ ...spec, gpus: 0, image: null });
    expect(plain).not.toMatch(/request_gpus|container_image|docker_image/);
    expect(plain.startsWith('universe = vanilla\n')).toBe(true);
  });

  it('describes the scheduler as a job with the preload, its API token and the gateway address', () => {
    const { workerNames: _w, schedulerAddress: _s, cores: _c, memoryGiB: _m, ...common } = spec;
    const text = schedulerSubmitDescription({
      ...common,
      apiToken: '/data/clusters/c0ffee/api-token',
      apiUrl: 'https://af.example.org/api',
      host: '0.0.0.0',
      heartbeatPeriod: 10,
      adaptivePeriod: 3,
      idleTimeout: 0,
    });
    expect(text).toContain('-m distributed.cli.dask_scheduler --protocol tls --host 0.0.0.0 --port 0 --dashboard-address 0.0.0.0:0');
    // (then the worker groups' preload as one quoted word, its quotes doubled as HTCondor's arguments want)
    expect(text).toMatch(
      /--preload dask_gateway\.scheduler_preload --preload 'import base64; exec\(base64\.b64decode\(b''[A-Za-z0-9+/=]+''\)\.decode\(\)\)' --dg-api-address 0\.0\.0\.0:0 --dg-heartbeat-period 10/,
    );
    expect(text).toContain(
      'DASK_GATEWAY_API_URL=https://af.example.org/api DASK_GATEWAY_API_TOKEN=/data/clusters/c0ffee/api-token DASK_GATEWAY_CLUSTER_NAME=c0ffee',
    );
    expect(text).toMatch(/queue AfWorker from \(\nscheduler\n\)\n$/);
  });

  it('refuses a worker name that would break the queue statement', () => {
    expect(() => workerSubmitDescription({ ...spec, workerNames: ['a b'] })).toThrow(/cannot be queued/);
  });

  it("keeps a user's environment values literal: no macro ($ENV, $(...)) is expanded, no line break starts a statement", () => {
    const text = workerSubmitDescription({ ...spec, environment: { STEAL: '$ENV(AF_GATEWAY_SECRET)', M: '$(AfWorker)x' } });
    expect(text).toContain('STEAL=$(DOLLAR)ENV(AF_GATEWAY_SECRET) M=$(DOLLAR)(AfWorker)x ');
    expect(text).not.toMatch(/[^)]\$ENV/);
    expect(() => workerSubmitDescription({ ...spec, environment: { X: 'a\ninclude : /etc/shadow' } })).toThrow(/control characters/);
    expect(() => workerSubmitDescription({ ...spec, environment: { X: '$$(Memory)' } })).toThrow(/match-time substitution/);
    expect(() => workerSubmitDescription({ ...spec, environment: { 'A B': '1' } })).toThrow(/not an environment variable name/);
  });
});

describe('workflow step submit description', () => {
  const steps = {
    instance: 'af-gateway-abc',
    run: '0123456789ab',
    owner: 'alice',
    steps: [
      { node: 'map:0', dir: '/shared/wf/0123456789ab/map/0' },
      { node: 'map:1', dir: '/shared/wf/0123456789ab/map/1' },
    ],
    environment: { PATH: '/usr/bin:/bin', AF_WORKFLOW_RUN: '0123456789ab' },
    image: null as string | null,
    cpus: 1,
    memoryGiB: 2,
    universe: 'vanilla' as const,
    containerImage: null,
    requirements: null,
    accountingGroup: 'group_cms',
    requestDisk: '1GB',
    extra: {},
  };
  it("queues a stage's steps as one cluster, each running its wrapper in its own directory", () => {
    const d = stepSubmitDescription(steps);
    expect(d).toContain('executable = /bin/sh');
    expect(d).toContain('arguments = "$(AfStepDir)/.af/run.sh"');
    expect(d).toContain('initialdir = $(AfStepDir)');
    expect(d).toContain('+AfGatewayWorkflow = "0123456789ab"');
    expect(d).toContain('+AfGatewayStep = "$(AfStep)"');
    expect(d).toContain('should_transfer_files = NO');
    expect(d).toContain('accounting_group_user = alice');
    expect(d).toContain('universe = vanilla');
    expect(d).not.toContain('container_image');
    expect(d.trimEnd().split('\n').slice(-4)).toEqual([
      'queue AfStep, AfStepDir from (',
      'map:0, /shared/wf/0123456789ab/map/0',
      'map:1, /shared/wf/0123456789ab/map/1',
      ')',
    ]);
  });
  it('runs a docker-encapsulated step in its image through the container universe', () => {
    const d = stepSubmitDescription({ ...steps, image: 'busybox:1.36' });
    expect(d).toContain('universe = container');
    expect(d).toContain('container_image = docker://busybox:1.36');
  });
  it("keeps a workflow's image literal: the schema lets $ through, and condor_submit expands $ENV(…), $(…) anywhere in a value", () => {
    const d = stepSubmitDescription({ ...steps, image: 'x/$ENV(BEARER_TOKEN_FILE):$(SEC_PASSWORD_FILE)' });
    expect(d).toContain('container_image = docker://x/$(DOLLAR)ENV(BEARER_TOKEN_FILE):$(DOLLAR)(SEC_PASSWORD_FILE)');
    expect(() => stepSubmitDescription({ ...steps, image: 'x:$$(Memory)' })).toThrow(/match-time substitution/);
  });
  it('refuses a directory the queue list cannot carry', () => {
    expect(() => stepSubmitDescription({ ...steps, steps: [{ node: 'map:0', dir: '/shared/my wf/map/0' }] })).toThrow(/cannot be queued/);
    expect(() => stepSubmitDescription({ ...steps, steps: [{ node: 'map 0', dir: '/shared/wf/map/0' }] })).toThrow(/cannot be queued/);
  });
  it("gives each step its own token file (the owner's token the engine wrote into the step's .af), not the first step's", () => {
    const d = stepSubmitDescription({ ...steps, stepToken: true });
    expect(d).toMatch(/^environment = ".* BEARER_TOKEN_FILE=\$\(AfStepDir\)\/\.af\/bearer-token"$/m);
    expect(stepSubmitDescription(steps)).not.toContain('BEARER_TOKEN_FILE');
  });
  it("queues a subworkflow's steps, whose ids name their scope (sub[0].read)", () => {
    const d = stepSubmitDescription({ ...steps, steps: [{ node: 'sub[0].inner[2].read:1', dir: '/shared/wf/sub/0/inner/2/read/1' }] });
    expect(d).toContain('sub[0].inner[2].read:1, /shared/wf/sub/0/inner/2/read/1\n');
  });
});

describe('condor output', () => {
  it('reads the job ids condor_submit -terse prints', () => {
    expect(parseTerseSubmit('42.0 - 42.2\n')).toEqual({ clusterId: 42, first: 0, last: 2 });
    expect(() => parseTerseSubmit('ERROR: Failed to connect to local queue manager')).toThrow(/no job ids/);
  });

  it('maps job states to worker states with the reasons users need', () => {
    const now = 1_800_000_100_000;
    const [idle, running, held, done] = parseJobAds(
      JSON.stringify([
        { ClusterId: 7, ProcId: 0, JobStatus: 1, EnteredCurrentStatus: 1_800_000_000, NumJobMatches: 0 },
        { ClusterId: 7, ProcId: 1, JobStatus: 2, JobCurrentStartDate: 1_800_000_050 },
        { ClusterId: 7, ProcId: 2, JobStatus: 5, HoldReason: 'Error from slot1: Failed to execute' },
        { ClusterId: 7, ProcId: 3, JobStatus: 4, ExitCode: 1 },
      ]),
    );
    expect(jobState(idle, now)).toEqual({ alive: true, waiting: 'HTCondor job 7.0 is waiting for a slot (idle for 100 s) (no machine has matched it yet)' });
    expect(jobState(running, now)).toEqual({ alive: true, startedAt: 1_800_000_050_000 });
    expect(jobState(held, now)).toEqual({ alive: false, detail: 'HTCondor held job 7.2: Error from slot1: Failed to execute' });
    expect(jobState(done, now)).toEqual({ alive: false, detail: 'HTCondor job 7.3 exited with code 1' });
    expect(jobState(undefined, now).alive).toBe(false);
    expect(parseJobAds('')).toEqual([]);
  });
});

describe('where a running job is, as the schedd says', () => {
  const running = (extra: Partial<JobAd>): JobAd => ({ ClusterId: 7, ProcId: 0, JobStatus: 2, ...extra });

  it('takes every address of the startd, its alias and the slot machine (as condor_q -json printed them on the test pool)', () => {
    const hosts = jobHosts(
      running({ StartdIpAddr: '<127.0.0.1:30461?addrs=127.0.0.1-30461+[fd00::5]-30461&alias=vm&noUDP>', RemoteHost: 'slot1_1@VM.example.org' }),
    );
    expect([...hosts].sort()).toEqual(['127.0.0.1', 'fd00::5', 'vm', 'vm.example.org']);
  });

  it('knows no host for a job that does not run (idle, held) or an ad without addresses', () => {
    expect(jobHosts(undefined).size).toBe(0);
    expect(jobHosts({ ...running({ StartdIpAddr: '<10.0.0.5:9618>' }), JobStatus: 1 }).size).toBe(0);
    expect(jobHosts(running({ StartdIpAddr: 'garbage' })).size).toBe(0);
  });

  it('reads a malformed escape in the sinful string as no host rather than throwing (every check reads every job of every user)', () => {
    const hosts = jobHosts(running({ StartdIpAddr: '<10.0.0.5:9618?addrs=10.0.0.5-9618+%E0%A4%A-1&alias=%zz>', RemoteHost: 'slot1@node5' }));
    expect([...hosts].sort()).toEqual(['10.0.0.5', 'node5']);
  });

  it("a heartbeat may name only those hosts; the schemes are the backend's, the ports the scheduler's", () => {
    const hosts = jobHosts(running({ StartdIpAddr: '<10.0.0.5:9618?addrs=10.0.0.5-9618>', RemoteHost: 'slot1@node5' }));
    const at = addressesOnHosts(
      { scheduler: 'tls://10.0.0.5:40001', dashboard: 'HTTP://node5:8787/', api: 'http://10.0.0.5:40003' },
      hosts,
      'HTCondor job 7.0',
    );
    expect(at).toEqual({ scheduler: 'tls://10.0.0.5:40001', dashboard: 'http://node5:8787', api: 'http://10.0.0.5:40003' });
    for (const forged of ['http://169.254.169.254:80', 'http://10.0.0.6:8787', 'http://node5.evil:8787', 'http://[::1]:8787']) {
      expect(() => addressesOnHosts({ scheduler: 'tls://10.0.0.5:1', dashboard: forged, api: 'http://10.0.0.5:2' }, hosts, 'HTCondor job 7.0')).toThrow(
        expect.objectContaining({ statusCode: 422, code: 'address_not_backend' }),
      );
    }
    for (const malformed of ['http://user@10.0.0.5:80', 'http://10.0.0.5:80/path', 'http://10.0.0.5', 'http://10.0.0.5:99999', 'http://10.0.0.5:80\nHost: x']) {
      expect(() => parseReportedAddress(malformed, 'dashboard')).toThrow(expect.objectContaining({ statusCode: 422, code: 'bad_address' }));
    }
  });
});
