// JupyterHub API tokens (what the dask_gateway client's `jupyterhub` auth type sends as
// `Authorization: jupyterhub <token>`), checked at the Hub's REST API (GET /user).
import { createHash } from 'node:crypto';
import { AppError, errorMessage } from '../errors.js';
import { splitAuthorization, type Authenticator, type User } from './authenticator.js';

interface HubUser {
  name?: string;
  groups?: string[];
  admin?: boolean;
}

export class JupyterHubAuthenticator implements Authenticator {
  readonly challenge = 'jupyterhub';
  private readonly cache = new Map<string, { user: User; until: number }>();

  constructor(
    private readonly apiUrl: string,
    private readonly admins: readonly string[],
    private readonly adminGroups: readonly string[] = [],
    private readonly cacheSeconds = 60,
  ) {}

  async authenticate(authorization: string): Promise<User | null> {
    const { scheme, credentials } = splitAuthorization(authorization);
    if (scheme !== 'jupyterhub' && scheme !== 'token') return null;
    const key = createHash('sha256').update(credentials).digest('hex');
    const hit = this.cache.get(key);
    if (hit && hit.until > Date.now()) return hit.user;

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
    if (!body.name) throw new AppError(401, 'invalid_credentials', 'The token does not belong to a JupyterHub user');
    const groups = body.groups ?? [];
    const admin = Boolean(body.admin) || this.admins.includes(body.name) || groups.some((g) => this.adminGroups.includes(g));
    const user: User = { name: body.name, groups, admin };
    this.cache.set(key, { user, until: Date.now() + this.cacheSeconds * 1000 });
    return user;
  }
}
