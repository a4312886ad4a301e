// The JupyterHub part of the UI-test stack: a real JupyterHub (from .venv, its own
// configurable-http-proxy from node_modules) logging users in with a shared password and spawning
// their real JupyterLab (jupyterhub-singleuser, with the af-gateway-lab extension of .venv) as
// local processes, and an AF Gateway with `auth.type: jupyterhub` registered at the Hub as the
// service af-gateway under /services/af-gateway/. The extension runs with its default settings:
// the test proves they find the gateway and log in through the Hub by themselves.
//
// The Hub and the gateway each run under support/reaper.py; the Hub's proxy, the single-user
// servers and their kernels are the Hub's descendants, so its reaper stops (or kills) them too.
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CHP, freePort, httpOk, type Running, startGateway, startService, VENV_BIN, waitFor } from './processes.mjs';

export const HUB_SERVICE = 'af-gateway';
export const HUB_SERVICE_PREFIX = `/services/${HUB_SERVICE}/`;

export interface HubStack {
  /** The Hub's public URL, its proxy: the one origin of the Hub, the users' Labs and the gateway. */
  url: string;
  /** The Hub's REST API, directly. */
  apiUrl: string;
  /** The gateway directly (what kernels use), and as the browser reaches it through the Hub's proxy. */
  gatewayURL: string;
  gatewayPublicURL: string;
  /** Users the Hub lets in, all with the same password (SharedPasswordAuthenticator). */
  users: string[];
  password: string;
  /** Home (and Jupyter root) directory of each user's single-user server: <homes>/<user>. */
  homes: string;
}

interface HubStackOptions {
  tmpDir: string;
  logsDir: string;
  env: NodeJS.ProcessEnv;
  /** Every service started is pushed here at once, so that a failure anywhere can stop it. */
  started: Running[];
}

const py = (s: string) => JSON.stringify(s); // a JSON string is a valid Python string literal

/** Settings every single-user Lab starts with: no news or update checks popping up in screenshots. */
const LAB_USER_SETTINGS: Record<string, unknown> = {
  '@jupyterlab/apputils-extension/notification.jupyterlab-settings': { checkForUpdates: false, fetchNews: 'false' },
};

export async function startHubStack({ tmpDir, logsDir, env, started }: HubStackOptions): Promise<HubStack> {
  const dir = path.join(tmpDir, 'hub');
  const homes = path.join(dir, 'home');
  const users = ['alice', 'bob'];
  for (const user of users) {
    for (const [file, value] of Object.entries(LAB_USER_SETTINGS)) {
      const target = path.join(homes, user, '.jupyter', 'lab', 'user-settings', file);
      mkdirSync(path.dirname(target), { recursive: true });
      writeFileSync(target, JSON.stringify(value));
    }
  }
  const ports = { hub: await freePort(), proxy: await freePort(), proxyApi: await freePort(), gateway: await freePort() };
  const url = `http://127.0.0.1:${ports.proxy}`;
  const apiUrl = `http://127.0.0.1:${ports.hub}/hub/api`;
  const gatewayURL = `http://127.0.0.1:${ports.gateway}`;
  const serviceToken = randomBytes(24).toString('hex');
  const password = randomBytes(12).toString('hex');
  const callback = `${HUB_SERVICE_PREFIX}oauth_callback`; // relative, as README.md documents it
  const clientId = `service-${HUB_SERVICE}`;

  // 1. the gateway first: the Hub checks its services when it starts
  const config = {
    listen: `127.0.0.1:${ports.gateway}`,
    base_path: HUB_SERVICE_PREFIX,
    data_dir: path.join(dir, 'gateway-data'),
    log_level: 'info',
    auth: {
      type: 'jupyterhub',
      jupyterhub: { api_url: apiUrl, api_token: serviceToken, client_id: clientId, oauth_callback_url: callback },
    },
    accounts: { name_template: 'af-{user}' },
    backend: { type: 'local', local: { python: path.join(VENV_BIN, 'python') } },
  };
  await startGateway('hub-gateway', logsDir, dir, "AF Gateway behind the UI tests' JupyterHub", config, env, gatewayURL, started);

  // 2. JupyterHub: shared-password login, single-user Labs as local processes of this OS user
  const hubConfig = `# JupyterHub of the AF Gateway UI tests (written by ui-tests/support/hub-stack.ts)
c = get_config()  # noqa: F821
c.JupyterHub.ip = '127.0.0.1'
c.JupyterHub.port = ${ports.proxy}
c.JupyterHub.hub_ip = '127.0.0.1'
c.JupyterHub.hub_port = ${ports.hub}
c.ConfigurableHTTPProxy.command = [${py(CHP)}]
c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:${ports.proxyApi}'
c.JupyterHub.db_url = ${py(`sqlite:///${path.join(dir, 'hub.sqlite')}`)}
c.JupyterHub.cookie_secret_file = ${py(path.join(dir, 'cookie_secret'))}
c.JupyterHub.pid_file = ${py(path.join(dir, 'hub.pid'))}
c.JupyterHub.cleanup_servers = True
c.JupyterHub.authenticator_class = 'shared-password'
c.SharedPasswordAuthenticator.user_password = ${py(password)}
c.Authenticator.allowed_users = set(${JSON.stringify(users)})
# Testing only: every user's server runs as this OS user (root here, hence --allow-root).
c.JupyterHub.spawner_class = 'simple'
c.SimpleLocalProcessSpawner.home_dir_template = ${py(path.join(homes, '{username}'))}
c.Spawner.cmd = [${py(path.join(VENV_BIN, 'jupyterhub-singleuser'))}]
c.Spawner.args = ['--allow-root', '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate']
c.Spawner.default_url = '/lab'
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.JupyterHub.services = [{
    'name': ${py(HUB_SERVICE)},
    'url': ${py(gatewayURL)},
    'api_token': ${py(serviceToken)},
    'oauth_client_id': ${py(clientId)},
    'oauth_redirect_uri': ${py(callback)},
    # the extension's silent login in a hidden frame: no confirmation page
    'oauth_no_confirm': True,
}]
# users may log in to services (the gateway's OAuth client), and the token of a user's server
# (JUPYTERHUB_API_TOKEN, what dask_gateway's JupyterHubAuth sends from a notebook) may reach the
# gateway service: the gateway admits only Hub tokens with this access scope
c.JupyterHub.load_roles = [
    {'name': 'user', 'scopes': ['self', 'access:services']},
    {'name': 'server', 'scopes': ['users:activity!user', 'access:servers!server', ${py(`access:services!service=${HUB_SERVICE}`)}]},
]
`;
  const hubConfigFile = path.join(dir, 'jupyterhub_config.py');
  writeFileSync(hubConfigFile, hubConfig);
  const hub = startService('jupyterhub', logsDir, path.join(VENV_BIN, 'jupyterhub'), ['-f', hubConfigFile], env, dir);
  started.push(hub);
  await waitFor('GET /hub/api/', hub, () => httpOk(`${apiUrl}/`));
  // the Hub tells its proxy the routes a moment after its API answers
  await waitFor('the login page through the Hub proxy', hub, () => httpOk(`${url}/hub/login`), 30_000);
  await waitFor('the gateway through the Hub proxy', hub, () => httpOk(`${url}${HUB_SERVICE_PREFIX}api/health`), 30_000);

  return { url, apiUrl, gatewayURL, gatewayPublicURL: `${url}${HUB_SERVICE_PREFIX.replace(/\/$/, '')}`, users, password, homes };
}
