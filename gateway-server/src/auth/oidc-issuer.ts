// The facility's OpenID provider as the gateway talks to it: discovery (cached), and requests to
// its token and introspection endpoints as the gateway's own confidential client.
import type { ResolvedConfig } from '../config.js';
import { AppError, errorMessage } from '../errors.js';

export type OidcConfig = ResolvedConfig['auth']['oidc'];

export interface Discovery {
  issuer: string;
  jwks_uri?: string;
  token_endpoint?: string;
  authorization_endpoint?: string;
  introspection_endpoint?: string;
  revocation_endpoint?: string;
}

export interface TokenResponse {
  access_token: string;
  refresh_token?: string;
  expires_in?: number;
  token_type?: string;
  scope?: string;
  id_token?: string;
}

/** A refusal by the provider's token endpoint, with its OAuth error code (e.g. invalid_grant). */
export class TokenEndpointError extends Error {
  constructor(
    readonly oauthError: string,
    message: string,
  ) {
    super(message);
  }
}

export class OidcIssuer {
  private discovery: Promise<Discovery> | undefined;

  constructor(readonly cfg: OidcConfig) {}

  get issuer(): string {
    return this.cfg.issuer!;
  }

  metadata(): Promise<Discovery> {
    this.discovery ??= (async () => {
      const url = `${this.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
      const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
      if (!res.ok) throw new Error(`HTTP ${res.status} from ${url}`);
      return (await res.json()) as Discovery;
    })().catch((err: unknown) => {
      this.discovery = undefined; // try again next time
      throw new AppError(503, 'issuer_unreachable', `The identity provider could not be reached: ${errorMessage(err)}`, { cause: err });
    });
    return this.discovery;
  }

  private clientSecret(): string | null {
    return this.cfg.client_secret;
  }

  /** Whether the gateway has its own client at the provider (needed to refresh and to log in). */
  hasClient(): boolean {
    return Boolean(this.cfg.client_id && this.clientSecret());
  }

  private basicAuth(): string {
    if (!this.hasClient()) {
      throw new AppError(503, 'no_client', 'The gateway has no client at the identity provider (auth.oidc.client_id and its secret)');
    }
    const id = encodeURIComponent(this.cfg.client_id!);
    const secret = encodeURIComponent(this.clientSecret()!);
    return 'Basic ' + Buffer.from(`${id}:${secret}`).toString('base64');
  }

  private async post(url: string, params: Record<string, string>): Promise<Response> {
    try {
      return await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: this.basicAuth() },
        body: new URLSearchParams(params),
        signal: AbortSignal.timeout(15_000),
      });
    } catch (err) {
      if (err instanceof AppError) throw err;
      throw new AppError(503, 'issuer_unreachable', `The identity provider could not be reached: ${errorMessage(err)}`, { cause: err });
    }
  }

  /** A token-endpoint grant (authorization_code, refresh_token, …) with the configured extra parameters. */
  async token(params: Record<string, string>): Promise<TokenResponse> {
    const endpoint = (await this.metadata()).token_endpoint;
    if (!endpoint) throw new AppError(503, 'no_token_endpoint', 'The identity provider publishes no token endpoint');
    const res = await this.post(endpoint, { ...this.cfg.token_params, ...params });
    const body = (await res.json().catch(() => ({}))) as TokenResponse & { error?: string; error_description?: string };
    if (!res.ok || !body.access_token) {
      throw new TokenEndpointError(body.error ?? `http_${res.status}`, body.error_description ?? body.error ?? `HTTP ${res.status}`);
    }
    return body;
  }

  async introspect(token: string): Promise<Record<string, unknown>> {
    const url = this.cfg.introspection.url ?? (await this.metadata()).introspection_endpoint;
    if (!url) throw new AppError(503, 'introspection_unconfigured', 'Token introspection is enabled but the provider publishes no introspection endpoint');
    const res = await this.post(url, { token, token_type_hint: 'access_token' });
    if (!res.ok) throw new AppError(503, 'introspection_failed', `Token introspection answered HTTP ${res.status}`);
    return (await res.json()) as Record<string, unknown>;
  }
}
