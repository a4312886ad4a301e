// Linux process facts from /proc: whether a pid is still the process we started (its start time
// guards against pid reuse) and stopping a whole process group with a grace period.
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ProcStat {
  state: string;
  pgid: number;
  /** The session id: a process the launcher started leads its own session (sid = pid). */
  sid: number;
  startTicks: string;
}

export async function readProcStat(pid: number): Promise<ProcStat | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parentheses: split after its last ')'.
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { state: rest[0]!, pgid: Number(rest[2]), sid: Number(rest[3]), startTicks: rest[19]! };
  } catch {
    return undefined;
  }
}

export async function isRunning(pid: number, startTicks: string): Promise<boolean> {
  const stat = await readProcStat(pid);
  return stat !== undefined && stat.startTicks === startTicks && stat.state !== 'Z' && stat.state !== 'X';
}

/**
 * Sends a signal (0: only asks) to a process group; false when the group is gone. The gateway's
 * own for its processes; in multi-user mode the user's launcher sends it with the user's rights.
 */
export type GroupSignaller = (pgid: number, signal: NodeJS.Signals | 0) => Promise<boolean>;

export const signalOwnGroup: GroupSignaller = async (pgid, signal) => {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
};

/** Whether any live (non-zombie) member of the group remains. */
async function groupAlive(pgid: number, signalGroup: GroupSignaller): Promise<boolean> {
  if (!(await signalGroup(pgid, 0))) return false;
  const leader = await readProcStat(pgid);
  // Zombies still count for kill(2); a group whose only member left is a zombie leader is done.
  if (leader && (leader.state === 'Z' || leader.state === 'X')) return (await signalGroup(pgid, 0)) && !(await onlyZombies(pgid));
  return true;
}

async function onlyZombies(pgid: number): Promise<boolean> {
  const { readdir } = await import('node:fs/promises');
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const st = await readProcStat(Number(entry));
    if (st && st.pgid === pgid && st.state !== 'Z' && st.state !== 'X') return false;
  }
  return true;
}

/** SIGTERM to the group, SIGKILL after `graceSeconds` if anything is left. */
export async function stopProcessGroup(pid: number, startTicks: string, graceSeconds: number, signalGroup: GroupSignaller = signalOwnGroup): Promise<void> {
  // Only signal the group if its leader is the process we started, or already gone
  // (then the group id cannot have been reused while any member lives).
  const stat = await readProcStat(pid);
  if (stat && stat.startTicks !== startTicks) return;
  if (!(await signalGroup(pid, 'SIGTERM'))) return;
  const deadline = Date.now() + graceSeconds * 1000;
  while (Date.now() < deadline) {
    if (!(await groupAlive(pid, signalGroup))) return;
    await sleep(100);
  }
  await signalGroup(pid, 'SIGKILL');
  for (let i = 0; i < 50 && (await groupAlive(pid, signalGroup)); i++) await sleep(100);
}
