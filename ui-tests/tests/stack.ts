// What the tests know about the running stack (written by global-setup.ts), and logging in as a
// user the way a browser does it: the gateway's /api/af/login, the provider's real login and
// consent pages, back to JupyterLab with the gateway's session cookie on the shared origin.
import { readFileSync } from 'node:fs';
import { expect, type Page } from '@playwright/test';
import { STACK_FILE, type Stack } from '../support/stack.ts';

export type { Stack };

export function readStack(): Stack {
  return JSON.parse(readFileSync(process.env.AF_UI_STACK ?? STACK_FILE, 'utf8')) as Stack;
}

/** galata's page fixture wraps a Playwright page (and overrides goto): use the page itself. */
function playwrightPage(page: Page): Page {
  const inner = (page as unknown as { page?: Page }).page;
  return inner && typeof inner.goto === 'function' ? inner : page;
}

/**
 * Logs `user` in at the test OpenID provider through the gateway's login
 * (GET <proxy>/services/af-gateway/api/af/login?next=...), filling the provider's
 * development login form (any password) and confirming its consent page, and waits until the
 * browser is back at `next` on the proxy's origin.
 */
export async function loginAs(page: Page, user: string, next = '/lab'): Promise<void> {
  const stack = readStack();
  const p = playwrightPage(page);
  await p.goto(`${stack.gatewayPublicURL}/api/af/login?next=${encodeURIComponent(next)}`);
  // oidc-provider's devInteractions: a login form, then a consent form, at <issuer>/interaction/<uid>
  await p.waitForURL(`${stack.issuer}/interaction/**`);
  const loginForm = p.locator('form:has(input[name="prompt"][value="login"])');
  await loginForm.locator('input[name="login"]').fill(user);
  await loginForm.locator('input[name="password"]').fill('any-password');
  await loginForm.locator('button[type="submit"]').click();
  const consentForm = p.locator('form:has(input[name="prompt"][value="consent"])');
  await consentForm.locator('button[type="submit"]').click();
  await p.waitForURL((url) => url.origin === new URL(stack.proxyURL).origin && url.pathname.startsWith(next));
  // The session cookie is scoped to the gateway's path on the shared origin.
  const cookies = await p.context().cookies(`${stack.gatewayPublicURL}/`);
  expect(cookies.find((c) => c.name === 'af-gateway-session')?.path).toBe('/services/af-gateway/');
  expect((await p.context().cookies(`${stack.proxyURL}/lab`)).map((c) => c.name)).not.toContain('af-gateway-session');
  // Back in JupyterLab: wait until it started and galata's in-page helpers are there (as galata's
  // own goto() does), so page.theme, page.notebook etc. work; no launcher is opened on /lab.
  const galataPage = page as unknown as Partial<GalataReadiness>;
  if (next.startsWith('/lab')) {
    if (galataPage.waitForAppStarted && galataPage.hookHelpersUp) {
      await galataPage.waitForAppStarted();
      await galataPage.hookHelpersUp();
    }
    await p.locator('#jupyterlab-splash').waitFor({ state: 'detached' });
  }
}

interface GalataReadiness {
  waitForAppStarted(): Promise<void>;
  hookHelpersUp(): Promise<void>;
}

export function loginAsAlice(page: Page, next = '/lab'): Promise<void> {
  return loginAs(page, 'alice', next);
}
