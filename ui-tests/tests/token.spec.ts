// The Token panel and status bar item with a real token from the test OIDC provider.
import { expect, galata, type IJupyterLabPageFixture, test } from '@jupyterlab/galata';
import { BASIC_BASE_PATH } from '../support/stack.ts';
import { loginAsAlice, readStack } from './stack';
import { openPanel, shot } from './panels';

/**
 * The token's status bar item sits on the same line box as JupyterLab's own text items beside it
 * (same top and height: the same baseline), whatever it says.
 */
async function expectOnStatusBarBaseline(page: IJupyterLabPageFixture): Promise<void> {
  const ours = page.locator('.jp-AFTokenStatus-text');
  const theirs = page.locator('#jp-main-statusbar .jp-StatusBar-TextItem:not(.jp-AFTokenStatus-text)').first();
  await expect(theirs).toBeVisible();
  const a = (await ours.boundingBox())!;
  const b = (await theirs.boundingBox())!;
  expect(Math.abs(a.y - b.y), `token item top ${a.y} vs ${b.y}`).toBeLessThanOrEqual(1);
  expect(Math.abs(a.height - b.height), `token item height ${a.height} vs ${b.height}`).toBeLessThanOrEqual(1);
}

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
  await expectOnStatusBarBaseline(page);
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

test.describe('a gateway that signs in by user name (simple authentication, as the demo)', () => {
  test.use({
    mockSettings: {
      ...galata.DEFAULT_SETTINGS,
      '@af-gateway/lab-extension:plugin': { gatewayUrl: BASIC_BASE_PATH, authMode: 'basic', username: 'carol' },
    },
  });

  test('the token panel offers nothing that cannot work and says why', async ({ page }) => {
    const panel = await openPanel(page, 'af-token');
    const headline = panel.locator('.jp-AFToken-headline');
    await expect(headline).toHaveClass(/mod-not-managed/);
    await expect(headline).toHaveText(
      'This gateway signs you in with a user name (basic authentication), not at an identity provider: it holds no access token for you, and tokens are not managed here.',
    );
    // no Log in, no Refresh now: neither could work here
    await expect(panel.getByRole('button')).toHaveCount(0);
    await expect(panel.locator('.jp-AFToken-actions')).toHaveCount(0);
    // nor their commands in the palette
    const enabled = await page.evaluate(() => {
      const { commands } = (window as unknown as { jupyterapp: { commands: { isEnabled(id: string): boolean } } }).jupyterapp;
      return { login: commands.isEnabled('af:login'), refresh: commands.isEnabled('af:refresh-token') };
    });
    expect(enabled).toEqual({ login: false, refresh: false });
    await expect(page.locator('.jp-AFTokenStatus-text')).toHaveText('Token: not used');
    await expectOnStatusBarBaseline(page);
    await shot(page, 'token-basic-light', panel);
    await shot(page, 'token-statusbar-basic-light', page.locator('#jp-main-statusbar'));
    await page.theme.setDarkTheme();
    await shot(page, 'token-basic-dark', panel);
    await page.theme.setLightTheme();
    // the rest of the Lab works as carol: the clusters panel is connected, with no log-in notice
    const clusters = await openPanel(page, 'af-clusters');
    await expect(clusters.locator('.jp-AFClusters-empty')).toBeVisible();
    await expect(clusters.getByRole('button', { name: 'Log in' })).toHaveCount(0);
  });
});
