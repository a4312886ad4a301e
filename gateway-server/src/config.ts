// Loads and validates the config file against schemas/json/config.json, filling every default.
import { readFileSync } from 'node:fs';
import { resolve, dirname, join } from 'node:path';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import type { GatewayConfig } from '@af-gateway/schemas';
import { formatAjvErrors, validateConfig } from './schemas.js';
import { groupProfileProblems } from './clusters/group-profiles.js';

type DeepRequired<T> = T extends (infer U)[]
  ? DeepRequired<U>[]
  : T extends object
    ? { [K in keyof T]-?: DeepRequired<NonNullable<T[K]>> | Extract<T[K], null> }
    : T;

export type ResolvedConfig = DeepRequired<GatewayConfig>;
export type ClusterOptionField = ResolvedConfig['cluster_options'][number];

export class ConfigError extends Error {}

/**
 * Parses and validates a config document; relative paths become absolute against `baseDir`, and
 * the environment's overrides are applied here, once (the rest of the gateway reads the config only).
 */
export function resolveConfig(raw: unknown, baseDir = process.cwd(), env: NodeJS.ProcessEnv = process.env): ResolvedConfig {
  const doc = structuredClone(raw ?? {});
  if (!validateConfig(doc)) {
    throw new ConfigError(`invalid configuration: ${formatAjvErrors(validateConfig.errors)}`);
  }
  const config = doc as ResolvedConfig;
  const groupNames = config.worker_groups.map((g) => g.name);
  const twice = groupNames.find((n, i) => groupNames.indexOf(n) !== i);
  if (twice) throw new ConfigError(`invalid configuration: worker_groups names ${twice} twice; each group needs a name of its own`);
  // Overflow goes one step, into a group the config defines: never into itself, default, or a group that overflows in turn.
  const overflows: [string, { group: string } | null][] = [
    ['default_worker_group', config.default_worker_group.overflow],
    ...config.worker_groups.map((g, i): [string, { group: string } | null] => [`worker_groups[${i}] (${g.name})`, g.overflow]),
  ];
  for (const [where, o] of overflows) {
    if (!o) continue;
    const into = config.worker_groups.find((g) => g.name === o.group);
    if (!into) throw new ConfigError(`invalid configuration: ${where}.overflow.group names ${o.group}, which worker_groups does not define`);
    if (where.endsWith(`(${o.group})`)) throw new ConfigError(`invalid configuration: ${where}.overflow.group names the group itself`);
    if (into.overflow) {
      throw new ConfigError(
        `invalid configuration: ${where} overflows into ${o.group}, which overflows in turn; an overflow group must not have an overflow of its own`,
      );
    }
  }
  // The memory backend runs nothing (schedulers and workers are records a load generator heartbeats for):
  // a production config must never pick it, so only an explicit switch in the environment lets it through.
  const memoryAt = [
    ...(config.backend.type === 'memory' ? ['backend.type'] : []),
    ...config.worker_groups.flatMap((g, i) => (g.backend?.type === 'memory' ? [`worker_groups[${i}].backend.type`] : [])),
  ];
  if (memoryAt.length && env.AF_GATEWAY_ALLOW_MEMORY_BACKEND !== '1') {
    throw new ConfigError(
      `invalid configuration: ${memoryAt.join(', ')} is memory, a backend that runs nothing (for benchmarks and tests only); ` +
        'choose local, htcondor, kubernetes or slurm, or set AF_GATEWAY_ALLOW_MEMORY_BACKEND=1 in the environment of a benchmark',
    );
  }
  // GPUs and images only where the group's backend can give them.
  const profileProblems = groupProfileProblems(config);
  if (profileProblems.length) throw new ConfigError(`invalid configuration: ${profileProblems.join('; ')}`);
  applyEnvironment(config, env);
  config.data_dir = resolve(baseDir, config.data_dir);
  config.backend.local.python ??= defaultPython();
  return config;
}

export function loadConfigFile(file: string | undefined): ResolvedConfig {
  // The embedded default is one person's gateway on loopback: single-user (see docs/security-model.md).
  // It also bounds what one careless notebook can start: 10 clusters at once.
  if (!file) return resolveConfig({ backend: { local: { single_user: true } }, policy: { user_limits: { max_clusters: 10 } } });
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = file.endsWith('.json') ? JSON.parse(text) : YAML.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${file} is not valid ${file.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message}`);
  }
  return resolveConfig(raw, process.cwd());
}

/** The repository's pinned venv when the gateway runs from a checkout, else python3 on PATH. */
export function defaultPython(): string {
  const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
  const venvPython = join(repoRoot, '.venv', 'bin', 'python');
  return existsSync(venvPython) ? venvPython : 'python3';
}

export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(listen);
  if (!m) throw new ConfigError(`listen address must be HOST:PORT, got ${JSON.stringify(listen)}`);
  const port = Number(m[2]);
  if (port > 65535) throw new ConfigError(`port out of range in ${listen}`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

/**
 * What the environment may set. Secrets an admin keeps out of files win over the file
 * (AF_GATEWAY_DATABASE_URL, AF_GATEWAY_ENCRYPT_KEY, AF_GATEWAY_OIDC_CLIENT_SECRET); what JupyterHub
 * tells a service it runs (JUPYTERHUB_*) fills only what the file leaves unset, as does a Rucio
 * instance's password (AF_GATEWAY_RUCIO_PASSWORD_<NAME>, the name upper-cased, - as _).
 */
function applyEnvironment(config: ResolvedConfig, env: NodeJS.ProcessEnv): void {
  const given = (name: string) => (env[name] ? env[name] : null);
  config.state_store.postgresql_url = given('AF_GATEWAY_DATABASE_URL') ?? config.state_store.postgresql_url;
  config.encrypt_key = given('AF_GATEWAY_ENCRYPT_KEY') ?? config.encrypt_key;
  config.auth.oidc.client_secret = env.AF_GATEWAY_OIDC_CLIENT_SECRET ?? config.auth.oidc.client_secret;
  const jh = config.auth.jupyterhub;
  jh.api_url ??= given('JUPYTERHUB_API_URL');
  jh.api_token ??= given('JUPYTERHUB_API_TOKEN');
  jh.client_id ??= given('JUPYTERHUB_CLIENT_ID');
  jh.service_name ??= given('JUPYTERHUB_SERVICE_NAME');
  jh.oauth_callback_url ??= given('JUPYTERHUB_OAUTH_CALLBACK_URL');
  jh.authorize_url ??= `${basePathOf(env.JUPYTERHUB_BASE_URL ?? '/')}hub/api/oauth2/authorize`;
  config.base_path ??= given('JUPYTERHUB_SERVICE_PREFIX');
  for (const i of config.rucio.instances) i.password ??= given(`AF_GATEWAY_RUCIO_PASSWORD_${i.name.toUpperCase().replace(/-/g, '_')}`);
}

/** A URL path prefix with one leading and one trailing slash. */
export function basePathOf(p: string): string {
  const withLead = p.startsWith('/') ? p : `/${p}`;
  return withLead.endsWith('/') ? withLead : `${withLead}/`;
}
