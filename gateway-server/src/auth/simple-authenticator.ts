// dask-gateway's "simple" authentication: HTTP Basic with any user name and an optional shared
// password. For the single-machine demo; refused on a non-loopback listener without a password.
// With a facility provider configured (auth.oidc), its bearer tokens are taken too: the user is then
// the token's, as with auth.type oidc, and the token broker keeps the token for the user's clusters.
import { AppError } from '../errors.js';
import { splitAuthorization, USER_NAME, USER_NAME_RULE, type Authenticator, type User } from './authenticator.js';
import { sameSecret } from './same-secret.js';

export class SimpleAuthenticator implements Authenticator {
  readonly challenge = 'Basic realm="af-gateway"';

  constructor(
    private readonly password: string | null,
    private readonly admins: readonly string[],
    /** The facility's provider, whose bearer tokens prove their user here too (none: Basic only). */
    readonly bearer?: Authenticator,
  ) {}

  /** A password is checked again only after a restart (which a changed auth.simple.password needs); bearer tokens as their provider says. */
  get cacheSeconds(): number | undefined {
    return this.bearer?.cacheSeconds;
  }

  async authenticate(authorization: string): Promise<User | null> {
    const { scheme, credentials } = splitAuthorization(authorization);
    if (scheme === 'bearer' && this.bearer) return this.bearer.authenticate(authorization);
    if (scheme !== 'basic') return null;
    const decoded = Buffer.from(credentials, 'base64').toString('latin1');
    const colon = decoded.indexOf(':');
    const name = colon < 0 ? decoded : decoded.slice(0, colon);
    const password = colon < 0 ? '' : decoded.slice(colon + 1);
    if (!USER_NAME.test(name)) {
      throw new AppError(401, 'invalid_credentials', `Bad user name: ${USER_NAME_RULE}`, {
        headers: { 'WWW-Authenticate': this.challenge },
      });
    }
    if (this.password !== null && !sameSecret(password, this.password)) {
      throw new AppError(401, 'invalid_credentials', 'Wrong user name or password', { headers: { 'WWW-Authenticate': this.challenge } });
    }
    return { name, groups: [], admin: this.admins.includes(name) };
  }
}
