#!/usr/bin/env node
// The load benchmark's clients (issue 22, item 5): many concurrent clients, each an open loop of
// mixed API operations with a think time between them, over raw sockets (as api-load.mjs: the
// loader must cost little CPU on a 2-core machine it shares with the gateway it measures).
// A share of the clients opens a new TCP connection for every request (Connection: close, the
// latency counted from connect()), the others keep theirs alive. Operations: list, get, options,
// an AF "heartbeat-like" read of one cluster (--af), the dashboard proxy, scales (--scalers
// clients, one every --scale-every-ms each), creates (a few clients create a cluster, wait for it
// to run and delete it), and event-stream
// WebSockets (--streams, reconnecting every --stream-seconds). Only for loopback targets. Prints
// one JSON object on stdout.
//
//   node bench/load-mix.mjs --port P --clients 1000 --seconds 60 --auth 'Basic ...' --cluster NAME ...
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    clients: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '60' },
    warmup: { type: 'string', default: '5' },
    'think-ms': { type: 'string', default: '1000' },
    'new-share': { type: 'string', default: '0.2' },
    auth: { type: 'string' },
    cluster: { type: 'string', multiple: true, default: [] },
    af: { type: 'boolean', default: false },
    streams: { type: 'string', default: '0' },
    'stream-seconds': { type: 'string', default: '15' },
    creators: { type: 'string', default: '2' },
    'max-scale': { type: 'string', default: '2' },
    scalers: { type: 'string', default: '2' },
    'scale-every-ms': { type: 'string', default: '5000' },
  },
});
const host = values.host;
if (!['127.0.0.1', 'localhost', '::1'].includes(host)) throw new Error('load-mix only targets loopback');
const port = Number(values.port);
const clients = Number(values.clients);
const seconds = Number(values.seconds);
const warmup = Number(values.warmup);
const thinkMs = Number(values['think-ms']);
const newShare = Number(values['new-share']);
const clusters = values.cluster;
const streams = Number(values.streams);
const streamSeconds = Number(values['stream-seconds']);
const creators = Number(values.creators);
const maxScale = Number(values['max-scale']);
const scalers = Number(values.scalers);
const scaleEveryMs = Number(values['scale-every-ms']);
if (!clusters.length) throw new Error('--cluster NAME: at least one running cluster');
const auth = `Authorization: ${values.auth}\r\n`;
const REQUEST_TIMEOUT_MS = 15_000;

// Latency histograms in 100 µs buckets up to 20 s, per kind of connection and per operation.
const BUCKET_US = 100;
const BUCKETS = 200_000;
const hists = new Map();
function hist(key) {
  let h = hists.get(key);
  if (!h) hists.set(key, (h = { counts: new Uint32Array(BUCKETS), n: 0, max: 0 }));
  return h;
}
let measuring = false;
let done = false;
const statuses = {};
const errors = {};
const errorSamples = [];
function error(kind, detail) {
  if (!measuring) return;
  errors[kind] = (errors[kind] ?? 0) + 1;
  if (errorSamples.length < 20) errorSamples.push(`${kind}: ${detail}`);
}
function record(op, fresh, startNs, status) {
  if (!measuring) return;
  const us = Number(process.hrtime.bigint() - startNs) / 1000;
  for (const key of [fresh ? 'api:new' : 'api:keepalive', `op:${op}`]) {
    const h = hist(key);
    h.counts[Math.min(BUCKETS - 1, Math.floor(us / BUCKET_US))]++;
    h.n++;
    h.max = Math.max(h.max, us / 1000);
  }
  statuses[status] = (statuses[status] ?? 0) + 1;
}
function percentile(h, p) {
  const rank = Math.ceil((p / 100) * h.n);
  let seen = 0;
  for (let i = 0; i < BUCKETS; i++) {
    seen += h.counts[i];
    if (seen >= rank) return ((i + 1) * BUCKET_US) / 1000;
  }
  return NaN;
}

const pick = (a) => a[Math.floor(Math.random() * a.length)];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const think = () => sleep(-Math.log(1 - Math.random()) * thinkMs);

function requestBytes(method, path, body, keepAlive) {
  const b = body === undefined ? '' : JSON.stringify(body);
  const head =
    `${method} ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\n${auth}Accept: application/json\r\n` +
    (b ? `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(b)}\r\n` : method === 'GET' ? '' : 'Content-Length: 0\r\n') +
    (keepAlive ? '' : 'Connection: close\r\n') +
    '\r\n';
  return Buffer.from(head + b, 'latin1');
}

const CRLFCRLF = Buffer.from('\r\n\r\n');

/** One HTTP/1.1 connection that answers one request at a time: resolves {status, body} or rejects. */
class Conn {
  constructor() {
    this.socket = net.connect({ host, port, noDelay: true });
    this.buf = Buffer.alloc(0);
    this.waiter = null;
    this.closed = false;
    this.socket.on('data', (chunk) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
      this.parse();
    });
    const fail = (err) => {
      this.closed = true;
      const w = this.waiter;
      this.waiter = null;
      w?.reject(err);
    };
    this.socket.on('error', (err) => fail(err));
    this.socket.on('close', () => fail(new Error('connection closed before the answer')));
  }
  parse() {
    if (!this.waiter) return;
    const end = this.buf.indexOf(CRLFCRLF);
    if (end < 0) return;
    const head = this.buf.toString('latin1', 0, end);
    const cl = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    let body;
    let rest;
    if (cl) {
      const need = end + 4 + Number(cl[1]);
      if (this.buf.length < need) return;
      body = this.buf.subarray(end + 4, need);
      rest = this.buf.subarray(need);
    } else if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
      const term = this.buf.indexOf('0\r\n\r\n', end + 4);
      if (term < 0) return;
      body = this.buf.subarray(end + 4, term); // (chunk sizes left in: only statuses and names are read)
      rest = this.buf.subarray(term + 5);
    } else {
      body = Buffer.alloc(0);
      rest = this.buf.subarray(end + 4);
    }
    this.buf = rest;
    const w = this.waiter;
    this.waiter = null;
    w.resolve({ status: Number(head.slice(9, 12)), body });
  }
  send(bytes) {
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new Error('connection closed'));
      const timer = setTimeout(() => {
        this.waiter = null;
        this.socket.destroy();
        reject(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`));
      }, REQUEST_TIMEOUT_MS);
      this.waiter = {
        resolve: (v) => (clearTimeout(timer), resolve(v)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      };
      this.socket.write(bytes);
    });
  }
  close() {
    this.socket.destroy();
  }
}

function operation() {
  const c = pick(clusters);
  const r = Math.random() * 100;
  if (r < 30) return ['list', 'GET', '/api/v1/clusters/'];
  if (r < 57) return ['get', 'GET', `/api/v1/clusters/${c}`];
  if (r < 68) return ['options', 'GET', '/api/v1/options'];
  if (r < 84) return values.af ? ['af-get', 'GET', `/api/af/clusters/${c}`] : ['get', 'GET', `/api/v1/clusters/${c}`];
  return ['dashboard', 'GET', `/clusters/${c}/health`];
}

// Scales: each scaler picks a cluster every --scale-every-ms and scales it to 0..limit+1 (past the
// limit is capped). Every scale starts or stops real worker processes, whose Python start-up costs
// about a CPU second each: at the rate of the reads this load would be all worker churn.
async function scaler() {
  const conn = { c: new Conn() };
  await sleep(Math.random() * scaleEveryMs);
  while (!done) {
    const c = pick(clusters);
    try {
      if (conn.c.closed) conn.c = new Conn();
      await call(conn.c, false, 'scale', 'POST', `/api/v1/clusters/${c}/scale`, { count: Math.floor(Math.random() * (maxScale + 2)) });
    } catch (err) {
      error('socket', `scale ${c}: ${err.message}`);
    }
    await sleep(scaleEveryMs);
  }
  conn.c.close();
}

async function call(conn, fresh, op, method, path, body) {
  const start = process.hrtime.bigint();
  let c = conn;
  if (fresh) c = new Conn();
  try {
    const { status, body: answer } = await c.send(requestBytes(method, path, body, !fresh));
    record(op, fresh, start, status);
    if (status >= 400) error(`http ${status}`, `${op} ${path}: ${answer.toString('utf8', 0, 200)}`);
    return { status, answer };
  } finally {
    if (fresh) c.close();
  }
}

async function client(i) {
  const fresh = i < Math.round(clients * newShare);
  let conn = null;
  await sleep(Math.random() * thinkMs);
  while (!done) {
    const [op, method, path, body] = operation();
    try {
      if (!fresh && (!conn || conn.closed)) conn = new Conn();
      await call(conn, fresh, op, method, path, body);
    } catch (err) {
      error('socket', `${op} ${path}: ${err.message}`);
      conn?.close();
      conn = null;
    }
    await think();
  }
  conn?.close();
}

let created = 0;
let deleted = 0;
const leftover = new Set();
async function creator() {
  const conn = { c: new Conn() };
  const use = () => (conn.c.closed ? (conn.c = new Conn()) : conn.c);
  while (!done) {
    let name;
    try {
      const { status, answer } = await call(use(), false, 'create', 'POST', '/api/v1/clusters/', { cluster_options: {} });
      if (status !== 201 && status !== 200) throw new Error(`create answered ${status}`);
      name = JSON.parse(answer.toString()).name;
      created++;
      leftover.add(name);
      for (const end = Date.now() + 60_000; Date.now() < end && !done;) {
        const { answer: a } = await call(use(), false, 'get', 'GET', `/api/v1/clusters/${name}`);
        if (JSON.parse(a.toString()).status === 'RUNNING') break;
        await sleep(500);
      }
    } catch (err) {
      error('create', err.message);
    }
    if (name) {
      try {
        const { status } = await call(use(), false, 'delete', 'DELETE', `/api/v1/clusters/${name}`);
        if (status < 300) {
          deleted++;
          leftover.delete(name);
        }
      } catch (err) {
        error('delete', err.message);
      }
    }
    await think();
  }
  conn.c.close();
}

// Event streams: the WebSocket upgrade is timed as a new-connection request; frames are counted.
let streamUpgrades = 0;
let streamBytes = 0;
async function stream() {
  await sleep(Math.random() * 2000);
  while (!done) {
    const start = process.hrtime.bigint();
    const socket = net.connect({ host, port, noDelay: true });
    const key = randomBytes(16).toString('base64');
    socket.write(
      `GET /api/af/events HTTP/1.1\r\nHost: ${host}:${port}\r\nOrigin: http://${host}:${port}\r\n${auth}` +
        `Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\n\r\n`,
    );
    await new Promise((resolve) => {
      let upgraded = false;
      let head = Buffer.alloc(0);
      const timer = setTimeout(() => {
        if (!upgraded) error('stream', 'no upgrade answer in time');
        socket.destroy();
      }, streamSeconds * 1000);
      socket.on('data', (chunk) => {
        if (upgraded) {
          if (measuring) streamBytes += chunk.length;
          return;
        }
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf(CRLFCRLF);
        if (end < 0) return;
        const status = Number(head.toString('latin1', 9, 12));
        record('event-stream', true, start, status);
        if (status !== 101) {
          error(`stream http ${status}`, head.toString('utf8', 0, 200));
          socket.destroy();
          return;
        }
        upgraded = true;
        if (measuring) streamUpgrades++;
      });
      socket.on('error', (err) => {
        if (!done) error('stream', err.message);
      });
      socket.on('close', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

const t0 = process.hrtime.bigint();
const tasks = [
  ...Array.from({ length: clients }, (_, i) => client(i)),
  ...Array.from({ length: streams }, () => stream()),
  ...Array.from({ length: creators }, () => creator()),
  ...Array.from({ length: scalers }, () => scaler()),
];
// event-loop stalls of the loader itself would show up as latency: report them
const { monitorEventLoopDelay } = await import('node:perf_hooks');
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
await sleep(warmup * 1000);
measuring = true;
loopDelay.enable();
const m0 = process.hrtime.bigint();
const cpu0 = process.cpuUsage();
await sleep(seconds * 1000);
measuring = false;
loopDelay.disable();
const elapsed = Number(process.hrtime.bigint() - m0) / 1e9;
const cpu = process.cpuUsage(cpu0);
done = true;
await Promise.race([Promise.all(tasks), sleep(70_000)]);

const summary = {};
for (const [key, h] of [...hists].sort()) {
  summary[key] = { n: h.n, rps: h.n / elapsed, p50_ms: percentile(h, 50), p99_ms: percentile(h, 99), max_ms: h.max };
}
process.stdout.write(
  JSON.stringify({
    clients,
    new_connection_clients: Math.round(clients * newShare),
    streams,
    creators,
    seconds: elapsed,
    total_s: Number(process.hrtime.bigint() - t0) / 1e9,
    latency: summary,
    statuses,
    errors,
    error_samples: errorSamples,
    created,
    deleted,
    not_deleted: [...leftover],
    stream_upgrades: streamUpgrades,
    stream_bytes: streamBytes,
    loader_cpu_s: (cpu.user + cpu.system) / 1e6,
    loader_loop_delay_p99_ms: loopDelay.percentile(99) / 1e6,
  }) + '\n',
);
process.exit(0);
