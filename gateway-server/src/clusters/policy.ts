// The authorisation policy that concerns resources: which options form a user gets (profiles per
// group) and how much a user, or a group's members together, may run (limits). The lifecycle
// engine asks it before creating a cluster and whenever a worker count is about to change.
import type { ResolvedConfig } from '../config.js';
import type { User } from '../auth/authenticator.js';
import { unprocessable } from '../errors.js';
import { ClusterOptions } from './cluster-options.js';
import type { ClusterRecord } from './model.js';

type PolicyConfig = ResolvedConfig['policy'];
interface Limits {
  max_clusters?: number | null;
  max_workers?: number | null;
  max_cores?: number | null;
  max_memory?: number | null;
}

/** A cluster's share of a limit: the workers it wants or has in all its groups, and their cores and memory (GiB). */
export interface Usage {
  cluster: ClusterRecord;
  workers: number;
  cores: number;
  memory: number;
}

/** What one more worker of a group costs, and what the cluster's other groups already use. */
export interface GroupShare {
  cores: number;
  memory: number;
  /** The cluster's other groups (counted against every limit together with this one). */
  others: { workers: number; cores: number; memory: number };
}

export interface WorkerCap {
  max: number;
  /** The limit that set it, in words a person can look up in the config. */
  reason: string;
}

export class Policy {
  private readonly defaultOptions: ClusterOptions;
  private readonly profiles: { name: string; groups: string[]; options: ClusterOptions }[];

  constructor(
    private readonly cfg: PolicyConfig,
    defaultFields: ResolvedConfig['cluster_options'],
    private readonly clusterMaxWorkers: number | null,
  ) {
    this.defaultOptions = new ClusterOptions(defaultFields);
    this.profiles = cfg.profiles.map((p) => ({
      name: p.name,
      groups: p.groups,
      options: new ClusterOptions(p.cluster_options as ResolvedConfig['cluster_options']),
    }));
  }

  /** The options form for this user: the first profile of one of their groups, else the default. */
  optionsFor(user: Pick<User, 'groups'>): ClusterOptions {
    return this.profiles.find((p) => p.groups.some((g) => user.groups.includes(g)))?.options ?? this.defaultOptions;
  }

  /** The limits that apply to a cluster's owner: their own, and each of their groups'. */
  private scopes(owner: string, groups: readonly string[]): { label: string; limits: Limits; covers: (c: ClusterRecord) => boolean }[] {
    const out = [{ label: `policy.user_limits (user ${owner})`, limits: this.cfg.user_limits as Limits, covers: (c: ClusterRecord) => c.username === owner }];
    for (const g of groups) {
      const limits = (this.cfg.group_limits as Record<string, Limits>)[g];
      if (limits) out.push({ label: `policy.group_limits["${g}"]`, limits, covers: (c) => c.groups.includes(g) });
    }
    return out;
  }

  /** Refuses a new cluster that would exceed a cluster-count limit (422, naming the limit). */
  checkCreate(user: User, active: readonly ClusterRecord[]): void {
    for (const s of this.scopes(user.name, user.groups)) {
      const max = s.limits.max_clusters;
      if (max == null) continue;
      const n = active.filter(s.covers).length;
      if (n + 1 > max) {
        throw unprocessable(
          `Cluster limit reached: ${s.label} allows ${max} active cluster${max === 1 ? '' : 's'} and ${n} ${n === 1 ? 'is' : 'are'} running; stop one first`,
          'limit_clusters',
        );
      }
    }
  }

  /**
   * The most workers `cluster` may have in one group (by default: its cluster-wide worker size and no
   * other group) given everything else that runs, and which limit binds. Limits count every group.
   */
  workerCap(cluster: ClusterRecord, usage: readonly Usage[], share?: GroupShare): WorkerCap | null {
    const own = share?.others ?? { workers: 0, cores: 0, memory: 0 };
    const per = { workers: 1, cores: share?.cores ?? cluster.settings.worker_cores, memory: share?.memory ?? cluster.settings.worker_memory };
    const inOtherGroups = own.workers ? `, ${own.workers} of them in this cluster's other worker groups` : '';
    let cap: WorkerCap | null =
      this.clusterMaxWorkers === null
        ? null
        : {
            max: Math.max(0, this.clusterMaxWorkers - own.workers),
            reason: `this gateway's limit of ${this.clusterMaxWorkers} workers per cluster (cluster.max_workers)${inOtherGroups}`,
          };
    for (const s of this.scopes(cluster.username, cluster.groups)) {
      const others = usage.filter((u) => u.cluster.name !== cluster.name && s.covers(u.cluster));
      const used = {
        workers: others.reduce((a, u) => a + u.workers, own.workers),
        cores: others.reduce((a, u) => a + u.cores, own.cores),
        memory: others.reduce((a, u) => a + u.memory, own.memory),
      };
      for (const [key, unit] of [
        ['workers', ''],
        ['cores', ' cores'],
        ['memory', ' GiB of worker memory'],
      ] as const) {
        const limit = s.limits[`max_${key}`];
        if (limit == null) continue;
        const max = Math.max(0, Math.floor((limit - used[key]) / per[key] + 1e-9));
        if (!cap || max < cap.max) {
          const where = own.workers ? "by other clusters and this cluster's other worker groups" : 'by other clusters';
          cap = { max, reason: `${s.label} max_${key} = ${limit}${unit}, of which ${round(used[key])}${unit} are used ${where}` };
        }
      }
    }
    return cap;
  }
}

const round = (x: number) => Math.round(x * 100) / 100;
