// Route validators are compiled on a route's first request (ccf90a5). Mallory's requests are the
// first a fresh gateway sees: many at once, hostile bodies (wrong types, prototype keys, deep
// nesting, a huge array) mixed with good ones. Every request must get its own verdict, the errors of
// one never in another's answer, and the route must validate as well afterwards as it did at first.
// The routes answer a valid body for a cluster that does not exist with a 403/404 (past validation),
// an invalid one with a 422 naming what is wrong.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { basic, request, startTestGateway, type TestGateway } from '../support/gateway.js';

let gw: TestGateway;
const mallory = basic('mallory', 'pw-lazy');

beforeAll(async () => {
  gw = await startTestGateway({ auth: { type: 'simple', simple: { password: 'pw-lazy' } } }, { prefix: 'af-lazy-validator-' });
});
afterAll(async () => {
  await gw?.close();
});

const deep = (n: number): unknown => (n === 0 ? 1 : { count: deep(n - 1) });

/** [path, body, the verdict: 'valid', 'malformed' (a 400: prototype keys are refused while parsing), or a pattern the 422's error must match] */
const cases: [string, string, 'valid' | 'malformed' | RegExp][] = [
  ['scale', '{"count": 2}', 'valid'],
  ['scale', '{"count": "2"}', /count/],
  ['scale', '{"count": -1}', /count/],
  ['scale', '{"__proto__": {"count": 2}}', 'malformed'],
  ['scale', '{"constructor": {"prototype": {"count": 2}}}', 'malformed'],
  ['scale', JSON.stringify(deep(2000)), /count/],
  ['scale', JSON.stringify({ count: Array.from({ length: 100_000 }, () => 1) }), /count/],
  ['adapt', '{"minimum": 1, "maximum": 2}', 'valid'],
  ['adapt', '{"minimum": "x", "maximum": 2}', /minimum/],
  ['adapt', '{"minimum": 1, "maximum": {"__proto__": null}}', 'malformed'],
  ['adapt', '{"minimum": 1, "maximum": [2]}', /maximum/],
];

describe('validators compiled on first use, raced by hostile first requests', () => {
  it('give each request its own verdict, first and later', async () => {
    for (let round = 0; round < 2; round++) {
      const sent = Array.from({ length: 5 }, () => cases).flat();
      const answers = await Promise.all(
        sent.map(([route, body]) =>
          request(gw, 'POST', `/api/v1/clusters/0123456789abcdef0123456789abcdef/${route}`, { headers: mallory, body, timeoutMs: 30_000 }),
        ),
      );
      answers.forEach((r, i) => {
        const [route, body, verdict] = sent[i]!;
        const what = `round ${round + 1}, ${route} ${body.slice(0, 60)}: ${r.status} ${r.text.slice(0, 200)}`;
        if (verdict === 'valid') {
          expect([403, 404], what).toContain(r.status);
        } else if (verdict === 'malformed') {
          expect(r.status, what).toBe(400);
        } else {
          expect(r.status, what).toBe(422);
          expect(String(r.json.error), what).toMatch(verdict);
          // another request's error is not in this one's answer
          const others = route === 'scale' ? /minimum|maximum/ : /count/;
          expect(String(r.json.error), what).not.toMatch(others);
        }
      });
    }
    // the gateway still answers, and no prototype took mallory's keys
    expect((await request(gw, 'GET', '/api/health')).status).toBe(200);
    expect(({} as Record<string, unknown>).count).toBeUndefined();
  });
});
