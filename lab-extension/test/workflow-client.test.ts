// The workflow calls of the API client and the Workflows/DAG models against a real gateway whose
// engine runs the map-reduce example's steps as local processes; the DAG model follows the run
// through the event stream's deltas alone.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GatewayError } from '../src/api/gateway-client';
import { until } from './until';
import { useRealGateway } from './real-gateway';
import { DagModel } from '../src/panels/workflows/dag-model';
import { countsByStage, totalCounts } from '../src/panels/workflows/dag-state';
import { collectBundle, runRequest, workspacePath } from '../src/panels/workflows/workflow-bundle';
import { WorkflowsModel } from '../src/panels/workflows/workflows-model';
import { GatewaySession } from '../src/session/gateway-session';

const EXAMPLE = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'examples', 'workflows', 'map-reduce');

const gw = useRealGateway('af-lab-workflows-');
const { clientFor, socketsFor } = gw;

describe('workflows through the API client', () => {
  it('checks a bundle: the init parameters it reads, or each problem at its path', async () => {
    const client = clientFor('wanda');
    const bundle = await collectBundle('map-reduce/workflow.yml', async (p) => readFileSync(join(EXAMPLE, '..', p), 'utf8'));
    expect(Object.keys(bundle.files).sort()).toEqual(['steps.yml', 'workflow.yml']);
    const ok = await client.validateWorkflow({ entry: bundle.entry, files: bundle.files });
    expect(ok).toMatchObject({ valid: true, stages: ['acquire', 'map', 'reduce'], parameters: ['nfiles'] });
    const bad = await client.validateWorkflow({ entry: bundle.entry, files: { 'workflow.yml': bundle.files['workflow.yml']! } });
    expect(bad.valid).toBe(false);
    expect(bad.errors[0]).toMatchObject({ path: expect.stringMatching(/^\$\.stages\[0\]/), message: expect.stringContaining('steps.yml') });
    // submitting it anyway: a 422 whose details name the problems
    const refused = await client
      .submitWorkflow({ entry: bundle.entry, files: { 'workflow.yml': bundle.files['workflow.yml']! }, parameters: { nfiles: 2 } })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(GatewayError);
    expect(refused).toMatchObject({ status: 422, code: 'invalid_workflow' });
    expect((refused as GatewayError).details.length).toBeGreaterThan(0);
    const missing = await client.submitWorkflow({ entry: bundle.entry, files: bundle.files }).catch((e: unknown) => e);
    expect(missing).toMatchObject({ status: 422, code: 'missing_parameters', message: expect.stringContaining('nfiles') });
  });

  it('runs map-reduce; the DAG model follows it from the event stream to SUCCESS', async () => {
    const client = clientFor('wanda');
    const session = new GatewaySession(client, undefined, { socketFactory: socketsFor('wanda') }); // opens the event stream
    const runs = new WorkflowsModel(session);
    await session.start();
    await runs.start();
    expect(runs.connection).toBe('connected');
    expect(runs.backends).toEqual(['local']); // where this gateway runs steps, from connect-info
    try {
      const bundle = await collectBundle('map-reduce/workflow.yml', async (p) => readFileSync(join(EXAMPLE, '..', p), 'utf8'));
      const run = await runs.submit(runRequest(bundle, { parameters: { nfiles: '3' }, name: 'mr-test', backend: '', retries: '' }));
      expect(run).toMatchObject({ name: 'mr-test', parameters: { nfiles: 3 } });
      expect(runs.get(run.id)).toBeDefined();
      const dag = new DagModel(run.id, runs);
      await dag.load();
      await until(
        dag.changed,
        () => dag.state?.run.status === 'SUCCESS',
        () => `run: ${JSON.stringify(dag.state?.run)}`,
      );
      const state = dag.state!;
      expect(state.byStage.get('map')).toHaveLength(3);
      expect(totalCounts(countsByStage(state))).toEqual({ DEFINED: 0, RUNNING: 0, SUCCESS: 5, FAILED: 0, CANCELLED: 0 });
      expect(state.stages.map((s) => [s.name, s.state])).toEqual([
        ['init', 'APPLIED'],
        ['acquire', 'APPLIED'],
        ['map', 'APPLIED'],
        ['reduce', 'APPLIED'],
      ]);
      // what the stream delivered is what a fresh load shows
      const fresh = await client.getWorkflow(run.id);
      expect(fresh.nodes.map((n) => [n.id, n.state]).sort()).toEqual([...state.nodes.values()].map((n) => [n.id, n.state]).sort());
      expect(state.edges.length).toBe(fresh.edges.length);
      expect(runs.get(run.id)?.status).toBe('SUCCESS');

      // a step's log, and an output file through the files route
      let log = '';
      for await (const chunk of client.workflowLog(run.id, 'map:1', false)) log += chunk;
      expect(log).toContain('map:1');
      const count = state.nodes.get('map:1')!.outputs.count;
      const rel = workspacePath(state.run.workspace, count);
      expect(rel).not.toBeNull();
      expect((await (await client.workflowFile(run.id, rel!)).text()).trim()).toBe('2'); // part2.txt holds "1 2"

      // finished: retry has nothing to do, delete removes it
      await runs.remove(run.id);
      expect(runs.get(run.id)).toBeUndefined();
      await expect(client.getWorkflow(run.id)).rejects.toMatchObject({ status: 404 });
      dag.dispose();
    } finally {
      runs.dispose();
      session.dispose();
    }
  }, 120_000);
});
