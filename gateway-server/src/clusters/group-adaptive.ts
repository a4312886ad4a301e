// Adaptive scaling of worker groups, the parts without the engine: reading the demand a scheduler
// reports (user code: anything may come) and the rule that moves a group's target toward it.

/** The most workers a scheduler may say a group wants; more is ignored as nonsense (limits bind far below). */
export const DEMAND_BOUND = 100_000;
/** Entries of af_group_demand looked at; a heartbeat with more is ignored whole. */
const MAX_ENTRIES = 256;
/** Scale-down waits until the demand stayed lower for this many adaptive periods (dask-gateway's adaptive_window). */
export const ADAPTIVE_WINDOW = 3;

/** A group's adaptive range on the cluster record (minimum 0 when not given; maximum null: the limits only). */
export interface GroupRange {
  minimum: number;
  maximum: number | null;
}

const shown = (v: unknown) =>
  typeof v === 'string'
    ? JSON.stringify(v.slice(0, 40))
    : Array.isArray(v)
      ? 'a list'
      : v === null
        ? 'null'
        : typeof v === 'object'
          ? 'an object'
          : String(v).slice(0, 40);

/**
 * The demand of a heartbeat's af_group_demand ({group: workers}): only the named `groups`, each a
 * whole number from 0 to DEMAND_BOUND. What does not fit is left out and said in `problems` (for a
 * warning); the heartbeat itself is not refused, as dask-gateway's own fields are not refused for it.
 */
export function readGroupDemand(raw: unknown, groups: ReadonlySet<string>): { demand: Map<string, number>; problems: string[] } {
  const demand = new Map<string, number>();
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return { demand, problems: [`af_group_demand is ${shown(raw)}, not an object`] };
  const entries = Object.entries(raw);
  if (entries.length > MAX_ENTRIES) return { demand, problems: [`af_group_demand has ${entries.length} entries; more than ${MAX_ENTRIES} are not read`] };
  const problems: string[] = [];
  for (const [group, n] of entries) {
    if (!groups.has(group)) problems.push(`${shown(group)} is not a worker group of the cluster`);
    else if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > DEMAND_BOUND)
      problems.push(`${group}: ${shown(n)} is not a whole number from 0 to ${DEMAND_BOUND}`);
    else demand.set(group, n);
  }
  return { demand, problems };
}

/** A number of workers (a demand, a target) clamped to a group's range (the limits are the engine's to apply). */
export function withinRange(n: number, range: GroupRange): number {
  const atLeast = Math.max(n, range.minimum);
  return range.maximum === null ? atLeast : Math.min(atLeast, range.maximum);
}

/** Since when a group wanted fewer workers than its target, and the most it wanted since. */
export interface LowDemand {
  since: number;
  most: number;
}

/**
 * The next target of an adaptive group: up at once, down only once what is wanted stayed below the
 * target for `windowMs`, and then to the most wanted over that time (dask-gateway's adapt loop, in
 * time instead of decisions: demand comes with heartbeats, not at a fixed period). Returns the
 * target and the low-demand record to keep (undefined: none).
 */
export function steer(current: number, wanted: number, now: number, windowMs: number, low: LowDemand | undefined): { target: number; low?: LowDemand } {
  if (wanted >= current) return { target: wanted };
  if (!low) return { target: current, low: { since: now, most: wanted } };
  const most = Math.max(low.most, wanted);
  if (now - low.since < windowMs) return { target: current, low: { since: low.since, most } };
  return { target: most };
}
