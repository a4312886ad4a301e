// Pure parts of the Workflows panel and DAG view: merging the stream's deltas, placing stages and
// nodes, grouping edges, the run form's values and the $ref files a workflow brings along.
import { describe, expect, it } from 'vitest';
import ELK from 'elkjs/lib/elk.bundled.js';
import type { WorkflowDag, WorkflowNode, WorkflowRun, WorkflowState } from '@af-gateway/schemas';
import type { GatewayClient } from '../src/api/gateway-client';
import { countsByStage, createDagState, type DagStage, mergeDag, stageOfNodeId, totalCounts } from '../src/panels/workflows/dag-state';
import { GEOMETRY, gridShape, layoutDag, nodeAt, nodeRect, stageAt, stageEdges, stageSize, visibleCells } from '../src/panels/workflows/dag-layout';
import { DagModel } from '../src/panels/workflows/dag-model';
import { cellsIn, nodeMarkup, paintNodes } from '../src/panels/workflows/dag-nodes';
import { stageCountsText } from '../src/panels/workflows/dag-renderer';
import {
  collectBundle,
  defaultRunName,
  isWorkflowFile,
  joinRelative,
  parseParameterValue,
  refTargets,
  runRequest,
  validateRunForm,
  workspacePath,
} from '../src/panels/workflows/workflow-bundle';
import { countSegments, WorkflowsModel } from '../src/panels/workflows/workflows-model';
import { GatewaySession } from '../src/session/gateway-session';

const run = (over: Partial<WorkflowRun> = {}): WorkflowRun => ({
  id: 'r1',
  name: 'map-reduce',
  owner: 'alice',
  status: 'RUNNING',
  backend: 'local',
  created: 1_800_000_000_000,
  entry: 'workflow.yml',
  parameters: { nfiles: 5 },
  counts: { DEFINED: 0, RUNNING: 0, SUCCESS: 0, FAILED: 0, CANCELLED: 0 },
  workspace: '/data/workflows/r1',
  ...over,
});

const node = (id: string, state: WorkflowState = 'DEFINED', over: Partial<WorkflowNode> = {}): WorkflowNode => {
  const stage = stageOfNodeId(id);
  const index = id.includes(':') ? Number(id.split(':').pop()) : null;
  return { id, stage, index, state, parameters: {}, outputs: {}, attempts: 0, ...over };
};

const STAGES: DagStage[] = [
  { name: 'init', type: 'init', dependencies: [], state: 'APPLIED' },
  { name: 'acquire', type: 'singlestep-stage', dependencies: ['init'], state: 'APPLIED' },
  { name: 'map', type: 'multistep-stage', dependencies: ['acquire'], state: 'WAITING' },
  { name: 'reduce', type: 'singlestep-stage', dependencies: ['map'], state: 'WAITING' },
];

const dag = (over: Partial<WorkflowDag> = {}): WorkflowDag => ({
  run: run(),
  stages: STAGES,
  nodes: [node('init', 'SUCCESS'), node('acquire', 'RUNNING')],
  edges: [{ from: 'init', to: 'acquire' }],
  ...over,
});

const withStage = (name: string, state: DagStage['state']) => STAGES.map((s) => (s.name === name ? { ...s, state } : s));

describe('merging the event stream deltas', () => {
  it('merges nodes by id, adds only new edges and replaces the stages', () => {
    const state = createDagState(dag());
    expect(state.nodes.size).toBe(2);
    // a state change only: no layout needed
    expect(mergeDag(state, dag({ nodes: [node('acquire', 'SUCCESS')], edges: [] }))).toEqual({ structure: false, nodes: 1 });
    expect(state.nodes.get('acquire')?.state).toBe('SUCCESS');
    // the map stage applied: five new nodes, their edges, new stage states
    const mapNodes = [0, 1, 2, 3, 4].map((i) => node(`map:${i}`));
    const change = mergeDag(state, dag({ stages: withStage('map', 'APPLIED'), nodes: mapNodes, edges: mapNodes.map((n) => ({ from: 'acquire', to: n.id })) }));
    expect(change.structure).toBe(true);
    expect(state.byStage.get('map')).toHaveLength(5);
    expect(state.edges).toHaveLength(6);
    // an edge sent again is not added twice
    mergeDag(state, dag({ nodes: [], edges: [{ from: 'acquire', to: 'map:0' }] }));
    expect(state.edges).toHaveLength(6);
    mergeDag(state, dag({ nodes: [node('map:3', 'FAILED', { attempts: 2 })], edges: [] }));
    expect(state.byStage.get('map')?.[3]?.state).toBe('FAILED');
    const counts = countsByStage(state);
    expect(counts.get('map')).toEqual({ DEFINED: 4, RUNNING: 0, SUCCESS: 0, FAILED: 1, CANCELLED: 0 });
    // init is no step
    expect(totalCounts(counts)).toEqual({ DEFINED: 4, RUNNING: 0, SUCCESS: 1, FAILED: 1, CANCELLED: 0 });
  });

  it('takes the run of every delta', () => {
    const state = createDagState(dag());
    mergeDag(state, dag({ run: run({ status: 'SUCCESS' }), nodes: [], edges: [] }));
    expect(state.run.status).toBe('SUCCESS');
  });

  it('names node ids by stage', () => {
    expect(stageOfNodeId('init')).toBe('init');
    expect(stageOfNodeId('map:12')).toBe('map');
    expect(stageOfNodeId('a:b')).toBe('a:b');
  });
});

describe('DagModel', () => {
  it('keeps deltas that come while it loads and merges them after', async () => {
    let answer: (d: WorkflowDag) => void = () => undefined;
    const client = { getWorkflow: () => new Promise<WorkflowDag>((r) => (answer = r)), listWorkflows: async () => ({ runs: [] }) } as unknown as GatewayClient;
    const events = new GatewaySession(client);
    const runs = new WorkflowsModel(events);
    const model = new DagModel('r1', runs);
    const loading = model.load();
    events.dispatch({ type: 'workflow-dag', dag: dag({ nodes: [node('acquire', 'SUCCESS')], edges: [] }) });
    events.dispatch({ type: 'workflow-dag', dag: dag({ run: run({ id: 'other' }), nodes: [node('x', 'FAILED')], edges: [] }) });
    answer(dag());
    await loading;
    expect(model.phase).toBe('ready');
    expect(model.node('acquire')?.state).toBe('SUCCESS');
    expect(model.node('x')).toBeUndefined();
    const structure = model.structureVersion;
    events.dispatch({ type: 'workflow-dag', dag: dag({ nodes: [node('acquire', 'FAILED')], edges: [] }) });
    expect(model.node('acquire')?.state).toBe('FAILED');
    expect(model.structureVersion).toBe(structure);
    // the runs list follows the deltas' runs too
    expect(runs.get('r1')?.status).toBe('RUNNING');
    model.dispose();
  });
});

describe('placing stages and nodes', () => {
  it('makes a column for few steps and a squarish grid for many', () => {
    expect(gridShape('singlestep-stage', 1)).toEqual({ cols: 1, rows: 1 });
    expect(gridShape('multistep-stage', 5)).toEqual({ cols: 1, rows: 5 });
    const big = gridShape('multistep-stage', 5000);
    expect(big.cols * big.rows).toBeGreaterThanOrEqual(5000);
    const size = stageSize('multistep-stage', 5000);
    expect(size.width / size.height).toBeGreaterThan(0.6);
    expect(size.width / size.height).toBeLessThan(1.6);
    expect(stageSize('multistep-stage', 0)).toMatchObject({ width: GEOMETRY.minW, cols: 0 });
  });

  it('lays out the stages left to right with ELK and puts each node in its stage', async () => {
    const slots = new Map([
      ['init', 1],
      ['acquire', 1],
      ['map', 5],
      ['reduce', 1],
    ]);
    const layout = await layoutDag(withStage('map', 'APPLIED'), slots, new ELK());
    const b = (n: string) => layout.stages.get(n)!;
    expect(b('init').x).toBeLessThan(b('acquire').x);
    expect(b('acquire').x + b('acquire').width).toBeLessThan(b('map').x);
    expect(b('map').x + b('map').width).toBeLessThan(b('reduce').x);
    for (let i = 0; i < 5; i++) {
      const r = nodeRect(b('map'), i);
      expect(r.x).toBeGreaterThanOrEqual(b('map').x);
      expect(r.y + r.height).toBeLessThanOrEqual(b('map').y + b('map').height);
      // a click in the middle of a node finds it, by arithmetic
      expect(stageAt(layout, r.x + 5, r.y + 5)?.name).toBe('map');
      expect(nodeAt(b('map'), r.x + r.width / 2, r.y + r.height / 2)).toBe(i);
    }
    expect(nodeAt(b('map'), b('map').x + 1, b('map').y + 1)).toBeNull(); // the header
    expect(layout.width).toBeGreaterThan(b('reduce').x);
  });

  it('draws a waiting stage as an empty box', async () => {
    const layout = await layoutDag(
      STAGES,
      new Map([
        ['init', 1],
        ['acquire', 1],
      ]),
      new ELK(),
    );
    expect(layout.stages.get('map')).toMatchObject({ slots: 0, state: 'WAITING', width: GEOMETRY.minW });
    expect(layout.stages.get('map')!.x).toBeGreaterThan(layout.stages.get('acquire')!.x);
  });

  it('lays out 5,000 steps quickly and culls to the visible cells', async () => {
    const t0 = performance.now();
    const layout = await layoutDag(
      withStage('map', 'APPLIED'),
      new Map([
        ['init', 1],
        ['acquire', 1],
        ['map', 5000],
        ['reduce', 1],
      ]),
      new ELK(),
    );
    const ms = performance.now() - t0;
    expect(ms).toBeLessThan(2000); // ELK's first call includes its start-up; the stages are few
    const map = layout.stages.get('map')!;
    const all = visibleCells(map, { x: 0, y: 0, width: layout.width, height: layout.height })!;
    expect((all.c1 - all.c0 + 1) * (all.r1 - all.r0 + 1)).toBeGreaterThanOrEqual(5000);
    const r = nodeRect(map, 1234);
    const few = visibleCells(map, { x: r.x, y: r.y, width: 300, height: 100 })!;
    const cells = (few.c1 - few.c0 + 1) * (few.r1 - few.r0 + 1);
    expect(cells).toBeLessThan(40);
    expect(few.r0 * map.cols + few.c0).toBe(1234);
    expect(visibleCells(map, { x: -1e6, y: -1e6, width: 10, height: 10 })).toBeNull();
    // the hit test holds for every node
    for (let i = 0; i < 5000; i += 97) {
      const q = nodeRect(map, i);
      expect(nodeAt(map, q.x + 1, q.y + 1)).toBe(i);
    }
  });
});

describe('drawing nodes in view only', () => {
  it('writes SVG for the nodes in a rectangle and paints them by state on a canvas', async () => {
    const mapNodes = Array.from({ length: 5000 }, (_, i) => node(`map:${i}`, i < 10 ? 'SUCCESS' : i === 10 ? 'RUNNING' : 'DEFINED'));
    const state = createDagState(
      dag({ stages: withStage('map', 'APPLIED'), nodes: [node('init', 'SUCCESS'), node('acquire', 'SUCCESS'), ...mapNodes], edges: [] }),
    );
    const slots = new Map([...state.byStage].map(([k, v]) => [k, v.length]));
    const layout = await layoutDag(state.stages, slots, new ELK());
    const map = layout.stages.get('map')!;
    // a view of a few cells at the top left of the map grid
    const first = nodeRect(map, 0);
    const view = { x: first.x, y: first.y, width: 3 * (GEOMETRY.nodeW + GEOMETRY.gapX) - 1, height: 2 * (GEOMETRY.nodeH + GEOMETRY.gapY) - 1 };
    expect(cellsIn(layout, view)).toBe(6);
    const svg = nodeMarkup(layout, state, view);
    const ids = [...svg.matchAll(/data-node="([^"]+)"/g)].map((m) => m[1]);
    expect(ids).toEqual(['map:0', 'map:1', 'map:2', `map:${map.cols}`, `map:${map.cols + 1}`, `map:${map.cols + 2}`]);
    expect(svg).toContain('class="jp-AFDag-node mod-success"');
    // the whole drawing on a canvas: every node once, in its state's colour
    const fills: string[] = [];
    const painter = { fillStyle: '' as unknown, globalAlpha: 1, fillRect: () => fills.push(String(painter.fillStyle)) };
    const colours = { DEFINED: 'grey', RUNNING: 'blue', SUCCESS: 'green', FAILED: 'red', CANCELLED: 'dark' };
    const counts = paintNodes(painter, layout, state, { x: 0, y: 0, width: layout.width, height: layout.height }, colours, 0.5);
    expect(counts).toEqual({ DEFINED: 4989, RUNNING: 1, SUCCESS: 12, FAILED: 0, CANCELLED: 0 });
    expect(fills).toHaveLength(5002);
    expect(fills.filter((f) => f === 'blue')).toHaveLength(1);
  });
});

describe('edges', () => {
  it('draws few edges one by one and many as one counted stage edge', () => {
    const small = stageEdges(withStage('map', 'APPLIED'), [{ from: 'init', to: 'acquire' }, ...[0, 1, 2].map((i) => ({ from: 'acquire', to: `map:${i}` }))]);
    const am = small.find((e) => e.from === 'acquire' && e.to === 'map')!;
    expect(am).toMatchObject({ count: 3 });
    expect(am.individual).toHaveLength(3);
    // a waiting stage's dependency is an edge with no node edges
    expect(small.find((e) => e.from === 'map' && e.to === 'reduce')).toMatchObject({ count: 0, individual: [] });

    const many = Array.from({ length: 5000 }, (_, i) => ({ from: 'acquire', to: `map:${i}` }));
    const big = stageEdges(withStage('map', 'APPLIED'), many).find((e) => e.to === 'map')!;
    expect(big.count).toBe(5000);
    expect(big.individual).toHaveLength(0);
  });

  it('writes a stage label with its counts', () => {
    expect(stageCountsText({ DEFINED: 4990, RUNNING: 1, SUCCESS: 9, FAILED: 0, CANCELLED: 0 }, 5000)).toBe('5,000 steps · 9 done · 1 running · 4,990 waiting');
    expect(stageCountsText({ DEFINED: 0, RUNNING: 0, SUCCESS: 1, FAILED: 0, CANCELLED: 0 }, 1)).toBe('1 step · 1 done');
  });
});

describe('the run list', () => {
  it('splits a run into bar segments by state', () => {
    expect(countSegments(run())).toEqual([]);
    const segs = countSegments(run({ counts: { DEFINED: 2, RUNNING: 1, SUCCESS: 1, FAILED: 0, CANCELLED: 0 } }));
    expect(segs.map((s) => s.state)).toEqual(['SUCCESS', 'RUNNING', 'DEFINED']);
    expect(segs.reduce((f, s) => f + s.fraction, 0)).toBeCloseTo(1);
  });

  it('follows workflow events and reloads on a snapshot', async () => {
    let lists = 0;
    const client = { listWorkflows: async () => (lists++, { runs: [run({ id: 'old', created: 1 })] }) } as unknown as GatewayClient;
    const events = new GatewaySession(client);
    const model = new WorkflowsModel(events);
    await model.start();
    events.dispatch({ type: 'workflow', run: run({ id: 'new', created: 2 }) });
    expect(model.list.map((r) => r.id)).toEqual(['new', 'old']);
    events.dispatch({ type: 'snapshot', clusters: [] });
    await new Promise((r) => setTimeout(r, 0));
    expect(lists).toBe(2);
  });
});

describe('the workflow bundle', () => {
  it('finds the files $refs name, quoted or not, in YAML and JSON', () => {
    const yml = 'step: {$ref: \'steps.yml#/acquire\'}\nother:\n  $ref: sub/more.yaml#/x\nq: {"$ref": "../up.json#/a"}\nlocal: {$ref: \'#/defs/x\'}\n';
    expect(refTargets(yml)).toEqual(['steps.yml', 'sub/more.yaml', '../up.json']);
    expect(refTargets('{"stages": [{"step": {"$ref": "s.json#/count"}}]}')).toEqual(['s.json']);
  });

  it('resolves paths relative to the referring file, never above the workflow', () => {
    expect(joinRelative('', 'steps.yml')).toBe('steps.yml');
    expect(joinRelative('sub', '../steps.yml')).toBe('steps.yml');
    expect(joinRelative('sub', './x/../y.yml')).toBe('sub/y.yml');
    expect(joinRelative('', '../escape.yml')).toBeNull();
    expect(joinRelative('', '/etc/passwd')).toBeNull();
  });

  it('reads the entry and every file its $refs reach, relative to the entry', async () => {
    const tree: Record<string, string> = {
      'work/mr/workflow.yml': "stages:\n - step: {$ref: 'steps.yml#/a'}\n - step: {$ref: 'lib/more.yml#/b'}\n - step: {$ref: 'missing.yml#/c'}\n",
      'work/mr/steps.yml': 'a: {process: {}}\n',
      'work/mr/lib/more.yml': "b: {$ref: '../steps.yml#/a'}\n",
    };
    const reads: string[] = [];
    const b = await collectBundle('/work/mr/workflow.yml', async (p) => {
      reads.push(p);
      if (!(p in tree)) throw new Error(`No such file: ${p}`);
      return tree[p]!;
    });
    expect(b.entry).toBe('workflow.yml');
    expect(b.dir).toBe('work/mr');
    expect(Object.keys(b.files).sort()).toEqual(['lib/more.yml', 'steps.yml', 'workflow.yml']);
    expect(b.unreadable.map((u) => u.file)).toEqual(['missing.yml']);
    expect(reads.filter((p) => p === 'work/mr/steps.yml')).toHaveLength(1); // read once
    await expect(collectBundle('nope.yml', async () => Promise.reject(new Error('404')))).rejects.toThrow('404');
  });

  it('parses parameter values: numbers as numbers, JSON lists, else text', () => {
    expect(parseParameterValue('5')).toBe(5);
    expect(parseParameterValue(' 2.5e3 ')).toBe(2500);
    expect(parseParameterValue('-3')).toBe(-3);
    expect(parseParameterValue('[1, 2, "a"]')).toEqual([1, 2, 'a']);
    expect(parseParameterValue('{"a": 1}')).toEqual({ a: 1 });
    expect(parseParameterValue('[not json')).toBe('[not json');
    expect(parseParameterValue('true')).toBe(true);
    expect(parseParameterValue('root://eos/file.root')).toBe('root://eos/file.root');
    expect(parseParameterValue('5 files')).toBe('5 files');
  });

  it('checks the run form and builds the request', () => {
    const v = { parameters: { nfiles: '' }, name: '', backend: '', retries: '' };
    expect(validateRunForm(v)).toBe('Give a value for nfiles');
    const ok = { ...v, parameters: { nfiles: '5' } };
    expect(validateRunForm(ok)).toBeNull();
    expect(validateRunForm({ ...ok, name: 'bad name!' })).toMatch(/name/);
    expect(validateRunForm({ ...ok, retries: '9' })).toMatch(/Retries/);
    expect(runRequest({ entry: 'workflow.yml', files: { 'workflow.yml': 'x' } }, { ...ok, name: 'mr-1', backend: 'local', retries: '2' })).toEqual({
      entry: 'workflow.yml',
      files: { 'workflow.yml': 'x' },
      parameters: { nfiles: 5 },
      name: 'mr-1',
      backend: 'local',
      retries: 2,
    });
    expect(runRequest({ entry: 'w.yml', files: {} }, { parameters: {}, name: '', backend: '', retries: '' })).toEqual({ entry: 'w.yml', files: {} });
    expect(defaultRunName('examples/map-reduce', 'workflow.yml')).toBe('map-reduce');
    expect(defaultRunName('', 'my flow.yml')).toBe('my-flow');
  });

  it('knows workflow files and workspace paths', () => {
    expect(['a.yml', 'b.YAML', 'c.json'].every(isWorkflowFile)).toBe(true);
    expect(isWorkflowFile('notebook.ipynb')).toBe(false);
    expect(workspacePath('/data/wf/r1', '/data/wf/r1/map/0/count.txt')).toBe('map/0/count.txt');
    expect(workspacePath('/data/wf/r1/', '/data/wf/r1/total.txt')).toBe('total.txt');
    expect(workspacePath('/data/wf/r1', '/data/wf/r10/x')).toBeNull();
    expect(workspacePath('/data/wf/r1', '/data/wf/r1/../r2/x')).toBeNull();
    expect(workspacePath('/data/wf/r1', 42)).toBeNull();
  });
});
