#!/usr/bin/env bash
# Benchmarks against peers measured in the same run: dask-gateway-server; Rucio asked directly;
# yadage running the same workflow; and the Lab's DAG view, which has no peer. Not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# the gateway runs each user's processes as their account: af-bench (and sudo) must exist
bash scripts/test-accounts.sh ensure >/dev/null
.venv/bin/python bench/bench_gateways.py "$@"
# Scheduler TLS passthrough: 100 MiB gathered and scattered through ours, the peer's Go proxy and direct TLS.
.venv/bin/python bench/bench_passthrough.py
# Load (issue 22 item 5): 1,000 clients of mixed operations for 60 s against ours, then the peer, on the
# local backend; worker processes sampled at 10 Hz against the per-cluster limit.
.venv/bin/python bench/bench_load.py
# Scale (issue 22 item 4): 10,000 clusters, 100,000 workers heartbeating, 1,000 event streams, with the
# memory backend (nothing runs), the gateway as its own process; CPU and memory at 1k, 5k, 10k clusters.
node bench/bench_scale.mjs
# Rucio: a 20,000-file dataset through the gateway against straight to Rucio (a real server).
.venv/bin/python bench/bench_rucio.py
# The Lab's workflow DAG view in Chromium, 5,000 and 20,000 steps: no peer draws these, so measured
# figures with the machine's cores (layout, long tasks, frame times).
node bench/bench_dag.mjs
# Workflows: the same map-reduce through the gateway against yadage itself, from a pinned venv
# built once per machine outside the repository (scripts/yadage-specs.sh).
venv=$(bash scripts/yadage-specs.sh venv)
AF_BENCH_YADAGE_RUN="$venv/bin/yadage-run" exec .venv/bin/python bench/bench_workflows.py
