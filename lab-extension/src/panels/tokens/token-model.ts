// State of the Token panel and status bar item: the user's token status from the gateway's
// broker, a countdown to expiry, and what to tell the user in plain words.
import type { TokenStatus } from '@af-gateway/schemas';
import { GatewayListModel } from '../../session/session-model';
import type { IEventHub } from '../../session/tokens';

export type TokenHealth = 'loading' | 'login-required' | 'none' | 'not-managed' | 'ok' | 'warning' | 'expired' | 'refresh-failed' | 'error';

export interface TokenView {
  health: TokenHealth;
  /** One sentence for the user. */
  headline: string;
  secondsLeft: number | null;
}

/** Why there is nothing to log in to or renew here, when the Lab signs in by user name. */
export const BASIC_LOGIN_SENTENCE =
  'This gateway signs you in with a user name (basic authentication), not at an identity provider: it holds no access token for you, and tokens are not managed here.';

/**
 * What a token status means for the user at time `now` (ms), warning `warnSeconds` before expiry.
 * `canLogin`: whether a login at an identity provider can give the user a token (not when the Lab
 * signs in by user name): without one, no sentence tells the user to log in.
 */
export function describeToken(status: TokenStatus | null, now: number, warnSeconds: number, canLogin = true): TokenView {
  if (!status) return { health: 'loading', headline: 'Asking the gateway about your token…', secondsLeft: null };
  if (status.source === 'none') {
    if (!canLogin) return { health: 'not-managed', headline: BASIC_LOGIN_SENTENCE, secondsLeft: null };
    return { health: 'none', headline: 'The gateway holds no token for you. Log in to get one.', secondsLeft: null };
  }
  const secondsLeft = status.expires_at == null ? null : Math.floor((status.expires_at - now) / 1000);
  /** What gets the user a new token when the gateway cannot renew it. */
  const anew = canLogin ? 'log in again' : 'a new one comes with your next request that carries one (from your token agent, say)';
  if (status.refresh.state === 'revoked') {
    const then = canLogin ? ' Log in again.' : '';
    return { health: 'refresh-failed', headline: `Your login has ended and the token cannot be renewed: ${status.refresh.message}${then}`, secondsLeft };
  }
  if (secondsLeft !== null && secondsLeft <= 0) {
    const why =
      status.refresh.state === 'failing'
        ? ` Renewal is failing: ${status.refresh.message}`
        : status.refresh.state === 'none'
          ? ` It cannot be renewed here; ${anew}.`
          : '';
    return { health: 'expired', headline: `Your token has expired.${why}`, secondsLeft };
  }
  if (status.refresh.state === 'failing') {
    return { health: 'refresh-failed', headline: `Renewing your token failed; the gateway keeps trying: ${status.refresh.message}`, secondsLeft };
  }
  if (secondsLeft !== null && secondsLeft <= warnSeconds) {
    const renew =
      status.refresh.state === 'ok'
        ? ' The gateway renews it before then.'
        : canLogin
          ? ' It will not be renewed: log in again soon.'
          : ` It will not be renewed here: ${anew}.`;
    return { health: 'warning', headline: `Your token expires soon.${renew}`, secondsLeft };
  }
  if (secondsLeft === null) return { health: 'ok', headline: 'Your token is valid and does not expire.', secondsLeft };
  const renew =
    status.refresh.state === 'ok'
      ? ' The gateway renews it before it expires.'
      : canLogin
        ? ' The gateway cannot renew it: log in again when it expires.'
        : ` The gateway cannot renew it: when it expires, ${anew}.`;
  return { health: 'ok', headline: `Your token is valid.${renew}`, secondsLeft };
}

/** 1h 05m 09s / 4m 03s / 12s */
export function formatCountdown(seconds: number): string {
  const s = Math.max(0, seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const pad = (n: number) => String(n).padStart(2, '0');
  if (h > 0) return `${h}h ${pad(m)}m ${pad(sec)}s`;
  if (m > 0) return `${m}m ${pad(sec)}s`;
  return `${sec}s`;
}

export class TokenModel extends GatewayListModel {
  private _status: TokenStatus | null = null;
  private _refreshing = false;
  private timer: ReturnType<typeof setInterval> | null = null;

  constructor(
    session: IEventHub,
    public warnSeconds: number,
    private readonly now: () => number = () => Date.now(),
  ) {
    super(session);
    this.follow({ types: ['token'] }, (ev) => ev.type === 'token' && this.update(ev.token));
  }

  get status(): TokenStatus | null {
    return this._status;
  }

  /** Whether a login at an identity provider can give the user a token (not with basic authentication). */
  get canLogin(): boolean {
    return this.client.authMode !== 'basic';
  }

  /** Whether "Refresh now" can work: the gateway holds a refresh token for the user. */
  get canRefresh(): boolean {
    const state = this._status?.refresh.state;
    return state === 'ok' || state === 'failing';
  }

  get refreshing(): boolean {
    return this._refreshing;
  }

  get view(): TokenView {
    if (this.connection === 'login-required') {
      if (!this.canLogin) {
        const why = this.error ? `The gateway did not accept this Lab's user name: ${this.error}` : "The gateway did not accept this Lab's user name.";
        return { health: 'login-required', headline: `${why} Set it under Settings → AF Gateway → User name (basic authentication).`, secondsLeft: null };
      }
      return { health: 'login-required', headline: this.error || 'Log in to the gateway to see your token.', secondsLeft: null };
    }
    if (this.error && !this._status) return { health: 'error', headline: this.error, secondsLeft: null };
    return describeToken(this._status, this.now(), this.warnSeconds, this.canLogin);
  }

  /** Loads the status and ticks once a second for the countdown. */
  override async start(): Promise<void> {
    await this.reload();
    if (!this.timer && !this.isDisposed) this.timer = setInterval(() => this.emitChanged(), 1000);
  }

  override dispose(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    super.dispose();
  }

  protected async fetch(): Promise<void> {
    this._status = await this.client.tokenStatus();
  }

  /** A status from the event stream or an answer. */
  update(status: TokenStatus): void {
    this._status = status;
    this.setConnection('connected', '');
  }

  async refreshNow(): Promise<void> {
    this._refreshing = true;
    this.emitChanged();
    try {
      this.update(await this.client.refreshToken());
    } catch (err) {
      this.fail(err);
      throw err;
    } finally {
      this._refreshing = false;
      this.emitChanged();
    }
  }
}
