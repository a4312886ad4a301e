// The local backend's orphan removal after a gateway crash, on real processes: what one gateway process
// launched and a second one (the restarted gateway, same data directory) does not know is stopped;
// what it knows, what it did not launch (a process titled like its worker, a pid now someone else's, a
// process of another account) and what it is launching itself is left alone.
//
// The launches go through the backend's own path (single-user, no prefork: `python launcher exec
// SPEC`) with a stand-in for Python that becomes a process whose command line is exactly the spec's
// title, as the launcher's Dask processes are, and that blocks reading a FIFO nobody writes to.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import type { FastifyBaseLogger } from 'fastify';
import { LocalBackend } from '../../src/backends/local/local-backend.js';
import { LaunchRecords, newLaunchId, procTable, type LaunchRecord } from '../../src/backends/local/launch-records.js';
import { readProcStat } from '../../src/backends/local/process-group.js';
import type { BackendHandle, ClusterRecord, WorkerRecord } from '../../src/clusters/model.js';
import type { WorkerLaunch } from '../../src/backends/backend.js';

const root = process.getuid?.() === 0;
const NOBODY = 65534;
let dir: string;
let fifo: string;
let standin: string;
/** Every process a test started (pids), killed as a group after it. */
let started: number[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'af-local-orphans-'));
  chmodSync(dir, 0o755); // (another account's process reads the FIFO too)
  fifo = join(dir, 'hold');
  execFileSync('mkfifo', ['-m', '666', fifo]);
  standin = join(dir, 'python-standin');
  // Called as `python-standin <launcher> exec <spec JSON>`: becomes the spec's title, nothing else on its command line.
  writeFileSync(
    standin,
    `#!/bin/bash
[[ $3 =~ \\"title\\":\\"([^\\"]*)\\" ]] || exit 2
exec -a "\${BASH_REMATCH[1]}" cat 0<>"$(dirname "$0")/hold"
`,
  );
  chmodSync(standin, 0o755);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => {
  for (const pid of started) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  started = [];
});

interface Gateway {
  backend: LocalBackend;
  warnings: string[];
  dataDir: string;
}

/** A local backend on `dataDir` as one gateway process has it (a second call: the gateway restarted). */
function gateway(dataDir: string): Gateway {
  const warnings: string[] = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) }) as unknown as FastifyBaseLogger;
  const backend = new LocalBackend({ python: standin, prefork: false, nanny: false, stopGracePeriod: 1, dataDir, log, singleUser: true });
  return { backend, warnings, dataDir };
}

function worker(cluster: string, name: string): WorkerLaunch {
  const c = {
    name: cluster,
    username: 'alice',
    schedulerAddress: 'tls://127.0.0.1:9',
    settings: { worker_cores: 1, worker_memory: 1, environment: {} },
  } as unknown as ClusterRecord;
  const files = { dir, cert: join(dir, 'c.crt'), key: join(dir, 'c.pem'), token: join(dir, 't'), bearerToken: join(dir, 'b') };
  return { cluster: c, worker: { name } as WorkerRecord, files };
}

const titleOf = (cluster: string, name: string) => `af-gateway: worker ${cluster} ${name} (alice)`;

async function cmdline(pid: number): Promise<string | undefined> {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trimEnd();
  } catch {
    return undefined;
  }
}

/** Waits until the process shows `title` (its exec done). */
async function titled(pid: number, title: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ((await cmdline(pid)) === title) return;
    await sleep(20);
  }
  throw new Error(`process ${pid} never showed ${JSON.stringify(title)}: ${await cmdline(pid)}`);
}

async function launch(g: Gateway, cluster: string, name: string): Promise<BackendHandle & { pid: number; startTicks: string }> {
  const h = (await g.backend.startWorkers([worker(cluster, name)]))[0]!;
  if (h instanceof Error) throw h;
  started.push(h.pid as number);
  await titled(h.pid as number, titleOf(cluster, name));
  return h as BackendHandle & { pid: number; startTicks: string };
}

/** A process nobody launched through the gateway, titled `title` (a user's forgery), optionally as another uid. */
async function forge(title: string, uid?: number): Promise<{ pid: number; startTicks: string }> {
  const child = spawn('bash', ['-c', 'exec -a "$0" cat 0<>"$1"', title, fifo], {
    detached: true,
    stdio: 'ignore',
    ...(uid === undefined ? {} : { uid, gid: uid }),
  });
  const pid = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('spawn', () => resolve(child.pid!));
  });
  child.unref();
  started.push(pid);
  await titled(pid, title);
  return { pid, startTicks: (await readProcStat(pid))!.startTicks };
}

async function alive(h: { pid: number; startTicks: string }): Promise<boolean> {
  const s = await readProcStat(h.pid);
  return s !== undefined && s.startTicks === h.startTicks && s.state !== 'Z';
}

const recordIds = (g: Gateway) => readdirSync(join(g.dataDir, 'local-launches')).filter((n) => n.endsWith('.json'));

/** A record as a gateway that died long ago (another generation) left it. */
async function oldRecord(g: Gateway, r: Partial<LaunchRecord> & { title: string }): Promise<LaunchRecord> {
  const record: LaunchRecord = {
    id: newLaunchId(),
    gen: newLaunchId(),
    boot: await procTable.bootId(),
    at: Date.now(),
    role: 'worker',
    uid: process.getuid!(),
    account: null,
    ...r,
  };
  await new LaunchRecords(join(g.dataDir, 'local-launches')).write(record);
  return record;
}

function dataDir(name: string): string {
  return mkdtempSync(join(dir, `${name}-`));
}

describe('orphans of a crashed gateway', () => {
  it('stops the workers the restarted gateway does not know and keeps the ones it adopted; a forgery of the orphan stays', async () => {
    const data = dataDir('restart');
    const before = gateway(data);
    const kept = await launch(before, 'c1', 'c1-a');
    const orphan = await launch(before, 'c1', 'c1-b');
    expect(recordIds(before)).toHaveLength(2);
    // The user's own process, titled exactly as the orphan (and started after it): not the gateway's.
    const forgery = await forge(titleOf('c1', 'c1-b'));
    await before.backend.close(); // the gateway "dies"; its processes live on

    const after = gateway(data);
    await after.backend.removeOrphans([kept]);
    expect(await alive(orphan)).toBe(false);
    expect(await alive(kept)).toBe(true);
    expect(await alive(forgery)).toBe(true);
    expect(recordIds(after)).toHaveLength(1); // the adopted worker's record stays
    expect(after.warnings.join('')).toContain('stopping local processes no cluster of this gateway owns');

    await after.backend.stop([kept]);
    expect(await alive(kept)).toBe(false);
    expect(recordIds(after)).toHaveLength(0); // a stopped process's record goes
    await after.backend.close();
  });

  it('finds the process of a launch the gateway died before hearing of, when exactly one fits it', async () => {
    const g = gateway(dataDir('mid-fork'));
    const title = titleOf('c2', 'c2-a');
    await oldRecord(g, { title }); // written before the launcher was asked; no pid came back
    const p = await forge(title); // what the launcher started meanwhile
    await g.backend.removeOrphans([]);
    expect(await alive(p)).toBe(false);
    expect(recordIds(g)).toHaveLength(0);
    await g.backend.close();
  });

  it('takes no process for such a launch when the account has two that fit it (a forgery beside it)', async () => {
    const g = gateway(dataDir('ambiguous'));
    const title = titleOf('c3', 'c3-a');
    await oldRecord(g, { title });
    const real = await forge(title);
    const forgery = await forge(title);
    await g.backend.removeOrphans([]);
    expect(await alive(real)).toBe(true);
    expect(await alive(forgery)).toBe(true);
    expect(g.warnings.join('')).toContain('2 processes of its account fit its launch');
    expect(recordIds(g)).toHaveLength(0);
    await g.backend.close();
  });

  it('takes no process for a launch that started outside the launch time, nor one titled otherwise', async () => {
    const g = gateway(dataDir('window'));
    const late = await forge(titleOf('c4', 'c4-a'));
    await oldRecord(g, { title: titleOf('c4', 'c4-a'), at: Date.now() - 10 * 60_000 }); // asked 10 minutes before it began
    const other = await forge(`${titleOf('c4', 'c4-b')} x`);
    await oldRecord(g, { title: titleOf('c4', 'c4-b') });
    await g.backend.removeOrphans([]);
    expect(await alive(late)).toBe(true);
    expect(await alive(other)).toBe(true);
    expect(recordIds(g)).toHaveLength(0);
    await g.backend.close();
  });

  it('leaves a reused pid alone: the record names the pid with another start time', async () => {
    const g = gateway(dataDir('reuse'));
    const now = await forge(titleOf('c5', 'c5-a')); // what has the recorded pid now
    await oldRecord(g, { title: titleOf('c5', 'c5-a'), pid: now.pid, startTicks: String(Number(now.startTicks) - 1) });
    await g.backend.removeOrphans([]);
    expect(await alive(now)).toBe(true);
    expect(recordIds(g)).toHaveLength(0); // the recorded process is gone for good
    await g.backend.close();
  });

  it("forgets a record from before the machine's last boot without touching its pid", async () => {
    const g = gateway(dataDir('boot'));
    const p = await forge(titleOf('c6', 'c6-a'));
    await oldRecord(g, { title: titleOf('c6', 'c6-a'), pid: p.pid, startTicks: p.startTicks, boot: 'another-boot' });
    await g.backend.removeOrphans([]);
    expect(await alive(p)).toBe(true);
    expect(recordIds(g)).toHaveLength(0);
    await g.backend.close();
  });

  it('never takes what it is launching itself, nor what another engine on the same backend checked, for an orphan', async () => {
    const data = dataDir('own');
    const before = gateway(data);
    const adoptedElsewhere = await launch(before, 'c7', 'c7-a'); // e.g. a batch backend's scheduler next to the gateway
    await before.backend.close();
    const g = gateway(data);
    const fresh = await launch(g, 'c7', 'c7-b'); // launched by this gateway process, not yet in any engine's list
    expect((await g.backend.check([adoptedElsewhere]))[0]!.alive).toBe(true);
    await g.backend.removeOrphans([]); // the engine asking knows neither
    expect(await alive(adoptedElsewhere)).toBe(true);
    expect(await alive(fresh)).toBe(true);
    expect(recordIds(g)).toHaveLength(2);
    await g.backend.close();
  });

  it('ignores record files it did not write (a torn or foreign file)', async () => {
    const g = gateway(dataDir('foreign'));
    const p = await forge(titleOf('c8', 'c8-a'));
    await oldRecord(g, { title: 'x' }); // makes the directory
    const recs = join(g.dataDir, 'local-launches');
    writeFileSync(join(recs, `${newLaunchId()}.json`), JSON.stringify({ id: 'not-an-id', pid: p.pid, startTicks: p.startTicks }));
    writeFileSync(join(recs, `${newLaunchId()}.json`), '{"torn');
    await g.backend.removeOrphans([]);
    expect(await alive(p)).toBe(true);
    await g.backend.close();
  });
});

describe.skipIf(!root)('orphans and other accounts (as root: a process of uid 65534)', () => {
  it('leaves a recorded pid alone when the process runs as another account than the one it was launched as', async () => {
    const g = gateway(dataDir('uid'));
    const theirs = await forge(titleOf('c9', 'c9-a'), NOBODY);
    await oldRecord(g, { title: titleOf('c9', 'c9-a'), pid: theirs.pid, startTicks: theirs.startTicks });
    await g.backend.removeOrphans([]);
    expect(await alive(theirs)).toBe(true);
    expect(g.warnings.join('')).toContain(`the process runs as uid ${NOBODY}, not as uid ${process.getuid!()}`);
    await g.backend.close();
  });

  it("does not take another account's process, titled as the launch, for a launch of the gateway's account", async () => {
    const g = gateway(dataDir('uid-pending'));
    const title = titleOf('c10', 'c10-a');
    const theirs = await forge(title, NOBODY);
    await oldRecord(g, { title });
    await g.backend.removeOrphans([]);
    expect(await alive(theirs)).toBe(true);
    expect(recordIds(g)).toHaveLength(0);
    await g.backend.close();
  });
});
