// How refusals look on the wire, for the route families whose tests do not already say so, answered
// in process (inject: no sockets): every error is {"error", "code", "request_id"} with the status
// the clients map. Unknown routes, bodies that are not JSON or too large, unknown things of the
// AF API (clusters, runs, Rucio instances), and the schema's word for a bad body.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { basic, SINGLE_USER, startTestGateway, type TestGateway } from '../support/gateway.js';

let gw: TestGateway;
const alice = basic('alice');

const inject = async (method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, opts: { payload?: string; contentType?: string } = {}) => {
  const r = await gw.inject({
    method,
    url,
    headers: { ...alice, ...(opts.payload === undefined ? {} : { 'content-type': opts.contentType ?? 'application/json' }) },
    payload: opts.payload,
  });
  return { status: r.statusCode, type: String(r.headers['content-type']), body: r.json() as { error: string; code: string; request_id: string } };
};

beforeAll(async () => {
  gw = await startTestGateway(SINGLE_USER, { prefix: 'af-errors-' });
});

afterAll(async () => {
  await gw?.close();
});

describe('every refusal is JSON with a message, a code and the request id', () => {
  it('an unknown route: 404 not_found naming method and path (without the query)', async () => {
    const r = await inject('GET', '/api/af/no-such-thing?x=1');
    expect(r.status).toBe(404);
    expect(r.type).toMatch(/^application\/json/);
    expect(r.body).toEqual({ error: 'No route GET /api/af/no-such-thing', code: 'not_found', request_id: expect.any(String) });
    expect(r.body.request_id).not.toBe('');
  });

  it('a body that is not JSON: 400 malformed_body, on the AF API and the token routes alike', async () => {
    for (const [method, url] of [
      ['POST', '/api/af/workflows'],
      ['POST', '/api/af/workflows/validate'],
      ['PUT', '/api/af/token/refresh-token'],
    ] as const) {
      const r = await inject(method, url, { payload: '{"entry": ' });
      expect([url, r.status, r.body.code]).toEqual([url, 400, 'malformed_body']);
      expect(r.body.error).toMatch(/^Malformed JSON body: /);
    }
  });

  it('a body of another media type: 415 unsupported_media_type', async () => {
    const r = await inject('POST', '/api/af/workflows/validate', { payload: 'entry=workflow.yml', contentType: 'application/x-www-form-urlencoded' });
    expect([r.status, r.body.code]).toEqual([415, 'unsupported_media_type']);
  });

  it('a body over the limit (1 MiB): 413 body_too_large, before anything reads it as a workflow', async () => {
    const r = await inject('POST', '/api/af/workflows/validate', { payload: JSON.stringify({ entry: 'w.yml', files: { 'w.yml': 'x'.repeat(1024 * 1024) } }) });
    expect([r.status, r.body.code]).toEqual([413, 'body_too_large']);
  });

  it('a body the schema refuses: 422 invalid_request naming the field', async () => {
    const r = await inject('POST', '/api/af/workflows/validate', { payload: JSON.stringify({ entry: 1, files: {} }) });
    expect([r.status, r.body.code]).toEqual([422, 'invalid_request']);
    expect(r.body.error).toMatch(/^Invalid request body: .*entry/);
  });
});

describe('unknown things of the AF API are 404s that say what was not found', () => {
  it('a run id that cannot be one: 422 invalid_request', async () => {
    const r = await inject('GET', '/api/af/workflows/no-such-run');
    expect([r.status, r.body.code]).toEqual([422, 'invalid_request']);
  });

  it.each([
    ['Cluster 0123456789abcdef0123456789abcdef', '/api/af/clusters/0123456789abcdef0123456789abcdef'],
    ['Workflow run 0123456789ab', '/api/af/workflows/0123456789ab'],
    ['Rucio instance nowhere', '/api/af/rucio/nowhere/scopes'],
  ])('%s', async (what, url) => {
    const r = await inject('GET', url);
    expect(r.status).toBe(404);
    expect(r.body).toEqual({ error: expect.stringMatching(new RegExp(`^${what}\\b.*not found$`)), code: 'not_found', request_id: expect.any(String) });
  });
});
