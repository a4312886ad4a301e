// Small helpers the panel tests share: opening our sidebar panels and saving screenshots.
import type { IJupyterLabPageFixture } from '@jupyterlab/galata';
import { expect, type Locator, type Page } from '@playwright/test';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const SCREENSHOTS = join(dirname(fileURLToPath(import.meta.url)), '..', 'test-results', 'screenshots');

/** Opens a left sidebar panel of ours (clicking its tab only when it is not shown yet). */
export async function openPanel(page: IJupyterLabPageFixture, id: 'af-clusters' | 'af-token' | 'af-rucio' | 'af-workflows'): Promise<Locator> {
  const panel = page.locator(`#${id}`);
  if (!(await panel.isVisible())) await page.locator(`.jp-SideBar [data-id="${id}"]`).click();
  await panel.waitFor({ state: 'visible' });
  return panel;
}

/** Saves a screenshot of `target` (default: the whole page) as test-results/screenshots/<name>.png. */
export async function shot(page: IJupyterLabPageFixture, name: string, target?: Locator): Promise<void> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const path = join(SCREENSHOTS, `${name}.png`);
  if (target) await target.screenshot({ path });
  else await page.screenshot({ path });
}

/** Waits until the cluster just created from the panel's form runs; returns its name. */
export async function newClusterRunning(panel: Locator): Promise<string> {
  const card = panel.locator('.jp-AFClusters-cluster[data-cluster]').first();
  await expect(card).toHaveClass(/mod-running/, { timeout: 90_000 });
  const name = (await card.getAttribute('data-cluster')) ?? '';
  expect(name).toMatch(/^[0-9a-f]{32}$/);
  return name;
}

/**
 * Scales a cluster by its card's Scale dialog to a number of workers and waits until they are all connected.
 * `beforeAccept` runs with the filled-in dialog open (e.g. to take its screenshot).
 */
export async function scaleManually(page: Page, card: Locator, workers: number, beforeAccept?: () => Promise<void>): Promise<void> {
  await card.getByRole('button', { name: 'Scale', exact: true }).click();
  const dialog = page.locator('.jp-Dialog');
  await dialog.locator('#af-scale-workers').fill(String(workers));
  await beforeAccept?.();
  await dialog.locator('.jp-mod-accept').click();
  await expect(card.locator('.jp-AFClusters-workers')).toHaveText(`${workers} / ${workers}`, { timeout: 90_000 });
}

/** Shuts a cluster down by its card's button, confirms, and waits until the panel is empty again. */
export async function shutDownCluster(page: Page, panel: Locator, card: Locator, name: string): Promise<void> {
  await card.getByRole('button', { name: 'Shut down' }).click();
  const dialog = page.locator('.jp-Dialog');
  await expect(dialog.locator('.jp-Dialog-header')).toContainText(`Shut down ${name}?`);
  await dialog.locator('.jp-mod-warn').click();
  await expect(card).toHaveCount(0, { timeout: 60_000 });
  await expect(panel.locator('.jp-AFClusters-empty')).toBeVisible();
}

/**
 * Adds a code cell with `source` under the notebook's inserted first cell, runs the notebook and waits
 * until the new cell's output reads `output`.
 */
export async function runAddedCell(page: IJupyterLabPageFixture, source: string, output: string): Promise<void> {
  await page.notebook.addCell('code', source);
  await page.notebook.run();
  await expect.poll(async () => (await page.notebook.getCellTextOutput(1))?.join('') ?? '', { timeout: 90_000 }).toBe(output);
}
