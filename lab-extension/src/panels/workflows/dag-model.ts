// One open run's DAG: loaded once, then kept current by the 'workflow-dag' deltas of the event
// stream (deltas that arrive while it loads are kept and merged after). Loaded again when the
// stream reconnects, since deltas sent meanwhile are lost.
import type { WorkflowDag, WorkflowNode } from '@af-gateway/schemas';
import { Signal, type ISignal } from '@lumino/signaling';
import { createDagState, type DagChange, type DagState, mergeDag } from './dag-state';
import type { WorkflowsModel } from './workflows-model';

export type DagPhase = 'loading' | 'ready' | 'error';

/** How many versions back `changedSince` remembers, and how many nodes it names at most (else: redraw all). */
const CHANGE_LOG_VERSIONS = 256;
const CHANGE_LOG_NODES = 400;

export class DagModel {
  private _state: DagState | null = null;
  private _phase: DagPhase = 'loading';
  private _error = '';
  private pending: WorkflowDag[] | null = null;
  private disposed = false;
  /** Bumped on every change; `structureVersion` only when the layout must be redone. */
  version = 0;
  structureVersion = 0;
  /** The nodes each recent version changed (null: a new structure, or not known). */
  private changeLog: { version: number; ids: string[] | null }[] = [];
  private readonly _changed = new Signal<this, DagChange>(this);

  constructor(
    readonly runId: string,
    private readonly runs: WorkflowsModel,
  ) {
    runs.dagEvent.connect(this.onDelta, this);
    runs.resync.connect(this.onResync, this);
  }

  get changed(): ISignal<this, DagChange> {
    return this._changed;
  }

  get state(): DagState | null {
    return this._state;
  }

  get phase(): DagPhase {
    return this._phase;
  }

  get error(): string {
    return this._error;
  }

  node(id: string): WorkflowNode | undefined {
    return this._state?.nodes.get(id);
  }

  async load(): Promise<void> {
    this.pending = [];
    try {
      const dag = await this.runs.client.getWorkflow(this.runId);
      if (this.disposed) return;
      this._state = createDagState(dag);
      const queued = this.pending ?? [];
      this.pending = null;
      for (const d of queued) mergeDag(this._state, d);
      this._phase = 'ready';
      this._error = '';
      this.emit({ structure: true, nodes: this._state.nodes.size });
    } catch (err) {
      this.pending = null;
      if (this.disposed) return;
      this._phase = this._state ? 'ready' : 'error';
      this._error = err instanceof Error ? err.message : String(err);
      this.emit({ structure: false, nodes: 0 });
    }
  }

  private onDelta(_: unknown, dag: WorkflowDag): void {
    if (dag.run.id !== this.runId) return;
    if (this.pending) {
      this.pending.push(dag);
      return;
    }
    if (!this._state) return;
    this.emit(mergeDag(this._state, dag));
  }

  private onResync(): void {
    if (!this.pending) void this.load();
  }

  /**
   * The nodes that changed after `version` (a drawing's), or null when that is not known (a new
   * structure since, or too long ago, or too many): then everything is drawn again.
   */
  changedSince(version: number): Set<string> | null {
    if (version === this.version) return new Set();
    const first = this.changeLog[0];
    if (!first || first.version > version + 1 || version > this.version) return null;
    const ids = new Set<string>();
    for (const entry of this.changeLog) {
      if (entry.version <= version) continue;
      if (!entry.ids) return null;
      for (const id of entry.ids) ids.add(id);
      if (ids.size > CHANGE_LOG_NODES) return null;
    }
    return ids;
  }

  private emit(change: DagChange): void {
    this.version++;
    if (change.structure) this.structureVersion++;
    this.changeLog.push({ version: this.version, ids: change.structure || !change.ids || change.ids.length > CHANGE_LOG_NODES ? null : change.ids });
    if (this.changeLog.length > CHANGE_LOG_VERSIONS) this.changeLog.shift();
    this._changed.emit(change);
  }

  dispose(): void {
    this.disposed = true;
    this.runs.dagEvent.disconnect(this.onDelta, this);
    this.runs.resync.disconnect(this.onResync, this);
    Signal.clearData(this);
  }
}
