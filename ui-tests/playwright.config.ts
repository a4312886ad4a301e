// Playwright (galata) configuration of the AF Gateway JupyterLab UI tests. The tests run against
// the real stack that global-setup.ts starts (OpenID provider, gateway with Dask, JupyterLab,
// configurable-http-proxy; JupyterHub with a gateway as its service) in Debian's Chromium; nothing
// is downloaded.
import { defineConfig } from '@playwright/test';
import * as galataConfig from '@jupyterlab/galata/lib/playwright-config.js';
import { CHROMIUM } from './support/processes.mjs';

// CommonJS module.exports: the default export under native ESM, the namespace itself otherwise
const base = ((galataConfig as { default?: unknown }).default ?? galataConfig) as {
  use?: Record<string, unknown>;
  [key: string]: unknown;
};

export default defineConfig({
  ...base,
  testDir: './tests',
  // Playwright empties outputDir at the start; stack.json, logs, junit and screenshots live beside it
  outputDir: './test-results/artifacts',
  globalSetup: './global-setup.ts',
  globalTeardown: './global-teardown.ts',
  // the suite (~9 min) plus, on a machine that has none yet, making the Rucio seed with ds.huge in global set-up (1.5-5 min)
  globalTimeout: 25 * 60_000,
  timeout: 120_000,
  expect: { timeout: 30_000 },
  workers: 1, // 2-core machine, and one shared stack
  fullyParallel: false,
  retries: 0,
  forbidOnly: !!process.env.CI,
  reportSlowTests: null,
  // PLAYWRIGHT_JUNIT_OUTPUT_FILE (set by scripts/test.sh) overrides outputFile
  reporter: [['list'], ['junit', { outputFile: 'test-results/junit.xml' }]],
  use: {
    ...base.use,
    // baseURL: galata takes TARGET_URL, which global-setup.ts sets to the proxy's address
    browserName: 'chromium',
    launchOptions: { executablePath: CHROMIUM.executablePath, args: CHROMIUM.args },
    trace: 'retain-on-failure',
    video: 'off', // video needs Playwright's downloaded ffmpeg
    screenshot: 'only-on-failure',
    actionTimeout: 30_000,
    navigationTimeout: 60_000,
  },
});
