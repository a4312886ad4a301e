// Who is calling: one function for HTTP routes and WebSocket upgrades alike.
import type { IncomingHttpHeaders } from 'node:http';
import { AppError } from '../errors.js';
import { USER_NAME, USER_NAME_RULE, type Authenticator, type User } from './authenticator.js';
import { CredentialCache, type CachedCredential, type CachedSession } from './credential-cache.js';
import { MISS, type Sessions } from './sessions.js';

export interface Identity {
  user: User;
  /** Set-Cookie value when the request came without the cookie of a session of this user. */
  setCookie?: string;
  /**
   * The stored key of the login session that what outlives the request (a dashboard address, a
   * WebSocket) follows when the request carried an Authorization header (else Sessions.keyOf, the
   * cookie's): the cookie's session the identity came from when the header proved nobody (a scheme
   * the authenticator does not take), or the credential's own session when its authenticator
   * confirms sessions again (a Hub token: a demotion at the Hub reaches it). Unset otherwise.
   */
  session?: string;
}

/**
 * A session with less than this left is handed out again only when the credential itself ends by
 * then (a token about to expire); otherwise the credential gets a new session.
 */
const SESSION_REUSE_MARGIN_MS = 60_000;

export class Identifier {
  /** Verifications in flight, by cache key: a burst of requests with one new credential checks it once. */
  private readonly verifying = new Map<string, Promise<CachedCredential | undefined>>();
  /** The last Authorization header of each connection and its cache key (keyOn). */
  private readonly lastKey = new WeakMap<object, { authorization: string; key: string }>();

  constructor(
    readonly authenticator: Authenticator,
    private readonly sessions: Sessions,
    /** Told of each identity proven by an Authorization header (the token broker keeps bearer tokens). */
    private readonly onAuthenticated?: (user: User, authorization: string) => void,
    readonly verified = new CredentialCache(),
  ) {
    sessions.onEnd((key) => verified.forgetSession(key));
  }

  /** Calls `listener` with the stored key of each session that ends here (a logout, a login the Hub refused). */
  onSessionEnd(listener: (key: string) => void): void {
    this.sessions.onEnd(listener);
  }

  /** Calls `listener` with the stored key of each session whose user the Hub made no admin any more. */
  onSessionDemoted(listener: (key: string) => void): void {
    this.sessions.onDemoted(listener);
  }

  /** The stored key of the session these headers ride on (their cookie, without an Authorization header), if any. */
  sessionKeyOf(headers: IncomingHttpHeaders): string | undefined {
    return this.sessions.keyOf(headers);
  }

  /** The caller, or a 401 AppError with the authenticator's challenge. */
  async identify(headers: IncomingHttpHeaders, cookiePath = '/'): Promise<Identity> {
    const authorization = headers.authorization;
    // (a session the Hub cannot confirm is no reason to refuse a credential that proves itself)
    const fromSession = await this.sessions.resolve(headers.cookie).catch((err: unknown) => {
      if (authorization) return undefined;
      throw err;
    });
    if (authorization) {
      const entry = await this.verify(authorization);
      if (entry) {
        this.onAuthenticated?.(entry.user, authorization);
        // A browser repeats Basic credentials on every request: its cookie stays its session. A
        // client without the cookie (curl, a script) gets the one session of this credential, not
        // a new one per request.
        if (fromSession?.name === entry.user.name) return { user: entry.user };
        const session = await this.sessionOf(entry, authorization);
        return { user: entry.user, setCookie: this.sessions.cookie(session, cookiePath), ...this.followed(session, authorization) };
      }
    }
    if (fromSession) return authorization ? { user: fromSession, session: this.sessions.keyOf({ cookie: headers.cookie }) } : { user: fromSession };
    throw new AppError(401, 'unauthenticated', 'Authentication required: log in to the gateway first', {
      headers: { 'WWW-Authenticate': this.authenticator.challenge },
    });
  }

  /**
   * The answer of `identify` when memory alone gives it (a credential verified before whose session
   * is open, a session looked up lately), without a promise; undefined when `identify` must be
   * awaited (a new credential, a store read, a session to open, a refusal).
   */
  identifyNow(headers: IncomingHttpHeaders, cookiePath = '/', connection?: object): Identity | undefined {
    const fromSession = this.sessions.resolveNow(headers.cookie, connection);
    if (fromSession === MISS) return undefined;
    const authorization = headers.authorization;
    if (authorization) {
      const entry = this.verified.get(this.keyOn(connection, authorization));
      if (!entry) return undefined;
      if (fromSession?.name === entry.user.name) {
        this.onAuthenticated?.(entry.user, authorization);
        return { user: entry.user };
      }
      const session = usableSession(entry);
      if (!session) return undefined;
      this.onAuthenticated?.(entry.user, authorization);
      return { user: entry.user, setCookie: this.sessions.cookie(session, cookiePath), ...this.followed(session, authorization) };
    }
    return fromSession ? { user: fromSession } : undefined;
  }

  /**
   * Who the headers of a connection that outlives its request (the event stream) stand for now, as
   * `identify` would answer, and until when that answer holds at the latest (the end of the session
   * or of the credential's verification): undefined when they prove nobody any more (a refused
   * credential, an ended or expired session). No session is opened, the token broker is not told;
   * a Hub login's session is confirmed at the Hub when due, as any use of it is (and ends there if
   * the Hub refuses it). Throws what is no answer (the Hub or the state store did not answer).
   */
  async reidentify(headers: IncomingHttpHeaders, connection?: object): Promise<{ user: User; until: number } | undefined> {
    const authorization = headers.authorization;
    if (authorization) {
      let entry = this.verified.get(this.keyOn(connection, authorization));
      try {
        entry ??= await this.verify(authorization);
      } catch (err) {
        if (err instanceof AppError && err.statusCode < 500) return undefined; // refused now (expired, revoked, unsafe)
        throw err;
      }
      if (entry) return { user: entry.user, until: entry.until };
    }
    const session = await this.sessions.lookup(headers.cookie, connection);
    return session && { user: session.user, until: session.expires };
  }

  /** Identity.session of a credential's own session: set where the session is confirmed again (it keeps a token to ask with). */
  private followed(session: CachedSession, authorization: string): Pick<Identity, 'session'> {
    return this.authenticator.sessionToken?.(authorization) ? { session: session.key } : {};
  }

  /**
   * The cache key of a header, remembered with the keep-alive connection that carried it: a client
   * repeats its header on every request, and the key (an HMAC) was the largest cost of a request
   * whose credential is known. The header is held no longer than its connection (which held it anyway).
   */
  private keyOn(connection: object | undefined, authorization: string): string {
    if (!connection) return this.verified.keyOf(authorization);
    const last = this.lastKey.get(connection);
    if (last?.authorization === authorization) return last.key;
    const key = this.verified.keyOf(authorization);
    this.lastKey.set(connection, { authorization, key });
    return key;
  }

  /** The cached identity of this header, verifying it first when it is new or its time is up. */
  private async verify(authorization: string): Promise<CachedCredential | undefined> {
    const key = this.verified.keyOf(authorization);
    const now = Date.now();
    const hit = this.verified.get(key, now);
    if (hit) return hit;
    let pending = this.verifying.get(key);
    if (!pending) {
      pending = (async () => {
        const user = await this.authenticator.authenticate(authorization);
        if (!user) return undefined; // not this authenticator's scheme: the cookie may still say who
        refuseUnsafeName(user);
        const entry: CachedCredential = { user, until: this.verifiedUntil(user, Date.now()) };
        // The same credential checked again (its time was up): the same user keeps its session.
        const before = this.verified.peek(key);
        if (before?.session && sameIdentity(before.user, user)) entry.session = before.session;
        this.verified.set(key, entry);
        return entry;
      })().finally(() => this.verifying.delete(key));
      this.verifying.set(key, pending);
    }
    return pending;
  }

  /** When a credential accepted at `now` must be verified again. */
  private verifiedUntil(user: User, now: number): number {
    let until = now + this.sessions.maxAgeSeconds * 1000;
    if (this.authenticator.cacheSeconds !== undefined) until = Math.min(until, now + this.authenticator.cacheSeconds * 1000);
    if (user.expiresAt) until = Math.min(until, user.expiresAt);
    return until;
  }

  /**
   * The session of a cached credential, opened once (and again when it is about to end); it keeps
   * what the authenticator needs to confirm it again (a Hub token), as a Hub login's session does.
   */
  private async sessionOf(entry: CachedCredential, authorization: string): Promise<CachedSession> {
    const s = usableSession(entry);
    if (s) return s;
    entry.opening ??= this.sessions.open(entry.user, this.authenticator.sessionToken?.(authorization)).finally(() => (entry.opening = undefined));
    const session = await entry.opening;
    entry.session = session;
    return session;
  }
}

/** The session of a cached credential while it may still be handed out, else undefined. */
function usableSession(entry: CachedCredential): CachedSession | undefined {
  const s = entry.session;
  const now = Date.now();
  return s && s.expires > now && (s.expires - now > SESSION_REUSE_MARGIN_MS || s.expires >= entry.until - 1000) ? s : undefined;
}

const sameIdentity = (a: User, b: User) =>
  a.name === b.name && a.admin === b.admin && a.groups.length === b.groups.length && a.groups.every((g, i) => g === b.groups[i]);

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
