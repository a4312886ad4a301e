// State of the Clusters panel: the user's clusters as the gateway's event stream reports them
// (including clusters made from notebooks), the options form, and the actions on a cluster.
import type { AfCluster, AfEvent, AfWorkerGroup, Field } from '@af-gateway/schemas';
import { displayNameProblem } from '@af-gateway/schemas/display-name';
import { GatewayError } from '../../api/gateway-client';
import { GatewayListModel } from '../../session/session-model';
import type { IEventHub } from '../../session/tokens';

export interface ClusterSummary {
  name: string;
  /** The readable name its owner gave it, or empty (the card then shows the id). */
  displayName: string;
  status: AfCluster['status'];
  message: string;
  requested: number;
  connected: number;
  starting: number;
  cores: number;
  memoryGiB: number;
  adaptive: { minimum: number | null; maximum: number | null } | null;
  startTime: number;
  /** Set while waiting: the scheduler starting or workers joining. */
  progress: { label: string; done: number; total: number } | null;
  /** What the gateway says about a running cluster: why workers wait (e.g. for a batch slot) or the last failure. */
  note: string;
}

export function summarise(c: AfCluster): ClusterSummary {
  const w = c.workers;
  // With worker groups the workers object counts every group's workers but `requested` is only
  // default's; the groups' own targets and sizes give the whole cluster's figures.
  const groups = c.groups ?? [];
  const requested = groups.length > 0 ? groups.reduce((n, g) => n + g.target, 0) : w.requested;
  const cores = groups.length > 0 ? groups.reduce((n, g) => n + g.running * g.worker_cores, 0) : w.running * c.worker_cores;
  const memoryGiB = groups.length > 0 ? groups.reduce((n, g) => n + g.running * g.worker_memory, 0) : w.running * c.worker_memory;
  let progress: ClusterSummary['progress'] = null;
  if (c.status === 'PENDING') progress = { label: 'Starting the scheduler…', done: 0, total: 0 };
  else if (c.status === 'STOPPING') progress = { label: 'Shutting down…', done: 0, total: 0 };
  else if (c.status === 'RUNNING' && w.running < requested) {
    progress = { label: `Workers joining: ${w.running} of ${requested}`, done: w.running, total: requested };
  }
  return {
    name: c.name,
    displayName: c.display_name ?? '',
    status: c.status,
    message: c.message,
    requested,
    connected: w.running,
    starting: w.starting,
    cores,
    memoryGiB,
    adaptive: c.adaptive ? { minimum: c.adaptive.minimum, maximum: c.adaptive.maximum } : null,
    startTime: c.start_time,
    progress,
    note: c.status === 'FAILED' ? '' : (w.list.find((x) => x.status === 'STARTING' && x.message)?.message ?? c.message),
  };
}

/**
 * What a cluster is called where room is short (tabs, dialog titles): its display name, else the start
 * of its id. Always text: callers put it in text nodes or titles, never in markup.
 */
export function clusterLabel(c: { name: string; display_name?: string } | undefined, name: string): string {
  return c?.display_name || name.slice(0, 8);
}

/** The option that names a cluster (the gateway's display_name). */
export const DISPLAY_NAME_OPTION = 'display_name';
/** The gateway's rule for a cluster name (one copy, in the schemas package), checked before sending. */
export function validateDisplayName(label: string, value: string): string | null {
  const problem = displayNameProblem(value.trim());
  return problem ? `${label} ${problem}` : null;
}

const BACKEND_NAMES: Record<string, string> = { local: 'local processes', htcondor: 'HTCondor', slurm: 'Slurm', kubernetes: 'Kubernetes' };

/** A worker group as its part of the card shows it. */
export interface GroupSummary {
  name: string;
  description: string;
  /** Where its workers run, in words ("Slurm", "local processes"). */
  backend: string;
  /** One worker's size, e.g. "4 cores · 16 GiB". */
  size: string;
  /** Its Dask resource labels ("hpc: 1"), what tasks name to run on its workers. */
  resources: { label: string; amount: number }[];
  target: number;
  running: number;
  /** Started, not yet connected, and not waiting for a slot. */
  starting: number;
  pending: number;
  /** Its own limit, if any ("at most 2"). */
  limit: number | null;
  /** Why workers wait, in the backends' words, one line each. */
  pendingReasons: string[];
  /** One sentence for the counts, e.g. "1 of 2 running, 1 waiting for a slot". */
  counts: string;
  message: string;
  /** Offloading to another group, when the gateway reports it. */
  overflow: string;
  /** Its adaptive range when it scales adaptively, else null (manual). */
  adaptive: { minimum: number; maximum: number | null } | null;
  /** How it scales now, e.g. "adaptive 0–4, now 2" or "manual". */
  mode: string;
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
const gib = (n: number) => `${Number(n.toFixed(2))} GiB`;

/** A group's `overflow` ({group, after, workers}; null or absent: none) in words; anything else it does not know reads as nothing. */
export function describeOverflow(raw: unknown): string {
  if (raw == null || raw === false) return '';
  if (typeof raw === 'string') return raw ? `Overflows to ${raw} when its workers wait for a slot` : '';
  if (typeof raw !== 'object' || Array.isArray(raw)) return '';
  const o = raw as Record<string, unknown>;
  const to = [o.group, o.to, o.name].find((v): v is string => typeof v === 'string' && v !== '');
  const after = [o.after_seconds, o.after, o.wait_seconds].find((v): v is number => typeof v === 'number');
  const moved = [o.workers, o.active, o.running, o.count].find((v): v is number => typeof v === 'number');
  const parts: string[] = [];
  if (to) parts.push(`Overflows to ${to}${after != null ? ` after ${after} s waiting for a slot` : ' when its workers wait for a slot'}`);
  if (moved != null && moved > 0) parts.push(`${plural(moved, 'worker')} there now`);
  if (typeof o.message === 'string' && o.message) parts.push(o.message);
  return parts.join('; ');
}

/** A group's scaling in words: "adaptive 0–4, now 2" (∞: no maximum but the limits), or "manual". */
export function describeGroupMode(adaptive: GroupSummary['adaptive'], target: number): string {
  return adaptive ? `adaptive ${adaptive.minimum}–${adaptive.maximum ?? '∞'}, now ${target}` : 'manual';
}

export function summariseGroup(g: AfWorkerGroup): GroupSummary {
  const adaptive = g.adaptive ? { minimum: g.adaptive.minimum ?? 0, maximum: g.adaptive.maximum } : null;
  const waiting = Math.min(g.pending, g.starting);
  const counts = [`${g.running} of ${g.target} running`];
  if (g.starting - waiting > 0) counts.push(`${g.starting - waiting} starting`);
  if (waiting > 0) counts.push(`${waiting} waiting for a slot`);
  return {
    name: g.name,
    description: g.description,
    backend: BACKEND_NAMES[g.backend] ?? g.backend,
    size: `${plural(g.worker_cores, 'core')} · ${gib(g.worker_memory)}`,
    resources: Object.entries(g.resources).map(([label, amount]) => ({ label, amount })),
    target: g.target,
    running: g.running,
    starting: g.starting - waiting,
    pending: waiting,
    limit: g.max_workers,
    pendingReasons: g.pending_reasons,
    counts: counts.join(', '),
    message: g.message,
    overflow: describeOverflow(g.overflow),
    adaptive,
    mode: describeGroupMode(adaptive, g.target),
  };
}

/** The groups a card shows: none unless the gateway has groups besides default. */
export function clusterGroups(c: AfCluster): GroupSummary[] {
  const groups = c.groups ?? [];
  return groups.some((g) => g.name !== 'default') ? groups.map(summariseGroup) : [];
}

/** Checks a group's scale input; returns the count, or a message for the user. */
export function parseGroupCount(text: string): { count: number } | { problem: string } {
  const t = text.trim();
  if (!/^\d+$/.test(t)) return { problem: 'Workers must be a whole number, 0 or more' };
  const count = Number(t);
  return Number.isSafeInteger(count) ? { count } : { problem: 'That is too many workers' };
}

/**
 * Checks a group's adaptive range as typed: the minimum a whole number (empty: 0), the maximum a whole
 * number or empty (no maximum but the limits), not below the minimum.
 */
export function parseAdaptRange(minimum: string, maximum: string): { minimum: number; maximum: number | null } | { problem: string } {
  const whole = (t: string) => (/^\d+$/.test(t) && Number.isSafeInteger(Number(t)) ? Number(t) : null);
  const lo = minimum.trim() === '' ? 0 : whole(minimum.trim());
  const hi = maximum.trim() === '' ? null : whole(maximum.trim());
  if (lo === null || (maximum.trim() !== '' && hi === null)) return { problem: 'Minimum and maximum must be whole numbers, 0 or more' };
  if (hi !== null && lo > hi) return { problem: 'Minimum must not be larger than maximum' };
  return { minimum: lo, maximum: hi };
}

/** The code that sends a task to a group's workers (its first resource label), for the card's tip. */
export function groupSubmitCode(g: GroupSummary): string {
  const first = g.resources[0];
  return first ? `client.submit(f, resources={${JSON.stringify(first.label)}: ${first.amount < 1 ? first.amount : 1}})` : '';
}

export interface ScaleRequestModel {
  mode: 'manual' | 'adaptive';
  workers: number;
  minimum: number;
  maximum: number;
}

/** Checks a scale dialog's values; returns a message for the user or null when they are fine. */
export function validateScale(r: ScaleRequestModel): string | null {
  const whole = (n: number) => Number.isInteger(n) && n >= 0;
  if (r.mode === 'manual') return whole(r.workers) ? null : 'Workers must be a whole number, 0 or more';
  if (!whole(r.minimum) || !whole(r.maximum)) return 'Minimum and maximum must be whole numbers, 0 or more';
  if (r.minimum > r.maximum) return 'Minimum must not be larger than maximum';
  return null;
}

/** Checks one options-form value against its field; returns a message or null. */
export function validateOption(field: Field, value: unknown): string | null {
  const { spec } = field;
  switch (spec.type) {
    case 'int':
    case 'float': {
      if (typeof value !== 'number' || Number.isNaN(value)) return `${field.label} must be a number`;
      if (spec.type === 'int' && !Number.isInteger(value)) return `${field.label} must be a whole number`;
      if (spec.min != null && value < spec.min) return `${field.label} must be at least ${spec.min}`;
      if (spec.max != null && value > spec.max) return `${field.label} must be at most ${spec.max}`;
      return null;
    }
    case 'select':
      return typeof value === 'string' && (spec.options ?? []).includes(value) ? null : `${field.label}: choose one of ${(spec.options ?? []).join(', ')}`;
    case 'bool':
      return typeof value === 'boolean' ? null : `${field.label} must be on or off`;
    case 'string':
      if (typeof value !== 'string') return `${field.label} must be text`;
      return field.field === DISPLAY_NAME_OPTION ? validateDisplayName(field.label, value) : null;
    case 'mapping':
      return value && typeof value === 'object' && !Array.isArray(value) ? null : `${field.label} must be a mapping`;
  }
}

/** Form values: the user's default options where they fit the field, else the gateway's defaults. */
export function initialOptionValues(fields: Field[], defaults: Record<string, unknown>): Record<string, unknown> {
  const values: Record<string, unknown> = {};
  for (const f of fields) {
    const preferred = defaults[f.field];
    values[f.field] = preferred !== undefined && validateOption(f, preferred) === null ? preferred : f.default;
  }
  return values;
}

export class ClustersModel extends GatewayListModel {
  private readonly clusters = new Map<string, AfCluster>();
  private _creating = 0;

  constructor(session: IEventHub) {
    super(session);
    // Each (re)connect starts with a snapshot: it brings the list up to date after a drop.
    this.follow({ types: ['snapshot', 'cluster'] }, (ev) => this.apply(ev));
  }

  /** Create requests in flight (shown as a placeholder until the cluster appears). */
  get creating(): number {
    return this._creating;
  }

  get list(): AfCluster[] {
    return [...this.clusters.values()].sort((a, b) => b.start_time - a.start_time);
  }

  get(name: string): AfCluster | undefined {
    return this.clusters.get(name);
  }

  protected async fetch(): Promise<void> {
    const res = await this.client.listClusters();
    this.clusters.clear();
    for (const c of res.clusters) this.clusters.set(c.name, c);
  }

  apply(ev: AfEvent): void {
    switch (ev.type) {
      case 'snapshot':
        this.clusters.clear();
        for (const c of ev.clusters) this.clusters.set(c.name, c);
        break;
      case 'cluster':
        if (ev.cluster.status === 'STOPPED' || ev.cluster.status === 'FAILED') {
          // A failed cluster stays listed so its reason can be read; stopped ones go away.
          if (ev.cluster.status === 'STOPPED') this.clusters.delete(ev.cluster.name);
          else this.clusters.set(ev.cluster.name, ev.cluster);
        } else this.clusters.set(ev.cluster.name, ev.cluster);
        break;
      default:
        return;
    }
    this.emitChanged();
  }

  /** Forget a failed cluster shown in the list. */
  dismiss(name: string): void {
    if (this.clusters.delete(name)) this.emitChanged();
  }

  async create(options: Record<string, unknown>): Promise<string> {
    this._creating++;
    this.emitChanged();
    try {
      const name = await this.client.createCluster(options);
      // Show it at once, even before the stream reports it.
      if (!this.clusters.has(name)) {
        try {
          this.clusters.set(name, await this.client.getCluster(name));
        } catch {
          /* the stream brings it */
        }
      }
      return name;
    } finally {
      this._creating--;
      this.emitChanged();
    }
  }

  /** Applies a scale dialog's result; returns the gateway's message when it clamped the request. */
  async scale(name: string, r: ScaleRequestModel): Promise<string | null> {
    const problem = validateScale(r);
    if (problem) throw new GatewayError(422, problem, 'invalid_scale');
    const res = r.mode === 'manual' ? await this.client.scale(name, r.workers) : await this.client.adapt(name, r.minimum, r.maximum);
    return res.ok ? null : (res.msg ?? 'The gateway did not apply the request');
  }

  /**
   * Sets a worker group's target. The gateway's answer is shown at once (the stream follows with
   * the same); a refused count throws the gateway's error, whose message names the limit.
   */
  async scaleGroup(name: string, group: string, count: number): Promise<void> {
    const updated = await this.client.scaleGroup(name, group, count);
    // A count turns adaptive scaling off: the answer is current once both are in.
    this.applyGroup(name, updated, (g) => g.target === updated.target && !g.adaptive === !updated.adaptive);
  }

  /**
   * Scales a worker group adaptively within a range; shown at once from the gateway's answer (whose
   * message says when a limit capped the range). A refusal throws the gateway's error.
   */
  async adaptGroup(name: string, group: string, minimum: number, maximum: number | null): Promise<AfWorkerGroup> {
    const updated = await this.client.adaptGroup(name, group, minimum, maximum);
    this.applyGroup(name, updated, (g) => JSON.stringify(g.adaptive ?? null) === JSON.stringify(updated.adaptive ?? null) && g.message === updated.message);
    return updated;
  }

  /** Puts a group answer into its cluster unless the stream already brought it (`current` says so): the stream may be newer. */
  private applyGroup(name: string, updated: AfWorkerGroup, current: (g: AfWorkerGroup) => boolean): void {
    const c = this.clusters.get(name);
    const mine = c?.groups?.find((g) => g.name === updated.name);
    if (!c?.groups || !mine || current(mine)) return;
    this.clusters.set(name, { ...c, groups: c.groups.map((g) => (g.name === updated.name ? updated : g)) });
    this.emitChanged();
  }

  async stop(name: string): Promise<void> {
    await this.client.stopCluster(name);
  }
}
