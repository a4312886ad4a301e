#!/usr/bin/env bash
# The demo: the gateway in its embedded default (local backend, simple auth, 127.0.0.1:8000).
# Extra arguments go to `af-gateway serve` (e.g. --listen 127.0.0.1:8001).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec node gateway-server/dist/cli.js serve "$@"
