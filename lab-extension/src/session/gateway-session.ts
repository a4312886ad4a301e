// The one session of a Lab with the gateway: asks whether the user is logged in, opens the one event
// stream once they are, hands its events to the models that subscribed, and checks the login again
// when the stream drops. Behind JupyterHub it logs in silently (the Hub's OAuth needs no input).
import type { AfEvent } from '@af-gateway/schemas';
import { Signal, type ISignal } from '@lumino/signaling';
import { type GatewayClient, GatewayError } from '../api/gateway-client';
import { type GatewaySettings, normaliseSettings } from '../api/gateway-settings';
import { EventStream, type SocketFactory } from '../api/event-stream';
import type { EventFilter, IAfGatewaySession, LoginState, Subscription } from './tokens';

export interface GatewaySessionOptions {
  /** How the event stream opens its socket (tests hand in the `ws` package). */
  socketFactory?: SocketFactory;
  /** Loads a login URL without showing it; the default uses a hidden frame. */
  silentLogin?: (url: string) => Promise<void>;
}

/** What a failed request says about the login: the user must log in, or something else went wrong. */
export function failureState(err: unknown): { state: 'login-required' | 'error'; message: string } {
  const message = err instanceof Error ? err.message : String(err);
  return { state: err instanceof GatewayError && err.unauthenticated ? 'login-required' : 'error', message };
}

/** Whether an event is one a subscriber with `filter` asked for. */
export function matches(filter: EventFilter, ev: AfEvent): boolean {
  if (filter.types && !filter.types.includes(ev.type)) return false;
  if (filter.cluster !== undefined && !(ev.type === 'cluster' && ev.cluster.name === filter.cluster)) return false;
  if (filter.run !== undefined) {
    const run = ev.type === 'workflow' ? ev.run.id : ev.type === 'workflow-dag' ? ev.dag.run.id : undefined;
    if (run !== filter.run) return false;
  }
  return true;
}

export class GatewaySession implements IAfGatewaySession {
  private stream: EventStream | null = null;
  /** Set once the stream was open: a later 'connecting' is a drop. */
  private streamWasOpen = false;
  private _login: LoginState = 'checking';
  private _loginMessage = '';
  private _settings: GatewaySettings;
  private starting: Promise<void> | null = null;
  private readonly subscribers = new Set<{ filter: EventFilter; handler: (ev: AfEvent) => void }>();
  private readonly _loginChanged = new Signal<this, LoginState>(this);
  private readonly _settingsChanged = new Signal<this, GatewaySettings>(this);
  private readonly readyDone: Promise<void>;
  private markReady: () => void = () => undefined;

  constructor(
    readonly client: GatewayClient,
    settings: GatewaySettings = normaliseSettings(undefined),
    private readonly options: GatewaySessionOptions = {},
  ) {
    this._settings = settings;
    this.readyDone = new Promise((resolve) => (this.markReady = resolve));
  }

  get settings(): GatewaySettings {
    return this._settings;
  }

  get settingsChanged(): ISignal<this, GatewaySettings> {
    return this._settingsChanged;
  }

  get login(): LoginState {
    return this._login;
  }

  get loginMessage(): string {
    return this._loginMessage;
  }

  get loginChanged(): ISignal<this, LoginState> {
    return this._loginChanged;
  }

  get ready(): Promise<void> {
    return this.readyDone;
  }

  /** The first check (and the silent Hub login when it says "log in"); `ready` settles after it. */
  start(): Promise<void> {
    this.starting ??= (async () => {
      await this.check();
      if (this._login === 'login-required' && this.client.authMode === 'jupyterhub') {
        // Behind JupyterHub the user is logged in already: the Hub's OAuth round trip for the gateway
        // service needs no input, so it runs in a hidden frame; the Log in buttons stay as fallback.
        await (this.options.silentLogin ?? silentLogin)(this.client.loginUrl(new URL(this.client.url('api/health')).pathname));
        await this.check();
      }
      this.markReady();
    })();
    return this.starting;
  }

  async check(): Promise<void> {
    try {
      // The list call also opens the gateway's session (its cookie), which the event stream needs.
      await this.client.listClusters();
    } catch (err) {
      const { state, message } = failureState(err);
      return this.setLogin(state, message);
    }
    this.setLogin('logged-in', '');
    this.openStream();
  }

  logIn(): void {
    window.location.assign(this.client.loginUrl(window.location.pathname + window.location.search));
  }

  subscribe(filter: EventFilter, handler: (ev: AfEvent) => void): Subscription {
    const entry = { filter, handler };
    this.subscribers.add(entry);
    return { dispose: () => void this.subscribers.delete(entry) };
  }

  /** New settings from the registry (the panels that can follow them listen to `settingsChanged`). */
  updateSettings(next: GatewaySettings): void {
    this._settings = next;
    this._settingsChanged.emit(next);
  }

  /** Hands an event to its subscribers (the stream does; tests may too). */
  dispatch(ev: AfEvent): void {
    for (const s of [...this.subscribers]) {
      if (!matches(s.filter, ev)) continue;
      try {
        s.handler(ev);
      } catch (err) {
        console.error('AF Gateway: an event handler failed', err);
      }
    }
  }

  dispose(): void {
    this.stream?.stop();
    this.stream = null;
    this.subscribers.clear();
    Signal.clearData(this);
  }

  private openStream(): void {
    if (this.stream) return;
    const stream = (this.stream = new EventStream(this.client.eventsUrl(), this.options.socketFactory));
    stream.event.connect((_s, ev) => this.dispatch(ev));
    stream.stateChanged.connect((_s, state) => {
      if (state === 'open') this.streamWasOpen = true;
      // After a drop the snapshot on reconnect brings the models up to date; a refused socket
      // (e.g. an expired session) shows up in this check.
      else if (state === 'connecting' && this.streamWasOpen && this._login === 'logged-in') void this.check();
    });
    stream.start();
  }

  private setLogin(state: LoginState, message: string): void {
    if (state === this._login && message === this._loginMessage) return;
    this._login = state;
    this._loginMessage = message;
    this._loginChanged.emit(state);
  }
}

/** Loads a login URL in a hidden frame and resolves when it settles (or after 15 s). */
function silentLogin(url: string): Promise<void> {
  return new Promise((resolve) => {
    const frame = document.createElement('iframe');
    frame.style.display = 'none';
    const done = () => {
      clearTimeout(timer);
      frame.remove();
      resolve();
    };
    const timer = setTimeout(done, 15_000);
    frame.onload = done;
    frame.src = url;
    document.body.appendChild(frame);
  });
}
