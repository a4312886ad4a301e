// DNS rebinding against a gateway on loopback (the embedded default, the demo): a page on
// evil.example that re-resolves its name to 127.0.0.1 sends requests whose Host and Origin agree, so
// only the Host name gives it away. It must be refused before anything runs; the gateway's own
// names keep working.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import { basic, SINGLE_USER, startTestGateway, type TestGateway } from '../support/gateway.js';
import { hostName, hostPolicy } from '../../src/api/host-check.js';

let gw: TestGateway;
let port: number;

/** A raw request (fetch may not set Host). */
function send(method: string, path: string, headers: Record<string, string>, body?: string): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method, path, headers: { ...headers, ...(body ? { 'content-type': 'application/json' } : {}) } },
      (res) => {
        let text = '';
        res
          .setEncoding('utf8')
          .on('data', (d: string) => (text += d))
          .on('end', () => resolve({ status: res.statusCode ?? 0, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** The status a WebSocket handshake gets. */
function upgrade(path: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port,
      path,
      headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', ...headers },
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve(res.statusCode ?? 0);
    });
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

const victim = basic('victim');
const bundle = JSON.stringify({
  entry: 'workflow.yml',
  files: {
    'workflow.yml': `stages:
  - name: pwn
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      step: {process: {process_type: string-interpolated-cmd, cmd: id}, publisher: {publisher_type: constant-pub, publish: {}}, environment: {environment_type: localproc-env}}
`,
  },
});

beforeAll(async () => {
  gw = await startTestGateway(SINGLE_USER, { prefix: 'af-host-', env: {} });
  port = Number(new URL(gw.url).port);
});

afterAll(async () => {
  await gw?.close();
});

describe('a gateway on loopback', () => {
  it('refuses a rebound page: Host and Origin of evil.example, a workflow that would run `id`', async () => {
    const evil = { host: `evil.example:${port}`, origin: `http://evil.example:${port}` };
    const r = await send('POST', '/api/af/workflows', { ...victim, ...evil }, bundle);
    expect(r.status).toBe(403);
    expect(r.json).toMatchObject({ code: 'host_not_allowed', error: expect.stringContaining('evil.example') });
    expect((await send('GET', '/api/af/workflows', { ...victim, ...evil })).status).toBe(403);
    expect((await send('GET', '/api/v1/clusters/', { ...victim, host: `rebind.127.0.0.1.nip.example:${port}` })).status).toBe(403);
    expect(await upgrade('/api/af/events', { ...victim, ...evil })).toBe(403);
    // nothing was started: the victim has no run
    const runs = await send('GET', '/api/af/workflows', { ...victim, host: `127.0.0.1:${port}` });
    expect(runs.status).toBe(200);
    expect(JSON.stringify(runs.json)).not.toContain('pwn');
  });

  it('answers to its own names', async () => {
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST.:${port}`, `lab.localhost:${port}`, `[::1]:${port}`]) {
      expect((await send('GET', '/api/v1/clusters/', { ...victim, host })).status, host).toBe(200);
    }
    expect(await upgrade('/api/af/events', { ...victim, host: `127.0.0.1:${port}` })).toBe(101);
  });
});

describe('the policy', () => {
  it('reads Host names as browsers send them', () => {
    expect(hostName('Example.ORG:8000')).toBe('example.org');
    expect(hostName('[::1]:8000')).toBe('::1');
    expect(hostName('a b')).toBeNull();
  });

  it('takes allowed_hosts as given, "*" for any; with none set, checks only a loopback listener', () => {
    const evil = { host: 'evil.example' };
    expect(() => hostPolicy({ allowed_hosts: null, public_url: 'https://af.example.org' }, '127.0.0.1')({ host: 'af.example.org' })).not.toThrow();
    expect(() => hostPolicy({ allowed_hosts: null, public_url: null }, '127.0.0.1')(evil)).toThrow(/allowed_hosts/);
    expect(() => hostPolicy({ allowed_hosts: null, public_url: null }, '0.0.0.0')(evil)).not.toThrow();
    expect(() => hostPolicy({ allowed_hosts: ['af.example.org'], public_url: null }, '0.0.0.0')(evil)).toThrow(/allowed_hosts/);
    expect(() => hostPolicy({ allowed_hosts: ['af.example.org'], public_url: null }, '0.0.0.0')({ host: 'AF.example.org:443' })).not.toThrow();
    expect(() => hostPolicy({ allowed_hosts: ['*'], public_url: null }, '127.0.0.1')(evil)).not.toThrow();
  });
});
