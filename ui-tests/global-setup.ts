// Starts the real stack (OpenID provider, gateway with Dask, JupyterLab, proxy; JupyterHub with its
// own gateway as a Hub service) before the tests.
// galata's baseURL comes from TARGET_URL, which the workers inherit from this process.
import { rmSync } from 'node:fs';
import { startStack, STACK_FILE } from './support/stack.ts';

export default async function globalSetup(): Promise<void> {
  rmSync(STACK_FILE, { force: true }); // never act on a previous run's processes
  const started = Date.now();
  const stack = await startStack();
  process.env.TARGET_URL = stack.proxyURL;
  process.env.AF_UI_STACK = STACK_FILE;
  console.log(
    `ui-tests stack up in ${((Date.now() - started) / 1000).toFixed(1)} s: ${stack.proxyURL} (lab ${stack.labURL}, gateway ${stack.gatewayURL}, issuer ${stack.issuer}; JupyterHub ${stack.hub.url}); logs in ${stack.logsDir}`,
  );
}
