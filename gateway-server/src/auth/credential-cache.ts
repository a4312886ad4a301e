// Credentials verified once: curl, scripts, monitoring and a browser's remembered Basic login send
// the same Authorization header on every request, and checking it each time (a password compare, a
// JWT signature, a call to the Hub) and opening a session row for it each time made the API slow
// and the state store grow without bound. A verified header maps here to its user, and to the one
// login session the gateway opened for it, until the first of: the session's lifetime, the
// credential's own expiry (a bearer token's exp), and the authenticator's own bound (a JupyterHub
// token is asked about again after a minute, so a token revoked at the Hub stops working by then).
//
// What invalidates an entry besides time: a restart (the cache is in memory only; a changed simple
// password or admin list needs one anyway), the end of its session (logout), and eviction (bounded
// size, least recently used first). Failures are never cached: a wrong credential is checked, and
// refused, every time.
//
// The key is an HMAC of the whole header with a key made at start, so the map holds no credential
// and two headers that differ in any byte are two entries, each verified on its own.
import { createHmac, randomBytes } from 'node:crypto';
import type { User } from './authenticator.js';
import { RecentlyUsed } from './recently-used.js';

/** The session the gateway opened for a cached credential, shared by every request that carries it. */
export interface CachedSession {
  /** The cookie's value (in memory only; the state store keeps its hash). */
  token: string;
  /** The stored key of the session (the hash of `token`). */
  key: string;
  /** When the session row expires (ms since the epoch). */
  expires: number;
}

export interface CachedCredential {
  user: User;
  /** When the credential must be verified again (ms since the epoch). */
  until: number;
  session?: CachedSession;
  /** The session being opened (one at a time per credential). */
  opening?: Promise<CachedSession>;
}

export const CREDENTIAL_CACHE_SIZE = 10_000;

/** Verified credentials by the HMAC of their header (`keyOf`), least recently used evicted first. */
export class CredentialCache extends RecentlyUsed<CachedCredential> {
  private readonly secret = randomBytes(32);

  constructor(maxEntries = CREDENTIAL_CACHE_SIZE) {
    super(maxEntries);
  }

  /** The map key of an Authorization header: never the header itself. */
  keyOf(authorization: string): string {
    return createHmac('sha256', this.secret).update(authorization, 'utf8').digest('base64url');
  }

  /** Forgets the session of this stored key (it was ended): the next request opens another. */
  forgetSession(sessionKey: string): void {
    for (const entry of this.values()) if (entry.session?.key === sessionKey) entry.session = undefined;
  }
}
