// One open run's DAG: loaded once, then kept current by the 'workflow-dag' deltas of the event
// stream (deltas that arrive while it loads are kept and merged after). Loaded again when the
// stream reconnects, since deltas sent meanwhile are lost.
import type { WorkflowDag, WorkflowNode } from '@af-gateway/schemas';
import { Signal, type ISignal } from '@lumino/signaling';
import { createDagState, type DagChange, type DagState, mergeDag } from './dag-state';
import type { WorkflowsModel } from './workflows-model';

export type DagPhase = 'loading' | 'ready' | 'error';

export class DagModel {
  private _state: DagState | null = null;
  private _phase: DagPhase = 'loading';
  private _error = '';
  private pending: WorkflowDag[] | null = null;
  private disposed = false;
  /** Bumped on every change; `structureVersion` only when the layout must be redone. */
  version = 0;
  structureVersion = 0;
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

  private emit(change: DagChange): void {
    this.version++;
    if (change.structure) this.structureVersion++;
    this._changed.emit(change);
  }

  dispose(): void {
    this.disposed = true;
    this.runs.dagEvent.disconnect(this.onDelta, this);
    this.runs.resync.disconnect(this.onResync, this);
    Signal.clearData(this);
  }
}
