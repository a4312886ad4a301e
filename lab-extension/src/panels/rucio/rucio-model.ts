// State of the Rucio panel: the instance and scope, the search and its results (containers and
// datasets expand to their content), the open dataset's files merged with their replicas for the
// chosen scheme as they stream in, and the rule that makes a dataset available on an RSE.
import type { RucioInstanceList, RucioReplicasRequest } from '@af-gateway/schemas';
import { GatewayError } from '../../api/gateway-client';
import { failureState } from '../../session/gateway-session';
import { SessionModel } from '../../session/session-model';
import type { IEventHub, LoginState } from '../../session/tokens';
import type { RucioRule, RucioSearchType } from '@af-gateway/schemas';
import { applyReplicas, type FileRow, fileRow, indexRows, type Scheme, SCHEMES } from './rucio-files';

export type RucioInstance = RucioInstanceList['instances'][number];
export type RucioState = 'idle' | 'loading' | 'ready' | 'no-instances' | 'login-required' | 'error';
/** The panel's type filter; `all` lists datasets and containers (files are found through them). */
export type TypeFilter = 'dataset' | 'container' | 'all';

const SEARCH_TYPE: Record<TypeFilter, RucioSearchType> = { dataset: 'dataset', container: 'container', all: 'collection' };
/** Results and expanded content shown at most; a narrower pattern finds the rest. */
export const MAX_RESULTS = 1000;
export const MAX_CHILDREN = 200;
/** A rule still replicating is asked about again this often. */
export const RULE_POLL_MS = 10_000;

export interface ResultNode {
  scope: string;
  name: string;
  type: string;
  bytes: number | null;
  length: number | null;
  expanded: boolean;
  loading: boolean;
  error: string;
  /** Content once loaded (null: not asked yet); `more` when it was cut at MAX_CHILDREN. */
  children: ResultNode[] | null;
  more: boolean;
}

export interface OpenDataset {
  scope: string;
  name: string;
  type: string;
  /** Files in the dataset as Rucio counts them (known before the list arrives, when Rucio has it). */
  length: number | null;
  bytes: number | null;
}

export type LoadPhase = 'files' | 'replicas' | 'done' | 'error';

export interface RuleView {
  id: string;
  rule: RucioRule | null;
  checking: boolean;
  error: string;
}

const isCollection = (type: string) => type === 'DATASET' || type === 'CONTAINER';
const message = (err: unknown) => (err instanceof Error ? err.message : String(err));
const aborted = (err: unknown) => (err as Error | undefined)?.name === 'AbortError';

export interface RucioPreferences {
  instance: string;
  scheme: string;
}

export class RucioModel extends SessionModel {
  private _state: RucioState = 'idle';
  private _error = '';
  private _instances: RucioInstance[] = [];
  private _instance = '';
  private _scopes: string[] = [];
  private _scope = '';
  private _scheme: Scheme = 'davs';
  query = '';
  typeFilter: TypeFilter = 'dataset';

  private _results: ResultNode[] = [];
  private _searching = false;
  private _searched = false;
  private _searchError = '';
  private _resultsCut = false;
  private searchAbort: AbortController | null = null;

  private _dataset: OpenDataset | null = null;
  private _rows: FileRow[] = [];
  private rowIndex = new Map<string, number>();
  private _phase: LoadPhase = 'done';
  private _replicasSeen = 0;
  private _loadError = '';
  private loadAbort: AbortController | null = null;
  private _version = 0;

  private _rule: RuleView | null = null;
  private ruleTimer: ReturnType<typeof setTimeout> | null = null;

  private emitTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    session: IEventHub,
    private readonly prefs: RucioPreferences = { instance: '', scheme: '' },
  ) {
    super(session);
  }

  get state(): RucioState {
    return this._state;
  }
  get error(): string {
    return this._error;
  }
  get instances(): RucioInstance[] {
    return this._instances;
  }
  get instance(): string {
    return this._instance;
  }
  get scopes(): string[] {
    return this._scopes;
  }
  get scope(): string {
    return this._scope;
  }
  get scheme(): Scheme {
    return this._scheme;
  }
  get results(): ResultNode[] {
    return this._results;
  }
  get searching(): boolean {
    return this._searching;
  }
  get searched(): boolean {
    return this._searched;
  }
  get searchError(): string {
    return this._searchError;
  }
  get resultsCut(): boolean {
    return this._resultsCut;
  }
  get dataset(): OpenDataset | null {
    return this._dataset;
  }
  /** The open dataset's file rows; the array grows while they stream (see `version`). */
  get rows(): FileRow[] {
    return this._rows;
  }
  get phase(): LoadPhase {
    return this._phase;
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
  get didLabel(): string {
    return this._dataset ? `${this._dataset.scope}:${this._dataset.name}` : '';
  }

  /** Loads the instances (once) and the chosen instance's scopes. */
  async start(): Promise<void> {
    if (this._state === 'loading' || this._state === 'ready' || this._state === 'no-instances') return;
    this.set({ state: 'loading', error: '' });
    try {
      this._instances = (await this.client.rucioInstances()).instances;
    } catch (err) {
      return this.fail(err);
    }
    if (this._instances.length === 0) return this.set({ state: 'no-instances', error: '' });
    const preferred = this._instances.find((i) => i.name === this.prefs.instance) ?? this._instances[0]!;
    await this.selectInstance(preferred.name);
  }

  async selectInstance(name: string): Promise<void> {
    const inst = this._instances.find((i) => i.name === name);
    if (!inst) return;
    this._instance = inst.name;
    const scheme = (SCHEMES as string[]).includes(this.prefs.scheme) ? this.prefs.scheme : inst.default_scheme;
    this._scheme = (SCHEMES as string[]).includes(scheme) ? (scheme as Scheme) : 'davs';
    this.closeDataset();
    this.clearResults();
    this.set({ state: 'loading', error: '' });
    try {
      this._scopes = [...(await this.client.rucioScopes(inst.name))].sort();
    } catch (err) {
      return this.fail(err);
    }
    // A shared data scope first: users' own scopes are where their outputs go.
    this._scope = this._scopes.includes(this._scope) ? this._scope : (this._scopes.find((s) => !s.startsWith('user.')) ?? this._scopes[0] ?? '');
    this.set({ state: 'ready', error: '' });
  }

  selectScope(scope: string): void {
    this._scope = scope;
    this.clearResults();
    this.emitNow();
  }

  setQuery(query: string): void {
    this.query = query;
    this.emitNow();
  }

  setTypeFilter(type: TypeFilter): void {
    this.typeFilter = type;
    this.emitNow();
  }

  /** Searches the scope for names matching the query (wildcards `*`); an empty query lists all. */
  async search(): Promise<void> {
    if (!this._instance || !this._scope) return;
    this.searchAbort?.abort();
    const abort = (this.searchAbort = new AbortController());
    this._results = [];
    this._resultsCut = false;
    this._searchError = '';
    this._searching = true;
    this._searched = false;
    this.closeDataset();
    this.emitNow();
    try {
      for await (const d of this.client.rucioSearch(this._instance, this._scope, this.query.trim() || '*', SEARCH_TYPE[this.typeFilter], abort.signal)) {
        if (this._results.length >= MAX_RESULTS) {
          this._resultsCut = true;
          break;
        }
        this._results.push(node(d.scope, d.name, d.did_type ?? d.type ?? '', d.bytes ?? null, d.length ?? null));
        this.schedule();
      }
    } catch (err) {
      if (aborted(err) || abort !== this.searchAbort) return;
      this._searchError = message(err);
      if (err instanceof GatewayError && err.unauthenticated) this.fail(err);
    }
    if (abort !== this.searchAbort) return;
    this._results.sort((a, b) => a.name.localeCompare(b.name));
    this._searching = false;
    this._searched = true;
    this.emitNow();
  }

  /** Expands or folds a container or dataset of the results, loading its content the first time. */
  async toggle(n: ResultNode): Promise<void> {
    if (!isCollection(n.type)) return;
    n.expanded = !n.expanded;
    this.emitNow();
    if (!n.expanded || n.children || n.loading) return;
    n.loading = true;
    n.error = '';
    const children: ResultNode[] = [];
    try {
      for await (const c of this.client.rucioContent(this._instance, n.scope, n.name)) {
        if (children.length >= MAX_CHILDREN) {
          n.more = true;
          break;
        }
        children.push(node(c.scope, c.name, c.type ?? c.did_type ?? '', c.bytes ?? null, null));
      }
      n.children = children.sort((a, b) => a.name.localeCompare(b.name));
    } catch (err) {
      n.error = message(err);
    }
    n.loading = false;
    this.emitNow();
  }

  /** Opens a dataset (or container): its files stream in, then their replicas for the scheme. */
  async open(target: { scope: string; name: string; type: string; bytes?: number | null; length?: number | null }): Promise<void> {
    this.closeDataset();
    this._dataset = { scope: target.scope, name: target.name, type: target.type, bytes: target.bytes ?? null, length: target.length ?? null };
    const abort = (this.loadAbort = new AbortController());
    this._phase = 'files';
    this.emitNow();
    try {
      for await (const f of this.client.rucioFiles(this._instance, target.scope, target.name, abort.signal)) {
        this.rowIndex.set(`${f.scope}:${f.name}`, this._rows.length);
        this._rows.push(fileRow(f));
        this._version++;
        this.schedule();
      }
    } catch (err) {
      return this.loadFailed(err, abort);
    }
    if (abort !== this.loadAbort) return;
    if (this._dataset.length == null) this._dataset.length = this._rows.length;
    await this.loadReplicas(abort);
  }

  /** Switches the PFN scheme; the replicas of the open dataset are asked for again. */
  async setScheme(scheme: Scheme): Promise<void> {
    if (scheme === this._scheme) return;
    this._scheme = scheme;
    if (!this._dataset || this._phase === 'files') return this.emitNow();
    this.loadAbort?.abort();
    const abort = (this.loadAbort = new AbortController());
    await this.loadReplicas(abort);
  }

  closeDataset(): void {
    this.loadAbort?.abort();
    this.loadAbort = null;
    this.stopRulePolling();
    this._dataset = null;
    this._rows = [];
    this.rowIndex = new Map();
    this._phase = 'done';
    this._replicasSeen = 0;
    this._loadError = '';
    this._rule = null;
    this._version++;
    this.emitNow();
  }

  /** Creates a rule for the open dataset and follows its state. */
  async makeAvailable(rseExpression: string, lifetimeDays: number): Promise<string> {
    const d = this._dataset;
    if (!d) throw new GatewayError(400, 'Open a dataset first', 'no_dataset');
    const res = await this.client.rucioCreateRule(this._instance, {
      dids: [{ scope: d.scope, name: d.name }],
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
      view.rule = await this.client.rucioRule(this._instance, view.id);
      view.error = '';
    } catch (err) {
      view.error = message(err);
    }
    view.checking = false;
    if (this._rule !== view) return;
    const state = view.rule?.state;
    if (state === 'REPLICATING' || state === 'INJECT' || state === 'WAITING_APPROVAL') {
      this.ruleTimer = setTimeout(() => void this.refreshRule(), RULE_POLL_MS);
    }
    this.emitNow();
  }

  override dispose(): void {
    this.searchAbort?.abort();
    this.closeDataset();
    if (this.emitTimer) clearTimeout(this.emitTimer);
    super.dispose();
  }

  /** Shown before the (Hub) login finished, the panel asks again once it has. */
  protected override onLoginChanged(_session: unknown, state: LoginState): void {
    if (state === 'logged-in' && this._state === 'login-required') void this.start();
  }

  private async loadReplicas(abort: AbortController): Promise<void> {
    const d = this._dataset!;
    this._phase = 'replicas';
    this._replicasSeen = 0;
    this._loadError = '';
    for (let i = 0; i < this._rows.length; i++) this._rows[i] = { ...this._rows[i]!, pfn: '', rses: [] };
    this._version++;
    this.emitNow();
    const req: RucioReplicasRequest = { dids: [{ scope: d.scope, name: d.name }], schemes: [this._scheme], sort: 'random' } as RucioReplicasRequest;
    // Rows are merged in batches: one table update per batch, not per file.
    let batch = [];
    try {
      for await (const r of this.client.rucioReplicas(this._instance, req, abort.signal)) {
        batch.push(r);
        if (batch.length >= 500) {
          this._replicasSeen += applyReplicas(this._rows, this.rowIndex, batch, this._scheme);
          batch = [];
          this._version++;
          this.schedule();
        }
      }
      this._replicasSeen += applyReplicas(this._rows, this.rowIndex, batch, this._scheme);
    } catch (err) {
      return this.loadFailed(err, abort);
    }
    if (abort !== this.loadAbort) return;
    if (this.rowIndex.size !== this._rows.length) this.rowIndex = indexRows(this._rows);
    this._phase = 'done';
    this._version++;
    this.emitNow();
  }

  private loadFailed(err: unknown, abort: AbortController): void {
    if (aborted(err) || abort !== this.loadAbort) return;
    this._phase = 'error';
    this._loadError = message(err);
    this._version++;
    this.emitNow();
  }

  private clearResults(): void {
    this.searchAbort?.abort();
    this.searchAbort = null;
    this._results = [];
    this._searching = false;
    this._searched = false;
    this._searchError = '';
    this._resultsCut = false;
  }

  private stopRulePolling(): void {
    if (this.ruleTimer) clearTimeout(this.ruleTimer);
    this.ruleTimer = null;
  }

  private fail(err: unknown): void {
    const { state, message: error } = failureState(err);
    this.set({ state, error });
  }

  private set(s: { state: RucioState; error: string }): void {
    this._state = s.state;
    this._error = s.error;
    this.emitNow();
  }

  /** While rows stream, the view is told at most every 100 ms. */
  private schedule(): void {
    if (this.emitTimer) return;
    this.emitTimer = setTimeout(() => {
      this.emitTimer = null;
      this.emitChanged();
    }, 100);
  }

  private emitNow(): void {
    if (this.emitTimer) clearTimeout(this.emitTimer);
    this.emitTimer = null;
    this.emitChanged();
  }
}

function node(scope: string, name: string, type: string, bytes: number | null, length: number | null): ResultNode {
  return { scope, name, type: type.toUpperCase(), bytes, length, expanded: false, loading: false, error: '', children: null, more: false };
}
