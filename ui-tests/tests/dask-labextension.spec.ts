// dask-labextension, the real one (pinned; scripts/dask-labextension.sh installs it outside .venv), in
// a JupyterLab of its own on the stack's one origin (/dask-lab/, beside the gateway's
// /services/af-gateway/), as an analyst who keeps it would have it under JupyterHub: its server side
// makes clusters with dask_gateway.GatewayCluster at the gateway (alice's bearer token), and its
// dashboard check runs in the browser (its setting browserDashboardCheck), where alice's gateway login
// is. The stack's own Lab never loads it (the other tests and the README's screenshots stay as they
// are). What the extension cannot do is in README "Using dask-labextension" and
// gateway-server/test/e2e/test_dask_labextension.py.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect, galata, test } from '@jupyterlab/galata';
import { freePort, REPO, stopProcesses } from '../support/stack.ts';
import { httpOk, type Running, startService, UI_DIR, VENV_BIN, waitFor } from '../support/processes.mjs';
import { loginAs, readStack } from './stack';

test.setTimeout(300_000);
// Its dashboard check in the browser (galata serves the Lab's settings from memory: the setting goes here)
test.use({ mockSettings: { ...galata.DEFAULT_SETTINGS, 'dask-labextension:plugin': { browserDashboardCheck: true } } });

const ROUTE = '/dask-lab';

let lab: Running | undefined;
let labURL = '';

test.beforeAll(async () => {
  test.setTimeout(240_000);
  const stack = readStack();
  const site = execFileSync('bash', [path.join(REPO, 'scripts', 'dask-labextension.sh'), 'ensure'], { encoding: 'utf8', timeout: 240_000 }).trim();
  const dir = path.join(stack.tmpDir, 'dask-lab');
  const dirs = { root: path.join(dir, 'root'), dask: path.join(dir, 'dask'), settings: path.join(dir, 'settings'), jupyter: path.join(dir, 'jupyter') };
  for (const d of Object.values(dirs)) mkdirSync(d, { recursive: true });
  // The analyst's Dask config (JSON is YAML): the extension's factory is the gateway's client; the
  // API and scheduler traffic go to the gateway directly, dashboard links are as the browser reaches it.
  writeFileSync(
    path.join(dirs.dask, 'labextension.yaml'),
    JSON.stringify({
      labextension: { factory: { module: 'dask_gateway', class: 'GatewayCluster', args: [], kwargs: {} } },
      gateway: { address: stack.gatewayURL, 'public-address': stack.gatewayPublicURL, auth: { type: 'af_gateway_client.BearerTokenAuth' } },
    }),
  );
  const port = await freePort();
  labURL = `http://127.0.0.1:${port}${ROUTE}`;
  lab = startService(
    'dask-lab',
    stack.logsDir,
    path.join(VENV_BIN, 'jupyter'),
    [
      'lab',
      `--config=${path.join(UI_DIR, 'jupyter_server_test_config.py')}`,
      '--no-browser',
      '--ServerApp.ip=127.0.0.1',
      `--ServerApp.port=${port}`,
      `--ServerApp.base_url=${ROUTE}/`,
      `--ServerApp.root_dir=${dirs.root}`,
      '--ServerApp.allow_root=True',
      // its server side (the package's own switch for it lies under site/etc, off Jupyter's config path)
      "--ServerApp.jpserver_extensions={'dask_labextension': True}",
    ],
    {
      ...process.env,
      PYTHONPATH: site,
      JUPYTER_PATH: path.join(site, 'share', 'jupyter'),
      DASK_CONFIG: dirs.dask,
      BEARER_TOKEN_FILE: stack.bearerTokenFile,
      JUPYTERLAB_SETTINGS_DIR: dirs.settings,
      JUPYTERLAB_WORKSPACES_DIR: path.join(dir, 'workspaces'),
      JUPYTER_CONFIG_DIR: path.join(dirs.jupyter, 'config'),
      JUPYTER_RUNTIME_DIR: path.join(dirs.jupyter, 'runtime'),
    },
    dirs.root,
  );
  await waitFor('GET /api/status', lab, () => httpOk(`${labURL}/api/status`), 120_000);
  await waitFor(`route ${ROUTE}`, lab, async () => {
    const r = await fetch(`${stack.proxyApi.url}/api/routes${ROUTE}`, {
      method: 'POST',
      headers: { authorization: `token ${stack.proxyApi.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ target: `http://127.0.0.1:${port}` }),
      signal: AbortSignal.timeout(5000),
    });
    return r.status === 201 ? true : undefined;
  });
});

test.afterAll(async () => {
  const stack = readStack();
  await fetch(`${stack.proxyApi.url}/api/routes${ROUTE}`, { method: 'DELETE', headers: { authorization: `token ${stack.proxyApi.token}` } }).catch(
    () => undefined,
  );
  // its server shuts down the clusters it started as it stops
  if (lab) await stopProcesses([lab]);
});

/** The extension's own REST API on its server (no token: the test config's server). */
async function dask(method: string, p: string, body?: unknown): Promise<Response> {
  return fetch(`${labURL}/dask/clusters${p}`, { method, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(120_000) });
}

test('dask-labextension with its browser check: a gateway dashboard loads in its panes, from its URL box and from the Launch dashboard command', async ({
  page,
}) => {
  const stack = readStack();
  // its + NEW: the cluster, made by the extension's server through GatewayCluster, runs as alice's
  const made = await dask('PUT', '');
  expect(made.status, await made.clone().text()).toBe(200);
  const cluster = (await made.json()) as { id: string; name: string; dashboard_link: string };
  expect(cluster.dashboard_link).toMatch(new RegExp(`^${stack.gatewayPublicURL}/clusters/[A-Za-z0-9_-]+/status$`));

  await loginAs(page, 'alice', `${ROUTE}/lab`);
  await page.locator(`.jp-SideBar .lm-TabBar-tab[data-id="dask-dashboard-launcher"]`).click();
  const sidebar = page.locator('#dask-dashboard-launcher');
  await expect(sidebar.locator('.dask-ClusterListingItem-title')).toHaveText(cluster.name);

  // the browser itself, with alice's gateway login: the plain dashboard address leads on to the plots
  const plotsURL = cluster.dashboard_link.replace(/status$/, 'individual-plots.json');
  const direct = await page.evaluate(async (u) => {
    const r = await fetch(u);
    return { status: r.status, redirected: r.redirected, body: await r.text() };
  }, plotsURL);
  expect(direct.status, direct.body.slice(0, 300)).toBe(200);
  expect(direct.redirected).toBe(true); // on to the sandboxed address
  expect(Object.keys(JSON.parse(direct.body) as object)).toContain('Individual Task Stream');

  await test.step('its URL box: the dashboard link turns its plot buttons on', async () => {
    const input = sidebar.locator('.dask-URLInput input');
    await input.fill(cluster.dashboard_link);
    await input.press('Enter');
    await expect(sidebar.getByRole('button', { name: 'Task Stream', exact: true })).toBeEnabled();
  });

  await test.step('a plot opens in a pane and draws', async () => {
    await sidebar.getByRole('button', { name: 'Task Stream', exact: true }).click();
    const pane = page.locator('.dask-DaskDashboard-widget').last();
    await expect(pane).toBeVisible();
    await expect(pane.frameLocator('iframe').locator('canvas').first()).toBeVisible({ timeout: 60_000 });
  });

  await test.step("dask-gateway #830's button: the Launch dashboard layout command with the link", async () => {
    await page.evaluate(
      (url) =>
        (window as unknown as { jupyterapp: { commands: { execute(id: string, args: unknown): Promise<unknown> } } }).jupyterapp.commands.execute(
          'dask:populate-and-launch-layout',
          { url },
        ),
      cluster.dashboard_link,
    );
    // its default layout: task stream, workers memory, progress, …, each a pane with a drawn plot
    await expect.poll(() => page.locator('.dask-DaskDashboard-widget').count()).toBeGreaterThan(2);
    await expect(page.locator('.dask-DaskDashboard-widget').last().frameLocator('iframe').locator('canvas').first()).toBeVisible({ timeout: 60_000 });
  });

  await page.screenshot({ path: path.join(stack.screenshotsDir, 'dask-labextension-layout.png') });
  const gone = await dask('DELETE', `/${cluster.id}`);
  expect(gone.status).toBe(204);
});
