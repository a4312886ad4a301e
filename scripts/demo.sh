#!/usr/bin/env bash
# The demo: AF Gateway and JupyterLab with the AF Gateway extension, on one origin as behind JupyterHub.
#
#   browser ──> configurable-http-proxy 127.0.0.1:8888 ─┬─ /                     ─> JupyterLab 127.0.0.1:8889
#                                                       └─ /services/af-gateway  ─> AF Gateway 127.0.0.1:8000
#
# The gateway runs the local backend with simple authentication (any user name, no password, loopback
# only) and strips its base path /services/af-gateway/; Dask clients and the scheduler TLS traffic can
# also use 127.0.0.1:8000 directly. Everything the demo writes is under ./af-gateway-demo/ (notebooks,
# gateway state, Lab settings, logs). Ctrl-C stops everything.
#
# The analyst's data path is real too (when the demo runs as root, which XRootD's start needs): an
# HTTPS identity provider (the test OpenID provider), two XRootD servers with SciTokens as the RSEs of
# a real Rucio (every PFN is a file), and the four-lepton analysis example (examples/analysis) as
# alice's dataset user.alice:af.example.4l with its notebook in notebooks/analysis/. The demo's user is
# alice: the Lab's panels log in as her (Basic), and a token agent (scripts/lib/demo-token-agent.py,
# standing in for JupyterHub + IAM) keeps her access token fresh in $AF_DEMO_DIR/tokens/alice for her
# notebooks, whose requests show it to the gateway; its broker hands it to her workers for the storage.
#
# Ports (environment): AF_DEMO_PORT (proxy, 8888), AF_DEMO_LAB_PORT (8889), AF_DEMO_GATEWAY_PORT (8000),
# AF_DEMO_PROXY_API_PORT (the proxy's REST API, 8890). AF_DEMO_DIR moves the demo directory.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

HARNESS_TAG=demo
. scripts/lib/harness.sh   # log

if [ $# -gt 0 ]; then
  log "scripts/demo.sh takes no arguments (got: $*); set ports with AF_DEMO_PORT, AF_DEMO_LAB_PORT,"
  log "AF_DEMO_GATEWAY_PORT, AF_DEMO_PROXY_API_PORT, or run the gateway alone:"
  log "  node gateway-server/dist/cli.js serve [--config FILE] [--listen HOST:PORT] [--data-dir DIR]"
  exit 2
fi

host=127.0.0.1
port=${AF_DEMO_PORT:-8888}
lab_port=${AF_DEMO_LAB_PORT:-8889}
gw_port=${AF_DEMO_GATEWAY_PORT:-8000}
api_port=${AF_DEMO_PROXY_API_PORT:-8890}
demo=${AF_DEMO_DIR:-$root/af-gateway-demo}
base_path=/services/af-gateway/
user=alice   # the demo's analyst: her Rucio account, scope user.alice and identity exist in the demo's Rucio and provider
WLCG_ANY=https://wlcg.cern.ch/jwt/v1/any

# --- ports first, before anything is built or started ---------------------------------------------
port_busy() { (exec 3<>"/dev/tcp/$host/$1") 2>/dev/null; }
busy=0
for spec in "proxy:$port:AF_DEMO_PORT" "JupyterLab:$lab_port:AF_DEMO_LAB_PORT" \
            "gateway:$gw_port:AF_DEMO_GATEWAY_PORT" "proxy API:$api_port:AF_DEMO_PROXY_API_PORT"; do
  IFS=: read -r what p var <<<"$spec"
  if port_busy "$p"; then
    by=$(ss -ltnpH "sport = :$p" 2>/dev/null | sed -nE 's/.*users:\(\("([^"]*)",pid=([0-9]+).*/ by \1 (pid \2)/p' | head -1 || true)
    log "port $host:$p (the $what, $var) is already in use${by}"
    busy=1
  fi
done
[ "$busy" = 0 ] || { log "free the port(s) or choose others with the variables above"; exit 1; }

bash scripts/bootstrap.sh

# --- the demo directory ---------------------------------------------------------------------------
mkdir -p "$demo/notebooks" "$demo/gateway-data" "$demo/logs" "$demo/lab-settings/@af-gateway/lab-extension" \
  "$demo/lab-settings/@jupyterlab/apputils-extension" "$demo/lab-workspaces"
# The example workflows, where the Lab's file browser shows them (right-click workflow.yml → Run as
# workflow). Copied once: a user's edits are kept across demo starts.
[ -d "$demo/notebooks/workflows" ] || cp -r examples/workflows "$demo/notebooks/workflows"
token=$(.venv/bin/python -c 'import secrets; print(secrets.token_hex(24))')
proxy_token=$(.venv/bin/python -c 'import secrets; print(secrets.token_hex(24))')

# JupyterLab user settings of the demo (the extension's gateway URL stays its default, $base_path)
cat > "$demo/lab-settings/@af-gateway/lab-extension/plugin.jupyterlab-settings" <<EOF
{"authMode": "basic", "username": "$user"}
EOF
[ -f "$demo/lab-settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings" ] ||
  echo '{"fetchNews": "false", "checkForUpdates": false}' \
    > "$demo/lab-settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings"

# --- children, each in its own process group; all stopped on exit ---------------------------------
pids=()
names=()
stopping=0
cleanup() {
  local rc=$?
  stopping=1
  trap - EXIT
  trap '' INT TERM HUP # a second Ctrl-C must not cut the clean-up short
  if [ ${#pids[@]} -gt 0 ]; then
    log "stopping: ${names[*]}"
    local i
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM -- "-${pids[i]}" 2>/dev/null || true; done
    # the gateway stops its clusters and Lab its kernels; give them time, then kill what is left
    for _ in $(seq 1 200); do
      local alive=0
      for i in "${!pids[@]}"; do kill -0 -- "-${pids[i]}" 2>/dev/null && alive=1; done
      [ "$alive" = 0 ] && break
      sleep 0.1
    done
    for i in "${!pids[@]}"; do kill -KILL -- "-${pids[i]}" 2>/dev/null || true; done
    wait 2>/dev/null || true
    log "stopped"
  fi
  declare -F rucio_stop >/dev/null && rucio_stop
  declare -F storage_stop >/dev/null && storage_stop
  [ -n "${secrets_dir:-}" ] && rm -rf "$secrets_dir"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# Secrets never go on a command line: any local user reads those in /proc while the command runs
# (the demo's processes run as root with the storage). Children get them in their environment (a
# prefix to start, which only their own account can read); curl gets its headers from files here.
secrets_dir=$(mktemp -d /tmp/af-demo-secrets.XXXXXX) # 0700
printf 'Authorization: token %s\n' "$proxy_token" >"$secrets_dir/proxy-api.header"
printf 'Authorization: token %s\n' "$token" >"$secrets_dir/lab.header"

start() { # name logfile command...: starts the command in a new session (its own process group)
  local name=$1 logfile=$2; shift 2
  setsid "$@" >"$logfile" 2>&1 </dev/null &
  pids+=($!)
  names+=("$name")
}

wait_for() { # what url [curl args...]: waits until the URL answers 2xx, or a child dies, or 60 s
  local what=$1 url=$2; shift 2
  for _ in $(seq 1 600); do
    if curl -fsS -o /dev/null --max-time 2 "$@" "$url" 2>/dev/null; then return 0; fi
    local i
    for i in "${!pids[@]}"; do
      if ! kill -0 "${pids[i]}" 2>/dev/null; then
        log "${names[i]} exited while waiting for $what; the end of its log:"
        tail -n 30 "$demo/logs/${names[i]}.log" >&2 || true
        exit 1
      fi
    done
    sleep 0.1
  done
  log "$what did not answer at $url within 60 s (logs in $demo/logs/)"
  exit 1
}

# Token-protected storage and its identity provider (root only: XRootD's start mounts and switches accounts).
lake=0
if [ "$(id -u)" = 0 ]; then
  log "starting the storage: two XRootD servers with SciTokens and an HTTPS identity provider (first time: installs XRootD)"
  bash scripts/xrootd-storage.sh ensure >"$demo/logs/storage-start.log" 2>&1 ||
    { tail -20 "$demo/logs/storage-start.log" >&2; log "XRootD could not be installed (log: $demo/logs/storage-start.log)"; exit 1; }
  # its run directory must be traversable by the servers' own account, which $demo (under a home) may not be
  storage_dir=$(mktemp -d /tmp/af-demo-storage.XXXXXX)
  chmod 711 "$storage_dir"
  storage_stop() { bash scripts/xrootd-storage.sh stop "$storage_dir/run" >/dev/null 2>&1 || true; rm -rf "$storage_dir"; }
  bash scripts/xrootd-storage.sh start "$storage_dir/run" >>"$demo/logs/storage-start.log" 2>&1 ||
    { tail -20 "$demo/logs/storage-start.log" >&2; log "the storage did not start (log: $demo/logs/storage-start.log)"; exit 1; }
  storage_json=$storage_dir/run/storage.json
  storage_fact() { .venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$storage_json" "$1"; }
  issuer=$(storage_fact issuer)
  ca=$(storage_fact ca)
  ca_dir=$(storage_fact ca_dir)
  lake=1
else
  log "not root: the demo runs without token-protected storage and the analysis example (XRootD's start needs root)"
fi

# A real Rucio server with example data (scope data26: ds.small, ds.mc.*, ds.big with 20,000 files; with the
# storage, every replica is a file on it). First start builds its venv (~30 s).
log "starting the demo Rucio server (first time: builds its environment)"
mkdir -p "$demo/rucio"
rucio_env=(RUCIO_OIDC_ISSUER=http://$host:1)
[ "$lake" = 1 ] && rucio_env=(RUCIO_OIDC_ISSUER="$issuer" RUCIO_OIDC_CA="$ca" RUCIO_STORAGE_JSON="$storage_json")
env "${rucio_env[@]}" bash scripts/rucio-server.sh start "$demo/rucio" >"$demo/logs/rucio-start.log" 2>&1 ||
  { tail -20 "$demo/logs/rucio-start.log" >&2; log "the Rucio server did not start (log: $demo/logs/rucio-start.log)"; exit 1; }
rucio_stop() { bash scripts/rucio-server.sh stop "$demo/rucio" >/dev/null 2>&1 || true; }

{
  echo "# Generated by scripts/demo.sh on every start."
  echo "listen: $host:$gw_port"
  echo "base_path: $base_path"
  echo "backend: {type: local, local: {single_user: true}}   # one person on loopback: see docs/security-model.md"
  if [ "$lake" = 1 ]; then
    # Basic names the user for the Lab's panels; a notebook's bearer token (the token agent's) proves her
    # too and reaches her workers. Rucio as the user herself: her token exchanged for Rucio's audience.
    echo "auth:"
    echo "  type: simple"
    echo "  oidc: {issuer: '$issuer', audience: [af-gateway], client_id: af-gateway, client_secret: af-gateway-secret}"
    echo "tokens: {exchange_audiences: [rucio, '$WLCG_ANY']}"
    .venv/bin/python -c 'import json,sys; r=json.load(open(sys.argv[1])); print("rucio: " + json.dumps({"instances": [{"name": "demo", "url": r["url"], "auth": "exchange", "audience": "rucio", "storage_audience": sys.argv[2], "default_scheme": "davs"}]}))' "$demo/rucio/rucio.json" "$WLCG_ANY"
  else
    # no identity provider then, so no user token could act at Rucio: the service account (userpass) reads
    echo "auth: {type: simple}"
    .venv/bin/python -c 'import json,sys; r=json.load(open(sys.argv[1])); u=r["root_userpass"]; print("rucio: " + json.dumps({"instances": [{"name": "demo", "url": r["url"], "auth": "userpass", "account": u["account"], "username": u["username"], "default_scheme": "davs"}]}))' "$demo/rucio/rucio.json"
  fi
} > "$demo/gateway.yaml"
# the service account's password goes by environment, not into the config file
rucio_password=$(.venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1]))["root_userpass"]["password"])' "$demo/rucio/rucio.json")

gateway_env=()
# Node reads extra CAs only at start: the provider's and the storage's certificates are the test CA's
[ "$lake" = 1 ] && gateway_env+=(NODE_EXTRA_CA_CERTS="$ca")
AF_GATEWAY_RUCIO_PASSWORD_DEMO="$rucio_password" start gateway "$demo/logs/gateway.log" env "${gateway_env[@]}" \
  node "$root/gateway-server/dist/cli.js" serve --config "$demo/gateway.yaml" --data-dir "$demo/gateway-data"

lab_args=(--no-browser --ip="$host" --port="$lab_port" --ServerApp.port_retries=0
  --ServerApp.root_dir="$demo/notebooks"
  --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate)
[ "$(id -u)" = 0 ] && lab_args+=(--allow-root)
# Kernels started from Lab find the gateway without arguments: `Gateway()` in a notebook
# (address through the proxy like behind JupyterHub, scheduler TLS straight to the gateway's port).
# `Gateway()` logs in as the demo's user (Basic); with the storage, kernels find her token (WLCG discovery:
# BEARER_TOKEN_FILE) and trust the storage's CA (X509_CERT_DIR), and the example notebook uses both.
lab_env=(JUPYTERLAB_SETTINGS_DIR="$demo/lab-settings" JUPYTERLAB_WORKSPACES_DIR="$demo/lab-workspaces"
  DASK_GATEWAY__ADDRESS="http://$host:$port${base_path%/}" DASK_GATEWAY__PROXY_ADDRESS="tls://$host:$gw_port"
  DASK_GATEWAY__AUTH__TYPE=basic DASK_GATEWAY__AUTH__KWARGS__USERNAME="$user")
[ "$lake" = 1 ] && lab_env+=(BEARER_TOKEN_FILE="$demo/tokens/$user" X509_CERT_DIR="$ca_dir")
JUPYTER_TOKEN="$token" start lab "$demo/logs/lab.log" env "${lab_env[@]}" "$root/.venv/bin/jupyter" lab "${lab_args[@]}"

CONFIGPROXY_AUTH_TOKEN="$proxy_token" start proxy "$demo/logs/proxy.log" \
  "$root/node_modules/.bin/configurable-http-proxy" --ip "$host" --port "$port" \
  --api-ip "$host" --api-port "$api_port" --default-target "http://$host:$lab_port" --log-level warn

wait_for "the proxy's API" "http://$host:$api_port/api/routes" -H @"$secrets_dir/proxy-api.header"
curl -fsS -o /dev/null -X POST -H @"$secrets_dir/proxy-api.header" \
  -d "{\"target\": \"http://$host:$gw_port\"}" "http://$host:$api_port/api/routes${base_path%/}"
wait_for "the gateway" "http://$host:$port${base_path}api/health"
wait_for "JupyterLab" "http://$host:$port/lab" -H @"$secrets_dir/lab.header"

if [ "$lake" = 1 ]; then
  # the user's token: one now (the samples below are registered with it), then a new one every 5 minutes
  agent=(.venv/bin/python scripts/lib/demo-token-agent.py "$storage_json" "$user" "$demo/tokens/$user" "http://$host:$gw_port")
  "${agent[@]}" --once >"$demo/logs/tokens.log" 2>&1 ||
    { tail -5 "$demo/logs/tokens.log" >&2; log "no token for $user (log: $demo/logs/tokens.log)"; exit 1; }
  start tokens "$demo/logs/tokens.log" "${agent[@]}"
  # The analysis example: its notebook once (a user's edits are kept), its samples as her dataset on the
  # storage (the same bytes every time: registering again is a no-op; the demo's Rucio is new each start)
  if [ ! -d "$demo/notebooks/analysis" ]; then
    mkdir -p "$demo/notebooks/analysis"
    cp examples/analysis/four-lepton.ipynb examples/analysis/make_samples.py "$demo/notebooks/analysis/"
  fi
  log "registering the analysis example's samples as user.alice:af.example.4l on the storage"
  env AF_GATEWAY_URL="http://$host:$gw_port" BEARER_TOKEN_FILE="$demo/tokens/$user" X509_CERT_DIR="$ca_dir" \
    .venv/bin/python examples/analysis/make_samples.py "$demo/samples" --files 3 --events 2000 \
    --register user.alice:af.example.4l --rse SITE-A_SCRATCHDISK --instance demo >"$demo/logs/samples.log" 2>&1 ||
    { tail -20 "$demo/logs/samples.log" >&2; log "the example's samples were not registered (log: $demo/logs/samples.log)"; exit 1; }
fi

analysis_line="Analysis:    the analysis example needs token-protected storage, which needs root (not started)"
[ "$lake" = 1 ] && analysis_line="Analysis:    open analysis/four-lepton.ipynb and run all cells: alice's dataset user.alice:af.example.4l
                 read on Dask workers with her token (renewed every 5 min), a histogram, registered back"
cat >&2 <<EOF

  AF Gateway demo is running.

    JupyterLab:  http://$host:$port/lab?token=$token
                 (AF Gateway panels in the left sidebar; notebooks in $demo/notebooks)
    Gateway:     http://$host:$port${base_path} (and http://$host:$gw_port directly),
                 simple auth: any user name, no password; the Lab and Gateway() in a notebook log in as $user
    Rucio:       example datasets in scope data26 (try ds.small, ds.mc.*, ds.big) in the Rucio panel
    $analysis_line
    Workflows:   right-click workflows/map-reduce/workflow.yml in the file browser → Run as Workflow;
                 or from a shell: AF_GATEWAY_URL=http://$host:$port${base_path%/} AF_GATEWAY_USER=$user \\
                   .venv/bin/af-gateway run examples/workflows/map-reduce/workflow.yml -p nfiles=5 --wait
    Logs:        $demo/logs/{gateway,lab,proxy,tokens}.log; clusters in $demo/gateway-data/clusters/,
                 workflow runs in $demo/gateway-data/workflows/

  Ctrl-C stops everything.

EOF

# Run until Ctrl-C (or TERM), or until one of the services ends by itself.
set +e
wait -n "${pids[@]}"
rc=$?
set -e
if [ "$stopping" = 0 ]; then
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[i]}" 2>/dev/null; then
      log "${names[i]} exited (status $rc); the end of $demo/logs/${names[i]}.log:"
      tail -n 30 "$demo/logs/${names[i]}.log" >&2 || true
    fi
  done
  exit 1
fi
