// Drawing a DAG's nodes, culled to a rectangle of the drawing: one SVG element per node when
// zoomed in (clickable, with a tooltip and a label), rectangles on a canvas when zoomed out
// (dag-canvas.ts). Both walk only the grid cells in view, so the cost follows what is on screen,
// not the run's size.
import type { WorkflowNode, WorkflowState } from '@af-gateway/schemas';
import { type DagLayout, GEOMETRY, nodeRect, type Rect, type StageBox, visibleCells } from './dag-layout';
import { type DagState, isInitStage } from './dag-state';

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

/** Node labels are drawn at least this high on screen (px), or not at all (a hover shows the name then). */
export const MIN_LABEL_PX = 9;
/**
 * Label fonts (world px): a few sizes only, since a new size redraws every node in view (zooming
 * through them costs a redraw each); 19 px is the largest a node (28 px high) holds with its badge.
 */
const NODE_FONTS = [11, 13, 16, 19] as const;
const MAX_NODE_FONT = 19;

/**
 * The font size (world px) of node labels at a zoom: 11 px from 0.91 on; below, larger in the
 * drawing (up to 19 px), so that a label stays about 10 px high on screen where a DAG is fitted
 * into a narrow view (a half-width pane beside the details, say).
 */
export function nodeFont(k: number): number {
  return NODE_FONTS.find((f) => f * k >= 10) ?? MAX_NODE_FONT;
}

/** Whether node labels at zoom `k` are large enough on screen to read (else they are hidden). */
export const labelsReadable = (k: number): boolean => nodeFont(k) * k >= MIN_LABEL_PX;

/** A step as the CLI and the details pane name it: 'map:2' in a multistep stage, else its stage's name. */
export const stepLabel = (stageLabel: string, multi: boolean, index: number): string => (multi ? `${stageLabel}:${index}` : stageLabel);

/** Whether a stage draws its steps as a multistep grid ('map:0', 'map:1', …). */
export const isMultiStage = (box: Pick<StageBox, 'type'>): boolean => box.type === 'multistep-stage' || box.type === 'jq-stage';

/** About how wide (px) `chars` characters of text in `font` px are (bold a little wider). */
const textWidth = (chars: number, font: number, bold = false) => chars * font * (bold ? 0.66 : 0.6);
const fits = (text: string, room: number, font: number) => textWidth(text.length, font) <= room;

/** `label` cut to `chars` characters, keeping a step's ':INDEX' ('choose_a_very_lo…:12'). */
function cutLabel(label: string, chars: number, multi: boolean): string {
  if (label.length <= chars) return label;
  const tail = multi ? label.slice(label.lastIndexOf(':')) : '';
  const keep = Math.max(1, chars - tail.length - 1);
  return `${label.slice(0, keep)}…${tail}`;
}

/**
 * SVG markup of the nodes in `rect`: a group per node with its state class (and mod-init for an
 * init: parameters, no step), tooltip and label (its stage's name within its subworkflow, with
 * ':INDEX' in a multistep stage, as the details pane and the CLI name steps), and a "case N" badge
 * on a step a stage's case chose (a subworkflow's group says its case in its label). `font` is the
 * labels' size (the node layer's --jp-AFDag-nodeFont), which the badge and what fits follow.
 */
export function nodeMarkup(layout: DagLayout, state: DagState, rect: Rect, font = 11): string {
  const parts: string[] = [];
  forVisibleNodes(layout, state, rect, (box, i, n) => parts.push(oneNodeMarkup(box, i, n, font)));
  return parts.join('');
}

/** The markup of one node (see nodeMarkup): the view redraws a node whose state changed with it alone. */
export function oneNodeMarkup(box: StageBox, i: number, n: WorkflowNode, font = 11): string {
  const { nodeW, nodeH } = GEOMETRY;
  const p = nodeRect(box, i);
  const multi = isMultiStage(box);
  const init = isInitStage(box.name);
  const chosen = typeof n.case === 'number';
  const badge = chosen && !init ? `case ${n.case}` : '';
  const badgeW = badge ? Math.ceil(textWidth(badge.length, font - 1, true)) + 10 : 0;
  const badgeH = font + 5;
  const room = nodeW - 14 - (badge ? badgeW + 4 : 0);
  const full = stepLabel(box.label, multi, i);
  const chars = Math.max(3, Math.floor(room / textWidth(1, font)));
  const label = fits(full, room, font) ? full : cutLabel(full, chars, multi);
  return (
    `<g class="jp-AFDag-node mod-${n.state.toLowerCase()}${init ? ' mod-init' : ''}" data-node="${esc(n.id)}"${chosen ? ` data-case="${n.case}"` : ''} transform="translate(${p.x},${p.y})">` +
    `<title>${esc(n.id)}: ${n.state}${n.attempts > 1 ? ` (attempt ${n.attempts})` : ''}${chosen ? ` · chosen by case ${n.case}` : ''}</title>` +
    `<rect width="${nodeW}" height="${nodeH}" rx="4"/>` +
    `<text x="7" y="${(nodeH + font * 0.72) / 2}">${esc(label)}</text>` +
    (badge
      ? `<g class="jp-AFDag-caseBadge" transform="translate(${nodeW - badgeW - 4},${(nodeH - badgeH) / 2})">` +
        `<rect width="${badgeW}" height="${badgeH}" rx="${badgeH / 2}"/><text x="${badgeW / 2}" y="${(badgeH + (font - 1) * 0.72) / 2}" text-anchor="middle">${badge}</text></g>`
      : '') +
    '</g>'
  );
}

/** What a node is drawn as: its state, or INIT for the run's and its subworkflows' inits (parameters, no step). */
export type NodeLook = WorkflowState | 'INIT';
