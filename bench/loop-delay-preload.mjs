// Loaded into the gateway's node process by bench/bench_load.py (node --import): once a second it
// writes the event loop's delay over that second (perf_hooks.monitorEventLoopDelay: p50, p99, max,
// in ms) as one JSON line to $AF_BENCH_LOOP_DELAY_OUT, so stalls that keep new connections waiting
// show up beside the loader's latencies. Not part of the gateway.
import { appendFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';

const out = process.env.AF_BENCH_LOOP_DELAY_OUT;
if (out) {
  const h = monitorEventLoopDelay({ resolution: 5 });
  h.enable();
  setInterval(() => {
    const line = { t: Date.now() / 1000, p50_ms: h.percentile(50) / 1e6, p99_ms: h.percentile(99) / 1e6, max_ms: h.max / 1e6 };
    h.reset();
    try {
      appendFileSync(out, JSON.stringify(line) + '\n');
    } catch {
      // the bench's directory is gone: nothing to report to
    }
  }, 1000).unref();
}
