// The local backend's own record of the schedulers and workers it launched, kept in the gateway's data
// directory (no user can write there), so that after a crash it can tell its orphans from everything
// else on the machine.
//
// Why the gateway's record and not a mark on the process: a launched process runs as its user, so
// anything on it (its title, its environment, a file it writes, the user's launcher's memory) is the
// user's to copy onto another process. A record is written before each launch (the crash may come
// before the launcher answers) and completed with the pid and start time once it does. After a
// restart, a recorded process that no cluster owns is stopped only when the kernel still says it is
// that process: the same boot, pid, start time and account; a record the launcher never answered
// matches a process only when exactly one session leader of that account, with that title, began in
// the time the launch could have taken. Anything else is left alone.
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, unlink, writeFile, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { readProcStat, type ProcStat } from './process-group.js';

/** How long a launch may take (the launcher's fork time-out, and some): where its process's start time may fall. */
export const LAUNCH_WINDOW_MS = 125_000;
/** The clock-tick granularity of /proc start times against the wall clock (the boot time is whole seconds). */
const CLOCK_SLACK_MS = 2_000;
/** Records read at most (each is one launch still running, or one whose stop never finished). */
const MAX_RECORDS = 100_000;

export interface LaunchRecord {
  /** Random: the record's file name and the handle's `launch`. */
  id: string;
  /** Random per gateway process: its own records (launches in flight) are never taken for orphans. */
  gen: string;
  /** The kernel's boot id: start times and pids mean nothing after a reboot. */
  boot: string;
  /** When the launch was asked (ms since the epoch). */
  at: number;
  role: 'scheduler' | 'worker';
  /** The process title the launcher gives it (`af-gateway: worker <cluster> <worker> (<user>)`). */
  title: string;
  /** The account it runs as: its uid, and its name when the gateway switched to it (multi-user). */
  uid: number;
  account: string | null;
  pid?: number;
  startTicks?: string;
}

const ID = /^[0-9a-f]{32}$/;

function isRecord(v: unknown): v is LaunchRecord {
  const r = v as Partial<LaunchRecord> | null;
  return (
    typeof r === 'object' &&
    r !== null &&
    typeof r.id === 'string' &&
    ID.test(r.id) &&
    typeof r.gen === 'string' &&
    typeof r.boot === 'string' &&
    typeof r.at === 'number' &&
    (r.role === 'scheduler' || r.role === 'worker') &&
    typeof r.title === 'string' &&
    Number.isInteger(r.uid) &&
    (r.account === null || typeof r.account === 'string') &&
    (r.pid === undefined || (Number.isInteger(r.pid) && r.pid > 1)) &&
    (r.startTicks === undefined || (typeof r.startTicks === 'string' && /^\d+$/.test(r.startTicks)))
  );
}

export function newLaunchId(): string {
  return randomBytes(16).toString('hex');
}

/** The record files: one per launch, in a directory only the gateway's account may enter. */
export class LaunchRecords {
  private ready: Promise<void> | undefined;

  constructor(readonly dir: string) {}

  private open(): Promise<void> {
    this.ready ??= (async () => {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      await chmod(this.dir, 0o700);
    })();
    return this.ready;
  }

  private file(id: string): string {
    if (!ID.test(id)) throw new Error(`not a launch record id: ${id.slice(0, 40)}`);
    return join(this.dir, `${id}.json`);
  }

  /** Writes (or rewrites) a record; a reader sees the old or the new one, never half. */
  async write(r: LaunchRecord): Promise<void> {
    await this.open();
    const file = this.file(r.id);
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify(r), { mode: 0o600 });
    await rename(tmp, file);
  }

  async forget(id: string): Promise<void> {
    if (!ID.test(id)) return;
    await unlink(this.file(id)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }

  /** Every readable record (a torn or foreign file is skipped). */
  async list(): Promise<LaunchRecord[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const out: LaunchRecord[] = [];
    for (const name of names.filter((n) => n.endsWith('.json')).slice(0, MAX_RECORDS)) {
      try {
        const r: unknown = JSON.parse(await readFile(join(this.dir, name), 'utf8'));
        if (isRecord(r) && `${r.id}.json` === name) out.push(r);
      } catch {
        // removed meanwhile, or not a record
      }
    }
    return out;
  }
}

// --- what the kernel says about a process --------------------------------------------------------

export interface ProcFacts extends ProcStat {
  pid: number;
  /** Real uid. */
  uid: number;
  /** The command line as `ps` shows it (NULs as spaces). */
  cmdline: string;
}

/** The machine's processes as the orphan search sees them; tests may give their own. */
export interface ProcessTable {
  bootId(): Promise<string>;
  pids(): Promise<number[]>;
  read(pid: number): Promise<ProcFacts | undefined>;
  /** A start time in clock ticks since boot, as ms since the epoch. */
  startMs(startTicks: string): Promise<number>;
}

/** USER_HZ: what /proc counts start times in (100 on every Linux the gateway runs on). */
const TICKS_PER_SECOND = 100;

export const procTable: ProcessTable = {
  async bootId() {
    return (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
  },
  async pids() {
    return (await readdir('/proc')).filter((e) => /^\d+$/.test(e)).map(Number);
  },
  async read(pid) {
    const stat = await readProcStat(pid);
    if (!stat) return undefined;
    try {
      const status = await readFile(`/proc/${pid}/status`, 'utf8');
      const uid = /^Uid:\s+(\d+)/m.exec(status);
      if (!uid) return undefined;
      const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).replace(/\0/g, ' ').trimEnd();
      // Read after the others: the same process throughout, or the answer says it is gone.
      const again = await readProcStat(pid);
      if (!again || again.startTicks !== stat.startTicks) return undefined;
      return { ...stat, pid, uid: Number(uid[1]), cmdline };
    } catch {
      return undefined;
    }
  },
  async startMs(startTicks) {
    const btime = /^btime\s+(\d+)/m.exec(await readFile('/proc/stat', 'utf8'));
    return Number(btime?.[1] ?? 0) * 1000 + (Number(startTicks) * 1000) / TICKS_PER_SECOND;
  },
};

// --- the search -----------------------------------------------------------------------------------

export interface Orphan {
  record: LaunchRecord;
  pid: number;
  startTicks: string;
}

export interface OrphanPlan {
  /** Processes of this gateway's that no cluster owns: stop each as its record's account, then forget the record. */
  orphans: Orphan[];
  /** Records of processes that are gone (or were never there): forget them. */
  forget: LaunchRecord[];
  /** Records kept as they are: their process is one the gateway knows. */
  kept: LaunchRecord[];
  /** What was left alone and why (for the log); those records are forgotten too. */
  leftAlone: { record: LaunchRecord; why: string }[];
}

const alive = (p: ProcFacts) => p.state !== 'Z' && p.state !== 'X';
const key = (pid: number, startTicks: string) => `${pid}:${startTicks}`;
/** A title, or the title with what Dask adds after it in brackets. */
const titled = (cmdline: string, title: string) => cmdline === title || cmdline.startsWith(`${title} [`);

/**
 * Sorts the records no one else handles: `known` holds pid:startTicks of every process the gateway
 * knows (its clusters' handles, what it checked, stopped or started since it began), `protect` pids
 * it must never signal (its own). Nothing here signals; the caller stops `orphans`.
 */
export async function planOrphanRemoval(
  records: LaunchRecord[],
  known: ReadonlySet<string>,
  protect: ReadonlySet<number>,
  proc = procTable,
): Promise<OrphanPlan> {
  const plan: OrphanPlan = { orphans: [], forget: [], kept: [], leftAlone: [] };
  const boot = await proc.bootId();
  const recordedPids = new Set(records.flatMap((r) => (r.boot === boot && r.pid !== undefined ? [r.pid] : [])));
  // Every process, read once and only when a record needs more than its own pid.
  let all: Promise<ProcFacts[]> | undefined;
  const table = () =>
    (all ??= (async () => {
      const out: ProcFacts[] = [];
      for (const pid of await proc.pids()) {
        const p = await proc.read(pid);
        if (p) out.push(p);
      }
      return out;
    })());
  const pending: LaunchRecord[] = [];
  for (const r of records) {
    if (r.boot !== boot) {
      plan.forget.push(r); // the machine restarted since: nothing of it runs
      continue;
    }
    if (r.pid === undefined || r.startTicks === undefined) {
      pending.push(r);
      continue;
    }
    if (known.has(key(r.pid, r.startTicks))) {
      plan.kept.push(r);
      continue;
    }
    if (protect.has(r.pid)) {
      plan.leftAlone.push({ record: r, why: "the pid is the gateway's own" });
      continue;
    }
    const p = await proc.read(r.pid);
    if (p && p.startTicks !== r.startTicks) {
      // Another process has the pid now: the recorded one is gone, and so is its process group (the
      // kernel hands out no pid that is still a group's id).
      plan.forget.push(r);
      continue;
    }
    if (p && p.uid !== r.uid) {
      plan.leftAlone.push({ record: r, why: `the process runs as uid ${p.uid}, not as uid ${r.uid} it was launched as` });
      continue;
    }
    // Its leader gone: what is left of its group (the Dask worker under a nanny) goes with it, if anything is.
    if (!p && !(await table()).some((q) => q.pgid === r.pid && alive(q))) {
      plan.forget.push(r);
      continue;
    }
    // Stopping checks the leader's start time again and signals as the record's account.
    plan.orphans.push({ record: r, pid: r.pid, startTicks: r.startTicks });
  }
  if (!pending.length) return plan;
  // Launches the launcher never answered (the gateway died meanwhile): the one process that can be it.
  const leaders = (await table()).filter(
    (p) => alive(p) && p.sid === p.pid && !protect.has(p.pid) && !recordedPids.has(p.pid) && !known.has(key(p.pid, p.startTicks)),
  );
  const starts = new Map<number, number>();
  for (const p of leaders) starts.set(p.pid, await proc.startMs(p.startTicks));
  for (const r of pending) {
    const from = r.at - CLOCK_SLACK_MS;
    const to = r.at + LAUNCH_WINDOW_MS + CLOCK_SLACK_MS;
    const found = leaders.filter((p) => p.uid === r.uid && titled(p.cmdline, r.title) && starts.get(p.pid)! >= from && starts.get(p.pid)! <= to);
    if (found.length === 1) plan.orphans.push({ record: r, pid: found[0]!.pid, startTicks: found[0]!.startTicks });
    else if (found.length === 0) plan.forget.push(r);
    else
      plan.leftAlone.push({
        record: r,
        why: `${found.length} processes of its account fit its launch (pids ${found.map((p) => p.pid).join(', ')}): none is taken for it`,
      });
  }
  return plan;
}
