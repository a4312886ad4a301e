// The yadage language sent by a hostile user (mallory) to a gateway another user (bob) shares: jq
// scripts that crash jq or hog its workers, par_mounts and publishers aimed at the gateway's files
// or memory, subworkflows and selectors that reach for other runs. Each attack is refused with a
// 4xx or fails mallory's own run, with a message naming the limit, while bob's work goes on.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { basic, client, SINGLE_USER, startTestGateway, type TestGateway } from '../support/gateway.js';

type Problems = { valid?: boolean; error?: string; code?: string; errors?: { path: string; message: string }[]; details?: { path: string; message: string }[] };

let gw: TestGateway;
const as = (user: string) => client(gw, basic(user), { timeoutMs: 120_000 });
const mallory = () => as('mallory');

/** A step that runs nothing and publishes nothing (YAML flow). */
const NOOP = '{process: null, environment: null, publisher: {publisher_type: constant-pub, publish: {}}}';

/** A jq string of `n` interpolations: jq's compiler trips over a few thousand of them (an assertion, or memory out of bounds). */
const interpolations = (n: number) => `"${'\\(1)'.repeat(n)}"`;

beforeAll(async () => {
  gw = await startTestGateway({ ...SINGLE_USER, auth: { type: 'simple' }, workflows: { poll_period: 0.2 } }, { prefix: 'af-wf-yadage-' });
});

afterAll(async () => {
  await gw?.close();
});

describe('jq scripts at submission', () => {
  it('refuses with a 422 naming its path (not a 500) a script that crashes jq’s compiler', async () => {
    for (const n of [3000, 4000]) {
      const files = {
        'workflow.yml': `stages:
  - name: a
    dependencies: [init]
    scheduler: {scheduler_type: singlestep-stage, cases: [{if: '${interpolations(n)}', step: ${NOOP}}]}
`,
      };
      const v = await mallory().post('/api/af/workflows/validate', { entry: 'workflow.yml', files });
      expect(v.status, v.text.slice(0, 300)).toBe(200);
      const body = v.json as Problems;
      expect(body.valid).toBe(false);
      expect(body.errors).toEqual([
        {
          path: '$.stages[0].scheduler.cases[0].if',
          message: expect.stringMatching(/^jq script "\S+" does not compile: jq stopped on it \(RuntimeError: [ -~]+\); write it more simply$/),
        },
      ]);
      const r = await mallory().post('/api/af/workflows', { entry: 'workflow.yml', files });
      expect(r.status, r.text.slice(0, 300)).toBe(422);
      expect((r.json as Problems).details![0]!.path).toBe('$.stages[0].scheduler.cases[0].if');
    }
  });
});
