// The real stacks the UI tests run against, as behind JupyterHub:
// - one origin (configurable-http-proxy) in front of JupyterLab (default route) and the AF Gateway
//   (/services/af-gateway), the gateway authenticating with the test OpenID provider
//   (oidc-provider) and running Dask on its local backend;
// - a real JupyterHub with its own gateway registered as the service af-gateway (hub-stack.ts).
// Started by global-setup.ts, stopped by global-teardown.ts; what the tests need to know is in
// test-results/stack.json (see tests/stack.ts).
//
// Every service runs under support/reaper.py: its own session and process group, a subreaper that
// kills what the service leaves behind, and SIGTERM when the Playwright runner dies.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startHubStack, type HubStack } from './hub-stack.ts';
import {
  CHP,
  freePort,
  httpOk,
  REPO,
  type Running,
  startService,
  type StackProcess,
  startGateway,
  stopProcesses,
  tail,
  UI_DIR,
  VENV_BIN,
  waitFor,
} from './processes.mjs';

export { alive, freePort, REPO, stopProcesses, UI_DIR, type StackProcess } from './processes.mjs';
export type { HubStack } from './hub-stack.ts';

export const RESULTS_DIR = path.join(UI_DIR, 'test-results');
export const STACK_FILE = path.join(RESULTS_DIR, 'stack.json');
export const BASE_PATH = '/services/af-gateway/';
/** Where the second gateway, with the demo's login (simple: a user name, no password), is on the proxy. */
export const BASIC_BASE_PATH = '/services/af-gateway-basic/';

const OP_SCRIPT = path.join(REPO, 'gateway-server', 'test', 'support', 'oidc-provider.mjs');
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const RUCIO_SCRIPT = path.join(REPO, 'scripts', 'rucio-server.sh');
const run = promisify(execFile);

/** The real Rucio server (scripts/rucio-server.sh) the gateway's instance `test` points at. */
export interface RucioServer {
  runDir: string;
  url: string;
  log: string;
}

/** Files of data26:ds.huge, the 100,000-file dataset the browser streams (as in the demo). */
export const RUCIO_HUGE_FILES = 100_000;

/**
 * Starts Rucio from the machine's seed (scripts/rucio-server.sh, RUCIO_SEED_CACHE): the first start on a
 * machine seeds it once (ds.big's 20,000 and ds.huge's 100,000 files: minutes), every later one copies the
 * seed's database into runDir (so what tests register is gone at the next start) and points the seeded
 * OIDC identities at this start's issuer. The seed holds no port: this stack gives Rucio no storage
 * servers, its RSEs' PFNs name fixed hosts, and the issuer is rebound at each start.
 */
async function startRucio(runDir: string, issuer: string, logsDir: string): Promise<RucioServer> {
  mkdirSync(runDir, { recursive: true });
  try {
    const { stderr } = await run('bash', [RUCIO_SCRIPT, 'start', runDir], {
      env: { ...process.env, RUCIO_OIDC_ISSUER: issuer, RUCIO_SEED_CACHE: '1', RUCIO_HUGE_FILES: String(RUCIO_HUGE_FILES) },
      // a cold machine makes the seed here (another start making it meanwhile is waited for)
      timeout: 900_000,
    });
    writeFileSync(path.join(logsDir, 'rucio-start.log'), stderr);
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`scripts/rucio-server.sh start ${runDir}: ${e.message}\n${e.stderr ?? ''}`, { cause: err });
  }
  const info = JSON.parse(readFileSync(path.join(runDir, 'rucio.json'), 'utf8')) as { url: string; log: string };
  return { runDir, url: info.url, log: info.log };
}

async function stopRucio(runDir: string): Promise<void> {
  if (!existsSync(runDir)) return;
  await run('bash', [RUCIO_SCRIPT, 'stop', runDir], { timeout: 60_000 }).catch((err: Error) => console.warn(`ui-tests: stopping Rucio: ${err.message}`));
}

export interface Stack {
  /** The one origin the browser uses: the proxy (galata's baseURL). */
  proxyURL: string;
  /** JupyterLab directly (the proxy's default target). */
  labURL: string;
  /** The gateway directly (bypassing the proxy) and as the browser reaches it. */
  gatewayURL: string;
  gatewayPublicURL: string;
  basePath: string;
  issuer: string;
  audience: string;
  /** client id -> secret of the provider's client-credentials clients (alice, bob, admin, ci-pipeline). */
  clients: Record<string, string>;
  /** The gateway's own login client at the provider (authorization code + PKCE, refresh, exchange). */
  gatewayClient: { id: string; secret: string; redirectUri: string };
  /** File with a client-credentials access token of alice; JupyterLab (and its kernels) have BEARER_TOKEN_FILE set to it. */
  bearerTokenFile: string;
  /** JupyterLab's root dir (galata creates its test folders here through the contents API). */
  serverRoot: string;
  tmpDir: string;
  logsDir: string;
  screenshotsDir: string;
  proxyApi: { url: string; token: string };
  /** The Rucio server behind the gateway's Rucio instance `test`. */
  rucio: RucioServer;
  /**
   * A gateway as the demo runs it (simple authentication: any user name, no password; one person on
   * loopback), on the same proxy under `basePath`: the Lab pointed at it signs in by user name.
   */
  basicGateway: { url: string; basePath: string };
  /** JupyterHub with its own gateway as the service af-gateway (see hub-stack.ts). */
  hub: HubStack;
  processes: StackProcess[];
}

async function clientCredentialsToken(issuer: string, client: string, secret: string, audience: string): Promise<string> {
  const r = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: 'Basic ' + Buffer.from(`${client}:${secret}`).toString('base64'),
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'openid compute.create compute.read', resource: `urn:${audience}` }),
  });
  const body = (await r.json()) as { access_token?: string };
  if (!r.ok || !body.access_token) throw new Error(`client-credentials token for ${client}: ${r.status} ${JSON.stringify(body)}`);
  return body.access_token;
}

/** Starts the whole stack; on any failure stops what was started and rethrows. */
export async function startStack(): Promise<Stack> {
  const tmpDir = mkdtempSync(path.join(os.tmpdir(), 'af-ui-tests-'));
  // users' workflow steps run as their accounts (af-alice, …: scripts/test-accounts.sh) and pass through here
  chmodSync(tmpDir, 0o711);
  const logsDir = path.join(RESULTS_DIR, 'logs');
  const screenshotsDir = path.join(RESULTS_DIR, 'screenshots');
  for (const d of [logsDir, screenshotsDir]) mkdirSync(d, { recursive: true });
  const started: Running[] = [];
  const ports = { op: 0, gateway: 0, basicGateway: 0, lab: 0, proxy: 0, proxyApi: 0 };
  for (const k of Object.keys(ports) as (keyof typeof ports)[]) ports[k] = await freePort();
  const proxyURL = `http://127.0.0.1:${ports.proxy}`;
  const gatewayPublicURL = `${proxyURL}${BASE_PATH.replace(/\/$/, '')}`;
  const gatewayClient = {
    id: 'af-gateway-ui',
    secret: randomBytes(16).toString('hex'),
    redirectUri: `${gatewayPublicURL}/api/af/login/callback`,
  };
  const baseEnv: NodeJS.ProcessEnv = { ...process.env, PATH: `${VENV_BIN}:${process.env.PATH}` };
  // tests' own settings must not leak into the services
  delete baseEnv.BEARER_TOKEN;
  delete baseEnv.BEARER_TOKEN_FILE;

  // The JupyterHub stack is independent of the rest: it starts meanwhile (settled, never rejected
  // unobserved; its services land in `started` as they start, so a failure stops them too).
  const hubStarting = startHubStack({ tmpDir, logsDir, env: baseEnv, started }).then(
    (hub) => ({ hub }),
    (error: unknown) => ({ error }),
  );
  const rucioDir = path.join(tmpDir, 'rucio');
  try {
    // 1. the test OpenID provider, with the gateway's login client registered for the proxy's origin
    const op = startService(
      'oidc-provider',
      logsDir,
      process.execPath,
      [OP_SCRIPT],
      {
        ...baseEnv,
        OIDC_PORT: String(ports.op),
        OIDC_TTL: '3600',
        OIDC_EXTRA_CLIENTS: JSON.stringify([
          {
            client_id: gatewayClient.id,
            client_secret: gatewayClient.secret,
            redirect_uris: [gatewayClient.redirectUri],
            grant_types: ['authorization_code', 'refresh_token', TOKEN_EXCHANGE],
          },
        ]),
      },
      REPO,
    );
    started.push(op);
    const info = await waitFor('JSON line with the issuer', op, async () => {
      const line = readFileSync(op.log, 'utf8')
        .split('\n')
        .find((l) => l.startsWith('{"issuer"'));
      return line ? (JSON.parse(line) as { issuer: string; audience: string; clients: Record<string, string> }) : undefined;
    });
    await waitFor('discovery document', op, () => httpOk(`${info.issuer}/.well-known/openid-configuration`));

    // 1b. a real Rucio server accepting the provider's tokens with audience rucio (the gateway
    // exchanges each user's token for one, RFC 8693, with its login client af-gateway-ui)
    const rucio = await startRucio(rucioDir, info.issuer, logsDir);

    // 2. the gateway: oidc auth with its own login client, under the Hub-style base path
    const gatewayURL = `http://127.0.0.1:${ports.gateway}`;
    const config = {
      listen: `127.0.0.1:${ports.gateway}`,
      public_url: gatewayPublicURL,
      base_path: BASE_PATH,
      data_dir: path.join(tmpDir, 'gateway-data'),
      log_level: 'info',
      auth: {
        type: 'oidc',
        oidc: {
          issuer: info.issuer,
          audience: [info.audience],
          client_id: gatewayClient.id, // its secret comes from AF_GATEWAY_OIDC_CLIENT_SECRET
          token_params: { resource: `urn:${info.audience}` },
          login_scopes: ['openid', 'offline_access', 'compute.create', 'compute.read'],
        },
      },
      accounts: { name_template: 'af-{user}' },
      backend: { type: 'local', local: { python: path.join(VENV_BIN, 'python') } },
      // a second worker group on the same local backend: the cluster card shows and scales it
      worker_groups: [
        {
          name: 'big',
          description: 'Workers for the heavy steps of an analysis',
          worker_cores: 1,
          worker_memory: 1,
          resources: { big: 1 },
          max_workers: 2,
        },
      ],
      tokens: { exchange_audiences: ['rucio'] },
      rucio: { instances: [{ name: 'test', url: rucio.url, auth: 'exchange', audience: 'rucio', default_scheme: 'davs' }] },
    };
    const gatewayEnv = { ...baseEnv, AF_GATEWAY_OIDC_CLIENT_SECRET: gatewayClient.secret };
    const gw = await startGateway('gateway', logsDir, tmpDir, 'AF Gateway config of the UI tests', config, gatewayEnv, gatewayURL, started);

    // 2b. the demo's kind of gateway: simple authentication, single user, its own data
    const basicDir = path.join(tmpDir, 'gateway-basic');
    mkdirSync(basicDir, { recursive: true });
    const basicGateway = { url: `http://127.0.0.1:${ports.basicGateway}`, basePath: BASIC_BASE_PATH };
    const basicConfig = {
      listen: `127.0.0.1:${ports.basicGateway}`,
      public_url: `${proxyURL}${BASIC_BASE_PATH.replace(/\/$/, '')}`,
      base_path: BASIC_BASE_PATH,
      data_dir: path.join(basicDir, 'data'),
      log_level: 'info',
      auth: { type: 'simple' },
      backend: { type: 'local', local: { single_user: true, python: path.join(VENV_BIN, 'python') } },
    };
    await startGateway(
      'gateway-basic',
      logsDir,
      basicDir,
      'AF Gateway with simple authentication, as the demo runs it',
      basicConfig,
      baseEnv,
      basicGateway.url,
      started,
    );

    // 3. JupyterLab, no token or password, kernels holding alice's bearer token
    const serverRoot = path.join(tmpDir, 'lab-root');
    const settingsDir = path.join(tmpDir, 'lab-settings');
    const workspacesDir = path.join(tmpDir, 'lab-workspaces');
    const jupyterDir = path.join(tmpDir, 'jupyter');
    for (const d of [serverRoot, settingsDir, workspacesDir, path.join(jupyterDir, 'config'), path.join(jupyterDir, 'runtime')])
      mkdirSync(d, { recursive: true });
    const bearerTokenFile = path.join(tmpDir, 'bearer-token');
    const aliceSecret = info.clients.alice;
    if (!aliceSecret) throw new Error(`the OIDC provider named no client for alice (clients: ${Object.keys(info.clients).join(', ')})`);
    writeFileSync(bearerTokenFile, (await clientCredentialsToken(info.issuer, 'alice', aliceSecret, info.audience)) + '\n', { mode: 0o600 });
    const labURL = `http://127.0.0.1:${ports.lab}`;
    const lab = startService(
      'jupyterlab',
      logsDir,
      path.join(VENV_BIN, 'jupyter'),
      [
        'lab',
        `--config=${path.join(UI_DIR, 'jupyter_server_test_config.py')}`,
        '--no-browser',
        '--ServerApp.ip=127.0.0.1',
        `--ServerApp.port=${ports.lab}`,
        '--ServerApp.port_retries=0',
        `--ServerApp.root_dir=${serverRoot}`,
        '--IdentityProvider.token=',
        '--ServerApp.password=',
        '--ServerApp.allow_root=True',
      ],
      {
        ...baseEnv,
        JUPYTERLAB_SETTINGS_DIR: settingsDir,
        JUPYTERLAB_WORKSPACES_DIR: workspacesDir,
        JUPYTER_CONFIG_DIR: path.join(jupyterDir, 'config'),
        JUPYTER_RUNTIME_DIR: path.join(jupyterDir, 'runtime'),
        BEARER_TOKEN_FILE: bearerTokenFile,
      },
      serverRoot,
    );
    started.push(lab);
    await waitFor('GET /api/status', lab, () => httpOk(`${labURL}/api/status`), 120_000);

    // 4. one origin for both, as JupyterHub's proxy gives them
    const proxyApi = { url: `http://127.0.0.1:${ports.proxyApi}`, token: randomBytes(16).toString('hex') };
    const proxy = startService(
      'proxy',
      logsDir,
      CHP,
      [
        '--ip',
        '127.0.0.1',
        '--port',
        String(ports.proxy),
        '--api-ip',
        '127.0.0.1',
        '--api-port',
        String(ports.proxyApi),
        '--default-target',
        labURL,
        '--log-level',
        'warn',
      ],
      { ...baseEnv, CONFIGPROXY_AUTH_TOKEN: proxyApi.token },
      REPO,
    );
    started.push(proxy);
    for (const [base, target] of [
      [BASE_PATH, gatewayURL],
      [BASIC_BASE_PATH, basicGateway.url],
    ] as const) {
      const route = base.replace(/\/$/, '');
      await waitFor(`route ${route}`, proxy, async () => {
        const r = await fetch(`${proxyApi.url}/api/routes${route}`, {
          method: 'POST',
          headers: { authorization: `token ${proxyApi.token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ target }),
          signal: AbortSignal.timeout(5000),
        });
        return r.status === 201 ? true : undefined;
      });
    }
    await waitFor('the gateway through the proxy', proxy, () => httpOk(`${gatewayPublicURL}/api/health`));
    await waitFor('the basic gateway through the proxy', proxy, () => httpOk(`${proxyURL}${BASIC_BASE_PATH}api/health`));
    await waitFor('JupyterLab through the proxy', proxy, () => httpOk(`${proxyURL}/api/status`));

    // The gateway's login must send the browser back through the proxy, under the base path.
    const login = await fetch(`${gatewayPublicURL}/api/af/login?next=/lab`, { redirect: 'manual' });
    const location = login.headers.get('location') ?? '';
    const redirectUri = location ? new URL(location, gatewayPublicURL).searchParams.get('redirect_uri') : null;
    if (login.status !== 302 || !location.startsWith(`${info.issuer}/`) || redirectUri !== gatewayClient.redirectUri) {
      throw new Error(
        `GET ${gatewayPublicURL}/api/af/login: expected a redirect to ${info.issuer}/auth with redirect_uri=${gatewayClient.redirectUri}, got ${login.status} location=${location}\n${tail(gw.log)}`,
      );
    }

    const hubResult = await hubStarting;
    if ('error' in hubResult) throw hubResult.error;

    const stack: Stack = {
      proxyURL,
      labURL,
      gatewayURL,
      gatewayPublicURL,
      basePath: BASE_PATH,
      issuer: info.issuer,
      audience: info.audience,
      clients: info.clients,
      gatewayClient,
      bearerTokenFile,
      serverRoot,
      tmpDir,
      logsDir,
      screenshotsDir,
      proxyApi,
      rucio,
      basicGateway,
      hub: hubResult.hub,
      processes: started.map(({ name, pid, log }) => ({ name, pid, log })),
    };
    writeFileSync(STACK_FILE, JSON.stringify(stack, null, 2));
    return stack;
  } catch (err) {
    await hubStarting; // nothing of the Hub's left starting behind our back
    await stopProcesses(started);
    await stopRucio(rucioDir);
    rmSync(tmpDir, { recursive: true, force: true });
    throw err;
  }
}

/** Stops the stack recorded in stack.json and removes its temporary directory. */
export async function stopStack(): Promise<void> {
  if (!existsSync(STACK_FILE)) return;
  const stack = JSON.parse(readFileSync(STACK_FILE, 'utf8')) as Stack & { stoppedAt?: string };
  if (stack.stoppedAt) return;
  const forced = await stopProcesses(stack.processes);
  if (forced.length) console.warn(`ui-tests teardown: SIGKILL was needed for ${forced.join(', ')}`);
  if (stack.rucio) await stopRucio(stack.rucio.runDir);
  rmSync(stack.tmpDir, { recursive: true, force: true });
  // keep stack.json for the record, marked as stopped
  writeFileSync(STACK_FILE, JSON.stringify({ ...stack, stoppedAt: new Date().toISOString() }, null, 2));
}
