// Loaded into our gateway's node process by bench/bench_scale.mjs (node --import): the time the
// gateway itself spends on each request of the bench's two kinds, from Node's dispatch of the parsed
// request to the answer's last byte handed to the kernel (res 'finish'). Beside the bench's
// client-side latency it shows how much of a tail is the gateway's own work and how much is outside
// it (waiting for a core, the loopback, the loader). Once a second it appends one JSON line,
// {"t": epoch s, "list": [ms, ...], "heartbeat": [ms, ...]}, to $AF_BENCH_REQUEST_TIME_OUT. Not part
// of the gateway.
import { appendFileSync } from 'node:fs';
import http from 'node:http';

const out = process.env.AF_BENCH_REQUEST_TIME_OUT;
if (out) {
  let seen = { list: [], heartbeat: [] };
  const emit = http.Server.prototype.emit;
  http.Server.prototype.emit = function (event, req, res) {
    if (event === 'request') {
      const kind =
        req.method === 'GET' && req.url === '/api/v1/clusters/' ? 'list' : req.method === 'POST' && req.url.endsWith('/heartbeat') ? 'heartbeat' : null;
      if (kind) {
        const t0 = process.hrtime.bigint();
        res.once('finish', () => seen[kind].push(Math.round(Number(process.hrtime.bigint() - t0) / 1e3) / 1e3));
      }
    }
    return emit.apply(this, arguments);
  };
  setInterval(() => {
    const line = { t: Date.now() / 1000, ...seen };
    seen = { list: [], heartbeat: [] };
    try {
      appendFileSync(out, JSON.stringify(line) + '\n');
    } catch {
      // the bench's directory is gone
    }
  }, 1000).unref();
}
