// The gateway's Dask processes as the system lists them: each one's command line names its role and
// its cluster (`af-gateway: worker <cluster> …`), so a test can see what really runs.
import { readdirSync, readFileSync } from 'node:fs';

/** "<pid> <command line>" of every process whose command line holds all of `needles`. */
export function processesWith(...needles: string[]): string[] {
  const out: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (needles.every((n) => cmd.includes(n))) out.push(`${pid} ${cmd}`);
    } catch {
      // gone meanwhile
    }
  }
  return out;
}
