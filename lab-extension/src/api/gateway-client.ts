// The one typed client of the gateway: every request the panels make goes through here, with the
// wire types generated from schemas/.
import type {
  AfCluster,
  AfClusterList,
  AfWorkerGroup,
  AfWorkerGroupList,
  AdaptRequest,
  ConnectInfo,
  CreateClusterResult,
  ErrorBody,
  OptionsSpec,
  RucioDid,
  RucioFile,
  RucioInstanceList,
  RucioRegisterRequest,
  RucioRegisterResult,
  RucioReplica,
  RucioReplicasRequest,
  RucioRule,
  RucioRuleRequest,
  RucioRuleResult,
  RucioScopeList,
  RucioSearchType,
  ScaleRequest,
  ScaleResult,
  TokenStatus,
  WorkflowBundle,
  WorkflowDag,
  WorkflowRun,
  WorkflowRunList,
  WorkflowValidation,
} from '@af-gateway/schemas';
import type { AuthMode } from './gateway-settings';
import { ndjsonRows, readerChunks } from './ndjson';

/** One problem of a document the gateway refused (a workflow spec), at its JSON path. */
export type GatewayErrorDetail = NonNullable<ErrorBody['details']>[number];

/** A failed gateway call; `message` is the gateway's own text, meant to be shown as it is. */
export class GatewayError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string,
    readonly details: GatewayErrorDetail[] = [],
  ) {
    super(message);
    this.name = 'GatewayError';
  }

  get unauthenticated(): boolean {
    return this.status === 401;
  }
}

export interface GatewayClientOptions {
  /** Base URL ending in '/'. */
  baseUrl: string;
  authMode: Exclude<AuthMode, 'auto'>;
  username?: string;
  fetch?: typeof fetch;
}

/** The dashboard plots a Dask scheduler serves, as its /individual-plots.json lists them. */
export type DashboardPlots = Record<string, string>;

export class GatewayClient {
  readonly baseUrl: string;
  private readonly fetchImpl: typeof fetch;

  constructor(private readonly opts: GatewayClientOptions) {
    this.baseUrl = opts.baseUrl.endsWith('/') ? opts.baseUrl : `${opts.baseUrl}/`;
    this.fetchImpl = opts.fetch ?? ((input, init) => fetch(input, init));
  }

  get authMode(): Exclude<AuthMode, 'auto'> {
    return this.opts.authMode;
  }

  url(path: string): string {
    return this.baseUrl + path.replace(/^\//, '');
  }

  /** The event stream's WebSocket URL (the browser sends the session cookie with it). */
  eventsUrl(): string {
    return this.url('api/af/events').replace(/^http/, 'ws');
  }

  /** Where the browser logs in; it comes back to `next` (a path on the page's origin). */
  loginUrl(next: string): string {
    const route = this.opts.authMode === 'jupyterhub' ? 'api/af/hub-login' : 'api/af/login';
    return `${this.url(route)}?next=${encodeURIComponent(next)}`;
  }

  /** A dashboard page of a cluster, through the gateway's proxy. */
  dashboardUrl(cluster: string, path = 'status'): string {
    return this.url(`clusters/${encodeURIComponent(cluster)}/${path.replace(/^\//, '')}`);
  }

  private async send(method: string, path: string, body: unknown, accept: string, signal?: AbortSignal): Promise<Response> {
    const headers: Record<string, string> = { accept };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.opts.authMode === 'basic') {
      headers.authorization = `Basic ${btoa(`${this.opts.username ?? ''}:`)}`;
    }
    let res: Response;
    try {
      res = await this.fetchImpl(this.url(path), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'same-origin',
        signal,
      });
    } catch (err) {
      if ((err as Error).name === 'AbortError') throw err;
      throw new GatewayError(0, `The gateway at ${this.baseUrl} cannot be reached (${(err as Error).message})`, 'unreachable');
    }
    if (!res.ok) {
      const text = await res.text();
      let json: Partial<ErrorBody> | undefined;
      try {
        json = text ? (JSON.parse(text) as Partial<ErrorBody>) : undefined;
      } catch {
        json = undefined;
      }
      const message = json?.error ?? `The gateway answered ${res.status} ${res.statusText} for ${method} ${path}`;
      throw new GatewayError(res.status, message, json?.code ?? `http_${res.status}`, Array.isArray(json?.details) ? json.details : []);
    }
    return res;
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.send(method, path, body, 'application/json');
    const text = await res.text();
    if (!text) return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      return undefined as T;
    }
  }

  /**
   * An NDJSON route, row by row as the lines arrive: the first rows of a 100k-file dataset are there
   * at once. Stopping the iteration (or `signal`) cancels the request.
   */
  async *stream<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): AsyncGenerator<T> {
    const res = await this.send(method, path, body, 'application/x-json-stream', signal);
    if (!res.body) return;
    yield* ndjsonRows<T>(readerChunks(res.body));
  }

  listClusters(): Promise<AfClusterList> {
    return this.request('GET', 'api/af/clusters');
  }

  getCluster(name: string): Promise<AfCluster> {
    return this.request('GET', `api/af/clusters/${encodeURIComponent(name)}`);
  }

  options(): Promise<OptionsSpec> {
    return this.request('GET', 'api/v1/options');
  }

  async createCluster(options: Record<string, unknown>): Promise<string> {
    const res = await this.request<CreateClusterResult>('POST', 'api/v1/clusters/', { cluster_options: options });
    return res.name;
  }

  /** Manual scaling; the gateway turns adaptive scaling off. A clamped request answers ok=false with why. */
  scale(name: string, count: number): Promise<ScaleResult> {
    const body: ScaleRequest = { count };
    return this.request('POST', `api/v1/clusters/${encodeURIComponent(name)}/scale`, body);
  }

  adapt(name: string, minimum: number, maximum: number): Promise<ScaleResult> {
    const body: AdaptRequest = { minimum, maximum, active: true };
    return this.request('POST', `api/v1/clusters/${encodeURIComponent(name)}/adapt`, body);
  }

  /** A cluster's worker groups, default first. */
  workerGroups(name: string): Promise<AfWorkerGroupList> {
    return this.request('GET', `api/af/clusters/${encodeURIComponent(name)}/groups`);
  }

  /** Sets a worker group's target; past a limit the gateway answers 422 (limit_workers) and changes nothing. */
  scaleGroup(name: string, group: string, count: number): Promise<AfWorkerGroup> {
    const body: ScaleRequest = { count };
    return this.request('PUT', `api/af/clusters/${encodeURIComponent(name)}/groups/${encodeURIComponent(group)}/scale`, body);
  }

  /**
   * Scales a worker group adaptively between minimum and maximum (null: no maximum but the limits), or
   * turns its adaptive scaling off (active false; the workers stay). The answer is the group, whose
   * message says when a limit capped the range; unknown group 404, minimum > maximum 422, a scheduler
   * that does not answer 409.
   */
  adaptGroup(name: string, group: string, minimum: number, maximum: number | null, active = true): Promise<AfWorkerGroup> {
    const body: AdaptRequest = { minimum, maximum, active };
    return this.request('PUT', `api/af/clusters/${encodeURIComponent(name)}/groups/${encodeURIComponent(group)}/adapt`, body);
  }

  async stopCluster(name: string): Promise<void> {
    await this.request('DELETE', `api/v1/clusters/${encodeURIComponent(name)}`);
  }

  tokenStatus(): Promise<TokenStatus> {
    return this.request('GET', 'api/af/token');
  }

  refreshToken(): Promise<TokenStatus> {
    return this.request('POST', 'api/af/token/refresh');
  }

  connectInfo(): Promise<ConnectInfo> {
    return this.request('GET', 'api/af/connect-info');
  }

  /** The scheduler's list of individual dashboard plots (name -> path). */
  async dashboardPlots(name: string): Promise<DashboardPlots> {
    const res = await this.request<{ [key: string]: string }>('GET', `clusters/${encodeURIComponent(name)}/individual-plots.json`);
    // Labels come as "Individual Task Stream": the prefix says nothing here.
    const entries = Object.entries(res ?? {})
      .filter((e): e is [string, string] => typeof e[1] === 'string')
      .map(([label, path]) => [label.replace(/^Individual /, ''), path.replace(/^\//, '')] as const)
      .sort((a, b) => a[0].localeCompare(b[0]));
    return Object.fromEntries(entries);
  }

  // --- workflows (/api/af/workflows/) -----------------------------------------------------------

  private workflowPath(id: string, rest = ''): string {
    return `api/af/workflows/${encodeURIComponent(id)}${rest}`;
  }

  /** Checks a workflow and its step files; every problem comes with its JSON path. */
  validateWorkflow(bundle: WorkflowBundle): Promise<WorkflowValidation> {
    const { entry, files, parameters } = bundle;
    return this.request('POST', 'api/af/workflows/validate', { entry, files, ...(parameters ? { parameters } : {}) });
  }

  /** Starts a run; a refused spec throws a GatewayError whose `details` name each problem. */
  submitWorkflow(bundle: WorkflowBundle): Promise<WorkflowRun> {
    return this.request('POST', 'api/af/workflows', bundle);
  }

  listWorkflows(): Promise<WorkflowRunList> {
    return this.request('GET', 'api/af/workflows');
  }

  /** A run with its whole DAG as far as it is known (later stages add nodes when applied). */
  getWorkflow(id: string): Promise<WorkflowDag> {
    return this.request('GET', this.workflowPath(id));
  }

  cancelWorkflow(id: string): Promise<WorkflowRun> {
    return this.request('POST', this.workflowPath(id, '/cancel'));
  }

  retryWorkflow(id: string): Promise<WorkflowRun> {
    return this.request('POST', this.workflowPath(id, '/retry'));
  }

  /** Removes a finished run and its workspace. */
  async deleteWorkflow(id: string): Promise<void> {
    await this.request('DELETE', this.workflowPath(id));
  }

  /**
   * A step's log as text chunks while they arrive; with `follow` the gateway keeps the response
   * open until the step finished. Stopping the iteration (or `signal`) cancels the request.
   */
  async *workflowLog(id: string, node: string, follow: boolean, signal?: AbortSignal): AsyncGenerator<string> {
    const res = await this.send(
      'GET',
      this.workflowPath(id, `/nodes/${encodeURIComponent(node)}/log${follow ? '?follow=true' : ''}`),
      undefined,
      'text/plain',
      signal,
    );
    if (!res.body) {
      yield await res.text();
      return;
    }
    const decoder = new TextDecoder();
    for await (const chunk of readerChunks(res.body)) {
      const text = decoder.decode(chunk, { stream: true });
      if (text) yield text;
    }
    const rest = decoder.decode();
    if (rest) yield rest;
  }

  /** A file of a run's workspace (`path` relative to run.workspace), e.g. a step's output. */
  async workflowFile(id: string, path: string): Promise<Blob> {
    const rel = path.split('/').filter(Boolean).map(encodeURIComponent).join('/');
    const res = await this.send('GET', this.workflowPath(id, `/files/${rel}`), undefined, 'application/octet-stream');
    return res.blob();
  }

  // --- Rucio (/api/af/rucio/): the gateway acts at each instance as the user ---------------------

  private rucioPath(instance: string, rest: string): string {
    return `api/af/rucio/${encodeURIComponent(instance)}/${rest}`;
  }

  private didPath(instance: string, scope: string, name: string, rest = ''): string {
    return this.rucioPath(instance, `dids/${encodeURIComponent(scope)}/${encodeURIComponent(name)}${rest}`);
  }

  rucioInstances(): Promise<RucioInstanceList> {
    return this.request('GET', 'api/af/rucio/instances');
  }

  rucioScopes(instance: string): Promise<RucioScopeList> {
    return this.request('GET', this.rucioPath(instance, 'scopes'));
  }

  /** DIDs of a scope whose name matches `name` (with * wildcards), of a type. */
  rucioSearch(instance: string, scope: string, name: string, type: RucioSearchType, signal?: AbortSignal): AsyncGenerator<RucioDid> {
    const q = new URLSearchParams({ name: name || '*', type });
    return this.stream('GET', this.rucioPath(instance, `search/${encodeURIComponent(scope)}?${q}`), undefined, signal);
  }

  rucioDid(instance: string, scope: string, name: string): Promise<RucioDid> {
    return this.request('GET', this.didPath(instance, scope, name));
  }

  rucioFiles(instance: string, scope: string, name: string, signal?: AbortSignal): AsyncGenerator<RucioFile> {
    return this.stream('GET', this.didPath(instance, scope, name, '/files'), undefined, signal);
  }

  rucioContent(instance: string, scope: string, name: string, signal?: AbortSignal): AsyncGenerator<RucioDid> {
    return this.stream('GET', this.didPath(instance, scope, name, '/content'), undefined, signal);
  }

  rucioReplicas(instance: string, req: RucioReplicasRequest, signal?: AbortSignal): AsyncGenerator<RucioReplica> {
    return this.stream('POST', this.rucioPath(instance, 'replicas'), req, signal);
  }

  rucioRules(instance: string, scope: string, name: string, signal?: AbortSignal): AsyncGenerator<RucioRule> {
    return this.stream('GET', this.didPath(instance, scope, name, '/rules'), undefined, signal);
  }

  /** "Make available": a replication rule of the user; answers the new rule ids. */
  rucioCreateRule(instance: string, req: RucioRuleRequest): Promise<RucioRuleResult> {
    return this.request('POST', this.rucioPath(instance, 'rules'), req);
  }

  rucioRule(instance: string, id: string): Promise<RucioRule> {
    return this.request('GET', this.rucioPath(instance, `rules/${encodeURIComponent(id)}`));
  }

  /** Files already on an RSE registered as replicas and attached to a dataset (created when missing). */
  rucioRegister(instance: string, req: RucioRegisterRequest): Promise<RucioRegisterResult> {
    return this.request('POST', this.rucioPath(instance, 'register'), req);
  }
}
