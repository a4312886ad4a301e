// The session the panels share: one event stream per Lab handed to subscribers by type, cluster and
// run; the login state (with the silent Hub login) and the models following it.
import { describe, expect, it } from 'vitest';
import type { AfCluster, AfEvent, TokenStatus } from '@af-gateway/schemas';
import { type GatewayClient, GatewayError } from '../src/api/gateway-client';
import type { SocketLike } from '../src/api/event-stream';
import { ClustersModel } from '../src/panels/clusters/clusters-model';
import { TokenModel } from '../src/panels/tokens/token-model';
import { WorkflowsModel } from '../src/panels/workflows/workflows-model';
import { GatewaySession, matches } from '../src/session/gateway-session';

class FakeSocket implements SocketLike {
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  closed = false;
  constructor(readonly url: string) {}
  close(): void {
    this.closed = true;
  }
  send(ev: AfEvent): void {
    this.onmessage?.({ data: JSON.stringify(ev) });
  }
}

const cluster = (name: string, status: AfCluster['status'] = 'RUNNING'): AfCluster =>
  ({
    name,
    status,
    message: '',
    start_time: 1,
    worker_cores: 1,
    worker_memory: 1,
    adaptive: null,
    workers: { requested: 0, running: 0, starting: 0, list: [] },
  }) as unknown as AfCluster;
const token = (source: TokenStatus['source']): TokenStatus => ({ source, expires_at: null, refresh: { state: 'none', message: '' } }) as unknown as TokenStatus;
const unauthenticated = () => new GatewayError(401, 'Log in first', 'unauthenticated');
const tick = () => new Promise((r) => setTimeout(r, 0));

/** A gateway stand-in: `loggedIn` decides whether calls answer or throw 401; counts the calls. */
function fakeGateway(authMode: 'session' | 'jupyterhub' = 'session') {
  const state = { loggedIn: true, calls: { listClusters: 0, tokenStatus: 0, listWorkflows: 0 } };
  const guard =
    <T>(name: keyof typeof state.calls, value: T) =>
    async () => {
      state.calls[name]++;
      if (!state.loggedIn) throw unauthenticated();
      return value;
    };
  const client = {
    authMode,
    url: (p: string) => `http://gw.test/${p}`,
    eventsUrl: () => 'ws://gw.test/api/af/events',
    loginUrl: (next: string) => `http://gw.test/api/af/login?next=${next}`,
    listClusters: guard('listClusters', { clusters: [cluster('c1')] }),
    tokenStatus: guard('tokenStatus', token('none')),
    listWorkflows: guard('listWorkflows', { runs: [] }),
    connectInfo: async () => ({ workflow_backends: ['local'] }),
  } as unknown as GatewayClient;
  const sockets: FakeSocket[] = [];
  const socketFactory = (url: string) => {
    const s = new FakeSocket(url);
    sockets.push(s);
    return s;
  };
  return { state, client, sockets, socketFactory };
}

describe('event filters', () => {
  it('match by type, cluster and run', () => {
    const c: AfEvent = { type: 'cluster', cluster: cluster('a') };
    const w = { type: 'workflow', run: { id: 'r1' } } as unknown as AfEvent;
    const d = { type: 'workflow-dag', dag: { run: { id: 'r2' } } } as unknown as AfEvent;
    expect(matches({}, c)).toBe(true);
    expect(matches({ types: ['cluster'] }, c)).toBe(true);
    expect(matches({ types: ['token'] }, c)).toBe(false);
    expect(matches({ cluster: 'a' }, c)).toBe(true);
    expect(matches({ cluster: 'b' }, c)).toBe(false);
    expect(matches({ cluster: 'a' }, w)).toBe(false);
    expect(matches({ run: 'r1' }, w)).toBe(true);
    expect(matches({ run: 'r2' }, d)).toBe(true);
    expect(matches({ run: 'r1' }, d)).toBe(false);
    expect(matches({ types: ['workflow'], run: 'r2' }, d)).toBe(false);
  });
});

describe('GatewaySession', () => {
  it('opens one stream for all models and hands each the events it follows', async () => {
    const gw = fakeGateway();
    const session = new GatewaySession(gw.client, undefined, { socketFactory: gw.socketFactory });
    const clusters = new ClustersModel(session);
    const tokens = new TokenModel(session, 600);
    const runs = new WorkflowsModel(session);
    const seen: string[] = [];
    const sub = session.subscribe({ cluster: 'c2' }, (ev) => seen.push(ev.type));
    await Promise.all([session.start(), session.start()]);
    await session.ready;
    expect(session.login).toBe('logged-in');
    await Promise.all([clusters.start(), tokens.start(), runs.start()]);
    expect(gw.sockets).toHaveLength(1);
    const socket = gw.sockets[0]!;
    socket.onopen?.({});
    socket.send({ type: 'cluster', cluster: cluster('c2') });
    socket.send({ type: 'token', token: token('login') });
    socket.send({ type: 'workflow', run: { id: 'r1', created: 1 } } as unknown as AfEvent);
    expect(clusters.list.map((c) => c.name).sort()).toEqual(['c1', 'c2']);
    expect(tokens.status?.source).toBe('login');
    expect(runs.get('r1')).toBeDefined();
    expect(seen).toEqual(['cluster']);
    sub.dispose();
    socket.send({ type: 'cluster', cluster: cluster('c2', 'STOPPED') });
    expect(seen).toEqual(['cluster']);
    expect(clusters.get('c2')).toBeUndefined();
    // a disposed model hears nothing more
    clusters.dispose();
    socket.send({ type: 'cluster', cluster: cluster('c3') });
    expect(clusters.get('c3')).toBeUndefined();
    tokens.dispose();
    session.dispose();
    expect(socket.closed).toBe(true);
  });

  it('says "log in" without opening the stream, and behind JupyterHub logs in silently first', async () => {
    const plain = fakeGateway();
    plain.state.loggedIn = false;
    const s1 = new GatewaySession(plain.client, undefined, { socketFactory: plain.socketFactory, silentLogin: async () => expect.fail('no Hub here') });
    await s1.start();
    expect(s1.login).toBe('login-required');
    expect(s1.loginMessage).toBe('Log in first');
    expect(plain.sockets).toHaveLength(0);

    const hub = fakeGateway('jupyterhub');
    hub.state.loggedIn = false;
    const visited: string[] = [];
    const states: string[] = [];
    const s2 = new GatewaySession(hub.client, undefined, {
      socketFactory: hub.socketFactory,
      silentLogin: async (url) => {
        visited.push(url);
        hub.state.loggedIn = true; // the Hub's OAuth round trip gave the browser the gateway's cookie
      },
    });
    s2.loginChanged.connect((_s, st) => states.push(st));
    await s2.start();
    expect(visited).toEqual(['http://gw.test/api/af/login?next=/api/health']);
    expect(states).toEqual(['login-required', 'logged-in']);
    expect(hub.sockets).toHaveLength(1);
    s2.dispose();
  });

  it('checks the login again when the stream drops; models show a lost login and load again once it is back', async () => {
    const gw = fakeGateway();
    const session = new GatewaySession(gw.client, undefined, { socketFactory: gw.socketFactory });
    const clusters = new ClustersModel(session);
    const runs = new WorkflowsModel(session);
    await session.start();
    await clusters.start();
    expect(clusters.connection).toBe('connected');
    // still connecting at first: no second check
    expect(gw.state.calls.listClusters).toBe(2);
    gw.sockets[0]!.onopen?.({});
    gw.state.loggedIn = false; // the session expired
    gw.sockets[0]!.onclose?.({ code: 1006, reason: '' });
    await tick();
    expect(gw.state.calls.listClusters).toBe(3);
    expect(session.login).toBe('login-required');
    expect(clusters.connection).toBe('login-required');
    expect(clusters.error).toBe('Log in first');
    expect(runs.connection).toBe('connecting'); // never loaded: nothing to lose

    // the user's "Try again": the model's own call answers, so the session checks again too
    gw.state.loggedIn = true;
    await clusters.start();
    await tick();
    expect(session.login).toBe('logged-in');
    expect(clusters.connection).toBe('connected');
    session.dispose();
  });

  it('gives the token model its new warning time and the reload notice the new settings', () => {
    const gw = fakeGateway();
    const session = new GatewaySession(gw.client);
    const got: number[] = [];
    session.settingsChanged.connect((_s, next) => got.push(next.tokenWarningMinutes));
    session.updateSettings({ ...session.settings, tokenWarningMinutes: 3 });
    expect(session.settings.tokenWarningMinutes).toBe(3);
    expect(got).toEqual([3]);
  });
});
