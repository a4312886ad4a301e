#!/usr/bin/env bash
# dask-labextension (pinned), for gateway-server/test/e2e/test_dask_labextension.py: the real
# extension's server side run by a real Jupyter server against the gateway.
#
# Not installed into .venv (its Dask panel would appear in every other UI test and in the README's
# screenshots). Built once per machine into a cache OUTSIDE the repository, keyed by the pins:
#   /var/cache/af-gateway/dask-labextension-<sha256 of requirements.txt, this script and .venv's
#   Python version, 12>/
#       site/        the three wheels of test-harness/dask-labextension/requirements.txt, installed
#                    with --target and --no-deps: everything else (jupyter_server, JupyterLab,
#                    distributed, bokeh, dask_gateway, aiohttp) is .venv's, so the test runs .venv's
#                    Python with site/ on PYTHONPATH
#       .complete    written last: a half-built directory is never taken for a whole one
#
# Usage:
#   scripts/dask-labextension.sh ensure   build whatever is missing; prints site/'s path (the only
#                                         line on stdout). < 1 s when cached, a few seconds to build
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo_root=$(cd "$script_dir/.." && pwd -P)
cache=/var/cache/af-gateway
req="$repo_root/test-harness/dask-labextension/requirements.txt"
python="$repo_root/.venv/bin/python"

HARNESS_TAG=dask-labextension
. "$script_dir/lib/harness.sh" # log, die, now, since, lock_cache, unlock_cache

[ -x "$python" ] || die "$python is missing: run npm run bootstrap first"
key=$({ cat "$req" "${BASH_SOURCE[0]}"; "$python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-12)
dir="$cache/dask-labextension-$key"

check() { PYTHONPATH="$1/site" "$python" -c 'import dask_labextension, jupyter_server_proxy, simpervisor' 2>/dev/null; }

ensure() {
  if [ -f "$dir/.complete" ]; then echo "$dir/site"; return 0; fi
  mkdir -p "$cache"
  lock_cache "$dir.lock"
  if [ -f "$dir/.complete" ]; then unlock_cache; echo "$dir/site"; return 0; fi
  local t0 tmp logf="$dir.build.log"
  t0=$(now)
  tmp="$cache/.$(basename "$dir").tmp.$$"
  rm -rf "$tmp" "$dir"
  log "installing dask-labextension (once per machine) into $dir; log: $logf"
  "$python" -m pip install --disable-pip-version-check --no-input --quiet --no-deps --require-hashes \
    --target "$tmp/site" -r "$req" > "$logf" 2>&1 8>&- || { rm -rf "$tmp"; tail -30 "$logf" >&2; die "install failed"; }
  check "$tmp" || { rm -rf "$tmp"; die "installed, but .venv's Python cannot import it with it (a missing dependency?)"; }
  touch "$tmp/.complete"
  mv "$tmp" "$dir"
  unlock_cache
  log "installed in $(since "$t0")s"
  echo "$dir/site"
}

case "${1:-}" in
  ensure) ensure ;;
  *) echo "usage: $0 ensure" >&2; exit 2 ;;
esac
