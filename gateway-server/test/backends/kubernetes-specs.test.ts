// The Kubernetes objects the backend creates and how pod states read to users. (The backend itself
// runs against a real API server in kubernetes-backend.test.ts.)
import { describe, expect, it } from 'vitest';
import type { V1Pod } from '@kubernetes/client-node';
import type { ClusterRecord } from '../../src/clusters/model.js';
import {
  clusterNetworkPolicy,
  clusterSecret,
  deepMerge,
  dnsLabel,
  labelValue,
  podSecurity,
  schedulerPod,
  schedulerService,
  stepJob,
  workerPod,
  type KubernetesSpecConfig,
  stepJobName,
} from '../../src/backends/kubernetes/pod-specs.js';
import { AppError } from '../../src/errors.js';
import type { AccountResolver } from '../../src/accounts/accounts.js';
import { podState } from '../../src/backends/kubernetes/pod-status.js';

const cfg: KubernetesSpecConfig = {
  image: 'ghcr.io/dask/dask-gateway:2026.3.0',
  image_pull_policy: 'IfNotPresent',
  gpu_resource: 'nvidia.com/gpu',
  python: 'python',
  scheduler_cores: 1,
  scheduler_memory: 2,
  node_selector: { pool: 'dask' },
  tolerations: [],
  scheduler_extra_pod_config: { priorityClassName: 'af-high' },
  worker_extra_pod_config: {},
  scheduler_extra_container_config: {},
  // an admin's extra config cannot take the user's identity or the hardening away (it can add to it)
  worker_extra_container_config: { securityContext: { runAsUser: 0, privileged: true, allowPrivilegeEscalation: true, readOnlyRootFilesystem: true } },
  profiles: {
    gpu: {
      resources: { limits: { 'nvidia.com/gpu': 1 } },
      node_selector: { accelerator: 'nvidia' },
      tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }],
    },
  },
  delete_grace_period: 10,
  cluster_domain: 'cluster.local',
  gateway_pod_labels: { 'app.kubernetes.io/name': 'af-gateway', 'app.kubernetes.io/component': 'gateway' },
  gateway_cidrs: [],
};

/** alice's mapped account */
const alice = { uid: 2001, gid: 2101 };
const hardenedContainer = {
  runAsNonRoot: true,
  runAsUser: 2001,
  runAsGroup: 2101,
  allowPrivilegeEscalation: false,
  privileged: false,
  capabilities: { drop: ['ALL'] },
  seccompProfile: { type: 'RuntimeDefault' },
};

const cluster = (extra: Partial<ClusterRecord['settings']> = {}) =>
  ({
    name: 'c0ffee',
    username: 'alice@example.org',
    tlsCert: 'CERT',
    tlsKey: 'KEY',
    token: 'TOKEN',
    schedulerAddress: 'tls://af-gateway-c0ffee.ns.svc.cluster.local:8786',
    settings: { worker_cores: 2, worker_memory: 1.5, environment: { FOO: 'bar' }, idle_timeout: 0, ...extra },
  }) as unknown as ClusterRecord;

describe('Kubernetes objects of a cluster', () => {
  it('puts the TLS pair and API token in a Secret and labels everything with instance, cluster, component and owner', () => {
    const s = clusterSecret('af-gateway-abc', cluster(), 'BEARER');
    expect(s.stringData).toEqual({ 'dask.crt': 'CERT', 'dask.pem': 'KEY', 'api-token': 'TOKEN', 'bearer-token': 'BEARER' });
    expect(s.metadata!.labels).toEqual({
      'app.kubernetes.io/managed-by': 'af-gateway',
      'af-gateway.io/instance': 'af-gateway-abc',
      'af-gateway.io/cluster': 'c0ffee',
      'af-gateway.io/component': 'credentials',
      'af-gateway.io/owner': 'alice_example.org',
    });
  });

  it('runs the scheduler with the gateway preload, TLS from the Secret, fixed ports on the pod IP', () => {
    const p = schedulerPod('af-gateway-abc', cluster(), cfg, 'http://af-gateway.ns.svc:8000/api', { heartbeat: 15, adaptive: 3 }, alice);
    const c = p.spec!.containers[0]!;
    expect(c.command).toEqual(['python', '-m', 'distributed.cli.dask_scheduler']);
    expect(c.args).toEqual(
      expect.arrayContaining(['--preload', 'dask_gateway.scheduler_preload', '--host', '$(AF_POD_IP)', '--tls-key', '/etc/af-gateway/dask.pem']),
    );
    expect(c.env).toContainEqual({ name: 'DASK_GATEWAY_API_URL', value: 'http://af-gateway.ns.svc:8000/api' });
    expect(c.env).toContainEqual({ name: 'AF_POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } });
    expect(c.resources).toEqual({ requests: { cpu: '1', memory: '2048Mi' }, limits: { cpu: '1', memory: '2048Mi' } });
    expect(p.spec!.volumes).toEqual([{ name: 'credentials', secret: { secretName: 'af-gateway-c0ffee', defaultMode: 0o400 } }]);
    expect(p.spec).toMatchObject({ restartPolicy: 'Never', nodeSelector: { pool: 'dask' }, priorityClassName: 'af-high', automountServiceAccountToken: false });
    const svc = schedulerService('af-gateway-abc', cluster(), { name: p.metadata!.name!, uid: 'u-1' });
    expect(svc.spec!.selector).toEqual({
      'af-gateway.io/instance': 'af-gateway-abc',
      'af-gateway.io/cluster': 'c0ffee',
      'af-gateway.io/component': 'scheduler',
    });
    expect(svc.metadata!.ownerReferences).toEqual([
      { apiVersion: 'v1', kind: 'Pod', name: 'af-gateway-c0ffee-scheduler', uid: 'u-1', blockOwnerDeletion: true, controller: false },
    ]);
    expect(svc.spec!.ports!.map((x) => x.port)).toEqual([8786, 8787, 8788]);
  });

  it('makes worker pods owned by the scheduler pod, sized from the cluster options, with a GPU profile on request', () => {
    const plain = workerPod('af-gateway-abc', cluster(), 'c0ffee-1a2b', cfg, { name: 'af-gateway-c0ffee-scheduler', uid: 'u-1' }, alice);
    expect(plain.metadata!.ownerReferences![0]).toMatchObject({ kind: 'Pod', uid: 'u-1', blockOwnerDeletion: true });
    expect(plain.metadata!.labels!['af-gateway.io/worker']).toBe('c0ffee-1a2b');
    const c = plain.spec!.containers[0]!;
    expect(c.args!.slice(0, 3)).toEqual(['tls://af-gateway-c0ffee.ns.svc.cluster.local:8786', '--name', 'c0ffee-1a2b']);
    expect(c.resources).toEqual({ requests: { cpu: '2', memory: '1536Mi' }, limits: { cpu: '2', memory: '1536Mi' } });
    expect(c.securityContext).toEqual({ ...hardenedContainer, readOnlyRootFilesystem: true });
    expect(c.env).toContainEqual({ name: 'FOO', value: 'bar' });
    const gpu = workerPod('af-gateway-abc', cluster({ worker_profile: 'gpu' }), 'c0ffee-1a2b', cfg, { name: 's', uid: 'u-1' }, alice);
    expect(gpu.spec!.containers[0]!.resources!.limits).toEqual({ cpu: '2', memory: '1536Mi', 'nvidia.com/gpu': 1 });
    expect(gpu.spec!.nodeSelector).toEqual({ pool: 'dask', accelerator: 'nvidia' });
    expect(gpu.spec!.tolerations).toEqual([{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }]);
  });

  it("gives a worker group's pods its GPUs as a limit of the configured resource and its image, over the profile's and the backend's", () => {
    const owner = { name: 's', uid: 'u-1' };
    const grouped = workerPod('af-gateway-abc', cluster(), 'c0ffee-1a2b_gpu', cfg, owner, alice, { gpus: 2, image: 'registry.cern.ch/af/dask-gpu:2026.3' });
    const c = grouped.spec!.containers[0]!;
    expect(c.image).toBe('registry.cern.ch/af/dask-gpu:2026.3');
    expect(c.resources).toEqual({ requests: { cpu: '2', memory: '1536Mi' }, limits: { cpu: '2', memory: '1536Mi', 'nvidia.com/gpu': '2' } });
    // a profile the user picked (with an image of its own) and another device plugin's resource
    const amdCfg = { ...cfg, gpu_resource: 'amd.com/gpu', profiles: { big: { image: 'profile/dask:1', node_selector: { size: 'big' } } } };
    const amd = workerPod('af-gateway-abc', cluster({ worker_profile: 'big' }), 'w', amdCfg, owner, alice, { gpus: 1, image: 'af/rocm:1' });
    expect(amd.spec!.containers[0]!.image).toBe('af/rocm:1');
    expect(amd.spec!.containers[0]!.resources!.limits).toEqual({ cpu: '2', memory: '1536Mi', 'amd.com/gpu': '1' });
    expect(amd.spec!.nodeSelector).toEqual({ pool: 'dask', size: 'big' });
    expect(workerPod('af-gateway-abc', cluster({ worker_profile: 'big' }), 'w', amdCfg, owner, alice).spec!.containers[0]!.image).toBe('profile/dask:1');
    // no group settings: the backend's image, no GPU
    const plain = workerPod('af-gateway-abc', cluster(), 'w', cfg, owner, alice, { gpus: 0, image: null }).spec!.containers[0]!;
    expect(plain.image).toBe(cfg.image);
    expect(plain.resources!.limits).toEqual({ cpu: '2', memory: '1536Mi' });
  });

  it("runs a workflow step as a Job that never retries, as its owner, with only its run's directory of the workspace mounted", () => {
    const j = stepJob({
      instance: 'af-gateway-abc',
      run: '0123456789ab',
      node: 'map:3',
      owner: 'alice',
      image: 'busybox:1.36',
      imagePullPolicy: 'IfNotPresent',
      wrapper: '/ws/0123456789ab/map/3/.af/run.sh',
      workdir: '/ws/0123456789ab/map/3',
      env: { A: 'b' },
      cpus: 1,
      memoryGiB: 2,
      workspace: { mountPath: '/ws/0123456789ab', subPath: '0123456789ab', volume: { persistentVolumeClaim: { claimName: 'af-workspaces' } } },
      account: alice,
      nodeSelector: {},
      tolerations: [],
    });
    expect(j.metadata!.name).toMatch(/^af-step-0123456789ab-map-3-[0-9a-f]{8}$/);
    // node ids the DNS label folds together stay apart, and a deep subworkflow's id is cut but kept apart too
    const names = [
      'a[0].b',
      'a.0.b',
      'A[0].b',
      'outer[10].middle[3].inner[7].stage_with_a_long_name:12',
      'outer[10].middle[3].inner[7].stage_with_a_long_name:13',
    ].map((n) => stepJobName('0123456789ab', n));
    expect(new Set(names).size).toBe(names.length);
    for (const n of names) expect(n).toMatch(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/);
    expect(j.spec!.backoffLimit).toBe(0);
    const spec = j.spec!.template.spec!;
    expect(spec.restartPolicy).toBe('Never');
    expect(j.spec!.template.metadata!.labels!['af-gateway.io/workflow-step']).toBe('map_3');
    expect(spec.containers[0]).toMatchObject({
      image: 'busybox:1.36',
      command: ['/bin/sh', '/ws/0123456789ab/map/3/.af/run.sh'],
      workingDir: '/ws/0123456789ab/map/3',
    });
    // the run's directory of the volume, at the path the engine wrote it: not the root, not other runs
    expect(spec.containers[0]!.volumeMounts).toEqual([{ name: 'workspace', mountPath: '/ws/0123456789ab', subPath: '0123456789ab' }]);
    expect(spec.volumes).toEqual([{ name: 'workspace', persistentVolumeClaim: { claimName: 'af-workspaces' } }]);
    expect(spec.automountServiceAccountToken).toBe(false);
    expect(spec.containers[0]!.securityContext).toEqual(hardenedContainer);
    // no fsGroup: a kubelet would re-own the whole shared workspace volume with it
    expect(spec.securityContext).toEqual({ runAsNonRoot: true, runAsUser: 2001, runAsGroup: 2101, seccompProfile: { type: 'RuntimeDefault' } });
  });

  it("runs every pod of a cluster as its owner's account, hardened, whatever the extra configs say", () => {
    const hostile = {
      ...cfg,
      scheduler_extra_pod_config: {
        securityContext: { runAsUser: 0, runAsNonRoot: false, supplementalGroups: [5] },
        automountServiceAccountToken: true,
        hostPID: true,
        serviceAccountName: 'x',
      },
    };
    const pods = [
      schedulerPod('af-gateway-abc', cluster(), hostile, 'http://gw/api', { heartbeat: 15, adaptive: 3 }, alice),
      workerPod('af-gateway-abc', cluster(), 'w1', hostile, { name: 's', uid: 'u-1' }, alice),
    ];
    for (const p of pods) {
      expect(p.spec).toMatchObject({ automountServiceAccountToken: false, hostPID: false, hostNetwork: false, hostIPC: false });
      // fsGroup: the kubelet makes the 0400 Secret files root:<gid> 0440, readable by this pod only
      expect(p.spec!.securityContext).toMatchObject({
        runAsNonRoot: true,
        runAsUser: 2001,
        runAsGroup: 2101,
        fsGroup: 2101,
        seccompProfile: { type: 'RuntimeDefault' },
      });
      expect(p.spec!.containers[0]!.securityContext).toMatchObject(hardenedContainer);
    }
    expect(pods[0]!.spec!.securityContext!.supplementalGroups).toEqual([5]); // additions stay
    expect(() => podSecurity({ uid: 0, gid: 100 }, { fsGroup: true })).toThrow(/never root/);
    expect(() => podSecurity({ uid: 1000, gid: 0 }, { fsGroup: true })).toThrow(/never root/);
  });

  it("lets only the cluster's own pods and the gateway's reach the cluster (a NetworkPolicy per cluster)", () => {
    const np = clusterNetworkPolicy('af-gateway-abc', cluster(), { namespace: 'af-system', podLabels: cfg.gateway_pod_labels, cidrs: ['10.0.0.5/32'] });
    expect(np.metadata!.name).toBe('af-gateway-c0ffee');
    const own = { 'af-gateway.io/instance': 'af-gateway-abc', 'af-gateway.io/cluster': 'c0ffee' };
    expect(np.spec).toEqual({
      podSelector: { matchLabels: own },
      policyTypes: ['Ingress'],
      ingress: [
        { _from: [{ podSelector: { matchLabels: own } }] },
        {
          _from: [
            { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'af-system' } }, podSelector: { matchLabels: cfg.gateway_pod_labels } },
            { ipBlock: { cidr: '10.0.0.5/32' } },
          ],
          ports: [
            { protocol: 'TCP', port: 8786 },
            { protocol: 'TCP', port: 8787 },
            { protocol: 'TCP', port: 8788 },
          ],
        },
      ],
    });
    // an empty selector would admit every pod of the namespace
    expect(() => clusterNetworkPolicy('af-gateway-abc', cluster(), { namespace: 'ns', podLabels: {}, cidrs: [] })).toThrow(/gateway_pod_labels/);
  });

  it('makes valid names and label values from anything', () => {
    expect(dnsLabel('af-alice@Example.ORG')).toBe('af-alice-example-org');
    expect(labelValue('-x'.repeat(40))).toMatch(/^[A-Za-z0-9][A-Za-z0-9._-]{0,61}[A-Za-z0-9]$/);
    expect(deepMerge({ a: { b: 1, c: [1] } }, { a: { c: [2], d: 3 } })).toEqual({ a: { b: 1, c: [2], d: 3 } });
  });
});

describe('pod states as users read them', () => {
  const pod = (status: V1Pod['status'], meta: Partial<NonNullable<V1Pod['metadata']>> = {}): V1Pod => ({
    metadata: { name: 'p', creationTimestamp: new Date(Date.now() - 5000), ...meta },
    status,
  });
  it('says why a pod waits: no node fits, image pulling', () => {
    const s = podState(
      pod({
        phase: 'Pending',
        conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/1 nodes are available: 1 Insufficient cpu.' }],
      }),
    );
    expect(s.alive).toBe(true);
    expect(s.waiting).toMatch(/^pod p is pending for \d+ s: Unschedulable: 0\/1 nodes are available: 1 Insufficient cpu\.$/);
    expect(
      podState(
        pod({
          phase: 'Pending',
          containerStatuses: [{ name: 'w', image: 'x', imageID: '', ready: false, restartCount: 0, state: { waiting: { reason: 'ContainerCreating' } } }],
        }),
      ).waiting,
    ).toContain('ContainerCreating');
  });
  it('ends a pod whose image cannot be pulled, with the reason', () => {
    const s = podState(
      pod({
        phase: 'Pending',
        containerStatuses: [
          {
            name: 'w',
            image: 'x',
            imageID: '',
            ready: false,
            restartCount: 0,
            state: { waiting: { reason: 'ImagePullBackOff', message: 'Back-off pulling image "nope:1"' } },
          },
        ],
      }),
    );
    expect(s).toEqual({ alive: false, detail: 'pod p cannot start: ImagePullBackOff: Back-off pulling image "nope:1"' });
  });
  it('gives the exit code of a finished pod', () => {
    const s = podState(
      pod({
        phase: 'Failed',
        containerStatuses: [{ name: 'w', image: 'x', imageID: '', ready: false, restartCount: 0, state: { terminated: { exitCode: 3, reason: 'Error' } } }],
      }),
    );
    expect(s).toEqual({ alive: false, exitCode: 3, detail: 'pod p exited with code 3 (Error)' });
    expect(podState(undefined)).toEqual({ alive: false, detail: 'its pod no longer exists' });
  });
});

/** A Kubernetes backend whose kubeconfig points nowhere (every API call would be refused). */
async function offlineBackend(overrides: Record<string, unknown>, accounts: AccountResolver) {
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { KubernetesBackend } = await import('../../src/backends/kubernetes/kubernetes-backend.js');
  const dir = mkdtempSync(join(tmpdir(), 'af-kcfg-'));
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(
    kubeconfig,
    'apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters: [{name: k, cluster: {server: "https://127.0.0.1:1"}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: k, user: u, namespace: science}}]\n',
  );
  const backend = new KubernetesBackend({
    config: {
      ...cfg,
      instance: null,
      kubeconfig,
      namespace: null,
      namespace_per_user: false,
      user_namespace_prefix: 'af-',
      scheduler_address: 'pod',
      api_url: null,
      workspace_volume: null,
      step_image: null,
      request_timeout: 30,
      ...overrides,
    } as never,
    dataDir: dir,
    log: { info() {}, warn() {} } as never,
    workspaceRoot: join(dir, 'workflows'),
    defaultApiUrl: () => 'http://127.0.0.1:8000/api',
    accounts,
  });
  return { backend, dir, join };
}

describe('where the gateway and workers reach a scheduler', () => {
  it("uses the Service name in service mode, and in pod mode the pod's IP as the API server reports it", async () => {
    const alices = { resolve: async () => ({ name: 'af-alice', ...alice, home: '/home/af-alice' }) };
    const make = async (mode: 'service' | 'pod') => (await offlineBackend({ scheduler_address: mode }, alices)).backend;
    const reported = { scheduler: 'tls://10.1.2.3:8786', dashboard: 'http://10.1.2.3:8787', api: 'http://10.1.2.3:8788' };
    const c = { ...cluster(), scheduler: { kind: 'k8s-pod', namespace: 'science', name: 'af-gateway-c0ffee-scheduler', uid: 'u' } } as unknown as ClusterRecord;
    expect(await (await make('service')).schedulerAddresses(c, reported)).toEqual({
      scheduler: 'tls://af-gateway-c0ffee.science.svc.cluster.local:8786',
      dashboard: 'http://af-gateway-c0ffee.science.svc.cluster.local:8787',
      api: 'http://af-gateway-c0ffee.science.svc.cluster.local:8788',
    });
    // Offline: the API server's answer for the pod is a stand-in (the real one is in test_kubernetes.py).
    const pod = await make('pod');
    (pod as unknown as { core: { readNamespacedPod: (q: { name: string; namespace: string }) => Promise<unknown> } }).core.readNamespacedPod = async ({
      name,
      namespace,
    }) => {
      expect({ name, namespace }).toEqual({ name: 'af-gateway-c0ffee-scheduler', namespace: 'science' });
      return { status: { podIP: '10.1.2.3', podIPs: [{ ip: '10.1.2.3' }] } };
    };
    expect(await pod.schedulerAddresses(c, reported)).toEqual(reported);
    // a heartbeat naming another host (the metadata service, another pod) is refused
    for (const elsewhere of ['http://169.254.169.254:8787', 'http://10.1.2.4:8787']) {
      await expect(pod.schedulerAddresses(c, { ...reported, dashboard: elsewhere })).rejects.toMatchObject({ statusCode: 422, code: 'address_not_backend' });
    }
  });

  it('asks the API server about a pending pod at most once a second, however many heartbeats its owner forges', async () => {
    const alices = { resolve: async () => ({ name: 'af-alice', ...alice, home: '/home/af-alice' }) };
    const pod = (await offlineBackend({ scheduler_address: 'pod' }, alices)).backend;
    let asked = 0;
    (pod as unknown as { core: { readNamespacedPod: () => Promise<unknown> } }).core.readNamespacedPod = async () => {
      asked++;
      return { status: { phase: 'Pending' } }; // no IP while it waits for a node
    };
    const c = { ...cluster(), scheduler: { kind: 'k8s-pod', namespace: 'science', name: 'af-gateway-c0ffee-scheduler', uid: 'u' } } as unknown as ClusterRecord;
    const forged = { scheduler: 'tls://10.1.2.3:8786', dashboard: 'http://10.1.2.3:8787', api: 'http://10.1.2.3:8788' };
    for (let i = 0; i < 50; i++) await expect(pod.schedulerAddresses(c, forged)).rejects.toMatchObject({ statusCode: 422 });
    expect(asked).toBe(1);
  });
});

describe("a worker group's launch", () => {
  it('reaches the worker pod the backend creates: its GPUs and image', async () => {
    const alices = { resolve: async () => ({ name: 'af-alice', ...alice, home: '/home/af-alice' }) };
    const { backend } = await offlineBackend({ gpu_resource: 'nvidia.com/gpu' }, alices);
    const made: V1Pod[] = [];
    // Offline: the API server's side is a stand-in that keeps the pod it is given (the real one is in test_kubernetes.py).
    const inside = backend as unknown as { watch: () => Promise<void>; createPod: (ns: string, body: V1Pod) => Promise<V1Pod> };
    inside.watch = async () => undefined;
    inside.createPod = async (_ns, body) => {
      made.push(body);
      return { ...body, metadata: { ...body.metadata, uid: `uid-${made.length}` } };
    };
    const c = { ...cluster(), scheduler: { kind: 'k8s-pod', namespace: 'science', name: 'af-gateway-c0ffee-scheduler', uid: 'u' } } as unknown as ClusterRecord;
    const launch = { cluster: c, worker: { name: 'c0ffee-1a2b_gpu', group: 'gpu' }, files: {} };
    await backend.startWorker({ ...launch, gpus: 1, image: 'registry.cern.ch/af/dask-gpu:2026.3' } as never);
    await backend.startWorker({ ...launch, worker: { name: 'c0ffee-3c4d', group: 'default' } } as never);
    expect(made.map((p) => [p.spec!.containers[0]!.image, p.spec!.containers[0]!.resources!.limits])).toEqual([
      ['registry.cern.ch/af/dask-gpu:2026.3', { cpu: '2', memory: '1536Mi', 'nvidia.com/gpu': '1' }],
      [cfg.image, { cpu: '2', memory: '1536Mi' }],
    ]);
    await backend.close();
  });
});

describe('a user without an account', () => {
  it('starts nothing: the refusal comes before any object is created', async () => {
    // Every API call would fail with "connection refused" here, not with the 403.
    const asked: string[] = [];
    const { backend, dir, join } = await offlineBackend(
      { workspace_volume: { emptyDir: {} } },
      {
        resolve: async (user) => {
          asked.push(user);
          throw new AppError(403, 'no_account', `User ${user} has no usable account on this facility`);
        },
      },
    );
    const c = { ...cluster(), username: 'mallory', scheduler: { kind: 'k8s-pod', namespace: 'science', name: 's', uid: 'u' } } as unknown as ClusterRecord;
    const refused = (p: Promise<unknown>) => expect(p).rejects.toMatchObject({ statusCode: 403, message: expect.stringContaining('mallory') });
    await refused(
      backend.startScheduler({ cluster: c, files: { bearerToken: join(dir, 'none') }, apiUrl: null, heartbeatPeriod: 15, adaptivePeriod: 3 } as never),
    );
    await refused(backend.startWorker({ cluster: c, worker: { name: 'w1' } } as never));
    await refused(
      backend.startStep({
        run: 'r1',
        node: 'a',
        owner: 'mallory',
        workdir: join(dir, 'workflows', 'r1', 'a'),
        wrapper: 'x',
        log: 'y',
        env: {},
        cpus: 1,
        memory: 1,
      }),
    );
    expect(asked).toEqual(['mallory', 'mallory', 'mallory']);
    await backend.close();
  });
});
