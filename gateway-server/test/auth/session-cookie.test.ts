// The session cookie stays on the gateway's own path behind JupyterHub, so the browser does not
// hand it to users' servers and other services on the Hub's origin.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { basic as basicAuth, SINGLE_USER, startTestGateway, type TestGateway } from '../support/gateway.js';

let gw: TestGateway;
const basic = basicAuth('alice');

beforeAll(async () => {
  gw = await startTestGateway({ ...SINGLE_USER, base_path: '/services/af-gateway/' }, { prefix: 'af-cookie-' });
});

afterAll(async () => {
  await gw?.close();
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
