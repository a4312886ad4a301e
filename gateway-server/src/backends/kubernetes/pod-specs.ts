// The Kubernetes objects of a Dask cluster and of a workflow step, as plain data: the Secret with the
// cluster's TLS keypair and API token, the scheduler Pod and its Service, the cluster's
// NetworkPolicy, worker Pods owned by the scheduler Pod (so deleting it garbage-collects
// everything), and a Job per workflow step. Every pod runs user code, so every pod runs as its
// owner's account: non-root with the mapped uid/gid, no privilege escalation, no capabilities,
// seccomp RuntimeDefault, no service-account token (see podSecurity).
import { createHash } from 'node:crypto';
import type {
  V1Container,
  V1Job,
  V1NetworkPolicy,
  V1OwnerReference,
  V1Pod,
  V1PodSecurityContext,
  V1PodSpec,
  V1Secret,
  V1SecurityContext,
  V1Service,
  V1Toleration,
} from '@kubernetes/client-node';
import type { ClusterRecord } from '../../clusters/model.js';
import type { GatewayConfig } from '@af-gateway/schemas';
import type { ResolvedConfig } from '../../config.js';
import { daskTlsArgs, SCHEDULER_PRELOADS } from '../backend.js';

export const LABEL = {
  managedBy: 'app.kubernetes.io/managed-by',
  instance: 'af-gateway.io/instance',
  cluster: 'af-gateway.io/cluster',
  component: 'af-gateway.io/component',
  owner: 'af-gateway.io/owner',
  worker: 'af-gateway.io/worker',
  run: 'af-gateway.io/workflow-run',
  step: 'af-gateway.io/workflow-step',
} as const;

export const MANAGER = 'af-gateway';
export const CREDENTIALS_DIR = '/etc/af-gateway';
export const PORTS = { scheduler: 8786, dashboard: 8787, api: 8788 } as const;

/** A worker profile (backend.kubernetes.profiles): its fields have no defaults, each stays optional. */
export type Profile = NonNullable<NonNullable<NonNullable<GatewayConfig['backend']>['kubernetes']>['profiles']>[string];

/** The Kubernetes backend's settings (backend.kubernetes), as the config schema types them with their defaults filled. */
export type KubernetesConfig = Omit<ResolvedConfig['backend']['kubernetes'], 'profiles'> & { profiles: Record<string, Profile> };

/** The POSIX identity a user's pods run as (from the gateway's account mapping). */
export interface PodAccount {
  uid: number;
  gid: number;
}

/** What the pod specs read of the backend's settings. */
export type KubernetesSpecConfig = Pick<
  KubernetesConfig,
  | 'image'
  | 'image_pull_policy'
  | 'gpu_resource'
  | 'python'
  | 'scheduler_cores'
  | 'scheduler_memory'
  | 'node_selector'
  | 'tolerations'
  | 'scheduler_extra_pod_config'
  | 'worker_extra_pod_config'
  | 'scheduler_extra_container_config'
  | 'worker_extra_container_config'
  | 'profiles'
  | 'delete_grace_period'
  | 'cluster_domain'
  | 'gateway_pod_labels'
  | 'gateway_cidrs'
>;

/** A label value from any string: at most 63 characters of [A-Za-z0-9._-], alphanumeric at both ends. */
export function labelValue(s: string): string {
  const v = s
    .replace(/[^A-Za-z0-9._-]/g, '_')
    .slice(0, 63)
    .replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '');
  return v || 'x';
}

/** A DNS-1123 label (names of pods, services, namespaces). */
export function dnsLabel(s: string, max = 63): string {
  const v = s
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .replace(/-+/g, '-')
    .slice(0, max)
    .replace(/^-+|-+$/g, '');
  return v || 'x';
}

export const objectNames = (cluster: string) => ({
  secret: `af-gateway-${cluster}`,
  scheduler: `af-gateway-${cluster}-scheduler`,
  service: `af-gateway-${cluster}`,
  networkPolicy: `af-gateway-${cluster}`,
  worker: (worker: string) => dnsLabel(`af-gateway-${cluster}-w-${worker}`),
});

/** Objects merged key by key (arrays and scalars replace): the extra_*_config fields. */
export function deepMerge<T>(base: T, extra: Record<string, unknown> | undefined): T {
  if (!extra) return base;
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries(extra)) {
    const b = out[k];
    out[k] =
      v && typeof v === 'object' && !Array.isArray(v) && b && typeof b === 'object' && !Array.isArray(b) ? deepMerge(b, v as Record<string, unknown>) : v;
  }
  return out as T;
}

function labels(instance: string, c: ClusterRecord, component: 'scheduler' | 'worker' | 'credentials' | 'service' | 'network-policy'): Record<string, string> {
  return {
    [LABEL.managedBy]: MANAGER,
    [LABEL.instance]: instance,
    [LABEL.cluster]: c.name,
    [LABEL.component]: component,
    [LABEL.owner]: labelValue(c.username),
  };
}

const gib = (g: number) => `${Math.ceil(g * 1024)}Mi`;

export function ownerRef(pod: { name: string; uid: string }): V1OwnerReference {
  return { apiVersion: 'v1', kind: 'Pod', name: pod.name, uid: pod.uid, blockOwnerDeletion: true, controller: false };
}

/**
 * What every pod of a user gets, whatever the admin's extra_*_config says (it is applied last): the
 * owner's uid and gid, never root, no privilege escalation, no capabilities, seccomp RuntimeDefault,
 * no service-account token. fsGroup (only for cluster pods: it makes the 0400 Secret files readable
 * by the pod's group) is left out of step Jobs, because a kubelet applies fsGroup by re-owning the
 * whole mounted volume, and the workspace volume holds every user's runs.
 */
export function podSecurity(account: PodAccount, opts: { fsGroup: boolean }): { pod: V1PodSecurityContext; container: V1SecurityContext } {
  if (!Number.isInteger(account.uid) || account.uid < 1 || !Number.isInteger(account.gid) || account.gid < 1) {
    throw new Error(`refusing to run a user's pod as uid ${account.uid} gid ${account.gid}: a user's account is never root or the root group`);
  }
  return {
    pod: {
      runAsNonRoot: true,
      runAsUser: account.uid,
      runAsGroup: account.gid,
      ...(opts.fsGroup ? { fsGroup: account.gid } : {}),
      seccompProfile: { type: 'RuntimeDefault' },
    },
    container: {
      runAsNonRoot: true,
      runAsUser: account.uid,
      runAsGroup: account.gid,
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
  };
}

/** The pod spec with the security fields put back over whatever the extra configs merged in. */
function secured(spec: V1PodSpec, account: PodAccount, opts: { fsGroup: boolean }): V1PodSpec {
  const sec = podSecurity(account, opts);
  const pod = { ...spec.securityContext, ...sec.pod };
  if (!opts.fsGroup) delete pod.fsGroup;
  const harden = (c: V1Container): V1Container => ({ ...c, securityContext: { ...c.securityContext, ...sec.container } });
  return {
    ...spec,
    automountServiceAccountToken: false,
    hostNetwork: false,
    hostPID: false,
    hostIPC: false,
    securityContext: pod,
    containers: spec.containers.map(harden),
    ...(spec.initContainers ? { initContainers: spec.initContainers.map(harden) } : {}),
  };
}

export function clusterSecret(instance: string, c: ClusterRecord, bearerToken: string | null): V1Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: objectNames(c.name).secret, labels: labels(instance, c, 'credentials') },
    type: 'Opaque',
    stringData: { 'dask.crt': c.tlsCert, 'dask.pem': c.tlsKey, 'api-token': c.token, ...(bearerToken ? { 'bearer-token': bearerToken } : {}) },
  };
}

const credentialsVolume = (c: ClusterRecord) => ({ name: 'credentials', secret: { secretName: objectNames(c.name).secret, defaultMode: 0o400 } });
const credentialsMount = { name: 'credentials', mountPath: CREDENTIALS_DIR, readOnly: true };
const podIpEnv = { name: 'AF_POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } };

export function schedulerPod(
  instance: string,
  c: ClusterRecord,
  cfg: KubernetesSpecConfig,
  apiUrl: string,
  periods: { heartbeat: number; adaptive: number },
  account: PodAccount,
): V1Pod {
  const container: V1Container = deepMerge<V1Container>(
    {
      name: 'scheduler',
      image: cfg.image,
      imagePullPolicy: cfg.image_pull_policy,
      command: [cfg.python, '-m', 'distributed.cli.dask_scheduler'],
      args: [
        '--protocol',
        'tls',
        '--host',
        '$(AF_POD_IP)',
        '--port',
        String(PORTS.scheduler),
        '--dashboard-address',
        `$(AF_POD_IP):${PORTS.dashboard}`,
        ...daskTlsArgs(`${CREDENTIALS_DIR}/dask.crt`, `${CREDENTIALS_DIR}/dask.pem`),
        ...SCHEDULER_PRELOADS,
        '--dg-api-address',
        `$(AF_POD_IP):${PORTS.api}`,
        '--dg-heartbeat-period',
        String(periods.heartbeat),
        '--dg-adaptive-period',
        String(periods.adaptive),
        '--dg-idle-timeout',
        String(c.settings.idle_timeout),
      ],
      env: [
        podIpEnv,
        ...Object.entries(c.settings.environment).map(([name, value]) => ({ name, value })),
        { name: 'DASK_GATEWAY_API_URL', value: apiUrl },
        { name: 'DASK_GATEWAY_API_TOKEN', value: `${CREDENTIALS_DIR}/api-token` },
        { name: 'DASK_GATEWAY_CLUSTER_NAME', value: c.name },
        { name: 'DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION', value: 'True' },
        { name: 'BEARER_TOKEN_FILE', value: `${CREDENTIALS_DIR}/bearer-token` },
      ],
      ports: [
        { name: 'scheduler', containerPort: PORTS.scheduler },
        { name: 'dashboard', containerPort: PORTS.dashboard },
        { name: 'api', containerPort: PORTS.api },
      ],
      resources: {
        requests: { cpu: String(cfg.scheduler_cores), memory: gib(cfg.scheduler_memory) },
        limits: { cpu: String(cfg.scheduler_cores), memory: gib(cfg.scheduler_memory) },
      },
      volumeMounts: [credentialsMount],
    },
    cfg.scheduler_extra_container_config,
  );
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: objectNames(c.name).scheduler, labels: labels(instance, c, 'scheduler') },
    spec: secured(
      deepMerge<V1PodSpec>(
        {
          restartPolicy: 'Never',
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          terminationGracePeriodSeconds: cfg.delete_grace_period,
          nodeSelector: Object.keys(cfg.node_selector).length ? cfg.node_selector : undefined,
          tolerations: cfg.tolerations.length ? (cfg.tolerations as V1Toleration[]) : undefined,
          containers: [container],
          volumes: [credentialsVolume(c)],
        },
        cfg.scheduler_extra_pod_config,
      ),
      account,
      { fsGroup: true },
    ),
  };
}

export function schedulerService(instance: string, c: ClusterRecord, owner: { name: string; uid: string }): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: objectNames(c.name).service, labels: labels(instance, c, 'service'), ownerReferences: [ownerRef(owner)] },
    spec: {
      type: 'ClusterIP',
      selector: { [LABEL.instance]: instance, [LABEL.cluster]: c.name, [LABEL.component]: 'scheduler' },
      ports: [
        { name: 'scheduler', port: PORTS.scheduler, targetPort: 'scheduler' },
        { name: 'dashboard', port: PORTS.dashboard, targetPort: 'dashboard' },
        { name: 'api', port: PORTS.api, targetPort: 'api' },
      ],
    },
  };
}

/** What a worker group adds to its pods (worker_groups[].gpus and image). */
export interface WorkerPodGroup {
  /** A limit of cfg.gpu_resource (0 or absent: none). */
  gpus?: number;
  /** The container's image, over the profile's and the backend's (null or absent: theirs). */
  image?: string | null;
}

export function workerPod(
  instance: string,
  c: ClusterRecord,
  worker: string,
  cfg: KubernetesSpecConfig,
  owner: { name: string; uid: string },
  account: PodAccount,
  group: WorkerPodGroup = {},
): V1Pod {
  const s = c.settings;
  const profile: Profile = (s.worker_profile && cfg.profiles[s.worker_profile]) || {};
  const memory = gib(s.worker_memory);
  // Extended resources such as GPUs are asked for as limits only (the requests follow them) and are never overcommitted.
  const gpus = group.gpus ? { [cfg.gpu_resource]: String(group.gpus) } : {};
  const container: V1Container = deepMerge<V1Container>(
    {
      name: 'worker',
      image: group.image ?? profile.image ?? cfg.image,
      imagePullPolicy: cfg.image_pull_policy,
      command: [cfg.python, '-m', 'distributed.cli.dask_worker'],
      args: [
        c.schedulerAddress,
        '--name',
        worker,
        '--nthreads',
        String(s.worker_cores),
        '--memory-limit',
        String(Math.floor(s.worker_memory * 2 ** 30)),
        '--no-nanny',
        '--no-dashboard',
        '--host',
        '$(AF_POD_IP)',
        '--death-timeout',
        '60',
        ...daskTlsArgs(`${CREDENTIALS_DIR}/dask.crt`, `${CREDENTIALS_DIR}/dask.pem`),
      ],
      env: [
        podIpEnv,
        ...Object.entries(s.environment).map(([name, value]) => ({ name, value })),
        { name: 'DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION', value: 'True' },
        { name: 'BEARER_TOKEN_FILE', value: `${CREDENTIALS_DIR}/bearer-token` },
      ],
      resources: deepMerge(
        { requests: { cpu: String(s.worker_cores), memory }, limits: { cpu: String(s.worker_cores), memory, ...gpus } },
        profile.resources as Record<string, unknown> | undefined,
      ),
      volumeMounts: [credentialsMount],
    },
    cfg.worker_extra_container_config,
  );
  const nodeSelector = { ...cfg.node_selector, ...profile.node_selector };
  const tolerations = [...cfg.tolerations, ...(profile.tolerations ?? [])] as V1Toleration[];
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: objectNames(c.name).worker(worker),
      labels: { ...labels(instance, c, 'worker'), [LABEL.worker]: labelValue(worker) },
      ownerReferences: [ownerRef(owner)],
    },
    spec: secured(
      deepMerge(
        deepMerge<V1PodSpec>(
          {
            restartPolicy: 'Never',
            automountServiceAccountToken: false,
            enableServiceLinks: false,
            terminationGracePeriodSeconds: cfg.delete_grace_period,
            nodeSelector: Object.keys(nodeSelector).length ? nodeSelector : undefined,
            tolerations: tolerations.length ? tolerations : undefined,
            containers: [container],
            volumes: [credentialsVolume(c)],
          },
          cfg.worker_extra_pod_config,
        ),
        profile.extra_pod_config,
      ),
      account,
      { fsGroup: true },
    ),
  };
}

/**
 * Who may connect to a cluster's pods: its own pods (scheduler and workers talk to each other on
 * any port), and on the scheduler's ports the gateway's pods (selected by gateway_pod_labels in the
 * gateway's namespace) and gateway_cidrs. Nobody else: not other users' pods, not notebooks (their
 * clients go through the gateway's proxy). Ingress only; owned by the scheduler pod like the rest.
 */
export function clusterNetworkPolicy(
  instance: string,
  c: ClusterRecord,
  gateway: { namespace: string; podLabels: Record<string, string>; cidrs: string[] },
): V1NetworkPolicy {
  if (!Object.keys(gateway.podLabels).length) {
    throw new Error('backend.kubernetes.gateway_pod_labels is empty: it would admit every pod of the namespace to the schedulers');
  }
  const own = { [LABEL.instance]: instance, [LABEL.cluster]: c.name };
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name: objectNames(c.name).networkPolicy, labels: labels(instance, c, 'network-policy') },
    spec: {
      podSelector: { matchLabels: own },
      policyTypes: ['Ingress'],
      ingress: [
        { _from: [{ podSelector: { matchLabels: own } }] },
        {
          _from: [
            { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': gateway.namespace } }, podSelector: { matchLabels: gateway.podLabels } },
            ...gateway.cidrs.map((cidr) => ({ ipBlock: { cidr } })),
          ],
          ports: [PORTS.scheduler, PORTS.dashboard, PORTS.api].map((port) => ({ protocol: 'TCP', port })),
        },
      ],
    },
  };
}

export interface StepJobSpec {
  instance: string;
  run: string;
  node: string;
  owner: string;
  image: string;
  imagePullPolicy: string;
  wrapper: string;
  workdir: string;
  env: Record<string, string>;
  cpus: number;
  memoryGiB: number;
  /**
   * The run's own directory of the workspace volume, mounted at the same path as the gateway sees
   * it (mountPath) from the volume's subPath: a step sees its run, not other runs or users.
   */
  workspace: { mountPath: string; subPath: string; volume: Record<string, unknown> } | null;
  /** The run owner's account: the step runs as it. */
  account: PodAccount;
  nodeSelector: Record<string, string>;
  tolerations: object[];
}

/**
 * A step's Job: its run and node, readable, and a hash of the node id so that ids the label folds
 * together (`a[0].b` and `a.0.b`, `Map` and `map`, long nested ids cut at 63) stay apart.
 */
export const stepJobName = (run: string, node: string) =>
  `${dnsLabel(`af-step-${run}-${node.replace(/:/g, '-')}`, 54)}-${createHash('sha256').update(node).digest('hex').slice(0, 8)}`;

/** A workflow step as a Job that runs once (backoffLimit 0, restartPolicy Never). */
export function stepJob(spec: StepJobSpec): V1Job {
  const stepLabels = {
    [LABEL.managedBy]: MANAGER,
    [LABEL.instance]: spec.instance,
    [LABEL.component]: 'step',
    [LABEL.owner]: labelValue(spec.owner),
    [LABEL.run]: spec.run,
    [LABEL.step]: labelValue(spec.node),
  };
  const memory = gib(spec.memoryGiB);
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name: stepJobName(spec.run, spec.node), labels: stepLabels },
    spec: {
      backoffLimit: 0,
      template: {
        metadata: { labels: stepLabels },
        spec: secured(
          {
            restartPolicy: 'Never',
            automountServiceAccountToken: false,
            enableServiceLinks: false,
            nodeSelector: Object.keys(spec.nodeSelector).length ? spec.nodeSelector : undefined,
            tolerations: spec.tolerations.length ? (spec.tolerations as V1Toleration[]) : undefined,
            containers: [
              {
                name: 'step',
                image: spec.image,
                imagePullPolicy: spec.imagePullPolicy,
                command: ['/bin/sh', spec.wrapper],
                workingDir: spec.workdir,
                env: Object.entries(spec.env).map(([name, value]) => ({ name, value })),
                resources: { requests: { cpu: String(spec.cpus), memory }, limits: { memory } },
                volumeMounts: spec.workspace ? [{ name: 'workspace', mountPath: spec.workspace.mountPath, subPath: spec.workspace.subPath }] : undefined,
              },
            ],
            volumes: spec.workspace ? [{ name: 'workspace', ...spec.workspace.volume }] : undefined,
          },
          spec.account,
          { fsGroup: false },
        ),
      },
    },
  };
}
