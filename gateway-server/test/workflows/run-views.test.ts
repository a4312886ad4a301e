// The wire views of runs (run-views.ts): what a run, a stage and a step look like to the API and the
// event stream, and that the engine's own fields (handles, interpreters) stay inside.
import { describe, expect, it } from 'vitest';
import { countsOf, dagJson, edgesOf, nodeJson, runJson, stageJson } from '../../src/workflows/run-views.js';
import type { NodeRecord, RunRecord } from '../../src/workflows/model.js';

const run: RunRecord = {
  id: 'abcdef012345',
  name: 'fits',
  username: 'alice',
  groups: [],
  status: 'RUNNING',
  backend: 'local',
  created: 1000,
  finished: null,
  message: '',
  entry: 'fits/wf.yml',
  spec: { stages: [] } as unknown as RunRecord['spec'],
  parameters: { n: 2 },
  retries: 0,
  maxParallel: 4,
  workspace: '/w/abcdef012345',
  stages: [
    { name: 'init', type: 'init', dependencies: [], state: 'APPLIED' },
    { name: 'fan', type: 'multistep-stage', dependencies: ['init'], state: 'APPLIED' },
    { name: 'sum', type: 'singlestep-stage', dependencies: ['fan'], state: 'WAITING', message: '' },
  ],
  cancelRequested: null,
};

function node(id: string, stage: string, state: NodeRecord['state'], outputs: Record<string, unknown> = {}, extra: Partial<NodeRecord> = {}): NodeRecord {
  return {
    id,
    seq: 0,
    stage,
    index: null,
    state,
    parameters: {},
    outputs,
    after: [],
    workdir: `/w/${id}`,
    attempts: 0,
    exit_code: null,
    started: null,
    finished: null,
    handle: null,
    ...extra,
  };
}

describe('run views', () => {
  it('a run: counts without the init node, outputs of the last applied stages gathered per key', () => {
    const nodes = [
      node('init', 'init', 'SUCCESS', { n: 2 }),
      node('fan:0', 'fan', 'SUCCESS', { x: 1, y: 'a' }, { after: ['init'] }),
      node('fan:1', 'fan', 'SUCCESS', { x: 2 }, { after: ['init'] }),
      node('fan:2', 'fan', 'FAILED'),
    ];
    const r = runJson({ ...run, stages: run.stages.slice(0, 2) }, nodes);
    expect(r).toEqual({
      id: 'abcdef012345',
      name: 'fits',
      owner: 'alice',
      status: 'RUNNING',
      backend: 'local',
      created: 1000,
      finished: null,
      entry: 'fits/wf.yml',
      parameters: { n: 2 },
      counts: { DEFINED: 0, RUNNING: 0, SUCCESS: 2, FAILED: 1, CANCELLED: 0 },
      stages_total: 1,
      stages_applied: 1,
      workspace: '/w/abcdef012345',
      outputs: { fan: { x: [1, 2], y: ['a', undefined] } },
    });
    // a stage others depend on is not an output; a message only when there is one
    expect(runJson({ ...run, message: 'why' }, nodes)).toMatchObject({ message: 'why', outputs: {}, stages_total: 2 });
    // counted from the engine's per-state ids, the init node left out
    expect(countsOf({ DEFINED: new Set(['a']), RUNNING: new Set(), SUCCESS: new Set(['init', 'b']), FAILED: new Set(), CANCELLED: new Set() })).toEqual({
      DEFINED: 1,
      RUNNING: 0,
      SUCCESS: 1,
      FAILED: 0,
      CANCELLED: 0,
    });
  });

  it('a step: the wire fields only, optional ones when set', () => {
    const n = node(
      'sum',
      'sum',
      'RUNNING',
      {},
      { command: 'echo', interpreter: 'sh', handle: { kind: 'local', pid: 1 } as unknown as NodeRecord['handle'], job: 'process 1', message: '' },
    );
    const j = nodeJson(n);
    expect(Object.keys(j).sort()).toEqual([
      'attempts',
      'command',
      'exit_code',
      'finished',
      'id',
      'index',
      'job',
      'outputs',
      'parameters',
      'stage',
      'started',
      'state',
      'workdir',
    ]);
    expect(stageJson(run.stages[2]!)).toEqual({ name: 'sum', type: 'singlestep-stage', dependencies: ['fan'], state: 'WAITING' });
  });

  it('a DAG: the run, its stages, the nodes given and their edges', () => {
    const nodes = [node('init', 'init', 'SUCCESS'), node('fan:0', 'fan', 'DEFINED', {}, { after: ['init'] })];
    const d = dagJson(runJson(run, nodes), run.stages, nodes, edgesOf(nodes));
    expect(Object.keys(d)).toEqual(['run', 'stages', 'nodes', 'edges']);
    expect(d.edges).toEqual([{ from: 'init', to: 'fan:0' }]);
    expect(d.nodes.map((x) => x.id)).toEqual(['init', 'fan:0']);
  });
});
