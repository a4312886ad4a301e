// A Rucio REST client that acts as the user: every request carries the user's own token (their
// access token, or one exchanged for the audience Rucio expects) as X-Rucio-Auth-Token; userpass
// is only for an admin-configured service mode. Streams (Rucio's NDJSON) are handed on unread.
import type { User } from '../auth/authenticator.js';
import type { RucioErrorCode } from '@af-gateway/schemas';
import { AppError, errorMessage } from '../errors.js';

export interface RucioInstanceConfig {
  name: string;
  url: string;
  /** token: the user's access token; exchange: one exchanged for `audience`; userpass: a service account (admin mode). */
  auth: 'token' | 'exchange' | 'userpass';
  audience: string;
  vo: string | null;
  account: string | null;
  username: string | null;
  password: string | null;
  default_scheme: string;
  timeout: number;
  /** userpass mode: whether users may write (rules, registrations) as the one service account. */
  allow_writes: boolean;
  /** The audience of the token files are uploaded to its RSEs with; null: the user's own access token. */
  storage_audience?: string | null;
}

/** Requests that only read although they are no GET (Rucio lists replicas by POST). */
const READ_POSTS = new Set(['/replicas/list']);

/** Where user tokens come from (the token broker). */
export interface UserTokenSource {
  accessToken(user: User): { access_token: string; expires_at: number | null };
  tokenFor(user: User, audience: string): Promise<{ access_token: string; expires_at: number | null }>;
}

const RUCIO_STATUS: Record<string, number> = {
  DataIdentifierNotFound: 404,
  ScopeNotFound: 404,
  RSENotFound: 404,
  RuleNotFound: 404,
  AccountNotFound: 404,
  AccessDenied: 403,
  CannotAuthenticate: 401,
  CannotAuthorize: 403,
  Duplicate: 409,
  DataIdentifierAlreadyExists: 409,
  DuplicateRule: 409,
  FileAlreadyExists: 409,
  DuplicateContent: 409,
  InvalidRSEExpression: 422,
  InvalidObject: 422,
  InvalidValueForKey: 422,
  InsufficientAccountLimit: 422,
  InsufficientTargetRSEs: 422,
  UnsupportedOperation: 422,
  InvalidPath: 422,
  ReplicaNotFound: 404,
};

export class RucioClient {
  private serviceToken: { token: string; expiresAt: number } | null = null;

  constructor(
    readonly cfg: RucioInstanceConfig,
    private readonly tokens: UserTokenSource,
  ) {}

  private async token(user: User): Promise<string> {
    if (this.cfg.auth === 'userpass') return this.userpassToken();
    let t: { access_token: string; expires_at: number | null };
    try {
      t = this.tokens.accessToken(user);
    } catch {
      throw new AppError(
        401,
        'no_token',
        `Rucio (${this.cfg.name}) needs your access token, and the gateway holds none for ${user.name}: log in at the gateway (or hand over a refresh token) first`,
      );
    }
    if (t.expires_at !== null && t.expires_at <= Date.now()) {
      throw new AppError(
        401,
        'token_expired',
        `Your access token expired at ${new Date(t.expires_at).toISOString()}, so Rucio (${this.cfg.name}) would refuse it: log in again at the gateway.`,
      );
    }
    return this.cfg.auth === 'token' ? t.access_token : (await this.tokens.tokenFor(user, this.cfg.audience)).access_token;
  }

  private async userpassToken(): Promise<string> {
    if (this.serviceToken && this.serviceToken.expiresAt - 60_000 > Date.now()) return this.serviceToken.token;
    const headers: Record<string, string> = {
      accept: 'application/octet-stream', // the only type Rucio's /auth/userpass answers
      'X-Rucio-Account': this.cfg.account ?? '',
      'X-Rucio-Username': this.cfg.username ?? '',
      'X-Rucio-Password': this.cfg.password ?? '',
    };
    if (this.cfg.vo) headers['X-Rucio-VO'] = this.cfg.vo;
    const res = await this.fetch('GET', '/auth/userpass', headers);
    if (!res.ok) throw await this.failure(res, 'GET /auth/userpass');
    const token = res.headers.get('x-rucio-auth-token');
    if (!token) throw new AppError(502, 'rucio_no_token', `Rucio (${this.cfg.name}) gave the service account no token`);
    const expires = Date.parse(res.headers.get('x-rucio-auth-token-expires') ?? '');
    this.serviceToken = { token, expiresAt: Number.isNaN(expires) ? Date.now() + 3600_000 : expires };
    return token;
  }

  private async fetch(method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<Response> {
    try {
      return await fetch(this.cfg.url.replace(/\/$/, '') + path, {
        method,
        headers: { accept: 'application/json, application/x-json-stream', ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.cfg.timeout * 1000),
      });
    } catch (err) {
      throw new AppError(502, 'rucio_unreachable', `Rucio (${this.cfg.name}) at ${this.cfg.url} cannot be reached: ${errorMessage(err)}`, { cause: err });
    }
  }

  /**
   * In userpass mode every user acts as the one service account: what one user's rule or
   * registration does is done in everyone's name, and any user may undo it. So only reads pass,
   * unless the admin said otherwise.
   */
  private refuseSharedWrites(method: string, path: string): void {
    if (this.cfg.auth !== 'userpass' || this.cfg.allow_writes) return;
    if (method === 'GET' || method === 'HEAD' || (method === 'POST' && READ_POSTS.has(path.split('?')[0]!))) return;
    throw new AppError(
      403,
      'rucio_read_only',
      `Rucio (${this.cfg.name}) is reached with one service account for all users (auth: userpass), so the gateway only reads from it: ` +
        `rules and registrations would be made in every user's name. An admin who wants them anyway sets allow_writes: true on the rucio instance ${this.cfg.name}.`,
    );
  }

  /** A request as `user`; the response is returned unread on success (its body may be a stream). */
  async request(user: User, method: string, path: string, body?: unknown): Promise<Response> {
    this.refuseSharedWrites(method, path);
    const headers: Record<string, string> = { 'X-Rucio-Auth-Token': await this.token(user) };
    if (this.cfg.vo) headers['X-Rucio-VO'] = this.cfg.vo;
    const res = await this.fetch(method, path, headers, body);
    if (!res.ok) throw await this.failure(res, `${method} ${path.split('?')[0]}`);
    return res;
  }

  /** The user's token for this instance's storage (uploads): their access token, or one exchanged for storage_audience. */
  async storageToken(user: User): Promise<string> {
    if (this.cfg.auth === 'userpass') {
      throw new AppError(
        403,
        'rucio_read_only',
        `Rucio (${this.cfg.name}) is reached with a service account: the gateway uploads no files in users' names there`,
      );
    }
    const own = this.tokens.accessToken(user);
    if (own.expires_at !== null && own.expires_at <= Date.now()) {
      throw new AppError(401, 'token_expired', `Your access token expired at ${new Date(own.expires_at).toISOString()}: log in again at the gateway.`);
    }
    return this.cfg.storage_audience ? (await this.tokens.tokenFor(user, this.cfg.storage_audience)).access_token : own.access_token;
  }

  async json<T>(user: User, method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.request(user, method, path, body);
    const text = await res.text();
    try {
      return (text ? JSON.parse(text) : null) as T;
    } catch {
      return text as T; // some calls answer plain text, e.g. "Created"
    }
  }

  /** Rucio's error (ExceptionClass / ExceptionMessage) as a 4xx a person can act on. */
  private async failure(res: Response, what: string): Promise<AppError> {
    let cls = res.headers.get('exceptionclass') ?? '';
    let msg = res.headers.get('exceptionmessage') ?? '';
    try {
      const body = (await res.json()) as { ExceptionClass?: string; ExceptionMessage?: string };
      cls = body.ExceptionClass ?? cls;
      msg = body.ExceptionMessage ?? msg;
    } catch {
      /* not JSON */
    }
    const where = `Rucio (${this.cfg.name})`;
    // Rucio answers 401 for AccessDenied too (a permission, not the token): that one is a 403 below
    if ((res.status === 401 && cls !== 'AccessDenied') || cls === 'CannotAuthenticate') {
      return new AppError(
        401,
        'rucio_unauthenticated',
        `${where} did not accept your token${msg ? `: ${msg}` : ''}. If it expired, log in again at the gateway.`,
      );
    }
    const status = RUCIO_STATUS[cls] ?? (res.status >= 500 ? 502 : res.status === 404 ? 404 : res.status >= 400 ? res.status : 502);
    const code: RucioErrorCode = cls ? `rucio_${cls.replace(/[A-Z]/g, (c, i: number) => (i ? '_' : '') + c.toLowerCase())}` : `rucio_http_${res.status}`;
    return new AppError(status, code, `${where}: ${msg || `${what} failed with HTTP ${res.status}`}${cls ? ` (${cls})` : ''}`);
  }
}
