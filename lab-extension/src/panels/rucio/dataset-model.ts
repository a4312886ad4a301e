// One open dataset (or container) of the browser in the main area: its files stream in from the
// gateway (NDJSON, passed through from Rucio as it answers), then their replicas for the chosen scheme,
// merged into the rows in batches; the table's order, filter and selection; a cancel; and the rule
// that makes the dataset available on an RSE.
import type { RucioReplicasRequest, RucioRule } from '@af-gateway/schemas';
import { GatewayError } from '../../api/gateway-client';
import { SessionModel } from '../../session/session-model';
import type { IEventHub } from '../../session/tokens';
import { FileTableState } from './file-table-state';
import { applyReplicas, type FileRow, fileRow, indexRows, type Scheme } from './rucio-files';

export interface DatasetTarget {
  instance: string;
  scope: string;
  name: string;
  type: string;
  /** Files in the dataset as Rucio counts them (known before the list arrives, when Rucio has it). */
  length?: number | null;
  bytes?: number | null;
}

/** `cancelled`: the user stopped the load; the rows that arrived stay. */
export type LoadPhase = 'files' | 'replicas' | 'done' | 'cancelled' | 'error';

export interface RuleView {
  id: string;
  rule: RucioRule | null;
  checking: boolean;
  error: string;
}

/** A rule still replicating is asked about again this often. */
export const RULE_POLL_MS = 10_000;
/** Replica rows merged per table update. */
const REPLICA_BATCH = 500;

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));
const aborted = (err: unknown) => (err as Error | undefined)?.name === 'AbortError';

export class DatasetModel extends SessionModel {
  readonly instance: string;
  readonly scope: string;
  readonly name: string;
  readonly type: string;
  private _length: number | null;
  private _scheme: Scheme;
  private _rows: FileRow[] = [];
  private rowIndex = new Map<string, number>();
  private _phase: LoadPhase = 'files';
  private _replicasSeen = 0;
  private _loadError = '';
  private loadAbort: AbortController | null = null;
  private _version = 0;
  private _rule: RuleView | null = null;
  private ruleTimer: ReturnType<typeof setTimeout> | null = null;
  readonly table: FileTableState;

  constructor(session: IEventHub, target: DatasetTarget, scheme: Scheme) {
    super(session);
    this.instance = target.instance;
    this.scope = target.scope;
    this.name = target.name;
    this.type = target.type;
    this._length = target.length ?? null;
    this._scheme = scheme;
    this.table = new FileTableState(this);
  }

  get did(): string {
    return `${this.scope}:${this.name}`;
  }
  /** Files the dataset has as Rucio counts them; null until known. */
  get length(): number | null {
    return this._length;
  }
  get scheme(): Scheme {
    return this._scheme;
  }
  /** The file rows; the array grows while they stream (see `version`). */
  get rows(): FileRow[] {
    return this._rows;
  }
  get phase(): LoadPhase {
    return this._phase;
  }
  get loading(): boolean {
    return this._phase === 'files' || this._phase === 'replicas';
  }
  get replicasSeen(): number {
    return this._replicasSeen;
  }
  get loadError(): string {
    return this._loadError;
  }
  /** Bumped whenever rows change, so views re-render the slice they show. */
  get version(): number {
    return this._version;
  }
  get rule(): RuleView | null {
    return this._rule;
  }

  /** Loads the files, then their replicas; asked again (a reload) it starts over. */
  async load(): Promise<void> {
    this.loadAbort?.abort();
    const abort = (this.loadAbort = new AbortController());
    this._rows = [];
    this.rowIndex = new Map();
    this.table.reset();
    this._phase = 'files';
    this._replicasSeen = 0;
    this._loadError = '';
    this._version++;
    this.emitNow();
    try {
      for await (const f of this.client.rucioFiles(this.instance, this.scope, this.name, abort.signal)) {
        if (abort !== this.loadAbort) return;
        this.rowIndex.set(`${f.scope}:${f.name}`, this._rows.length);
        this._rows.push(fileRow(f));
        this._version++;
        this.emitSoon();
      }
    } catch (err) {
      return this.loadFailed(err, abort);
    }
    if (abort !== this.loadAbort) return;
    if (this._length == null) this._length = this._rows.length;
    await this.loadReplicas(abort);
  }

  /** Stops loading; the rows that arrived stay (and can be used). */
  cancel(): void {
    if (!this.loading) return;
    this.loadAbort?.abort();
    this.loadAbort = null;
    this._phase = 'cancelled';
    this._version++;
    this.emitNow();
  }

  /** Switches the PFN scheme; the replicas are asked for again (unless the files are still coming). */
  async setScheme(scheme: Scheme): Promise<void> {
    if (scheme === this._scheme) return;
    this._scheme = scheme;
    if (this._phase === 'files') return this.emitNow();
    this.loadAbort?.abort();
    const abort = (this.loadAbort = new AbortController());
    await this.loadReplicas(abort);
  }

  /** Tells the views the table's order, filter or selection changed. */
  tableChanged(): void {
    this.emitNow();
  }

  /** Creates a rule for the dataset and follows its state. */
  async makeAvailable(rseExpression: string, lifetimeDays: number): Promise<string> {
    const res = await this.client.rucioCreateRule(this.instance, {
      dids: [{ scope: this.scope, name: this.name }],
      rse_expression: rseExpression,
      lifetime: Math.round(lifetimeDays * 86400),
    });
    const id = res.rule_ids[0] ?? '';
    this._rule = { id, rule: null, checking: false, error: '' };
    await this.refreshRule();
    return id;
  }

  /** Asks for the rule's state; while it is replicating, asks again every RULE_POLL_MS. */
  async refreshRule(): Promise<void> {
    const view = this._rule;
    if (!view || !view.id) return;
    this.stopRulePolling();
    view.checking = true;
    this.emitNow();
    try {
      view.rule = await this.client.rucioRule(this.instance, view.id);
      view.error = '';
    } catch (err) {
      view.error = message(err);
    }
    view.checking = false;
    if (this._rule !== view || this.isDisposed) return;
    const state = view.rule?.state;
    if (state === 'REPLICATING' || state === 'INJECT' || state === 'WAITING_APPROVAL') {
      this.ruleTimer = setTimeout(() => void this.refreshRule(), RULE_POLL_MS);
    }
    this.emitNow();
  }

  override dispose(): void {
    if (this.isDisposed) return;
    this.loadAbort?.abort();
    this.loadAbort = null;
    this.stopRulePolling();
    super.dispose();
  }

  private async loadReplicas(abort: AbortController): Promise<void> {
    this._phase = 'replicas';
    this._replicasSeen = 0;
    this._loadError = '';
    for (let i = 0; i < this._rows.length; i++) this._rows[i] = { ...this._rows[i]!, pfn: '', rses: [] };
    this._version++;
    this.emitNow();
    const req = { dids: [{ scope: this.scope, name: this.name }], schemes: [this._scheme], sort: 'random' } as RucioReplicasRequest;
    let batch = [];
    try {
      for await (const r of this.client.rucioReplicas(this.instance, req, abort.signal)) {
        if (abort !== this.loadAbort) return;
        batch.push(r);
        if (batch.length >= REPLICA_BATCH) {
          this._replicasSeen += applyReplicas(this._rows, this.rowIndex, batch, this._scheme);
          batch = [];
          this._version++;
          this.emitSoon();
        }
      }
      if (abort !== this.loadAbort) return;
      this._replicasSeen += applyReplicas(this._rows, this.rowIndex, batch, this._scheme);
    } catch (err) {
      return this.loadFailed(err, abort);
    }
    if (this.rowIndex.size !== this._rows.length) this.rowIndex = indexRows(this._rows);
    this._phase = 'done';
    this._version++;
    this.emitNow();
  }

  private loadFailed(err: unknown, abort: AbortController): void {
    if (aborted(err) || abort !== this.loadAbort) return;
    this._phase = 'error';
    this._loadError = err instanceof GatewayError ? err.message : message(err);
    this._version++;
    this.emitNow();
  }

  private stopRulePolling(): void {
    if (this.ruleTimer) clearTimeout(this.ruleTimer);
    this.ruleTimer = null;
  }
}
