// State of the Clusters panel: the user's clusters as the gateway's event stream reports them
// (including clusters made from notebooks), the options form, and the actions on a cluster.
import type { AfCluster, AfEvent, Field } from '@af-gateway/schemas';
import { GatewayError } from '../../api/gateway-client';
import { GatewayListModel } from '../../session/session-model';
import type { IEventHub } from '../../session/tokens';

export interface ClusterSummary {
  name: string;
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
  let progress: ClusterSummary['progress'] = null;
  if (c.status === 'PENDING') progress = { label: 'Starting the scheduler…', done: 0, total: 0 };
  else if (c.status === 'STOPPING') progress = { label: 'Shutting down…', done: 0, total: 0 };
  else if (c.status === 'RUNNING' && w.running < w.requested) {
    progress = { label: `Workers joining: ${w.running} of ${w.requested}`, done: w.running, total: w.requested };
  }
  return {
    name: c.name,
    status: c.status,
    message: c.message,
    requested: w.requested,
    connected: w.running,
    starting: w.starting,
    cores: w.running * c.worker_cores,
    memoryGiB: w.running * c.worker_memory,
    adaptive: c.adaptive ? { minimum: c.adaptive.minimum, maximum: c.adaptive.maximum } : null,
    startTime: c.start_time,
    progress,
    note: c.status === 'FAILED' ? '' : (w.list.find((x) => x.status === 'STARTING' && x.message)?.message ?? c.message),
  };
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
      return typeof value === 'string' ? null : `${field.label} must be text`;
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

  async stop(name: string): Promise<void> {
    await this.client.stopCluster(name);
  }
}
