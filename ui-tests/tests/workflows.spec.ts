// The Workflows panel and DAG view against the real gateway (its workflow engine running steps as
// local processes) and real JupyterLab: a workflow file refused with its problems, the map-reduce
// example run from the file browser's context menu to a finished DAG (named after its folder) with
// a step's log and outputs, a 5,000-step run drawn live (cancelled, retried), every step drawn and
// selectable, a run with subworkflows (nested groups), cases and skipped stages, and a workflow
// picked with Lab's file dialog whose running step's log streams live, its tab restored with the
// layout. How fast the DAG view draws is measured by `npm run bench` (bench/bench_dag.mjs), not here.
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect, type IJupyterLabPageFixture, type JupyterLabPage, test } from '@jupyterlab/galata';
import type { Locator, Page } from '@playwright/test';
import { REPO, UI_DIR } from '../support/stack.ts';
import { loginAsAlice, readStack } from './stack';
import { openPanel, shot } from './panels';

test.setTimeout(300_000);

const EXAMPLE = path.join(REPO, 'examples', 'workflows', 'map-reduce');

/** A gateway call from the page, with the browser's session (as the extension makes them). */
async function api<T>(page: Page, method: string, route: string, body?: unknown): Promise<{ status: number; body: T }> {
  const stack = readStack();
  return page.evaluate(
    async ({ url, method, body }) => {
      const r = await fetch(url, {
        method,
        credentials: 'same-origin',
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await r.text();
      return { status: r.status, body: (text ? JSON.parse(text) : null) as T };
    },
    { url: `${stack.basePath}${route}`, method, body },
  );
}

/** Shows the Lab's root (or its folder `dir`) in the file browser and right-clicks `name` there → "Run as Workflow". */
async function runFromFileBrowser(page: IJupyterLabPageFixture, name: string, dir = ''): Promise<void> {
  await page.sidebar.openTab('filebrowser');
  const item = page
    .locator('.jp-DirListing-item[data-file-type]')
    .filter({ has: page.locator('.jp-DirListing-itemText', { hasText: new RegExp(`^${name.replace('.', '\\.')}$`) }) });
  // galata moves the file browser into the test's own folder as the page starts: go (again) where the file is
  await expect(async () => {
    await page.filebrowser.openHomeDirectory();
    if (dir) await page.filebrowser.openDirectory(dir);
    await page.filebrowser.refresh();
    await item.click({ button: 'right', timeout: 5_000 });
  }).toPass({ timeout: 60_000 });
  await page.locator('.lm-Menu-item:visible', { hasText: 'Run as Workflow' }).click();
}

/** The DAG view of a run (its main-area tab's content). */
const dagOf = (page: Page, id: string): Locator => page.locator(`.jp-AFDag-body[data-run="${id}"]`);
/** The text of the first element matching `selector` now (no waiting for it to appear). */
const textNow = (page: Page, selector: string) => page.evaluate((sel) => document.querySelector(sel)?.textContent ?? '', selector);
const legendCount = (dag: Locator, state: string) => dag.locator(`.jp-AFDag-legendItem[data-state="${state}"] .jp-AFDag-legendCount`);

test('a workflow from the file browser: refused with its problems, then run to a finished DAG', async ({ page }) => {
  const stack = readStack();
  await loginAsAlice(page);
  // The map-reduce example in its own folder, and a broken workflow in the Lab's root dir.
  mkdirSync(path.join(stack.serverRoot, 'map-reduce'), { recursive: true });
  for (const f of ['workflow.yml', 'steps.yml']) copyFileSync(path.join(EXAMPLE, f), path.join(stack.serverRoot, 'map-reduce', f));
  writeFileSync(
    path.join(stack.serverRoot, 'broken.yml'),
    "stages:\n  - name: count\n    dependencies: [nowhere]\n    scheduler:\n      scheduler_type: singlestep-stage\n      step: {$ref: 'steps.yml#/nothing'}\n",
  );
  const panel = await openPanel(page, 'af-workflows');
  await expect(panel.locator('.jp-AFWorkflows-new')).toBeEnabled();

  await test.step('a broken workflow: its problems with their JSON paths, nothing started', async () => {
    await runFromFileBrowser(page, 'broken.yml');
    const dialog = page.locator('.jp-Dialog');
    await expect(dialog.locator('.jp-Dialog-header')).toContainText('broken.yml is not a valid workflow');
    const problems = dialog.locator('.jp-AFWorkflowRun-problem');
    await expect(problems.first()).toBeVisible();
    await expect(dialog.locator('.jp-AFWorkflowRun-problemPath').first()).toHaveText(/^\$\.stages\[0\]/);
    await shot(page, 'workflows-invalid-light', dialog.locator('.jp-Dialog-content'));
    await dialog.locator('.jp-mod-accept').click();
    await expect(panel.locator('.jp-AFWorkflows-run')).toHaveCount(0);
  });

  let id = '';
  await test.step('Run as workflow: the form asks for nfiles, names the run after its folder; the run starts and its DAG opens', async () => {
    await runFromFileBrowser(page, 'workflow.yml', 'map-reduce');
    const dialog = page.locator('.jp-Dialog');
    await expect(dialog.locator('.jp-Dialog-header')).toHaveText('Run map-reduce/workflow.yml');
    const nfiles = dialog.locator('#af-wf-param-nfiles');
    await expect(nfiles).toBeVisible();
    await expect(dialog.locator('.jp-AFWorkflowRun-summary')).toContainText('acquire → map → reduce');
    // the name is the folder's, a value (not a placeholder that looks like one); the backend is JupyterLab's select
    await expect(dialog.locator('#af-wf-name')).toHaveValue('map-reduce');
    await expect(dialog.locator('.jp-HTMLSelect #af-wf-backend')).toBeVisible();
    // nothing red before a field is touched; Run with nfiles missing says so and keeps the form
    await expect(dialog.locator('.jp-AFDialog-problem')).toHaveText('');
    await expect(dialog.locator('.jp-AFDialog-row.mod-invalid')).toHaveCount(0);
    await expect(dialog.locator('.jp-mod-accept')).toBeEnabled();
    await dialog.locator('.jp-mod-accept').click();
    await expect(dialog.locator('.jp-AFDialog-problem')).toHaveText('Give a value for nfiles');
    await expect(dialog.locator('.jp-AFDialog-row.mod-invalid #af-wf-param-nfiles')).toBeVisible();
    await shot(page, 'workflows-run-form-problem-light', dialog.locator('.jp-Dialog-content'));
    await nfiles.fill('5');
    await expect(dialog.locator('.jp-AFDialog-problem')).toHaveText('');
    await shot(page, 'workflows-run-form-light', dialog.locator('.jp-Dialog-content'));
    await dialog.locator('.jp-mod-accept').click();
    const dag = page.locator('.jp-AFDag-body:visible');
    await expect(dag).toBeVisible();
    id = (await dag.getAttribute('data-run')) ?? '';
    expect(id).not.toBe('');
    await expect(dag.locator('.jp-AFDag-title h2')).toHaveText('map-reduce');
    await expect(page.locator('.lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current')).toContainText('Workflow map-reduce');
    await page.sidebar.close('left'); // room for the DAG
  });

  const dag = dagOf(page, id);
  await test.step('the map stage grows to 5 steps and everything turns SUCCESS; the legend names the init too', async () => {
    await expect(dag.locator('.jp-AFDag-stageLabel[data-stage="map"] .jp-AFDag-stageCounts')).toContainText('5 steps', { timeout: 90_000 });
    await expect(dag).toHaveClass(/mod-success/, { timeout: 120_000 });
    await expect(legendCount(dag, 'SUCCESS')).toHaveText('7'); // acquire, 5 × map, reduce
    for (const s of ['DEFINED', 'RUNNING', 'FAILED', 'CANCELLED']) await expect(legendCount(dag, s)).toHaveText('0');
    await expect(legendCount(dag, 'INIT')).toHaveText('1');
    // one element per node at this zoom: init, acquire, 5 map steps, reduce; the steps green, the init in its own colour
    await expect(dag.locator('.jp-AFDag-node')).toHaveCount(8);
    await expect(dag.locator('.jp-AFDag-node.mod-success')).toHaveCount(8);
    await expect(dag.locator('.jp-AFDag-node.mod-init')).toHaveCount(1);
    await expect(dag.locator('.jp-AFDag-node[data-node="init"]')).toHaveClass(/mod-init/);
    const fill = (sel: string) =>
      dag
        .locator(`${sel} rect`)
        .first()
        .evaluate((r) => getComputedStyle(r).fill);
    const swatch = (state: string) =>
      dag.locator(`.jp-AFDag-legendItem[data-state="${state}"] .jp-AFDag-swatch`).evaluate((e) => getComputedStyle(e).backgroundColor);
    expect(await fill('.jp-AFDag-node[data-node="init"]')).toBe(await swatch('INIT'));
    expect(await fill('.jp-AFDag-node[data-node="map:0"]')).toBe(await swatch('SUCCESS'));
    await expect(dag.locator('.jp-AFDag-stage.mod-applied')).toHaveCount(4);
    await shot(page, 'workflows-dag-success-light');
    await page.theme.setDarkTheme();
    await shot(page, 'workflows-dag-success-dark');
    await page.theme.setLightTheme();
  });

  await test.step('a map step: named alike in the graph and its details, with its outputs (downloadable) and log; Fit keeps labels readable', async () => {
    const step = dag.locator('.jp-AFDag-node[data-node="map:2"]');
    await expect(step.locator('text').first()).toHaveText('map:2');
    await step.click();
    const details = dag.locator('.jp-AFDagDetails[data-node="map:2"]');
    await expect(details).toBeVisible();
    await expect(details.locator('.jp-AFDagDetails-header h2')).toHaveText('map:2');
    // the details pane halves the graph's room: fitted into it, the node labels stay at least 9 px high on screen
    await dag.locator('.jp-AFDag-tool.mod-fit').click();
    await expect.poll(async () => Number(await dag.locator('.jp-AFDag-nodes').getAttribute('data-label-px'))).toBeGreaterThanOrEqual(9);
    const labelPx = await step
      .locator('text')
      .first()
      .evaluate((t) => t.getBoundingClientRect().height);
    expect(labelPx).toBeGreaterThanOrEqual(9);
    await expect(details.locator('.jp-AFWorkflows-status')).toHaveText('SUCCESS');
    await expect(details.locator('.jp-AFDagDetails-exitCode')).toHaveText('0');
    await expect(details.locator('.jp-AFDagDetails-attempts')).toHaveText('1');
    const outputs = details.locator('.jp-AFDagDetails-values.mod-outputs');
    await expect(outputs.locator('dt')).toHaveText(['count']);
    await expect(outputs.locator('code').first()).toHaveText(/count\.txt$/);
    await expect(details.locator('.jp-AFDagDetails-command')).toContainText('wc -w');
    const log = details.locator('.jp-AFDagDetails-log');
    await expect(log).toHaveAttribute('data-phase', 'done');
    await shot(page, 'workflows-node-details-light');
    // The output file through the gateway's files route: part3.txt holds "1 2 3", so 3 words.
    const [download] = await Promise.all([page.waitForEvent('download'), outputs.locator('.jp-AFDagDetails-download').first().click()]);
    expect(download.suggestedFilename()).toBe('count.txt');
    const file = await download.path();
    expect(file).toBeTruthy();
    expect(readFileSync(file!, 'utf8').trim()).toMatch(/^\d+$/);
  });

  await test.step('the panel lists the run with its steps per state and an age that ticks; delete it', async () => {
    await openPanel(page, 'af-workflows');
    const card = panel.locator(`.jp-AFWorkflows-run[data-run="${id}"]`);
    await expect(card).toHaveClass(/mod-success/);
    await expect(card).toHaveAttribute('data-name', 'map-reduce');
    const age = card.locator('.jp-AFWorkflows-age');
    const before = (await age.textContent()) ?? '';
    expect(before).toMatch(/ago$/);
    await expect(age).not.toHaveText(before, { timeout: 3_000 });
    await expect(card.locator('.jp-AFWorkflows-barPart.mod-success')).toHaveAttribute('data-count', '7');
    await expect(card.locator('.jp-AFWorkflows-steps')).toHaveText('7 steps');
    await shot(page, 'workflows-panel-light', panel);
    await card.getByRole('button', { name: 'Delete' }).click();
    const dialog = page.locator('.jp-Dialog');
    await expect(dialog.locator('.jp-Dialog-header')).toContainText('Delete');
    await dialog.locator('.jp-mod-warn').click();
    await expect(card).toHaveCount(0);
    await expect(dag).toHaveCount(0); // its tab closed
    expect((await api(page, 'GET', `api/af/workflows/${id}`)).status).toBe(404);
  });
});

// A wide run: init publishes 5,000 items, the map stage scatters over them (one cheap step each,
// one at a time) and the run is cancelled once its 5,000 steps exist; the DAG view must draw them
// and stay responsive.
const WIDE = readFileSync(path.join(UI_DIR, 'support', 'wide-workflow.yml'), 'utf8');

/**
 * Waits until `done` holds, asking the page each time (a page.evaluate round trip): the page must
 * answer every time within `liveMs`, a liveness bound generous enough for a machine busy running the
 * steps (how fast it answers is bench/bench_dag.mjs's to measure).
 */
async function untilLive(page: Page, done: () => Promise<boolean>, timeoutMs: number, liveMs = 10_000): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    const answered = await Promise.race([page.evaluate(() => true), new Promise<false>((r) => setTimeout(() => r(false), liveMs))]);
    if (!answered) throw new Error(`the page did not answer within ${liveMs} ms`);
    if (await done()) return;
    if (Date.now() - t0 > timeoutMs) throw new Error(`not done within ${timeoutMs} ms`);
    await page.waitForTimeout(100);
  }
}

test('a 5,000-step run is drawn live: every step drawn and selectable', async ({ page }) => {
  await loginAsAlice(page);
  const panel = await openPanel(page, 'af-workflows');
  const items = Array.from({ length: 5000 }, (_, i) => i);
  const submitted = await api<{ id: string; error?: string }>(page, 'POST', 'api/af/workflows', {
    entry: 'workflow.yml',
    files: { 'workflow.yml': WIDE },
    parameters: { items },
    name: 'wide-5000',
    max_parallel: 1,
  });
  expect(submitted.status, JSON.stringify(submitted.body)).toBe(201);
  const id = submitted.body.id;

  try {
    const card = panel.locator(`.jp-AFWorkflows-run[data-run="${id}"]`);
    await expect(card).toBeVisible();
    await card.locator('.jp-AFWorkflows-name').click();
    const dag = dagOf(page, id);
    await expect(dag).toBeVisible();
    const mapCountsSel = `.jp-AFDag-body[data-run="${id}"] .jp-AFDag-stageLabel[data-stage="map"] .jp-AFDag-stageCounts`;
    const legendTotal = async () => {
      let n = 0;
      for (const s of ['DEFINED', 'RUNNING', 'SUCCESS', 'FAILED', 'CANCELLED'])
        n += Number(((await legendCount(dag, s).textContent()) ?? '0').replace(/,/g, ''));
      return n;
    };

    await test.step('the 5,000 steps appear live, every one drawn; the page answers meanwhile', async () => {
      await untilLive(page, async () => (await textNow(page, mapCountsSel)).startsWith('5,000 steps'), 120_000);
      await expect.poll(legendTotal).toBe(5000);
      // zoomed out to fit: the nodes are drawn on the canvas (level of detail), every one of them
      await expect(dag.locator('.jp-AFDag-nodes')).toHaveClass(/mod-compact/);
      await expect(dag.locator('.jp-AFDag-canvasNodes')).toHaveAttribute('data-drawn', '5001'); // and init
      await expect(dag.locator('.jp-AFDag-node')).toHaveCount(0);
      // the acquire→map edges are one counted edge
      await expect(dag.locator('.jp-AFDag-edgeCount[data-from="init"][data-to="map"]')).toHaveText('×5,000');
      await shot(page, 'workflows-5000-running-light');
    });

    await test.step('on the canvas a step has no label: hovering one shows its name, as its details name it', async () => {
      const mapBox = (await dag.locator('.jp-AFDag-stage[data-stage="map"] rect').boundingBox())!;
      const hover = dag.locator('.jp-AFDag-hoverLabel');
      // points well inside the map stage's grid, until one is on a step (not in the gap between two)
      let point: { x: number; y: number } | null = null;
      for (const [fx, fy] of [
        [0.33, 0.5],
        [0.34, 0.53],
        [0.36, 0.56],
        [0.41, 0.6],
        [0.45, 0.47],
        [0.5, 0.65],
      ] as const) {
        const p = { x: mapBox.x + mapBox.width * fx, y: mapBox.y + mapBox.height * fy };
        await page.mouse.move(p.x, p.y);
        await page.waitForTimeout(150);
        if (await hover.isVisible()) {
          point = p;
          break;
        }
      }
      expect(point, 'a step under one of the points tried').not.toBeNull();
      const hovered = (await hover.getAttribute('data-node')) ?? '';
      expect(hovered).toMatch(/^map:\d+$/);
      await expect(hover).toHaveText(`${hovered} · DEFINED`);
      await shot(page, 'workflows-5000-hover-light');
      await page.mouse.click(point!.x, point!.y);
      await expect(dag.locator(`.jp-AFDagDetails[data-node="${hovered}"] .jp-AFDagDetails-header h2`)).toHaveText(hovered);
      await dag.locator('.jp-AFDagDetails-close').click();
      await page.mouse.move(0, 0);
      await expect(hover).toBeHidden();
    });

    await test.step('cancel: every step not done turns CANCELLED', async () => {
      await dag.locator('.jp-AFDag-action', { hasText: 'Cancel' }).click();
      const dialog = page.locator('.jp-Dialog');
      await expect(dialog.locator('.jp-Dialog-header')).toContainText('Cancel wide-5000?');
      await dialog.locator('.jp-mod-warn').click();
      await untilLive(page, async () => /mod-cancelled/.test((await dag.getAttribute('class')) ?? ''), 60_000);
      await expect(legendCount(dag, 'DEFINED')).toHaveText('0');
      await expect(legendCount(dag, 'RUNNING')).toHaveText('0');
      const n = async (s: string) => Number(((await legendCount(dag, s).textContent()) ?? '0').replace(/,/g, ''));
      const success = await n('SUCCESS');
      const cancelled = await n('CANCELLED');
      expect(success + cancelled + (await n('FAILED'))).toBe(5000);
      expect(cancelled).toBeGreaterThan(4000);
      await expect(dag.locator('.jp-AFDag-canvasNodes')).toHaveAttribute('data-cancelled', String(cancelled));
      await expect(dag.locator('.jp-AFDag-stageLabel[data-stage="collect"]')).toContainText('waits for map');
      // the canvas holds the picture (pixels, not only counts), in the cancelled colour, in either theme
      const cancelledPixels = () =>
        dag.locator('.jp-AFDag-canvasNodes').evaluate((c: HTMLCanvasElement) => {
          const colour = getComputedStyle(c).getPropertyValue('--jp-AFWorkflow-cancelled').trim();
          const probe = document.createElement('canvas').getContext('2d')!;
          probe.fillStyle = colour;
          probe.fillRect(0, 0, 1, 1);
          const [r, g, b] = probe.getImageData(0, 0, 1, 1).data;
          const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
          let n = 0;
          for (let i = 0; i < d.length; i += 4) if (d[i + 3] === 255 && d[i] === r && d[i + 1] === g && d[i + 2] === b) n++;
          return n;
        });
      expect(await cancelledPixels()).toBeGreaterThan(10_000);
      await shot(page, 'workflows-5000-cancelled-light');
      await page.theme.setDarkTheme();
      await expect.poll(cancelledPixels).toBeGreaterThan(10_000);
      await shot(page, 'workflows-5000-cancelled-dark');
      await page.theme.setLightTheme();
    });

    await test.step('zoom in with the wheel to single nodes, labelled; click one', async () => {
      const canvas = dag.locator('.jp-AFDag-host');
      const box = (await canvas.boundingBox())!;
      await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
      for (let i = 0; i < 6; i++) await page.mouse.wheel(0, -200);
      await expect(dag.locator('.jp-AFDag-nodes')).toHaveClass(/mod-detail/);
      const nodes = dag.locator('.jp-AFDag-node');
      const shown = await nodes.count();
      expect(shown).toBeGreaterThan(0);
      expect(shown).toBeLessThan(1300); // culled: only what is on screen, and a margin
      expect(Number(await dag.locator('.jp-AFDag-nodes').getAttribute('data-label-px'))).toBeGreaterThanOrEqual(9);
      // pan with a drag
      await page.mouse.down();
      await page.mouse.move(box.x + box.width / 2 - 200, box.y + box.height / 2 - 150, { steps: 10 });
      await page.mouse.up();
      // a node fully on screen (the node layer also holds a margin around the view)
      const target = await canvas.evaluate((host) => {
        const r = host.getBoundingClientRect();
        for (const n of host.querySelectorAll('.jp-AFDag-node')) {
          const b = n.getBoundingClientRect();
          if (b.left > r.left + 10 && b.right < r.right - 10 && b.top > r.top + 10 && b.bottom < r.bottom - 10)
            return {
              id: n.getAttribute('data-node') ?? '',
              label: n.querySelector('text')?.textContent ?? '',
              x: b.left + b.width / 2,
              y: b.top + b.height / 2,
            };
        }
        return null;
      });
      expect(target).not.toBeNull();
      expect(target!.label).toBe(target!.id); // map:N in the graph as in the details
      await page.mouse.click(target!.x, target!.y);
      await expect(dag.locator(`.jp-AFDagDetails[data-node="${target!.id}"]`)).toBeVisible();
      await shot(page, 'workflows-5000-zoomed-light');
      await dag.locator('.jp-AFDag-tool.mod-fit').click();
      await expect(dag.locator('.jp-AFDag-nodes')).toHaveClass(/mod-compact/);
    });

    await test.step('retry: the cancelled steps start again', async () => {
      await dag.locator('.jp-AFDag-action', { hasText: 'Retry' }).click();
      await expect(dag).toHaveClass(/mod-running/, { timeout: 30_000 });
      await expect.poll(async () => Number(((await legendCount(dag, 'CANCELLED').textContent()) ?? '0').replace(/,/g, '')), { timeout: 30_000 }).toBe(0);
      const cancelled = await api(page, 'POST', `api/af/workflows/${id}/cancel`);
      expect(cancelled.status).toBe(200);
      await expect(dag).toHaveClass(/mod-cancelled/, { timeout: 60_000 });
    });

    await test.step('the finished 5,000-step DAG opened afresh is drawn whole', async () => {
      await page.locator(`.lm-DockPanel-tabBar .lm-TabBar-tab:has-text("wide-5000") .lm-TabBar-tabCloseIcon`).click();
      await expect(dag).toHaveCount(0);
      await openPanel(page, 'af-workflows');
      await card.locator('.jp-AFWorkflows-name').click();
      await untilLive(page, async () => (await textNow(page, mapCountsSel)).startsWith('5,000 steps'), 60_000);
      await expect(dag.locator('.jp-AFDag-canvasNodes')).toHaveAttribute('data-drawn', '5001');
      await expect.poll(legendTotal).toBe(5000);
    });
  } finally {
    await api(page, 'POST', `api/af/workflows/${id}/cancel`).catch(() => undefined);
    await api(page, 'DELETE', `api/af/workflows/${id}`).catch(() => undefined);
  }
});

// Subworkflows, cases and skipped stages: `nested` scatters a subworkflow over two words (scopes
// nested[0] and nested[1]), `pick`'s cases choose a step for 3 (case 0) and a subworkflow for 42
// (case 1), `never`'s only case holds for nothing (SKIPPED, and `later` after it), `collect` reads
// every scope's output.
const SUBWORKFLOWS = path.join(REPO, 'examples', 'workflows', 'subworkflows');
const NESTED_FILES = Object.fromEntries(['workflow.yml', 'steps.yml'].map((f) => [f, readFileSync(path.join(SUBWORKFLOWS, f), 'utf8')]));

/** Whether the rectangle of `inner` lies within that of `outer` (on screen). */
async function within(inner: Locator, outer: Locator): Promise<boolean> {
  const a = (await inner.boundingBox())!;
  const b = (await outer.boundingBox())!;
  return a.x >= b.x - 1 && a.y >= b.y - 1 && a.x + a.width <= b.x + b.width + 1 && a.y + a.height <= b.y + b.height + 1;
}

test('subworkflows are drawn as nested groups, with the cases that chose steps and the stages skipped', async ({ page }) => {
  await loginAsAlice(page);
  const panel = await openPanel(page, 'af-workflows');
  const submitted = await api<{ id: string }>(page, 'POST', 'api/af/workflows', {
    entry: 'workflow.yml',
    files: NESTED_FILES,
    parameters: { words: ['alpha', 'beta'], ns: [3, 42] },
    name: 'nested-cases',
  });
  expect(submitted.status, JSON.stringify(submitted.body)).toBe(201);
  const id = submitted.body.id;
  try {
    await panel.locator(`.jp-AFWorkflows-run[data-run="${id}"] .jp-AFWorkflows-name`).click();
    const dag = dagOf(page, id);
    await expect(dag).toBeVisible();
    await page.sidebar.close('left'); // room for the DAG
    await expect(dag).toHaveClass(/mod-success/, { timeout: 120_000 });

    await test.step('each scope is a labelled group inside the box of its stage, around its stages', async () => {
      for (const scope of ['nested[0]', 'nested[1]']) {
        const group = dag.locator(`.jp-AFDag-scope[data-scope="${scope}"] rect`);
        await expect(group).toBeVisible();
        await expect(dag.locator(`.jp-AFDag-scopeLabel[data-scope="${scope}"]`)).toBeVisible();
        await expect(dag.locator(`.jp-AFDag-scopeLabel[data-scope="${scope}"]`)).toHaveText(scope);
        expect(await within(group, dag.locator('.jp-AFDag-stage[data-stage="nested"] rect'))).toBe(true);
        for (const stage of ['init', 'shout', 'count']) {
          const box = dag.locator(`.jp-AFDag-stage[data-stage="${scope}.${stage}"] rect`);
          expect(await within(box, group), `${scope}.${stage} in ${scope}`).toBe(true);
          // the stage's label inside its group names it as in its subworkflow
          await expect(dag.locator(`.jp-AFDag-stageLabel[data-stage="${scope}.${stage}"] .jp-AFDag-stageName`)).toHaveText(stage);
        }
        await expect(dag.locator(`.jp-AFDag-node[data-node="${scope}.shout"]`)).toHaveClass(/mod-success/);
      }
      await expect(dag.locator('.jp-AFDag-stageLabel[data-stage="nested"] .jp-AFDag-stageCounts')).toHaveText('2 subworkflows');
    });

    await test.step('the case that chose a step or a subworkflow is on it', async () => {
      await expect(dag.locator('.jp-AFDag-node[data-node="pick:0"] .jp-AFDag-caseBadge')).toBeVisible();
      await expect(dag.locator('.jp-AFDag-node[data-node="pick:0"] .jp-AFDag-caseBadge')).toHaveText('case 0');
      const chosen = dag.locator('.jp-AFDag-scopeLabel[data-scope="pick[1]"]');
      await expect(chosen).toBeVisible();
      await expect(chosen.locator('.jp-AFDag-scopeCase')).toHaveText('case 1');
      await expect(dag.locator('.jp-AFDag-node[data-node="pick[1].big"]')).toHaveClass(/mod-success/);
    });

    await test.step('skipped stages are greyed with their reason; the legend counts them beside the steps', async () => {
      await expect(dag.locator('.jp-AFDag-stage.mod-skipped')).toHaveCount(2);
      await expect(dag.locator('.jp-AFDag-stageLabel[data-stage="never"] .jp-AFDag-stageNote')).toHaveText('no case held: nothing runs');
      await expect(dag.locator('.jp-AFDag-stageLabel[data-stage="later"] .jp-AFDag-stageType')).toHaveText('singlestep · SKIPPED');
      await expect(dag.locator('.jp-AFDag-stage[data-stage="later"] title')).toContainText('not applied: stage never it depends on was not applied');
      await expect(legendCount(dag, 'SKIPPED')).toHaveText('2');
      // 2 × (shout, count), pick:0, pick[1].big, collect: the subworkflows' inits are no steps
      await expect(legendCount(dag, 'SUCCESS')).toHaveText('7');
      // the inits, the run's and nested[0]'s, nested[1]'s and pick[1]'s, in the legend's init colour
      await expect(legendCount(dag, 'INIT')).toHaveText('4');
      await expect(dag.locator('.jp-AFDag-node.mod-init')).toHaveCount(4);
      await shot(page, 'workflows-subworkflows-light');
      await page.theme.setDarkTheme();
      await shot(page, 'workflows-subworkflows-dark');
      await page.theme.setLightTheme();
    });

    await test.step('a step in a subworkflow: its details name the scope, its log is its own', async () => {
      await dag.locator('.jp-AFDag-node[data-node="nested[1].shout"]').click();
      const details = dag.locator('.jp-AFDagDetails[data-node="nested[1].shout"]');
      await expect(details.locator('.jp-AFDagDetails-scope')).toHaveText('nested[1]');
      await expect(details.locator('.jp-AFDagDetails-log')).toContainText('shouted beta');
      await dag.locator('.jp-AFDag-node[data-node="pick:0"]').click();
      const picked = dag.locator('.jp-AFDagDetails[data-node="pick:0"]');
      await expect(picked.locator('.jp-AFDagDetails-case')).toHaveText('case 0');
      await dag.locator('.jp-AFDag-node[data-node="pick[1].big"]').click();
      await expect(dag.locator('.jp-AFDagDetails[data-node="pick[1].big"] .jp-AFDagDetails-scope')).toHaveText('pick[1], chosen by case 1');
      await shot(page, 'workflows-subworkflows-details-light');
    });
  } finally {
    await api(page, 'POST', `api/af/workflows/${id}/cancel`).catch(() => undefined);
    await api(page, 'DELETE', `api/af/workflows/${id}`).catch(() => undefined);
  }
});

// A step that talks for a few seconds: started from the panel's button, its log streams into the
// details pane while it runs and the stream ends when the step does.
const SLOW = `stages:
  - name: talk
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      step:
        process:
          process_type: interpolated-script-cmd
          interpreter: sh
          script: |
            for i in 1 2 3 4 5 6; do echo "line $i"; sleep 1; done
        publisher: {publisher_type: constant-pub, publish: {}}
        environment: {environment_type: localproc-env}
`;

/** In Lab's file dialog (open), picks the file `name` of the folder shown and presses Select. */
async function pickInFileDialog(page: Page, name: string): Promise<void> {
  const dialog = page.locator('.jp-Dialog:has(.jp-Open-Dialog)');
  const item = dialog
    .locator('.jp-DirListing-item')
    .filter({ has: page.locator('.jp-DirListing-itemText', { hasText: new RegExp(`^${name.replace('.', '\\.')}$`) }) });
  await item.click();
  await dialog.locator('.jp-mod-accept').click();
  await expect(dialog).toHaveCount(0);
}

test("a workflow picked with Lab's file dialog; a running step's log streams live into the details pane", async ({ page, tmpPath }) => {
  const stack = readStack();
  await loginAsAlice(page);
  // in galata's folder of this test, where the file browser (and so the file dialog) opens
  const folder = path.join(stack.serverRoot, tmpPath);
  mkdirSync(folder, { recursive: true });
  writeFileSync(path.join(folder, 'slow.yml'), SLOW);
  writeFileSync(path.join(folder, 'gone.yml'), SLOW);
  writeFileSync(path.join(folder, 'notes.txt'), 'not a workflow\n');
  // the file browser shows that folder: the file dialog opens there
  await page.filebrowser.openDirectory(tmpPath);
  const panel = await openPanel(page, 'af-workflows');

  await test.step('a file gone before it is read: said in words', async () => {
    await panel.locator('.jp-AFWorkflows-new').click();
    const files = page.locator('.jp-Dialog:has(.jp-Open-Dialog)');
    await expect(files.locator('.jp-Dialog-header')).toHaveText('Run workflow: choose its file');
    await expect(files.locator('.jp-DirListing-itemText', { hasText: 'gone.yml' })).toBeVisible();
    await expect(files.locator('.jp-DirListing-itemText', { hasText: 'notes.txt' })).toHaveCount(0); // only YAML, JSON and folders
    await shot(page, 'workflows-file-dialog-light', files.locator('.jp-Dialog-content'));
    rmSync(path.join(folder, 'gone.yml'));
    await pickInFileDialog(page, 'gone.yml');
    const error = page.locator('.jp-Dialog');
    await expect(error.locator('.jp-Dialog-header')).toHaveText(`Cannot read ${tmpPath}/gone.yml`);
    await expect(error.locator('.jp-Dialog-body')).toHaveText(
      `There is no file ${tmpPath}/gone.yml in the file browser’s folders: it may have been moved, renamed or deleted.`,
    );
    await expect(error.locator('.jp-Dialog-body')).not.toContainText('404');
    await shot(page, 'workflows-missing-file-light', error.locator('.jp-Dialog-content'));
    await error.getByRole('button', { name: 'Close' }).click();
    await expect(error).toHaveCount(0);
  });

  await panel.locator('.jp-AFWorkflows-new').click();
  await pickInFileDialog(page, 'slow.yml');
  const form = page.locator('.jp-Dialog');
  await expect(form.locator('.jp-Dialog-header')).toHaveText(`Run ${tmpPath}/slow.yml`);
  await expect(form.locator('.jp-AFWorkflowRun-param')).toHaveCount(0); // no parameters to ask for
  await expect(form.locator('#af-wf-name')).toHaveValue(path.basename(tmpPath).slice(0, 64)); // the workflow's folder's name
  await form.locator('#af-wf-name').fill('slow-talk');
  await form.locator('.jp-mod-accept').click();
  const dag = page.locator('.jp-AFDag-body:visible');
  await expect(dag.locator('.jp-AFDag-title h2')).toHaveText('slow-talk');
  const id = (await dag.getAttribute('data-run')) ?? '';
  await dag.locator('.jp-AFDag-node[data-node="talk"]').click();
  const log = dag.locator('.jp-AFDagDetails[data-node="talk"] .jp-AFDagDetails-log');
  await expect(log).toContainText('line 2', { timeout: 30_000 });
  await expect(log).toHaveAttribute('data-phase', 'streaming'); // still running: followed
  await expect(dag.locator('.jp-AFDagDetails-live')).toBeVisible();
  await shot(page, 'workflows-log-live-light');
  await expect(log).toContainText('line 6', { timeout: 30_000 });
  await expect(log).toHaveAttribute('data-phase', 'done', { timeout: 30_000 });
  await expect(dag).toHaveClass(/mod-success/);

  // The run's tab comes back with the layout after a reload, loaded afresh from the gateway.
  // (galata's reload, not waiting for the launcher to be the active tab: the run's tab is)
  await (page as unknown as JupyterLabPage).reload({ waitForIsReady: false });
  await page.locator('#jupyterlab-splash').waitFor({ state: 'detached' });
  const restored = dagOf(page, id);
  await expect(restored).toBeVisible();
  await expect(restored).toHaveClass(/mod-success/);
  await expect(restored.locator('.jp-AFDag-node[data-node="talk"]')).toHaveClass(/mod-success/);
  expect((await api(page, 'DELETE', `api/af/workflows/${id}`)).status).toBe(204);
});
