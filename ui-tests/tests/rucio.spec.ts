// The Rucio panel against the real gateway and a real Rucio server (scripts/rucio-server.sh) that
// accepts the gateway's exchanged tokens: search with wildcards in the sidebar; datasets open in the
// main area's browser (davs and root PFNs, sort, filter, selection, per-row copy); the 100,000-file
// ds.huge (from the machine's Rucio seed) streamed into the virtualised table; the selected files' list
// run in a notebook; a rule that makes a dataset available; and an empty search.
import { expect, test } from '@jupyterlab/galata';
import type { Locator } from '@playwright/test';
import { loginAsAlice } from './stack';
import { openPanel, runAddedCell, shot } from './panels';

test.setTimeout(600_000);
// a desktop screen: the dataset browser beside the open sidebar shows whole PFNs
test.use({ viewport: { width: 1600, height: 900 } });

async function search(panel: Locator, scope: string, pattern: string, type: 'dataset' | 'container' | 'all' = 'dataset'): Promise<void> {
  await panel.locator('.jp-AFRucio-scope select').selectOption(scope);
  await panel.locator('.jp-AFRucio-type select').selectOption(type);
  await panel.locator('.jp-AFRucio-query').fill(pattern);
  await panel.locator('.jp-AFRucio-go').click();
}

/** Opens a dataset from the sidebar's search: its browser opens in the main area. */
async function openDataset(panel: Locator, did: string): Promise<void> {
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

  /** The dataset's browser in the main area (one per dataset). */
  const browserOf = (did: string) => page.locator(`.jp-AFRucio-browser[data-did="${did}"]`);
  const tabOf = (did: string) => page.locator('#jp-main-dock-panel .lm-TabBar-tab', { hasText: did });
  const small = browserOf('data26:ds.small');
  const table = small.locator('.jp-AFRucio-fileTable');
  const progress = small.locator('.jp-AFRucio-progressText');
  const rows = table.locator('.jp-AFRucio-file');
  const names = () => rows.locator('.jp-AFRucio-fileName').allTextContents();
  await test.step('open ds.small in the main area: headers, 5 files with davs PFNs; root after switching the scheme', async () => {
    await openDataset(panel, 'data26:ds.small');
    await expect(small).toBeVisible();
    await expect(tabOf('data26:ds.small')).toHaveCount(1);
    await expect(progress).toHaveText(/^5 files · 25\.9 MB · 5 davs PFNs/);
    await expect(table.locator('.jp-AFRucio-fileHeader [role="columnheader"]')).toHaveText([
      'Name',
      'Size',
      'Checksum (adler32)',
      'RSEs',
      'Copy',
      'PFN (davs)',
    ]);
    await expect(rows).toHaveCount(5);
    expect(await names()).toEqual(['file.small.0001.root', 'file.small.0002.root', 'file.small.0003.root', 'file.small.0004.root', 'file.small.0005.root']);
    await expect(rows.first().locator('.jp-AFRucio-fileChecksum')).toHaveText(/^[0-9a-f]{8}$/);
    await expect(rows.first().locator('.jp-AFRucio-fileRses')).toHaveText('SITE-A_DISK, SITE-B_DISK');
    for (const pfn of await table.locator('.jp-AFRucio-filePfn').allTextContents()) expect(pfn).toMatch(/^davs:\/\/webdav\.site-[ab]\.test:443\//);
    // the whole PFN is on screen, not cut
    const pfnHead = rows.first().locator('.jp-AFRucio-pfnHead');
    expect(await pfnHead.evaluate((el) => el.scrollWidth <= el.clientWidth)).toBe(true);
    await shot(page, 'rucio-browser-davs-light');
    await small.locator('.jp-AFRucio-schemeSelect select').selectOption('root');
    await expect(progress).toHaveText(/5 root PFNs/);
    await expect(table.locator('.jp-AFRucio-fileHeader')).toContainText('PFN (root)');
    for (const pfn of await table.locator('.jp-AFRucio-filePfn').allTextContents()) expect(pfn).toMatch(/^root:\/\/.*:1094\/\//);
    await small.locator('.jp-AFRucio-schemeSelect select').selectOption('davs');
    await expect(progress).toHaveText(/5 davs PFNs/);
    // opening it again shows the same tab, not a second one
    await openDataset(panel, 'data26:ds.small');
    await expect(tabOf('data26:ds.small')).toHaveCount(1);
    await expect(small).toBeVisible();
  });

  await test.step('sort by name and by size, filter', async () => {
    const nameHead = table.locator('[role="columnheader"].mod-name');
    await nameHead.locator('button').click();
    await expect(nameHead).toHaveAttribute('aria-sort', 'ascending');
    await nameHead.locator('button').click();
    await expect(nameHead).toHaveAttribute('aria-sort', 'descending');
    expect(await names()).toEqual(['file.small.0005.root', 'file.small.0004.root', 'file.small.0003.root', 'file.small.0002.root', 'file.small.0001.root']);
    const sizeHead = table.locator('[role="columnheader"].mod-bytes');
    await sizeHead.locator('button').click();
    await expect(sizeHead).toHaveAttribute('aria-sort', 'ascending');
    await expect(nameHead).toHaveAttribute('aria-sort', 'none');
    const bytes = (await rows.locator('.jp-AFRucio-fileSize').evaluateAll((els) => els.map((e) => e.getAttribute('title') ?? ''))).map((t) =>
      Number(t.replace(/[^\d]/g, '')),
    );
    expect(bytes).toHaveLength(5);
    expect(bytes).toEqual([...bytes].sort((a, b) => a - b));
    await sizeHead.locator('button').click();
    await sizeHead.locator('button').click();
    await expect(sizeHead).toHaveAttribute('aria-sort', 'none');
    expect((await names())[0]).toBe('file.small.0001.root');
    await small.locator('.jp-AFRucio-filter').fill('0003');
    await expect(rows).toHaveCount(1);
    await expect(small.locator('.jp-AFRucio-selection')).toHaveText('1 of 5 files shown');
    await small.locator('.jp-AFRucio-filter').fill('SMALL .root');
    await expect(rows).toHaveCount(5);
    await small.locator('.jp-AFRucio-filter').fill('');
  });

  await test.step('select rows (click, shift-click, ctrl-click), copy a PFN, copy and insert just the selected', async () => {
    await rows.nth(0).locator('.jp-AFRucio-fileName').click();
    await rows
      .nth(2)
      .locator('.jp-AFRucio-fileName')
      .click({ modifiers: ['Shift'] });
    await expect(small.locator('.jp-AFRucio-selection')).toHaveText('3 of 5 selected');
    await rows
      .nth(1)
      .locator('.jp-AFRucio-fileName')
      .click({ modifiers: ['ControlOrMeta'] });
    await expect(small.locator('.jp-AFRucio-selection')).toHaveText('2 of 5 selected');
    await expect(table.locator('.jp-AFRucio-file[aria-selected="true"] .jp-AFRucio-fileName')).toHaveText(['file.small.0001.root', 'file.small.0003.root']);
    await shot(page, 'rucio-browser-selected-light');
    // per-row copy: the PFN of the fourth file
    const fourth = rows.nth(3);
    const pfn = (await fourth.locator('.jp-AFRucio-filePfn').textContent()) ?? '';
    await fourth.getByRole('button', { name: 'Copy the PFN of file.small.0004.root' }).click();
    await expect(page.locator('.Toastify__toast').filter({ hasText: 'Copied the PFN of file.small.0004.root' })).toBeVisible();
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(pfn);
    await fourth.getByRole('button', { name: 'Copy the name of file.small.0004.root' }).click();
    await expect.poll(() => page.evaluate(() => navigator.clipboard.readText())).toBe('data26:file.small.0004.root');
    // the selection is still the two rows; copy their PFNs
    await expect(small.locator('.jp-AFRucio-selection')).toHaveText('2 of 5 selected');
    await small.getByRole('button', { name: 'Copy PFNs (2 selected)' }).click();
    await expect(page.locator('.Toastify__toast').filter({ hasText: 'Copied 2 davs PFNs of data26:ds.small' })).toBeVisible();
    const clip = (await page.evaluate(() => navigator.clipboard.readText())).trim().split('\n');
    expect(clip).toHaveLength(2);
    expect(clip[0]).toMatch(/\/file\.small\.0001\.root$/);
    expect(clip[1]).toMatch(/\/file\.small\.0003\.root$/);

    await page.notebook.createNew('rucio-files.ipynb');
    await expect.poll(() => page.notebook.isActive('rucio-files.ipynb')).toBe(true);
    await tabOf('data26:ds.small').click();
    await small.getByRole('button', { name: 'Insert file list (2 selected)' }).click();
    await expect.poll(() => page.notebook.getCellTextInput(0)).toContain('files = [');
    const code = await page.notebook.getCellTextInput(0);
    expect(code).toContain('# 2 files of data26:ds.small (davs');
    expect(code).toMatch(/"davs:\/\/webdav\.site-[ab]\.test:443\/[^"]*file\.small\.0001\.root",\n {4}"davs:\/\/[^"]*file\.small\.0003\.root",\n\]/);
    await runAddedCell(page, 'len(files)', '2');
    await shot(page, 'rucio-notebook-light');
  });

  await test.step('make ds.small available on SITE-B_DISK and see the rule state', async () => {
    await tabOf('data26:ds.small').click();
    await small.getByRole('button', { name: 'Make available…' }).click();
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
    const rule = small.locator('.jp-AFRucio-rule');
    await expect(rule.locator('.jp-AFRucio-ruleState')).toHaveText('OK');
    await expect(rule).toContainText('on SITE-B_DISK');
    await expect(rule).toContainText('5 ok · 0 replicating · 0 stuck');
    await rule.getByRole('button', { name: 'Refresh state' }).click();
    await expect(rule.locator('.jp-AFRucio-ruleState')).toHaveText('OK');
    await shot(page, 'rucio-rule-light', small);
  });

  // ds.huge: 100,000 files, from the machine's Rucio seed (ui-tests/support/stack.ts, as in the demo)
  const huge = browserOf('data26:ds.huge');
  const hugeTable = huge.locator('.jp-AFRucio-fileTable');
  const hugeProgress = huge.locator('.jp-AFRucio-progressText');
  await test.step('ds.huge: the first rows show while 100,000 stream in (with a Stop); the table scrolls to the last', async () => {
    await openPanel(page, 'af-rucio');
    await search(panel, 'data26', 'ds.huge');
    await expect(panel.locator('.jp-AFRucio-result[data-did="data26:ds.huge"]')).toContainText('100,000 files');
    // Records what the progress said, and whether Stop was offered, when the first row appeared.
    await page.evaluate(() => {
      const w = window as unknown as { afFirstRows?: { progress: string; stop: boolean } };
      delete w.afFirstRows;
      const sel = '.jp-AFRucio-browser[data-did="data26:ds.huge"]';
      const obs = new MutationObserver(() => {
        if (document.querySelector(`${sel} .jp-AFRucio-file`)) {
          w.afFirstRows = {
            progress: document.querySelector(`${sel} .jp-AFRucio-progressText`)?.textContent ?? '',
            stop: !!document.querySelector(`${sel} .jp-AFRucio-cancel`),
          };
          obs.disconnect();
        }
      });
      obs.observe(document.querySelector('#jp-main-dock-panel')!, { childList: true, subtree: true, characterData: true });
    });
    await panel.locator('.jp-AFRucio-result[data-did="data26:ds.huge"] .jp-AFRucio-resultName').click();
    await expect(hugeTable.locator('.jp-AFRucio-file').first()).toBeVisible();
    const first = await page.evaluate(() => (window as unknown as { afFirstRows?: { progress: string; stop: boolean } }).afFirstRows);
    const loaded = Number(/^([\d,]+) of 100,000 files/.exec(first?.progress ?? '')?.[1]?.replace(/,/g, '') ?? 'NaN');
    expect(loaded, `progress when the first rows showed: "${first?.progress}"`).toBeLessThan(100_000);
    expect(first?.stop, 'a Stop button while the files stream').toBe(true);
    await shot(page, 'rucio-huge-streaming-light');
    await expect(hugeProgress).toHaveText(/^100,000 files · [\d.]+ [GT]B · 100,000 davs PFNs/, { timeout: 240_000 });
    await expect(huge.locator('.jp-AFRucio-cancel')).toHaveCount(0);
    // virtualised: a few dozen rows in the DOM, not 100,000
    expect(await hugeTable.locator('.jp-AFRucio-file').count()).toBeLessThan(80);
    await hugeTable.evaluate((el) => (el.scrollTop = el.scrollHeight));
    await expect(hugeTable.locator('.jp-AFRucio-fileName', { hasText: 'file.huge.100000.root' })).toBeVisible();
    await expect(hugeTable.locator('.jp-AFRucio-file[data-pos="99999"] .jp-AFRucio-filePfn')).toHaveText(/^davs:\/\//);
    await expect(hugeTable.locator('.jp-AFRucio-file[data-pos="99999"] .jp-AFRucio-fileRses')).toHaveText('SITE-B_DISK');
    await shot(page, 'rucio-huge-end-light');
    // sorted descending by name, the last file comes first
    await hugeTable.evaluate((el) => (el.scrollTop = 0));
    await hugeTable.locator('[role="columnheader"].mod-name button').click();
    await hugeTable.locator('[role="columnheader"].mod-name button').click();
    await expect(hugeTable.locator('.jp-AFRucio-file[data-pos="0"] .jp-AFRucio-fileName')).toHaveText('file.huge.100000.root');
  });

  await test.step('ds.huge: filter to ten files, select them and insert just those', async () => {
    await huge.locator('.jp-AFRucio-filter').fill('file.huge.09999');
    await expect(huge.locator('.jp-AFRucio-selection')).toHaveText('10 of 100,000 files shown');
    await expect(hugeTable.locator('.jp-AFRucio-file')).toHaveCount(10);
    await huge.getByRole('button', { name: 'Select all 10 matching' }).click();
    await expect(huge.locator('.jp-AFRucio-selection')).toHaveText('10 of 10 selected');
    await expect(hugeTable.locator('.jp-AFRucio-file[data-pos="0"]')).toHaveAttribute('aria-selected', 'true');
    await shot(page, 'rucio-huge-filtered-light');
    await page.notebook.createNew('rucio-huge.ipynb');
    await expect.poll(() => page.notebook.isActive('rucio-huge.ipynb')).toBe(true);
    await tabOf('data26:ds.huge').click();
    await huge.getByRole('button', { name: 'Insert file list (10 selected)' }).click();
    await expect.poll(() => page.notebook.getCellTextInput(0)).toContain('# 10 files of data26:ds.huge');
    const code = await page.notebook.getCellTextInput(0);
    // descending by name, as the table showed them
    expect(code.indexOf('file.huge.099999.root')).toBeLessThan(code.indexOf('file.huge.099990.root'));
    expect(code.indexOf('file.huge.099990.root')).toBeGreaterThan(0);
    expect(code).not.toContain('file.huge.099989.root');
    expect(code).not.toContain('file.huge.100000.root');
    await runAddedCell(page, 'len(files)', '10');
    await shot(page, 'rucio-huge-notebook-light');
  });

  await test.step('the browser and the panel in the dark theme', async () => {
    await page.theme.setDarkTheme();
    await tabOf('data26:ds.huge').click();
    await shot(page, 'rucio-huge-filtered-dark');
    await openPanel(page, 'af-rucio');
    await openDataset(panel, 'data26:ds.small');
    await expect(progress).toHaveText(/5 davs PFNs/);
    await shot(page, 'rucio-browser-dark');
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
