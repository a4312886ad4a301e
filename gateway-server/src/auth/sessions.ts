// Login sessions: after an Authorization header succeeds, a random cookie (only its SHA-256 is
// stored) identifies the user until it expires. Kept in the state store, so a restart (or another replica) keeps people logged in.
// WebSockets opened on a session's cookie live no longer than the session: logout closes them at
// once, and a watch closes those whose session expired or was ended elsewhere (another replica).
// A session opened by a JupyterHub login keeps the Hub's OAuth token (sealed in the row) and asks
// the Hub again who it belongs to at most once a cache period, as the Hub's own services do: a
// user the Hub removed, demoted or whose token it revoked keeps no rights here past that period.
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import type { StateStore } from '../store/state-store.js';
import { AppError, errorMessage } from '../errors.js';
import type { User } from './authenticator.js';
import { refuseUnsafeName } from './identify.js';
import { RecentlyUsed } from './recently-used.js';

export const SESSION_COOKIE = 'af-gateway-session';

/** `resolveNow`: the answer needs the state store. */
export const MISS: unique symbol = Symbol('miss');

const hash = (token: string) => createHash('sha256').update(token).digest('hex');

/**
 * A session read from the store is taken from memory for this long (never past its end), so a
 * client sending its cookie on every request costs a store read every 10 s, not each time. Ended
 * here (a logout), it is forgotten at once; ended by another replica or in the database, within this.
 */
const LOOKUP_MS = 10_000;
const LOOKUP_MAX = 10_000;
/** Session cookies one logout ends at most (a browser holds one per path: the base path and /). */
const MAX_ENDED = 8;
/**
 * How long a Hub login's last confirmation is taken when the Hub cannot be asked (a restart of
 * its pod, an upgrade): 5 minutes, the time JupyterHub's own services (HubAuth.cache_max_age) take
 * a /user answer without asking at all, so an outage grants no more than they always do. After
 * it, requests on the session get a 503 until the Hub answers again.
 */
export const HUB_GRACE_MS = 300_000;
/** While the Hub does not answer, each session asks it again at most this often (requests meanwhile take the last answer). */
const HUB_RETRY_MS = 10_000;

/** How sessions of a Hub login are confirmed at the Hub. */
export interface HubConfirmation {
  /**
   * The user the Hub says the token belongs to now. Throws an AppError under 500 when the Hub
   * refuses the token (revoked, expired, user gone, scope withdrawn), anything else when the Hub
   * could not answer.
   */
  confirm(hubToken: string): Promise<User>;
  /** A confirmation is taken this long without asking again. */
  readonly cacheSeconds: number;
}

/** A Hub login's token and when the Hub last confirmed it, as a session in memory holds them. */
interface HubState {
  token: string;
  checked: number;
}

interface LookedSession {
  user: User;
  until: number;
  expires: number;
  hub?: HubState;
}

/** A session opened in the state store: its cookie value, stored key and end. */
export interface OpenedSession {
  token: string;
  key: string;
  expires: number;
}

export class Sessions {
  /** Open WebSockets by the hash of the session cookie they were opened with. */
  private readonly sockets = new Map<string, Set<Duplex>>();
  private watch: NodeJS.Timeout | undefined;
  private pruning: NodeJS.Timeout | undefined;
  private readonly endListeners: ((key: string) => void)[] = [];
  private readonly demotedListeners: ((key: string) => void)[] = [];
  /** Sessions looked up lately by stored key, least recently used first. */
  private readonly looked = new RecentlyUsed<LookedSession>(LOOKUP_MAX);
  /** Hub confirmations in flight by stored key: one Hub call at a time per session, shared by the requests that need it. */
  private readonly confirming = new Map<string, Promise<LookedSession | undefined>>();
  private hub: HubConfirmation | undefined;
  /**
   * The last Cookie header of each keep-alive connection and its session's stored key (null: no
   * session cookie in it): a client repeats the header, and its SHA-256 was most of a cookie's cost.
   */
  private readonly lastKey = new WeakMap<object, { cookieHeader: string; key: string | null }>();
  /** Counts logouts begun and finished here: a lookup that overlapped one is not remembered. */
  private ends = 0;

  constructor(
    private readonly store: StateStore,
    readonly maxAgeSeconds: number,
    /** Cookies only over HTTPS (the gateway terminates TLS, or its public URL is https). */
    readonly secure: boolean,
    /** How often sockets' sessions are checked for expiry or an end elsewhere. */
    private readonly socketCheckMs = 15_000,
  ) {}

  /** Sessions opened with a Hub token are confirmed at the Hub this way (auth.type jupyterhub). */
  confirmAtHub(hub: HubConfirmation): void {
    this.hub = hub;
  }

  /**
   * Creates a session and returns the Set-Cookie header value. A session never outlives the
   * credential that opened it (an access token's expiry), so an expired token cannot live on in a cookie.
   * `hubToken`: the Hub's OAuth token of a Hub login, kept (sealed) to ask the Hub again.
   */
  async create(user: User, path = '/', hubToken?: string): Promise<string> {
    const session = await this.open(user, hubToken);
    return this.cookie(session, path);
  }

  /** Opens a session for `user` (a row in the state store) without making its cookie yet. */
  async open(user: User, hubToken?: string): Promise<OpenedSession> {
    refuseUnsafeName(user); // every login path ends here: no session for a name the gateway cannot use
    const token = randomBytes(32).toString('base64url');
    const now = Date.now();
    const limit = user.expiresAt ? Math.floor((user.expiresAt - now) / 1000) : this.maxAgeSeconds;
    const maxAge = Math.max(1, Math.min(this.maxAgeSeconds, limit));
    const session = { token, key: hash(token), expires: now + maxAge * 1000 };
    await this.store.saveSession(session.key, JSON.stringify(user), session.expires, hubToken ? { hubToken, hubChecked: now } : undefined);
    return session;
  }

  /** The Set-Cookie value of an open session, for the time it has left. */
  cookie(session: OpenedSession, path = '/'): string {
    const maxAge = Math.max(1, Math.floor((session.expires - Date.now()) / 1000));
    return `${SESSION_COOKIE}=${session.token}; Path=${path}; HttpOnly; SameSite=Lax; Max-Age=${maxAge}${this.secure ? '; Secure' : ''}`;
  }

  /**
   * What `resolve` answers when it needs no store read: the user of a session looked up lately,
   * undefined without a session cookie, or MISS when only the store can tell.
   */
  resolveNow(cookieHeader: string | undefined, connection?: object): User | undefined | typeof MISS {
    const key = this.cookieKey(cookieHeader, connection);
    if (key === null) return undefined;
    return this.looked.get(key)?.user ?? MISS;
  }

  /** The stored key of the session cookie in this header (null: none), remembered with the connection. */
  private cookieKey(cookieHeader: string | undefined, connection?: object): string | null {
    if (!cookieHeader) return null;
    const last = connection && this.lastKey.get(connection);
    if (last?.cookieHeader === cookieHeader) return last.key;
    const token = readCookie(cookieHeader, SESSION_COOKIE);
    const key = token ? hash(token) : null;
    if (connection) this.lastKey.set(connection, { cookieHeader, key });
    return key;
  }

  /** Called with the stored key of each session ended here (a logout, a login the Hub refused). */
  onEnd(listener: (key: string) => void): void {
    this.endListeners.push(listener);
  }

  /** Called with the stored key of each session whose user the Hub made no admin any more, before its WebSockets here close. */
  onDemoted(listener: (key: string) => void): void {
    this.demotedListeners.push(listener);
  }

  async resolve(cookieHeader: string | undefined): Promise<User | undefined> {
    return (await this.lookup(cookieHeader))?.user;
  }

  /**
   * The user of the session in this Cookie header and when that session ends (ms since the epoch),
   * as `resolve` finds it: what a long-lived connection (the event stream) checks again, and when.
   * A Hub login's session whose confirmation is older than the Hub's cache period is confirmed
   * first: refused there, the session ends (undefined); changed there, the new user is answered and
   * stored. Throws a 503 AppError when the Hub has not answered for longer than HUB_GRACE_MS.
   */
  async lookup(cookieHeader: string | undefined, connection?: object): Promise<{ user: User; expires: number } | undefined> {
    const key = this.cookieKey(cookieHeader, connection);
    return key === null ? undefined : this.lookupKey(key);
  }

  /**
   * The user of the session of this stored key now, as `lookup` finds it (a Hub login's confirmed
   * when due): what outlives a request but must keep the rights of its session (a dashboard
   * capability issued to an admin). Undefined when the session ended.
   */
  async userOfKey(key: string): Promise<User | undefined> {
    return (await this.lookupKey(key))?.user;
  }

  private async lookupKey(key: string): Promise<{ user: User; expires: number } | undefined> {
    const seen = this.looked.get(key);
    if (seen) return seen;
    const now = Date.now();
    const ends = this.ends;
    const row = await this.store.findSession(key, now);
    if (!row) return undefined;
    let found: LookedSession | undefined = { user: JSON.parse(row.user) as User, until: Math.min(row.expires, now + LOOKUP_MS), expires: row.expires };
    if (row.hubToken !== undefined) {
      if (!this.hub) return undefined; // a Hub login's session, and no Hub to confirm it with (auth.type changed): not honoured
      found.hub = { token: row.hubToken, checked: row.hubChecked ?? 0 };
      const due = found.hub.checked + this.hub.cacheSeconds * 1000;
      if (due <= now) found = await this.confirm(key, found, this.hub);
      else found.until = Math.min(found.until, due);
      if (!found) return undefined;
    }
    if (ends === this.ends) this.looked.set(key, found);
    return { user: found.user, expires: found.expires };
  }

  /** Asks the Hub again about a session's token (one call at a time per session). */
  private confirm(key: string, session: LookedSession, hub: HubConfirmation): Promise<LookedSession | undefined> {
    let pending = this.confirming.get(key);
    if (!pending) {
      pending = this.askHub(key, session, hub).finally(() => this.confirming.delete(key));
      this.confirming.set(key, pending);
    }
    return pending;
  }

  private async askHub(key: string, session: LookedSession, hub: HubConfirmation): Promise<LookedSession | undefined> {
    const { token, checked } = session.hub!;
    // The confirmation's time is when the Hub was asked: an answer asked earlier (another replica's,
    // slower) is not stored over it, and it is not stored over one asked later.
    const asked = Date.now();
    let user: User;
    try {
      user = await hub.confirm(token);
    } catch (err) {
      const now = Date.now();
      if (err instanceof AppError && err.statusCode < 500) {
        await this.endKey(key); // refused at the Hub: ended as a logout ends it
        return undefined;
      }
      if (now - checked <= HUB_GRACE_MS) return { ...session, until: Math.min(session.until, now + HUB_RETRY_MS, checked + HUB_GRACE_MS + 1) };
      throw new AppError(
        503,
        'hub_unreachable',
        `JupyterHub has not confirmed this login for ${Math.round((now - checked) / 60_000)} minutes (${errorMessage(err)}): try again in a minute; if it lasts, tell the facility's administrators that the gateway cannot reach the Hub`,
        { headers: { 'Retry-After': '30' }, cause: err },
      );
    }
    if (user.name !== session.user.name) {
      await this.endKey(key); // the token stands for someone else now: not this session's user
      return undefined;
    }
    await this.store.confirmSession(key, JSON.stringify(user), asked);
    if (session.user.admin && !user.admin) {
      // What it opened as an admin (another user's dashboard, every user's events) closes; its pages reconnect with the rights it has now.
      for (const listener of this.demotedListeners) listener(key);
      this.closeSockets(key);
    }
    return { user, expires: session.expires, hub: { token, checked: asked }, until: Math.min(session.expires, asked + hub.cacheSeconds * 1000) };
  }

  prune(): Promise<void> {
    return this.store.pruneSessions(Date.now());
  }

  /**
   * Removes expired session rows now and then every `periodMs`, on the replica that serves (a
   * standby sharing PostgreSQL never gets here: it waits for the lease before the app is built).
   */
  startPruning(periodMs: number, onError: (err: unknown) => void): void {
    const run = () => void this.prune().catch(onError);
    run();
    this.pruning ??= setInterval(run, periodMs).unref();
  }

  /**
   * Ends every session of this Cookie header: each row is removed (on every replica) and its
   * WebSockets here are closed. A browser may hold a cookie for each path the gateway answers on
   * (its base path and /) and sends all that apply, so all are ended, and the cookie is cleared on
   * each of `paths`, also where this request did not carry it. Returns those Set-Cookie values.
   */
  async end(cookieHeader: string | undefined, paths: readonly string[] = ['/']): Promise<string[]> {
    for (const token of readCookies(cookieHeader, SESSION_COOKIE).filter(Boolean).slice(0, MAX_ENDED)) await this.endKey(hash(token));
    return [...new Set(paths)].map((path) => {
      const attrs = [`${SESSION_COOKIE}=`, `Path=${path}`, 'HttpOnly', 'SameSite=Lax', 'Max-Age=0'];
      if (this.secure) attrs.push('Secure');
      return attrs.join('; ');
    });
  }

  /** Ends the session of this stored key: its row (with the Hub token it kept), what is remembered of it, its WebSockets here. */
  private async endKey(key: string): Promise<void> {
    this.ends++;
    try {
      await this.store.deleteSession(key);
    } finally {
      this.ends++;
    }
    this.looked.delete(key);
    for (const listener of this.endListeners) listener(key);
    this.closeSockets(key);
  }

  /**
   * Binds a WebSocket upgrade to the session it rides on (its cookie, when it carries no
   * Authorization header of its own): the socket is closed when that session ends.
   */
  bindSocket(headers: IncomingHttpHeaders, socket: Duplex): void {
    const key = this.keyOf(headers);
    if (key) this.bindSocketTo(key, socket);
  }

  /**
   * The stored key of the session a request rides on (its cookie, when it carries no Authorization
   * header of its own), for what outlives the request but not the session: a dashboard capability.
   * Only the cookie's hash, as the state store keeps it: it opens nothing.
   */
  keyOf(headers: IncomingHttpHeaders): string | undefined {
    if (headers.authorization) return undefined;
    const token = readCookie(headers.cookie, SESSION_COOKIE);
    return token ? hash(token) : undefined;
  }

  /** Whether the session of this key is still open (not expired, not ended). */
  async isOpen(key: string): Promise<boolean> {
    return (await this.store.findSession(key, Date.now())) !== undefined;
  }

  /** Closes `socket` when the session of this key ends. */
  bindSocketTo(key: string, socket: Duplex): void {
    if (socket.destroyed) return;
    let set = this.sockets.get(key);
    if (!set) this.sockets.set(key, (set = new Set()));
    set.add(socket);
    socket.once('close', () => {
      set.delete(socket);
      if (!set.size && this.sockets.get(key) === set) this.sockets.delete(key);
      if (!this.sockets.size) this.stopWatch();
    });
    this.watch ??= setInterval(() => void this.checkSockets(), this.socketCheckMs).unref();
  }

  /** Closes the sockets of sessions that expired or were ended (here or on another replica). */
  private async checkSockets(): Promise<void> {
    const now = Date.now();
    for (const key of [...this.sockets.keys()]) {
      const alive = await this.store.findSession(key, now).catch(() => 'unknown'); // a store hiccup closes nothing
      if (alive === undefined) this.closeSockets(key);
    }
  }

  private closeSockets(key: string): void {
    const set = this.sockets.get(key);
    this.sockets.delete(key);
    for (const socket of set ?? []) socket.destroy();
    if (!this.sockets.size) this.stopWatch();
  }

  private stopWatch(): void {
    if (this.watch) clearInterval(this.watch);
    this.watch = undefined;
  }

  /** Stops watching (the gateway is closing; its sockets close with it). */
  close(): void {
    this.stopWatch();
    if (this.pruning) clearInterval(this.pruning);
    this.pruning = undefined;
  }
}

/**
 * The cookie path for a request: the base path when the request came under it (a Hub service
 * path: the browser must not send the cookie to users' servers on the same origin), else /.
 */
export function cookiePathFor(originalUrl: string, basePath: string): string {
  return basePath !== '/' && originalUrl.startsWith(basePath) ? basePath : '/';
}

export function readCookie(header: string | undefined, name: string): string | undefined {
  return readCookies(header, name)[0];
}

/** Every value of the cookie `name` in a Cookie header, in its order (a browser sends one per path it holds it for). */
export function readCookies(header: string | undefined, name: string): string[] {
  const out: string[] = [];
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) out.push(part.slice(eq + 1).trim());
  }
  return out;
}

/** Removes our session cookie from a Cookie header before it is passed on to a dashboard. */
export function withoutSessionCookie(header: string | undefined): string | undefined {
  if (!header) return header;
  const kept = header.split(';').filter((p) => p.split('=')[0]?.trim() !== SESSION_COOKIE);
  return kept.length ? kept.join(';').trim() : undefined;
}
