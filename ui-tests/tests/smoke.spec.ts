// Smoke test of the UI-test stack: JupyterLab behind the proxy, the AF Gateway extension in it,
// and a real login at the OpenID provider giving the browser a gateway session on the same origin.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { expect, test } from '@jupyterlab/galata';
import { REPO } from '../support/stack.ts';
import { loginAsAlice, readStack } from './stack.ts';

const EXTENSION = '@af-gateway/lab-extension';

/** Names of the prebuilt (federated) extensions the Lab page was given. */
function federatedExtensions(): string[] {
  const data = JSON.parse(document.getElementById('jupyter-config-data')!.textContent!) as {
    federated_extensions: { name: string }[];
  };
  return data.federated_extensions.map((e) => e.name);
}

test('JupyterLab loads through the proxy', async ({ page, baseURL }) => {
  const stack = readStack();
  expect(baseURL).toBe(stack.proxyURL);
  expect(new URL(page.url()).origin).toBe(new URL(stack.proxyURL).origin);
  await expect(page.locator('#jp-main-dock-panel')).toBeVisible();
  await expect(page.locator('.jp-Launcher')).toBeVisible();
  expect(await page.evaluate(federatedExtensions)).toContain('@jupyterlab/galata-extension');
  await page.screenshot({ path: path.join(stack.screenshotsDir, 'lab.png') });
});

test('the AF Gateway extension is loaded and activated', async ({ page }) => {
  const installed = existsSync(path.join(REPO, '.venv', 'share', 'jupyter', 'labextensions', EXTENSION, 'package.json'));
  test.skip(!installed, `${EXTENSION} is not installed in .venv (scripts/bootstrap.sh installs its wheel)`);
  expect(await page.evaluate(federatedExtensions)).toContain(EXTENSION);
  const plugins = await page.evaluate((prefix) => {
    const app = (window as unknown as { jupyterapp: { listPlugins(): string[]; isPluginActivated(id: string): boolean } }).jupyterapp;
    return app
      .listPlugins()
      .filter((id) => id.startsWith(prefix))
      .map((id) => ({ id, activated: app.isPluginActivated(id) }));
  }, `${EXTENSION}:`);
  expect(plugins.length).toBeGreaterThan(0);
  expect(plugins.filter((p) => p.activated)).not.toEqual([]);
});

test('alice logs in at the provider and the gateway reports her token', async ({ page }) => {
  const stack = readStack();
  await loginAsAlice(page);
  const token = await page.evaluate(async (url) => {
    const r = await fetch(url, { credentials: 'same-origin' });
    return { status: r.status, body: (await r.json()) as Record<string, unknown> };
  }, `${stack.basePath}api/af/token`);
  expect(token.status, JSON.stringify(token.body)).toBe(200);
  expect(token.body).toMatchObject({ user: 'alice', subject: 'alice', source: 'login', issuer: stack.issuer });
  expect(token.body.expires_at).not.toBeNull();
  expect(token.body.expires_at).toEqual(expect.any(Number));
  await expect(page.locator('#jp-main-dock-panel')).toBeVisible();
  await page.screenshot({ path: path.join(stack.screenshotsDir, 'lab-after-login.png') });
});
