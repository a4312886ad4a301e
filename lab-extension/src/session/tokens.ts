// The session every AF Gateway panel shares, as a Lumino token: the configured gateway client, the
// settings, the one event stream of this Lab and whether the user is logged in at the gateway. The
// session plugin provides it; each panel's plugin asks for it.
import type { AfEvent } from '@af-gateway/schemas';
import { Token } from '@lumino/coreutils';
import type { ISignal } from '@lumino/signaling';
import type { GatewayClient } from '../api/gateway-client';
import type { GatewaySettings } from '../api/gateway-settings';

/** Whether the gateway accepts this browser: still asking, yes, no (log in), or it cannot be asked. */
export type LoginState = 'checking' | 'logged-in' | 'login-required' | 'error';

/** Which events a subscriber hears: by type, by cluster name, by workflow run id (all given must match). */
export interface EventFilter {
  types?: readonly AfEvent['type'][];
  /** 'cluster' events of this cluster only. */
  cluster?: string;
  /** 'workflow' and 'workflow-dag' events of this run only. */
  run?: string;
}

export interface Subscription {
  dispose(): void;
}

/** What a model needs from the session (tests hand in small stand-ins). */
export interface IEventHub {
  readonly client: GatewayClient;
  readonly login: LoginState;
  /** Why the user is not logged in, or why the gateway cannot be asked ('' when logged in). */
  readonly loginMessage: string;
  readonly loginChanged: ISignal<unknown, LoginState>;
  /** Calls `handler` for each event of the shared stream that matches `filter`. */
  subscribe(filter: EventFilter, handler: (ev: AfEvent) => void): Subscription;
  /** Asks the gateway again whether the user is logged in (and opens the stream when so). */
  check(): Promise<void>;
}

export interface IAfGatewaySession extends IEventHub {
  /** The current settings (the client keeps those it was made with until the page reloads). */
  readonly settings: GatewaySettings;
  readonly settingsChanged: ISignal<IAfGatewaySession, GatewaySettings>;
  /** Settled once the first login check (and, behind JupyterHub, the silent Hub login) is done. */
  readonly ready: Promise<void>;
  /** Sends the browser to the gateway's login; it comes back to this page. */
  logIn(): void;
}

export const IAfGatewaySession = new Token<IAfGatewaySession>(
  '@af-gateway/lab-extension:IAfGatewaySession',
  'The AF Gateway session: the gateway client, settings, the shared event stream and the login state.',
);
