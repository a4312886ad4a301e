// The one typed client of the gateway: every request the panels make goes through here, with the
// wire types generated from schemas/.
import type {
  AfCluster,
  AfClusterList,
  AdaptRequest,
  ConnectInfo,
  CreateClusterResult,
  ErrorBody,
  OptionsSpec,
  ScaleRequest,
  ScaleResult,
  TokenStatus,
} from '@af-gateway/schemas';
import type { AuthMode } from './gateway-settings';

/** A failed gateway call; `message` is the gateway's own text, meant to be shown as it is. */
export class GatewayError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string,
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

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
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
      });
    } catch (err) {
      throw new GatewayError(0, `The gateway at ${this.baseUrl} cannot be reached (${(err as Error).message})`, 'unreachable');
    }
    const text = await res.text();
    let json: unknown = undefined;
    if (text) {
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
    }
    if (!res.ok) {
      const err = json as Partial<ErrorBody> | undefined;
      const message = err?.error ?? `The gateway answered ${res.status} ${res.statusText} for ${method} ${path}`;
      throw new GatewayError(res.status, message, err?.code ?? `http_${res.status}`);
    }
    return json as T;
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
}
