// Draws a run's DAG into an SVG and lets the user pan (drag), zoom (wheel, buttons) and pick a node
// (click). Made for runs of many thousand steps:
//  - the layout (dag-layout.ts) is redone only when stages or node counts change, and off the frame;
//  - drawing happens at most once per animation frame, and only what changed is rebuilt;
//  - nodes are culled to the visible part of each stage, and drawn as SVG elements (one per node,
//    with a margin around the view so a small pan rebuilds nothing) only when zoomed in enough to
//    read them; zoomed out, they are rectangles on a canvas over the SVG (level of detail);
//  - stage labels live in screen space, so they stay readable at any zoom; node labels grow in the
//    drawing as it shrinks and are hidden once still too small to read, the hovered node's name shown
//    beside the pointer instead (as on the canvas);
//  - edges are drawn one by one while stages are small, else as one stage-to-stage edge with a count.
import {
  type DagLayout,
  GEOMETRY,
  layoutDag,
  nodeAt,
  nodeRect,
  type Rect,
  type StageBox,
  stageAt,
  type StageEdge,
  stageEdges,
  stageNote,
  windowAround,
  within,
} from './dag-layout';
import type { DagModel } from './dag-model';
import { CanvasNodes } from './dag-canvas';
import { cellsIn, labelsReadable, nodeFont, type NodeLook, nodeMarkup, oneNodeMarkup } from './dag-nodes';
import { countsByStage, type DagState, stageOfNodeId, STATES, type StepCounts, stageSignature } from './dag-state';
import { loadElk } from './elk-client';

const SVG_NS = 'http://www.w3.org/2000/svg';
/** One element per node from this zoom on (a node is then ≥ 12 px high)... */
const DETAIL_MIN_SCALE = 12 / GEOMETRY.nodeH;
/** ...while no more than this many are visible. */
const DETAIL_MAX_NODES = 1200;
const MIN_SCALE = 0.01;
/** Inside its box's header a stage label shrinks with the box, but not below a size one can read... */
const labelScale = (k: number) => Math.max(0.8, Math.min(1, k));
/** ...and sits there while the header holds its three lines (48 px at full size); else above the box. */
const labelsInside = (k: number) => GEOMETRY.header * k >= 48 * labelScale(k);
/** Room above the drawing for labels placed above their boxes (px). */
const LABEL_ABOVE = 34;
/** Narrower boxes (px) get only their name above them. */
const LABEL_FULL_MIN_WIDTH = 150;
const MAX_SCALE = 4;

export interface View {
  x: number;
  y: number;
  k: number;
}

export interface RendererCallbacks {
  /** A node was clicked (null: the background). */
  select(id: string | null): void;
  /** The zoom changed (the toolbar shows it). */
  zoomed?(k: number): void;
}

const fmt = (n: number) => n.toLocaleString('en-US');

function el<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number> = {}, parent?: Element): SVGElementTagNameMap[K] {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  parent?.appendChild(e);
  return e;
}

/**
 * Sets an attribute only when its value changes: the view is drawn every frame while anything moves,
 * and writing even the same value into the transform or class of a group of a thousand nodes makes
 * the browser restyle and lay them all out again.
 */
function setAttr(e: Element, name: string, value: string): void {
  if (e.getAttribute(name) !== value) e.setAttribute(name, value);
}

/** "5 steps · 3 done · 1 running · 1 failed", and "2 subworkflows" for a stage running a workflow. */
export function stageCountsText(c: StepCounts | undefined, slots: number, subworkflows = 0): string {
  const made = subworkflows ? `${fmt(subworkflows)} ${subworkflows === 1 ? 'subworkflow' : 'subworkflows'}` : '';
  if (!c) return made;
  const total = STATES.reduce((n, s) => n + c[s], 0);
  const parts = [`${fmt(total)} ${total === 1 ? 'step' : 'steps'}`];
  if (c.SUCCESS) parts.push(`${fmt(c.SUCCESS)} done`);
  if (c.RUNNING) parts.push(`${fmt(c.RUNNING)} running`);
  if (c.FAILED) parts.push(`${fmt(c.FAILED)} failed`);
  if (c.CANCELLED) parts.push(`${fmt(c.CANCELLED)} cancelled`);
  if (c.DEFINED && c.DEFINED !== total) parts.push(`${fmt(c.DEFINED)} waiting`);
  if (made) parts.push(made);
  return total || slots ? parts.join(' · ') : made;
}

/** A line of 11 px label text cut to about what fits in `px` (the full text is in the box's tooltip). */
export function fitText(text: string, px: number): string {
  const chars = Math.max(8, Math.floor(px / 6.2));
  return text.length > chars ? `${text.slice(0, chars - 1)}…` : text;
}

const TYPE_LABEL: Record<StageBox['type'], string> = { init: 'init', 'singlestep-stage': 'singlestep', 'multistep-stage': 'multistep', 'jq-stage': 'jq' };

export class DagRenderer {
  readonly svg: SVGSVGElement;
  private readonly world: SVGGElement;
  private readonly boxLayer: SVGGElement;
  private readonly edgeLayer: SVGGElement;
  private readonly nodeLayer: SVGGElement;
  private readonly selectionRect: SVGRectElement;
  private readonly labelLayer: SVGGElement;
  /** The hovered node's name, beside the pointer, while node labels are not drawn readably (over the canvas). */
  private readonly hoverLabel: HTMLDivElement;
  private hovered: { id: string; x: number; y: number } | null = null;
  private readonly markerId = `jp-AFDag-arrow-${Math.random().toString(36).slice(2, 8)}`;

  private layout: DagLayout | null = null;
  private layoutKey = '';
  private layoutRunning = false;
  private layoutFor = -1;
  private edges: StageEdge[] = [];
  private view: View = { x: 0, y: 0, k: 1 };
  private userMoved = false;
  private frame = 0;
  private drawnLayout: DagLayout | null = null;
  private drawnEdgesFor = -1;
  private drawnVersion = -1;
  private counts = new Map<string, StepCounts>();
  /** The world rectangle the node layer holds, its mode and data version. */
  private nodeWindow: { rect: Rect; version: number; layout: DagLayout; font: number } | null = null;
  private readonly canvas: HTMLCanvasElement;
  private readonly canvasNodes: CanvasNodes;
  private canvasDrawn = false;
  /** While running nodes are on the canvas, it is redrawn now and then: they pulse. */
  private pulseTimer: ReturnType<typeof setTimeout> | 0 = 0;
  private labels = new Map<
    string,
    { g: SVGGElement; title: SVGTextElement; sub: SVGTextElement; counts: SVGTextElement; note: string; tip: SVGTitleElement; nested: boolean }
  >();
  /** Subworkflow groups' labels: their name and the case that chose them. */
  private scopeLabels = new Map<string, { g: SVGGElement; chosen: SVGTSpanElement; tip: SVGTitleElement }>();
  private edgeLabels: { g: SVGGElement; x: number; y: number; length: number }[] = [];
  private selected: string | null = null;
  private drag: { id: number; x: number; y: number; vx: number; vy: number; moved: boolean } | null = null;
  private readonly resizeObserver: ResizeObserver;
  private readonly themeObserver: MutationObserver;
  private readonly themeTimers: ReturnType<typeof setTimeout>[] = [];
  private disposed = false;

  constructor(
    private readonly host: HTMLElement,
    private readonly model: DagModel,
    private readonly callbacks: RendererCallbacks,
  ) {
    this.svg = el('svg', { class: 'jp-AFDag-svg', role: 'img' }, host);
    const defs = el('defs', {}, this.svg);
    const marker = el(
      'marker',
      { id: this.markerId, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
      defs,
    );
    el('path', { d: 'M0 0L10 5L0 10z', class: 'jp-AFDag-arrow' }, marker);
    this.world = el('g', { class: 'jp-AFDag-world' }, this.svg);
    this.boxLayer = el('g', { class: 'jp-AFDag-boxes' }, this.world);
    this.edgeLayer = el('g', { class: 'jp-AFDag-edges' }, this.world);
    this.nodeLayer = el('g', { class: 'jp-AFDag-nodes' }, this.world);
    this.selectionRect = el('rect', { class: 'jp-AFDag-selection', rx: 5, visibility: 'hidden' }, this.world);
    this.labelLayer = el('g', { class: 'jp-AFDag-labels' }, this.svg);
    this.canvas = document.createElement('canvas');
    this.canvas.className = 'jp-AFDag-canvasNodes';
    host.appendChild(this.canvas);
    this.canvasNodes = new CanvasNodes(this.canvas, document.createElement('canvas'));
    this.hoverLabel = document.createElement('div');
    this.hoverLabel.className = 'jp-AFDag-hoverLabel';
    this.hoverLabel.hidden = true;
    host.appendChild(this.hoverLabel);

    model.changed.connect(this.schedule, this);
    this.svg.addEventListener('pointerdown', this.onPointerDown);
    this.svg.addEventListener('pointermove', this.onPointerMove);
    this.svg.addEventListener('pointerup', this.onPointerUp);
    this.svg.addEventListener('pointercancel', this.onPointerUp);
    this.svg.addEventListener('pointerleave', this.onPointerLeave);
    this.svg.addEventListener('wheel', this.onWheel, { passive: false });
    // The SVG gets its size in pixels, not 100% of the host: a percentage makes the browser lay out
    // every node again whenever anything around the view is laid out (a count in the header, say).
    this.sizeSvg();
    this.resizeObserver = new ResizeObserver(() => {
      this.sizeSvg();
      if (!this.userMoved) this.fit(false);
      this.schedule();
    });
    this.resizeObserver.observe(host);
    // The canvas takes the theme's colours when it draws: a theme change draws again.
    // The new theme's colours apply once its stylesheet has loaded (the view may have no size meanwhile):
    // draw again over the next seconds too.
    this.themeObserver = new MutationObserver(() => {
      this.schedule();
      for (const t of this.themeTimers.splice(0)) clearTimeout(t);
      for (const ms of [250, 1000, 3000]) this.themeTimers.push(setTimeout(() => this.schedule(), ms));
    });
    this.themeObserver.observe(document.body, { attributes: true, attributeFilter: ['data-jp-theme-name', 'data-jp-theme-light'] });
    this.schedule();
  }

  dispose(): void {
    this.disposed = true;
    cancelAnimationFrame(this.frame);
    if (this.pulseTimer) clearTimeout(this.pulseTimer);
    this.model.changed.disconnect(this.schedule, this);
    this.resizeObserver.disconnect();
    this.themeObserver.disconnect();
    for (const t of this.themeTimers.splice(0)) clearTimeout(t);
    this.svg.remove();
    this.canvas.remove();
    this.hoverLabel.remove();
  }

  get scale(): number {
    return this.view.k;
  }

  /** Draws in the next animation frame (once, however often it is asked). */
  schedule(): void {
    if (this.frame || this.disposed) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  select(id: string | null): void {
    this.selected = id;
    this.schedule();
  }

  /** Zooms by `factor` around a point of the view (default: its centre). */
  zoomBy(factor: number, cx?: number, cy?: number): void {
    const { width, height } = this.size();
    const px = cx ?? width / 2;
    const py = cy ?? height / 2;
    const k = Math.min(MAX_SCALE, Math.max(MIN_SCALE, this.view.k * factor));
    const f = k / this.view.k;
    this.view = { k, x: px - (px - this.view.x) * f, y: py - (py - this.view.y) * f };
    this.userMoved = true;
    this.callbacks.zoomed?.(k);
    this.schedule();
  }

  /** Shows the whole DAG; `byUser` keeps it from following later growth automatically. */
  fit(byUser = true): void {
    if (byUser) this.userMoved = false;
    const layout = this.layout;
    const { width, height } = this.size();
    if (!layout || width <= 0 || height <= 0) return;
    const fitK = (top: number) => Math.min(MAX_SCALE, Math.max(MIN_SCALE, Math.min((width - 24) / layout.width, (height - 24 - top) / layout.height, 1.25)));
    let top = 0;
    let k = fitK(0);
    if (!labelsInside(k)) k = fitK((top = LABEL_ABOVE));
    this.view = { k, x: (width - layout.width * k) / 2, y: top + (height - top - layout.height * k) / 2 };
    this.callbacks.zoomed?.(k);
    this.schedule();
  }

  private sizeSvg(): void {
    const { width, height } = this.size();
    setAttr(this.svg, 'width', String(width));
    setAttr(this.svg, 'height', String(height));
  }

  private size(): { width: number; height: number } {
    return { width: this.host.clientWidth, height: this.host.clientHeight };
  }

  private nodeRectOf(id: string): Rect | null {
    const node = this.model.node(id);
    const box = node && this.layout?.stages.get(node.stage);
    if (!node || !box || box.slots <= (node.index ?? 0)) return null;
    return nodeRect(box, node.index ?? 0);
  }

  // --- layout -------------------------------------------------------------------------------------

  private ensureLayout(state: DagState): void {
    if (this.layoutFor === this.model.structureVersion || this.layoutRunning) return;
    const slots = new Map<string, number>();
    for (const [stage, list] of state.byStage) slots.set(stage, list.length);
    const key = `${stageSignature(state.stages)}#${[...slots].map(([s, n]) => `${s}=${n}`).join(',')}`;
    const version = this.model.structureVersion;
    this.edges = stageEdges(state.stages, state.edges, (id) => state.nodes.get(id)?.stage ?? stageOfNodeId(id));
    if (key === this.layoutKey) {
      this.layoutFor = version; // only edges are new: same boxes
      return;
    }
    this.layoutRunning = true;
    const started = performance.now();
    void loadElk()
      .then((elk) => layoutDag(state.stages, slots, elk))
      .then(
        (layout) => {
          // on the page's timeline, for the curious and bench/bench_dag.mjs (a handful per run)
          performance.measure('af-dag-layout', { start: started, detail: { run: this.model.runId, nodes: state.nodes.size } });
          this.layout = layout;
          this.layoutKey = key;
          this.layoutFor = version;
        },
        (err: unknown) => console.error('AF Gateway: the DAG could not be laid out', err),
      )
      .finally(() => {
        this.layoutRunning = false;
        if (this.disposed) return;
        if (!this.userMoved) this.fit(false);
        this.schedule();
      });
  }

  // --- drawing ------------------------------------------------------------------------------------

  private draw(): void {
    const state = this.model.state;
    if (!state) return;
    this.ensureLayout(state);
    const layout = this.layout;
    if (!layout) return;
    // hidden (a tab behind another, or the page while a theme loads): nothing to draw into
    const { width, height } = this.size();
    if (!width || !height) return;
    const { k, x, y } = this.view;
    setAttr(this.world, 'transform', `translate(${x},${y}) scale(${k})`);
    const newLayout = this.drawnLayout !== layout;
    if (newLayout) this.drawBoxes(layout);
    if (newLayout || this.drawnEdgesFor !== this.layoutFor) this.drawEdges(layout, state);
    this.drawnLayout = layout;
    this.drawnEdgesFor = this.layoutFor;
    if (newLayout || this.drawnVersion !== this.model.version) {
      this.counts = countsByStage(state);
      for (const box of layout.stages.values()) {
        const l = this.labels.get(box.name);
        if (!l) continue;
        const counts = stageCountsText(this.counts.get(box.name), box.slots, box.scopes.length);
        l.counts.textContent = fitText(counts, box.width - 20);
        l.tip.textContent = [box.name, l.sub.textContent, counts || l.note, box.state === 'SKIPPED' && counts ? l.note : ''].filter(Boolean).join('\n');
      }
      // A subworkflow a case chose says which: its init carries the case.
      for (const [scope, l] of this.scopeLabels) {
        const chosen = state.nodes.get(`${scope}.init`)?.case;
        const text = typeof chosen === 'number' ? `case ${chosen}` : '';
        if (l.chosen.textContent !== text) {
          l.chosen.textContent = text;
          if (text) l.g.setAttribute('data-case', String(chosen));
          else l.g.removeAttribute('data-case');
          l.tip.textContent = `subworkflow ${scope}${text ? `, chosen by ${text}` : ''}`;
        }
      }
    }
    this.drawNodes(layout, state);
    this.drawnVersion = this.model.version;
    this.placeLabels(layout);
    const sel = this.selected ? this.nodeRectOf(this.selected) : null;
    if (sel) {
      const m = 3;
      setAttr(this.selectionRect, 'x', String(sel.x - m));
      setAttr(this.selectionRect, 'y', String(sel.y - m));
      setAttr(this.selectionRect, 'width', String(sel.width + 2 * m));
      setAttr(this.selectionRect, 'height', String(sel.height + 2 * m));
      setAttr(this.selectionRect, 'visibility', 'visible');
    } else setAttr(this.selectionRect, 'visibility', 'hidden');
  }

  private drawBoxes(layout: DagLayout): void {
    this.boxLayer.textContent = '';
    this.labelLayer.textContent = '';
    this.labels.clear();
    this.scopeLabels.clear();
    // Outer stages come before the stages inside them: a stage's box, then its subworkflows' groups, then theirs.
    for (const box of layout.stages.values()) {
      const st = box.state.toLowerCase();
      const nested = box.depth > 0 ? ' mod-nested' : '';
      const g = el('g', { class: `jp-AFDag-stage mod-${st} mod-${TYPE_LABEL[box.type]}${nested}`, 'data-stage': box.name }, this.boxLayer);
      el('rect', { x: box.x, y: box.y, width: box.width, height: box.height, rx: 8 }, g);
      const tip = el('title', {}, g);
      const lg = el('g', { class: `jp-AFDag-stageLabel mod-${st}${nested}`, 'data-stage': box.name }, this.labelLayer);
      const title = el('text', { class: 'jp-AFDag-stageName', x: 0, y: 0 }, lg);
      title.textContent = fitText(box.label, box.width - 20);
      const sub = el('text', { class: 'jp-AFDag-stageType', x: 0, y: 14 }, lg);
      sub.textContent = `${TYPE_LABEL[box.type]} · ${box.state}`;
      // Third line: the steps per state (and subworkflows), or why there are none.
      const counts = el('text', { class: 'jp-AFDag-stageCounts', x: 0, y: 28 }, lg);
      // (a second line only inside its box: above it, it would cover the box)
      box.note.forEach((line, i) => {
        const t = el('text', { class: `jp-AFDag-stageNote${i ? ' mod-more' : ''}`, x: 0, y: 28 + 14 * i }, lg);
        t.textContent = line;
      });
      const note = box.note.length || box.state === 'SKIPPED' ? stageNote(box) : '';
      this.labels.set(box.name, { g: lg, title, sub, counts, note, tip, nested: box.depth > 0 });
      for (const name of box.scopes) {
        const sc = layout.scopes.get(name);
        if (!sc) continue;
        const sg = el('g', { class: 'jp-AFDag-scope', 'data-scope': name }, this.boxLayer);
        el('rect', { x: sc.x, y: sc.y, width: sc.width, height: sc.height, rx: 6 }, sg);
        const stip = el('title', {}, sg);
        stip.textContent = `subworkflow ${name}`;
        const sl = el('g', { class: 'jp-AFDag-scopeLabel', 'data-scope': name }, this.labelLayer);
        const text = el('text', { x: 0, y: 0 }, sl);
        const label = el('tspan', { class: 'jp-AFDag-scopeName' }, text);
        label.textContent = sc.label;
        const chosen = el('tspan', { class: 'jp-AFDag-scopeCase', dx: 8 }, text);
        this.scopeLabels.set(name, { g: sl, chosen, tip: stip });
      }
    }
  }

  private drawEdges(layout: DagLayout, state: DagState): void {
    this.edgeLayer.textContent = '';
    for (const e of this.edgeLabels) e.g.remove();
    this.edgeLabels = [];
    const individual: string[] = [];
    const curve = (sx: number, sy: number, tx: number, ty: number) => {
      const dx = Math.max(30, (tx - sx) / 2);
      return `M${sx} ${sy}C${sx + dx} ${sy} ${tx - dx} ${ty} ${tx} ${ty}`;
    };
    for (const e of this.edges) {
      const from = layout.stages.get(e.from);
      const to = layout.stages.get(e.to);
      if (!from || !to) continue;
      if (e.individual.length) {
        for (const ne of e.individual) {
          const a = state.nodes.get(ne.from);
          const b = state.nodes.get(ne.to);
          if (!a || !b) continue;
          const ra = nodeRect(from, a.index ?? 0);
          const rb = nodeRect(to, b.index ?? 0);
          individual.push(curve(ra.x + ra.width, ra.y + ra.height / 2, rb.x, rb.y + rb.height / 2));
        }
        continue;
      }
      const sx = from.x + from.width;
      const sy = from.y + from.height / 2;
      const tx = to.x;
      const ty = to.y + to.height / 2;
      const waiting = e.count === 0;
      el(
        'path',
        {
          d: curve(sx, sy, tx - 2, ty),
          class: `jp-AFDag-stageEdge${waiting ? ' mod-waiting' : ''}`,
          'marker-end': `url(#${this.markerId})`,
          'data-from': e.from,
          'data-to': e.to,
        },
        this.edgeLayer,
      );
      if (e.count > 0) {
        const g = el('g', { class: 'jp-AFDag-edgeCount', 'data-from': e.from, 'data-to': e.to }, this.labelLayer);
        const t = el('text', { x: 0, y: 0, 'text-anchor': 'middle' }, g);
        t.textContent = `×${fmt(e.count)}`;
        this.edgeLabels.push({ g, x: (sx + tx) / 2, y: (sy + ty) / 2, length: tx - sx });
      }
    }
    if (individual.length) el('path', { d: individual.join(''), class: 'jp-AFDag-nodeEdges' }, this.edgeLayer);
  }

  /** The visible world rectangle. */
  private viewRect(): Rect {
    const { width, height } = this.size();
    const { x, y, k } = this.view;
    return { x: -x / k, y: -y / k, width: width / k, height: height / k };
  }

  private drawNodes(layout: DagLayout, state: DagState): void {
    const view = this.viewRect();
    const rect = windowAround(view);
    const detail = this.view.k >= DETAIL_MIN_SCALE && cellsIn(layout, rect) <= DETAIL_MAX_NODES;
    const readable = detail && labelsReadable(this.view.k);
    setAttr(this.nodeLayer, 'class', `jp-AFDag-nodes${detail ? ' mod-detail' : ' mod-compact'}${readable ? '' : ' mod-noLabels'}`);
    // how high (px) node labels are on screen, 0 when not drawn (tests read it)
    setAttr(this.nodeLayer, 'data-label-px', readable ? String(Math.round(nodeFont(this.view.k) * this.view.k * 10) / 10) : '0');
    this.placeHover(readable);
    if (!detail) {
      if (this.nodeWindow) {
        this.nodeLayer.textContent = '';
        this.nodeWindow = null;
      }
      this.drawCanvas(layout, state, view);
      return;
    }
    if (this.canvasDrawn) this.clearCanvas();
    const w = this.nodeWindow;
    const font = nodeFont(this.view.k);
    if (w && within(view, w.rect) && w.layout === layout && w.font === font) {
      if (w.version === this.model.version) return;
      // Steps changed state (a running DAG): redraw only those, when it is known which
      const changed = this.model.changedSince(w.version);
      if (changed) {
        this.redrawNodes(layout, state, changed, font);
        w.version = this.model.version;
        return;
      }
    }
    this.nodeWindow = { rect, version: this.model.version, layout, font };
    this.nodeLayer.style.setProperty('--jp-AFDag-nodeFont', `${font}px`);
    this.nodeLayer.innerHTML = nodeMarkup(layout, state, rect, font);
  }

  /** Draws the nodes `ids` again where the node layer holds them (those outside its window are drawn when it moves). */
  private redrawNodes(layout: DagLayout, state: DagState, ids: Set<string>, font: number): void {
    for (const id of ids) {
      const node = state.nodes.get(id);
      const box = node && layout.stages.get(node.stage);
      if (!node || !box) continue;
      const drawn = this.nodeLayer.querySelector(`.jp-AFDag-node[data-node="${CSS.escape(id)}"]`);
      if (drawn) drawn.outerHTML = oneNodeMarkup(box, node.index ?? 0, node, font);
    }
  }

  /**
   * Zoomed out, the nodes go onto a canvas over the SVG, redrawn whole each frame (a few thousand
   * rectangles take a millisecond or two), in the theme's state colours. Running nodes pulse as in
   * the SVG while any is in view.
   */
  private drawCanvas(layout: DagLayout, state: DagState, view: Rect): void {
    const { width, height } = this.size();
    const style = getComputedStyle(this.host);
    const colour = (name: string, fallback: string) => style.getPropertyValue(name).trim() || fallback;
    const colours = Object.fromEntries([...STATES, 'INIT'].map((s) => [s, colour(`--jp-AFWorkflow-${s.toLowerCase()}`, '#888')])) as Record<NodeLook, string>;
    const drawn = this.canvasNodes.draw({
      layout,
      state,
      version: this.model.version,
      changedSince: (v) => this.model.changedSince(v),
      view: this.view,
      rect: view,
      width,
      height,
      dpr: window.devicePixelRatio || 1,
      colours,
      runningAlpha: 0.55 + 0.45 * Math.abs(Math.cos(performance.now() / 450)),
      selected: this.selected ? this.nodeRectOf(this.selected) : null,
      selectionColour: colour('--jp-brand-color0', '#0d47a1'),
    });
    this.canvasDrawn = true;
    // What is drawn, for tests and the curious (a canvas has no elements to count).
    setAttr(this.canvas, 'data-drawn', String(STATES.reduce((n, s) => n + drawn[s], 0)));
    for (const st of STATES) setAttr(this.canvas, `data-${st.toLowerCase()}`, String(drawn[st]));
    if (this.canvasNodes.pulsing && !this.pulseTimer) {
      this.pulseTimer = setTimeout(() => {
        this.pulseTimer = 0;
        this.schedule();
      }, 80);
    }
  }

  private clearCanvas(): void {
    this.canvasNodes.reset();
    const ctx = this.canvas.getContext('2d');
    ctx?.setTransform(1, 0, 0, 1, 0, 0);
    ctx?.clearRect(0, 0, this.canvas.width, this.canvas.height);
    this.canvasDrawn = false;
    this.canvas.dataset.drawn = '0';
  }

  /**
   * Stage labels and edge counts live in screen space, placed every frame: inside the box's header
   * while it is large enough to hold them (shrinking with it down to half size), else above the box
   * at full size, so they stay readable at any zoom.
   */
  private placeLabels(layout: DagLayout): void {
    const { x, y, k } = this.view;
    const inside = labelsInside(k);
    const s = labelScale(k);
    for (const box of layout.stages.values()) {
      const l = this.labels.get(box.name);
      if (!l) continue;
      // Zoomed out, a stage inside a subworkflow shows no label: above its box it would cover its group's.
      if (l.nested) setAttr(l.g, 'visibility', inside ? 'visible' : 'hidden');
      const sx = box.x * k + x;
      const sy = box.y * k + y;
      // Zoomed out, the label goes above its box: only its name above a box too narrow for the whole
      // label (the box's tooltip has the rest), or in its box's header where the box above leaves no room.
      const room = box.roomAbove * k;
      const where = inside ? 'inside' : room < LABEL_ABOVE + 4 && (room < 18 || GEOMETRY.header * k >= 16) ? 'header' : 'above';
      const nameOnly = where === 'header' || (where === 'above' && (box.width * k < LABEL_FULL_MIN_WIDTH || room < LABEL_ABOVE + 4));
      setAttr(
        l.g,
        'transform',
        where === 'inside'
          ? `translate(${sx + 10 * s},${sy + 16 * s}) scale(${s})`
          : where === 'header'
            ? `translate(${sx + 6},${sy + 13})`
            : `translate(${sx},${sy - (nameOnly ? 5 : LABEL_ABOVE)})`,
      );
      l.g.classList.toggle('mod-above', where === 'above');
      l.g.classList.toggle('mod-nameOnly', nameOnly);
    }
    // A subworkflow's label sits in its group's header while that is tall enough for it.
    const header = GEOMETRY.scopeHeader * k;
    for (const [name, l] of this.scopeLabels) {
      const sc = layout.scopes.get(name);
      if (!sc) continue;
      setAttr(l.g, 'visibility', header >= 10 ? 'visible' : 'hidden');
      if (header >= 10) setAttr(l.g, 'transform', `translate(${sc.x * k + x + 8 * s},${sc.y * k + y + Math.min(17 * s, header - 2)}) scale(${s})`);
    }
    for (const e of this.edgeLabels) {
      setAttr(e.g, 'transform', `translate(${e.x * k + x},${e.y * k + y + 16})`);
      // A count wider than its edge would cover the boxes: the stage labels tell the numbers then.
      setAttr(e.g, 'visibility', e.length * k >= 48 ? 'visible' : 'hidden');
    }
  }

  // --- interaction --------------------------------------------------------------------------------

  private onPointerDown = (ev: PointerEvent): void => {
    if (ev.button !== 0) return;
    this.hovered = null;
    this.drag = { id: ev.pointerId, x: ev.clientX, y: ev.clientY, vx: this.view.x, vy: this.view.y, moved: false };
  };

  private onPointerMove = (ev: PointerEvent): void => {
    const d = this.drag;
    if (!d || d.id !== ev.pointerId) {
      if (!d) this.hover(ev.clientX, ev.clientY);
      return;
    }
    const dx = ev.clientX - d.x;
    const dy = ev.clientY - d.y;
    if (!d.moved && Math.abs(dx) + Math.abs(dy) < 4) return;
    if (!d.moved) {
      d.moved = true;
      this.svg.setPointerCapture(ev.pointerId);
      this.svg.classList.add('mod-dragging');
    }
    this.view = { ...this.view, x: d.vx + dx, y: d.vy + dy };
    this.userMoved = true;
    this.schedule();
  };

  private onPointerUp = (ev: PointerEvent): void => {
    const d = this.drag;
    if (!d || d.id !== ev.pointerId) return;
    this.drag = null;
    this.svg.classList.remove('mod-dragging');
    if (this.svg.hasPointerCapture(ev.pointerId)) this.svg.releasePointerCapture(ev.pointerId);
    if (d.moved || ev.type === 'pointercancel') return;
    this.callbacks.select(this.hit(ev.clientX, ev.clientY));
  };

  private onPointerLeave = (): void => {
    if (!this.hovered) return;
    this.hovered = null;
    this.schedule();
  };

  /** Notes the node under the pointer; the next frame shows its name when labels are not readable. */
  private hover(clientX: number, clientY: number): void {
    const id = this.hit(clientX, clientY);
    const r = this.svg.getBoundingClientRect();
    const next = id ? { id, x: clientX - r.left, y: clientY - r.top } : null;
    if (!next && !this.hovered) return;
    this.hovered = next;
    this.schedule();
  }

  /** The hovered node's id and state beside the pointer, while the nodes carry no readable label. */
  private placeHover(readable: boolean): void {
    const h = this.hovered;
    const node = h && !readable ? this.model.node(h.id) : undefined;
    if (!h || !node) {
      if (!this.hoverLabel.hidden) this.hoverLabel.hidden = true;
      return;
    }
    const label = `${node.id} · ${node.state}`;
    if (this.hoverLabel.textContent !== label) {
      this.hoverLabel.textContent = label;
      this.hoverLabel.dataset.node = node.id;
    }
    this.hoverLabel.hidden = false;
    // right of the pointer, or left of it near the right edge
    const { width } = this.size();
    const w = this.hoverLabel.offsetWidth;
    const x = h.x + 14 + w <= width - 4 ? h.x + 14 : Math.max(4, h.x - 14 - w);
    this.hoverLabel.style.transform = `translate(${x}px,${Math.max(4, h.y - 32)}px)`;
  }

  private onWheel = (ev: WheelEvent): void => {
    ev.preventDefault();
    const r = this.svg.getBoundingClientRect();
    const delta = ev.deltaMode === 1 ? ev.deltaY * 16 : ev.deltaY;
    this.zoomBy(Math.exp(-delta * 0.0015), ev.clientX - r.left, ev.clientY - r.top);
  };

  /** The node under a client point, by arithmetic on the layout (no DOM needed in compact mode). */
  hit(clientX: number, clientY: number): string | null {
    const layout = this.layout;
    const state = this.model.state;
    if (!layout || !state) return null;
    const r = this.svg.getBoundingClientRect();
    const wx = (clientX - r.left - this.view.x) / this.view.k;
    const wy = (clientY - r.top - this.view.y) / this.view.k;
    const box = stageAt(layout, wx, wy);
    if (!box) return null;
    const i = nodeAt(box, wx, wy);
    if (i === null) return null;
    return state.byStage.get(box.name)?.[i]?.id ?? null;
  }
}
