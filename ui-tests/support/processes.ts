// Processes of the UI-test stacks: free ports, starting a service under support/reaper.py (its own
// session and process group, a subreaper for what it leaves behind, SIGTERM when the Playwright
// runner dies), waiting for it to answer, and stopping it again.
import { spawn, type ChildProcess } from 'node:child_process';
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

export interface StackProcess {
  name: string;
  /** The reaper's pid (its own process group); the service is its child, in a group of its own. */
  pid: number;
  log: string;
}

// Ports Chromium and fetch() refuse (ERR_UNSAFE_PORT, "bad port"): never handed out.
const BAD_PORTS = new Set<number>((JSON.parse(readFileSync(path.join(REPO, 'test-harness', 'fetch-bad-ports.json'), 'utf8')) as { ports: number[] }).ports);

export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const { port } = s.address() as net.AddressInfo;
        s.close(() => resolve(port));
      });
    });
    if (!BAD_PORTS.has(port)) return port;
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function tail(file: string, chars = 3000): string {
  try {
    return readFileSync(file, 'utf8').slice(-chars);
  } catch {
    return '(no log)';
  }
}

/** True while pid is a live process (a zombie counts as gone). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

function descendants(pid: number): number[] {
  const out: number[] = [];
  const todo = [pid];
  while (todo.length) {
    let kids: number[] = [];
    const p = todo.pop()!;
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

/** True when pid is still the reaper this stack started for `name` (not a reused pid). */
function isOurReaper(p: StackProcess): boolean {
  try {
    const argv = readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').split('\0');
    return argv.some((a) => a.endsWith('reaper.py')) && argv.includes(p.name);
  } catch {
    return false;
  }
}

export interface Running extends StackProcess {
  child: ChildProcess;
}

export function startService(name: string, logsDir: string, cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd: string): Running {
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

export async function waitFor<T>(what: string, svc: Running, probe: () => Promise<T | undefined>, timeoutMs = START_TIMEOUT_MS): Promise<T> {
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
      last = String((err as Error).message ?? err);
    }
    await sleep(200);
  }
  throw new Error(`${svc.name}: no ${what} within ${timeoutMs / 1000} s (last: ${last}):\n${tail(svc.log)}`);
}

/**
 * Writes `config` as dir/gateway.yaml (JSON is YAML) under the comment `heading`, starts `serve` of the
 * built gateway with it and a fresh encryption key (as service `name`, added to `started` so that it is
 * stopped again) and waits until it answers GET /api/health at `url`.
 */
export async function startGateway(
  name: string,
  logsDir: string,
  dir: string,
  heading: string,
  config: { data_dir: string },
  env: NodeJS.ProcessEnv,
  url: string,
  started: Running[],
): Promise<Running> {
  const configFile = path.join(dir, 'gateway.yaml');
  writeFileSync(configFile, `# ${heading} (JSON is YAML)\n${JSON.stringify(config, null, 2)}\n`);
  const args = [GATEWAY_CLI, 'serve', '--config', configFile, '--data-dir', config.data_dir];
  const gw = startService(name, logsDir, process.execPath, args, { ...env, AF_GATEWAY_ENCRYPT_KEY: randomBytes(32).toString('base64') }, dir);
  started.push(gw);
  await waitFor('GET /api/health', gw, () => httpOk(`${url}/api/health`));
  return gw;
}

export async function httpOk(url: string, init?: RequestInit): Promise<Response | undefined> {
  const r = await fetch(url, { ...init, signal: AbortSignal.timeout(5000) });
  return r.ok ? r : undefined;
}

/**
 * Stops stack processes, last started first: SIGTERM to each reaper (which stops its service's
 * group, waits GRACE_S for its children and kills the rest), then SIGKILL for whatever is still
 * there. Returns the names of services that needed SIGKILL.
 */
export async function stopProcesses(procs: StackProcess[]): Promise<string[]> {
  const forced: string[] = [];
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
