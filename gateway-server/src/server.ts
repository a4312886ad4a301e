// Starts a gateway: state, backend, lifecycle engine, the Fastify app and the one listener.
import { chmodSync, mkdirSync, readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import type { FastifyBaseLogger, InjectOptions, LightMyRequestResponse } from 'fastify';
import { buildApp, stripBasePath } from './app.js';
import { basePathOf, ConfigError, parseListen, type ResolvedConfig } from './config.js';
import { errorMessage } from './errors.js';
import { openStateStore } from './store/open-store.js';
import { serveStandby } from './standby.js';
import { closedAncestor, LocalBackend } from './backends/local/local-backend.js';
import { PosixAccounts, sudoAccountCreator } from './accounts/accounts.js';
import { ClusterManager } from './clusters/cluster-manager.js';
import type { TokenIdentity } from './auth/oidc-authenticator.js';
import { splitAuthorization, type User } from './auth/authenticator.js';
import { authSetup, LOOPBACK_HOSTS } from './auth/auth-setup.js';
import { SimpleAuthenticator } from './auth/simple-authenticator.js';
import { TokenBroker } from './tokens/token-broker.js';
import { Sessions } from './auth/sessions.js';
import { Identifier } from './auth/identify.js';
import { Metrics } from './metrics.js';
import { RucioClient } from './rucio/rucio-client.js';
import { HTCondorBackend } from './backends/htcondor/htcondor-backend.js';
import { SlurmBackend } from './backends/slurm/slurm-backend.js';
import type { Backend } from './backends/backend.js';
import { createOnePortServer, LISTEN_BACKLOG } from './listener/one-port-listener.js';
import { DashboardCapabilities, dashboardUpgradeHandler } from './api/dashboard-proxy.js';
import { hostPolicy } from './api/host-check.js';
import { EventStream } from './api/event-stream.js';
import { refuseUpgrade } from './api/upgrade.js';
import { WorkflowEngine } from './workflows/workflow-engine.js';
import { uploadAndRegister } from './rucio/rucio-upload.js';
import { rucioFileList } from './rucio/rucio-files.js';

export interface RunningGateway {
  /** Base URL of the API, e.g. http://127.0.0.1:8000 */
  url: string;
  port: number;
  /** Answers a request in this process without the network (Fastify's inject; no WebSocket upgrades): for tests. */
  inject(request: InjectOptions): Promise<LightMyRequestResponse>;
  close(): Promise<void>;
}

export const VERSION: string = (JSON.parse(readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', 'package.json'), 'utf8')) as { version: string })
  .version;

const ACCOUNTS_SCRIPT = join(dirname(fileURLToPath(import.meta.url)), '..', 'python', 'af_gateway_accounts.py');

/**
 * Single-user mode runs every user's code as the gateway: acceptable for one person on loopback,
 * never for a gateway that tells users apart. Refused with anything that admits several people.
 */
export function checkSingleUser(config: ResolvedConfig, host: string): void {
  if (!config.backend.local.single_user) return;
  const a = config.auth;
  const why =
    a.type !== 'simple'
      ? `auth.type is ${a.type}`
      : a.simple.password !== null
        ? 'auth.simple.password is set (several people share the gateway)'
        : !LOOPBACK_HOSTS.has(host)
          ? `the gateway listens on ${host}, not on loopback`
          : null;
  if (why) {
    throw new ConfigError(
      `backend.local.single_user is true, but ${why}: single-user mode runs every user's processes as the gateway's own account, ` +
        `so it is only for one person on loopback. Remove backend.local.single_user and give users accounts (see accounts and docs/security-model.md).`,
    );
  }
}

/** The backends users may run workflow steps on: the admin's list (default: the gateway's backend). */
function stepBackendNames(config: ResolvedConfig, mainKind: string): string[] {
  const names = config.workflows.backends ?? [mainKind];
  for (const n of names) {
    if (n !== mainKind && n !== 'local') {
      throw new ConfigError(`workflows.backends lists ${n}, but this gateway's backend is ${mainKind}`);
    }
  }
  return names;
}

/** The gateway's logger: JSON lines on stdout, or on `destination` (tests read what is logged). */
export function makeLogger(level: string, destination?: pino.DestinationStream): FastifyBaseLogger {
  const options = {
    level,
    base: { service: 'af-gateway' },
    redact: { paths: ['req.headers.authorization', 'req.headers.cookie', 'headers.authorization', 'headers.cookie', 'token', 'tls_key'], censor: '[redacted]' },
  };
  return (destination ? pino(options, destination) : pino(options)) as unknown as FastifyBaseLogger;
}

export async function startGateway(config: ResolvedConfig, logger = makeLogger(config.log_level)): Promise<RunningGateway> {
  const { host, port } = parseListen(config.listen);
  const { authenticator, oidc, hub, hubAuthState } = authSetup(config, host);
  checkSingleUser(config, host);
  if (!config.backend.local.single_user && config.auth.type === 'simple') {
    logger.warn(
      'auth.type simple proves no identity: whoever knows the password may act as any user (and so as their account). Use jupyterhub or oidc where users must be kept apart.',
    );
  }
  const workspaceRoot = config.workflows.workspace_root ?? join(config.data_dir, 'workflows');
  const accounts = new PosixAccounts(
    config.accounts,
    undefined,
    undefined,
    config.accounts.create ? sudoAccountCreator(config.backend.local.sudo, config.backend.local.python!, ACCOUNTS_SCRIPT) : undefined,
  );
  mkdirSync(config.data_dir, { recursive: true, mode: 0o700 });
  mkdirSync(join(config.data_dir, 'clusters'), { recursive: true, mode: 0o700 });
  // Multi-user: users' steps pass through the data dir to their run's workspace (workflows/, 0711);
  // everything else in it is the gateway's alone (0600/0700), so passing through reveals nothing.
  if (!config.backend.local.single_user) chmodSync(config.data_dir, 0o711);

  // The Kubernetes client is loaded only by a configuration that uses it (it is most of an idle
  // gateway's memory), and before the state store's lease is held: its loading takes seconds of CPU
  // on a busy machine, and a replica holding the lease must not stall that long.
  const kubernetes = [config.backend, ...config.worker_groups.map((g) => g.backend)].some((b) => b?.type === 'kubernetes')
    ? await import('./backends/kubernetes/kubernetes-backend.js')
    : undefined;
  // The memory backend (benchmarks and tests only: resolveConfig refuses it without AF_GATEWAY_ALLOW_MEMORY_BACKEND=1) runs nothing.
  const memory = [config.backend, ...config.worker_groups.map((g) => g.backend)].some((b) => b?.type === 'memory')
    ? new (await import('./backends/memory/memory-backend.js')).MemoryBackend({ launchLog: join(config.data_dir, 'memory-launches.jsonl') })
    : undefined;
  const store = await openStateStore(config, (msg, err) => logger.warn({ err: errorMessage(err) }, msg));
  // Several replicas on one PostgreSQL database: one serves, the others wait here as standbys.
  const tlsFiles =
    config.tls.cert_file && config.tls.key_file ? { cert: readFileSync(config.tls.cert_file), key: readFileSync(config.tls.key_file) } : undefined;
  const standby = store.kind === 'sqlite' ? undefined : await serveStandby({ host, port, storeKind: store.kind, tls: tlsFiles, log: logger });
  const leadership = await store.waitForLeadership(config.state_store.standby_poll_period * 1000, () =>
    logger.info({ store: store.kind }, 'standby: another replica holds the state store lease; waiting to take over'),
  );
  leadership.onLost((reason) => {
    // Another replica may take over now; serving on would mean two gateways driving the same clusters.
    logger.fatal({ reason }, 'lost the state store lease; exiting so that only one replica serves');
    process.exit(75);
  });
  if (standby) logger.info({ store: store.kind }, 'holding the state store lease: this replica serves');
  if (store.kind !== 'sqlite' && config.cluster.stop_on_shutdown) {
    logger.warn('cluster.stop_on_shutdown is true: stopping this replica stops every cluster instead of handing them to a standby');
  }
  const local = config.backend.local;
  const htcondor = config.backend.type === 'htcondor' ? config.backend.htcondor : undefined;
  const slurm = config.backend.type === 'slurm' ? config.backend.slurm : undefined;
  const localBackend = new LocalBackend({
    python: local.python!,
    prefork: local.prefork,
    nanny: local.nanny,
    stopGracePeriod: local.stop_grace_period,
    dataDir: config.data_dir,
    log: logger,
    schedulerHost: htcondor?.scheduler_host ?? slurm?.scheduler_host,
    singleUser: local.single_user,
    accounts,
    sudo: local.sudo,
    launcherIdleTimeout: local.launcher_idle_timeout,
    sessionNice: local.session_nice,
    // (schedulers the HTCondor backend runs next to the gateway keep a plain dashboard for now)
    dashboardTls: config.backend.type === 'local',
  });
  if (!local.single_user && process.getuid?.() === 0) {
    logger.warn(
      "the gateway runs as root: run it as an unprivileged account (it needs none of root's rights with the local backend; see docs/security-model.md)",
    );
  }
  let listenUrl = '';
  // (what every batch backend is given besides its own settings)
  const batch = {
    local: localBackend,
    python: local.python!,
    dataDir: config.data_dir,
    stateIdentity: store.identity,
    log: logger,
    accounts,
    singleUser: local.single_user,
    workspaceRoot,
  };
  /** The backend a backend section describes (the top-level one, or a worker group's). */
  const makeBackend = (b: ResolvedConfig['backend']): Backend =>
    b.type === 'htcondor'
      ? new HTCondorBackend({ config: b.htcondor, ...batch })
      : b.type === 'slurm'
        ? new SlurmBackend({ config: b.slurm, ...batch })
        : b.type === 'kubernetes'
          ? new kubernetes!.KubernetesBackend({
              config: b.kubernetes,
              dataDir: config.data_dir,
              stateIdentity: store.identity,
              log: logger,
              workspaceRoot,
              defaultApiUrl: () => `${listenUrl}/api`,
              accounts,
            })
          : b.type === 'memory'
            ? memory!
            : localBackend;
  const backend: Backend = makeBackend(config.backend);
  // Each worker group with a backend section of its own gets that backend; equal sections share one.
  const backendsByConfig = new Map<string, Backend>([[JSON.stringify(config.backend), backend]]);
  const groupBackends = new Map<string, Backend>();
  for (const g of config.worker_groups) {
    if (!g.backend) continue;
    const key = JSON.stringify(g.backend);
    if (!backendsByConfig.has(key)) backendsByConfig.set(key, makeBackend(g.backend as ResolvedConfig['backend']));
    groupBackends.set(g.name, backendsByConfig.get(key)!);
  }
  const extraBackends = [...new Set(groupBackends.values())].filter((b) => b !== backend && b !== localBackend);
  const clusters = new ClusterManager({ store, backend, config, log: logger, groupBackends });
  const tlsOn = tlsFiles !== undefined;
  // Secure cookies whenever browsers reach the gateway over HTTPS: its own TLS, or a TLS proxy in front (public_url).
  const sessions = new Sessions(store, config.auth.session_max_age, tlsOn || (config.public_url ?? '').startsWith('https://'));
  // Hub logins' sessions are confirmed at the Hub as often as Hub tokens in Authorization headers are.
  if (hub) sessions.confirmAtHub({ confirm: (token) => hub.confirm(token), cacheSeconds: hub.cacheSeconds });
  const broker = new TokenBroker({
    store,
    clusters,
    // (a backend that writes the token file itself needs no second hand-over)
    deliverElsewhere: backend.updateToken && !backend.writeBearerToken ? (c, token) => backend.updateToken!(c, token) : undefined,
    // A backend that knows where its processes read the owner's token writes it (multi-user: as the owner, or handed over).
    writeTokenFile: backend.writeBearerToken ? (c, token) => backend.writeBearerToken!(c, token) : undefined,
    oidc,
    config: config.tokens,
    log: logger,
    hubAuthState,
  });
  const identifier = new Identifier(authenticator, sessions, (user, authorization) => {
    // A verified bearer token is the freshest token of its user the gateway may know.
    // (the provider's own: auth.type oidc, or simple authentication that takes the provider's bearer tokens too)
    const fromProvider = authenticator === oidc || (authenticator instanceof SimpleAuthenticator && oidc !== undefined && authenticator.bearer === oidc);
    const { scheme, credentials } = splitAuthorization(authorization);
    if (fromProvider && scheme === 'bearer' && 'token' in user) broker.observe(user as TokenIdentity, credentials);
    if (hub) void broker.considerHub(user);
  });
  const metrics = new Metrics(clusters, store);

  const basePath = basePathOf(config.base_path ?? '/');
  const jh = config.auth.jupyterhub;
  const hubApiUrl = jh.api_url ?? '';
  const hubLogin = hub
    ? {
        hub,
        sessions,
        apiUrl: hubApiUrl,
        apiToken: jh.api_token,
        clientId: jh.client_id ?? 'service-af-gateway',
        callbackUrl: jh.oauth_callback_url,
        authorizeUrl: jh.authorize_url!,
        basePath,
        onLogin: (user: User) => void broker.considerHub(user),
      }
    : undefined;
  const rucio = new Map(config.rucio.instances.map((i) => [i.name, new RucioClient(i, broker)]));
  const stepBackends = new Map<string, Backend>(stepBackendNames(config, backend.kind).map((n) => [n, n === 'local' ? localBackend : backend]));
  if (stepBackends.has('local') && localBackend.multiUser) {
    const blocked = closedAncestor(workspaceRoot);
    if (blocked)
      logger.warn(
        { workspace_root: workspaceRoot, blocked },
        `users' accounts cannot pass through ${blocked}: local workflow steps will be refused until it has o+x (or workflows.workspace_root is elsewhere)`,
      );
  }
  const workflows = new WorkflowEngine({
    store,
    backends: stepBackends,
    defaultBackend: stepBackends.has(backend.kind) ? backend.kind : ([...stepBackends.keys()][0] ?? backend.kind),
    config,
    log: logger,
    rucioFiles: rucio.size ? (user, ref) => rucioFileList(rucio, user, ref) : undefined,
    rucioInstances: [...rucio.keys()],
    userToken: (name) => {
      try {
        const t = broker.accessToken({ name, groups: [], admin: false });
        return t.expires_at === null || t.expires_at > Date.now() ? t.access_token : null;
      } catch {
        return null; // the gateway holds no token of theirs
      }
    },
    onUserToken: (listener) => broker.on('token', listener),
    registerFiles: rucio.size
      ? (user, target, files) => {
          const client = rucio.get(target.instance)!; // checked at submission
          return uploadAndRegister({ client, storageToken: (u) => client.storageToken(u) }, user, target, files);
        }
      : undefined,
  });
  // Requests wait until the clusters and runs of the state were adopted: before that, a cluster
  // being adopted would look ended (a failover's clients retry at once).
  let recovered!: () => void;
  const ready = new Promise<void>((resolve) => (recovered = resolve));
  const dashboardCapabilities = new DashboardCapabilities();
  const checkHost = hostPolicy(config, host);
  const app = await buildApp({
    checkHost,
    dashboardCapabilities,
    ready,
    workflows,
    logger,
    clusters,
    identifier,
    metrics,
    metricsToken: config.metrics.bearer_token,
    broker,
    oidc,
    sessions,
    publicUrl: config.public_url,
    basePath,
    hubLogin,
    version: VERSION,
    rucio,
    connectTarget: () => ({
      address: config.client.address ?? config.public_url ?? listenUrl,
      proxy_address: config.client.proxy_address ?? `gateway://${listenUrl.replace(/^https?:\/\//, '')}`,
      auth: config.auth.type === 'simple' ? 'basic' : config.auth.type === 'jupyterhub' ? 'jupyterhub' : 'bearer',
      workflow_backends: [...workflows.backendNames].sort((x, y) => Number(y === backend.kind) - Number(x === backend.kind)),
    }),
    health: async () => ({
      // (unauthenticated: the reason goes to the log, not to the caller)
      state: await store.countByStatus().then(
        () => 'ok',
        (err: unknown) => {
          logger.error({ err: errorMessage(err) }, 'health: the state store did not answer');
          return `the ${store.kind} state store did not answer`;
        },
      ),
      backend: 'ok',
    }),
  });
  await app.ready();

  // WebSocket upgrades: the event stream and the dashboards' bokeh sockets.
  const events = new EventStream({ clusters, broker, identifier, workflows, log: logger });
  const dashboards = dashboardUpgradeHandler({ clusters, identifier, log: logger, capabilities: dashboardCapabilities, sessions });
  app.server.on('upgrade', (req, socket, head) => {
    req.url = stripBasePath(req.url ?? '/', basePath);
    void (async () => {
      try {
        checkHost(req.headers);
      } catch (err) {
        refuseUpgrade(socket, err);
        return;
      }
      await ready;
      sessions.bindSocket(req.headers, socket); // closed when the session it rides on ends
      if (await events.handleUpgrade(req, socket, head)) return;
      if (await dashboards(req, socket, head)) return;
      refuseUpgrade(socket, 404, 'not_found', `No WebSocket endpoint at ${(req.url ?? '').split('?')[0]}`);
    })();
  });

  let https: TlsServer | undefined;
  if (tlsOn) {
    https = createTlsServer({ ...tlsFiles!, ALPNProtocols: ['http/1.1'] });
    https.on('secureConnection', (s) => app.server.emit('connection', s));
  }
  const onePort = createOnePortServer({ http: app.server, https, schedulerFor: (n) => clusters.schedulerRoute(n), log: logger });
  await standby?.close(); // the port changes hands only now: no refused connections while we got ready
  await new Promise<void>((resolve, reject) => {
    onePort.server.once('error', reject);
    onePort.server.listen({ port, host, backlog: LISTEN_BACKLOG }, () => resolve());
  });
  const actualPort = (onePort.server.address() as AddressInfo).port;
  const connectHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  const url = `${tlsOn ? 'https' : 'http'}://${connectHost}:${actualPort}`;
  listenUrl = url;
  await broker.start();
  await clusters.start(config.cluster.api_url ?? `${url}/api`);
  await workflows.start();
  recovered();
  // expired login sessions go now and every hour (only here, on the replica holding the lease)
  sessions.startPruning(3600_000, (err: unknown) => logger.warn({ err: errorMessage(err) }, 'could not prune sessions'));
  logger.info({ url, backend: backend.kind, auth: config.auth.type, data_dir: config.data_dir }, 'gateway listening');

  let closing: Promise<void> | undefined;
  return {
    url,
    port: actualPort,
    inject: (request) => app.inject(request),
    close: () =>
      (closing ??= (async () => {
        onePort.server.close(); // no new connections; open ones keep serving while clusters stop
        await clusters.close();
        await workflows.close();
        broker.close();
        events.close();
        sessions.close();
        await app.close();
        await onePort.close();
        await backend.close();
        for (const b of extraBackends) await b.close();
        // every last write lands before a standby may take over and read the state
        await store.flush().catch((err: unknown) => logger.error({ err: errorMessage(err) }, 'could not write the last changes to the state store'));
        await leadership.release();
        await store.close();
      })()),
  };
}
