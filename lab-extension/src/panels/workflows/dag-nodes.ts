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

/**
 * The font size (world px) of node labels at a zoom: 11 px from 0.82 on; below, up to 13 px, so a
 * label stays about 9 px high on screen where a DAG too big for the view is fitted into it.
 */
export function nodeFont(k: number): number {
  return Math.min(13, Math.max(11, Math.round(9 / k)));
}

/** About how wide (px) `chars` characters of text in `font` px are (bold a little wider). */
const textWidth = (chars: number, font: number, bold = false) => chars * font * (bold ? 0.66 : 0.6);
const fits = (text: string, room: number, font: number) => textWidth(text.length, font) <= room;

/**
 * SVG markup of the nodes in `rect`: a group per node with its state class, tooltip and label (its
 * stage's name within its subworkflow, and its index in a multistep stage), and a "case N" badge on
 * a step a stage's case chose (a subworkflow's group says its case in its label). `font` is the
 * labels' size (the node layer's --jp-AFDag-nodeFont), which the badge and what fits follow.
 */
export function nodeMarkup(layout: DagLayout, state: DagState, rect: Rect, font = 11): string {
  const { nodeW, nodeH } = GEOMETRY;
  const parts: string[] = [];
  forVisibleNodes(layout, state, rect, (box, i, n) => {
    const p = nodeRect(box, i);
    const multi = box.type === 'multistep-stage' || box.type === 'jq-stage';
    const chosen = typeof n.case === 'number';
    const badge = chosen && box.type !== 'init' ? `case ${n.case}` : '';
    const badgeW = badge ? Math.ceil(textWidth(badge.length, font - 1, true)) + 10 : 0;
    const badgeH = font + 5;
    const room = nodeW - 14 - (badge ? badgeW + 4 : 0);
    // the stage's name is in its box's header: a multistep step short of room says only its index
    const full = multi ? `${box.label} #${i}` : box.label;
    const label = fits(full, room, font) || !multi ? full : `#${i}`;
    const chars = Math.max(3, Math.floor(room / textWidth(1, font)));
    parts.push(
      `<g class="jp-AFDag-node mod-${n.state.toLowerCase()}" data-node="${esc(n.id)}"${chosen ? ` data-case="${n.case}"` : ''} transform="translate(${p.x},${p.y})">` +
        `<title>${esc(n.id)}: ${n.state}${n.attempts > 1 ? ` (attempt ${n.attempts})` : ''}${chosen ? ` · chosen by case ${n.case}` : ''}</title>` +
        `<rect width="${nodeW}" height="${nodeH}" rx="4"/>` +
        `<text x="7" y="${(nodeH + font * 0.72) / 2}">${esc(label.length > chars ? `${label.slice(0, chars - 1)}…` : label)}</text>` +
        (badge
          ? `<g class="jp-AFDag-caseBadge" transform="translate(${nodeW - badgeW - 4},${(nodeH - badgeH) / 2})">` +
            `<rect width="${badgeW}" height="${badgeH}" rx="${badgeH / 2}"/><text x="${badgeW / 2}" y="${(badgeH + (font - 1) * 0.72) / 2}" text-anchor="middle">${badge}</text></g>`
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
