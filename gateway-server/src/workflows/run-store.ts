// Where workflow runs are kept and how their changes are told: the state store's workflow tables
// as typed records (model.ts), the engine's events, and the pieces of batched saving (what changed
// since the last save, and a timer that saves once for many changes).
import type { WorkflowDag, WorkflowRun } from '@af-gateway/schemas';
import type { StateStore } from '../store/state-store.js';
import type { NodeRecord, RunRecord } from './model.js';

/** The engine's events: a run's summary and its DAG's changes, with the run's owner (who may see them, with admins). */
export interface WorkflowEvents {
  run: [owner: string, run: WorkflowRun];
  dag: [owner: string, dag: WorkflowDag];
}

/** A stored run as listed: its record and the summary saved with it (absent in rows older than summaries). */
export interface StoredRun {
  run: RunRecord;
  summary?: WorkflowRun;
}

/** Runs not finished: after a restart, the engine takes them up again. */
const UNFINISHED = ['DEFINED', 'RUNNING'] as const;

/**
 * The state store's workflow tables, typed. A run's spec is kept apart from its often written state
 * (saved with the run's first save and on every save, read back with `run`); its nodes are rows of
 * their own, written when they changed.
 */
export class RunStore {
  constructor(private readonly store: StateStore) {}

  /** Ids of the runs that had not finished. */
  async unfinished(): Promise<string[]> {
    return (await this.store.loadWorkflowRuns(UNFINISHED)).map((r) => r.id);
  }

  /** A run with its spec. */
  async run(id: string): Promise<RunRecord | undefined> {
    const row = await this.store.loadWorkflowRun(id);
    return row && ({ ...(row.data as Omit<RunRecord, 'spec'>), spec: row.spec } as RunRecord);
  }

  /** A run's nodes, in the order they were made. */
  async nodes(id: string): Promise<NodeRecord[]> {
    return (await this.store.loadWorkflowNodes(id)) as NodeRecord[];
  }

  /** Every run (of `owner`, when given), without specs. */
  async list(owner?: string): Promise<StoredRun[]> {
    return (await this.store.loadWorkflowRuns(undefined, owner)).map((r) => {
      const { summary, ...run } = r.data as RunRecord & { summary?: WorkflowRun };
      return { run: run as RunRecord, summary };
    });
  }

  /** Writes a run's state with its summary, and the nodes given. */
  save(run: RunRecord, summary: WorkflowRun, nodes: NodeRecord[]): Promise<void> {
    const { spec, ...state } = run;
    return this.store.saveWorkflow({ id: run.id, username: run.username, status: run.status, created: run.created }, { ...state, summary }, nodes, spec);
  }

  /** Forgets a run and its nodes. */
  delete(id: string): Promise<void> {
    return this.store.deleteWorkflow(id);
  }
}

/** What changed in a run since it was last saved and told: its own state, nodes, new edges. */
export class RunChanges {
  private nodes = new Set<string>();
  private edges: WorkflowDag['edges'] = [];
  private run = true;

  /** The run's own state changed (status, stages, counts…). */
  touch(): void {
    this.run = true;
  }

  /** A node changed (so did the run's counts). */
  node(id: string): void {
    this.nodes.add(id);
    this.run = true;
  }

  /** A node was added (without changing the run's own state yet): saved and told with its edges. */
  added(id: string, after: readonly string[]): void {
    this.nodes.add(id);
    for (const from of after) this.edges.push({ from, to: id });
  }

  get pending(): boolean {
    return this.run || this.nodes.size > 0;
  }

  /** What changed, forgotten here: the caller saves and tells it (and gives it back if saving failed). */
  take(): { nodes: string[]; edges: WorkflowDag['edges']; run: boolean } {
    const taken = { nodes: [...this.nodes], edges: this.edges, run: this.run };
    this.nodes = new Set();
    this.edges = [];
    this.run = false;
    return taken;
  }

  /** Nodes whose save failed: saved again with the next save (edges were told already). */
  giveBack(nodes: Iterable<string>): void {
    for (const id of nodes) this.nodes.add(id);
    this.run = true;
  }
}

/** Calls `save` once, `ms` after the first `soon()` since the last save: many changes, one write. */
export class SaveTimer {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly ms: number,
    private readonly save: () => void,
  ) {}

  soon(): void {
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.save();
    }, this.ms);
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
