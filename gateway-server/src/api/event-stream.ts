// The event stream: one WebSocket per browser tab at /api/af/events. It sends a snapshot of the
// caller's active clusters, then each change of a cluster, token or workflow run the caller may see,
// so panels never poll.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { FastifyBaseLogger } from 'fastify';
import type { AfEvent } from '@af-gateway/schemas';
import type { User } from '../auth/authenticator.js';
import type { Identifier } from '../auth/identify.js';
import type { ClusterManager } from '../clusters/cluster-manager.js';
import type { ClusterRecord, WorkerRecord } from '../clusters/model.js';
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

export class EventStream {
  // Clients only ever send pings: a large message is refused before it is buffered.
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
  /** Open streams per user: a browser needs a few (tabs), a script looping over connects gets refused. */
  private readonly perUser = new Map<string, number>();

  constructor(
    private readonly deps: { clusters: ClusterManager; broker: TokenBroker; identifier: Identifier; workflows: WorkflowEngine; log: FastifyBaseLogger },
  ) {}

  /** Handles the upgrade if it is for the event stream; false otherwise. */
  async handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<boolean> {
    if ((req.url ?? '').split('?')[0] !== EVENTS_PATH) return false;
    if (!sameOrigin(req)) {
      refuseUpgrade(socket, 403, 'cross_origin', "The event stream only accepts connections from the gateway's own origin");
      return true;
    }
    let user: User;
    try {
      user = (await this.deps.identifier.identify(req.headers)).user;
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
      this.serve(ws, user);
    });
    return true;
  }

  /** A run's event as bytes, written once for all the streams it goes to (a DAG can be megabytes). */
  private readonly encoded = new WeakMap<object, Buffer>();
  private bytesOf(of: object, event: () => AfEvent): Buffer {
    let bytes = this.encoded.get(of);
    if (bytes === undefined) this.encoded.set(of, (bytes = Buffer.from(JSON.stringify(event()))));
    return bytes;
  }

  private serve(ws: WebSocket, user: User): void {
    const { clusters } = this.deps;
    const visible = (c: ClusterRecord) => user.admin || c.username === user.name;
    const lastSent = new Map<string, string>();
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
      ws.send(data, { binary: false });
    };
    const sendCluster = (c: ClusterRecord, workers: readonly WorkerRecord[]) => {
      const cluster = afClusterJson(c, workers, clusters.groupsJson(c, workers));
      const text = JSON.stringify(cluster);
      if (lastSent.get(c.name) === text) return; // heartbeats that changed nothing
      lastSent.set(c.name, text);
      send({ type: 'cluster', cluster });
    };
    // Changes are gathered for COALESCE_MS and each changed cluster is sent once: a cluster scaled
    // by thousands of workers costs one message per window, not one per worker (each listing all).
    const pending = new Map<string, ClusterRecord>();
    let flushTimer: NodeJS.Timeout | null = null;
    const onCluster = (c: ClusterRecord) => {
      if (!visible(c)) return;
      pending.set(c.name, c);
      flushTimer ??= setTimeout(() => {
        flushTimer = null;
        const batch = [...pending.values()];
        pending.clear();
        for (const one of batch) sendNow(one);
      }, COALESCE_MS);
    };
    const sendNow = (c: ClusterRecord) => {
      const live = clusters.activeWorkers(c.name);
      if (live) return sendCluster(c, live);
      // Its last event (it ended): the workers as recorded, ended ones included, like GET shows them.
      clusters.workersOf(c.name).then(
        (workers) => sendCluster(c, workers),
        (err: unknown) => this.deps.log.warn({ cluster: c.name, err: errorMessage(err) }, 'could not read the workers of an ended cluster'),
      );
    };
    const initial = clusters
      .activeClusters(['PENDING', 'RUNNING', 'STOPPING'], user.admin ? undefined : user.name)
      .map((e) => afClusterJson(e.cluster, e.workers, clusters.groupsJson(e.cluster, e.workers)));
    for (const c of initial) lastSent.set(c.name, JSON.stringify(c));
    send({ type: 'snapshot', clusters: initial });

    const onWorker = (c: ClusterRecord) => onCluster(c);
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
    clusters.on('cluster', onCluster);
    clusters.on('worker', onWorker);
    this.deps.broker.on('token', onToken);
    let alive = true;
    ws.on('pong', () => (alive = true));
    const ping = setInterval(() => {
      if (!alive) return ws.terminate();
      alive = false;
      ws.ping();
    }, PING_MS);
    ws.on('close', () => {
      clearInterval(ping);
      if (flushTimer) clearTimeout(flushTimer);
      clusters.off('cluster', onCluster);
      this.deps.workflows.off('run', onRun);
      this.deps.workflows.off('dag', onDag);
      clusters.off('worker', onWorker);
      this.deps.broker.off('token', onToken);
    });
    ws.on('error', (err) => this.deps.log.debug({ err: err.message }, 'event stream error'));
  }

  close(): void {
    for (const ws of this.wss.clients) ws.terminate();
    this.wss.close();
  }
}
