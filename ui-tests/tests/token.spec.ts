// The Token panel and status bar item with a real token from the test OIDC provider.
import { expect, galata, test } from '@jupyterlab/galata';
import { loginAsAlice, readStack } from './stack';
import { openPanel, shot } from './panels';

test.setTimeout(180_000);

test('before login the panels say what to do', async ({ page }) => {
  const token = await openPanel(page, 'af-token');
  await expect(token.locator('.jp-AFToken-headline')).toContainText(/log in/i);
  await expect(token.locator('.jp-AFToken-login')).toBeVisible();
  await shot(page, 'token-logged-out-light', token);
  const clusters = await openPanel(page, 'af-clusters');
  await expect(clusters.locator('.jp-AFClusters-notice')).toContainText('Authentication required');
  await expect(clusters.getByRole('button', { name: 'Log in' })).toBeVisible();
});

test('the token panel shows the real token and counts down', async ({ page }) => {
  await loginAsAlice(page);
  const stack = readStack();
  const panel = await openPanel(page, 'af-token');
  await expect(panel.locator('.jp-AFToken-user')).toHaveText('alice');
  await expect(panel.locator('.jp-AFToken-issuer')).toHaveText(stack.issuer);
  await expect(panel.locator('.jp-AFToken-headline')).toContainText('Your token is valid');
  const countdown = panel.locator('.jp-AFToken-countdownValue');
  const first = await countdown.textContent();
  await expect(countdown).not.toHaveText(first ?? '', { timeout: 5_000 }); // it ticks
  await expect(panel.locator('.jp-AFToken-refresh')).toContainText('ok');
  const status = page.locator('.jp-AFTokenStatus-text');
  await expect(status).toHaveText(/^Token: \d+ min$/);
  await shot(page, 'token-light', panel);
  await shot(page, 'token-statusbar-light', page.locator('#jp-main-statusbar'));

  // Refresh now gets a new access token from the provider.
  const before = await panel
    .locator('dd')
    .filter({ hasText: /\d{1,2}:\d{2}/ })
    .allTextContents();
  await page.waitForTimeout(1100);
  await panel.getByRole('button', { name: 'Refresh now' }).click();
  await expect(panel.getByRole('button', { name: 'Refresh now' })).toBeEnabled();
  await expect
    .poll(async () =>
      (
        await panel
          .locator('dd')
          .filter({ hasText: /\d{1,2}:\d{2}/ })
          .allTextContents()
      ).join('|'),
    )
    .not.toBe(before.join('|'));

  await page.theme.setDarkTheme();
  await openPanel(page, 'af-token');
  await shot(page, 'token-dark', panel);
  await page.theme.setLightTheme();
});

test.describe('near expiry', () => {
  // A warning threshold above the provider's token lifetime puts a fresh token "near expiry".
  test.use({
    mockSettings: { ...galata.DEFAULT_SETTINGS, '@af-gateway/lab-extension:plugin': { tokenWarningMinutes: 24 * 60 } },
  });

  test('the panel and the status bar warn', async ({ page }) => {
    await loginAsAlice(page);
    const panel = await openPanel(page, 'af-token');
    await expect(panel.locator('.jp-AFToken-headline')).toHaveClass(/mod-warning/);
    await expect(panel.locator('.jp-AFToken-headline')).toContainText('expires soon');
    await expect(page.locator('.jp-AFTokenStatus-text')).toHaveClass(/mod-warning/);
    await shot(page, 'token-warning-light', panel);
    await shot(page, 'token-statusbar-warning-light', page.locator('#jp-main-statusbar'));
  });
});
