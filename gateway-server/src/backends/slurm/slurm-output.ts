// Reading what the Slurm tools print: the job id of `sbatch` (--parsable or not), the lines of one
// `squeue` with a fixed format, and what a job's state and pending reason mean for the engine.
import type { ProcessState } from '../backend.js';

/** `sbatch --parsable` prints "<id>" or "<id>;<cluster>"; without it, "Submitted batch job <id>". */
export function parseSbatch(stdout: string): number {
  const text = stdout.trim();
  const m = /^(\d+)(?:;[A-Za-z0-9_.-]+)?$/m.exec(text) ?? /^Submitted batch job (\d+)(?: on cluster [A-Za-z0-9_.-]+)?$/m.exec(text);
  const id = m ? Number(m[1]) : NaN;
  if (!Number.isSafeInteger(id) || id <= 0) throw new Error(`sbatch printed no job id: ${text.slice(0, 200) || '(nothing)'}`);
  return id;
}

/**
 * The squeue fields, in order, after the line's marker. The free-text fields a job's owner chooses
 * (its name and comment) come last, so a | in them cannot shift the others; a line break in them
 * forges a line only with the query's marker. That marker is on squeue's command line, which every
 * local user may read in /proc while it runs: a job's owner who renames the job in time can print a
 * line of any id. So the text is asked for only when it is needed (TEXT_FIELDS: orphan removal), and
 * an id on more than one line is believed on none of them (the forged line may come first).
 * %i the job id as arrays show it (123_4), %F the array's job id, %u the job's user, %T its state,
 * %r the reason, %V when it was submitted, %S when it started, %B the node running its batch script;
 * %j the job's name and %k its comment.
 */
export const SQUEUE_FIELDS = ['%i', '%F', '%u', '%T', '%r', '%V', '%S', '%B'] as const;
export const TEXT_FIELDS = ['%j', '%k'] as const;

/** The -o format of a query whose lines start with `marker` (a fresh random word per query); with `text`, the name and comment too. */
export function squeueFormat(marker: string, text = true): string {
  if (!/^[A-Za-z0-9]{8,64}$/.test(marker)) throw new Error('not a squeue marker');
  return [marker, ...SQUEUE_FIELDS, ...(text ? TEXT_FIELDS : [])].join('|');
}

export interface SlurmJob {
  /** 123_4 for a task of an array, 123 for a plain job. */
  id: string;
  arrayJob: string;
  user: string;
  state: string;
  reason: string;
  /** ms, or null */
  submitted: number | null;
  /** ms, or null (a pending job's start is a forecast: read it only while running). */
  started: number | null;
  /** The node running the batch script, or null. */
  node: string | null;
  name: string;
  comment: string;
}

/** squeue prints times in the time zone it is given: the backend gives it UTC. */
function utcTime(text: string): number | null {
  const m = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)$/.exec(text);
  if (!m) return null;
  const t = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
  return Number.isFinite(t) ? t : null;
}

const absent = (v: string) => v === '' || v === 'N/A' || v === 'n/a' || v === '(null)' || v === 'None';

/**
 * The jobs of one squeue (of the format squeueFormat(marker, text) gave it), by id; lines without
 * the marker (or malformed) are ignored, and so is every line of an id printed more than once.
 */
export function parseSqueue(stdout: string, marker: string, text = true): Map<string, SlurmJob> {
  const jobs = new Map<string, SlurmJob>();
  const repeated = new Set<string>();
  const prefix = `${marker}|`;
  const fields = SQUEUE_FIELDS.length + (text ? TEXT_FIELDS.length : 0);
  for (const line of stdout.split('\n')) {
    if (!line.startsWith(prefix)) continue;
    const f = line.slice(prefix.length).split('|');
    // (without the text fields no field is free text: a line has exactly its fields)
    if (text ? f.length < fields : f.length !== fields) continue;
    const [id, arrayJob, user, state, reason, submitted, started, node, ...rest] = f as [
      string,
      string,
      string,
      string,
      string,
      string,
      string,
      string,
      ...string[],
    ];
    // (a name with | in it: the comment is then what follows its last piece; only ids, user and state are trusted)
    const comment = text ? rest.pop()! : '';
    if (!/^\d+(_\d+)?$/.test(id) || !/^\d+$/.test(arrayJob) || !/^[A-Z_]+$/.test(state)) continue;
    if (jobs.has(id) || repeated.has(id)) {
      // squeue prints a job once: a second line of its id was forged by some job's name or comment
      jobs.delete(id);
      repeated.add(id);
      continue;
    }
    jobs.set(id, {
      id,
      arrayJob,
      user,
      state,
      reason: absent(reason) ? '' : reason,
      submitted: utcTime(submitted),
      started: utcTime(started),
      node: absent(node) ? null : node,
      name: rest.join('|'),
      comment: absent(comment) ? '' : comment,
    });
  }
  return jobs;
}

/**
 * What Slurm's pending reasons mean, for the user who waits (squeue's %r prints the code, or for a
 * few reasons a sentence of its own). Unknown reasons are shown as Slurm gives them.
 */
const REASONS: [RegExp, string][] = [
  [/^Resources$/, 'no node has the CPUs and memory it asks for free yet'],
  [/^Priority$/, 'jobs of higher priority are waiting for the same resources'],
  [/^(ReqNodeNotAvail|Nodes required for job are DOWN)/, 'the nodes it may run on are down, drained or reserved'],
  [/^PartitionConfig$/, "it asks for more than the partition's nodes have (CPUs, memory, GPUs)"],
  [/^PartitionTimeLimit$/, "its time limit is longer than the partition's"],
  [/^PartitionNodeLimit$/, "it asks for more nodes than the partition's limits allow"],
  [/^PartitionDown$/, 'the partition is down'],
  [/^PartitionInactive$/, 'the partition is inactive'],
  [/^BadConstraints$/, 'no node has the features or resources it asks for'],
  [/^NodeDown$/, 'a node it needs is down'],
  [/^JobHeldUser$/, 'its owner held it (scontrol release lets it go on)'],
  [/^JobHeldAdmin$/, 'an administrator held it'],
  [/^BeginTime$/, 'its start time has not come'],
  [/^Dependency$/, 'it waits for another job'],
  [/^DependencyNeverSatisfied$/, 'it waits for a job that will never finish as needed'],
  [/^Reservation$/, 'it waits for its reservation'],
  [/^Licenses$/, 'it waits for licenses'],
  [/^InvalidAccount$/, "its Slurm account is not valid (backend.slurm.account, or the user's association)"],
  [/^InvalidQOS$/, 'its QOS is not valid'],
  [/^QOSMaxJobsPerUserLimit$/, "the QOS's limit of running jobs per user is reached"],
  [/^QOSMaxSubmitJobPerUserLimit$/, "the QOS's limit of submitted jobs per user is reached"],
  [/^QOSMax(Cpu|Mem|Node|GRES|Tres)\w*PerUser\w*$/, "the QOS's per-user limit of resources is reached"],
  [/^QOSGrp\w+$/, "the QOS's limit for all its jobs together is reached"],
  [/^QOS\w+$/, 'a limit of its QOS is reached'],
  [/^AssocGrp\w+$/, "a limit of the Slurm account's association is reached"],
  [/^AssocMax\w+$/, "a per-job limit of the Slurm account's association is reached"],
  [/^launch failed requeued held$/, 'its launch failed and Slurm held it'],
  [/^Cleaning$/, 'the node is still cleaning up after an earlier run'],
  [/^ReqNodeNotAvail, Reserved for maintenance$/, 'its nodes are reserved for maintenance'],
];

/** A pending reason in words: Slurm's code and what it means. */
export function pendingReason(reason: string): string {
  if (!reason) return 'the scheduler has not looked at it yet';
  const code = reason.slice(0, 200);
  const known = REASONS.find(([re]) => re.test(code));
  return known ? `${code} (${known[1]})` : code;
}

/** How a job that left the running states ended, for the user. */
const ENDINGS: Record<string, string> = {
  COMPLETED: 'finished',
  CANCELLED: 'was cancelled',
  FAILED: 'failed',
  TIMEOUT: 'reached its time limit',
  NODE_FAIL: 'ended because its node failed',
  PREEMPTED: 'was preempted',
  BOOT_FAIL: 'ended because its node did not boot',
  DEADLINE: 'ended at its deadline',
  OUT_OF_MEMORY: 'ran out of memory',
  REVOKED: 'was revoked (it runs on another cluster)',
  SPECIAL_EXIT: 'ended with a special exit',
  COMPLETING: 'ended (completing)',
  STAGE_OUT: 'ended (staging out)',
};

/** States of a job that is there but not running, and why. */
const WAITING: Record<string, string> = {
  CONFIGURING: 'its nodes are being readied',
  SUSPENDED: 'it is suspended',
  STOPPED: 'it is stopped',
  REQUEUED: 'it was requeued',
  REQUEUE_HOLD: 'it was requeued and held',
  REQUEUE_FED: 'it was requeued',
  RESV_DEL_HOLD: 'its reservation was deleted and it is held',
  RESIZING: 'it is being resized',
};

/**
 * What a job's squeue line means for its worker or step at time `now` (ms). A pending job is alive
 * but waiting (the engine does not count that against the worker's start timeout) and says why;
 * ended jobs are gone, with how they ended; a job squeue no longer lists (it ended more than
 * MinJobAge ago) is gone too.
 */
export function slurmJobState(job: SlurmJob | undefined, id: string, now: number): ProcessState {
  if (!job) return { alive: false, detail: `Slurm job ${id} is no longer in the queue` };
  switch (job.state) {
    case 'PENDING': {
      const since = job.submitted !== null ? ` for ${Math.max(0, Math.round((now - job.submitted) / 1000))} s` : '';
      return { alive: true, waiting: `Slurm job ${job.id} is pending${since}: ${pendingReason(job.reason)}` };
    }
    case 'RUNNING':
    case 'SIGNALING':
      return { alive: true, startedAt: job.started ?? undefined };
  }
  if (WAITING[job.state])
    return { alive: true, waiting: `Slurm job ${job.id} is not running: ${WAITING[job.state]}${job.reason ? ` (${job.reason.slice(0, 200)})` : ''}` };
  const how = ENDINGS[job.state] ?? `is in state ${job.state.slice(0, 40)}`;
  const why = job.reason && job.state !== 'COMPLETED' ? ` (${job.reason.slice(0, 200)})` : '';
  return { alive: false, detail: `Slurm job ${job.id} ${how}${why}` };
}
