// CPU priority of users' sessions. With sched_autogroup_enabled=1 the kernel shares CPU equally
// between sessions (autogroups), not processes, and every scheduler, worker and step the local
// backend starts leads a session of its own: twenty busy Dask sessions would each weigh as much as
// the gateway. Each new session is given a positive autogroup nice instead (the launcher writes
// /proc/self/autogroup in the child right after setsid; here the same for the steps the gateway
// spawns itself in single-user mode). The process's own nice as well (setpriority): what counts
// where autogroup is off.
//
// What an unprivileged account can and cannot do (kernel/sched/autogroup.c): raise the nice of its
// own sessions' autogroups, and lower it again down to 0, never below 0 without CAP_SYS_NICE or
// RLIMIT_NICE; it can also start a new session (nice 0). So the positive nice keeps ordinary users'
// work behind the gateway; against a user who resets it, only a negative nice of the gateway's own
// autogroup helps, which the unprivileged gateway cannot set itself (docs/backends.md).
import { readFileSync, existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { setPriority } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyBaseLogger } from 'fastify';

/** Whether the kernel shares CPU between sessions (autogroup on and /proc/<pid>/autogroup present). */
export function autogroupEnabled(): boolean {
  try {
    return readFileSync('/proc/sys/kernel/sched_autogroup_enabled', 'utf8').trim() === '1' && existsSync('/proc/self/autogroup');
  } catch {
    return false;
  }
}

/** Says once, at start, which of the two the backend will use. */
export function logSessionNice(nice: number, log: FastifyBaseLogger): void {
  if (nice <= 0) return;
  if (autogroupEnabled())
    log.info({ session_nice: nice }, `users' sessions get autogroup nice ${nice} (the kernel shares CPU between sessions), their processes nice ${nice}`);
  else log.info({ session_nice: nice }, `autogroup is off: users' processes get nice ${nice} (setpriority)`);
}

/**
 * Gives the session led by `pid` (a process just started with setsid, as the gateway's own account)
 * autogroup nice `nice`; the process's nice where autogroup is off. Failures are logged, never thrown.
 */
export async function setSessionNice(pid: number, nice: number, log: FastifyBaseLogger): Promise<void> {
  if (nice <= 0) return;
  const value = Math.min(Math.trunc(nice), 19);
  try {
    // The process's own nice too: what counts where autogroup is off or the gateway runs in a cgroup with the cpu controller.
    setPriority(pid, value);
    if (!autogroupEnabled()) return;
    // Unprivileged writers may change an autogroup once per 100 ms machine-wide; EAGAIN otherwise.
    for (let i = 0; ; i++) {
      try {
        await writeFile(`/proc/${pid}/autogroup`, String(value));
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || i >= 40) throw err;
        await sleep(50);
      }
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ESRCH') return; // already gone
    log.warn({ pid, err: (err as Error).message }, `could not lower the CPU priority of process ${pid}'s session`);
  }
}
