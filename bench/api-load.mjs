#!/usr/bin/env node
// A closed-loop HTTP/1.1 load generator for the API benchmark: C keep-alive connections, each
// sending its next request when the previous answer is complete, cycling over a list of paths.
// Raw sockets and a minimal response parser, so the loader spends little CPU on a 2-core machine
// where it shares the cores with the gateway it measures (Node's http client costs several times
// more per request). Only for loopback targets. Prints one JSON object on stdout.
//
//   node bench/api-load.mjs --port P --connections 64 --seconds 10 --warmup 2 \
//        --header 'Authorization: Basic ...' --path /api/v1/clusters/ --path /api/v1/options
import net from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    connections: { type: 'string', default: '64' },
    seconds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    header: { type: 'string', multiple: true, default: [] },
    path: { type: 'string', multiple: true, default: [] },
  },
});
const host = values.host;
if (!['127.0.0.1', 'localhost', '::1'].includes(host)) throw new Error('api-load only targets loopback');
const port = Number(values.port);
const connections = Number(values.connections);
const seconds = Number(values.seconds);
const warmup = Number(values.warmup);
const paths = values.path.length ? values.path : ['/api/health'];
const extra = values.header.map((h) => `${h}\r\n`).join('');
const requests = paths.map((p) => Buffer.from(`GET ${p} HTTP/1.1\r\nHost: ${host}:${port}\r\n${extra}Accept: application/json\r\n\r\n`, 'latin1'));

// Latencies in 10 µs buckets up to 10 s (a closed loop with 64 connections never waits longer
// unless something is badly wrong; those land in the last bucket).
const BUCKET_US = 10;
const hist = new Uint32Array(1_000_000);
let measuring = false;
let done = false;
let count = 0;
const statuses = {};
let errors = 0;
let cookiesSeen = 0;

let warmupRequests = 0;

function record(startNs, status, setCookie) {
  if (!measuring) {
    if (!done) warmupRequests++;
    return;
  }
  const us = Number(process.hrtime.bigint() - startNs) / 1000;
  hist[Math.min(hist.length - 1, Math.floor(us / BUCKET_US))]++;
  count++;
  statuses[status] = (statuses[status] ?? 0) + 1;
  if (setCookie) cookiesSeen++;
}

const CRLFCRLF = Buffer.from('\r\n\r\n');

function connection(index) {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port, noDelay: true });
    let buf = Buffer.alloc(0);
    let next = index % requests.length;
    let start = 0n;
    // the response being read: its head parsed, how many body bytes are still to come
    let need = -1;
    let status = 0;
    let setCookie = false;
    let chunked = false;

    const send = () => {
      if (done) {
        socket.end();
        return;
      }
      start = process.hrtime.bigint();
      socket.write(requests[next]);
      next = (next + 1) % requests.length;
    };
    const finish = () => {
      record(start, status, setCookie);
      need = -1;
      send();
    };
    socket.on('connect', send);
    socket.on('data', (chunk) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      for (;;) {
        if (need < 0) {
          const end = buf.indexOf(CRLFCRLF);
          if (end < 0) return;
          const head = buf.toString('latin1', 0, end);
          buf = buf.subarray(end + 4);
          status = Number(head.slice(9, 12));
          setCookie = /\r\nset-cookie:/i.test(head);
          const cl = /\r\ncontent-length:\s*(\d+)/i.exec(head);
          chunked = !cl && /\r\ntransfer-encoding:\s*chunked/i.test(head);
          need = cl ? Number(cl[1]) : 0;
          if (!chunked && buf.length < need) return;
        }
        if (chunked) {
          // skip chunks until the terminating 0-length chunk and its blank line
          const term = buf.indexOf('\r\n0\r\n\r\n');
          const first = buf.indexOf('0\r\n\r\n');
          if (first === 0) {
            buf = buf.subarray(5);
          } else if (term >= 0) {
            buf = buf.subarray(term + 7);
          } else return;
          chunked = false;
          finish();
          continue;
        }
        if (buf.length < need) return;
        buf = buf.subarray(need);
        finish();
        if (!buf.length) return;
      }
    });
    socket.on('error', () => {
      if (measuring) errors++;
    });
    socket.on('close', () => {
      if (!done) {
        if (measuring) errors++;
        // reconnect: a server may close a keep-alive connection
        connection(index).then(resolve);
      } else resolve();
    });
  });
}

function percentile(p) {
  const rank = Math.ceil((p / 100) * count);
  let seen = 0;
  for (let i = 0; i < hist.length; i++) {
    seen += hist[i];
    if (seen >= rank) return ((i + 1) * BUCKET_US) / 1000; // ms, upper edge of the bucket
  }
  return NaN;
}

const all = Promise.all(Array.from({ length: connections }, (_, i) => connection(i)));
await new Promise((r) => setTimeout(r, warmup * 1000));
measuring = true;
const t0 = process.hrtime.bigint();
const cpu0 = process.cpuUsage();
await new Promise((r) => setTimeout(r, seconds * 1000));
measuring = false;
const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
const cpu = process.cpuUsage(cpu0);
done = true;
await Promise.race([all, new Promise((r) => setTimeout(r, 5000))]);
process.stdout.write(
  JSON.stringify({
    connections,
    seconds: elapsed,
    requests: count,
    warmup_requests: warmupRequests,
    rps: count / elapsed,
    p50_ms: percentile(50),
    p90_ms: percentile(90),
    p99_ms: percentile(99),
    max_ms: percentile(100),
    statuses,
    errors,
    set_cookie_responses: cookiesSeen,
    loader_cpu_s: (cpu.user + cpu.system) / 1e6,
  }) + '\n',
);
process.exit(0);
