// Zoomed out, a DAG's nodes are rectangles on a canvas over the SVG. Painting 20,000 of them is a
// software raster where there is no GPU (measured by bench/bench_dag.mjs: 30 frames a second while a
// run went on), so the steady picture is kept in a second canvas covering the view and a margin of
// a quarter view around it: painted whole only when the view leaves that window or the zoom, the
// layout, the size or the colours change, and step by step when steps change state. Each frame
// copies it (a pan just copies it elsewhere) and paints over it what moves: the running steps (they
// pulse) and the selection.
import type { WorkflowState } from '@af-gateway/schemas';
import { type DagLayout, GEOMETRY, nodeRect, type Rect, windowAround, within } from './dag-layout';
import { forVisibleNodes, type NodeLook } from './dag-nodes';
import { type DagState, isInitStage, STATES } from './dag-state';

/** The part of a 2D context this uses (tests hand in a recorder). */
export interface Context2D {
  fillStyle: unknown;
  strokeStyle: unknown;
  globalAlpha: number;
  lineWidth: number;
  setTransform(a: number, b: number, c: number, d: number, e: number, f: number): void;
  fillRect(x: number, y: number, w: number, h: number): void;
  clearRect(x: number, y: number, w: number, h: number): void;
  strokeRect(x: number, y: number, w: number, h: number): void;
  drawImage(image: unknown, x: number, y: number): void;
}

export interface CanvasLike {
  width: number;
  height: number;
  getContext(kind: '2d'): Context2D | null;
}

export interface CanvasFrame {
  layout: DagLayout;
  state: DagState;
  /** The model's version, and the nodes changed since a version (null: not known, paint all). */
  version: number;
  changedSince(version: number): Set<string> | null;
  /** The view: translation (px) and scale, the visible world rectangle and the size in px. */
  view: { x: number; y: number; k: number };
  rect: Rect;
  width: number;
  height: number;
  dpr: number;
  colours: Record<NodeLook, string>;
  /** Opacity of the running steps this frame (their pulse). */
  runningAlpha: number;
  selected: Rect | null;
  selectionColour: string;
}

const lookOf = (stage: string, state: WorkflowState): NodeLook => (isInitStage(stage) ? 'INIT' : state);

export class CanvasNodes {
  private key = '';
  private window: Rect = { x: 0, y: 0, width: 0, height: 0 };
  private version = -1;
  /** The state each node in view was painted in, and where the running ones are. */
  private painted = new Map<string, WorkflowState>();
  private running = new Map<string, Rect>();
  private counts: Record<WorkflowState, number> = { DEFINED: 0, RUNNING: 0, SUCCESS: 0, FAILED: 0, CANCELLED: 0 };
  private paintedLayout: DagLayout | null = null;

  constructor(
    private readonly canvas: CanvasLike,
    private readonly cache: CanvasLike,
  ) {}

  /** Paints a frame; answers the nodes in the painted window (the view and its margin) per state (inits in theirs). */
  draw(f: CanvasFrame): Record<WorkflowState, number> {
    const cw = Math.max(1, Math.round(f.width * f.dpr));
    const ch = Math.max(1, Math.round(f.height * f.dpr));
    if (this.canvas.width !== cw || this.canvas.height !== ch) {
      this.canvas.width = cw;
      this.canvas.height = ch;
    }
    const ctx = this.canvas.getContext('2d');
    const cache = this.cache.getContext('2d');
    if (!ctx || !cache) return this.counts;
    const { x, y, k } = f.view;
    const key = [k, cw, ch, f.dpr, ...Object.values(f.colours)].join(',');
    const fresh = key !== this.key || this.version < 0 || !within(f.rect, this.window) || this.paintedLayout !== f.layout;
    const changed = fresh ? null : f.changedSince(this.version);
    if (!changed) {
      this.window = windowAround(f.rect);
      const width = Math.ceil(this.window.width * k * f.dpr);
      const height = Math.ceil(this.window.height * k * f.dpr);
      if (this.cache.width !== width || this.cache.height !== height) {
        this.cache.width = width;
        this.cache.height = height;
      }
    }
    const scale = f.dpr * k;
    cache.setTransform(scale, 0, 0, scale, -this.window.x * scale, -this.window.y * scale);
    if (!changed) this.paintAll(cache, f);
    else this.paintChanged(cache, f, changed);
    this.key = key;
    this.version = f.version;

    // the frame: the steady picture where the view has it, then the running steps and the selection on it
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, cw, ch);
    ctx.drawImage(this.cache, Math.round((this.window.x * k + x) * f.dpr), Math.round((this.window.y * k + y) * f.dpr));
    ctx.setTransform(f.dpr * k, 0, 0, f.dpr * k, f.dpr * x, f.dpr * y);
    const { nodeW, nodeH } = GEOMETRY;
    ctx.fillStyle = f.colours.RUNNING;
    ctx.globalAlpha = f.runningAlpha;
    for (const p of this.running.values()) ctx.fillRect(p.x, p.y, nodeW, nodeH);
    ctx.globalAlpha = 1;
    if (f.selected) {
      const s = f.selected;
      ctx.strokeStyle = f.selectionColour;
      ctx.lineWidth = 2.5 / k;
      ctx.strokeRect(s.x - 3 / k, s.y - 3 / k, s.width + 6 / k, s.height + 6 / k);
    }
    return this.counts;
  }

  /** Whether a running step is in view (the frame must be drawn again for its pulse). */
  get pulsing(): boolean {
    return this.running.size > 0;
  }

  /** Forgets the picture (the nodes went back into the SVG): the next frame paints all. */
  reset(): void {
    this.key = '';
    this.version = -1;
    this.painted.clear();
    this.running.clear();
    this.paintedLayout = null;
  }

  private paintAll(cache: Context2D, f: CanvasFrame): void {
    const w = this.window;
    cache.clearRect(w.x, w.y, w.width, w.height);
    const byLook: Record<NodeLook, Rect[]> = { DEFINED: [], RUNNING: [], SUCCESS: [], FAILED: [], CANCELLED: [], INIT: [] };
    this.painted.clear();
    this.running.clear();
    this.counts = { DEFINED: 0, RUNNING: 0, SUCCESS: 0, FAILED: 0, CANCELLED: 0 };
    forVisibleNodes(f.layout, f.state, w, (box, i, n) => {
      const r = nodeRect(box, i);
      this.painted.set(n.id, n.state);
      this.counts[n.state]++;
      if (n.state === 'RUNNING' && !isInitStage(box.name)) this.running.set(n.id, r);
      else byLook[lookOf(box.name, n.state)].push(r);
    });
    const { nodeW, nodeH } = GEOMETRY;
    for (const look of [...STATES, 'INIT'] as const) {
      cache.fillStyle = f.colours[look];
      for (const p of byLook[look]) cache.fillRect(p.x, p.y, nodeW, nodeH);
    }
    this.paintedLayout = f.layout;
  }

  private paintChanged(cache: Context2D, f: CanvasFrame, ids: Set<string>): void {
    const { nodeW, nodeH } = GEOMETRY;
    for (const id of ids) {
      const before = this.painted.get(id);
      const node = f.state.nodes.get(id);
      const box = node && f.layout.stages.get(node.stage);
      if (before === undefined || !node || !box) continue; // not in view
      this.counts[before]--;
      this.counts[node.state]++;
      this.painted.set(id, node.state);
      const r = nodeRect(box, node.index ?? 0);
      this.running.delete(id);
      cache.clearRect(r.x, r.y, nodeW, nodeH);
      if (node.state === 'RUNNING' && !isInitStage(box.name)) this.running.set(id, r);
      else {
        cache.fillStyle = f.colours[lookOf(box.name, node.state)];
        cache.fillRect(r.x, r.y, nodeW, nodeH);
      }
    }
  }
}
