// The deployment artefacts under deploy/: the Helm chart (lint, renders, RBAC, the rendered gateway
// config against the gateway's own validator, and a server-side dry run of every object against a
// real API server), the compose file and the Dockerfiles (structure only: no Docker engine here).
//
// helm and kubectl come from the Kubernetes test harness (scripts/kube-cluster.sh, see
// test-harness/kube/README.md): `ensure` builds or finds the cached binaries, `bin-dir` names them,
// `start <dir>` runs an API server for the dry run, `stop <dir>` ends it. Without the harness these
// tests FAIL with a message saying so; they never skip.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { resolveConfig } from '../../src/config.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const chart = join(repoRoot, 'deploy', 'helm');
const harnessScript = join(repoRoot, 'scripts', 'kube-cluster.sh');
const NS = 'af-deploy-test';
const RELEASE = 'af-gateway';
const KEY = randomBytes(32).toString('base64');
/** A database URL whose password must never appear in clear text in a render. */
const PG_PASSWORD = `pw-${randomBytes(12).toString('hex')}`;
const PG_URL = `postgresql://af_gateway:${PG_PASSWORD}@db.example.org:5432/af_gateway?sslmode=verify-full`;

/** A cold harness build compiles Kubernetes from source (~15-20 min on 2 cores); cached it takes < 1 s. */
const ENSURE_TIMEOUT_MS = 30 * 60_000;
const HELM_TIMEOUT_MS = 60_000;
const CLUSTER_START_TIMEOUT_MS = 4 * 60_000;

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { cwd: repoRoot, env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timeoutMs = opts.timeoutMs ?? HELM_TIMEOUT_MS;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')} did not finish within ${timeoutMs / 1000}s; stderr: ${stderr.slice(-2000)}`));
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}

// ---------------------------------------------------------------- the harness's helm and kubectl
let helm = '';
let kubectl = '';
const helmHome = mkdtempSync(join(tmpdir(), 'af-helm-home-'));
const helmEnv = {
  HELM_CACHE_HOME: join(helmHome, 'cache'),
  HELM_CONFIG_HOME: join(helmHome, 'config'),
  HELM_DATA_HOME: join(helmHome, 'data'),
};

async function findHarnessTools(): Promise<void> {
  if (!existsSync(harnessScript)) {
    throw new Error(
      `The Kubernetes test harness is missing: ${harnessScript} does not exist. helm and kubectl for the chart tests come from it ` +
        '(scripts/kube-cluster.sh ensure; see test-harness/kube/README.md). These tests fail rather than skip without it.',
    );
  }
  const ensure = await run('bash', [harnessScript, 'ensure'], { timeoutMs: ENSURE_TIMEOUT_MS });
  if (ensure.code !== 0) {
    throw new Error(
      `scripts/kube-cluster.sh ensure failed (exit ${ensure.code}), so there is no helm/kubectl for the chart tests:\n${ensure.stderr.slice(-3000)}`,
    );
  }
  const binDir = await run('bash', [harnessScript, 'bin-dir']);
  if (binDir.code !== 0) throw new Error(`scripts/kube-cluster.sh bin-dir failed: ${binDir.stderr}`);
  const dir = binDir.stdout.trim();
  helm = join(dir, 'helm');
  kubectl = join(dir, 'kubectl');
  for (const tool of [helm, kubectl]) {
    if (!existsSync(tool)) throw new Error(`the harness's bin dir ${dir} has no ${tool}`);
  }
}

// Started once, at load; every test that needs helm or kubectl awaits it, so without the harness
// each of them FAILS with the harness's message (a failing hook would only mark them skipped).
let harnessPromise: Promise<void> | undefined;
function harness(): Promise<void> {
  harnessPromise ??= findHarnessTools();
  return harnessPromise;
}

beforeAll(async () => {
  await harness().catch(() => undefined); // waits for a cold build within the hook's time limit
}, ENSURE_TIMEOUT_MS + 30_000);

afterAll(() => {
  rmSync(helmHome, { recursive: true, force: true });
});

// ---------------------------------------------------------------- rendering helpers
type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [k: string]: unknown;
};

function setArgs(values: Record<string, string>): string[] {
  return Object.entries(values).flatMap(([k, v]) => ['--set-string', `${k}=${v}`]);
}

async function template(values: Record<string, string> = {}, extra: string[] = []): Promise<RunResult> {
  await harness();
  return run(helm, ['template', RELEASE, chart, '--namespace', NS, ...setArgs(values), ...extra], { env: helmEnv });
}

async function render(values: Record<string, string> = {}, extra: string[] = []): Promise<{ text: string; objects: K8sObject[] }> {
  const r = await template({ 'secrets.encryptKey': KEY, ...values }, extra);
  if (r.code !== 0) throw new Error(`helm template failed (exit ${r.code}):\n${r.stderr}`);
  const objects = YAML.parseAllDocuments(r.stdout)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
  return { text: r.stdout, objects };
}

function one(objects: K8sObject[], kind: string, name?: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  expect(found, `exactly one ${kind}${name ? ` ${name}` : ''}`).toHaveLength(1);
  return found[0]!;
}

function gatewayConfig(objects: K8sObject[]): Record<string, unknown> {
  const cm = one(objects, 'ConfigMap', RELEASE) as K8sObject & { data: Record<string, string> };
  return YAML.parse(cm.data['config.yaml']!) as Record<string, unknown>;
}

const NAMESPACED_RULES = [
  { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch', 'create', 'delete'] },
  { apiGroups: [''], resources: ['pods/log'], verbs: ['get'] },
  { apiGroups: [''], resources: ['services'], verbs: ['get', 'create', 'delete'] },
  { apiGroups: [''], resources: ['secrets'], verbs: ['get', 'create', 'delete', 'patch'] },
  { apiGroups: ['batch'], resources: ['jobs'], verbs: ['get', 'list', 'watch', 'create', 'delete'] },
  { apiGroups: ['networking.k8s.io'], resources: ['networkpolicies'], verbs: ['get', 'create', 'delete', 'patch'] },
];
const NAMESPACE_RULE = { apiGroups: [''], resources: ['namespaces'], verbs: ['get', 'create'] };

/** Rules as a set of (group, resource, verb) triples: exactly what is granted, however it is grouped. */
function grants(rules: unknown): string[] {
  const out = new Set<string>();
  for (const r of rules as { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }[]) {
    expect(r.resourceNames, 'no rule is limited by resourceNames').toBeUndefined();
    for (const g of r.apiGroups) for (const res of r.resources) for (const v of r.verbs) out.add(`${g}/${res}:${v}`);
  }
  return [...out].sort();
}

// ---------------------------------------------------------------- the chart
describe('Helm chart deploy/helm', () => {
  it('passes helm lint, plain and --strict with an encrypt key', async () => {
    await harness();
    const plain = await run(helm, ['lint', chart], { env: helmEnv });
    expect(plain.code, plain.stdout + plain.stderr).toBe(0);
    expect(plain.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
    const strict = await run(helm, ['lint', '--strict', chart, '--namespace', NS, ...setArgs({ 'secrets.encryptKey': KEY })], { env: helmEnv });
    expect(strict.code, strict.stdout + strict.stderr).toBe(0);
  });

  it('declares chart version 0.1.0, appVersion 0.1.0, apiVersion v2', () => {
    const c = YAML.parse(readFileSync(join(chart, 'Chart.yaml'), 'utf8')) as Record<string, unknown>;
    expect(c).toMatchObject({ apiVersion: 'v2', name: 'af-gateway', version: '0.1.0', appVersion: '0.1.0' });
  });

  it('renders with default values plus the required encrypt key', async () => {
    const { objects } = await render();
    const kinds = objects.map((o) => `${o.kind}/${o.metadata.name}`).sort();
    expect(kinds).toEqual(
      [
        'ConfigMap/af-gateway',
        'ConfigMap/af-gateway-jupyterhub-snippet',
        'Deployment/af-gateway',
        'PersistentVolumeClaim/af-gateway',
        'Role/af-gateway',
        'RoleBinding/af-gateway',
        'Secret/af-gateway',
        'Service/af-gateway',
        'ServiceAccount/af-gateway',
      ].sort(),
    );
    for (const o of objects) {
      expect(o.metadata.labels).toMatchObject({
        'app.kubernetes.io/name': 'af-gateway',
        'app.kubernetes.io/instance': RELEASE,
        'app.kubernetes.io/managed-by': 'Helm',
        'app.kubernetes.io/version': '0.1.0',
      });
      expect(o.metadata.namespace).toBe(NS);
    }
  });

  it('renders with no values at all (helm template deploy/helm): a 32-byte encrypt key is made; a given one must be 32 bytes', async () => {
    const r = await run(helm, ['template', RELEASE, chart, '--namespace', NS], { env: helmEnv });
    expect(r.code, r.stderr).toBe(0);
    const objects = YAML.parseAllDocuments(r.stdout)
      .map((d) => d.toJSON())
      .filter(Boolean) as { kind: string; data?: Record<string, string> }[];
    expect(objects.map((o) => o.kind)).toContain('Deployment');
    const secret = objects.find((o) => o.kind === 'Secret')!;
    const key = Buffer.from(secret.data!.AF_GATEWAY_ENCRYPT_KEY!, 'base64').toString();
    expect(Buffer.from(key, 'base64').length).toBe(32);
    const again = await run(helm, ['template', RELEASE, chart, '--namespace', NS], { env: helmEnv });
    expect(again.stdout).not.toContain(secret.data!.AF_GATEWAY_ENCRYPT_KEY!); // random, not a constant
    const short = await template({ 'secrets.encryptKey': randomBytes(16).toString('base64') });
    expect(short.code).not.toBe(0);
    expect(short.stderr).toContain('base64 of exactly 32 bytes');
  });

  it('refuses replicaCount 2 without PostgreSQL (SQLite: one replica), and replicaCount 0', async () => {
    const r = await template({ 'secrets.encryptKey': KEY }, ['--set', 'replicaCount=2']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('replicaCount is 2, but with the default SQLite state');
    expect(r.stderr).toContain('set postgresql.enabled=true and postgresql.url=');
    expect(r.stderr).not.toContain('does not support yet');
    const zero = await template({ 'secrets.encryptKey': KEY }, ['--set', 'replicaCount=0']);
    expect(zero.code).not.toBe(0);
    expect(zero.stderr).toContain('replicaCount is 0: it must be at least 1');
    const zeroPg = await template({ 'secrets.encryptKey': KEY, 'postgresql.url': PG_URL }, ['--set', 'replicaCount=0', '--set', 'postgresql.enabled=true']);
    expect(zeroPg.stderr).toContain('replicaCount is 0: it must be at least 1');
  });

  it('refuses postgresql.enabled without a URL, a URL that is not postgresql://, and the state store in values.config', async () => {
    const noUrl = await template({ 'secrets.encryptKey': KEY }, ['--set', 'postgresql.enabled=true', '--set', 'replicaCount=2']);
    expect(noUrl.code).not.toBe(0);
    expect(noUrl.stderr).toContain("postgresql.enabled needs the database's URL: set postgresql.url=");
    expect(noUrl.stderr).toContain('AF_GATEWAY_DATABASE_URL');
    expect(noUrl.stderr).toContain('secrets.existingSecret');
    const badUrl = `mysql://gw:${PG_PASSWORD}@db.example.org/af`;
    const bad = await template({ 'secrets.encryptKey': KEY, 'postgresql.url': badUrl }, ['--set', 'postgresql.enabled=true']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('postgresql.url must start with postgresql:// or postgres://');
    expect(bad.stderr).not.toContain(PG_PASSWORD); // a refusal never repeats the password
    const notEnabled = await template({ 'secrets.encryptKey': KEY, 'postgresql.url': PG_URL });
    expect(notEnabled.code).not.toBe(0);
    expect(notEnabled.stderr).toContain('postgresql.url is set but postgresql.enabled is false');
    expect(notEnabled.stderr).not.toContain(PG_PASSWORD);
    const both = await template({ 'secrets.existingSecret': 'facility-secrets', 'postgresql.url': PG_URL }, ['--set', 'postgresql.enabled=true']);
    expect(both.stderr).toContain('postgresql.url cannot be used with secrets.existingSecret');
    const inConfig = await template({ 'secrets.encryptKey': KEY, 'config.state_store.postgresql_url': PG_URL });
    expect(inConfig.code).not.toBe(0);
    expect(inConfig.stderr).toContain('config.state_store is set by the chart from postgresql.*');
    for (const [setting, message] of [
      ['postgresql.poolSize=0', 'postgresql.poolSize is 0: it must be an integer from 1 to 100'],
      ['postgresql.standbyPollPeriod=0.1', 'postgresql.standbyPollPeriod is 0.1: it must be from 0.2 to 60'],
    ] as const) {
      const out = await template({ 'secrets.encryptKey': KEY, 'postgresql.url': PG_URL }, ['--set', 'postgresql.enabled=true', '--set', setting]);
      expect(out.stderr, setting).toContain(message);
    }
    // postgres:// is fine too, and with an existing Secret the URL comes from there
    for (const ok of [
      template({ 'secrets.encryptKey': KEY, 'postgresql.url': 'postgres://gw:pw@db:5432/af' }, ['--set', 'postgresql.enabled=true']),
      template({ 'secrets.existingSecret': 'facility-secrets' }, ['--set', 'postgresql.enabled=true', '--set', 'replicaCount=2']),
    ]) {
      const r = await ok;
      expect(r.code, r.stderr).toBe(0);
    }
  });

  it('renders replicaCount 3 with postgresql.enabled: RollingUpdate that stops old pods at once, liveness on /api/health/live, the URL only in the Secret, no PVC, an emptyDir, anti-affinity', async () => {
    const { text, objects } = await render({ 'postgresql.url': PG_URL }, [
      '--set',
      'postgresql.enabled=true',
      '--set',
      'replicaCount=3',
      '--set',
      'postgresql.poolSize=8',
      '--set',
      'postgresql.standbyPollPeriod=0.5',
    ]);
    const dep = one(objects, 'Deployment') as K8sObject & { spec: DeploymentSpec };
    expect(dep.spec.replicas).toBe(3);
    expect(dep.spec.strategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: '100%' } });
    const pod = dep.spec.template.spec;
    const c = pod.containers[0]!;
    expect(c.livenessProbe.httpGet).toEqual({ path: '/api/health/live', port: 'gateway' });
    expect(c.readinessProbe.httpGet).toEqual({ path: '/api/health', port: 'gateway' });
    // the URL from the Secret, explicitly: the pod does not start while the Secret lacks it
    expect(c.env.find((e) => e.name === 'AF_GATEWAY_DATABASE_URL')).toEqual({
      name: 'AF_GATEWAY_DATABASE_URL',
      valueFrom: { secretKeyRef: { name: 'af-gateway', key: 'AF_GATEWAY_DATABASE_URL' } },
    });
    expect(c.env.find((e) => e.name === 'AF_GATEWAY_ENCRYPT_KEY')).toMatchObject({ valueFrom: { secretKeyRef: { key: 'AF_GATEWAY_ENCRYPT_KEY' } } });
    const secret = one(objects, 'Secret') as K8sObject & { data: Record<string, string> };
    expect(Buffer.from(secret.data.AF_GATEWAY_DATABASE_URL!, 'base64').toString()).toBe(PG_URL);
    // the password (and the URL) appear nowhere in clear text: not in the ConfigMap, not anywhere else
    expect(text).not.toContain(PG_PASSWORD);
    expect(text).not.toContain('db.example.org');
    expect(text.split(secret.data.AF_GATEWAY_DATABASE_URL!)).toHaveLength(2); // its base64 only in the Secret
    const others = objects.filter((o) => o.kind !== 'Secret');
    expect(JSON.stringify(others)).not.toContain(secret.data.AF_GATEWAY_DATABASE_URL!);
    // the ConfigMap: the pool and poll period, never the URL; the gateway's own validator accepts it
    const raw = gatewayConfig(objects);
    expect(raw.state_store).toEqual({ pool_size: 8, standby_poll_period: 0.5 });
    const cfg = resolveConfig(raw);
    expect(cfg.state_store).toEqual({ postgresql_url: null, pool_size: 8, standby_poll_period: 0.5 });
    expect(cfg.cluster.stop_on_shutdown).toBe(false); // clusters outlive a switch of replicas
    // heartbeats go to the Service (whichever replica serves), not to a pod
    expect(cfg.backend.kubernetes.api_url).toBe(`http://af-gateway.${NS}.svc.cluster.local:8000/api`);
    // no claim: the state is in the database; the data directory is an emptyDir
    expect(objects.filter((o) => o.kind === 'PersistentVolumeClaim')).toEqual([]);
    expect(pod.volumes.find((v) => v.name === 'data')).toEqual({ name: 'data', emptyDir: {} });
    expect(c.volumeMounts.find((m) => m.name === 'data')?.mountPath).toBe('/var/lib/af-gateway');
    // replicas preferably on different nodes
    expect(pod.affinity).toEqual({
      podAntiAffinity: {
        preferredDuringSchedulingIgnoredDuringExecution: [
          { weight: 100, podAffinityTerm: { topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: dep.spec.selector.matchLabels } } },
        ],
      },
    });
  });

  it('with postgresql.enabled: an existing claim is mounted, a given affinity replaces the preference, one replica has none, both probes speak HTTPS with TLS (a standby answers it too), an existing Secret supplies the URL', async () => {
    const term = 'affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0]';
    const claim = await render({ 'postgresql.url': PG_URL, 'persistence.existingClaim': 'gw-rwx' }, [
      '--set',
      'postgresql.enabled=true',
      '--set',
      'replicaCount=2',
      '--set',
      `${term}.key=role`,
      '--set',
      `${term}.operator=Exists`,
    ]);
    expect(claim.objects.filter((o) => o.kind === 'PersistentVolumeClaim')).toEqual([]);
    const pod = (one(claim.objects, 'Deployment').spec as DeploymentSpec).template.spec;
    expect(pod.volumes.find((v) => v.name === 'data')).toEqual({ name: 'data', persistentVolumeClaim: { claimName: 'gw-rwx' } });
    expect(pod.affinity).toEqual({
      nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'role', operator: 'Exists' }] }] } },
    });
    const single = await render({ 'postgresql.url': PG_URL }, ['--set', 'postgresql.enabled=true']);
    const dep = one(single.objects, 'Deployment') as K8sObject & { spec: DeploymentSpec };
    expect(dep.spec.replicas).toBe(1);
    expect(dep.spec.strategy).toMatchObject({ type: 'RollingUpdate' });
    expect(dep.spec.template.spec.affinity).toBeUndefined();
    expect(resolveConfig(gatewayConfig(single.objects)).state_store).toMatchObject({ pool_size: 5, standby_poll_period: 2 });
    // with TLS: both probes over HTTPS (a standby serves HTTPS on the same port; test_replicas.py checks it)
    const tls = await render({ 'postgresql.url': PG_URL, 'config.tls.cert_file': '/etc/tls/tls.crt', 'config.tls.key_file': '/etc/tls/tls.key' }, [
      '--set',
      'postgresql.enabled=true',
      '--set',
      'replicaCount=2',
    ]);
    const tc = (one(tls.objects, 'Deployment').spec as DeploymentSpec).template.spec.containers[0]!;
    expect(tc.livenessProbe.httpGet).toEqual({ path: '/api/health/live', port: 'gateway', scheme: 'HTTPS' });
    expect(tc.readinessProbe.httpGet).toEqual({ path: '/api/health', port: 'gateway', scheme: 'HTTPS' });
    const sqliteTls = await render({ 'config.tls.cert_file': '/etc/tls/tls.crt', 'config.tls.key_file': '/etc/tls/tls.key' });
    const sc = (one(sqliteTls.objects, 'Deployment').spec as DeploymentSpec).template.spec.containers[0]!;
    expect(sc.livenessProbe.httpGet).toEqual({ path: '/api/health/live', port: 'gateway', scheme: 'HTTPS' });
    const existing = await template({ 'secrets.existingSecret': 'facility-secrets' }, ['--set', 'postgresql.enabled=true', '--set', 'replicaCount=2']);
    const objects = YAML.parseAllDocuments(existing.stdout)
      .map((d) => d.toJS() as K8sObject)
      .filter(Boolean);
    expect(objects.filter((o) => o.kind === 'Secret')).toEqual([]);
    const c = (one(objects, 'Deployment').spec as DeploymentSpec).template.spec.containers[0]!;
    expect(c.env.find((e) => e.name === 'AF_GATEWAY_DATABASE_URL')).toEqual({
      name: 'AF_GATEWAY_DATABASE_URL',
      valueFrom: { secretKeyRef: { name: 'facility-secrets', key: 'AF_GATEWAY_DATABASE_URL' } },
    });
  });

  it('grants exactly the namespaced RBAC rules in the release namespace by default', async () => {
    const { objects } = await render();
    expect(objects.filter((o) => o.kind === 'ClusterRole' || o.kind === 'ClusterRoleBinding')).toEqual([]);
    const role = one(objects, 'Role');
    expect(role.metadata.namespace).toBe(NS);
    expect(role.rules).toEqual(NAMESPACED_RULES);
    expect(grants(role.rules)).toEqual(grants(NAMESPACED_RULES));
    const binding = one(objects, 'RoleBinding');
    expect(binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role.metadata.name });
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: one(objects, 'ServiceAccount').metadata.name, namespace: NS }]);
  });

  it('with kubernetes.namespacePerUser grants the same rules cluster-wide, plus namespaces get/create', async () => {
    const { objects } = await render({}, ['--set', 'kubernetes.namespacePerUser=true']);
    expect(objects.filter((o) => o.kind === 'Role' || o.kind === 'RoleBinding')).toEqual([]);
    const role = one(objects, 'ClusterRole');
    expect(role.metadata.namespace).toBeUndefined();
    expect(role.rules).toEqual([...NAMESPACED_RULES, NAMESPACE_RULE]);
    const binding = one(objects, 'ClusterRoleBinding');
    expect(binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata.name });
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: 'af-gateway', namespace: NS }]);
    const kube = (gatewayConfig(objects).backend as { kubernetes: Record<string, unknown> }).kubernetes;
    expect(kube.namespace_per_user).toBe(true);
    expect(kube.namespace).toBeUndefined();
    expect(resolveConfig(gatewayConfig(objects)).backend.kubernetes.namespace_per_user).toBe(true);
  });

  it('renders no RBAC with rbac.create=false and no ServiceAccount with serviceAccount.create=false', async () => {
    const { objects } = await render({ 'serviceAccount.name': 'gw' }, ['--set', 'rbac.create=false', '--set', 'serviceAccount.create=false']);
    expect(objects.filter((o) => /Role/.test(o.kind) || o.kind === 'ServiceAccount')).toEqual([]);
    const spec = (one(objects, 'Deployment').spec as { template: { spec: { serviceAccountName: string } } }).template.spec;
    expect(spec.serviceAccountName).toBe('gw');
  });

  it("renders a config.yaml the gateway's own validator accepts, with what the chart owns", async () => {
    const { objects } = await render();
    const raw = gatewayConfig(objects);
    const c = resolveConfig(raw);
    expect(c.listen).toBe('0.0.0.0:8000');
    expect(c.data_dir).toBe('/var/lib/af-gateway');
    expect(c.backend.type).toBe('kubernetes');
    expect(c.backend.local.prefork).toBe(false);
    expect(c.backend.kubernetes.namespace).toBe(NS);
    expect(c.backend.kubernetes.namespace_per_user).toBe(false);
    // each release watches, adopts and cleans up only its own pods
    expect(c.backend.kubernetes.instance).toBe(`${RELEASE}-${NS}`);
    expect(c.backend.kubernetes.api_url).toBe(`http://af-gateway.${NS}.svc.cluster.local:8000/api`);
    expect(c.backend.kubernetes.kubeconfig).toBeNull();
    // the clusters' NetworkPolicies admit this release's gateway pods: exactly the Deployment's selector
    const dep = one(objects, 'Deployment') as K8sObject & { spec: { selector: { matchLabels: Record<string, string> } } };
    expect(c.backend.kubernetes.gateway_pod_labels).toEqual(dep.spec.selector.matchLabels);
    expect(c.backend.kubernetes.gateway_pod_labels).toEqual({
      'app.kubernetes.io/name': 'af-gateway',
      'app.kubernetes.io/instance': RELEASE,
      'app.kubernetes.io/component': 'gateway',
    });
    expect(c.workflows.workspace_root).toBe('/var/lib/af-gateway/workflows');
    expect(c.base_path).toBe('/services/af-gateway/');
    expect(c.auth.type).toBe('jupyterhub');
    expect(c.auth.jupyterhub.client_id).toBe('service-af-gateway');
    expect(c.client).toEqual({ address: `http://af-gateway.${NS}.svc.cluster.local:8000`, proxy_address: `gateway://af-gateway.${NS}.svc.cluster.local:8000` });
    expect(c.cluster.stop_on_shutdown).toBe(false);
    // no secret ever lands in the ConfigMap
    const cmText = JSON.stringify(objects.filter((o) => o.kind === 'ConfigMap'));
    expect(cmText).not.toContain(KEY);
    expect(raw.encrypt_key).toBeUndefined();
  });

  it('merges values.config over the rendered config (oidc, policy, rucio, profiles, a workspace volume) and it still validates', async () => {
    const values = [
      'config.auth.type=oidc',
      'config.auth.oidc.issuer=https://iam.example.org/',
      'config.auth.oidc.client_id=af-gateway',
      'config.auth.oidc.audience[0]=af-gateway',
      'config.policy.user_limits.max_clusters=3',
      'config.cluster.max_workers=40',
      'config.rucio.instances[0].name=cms-prod',
      'config.rucio.instances[0].url=https://rucio.example.org',
      'config.rucio.instances[0].auth=userpass',
      'config.public_url=https://af.example.org',
      'config.client.address=https://af.example.org',
      'kubernetes.image=my-registry.example/dask:2026.3.0',
      'kubernetes.profiles.gpu.resources.limits.nvidia\\.com/gpu=1',
      'kubernetes.profiles.gpu.node_selector.accelerator=nvidia',
      'kubernetes.workspaceVolume.persistentVolumeClaim.claimName=af-workspaces',
      'jupyterhub.service.enabled=false',
    ];
    const { objects } = await render(
      { 'secrets.rucioPasswords.cms-prod': 'pw', 'secrets.oidcClientSecret': 'cs' },
      values.flatMap((v) => ['--set', v]),
    );
    const c = resolveConfig(gatewayConfig(objects));
    expect(c.auth.type).toBe('oidc');
    expect(c.auth.oidc.issuer).toBe('https://iam.example.org/');
    expect(c.policy.user_limits.max_clusters).toBe(3);
    expect(c.cluster.max_workers).toBe(40);
    expect(c.rucio.instances[0]).toMatchObject({ name: 'cms-prod', auth: 'userpass', password: null });
    expect(c.client.address).toBe('https://af.example.org');
    expect(c.client.proxy_address).toBe(`gateway://af-gateway.${NS}.svc.cluster.local:8000`);
    expect(c.base_path).toBeNull();
    expect(c.backend.kubernetes.image).toBe('my-registry.example/dask:2026.3.0');
    expect(c.backend.kubernetes.profiles).toEqual({ gpu: { resources: { limits: { 'nvidia.com/gpu': 1 } }, node_selector: { accelerator: 'nvidia' } } });
    expect(c.backend.kubernetes.workspace_volume).toEqual({ persistentVolumeClaim: { claimName: 'af-workspaces' } });
    expect(c.workflows.workspace_root).toBe('/var/lib/af-gateway-workspaces');
    // the same volume in the gateway pod, at the same path
    const pod = (one(objects, 'Deployment').spec as { template: { spec: PodSpec } }).template.spec;
    expect(pod.volumes.find((v) => v.name === 'workspaces')).toEqual({ name: 'workspaces', persistentVolumeClaim: { claimName: 'af-workspaces' } });
    expect(pod.containers[0]!.volumeMounts.find((m) => m.name === 'workspaces')?.mountPath).toBe('/var/lib/af-gateway-workspaces');
    // secrets: environment variable names as keys, values base64
    const secret = one(objects, 'Secret') as K8sObject & { data: Record<string, string> };
    expect(Object.keys(secret.data).sort()).toEqual(['AF_GATEWAY_ENCRYPT_KEY', 'AF_GATEWAY_OIDC_CLIENT_SECRET', 'AF_GATEWAY_RUCIO_PASSWORD_CMS_PROD']);
    expect(Buffer.from(secret.data.AF_GATEWAY_ENCRYPT_KEY!, 'base64').toString()).toBe(KEY);
    expect(Buffer.from(secret.data.AF_GATEWAY_RUCIO_PASSWORD_CMS_PROD!, 'base64').toString()).toBe('pw');
    expect(objects.some((o) => o.metadata.name.endsWith('jupyterhub-snippet'))).toBe(false);
  });

  it('the validator is really consulted: a misspelt key under values.config renders but does not validate', async () => {
    const { objects } = await render({}, ['--set', 'config.cluster.max_worker=3']);
    expect(() => resolveConfig(gatewayConfig(objects))).toThrow(/cluster: unknown key "max_worker"/);
  });

  it('refuses configurations the gateway would not start with', async () => {
    const simple = await template({ 'secrets.encryptKey': KEY, 'config.auth.type': 'simple' });
    expect(simple.code).not.toBe(0);
    expect(simple.stderr).toContain('config.auth.type simple without auth.simple.password');
    const oidc = await template({ 'secrets.encryptKey': KEY, 'config.auth.type': 'oidc' });
    expect(oidc.stderr).toContain('config.auth.type oidc needs config.auth.oidc.issuer');
    const anyAudience = await template({ 'secrets.encryptKey': KEY, 'config.auth.type': 'oidc', 'config.auth.oidc.issuer': 'https://iam.example.org/' });
    expect(anyAudience.stderr).toContain('config.auth.type oidc needs config.auth.oidc.audience');
    const listen = await template({ 'secrets.encryptKey': KEY, 'config.listen': '127.0.0.1:1' });
    expect(listen.stderr).toContain('config.listen is set by the chart');
    const local = await template({ 'secrets.encryptKey': KEY, 'config.backend.type': 'local' });
    expect(local.stderr).toContain('this chart deploys the kubernetes backend only');
  });

  it("refuses to weaken the gateway pod's hardening (root, a writable root file system, privilege escalation, capabilities, seccomp)", async () => {
    const refusals: [Record<string, string>, string][] = [
      [{ 'podSecurityContext.runAsNonRoot': 'false' }, 'runAsNonRoot must be true'],
      [{ 'podSecurityContext.runAsUser': '0' }, 'runAsUser must be a non-zero uid'],
      [{ 'securityContext.readOnlyRootFilesystem': 'false' }, 'readOnlyRootFilesystem must be true'],
      [{ 'securityContext.allowPrivilegeEscalation': 'true' }, 'allowPrivilegeEscalation must be false'],
      [{ 'securityContext.privileged': 'true' }, 'allowPrivilegeEscalation must be false and privileged'],
      [{ 'securityContext.capabilities.drop[0]': 'NET_RAW' }, 'capabilities.drop must contain ALL'],
      [{ 'securityContext.capabilities.add[0]': 'NET_ADMIN' }, 'capabilities.add must be empty'],
      [{ 'podSecurityContext.seccompProfile.type': 'Unconfined', 'securityContext.seccompProfile.type': 'Unconfined' }, 'seccompProfile.type'],
    ];
    for (const [values, message] of refusals) {
      const r = await template({ 'secrets.encryptKey': KEY, ...values });
      expect(r.code, JSON.stringify(values)).not.toBe(0);
      expect(r.stderr, JSON.stringify(values)).toContain(message);
    }
  });

  it('runs one pod with Recreate, checksums, the secret as environment, liveness on /api/health/live and readiness on /api/health, the PVC and a writable /tmp', async () => {
    const { objects } = await render();
    const dep = one(objects, 'Deployment') as K8sObject & { spec: DeploymentSpec };
    expect(dep.spec.replicas).toBe(1);
    expect(dep.spec.strategy).toEqual({ type: 'Recreate' });
    const tpl = dep.spec.template;
    expect(tpl.metadata.annotations['checksum/config']).toMatch(/^[0-9a-f]{64}$/);
    expect(tpl.metadata.annotations['checksum/secret']).toMatch(/^[0-9a-f]{64}$/);
    const pod = tpl.spec;
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, fsGroup: 1000 });
    const c = pod.containers[0]!;
    expect(c.command).toEqual(['node', '/app/gateway-server/dist/cli.js']);
    expect(c.args).toEqual(['serve', '--config', '/etc/af-gateway/config.yaml']);
    expect(pod.securityContext).toMatchObject({ runAsUser: 1000, seccompProfile: { type: 'RuntimeDefault' } });
    expect(c.securityContext).toEqual({
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      privileged: false,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(c.env.find((e) => e.name === 'AF_GATEWAY_ENCRYPT_KEY')).toEqual({
      name: 'AF_GATEWAY_ENCRYPT_KEY',
      valueFrom: { secretKeyRef: { name: 'af-gateway', key: 'AF_GATEWAY_ENCRYPT_KEY' } },
    });
    expect(c.envFrom).toEqual([{ secretRef: { name: 'af-gateway' } }]);
    expect(c.livenessProbe.httpGet).toEqual({ path: '/api/health/live', port: 'gateway' });
    expect(c.readinessProbe.httpGet).toEqual({ path: '/api/health', port: 'gateway' });
    expect(c.env.map((e) => e.name)).not.toContain('AF_GATEWAY_DATABASE_URL');
    expect(pod.affinity).toBeUndefined();
    expect(gatewayConfig(objects).state_store).toBeUndefined();
    expect(c.ports).toEqual([{ name: 'gateway', containerPort: 8000, protocol: 'TCP' }]);
    const mounts = Object.fromEntries(c.volumeMounts.map((m) => [m.mountPath, m.name]));
    expect(mounts).toMatchObject({ '/var/lib/af-gateway': 'data', '/tmp': 'tmp', '/etc/af-gateway': 'config' });
    expect(pod.volumes.find((v) => v.name === 'data')).toEqual({ name: 'data', persistentVolumeClaim: { claimName: 'af-gateway' } });
    expect(pod.volumes.find((v) => v.name === 'tmp')).toEqual({ name: 'tmp', emptyDir: {} });
    const svc = one(objects, 'Service') as K8sObject & { spec: { type: string; ports: unknown[]; selector: Record<string, string> } };
    expect(svc.spec.type).toBe('ClusterIP');
    expect(svc.spec.ports).toEqual([{ name: 'gateway', protocol: 'TCP', port: 8000, targetPort: 'gateway' }]);
    expect(svc.spec.selector).toEqual(dep.spec.selector.matchLabels);
  });

  it('takes every secret from an existing Secret without rendering one (no encrypt key needed)', async () => {
    const r = await template({ 'secrets.existingSecret': 'facility-secrets' });
    expect(r.code, r.stderr).toBe(0);
    const objects = YAML.parseAllDocuments(r.stdout)
      .map((d) => d.toJS() as K8sObject)
      .filter(Boolean);
    expect(objects.filter((o) => o.kind === 'Secret')).toEqual([]);
    const c = (one(objects, 'Deployment').spec as DeploymentSpec).template.spec.containers[0]!;
    expect(c.envFrom).toEqual([{ secretRef: { name: 'facility-secrets' } }]);
    expect(c.env[0]).toMatchObject({ valueFrom: { secretKeyRef: { name: 'facility-secrets', key: 'AF_GATEWAY_ENCRYPT_KEY' } } });
  });

  it('renders the JupyterHub service snippet (ConfigMap and NOTES) without the token; the token is in the Secret', async () => {
    const { objects, text } = await render();
    const cm = one(objects, 'ConfigMap', `${RELEASE}-jupyterhub-snippet`) as K8sObject & { data: Record<string, string> };
    const snippet = YAML.parse(cm.data['values.yaml']!) as {
      hub: { services: Record<string, Record<string, unknown>>; loadRoles: { user: { scopes: string[] }; server: { scopes: string[] } } };
      singleuser: { networkPolicy: { egress: unknown[] } };
    };
    expect(snippet.hub.services['af-gateway']).toEqual({
      url: `http://af-gateway.${NS}.svc.cluster.local:8000`,
      oauth_redirect_uri: '/services/af-gateway/oauth_callback',
      oauth_no_confirm: true,
    });
    expect(snippet.hub.loadRoles.user.scopes).toContain('access:services!service=af-gateway');
    expect(snippet.hub.loadRoles.server.scopes).toEqual(['users:activity!user', 'access:servers!server', 'access:services!service=af-gateway']);
    expect(snippet.singleuser.networkPolicy.egress).toHaveLength(1);
    const secret = one(objects, 'Secret') as K8sObject & { data: Record<string, string> };
    const token = Buffer.from(secret.data.JUPYTERHUB_API_TOKEN!, 'base64').toString();
    expect(token).toMatch(/^[A-Za-z0-9]{64}$/);
    expect(text.split(token)).toHaveLength(1); // the token appears nowhere else (only base64 in the Secret)
    const pod = (one(objects, 'Deployment').spec as DeploymentSpec).template;
    expect(pod.metadata.labels['hub.jupyter.org/network-access-hub']).toBe('true');
  });

  it('documents a LoadBalancer Service for clients outside the cluster', async () => {
    const { objects } = await render({
      'service.type': 'LoadBalancer',
      'service.loadBalancerSourceRanges[0]': '192.0.2.0/24',
      'service.annotations.example\\.org/lb': 'tcp',
    });
    const svc = one(objects, 'Service') as K8sObject & { spec: Record<string, unknown> };
    expect(svc.spec).toMatchObject({ type: 'LoadBalancer', loadBalancerSourceRanges: ['192.0.2.0/24'] });
    expect(svc.metadata.annotations).toEqual({ 'example.org/lb': 'tcp' });
  });

  it('persistence: an existing claim, or an emptyDir when disabled', async () => {
    const existing = await render({ 'persistence.existingClaim': 'gw-state' });
    expect(existing.objects.filter((o) => o.kind === 'PersistentVolumeClaim')).toEqual([]);
    const vols = (one(existing.objects, 'Deployment').spec as DeploymentSpec).template.spec.volumes;
    expect(vols.find((v) => v.name === 'data')).toEqual({ name: 'data', persistentVolumeClaim: { claimName: 'gw-state' } });
    const off = await render({}, ['--set', 'persistence.enabled=false']);
    expect(off.objects.filter((o) => o.kind === 'PersistentVolumeClaim')).toEqual([]);
    const vols2 = (one(off.objects, 'Deployment').spec as DeploymentSpec).template.spec.volumes;
    expect(vols2.find((v) => v.name === 'data')).toEqual({ name: 'data', emptyDir: {} });
    const sc = await render({ 'persistence.storageClass': '-' });
    expect((one(sc.objects, 'PersistentVolumeClaim').spec as { storageClassName: string }).storageClassName).toBe('');
  });
});

interface PodSpec {
  securityContext: Record<string, unknown>;
  affinity?: Record<string, unknown>;
  serviceAccountName: string;
  volumes: ({ name: string } & Record<string, unknown>)[];
  containers: {
    command: string[];
    args: string[];
    env: ({ name: string } & Record<string, unknown>)[];
    envFrom: unknown[];
    ports: unknown[];
    securityContext: Record<string, unknown>;
    livenessProbe: { httpGet: unknown };
    readinessProbe: { httpGet: unknown };
    volumeMounts: { name: string; mountPath: string }[];
  }[];
}
interface DeploymentSpec {
  replicas: number;
  strategy: unknown;
  selector: { matchLabels: Record<string, string> };
  template: { metadata: { labels: Record<string, string>; annotations: Record<string, string> }; spec: PodSpec };
}

// ---------------------------------------------------------------- server-side dry run
// Every rendered object is validated by a real kube-apiserver (v1.34, its OpenAPI schemas,
// --validate=strict: unknown or duplicate fields are errors) without being persisted.
describe('Helm chart against a real API server (kubectl apply --dry-run=server)', () => {
  let runDir = '';
  let kubeconfig = '';
  let started = false;

  async function startCluster(): Promise<void> {
    await harness();
    runDir = mkdtempSync(join(tmpdir(), 'af-chart-kube-'));
    const start = await run('bash', [harnessScript, 'start', runDir], { timeoutMs: CLUSTER_START_TIMEOUT_MS });
    if (start.code !== 0) {
      throw new Error(`scripts/kube-cluster.sh start could not start a test API server (exit ${start.code}):\n${start.stderr.slice(-3000)}`);
    }
    started = true;
    kubeconfig = join(runDir, 'kubeconfig');
    if (!existsSync(kubeconfig)) throw new Error(`scripts/kube-cluster.sh start wrote no ${kubeconfig}`);
    const ns = await run(kubectl, ['--kubeconfig', kubeconfig, 'create', 'namespace', NS]);
    if (ns.code !== 0) throw new Error(`kubectl create namespace ${NS} failed: ${ns.stderr}`);
  }
  let clusterPromise: Promise<void> | undefined;
  // each test awaits this: no API server means every one of them fails with the reason
  const cluster = (): Promise<void> => (clusterPromise ??= startCluster());

  beforeAll(async () => {
    await cluster().catch(() => undefined);
  }, ENSURE_TIMEOUT_MS + CLUSTER_START_TIMEOUT_MS);

  afterAll(async () => {
    if (!runDir) return;
    if (started || existsSync(join(runDir, 'run-id'))) await run('bash', [harnessScript, 'stop', runDir], { timeoutMs: 120_000 });
    rmSync(runDir, { recursive: true, force: true });
  }, 150_000);

  async function dryRun(text: string): Promise<RunResult> {
    await cluster();
    return run(kubectl, ['--kubeconfig', kubeconfig, 'apply', '--dry-run=server', '--validate=strict', '-n', NS, '-f', '-'], {
      input: text,
      timeoutMs: 120_000,
    });
  }

  it('accepts every object of the default render', async () => {
    const { text, objects } = await render();
    const r = await dryRun(text);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(objects.length);
    for (const l of lines) expect(l).toMatch(/ (created|configured|unchanged) \(server dry run\)$/);
  });

  it('accepts the cluster-wide variant and a LoadBalancer with a workspace volume, profiles and extras', async () => {
    for (const extra of [
      ['--set', 'kubernetes.namespacePerUser=true'],
      [
        '--set',
        'service.type=LoadBalancer',
        '--set',
        'service.externalTrafficPolicy=Local',
        '--set',
        'kubernetes.workspaceVolume.persistentVolumeClaim.claimName=af-workspaces',
        '--set',
        'kubernetes.profiles.gpu.resources.limits.nvidia\\.com/gpu=1',
        '--set',
        'persistence.storageClass=-',
        '--set',
        'imagePullSecrets[0].name=regcred',
        '--set',
        'tolerations[0].key=dedicated',
        '--set',
        'tolerations[0].operator=Exists',
        '--set',
        'extraEnv[0].name=NODE_OPTIONS',
        '--set',
        'extraEnv[0].value=--max-old-space-size=768',
      ],
    ]) {
      const { text } = await render({}, extra);
      const r = await dryRun(text);
      expect(r.code, `${extra.join(' ')}\n${r.stderr}`).toBe(0);
      expect(r.stderr).toBe('');
    }
  });

  it('accepts every object of PostgreSQL renders (3 replicas with RollingUpdate and anti-affinity; an existing claim and Secret)', async () => {
    for (const [values, extra] of [
      [
        { 'postgresql.url': PG_URL },
        ['--set', 'postgresql.enabled=true', '--set', 'replicaCount=3', '--set', 'kubernetes.workspaceVolume.persistentVolumeClaim.claimName=af-workspaces'],
      ],
      [
        { 'secrets.existingSecret': 'facility-secrets', 'persistence.existingClaim': 'gw-rwx' },
        ['--set', 'postgresql.enabled=true', '--set', 'replicaCount=2'],
      ],
    ] as [Record<string, string>, string[]][]) {
      const r = await template(values['secrets.existingSecret'] ? values : { 'secrets.encryptKey': KEY, ...values }, extra);
      expect(r.code, r.stderr).toBe(0);
      const objects = YAML.parseAllDocuments(r.stdout)
        .map((d) => d.toJS() as K8sObject | null)
        .filter((o): o is K8sObject => o !== null);
      const dry = await dryRun(r.stdout);
      expect(dry.code, `${extra.join(' ')}\n${dry.stderr}`).toBe(0);
      expect(dry.stderr).toBe('');
      expect(dry.stdout.trim().split('\n')).toHaveLength(objects.length);
      expect(objects.map((o) => o.kind)).toContain('Deployment');
    }
  });

  it('helm install prints the notes (JupyterHub snippet, connect code); upgrade keeps the generated hub token; uninstall keeps the PVC', async () => {
    await cluster();
    const helmK = (args: string[]) => run(helm, ['--kubeconfig', kubeconfig, '--namespace', NS, ...args], { env: helmEnv, timeoutMs: 120_000 });
    const k = (args: string[]) => run(kubectl, ['--kubeconfig', kubeconfig, '--namespace', NS, ...args]);
    const hubToken = async () => {
      const r = await k(['get', 'secret', 'af-gateway', '-o', 'jsonpath={.data.JUPYTERHUB_API_TOKEN}']);
      expect(r.code, r.stderr).toBe(0);
      return Buffer.from(r.stdout, 'base64').toString();
    };
    // no StorageClass in the test cluster: the claim stays Pending, so the pod is never started
    const encryptKey = async () => {
      const r = await k(['get', 'secret', 'af-gateway', '-o', 'jsonpath={.data.AF_GATEWAY_ENCRYPT_KEY}']);
      expect(r.code, r.stderr).toBe(0);
      return Buffer.from(r.stdout, 'base64').toString();
    };
    // no encrypt key given: the chart makes one, and an upgrade keeps it (a new key would lock the state)
    const install = await helmK(['install', RELEASE, chart]);
    expect(install.code, install.stderr).toBe(0);
    const key = await encryptKey();
    expect(Buffer.from(key, 'base64').length).toBe(32);
    const notes = install.stdout.slice(install.stdout.indexOf('NOTES:'));
    expect(notes).toContain(`kubectl rollout status -n ${NS} deployment/af-gateway`);
    expect(notes).toContain(`proxy_address="gateway://af-gateway.${NS}.svc.cluster.local:8000"`);
    expect(notes).toContain('auth="jupyterhub"');
    expect(notes).toContain('--set-string hub.services.af-gateway.apiToken=');
    expect(notes).toContain('oauth_redirect_uri: /services/af-gateway/oauth_callback');
    expect(notes).toContain('"access:services!service=af-gateway"');
    const token = await hubToken();
    expect(token).toMatch(/^[A-Za-z0-9]{64}$/);
    expect(notes).not.toContain(token);

    const upgrade = await helmK(['upgrade', RELEASE, chart, '--reuse-values', '--set', 'config.log_level=debug']);
    expect(upgrade.code, upgrade.stderr).toBe(0);
    expect(await hubToken()).toBe(token);
    expect(await encryptKey()).toBe(key);
    const cm = await k(['get', 'configmap', 'af-gateway', '-o', 'jsonpath={.data.config\\.yaml}']);
    expect(resolveConfig(YAML.parse(cm.stdout)).log_level).toBe('debug');

    // several replicas: refused on SQLite, accepted with PostgreSQL (and back again)
    const replicas = await helmK(['upgrade', RELEASE, chart, '--reuse-values', '--set', 'replicaCount=2']);
    expect(replicas.code).not.toBe(0);
    expect(replicas.stderr).toContain('replicaCount is 2, but with the default SQLite state');
    expect(replicas.stderr).toContain('postgresql.enabled');
    const deployment = async () => {
      const r = await k(['get', 'deployment', 'af-gateway', '-o', 'json']);
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as { spec: DeploymentSpec };
    };
    // (the test node agent starts these pods, the data volume being an emptyDir, and they fail at
    // once: no gateway build at /app here, no database; only what the API server accepts matters)
    const pg = await helmK([
      'upgrade',
      RELEASE,
      chart,
      '--reuse-values',
      '--set',
      'replicaCount=2',
      '--set',
      'postgresql.enabled=true',
      '--set-string',
      `postgresql.url=${PG_URL}`,
    ]);
    expect(pg.code, pg.stderr).toBe(0);
    expect(pg.stdout).toContain('2 replicas on a');
    expect(pg.stdout).toContain('the other one is a standby');
    expect(pg.stdout + pg.stderr).not.toContain(PG_PASSWORD);
    const pgDep = await deployment();
    expect(pgDep.spec.replicas).toBe(2);
    expect(pgDep.spec.strategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: '100%' } });
    expect(pgDep.spec.template.spec.volumes.find((v) => v.name === 'data')).toEqual({ name: 'data', emptyDir: {} });
    const url = await k(['get', 'secret', 'af-gateway', '-o', 'jsonpath={.data.AF_GATEWAY_DATABASE_URL}']);
    expect(Buffer.from(url.stdout, 'base64').toString()).toBe(PG_URL);
    expect(await encryptKey()).toBe(key); // one key for every replica, kept across the switch
    const pgCm = await k(['get', 'configmap', 'af-gateway', '-o', 'jsonpath={.data.config\\.yaml}']);
    expect(pgCm.stdout).not.toContain(PG_PASSWORD);
    expect(resolveConfig(YAML.parse(pgCm.stdout)).state_store).toEqual({ postgresql_url: null, pool_size: 5, standby_poll_period: 2 });
    const back = await helmK([
      'upgrade',
      RELEASE,
      chart,
      '--reuse-values',
      '--set',
      'replicaCount=1',
      '--set',
      'postgresql.enabled=false',
      '--set-string',
      'postgresql.url=',
    ]);
    expect(back.code, back.stderr).toBe(0);
    const sqliteDep = await deployment();
    expect(sqliteDep.spec.replicas).toBe(1);
    expect(sqliteDep.spec.strategy).toEqual({ type: 'Recreate' });
    expect(sqliteDep.spec.template.spec.volumes.find((v) => v.name === 'data')).toEqual({ name: 'data', persistentVolumeClaim: { claimName: 'af-gateway' } });

    const uninstall = await helmK(['uninstall', RELEASE, '--wait', '--timeout', '60s']);
    expect(uninstall.code, uninstall.stderr).toBe(0);
    expect(uninstall.stdout + uninstall.stderr).toMatch(/kept due to the resource policy|PersistentVolumeClaim/);
    const pvc = await k(['get', 'pvc', 'af-gateway', '-o', 'jsonpath={.metadata.annotations.helm\\.sh/resource-policy}']);
    expect(pvc.code, pvc.stderr).toBe(0);
    expect(pvc.stdout).toBe('keep');
    const gone = await k([
      'get',
      'deployment,secret,configmap,service,role,rolebinding,serviceaccount',
      '-l',
      `app.kubernetes.io/instance=${RELEASE}`,
      '-o',
      'name',
    ]);
    expect(gone.stdout.trim()).toBe('');
    await k(['delete', 'pvc', 'af-gateway', '--wait=false']);
  });

  it('the API server itself rejects a broken object (the dry run is a real check)', async () => {
    const { objects } = await render();
    const svc = one(objects, 'Service') as K8sObject & { spec: Record<string, unknown> };
    const broken = YAML.stringify({ ...svc, spec: { ...svc.spec, portz: [] } });
    const r = await dryRun(broken);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/unknown field "spec.portz"/);
  });
});

// ---------------------------------------------------------------- compose and Dockerfiles
describe('deploy/compose and deploy/docker (structure; no Docker engine here to run them)', () => {
  const composeDir = join(repoRoot, 'deploy', 'compose');
  const compose = YAML.parse(readFileSync(join(composeDir, 'compose.yaml'), 'utf8')) as {
    name?: string;
    services: Record<string, Record<string, unknown>>;
    volumes: Record<string, unknown>;
    networks: Record<string, unknown>;
  };

  it('has the gateway and JupyterLab services on one network, state in named volumes, secrets from .env', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['gateway', 'lab']);
    const gw = compose.services.gateway!;
    const lab = compose.services.lab!;
    expect(Object.keys(compose.networks)).toHaveLength(1);
    const net = Object.keys(compose.networks)[0]!;
    expect(gw.networks).toEqual([net]);
    // the Lab shares the gateway's network namespace (one localhost), so it is on that network too
    expect(lab.network_mode).toBe('service:gateway');
    for (const [name, svc] of Object.entries(compose.services)) {
      const build = svc.build as { context: string; dockerfile: string };
      expect(build, `${name} is built from a Dockerfile of deploy/docker`).toBeTruthy();
      expect(resolve(composeDir, build.context)).toBe(repoRoot);
      expect(existsSync(join(repoRoot, build.dockerfile)), build.dockerfile).toBe(true);
    }
    // secrets come from .env by interpolation, each into the one container that needs it
    expect(gw.environment).toEqual({ AF_GATEWAY_ENCRYPT_KEY: expect.stringMatching(/^\$\{AF_GATEWAY_ENCRYPT_KEY:\?/) as unknown });
    expect(lab.environment).toEqual({ JUPYTER_TOKEN: expect.stringMatching(/^\$\{JUPYTER_TOKEN:\?/) as unknown });
    const declared = Object.keys(compose.volumes);
    const used = Object.values(compose.services)
      .flatMap((s) => (s.volumes as string[] | undefined) ?? [])
      .map((v) => v.split(':')[0]!)
      .filter((src) => !src.startsWith('.') && !src.startsWith('/'));
    expect(used.length).toBeGreaterThan(0);
    for (const v of used) expect(declared).toContain(v);
    expect((gw.volumes as string[]).some((v) => v.endsWith(':/var/lib/af-gateway'))).toBe(true);
  });

  it('.env.example names every variable compose.yaml uses, and no secret value', () => {
    const text = readFileSync(join(composeDir, 'compose.yaml'), 'utf8');
    const used = new Set([...text.matchAll(/\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}/g)].map((m) => m[1]!));
    const example = readFileSync(join(composeDir, '.env.example'), 'utf8');
    const defined = new Set([...example.matchAll(/^([A-Z0-9_]+)=/gm)].map((m) => m[1]!));
    for (const v of used) expect(defined, v).toContain(v);
    expect(defined).toContain('AF_GATEWAY_ENCRYPT_KEY');
    expect(example).toMatch(/^AF_GATEWAY_ENCRYPT_KEY=$/m);
  });

  it("the compose gateway config validates with the gateway's own validator", () => {
    const raw = YAML.parse(readFileSync(join(composeDir, 'gateway.yaml'), 'utf8')) as unknown;
    const c = resolveConfig(raw);
    expect(c.backend.type).toBe('local');
    expect(c.data_dir).toBe('/var/lib/af-gateway');
    const mounted = (compose.services.gateway!.volumes as string[]).find((v) => v.startsWith('./gateway.yaml:'));
    expect(mounted).toBeTruthy();
  });

  it('every COPY source of the Dockerfiles exists in the repository (or is produced by an earlier stage)', () => {
    for (const file of ['Dockerfile', 'Dockerfile.single', 'Dockerfile.lab']) {
      const text = readFileSync(join(repoRoot, 'deploy', 'docker', file), 'utf8').replace(/\\\n/g, ' ');
      const copies = [...text.matchAll(/^COPY\s+(?!--from)(?:--\S+\s+)*(.+)$/gm)].map((m) => m[1]!.trim().split(/\s+/));
      expect(copies.length, file).toBeGreaterThan(0);
      for (const words of copies) {
        for (const src of words.slice(0, -1)) {
          const base = src.replace(/\*.*$/, '');
          const produced = file === 'Dockerfile.lab' && src.startsWith('.cache/wheels/'); // built by scripts/bootstrap.sh
          if (!produced) expect(existsSync(join(repoRoot, base)), `${file}: COPY ${src}`).toBe(true);
        }
      }
      expect(text, file).toMatch(/cannot be built here|no Docker engine/i);
    }
  });
});
