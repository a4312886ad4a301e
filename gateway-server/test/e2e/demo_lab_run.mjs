// Drives the demo's JupyterLab in Chromium as a person would: opens the analysis example's notebook,
// runs all cells from the Run menu, waits for the plot and the registration, takes a screenshot.
// Used by test_demo.py:  node demo_lab_run.mjs LAB_URL_WITH_TOKEN SCREENSHOT.png
// Prints one JSON line: {plot, registered, errors, outputs}.
import { chromium } from 'playwright';

const [labUrl, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1500, height: 1000 } });
  const url = new URL(labUrl);
  url.pathname = url.pathname.replace(/\/lab\/?$/, '/lab/tree/analysis/four-lepton.ipynb');
  await page.goto(url.toString());
  await page.waitForSelector('.jp-Notebook .jp-Cell', { timeout: 120_000 });
  // JupyterLab may ask which kernel to start (the notebook names python3): take the one it offers, as a person would
  // (the dialog may come a little after the kernel is up)
  const select = page.locator('.jp-Dialog').getByRole('button', { name: 'Select', exact: true });
  await page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').waitFor({ timeout: 120_000 });
  await select.waitFor({ timeout: 5_000 }).catch(() => {});
  if (await select.isVisible()) await select.click();
  await page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').waitFor({ timeout: 120_000 });
  await page.getByRole('menuitem', { name: 'Run', exact: true }).click();
  await page.locator('li.lm-Menu-item', { hasText: 'Run All Cells' }).first().click();
  const outputs = () => page.$$eval('.jp-OutputArea-output', (es) => es.map((e) => e.textContent ?? ''));
  const failed = async () => (await outputs()).some((t) => /Traceback|Error:/.test(t));
  const deadline = Date.now() + 300_000;
  let registered = false;
  while (Date.now() < deadline && !(await failed())) {
    registered = (await outputs()).some((t) => t.includes('registered: '));
    if (registered) break;
    await page.waitForTimeout(500);
  }
  const plot = await page.locator('.jp-OutputArea-output img').count();
  if (plot) await page.locator('.jp-OutputArea-output img').first().scrollIntoViewIfNeeded();
  await page.screenshot({ path: screenshot });
  const texts = await outputs();
  console.log(
    JSON.stringify({
      plot,
      registered,
      errors: texts.filter((t) => /Traceback|Error:/.test(t)).map((t) => t.slice(-1500)),
      outputs: texts.map((t) => t.slice(0, 400)),
    }),
  );
} finally {
  await browser.close();
}
