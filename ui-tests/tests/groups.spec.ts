// Worker groups in a cluster card against the real gateway, whose config (ui-tests/support/stack.ts)
// gives every cluster a group `big` on the local backend (1 core, 1 GiB, resources {big: 1}, at most
// 2 workers): the card shows the group in words, scales it up and down from its own control, shows
// the gateway's refusal past the group's limit in the card, scales it adaptively (a range past the
// limit capped, with the gateway's message) and back to manual.
import { expect, test } from '@jupyterlab/galata';
import { loginAsAlice } from './stack';
import { newClusterRunning, openPanel, shot, shutDownCluster } from './panels';

test.setTimeout(300_000);

test('a cluster card shows and scales its worker groups', async ({ page }) => {
  await loginAsAlice(page);
  const panel = await openPanel(page, 'af-clusters');
  await panel.locator('.jp-AFClusters-new').click();
  await page.locator('.jp-Dialog .jp-mod-accept').click();
  const name = await newClusterRunning(panel);
  const card = panel.locator(`.jp-AFClusters-cluster[data-cluster="${name}"]`);
  const groups = card.locator('.jp-AFGroups');
  const big = groups.locator('.jp-AFGroups-group[data-group="big"]');
  const count = big.locator('input[type="number"]');
  const scale = big.getByRole('button', { name: 'Scale group big' });

  await test.step('each group in words, with how a notebook reaches it', async () => {
    await expect(groups.locator('.jp-AFGroups-group')).toHaveCount(2);
    await expect(groups.locator('.jp-AFGroups-name')).toHaveText(['default', 'big']);
    await expect(big.locator('.jp-AFGroups-backend')).toHaveText('local processes');
    await expect(big.locator('.jp-AFGroups-size')).toHaveText('1 core · 1 GiB');
    await expect(big.locator('.jp-AFGroups-description')).toContainText('Workers for the heavy steps');
    await expect(big.locator('.jp-AFGroups-label')).toHaveText(['big: 1']);
    await expect(big.locator('.jp-AFGroups-running')).toHaveText('0 of 0 running');
    await expect(big.locator('.jp-AFGroups-limit')).toHaveText('at most 2');
    await expect(groups.locator('.jp-AFGroups-tip code')).toHaveText('client.submit(f, resources={"big": 1})');
    // The primary action of the group's control is the accept-styled one.
    await expect(scale).toHaveClass(/jp-mod-accept/);
  });

  await test.step('scale big to 1 from the card and see its worker run', async () => {
    await count.fill('1');
    await scale.click();
    await expect(big.locator('.jp-AFGroups-running')).toHaveText('1 of 1 running', { timeout: 90_000 });
    await expect(card.locator('.jp-AFClusters-workers')).toHaveText('1 / 1');
    await expect(count).toHaveValue('1');
    await shot(page, 'groups-running-light', card);
  });

  await test.step('past the group limit: the gateway says so in the card and nothing changes', async () => {
    await count.fill('5');
    await scale.click();
    const error = big.locator('.jp-AFGroups-error');
    await expect(error).toContainText('Scaling worker group big to 5 workers exceeds');
    await expect(error).toContainText('at most 2');
    await shot(page, 'groups-limit-light', card);
    await page.theme.setDarkTheme();
    await openPanel(page, 'af-clusters');
    await shot(page, 'groups-limit-dark', card);
    await page.theme.setLightTheme();
    await openPanel(page, 'af-clusters');
    await expect(big.locator('.jp-AFGroups-running')).toHaveText('1 of 1 running');
    // a value that is not a count is refused before it is sent
    await count.fill('-1');
    await expect(big.locator('.jp-AFGroups-error')).toHaveText('Workers must be a whole number, 0 or more');
    await expect(scale).toBeDisabled();
  });

  const mode = big.locator('.jp-AFGroups-mode');
  const choice = big.getByRole('radiogroup', { name: 'How group big scales' });

  await test.step('adapt big from the card: a range past its limit is capped, and the card says so', async () => {
    await expect(mode).toHaveText('manual');
    await choice.getByText('Adaptive', { exact: true }).click();
    await expect(choice.getByRole('radio', { name: 'Adaptive' })).toBeChecked();
    const minimum = big.getByLabel('Min', { exact: true });
    const maximum = big.getByLabel('Max', { exact: true });
    const adapt = big.getByRole('button', { name: 'Adapt group big' });
    // refused before it is sent, in words
    await minimum.fill('3');
    await maximum.fill('1');
    await expect(big.locator('.jp-AFGroups-error')).toHaveText('Minimum must not be larger than maximum');
    await expect(adapt).toBeDisabled();
    await minimum.fill('1');
    await maximum.fill('5');
    await expect(big.locator('.jp-AFGroups-error')).toHaveCount(0);
    await adapt.click();
    await expect(mode).toHaveText('adaptive 1–2, now 1');
    await expect(mode).toHaveClass(/mod-adaptive/);
    await expect(big.locator('.jp-AFGroups-message')).toContainText('using minimum=1, maximum=2 instead');
    await expect(big.locator('.jp-AFGroups-adaptive')).toContainText('a count set with Manual turns adaptive scaling off');
    await expect(big.locator('.jp-AFGroups-running')).toHaveText('1 of 1 running');
    // the inputs now show the range the gateway uses
    await expect(minimum).toHaveValue('1');
    await expect(maximum).toHaveValue('2');
    // (the group, not the card: the card is taller than the window)
    await shot(page, 'groups-adaptive-light', big);
    await page.theme.setDarkTheme();
    await openPanel(page, 'af-clusters');
    await shot(page, 'groups-adaptive-dark', big);
    await page.theme.setLightTheme();
    await openPanel(page, 'af-clusters');
  });

  await test.step('back to manual: scale big to 0, adaptive scaling goes off and its worker goes', async () => {
    await choice.getByText('Manual', { exact: true }).click();
    await expect(count).toHaveValue('1');
    await count.fill('0');
    await expect(big.locator('.jp-AFGroups-error')).toHaveCount(0);
    await scale.click();
    await expect(mode).toHaveText('manual');
    await expect(big.locator('.jp-AFGroups-adaptive')).toHaveCount(0);
    await expect(big.locator('.jp-AFGroups-running')).toHaveText('0 of 0 running', { timeout: 60_000 });
    await expect(card.locator('.jp-AFClusters-workers')).toHaveText('0 / 0');
    await shot(page, 'groups-manual-again-light', big);
  });

  await test.step('shut down', async () => {
    await shutDownCluster(page, panel, card, name);
  });
});
