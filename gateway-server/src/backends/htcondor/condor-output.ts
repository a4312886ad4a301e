// Reading what the condor tools print: `condor_submit -terse` job id ranges, and the ClassAds of
// `condor_q -json` / `condor_history -json`, mapped to what the lifecycle engine needs to know.
import type { ProcessState } from '../backend.js';

/** `condor_submit -terse` prints "<cluster>.<first> - <cluster>.<last>". */
export function parseTerseSubmit(stdout: string): { clusterId: number; first: number; last: number } {
  const m = /(\d+)\.(\d+)\s*-\s*(\d+)\.(\d+)/.exec(stdout);
  if (!m || m[1] !== m[3]) throw new Error(`condor_submit printed no job ids: ${stdout.trim().slice(0, 200) || '(nothing)'}`);
  return { clusterId: Number(m[1]), first: Number(m[2]), last: Number(m[4]) };
}

export interface JobAd {
  ClusterId: number;
  ProcId: number;
  JobStatus: number;
  /** The account the schedd authenticated the submitter as. */
  Owner?: string;
  /** The gateway user the job was submitted for (a tag: anyone may set it on their own jobs). */
  AfGatewayOwner?: string;
  AfGatewayCluster?: string;
  AfGatewayWorker?: string;
  AfGatewayWorkflow?: string;
  AfGatewayStep?: string;
  HoldReason?: string;
  RemoveReason?: string;
  ExitCode?: number;
  ExitBySignal?: boolean;
  ExitSignal?: number;
  EnteredCurrentStatus?: number;
  JobCurrentStartDate?: number;
  LastRejMatchReason?: string;
  NumJobMatches?: number;
  /** While running: the startd's "sinful string", <IP:PORT?addrs=IP-PORT+[IPv6]-PORT&alias=NAME…>. */
  StartdIpAddr?: string;
  /** While running: the slot, "slot1@machine" (or "slot1_2@machine"). */
  RemoteHost?: string;
}

export const JOB_ATTRIBUTES = [
  'ClusterId',
  'ProcId',
  'JobStatus',
  'Owner',
  'AfGatewayOwner',
  'AfGatewayCluster',
  'AfGatewayWorker',
  'AfGatewayWorkflow',
  'AfGatewayStep',
  'HoldReason',
  'RemoveReason',
  'ExitCode',
  'ExitBySignal',
  'ExitSignal',
  'EnteredCurrentStatus',
  'JobCurrentStartDate',
  'LastRejMatchReason',
  'NumJobMatches',
  'StartdIpAddr',
  'RemoteHost',
];

/**
 * The machine a running job is on, as the schedd knows it (set by the pool, not by the job): every
 * address in its startd's sinful string, its alias and the slot's machine name, lower-cased. Empty
 * while the job does not run.
 */
export function jobHosts(ad: JobAd | undefined): Set<string> {
  const hosts = new Set<string>();
  if (!ad || ad.JobStatus !== 2) return hosts;
  const sinful = /^<([^>]*)>$/.exec(ad.StartdIpAddr?.trim() ?? '')?.[1];
  if (sinful) {
    const [primary, query = ''] = sinful.split('?', 2) as [string, string?];
    const bare = (hp: string, sep: string) => {
      const m = /^\[([^\]]+)\]/.exec(hp);
      return (m ? m[1]! : hp.slice(0, hp.lastIndexOf(sep) < 0 ? hp.length : hp.lastIndexOf(sep))).toLowerCase();
    };
    if (primary) hosts.add(bare(primary, ':'));
    for (const param of query.split('&')) {
      const [key, value = ''] = param.split('=', 2) as [string, string?];
      if (key === 'addrs') for (const a of decoded(value).split('+')) if (a) hosts.add(bare(a, '-'));
      if (key === 'alias' && value) hosts.add(decoded(value).toLowerCase());
    }
  }
  const machine = ad.RemoteHost?.split('@').pop()?.trim();
  if (machine) hosts.add(machine.toLowerCase());
  hosts.delete('');
  return hosts;
}

/** A %-escaped value of a sinful string; a malformed escape is no host (''), never a throw that would fail the whole check. */
function decoded(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return '';
  }
}

/** The ClassAds of a -json listing (an empty listing prints nothing at all). */
export function parseJobAds(stdout: string): JobAd[] {
  const text = stdout.trim();
  if (!text) return [];
  const parsed: unknown = JSON.parse(text);
  if (!Array.isArray(parsed)) throw new Error('condor printed JSON that is not a list of ClassAds');
  return parsed.filter((a): a is JobAd => typeof a === 'object' && a !== null && typeof (a as JobAd).ClusterId === 'number');
}

export const jobId = (ad: { ClusterId: number; ProcId: number }) => `${ad.ClusterId}.${ad.ProcId}`;

const STATUS_NAMES: Record<number, string> = { 1: 'idle', 2: 'running', 3: 'removed', 4: 'completed', 5: 'held', 6: 'transferring output', 7: 'suspended' };

/**
 * What a job's ClassAd means for its Dask worker at time `now` (ms). Idle jobs are alive but
 * waiting for a slot (the engine does not count that against the worker's start timeout); held,
 * removed and finished jobs are gone, with the reason the user needs.
 */
export function jobState(ad: JobAd | undefined, now: number): ProcessState {
  if (!ad) return { alive: false, detail: 'the job is no longer in the HTCondor queue or its history' };
  const since = ad.EnteredCurrentStatus ? Math.max(0, Math.round(now / 1000 - ad.EnteredCurrentStatus)) : null;
  switch (ad.JobStatus) {
    case 1: {
      const why = ad.LastRejMatchReason ? `: ${ad.LastRejMatchReason}` : ad.NumJobMatches ? '' : ' (no machine has matched it yet)';
      return { alive: true, waiting: `HTCondor job ${jobId(ad)} is waiting for a slot${since !== null ? ` (idle for ${since} s)` : ''}${why}` };
    }
    case 2:
    case 6:
      return { alive: true, startedAt: ad.JobCurrentStartDate ? ad.JobCurrentStartDate * 1000 : undefined };
    case 7:
      return { alive: true, waiting: `HTCondor job ${jobId(ad)} is suspended` };
    case 5:
      return { alive: false, detail: `HTCondor held job ${jobId(ad)}: ${ad.HoldReason ?? 'no reason given'}` };
    case 3:
      return { alive: false, detail: `HTCondor job ${jobId(ad)} was removed${ad.RemoveReason ? `: ${ad.RemoveReason}` : ''}` };
    case 4: {
      const how = ad.ExitBySignal ? `was killed by signal ${ad.ExitSignal ?? '?'}` : `exited with code ${ad.ExitCode ?? '?'}`;
      return { alive: false, detail: `HTCondor job ${jobId(ad)} ${how}` };
    }
    default:
      return { alive: false, detail: `HTCondor job ${jobId(ad)} is in state ${STATUS_NAMES[ad.JobStatus] ?? ad.JobStatus}` };
  }
}
