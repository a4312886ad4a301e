// The Clusters panel against the real gateway (local backend, real Dask) and real JupyterLab:
// create from the form, scale manually and adaptively, open a dashboard plot, insert and run the
// connect code, shut down.
import { expect, test } from '@jupyterlab/galata';
import { loginAsAlice } from './stack';
import { newClusterRunning, openPanel, runAddedCell, scaleManually, shot, shutDownCluster } from './panels';

test.setTimeout(300_000);

test('a cluster from the New cluster form to shutdown', async ({ page }) => {
  await loginAsAlice(page);
  const panel = await openPanel(page, 'af-clusters');
  await expect(panel.locator('.jp-AFClusters-empty')).toBeVisible();
  await shot(page, 'clusters-empty-light', panel);

  let name = '';
  await test.step('create a cluster from the options form', async () => {
    await panel.locator('.jp-AFClusters-new').click();
    const dialog = page.locator('.jp-Dialog');
    await expect(dialog.locator('.jp-Dialog-header')).toHaveText('New Dask cluster');
    // The form comes from /api/v1/options, with its defaults and limits.
    const cores = dialog.locator('#af-option-worker_cores');
    await expect(cores).toHaveValue('1');
    await cores.fill('9');
    // said once the field is left, not while typing (a number past its max: JupyterLab's dialog holds Create back)
    await expect(dialog.locator('.jp-AFDialog-problem')).toHaveText('');
    await cores.press('Tab');
    await expect(dialog.locator('.jp-AFDialog-problem')).toContainText('at most');
    await expect(dialog.locator('.jp-AFDialog-row.mod-invalid #af-option-worker_cores')).toBeVisible();
    await cores.fill('2');
    await expect(dialog.locator('.jp-AFDialog-problem')).toHaveText('');
    await shot(page, 'clusters-new-form-light', dialog.locator('.jp-Dialog-content'));
    await dialog.locator('.jp-mod-accept').click();
    name = await newClusterRunning(panel);
  });
  const card = panel.locator(`.jp-AFClusters-cluster[data-cluster="${name}"]`);

  await test.step('scale manually to 2 and see 2 workers connected', async () => {
    await scaleManually(page, card, 2, () => shot(page, 'clusters-scale-dialog-light', page.locator('.jp-Dialog .jp-Dialog-content')));
    await expect(card.locator('dd').nth(1)).toHaveText('4'); // 2 workers x 2 cores
    await shot(page, 'clusters-running-light', panel);
  });

  await test.step('switch to adaptive scaling; minimum above maximum is refused', async () => {
    await card.getByRole('button', { name: 'Scale', exact: true }).click();
    const dialog = page.locator('.jp-Dialog');
    await dialog.getByText('Adaptive Scaling').click();
    await dialog.locator('#af-scale-minimum').fill('3');
    await dialog.locator('#af-scale-maximum').fill('1');
    await expect(dialog.locator('.jp-AFDialog-problem')).toHaveText('Minimum must not be larger than maximum');
    await dialog.locator('.jp-mod-accept').click(); // refused: the form stays
    await expect(dialog.locator('#af-scale-minimum')).toBeVisible();
    await dialog.locator('#af-scale-minimum').fill('1');
    await dialog.locator('#af-scale-maximum').fill('3');
    await dialog.locator('.jp-mod-accept').click();
    await expect(card.locator('.jp-AFClusters-adaptive')).toHaveText('1 – 3', { timeout: 30_000 });
    // the worker groups' section says that a count for default would end adaptive scaling
    await expect(card.locator('.jp-AFGroups-group[data-group="default"] .jp-AFGroups-adaptive')).toContainText('turns adaptive scaling off');
  });

  await test.step('open a dashboard plot as a main-area pane and see it render', async () => {
    await card.getByRole('button', { name: 'Dashboards' }).click();
    await card.locator('.jp-AFClusters-plots').first().getByRole('button', { name: 'Task Stream', exact: true }).click();
    const pane = page.locator('.jp-AFDashboard');
    await expect(pane).toBeVisible();
    const frame = page.frameLocator('.jp-AFDashboard iframe');
    // Bokeh draws the plot into canvases once its document arrived over the proxied WebSocket.
    await expect(frame.locator('canvas').first()).toBeVisible({ timeout: 60_000 });
    await expect(frame.locator('.bk-Canvas, .bk-Figure, .bk-root').first()).toBeAttached();
    // ...sandboxed: the dashboard (its owner's content) runs in an opaque origin, at its capability path,
    // so its scripts cannot call the gateway with this browser's session
    const dash = page.frames().find((f) => /\/clusters\/[0-9a-f]+\/~[\w-]{40,}\//.test(f.url()));
    expect(
      dash,
      `a dashboard frame at a capability path among ${page
        .frames()
        .map((f) => f.url())
        .join(', ')}`,
    ).toBeTruthy();
    expect(await dash!.evaluate(() => self.origin)).toBe('null');
    await shot(page, 'clusters-dashboard-light');
  });

  await test.step('insert connect code into a notebook and run it to get a result', async () => {
    await page.notebook.createNew('connect.ipynb');
    await card.getByRole('button', { name: 'Code' }).click();
    await expect.poll(() => page.notebook.getCellTextInput(0)).toContain(`gateway.connect("${name}")`);
    const code = await page.notebook.getCellTextInput(0);
    expect(code).toContain('auth=BearerTokenAuth()');
    expect(code).toContain('client = cluster.get_client()');
    await runAddedCell(page, 'client.submit(sum, range(10)).result()', '45');
    await shot(page, 'clusters-notebook-light');
  });

  await test.step('the panels in the dark theme', async () => {
    await page.theme.setDarkTheme();
    await openPanel(page, 'af-clusters');
    await shot(page, 'clusters-running-dark', panel);
    await card.getByRole('button', { name: 'Scale', exact: true }).click();
    await shot(page, 'clusters-scale-dialog-dark', page.locator('.jp-Dialog-content'));
    await page.locator('.jp-Dialog .jp-mod-reject').click();
    await page.theme.setLightTheme();
  });

  await test.step('shut down with confirmation', async () => {
    await shutDownCluster(page, panel, card, name);
  });
});
