// Users' processes must not out-compete the gateway for CPU (issue 22 item 5): with the kernel's
// per-session fair share (autogroup), every session the local backend starts gets autogroup nice
// `session_nice`. Real processes as the test account af-alice through the backend's own launcher
// (sudo, as a facility's gateway does), then what that account can and cannot do to the setting.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import type { FastifyBaseLogger } from 'fastify';
import { LocalBackend, type LocalBackendOptions } from '../../src/backends/local/local-backend.js';
import { autogroupEnabled } from '../../src/backends/local/session-nice.js';
import type { AccountResolver, UserAccount } from '../../src/accounts/accounts.js';
import type { BackendHandle } from '../../src/clusters/model.js';
import type { StepLaunch } from '../../src/backends/backend.js';

const PYTHON = join(__dirname, '..', '..', '..', '.venv', 'bin', 'python');
function alice(): UserAccount | undefined {
  const r = spawnSync('getent', ['passwd', 'af-alice'], { encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  const f = r.stdout.trim().split(':');
  return { name: 'af-alice', uid: Number(f[2]), gid: Number(f[3]), home: f[5]! };
}
const account = alice();
// Needs root (to sudo to the test account, as the gateway's sudo rule would), the account
// (scripts/test-accounts.sh), the repository's venv and a kernel with autogroup on.
const ready = process.getuid?.() === 0 && account !== undefined && existsSync(PYTHON) && autogroupEnabled();

let dir: string;
let backend: LocalBackend;
const warnings: string[] = [];
const started: number[] = [];

/** `nice N` of /proc/<pid>/autogroup, waiting (up to 20 s) for the child to have set it. */
async function autogroupNice(pid: number, want: number): Promise<number | undefined> {
  let nice: number | undefined;
  for (let i = 0; i < 200; i++) {
    const m = /nice (-?\d+)/.exec(readFileSync(`/proc/${pid}/autogroup`, 'utf8'));
    nice = m ? Number(m[1]) : undefined;
    if (nice === want) return nice;
    await sleep(100);
  }
  return nice;
}

/** The process's own nice (ps). */
const processNice = (pid: number) => Number(execFileSync('ps', ['-o', 'ni=', '-p', String(pid)], { encoding: 'utf8' }).trim());

/** Keeps a started process's pid for afterAll (its session is killed) and returns it with the account and session it runs in (ps). */
function startedAs(handle: BackendHandle): { pid: number; userAndSession: string[] } {
  const pid = handle.pid as number;
  started.push(pid);
  return {
    pid,
    userAndSession: execFileSync('ps', ['-o', 'user=,sid=', '-p', String(pid)], { encoding: 'utf8' })
      .trim()
      .split(/\s+/),
  };
}

/** A workflow step `name` whose wrapper sleeps for a minute. */
function sleepStep(name: string): StepLaunch {
  const wrapper = join(dir, `${name}.sh`);
  writeFileSync(wrapper, 'exec sleep 60\n');
  chmodSync(wrapper, 0o755);
  return { run: 'r', node: 'n', owner: 'alice', workdir: dir, wrapper, log: join(dir, `${name}.log`), env: {}, cpus: 1 } as unknown as StepLaunch;
}

/** The local backend with session_nice 10 on the test's directory, logging its warnings; `over` sets the mode. */
function localBackend(over: Partial<LocalBackendOptions>): LocalBackend {
  const log = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) }) as unknown as FastifyBaseLogger;
  return new LocalBackend({ python: PYTHON, prefork: false, nanny: false, stopGracePeriod: 1, dataDir: dir, log, singleUser: true, sessionNice: 10, ...over });
}

/** Writes `value` to /proc/<pid>/autogroup as af-alice; the shell's error message when refused. */
function writeAsAlice(pid: number, value: string): { ok: boolean; stderr: string } {
  // An unprivileged account may change an autogroup once per 100 ms machine-wide (EAGAIN, checked
  // after the permission): other accounts' launchers may be starting sessions too, so try again then.
  for (let i = 0; ; i++) {
    const r = writeOnceAsAlice(pid, value);
    if (r.ok || !/Resource temporarily unavailable/.test(r.stderr) || i >= 20) return r;
  }
}

function writeOnceAsAlice(pid: number, value: string): { ok: boolean; stderr: string } {
  const r = spawnSync('sudo', ['-n', '-u', 'af-alice', '/bin/bash', '-c', `sleep 0.2; echo ${value} > /proc/${pid}/autogroup`], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  return { ok: r.status === 0, stderr: r.stderr.trim() };
}

beforeAll(() => {
  if (!ready) return;
  dir = mkdtempSync(join(tmpdir(), 'af-session-nice-'));
  chmodSync(dir, 0o755);
  chownSync(dir, account!.uid, account!.gid);
  const accounts: AccountResolver = { resolve: async () => account! };
  backend = localBackend({ prefork: true, singleUser: false, accounts, sudo: 'sudo' });
});

afterAll(async () => {
  for (const pid of started) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  if (ready) {
    await backend.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

describe.skipIf(!ready)('session_nice on the local backend (as af-alice)', () => {
  it('gives a workflow step started as the user its own autogroup at nice 10, which the user cannot lower below 0', { timeout: 120_000 }, async () => {
    const { pid, userAndSession } = startedAs(await backend.startStep(sleepStep('step')));
    expect(userAndSession).toEqual(['af-alice', String(pid)]);
    // its own autogroup (a new session), not the gateway's
    expect(readFileSync(`/proc/${pid}/autogroup`, 'utf8').split(' ')[0]).not.toBe(readFileSync('/proc/self/autogroup', 'utf8').split(' ')[0]);
    expect(await autogroupNice(pid, 10)).toBe(10);
    expect(processNice(pid)).toBe(10);

    // The user cannot give their session more than the gateway's share: below 0 is refused ...
    const below = writeAsAlice(pid, '-5');
    expect(below.ok).toBe(false);
    expect(below.stderr).toMatch(/Operation not permitted/);
    expect(await autogroupNice(pid, 10)).toBe(10);
    expect(processNice(pid)).toBe(10);
    // ... but the kernel lets an account set its own sessions back to 0 (equal share), which is why
    // docs/backends.md describes giving the gateway itself a negative nice.
    const reset = writeAsAlice(pid, '0');
    expect(reset).toEqual({ ok: true, stderr: '' });
    expect(await autogroupNice(pid, 0)).toBe(0);
  });

  it('gives a Dask worker forked by the user’s launcher autogroup nice 10', { timeout: 120_000 }, async () => {
    // A worker whose scheduler is not there: it keeps trying for death_timeout, long enough to look at.
    const handle = await (backend as unknown as { launch(user: string, spec: object): Promise<BackendHandle> }).launch('alice', {
      role: 'worker',
      title: 'af-gateway: worker session-nice-test',
      args: ['tcp://127.0.0.1:9', '--death-timeout', '60', '--nthreads', '1', '--no-dashboard'],
      env: {},
      cwd: dir,
      log: join(dir, 'worker.log'),
      pidfile: join(dir, 'worker.pid'),
    });
    const { pid, userAndSession } = startedAs(handle);
    expect(userAndSession).toEqual(['af-alice', String(pid)]);
    expect(await autogroupNice(pid, 10)).toBe(10);
    expect(processNice(pid)).toBe(10);
    expect(readFileSync(join(dir, 'worker.log'), 'utf8')).not.toMatch(/could not lower/);
    expect(warnings.filter((w) => /CPU priority/.test(w))).toEqual([]);
  });

  it('gives a step the gateway spawns itself (single-user mode) autogroup nice 10', { timeout: 60_000 }, async () => {
    const single = localBackend({});
    const { pid } = startedAs(await single.startStep(sleepStep('own-step')));
    expect(await autogroupNice(pid, 10)).toBe(10);
    expect(processNice(pid)).toBe(10);
    expect(warnings.filter((w) => /CPU priority/.test(w))).toEqual([]);
    await single.close();
  });
});
