// State of the Rucio panel (sidebar): the instance and scope, the search and its results (containers
// and datasets expand to their content). A dataset opens in the main area (dataset-model.ts).
import type { RucioInstanceList } from '@af-gateway/schemas';
import { GatewayError } from '../../api/gateway-client';
import { failureState } from '../../session/gateway-session';
import { SessionModel } from '../../session/session-model';
import type { IEventHub, LoginState } from '../../session/tokens';
import type { RucioSearchType } from '@af-gateway/schemas';
import { type Scheme, SCHEMES } from './rucio-files';

export type RucioInstance = RucioInstanceList['instances'][number];
export type RucioState = 'idle' | 'loading' | 'ready' | 'no-instances' | 'login-required' | 'error';
/** The panel's type filter; `all` lists datasets and containers (files are found through them). */
export type TypeFilter = 'dataset' | 'container' | 'all';

const SEARCH_TYPE: Record<TypeFilter, RucioSearchType> = { dataset: 'dataset', container: 'container', all: 'collection' };
/** Results and expanded content shown at most; a narrower pattern finds the rest. */
export const MAX_RESULTS = 1000;
export const MAX_CHILDREN = 200;
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
    this.emitNow();
    try {
      for await (const d of this.client.rucioSearch(this._instance, this._scope, this.query.trim() || '*', SEARCH_TYPE[this.typeFilter], abort.signal)) {
        if (this._results.length >= MAX_RESULTS) {
          this._resultsCut = true;
          break;
        }
        this._results.push(node(d.scope, d.name, d.did_type ?? d.type ?? '', d.bytes ?? null, d.length ?? null));
        this.emitSoon();
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

  override dispose(): void {
    this.searchAbort?.abort();
    super.dispose();
  }

  /** Shown before the (Hub) login finished, the panel asks again once it has. */
  protected override onLoginChanged(_session: unknown, state: LoginState): void {
    if (state === 'logged-in' && this._state === 'login-required') void this.start();
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

  private fail(err: unknown): void {
    const { state, message: error } = failureState(err);
    this.set({ state, error });
  }

  private set(s: { state: RucioState; error: string }): void {
    this._state = s.state;
    this._error = s.error;
    this.emitNow();
  }
}

function node(scope: string, name: string, type: string, bytes: number | null, length: number | null): ResultNode {
  return { scope, name, type: type.toUpperCase(), bytes, length, expanded: false, loading: false, error: '', children: null, more: false };
}
