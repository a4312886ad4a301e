// Behind a real JupyterHub the panels act as the Hub user, with the extension's default settings:
// log in at the Hub's own login page, let the Hub spawn the user's JupyterLab, and the Clusters
// panel reaches the gateway (the Hub service af-gateway) through the Hub's OAuth without a click;
// the cluster it creates belongs to the Hub user, and the inserted code (auth="jupyterhub", the
// kernel's JUPYTERHUB_API_TOKEN) connects to it from a notebook.
//
// Plain Playwright, not galata's fixtures: those open their own JupyterLab (TARGET_URL) and set up
// its contents before the test; here the Lab is the one the Hub spawns after its login.
import path from 'node:path';
import { expect, test, type Locator, type Page } from '@playwright/test';
import { readStack } from './stack.ts';
import { newClusterRunning, scaleManually, shutDownCluster } from './panels.ts';

test.setTimeout(240_000);

const USER = 'alice';

/** The notebook in the main area (there is only one here). */
const notebook = (page: Page): Locator =>
  page
    .locator('.jp-NotebookPanel')
    .filter({ has: page.locator('.jp-Notebook') })
    .first();
const cellInput = (page: Page, i: number): Locator => notebook(page).locator('.jp-Notebook .jp-Cell').nth(i).locator('.jp-InputArea-editor .cm-content');
const cellOutput = (page: Page, i: number): Locator => notebook(page).locator('.jp-Notebook .jp-Cell').nth(i).locator('.jp-OutputArea-output');

test('behind JupyterHub the Clusters panel acts as the Hub user', async ({ page }) => {
  const { hub, screenshotsDir } = readStack();
  const service = new URL(hub.gatewayPublicURL).pathname; // /services/af-gateway

  await test.step(`log in at the Hub as ${USER} and land in the Lab it spawned`, async () => {
    await page.goto(`${hub.url}/hub/login`);
    await page.locator('#username_input').fill(USER);
    await page.locator('#password_input').fill(hub.password);
    await page.locator('#login_submit').click();
    // the Hub spawns the server (maybe via its spawn-pending page) and sends the browser there
    await page.waitForURL((url) => url.origin === hub.url && url.pathname.startsWith(`/user/${USER}/lab`), { timeout: 150_000 });
    await page.locator('#jupyterlab-splash').waitFor({ state: 'detached', timeout: 60_000 });
    await expect(page.locator('#jp-main-dock-panel')).toBeVisible();
  });

  const panel = page.locator('#af-clusters');
  await test.step('the Clusters panel connects as the Hub user without a login click', async () => {
    if (!(await panel.isVisible())) await page.locator('.jp-SideBar [data-id="af-clusters"]').click();
    await expect(panel).toBeVisible();
    // the silent Hub OAuth round trip (hidden frame) takes a moment; no notice stays, nothing to click
    await expect(panel.locator('.jp-AFClusters-empty')).toBeVisible({ timeout: 60_000 });
    await expect(panel.locator('.jp-AFClusters-notice')).toHaveCount(0);
    await expect(panel.locator('.jp-AFClusters-new')).toBeEnabled();
    // The gateway's session cookie exists only on its service path, never on users' servers.
    const cookies = await page.context().cookies(`${hub.url}/services/af-gateway/`);
    expect(cookies.find((c) => c.name === 'af-gateway-session')?.path).toBe('/services/af-gateway/');
    expect((await page.context().cookies(`${hub.url}/user/alice/lab`)).map((c) => c.name)).not.toContain('af-gateway-session');
  });

  let name = '';
  await test.step('create a cluster with the default options', async () => {
    await panel.locator('.jp-AFClusters-new').click();
    const dialog = page.locator('.jp-Dialog');
    await expect(dialog.locator('.jp-Dialog-header')).toHaveText('New Dask cluster');
    await expect(dialog.locator('.jp-mod-accept')).toBeEnabled();
    await dialog.locator('.jp-mod-accept').click();
    name = await newClusterRunning(panel);
  });
  const card = panel.locator(`.jp-AFClusters-cluster[data-cluster="${name}"]`);

  await test.step('scale to one worker', async () => {
    await scaleManually(page, card, 1);
  });

  await test.step(`the gateway says the cluster belongs to ${USER}`, async () => {
    const listed = await page.evaluate(async (url) => {
      const r = await fetch(url, { credentials: 'same-origin' });
      return { status: r.status, body: (await r.json()) as { clusters?: { name: string; owner: string }[] } };
    }, `${service}/api/af/clusters`);
    expect(listed.status, JSON.stringify(listed.body)).toBe(200);
    expect(listed.body.clusters?.map((c) => [c.name, c.owner])).toEqual([[name, USER]]);
  });

  await test.step('insert the connect code into a notebook and run it as the Hub user', async () => {
    await page.locator('.jp-LauncherCard[data-category="Notebook"]').first().click();
    await expect(notebook(page)).toBeVisible({ timeout: 30_000 });
    await expect(cellInput(page, 0)).toBeVisible();
    // the kernel must have started before cells are run (it ignores earlier requests)
    await expect(page.locator('#jp-main-statusbar')).toContainText('Idle', { timeout: 60_000 });

    await card.getByRole('button', { name: 'Code' }).click();
    await expect(cellInput(page, 0)).toContainText(`gateway.connect("${name}")`);
    const code = (await cellInput(page, 0).innerText()).replace(/\u00a0/g, ' ');
    expect(code).toContain('auth="jupyterhub"');
    expect(code).toContain(`address="${hub.gatewayURL}"`);

    await notebook(page).locator('.jp-Toolbar-item[data-jp-item-name="insert"]').click();
    await expect(notebook(page).locator('.jp-Notebook .jp-Cell')).toHaveCount(2);
    await cellInput(page, 1).click();
    await page.keyboard.type('client.submit(sum, range(10)).result()');
    await expect(cellInput(page, 1)).toHaveText('client.submit(sum, range(10)).result()');

    await page.locator('.lm-MenuBar-item', { hasText: /^Run$/ }).click();
    await page.locator('.lm-Menu li:has(div.lm-Menu-itemLabel:text-is("Run All Cells"))').click();
    await expect(cellOutput(page, 1)).toHaveText('45', { timeout: 120_000 });
    await expect(page.locator('#jp-main-statusbar')).toContainText('Idle', { timeout: 30_000 });
    if (!(await panel.isVisible())) await page.locator('.jp-SideBar [data-id="af-clusters"]').click();
    await page.screenshot({ path: path.join(screenshotsDir, 'hub-lab-clusters.png') });
  });

  await test.step('shut the cluster down with confirmation', async () => {
    await shutDownCluster(page, panel, card, name);
  });
});
