// The event stream: one WebSocket per browser tab at /api/af/events. It sends a snapshot of the
// caller's active clusters, then each change of a cluster, token or workflow run the caller may see,
// so panels never poll.
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { FastifyBaseLogger } from 'fastify';
import type { AfEvent } from '@af-gateway/schemas';
import type { User } from '../auth/authenticator.js';
import type { Identifier } from '../auth/identify.js';
import type { ClusterManager } from '../clusters/cluster-manager.js';
import { isActive, type ClusterRecord, type WorkerRecord } from '../clusters/model.js';
import { errorMessage } from '../errors.js';
import { afClusterJson } from './cluster-json.js';
import type { TokenBroker } from '../tokens/token-broker.js';
import { refuseUpgrade, sameOrigin } from './upgrade.js';
import type { WorkflowEngine } from '../workflows/workflow-engine.js';
import type { WorkflowDag, WorkflowRun } from '@af-gateway/schemas';

export const EVENTS_PATH = '/api/af/events';
const PING_MS = 30_000;
const MAX_STREAMS_PER_USER = 32;
const COALESCE_MS = 100;
/**
 * What a stream may still have unsent when the next event comes: a client that does not read (or
 * cannot keep up) is closed rather than buffered for — 32 streams that read nothing, fed the DAG of
 * a 20,000-step run, grew the gateway by 1.6 GB in 10 s. It reconnects for a fresh snapshot. A run's
 * events are encoded once and the same bytes queued on every stream, so stalled streams share them.
 */
const MAX_UNSENT_PER_STREAM = 32 * 1024 * 1024;
/**
 * What all the streams of one user may have unsent together: 32 streams that read nothing could
 * otherwise hold 32 x 32 MB. Counted as ws reports each stream's unsent bytes (bufferedAmount): an
 * event's bytes are shared by the streams it goes to, so they count once per stream that holds them,
 * which overstates the memory but bounds it (what a stream holds is never counted less than it is).
 * Over it, the user's stream that has been behind the longest is closed first, never another user's.
 */
const MAX_UNSENT_PER_USER = 64 * 1024 * 1024;
/**
 * A stream's identity is decided at the upgrade and checked again this often, and at once when the
 * session or the verification of the credential behind it ends: a login that ended, a credential that
 * expired or was revoked, or rights that changed (an admin no longer one) close the stream.
 */
const RECHECK_MS = 5_000;
/**
 * A check whose answer holds until a time already past is made again this long after it, not at
 * once: a token accepted within auth.oidc.clock_skew past its exp is answered so until the
 * provider refuses it, and asking at once made a loop of verifications that held the event loop.
 */
const RECHECK_PAST_MS = 1_000;
/** A check that cannot be answered (the Hub or the state store is away) keeps the stream this long at most. */
const UNCONFIRMED_MAX_MS = 60_000;
/** Close code: the login behind the stream ended (expired, logged out, revoked); a reconnect gets a 401 and the client logs in again. */
export const CLOSE_LOGIN_ENDED = 4401;
/** Close code: the rights of the user behind the stream changed (e.g. no longer an admin); a reconnect gets what they may see now. */
export const CLOSE_RIGHTS_CHANGED = 4403;

/** A stream's unsent bytes, as the per-user bound sees them. */
interface Outbox {
  readonly ws: WebSocket;
  /** The turn of the event loop in which its unsent bytes last began to pile up (they have not been all sent since). */
  backlogSince: number;
}

/** An open stream, as the cluster fan-out sees it. */
interface ClusterSubscriber {
  /** The cluster as last sent on this stream (its JSON), to skip heartbeats that changed nothing. */
  readonly lastSent: Map<string, string>;
  sendData(data: string | Buffer): void;
}

export class EventStream {
  // Clients only ever send pings: a large message is refused before it is buffered.
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
  /** Open streams per user: a browser needs a few (tabs), a script looping over connects gets refused. */
  private readonly perUser = new Map<string, number>();
  /**
   * The streams of each user, and the admins' (who see every cluster). One listener on the engine
   * for all streams: a cluster's change reaches only its owner's streams (a heartbeat does not visit
   * 1,000 other users' streams), and its JSON is made once for all of them.
   */
  private readonly byUser = new Map<string, Set<ClusterSubscriber>>();
  private readonly admins = new Set<ClusterSubscriber>();
  /**
   * How to close each stream opened on a session's cookie, by the session's stored key: at once
   * when the session ends here (4401) or its user is no admin any more (4403).
   */
  private readonly bySession = new Map<string, Set<(code: number) => void>>();
  /** Each user's streams, for the bound on what they hold unsent together. */
  private readonly outboxes = new Map<string, Set<Outbox>>();
  /** Counts turns of the event loop: the sends of one event to many streams happen in one turn. */
  private turnNo = 0;
  private turnEnding = false;
  /** Changes are gathered for COALESCE_MS and each changed cluster is sent once: a cluster scaled by thousands of workers costs one message per window, not one per worker (each listing all). */
  private readonly pending = new Map<string, ClusterRecord>();
  private flushTimer: NodeJS.Timeout | null = null;
  private readonly onCluster = (c: ClusterRecord) => {
    if (!this.admins.size && !this.byUser.has(c.username)) return; // nobody watches
    this.pending.set(c.name, c);
    this.flushTimer ??= setTimeout(() => this.flush(), COALESCE_MS);
  };

  constructor(
    private readonly deps: { clusters: ClusterManager; broker: TokenBroker; identifier: Identifier; workflows: WorkflowEngine; log: FastifyBaseLogger },
  ) {
    deps.clusters.on('cluster', this.onCluster);
    deps.clusters.on('worker', this.onCluster);
    // (a logout, a Hub that refused the login's token: the stream learns it now, not at its next check)
    deps.identifier.onSessionEnd((key) => {
      for (const end of this.bySession.get(key) ?? []) end(CLOSE_LOGIN_ENDED);
    });
    deps.identifier.onSessionDemoted((key) => {
      for (const end of this.bySession.get(key) ?? []) end(CLOSE_RIGHTS_CHANGED);
    });
  }

  private subscribersOf(c: ClusterRecord): ClusterSubscriber[] {
    return [...(this.byUser.get(c.username) ?? []), ...this.admins];
  }

  private flush(): void {
    this.flushTimer = null;
    const batch = [...this.pending.values()];
    this.pending.clear();
    const { clusters } = this.deps;
    for (const c of batch) {
      if (!this.subscribersOf(c).length) continue;
      const live = clusters.activeWorkers(c.name);
      if (live) {
        this.deliver(c, live);
        continue;
      }
      // Its last event (it ended): the workers as recorded, ended ones included, like GET shows them.
      clusters.workersOf(c.name).then(
        (workers) => this.deliver(c, workers),
        (err: unknown) => this.deps.log.warn({ cluster: c.name, err: errorMessage(err) }, 'could not read the workers of an ended cluster'),
      );
    }
  }

  /** Sends a cluster to the streams that may see it and were not sent it as it is now; made into JSON once. */
  private deliver(c: ClusterRecord, workers: readonly WorkerRecord[]): void {
    const text = JSON.stringify(afClusterJson(c, workers, this.deps.clusters.groupsJson(c, workers)));
    // One Buffer for every stream (the same as JSON.stringify({ type: 'cluster', cluster }), without encoding the
    // cluster again): streams that do not read hold the same bytes, not a copy each.
    let message: Buffer | undefined;
    const ended = !isActive(c);
    for (const s of this.subscribersOf(c)) {
      if (s.lastSent.get(c.name) === text) continue; // heartbeats that changed nothing
      // an ended cluster's last message is not kept: a stream open for days would otherwise hold every cluster it ever showed
      if (ended) s.lastSent.delete(c.name);
      else s.lastSent.set(c.name, text);
      s.sendData((message ??= Buffer.from(`{"type":"cluster","cluster":${text}}`)));
    }
  }

  private subscribe(user: User, s: ClusterSubscriber): () => void {
    if (user.admin) {
      this.admins.add(s);
      return () => this.admins.delete(s);
    }
    let mine = this.byUser.get(user.name);
    if (!mine) this.byUser.set(user.name, (mine = new Set()));
    mine.add(s);
    return () => {
      mine.delete(s);
      if (!mine.size && this.byUser.get(user.name) === mine) this.byUser.delete(user.name);
    };
  }

  /** Handles the upgrade if it is for the event stream; false otherwise. */
  async handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<boolean> {
    if ((req.url ?? '').split('?')[0] !== EVENTS_PATH) return false;
    if (!sameOrigin(req)) {
      refuseUpgrade(socket, 403, 'cross_origin', "The event stream only accepts connections from the gateway's own origin");
      return true;
    }
    let user: User;
    let session: string | undefined;
    try {
      ({ user, session } = await this.deps.identifier.identify(req.headers));
    } catch (err) {
      refuseUpgrade(socket, err);
      return true;
    }
    if ((this.perUser.get(user.name) ?? 0) >= MAX_STREAMS_PER_USER) {
      refuseUpgrade(socket, 429, 'too_many_streams', `User ${user.name} has ${MAX_STREAMS_PER_USER} event streams open already; close one (a tab) first`);
      return true;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      this.perUser.set(user.name, (this.perUser.get(user.name) ?? 0) + 1);
      ws.once('close', () => {
        const n = (this.perUser.get(user.name) ?? 1) - 1;
        if (n > 0) this.perUser.set(user.name, n);
        else this.perUser.delete(user.name);
      });
      this.serve(ws, user, req.headers, session);
    });
    return true;
  }

  private turn(): number {
    if (!this.turnEnding) {
      this.turnEnding = true;
      setImmediate(() => {
        this.turnNo++;
        this.turnEnding = false;
      });
    }
    return this.turnNo;
  }

  /**
   * Makes room for `size` more unsent bytes on `self` within the user's bound by closing the user's
   * streams that have been behind the longest (then those holding the most); among streams that fell
   * behind in this same turn, `self` goes first (it is not sent what nobody has room for). False when
   * `self` was closed. When nothing else is held, one message larger than the bound still goes.
   */
  private roomFor(name: string, self: Outbox, size: number): boolean {
    const boxes = this.outboxes.get(name);
    if (!boxes) return true;
    let total = 0;
    for (const b of boxes) if (b.ws.readyState === b.ws.OPEN) total += b.ws.bufferedAmount;
    const now = this.turnNo;
    while (total > 0 && total + size > MAX_UNSENT_PER_USER) {
      let worst: Outbox | undefined;
      let worstSince = Infinity;
      let worstHeld = -1;
      for (const b of boxes) {
        if (b.ws.readyState !== b.ws.OPEN) continue;
        const held = b.ws.bufferedAmount;
        if (held === 0 && b !== self) continue;
        const since = held > 0 ? b.backlogSince : now;
        const worse = since !== worstSince ? since < worstSince : b === self || (worst !== self && held > worstHeld);
        if (worse) [worst, worstSince, worstHeld] = [b, since, held];
      }
      if (!worst) break;
      this.deps.log.warn({ user: name, unsent: worstHeld, user_unsent: total }, "closed an event stream: the user's streams together hold too much unsent");
      worst.ws.terminate();
      if (worst === self) return false;
      total -= worstHeld;
    }
    return true;
  }

  /** A run's event as bytes, written once for all the streams it goes to (a DAG can be megabytes). */
  private readonly encoded = new WeakMap<object, Buffer>();
  private bytesOf(of: object, event: () => AfEvent): Buffer {
    let bytes = this.encoded.get(of);
    if (bytes === undefined) this.encoded.set(of, (bytes = Buffer.from(JSON.stringify(event()))));
    return bytes;
  }

  /** `session`: the login session the identity came from despite an Authorization header (Identity.session). */
  private serve(ws: WebSocket, user: User, headers: IncomingHttpHeaders, session?: string): void {
    const { clusters } = this.deps;
    const lastSent = new Map<string, string>();
    const box: Outbox = { ws, backlogSince: 0 };
    let mine = this.outboxes.get(user.name);
    if (!mine) this.outboxes.set(user.name, (mine = new Set()));
    mine.add(box);
    const send = (event: AfEvent) => {
      if (ws.readyState === ws.OPEN) sendData(JSON.stringify(event));
    };
    const sendData = (data: string | Buffer) => {
      if (ws.readyState !== ws.OPEN) return;
      if (ws.bufferedAmount > MAX_UNSENT_PER_STREAM) {
        this.deps.log.warn({ user: user.name, unsent: ws.bufferedAmount }, 'closed an event stream that does not read what it is sent');
        ws.terminate();
        return;
      }
      if (!this.roomFor(user.name, box, typeof data === 'string' ? Buffer.byteLength(data) : data.length)) return;
      if (ws.bufferedAmount === 0) box.backlogSince = this.turn();
      ws.send(data, { binary: false });
    };
    const initial = clusters
      .activeClusters(['PENDING', 'RUNNING', 'STOPPING'], user.admin ? undefined : user.name)
      .map((e) => afClusterJson(e.cluster, e.workers, clusters.groupsJson(e.cluster, e.workers)));
    for (const c of initial) lastSent.set(c.name, JSON.stringify(c));
    send({ type: 'snapshot', clusters: initial });
    const unsubscribe = this.subscribe(user, { lastSent, sendData });

    const onToken = (username: string) => {
      if (username === user.name) send({ type: 'token', token: this.deps.broker.status(user) });
    };
    const onRun = (owner: string, run: WorkflowRun) => {
      if (user.admin || owner === user.name) sendData(this.bytesOf(run, () => ({ type: 'workflow', run })));
    };
    const onDag = (owner: string, dag: WorkflowDag) => {
      if (user.admin || owner === user.name) sendData(this.bytesOf(dag, () => ({ type: 'workflow-dag', dag })));
    };
    this.deps.workflows.on('run', onRun);
    this.deps.workflows.on('dag', onDag);
    this.deps.broker.on('token', onToken);
    let alive = true;
    ws.on('pong', () => (alive = true));
    const ping = setInterval(() => {
      if (!alive) return ws.terminate();
      alive = false;
      ws.ping();
    }, PING_MS);

    // The identity behind the stream, checked again (see RECHECK_MS): the headers of the upgrade
    // are held as long as the connection that carried them, and never logged.
    let recheck: NodeJS.Timeout | undefined;
    let confirmed = Date.now();
    const checkBy = (until: number) => {
      if (ws.readyState !== ws.OPEN) return;
      const wait = until - Date.now() + 1;
      recheck = setTimeout(() => void check(), wait > 0 ? Math.min(RECHECK_MS, wait) : RECHECK_PAST_MS);
    };
    const check = async () => {
      recheck = undefined;
      let now: Awaited<ReturnType<Identifier['reidentify']>>;
      try {
        now = await this.deps.identifier.reidentify(headers, ws);
      } catch (err) {
        if (Date.now() - confirmed > UNCONFIRMED_MAX_MS) return stop(1013, 'the login behind this stream could not be checked: reconnect later');
        // an outage (the Hub, the state store) is logged where it happens, not once per stream every 5 s
        this.deps.log.debug({ user: user.name, err: errorMessage(err) }, "could not check again who an event stream's user is");
        return checkBy(Date.now() + RECHECK_MS);
      }
      if (ws.readyState !== ws.OPEN) return;
      if (!now) return stop(CLOSE_LOGIN_ENDED, 'login ended: log in again');
      if (now.user.name !== user.name || now.user.admin !== user.admin) return stop(CLOSE_RIGHTS_CHANGED, 'rights changed: reconnect');
      confirmed = Date.now();
      checkBy(now.until);
    };
    checkBy(user.expiresAt ?? Infinity);

    let stopped = false;
    /** Ends what the stream listens to (at once: a stream closed for its rights gets nothing more), and closes it with `code` if given. */
    const stop = (code?: number, reason?: string) => {
      if (code !== undefined && ws.readyState === ws.OPEN) {
        this.deps.log.info({ user: user.name, code, reason }, 'closed an event stream whose login ended or whose rights changed');
        ws.close(code, reason);
      }
      if (stopped) return;
      stopped = true;
      clearInterval(ping);
      clearTimeout(recheck);
      unsubscribe();
      this.deps.workflows.off('run', onRun);
      this.deps.workflows.off('dag', onDag);
      this.deps.broker.off('token', onToken);
      mine.delete(box);
      const ends = sessionKey === undefined ? undefined : this.bySession.get(sessionKey);
      ends?.delete(sessionEnded);
      if (ends && !ends.size) this.bySession.delete(sessionKey!);
      if (!mine.size && this.outboxes.get(user.name) === mine) this.outboxes.delete(user.name);
    };
    const sessionKey = this.deps.identifier.sessionKeyOf(headers) ?? session;
    const sessionEnded = (code: number) => stop(code, code === CLOSE_LOGIN_ENDED ? 'login ended: log in again' : 'rights changed: reconnect');
    if (sessionKey) {
      let ends = this.bySession.get(sessionKey);
      if (!ends) this.bySession.set(sessionKey, (ends = new Set()));
      ends.add(sessionEnded);
    }
    ws.on('close', () => stop());
    ws.on('error', (err) => this.deps.log.debug({ err: err.message }, 'event stream error'));
  }

  close(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.deps.clusters.off('cluster', this.onCluster);
    this.deps.clusters.off('worker', this.onCluster);
    for (const ws of this.wss.clients) ws.terminate();
    this.wss.close();
  }
}
