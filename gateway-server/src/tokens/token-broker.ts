// The token broker. For each user it holds the freshest access token it knows and, when it has
// one, a refresh token (sealed at rest, never logged, never returned). It refreshes ahead of expiry
// (margin plus jitter), keeps a copy of the access token in each of the user's running clusters
// (the file BEARER_TOKEN_FILE names), and reports the state as TokenStatus on the API and the
// event stream. A refresh token the provider refuses is shown as revoked; nothing else stops.
import { EventEmitter } from 'node:events';
import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { FastifyBaseLogger } from 'fastify';
import type { TokenStatus } from '@af-gateway/schemas';
import type { User } from '../auth/authenticator.js';
import type { OidcAuthenticator, TokenFacts, TokenIdentity } from '../auth/oidc-authenticator.js';
import { TokenEndpointError } from '../auth/oidc-issuer.js';
import type { ClusterManager } from '../clusters/cluster-manager.js';
import { clusterFiles } from '../clusters/cluster-files.js';
import type { ClusterRecord } from '../clusters/model.js';
import { replaceConfined } from '../files/no-follow.js';
import type { ResolvedConfig } from '../config.js';
import { AppError, errorMessage, forbidden, notFound } from '../errors.js';
import type { StateStore } from '../store/state-store.js';

type Source = Exclude<TokenStatus['source'], 'none'>;
type RefreshState = TokenStatus['refresh']['state'];

interface UserTokens {
  user: string;
  groups: string[];
  source: Source;
  facts: TokenFacts;
  lastRefresh: number | null;
  refresh: { state: RefreshState; message: string; nextAt: number | null };
  /** cluster name → when the file was written, and whether with the current token */
  deliveries: Record<string, { writtenAt: number; token: string }>;
  // secrets: kept out of `data` when persisted
  accessToken: string;
  refreshToken: string | null;
}

export class TokenBroker extends EventEmitter<{ token: [string] }> {
  private readonly users = new Map<string, UserTokens>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly hubTried = new Map<string, number>();
  /** Exchanged tokens by user and audience, reused until close to expiry (kept in memory only). */
  private readonly exchanged = new Map<string, { token: string; expiresAt: number | null; from: string }>();

  constructor(
    private readonly deps: {
      store: StateStore;
      clusters: ClusterManager;
      /** Present with auth.type oidc: verifies refreshed tokens and talks to the provider. */
      oidc: OidcAuthenticator | undefined;
      config: ResolvedConfig['tokens'];
      log: FastifyBaseLogger;
      /** Reads a user's auth_state at JupyterHub, when the gateway is a Hub service allowed to. */
      hubAuthState?: (user: string) => Promise<{ access_token?: string; refresh_token?: string } | null>;
      /** Where else a cluster's token goes besides its file (e.g. the Secret its pods mount). */
      deliverElsewhere?: (cluster: ClusterRecord, token: string) => Promise<void>;
      /** Writes a cluster's token file when the gateway must not itself (multi-user: as the owner). */
      writeTokenFile?: (cluster: ClusterRecord, token: string) => Promise<void>;
    },
  ) {
    super();
    this.setMaxListeners(0);
  }

  async start(): Promise<void> {
    for (const row of await this.deps.store.loadTokens()) {
      const data = row.data as Omit<UserTokens, 'accessToken' | 'refreshToken'>;
      const secrets = row.secrets as { accessToken: string; refreshToken: string | null };
      const u: UserTokens = { ...data, ...secrets };
      this.users.set(u.user, u);
      if (u.refreshToken && u.refresh.state !== 'revoked') this.schedule(u);
    }
    // A new or adopted cluster gets the owner's token file; ended clusters drop out of the list.
    this.deps.clusters.on('cluster', (c) => this.onCluster(c));
  }

  close(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  // --- where tokens come from ----------------------------------------------------------------

  /** A request carried this verified bearer token: keep it if it is the freshest we know. */
  observe(identity: TokenIdentity, accessToken: string): void {
    const u = this.users.get(identity.name);
    if (u && (u.facts.expiresAt ?? 0) >= (identity.token.expiresAt ?? 0)) return;
    if (u?.refreshToken && u.refresh.state !== 'revoked') return; // the broker's own tokens win
    const next: UserTokens = u
      ? { ...u, accessToken, facts: identity.token, groups: identity.groups }
      : {
          user: identity.name,
          groups: identity.groups,
          source: 'request',
          facts: identity.token,
          lastRefresh: null,
          refresh: { state: 'none', message: 'No refresh token: the token a request carried is used until it expires', nextAt: null },
          deliveries: {},
          accessToken,
          refreshToken: null,
        };
    this.users.set(next.user, next);
    this.deliver(next);
    this.persist(next);
    this.emit('token', next.user);
  }

  /** Tokens from the gateway's own login (authorization code + PKCE). */
  fromLogin(identity: TokenIdentity, accessToken: string, refreshToken: string | undefined): void {
    this.adopt(identity, accessToken, refreshToken ?? null, 'login');
  }

  /**
   * A user the Hub vouched for: if the broker holds no refreshable token of theirs, take the one the
   * Hub's own login stored in the user's auth_state (at most once a minute per user).
   */
  async considerHub(user: User): Promise<void> {
    const read = this.deps.hubAuthState;
    const oidc = this.deps.oidc;
    if (!read || !oidc) return;
    const u = this.users.get(user.name);
    if (u?.refreshToken && u.refresh.state !== 'revoked') return;
    const last = this.hubTried.get(user.name) ?? 0;
    if (Date.now() - last < 60_000) return;
    this.hubTried.set(user.name, Date.now());
    try {
      const state = await read(user.name);
      if (!state?.access_token) return;
      const identity = await oidc.verify(state.access_token).catch(() => undefined);
      if (identity && identity.name !== user.name) {
        this.deps.log.warn({ user: user.name, token_user: identity.name }, "auth_state holds another user's token; ignored");
        return;
      }
      if (identity) {
        this.adopt(identity, state.access_token, state.refresh_token ?? null, 'hub');
      } else if (state.refresh_token) {
        // the stored access token has expired: the refresh token may still be good
        const res = await oidc.issuer.token({ grant_type: 'refresh_token', refresh_token: state.refresh_token });
        const fresh = await oidc.verify(res.access_token);
        if (fresh.name !== user.name) return;
        this.adopt(fresh, res.access_token, res.refresh_token ?? state.refresh_token, 'hub');
      }
    } catch (err) {
      this.deps.log.warn({ user: user.name, err: errorMessage(err) }, 'could not take the token from JupyterHub auth_state');
    }
  }

  /** A refresh token the user hands over; it must yield a token for that same user. */
  async handOver(user: User, refreshToken: string): Promise<TokenStatus> {
    const oidc = this.requireOidc();
    let res;
    try {
      res = await oidc.issuer.token({ grant_type: 'refresh_token', refresh_token: refreshToken });
    } catch (err) {
      if (err instanceof TokenEndpointError) {
        throw new AppError(422, 'refresh_token_refused', `The identity provider refused this refresh token: ${err.message}`);
      }
      throw err;
    }
    const identity = await oidc.verify(res.access_token);
    if (identity.name !== user.name) throw forbidden(`That refresh token belongs to ${identity.name}, not to ${user.name}`);
    this.adopt(identity, res.access_token, res.refresh_token ?? refreshToken, 'handed-over');
    return this.status(user);
  }

  forget(user: User): void {
    clearTimeout(this.timers.get(user.name));
    this.timers.delete(user.name);
    this.users.delete(user.name);
    void this.deps.store.deleteTokens(user.name).catch((err: unknown) => this.writeFailed(user.name, err));
    this.emit('token', user.name);
  }

  async refreshNow(user: User): Promise<TokenStatus> {
    const u = this.users.get(user.name);
    if (!u?.refreshToken) throw notFound(`A refresh token for ${user.name} (log in through the gateway or hand one over first)`);
    await this.refresh(u);
    return this.status(user);
  }

  private requireOidc(): OidcAuthenticator {
    if (!this.deps.oidc) throw new AppError(409, 'no_oidc', 'The token broker needs auth.type oidc');
    return this.deps.oidc;
  }

  private adopt(identity: TokenIdentity, accessToken: string, refreshToken: string | null, source: Source): void {
    const old = this.users.get(identity.name);
    const u: UserTokens = {
      user: identity.name,
      groups: identity.groups,
      source,
      facts: identity.token,
      lastRefresh: Date.now(),
      refresh: refreshToken
        ? { state: 'ok', message: '', nextAt: null }
        : { state: 'none', message: 'The provider gave no refresh token (ask for offline_access)', nextAt: null },
      deliveries: old?.deliveries ?? {},
      accessToken,
      refreshToken,
    };
    this.users.set(u.user, u);
    this.deliver(u);
    if (refreshToken) this.schedule(u);
    this.persist(u);
    this.emit('token', u.user);
  }

  // --- refreshing ----------------------------------------------------------------------------

  private schedule(u: UserTokens): void {
    clearTimeout(this.timers.get(u.user));
    const { refresh_margin, refresh_jitter, retry_period } = this.deps.config;
    const exp = u.facts.expiresAt;
    const at =
      u.refresh.state === 'failing' || exp === null ? Date.now() + retry_period * 1000 : exp - refresh_margin * 1000 - Math.random() * refresh_jitter * 1000;
    const delay = Math.round(Math.max(1000, at - Date.now()));
    u.refresh.nextAt = Date.now() + delay;
    const timer = setTimeout(() => void this.refresh(u), delay);
    timer.unref();
    this.timers.set(u.user, timer);
  }

  private async refresh(u: UserTokens): Promise<void> {
    if (!u.refreshToken) return;
    const oidc = this.requireOidc();
    try {
      const res = await oidc.issuer.token({ grant_type: 'refresh_token', refresh_token: u.refreshToken });
      const identity = await oidc.verify(res.access_token);
      u.accessToken = res.access_token;
      if (res.refresh_token) u.refreshToken = res.refresh_token; // rotated by the provider
      u.facts = identity.token;
      u.groups = identity.groups;
      u.lastRefresh = Date.now();
      u.refresh = { state: 'ok', message: '', nextAt: null };
      this.deliver(u);
      this.deps.log.info({ user: u.user, expires: u.facts.expiresAt }, 'access token refreshed');
    } catch (err) {
      const revoked = err instanceof TokenEndpointError && err.oauthError === 'invalid_grant';
      u.refresh = revoked
        ? { state: 'revoked', message: `The identity provider no longer accepts the refresh token (${err.message}); log in again`, nextAt: null }
        : { state: 'failing', message: `Refresh failed: ${errorMessage(err)}; retrying`, nextAt: null };
      this.deps.log.warn({ user: u.user, state: u.refresh.state, err: errorMessage(err) }, 'access token refresh failed');
    }
    if (u.refresh.state !== 'revoked') this.schedule(u);
    else clearTimeout(this.timers.get(u.user));
    this.persist(u);
    this.emit('token', u.user);
  }

  // --- delivery ------------------------------------------------------------------------------

  private onCluster(c: ClusterRecord): void {
    const u = this.users.get(c.username);
    if (!u) return;
    if (c.status === 'STOPPED' || c.status === 'FAILED') {
      if (u.deliveries[c.name]) {
        delete u.deliveries[c.name];
        this.persist(u);
      }
      return;
    }
    if (!u.deliveries[c.name] || u.deliveries[c.name]!.token !== fingerprint(u.accessToken)) this.deliver(u);
  }

  private deliver(u: UserTokens): void {
    for (const { cluster: c } of this.deps.clusters.activeClusters(['PENDING', 'RUNNING'], u.user)) {
      const token = u.accessToken;
      u.deliveries[c.name] = { writtenAt: Date.now(), token: fingerprint(token) };
      // The directory may be writable by the cluster's jobs: never write through what they planted.
      const write = this.deps.writeTokenFile ?? ((cl: ClusterRecord, t: string) => this.writeTokenFile(cl, t));
      write(c, token).then(
        () =>
          this.deps
            .deliverElsewhere?.(c, token)
            .catch((err: unknown) => this.deps.log.warn({ user: u.user, cluster: c.name, err: errorMessage(err) }, 'could not hand the token to the backend')),
        (err: unknown) => {
          delete u.deliveries[c.name]; // tried again on the next refresh or cluster change
          this.deps.log.warn({ user: u.user, cluster: c.name, err: errorMessage(err) }, 'could not write the token file');
        },
      );
    }
  }

  private async writeTokenFile(c: ClusterRecord, token: string): Promise<void> {
    const file = clusterFiles(c).bearerToken;
    await mkdir(dirname(file), { recursive: true, mode: 0o700 });
    await replaceConfined(c.workDir, file, token + '\n'); // readers never see a half-written token
  }

  private persist(u: UserTokens): void {
    const { accessToken, refreshToken, ...data } = u;
    void this.deps.store.saveTokens(u.user, data, { accessToken, refreshToken }).catch((err: unknown) => this.writeFailed(u.user, err));
  }

  private writeFailed(user: string, err: unknown): void {
    this.deps.log.error({ user, err: errorMessage(err) }, 'could not write the token state to the state store');
  }

  // --- reporting -----------------------------------------------------------------------------

  status(user: User): TokenStatus {
    const u = this.users.get(user.name);
    if (!u) {
      return {
        user: user.name,
        source: 'none',
        subject: null,
        issuer: null,
        audience: [],
        scopes: [],
        groups: user.groups,
        expires_at: null,
        seconds_left: null,
        last_refresh: null,
        refresh: { state: 'none', message: 'The gateway holds no token of yours', next_at: null },
        deliveries: [],
      };
    }
    const exp = u.facts.expiresAt;
    const current = fingerprint(u.accessToken);
    return {
      user: u.user,
      source: u.source,
      subject: u.facts.subject,
      issuer: u.facts.issuer,
      audience: u.facts.audience,
      scopes: u.facts.scopes,
      groups: u.groups,
      expires_at: exp,
      seconds_left: exp === null ? null : Math.max(0, Math.floor((exp - Date.now()) / 1000)),
      last_refresh: u.lastRefresh,
      refresh: { state: u.refresh.state, message: u.refresh.message, next_at: u.refresh.nextAt },
      deliveries: Object.entries(u.deliveries).map(([name, d]) => ({ target: `cluster:${name}`, written_at: d.writtenAt, current: d.token === current })),
    };
  }

  /**
   * A token for another service (RFC 8693 token exchange of the user's current access token), for
   * one of the configured `tokens.exchange_audiences`; reused until `refresh_margin` before expiry.
   */
  async tokenFor(user: User, audience: string): Promise<{ access_token: string; expires_at: number | null }> {
    if (!this.deps.config.exchange_audiences.includes(audience)) {
      throw new AppError(
        422,
        'unknown_audience',
        `No tokens for audience '${audience}': this gateway exchanges tokens for ${this.deps.config.exchange_audiences.join(', ') || 'no audience'} (tokens.exchange_audiences)`,
      );
    }
    const u = this.users.get(user.name);
    if (!u) throw notFound(`An access token for ${user.name}`);
    const key = `${user.name}\n${audience}`;
    const cached = this.exchanged.get(key);
    const fresh = (exp: number | null) => exp === null || exp - this.deps.config.refresh_margin * 1000 > Date.now();
    if (cached && cached.from === fingerprint(u.accessToken) && fresh(cached.expiresAt)) {
      return { access_token: cached.token, expires_at: cached.expiresAt };
    }
    const oidc = this.requireOidc();
    let res;
    try {
      res = await oidc.issuer.token({
        grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
        subject_token: u.accessToken,
        subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
        requested_token_type: 'urn:ietf:params:oauth:token-type:access_token',
        audience,
      });
    } catch (err) {
      if (err instanceof TokenEndpointError) {
        throw new AppError(502, 'exchange_refused', `The identity provider refused to exchange the token for audience '${audience}': ${err.message}`);
      }
      throw err;
    }
    const expiresAt = res.expires_in ? Date.now() + res.expires_in * 1000 : null;
    this.exchanged.set(key, { token: res.access_token, expiresAt, from: fingerprint(u.accessToken) });
    return { access_token: res.access_token, expires_at: expiresAt === null ? null : Math.floor(expiresAt) };
  }

  accessToken(user: User): { access_token: string; expires_at: number | null } {
    const u = this.users.get(user.name);
    if (!u) throw notFound(`An access token for ${user.name}`);
    return { access_token: u.accessToken, expires_at: u.facts.expiresAt };
  }
}

/** Enough to tell tokens apart in the status, without keeping a second copy of the token. */
function fingerprint(token: string): string {
  return createHash('sha256').update(token).digest('hex').slice(0, 16);
}
