#!/usr/bin/env bash
# Benchmark against dask-gateway-server, measured in the same run. Not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python bench/bench_gateways.py "$@"
