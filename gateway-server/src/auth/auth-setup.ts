// Builds what proves who a caller is from the resolved config: the authenticator of auth.type, the
// facility's OIDC provider the token broker verifies and refreshes with, and what the broker and
// the Hub login need from JupyterHub. server.ts wires the results; the choices live here.
import { ConfigError, type ResolvedConfig } from '../config.js';
import type { Authenticator } from './authenticator.js';
import { JupyterHubAuthenticator } from './jupyterhub-authenticator.js';
import { OidcAuthenticator } from './oidc-authenticator.js';
import { OidcIssuer } from './oidc-issuer.js';
import { SimpleAuthenticator } from './simple-authenticator.js';

export const LOOPBACK_HOSTS: ReadonlySet<string> = new Set(['127.0.0.1', 'localhost', '::1']);

/** The user's tokens JupyterHub keeps (auth_state), when the gateway may read them. */
export type HubAuthState = { access_token?: string; refresh_token?: string } | null;

export interface AuthSetup {
  authenticator: Authenticator;
  /** The facility's provider: the authenticator itself with auth.type oidc, else auth.oidc when configured. */
  oidc?: OidcAuthenticator;
  /** The Hub authenticator when auth.type is jupyterhub. */
  hub?: JupyterHubAuthenticator;
  /** Reads a user's auth_state at the Hub (only with auth.type jupyterhub and a service token). */
  hubAuthState?: (user: string) => Promise<HubAuthState>;
}

/** Refuses what cannot be safe (a passwordless simple login off loopback, a missing issuer or Hub URL). */
export function authSetup(config: ResolvedConfig, host: string): AuthSetup {
  const a = config.auth;
  if (a.type === 'simple') {
    if (a.simple.password === null && !LOOPBACK_HOSTS.has(host)) {
      throw new ConfigError(
        `simple authentication without a password accepts anyone, so it only listens on loopback; ` +
          `set auth.simple.password or listen on 127.0.0.1 (asked for ${host})`,
      );
    }
    const oidc = facilityProvider(config);
    // Bearer tokens prove their user only where simple authentication is one person on loopback (no
    // password): with a shared password, anyone who knows it could name that user and read the token.
    return { authenticator: new SimpleAuthenticator(a.simple.password, a.admin_users, a.simple.password === null ? oidc : undefined), oidc };
  }
  if (a.type === 'oidc') {
    if (!a.oidc.issuer) throw new ConfigError('auth.type oidc needs auth.oidc.issuer');
    const oidc = new OidcAuthenticator(new OidcIssuer(a.oidc), a.admin_users, a.admin_groups);
    return { authenticator: oidc, oidc };
  }
  const apiUrl = a.jupyterhub.api_url;
  if (!apiUrl) throw new ConfigError('auth.type jupyterhub needs auth.jupyterhub.api_url (or JUPYTERHUB_API_URL)');
  const hub = new JupyterHubAuthenticator(apiUrl, a.admin_users, a.admin_groups, hubServiceName(a.jupyterhub));
  const token = a.jupyterhub.api_token;
  return {
    authenticator: hub,
    hub,
    oidc: facilityProvider(config),
    hubAuthState: token ? (user) => readHubAuthState(apiUrl, token, user) : undefined,
  };
}

/** Behind JupyterHub (or a simple login), the provider configured under auth.oidc, if any. */
function facilityProvider(config: ResolvedConfig): OidcAuthenticator | undefined {
  const a = config.auth;
  return a.oidc.issuer ? new OidcAuthenticator(new OidcIssuer(a.oidc), a.admin_users, a.admin_groups) : undefined;
}

/** The gateway's Hub service name, whose access scope every Hub token must carry. */
export function hubServiceName(jh: ResolvedConfig['auth']['jupyterhub']): string {
  const clientId = jh.client_id;
  return jh.service_name ?? (clientId?.startsWith('service-') ? clientId.slice('service-'.length) : 'af-gateway');
}

/** The user's auth_state at the Hub (needs the admin:auth_state scope for the gateway's service). */
async function readHubAuthState(apiUrl: string, token: string, user: string): Promise<HubAuthState> {
  const res = await fetch(`${apiUrl.replace(/\/$/, '')}/users/${encodeURIComponent(user)}`, {
    headers: { Authorization: `token ${token}` },
    signal: AbortSignal.timeout(10_000),
  });
  if (!res.ok) throw new Error(`JupyterHub answered HTTP ${res.status} for the user's auth_state`);
  const body = (await res.json()) as { auth_state?: HubAuthState };
  return body.auth_state ?? null;
}
