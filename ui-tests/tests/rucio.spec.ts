// The Rucio panel against the real gateway and a real Rucio server (scripts/rucio-server.sh) that
// accepts the gateway's exchanged tokens: search with wildcards, open datasets (davs and root PFNs),
// a 20,000-file dataset streamed into the virtualised table, the file list run in a notebook, a rule
// that makes a dataset available, and an empty search.
import { expect, test } from '@jupyterlab/galata';
import type { Locator } from '@playwright/test';
import { loginAsAlice } from './stack';
import { openPanel, runAddedCell, shot } from './panels';

test.setTimeout(300_000);

async function search(panel: Locator, scope: string, pattern: string, type: 'dataset' | 'container' | 'all' = 'dataset'): Promise<void> {
  await panel.locator('.jp-AFRucio-scope select').selectOption(scope);
  await panel.locator('.jp-AFRucio-type select').selectOption(type);
  await panel.locator('.jp-AFRucio-query').fill(pattern);
  await panel.locator('.jp-AFRucio-go').click();
}

async function openDataset(panel: Locator, did: string): Promise<void> {
  const back = panel.locator('.jp-AFRucio-back');
  if (await back.isVisible()) await back.click();
  const name = did.split(':')[1]!;
  await search(panel, did.split(':')[0]!, name);
  await panel.locator(`.jp-AFRucio-result[data-did="${did}"] .jp-AFRucio-resultName`).click();
}

test('find a dataset, read its files and PFNs, get them into a notebook, make it available', async ({ page, context }) => {
  await context.grantPermissions(['clipboard-read', 'clipboard-write']);
  await loginAsAlice(page);
  const panel = await openPanel(page, 'af-rucio');
  await expect(panel.locator('.jp-AFRucio-instance select')).toHaveValue('test');
  // JupyterLab's own selects (HTMLSelect, with its caret), and a placeholder that reads as an example
  await expect(panel.locator('.jp-HTMLSelect.jp-AFRucio-scope svg')).toBeVisible();
  await expect(panel.locator('.jp-AFRucio-scope option')).toHaveText(['data26', 'user.alice', 'user.bob']);
  await shot(page, 'rucio-start-light', panel);

  await test.step('wildcard search: two datasets; the container expands to them', async () => {
    await search(panel, 'data26', 'ds.mc.*');
    const results = panel.locator('.jp-AFRucio-resultList > .jp-AFRucio-result');
    await expect(results).toHaveCount(2);
    await expect(results.locator(':scope > .jp-AFRucio-resultHead .jp-AFRucio-resultName')).toHaveText(['ds.mc.2026', 'ds.mc.2027']);
    await expect(results.first()).toContainText('3 files');
    await search(panel, 'data26', 'cont.*', 'container');
    const cont = panel.locator('.jp-AFRucio-result[data-did="data26:cont.mc"]');
    await cont.locator('.jp-AFRucio-twisty').first().click();
    await expect(cont.locator('.jp-AFRucio-children > .jp-AFRucio-result')).toHaveCount(2);
    const ds = cont.locator('.jp-AFRucio-result[data-did="data26:ds.mc.2026"]');
    await ds.locator('.jp-AFRucio-twisty').click();
    await expect(ds.locator('.jp-AFRucio-children .jp-AFRucio-result')).toHaveCount(3);
    await shot(page, 'rucio-results-light', panel);
  });

  const table = panel.locator('.jp-AFRucio-fileTable');
  const progress = panel.locator('.jp-AFRucio-progress');
  await test.step('open ds.small: 5 files with davs PFNs; root after switching the scheme', async () => {
    await openDataset(panel, 'data26:ds.small');
    await expect(progress).toHaveText(/^5 files · 25\.9 MB · 5 davs PFNs/);
    const rows = table.locator('.jp-AFRucio-file');
    await expect(rows).toHaveCount(5);
    await expect(rows.first().locator('.jp-AFRucio-fileName')).toHaveText('file.small.0001.root');
    await expect(rows.first().locator('.jp-AFRucio-fileChecksum')).toHaveText(/^[0-9a-f]{8}$/);
    await expect(rows.first().locator('.jp-AFRucio-fileRses')).toHaveText('SITE-A_DISK, SITE-B_DISK');
    for (const pfn of await table.locator('.jp-AFRucio-filePfn').allTextContents()) expect(pfn).toMatch(/^davs:\/\/webdav\.site-[ab]\.test:443\//);
    await shot(page, 'rucio-dataset-davs-light', panel);
    await panel.locator('.jp-AFRucio-schemeSelect select').selectOption('root');
    await expect(progress).toHaveText(/5 root PFNs/);
    for (const pfn of await table.locator('.jp-AFRucio-filePfn').allTextContents()) expect(pfn).toMatch(/^root:\/\/.*:1094\/\//);
    await panel.locator('.jp-AFRucio-schemeSelect select').selectOption('davs');
    await expect(progress).toHaveText(/5 davs PFNs/);
    await panel.getByRole('button', { name: 'Copy PFNs' }).click();
    await expect(page.locator('.Toastify__toast').filter({ hasText: 'Copied 5 davs PFNs of data26:ds.small' })).toBeVisible();
    const clip = await page.evaluate(() => navigator.clipboard.readText());
    expect(clip.trim().split('\n')).toHaveLength(5);
  });

  await test.step('insert the file list into a new notebook and run it', async () => {
    await page.notebook.createNew('rucio-files.ipynb');
    // the new notebook must be the current one before the panel inserts into it
    await expect.poll(() => page.notebook.isActive('rucio-files.ipynb')).toBe(true);
    await openPanel(page, 'af-rucio');
    await panel.getByRole('button', { name: 'Insert file list' }).click();
    await expect.poll(() => page.notebook.getCellTextInput(0)).toContain('files = [');
    const code = await page.notebook.getCellTextInput(0);
    expect(code).toContain('"davs://webdav.site-');
    await runAddedCell(page, 'len(files)', '5');
    await shot(page, 'rucio-notebook-light');
  });

  await test.step('make ds.small available on SITE-B_DISK and see the rule state', async () => {
    await openPanel(page, 'af-rucio');
    await panel.getByRole('button', { name: 'Make available…' }).click();
    const dialog = page.locator('.jp-Dialog');
    // nothing red before anything is typed; the placeholder is an example; accepting an empty form says what is missing
    await expect(dialog.locator('.jp-AFDialog-problem')).toHaveText('');
    await expect(dialog.locator('#af-rucio-rse')).toHaveAttribute('placeholder', 'e.g. SITE-B_DISK');
    await dialog.locator('.jp-mod-accept').click();
    await expect(dialog.locator('.jp-AFDialog-problem')).toHaveText('Give an RSE or an RSE expression, e.g. SITE-B_DISK');
    await shot(page, 'rucio-make-available-problem-light', dialog.locator('.jp-Dialog-content'));
    await dialog.locator('#af-rucio-rse').fill('SITE-B_DISK');
    await dialog.locator('#af-rucio-lifetime').fill('2');
    await shot(page, 'rucio-make-available-light', dialog.locator('.jp-Dialog-content'));
    await dialog.locator('.jp-mod-accept').click();
    const rule = panel.locator('.jp-AFRucio-rule');
    await expect(rule.locator('.jp-AFRucio-ruleState')).toHaveText('OK');
    await expect(rule).toContainText('on SITE-B_DISK');
    await expect(rule).toContainText('5 ok · 0 replicating · 0 stuck');
    await rule.getByRole('button', { name: 'Refresh state' }).click();
    await expect(rule.locator('.jp-AFRucio-ruleState')).toHaveText('OK');
    await shot(page, 'rucio-rule-light', panel);
  });

  await test.step('ds.big: the first rows show while 20,000 stream in; the table scrolls to the last', async () => {
    await panel.locator('.jp-AFRucio-back').click();
    await search(panel, 'data26', 'ds.big');
    // Records what the progress line said when the first row appeared.
    await page.evaluate(() => {
      const w = window as unknown as { afFirstRows?: string };
      delete w.afFirstRows;
      const obs = new MutationObserver(() => {
        if (document.querySelector('#af-rucio .jp-AFRucio-file')) {
          w.afFirstRows = document.querySelector('#af-rucio .jp-AFRucio-progress')?.textContent ?? '';
          obs.disconnect();
        }
      });
      obs.observe(document.querySelector('#af-rucio')!, { childList: true, subtree: true, characterData: true });
    });
    await panel.locator('.jp-AFRucio-result[data-did="data26:ds.big"] .jp-AFRucio-resultName').click();
    await expect(table.locator('.jp-AFRucio-file').first()).toBeVisible();
    const first = await page.evaluate(() => (window as unknown as { afFirstRows?: string }).afFirstRows ?? '');
    const loaded = Number(/^([\d,]+) files loaded…/.exec(first)?.[1]?.replace(/,/g, '') ?? 'NaN');
    expect(loaded, `progress when the first rows showed: "${first}"`).toBeLessThan(20_000);
    await shot(page, 'rucio-big-streaming-light', panel);
    await expect(progress).toHaveText(/^20,000 files · 110 GB · 20,000 davs PFNs/, { timeout: 120_000 });
    // virtualised: a few dozen rows in the DOM, not 20,000
    expect(await table.locator('.jp-AFRucio-file').count()).toBeLessThan(60);
    await table.evaluate((el) => (el.scrollTop = el.scrollHeight));
    await expect(table.locator('.jp-AFRucio-fileName', { hasText: 'file.big.020000.root' })).toBeVisible();
    await expect(table.locator('.jp-AFRucio-file[data-index="19999"] .jp-AFRucio-filePfn')).toHaveText(/^davs:\/\//);
    await shot(page, 'rucio-big-end-light', panel);
  });

  await test.step('the panel in the dark theme', async () => {
    await page.theme.setDarkTheme();
    await openPanel(page, 'af-rucio');
    await shot(page, 'rucio-big-end-dark', panel);
    await openDataset(panel, 'data26:ds.small');
    await expect(progress).toHaveText(/5 davs PFNs/);
    await shot(page, 'rucio-dataset-dark', panel);
    await panel.locator('.jp-AFRucio-back').click();
    await search(panel, 'data26', 'ds.mc.*');
    await expect(panel.locator('.jp-AFRucio-resultList > .jp-AFRucio-result')).toHaveCount(2);
    await shot(page, 'rucio-results-dark', panel);
    await page.theme.setLightTheme();
  });

  await test.step('a DID that does not exist: an empty result that says so', async () => {
    await search(panel, 'data26', 'no.such.dataset*');
    await expect(panel.locator('.jp-AFRucio-empty')).toHaveText('Nothing in data26 matches no.such.dataset*.');
    await expect(panel.locator('.jp-AFRucio-result')).toHaveCount(0);
  });
});
