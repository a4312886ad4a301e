// The dashboard proxy against its cluster's owner ("mallory"), who controls what the dashboard
// answers: the owner holds the cluster's TLS pair and API token, so a heartbeat can point the
// dashboard at a server of theirs on the gateway's machine. Whatever it answers, the viewer's
// browser is not sent to another origin by the gateway's own URL, and odd requests get 4xx answers.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import https from 'node:https';
import net from 'node:net';
import { basic, client, heartbeat, request, SINGLE_USER, startTestGateway, waitForCluster, type TestGateway } from '../support/gateway.js';

let gw: TestGateway;
let fake: https.Server;
let name: string;
let capability: string;
const mallory = basic('mallory');

const call = (method: string, path: string, headers: Record<string, string> = {}) => request(gw, method, path, { headers, timeoutMs: 10_000 });

/** A request as written on the wire (fetch sends no body with GET); the answer's status line, or 'no answer'. */
function rawStatus(text: string, ms = 3000): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(gw.port, '127.0.0.1', () => socket.write(text));
    let out = '';
    socket.on('data', (d: Buffer) => (out += d.toString('latin1')));
    const done = () => resolve(out.split('\r\n')[0] || 'no answer');
    socket.on('close', done);
    socket.on('error', done);
    setTimeout(() => socket.destroy(), ms);
  });
}

/** The owner's forged heartbeat: the gateway takes its ports (on loopback), so the dashboard is the fake. */
async function pointDashboardAtFake() {
  const port = (fake.address() as net.AddressInfo).port;
  const hb = await heartbeat(gw, name, {
    scheduler_address: `tls://127.0.0.1:${port}`,
    dashboard_address: `https://127.0.0.1:${port}`,
    api_address: `http://127.0.0.1:${port}`,
  });
  expect(hb.status).toBe(204);
}

beforeAll(async () => {
  gw = await startTestGateway(SINGLE_USER, { prefix: 'af-dash-hostile-' });
  const api = client(gw, mallory);
  name = (await api.expect(201, 'POST', '/api/v1/clusters/', '{}')).json.name as string;
  const c = (await waitForCluster(api, name, 10)) as { status: string; tls_cert: string; tls_key: string };
  expect(c.status).toBe('RUNNING');
  // The owner's own "dashboard", with the cluster's TLS pair (the owner gets it from the API).
  fake = https.createServer({ cert: c.tls_cert, key: c.tls_key }, (req, res) => {
    if (req.url === '/cut') {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100' });
      res.write('short', () => res.destroy());
      return;
    }
    if (req.url?.startsWith('/to/')) {
      res.writeHead(302, { location: decodeURIComponent(req.url.slice(4)) }).end();
      return;
    }
    // like the dashboard's server, it answers once it read the request's body
    req.resume().on('end', () => res.writeHead(200, { 'content-type': 'text/plain' }).end('dashboard'));
  });
  await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
  await pointDashboardAtFake();
  const issued = await call('GET', `/clusters/${name}/status`, mallory);
  capability = issued.headers.get('location')!.split('/')[3]!.slice(1);
  expect((await call('GET', `/clusters/${name}/~${capability}/status`)).text).toBe('dashboard');
});

// the real scheduler's own heartbeats (every few seconds) point the gateway back at its dashboard
beforeEach(pointDashboardAtFake);

afterAll(async () => {
  fake?.close();
  await gw?.close();
});

describe("a hostile owner's dashboard", () => {
  it.each(['//evil.example/a', '\\/evil.example/a', '\\\\evil.example/a', '/\\evil.example/a', 'https://evil.example/a', 'http:evil.example', '/status'])(
    'cannot redirect the viewer to another origin: %s',
    async (target) => {
      const page = `/clusters/${name}/~${capability}/to/${encodeURIComponent(target)}`;
      const r = await call('GET', page);
      const location = r.headers.get('location');
      if (location !== null) {
        // where a browser on the capability page goes (backslashes are slashes in http(s) URLs)
        const landed = new URL(location, gw.url + page);
        expect(landed.origin, location).toBe(new URL(gw.url).origin);
        expect(landed.pathname).toMatch(new RegExp(`^/clusters/${name}/~`));
      }
    },
  );

  it('answers a GET that carries a body instead of hanging on the dashboard', async () => {
    const status = await rawStatus(
      `GET /clusters/${name}/~${capability}/status HTTP/1.1\r\nHost: 127.0.0.1:${gw.port}\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello`,
    );
    expect(status).toBe('HTTP/1.1 200 OK');
  });

  it("ends the viewer's answer when the dashboard cuts its own short", async () => {
    const res = await fetch(`${gw.url}/clusters/${name}/~${capability}/cut`, { signal: AbortSignal.timeout(5000) });
    expect(res.status).toBe(200);
    const error = await res.text().then(
      () => null,
      (err: Error) => err,
    );
    expect(error?.name).not.toBe('TimeoutError');
    expect(error).not.toBeNull();
  });

  it.each(['x%0d%0aSet-Cookie:%20a=b', 'x%E2%82%AC', 'x%00', `${'a'.repeat(20)}%2F..%2F${'b'.repeat(20)}`])(
    'answers a cluster name that cannot be one with 404, not 500: %s',
    async (bad) => {
      for (const headers of [{}, mallory]) {
        const r = await call('GET', `/clusters/${bad}/~${'A'.repeat(60)}/status`, headers);
        expect(r.status).toBe(404);
        expect(r.headers.get('location')).toBeNull();
      }
    },
  );
});
