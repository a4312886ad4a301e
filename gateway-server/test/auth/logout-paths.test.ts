// A logout behind JupyterHub's base path: the gateway answers both under /services/af-gateway/ and
// at / (reached directly), and scopes its cookie to the path the request came by, so one browser
// can hold a session cookie for each path (cookies do not tell ports apart either). The browser sends
// both under the base path, the base path's first. A logout must end the browser's login whichever
// path it came by: every session cookie it carries is ended, and the cookie is cleared on both paths,
// so the other path's cookie does not keep the browser logged in after "log out".
import { afterAll, beforeAll, expect, it } from 'vitest';
import { basic, SINGLE_USER, startTestGateway, type TestGateway } from '../support/gateway.js';

let gw: TestGateway;
const BASE = '/services/af-gateway';

beforeAll(async () => {
  gw = await startTestGateway({ ...SINGLE_USER, base_path: `${BASE}/` }, { prefix: 'af-logout-paths-' });
});

afterAll(async () => {
  await gw?.close();
});

/** A session of alice's opened by `path` (two different credentials of hers: two sessions). */
async function sessionCookie(path: string, password: string): Promise<string> {
  const r = await fetch(`${gw.url}${path}`, { headers: basic('alice', password) });
  expect(r.status).toBe(200);
  return r.headers.get('set-cookie')!.split(';')[0]!;
}

const whoAmI = async (path: string, cookie: string) => {
  const r = await fetch(`${gw.url}${path}`, { headers: { cookie } });
  return r.status === 200 ? ((await r.json()) as { user: string }).user : r.status;
};

const logout = (path: string, cookie: string) => fetch(`${gw.url}${path}`, { method: 'POST', headers: { cookie } });

it("under the base path, ends the browser's sessions of both paths and clears the cookie on both", async () => {
  const atRoot = await sessionCookie('/api/af/clusters', 'one');
  const underBase = await sessionCookie(`${BASE}/api/af/clusters`, 'two');
  expect(atRoot).not.toBe(underBase);
  // what the browser sends under the base path: the longer path's cookie first
  const both = `${underBase}; ${atRoot}`;
  expect(await whoAmI(`${BASE}/api/af/token`, both)).toBe('alice');

  const out = await logout(`${BASE}/api/af/logout`, both);
  expect(out.status).toBe(204);
  // A browser that kept the other path's cookie anyway is not logged in by it, on either path.
  expect(await whoAmI(`${BASE}/api/af/token`, atRoot)).toBe(401);
  expect(await whoAmI('/api/af/token', atRoot)).toBe(401);
  expect(await whoAmI(`${BASE}/api/af/token`, underBase)).toBe(401);
  expect(out.headers.getSetCookie()).toEqual(
    expect.arrayContaining([
      expect.stringMatching(/^af-gateway-session=; Path=\/services\/af-gateway\/;.*Max-Age=0/),
      expect.stringMatching(/^af-gateway-session=; Path=\/;.*Max-Age=0/),
    ]),
  );
});

it("at /, clears the base path's cookie too (the browser does not send it there)", async () => {
  const atRoot = await sessionCookie('/api/af/clusters', 'three');
  const out = await logout('/api/af/logout', atRoot);
  expect(out.status).toBe(204);
  const cleared = out.headers.getSetCookie();
  expect(cleared).toEqual(
    expect.arrayContaining([
      expect.stringMatching(/^af-gateway-session=; Path=\/;.*Max-Age=0/),
      expect.stringMatching(/^af-gateway-session=; Path=\/services\/af-gateway\/;.*Max-Age=0/),
    ]),
  );
  expect(await whoAmI('/api/af/token', atRoot)).toBe(401);
});
