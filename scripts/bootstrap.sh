#!/usr/bin/env bash
# Installs everything AF Gateway needs on a fresh machine, idempotently:
#  - Node packages (npm ci, from package-lock.json), rebuilt only when the lock file changes;
#  - the pinned Python environment in .venv (python/requirements.lock), rebuilt only when it changes;
#  - the TypeScript build;
#  - the JupyterLab extension (lab-extension/): bundled by jupyter-builder, packed into the wheel
#    af-gateway-lab and installed into .venv, redone only when its inputs change.
# Usage: scripts/bootstrap.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

HARNESS_TAG=bootstrap
. scripts/lib/harness.sh   # log
hash_of() { sha256sum "$@" | sha256sum | cut -c1-16; }

# Native modules (better-sqlite3) compile against the installed Node's headers instead of downloading them.
if [ -f /usr/include/node/node.h ]; then export npm_config_nodedir=/usr; fi

# --- Node ---------------------------------------------------------------------------------------
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then log "Node.js >= 20 is required (found $(node --version))"; exit 1; fi
want=$(hash_of package-lock.json)
if [ "$(cat node_modules/.af-lock-hash 2>/dev/null)" != "$want" ]; then
  log "installing Node packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > node_modules/.af-lock-hash
fi

# --- Python -------------------------------------------------------------------------------------
py=${AF_PYTHON:-python3}
if ! "$py" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
  log "Python 3.11 is required for the pinned environment (found $("$py" --version 2>&1))"; exit 1
fi
want=$(hash_of python/requirements.lock python/af-gateway-client/pyproject.toml)
if [ "$(cat .venv/.af-lock-hash 2>/dev/null)" != "$want" ]; then
  log "installing the pinned Python environment into .venv (python/requirements.lock)"
  [ -x .venv/bin/python ] || "$py" -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-input -r python/requirements.lock
  # the project's own client helpers, editable so the tests use the working tree
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-input --no-deps -e python/af-gateway-client
  echo "$want" > .venv/.af-lock-hash
fi
# The repository's package.json says "type": "module"; without this marker Node would load the
# CommonJS scripts Python packages ship inside .venv (jupyter_builder's yarn.js) as ES modules.
[ -f .venv/package.json ] || echo '{"type": "commonjs"}' > .venv/package.json

# --- the af-gateway-server command --------------------------------------------------------------
# The docs run `af-gateway-server serve --config FILE`: link the launcher (scripts/af-gateway-server,
# which runs this checkout's gateway-server/dist/cli.js) into /usr/local/bin, or ~/.local/bin when
# that is not writable. The checkout set up last owns the command.
launcher=$root/scripts/af-gateway-server
bin_dir=/usr/local/bin
[ -w "$bin_dir" ] || bin_dir=$HOME/.local/bin
if [ "$(readlink "$bin_dir/af-gateway-server" 2>/dev/null)" != "$launcher" ]; then
  if [ -e "$bin_dir/af-gateway-server" ] && [ ! -L "$bin_dir/af-gateway-server" ]; then
    log "$bin_dir/af-gateway-server is not a link made by set-up; left alone (the command is $launcher)"
  elif mkdir -p "$bin_dir" && ln -sfn "$launcher" "$bin_dir/af-gateway-server"; then
    log "af-gateway-server: $bin_dir/af-gateway-server -> $launcher"
  else
    log "could not link $bin_dir/af-gateway-server; run $launcher instead"
  fi
fi
case ":$PATH:" in *":$bin_dir:"*) ;; *) log "add $bin_dir to PATH to run af-gateway-server" ;; esac

# --- build --------------------------------------------------------------------------------------
if [ "${1:-}" != "--no-build" ]; then
  log "building (schemas, gateway-server, lab-extension TypeScript)"
  npm run --silent build >/dev/null

  # --- JupyterLab extension ---------------------------------------------------------------------
  # The compiled TypeScript (lib/), styles, settings schema and packaging decide the bundle and the
  # wheel; both are redone only when a hash of them changes (or the installed copy is gone).
  ext=lab-extension
  want=$( { find "$ext/lib" "$ext/style" "$ext/schema" -type f -print0 | sort -z | xargs -0 -r sha256sum
            sha256sum "$ext/package.json" "$ext/pyproject.toml" "$ext/af_gateway_lab/__init__.py" \
              "$ext/hatch_build.py" "$ext/install.json"; } | sha256sum | cut -c1-16)
  if [ "$(cat .venv/.af-lab-hash 2>/dev/null)" != "$want" ] \
     || [ ! -f "$ext/af_gateway_lab/labextension/package.json" ] \
     || [ ! -f .venv/share/jupyter/labextensions/@af-gateway/lab-extension/package.json ]; then
    log "building the JupyterLab extension (jupyter-builder) and the af-gateway-lab wheel"
    mkdir -p .cache/wheels
    rm -rf "$ext/af_gateway_lab/labextension"
    (cd "$ext" && PATH="$root/.venv/bin:$PATH" jupyter-builder build . >"$root/.cache/lab-extension-build.log" 2>&1) \
      || { log "jupyter-builder failed; its output:"; cat .cache/lab-extension-build.log >&2; exit 1; }
    rm -f .cache/wheels/af_gateway_lab-*.whl
    # hatchling (pinned in lab-extension/pyproject.toml) comes from PyPI through pip's build isolation
    .venv/bin/python -m pip wheel --quiet --disable-pip-version-check --no-input --no-deps \
      -w .cache/wheels "./$ext"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-input --no-deps \
      --force-reinstall .cache/wheels/af_gateway_lab-*.whl
    echo "$want" > .venv/.af-lab-hash
  fi
fi
log "ready: node $(node --version), $(.venv/bin/python --version), in $root"
