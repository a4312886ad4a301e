// The README's quick start, walked through as an analyst does it, against the real stack: the token
// panel, a Rucio dataset's files, a Dask cluster (create, scale, connect code run in a notebook,
// a dashboard plot) and a workflow's DAG. Each step asserts what the panel shows before it is
// photographed, in the light and the dark theme. The pictures go to test-results/screenshots/readme/; with AF_README_IMAGES=1 they
// replace the README's own in docs/images/ (so a normal test run leaves the repository untouched):
//   AF_README_IMAGES=1 bash scripts/ui-tests.sh tests/readme-screenshots.spec.ts
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { expect, test, type IJupyterLabPageFixture } from '@jupyterlab/galata';
import { REPO } from '../support/stack.ts';
import { loginAsAlice, readStack } from './stack';
import { newClusterRunning, openPanel, runAddedCell, scaleManually, SCREENSHOTS } from './panels';

test.setTimeout(420_000);
// wide enough for the dataset browser's PFN column and a notebook beside a dashboard
test.use({ viewport: { width: 1440, height: 900 } });

const OUT = process.env.AF_README_IMAGES === '1' ? path.join(REPO, 'docs', 'images') : path.join(SCREENSHOTS, 'readme');

/** The whole Lab window as the README shows it: `<name>.png` in the light theme and `<name>-dark.png` in the dark
 * one (the README picks by the reader's colour scheme); the page is left in the light theme. */
async function picture(page: IJupyterLabPageFixture, name: string): Promise<void> {
  mkdirSync(OUT, { recursive: true });
  await page.screenshot({ path: path.join(OUT, `${name}.png`) });
  await page.theme.setDarkTheme();
  await expect(page.locator('body')).toHaveAttribute('data-jp-theme-light', 'false');
  await page.screenshot({ path: path.join(OUT, `${name}-dark.png`) });
  await page.theme.setLightTheme();
  await expect(page.locator('body')).toHaveAttribute('data-jp-theme-light', 'true');
}

test('the quick start of the README, panel by panel', async ({ page }) => {
  const stack = readStack();
  await loginAsAlice(page);

  await test.step('Access token: who you are and how long the token lasts', async () => {
    const panel = await openPanel(page, 'af-token');
    await expect(panel.locator('.jp-AFToken-user')).toHaveText('alice');
    await expect(panel.locator('.jp-AFToken-headline')).toContainText('Your token is valid');
    await expect(page.locator('.jp-AFTokenStatus-text')).toHaveText(/^Token: \d+ min$/);
    await picture(page, 'token');
  });

  await test.step('Rucio: search data26 for ds.*, open ds.small in the main area, see its files with davs PFNs', async () => {
    const panel = await openPanel(page, 'af-rucio');
    await panel.locator('.jp-AFRucio-scope select').selectOption('data26');
    await panel.locator('.jp-AFRucio-type select').selectOption('dataset');
    await panel.locator('.jp-AFRucio-query').fill('ds.*');
    await panel.locator('.jp-AFRucio-go').click();
    const small = panel.locator('.jp-AFRucio-result[data-did="data26:ds.small"]');
    await expect(small).toContainText('5 files');
    await expect(panel.locator('.jp-AFRucio-result[data-did="data26:ds.big"]')).toBeVisible();
    await picture(page, 'rucio-search');
    await small.locator('.jp-AFRucio-resultName').click();
    // the dataset browser in the main area, two files selected
    const browser = page.locator('.jp-AFRucio-browser[data-did="data26:ds.small"]');
    await expect(browser.locator('.jp-AFRucio-progressText')).toHaveText(/^5 files · 25\.9 MB · 5 davs PFNs/);
    const rows = browser.locator('.jp-AFRucio-fileTable .jp-AFRucio-file');
    await expect(rows).toHaveCount(5);
    await expect(browser.locator('.jp-AFRucio-filePfn').first()).toHaveText(/^davs:\/\//);
    await rows.nth(1).locator('.jp-AFRucio-fileName').click();
    await rows
      .nth(2)
      .locator('.jp-AFRucio-fileName')
      .click({ modifiers: ['Shift'] });
    await expect(browser.locator('.jp-AFRucio-selection')).toHaveText('2 of 5 selected');
    await picture(page, 'rucio-files');
    // the main area cleared for the pictures that follow
    await page.activity.closePanel('data26:ds.small');
    await expect(browser).toHaveCount(0);
  });

  const clusters = await openPanel(page, 'af-clusters');
  let name = '';
  await test.step('Dask clusters: + New opens the options form', async () => {
    await expect(clusters.locator('.jp-AFClusters-empty')).toBeVisible();
    await clusters.locator('.jp-AFClusters-new').click();
    const dialog = page.locator('.jp-Dialog');
    await expect(dialog.locator('.jp-Dialog-header')).toHaveText('New Dask cluster');
    await expect(dialog.locator('#af-option-worker_cores')).toHaveValue('1');
    await dialog.locator('#af-option-display_name').fill('ttbar skim');
    await picture(page, 'cluster-new');
    await dialog.locator('.jp-mod-accept').click();
    name = await newClusterRunning(clusters);
  });
  const card = clusters.locator(`.jp-AFClusters-cluster[data-cluster="${name}"]`);
  await expect(card.locator('.jp-AFClusters-displayName')).toHaveText('ttbar skim');

  await test.step('Scale: two workers join', async () => {
    await scaleManually(page, card, 2, () => picture(page, 'cluster-scale'));
  });

  await test.step('Code: the connect code in a notebook, run on the cluster', async () => {
    await page.notebook.createNew('analysis.ipynb');
    await expect.poll(() => page.notebook.isActive('analysis.ipynb')).toBe(true);
    await card.getByRole('button', { name: 'Code' }).click();
    await expect.poll(() => page.notebook.getCellTextInput(0)).toContain(`gateway.connect("${name}")`);
    await runAddedCell(page, 'client.submit(sum, range(10)).result()', '45');
    await expect(card.locator('.jp-AFClusters-workers')).toHaveText('2 / 2');
    await picture(page, 'cluster-code');
  });

  await test.step('Dashboards: a plot of the scheduler opens beside the notebook', async () => {
    await card.getByRole('button', { name: 'Dashboards' }).click();
    await card.locator('.jp-AFClusters-plots').first().getByRole('button', { name: 'Task Stream', exact: true }).click();
    await expect(page.locator('.jp-AFDashboard')).toBeVisible();
    await expect(page.frameLocator('.jp-AFDashboard iframe').locator('canvas').first()).toBeVisible({ timeout: 60_000 });
    await picture(page, 'cluster-dashboard');
  });

  await test.step('Shut down (asks first)', async () => {
    await card.getByRole('button', { name: 'Shut down' }).click();
    await page.locator('.jp-Dialog .jp-mod-warn').click();
    await expect(card).toHaveCount(0, { timeout: 60_000 });
    // the main area cleared for the workflow pictures (JupyterLab keeps a Launcher in an empty one)
    await page.activity.closePanel(/^Task Stream/);
    await page.activity.activateTab('analysis.ipynb');
    await page.notebook.close(true);
    await expect(page.locator('.jp-AFDashboard')).toHaveCount(0);
    await expect(page.activity.getTabLocator('analysis.ipynb')).toHaveCount(0);
  });

  await test.step('Workflows: right-click workflow.yml → Run as Workflow, give nfiles', async () => {
    // the map-reduce example in a folder of the Lab's file browser
    mkdirSync(path.join(stack.serverRoot, 'map-reduce'), { recursive: true });
    for (const f of ['workflow.yml', 'steps.yml']) {
      copyFileSync(path.join(REPO, 'examples', 'workflows', 'map-reduce', f), path.join(stack.serverRoot, 'map-reduce', f));
    }
    await page.sidebar.openTab('filebrowser');
    await page.filebrowser.openDirectory('map-reduce');
    const file = page.locator('.jp-DirListing-item').filter({ has: page.locator('.jp-DirListing-itemText', { hasText: /^workflow\.yml$/ }) });
    await file.click({ button: 'right' });
    const entry = page.locator('.lm-Menu-item:visible', { hasText: 'Run as Workflow' });
    await expect(entry).toBeVisible();
    await picture(page, 'workflow-menu');
    await entry.click();
    const dialog = page.locator('.jp-Dialog');
    await expect(dialog.locator('.jp-Dialog-header')).toContainText('Run map-reduce/workflow.yml');
    await expect(dialog.locator('.jp-AFWorkflowRun-summary')).toContainText('acquire → map → reduce');
    await dialog.locator('#af-wf-param-nfiles').fill('4');
    await picture(page, 'workflow-form');
    await dialog.locator('.jp-mod-accept').click();
  });

  await test.step('the DAG grows to 4 map steps and finishes; a step shows its log and outputs', async () => {
    const dag = page.locator('.jp-AFDag-body:visible');
    await expect(dag).toBeVisible();
    await page.sidebar.close('left');
    await expect(dag).toHaveClass(/mod-success/, { timeout: 120_000 });
    await expect(dag.locator('.jp-AFDag-legendItem[data-state="SUCCESS"] .jp-AFDag-legendCount')).toHaveText('6'); // acquire, 4 × map, reduce
    await dag.locator('.jp-AFDag-node[data-node="reduce:0"], .jp-AFDag-node[data-node="reduce"]').first().click();
    const details = dag.locator('.jp-AFDagDetails');
    await expect(details.locator('.jp-AFWorkflows-status')).toHaveText('SUCCESS');
    await expect(details.locator('.jp-AFDagDetails-log')).toHaveAttribute('data-phase', 'done');
    await picture(page, 'workflow-dag');
  });

  await test.step('the Workflows panel lists the run', async () => {
    const panel = await openPanel(page, 'af-workflows');
    const run = panel.locator('.jp-AFWorkflows-run').first();
    await expect(run).toHaveClass(/mod-success/);
    await expect(run.locator('.jp-AFWorkflows-steps')).toHaveText('6 steps');
    await picture(page, 'workflow-panel');
    // Delete (asks first) leaves alice's list as the other specs expect it; the folder goes too
    await run.getByRole('button', { name: 'Delete' }).click();
    await page.locator('.jp-Dialog .jp-mod-warn').click();
    await expect(panel.locator('.jp-AFWorkflows-run')).toHaveCount(0);
    rmSync(path.join(stack.serverRoot, 'map-reduce'), { recursive: true, force: true });
  });
});
