// The Kubernetes objects of a Dask cluster and of a workflow step, as plain data: the Secret with the
// cluster's TLS keypair and API token, the scheduler Pod and its Service, worker Pods owned by the
// scheduler Pod (so deleting it garbage-collects everything), and a Job per workflow step.
import type { V1Container, V1Job, V1OwnerReference, V1Pod, V1Secret, V1Service, V1Toleration } from '@kubernetes/client-node';
import type { ClusterRecord } from '../../clusters/model.js';

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

export interface Profile {
  resources?: { requests?: Record<string, string | number>; limits?: Record<string, string | number> };
  node_selector?: Record<string, string>;
  tolerations?: object[];
  image?: string;
  extra_pod_config?: Record<string, unknown>;
}

export interface KubernetesSpecConfig {
  image: string;
  image_pull_policy: string;
  python: string;
  scheduler_cores: number;
  scheduler_memory: number;
  node_selector: Record<string, string>;
  tolerations: object[];
  scheduler_extra_pod_config: Record<string, unknown>;
  worker_extra_pod_config: Record<string, unknown>;
  scheduler_extra_container_config: Record<string, unknown>;
  worker_extra_container_config: Record<string, unknown>;
  profiles: Record<string, Profile>;
  delete_grace_period: number;
  cluster_domain: string;
}

/** A label value from any string: at most 63 characters of [A-Za-z0-9._-], alphanumeric at both ends. */
export function labelValue(s: string): string {
  const v = s.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 63).replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '');
  return v || 'x';
}

/** A DNS-1123 label (names of pods, services, namespaces). */
export function dnsLabel(s: string, max = 63): string {
  const v = s.toLowerCase().replace(/[^a-z0-9-]/g, '-').replace(/-+/g, '-').slice(0, max).replace(/^-+|-+$/g, '');
  return v || 'x';
}

export const objectNames = (cluster: string) => ({
  secret: `af-gateway-${cluster}`,
  scheduler: `af-gateway-${cluster}-scheduler`,
  service: `af-gateway-${cluster}`,
  worker: (worker: string) => dnsLabel(`af-gateway-${cluster}-w-${worker}`),
});

/** Objects merged key by key (arrays and scalars replace): the extra_*_config fields. */
export function deepMerge<T>(base: T, extra: Record<string, unknown> | undefined): T {
  if (!extra) return base;
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries(extra)) {
    const b = out[k];
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && b && typeof b === 'object' && !Array.isArray(b) ? deepMerge(b, v as Record<string, unknown>) : v;
  }
  return out as T;
}

function labels(instance: string, c: ClusterRecord, component: 'scheduler' | 'worker' | 'credentials' | 'service'): Record<string, string> {
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

export function schedulerPod(instance: string, c: ClusterRecord, cfg: KubernetesSpecConfig, apiUrl: string, periods: { heartbeat: number; adaptive: number }): V1Pod {
  const container: V1Container = deepMerge<V1Container>(
    {
      name: 'scheduler',
      image: cfg.image,
      imagePullPolicy: cfg.image_pull_policy,
      command: [cfg.python, '-m', 'distributed.cli.dask_scheduler'],
      args: [
        '--protocol', 'tls',
        '--host', '$(AF_POD_IP)',
        '--port', String(PORTS.scheduler),
        '--dashboard-address', `$(AF_POD_IP):${PORTS.dashboard}`,
        '--tls-ca-file', `${CREDENTIALS_DIR}/dask.crt`,
        '--tls-cert', `${CREDENTIALS_DIR}/dask.crt`,
        '--tls-key', `${CREDENTIALS_DIR}/dask.pem`,
        '--preload', 'dask_gateway.scheduler_preload',
        '--dg-api-address', `$(AF_POD_IP):${PORTS.api}`,
        '--dg-heartbeat-period', String(periods.heartbeat),
        '--dg-adaptive-period', String(periods.adaptive),
        '--dg-idle-timeout', String(c.settings.idle_timeout),
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
    spec: deepMerge(
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

export function workerPod(instance: string, c: ClusterRecord, worker: string, cfg: KubernetesSpecConfig, owner: { name: string; uid: string }): V1Pod {
  const s = c.settings;
  const profile: Profile = (s.worker_profile && cfg.profiles[s.worker_profile]) || {};
  const memory = gib(s.worker_memory);
  const container: V1Container = deepMerge<V1Container>(
    {
      name: 'worker',
      image: profile.image ?? cfg.image,
      imagePullPolicy: cfg.image_pull_policy,
      command: [cfg.python, '-m', 'distributed.cli.dask_worker'],
      args: [
        c.schedulerAddress,
        '--name', worker,
        '--nthreads', String(s.worker_cores),
        '--memory-limit', String(Math.floor(s.worker_memory * 2 ** 30)),
        '--no-nanny',
        '--no-dashboard',
        '--host', '$(AF_POD_IP)',
        '--death-timeout', '60',
        '--tls-ca-file', `${CREDENTIALS_DIR}/dask.crt`,
        '--tls-cert', `${CREDENTIALS_DIR}/dask.crt`,
        '--tls-key', `${CREDENTIALS_DIR}/dask.pem`,
      ],
      env: [
        podIpEnv,
        ...Object.entries(s.environment).map(([name, value]) => ({ name, value })),
        { name: 'DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION', value: 'True' },
        { name: 'BEARER_TOKEN_FILE', value: `${CREDENTIALS_DIR}/bearer-token` },
      ],
      resources: deepMerge(
        { requests: { cpu: String(s.worker_cores), memory }, limits: { cpu: String(s.worker_cores), memory } },
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
    spec: deepMerge(
      deepMerge(
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
  /** The workspace as a volume mounted at the same path in the step's pod. */
  workspace: { path: string; volume: Record<string, unknown> } | null;
  nodeSelector: Record<string, string>;
  tolerations: object[];
}

export const stepJobName = (run: string, node: string) => dnsLabel(`af-step-${run}-${node.replace(/:/g, '-')}`);

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
        spec: {
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
              volumeMounts: spec.workspace ? [{ name: 'workspace', mountPath: spec.workspace.path }] : undefined,
            },
          ],
          volumes: spec.workspace ? [{ name: 'workspace', ...spec.workspace.volume }] : undefined,
        },
      },
    },
  };
}
