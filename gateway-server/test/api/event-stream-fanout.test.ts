// The event stream's cluster fan-out: one listener on the engine for every stream, a change goes to
// its owner's streams and the admins' only, once per coalescing window, and nothing when it did not
// change what the stream was last sent.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventEmitter } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';
import pino from 'pino';
import type { FastifyBaseLogger } from 'fastify';
import { EventStream } from '../../src/api/event-stream.js';
import type { ClusterRecord } from '../../src/clusters/model.js';

const log = pino({ level: 'silent' }) as unknown as FastifyBaseLogger;

function cluster(name: string, username: string): ClusterRecord {
  return {
    name,
    displayName: name,
    username,
    groups: [],
    options: {},
    settings: { worker_cores: 1, worker_memory: 1 },
    status: 'RUNNING',
    stopRequested: false,
    token: 't',
    tlsCert: '',
    tlsKey: '',
    scheduler: null,
    schedulerAddress: '',
    dashboardAddress: '',
    apiAddress: '',
    count: 0,
    groupTargets: {},
    adaptive: null,
    startTime: 1,
    stopTime: null,
    lastHeartbeat: null,
    message: '',
    workerFailures: 0,
    workDir: '/nonexistent',
  } as unknown as ClusterRecord;
}

const records = [cluster('a1', 'alice'), cluster('a2', 'alice'), cluster('b1', 'bob')];
class FakeClusters extends EventEmitter {
  activeClusters(_statuses: readonly string[], username?: string) {
    return records.filter((c) => username === undefined || c.username === username).map((c) => ({ cluster: c, workers: [] }));
  }
  activeWorkers() {
    return [];
  }
  async workersOf() {
    return [];
  }
  groupsJson() {
    return [];
  }
}

const clusters = new FakeClusters();
let server: http.Server;
let stream: EventStream;
let port: number;

beforeAll(async () => {
  stream = new EventStream({
    clusters: clusters as never,
    broker: Object.assign(new EventEmitter(), { status: () => ({}) }) as never,
    workflows: new EventEmitter() as never,
    identifier: {
      identify: async (headers: http.IncomingHttpHeaders) => {
        const name = String(headers['x-user']);
        return { user: { name, groups: [], admin: name === 'root' } };
      },
      reidentify: async (headers: http.IncomingHttpHeaders) => {
        const name = String(headers['x-user']);
        return { user: { name, groups: [], admin: name === 'root' }, until: Infinity };
      },
      onSessionEnd: () => undefined,
      onSessionDemoted: () => undefined,
      sessionKeyOf: () => undefined,
    } as never,
    log,
  });
  server = http.createServer((_req, res) => res.writeHead(404).end());
  server.on('upgrade', (req, socket, head) => void stream.handleUpgrade(req, socket, head));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  stream.close();
  await new Promise((r) => server.close(r));
});

interface Client {
  ws: WebSocket;
  got: { type: string; cluster?: { name: string; workers: { requested: number } }; clusters?: unknown[] }[];
}
async function open(user: string): Promise<Client> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/api/af/events`, { headers: { 'x-user': user } });
  const c: Client = { ws, got: [] };
  ws.on('message', (d) => c.got.push(JSON.parse(d.toString()) as Client['got'][number]));
  await new Promise((r) => ws.once('open', r));
  while (!c.got.length) await sleep(5); // the snapshot
  return c;
}
const clusterEvents = (c: Client) => c.got.filter((e) => e.type === 'cluster');

describe('cluster fan-out', () => {
  it("sends a change to its owner's streams and the admins' only, once per window, with one engine listener for all streams", async () => {
    const [alice1, alice2, bob, root] = [await open('alice'), await open('alice'), await open('bob'), await open('root')];
    expect(alice1.got[0]!.clusters).toHaveLength(2);
    expect(root.got[0]!.clusters).toHaveLength(3);
    expect(clusters.listenerCount('cluster')).toBe(1);
    expect(clusters.listenerCount('worker')).toBe(1);

    records[0]!.count = 3;
    clusters.emit('cluster', records[0]);
    clusters.emit('worker', records[0]);
    clusters.emit('cluster', records[0]);
    await sleep(300);
    for (const c of [alice1, alice2, root]) {
      expect(clusterEvents(c)).toHaveLength(1);
      expect(clusterEvents(c)[0]!.cluster).toMatchObject({ name: 'a1', workers: { requested: 3 } });
    }
    expect(clusterEvents(bob)).toHaveLength(0);

    // a heartbeat that changed nothing sends nothing
    clusters.emit('cluster', records[0]);
    await sleep(300);
    expect(clusterEvents(alice1)).toHaveLength(1);

    // a closed stream is no longer sent to; the others still are
    alice2.ws.close();
    await sleep(100);
    records[2]!.count = 1;
    records[1]!.count = 5;
    clusters.emit('cluster', records[2]);
    clusters.emit('cluster', records[1]);
    await sleep(300);
    expect(clusterEvents(bob).map((e) => e.cluster!.name)).toEqual(['b1']);
    expect(clusterEvents(alice1).map((e) => e.cluster!.name)).toEqual(['a1', 'a2']);
    expect(clusterEvents(root).map((e) => e.cluster!.name)).toEqual(['a1', 'b1', 'a2']);
    expect(clusterEvents(alice2)).toHaveLength(1);
    for (const c of [alice1, bob, root]) c.ws.close();
  });

  it("sends an ended cluster's last message as text and then keeps nothing of it on the stream", async () => {
    const alice = await open('alice');
    const held = () => {
      const subs = (stream as unknown as { byUser: Map<string, Set<{ lastSent: Map<string, string> }>> }).byUser.get('alice')!;
      return [...subs][0]!.lastSent;
    };
    expect([...held().keys()].sort()).toEqual(['a1', 'a2']);
    const gone = { ...records[1]!, status: 'STOPPED', stopTime: 2 } as ClusterRecord;
    clusters.emit('cluster', gone);
    await sleep(300);
    // a text frame (parsed as JSON by the client), the cluster as ended
    expect(clusterEvents(alice).map((e) => [e.cluster!.name, (e.cluster as unknown as { status: string }).status])).toEqual([['a2', 'STOPPED']]);
    // a stream open for days does not hold every cluster it ever showed
    expect([...held().keys()]).toEqual(['a1']);
    alice.ws.close();
  });
});
