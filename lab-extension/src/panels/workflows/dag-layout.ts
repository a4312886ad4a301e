// Where everything of a DAG goes. Only the STAGES go through elkjs (layered, left to right: a
// workflow has a handful); each stage's steps then sit in a grid inside its box, by index, so the
// layout is O(nodes) and a node's place, a click's node and the visible part of a stage are
// arithmetic. Pure: no DOM.
import type { ElkNode } from 'elkjs/lib/elk-api';
import type { DagEdge, DagStage } from './dag-state';
import { stageOfNodeId } from './dag-state';

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
} as const;

export interface StageBox {
  name: string;
  type: DagStage['type'];
  state: DagStage['state'];
  dependencies: string[];
  message: string;
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

export interface DagLayout {
  stages: Map<string, StageBox>;
  width: number;
  height: number;
}

export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

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
  return {
    name: stage.name,
    type: stage.type,
    state: stage.state,
    dependencies: stage.dependencies,
    message: stage.message ?? '',
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
  box.gridX = box.x + Math.max(GEOMETRY.pad, (box.width - gridW) / 2);
  box.gridY = box.y + GEOMETRY.header;
}

/**
 * Lays the stages out with ELK and places the node grids in them. `slots` gives each stage's node
 * slots; stages that have nodes but are not listed (init, when the gateway leaves it out) get a box.
 */
export async function layoutDag(stages: DagStage[], slots: Map<string, number>, elk: ElkLike): Promise<DagLayout> {
  const all = [...stages];
  for (const name of slots.keys()) {
    if (!all.some((s) => s.name === name)) all.unshift({ name, type: name === 'init' ? 'init' : 'singlestep-stage', dependencies: [], state: 'APPLIED' });
  }
  const boxes = new Map<string, StageBox>();
  for (const s of all) boxes.set(s.name, makeBox(s, slots.get(s.name) ?? 0));
  const edges = all.flatMap((s) =>
    s.dependencies.filter((d) => boxes.has(d) && d !== s.name).map((d) => ({ id: `${d}->${s.name}`, sources: [d], targets: [s.name] })),
  );
  const graph: ElkNode = {
    id: 'root',
    layoutOptions: {
      'elk.algorithm': 'layered',
      'elk.direction': 'RIGHT',
      'elk.spacing.nodeNode': '50',
      'elk.layered.spacing.nodeNodeBetweenLayers': '70',
      'elk.layered.nodePlacement.strategy': 'NETWORK_SIMPLEX',
      'elk.padding': '[top=20,left=20,bottom=20,right=20]',
    },
    children: [...boxes.values()].map((b) => ({ id: b.name, width: b.width, height: b.height })),
    edges,
  };
  let placed: ElkNode | null = null;
  try {
    placed = await elk.layout(graph);
  } catch (err) {
    console.warn('AF Gateway: ELK could not lay out the stages; placing them by depth', err);
  }
  if (placed?.children) {
    for (const c of placed.children) {
      const b = boxes.get(c.id);
      if (b) {
        b.x = c.x ?? 0;
        b.y = c.y ?? 0;
      }
    }
  } else placeByDepth(boxes);
  let width = 0;
  let height = 0;
  for (const b of boxes.values()) {
    finishBox(b);
    width = Math.max(width, b.x + b.width + 20);
    height = Math.max(height, b.y + b.height + 20);
  }
  return { stages: boxes, width, height };
}

/** The fallback: one column per dependency depth. */
function placeByDepth(boxes: Map<string, StageBox>): void {
  const depth = new Map<string, number>();
  const depthOf = (name: string, seen: Set<string>): number => {
    const known = depth.get(name);
    if (known !== undefined) return known;
    if (seen.has(name)) return 0;
    seen.add(name);
    const deps = boxes.get(name)?.dependencies.filter((d) => boxes.has(d)) ?? [];
    const d = deps.length ? 1 + Math.max(...deps.map((x) => depthOf(x, seen))) : 0;
    depth.set(name, d);
    return d;
  };
  const columns: StageBox[][] = [];
  for (const b of boxes.values()) (columns[depthOf(b.name, new Set())] ??= []).push(b);
  let x = 20;
  for (const col of columns) {
    if (!col) continue;
    let y = 20;
    for (const b of col) {
      b.x = x;
      b.y = y;
      y += b.height + 36;
    }
    x += Math.max(...col.map((b) => b.width)) + 70;
  }
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

/** The stage whose box holds a point, if any. */
export function stageAt(layout: DagLayout, x: number, y: number): StageBox | null {
  for (const b of layout.stages.values()) {
    if (x >= b.x && x <= b.x + b.width && y >= b.y && y <= b.y + b.height) return b;
  }
  return null;
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
 * yet (a waiting stage). `stageOf` maps a node id to its stage.
 */
export function stageEdges(stages: DagStage[], edges: DagEdge[], stageOf: (id: string) => string = stageOfNodeId): StageEdge[] {
  const pairs = new Map<string, StageEdge>();
  const pair = (from: string, to: string) => {
    const k = `${from}\u0000${to}`;
    let p = pairs.get(k);
    if (!p) pairs.set(k, (p = { from, to, count: 0, individual: [] }));
    return p;
  };
  for (const e of edges) {
    const p = pair(stageOf(e.from), stageOf(e.to));
    p.count++;
    p.individual.push(e);
  }
  for (const s of stages) for (const d of s.dependencies) pair(d, s.name);
  let total = 0;
  for (const p of pairs.values()) {
    if (p.count > INDIVIDUAL_EDGES_PER_PAIR) p.individual = [];
    total += p.individual.length;
  }
  if (total > INDIVIDUAL_EDGES_TOTAL) for (const p of pairs.values()) p.individual = [];
  return [...pairs.values()].filter((p) => p.from !== p.to);
}
