// One user cannot fill the gateway with workflow runs: beyond workflows.max_active_runs_per_user
// (10 unless configured, the embedded default included) a submission or a retry is a 429 naming the
// key, parallel submissions included; other users are not affected, and a finished run frees a place.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WorkflowDag, WorkflowRun } from '@af-gateway/schemas';
import { loadConfigFile, resolveConfig } from '../../src/config.js';
import { basic, client, SINGLE_USER, startTestGateway, waitForRun, type TestGateway } from '../support/gateway.js';

type ErrorBody = { error: string; code: string };

let gw: TestGateway;

async function call<T>(method: string, path: string, body: unknown, user: string): Promise<{ status: number; body: T }> {
  const r = await client(gw, basic(user), { timeoutMs: 20_000 }).call(method, `/api/af/workflows${path}`, body);
  return { status: r.status, body: r.json as T };
}

const sleeper = {
  entry: 'wf.yml',
  files: {
    'wf.yml': `stages:
  - name: wait
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      step: {process: {process_type: string-interpolated-cmd, cmd: 'sleep 60'}, publisher: {publisher_type: constant-pub, publish: {}}, environment: {environment_type: localproc-env}}
`,
  },
};

const finished = (id: string, user: string): Promise<WorkflowDag> =>
  waitForRun(client(gw, basic(user), { timeoutMs: 20_000 }), id, { timeoutMs: 20_000, pollMs: 100 });

beforeAll(async () => {
  gw = await startTestGateway(
    { ...SINGLE_USER, auth: { type: 'simple' }, workflows: { poll_period: 0.2, max_active_runs_per_user: 2 } },
    { prefix: 'af-wf-cap-' },
  );
});

afterAll(async () => {
  for (const user of ['mallory', 'bob']) {
    const { body } = await call<{ runs: WorkflowRun[] }>('GET', '', undefined, user);
    for (const r of body.runs) if (r.status === 'RUNNING') await call('POST', `/${r.id}/cancel`, undefined, user);
  }
  await gw?.close();
});

describe('runs per user', () => {
  it("caps a user's unfinished runs by default (the embedded configuration too)", () => {
    expect(loadConfigFile(undefined).workflows.max_active_runs_per_user).toBe(10);
    expect(resolveConfig({}).workflows.max_active_runs_per_user).toBe(10);
  });

  it("refuses a user's submissions beyond workflows.max_active_runs_per_user with 429, parallel ones included", async () => {
    const answers = await Promise.all(Array.from({ length: 5 }, () => call<WorkflowRun & ErrorBody>('POST', '', sleeper, 'mallory')));
    const ok = answers.filter((a) => a.status === 201);
    const refused = answers.filter((a) => a.status !== 201);
    expect(ok).toHaveLength(2);
    expect(refused.map((a) => a.status)).toEqual([429, 429, 429]);
    expect(refused[0]!.body.code).toBe('limit_workflow_runs');
    expect(refused[0]!.body.error).toBe(
      'User mallory has 2 workflow runs going and may have 2 at once (workflows.max_active_runs_per_user); wait for one to finish or cancel one',
    );
    // nothing was made for the refused ones
    expect((await call<{ runs: WorkflowRun[] }>('GET', '', undefined, 'mallory')).body.runs).toHaveLength(2);

    // another user is not affected
    const bob = await call<WorkflowRun>('POST', '', sleeper, 'bob');
    expect(bob.status).toBe(201);

    // a cancelled run frees its place; its retry then counts again
    const first = ok[0]!.body.id;
    expect((await call('POST', `/${first}/cancel`, undefined, 'mallory')).status).toBe(200);
    await finished(first, 'mallory');
    const third = await call<WorkflowRun>('POST', '', sleeper, 'mallory');
    expect(third.status).toBe(201);
    const retry = await call<ErrorBody>('POST', `/${first}/retry`, undefined, 'mallory');
    expect([retry.status, retry.body.code]).toEqual([429, 'limit_workflow_runs']);
  });
});
