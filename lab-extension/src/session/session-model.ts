// What the panels' models share: a changed signal, subscriptions to the session's event stream that
// end with the model, and following the session's login state. `GatewayListModel` adds the state of
// a model whose content the gateway lists: connecting, connected, log in, or an error, and a reload.
import type { AfEvent } from '@af-gateway/schemas';
import { Signal, type ISignal } from '@lumino/signaling';
import type { GatewayClient } from '../api/gateway-client';
import { failureState } from './gateway-session';
import type { EventFilter, IEventHub, LoginState, Subscription } from './tokens';

export type ConnectionState = 'connecting' | 'connected' | 'login-required' | 'error';

export abstract class SessionModel {
  private readonly _changed = new Signal<this, void>(this);
  private readonly subscriptions: Subscription[] = [];
  private _isDisposed = false;
  private emitTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(protected readonly session: IEventHub) {
    session.loginChanged.connect(this.onLoginChanged, this);
  }

  get client(): GatewayClient {
    return this.session.client;
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  dispose(): void {
    if (this._isDisposed) return;
    this._isDisposed = true;
    if (this.emitTimer) clearTimeout(this.emitTimer);
    this.emitTimer = null;
    for (const s of this.subscriptions.splice(0)) s.dispose();
    this.session.loginChanged.disconnect(this.onLoginChanged, this);
  }

  protected emitChanged(): void {
    this._changed.emit();
  }

  /** While content streams in (rows, results), the view is told at most every 100 ms. */
  protected emitSoon(): void {
    if (this.emitTimer || this._isDisposed) return;
    this.emitTimer = setTimeout(() => {
      this.emitTimer = null;
      this.emitChanged();
    }, 100);
  }

  /** Tells the view now, with any change still waiting for `emitSoon`'s timer. */
  protected emitNow(): void {
    if (this.emitTimer) clearTimeout(this.emitTimer);
    this.emitTimer = null;
    if (!this._isDisposed) this.emitChanged();
  }

  /** Hears the stream's events that match `filter` until the model is disposed. */
  protected follow(filter: EventFilter, handler: (ev: AfEvent) => void): void {
    this.subscriptions.push(this.session.subscribe(filter, handler));
  }

  /** The session's login state changed (e.g. the silent Hub login finished, or the session expired). */
  protected onLoginChanged(_session: unknown, _state: LoginState): void {
    // nothing by default
  }
}

export abstract class GatewayListModel extends SessionModel {
  private _connection: ConnectionState = 'connecting';
  private _error = '';

  get connection(): ConnectionState {
    return this._connection;
  }

  get error(): string {
    return this._error;
  }

  /** Loads the content; the panels' "Try again" calls this too. */
  async start(): Promise<void> {
    await this.reload();
  }

  async reload(): Promise<void> {
    try {
      await this.fetch();
    } catch (err) {
      return this.fail(err);
    }
    this.setConnection('connected', '');
    // The gateway answered while the session thought it could not: ask again (it opens the stream).
    if (this.session.login === 'login-required' || this.session.login === 'error') void this.session.check();
  }

  /** Asks the gateway for the content and keeps it (throws what the client throws). */
  protected abstract fetch(): Promise<void>;

  protected fail(err: unknown): void {
    const { state, message } = failureState(err);
    this.setConnection(state, message);
  }

  protected setConnection(state: ConnectionState, error: string): void {
    this._connection = state;
    this._error = error;
    this.emitChanged();
  }

  /** A connected model shows a lost login; a model that failed loads again once the login is back. */
  protected override onLoginChanged(_session: unknown, state: LoginState): void {
    if (state === 'logged-in') {
      if (this._connection === 'login-required' || this._connection === 'error') void this.reload();
    } else if ((state === 'login-required' || state === 'error') && this._connection === 'connected') {
      this.setConnection(state, this.session.loginMessage);
    }
  }
}
