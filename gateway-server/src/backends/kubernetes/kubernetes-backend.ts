// Kubernetes backend: talks to the API server directly (no controller, no Traefik). Per cluster a
// Secret, a scheduler Pod and a Service, worker Pods owned by the scheduler Pod; deleting the
// scheduler Pod lets the garbage collector remove the rest. Pod states come from one watch (an
// informer on the gateway's label), not from polling. Workflow steps run as Jobs. Every pod runs as
// its owner's account (AccountResolver): a user without one gets a 403 before anything is created.
import { readFileSync, existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve } from 'node:path';
import {
  BatchV1Api,
  CoreV1Api,
  KubeConfig,
  NetworkingV1Api,
  makeInformer,
  PatchStrategy,
  setHeaderOptions,
  type Informer,
  type ObjectCache,
  type V1Pod,
} from '@kubernetes/client-node';
import type { FastifyBaseLogger } from 'fastify';
import {
  addressesOnHosts,
  eachBounded,
  hostPort,
  instanceName,
  ItemBackend,
  parseReportedAddress,
  type SchedulerAddresses,
  type ProcessState,
  type SchedulerLaunch,
  type StepLaunch,
  type WorkerLaunch,
} from '../backend.js';
import type { BackendHandle, ClusterRecord } from '../../clusters/model.js';
import type { AccountResolver, UserAccount } from '../../accounts/accounts.js';
import { AppError, errorMessage } from '../../errors.js';
import { podState } from './pod-status.js';
import { shareRunDir, shareStepDir } from './workspace.js';
import { stepFiles } from '../../workflows/step-files.js';
import {
  clusterNetworkPolicy,
  clusterSecret,
  dnsLabel,
  LABEL,
  labelValue,
  objectNames,
  ownerRef,
  PORTS,
  schedulerPod,
  schedulerService,
  stepJob,
  workerPod,
  type KubernetesConfig,
} from './pod-specs.js';

export type { KubernetesConfig };

export interface KubernetesBackendOptions {
  config: KubernetesConfig;
  dataDir: string;
  /** Where the state lives (StateStore.identity); the default instance label derives from it. */
  stateIdentity?: string;
  log: FastifyBaseLogger;
  /** The workflows' workspace root (mounted into step Jobs when workspace_volume is set). */
  workspaceRoot: string;
  /** Heartbeat URL pods use when backend.kubernetes.api_url is not set. */
  defaultApiUrl: () => string;
  /** The account (uid/gid) each user's pods run as; a user without one cannot start anything. */
  accounts: AccountResolver;
}

interface PodHandle extends BackendHandle {
  kind: 'k8s-pod';
  namespace: string;
  name: string;
  uid: string;
}

interface JobHandle extends BackendHandle {
  kind: 'k8s-job';
  namespace: string;
  name: string;
  workdir: string;
}

const SERVICE_ACCOUNT_NAMESPACE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';
/** How long a pod we just made may be missing from the watch before it counts as gone. */
const WATCH_LAG_MS = 30_000;

const apiStatus = (err: unknown): number | undefined => (err as { code?: number }).code;

function apiMessage(err: unknown): string {
  const body = (err as { body?: unknown }).body;
  if (typeof body === 'string') {
    try {
      const parsed = JSON.parse(body) as { message?: string };
      if (parsed.message) return parsed.message;
    } catch {
      return body.slice(0, 300);
    }
  }
  if (body && typeof body === 'object' && 'message' in body) return String((body as { message: unknown }).message);
  return errorMessage(err);
}

/** How often heartbeats may make the API server be asked for one pending pod's IP. */
const POD_LOOKUP_MS = 1000;

export class KubernetesBackend extends ItemBackend {
  readonly kind = 'kubernetes';
  readonly instance: string;
  /** When a heartbeat last made the API server be asked for a pod (namespace/name). */
  private readonly lookedUp = new Map<string, number>();
  private readonly kc = new KubeConfig();
  private readonly core: CoreV1Api;
  private readonly batch: BatchV1Api;
  private readonly networking: NetworkingV1Api;
  /** The namespace of the gateway's own pods (its NetworkPolicy peer). */
  private readonly gatewayNamespace: string;
  private informer: (Informer<V1Pod> & ObjectCache<V1Pod>) | null = null;
  private watching: Promise<void> | null = null;
  private readonly created = new Map<string, number>();
  /** Owner tokens handed over while a cluster's Secret was being made (by cluster name). */
  private readonly tokensInFlight = new Map<string, string>();
  private readonly namespaces = new Set<string>();
  private readonly defaultNamespace: string;

  constructor(private readonly opts: KubernetesBackendOptions) {
    super();
    const cfg = opts.config;
    this.instance = cfg.instance ? labelValue(cfg.instance) : instanceName(opts.stateIdentity ?? resolve(opts.dataDir));
    if (cfg.kubeconfig) this.kc.loadFromFile(cfg.kubeconfig);
    else this.kc.loadFromDefault();
    this.core = this.kc.makeApiClient(CoreV1Api);
    this.batch = this.kc.makeApiClient(BatchV1Api);
    this.networking = this.kc.makeApiClient(NetworkingV1Api);
    const ownNamespace = existsSync(SERVICE_ACCOUNT_NAMESPACE) ? readFileSync(SERVICE_ACCOUNT_NAMESPACE, 'utf8').trim() : null;
    this.defaultNamespace = cfg.namespace ?? ownNamespace ?? this.kc.getContextObject(this.kc.getCurrentContext())?.namespace ?? 'default';
    this.gatewayNamespace = ownNamespace ?? this.defaultNamespace;
  }

  /** The watch of every pod carrying this gateway's label (in its namespace, or all namespaces per user). */
  private watch(): Promise<void> {
    this.watching ??= (async () => {
      const selector = `${LABEL.instance}=${this.instance}`;
      const perUser = this.opts.config.namespace_per_user;
      const path = perUser ? '/api/v1/pods' : `/api/v1/namespaces/${this.defaultNamespace}/pods`;
      const list = () =>
        perUser
          ? this.core.listPodForAllNamespaces({ labelSelector: selector })
          : this.core.listNamespacedPod({ namespace: this.defaultNamespace, labelSelector: selector });
      const informer = makeInformer<V1Pod>(this.kc, path, list, selector);
      informer.on('error', (err: unknown) => {
        this.opts.log.warn({ err: errorMessage(err) }, 'pod watch failed; restarting it');
        setTimeout(() => void informer.start().catch(() => undefined), 3000).unref();
      });
      const changed = () => this.changeListeners.forEach((l) => l());
      informer.on('update', changed);
      informer.on('delete', changed);
      await informer.start();
      this.informer = informer;
      this.opts.log.info({ path, selector }, 'watching pods');
    })().catch((err: unknown) => {
      this.watching = null;
      throw new Error(`cannot watch pods at the Kubernetes API server: ${apiMessage(err)}`);
    });
    return this.watching;
  }

  private namespaceFor(username: string): string {
    const cfg = this.opts.config;
    return cfg.namespace_per_user ? dnsLabel(`${cfg.user_namespace_prefix}${username}`) : this.defaultNamespace;
  }

  private async ensureNamespace(ns: string): Promise<void> {
    if (!this.opts.config.namespace_per_user || this.namespaces.has(ns)) return;
    try {
      await this.core.createNamespace({ body: { metadata: { name: ns, labels: { 'app.kubernetes.io/managed-by': 'af-gateway' } } } });
    } catch (err) {
      if (apiStatus(err) !== 409) throw new Error(`cannot create namespace ${ns}: ${apiMessage(err)}`, { cause: err });
    }
    this.namespaces.add(ns);
  }

  /** Creates a pod; in a namespace made a moment ago, waits for its default ServiceAccount to exist. */
  private async createPod(ns: string, body: V1Pod): Promise<V1Pod> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.core.createNamespacedPod({ namespace: ns, body });
      } catch (err) {
        if (attempt < 40 && /serviceaccount.*not found/i.test(apiMessage(err))) {
          await new Promise((r) => setTimeout(r, 250));
          continue;
        }
        throw err;
      }
    }
  }

  private fail(what: string, ns: string, err: unknown): Error {
    const code = apiStatus(err);
    const hint = code === 403 ? ` (the gateway's service account lacks the permission in namespace ${ns}; see the Helm chart's RBAC)` : '';
    return new Error(`${what} in namespace ${ns} failed: ${apiMessage(err)}${hint}`);
  }

  /** The user's account, or the resolver's 403 (before anything is created for them). */
  private account(user: string): Promise<UserAccount> {
    return this.opts.accounts.resolve(user);
  }

  async startScheduler(l: SchedulerLaunch): Promise<BackendHandle> {
    const c = l.cluster;
    const account = await this.account(c.username);
    await this.watch();
    const ns = this.namespaceFor(c.username);
    await this.ensureNamespace(ns);
    const names = objectNames(c.name);
    this.tokensInFlight.delete(c.name);
    const bearer = await readFile(l.files.bearerToken, 'utf8').catch(() => null);
    const cfg = this.opts.config;
    const apiUrl = cfg.api_url ?? l.apiUrl ?? this.opts.defaultApiUrl();
    const podBody = schedulerPod(this.instance, c, cfg, apiUrl, { heartbeat: l.heartbeatPeriod, adaptive: l.adaptivePeriod }, account);
    const policy = clusterNetworkPolicy(this.instance, c, { namespace: this.gatewayNamespace, podLabels: cfg.gateway_pod_labels, cidrs: cfg.gateway_cidrs });
    // The NetworkPolicy first, so the scheduler never listens unprotected; then the Secret it mounts.
    try {
      await this.networking.createNamespacedNetworkPolicy({ namespace: ns, body: policy });
    } catch (err) {
      throw this.fail(`creating NetworkPolicy ${names.networkPolicy}`, ns, err);
    }
    const unmade = async () => {
      await this.core.deleteNamespacedSecret({ name: names.secret, namespace: ns }).catch(() => undefined);
      await this.networking.deleteNamespacedNetworkPolicy({ name: names.networkPolicy, namespace: ns }).catch(() => undefined);
    };
    try {
      await this.core.createNamespacedSecret({ namespace: ns, body: clusterSecret(this.instance, c, bearer) });
    } catch (err) {
      await unmade();
      throw this.fail(`creating Secret ${names.secret}`, ns, err);
    }
    let pod: V1Pod;
    try {
      pod = await this.createPod(ns, podBody);
    } catch (err) {
      await unmade();
      throw this.fail(`creating the scheduler Pod ${names.scheduler}`, ns, err);
    }
    const owner = { name: pod.metadata!.name!, uid: pod.metadata!.uid! };
    this.created.set(`${ns}/${owner.name}`, Date.now());
    const handle: PodHandle = { kind: 'k8s-pod', namespace: ns, name: owner.name, uid: owner.uid };
    let step = `the owner of Secret ${names.secret}`;
    try {
      // The Secret and the NetworkPolicy existed first; now they belong to the pod like everything
      // else, so the garbage collector removes them with it.
      const owned = { metadata: { ownerReferences: [ownerRef(owner)] } };
      const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
      await this.core.patchNamespacedSecret({ name: names.secret, namespace: ns, body: owned }, merge);
      step = `the owner of NetworkPolicy ${names.networkPolicy}`;
      await this.networking.patchNamespacedNetworkPolicy({ name: names.networkPolicy, namespace: ns, body: owned }, merge);
      step = `the scheduler's Service ${names.service}`;
      await this.core.createNamespacedService({ namespace: ns, body: schedulerService(this.instance, c, owner) });
    } catch (err) {
      await this.stopOne(handle);
      await unmade();
      throw this.fail(`setting ${step}`, ns, err);
    }
    // A token that came while the Secret was being made (updateToken found none to patch yet).
    const late = this.tokensInFlight.get(c.name);
    this.tokensInFlight.delete(c.name);
    if (late !== undefined && late !== bearer) await this.patchToken(ns, names.secret, late).catch(() => undefined);
    this.opts.log.info({ cluster: c.name, namespace: ns, pod: owner.name }, 'created scheduler pod');
    return handle;
  }

  async startWorker(l: WorkerLaunch): Promise<BackendHandle> {
    await this.watch();
    const scheduler = l.cluster.scheduler as PodHandle | null;
    if (!scheduler || scheduler.kind !== 'k8s-pod') throw new Error('the cluster has no scheduler pod to own its workers');
    const ns = scheduler.namespace;
    const account = await this.account(l.cluster.username);
    const body = workerPod(this.instance, l.cluster, l.worker.name, this.opts.config, { name: scheduler.name, uid: scheduler.uid }, account, {
      gpus: l.gpus,
      image: l.image,
    });
    let pod: V1Pod;
    try {
      pod = await this.createPod(ns, body);
    } catch (err) {
      throw this.fail(`creating worker Pod ${body.metadata!.name}`, ns, err);
    }
    this.created.set(`${ns}/${pod.metadata!.name}`, Date.now());
    const handle: PodHandle = { kind: 'k8s-pod', namespace: ns, name: pod.metadata!.name!, uid: pod.metadata!.uid! };
    return handle;
  }

  startSteps(launches: StepLaunch[]): Promise<Array<BackendHandle | Error>> {
    return eachBounded(launches, this.concurrency, (l) => this.startStep(l));
  }

  async startStep(l: StepLaunch): Promise<BackendHandle> {
    const account = await this.account(l.owner);
    await this.watch();
    const cfg = this.opts.config;
    let workspace: { mountPath: string; subPath: string; volume: Record<string, unknown> } | null = null;
    if (cfg.workspace_volume) {
      // Only the run's own directory of the volume: not other runs, not other users'.
      const root = resolve(this.opts.workspaceRoot);
      const runDir = join(root, l.run);
      const inRun = relative(runDir, resolve(l.workdir));
      if (!/^[A-Za-z0-9._-]+$/.test(l.run) || l.run.startsWith('.') || inRun.startsWith('..') || isAbsolute(inRun)) {
        throw new Error(`the step's directory ${l.workdir} is not inside its run's workspace ${runDir}`);
      }
      await shareStepDir(root, l.workdir, account);
      workspace = { mountPath: runDir, subPath: l.run, volume: cfg.workspace_volume };
    }
    const ns = this.namespaceFor(l.owner);
    await this.ensureNamespace(ns);
    const body = stepJob({
      instance: this.instance,
      run: l.run,
      node: l.node,
      owner: l.owner,
      image: l.image ?? cfg.step_image ?? cfg.image,
      imagePullPolicy: cfg.image_pull_policy,
      wrapper: l.wrapper,
      workdir: l.workdir,
      env: l.env,
      cpus: l.cpus,
      memoryGiB: l.memory,
      workspace,
      account,
      nodeSelector: cfg.node_selector,
      tolerations: cfg.tolerations,
    });
    const name = body.metadata!.name!;
    // A Job of an earlier attempt of this step: gone before the new one starts.
    await this.batch.deleteNamespacedJob({ name, namespace: ns, propagationPolicy: 'Background', gracePeriodSeconds: 0 }).catch(() => undefined);
    for (let i = 0; i < 50; i++) {
      try {
        await this.batch.createNamespacedJob({ namespace: ns, body });
        break;
      } catch (err) {
        if (apiStatus(err) === 409 && i < 49) {
          await new Promise((r) => setTimeout(r, 200)); // the old one is still being deleted
          continue;
        }
        throw this.fail(`creating Job ${name}`, ns, err);
      }
    }
    this.created.set(`${ns}/job/${name}`, Date.now());
    const handle: JobHandle = { kind: 'k8s-job', namespace: ns, name, workdir: l.workdir };
    return handle;
  }

  /** A run's new workspace: its owner's step pods may pass through it (see workspace.ts). */
  async shareRunWorkspace(dir: string, owner: string): Promise<void> {
    const account = await this.account(owner);
    if (!this.opts.config.workspace_volume) return; // the steps do not see the gateway's workspace
    await shareRunDir(this.opts.workspaceRoot, dir, account);
  }

  /** The pod of a step's Job (the Job controller labels it with job-name). */
  private jobPod(h: JobHandle): V1Pod | undefined {
    return (this.informer?.list(h.namespace) ?? []).find(
      (p) => p.metadata?.labels?.['job-name'] === h.name || p.metadata?.labels?.['batch.kubernetes.io/job-name'] === h.name,
    );
  }

  async checkOne(handle: BackendHandle): Promise<ProcessState> {
    await this.watch();
    const now = Date.now();
    if (handle.kind === 'k8s-job') {
      const h = handle as JobHandle;
      const pod = this.jobPod(h);
      if (!pod) {
        const made = this.created.get(`${h.namespace}/job/${h.name}`);
        if (made === undefined || now - made < WATCH_LAG_MS) return { alive: true, waiting: `Job ${h.name} has no pod yet` };
        // Restarted gateway or a pod that never came: ask for the Job itself.
        try {
          const job = await this.batch.readNamespacedJob({ name: h.name, namespace: h.namespace });
          const failed = job.status?.conditions?.find((c) => c.type === 'Failed' && c.status === 'True');
          if (failed) return { alive: false, detail: `Job ${h.name} failed: ${failed.reason ?? ''} ${failed.message ?? ''}`.trim() };
          return { alive: true, waiting: `Job ${h.name} has no pod yet` };
        } catch (err) {
          return apiStatus(err) === 404
            ? { alive: false, detail: `Job ${h.name} no longer exists` }
            : { alive: true, waiting: `Job ${h.name}: ${apiMessage(err)}` };
        }
      }
      const state = podState(pod, now);
      // With a shared workspace the step's wrapper writes the log itself, into a directory the user
      // owns: the gateway writes nothing there.
      if (!state.alive && !this.opts.config.workspace_volume) await this.keepLog(h, pod);
      return state;
    }
    const h = handle as PodHandle;
    const pod = this.informer?.get(h.name, h.namespace);
    if (!pod || pod.metadata?.uid !== h.uid) {
      const made = this.created.get(`${h.namespace}/${h.name}`);
      if (!pod && made !== undefined && now - made < WATCH_LAG_MS) return { alive: true, waiting: `pod ${h.name} was created; waiting for its first status` };
      return { alive: false, detail: `pod ${h.name} no longer exists` };
    }
    return podState(pod, now);
  }

  /** A step's pod output next to its log (the wrapper writes the log itself when the workspace is shared). */
  private async keepLog(h: JobHandle, pod: V1Pod): Promise<void> {
    try {
      const text = await this.core.readNamespacedPodLog({ name: pod.metadata!.name!, namespace: h.namespace, container: 'step' });
      if (text) await writeFile(stepFiles(h.workdir).podLog, text);
    } catch {
      // logs are gone with the node, or the workspace is not ours to write
    }
  }

  async stopOne(handle: BackendHandle): Promise<void> {
    const grace = this.opts.config.delete_grace_period;
    if (handle.kind === 'k8s-job') {
      const h = handle as JobHandle;
      await this.batch
        .deleteNamespacedJob({ name: h.name, namespace: h.namespace, propagationPolicy: 'Background', gracePeriodSeconds: grace })
        .catch((err: unknown) => {
          if (apiStatus(err) !== 404) throw this.fail(`deleting Job ${h.name}`, h.namespace, err);
        });
      return;
    }
    const h = handle as PodHandle;
    try {
      // Foreground for the scheduler is not needed: its dependents go with it (blockOwnerDeletion).
      await this.core.deleteNamespacedPod({
        name: h.name,
        namespace: h.namespace,
        gracePeriodSeconds: grace,
        propagationPolicy: 'Background',
        body: { preconditions: { uid: h.uid } } as never,
      });
    } catch (err) {
      const code = apiStatus(err);
      if (code !== 404 && code !== 409) throw this.fail(`deleting pod ${h.name}`, h.namespace, err);
    }
  }

  /** The refreshed owner token into the cluster's Secret; the kubelet updates the mounted file. */
  async updateToken(c: ClusterRecord, token: string): Promise<void> {
    const h = c.scheduler as PodHandle | null;
    // Before the scheduler's handle exists its Secret may be being made: startScheduler takes it.
    if (!h || h.kind !== 'k8s-pod') this.tokensInFlight.set(c.name, token);
    const namespace = h?.kind === 'k8s-pod' ? h.namespace : this.namespaceFor(c.username);
    const name = objectNames(c.name).secret;
    try {
      await this.patchToken(namespace, name, token);
    } catch (err) {
      if (apiStatus(err) !== 404) throw this.fail(`updating the token in Secret ${name}`, namespace, err);
    }
  }

  private async patchToken(namespace: string, name: string, token: string): Promise<void> {
    await this.core.patchNamespacedSecret(
      { name, namespace, body: { stringData: { 'bearer-token': token } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }

  /** A finished step's Job is removed (its pod with it); the log and outputs stay in the workspace. */
  async release(handle: BackendHandle): Promise<void> {
    if (handle.kind !== 'k8s-job') return;
    await this.stopOne(handle).catch((err: unknown) => this.opts.log.warn({ err: errorMessage(err) }, 'removing a finished step Job failed'));
  }

  private readonly changeListeners: (() => void)[] = [];

  onChange(listener: () => void): void {
    this.changeListeners.push(listener);
  }

  describe(handle: BackendHandle): string {
    return handle.kind === 'k8s-job'
      ? `Kubernetes Job ${String(handle.namespace)}/${String(handle.name)}`
      : `pod ${String(handle.namespace)}/${String(handle.name)}`;
  }

  /**
   * Workers and the gateway reach the scheduler by its Service name, or else at its pod's IP as the
   * API server reports it; the ports are the ones the pod spec fixed. A heartbeat naming any other
   * host is refused.
   */
  async schedulerAddresses(c: ClusterRecord, reported: SchedulerAddresses): Promise<SchedulerAddresses> {
    const h = c.scheduler as PodHandle | null;
    if (!h || h.kind !== 'k8s-pod') throw new AppError(409, 'not_running', `Cluster ${c.name} has no scheduler pod yet`);
    if (this.opts.config.scheduler_address === 'service') {
      const host = `${objectNames(c.name).service}.${h.namespace}.svc.${this.opts.config.cluster_domain}`;
      return { scheduler: `tls://${host}:${PORTS.scheduler}`, dashboard: `http://${host}:${PORTS.dashboard}`, api: `http://${host}:${PORTS.api}` };
    }
    const ipsOf = (p: V1Pod | undefined) =>
      new Set([p?.status?.podIP, ...(p?.status?.podIPs ?? []).map((i) => i.ip)].filter((ip): ip is string => !!ip).map((ip) => ip.toLowerCase()));
    let ips = ipsOf(this.informer?.get(h.name, h.namespace));
    const key = `${h.namespace}/${h.name}`;
    const now = Date.now();
    if (!ips.size && now - (this.lookedUp.get(key) ?? 0) >= POD_LOOKUP_MS) {
      // Not in the informer's cache with an IP yet: ask the API server, at most once a second per
      // pod (the owner holds the API token, and a pod can stay pending as long as they like).
      this.lookedUp.set(key, now);
      for (const [k, at] of this.lookedUp) if (now - at > 60_000) this.lookedUp.delete(k);
      ips = ipsOf(await this.core.readNamespacedPod({ name: h.name, namespace: h.namespace }).catch(() => undefined));
    }
    const at = addressesOnHosts(reported, ips, `pod ${h.namespace}/${h.name}`);
    const host = parseReportedAddress(at.scheduler, 'scheduler').host;
    return {
      scheduler: `tls://${hostPort(host, PORTS.scheduler)}`,
      dashboard: at.dashboard ? `http://${hostPort(host, PORTS.dashboard)}` : '',
      api: `http://${hostPort(host, PORTS.api)}`,
    };
  }

  /** After a restart: pods of this gateway that no cluster refers to are deleted (steps are the workflow engine's). */
  async removeOrphans(live: BackendHandle[]): Promise<void> {
    await this.watch();
    const keep = new Set(live.filter((h) => h.kind === 'k8s-pod').map((h) => `${String(h.namespace)}/${String(h.name)}`));
    const orphans = (this.informer?.list() ?? []).filter((p) => {
      const component = p.metadata?.labels?.[LABEL.component];
      return (
        (component === 'scheduler' || component === 'worker') && !keep.has(`${p.metadata?.namespace}/${p.metadata?.name}`) && !p.metadata?.deletionTimestamp
      );
    });
    if (!orphans.length) return;
    this.opts.log.warn({ pods: orphans.map((p) => p.metadata?.name) }, 'deleting pods no cluster of this gateway owns');
    await this.stop(orphans.map((p) => ({ kind: 'k8s-pod', namespace: p.metadata!.namespace!, name: p.metadata!.name!, uid: p.metadata!.uid! })));
  }

  async close(): Promise<void> {
    await this.informer?.stop().catch(() => undefined);
  }
}
