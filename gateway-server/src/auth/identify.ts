// Who is calling: one function for HTTP routes and WebSocket upgrades alike.
import type { IncomingHttpHeaders } from 'node:http';
import { AppError } from '../errors.js';
import { USER_NAME, USER_NAME_RULE, type Authenticator, type User } from './authenticator.js';
import type { Sessions } from './sessions.js';

export interface Identity {
  user: User;
  /** Set-Cookie value when this request opened a new session. */
  setCookie?: string;
}

export class Identifier {
  constructor(
    readonly authenticator: Authenticator,
    private readonly sessions: Sessions,
    /** Told of each identity proven by an Authorization header (the token broker keeps bearer tokens). */
    private readonly onAuthenticated?: (user: User, authorization: string) => void,
  ) {}

  /** The caller, or a 401 AppError with the authenticator's challenge. */
  async identify(headers: IncomingHttpHeaders, cookiePath = '/'): Promise<Identity> {
    const fromSession = await this.sessions.resolve(headers.cookie);
    const authorization = headers.authorization;
    if (authorization) {
      const user = await this.authenticator.authenticate(authorization);
      // A browser repeats Basic credentials on every request: keep its session instead of making one each time.
      if (user) {
        refuseUnsafeName(user);
        this.onAuthenticated?.(user, authorization);
        return fromSession?.name === user.name ? { user } : { user, setCookie: await this.sessions.create(user, cookiePath) };
      }
    }
    if (fromSession) return { user: fromSession };
    throw new AppError(401, 'unauthenticated', 'Authentication required: log in to the gateway first', {
      headers: { 'WWW-Authenticate': this.authenticator.challenge },
    });
  }
}

/** A 403 for a user whose name (from a token claim or the Hub) the gateway cannot use safely. */
export function refuseUnsafeName(user: User): void {
  if (!USER_NAME.test(user.name)) {
    throw new AppError(
      403,
      'bad_user_name',
      `The gateway cannot serve the user ${JSON.stringify(user.name.slice(0, 80))}: ${USER_NAME_RULE}. Ask the facility to map this identity to such a name (auth.oidc.username_claim).`,
    );
  }
}
