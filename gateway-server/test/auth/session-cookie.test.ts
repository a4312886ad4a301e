// The session cookie stays on the gateway's own path behind JupyterHub, so the browser does not
// hand it to users' servers and other services on the Hub's origin.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveConfig } from '../../src/config.js';
import { makeLogger, startGateway, type RunningGateway } from '../../src/server.js';

let gw: RunningGateway;
let dataDir: string;
const basic = { authorization: 'Basic ' + Buffer.from('alice:').toString('base64') };

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'af-cookie-'));
  gw = await startGateway(resolveConfig({ listen: '127.0.0.1:0', data_dir: dataDir, backend: { local: { single_user: true } }, base_path: '/services/af-gateway/' }), makeLogger('warn'));
});

afterAll(async () => {
  await gw?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

it('scopes the cookie to the base path for requests under it, and to / for direct ones', async () => {
  const proxied = await fetch(`${gw.url}/services/af-gateway/api/af/clusters`, { headers: basic });
  expect(proxied.status).toBe(200);
  expect(proxied.headers.get('set-cookie')).toMatch(/^af-gateway-session=[^;]+; Path=\/services\/af-gateway\/; HttpOnly; SameSite=Lax/);
  const direct = await fetch(`${gw.url}/api/af/clusters`, { headers: basic });
  expect(direct.headers.get('set-cookie')).toMatch(/; Path=\/; /);
  // The cookie alone then identifies the user under the base path.
  const cookie = proxied.headers.get('set-cookie')!.split(';')[0]!;
  const again = await fetch(`${gw.url}/services/af-gateway/api/af/token`, { headers: { cookie } });
  expect(((await again.json()) as { user: string }).user).toBe('alice');
});
