// Processes of the UI-test stacks: free ports, starting a service under support/reaper.py (its own
// session and process group, a subreaper for what it leaves behind, SIGTERM when the Playwright
// runner dies), waiting for it to answer, and stopping it again; and how Chromium is started.
// Plain JavaScript (types in JSDoc) so that bench/bench_dag.mjs, run by Node itself, shares it with
// the UI tests without Playwright's test runner.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const UI_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const REPO = path.resolve(UI_DIR, '..');
export const VENV_BIN = path.join(REPO, '.venv', 'bin');
export const PYTHON = existsSync(path.join(VENV_BIN, 'python')) ? path.join(VENV_BIN, 'python') : 'python3';
export const GATEWAY_CLI = path.join(REPO, 'gateway-server', 'dist', 'cli.js');
export const CHP = path.join(REPO, 'node_modules', '.bin', 'configurable-http-proxy');
const REAPER = path.join(UI_DIR, 'support', 'reaper.py');
export const START_TIMEOUT_MS = 90_000;
/** Seconds a service gets to stop what it started (Dask clusters, kernels) before SIGKILL. */
const GRACE_S = 15;

/** Debian's Chromium, headless, with nothing of its own on the network (the UI tests and bench/bench_dag.mjs). */
export const CHROMIUM = {
  executablePath: '/usr/bin/chromium',
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
  ],
};

/**
 * @typedef {object} StackProcess
 * @property {string} name
 * @property {number} pid The reaper's pid (its own process group); the service is its child, in a group of its own.
 * @property {string} log
 */

/** @typedef {StackProcess & { child: import('node:child_process').ChildProcess }} Running */

// Ports Chromium and fetch() refuse (ERR_UNSAFE_PORT, "bad port"): never handed out.
/** @type {Set<number>} */
const BAD_PORTS = new Set(JSON.parse(readFileSync(path.join(REPO, 'test-harness', 'fetch-bad-ports.json'), 'utf8')).ports);

/** @returns {Promise<number>} */
export async function freePort() {
  for (;;) {
    const port = await new Promise((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const { port } = /** @type {net.AddressInfo} */ (s.address());
        s.close(() => resolve(port));
      });
    });
    if (!BAD_PORTS.has(port)) return port;
  }
}

/** @param {number} ms */
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * @param {string} file
 * @returns {string}
 */
export function tail(file, chars = 3000) {
  try {
    return readFileSync(file, 'utf8').slice(-chars);
  } catch {
    return '(no log)';
  }
}

/**
 * True while pid is a live process (a zombie counts as gone).
 * @param {number} pid
 * @returns {boolean}
 */
export function alive(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/**
 * @param {number} pid
 * @returns {number[]}
 */
function descendants(pid) {
  /** @type {number[]} */
  const out = [];
  const todo = [pid];
  while (todo.length) {
    /** @type {number[]} */
    let kids = [];
    const p = /** @type {number} */ (todo.pop());
    try {
      kids = readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').split(/\s+/).filter(Boolean).map(Number);
    } catch {
      /* gone */
    }
    out.push(...kids);
    todo.push(...kids);
  }
  return out;
}

/**
 * True when pid is still the reaper this stack started for `name` (not a reused pid).
 * @param {StackProcess} p
 * @returns {boolean}
 */
function isOurReaper(p) {
  try {
    const argv = readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').split('\0');
    return argv.some((a) => a.endsWith('reaper.py')) && argv.includes(p.name);
  } catch {
    return false;
  }
}

/**
 * @param {string} name
 * @param {string} logsDir
 * @param {string} cmd
 * @param {string[]} args
 * @param {NodeJS.ProcessEnv} env
 * @param {string} cwd
 * @returns {Running}
 */
export function startService(name, logsDir, cmd, args, env, cwd) {
  const log = path.join(logsDir, `${name}.log`);
  const fd = openSync(log, 'w');
  const child = spawn(PYTHON, [REAPER, name, '--', cmd, ...args], {
    cwd,
    env: { ...env, AF_UI_GRACE: String(GRACE_S) },
    detached: true, // own session and process group
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  child.unref();
  if (!child.pid) throw new Error(`${name}: could not start ${PYTHON} ${REAPER}`);
  return { name, pid: child.pid, log, child };
}

/**
 * @template T
 * @param {string} what
 * @param {Running} svc
 * @param {() => Promise<T | undefined>} probe
 * @returns {Promise<T>}
 */
export async function waitFor(what, svc, probe, timeoutMs = START_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (svc.child.exitCode !== null || svc.child.signalCode !== null) {
      throw new Error(`${svc.name} exited (${svc.child.exitCode ?? svc.child.signalCode}) before ${what}:\n${tail(svc.log)}`);
    }
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = String(err instanceof Error ? err.message : err);
    }
    await sleep(200);
  }
  throw new Error(`${svc.name}: no ${what} within ${timeoutMs / 1000} s (last: ${last}):\n${tail(svc.log)}`);
}

/**
 * Writes `config` as dir/gateway.yaml (JSON is YAML) under the comment `heading`, starts `serve` of the
 * built gateway with it and a fresh encryption key (as service `name`, added to `started` so that it is
 * stopped again) and waits until it answers GET /api/health at `url`.
 * @param {string} name
 * @param {string} logsDir
 * @param {string} dir
 * @param {string} heading
 * @param {{ data_dir: string }} config
 * @param {NodeJS.ProcessEnv} env
 * @param {string} url
 * @param {Running[]} started
 * @returns {Promise<Running>}
 */
export async function startGateway(name, logsDir, dir, heading, config, env, url, started) {
  const configFile = path.join(dir, 'gateway.yaml');
  writeFileSync(configFile, `# ${heading} (JSON is YAML)\n${JSON.stringify(config, null, 2)}\n`);
  const args = [GATEWAY_CLI, 'serve', '--config', configFile, '--data-dir', config.data_dir];
  const gw = startService(name, logsDir, process.execPath, args, { ...env, AF_GATEWAY_ENCRYPT_KEY: randomBytes(32).toString('base64') }, dir);
  started.push(gw);
  await waitFor('GET /api/health', gw, () => httpOk(`${url}/api/health`));
  return gw;
}

/**
 * @param {string} url
 * @param {RequestInit} [init]
 * @returns {Promise<Response | undefined>}
 */
export async function httpOk(url, init) {
  const r = await fetch(url, { ...init, signal: AbortSignal.timeout(5000) });
  return r.ok ? r : undefined;
}

/**
 * Stops stack processes, last started first: SIGTERM to each reaper (which stops its service's
 * group, waits GRACE_S for its children and kills the rest), then SIGKILL for whatever is still
 * there. Returns the names of services that needed SIGKILL.
 * @param {StackProcess[]} procs
 * @returns {Promise<string[]>}
 */
export async function stopProcesses(procs) {
  /** @type {string[]} */
  const forced = [];
  for (const p of [...procs].reverse()) {
    if (!alive(p.pid) || !isOurReaper(p)) continue;
    const tree = descendants(p.pid);
    try {
      process.kill(p.pid, 'SIGTERM');
    } catch {
      /* already gone */
    }
    const deadline = Date.now() + (GRACE_S + 10) * 1000;
    while (alive(p.pid) && Date.now() < deadline) await sleep(100);
    const left = [p.pid, ...tree, ...descendants(p.pid)].filter(alive);
    if (left.length) {
      forced.push(p.name);
      for (const pid of left) {
        for (const target of [-pid, pid]) {
          try {
            process.kill(target, 'SIGKILL');
          } catch {
            /* not a group leader, or gone */
          }
        }
      }
    }
  }
  return forced;
}
