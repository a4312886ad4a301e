// Drawing a DAG's nodes, culled to a rectangle of the drawing: one SVG element per node when
// zoomed in (clickable, with a tooltip and a label), rectangles on a canvas when zoomed out.
// Both walk only the grid cells in view, so the cost follows what is on screen, not the run's size.
import type { WorkflowNode, WorkflowState } from '@af-gateway/schemas';
import { type DagLayout, GEOMETRY, nodeRect, type Rect, type StageBox, visibleCells } from './dag-layout';
import { type DagState, STATES } from './dag-state';

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => `&${{ '&': 'amp', '<': 'lt', '>': 'gt', '"': 'quot' }[c]};`);

/** Calls `visit` for each node whose cell lies in `rect` (world coordinates). */
export function forVisibleNodes(layout: DagLayout, state: DagState, rect: Rect, visit: (box: StageBox, index: number, node: WorkflowNode) => void): void {
  for (const box of layout.stages.values()) {
    const c = visibleCells(box, rect);
    const list = state.byStage.get(box.name);
    if (!c || !list) continue;
    for (let r = c.r0; r <= c.r1; r++) {
      for (let col = c.c0; col <= c.c1; col++) {
        const i = r * box.cols + col;
        const n = list[i];
        if (n) visit(box, i, n);
      }
    }
  }
}

/** How many grid cells of all stages lie in `rect` (what drawing it one element each would cost). */
export function cellsIn(layout: DagLayout, rect: Rect): number {
  let cells = 0;
  for (const box of layout.stages.values()) {
    const c = visibleCells(box, rect);
    if (c) cells += (c.c1 - c.c0 + 1) * (c.r1 - c.r0 + 1);
  }
  return cells;
}

/** Width of a node's "case N" badge (px). */
const CASE_W = 40;
/** About how many characters of 11 px text fit in a width (px). */
const charsIn = (px: number) => Math.max(3, Math.floor(px / 6.3));
const clip = (text: string, chars: number) => (text.length > chars ? `${text.slice(0, chars - 1)}…` : text);

/**
 * SVG markup of the nodes in `rect`: a group per node with its state class, tooltip and label (its
 * stage's name within its subworkflow, and its index in a multistep stage), and a "case N" badge on
 * a node a stage's case chose.
 */
export function nodeMarkup(layout: DagLayout, state: DagState, rect: Rect): string {
  const { nodeW, nodeH } = GEOMETRY;
  const parts: string[] = [];
  forVisibleNodes(layout, state, rect, (box, i, n) => {
    const p = nodeRect(box, i);
    const label = box.type === 'multistep-stage' || box.type === 'jq-stage' ? `${box.label} #${i}` : box.label;
    const chosen = typeof n.case === 'number';
    const room = nodeW - 12 - (chosen ? CASE_W + 4 : 0);
    parts.push(
      `<g class="jp-AFDag-node mod-${n.state.toLowerCase()}" data-node="${esc(n.id)}"${chosen ? ` data-case="${n.case}"` : ''} transform="translate(${p.x},${p.y})">` +
        `<title>${esc(n.id)}: ${n.state}${n.attempts > 1 ? ` (attempt ${n.attempts})` : ''}${chosen ? ` · chosen by case ${n.case}` : ''}</title>` +
        `<rect width="${nodeW}" height="${nodeH}" rx="4"/>` +
        `<text x="8" y="${nodeH / 2 + 4}">${esc(clip(label, charsIn(room)))}</text>` +
        (chosen
          ? `<g class="jp-AFDag-caseBadge" transform="translate(${nodeW - CASE_W - 4},${(nodeH - 16) / 2})">` +
            `<rect width="${CASE_W}" height="16" rx="8"/><text x="${CASE_W / 2}" y="11.5" text-anchor="middle">case ${n.case}</text></g>`
          : '') +
        '</g>',
    );
  });
  return parts.join('');
}

/** The part of a 2D context the painter uses. */
export interface Painter {
  fillStyle: unknown;
  globalAlpha: number;
  fillRect(x: number, y: number, w: number, h: number): void;
}

/**
 * Paints the nodes in `rect` as filled rectangles in their state's colour (the context already
 * transformed to world coordinates); running ones at `runningAlpha`. Answers the count per state.
 */
export function paintNodes(
  ctx: Painter,
  layout: DagLayout,
  state: DagState,
  rect: Rect,
  colours: Record<WorkflowState, string>,
  runningAlpha: number,
): Record<WorkflowState, number> {
  const byState: Record<WorkflowState, { x: number; y: number }[]> = { DEFINED: [], RUNNING: [], SUCCESS: [], FAILED: [], CANCELLED: [] };
  forVisibleNodes(layout, state, rect, (box, i, n) => byState[n.state].push(nodeRect(box, i)));
  const counts = { DEFINED: 0, RUNNING: 0, SUCCESS: 0, FAILED: 0, CANCELLED: 0 };
  const { nodeW, nodeH } = GEOMETRY;
  for (const st of STATES) {
    ctx.fillStyle = colours[st];
    ctx.globalAlpha = st === 'RUNNING' ? runningAlpha : 1;
    for (const p of byState[st]) ctx.fillRect(p.x, p.y, nodeW, nodeH);
    counts[st] = byState[st].length;
  }
  ctx.globalAlpha = 1;
  return counts;
}
