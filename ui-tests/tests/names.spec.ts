// A cluster's readable name against the real gateway: set in the New cluster form (checked there by
// the gateway's rule), shown in the card over the id (which stays the key), in a dashboard tab and
// in the shutdown dialog. The name here is markup a hostile user might try: it must show as text,
// run nothing and add no element.
import { expect, test } from '@jupyterlab/galata';
import { loginAsAlice } from './stack';
import { newClusterRunning, openPanel, shot } from './panels';

test.setTimeout(300_000);

const HOSTILE = '<img src=x onerror=alert(1)>';

test('a cluster named in the form shows its name as text in its card, its dashboard tab and its dialogs', async ({ page }) => {
  // an alert would be the name run as markup
  const alerts: string[] = [];
  page.on('dialog', (d) => {
    alerts.push(d.message());
    void d.dismiss();
  });
  await loginAsAlice(page);
  const panel = await openPanel(page, 'af-clusters');

  await test.step('name it in the New cluster form', async () => {
    await panel.locator('.jp-AFClusters-new').click();
    const dialog = page.locator('.jp-Dialog');
    const input = dialog.locator('#af-option-display_name');
    await expect(dialog.locator('label[for="af-option-display_name"]')).toHaveText('Name');
    await expect(input).toHaveValue('');
    await expect(input).toHaveAttribute('placeholder', 'optional, e.g. ttbar skim 2018');
    await shot(page, 'names-new-form-empty-light', dialog.locator('.jp-Dialog-content'));
    // what the gateway would refuse is said in the form once the field is left
    await input.fill('x'.repeat(65));
    await input.press('Tab');
    await expect(dialog.locator('.jp-AFDialog-problem')).toHaveText('Name is 65 characters long; at most 64');
    await input.fill(`  ${HOSTILE}  `);
    await expect(dialog.locator('.jp-AFDialog-problem')).toHaveText('');
    await shot(page, 'names-new-form-light', dialog.locator('.jp-Dialog-content'));
    await dialog.locator('.jp-mod-accept').click();
  });
  const name = await newClusterRunning(panel);
  const card = panel.locator(`.jp-AFClusters-cluster[data-cluster="${name}"]`);

  await test.step('the card shows the name (trimmed, as text) over the id', async () => {
    await expect(card.locator('.jp-AFClusters-displayName')).toHaveText(HOSTILE);
    await expect(card.locator('.jp-AFClusters-name')).toHaveText(name);
    await expect(card.locator('.jp-AFClusters-name')).toHaveClass(/mod-secondary/);
    await expect(card.locator('.jp-AFClusters-title')).toHaveAttribute('title', `${HOSTILE} (cluster ${name})`);
    await expect(card.locator('img')).toHaveCount(0);
    await shot(page, 'names-card-light', card);
  });

  await test.step('a dashboard tab is labelled with the name', async () => {
    await card.getByRole('button', { name: 'Dashboards' }).click();
    await card.locator('.jp-AFClusters-plots').first().getByRole('button', { name: 'Progress', exact: true }).click();
    const tab = page.locator('#jp-main-dock-panel .lm-TabBar-tab', { has: page.locator('.lm-TabBar-tabLabel', { hasText: 'Progress (' }) });
    await expect(tab.locator('.lm-TabBar-tabLabel')).toHaveText(`Progress (${HOSTILE})`);
    await expect(tab).toHaveAttribute('title', `Progress: dashboard of cluster ${HOSTILE} (${name})`);
    await expect(page.locator('#jp-main-dock-panel .lm-TabBar img')).toHaveCount(0);
    await shot(page, 'names-tab-light');
    await tab.locator('.lm-TabBar-tabCloseIcon').click();
    await expect(tab).toHaveCount(0);
  });

  await test.step('the shutdown dialog names it too, and the id', async () => {
    await card.getByRole('button', { name: 'Shut down' }).click();
    const dialog = page.locator('.jp-Dialog');
    await expect(dialog.locator('.jp-Dialog-header')).toHaveText(`Shut down ${HOSTILE}?`);
    await expect(dialog.locator('.jp-Dialog-body')).toContainText(`Cluster ${name}:`);
    await expect(dialog.locator('img')).toHaveCount(0);
    await shot(page, 'names-shutdown-light', dialog.locator('.jp-Dialog-content'));
    await dialog.locator('.jp-mod-warn').click();
    await expect(card).toHaveCount(0, { timeout: 60_000 });
  });

  expect(alerts).toEqual([]);
  expect(await page.locator('img[src="x"]').count()).toBe(0);
});
