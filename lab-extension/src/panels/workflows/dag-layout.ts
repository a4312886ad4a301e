// Where everything of a DAG goes. Only the STAGES go through elkjs (layered, left to right: a
// workflow has a handful); each stage's steps then sit in a grid inside its box, by index, so the
// layout is O(nodes) and a node's place, a click's node and the visible part of a stage are
// arithmetic. Subworkflows make the graph hierarchical: a stage running a workflow is a box holding
// one group per scope (`nested[0]`), each holding that scope's stages, laid out by ELK as nested
// children (its own steps, when its cases chose steps too, sit in a grid above the groups). Pure: no DOM.
import type { ElkNode } from 'elkjs/lib/elk-api';
import type { DagEdge, DagStage } from './dag-state';
import { ancestorStages, isInitStage, scopeIndex, scopeOfStage, shortName, stageOfNodeId, stageOfScope } from './dag-state';

export const GEOMETRY = {
  nodeW: 120,
  nodeH: 28,
  gapX: 8,
  gapY: 6,
  pad: 12,
  header: 60,
  minW: 170,
  emptyH: 42,
  /** Up to this many steps a multistep stage is one column; more make a grid about as wide as high. */
  columnMax: 12,
  /** A subworkflow's group: room for its label above its stages. */
  scopeHeader: 26,
} as const;

export interface StageBox {
  /** The full name (`nested[0].stage1`). */
  name: string;
  /** The name within its scope (`stage1`), what its label shows. */
  label: string;
  /** The scope it lives in ('' at the top). */
  scope: string;
  /** How many subworkflows deep it lives (0 at the top). */
  depth: number;
  type: DagStage['type'];
  state: DagStage['state'];
  dependencies: string[];
  message: string;
  /** The scopes it made (a stage running a workflow), in their order; their groups are in `DagLayout.scopes`. */
  scopes: string[];
  /** Why a box with no steps and no subworkflows is empty, in one or two lines its box is wide enough for. */
  note: string[];
  /** Free height (px) above a top-level box up to the box above it (Infinity: none), for a label placed above it. */
  roomAbove: number;
  /** Node slots (the highest index + 1); 0 draws an empty box (waiting, or a scatter over nothing). */
  slots: number;
  cols: number;
  rows: number;
  x: number;
  y: number;
  width: number;
  height: number;
  /** Top-left of the node grid. */
  gridX: number;
  gridY: number;
}

/** A subworkflow's group: a box inside the box of the stage that made it, around its stages. */
export interface ScopeBox {
  /** The full name (`nested[0]`, deeper `nested[0].inner[1]`). */
  name: string;
  /** The stage that made it (`nested`). */
  stage: string;
  /** The name within its stage's scope, what its label shows (`nested[0]`; `inner[1]` inside `nested[0]`). */
  label: string;
  depth: number;
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface DagLayout {
  /** Every stage, outer ones before the stages inside them (the order they are drawn in). */
  stages: Map<string, StageBox>;
  scopes: Map<string, ScopeBox>;
  width: number;
  height: number;
}

export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

/**
 * The window a drawing of the nodes around the view `r` covers: the view and a quarter view of
 * margin on each side, so that small pans and zooms need no new drawing (the SVG nodes and the canvas).
 */
export const windowAround = (r: Rect): Rect => ({ x: r.x - r.width / 4, y: r.y - r.height / 4, width: r.width * 1.5, height: r.height * 1.5 });
/** Whether `r` lies wholly inside `w`. */
export const within = (r: Rect, w: Rect): boolean => r.x >= w.x && r.y >= w.y && r.x + r.width <= w.x + w.width && r.y + r.height <= w.y + w.height;

/** The part of ELK the layout uses, so tests and the view can hand in their instance. */
export interface ElkLike {
  layout(graph: ElkNode): Promise<ElkNode>;
}

const cellW = GEOMETRY.nodeW + GEOMETRY.gapX;
const cellH = GEOMETRY.nodeH + GEOMETRY.gapY;

/** Columns and rows of a stage's node grid. */
export function gridShape(type: DagStage['type'], slots: number): { cols: number; rows: number } {
  if (slots <= 0) return { cols: 0, rows: 0 };
  if ((type !== 'multistep-stage' && type !== 'jq-stage') || slots <= GEOMETRY.columnMax) return { cols: 1, rows: slots };
  const cols = Math.max(1, Math.ceil(Math.sqrt((slots * cellH) / cellW)));
  return { cols, rows: Math.ceil(slots / cols) };
}

/** A stage's box size before it is placed. */
export function stageSize(type: DagStage['type'], slots: number): { width: number; height: number; cols: number; rows: number } {
  const { cols, rows } = gridShape(type, slots);
  const { pad, header, minW, emptyH } = GEOMETRY;
  if (slots <= 0) return { width: minW, height: header + emptyH, cols, rows };
  const gridW = cols * cellW - GEOMETRY.gapX;
  const gridH = rows * cellH - GEOMETRY.gapY;
  return { width: Math.max(minW, gridW + 2 * pad), height: header + gridH + pad, cols, rows };
}

function makeBox(stage: DagStage, slots: number): StageBox {
  const { width, height, cols, rows } = stageSize(stage.type, slots);
  const scope = stage.scope ?? scopeOfStage(stage.name);
  return {
    name: stage.name,
    label: shortName(stage.name, scope),
    scope,
    depth: ancestorStages(stage.name).length,
    type: stage.type,
    state: stage.state,
    dependencies: stage.dependencies,
    message: stage.message ?? '',
    scopes: [],
    note: [],
    roomAbove: Infinity,
    slots,
    cols,
    rows,
    x: 0,
    y: 0,
    width,
    height,
    gridX: 0,
    gridY: 0,
  };
}

function finishBox(box: StageBox): void {
  const gridW = box.cols * cellW - GEOMETRY.gapX;
  // centred in its box; above a stage's subworkflows, where its header starts
  box.gridX = box.x + (box.scopes.length ? GEOMETRY.pad : Math.max(GEOMETRY.pad, (box.width - gridW) / 2));
  box.gridY = box.y + GEOMETRY.header;
}

/** Why a stage box holds no steps (its third line). */
export function stageNote(box: Pick<StageBox, 'state' | 'message' | 'dependencies' | 'scope'>): string {
  switch (box.state) {
    case 'WAITING':
      return `waits for ${box.dependencies.map((d) => shortName(d, box.scope)).join(', ') || '…'}`;
    case 'FAILED':
      return box.message || 'its steps could not be made';
    case 'SKIPPED':
      return box.message || 'skipped: never applied';
    default:
      return 'no steps';
  }
}

/**
 * Width (px) a character of a stage label's 11 px text may take: its average width, and room for
 * the label being up to a quarter larger than its box (a label shrinks with its box only down to 0.8).
 */
const LABEL_CHAR_W = 7.5;
/** An empty box widens up to this for its note (then wraps it onto a second line). */
const NOTE_MAX_W = 250;

/** A note in at most two lines of at most `chars` characters, cut at words, the rest ending in '…'. */
export function wrapNote(text: string, chars: number): string[] {
  if (text.length <= chars) return [text];
  let cut = text.lastIndexOf(' ', chars);
  if (cut < chars / 2) cut = chars;
  const first = text.slice(0, cut).trimEnd();
  const rest = text.slice(cut).trimStart();
  return [first, rest.length <= chars ? rest : `${rest.slice(0, chars - 1)}…`];
}

/** An empty box's note, and the box widened (up to NOTE_MAX_W) so it fits. */
function fitNote(box: StageBox): void {
  const { pad } = GEOMETRY;
  box.note = wrapNote(stageNote(box), Math.floor((NOTE_MAX_W - 2 * pad) / LABEL_CHAR_W));
  const longest = Math.max(...box.note.map((l) => l.length));
  box.width = Math.max(box.width, Math.ceil(2 * pad + longest * LABEL_CHAR_W));
}

/** Room inside a container around its children, and between them in the fallback placement. */
interface Frame {
  top: number;
  side: number;
  minW: number;
  minH: number;
  betweenLayers: number;
  betweenNodes: number;
}

/** The graph's own id: no stage or scope can be called that (stage names hold no brackets at their ends). */
const ROOT = '[root]';

const layered = (f: Frame): Record<string, string> => ({
  'elk.algorithm': 'layered',
  'elk.direction': 'RIGHT',
  'elk.spacing.nodeNode': String(f.betweenNodes),
  'elk.layered.spacing.nodeNodeBetweenLayers': String(f.betweenLayers),
  'elk.layered.nodePlacement.strategy': 'NETWORK_SIMPLEX',
  'elk.padding': `[top=${f.top},left=${f.side},bottom=${f.side},right=${f.side}]`,
});

/**
 * Lays the stages out with ELK and places the node grids in them. `slots` gives each stage's node
 * slots; stages that have nodes but are not listed (init, when the gateway leaves it out) get a box,
 * and so does a stage whose scopes are listed but not itself.
 */
export async function layoutDag(stages: DagStage[], slots: Map<string, number>, elk: ElkLike): Promise<DagLayout> {
  const all = [...stages];
  const listed = new Set(all.map((s) => s.name));
  for (const name of slots.keys()) {
    if (listed.has(name)) continue;
    listed.add(name);
    all.unshift({ name, type: isInitStage(name) ? 'init' : 'singlestep-stage', dependencies: [], state: 'APPLIED' });
  }
  // Who lives where: each scope's stages, each stage's scopes (a scope whose stage is missing gets one).
  const members = new Map<string, string[]>([['', []]]);
  const madeBy = new Map<string, Set<string>>();
  const boxesByName = new Map<string, StageBox>();
  const add = (stage: DagStage): void => {
    const box = makeBox(stage, slots.get(stage.name) ?? 0);
    boxesByName.set(box.name, box);
    let list = members.get(box.scope);
    if (!list) members.set(box.scope, (list = []));
    list.push(box.name);
    if (!box.scope) return;
    const maker = stageOfScope(box.scope);
    let made = madeBy.get(maker);
    if (!made) madeBy.set(maker, (made = new Set()));
    made.add(box.scope);
    if (listed.has(maker)) return;
    listed.add(maker);
    add({ name: maker, type: 'singlestep-stage', dependencies: [], state: 'APPLIED' });
  };
  for (const s of all) add(s);

  // The ELK graph, its containers' frames (for the fallback), and the boxes in drawing order.
  const boxes = new Map<string, StageBox>();
  const scopes = new Map<string, ScopeBox>();
  const frames = new Map<ElkNode, Frame>();
  const container = (id: string, scope: string, frame: Frame, extra: Record<string, string> = {}): ElkNode => {
    const names = members.get(scope) ?? [];
    const inside = new Set(names);
    const node: ElkNode = {
      id,
      layoutOptions: { ...layered(frame), ...extra },
      children: names.map(stageNode),
      edges: names.flatMap((n) =>
        boxesByName
          .get(n)!
          .dependencies.filter((d) => inside.has(d) && d !== n)
          .map((d) => ({ id: `${d}->${n}`, sources: [d], targets: [n] })),
      ),
    };
    frames.set(node, frame);
    return node;
  };
  const stageNode = (name: string): ElkNode => {
    const box = boxesByName.get(name)!;
    boxes.set(name, box);
    const made = madeBy.get(name);
    if (!made && box.slots === 0) fitNote(box);
    if (!made) return { id: name, width: box.width, height: box.height };
    box.scopes = [...made].sort((a, b) => scopeIndex(a) - scopeIndex(b));
    // Its own steps (cases may choose steps and subworkflows alike) above its groups.
    const grid = box.slots > 0 ? box.rows * cellH - GEOMETRY.gapY + GEOMETRY.pad : 0;
    const frame: Frame = { top: GEOMETRY.header + grid, side: GEOMETRY.pad, minW: box.width, minH: box.height, betweenLayers: 30, betweenNodes: 16 };
    const node: ElkNode = {
      id: name,
      layoutOptions: { ...layered(frame), 'elk.nodeSize.constraints': 'MINIMUM_SIZE', 'elk.nodeSize.minimum': `(${box.width},${box.height})` },
      children: box.scopes.map((scope) => {
        scopes.set(scope, {
          name: scope,
          stage: name,
          label: shortName(scope, box.scope),
          depth: box.depth + 1,
          x: 0,
          y: 0,
          width: 0,
          height: 0,
        });
        return container(scope, scope, { top: GEOMETRY.scopeHeader, side: GEOMETRY.pad, minW: GEOMETRY.minW, minH: 0, betweenLayers: 50, betweenNodes: 30 });
      }),
    };
    frames.set(node, frame);
    return node;
  };
  const graph = container(ROOT, '', { top: 20, side: 20, minW: 0, minH: 0, betweenLayers: 70, betweenNodes: 50 });

  let placed: ElkNode | null = null;
  try {
    placed = await elk.layout(graph);
  } catch (err) {
    console.warn('AF Gateway: ELK could not lay out the stages; placing them by depth', err);
  }
  if (!placed?.children) {
    placeByDepth(graph, frames);
    placed = graph;
  }
  // ELK places children relative to their parent.
  const visit = (n: ElkNode, ox: number, oy: number): void => {
    const x = ox + (n.x ?? 0);
    const y = oy + (n.y ?? 0);
    const b = boxes.get(n.id) ?? scopes.get(n.id);
    if (b) {
      b.x = x;
      b.y = y;
      if (n.children?.length) {
        b.width = Math.max(b.width, n.width ?? 0);
        b.height = Math.max(b.height, n.height ?? 0);
      }
    }
    for (const c of n.children ?? []) visit(c, x, y);
  };
  for (const c of placed.children ?? []) visit(c, 0, 0);
  let width = 0;
  let height = 0;
  for (const b of boxes.values()) {
    finishBox(b);
    width = Math.max(width, b.x + b.width + 20);
    height = Math.max(height, b.y + b.height + 20);
  }
  measureRoomAbove(members.get('')!.map((n) => boxes.get(n)!));
  return { stages: boxes, scopes, width, height };
}

/** How much free height lies above each box, up to the nearest box above that shares some of its width. */
function measureRoomAbove(top: StageBox[]): void {
  // by column (x), so each box looks only at the boxes it shares width with
  const sorted = [...top].sort((a, b) => a.x - b.x);
  for (let i = 0; i < sorted.length; i++) {
    const b = sorted[i]!;
    for (let j = 0; j < sorted.length; j++) {
      const o = sorted[j]!;
      if (o.x >= b.x + b.width) break;
      if (o === b || o.x + o.width <= b.x || o.y + o.height > b.y) continue;
      b.roomAbove = Math.min(b.roomAbove, b.y - (o.y + o.height));
    }
  }
}

/** The fallback: in each container one column per dependency depth, inner containers first. */
function placeByDepth(graph: ElkNode, frames: Map<ElkNode, Frame>): void {
  for (const c of graph.children ?? []) if (c.children) placeByDepth(c, frames);
  const f = frames.get(graph)!;
  const deps = new Map<string, string[]>();
  for (const e of graph.edges ?? []) for (const t of e.targets) deps.set(t, [...(deps.get(t) ?? []), ...e.sources]);
  const depth = new Map<string, number>();
  const depthOf = (id: string, seen: Set<string>): number => {
    const known = depth.get(id);
    if (known !== undefined) return known;
    if (seen.has(id)) return 0;
    seen.add(id);
    const mine = deps.get(id) ?? [];
    const d = mine.length ? 1 + Math.max(...mine.map((x) => depthOf(x, seen))) : 0;
    depth.set(id, d);
    return d;
  };
  const columns: ElkNode[][] = [];
  for (const c of graph.children ?? []) (columns[depthOf(c.id, new Set())] ??= []).push(c);
  let x = f.side;
  let bottom = f.top;
  for (const col of columns) {
    if (!col) continue;
    let y = f.top;
    for (const c of col) {
      c.x = x;
      c.y = y;
      y += (c.height ?? 0) + f.betweenNodes;
      bottom = Math.max(bottom, y - f.betweenNodes);
    }
    x += Math.max(...col.map((c) => c.width ?? 0)) + f.betweenLayers;
  }
  graph.width = Math.max(f.minW, x - f.betweenLayers + f.side);
  graph.height = Math.max(f.minH, bottom + f.side);
}

/** The rectangle of the node at `index` of a stage. */
export function nodeRect(box: StageBox, index: number): Rect {
  const c = box.cols > 0 ? index % box.cols : 0;
  const r = box.cols > 0 ? Math.floor(index / box.cols) : 0;
  return { x: box.gridX + c * cellW, y: box.gridY + r * cellH, width: GEOMETRY.nodeW, height: GEOMETRY.nodeH };
}

/** The node index at a point (world coordinates) of a stage, or null between nodes or outside. */
export function nodeAt(box: StageBox, x: number, y: number): number | null {
  if (box.slots <= 0) return null;
  const lx = x - box.gridX;
  const ly = y - box.gridY;
  if (lx < 0 || ly < 0) return null;
  const c = Math.floor(lx / cellW);
  const r = Math.floor(ly / cellH);
  if (c >= box.cols || r >= box.rows) return null;
  if (lx - c * cellW > GEOMETRY.nodeW || ly - r * cellH > GEOMETRY.nodeH) return null;
  const index = r * box.cols + c;
  return index < box.slots ? index : null;
}

const holds = (b: Rect, x: number, y: number) => x >= b.x && x <= b.x + b.width && y >= b.y && y <= b.y + b.height;

/** The innermost stage whose box holds a point, if any. */
export function stageAt(layout: DagLayout, x: number, y: number): StageBox | null {
  let found: StageBox | null = null;
  for (const b of layout.stages.values()) if (holds(b, x, y) && (!found || b.depth > found.depth)) found = b;
  return found;
}

/** The innermost subworkflow group holding a point, if any. */
export function scopeAt(layout: DagLayout, x: number, y: number): ScopeBox | null {
  let found: ScopeBox | null = null;
  for (const b of layout.scopes.values()) if (holds(b, x, y) && (!found || b.depth > found.depth)) found = b;
  return found;
}

/** Index ranges of a stage's grid that a view rectangle (world coordinates) touches, or null. */
export function visibleCells(box: StageBox, view: Rect): { c0: number; c1: number; r0: number; r1: number } | null {
  if (box.slots <= 0) return null;
  if (view.x > box.x + box.width || view.x + view.width < box.x || view.y > box.y + box.height || view.y + view.height < box.y) return null;
  const c0 = Math.max(0, Math.floor((view.x - box.gridX) / cellW));
  const c1 = Math.min(box.cols - 1, Math.floor((view.x + view.width - box.gridX) / cellW));
  const r0 = Math.max(0, Math.floor((view.y - box.gridY) / cellH));
  const r1 = Math.min(box.rows - 1, Math.floor((view.y + view.height - box.gridY) / cellH));
  if (c0 > c1 || r0 > r1) return null;
  return { c0, c1, r0, r1 };
}

/** Edges between two stages: drawn one by one while few, else as one stage-to-stage edge with a count. */
export interface StageEdge {
  from: string;
  to: string;
  /** Node edges between the two stages (0: a dependency whose stage has no steps yet). */
  count: number;
  /** The node edges to draw one by one (empty when aggregated). */
  individual: DagEdge[];
}

export const INDIVIDUAL_EDGES_PER_PAIR = 64;
export const INDIVIDUAL_EDGES_TOTAL = 1500;

/**
 * Groups node edges by their stages and adds the stages' dependencies that have no node edges
 * yet (a waiting stage). `stageOf` maps a node id to its stage. A dependency whose node edges go in
 * or out of subworkflows (init → nested[0].init, nested[0].last → after) is drawn by those edges.
 */
export function stageEdges(stages: DagStage[], edges: DagEdge[], stageOf: (id: string) => string = stageOfNodeId): StageEdge[] {
  const pairs = new Map<string, StageEdge>();
  const key = (from: string, to: string) => `${from}\u0000${to}`;
  const pair = (from: string, to: string) => {
    const k = key(from, to);
    let p = pairs.get(k);
    if (!p) pairs.set(k, (p = { from, to, count: 0, individual: [] }));
    return p;
  };
  for (const e of edges) {
    const p = pair(stageOf(e.from), stageOf(e.to));
    p.count++;
    p.individual.push(e);
  }
  // Stage pairs the node edges stand for, counting the stages whose subworkflows hold either end.
  let covered: Set<string> | null = null;
  for (const p of pairs.values()) {
    const from = ancestorStages(p.from);
    const to = ancestorStages(p.to);
    if (!from.length && !to.length) continue;
    covered ??= new Set();
    for (const a of [p.from, ...from]) for (const b of [p.to, ...to]) covered.add(key(a, b));
  }
  for (const s of stages) for (const d of s.dependencies) if (!covered?.has(key(d, s.name))) pair(d, s.name);
  let total = 0;
  for (const p of pairs.values()) {
    if (p.count > INDIVIDUAL_EDGES_PER_PAIR) p.individual = [];
    total += p.individual.length;
  }
  if (total > INDIVIDUAL_EDGES_TOTAL) for (const p of pairs.values()) p.individual = [];
  return [...pairs.values()].filter((p) => p.from !== p.to);
}
