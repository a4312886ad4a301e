// Benchmark: how the Lab's workflow DAG view copes with big runs, in real JupyterLab (the built
// extension as installed in .venv) in Debian's Chromium, against a real gateway running the steps.
//
//     node bench/bench_dag.mjs          (npm run bench runs it; AF_BENCH_DAG_SIZES=5000,20000)
//
// For each size N a run scatters N one-line steps (one at a time) and the DAG is opened while they
// start; then it is watched live, panned, zoomed in (watched and panned there), fitted, cancelled
// and opened afresh. Per phase it prints
// the wall time where one is meaningful, ELK's layout time (the view's own 'af-dag-layout'
// measure), the main thread's long tasks (> 50 ms, PerformanceObserver) and the frame times
// (requestAnimationFrame intervals: 16.7 ms is a smooth 60 Hz). No other tool draws these DAGs, so
// there is no peer to divide by: the figures are measured on this machine, whose cores are printed
// with them. Not a test: the UI tests check what the view does, this measures how fast.
//
// Services (gateway with simple authentication, JupyterLab, configurable-http-proxy) are started and
// stopped as the UI tests' are (ui-tests/support/processes.mjs: under reaper.py, so none outlives this
// script); the temporary directory goes too.
/* global window, document, requestAnimationFrame */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import {
  CHP,
  CHROMIUM,
  freePort,
  GATEWAY_CLI,
  httpOk,
  REPO,
  sleep,
  startGateway,
  startService,
  stopProcesses,
  UI_DIR,
  VENV_BIN,
  waitFor,
} from '../ui-tests/support/processes.mjs';

const SIZES = (process.env.AF_BENCH_DAG_SIZES ?? '5000,20000').split(',').map(Number);
const BASE_PATH = '/services/af-gateway/';
const VIEWPORT = { width: 1280, height: 800 };
const USER = 'bench';
const LIVE_MS = 5000;
// the UI tests' wide run: init publishes the items, map scatters one step over each
const WIDE = readFileSync(path.join(UI_DIR, 'support', 'wide-workflow.yml'), 'utf8');

// --- services ---------------------------------------------------------------------------------

/** What startStack started, stopped with stopProcesses (last started first). */
const started = [];

async function startStack(tmp) {
  const logs = path.join(tmp, 'logs');
  mkdirSync(logs, { recursive: true });
  const ports = { gateway: await freePort(), lab: await freePort(), proxy: await freePort(), api: await freePort() };
  const proxyURL = `http://127.0.0.1:${ports.proxy}`;
  const gatewayURL = `http://127.0.0.1:${ports.gateway}`;
  const labURL = `http://127.0.0.1:${ports.lab}`;

  // the gateway as the demo runs it: simple authentication, one person on loopback
  const config = {
    listen: `127.0.0.1:${ports.gateway}`,
    public_url: `${proxyURL}${BASE_PATH.replace(/\/$/, '')}`,
    base_path: BASE_PATH,
    data_dir: path.join(tmp, 'gateway-data'),
    log_level: 'warn',
    auth: { type: 'simple' },
    backend: { type: 'local', local: { single_user: true, python: path.join(VENV_BIN, 'python') } },
    workflows: { max_steps: Math.max(...SIZES) + 10 },
  };
  await startGateway('gateway', logs, tmp, 'AF Gateway of bench/bench_dag.mjs', config, process.env, gatewayURL, started);

  // JupyterLab with the installed extension, signing in to the gateway by user name
  const settings = path.join(tmp, 'lab-settings');
  mkdirSync(path.join(settings, '@af-gateway', 'lab-extension'), { recursive: true });
  writeFileSync(path.join(settings, '@af-gateway', 'lab-extension', 'plugin.jupyterlab-settings'), JSON.stringify({ authMode: 'basic', username: USER }));
  mkdirSync(path.join(settings, '@jupyterlab', 'apputils-extension'), { recursive: true });
  writeFileSync(
    path.join(settings, '@jupyterlab', 'apputils-extension', 'notification.jupyterlab-settings'),
    '{"fetchNews": "false", "checkForUpdates": false}',
  );
  for (const d of ['lab-root', 'lab-workspaces', 'jupyter/config', 'jupyter/runtime']) mkdirSync(path.join(tmp, d), { recursive: true });
  const lab = startService(
    'jupyterlab',
    logs,
    path.join(VENV_BIN, 'jupyter'),
    [
      'lab',
      '--no-browser',
      '--ServerApp.ip=127.0.0.1',
      `--ServerApp.port=${ports.lab}`,
      '--ServerApp.port_retries=0',
      `--ServerApp.root_dir=${path.join(tmp, 'lab-root')}`,
      '--IdentityProvider.token=',
      '--ServerApp.password=',
      '--ServerApp.allow_root=True',
      '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate',
    ],
    {
      ...process.env,
      JUPYTERLAB_SETTINGS_DIR: settings,
      JUPYTERLAB_WORKSPACES_DIR: path.join(tmp, 'lab-workspaces'),
      JUPYTER_CONFIG_DIR: path.join(tmp, 'jupyter', 'config'),
      JUPYTER_RUNTIME_DIR: path.join(tmp, 'jupyter', 'runtime'),
    },
    path.join(tmp, 'lab-root'),
  );
  started.push(lab);

  // one origin for both, as JupyterHub's proxy gives them
  const token = randomBytes(16).toString('hex');
  const proxy = startService(
    'proxy',
    logs,
    CHP,
    [
      '--ip',
      '127.0.0.1',
      '--port',
      String(ports.proxy),
      '--api-ip',
      '127.0.0.1',
      '--api-port',
      String(ports.api),
      '--default-target',
      labURL,
      '--log-level',
      'warn',
    ],
    { ...process.env, CONFIGPROXY_AUTH_TOKEN: token },
    REPO,
  );
  started.push(proxy);
  await waitFor('GET /api/status', lab, () => httpOk(`${labURL}/api/status`), 120_000);
  const route = BASE_PATH.replace(/\/$/, '');
  await waitFor(`route ${route}`, proxy, async () => {
    const r = await fetch(`http://127.0.0.1:${ports.api}/api/routes${route}`, {
      method: 'POST',
      headers: { authorization: `token ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ target: gatewayURL }),
      signal: AbortSignal.timeout(5000),
    });
    return r.status === 201 ? true : undefined;
  });
  await waitFor('the gateway through the proxy', proxy, () => httpOk(`${proxyURL}${BASE_PATH}api/health`));
  return { proxyURL, gatewayURL, logs };
}

// --- the gateway's API ------------------------------------------------------------------------

const basic = 'Basic ' + Buffer.from(`${USER}:`).toString('base64');
async function api(gatewayURL, method, route, body) {
  const r = await fetch(`${gatewayURL}/${route}`, {
    method,
    headers: { authorization: basic, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(120_000),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${route}: ${r.status} ${text.slice(0, 300)}`);
  return text ? JSON.parse(text) : null;
}

// --- in the page ------------------------------------------------------------------------------

/** Records long tasks and frame intervals between start() and stop(). */
function installProbes() {
  const w = window;
  const rec = { on: false, longTasks: [], frames: [], last: 0 };
  new PerformanceObserver((list) => {
    if (rec.on) for (const e of list.getEntries()) rec.longTasks.push(e.duration);
  }).observe({ type: 'longtask', buffered: false });
  const tick = (t) => {
    if (rec.on && rec.last) rec.frames.push(t - rec.last);
    rec.last = t;
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
  w.afBench = {
    start() {
      rec.on = true;
      rec.longTasks = [];
      rec.frames = [];
      rec.last = 0;
    },
    stop() {
      rec.on = false;
      return { longTasks: rec.longTasks, frames: rec.frames };
    },
    /** Resolves with the ms from now until the run's canvas has drawn `count` nodes (checked every frame). */
    untilDrawn(run, count, timeoutMs) {
      const t0 = performance.now();
      return new Promise((resolve, reject) => {
        const check = () => {
          const c = document.querySelector(`.jp-AFDag-body[data-run="${run}"] .jp-AFDag-canvasNodes`);
          if (c && Number(c.dataset.drawn) === count) return resolve(performance.now() - t0);
          if (performance.now() - t0 > timeoutMs)
            return reject(new Error(`not ${count} nodes drawn within ${timeoutMs} ms (${c?.dataset.drawn ?? 'no canvas'})`));
          requestAnimationFrame(check);
        };
        check();
      });
    },
    layouts(run) {
      return performance
        .getEntriesByName('af-dag-layout')
        .filter((e) => e.detail?.run === run)
        .map((e) => e.duration);
    },
  };
}

const pct = (xs, p) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

function summary(phase, n, rec, extra = {}) {
  const lt = rec.longTasks;
  return {
    steps: n,
    phase,
    ...extra,
    longTasks: lt.length,
    longestTaskMs: lt.length ? Math.max(...lt) : 0,
    longTaskTotalMs: lt.reduce((a, b) => a + b, 0),
    frames: rec.frames.length,
    frameP50Ms: pct(rec.frames, 50),
    frameP95Ms: pct(rec.frames, 95),
    frameMaxMs: rec.frames.length ? Math.max(...rec.frames) : NaN,
  };
}

async function measureSize(page, gatewayURL, n) {
  const rows = [];
  const items = Array.from({ length: n }, (_, i) => i);
  const run = await api(gatewayURL, 'POST', `${BASE_PATH.slice(1)}api/af/workflows`, {
    entry: 'workflow.yml',
    files: { 'workflow.yml': WIDE },
    parameters: { items },
    name: `dag-${n}`,
    max_parallel: 1,
  });
  const id = run.id;
  const dag = page.locator(`.jp-AFDag-body[data-run="${id}"]`);
  try {
    // open: from the click on the run to all N steps (and the init) drawn
    const name = page.locator(`.jp-AFWorkflows-run[data-run="${id}"] .jp-AFWorkflows-name`);
    await name.waitFor({ timeout: 60_000 });
    await page.evaluate(() => window.afBench.start());
    await name.click();
    const openMs = await page.evaluate(([run, count]) => window.afBench.untilDrawn(run, count, 180_000), [id, n + 1]);
    const layouts = await page.evaluate((run) => window.afBench.layouts(run), id);
    rows.push(summary('open, live', n, await page.evaluate(() => window.afBench.stop()), { ms: openMs, layoutMs: layouts.at(-1) }));

    // live: steps finish one after another, each a delta on the event stream (the whole DAG fitted)
    await page.evaluate(() => window.afBench.start());
    await sleep(LIVE_MS);
    rows.push(summary(`live ${LIVE_MS / 1000} s`, n, await page.evaluate(() => window.afBench.stop())));

    // pan: a 1 s drag across the view
    const box = await page.locator(`.jp-AFDag-body[data-run="${id}"] .jp-AFDag-host`).boundingBox();
    const cx = box.x + box.width / 2;
    const cy = box.y + box.height / 2;
    const pan = async (label) => {
      await page.mouse.move(cx, cy);
      await page.evaluate(() => window.afBench.start());
      await page.mouse.down();
      for (let i = 1; i <= 30; i++) {
        await page.mouse.move(cx - i * 8, cy - i * 5);
        await sleep(33);
      }
      await page.mouse.up();
      await sleep(200);
      rows.push(summary(label, n, await page.evaluate(() => window.afBench.stop())));
    };
    await pan('pan');

    // zoom: the wheel in to single labelled steps (one SVG element each)
    await page.mouse.move(cx, cy);
    await page.evaluate(() => window.afBench.start());
    for (let i = 0; i < 8; i++) {
      await page.mouse.wheel(0, -200);
      await sleep(60);
    }
    await dag.locator('.jp-AFDag-nodes.mod-detail').waitFor({ timeout: 30_000 });
    await sleep(300);
    rows.push(summary('zoom in', n, await page.evaluate(() => window.afBench.stop())));

    // zoomed in: the steps in view change state live; then a pan there
    await page.evaluate(() => window.afBench.start());
    await sleep(LIVE_MS);
    rows.push(summary(`zoomed, live`, n, await page.evaluate(() => window.afBench.stop())));
    await pan('zoomed, pan');

    // Fit: back to the whole DAG on the canvas
    await page.evaluate(() => window.afBench.start());
    await dag.locator('.jp-AFDag-tool.mod-fit').click();
    await page.evaluate(([run, count]) => window.afBench.untilDrawn(run, count, 60_000), [id, n + 1]);
    rows.push(summary('fit', n, await page.evaluate(() => window.afBench.stop())));

    // cancel: every step not done turns CANCELLED at once
    await page.evaluate(() => window.afBench.start());
    const t0 = Date.now();
    await api(gatewayURL, 'POST', `${BASE_PATH.slice(1)}api/af/workflows/${id}/cancel`);
    await dag.and(page.locator('.mod-cancelled')).waitFor({ timeout: 120_000 });
    rows.push(summary('cancel', n, await page.evaluate(() => window.afBench.stop()), { ms: Date.now() - t0 }));

    // reopen: the finished DAG afresh, laid out again
    await page.locator(`.lm-DockPanel-tabBar .lm-TabBar-tab:has-text("dag-${n}") .lm-TabBar-tabCloseIcon`).click();
    await dag.waitFor({ state: 'detached' });
    await page.evaluate(() => window.afBench.start());
    await name.click();
    const reopenMs = await page.evaluate(([run, count]) => window.afBench.untilDrawn(run, count, 120_000), [id, n + 1]);
    const relayouts = await page.evaluate((run) => window.afBench.layouts(run), id);
    rows.push(summary('reopen', n, await page.evaluate(() => window.afBench.stop()), { ms: reopenMs, layoutMs: relayouts.at(-1) }));
    await page.locator(`.lm-DockPanel-tabBar .lm-TabBar-tab:has-text("dag-${n}") .lm-TabBar-tabCloseIcon`).click();
  } finally {
    await api(gatewayURL, 'POST', `${BASE_PATH.slice(1)}api/af/workflows/${id}/cancel`).catch(() => undefined);
    await api(gatewayURL, 'DELETE', `${BASE_PATH.slice(1)}api/af/workflows/${id}`).catch(() => undefined);
  }
  return rows;
}

// --- main -------------------------------------------------------------------------------------

const fmt = (x, d = 0) => (x === undefined || Number.isNaN(x) ? '—' : x.toFixed(d));

const loadAverage = () =>
  os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

function print(rows, loads) {
  const cpu = os.cpus();
  console.log(`\nWorkflow DAG view: JupyterLab in Chromium (headless, ${VIEWPORT.width}×${VIEWPORT.height}), the gateway running the steps one at a time`);
  console.log(`This machine: ${cpu.length} cores (${cpu[0]?.model ?? 'unknown CPU'}). No peer draws these DAGs: measured figures, not ratios.`);
  console.log(`Load average (1, 5, 15 min) before: ${loads.before}; after: ${loads.after} (other work on the machine moves these figures)`);
  console.log(
    `${'steps'.padStart(7)}  ${'phase'.padEnd(13)} ${'time ms'.padStart(8)} ${'ELK ms'.padStart(7)}   ${'long tasks: n / longest / total ms'.padEnd(36)} frame ms: p50 / p95 / max`,
  );
  for (const r of rows) {
    const lt = `${r.longTasks} / ${fmt(r.longestTaskMs)} / ${fmt(r.longTaskTotalMs)}`;
    const fr = `${fmt(r.frameP50Ms, 1)} / ${fmt(r.frameP95Ms, 1)} / ${fmt(r.frameMaxMs)}`;
    console.log(
      `${r.steps.toLocaleString('en-US').padStart(7)}  ${r.phase.padEnd(13)} ${fmt(r.ms).padStart(8)} ${fmt(r.layoutMs).padStart(7)}   ${lt.padEnd(36)} ${fr}`,
    );
  }
}

async function main() {
  for (const need of [GATEWAY_CLI, path.join(VENV_BIN, 'jupyter'), CHROMIUM.executablePath]) {
    if (!existsSync(need)) {
      console.error(`bench_dag: ${need} is missing (scripts/bootstrap.sh builds and installs it; Chromium comes with scripts/ui-tests.sh)`);
      return 2;
    }
  }
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'af-bench-dag-'));
  let browser;
  let keepLogs = false;
  const stop = async () => {
    await browser?.close().catch(() => undefined);
    await stopProcesses(started);
    if (keepLogs) {
      // the services' logs outlive a failed run, the rest goes
      for (const d of ['gateway-data', 'lab-root', 'lab-settings', 'lab-workspaces', 'jupyter']) rmSync(path.join(tmp, d), { recursive: true, force: true });
    } else rmSync(tmp, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void stop().then(() => process.exit(130)));
  process.once('SIGTERM', () => void stop().then(() => process.exit(143)));
  try {
    const { proxyURL, gatewayURL, logs } = await startStack(tmp);
    browser = await chromium.launch({ executablePath: CHROMIUM.executablePath, args: CHROMIUM.args });
    const page = await browser.newPage({ viewport: VIEWPORT });
    await page.goto(`${proxyURL}/lab`, { timeout: 120_000 });
    await page.locator('#jupyterlab-splash').waitFor({ state: 'detached', timeout: 120_000 });
    await page.locator('.jp-SideBar [data-id="af-workflows"]').click();
    await page.locator('#af-workflows .jp-AFWorkflows-new:not([disabled])').waitFor({ timeout: 60_000 });
    await page.evaluate(installProbes);
    const rows = [];
    const loads = { before: loadAverage(), after: '' };
    for (const n of SIZES) {
      try {
        rows.push(...(await measureSize(page, gatewayURL, n)));
      } catch (err) {
        keepLogs = true;
        console.error(`bench_dag: ${n} steps: ${err.message}\n(the services' logs are kept in ${logs})`);
        throw err;
      }
    }
    loads.after = loadAverage();
    print(rows, loads);
    mkdirSync(path.join(REPO, 'bench', 'results'), { recursive: true });
    const out = path.join(REPO, 'bench', 'results', 'dag-latest.json');
    writeFileSync(out, JSON.stringify({ at: new Date().toISOString(), cores: os.cpus().length, loadAverage: loads, viewport: VIEWPORT, rows }, null, 2));
    console.log(`(raw figures: ${path.relative(REPO, out)})`);
    return 0;
  } finally {
    await stop();
  }
}

process.exitCode = await main().catch((err) => {
  console.error(`bench_dag: ${err.stack ?? err}`);
  return 1;
});
