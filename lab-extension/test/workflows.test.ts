// Pure parts of the Workflows panel and DAG view: merging the stream's deltas, placing stages and
// nodes (subworkflows as nested groups), grouping edges, the run form's values and the $ref files a
// workflow brings along.
import { describe, expect, it } from 'vitest';
import ELK from 'elkjs/lib/elk.bundled.js';
import type { WorkflowDag, WorkflowNode, WorkflowRun, WorkflowState } from '@af-gateway/schemas';
import type { GatewayClient } from '../src/api/gateway-client';
import {
  ancestorStages,
  countsByStage,
  initCount,
  createDagState,
  type DagStage,
  isInitStage,
  mergeDag,
  scopeOfStage,
  shortName,
  skippedStages,
  stageOfNodeId,
  stageOfScope,
  totalCounts,
} from '../src/panels/workflows/dag-state';
import {
  type DagLayout,
  type ElkLike,
  GEOMETRY,
  gridShape,
  layoutDag,
  nodeAt,
  nodeRect,
  type Rect,
  scopeAt,
  stageAt,
  stageEdges,
  stageNote,
  stageSize,
  visibleCells,
  wrapNote,
} from '../src/panels/workflows/dag-layout';
import { DagModel } from '../src/panels/workflows/dag-model';
import { CanvasNodes } from '../src/panels/workflows/dag-canvas';
import { cellsIn, labelsReadable, nodeFont, nodeMarkup } from '../src/panels/workflows/dag-nodes';
import { fitText, stageCountsText } from '../src/panels/workflows/dag-renderer';
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
  const index = stage !== id ? Number(id.split(':').pop()) : null;
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
    expect(mergeDag(state, dag({ nodes: [node('acquire', 'SUCCESS')], edges: [] }))).toEqual({ structure: false, nodes: 1, ids: ['acquire'] });
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
    // the view redraws just the nodes changed since its drawing; a new node means everything again
    const drawn = model.version;
    expect(model.changedSince(drawn)).toEqual(new Set());
    events.dispatch({ type: 'workflow-dag', dag: dag({ nodes: [node('acquire', 'SUCCESS'), node('init', 'SUCCESS')], edges: [] }) });
    events.dispatch({ type: 'workflow-dag', dag: dag({ nodes: [node('acquire', 'FAILED')], edges: [] }) });
    expect(model.changedSince(drawn)).toEqual(new Set(['acquire', 'init']));
    events.dispatch({ type: 'workflow-dag', dag: dag({ nodes: [node('reduce', 'RUNNING')], edges: [] }) });
    expect(model.changedSince(drawn)).toBeNull();
    expect(model.changedSince(model.version)).toEqual(new Set());
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
    expect([...layout.stages.values()].map((x) => x.roomAbove)).toEqual([Infinity, Infinity, Infinity, Infinity]); // one row
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
    // the whole drawing on a canvas, kept in a cache painted once: every node once, in its look's colour
    const canvas = fakeCanvas();
    const cache = fakeCanvas();
    const painter = new CanvasNodes(canvas, cache);
    const colours = { DEFINED: 'grey', RUNNING: 'blue', SUCCESS: 'green', FAILED: 'red', CANCELLED: 'dark', INIT: 'purple' };
    let version = 1;
    let changed: Set<string> | null = null;
    // (800 × 600 px at 0.05: all of the drawing is in view)
    const frame = (view = { x: 0, y: 0, k: 0.05 }) =>
      painter.draw({
        layout,
        state,
        version,
        changedSince: () => changed,
        view,
        rect: { x: -view.x / view.k, y: -view.y / view.k, width: 800 / view.k, height: 600 / view.k },
        width: 800,
        height: 600,
        dpr: 1,
        colours,
        runningAlpha: 0.5,
        selected: null,
        selectionColour: 'black',
      });
    expect(frame()).toEqual({ DEFINED: 4989, RUNNING: 1, SUCCESS: 12, FAILED: 0, CANCELLED: 0 });
    expect(cache.fills).toHaveLength(5001); // all but the running step, which pulses on the frame
    expect(cache.fills.filter((f) => f === 'purple')).toHaveLength(1); // the init, as the legend shows it
    expect(cache.fills.filter((f) => f === 'green')).toHaveLength(11);
    expect(canvas.images).toBe(1);
    expect(canvas.fills).toEqual(['blue@0.5']);
    expect(painter.pulsing).toBe(true);
    // two steps change state: only they are painted again, the rest is copied
    cache.fills.length = 0;
    canvas.fills.length = 0;
    mergeDag(state, dag({ nodes: [node('map:10', 'SUCCESS'), node('map:11', 'RUNNING')], edges: [] }));
    version = 2;
    changed = new Set(['map:10', 'map:11']);
    expect(frame()).toEqual({ DEFINED: 4988, RUNNING: 1, SUCCESS: 13, FAILED: 0, CANCELLED: 0 });
    expect(cache.fills).toEqual(['green']);
    expect(cache.clears).toBe(2 + 1); // the two steps' cells (and the first frame's whole clear)
    expect(canvas.fills).toEqual(['blue@0.5']);
    // a pan within the quarter-view margin copies the picture elsewhere; past it, everything is painted again
    cache.fills.length = 0;
    changed = new Set();
    frame({ x: 100, y: 0, k: 0.05 });
    expect(cache.fills).toHaveLength(0);
    expect(canvas.images).toBe(3);
    frame({ x: 400, y: 0, k: 0.05 });
    expect(cache.fills).toHaveLength(5001);
  });
});

/** A canvas whose context records what is filled (colour, and alpha when not 1), cleared and copied. */
function fakeCanvas() {
  const rec = { width: 0, height: 0, fills: [] as string[], clears: 0, images: 0 };
  const ctx = {
    fillStyle: '' as unknown,
    strokeStyle: '' as unknown,
    globalAlpha: 1,
    lineWidth: 1,
    setTransform: () => undefined,
    fillRect: () => rec.fills.push(`${String(ctx.fillStyle)}${ctx.globalAlpha === 1 ? '' : `@${ctx.globalAlpha}`}`),
    clearRect: () => void rec.clears++,
    strokeRect: () => undefined,
    drawImage: () => void rec.images++,
  };
  return Object.assign(rec, { getContext: () => ctx });
}

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

// A run with subworkflows, as the gateway sends it: `nested` scatters a workflow (init → shout →
// count) over two words, `pick`'s cases chose a step for its items 0 and 2 (case 0) and a
// subworkflow for item 1 (case 1; steps and scopes share one count, as in yadage), `never` held no case and was skipped with `later` after it, `after` reads nested[*].count.
const sub = (scope: string, names: string[], state: DagStage['state'] = 'APPLIED'): DagStage[] => [
  { name: `${scope}.init`, type: 'init', dependencies: [], state: 'APPLIED', scope },
  ...names.map((n, i): DagStage => ({
    name: `${scope}.${n}`,
    type: 'singlestep-stage',
    dependencies: [`${scope}.${i ? names[i - 1] : 'init'}`],
    state,
    scope,
  })),
];
const NESTED_STAGES: DagStage[] = [
  { name: 'init', type: 'init', dependencies: [], state: 'APPLIED' },
  { name: 'nested', type: 'multistep-stage', dependencies: ['init'], state: 'APPLIED' },
  { name: 'pick', type: 'multistep-stage', dependencies: ['init'], state: 'APPLIED' },
  { name: 'never', type: 'singlestep-stage', dependencies: ['init'], state: 'SKIPPED', message: 'no case held: nothing runs' },
  { name: 'later', type: 'singlestep-stage', dependencies: ['never'], state: 'SKIPPED', message: 'not applied: stage never it depends on was not applied' },
  { name: 'after', type: 'singlestep-stage', dependencies: ['nested'], state: 'APPLIED' },
  ...sub('nested[0]', ['shout', 'count']),
  ...sub('nested[1]', ['shout', 'count']),
  ...sub('pick[1]', ['big']),
];
const NESTED_NODES: WorkflowNode[] = [
  node('init', 'SUCCESS'),
  ...['nested[0]', 'nested[1]'].flatMap((s) => [node(`${s}.init`, 'SUCCESS'), node(`${s}.shout`, 'SUCCESS'), node(`${s}.count`, 'SUCCESS')]),
  node('pick:0', 'SUCCESS', { case: 0 }),
  node('pick:2', 'SUCCESS', { case: 0 }),
  node('pick[1].init', 'SUCCESS', { case: 1 }),
  node('pick[1].big', 'SUCCESS'),
  node('after', 'SUCCESS'),
];
const NESTED_EDGES = [
  { from: 'init', to: 'nested[0].init' },
  { from: 'init', to: 'nested[1].init' },
  { from: 'nested[0].init', to: 'nested[0].shout' },
  { from: 'nested[0].shout', to: 'nested[0].count' },
  { from: 'nested[1].init', to: 'nested[1].shout' },
  { from: 'nested[1].shout', to: 'nested[1].count' },
  { from: 'init', to: 'pick:0' },
  { from: 'init', to: 'pick:2' },
  { from: 'init', to: 'pick[1].init' },
  { from: 'pick[1].init', to: 'pick[1].big' },
  { from: 'nested[0].count', to: 'after' },
  { from: 'nested[1].count', to: 'after' },
];
const slotsOf = (stages: DagStage[], nodes: WorkflowNode[]) =>
  new Map([...createDagState(dag({ stages, nodes, edges: [] })).byStage].map(([k, v]) => [k, v.length]));
const inside = (inner: Rect, outer: Rect) =>
  inner.x >= outer.x && inner.y >= outer.y && inner.x + inner.width <= outer.x + outer.width && inner.y + inner.height <= outer.y + outer.height;
const apart = (a: Rect, b: Rect) => a.x + a.width <= b.x || b.x + b.width <= a.x || a.y + a.height <= b.y || b.y + b.height <= a.y;

/** Every subworkflow group lies in its stage's box, every stage in its group, siblings never overlap, nodes sit in their boxes. */
function expectNested(layout: DagLayout): void {
  for (const sc of layout.scopes.values()) expect(inside(sc, layout.stages.get(sc.stage)!), `${sc.name} in ${sc.stage}`).toBe(true);
  const boxes = [...layout.stages.values()];
  for (const b of boxes) {
    if (b.scope) expect(inside(b, layout.scopes.get(b.scope)!), `${b.name} in ${b.scope}`).toBe(true);
    for (let i = 0; i < b.slots; i++) expect(inside(nodeRect(b, i), b), `${b.name} #${i}`).toBe(true);
    for (const o of boxes) if (o !== b && o.scope === b.scope) expect(apart(b, o), `${b.name} and ${o.name}`).toBe(true);
    // its own steps stay clear of its subworkflows' groups
    for (const s of b.scopes) if (b.slots) expect(apart(nodeRect(b, b.slots - 1), layout.scopes.get(s)!)).toBe(true);
  }
  for (const s of layout.scopes.values())
    for (const o of layout.scopes.values()) if (o !== s && o.stage === s.stage) expect(apart(s, o), `${s.name} and ${o.name}`).toBe(true);
}

describe('subworkflows, cases and skipped stages', () => {
  it('names scopes and stages in them, even with dots in stage names', () => {
    expect(scopeOfStage('nested[0].stage1')).toBe('nested[0]');
    expect(scopeOfStage('a.b[0].c.d[12].e.f')).toBe('a.b[0].c.d[12]');
    expect(scopeOfStage('top.level')).toBe('');
    expect(stageOfScope('a[0].b[12]')).toBe('a[0].b');
    expect(ancestorStages('a.x[0].b[1].c')).toEqual(['a.x', 'a.x[0].b']);
    expect(ancestorStages('plain')).toEqual([]);
    expect(shortName('nested[0].stage1', 'nested[0]')).toBe('stage1');
    expect(shortName('a[0].b[1]', 'a[0]')).toBe('b[1]');
    expect(stageOfNodeId('nested[0].map:2')).toBe('nested[0].map');
    expect([isInitStage('init'), isInitStage('nested[0].init'), isInitStage('initial'), isInitStage('x.init')]).toEqual([true, true, false, false]);
  });

  it('counts no subworkflow init as a step, and counts the skipped stages', () => {
    const state = createDagState(dag({ stages: NESTED_STAGES, nodes: NESTED_NODES, edges: NESTED_EDGES }));
    // 2 × (shout, count), pick:0, pick:2, pick[1].big, after: the inits are parameters
    expect(totalCounts(countsByStage(state)).SUCCESS).toBe(8);
    // the legend counts them apart: the run's, nested[0]'s, nested[1]'s and pick[1]'s
    expect(initCount(state)).toBe(4);
    expect(skippedStages(state)).toBe(2);
  });

  it('lays a subworkflow out as groups inside its stage, each around its own stages', async () => {
    const layout = await layoutDag(NESTED_STAGES, slotsOf(NESTED_STAGES, NESTED_NODES), new ELK());
    expect([...layout.scopes.keys()]).toEqual(['nested[0]', 'nested[1]', 'pick[1]']);
    expect(layout.scopes.get('nested[1]')).toMatchObject({ stage: 'nested', label: 'nested[1]', depth: 1 });
    const b = (n: string) => layout.stages.get(n)!;
    expect(b('nested').scopes).toEqual(['nested[0]', 'nested[1]']);
    expect(b('nested[0].shout')).toMatchObject({ label: 'shout', scope: 'nested[0]', depth: 1, slots: 1 });
    expectNested(layout);
    // left to right inside a group as at the top: its init, then its stages in order
    expect(b('nested[0].init').x).toBeLessThan(b('nested[0].shout').x);
    expect(b('nested[0].shout').x).toBeLessThan(b('nested[0].count').x);
    expect(b('init').x + b('init').width).toBeLessThan(b('nested').x);
    expect(b('nested').x + b('nested').width).toBeLessThan(b('after').x);
    // pick's own steps (case 0) sit in its grid, the place of item 1 empty, above its subworkflow's group (case 1)
    expect(b('pick').slots).toBe(3);
    expect(nodeRect(b('pick'), 2).y + GEOMETRY.nodeH).toBeLessThan(layout.scopes.get('pick[1]')!.y);
    // drawn outer first: a stage's box before the stages of its subworkflows
    const order = [...layout.stages.keys()];
    expect(order.indexOf('nested')).toBeLessThan(order.indexOf('nested[0].init'));
    // a click finds the innermost box, and the node there
    const r = nodeRect(b('nested[1].count'), 0);
    expect(stageAt(layout, r.x + 5, r.y + 5)?.name).toBe('nested[1].count');
    expect(scopeAt(layout, r.x + 5, r.y + 5)?.name).toBe('nested[1]');
    expect(nodeAt(b('nested[1].count'), r.x + 5, r.y + 5)).toBe(0);
    const g = layout.scopes.get('nested[0]')!;
    expect(stageAt(layout, g.x + 3, g.y + 3)?.name).toBe('nested'); // a group's header belongs to its stage
    expect(layout.width).toBeGreaterThanOrEqual(b('after').x + b('after').width);
    // a label placed above a box must not cover the box above it: each top-level box knows its room
    const tops = [...layout.stages.values()].filter((t) => t.depth === 0);
    for (const t of tops)
      for (const o of tops)
        if (o !== t && o.x < t.x + t.width && t.x < o.x + o.width && o.y + o.height <= t.y) expect(t.roomAbove).toBeLessThanOrEqual(t.y - o.y - o.height);
    expect(tops.filter((t) => Number.isFinite(t.roomAbove)).length).toBeGreaterThan(0);
  });

  it('grows as scopes and their stages appear, and nests deeper scopes', async () => {
    const first = NESTED_STAGES.filter((s) => !s.name.startsWith('nested[1]'));
    const before = await layoutDag(
      first,
      slotsOf(
        first,
        NESTED_NODES.filter((n) => !n.id.startsWith('nested[1]')),
      ),
      new ELK(),
    );
    const after = await layoutDag(NESTED_STAGES, slotsOf(NESTED_STAGES, NESTED_NODES), new ELK());
    expect(before.scopes.has('nested[1]')).toBe(false);
    expect(after.stages.get('nested')!.height).toBeGreaterThan(before.stages.get('nested')!.height);
    // a scope inside a scope: nested[0].deeper[0] in the box of nested[0].deeper, in the group nested[0]
    const deep: DagStage[] = [
      { name: 'init', type: 'init', dependencies: [], state: 'APPLIED' },
      { name: 'nested', type: 'singlestep-stage', dependencies: ['init'], state: 'APPLIED' },
      { name: 'nested[0].init', type: 'init', dependencies: [], state: 'APPLIED', scope: 'nested[0]' },
      { name: 'nested[0].deeper', type: 'singlestep-stage', dependencies: ['nested[0].init'], state: 'APPLIED', scope: 'nested[0]' },
      { name: 'nested[0].collect', type: 'singlestep-stage', dependencies: ['nested[0].deeper'], state: 'WAITING', scope: 'nested[0]' },
      ...sub('nested[0].deeper[0]', ['leaf'], 'WAITING'),
    ];
    const layout = await layoutDag(deep, new Map(), new ELK());
    expect(layout.scopes.get('nested[0].deeper[0]')).toMatchObject({ stage: 'nested[0].deeper', label: 'deeper[0]', depth: 2 });
    expect(layout.stages.get('nested[0].deeper[0].leaf')).toMatchObject({ label: 'leaf', depth: 2 });
    expectNested(layout);
    expect(inside(layout.stages.get('nested[0].deeper[0].leaf')!, layout.stages.get('nested')!)).toBe(true);
    // a scope whose stage is not listed (yet) still gets a box around it
    const orphan = await layoutDag([deep[0]!, ...sub('lost[3]', ['x'])], new Map(), new ELK());
    expect(orphan.stages.get('lost')?.scopes).toEqual(['lost[3]']);
    expectNested(orphan);
  });

  it('nests the groups without ELK too', async () => {
    const broken: ElkLike = { layout: () => Promise.reject(new Error('no ELK here')) };
    const warn = console.warn;
    console.warn = () => undefined;
    try {
      const layout = await layoutDag(NESTED_STAGES, slotsOf(NESTED_STAGES, NESTED_NODES), broken);
      expectNested(layout);
      expect(layout.stages.get('nested[0].init')!.x).toBeLessThan(layout.stages.get('nested[0].shout')!.x);
      expect(layout.stages.get('init')!.x).toBeLessThan(layout.stages.get('nested')!.x);
    } finally {
      console.warn = warn;
    }
  });

  it('draws a dependency into or out of subworkflows by the node edges that cross, and keeps it dashed while nothing crosses', () => {
    const edges = stageEdges(NESTED_STAGES, NESTED_EDGES);
    const pairs = edges.map((e) => `${e.from}->${e.to}:${e.count}`);
    expect(pairs).toContain('init->nested[0].init:1');
    expect(pairs).toContain('nested[1].count->after:1');
    expect(pairs).toContain('nested[0].shout->nested[0].count:1');
    // nested's dependency on init and after's on nested are drawn by those: no waiting edge besides
    expect(pairs.filter((p) => p.startsWith('init->nested:') || p.startsWith('nested->after:'))).toEqual([]);
    // skipped stages' dependencies are edges with no steps behind them
    expect(pairs).toContain('never->later:0');
    // while nested[0] runs nothing reaches after yet: after waits on nested
    const running = stageEdges(NESTED_STAGES, NESTED_EDGES.slice(0, 6));
    expect(running.find((e) => e.from === 'nested' && e.to === 'after')).toMatchObject({ count: 0 });
  });

  it('labels nodes by their stage in the scope, with the case that chose them', async () => {
    const state = createDagState(dag({ stages: NESTED_STAGES, nodes: NESTED_NODES, edges: NESTED_EDGES }));
    const layout = await layoutDag(state.stages, slotsOf(NESTED_STAGES, NESTED_NODES), new ELK());
    const svg = nodeMarkup(layout, state, { x: 0, y: 0, width: layout.width, height: layout.height });
    // one piece of markup per node
    const pieces = new Map(svg.split('<g class="jp-AFDag-node ').map((p) => [/data-node="([^"]+)"/.exec(p)?.[1] ?? '', p]));
    const markup = (id: string) => pieces.get(id) ?? '';
    expect(markup('nested[1].shout')).toContain('>shout</text>');
    expect(markup('pick:0')).toContain('data-case="0"');
    expect(markup('pick:0')).toContain('>case 0</text>');
    // a step is named as the details pane and the CLI name it: STAGE:INDEX
    expect(markup('pick:0')).toContain('>pick:0</text>');
    expect(markup('init')).toMatch(/^mod-success mod-init"/);
    expect(markup('nested[0].init')).toContain('mod-init');
    expect(markup('nested[0].shout')).not.toContain('mod-init');
    expect(markup('pick:0')).toContain('chosen by case 0');
    // a subworkflow's init carries its case too: its group's label shows it, not a badge on the init
    expect(markup('pick[1].init')).toContain('data-case="1"');
    expect(markup('pick[1].init')).not.toContain('jp-AFDag-caseBadge');
    expect(markup('nested[0].shout')).not.toContain('case');
    expect([...svg.matchAll(/data-node=/g)]).toHaveLength(NESTED_NODES.length);
    expect([...svg.matchAll(/class="jp-AFDag-caseBadge"/g)]).toHaveLength(2);
    // fitted small, the labels are larger in the drawing (about 10 px on screen), and hidden where even
    // the largest a node holds would be too small to read; a name cut to fit keeps its index
    expect([nodeFont(1), nodeFont(0.82), nodeFont(0.66), nodeFont(0.5), nodeFont(0.43)]).toEqual([11, 13, 16, 19, 19]);
    expect([1, 0.66, 0.5].every(labelsReadable)).toBe(true);
    expect(labelsReadable(0.43)).toBe(false);
    const big = nodeMarkup(layout, state, { x: 0, y: 0, width: layout.width, height: layout.height }, 13);
    expect(big).toMatch(/data-node="pick:0"[^]*?>pi…:0<\/text>[^]*?>case 0<\/text>/);
    expect(big).toContain('>shout</text>');
    // a long name is cut to fit beside the badge (the tooltip has the whole id)
    const long = createDagState(
      dag({
        stages: [{ name: 'choose_a_very_long_stage_name', type: 'singlestep-stage', dependencies: [], state: 'APPLIED' }],
        nodes: [node('choose_a_very_long_stage_name', 'SUCCESS', { case: 3 })],
        edges: [],
      }),
    );
    const ll = await layoutDag(long.stages, new Map([['choose_a_very_long_stage_name', 1]]), new ELK());
    const text = /<text x="7"[^>]*>([^<]*)<\/text>/.exec(nodeMarkup(ll, long, { x: 0, y: 0, width: ll.width, height: ll.height }))![1]!;
    expect(text.endsWith('…')).toBe(true);
    expect(text.length).toBeLessThanOrEqual(10);
  });

  it("says why a box is empty: waiting, skipped (the gateway's reason) or failed; and how many subworkflows a stage made", () => {
    expect(stageNote({ state: 'SKIPPED', message: 'no case held: nothing runs', dependencies: ['init'], scope: '' })).toBe('no case held: nothing runs');
    expect(stageNote({ state: 'SKIPPED', message: '', dependencies: [], scope: '' })).toBe('skipped: never applied');
    expect(stageNote({ state: 'WAITING', message: '', dependencies: ['nested[0].shout'], scope: 'nested[0]' })).toBe('waits for shout');
    expect(stageCountsText(undefined, 0, 2)).toBe('2 subworkflows');
    expect(stageCountsText({ DEFINED: 0, RUNNING: 0, SUCCESS: 1, FAILED: 0, CANCELLED: 0 }, 1, 1)).toBe('1 step · 1 done · 1 subworkflow');
    expect(fitText('a_stage_name_too_long_for_its_box', 150)).toBe('a_stage_name_too_long_f…');
    expect(fitText('waits for map', 150)).toBe('waits for map');
    // a long reason goes onto a second line, cut at a word; an empty box widens for it, up to a point
    expect(wrapNote('not applied: stage never it depends on was not applied', 30)).toEqual(['not applied: stage never it', 'depends on was not applied']);
    expect(wrapNote('no case held: nothing runs', 30)).toEqual(['no case held: nothing runs']);
    expect(wrapNote('x'.repeat(70), 30)).toEqual(['x'.repeat(30), `${'x'.repeat(29)}…`]);
  });

  it('widens an empty box for its reason, so the reason stays inside it', async () => {
    const layout = await layoutDag(NESTED_STAGES, slotsOf(NESTED_STAGES, NESTED_NODES), new ELK());
    const never = layout.stages.get('never')!;
    const later = layout.stages.get('later')!;
    expect(never.note).toEqual(['no case held: nothing runs']);
    expect(later.note).toEqual(['not applied: stage never it', 'depends on was not applied']);
    for (const b of [never, later]) {
      expect(b.width).toBeGreaterThan(GEOMETRY.minW);
      // 7.5 px a character leaves room for an 11 px label drawn up to a quarter larger than its box
      for (const line of b.note) expect(12 + line.length * 7.5).toBeLessThanOrEqual(b.width);
    }
    // a box waiting on a short name keeps its size
    const waiting = await layoutDag(STAGES, new Map([['init', 1]]), new ELK());
    expect(waiting.stages.get('map')).toMatchObject({ note: ['waits for acquire'], width: GEOMETRY.minW });
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
    // an empty name: the workflow's directory name, as the CLI sends it (the gateway sees only 'w.yml')
    expect(runRequest({ entry: 'w.yml', files: {} }, { parameters: {}, name: ' ', backend: '', retries: '' }, 'map-reduce')).toEqual({
      entry: 'w.yml',
      files: {},
      name: 'map-reduce',
    });
    expect(defaultRunName('examples/map-reduce', 'workflow.yml')).toBe('map-reduce');
    expect(defaultRunName('', 'my flow.yml')).toBe('my-flow');
    expect(defaultRunName('work/___', 'flow.yml')).toBe('flow');
    expect(defaultRunName('', '-.yml')).toBe('workflow');
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
