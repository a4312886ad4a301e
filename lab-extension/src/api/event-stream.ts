// The gateway's per-user event stream (WS /api/af/events): a snapshot of the user's clusters, then
// every change to a cluster or to the user's token. Reconnects with back-off when the socket drops.
import type { AfEvent } from '@af-gateway/schemas';
import { Signal, type ISignal } from '@lumino/signaling';

/** The part of the WebSocket API we use, so tests can hand in the `ws` package. */
export interface SocketLike {
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  close(code?: number, reason?: string): void;
}
export type SocketFactory = (url: string) => SocketLike;

export type StreamState = 'connecting' | 'open' | 'closed';

export class EventStream {
  private socket: SocketLike | null = null;
  private retryMs = 500;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private stopped = true;
  private _state: StreamState = 'closed';
  private readonly _event = new Signal<this, AfEvent>(this);
  private readonly _stateChanged = new Signal<this, StreamState>(this);

  constructor(
    private readonly url: string,
    private readonly factory: SocketFactory = (u) => new WebSocket(u) as unknown as SocketLike,
    private readonly maxRetryMs = 15_000,
  ) {}

  get event(): ISignal<this, AfEvent> {
    return this._event;
  }

  get stateChanged(): ISignal<this, StreamState> {
    return this._stateChanged;
  }

  get state(): StreamState {
    return this._state;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const s = this.socket;
    this.socket = null;
    if (s) {
      s.onclose = null;
      s.close(1000, 'bye');
    }
    this.setState('closed');
  }

  private setState(state: StreamState): void {
    if (state === this._state) return;
    this._state = state;
    this._stateChanged.emit(state);
  }

  private connect(): void {
    this.setState('connecting');
    let socket: SocketLike;
    try {
      socket = this.factory(this.url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      this.retryMs = 500;
      this.setState('open');
    };
    socket.onmessage = (ev) => {
      let parsed: AfEvent;
      try {
        parsed = JSON.parse(String(ev.data)) as AfEvent;
      } catch {
        return;
      }
      this._event.emit(parsed);
    };
    socket.onerror = () => undefined; // onclose follows and handles it
    socket.onclose = () => {
      if (this.socket === socket) this.socket = null;
      if (!this.stopped) this.scheduleReconnect();
    };
  }

  private scheduleReconnect(): void {
    this.setState('connecting');
    const wait = this.retryMs;
    this.retryMs = Math.min(this.maxRetryMs, this.retryMs * 2);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.stopped) this.connect();
    }, wait);
  }
}
