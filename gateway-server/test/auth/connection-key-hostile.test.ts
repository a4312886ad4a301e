// The credential cache's key is remembered with the keep-alive connection that carried the header
// (1a26297). A proxy in front of the gateway (JupyterHub's, an ingress) carries many users'
// requests over one upstream connection, and mallory may send what she likes on her own. On one
// connection: alice, then mallory, then a wrong password for alice, then a bare request, then alice
// again; each is who its own header says (or refused), never the connection's previous caller.
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { basic, startTestGateway, type TestGateway } from '../support/gateway.js';

const PASSWORD = 'pw-connection-key';
let gw: TestGateway;
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

beforeAll(async () => {
  gw = await startTestGateway({ auth: { type: 'simple', simple: { password: PASSWORD } } }, { prefix: 'af-conn-key-' });
});
afterAll(async () => {
  agent.destroy();
  await gw?.close();
});

interface Answer {
  status: number;
  user?: string;
  cookie?: string;
  reused: boolean;
  socket: unknown;
}

function get(headers: Record<string, string>): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${gw.url}/api/af/token`, { agent, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        const user = res.statusCode === 200 ? (JSON.parse(body) as { user: string }).user : undefined;
        resolve({ status: res.statusCode!, user, cookie: res.headers['set-cookie']?.[0]?.split(';')[0], reused: req.reusedSocket, socket: req.socket });
      });
    });
    req.on('error', reject);
    req.setTimeout(20_000, () => req.destroy(new Error('no answer in 20 s')));
  });
}

describe('one keep-alive connection carrying several callers', () => {
  it('identifies each request by its own header, never by what the connection carried before', async () => {
    const alice = basic('alice', PASSWORD);
    const mallory = basic('mallory', PASSWORD);
    const aliceWrong = basic('alice', 'not-the-password');
    const answers: Answer[] = [];
    for (let round = 0; round < 3; round++) {
      answers.push(await get(alice));
      answers.push(await get(mallory));
      answers.push(await get(aliceWrong));
      answers.push(await get({}));
      answers.push(await get({ authorization: `${alice.authorization} ` })); // a header differing by a space
    }
    // all on one connection (the case the cache key per connection serves)
    expect(answers.slice(1).every((a) => a.reused && a.socket === answers[0]!.socket)).toBe(true);
    for (let round = 0; round < 3; round++) {
      const [a, m, wrong, bare, spaced] = answers.slice(round * 5, round * 5 + 5);
      expect([a!.status, a!.user]).toEqual([200, 'alice']);
      expect([m!.status, m!.user]).toEqual([200, 'mallory']);
      expect(m!.cookie).not.toBe(a!.cookie);
      expect(wrong!.status).toBe(401);
      expect(wrong!.cookie).toBeUndefined();
      expect(bare!.status).toBe(401);
      expect(spaced!.user === undefined || spaced!.user === 'alice').toBe(true);
    }
  });

  it('identifies each request by its own session cookie too (1bb238e), never by the cookie the connection carried before', async () => {
    const aliceCookie = (await get(basic('alice', PASSWORD))).cookie!;
    const malloryCookie = (await get(basic('mallory', PASSWORD))).cookie!;
    expect(aliceCookie).toMatch(/^af-gateway-session=/);
    expect(malloryCookie).not.toBe(aliceCookie);
    const forged = `${aliceCookie.slice(0, -2)}xx`;
    for (let round = 0; round < 3; round++) {
      const a = await get({ cookie: aliceCookie });
      const m = await get({ cookie: malloryCookie });
      const f = await get({ cookie: forged });
      const other = await get({ cookie: `other=1; ${malloryCookie}` });
      const none = await get({ cookie: 'other=1' });
      expect([a.status, a.user]).toEqual([200, 'alice']);
      expect([m.status, m.user]).toEqual([200, 'mallory']);
      expect(f.status).toBe(401);
      expect([other.status, other.user]).toEqual([200, 'mallory']);
      expect(none.status).toBe(401);
      expect([a, m, f, other, none].every((x) => x.reused)).toBe(true);
    }
  });
});
