#!/usr/bin/env node
// Scale (issue 22 item 4): our gateway as its own process (the real `serve` path, real HTTP, simple
// auth, the default SQLite state store) with the memory backend, which runs nothing: each cluster's
// "scheduler" is this script, which sends the heartbeats a scheduler sends (the real heartbeat route,
// each cluster's own token, every `--period` seconds, spread evenly). Steps of clusters (default 1k,
// 5k, 10k, 10 per user, `--workers` per cluster): at each step, heartbeat latency (p50/p99), the list of
// one user's clusters (p99), the gateway's RSS and CPU. At the last step, `--sessions` event streams
// (the WebSocket the Lab opens, one user each): every session must get the event of its cluster's
// change, and the delay from the heartbeat that made it. Targets: heartbeat p99 <= 10 ms, list p99 <=
// 5 ms, RSS <= 150 MB per 1,000 clusters.
//
// The gateway must be built (npx tsc -b gateway-server). The memory backend is accepted only with
// AF_GATEWAY_ALLOW_MEMORY_BACKEND=1, which this script sets for the gateway it starts.
//
// Usage: node bench/bench_scale.mjs [--steps 1000,5000,10000] [--workers 10] [--per-user 10]
//        [--period 10] [--seconds 20] [--sessions 1000] [--json FILE]
// This loader shares the machine's cores with the gateway: its own CPU is printed beside.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, openSync, readSync, closeSync, statSync } from 'node:fs';
import http from 'node:http';
import { createServer } from 'node:net';
import { tmpdir, loadavg, cpus } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import WebSocket from 'ws';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(REPO, 'gateway-server', 'dist', 'cli.js');
const LOOP_DELAY_PRELOAD = join(REPO, 'bench', 'loop-delay-preload.mjs');
const REQUEST_TIME_PRELOAD = join(REPO, 'bench', 'request-time-preload.mjs');
const TARGET = { heartbeatP99: 10, listP99: 5, rssPer1k: 150 };

const USAGE = `Usage: node bench/bench_scale.mjs [options]    (values as "--key value" or "--key=value")
  --steps N,N,...     clusters at each step, increasing (default 500,1000,5000,10000)
  --peer-steps N,...  steps for the peer, dask-gateway-server, or "none" (default 500)
  --workers N         workers per cluster (default 10)
  --per-user N        clusters per user (default 10)
  --period S          heartbeat period of every cluster in seconds (default 10)
  --seconds S         measurement window at each step (default 15)
  --sessions N        event streams opened at the last step for the fan-out (default 1000; 0: none)
  --json FILE         write the raw figures
  --heartbeats serial|concurrent
                      serial (default): at most one heartbeat of a cluster in flight, as a Dask scheduler
                      sends them (one awaited at a time); a beat due meanwhile sends the latest state
                      when the previous one is answered. concurrent: every beat at once (the old bench)
  --node-arg ARG      an argument for our gateway's node, repeatable (--node-arg=--cpu-prof,
                      --node-arg=--cpu-prof-dir=DIR, --node-arg=--trace-gc)
  --help              this text`;

const KNOWN = new Set(['--steps', '--peer-steps', '--workers', '--per-user', '--period', '--seconds', '--sessions', '--json', '--node-arg', '--heartbeats']);

function parseArgs(argv) {
  const a = {
    steps: [500, 1000, 5000, 10000],
    peerSteps: [500],
    workers: 10,
    perUser: 10,
    period: 10,
    seconds: 15,
    sessions: 1000,
    json: null,
    nodeArgs: [],
    heartbeats: 'serial',
  };
  for (let i = 0; i < argv.length; i++) {
    let k = argv[i];
    if (k === '--help' || k === '-h') {
      console.log(USAGE);
      process.exit(0);
    }
    let v;
    const eq = k.indexOf('=');
    if (k.startsWith('--') && eq > 0) [k, v] = [k.slice(0, eq), k.slice(eq + 1)];
    else v = argv[++i];
    if (!KNOWN.has(k)) throw new Error(`unknown argument ${k} (--help lists the options)`);
    if (v === undefined) throw new Error(`${k} needs a value (--help lists the options)`);
    if (k === '--steps') a.steps = v.split(',').map(Number);
    else if (k === '--peer-steps') a.peerSteps = v === 'none' ? [] : v.split(',').map(Number);
    else if (k === '--workers') a.workers = Number(v);
    else if (k === '--per-user') a.perUser = Number(v);
    else if (k === '--period') a.period = Number(v);
    else if (k === '--seconds') a.seconds = Number(v);
    else if (k === '--sessions') a.sessions = Number(v);
    else if (k === '--json') a.json = v;
    else if (k === '--node-arg') a.nodeArgs.push(v);
    else if (k === '--heartbeats' && (v === 'serial' || v === 'concurrent')) a.heartbeats = v;
    else throw new Error(`${k} ${v}: not a value it takes (--help lists the options)`);
  }
  if (a.steps.some((n) => !Number.isInteger(n) || n < 1) || !a.steps.every((n, i) => i === 0 || n > a.steps[i - 1])) {
    throw new Error('--steps must be increasing whole numbers');
  }
  return a;
}

const log = (msg) => console.log(`[scale ${new Date().toISOString().slice(11, 19)}] ${msg}`);

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** CPU seconds (user + system) and RSS (bytes) of a process, from /proc. */
function procStat(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  const tck = 100; // USER_HZ on Linux
  const cpu = (Number(stat[11]) + Number(stat[12])) / tck;
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
  return { cpu, rss: rssKb * 1024 };
}
/**
 * How long (ms) the process's main thread, its event loop, has waited runnable for a core (the
 * scheduler's run queue; /proc/PID/schedstat's second field): time the machine, not the code, adds.
 */
function runQueueWaitMs(pid) {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[1]) / 1e6;
  } catch {
    return NaN;
  }
}
const selfCpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

function quantile(sorted, q) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}
function summary(ms) {
  const s = [...ms].sort((x, y) => x - y);
  return { n: s.length, p50: quantile(s, 0.5), p99: quantile(s, 0.99), max: s[s.length - 1] ?? NaN };
}
const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : '-');
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : '-');
const mb = (b) => b / 1048576;

/** The gateway's event-loop delay over [t0, t1] (epoch s), from the preload's lines: worst p99 and max of its seconds. */
function gatewayLoopDelay(file, t0, t1) {
  if (!file || !existsSync(file)) return null;
  const secs = readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l))
    .filter((x) => x.t >= t0 && x.t <= t1 + 1);
  if (!secs.length) return null;
  const p99s = secs.map((x) => x.p99_ms).sort((a, b) => a - b);
  // (the histogram's samples include its 5 ms sampling period: what is beyond it is the delay)
  return {
    seconds: secs.length,
    p99_median: quantile(p99s, 0.5) - LOOP_RESOLUTION_MS,
    p99_worst: p99s[p99s.length - 1] - LOOP_RESOLUTION_MS,
    max: Math.max(...secs.map((x) => x.max_ms)) - LOOP_RESOLUTION_MS,
  };
}

/** The gateway's own time on lists and heartbeats over [t0, t1] (epoch s), from the preload's lines; null for the peer. */
function gatewayRequestTime(file, t0, t1) {
  if (!file || !existsSync(file)) return null;
  const list = [];
  const heartbeat = [];
  for (const l of readFileSync(file, 'utf8').split('\n')) {
    if (!l) continue;
    const x = JSON.parse(l);
    if (x.t < t0 + 1 || x.t > t1 + 1) continue;
    list.push(...x.list);
    heartbeat.push(...x.heartbeat);
  }
  return { list: summary(list), heartbeat: summary(heartbeat) };
}

/** How many clusters our gateway has logged as failed (its warn-level log in the work dir); null for the peer. */
function failedClusters(work) {
  const file = join(work, 'gateway.log');
  if (!existsSync(file)) return null;
  return readFileSync(file, 'utf8').split('"msg":"cluster failed"').length - 1;
}

// --- HTTP ---------------------------------------------------------------------------------------

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
/** This loader's own event-loop delay: a stalled loader reads answers late and inflates every latency it measures. */
const LOOP_RESOLUTION_MS = 5; // as in bench/loop-delay-preload.mjs
const loaderDelay = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
loaderDelay.enable();
let PORT = 0;
const basic = (user) => `Basic ${Buffer.from(`${user}:x`).toString('base64')}`;

/** One request; resolves {status, body, ms} (ms from the write to the end of the answer). */
function request(method, path, { auth, body } = {}) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers = auth ? { Authorization: auth } : {};
    if (payload) Object.assign(headers, { 'Content-Type': 'application/json', 'Content-Length': payload.length });
    let t0 = 0;
    const req = http.request({ host: '127.0.0.1', port: PORT, method, path, headers, agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString(), ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
      res.on('error', reject);
    });
    // timed from when the request has a socket (not while it waits in this loader's queue)
    req.on('socket', () => (t0 = process.hrtime.bigint()));
    req.setTimeout(60_000, () => req.destroy(new Error(`${method} ${path}: no answer within 60 s`)));
    req.on('error', reject);
    req.end(payload);
  });
}

async function pool(items, concurrency, fn) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]);
    }),
  );
}

// --- the gateway --------------------------------------------------------------------------------

async function startGateway(work, nodeArgs) {
  PORT = await freePort();
  const config = join(work, 'config.yaml');
  writeFileSync(
    config,
    [
      `data_dir: ${JSON.stringify(join(work, 'data'))}`,
      'log_level: warn',
      'auth: {type: simple}',
      'backend: {type: memory}',
      'cluster: {heartbeat_period: 10, max_workers: 1000}',
      '',
    ].join('\n'),
  );
  const out = openSync(join(work, 'gateway.log'), 'a');
  // (the preload writes the gateway's event-loop delay once a second: its own stalls, apart from the loader's)
  const loopDelay = join(work, 'loop-delay.jsonl');
  // (and the time the gateway itself spends on each list and heartbeat, dispatch to last byte written)
  const requestTime = join(work, 'request-time.jsonl');
  const proc = spawn(
    process.execPath,
    [...nodeArgs, '--import', LOOP_DELAY_PRELOAD, '--import', REQUEST_TIME_PRELOAD, CLI, 'serve', '--config', config, '--listen', `127.0.0.1:${PORT}`],
    {
      env: { ...process.env, AF_GATEWAY_ALLOW_MEMORY_BACKEND: '1', AF_BENCH_LOOP_DELAY_OUT: loopDelay, AF_BENCH_REQUEST_TIME_OUT: requestTime },
      stdio: ['ignore', out, out],
    },
  );
  closeSync(out);
  await waitHealthy(proc, join(work, 'gateway.log'));
  return { proc, launchLog: join(work, 'data', 'memory-launches.jsonl'), loopDelay, requestTime };
}

/**
 * The peer, dask-gateway-server, with a stand-in backend whose starts and stops do nothing
 * (bench/scale_peer_backend.py: a subclass of its database backend, its default in-memory SQLite).
 */
async function startPeer(work) {
  PORT = await freePort();
  const py = join(REPO, '.venv', 'bin', 'python');
  if (!existsSync(py)) throw new Error(`${py} does not exist: run scripts/bootstrap.sh`);
  const config = join(work, 'dask_gateway_config.py');
  const launchLog = join(work, 'peer-launches.jsonl');
  writeFileSync(
    config,
    [
      '# generated by bench/bench_scale.mjs',
      'c.DaskGateway.address = "127.0.0.1:0"',
      `c.Proxy.address = "127.0.0.1:${PORT}"`,
      'c.DaskGateway.log_level = "WARN"',
      'c.Proxy.log_level = "warn"',
      'c.DaskGateway.backend_class = "scale_peer_backend.NothingRunsStandInBackend"',
      'c.DaskGateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"',
      'c.NothingRunsStandInBackend.cluster_heartbeat_period = 10',
      '',
    ].join('\n'),
  );
  const out = openSync(join(work, 'peer.log'), 'a');
  const env = { PATH: process.env.PATH, LANG: process.env.LANG ?? 'C.UTF-8', PYTHONPATH: join(REPO, 'bench'), AF_BENCH_LAUNCH_LOG: launchLog };
  const proc = spawn(py, ['-m', 'dask_gateway_server', '-f', config], { env, stdio: ['ignore', out, out], cwd: work });
  closeSync(out);
  await waitHealthy(proc, join(work, 'peer.log'));
  return { proc, launchLog };
}

async function waitHealthy(proc, logFile) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`the gateway exited (${proc.exitCode}):\n${readFileSync(logFile, 'utf8').slice(-3000)}`);
    try {
      const r = await request('GET', '/api/health', {});
      if (r.status === 200) return;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) throw new Error('the gateway did not answer /api/health within 60 s');
    await sleep(100);
  }
}

/** Reads what the memory backend appended to its launch log since the last call. */
function launchReader(file) {
  let offset = 0;
  let rest = '';
  return () => {
    if (!existsSync(file)) return [];
    const size = statSync(file).size;
    if (size <= offset) return [];
    const buf = Buffer.alloc(size - offset);
    const fd = openSync(file, 'r');
    readSync(fd, buf, 0, buf.length, offset);
    closeSync(fd);
    offset = size;
    const text = rest + buf.toString();
    const lines = text.split('\n');
    rest = lines.pop();
    return lines.filter(Boolean).map((l) => JSON.parse(l));
  };
}

// --- the "schedulers" ---------------------------------------------------------------------------

class Schedulers {
  constructor(file) {
    this.read = launchReader(file);
    /** name -> {name, user, token, count, workers: Set} */
    this.byName = new Map();
    /** name -> {user, count} of clusters created and not yet heartbeating */
    this.expected = new Map();
    this.onReady = null;
  }
  /** A cluster was created: it heartbeats as soon as its scheduler's token is in the launch log. */
  expect(name, user, count) {
    this.expected.set(name, { user, count });
    this.ready(name);
  }
  ready(name) {
    const c = this.byName.get(name);
    const e = this.expected.get(name);
    if (!c?.token || !e) return;
    this.expected.delete(name);
    c.user = e.user;
    c.count = e.count;
    this.onReady?.(c);
  }
  absorb() {
    for (const e of this.read()) {
      if (e.scheduler) {
        const c = this.byName.get(e.scheduler);
        if (c) c.token = e.token;
        else this.byName.set(e.scheduler, { name: e.scheduler, token: e.token, workers: new Set(), count: 0, user: null });
        this.ready(e.scheduler);
      } else if (e.workers) {
        const c = this.byName.get(e.workers);
        if (c) for (const w of e.names) c.workers.add(w);
      }
    }
  }
  body(c) {
    return {
      scheduler_address: 'tls://127.0.0.1:8786',
      dashboard_address: 'http://127.0.0.1:8787',
      api_address: 'http://127.0.0.1:8788',
      count: c.count,
      active_workers: [...c.workers],
      closing_workers: [],
      closed_workers: [],
    };
  }
  /** One heartbeat with the cluster's state as it is now; resolves the answer ({status, body, ms}). */
  heartbeat(c) {
    return request('POST', `/api/v1/clusters/${c.name}/heartbeat`, { auth: `token ${c.token}`, body: this.body(c) });
  }
}

async function createClusters(from, to, perUser, scheds, workers) {
  const made = [];
  await pool(
    Array.from({ length: to - from }, (_, i) => from + i),
    16,
    async (i) => {
      const user = `u${String(Math.floor(i / perUser)).padStart(5, '0')}`;
      const r = await request('POST', '/api/v1/clusters/', { auth: basic(user), body: { cluster_options: {} } });
      if (r.status !== 201) throw new Error(`create for ${user}: ${r.status} ${r.body.slice(0, 300)}`);
      const name = JSON.parse(r.body).name;
      made.push({ name, user });
      scheds.expect(name, user, workers);
    },
  );
  for (let tries = 0; made.some((m) => scheds.expected.has(m.name)); tries++) {
    if (tries > 300) throw new Error('the memory backend did not log every scheduler start within 30 s');
    await sleep(100);
  }
  return made.map((m) => scheds.byName.get(m.name));
}

/**
 * The schedulers' heartbeats, from the first cluster to the end: every cluster with a token once per
 * period, spread evenly, as its scheduler would (clusters must heartbeat while more are created:
 * cluster.heartbeat_timeout is 30 s). Latencies are kept only inside a measurement window.
 *
 * Serial (the default), as a Dask scheduler does (its heartbeat callback awaits each request): a
 * cluster has at most one heartbeat in flight; a beat that comes due meanwhile is sent when that one is
 * answered, with the cluster's state as it is then. Concurrent (the old bench): a beat is sent whenever
 * due, so an older state can overtake a newer one on another connection.
 */
class Heartbeater {
  constructor(scheds, period, mode = 'serial') {
    this.scheds = scheds;
    this.period = period;
    this.serial = mode === 'serial';
    this.rotation = [];
    this.next = 0;
    this.credit = 0;
    this.window = null;
    this.inflight = 0;
    this.errors = 0;
    this.lastError = '';
    this.onTick = null;
    this.stopped = false;
    this.loop = this.run();
  }
  add(c) {
    c.inflight = 0;
    c.again = false;
    this.rotation.push(c);
  }
  async run() {
    let last = performance.now();
    let lastAbsorb = 0;
    while (!this.stopped) {
      const t = performance.now();
      this.credit += ((t - last) * this.rotation.length) / (this.period * 1000);
      last = t;
      if (t - lastAbsorb > 200) {
        this.scheds.absorb();
        lastAbsorb = t;
      }
      while (this.credit >= 1 && this.rotation.length) {
        this.credit -= 1;
        // A cursor that goes round the rotation: clusters added meanwhile are visited when it reaches
        // them. (A running count taken modulo the growing rotation jumped about in it while clusters
        // were created, skipping some for over cluster.heartbeat_timeout: 1,302 clusters failed while
        // 5,000 -> 10,000 were created, and their users' sessions saw no event.)
        if (this.next >= this.rotation.length) this.next = 0;
        const c = this.rotation[this.next++];
        this.beat(c);
      }
      this.onTick?.();
      await sleep(5);
    }
  }
  /** A beat of cluster c comes due; `change`: it carries a change (the fan-out's), never dropped. */
  beat(c, change = false) {
    const w = this.window;
    if (w) w.sent++;
    if (this.serial && c.inflight) {
      if (w) w.deferred++;
      c.again = true;
      return;
    }
    if (!change && this.inflight > 2000) {
      if (w) w.skipped++; // the gateway fell this far behind: counted, not queued without end
      return;
    }
    this.send(c);
  }
  send(c) {
    const w = this.window;
    const fan = c.fan && !c.fan.sentAt && c.count >= c.fan.count ? c.fan : null;
    if (fan) {
      fan.sentAt = performance.now();
      fan.overlapped = c.inflight; // heartbeats of this cluster still unanswered when the change was sent
    }
    this.inflight++;
    c.inflight++;
    this.scheds
      .heartbeat(c)
      .then((r) => {
        if (fan) fan.status = r.status;
        if (r.status !== 204 && r.status !== 200) throw new Error(`heartbeat of ${c.name}: ${r.status} ${r.body.slice(0, 200)}`);
        if (w && this.window === w) w.lat.push(r.ms);
      })
      .catch((err) => {
        if (fan) fan.status ??= String(err.message ?? err);
        this.errors++;
        this.lastError = String(err.message ?? err);
        if (w) w.errors++;
      })
      .finally(() => {
        this.inflight--;
        c.inflight--;
        if (c.again && !c.inflight && !this.stopped) {
          c.again = false;
          this.send(c);
        }
      });
  }
  startWindow() {
    this.window = { lat: [], sent: 0, skipped: 0, deferred: 0, errors: 0, t0: performance.now() };
  }
  endWindow() {
    const w = this.window;
    this.window = null;
    const s = (performance.now() - w.t0) / 1000;
    return { lat: summary(w.lat), sent: w.sent, errors: w.errors, late: w.skipped, deferred: w.deferred, rate: w.sent / s };
  }
  async stop() {
    this.stopped = true;
    await this.loop;
  }
}

/**
 * Lists of one user's clusters (a user with perUser clusters), at ~20/s, while heartbeats run. They
 * are sent and timed from a worker thread of this loader: on the heartbeats' event loop, each list's
 * answer waited behind the reading of up to 1,000 heartbeat answers a second (that loop's delay reached
 * 19 ms at 10,000 clusters), which a user's own client does not.
 */
function listLoad(users) {
  const worker = new Worker(fileURLToPath(import.meta.url), { workerData: { role: 'list', port: PORT, users } });
  const result = new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  return async () => {
    worker.postMessage('stop');
    const { lat, errors } = await result;
    await worker.terminate();
    return { lat: summary(lat), errors };
  };
}

/** The list thread: its own connection, one list at a time, until told to stop; then it posts what it measured. */
async function listThread({ port, users }) {
  PORT = port;
  const lat = [];
  let errors = 0;
  let stop = false;
  parentPort.once('message', () => (stop = true));
  while (!stop) {
    const u = users[Math.floor(Math.random() * users.length)];
    try {
      const r = await request('GET', '/api/v1/clusters/', { auth: basic(u.user) });
      if (r.status !== 200 || Object.keys(JSON.parse(r.body)).length !== u.n) errors++;
      else lat.push(r.ms);
    } catch {
      errors++;
    }
    await sleep(50);
  }
  agent.destroy();
  parentPort.postMessage({ lat, errors });
}

// --- event streams ------------------------------------------------------------------------------

async function openSessions(users) {
  const sessions = [];
  await pool(users, 32, async (user) => {
    const ws = new WebSocket(`ws://127.0.0.1:${PORT}/api/af/events`, { headers: { Authorization: basic(user) }, perMessageDeflate: false });
    const s = { user, ws, events: [], snapshot: null };
    ws.on('message', (data) => {
      const at = performance.now();
      const ev = JSON.parse(data.toString());
      if (ev.type === 'snapshot') s.snapshot = ev.clusters.length;
      else s.events.push({ at, ev });
    });
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
      ws.once('unexpected-response', (_, res) => reject(new Error(`event stream for ${user}: ${res.statusCode}`)));
    });
    sessions.push(s);
  });
  const deadline = Date.now() + 30_000;
  while (sessions.some((s) => s.snapshot === null) && Date.now() < deadline) await sleep(50);
  return sessions;
}

// --- main ---------------------------------------------------------------------------------------

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (!existsSync(CLI)) throw new Error(`${CLI} does not exist: build the gateway first (npx tsc -b gateway-server)`);
  const results = { machine: { cores: cpus().length, node: process.version } };
  results.ours = await runOne('ours', args.steps, args, args.sessions);
  if (args.peerSteps.length) results.peer = await runOne('peer', args.peerSteps, args, 0);
  agent.destroy();
  report(results, args);
  if (args.json) writeFileSync(args.json, JSON.stringify(results, null, 2));
}

/** One gateway through the steps of clusters (and, with sessions, the event stream fan-out at the last). */
async function runOne(kind, steps, args, nSessions) {
  const work = mkdtempSync(join(tmpdir(), `af-bench-scale-${kind}-`));
  let gw;
  let hb;
  const results = { steps: [], state_store: kind === 'ours' ? 'SQLite file (the default)' : 'SQLite in memory (its default)' };
  try {
    const started = kind === 'ours' ? await startGateway(work, args.nodeArgs) : await startPeer(work);
    gw = started.proc;
    const idle = procStat(gw.pid);
    log(
      kind === 'ours'
        ? `ours: pid ${gw.pid} on 127.0.0.1:${PORT}, memory backend, SQLite state store; idle RSS ${f1(mb(idle.rss))} MB`
        : `peer: dask-gateway-server pid ${gw.pid} on 127.0.0.1:${PORT} (its proxy), stand-in backend that runs nothing; idle RSS ${f1(mb(idle.rss))} MB (the Go proxy not counted)`,
    );
    results.idle = { rss: idle.rss };
    const scheds = new Schedulers(started.launchLog);
    hb = new Heartbeater(scheds, args.period, args.heartbeats);
    scheds.onReady = (c) => hb.add(c);
    let have = 0;
    for (const step of steps) {
      const t0 = Date.now();
      // (each new cluster's first heartbeat asks for its workers; their names come from the launch log)
      const made = await createClusters(have, step, args.perUser, scheds, args.workers);
      const tCreate = (Date.now() - t0) / 1000;
      const want = made.length * args.workers;
      for (let tries = 0; ; tries++) {
        const got = made.reduce((n, c) => n + c.workers.size, 0);
        if (got >= want) break;
        if (tries > 600) {
          // (measured all the same, with the workers that did start: the table says how many)
          log(`WARNING: only ${got} of ${want} new workers were started within 60 s (${hb.errors} heartbeat errors; last: ${hb.lastError || 'none'})`);
          break;
        }
        await sleep(100);
      }
      have = step;
      log(
        `${step} clusters (${step / args.perUser} users) created in ${f1(tCreate)} s; ${step * args.workers} workers; steady heartbeats for ${args.seconds} s`,
      );
      // one and a half periods, so that every worker is reported running before the measurement (a
      // cluster's first heartbeats may come before its workers' names are in the launch log)
      await sleep(args.period * 1500);
      const users = [...new Set([...scheds.byName.values()].map((c) => c.user))].map((user) => ({ user, n: args.perUser }));
      const before = procStat(gw.pid);
      const selfBefore = selfCpu();
      const waitBefore = { gw: runQueueWaitMs(gw.pid), loader: runQueueWaitMs(process.pid) };
      const listDone = listLoad(users);
      const tHb = Date.now();
      loaderDelay.reset();
      hb.startWindow();
      await sleep(args.seconds * 1000);
      const beats = hb.endWindow();
      const wall = (Date.now() - tHb) / 1000;
      const list = await listDone();
      const after = procStat(gw.pid);
      const gwDelay = gatewayLoopDelay(started.loopDelay, tHb / 1000, Date.now() / 1000);
      const failed = failedClusters(work);
      const inGateway = gatewayRequestTime(started.requestTime, tHb / 1000, Date.now() / 1000);
      const waited = {
        gateway_ms_per_s: (runQueueWaitMs(gw.pid) - waitBefore.gw) / wall,
        loader_ms_per_s: (runQueueWaitMs(process.pid) - waitBefore.loader) / wall,
      };
      const ldDelay = { p99: loaderDelay.percentile(99) / 1e6 - LOOP_RESOLUTION_MS, max: loaderDelay.max / 1e6 - LOOP_RESOLUTION_MS };
      const row = {
        clusters: step,
        users: users.length,
        workers: [...scheds.byName.values()].reduce((n, c) => n + c.workers.size, 0),
        create_s: tCreate,
        heartbeats_per_s: beats.rate,
        heartbeat_ms: beats.lat,
        heartbeat_errors: beats.errors,
        heartbeat_skipped: beats.late,
        heartbeat_deferred: beats.deferred,
        clusters_failed: failed,
        run_queue_wait: waited,
        in_gateway_ms: inGateway,
        gateway_loop_delay_ms: gwDelay,
        loader_loop_delay_ms: ldDelay,
        list_ms: list.lat,
        list_errors: list.errors,
        rss: after.rss,
        cpu_pct: (100 * (after.cpu - before.cpu)) / wall,
        loader_cpu_pct: (100 * (selfCpu() - selfBefore)) / wall,
        load1: loadavg()[0],
      };
      results.steps.push(row);
      log(
        `  heartbeats ${f1(beats.rate)}/s: p50 ${f2(beats.lat.p50)} ms, p99 ${f2(beats.lat.p99)} ms, max ${f1(beats.lat.max)} ms, errors ${beats.errors}, skipped ${beats.late}, deferred ${beats.deferred}; ` +
          `list p99 ${f2(list.lat.p99)} ms (${list.lat.n}); gateway RSS ${f1(mb(after.rss))} MB, CPU ${f1(row.cpu_pct)} %; loader CPU ${f1(row.loader_cpu_pct)} %; load1 ${f2(row.load1)}; clusters failed so far ${failed ?? '-'}; ` +
          `waited for a core: gateway ${f1(waited.gateway_ms_per_s)} ms/s, loader ${f1(waited.loader_ms_per_s)} ms/s; ` +
          (inGateway
            ? `in the gateway (dispatch to last byte written): heartbeat p99 ${f2(inGateway.heartbeat.p99)} ms, list p50 ${f2(inGateway.list.p50)} p99 ${f2(inGateway.list.p99)} max ${f2(inGateway.list.max)} ms; `
            : '') +
          `event-loop delay: gateway p99 ${gwDelay ? `${f1(gwDelay.p99_median)} (worst second ${f1(gwDelay.p99_worst)})` : '-'} max ${f1(gwDelay?.max)} ms, loader p99 ${f1(ldDelay.p99)} max ${f1(ldDelay.max)} ms`,
      );
    }

    if (!nSessions) return results;
    // Event streams: one session per user (the first `sessions` users), then one change per user's cluster.
    const allUsers = [...new Set([...scheds.byName.values()].map((c) => c.user))];
    const sessionUsers = allUsers.slice(0, nSessions);
    const rssBefore = procStat(gw.pid).rss;
    const cpuBefore = procStat(gw.pid).cpu;
    const tOpen = Date.now();
    const sessions = await openSessions(sessionUsers);
    const openS = (Date.now() - tOpen) / 1000;
    const afterOpen = procStat(gw.pid);
    log(
      `${sessions.length} event streams open in ${f1(openS)} s (snapshots: ${sessions.filter((s) => s.snapshot === args.perUser).length} with ${args.perUser} clusters); RSS +${f1(mb(afterOpen.rss - rssBefore))} MB`,
    );
    // Each session's user: one cluster asks for one more worker (a heartbeat with count + 1), while the
    // steady heartbeats go on. The event must reach that user's session; delay from the heartbeat's send.
    const changed = new Map();
    for (const s of sessions) {
      const c = [...scheds.byName.values()].find((x) => x.user === s.user);
      changed.set(c.name, { s, c });
    }
    const targets = [...changed.values()];
    let k = 0;
    const fanStart = performance.now();
    const fanCpu = procStat(gw.pid).cpu;
    hb.startWindow();
    hb.onTick = () => {
      // the changes spread over the first seconds, 500 per second, besides the steady heartbeats
      const due = Math.min(targets.length, Math.floor(((performance.now() - fanStart) / 1000) * 500));
      while (k < due) {
        const t = targets[k++];
        t.c.count += 1;
        t.c.fan = { count: t.c.count, dueAt: performance.now(), sentAt: 0, status: null, overlapped: 0 };
        hb.beat(t.c, true);
      }
    };
    await sleep((Math.ceil(targets.length / 500) + 4) * 1000);
    hb.onTick = null;
    const hbRes = hb.endWindow();
    await sleep(1000);
    const delays = [];
    const lost = [];
    for (const t of targets) {
      const fan = t.c.fan;
      const ev = t.s.events.find((e) => e.ev.type === 'cluster' && e.ev.cluster.name === t.c.name && e.ev.cluster.workers.requested === fan.count);
      if (ev && fan.sentAt) delays.push(ev.at - fan.sentAt);
      else {
        // what happened to it: was the change sent and answered, did another heartbeat of the cluster overlap it, what the session got
        const mine = t.s.events.filter((e) => e.ev.type === 'cluster' && e.ev.cluster.name === t.c.name).map((e) => e.ev.cluster.workers.requested);
        lost.push({
          user: t.s.user,
          cluster: t.c.name,
          count: fan.count,
          sent: Boolean(fan.sentAt),
          status: fan.status,
          overlapped: fan.overlapped,
          events: t.s.events.length,
          requested_seen: mine,
          ws_open: t.s.ws.readyState === WebSocket.OPEN,
        });
      }
    }
    const missing = lost.length;
    for (const l of lost.slice(0, 20)) log(`  missing: ${JSON.stringify(l)}`);
    if (lost.length > 20) log(`  ... and ${lost.length - 20} more`);
    if (lost.length) {
      const overlapped = lost.filter((l) => l.overlapped).length;
      const answered = lost.filter((l) => l.status === 204 || l.status === 200).length;
      log(`  of the ${lost.length} missing: ${answered} changes answered 2xx, ${overlapped} sent while another heartbeat of the cluster was in flight`);
    }
    const sentWithOverlap = targets.filter((t) => t.c.fan.overlapped).length;
    const fanWall = (performance.now() - fanStart) / 1000;
    const fanEnd = procStat(gw.pid);
    const other = sessions.reduce((n, s) => n + s.events.filter((e) => e.ev.type === 'cluster' && e.ev.cluster.owner !== s.user).length, 0);
    const d = summary(delays);
    results.fanout = {
      sessions: sessions.length,
      open_s: openS,
      rss_per_session_kb: (afterOpen.rss - rssBefore) / 1024 / sessions.length,
      open_cpu_s: afterOpen.cpu - cpuBefore,
      delivered: delays.length,
      missing,
      lost,
      sent_with_overlap: sentWithOverlap,
      heartbeats: args.heartbeats,
      foreign_events: other,
      delay_ms: d,
      heartbeat_ms_during: hbRes.lat,
      cpu_pct: (100 * (fanEnd.cpu - fanCpu)) / fanWall,
      rss: fanEnd.rss,
    };
    log(
      `fan-out (${args.heartbeats} heartbeats): ${delays.length}/${targets.length} sessions got their event (missing ${missing}, events of other users' clusters ${other}; ${sentWithOverlap} changes sent while the cluster had another heartbeat in flight); ` +
        `delay p50 ${f1(d.p50)} ms, p99 ${f1(d.p99)} ms, max ${f1(d.max)} ms; heartbeats meanwhile p99 ${f2(hbRes.lat.p99)} ms; CPU ${f1(results.fanout.cpu_pct)} %`,
    );
    for (const s of sessions) s.ws.terminate();
  } finally {
    await hb?.stop();
    if (gw && gw.exitCode === null) {
      gw.kill('SIGTERM');
      const t = Date.now();
      while (gw.exitCode === null && gw.signalCode === null && Date.now() - t < 30_000) await sleep(100);
      if (gw.exitCode === null && gw.signalCode === null) gw.kill('SIGKILL');
    }
    if (process.env.AF_BENCH_KEEP) log(`kept ${work}`);
    else rmSync(work, { recursive: true, force: true });
  }
  return results;
}

function stepTable(title, r) {
  console.log(`\n${title}`);
  console.log(
    '| clusters | users | workers | heartbeats/s | heartbeat p50 / p99 ms | list p50 / p99 ms | RSS MB | RSS MB per 1k clusters | above idle per 1k | gateway CPU % | loader CPU % | gateway loop delay p99 / max ms | waited for a core, gateway / loader ms/s | clusters failed | load1 |',
  );
  console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  console.log(`| 0 | 0 | 0 | - | - | - | ${f1(mb(r.idle.rss))} | - | - | - | - | - | - | - | - |`);
  for (const s of r.steps) {
    const d = s.gateway_loop_delay_ms;
    const w = s.run_queue_wait;
    console.log(
      `| ${s.clusters} | ${s.users} | ${s.workers} | ${f1(s.heartbeats_per_s)} | ${f2(s.heartbeat_ms.p50)} / ${f2(s.heartbeat_ms.p99)} | ${f2(s.list_ms.p50)} / ${f2(s.list_ms.p99)} | ${f1(mb(s.rss))} | ${f1(mb(s.rss) / (s.clusters / 1000))} | ${f1(mb(s.rss - r.idle.rss) / (s.clusters / 1000))} | ${f1(s.cpu_pct)} | ${f1(s.loader_cpu_pct)} | ${d ? `${f1(d.p99_median)} / ${f1(d.max)}` : '-'} | ${w ? `${f1(w.gateway_ms_per_s)} / ${f1(w.loader_ms_per_s)}` : '-'} | ${s.clusters_failed ?? '-'} | ${f2(s.load1)} |`,
    );
  }
}

function report(results, args) {
  const r = results.ours;
  stepTable(`Scale (issue 22 item 4): ours, memory backend (nothing runs), ${r.state_store}; the loader shares the ${results.machine.cores} cores`, r);
  const fo = r.fanout;
  if (fo) {
    console.log(
      `\nEvent streams at ${r.steps[r.steps.length - 1].clusters} clusters: ${fo.sessions} sessions opened in ${f1(fo.open_s)} s (${f2(fo.open_cpu_s)} CPU s), ` +
        `${f1(fo.rss_per_session_kb)} KB RSS each; fan-out CPU ${f1(fo.cpu_pct)} % with the heartbeats; RSS then ${f1(mb(fo.rss))} MB`,
    );
  }
  const p = results.peer;
  if (p) {
    stepTable(`Peer: dask-gateway-server with a stand-in backend that runs nothing (bench/scale_peer_backend.py), ${p.state_store}`, p);
    console.log('\n| clusters | heartbeat p99 ours/peer | list p99 ours/peer | RSS ours/peer | CPU ours/peer |');
    console.log('|---:|---:|---:|---:|---:|');
    for (const ps of p.steps) {
      const os = r.steps.find((s) => s.clusters === ps.clusters);
      if (!os) continue;
      console.log(
        `| ${ps.clusters} | ${f2(os.heartbeat_ms.p99 / ps.heartbeat_ms.p99)} | ${f2(os.list_ms.p99 / ps.list_ms.p99)} | ${f2(os.rss / ps.rss)} | ${f2(os.cpu_pct / ps.cpu_pct)} |`,
      );
    }
    const perr = p.steps.reduce((n, s) => n + s.heartbeat_errors + s.list_errors, 0);
    if (perr) console.log(`(peer: ${perr} heartbeat or list errors)`);
  }
  const last = r.steps[r.steps.length - 1];
  const verdict = (ok) => (ok ? 'met' : 'NOT MET');
  console.log('');
  const hbErr = r.steps.reduce((n, s) => n + s.heartbeat_errors + s.heartbeat_skipped, 0);
  console.log(
    `target heartbeat p99 <= ${TARGET.heartbeatP99} ms at ${last.clusters} clusters, ${last.workers} workers: ${f2(last.heartbeat_ms.p99)} ms (${hbErr} errors or skipped) -> ${verdict(last.heartbeat_ms.p99 <= TARGET.heartbeatP99 && hbErr === 0)}`,
  );
  console.log(
    `target list p99 <= ${TARGET.listP99} ms at ${last.clusters} clusters: ${f2(last.list_ms.p99)} ms -> ${verdict(last.list_ms.p99 <= TARGET.listP99 && last.list_errors === 0)}`,
  );
  const per1k = mb(last.rss) / (last.clusters / 1000);
  console.log(`target RSS <= ${TARGET.rssPer1k} MB per 1,000 clusters at ${last.clusters}: ${f1(per1k)} MB -> ${verdict(per1k <= TARGET.rssPer1k)}`);
  if (fo) {
    console.log(
      `target fan-out to ${args.sessions} sessions: ${fo.delivered}/${fo.sessions} got their event, ${fo.foreign_events} of other users; delay p50 ${f1(fo.delay_ms.p50)} ms, p99 ${f1(fo.delay_ms.p99)} ms -> ${verdict(fo.delivered === fo.sessions && fo.sessions === args.sessions && fo.foreign_events === 0)}`,
    );
  }
}

if (isMainThread) {
  main().catch((err) => {
    console.error(`bench_scale: ${err.stack ?? err}`);
    process.exitCode = 1;
  });
} else if (workerData?.role === 'list') {
  listThread(workerData).catch((err) => parentPort.postMessage({ lat: [], errors: 1, error: String(err) }));
}
