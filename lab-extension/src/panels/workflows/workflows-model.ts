// State of the Workflows panel: the user's runs as the gateway lists them and its event stream
// updates them (no polling), and the actions on a run. The DAG views get their deltas from here.
import type { AfEvent, WorkflowBundle, WorkflowDag, WorkflowRun, WorkflowState, WorkflowValidation } from '@af-gateway/schemas';
import { Signal, type ISignal } from '@lumino/signaling';
import { GatewayListModel } from '../../session/session-model';
import type { IEventHub } from '../../session/tokens';

export const isFinished = (s: WorkflowState) => s === 'SUCCESS' || s === 'FAILED' || s === 'CANCELLED';
export const canCancel = (s: WorkflowState) => s === 'DEFINED' || s === 'RUNNING';
export const canRetry = (s: WorkflowState) => s === 'FAILED' || s === 'CANCELLED';

/** A run's steps per state as fractions of its steps, for the compact bar (empty when it has none yet). */
export function countSegments(run: WorkflowRun): { state: WorkflowState; count: number; fraction: number }[] {
  const order: WorkflowState[] = ['SUCCESS', 'RUNNING', 'FAILED', 'CANCELLED', 'DEFINED'];
  const total = order.reduce((n, s) => n + (run.counts[s] ?? 0), 0);
  if (!total) return [];
  return order.filter((s) => run.counts[s] > 0).map((state) => ({ state, count: run.counts[state], fraction: run.counts[state] / total }));
}

export class WorkflowsModel extends GatewayListModel {
  private readonly runs = new Map<string, WorkflowRun>();
  private readonly _dag = new Signal<this, WorkflowDag>(this);
  private readonly _resync = new Signal<this, void>(this);
  /** Where the gateway can run steps (connect-info), its default first. */
  private gatewayBackends: string[] = [];

  constructor(session: IEventHub) {
    super(session);
    this.follow({ types: ['snapshot', 'workflow', 'workflow-dag'] }, (ev) => this.apply(ev));
  }

  /** The 'workflow-dag' deltas, for the open DAG views. */
  get dagEvent(): ISignal<this, WorkflowDag> {
    return this._dag;
  }

  /** The stream (re)connected: events may have been missed, the views load again. */
  get resync(): ISignal<this, void> {
    return this._resync;
  }

  get list(): WorkflowRun[] {
    return [...this.runs.values()].sort((a, b) => b.created - a.created);
  }

  get(id: string): WorkflowRun | undefined {
    return this.runs.get(id);
  }

  /** Where steps can run, as the gateway says (its default first); else the backends earlier runs used. */
  get backends(): string[] {
    if (this.gatewayBackends.length) return this.gatewayBackends;
    return [...new Set(this.list.map((r) => r.backend).filter(Boolean))].sort();
  }

  protected async fetch(): Promise<void> {
    const res = await this.client.listWorkflows();
    if (!this.gatewayBackends.length) await this.loadBackends();
    this.runs.clear();
    for (const r of res.runs) this.runs.set(r.id, r);
  }

  private async loadBackends(): Promise<void> {
    try {
      this.gatewayBackends = (await this.client.connectInfo()).workflow_backends ?? [];
    } catch {
      // an older gateway: the form offers the backends of earlier runs
    }
  }

  apply(ev: AfEvent): void {
    switch (ev.type) {
      case 'snapshot':
        // Sent on every (re)connect: what happened while the socket was down is only in a reload.
        void this.reload();
        this._resync.emit();
        return;
      case 'workflow':
        this.runs.set(ev.run.id, ev.run);
        this.emitChanged();
        return;
      case 'workflow-dag':
        this.runs.set(ev.dag.run.id, ev.dag.run);
        this._dag.emit(ev.dag);
        this.emitChanged();
        return;
      default:
        return;
    }
  }

  /** Updates a run the API answered with (the stream brings it too, maybe later). */
  private put(run: WorkflowRun | undefined): void {
    if (!run?.id) return;
    this.runs.set(run.id, run);
    this.emitChanged();
  }

  validate(bundle: WorkflowBundle): Promise<WorkflowValidation> {
    return this.client.validateWorkflow(bundle);
  }

  async submit(bundle: WorkflowBundle): Promise<WorkflowRun> {
    const run = await this.client.submitWorkflow(bundle);
    this.put(run);
    return run;
  }

  async cancel(id: string): Promise<void> {
    this.put(await this.client.cancelWorkflow(id));
  }

  async retry(id: string): Promise<void> {
    this.put(await this.client.retryWorkflow(id));
  }

  async remove(id: string): Promise<void> {
    await this.client.deleteWorkflow(id);
    if (this.runs.delete(id)) this.emitChanged();
  }
}
