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

export class CredentialCache {
  private readonly secret = randomBytes(32);
  /** In least-recently-used order: a hit moves its entry to the end, eviction takes the first. */
  private readonly entries = new Map<string, CachedCredential>();

  constructor(readonly maxEntries = CREDENTIAL_CACHE_SIZE) {}

  /** The map key of an Authorization header: never the header itself. */
  keyOf(authorization: string): string {
    return createHmac('sha256', this.secret).update(authorization, 'utf8').digest('base64url');
  }

  /** The entry of this key while it may be trusted (a hit counts as a use). */
  get(key: string, now = Date.now()): CachedCredential | undefined {
    const entry = this.entries.get(key);
    if (!entry || entry.until <= now) return undefined;
    this.entries.delete(key);
    this.entries.set(key, entry);
    return entry;
  }

  /** The entry of this key even when its time is up (its session may outlive it), until evicted or replaced. */
  previous(key: string): CachedCredential | undefined {
    return this.entries.get(key);
  }

  set(key: string, entry: CachedCredential): void {
    this.entries.delete(key);
    while (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(key, entry);
  }

  /** Forgets the session of this stored key (it was ended): the next request opens another. */
  forgetSession(sessionKey: string): void {
    for (const entry of this.entries.values()) if (entry.session?.key === sessionKey) entry.session = undefined;
  }

  get size(): number {
    return this.entries.size;
  }

  clear(): void {
    this.entries.clear();
  }
}
