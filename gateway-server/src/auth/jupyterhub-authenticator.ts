// JupyterHub API tokens (what the dask_gateway client's `jupyterhub` auth type sends as
// `Authorization: jupyterhub <token>`), checked at the Hub's REST API (GET /user).
import { AppError, errorMessage } from '../errors.js';
import { splitAuthorization, type Authenticator, type User } from './authenticator.js';

interface HubUser {
  /** 'user', or 'service' for a service's own token (JupyterHub ≥ 2). */
  kind?: string;
  name?: string;
  groups?: string[];
  admin?: boolean;
  /** The token's own scopes, expanded by the Hub (JupyterHub ≥ 2), e.g. access:services!service=af-gateway. */
  scopes?: string[];
}

/**
 * Whether a Hub token may be used at the service: JupyterHub ≥ 2 lists the token's expanded scopes
 * in its /user answer, and only `access:services` (every service) or
 * `access:services!service=<name>` (this one) admits a token at a service. Without the check any
 * token of the Hub would do, also one its owner made for something else (a read-only token, a
 * server's own token).
 */
export function grantsServiceAccess(scopes: readonly string[], serviceName: string): boolean {
  return scopes.includes('access:services') || scopes.includes(`access:services!service=${serviceName}`);
}

export class JupyterHubAuthenticator implements Authenticator {
  readonly challenge = 'jupyterhub';

  constructor(
    private readonly apiUrl: string,
    private readonly admins: readonly string[],
    private readonly adminGroups: readonly string[] = [],
    /** The gateway's name as a Hub service: tokens must carry access:services!service=<this>. */
    readonly serviceName = 'af-gateway',
    /**
     * A token the Hub accepted is asked about again after this long (the gateway's credential
     * cache): a token revoked at the Hub, or a user removed there, stops working by then.
     */
    readonly cacheSeconds = 60,
  ) {}

  /**
   * The user of a Hub token as the Hub says now (a Hub login's session asks again with it): throws
   * an AppError under 500 when the Hub refuses it, a 503 when the Hub could not answer.
   */
  async confirm(token: string): Promise<User> {
    const user = await this.authenticate(`token ${token}`);
    if (!user) throw new AppError(401, 'invalid_credentials', 'JupyterHub did not accept the token of this login');
    return user;
  }

  /**
   * A session opened for a Hub token in an Authorization header (its cookie, handed back) keeps the
   * token and is confirmed at the Hub as a Hub login's session is: else the cookie kept the token's
   * rights for the session's life (24 h), past a demotion or the token's revocation at the Hub.
   */
  sessionToken(authorization: string): string | undefined {
    const { scheme, credentials } = splitAuthorization(authorization);
    return (scheme === 'jupyterhub' || scheme === 'token') && credentials ? credentials : undefined;
  }

  async authenticate(authorization: string): Promise<User | null> {
    const { scheme, credentials } = splitAuthorization(authorization);
    if (scheme !== 'jupyterhub' && scheme !== 'token') return null;
    let res: Response;
    try {
      res = await fetch(`${this.apiUrl.replace(/\/$/, '')}/user`, {
        headers: { Authorization: `token ${credentials}` },
        signal: AbortSignal.timeout(10_000),
      });
    } catch (err) {
      throw new AppError(503, 'hub_unreachable', `JupyterHub could not be reached to check the token: ${errorMessage(err)}`, { cause: err });
    }
    if (res.status === 401 || res.status === 403 || res.status === 404) {
      throw new AppError(401, 'invalid_credentials', 'JupyterHub did not accept this API token (expired or revoked?)', {
        headers: { 'WWW-Authenticate': this.challenge },
      });
    }
    if (!res.ok) throw new AppError(503, 'hub_error', `JupyterHub answered HTTP ${res.status} while checking the token`);
    const body = (await res.json()) as HubUser;
    if (!body.name || (body.kind !== undefined && body.kind !== 'user')) {
      throw new AppError(401, 'invalid_credentials', `The token does not belong to a JupyterHub user${body.kind ? ` (it is a ${body.kind}'s token)` : ''}`, {
        headers: { 'WWW-Authenticate': this.challenge },
      });
    }
    const needed = `access:services!service=${this.serviceName}`;
    if (!Array.isArray(body.scopes)) {
      throw new AppError(
        403,
        'missing_hub_scope',
        `JupyterHub did not say which scopes the token has (JupyterHub 2 or newer is needed); the gateway admits tokens with ${needed}`,
      );
    }
    if (!grantsServiceAccess(body.scopes, this.serviceName)) {
      throw new AppError(
        403,
        'missing_hub_scope',
        `The JupyterHub token of ${body.name} lacks the scope ${needed} (or access:services): make a token with it, or ask the Hub's admin to grant it to users' roles (load_roles)`,
      );
    }
    const groups = body.groups ?? [];
    const admin = Boolean(body.admin) || this.admins.includes(body.name) || groups.some((g) => this.adminGroups.includes(g));
    return { name: body.name, groups, admin };
  }
}
