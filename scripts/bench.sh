#!/usr/bin/env bash
# Benchmarks against peers measured in the same run: dask-gateway-server; Rucio asked directly. Not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/python bench/bench_gateways.py "$@"
# Rucio: a 20,000-file dataset through the gateway against straight to Rucio (a real server).
exec .venv/bin/python bench/bench_rucio.py
