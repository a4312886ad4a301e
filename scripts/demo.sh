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
# Its Rucio is seeded once per machine (scope data26: ds.small, ds.mc.*, ds.big with 20,000 files and
# ds.huge with 100,000; with the storage every replica is a file on it) and each start begins from a
# copy of that seed (scripts/rucio-server.sh, RUCIO_SEED_CACHE): the first start takes minutes more.
#
# Ports (environment): AF_DEMO_PORT (proxy, 8888), AF_DEMO_LAB_PORT (8889), AF_DEMO_GATEWAY_PORT (8000),
# AF_DEMO_PROXY_API_PORT (the proxy's REST API, 8890). AF_DEMO_DIR moves the demo directory;
# AF_DEMO_HUGE_FILES sets the files of data26:ds.huge (100000; 0: none).
#
# Order: the ports are checked first (a bind, as the servers will do); then set-up and the storage
# (its issuer and CA are in the gateway's configuration); then the proxy, the gateway and JupyterLab
# start with Rucio beside them (its port chosen beforehand), and each of the three must be listening on
# its port itself. A component that exits or cannot listen (a port taken meanwhile) ends the demo at
# once: its name, its port, the end of its log, and everything stopped, Rucio's start (or seed) too.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

HARNESS_TAG=demo
. scripts/lib/harness.sh   # log, now, since, free_port

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
huge_files=${AF_DEMO_HUGE_FILES:-100000}
case "$huge_files" in '' | *[!0-9]*) log "AF_DEMO_HUGE_FILES=$huge_files is not a number of files"; exit 2 ;; esac
demo=${AF_DEMO_DIR:-$root/af-gateway-demo}
base_path=/services/af-gateway/
user=alice   # the demo's analyst: her Rucio account, scope user.alice and identity exist in the demo's Rucio and provider
WLCG_ANY=https://wlcg.cern.ch/jwt/v1/any

# --- ports first, before anything is built or started ---------------------------------------------
# (a bind with SO_REUSEADDR, as the servers do: a listener or a socket bound there fails it)
port_free() { python3 -c 'import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((sys.argv[1], int(sys.argv[2])))' "$host" "$1" 2>/dev/null; }
port_user() { # port: " by NAME (pid N)" when ss can tell who listens there
  ss -ltnpH "sport = :$1" 2>/dev/null | sed -nE 's/.*users:\(\("([^"]*)",pid=([0-9]+).*/ by \1 (pid \2)/p' | head -1 || true
}
busy=0
seen=" "
for spec in "proxy:$port:AF_DEMO_PORT" "JupyterLab:$lab_port:AF_DEMO_LAB_PORT" \
            "gateway:$gw_port:AF_DEMO_GATEWAY_PORT" "proxy API:$api_port:AF_DEMO_PROXY_API_PORT"; do
  IFS=: read -r what p var <<<"$spec"
  case "$p" in '' | *[!0-9]*) log "$var=$p is not a port number"; busy=1; continue ;; esac
  if [[ "$seen" == *" $p "* ]]; then log "port $p is given twice ($var and another AF_DEMO_*PORT)"; busy=1; fi
  seen+="$p "
  if ! port_free "$p"; then
    log "port $host:$p (the $what, $var) is already in use$(port_user "$p")"
    busy=1
  fi
done
[ "$busy" = 0 ] || { log "free the port(s) or choose others with the variables above"; exit 1; }
log "ports free: proxy $host:$port, JupyterLab $host:$lab_port, gateway $host:$gw_port, proxy API $host:$api_port"
t_start=$(now)

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
rucio_job=
rucio_done=0
cleanup() {
  local rc=$?
  stopping=1
  trap - EXIT
  trap '' INT TERM HUP # a second Ctrl-C must not cut the clean-up short
  local i
  # everything is told at once; Rucio's server and the storage stop while the components do
  [ ${#pids[@]} -gt 0 ] && log "stopping: ${names[*]}${rucio_job:+ and the Rucio start}"
  [ -z "$rucio_job" ] || kill -TERM -- "-$rucio_job" 2>/dev/null || true
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM -- "-${pids[i]}" 2>/dev/null || true; done
  if [ -n "$rucio_job" ]; then
    # (a seed left half-made by a start stopped here is made again by the next start)
    for _ in $(seq 1 50); do kill -0 "$rucio_job" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$rucio_job" 2>/dev/null || true
  fi
  declare -F rucio_stop >/dev/null && rucio_stop &
  declare -F storage_stop >/dev/null && storage_stop &
  # the gateway stops its clusters and Lab its kernels; give them time, then kill what is left
  for _ in $(seq 1 200); do
    local alive=0
    for i in "${!pids[@]}"; do kill -0 -- "-${pids[i]}" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for i in "${!pids[@]}"; do kill -KILL -- "-${pids[i]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ ${#pids[@]} -gt 0 ] && log "stopped"
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
pid_of() { local i; for i in "${!names[@]}"; do [ "${names[i]}" = "$1" ] && echo "${pids[i]}"; done; return 0; }
declare -A port_of=() var_of=() # the port each component listens on, for what the demo says when it fails
watched_names=() watched_pids=() watched_logs=()
watch_pid() { watched_names+=("$1"); watched_pids+=("$2"); watched_logs+=("$3"); } # name pid logfile

label() { case "$1" in lab) echo JupyterLab ;; tokens) echo "token agent" ;; *) echo "$1" ;; esac; }
fail() { # name logfile sentence: the demo ends here, saying which component and why, with the end of its log
  local what
  what=$(label "$1")
  if [ -s "$2" ]; then
    log "$what $3; the end of its log ($2):"
    tail -n 30 "$2" >&2 || true
  else
    log "$what $3 (its log, $2, is empty so far)"
  fi
  log "the demo cannot run without the $what: stopping everything"
  exit 1
}

# check_children: every component still runs and Rucio's start has not failed; else the demo ends
check_children() {
  local i n
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[i]}" 2>/dev/null; then
      n=${names[i]}
      if [ -n "${port_of[$n]:-}" ]; then
        local who
        who=$(listening "${port_of[$n]}" "${pids[i]}")
        [ "$who" = unknown ] && who=other
        case "$who" in
          other*) fail "$n" "$demo/logs/$n.log" "could not listen on $host:${port_of[$n]} (${var_of[$n]}): the port was taken meanwhile${who#other}" ;;
        esac
      fi
      fail "$n" "$demo/logs/$n.log" "exited${port_of[$n]:+ (its port: $host:${port_of[$n]}, ${var_of[$n]})}"
    fi
  done
  for i in "${!watched_pids[@]}"; do # started by a script, not our children: the storage's servers, Rucio's
    kill -0 "${watched_pids[i]}" 2>/dev/null || fail "${watched_names[i]}" "${watched_logs[i]}" "exited"
  done
  if [ -n "$rucio_job" ] && ! kill -0 "$rucio_job" 2>/dev/null; then
    local rc=0
    wait "$rucio_job" || rc=$?
    rucio_job=
    [ "$rc" = 0 ] || fail Rucio "$demo/logs/rucio-start.log" "did not start (status $rc)"
    rucio_done=1
  fi
}

# listening PORT PGID: who listens on the port: "ours" (a process of that process group), "other by NAME
# (pid N)", "unknown" (a listener ss names no process for: one this account cannot see, or a socket made
# after ss looked at the processes), or nothing yet. Without ss, anyone listening counts as ours.
listening() {
  local out p
  if ! out=$(ss -ltnpH "sport = :$1" 2>/dev/null); then
    if (exec 3<>"/dev/tcp/$host/$1") 2>/dev/null; then echo ours; fi
    return 0
  fi
  [ -n "$out" ] || return 0
  grep -q 'pid=' <<<"$out" || { echo unknown; return 0; }
  for p in $(grep -o 'pid=[0-9]*' <<<"$out" | cut -d= -f2 | sort -u); do
    if [ "$(ps -o pgid= -p "$p" 2>/dev/null | tr -d ' ')" = "$2" ]; then echo ours; return 0; fi
  done
  echo "other$(sed -nE 's/.*users:\(\("([^"]*)",pid=([0-9]+).*/ by \1 (pid \2)/p' <<<"$out" | head -1)"
}

# wait_listening NAME PORT VAR [NAME PORT VAR ...]: until each component (the proxy's API: the proxy)
# listens on its port itself; a port someone else holds, or a component that exits, ends the demo at once
wait_listening() {
  local -a todo=("$@") left
  local -A unknown=()
  local k n c p v who
  for _ in $(seq 1 1200); do
    check_children
    left=()
    for ((k = 0; k < ${#todo[@]}; k += 3)); do
      n=${todo[k]} p=${todo[k + 1]} v=${todo[k + 2]}
      c=${n%% *} # the component: "proxy API" is the proxy's
      who=$(listening "$p" "$(pid_of "$c")")
      # a listener without a process for 3 s is not a socket ss looked at too early: someone else's
      if [ "$who" = unknown ]; then
        unknown[$p]=$((${unknown[$p]:-0} + 1))
        [ "${unknown[$p]}" -ge 30 ] && who=other
      fi
      case "$who" in
        ours) ;;
        other*)
          # its own word on it, when it has one: it fails to bind and exits (give it 5 s)
          for _ in $(seq 1 50); do kill -0 "$(pid_of "$c")" 2>/dev/null || break; sleep 0.1; done
          fail "$c" "$demo/logs/$c.log" "could not listen on $host:$p ($v): the port was taken meanwhile${who#other}"
          ;;
        *) left+=("$n" "$p" "$v") ;;
      esac
    done
    [ ${#left[@]} = 0 ] && return 0
    todo=("${left[@]}")
    sleep 0.1
  done
  log "not listening within 120 s: ${todo[*]} (logs in $demo/logs/)"
  exit 1
}

wait_for() { # what url [curl args...]: waits until the URL answers 2xx, or a component fails, or 60 s
  local what=$1 url=$2; shift 2
  for _ in $(seq 1 600); do
    if curl -fsS -o /dev/null --max-time 2 "$@" "$url" 2>/dev/null; then return 0; fi
    check_children
    sleep 0.1
  done
  log "$what did not answer at $url within 60 s (logs in $demo/logs/)"
  exit 1
}

# Token-protected storage and its identity provider (root only: XRootD's start mounts and switches accounts).
lake=0
if [ "$(id -u)" = 0 ]; then
  log "starting the storage: two XRootD servers with SciTokens and an HTTPS identity provider (first time: installs XRootD)"
  bash scripts/xrootd-storage.sh ensure >"$demo/logs/storage.log" 2>&1 || fail storage "$demo/logs/storage.log" "could not be installed"
  # its run directory must be traversable by the servers' own account, which $demo (under a home) may not be
  storage_dir=$(mktemp -d /tmp/af-demo-storage.XXXXXX)
  chmod 711 "$storage_dir"
  storage_stop() { bash scripts/xrootd-storage.sh stop "$storage_dir/run" >/dev/null 2>&1 || true; rm -rf "$storage_dir"; }
  bash scripts/xrootd-storage.sh start "$storage_dir/run" >>"$demo/logs/storage.log" 2>&1 || fail storage "$demo/logs/storage.log" "did not start"
  storage_json=$storage_dir/run/storage.json
  storage_fact() { .venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$storage_json" "$1"; }
  issuer=$(storage_fact issuer)
  ca=$(storage_fact ca)
  ca_dir=$(storage_fact ca_dir)
  while read -r n pid logfile; do watch_pid "storage server $n" "$pid" "$logfile"; done < <(.venv/bin/python -c 'import json, sys
for i in json.load(open(sys.argv[1]))["instances"]: print(i["name"], i["pid"], i["log"])' "$storage_json")
  lake=1
else
  log "not root: the demo runs without token-protected storage and the analysis example (XRootD's start needs root)"
fi

# Rucio's port is chosen now, so that the gateway starts (and holds its port) while Rucio is starting.
rucio_port=$(free_port .venv/bin/python)
rucio_url=http://$host:$rucio_port
rucio_stop() { bash scripts/rucio-server.sh stop "$demo/rucio" >/dev/null 2>&1 || true; }
rucio_credentials=$(bash scripts/rucio-server.sh credentials)
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
    echo "rucio: {instances: [{name: demo, url: '$rucio_url', auth: exchange, audience: rucio, storage_audience: '$WLCG_ANY', default_scheme: davs}]}"
  else
    # no identity provider then, so no user token could act at Rucio: the service account (userpass) reads
    echo "auth: {type: simple}"
    .venv/bin/python -c 'import json,sys; u=json.loads(sys.argv[2]); print("rucio: " + json.dumps({"instances": [{"name": "demo", "url": sys.argv[1], "auth": "userpass", "account": u["account"], "username": u["username"], "default_scheme": "davs"}]}))' "$rucio_url" "$rucio_credentials"
  fi
} > "$demo/gateway.yaml"
# the service account's password goes by environment, not into the config file
rucio_password=$(.venv/bin/python -c 'import json,sys; print(json.loads(sys.argv[1])["password"])' "$rucio_credentials")

# --- the components holding the demo's ports, and Rucio beside them -----------------------------------
CONFIGPROXY_AUTH_TOKEN="$proxy_token" start proxy "$demo/logs/proxy.log" \
  "$root/node_modules/.bin/configurable-http-proxy" --ip "$host" --port "$port" \
  --api-ip "$host" --api-port "$api_port" --default-target "http://$host:$lab_port" --log-level warn

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

port_of=([proxy]=$port [gateway]=$gw_port [lab]=$lab_port)
var_of=([proxy]=AF_DEMO_PORT [gateway]=AF_DEMO_GATEWAY_PORT [lab]=AF_DEMO_LAB_PORT)

# A real Rucio server with the example data, from the machine's seed (the first start makes it: minutes;
# later ones copy its database and link its files: seconds), started beside the others and watched
# like them. The first start on a machine also builds its environment (~30 s).
mkdir -p "$demo/rucio"
rucio_env=(RUCIO_OIDC_ISSUER="http://$host:1" RUCIO_PORT="$rucio_port" RUCIO_SEED_CACHE=1 RUCIO_HUGE_FILES="$huge_files")
[ "$lake" = 1 ] && rucio_env+=(RUCIO_OIDC_ISSUER="$issuer" RUCIO_OIDC_CA="$ca" RUCIO_STORAGE_JSON="$storage_json")
log "starting the demo Rucio server (the first start on a machine seeds it, for minutes; later ones reuse the seed)"
setsid env "${rucio_env[@]}" bash scripts/rucio-server.sh start "$demo/rucio" >"$demo/logs/rucio-start.log" 2>&1 </dev/null &
rucio_job=$!

# each port held by its own component (a port taken since the check above ends the demo here, at once)
wait_listening proxy "$port" AF_DEMO_PORT "proxy API" "$api_port" AF_DEMO_PROXY_API_PORT \
  gateway "$gw_port" AF_DEMO_GATEWAY_PORT lab "$lab_port" AF_DEMO_LAB_PORT
log "listening: proxy $host:$port (API $host:$api_port), gateway $host:$gw_port, JupyterLab $host:$lab_port"

wait_for "the proxy's API" "http://$host:$api_port/api/routes" -H @"$secrets_dir/proxy-api.header"
curl -fsS -o /dev/null -X POST -H @"$secrets_dir/proxy-api.header" \
  -d "{\"target\": \"http://$host:$gw_port\"}" "http://$host:$api_port/api/routes${base_path%/}"
wait_for "the gateway" "http://$host:$port${base_path}api/health"
wait_for "JupyterLab" "http://$host:$port/lab" -H @"$secrets_dir/lab.header"

if [ "$lake" = 1 ]; then
  # the user's token: one now (the samples below are registered with it), then a new one every 5 minutes
  agent=(.venv/bin/python scripts/lib/demo-token-agent.py "$storage_json" "$user" "$demo/tokens/$user" "http://$host:$gw_port")
  "${agent[@]}" --once >"$demo/logs/tokens.log" 2>&1 || fail "token agent" "$demo/logs/tokens.log" "gave no token for $user"
  start tokens "$demo/logs/tokens.log" "${agent[@]}"
fi

# the rest of Rucio's start (seeding, the first time)
for _ in $(seq 1 36000); do
  [ "$rucio_done" = 1 ] && break
  check_children
  sleep 0.1
done
[ "$rucio_done" = 1 ] || fail Rucio "$demo/logs/rucio-start.log" "was not up within an hour"
rucio_seed=$(.venv/bin/python -c 'import json, sys
s = json.load(open(sys.argv[1]))["seed"]
print(("reused the seed" if s["reused"] else "seeded now (kept for the next starts): the seed") + " %(key)s made %(made)s in %(seed_seconds)s s" % s)' "$demo/rucio/rucio.json")
log "Rucio is up at $rucio_url: $rucio_seed"
watch_pid Rucio "$(cat "$demo/rucio/rucio.pid")" "$demo/rucio/rucio.log"

if [ "$lake" = 1 ]; then
  # The analysis example: its notebook once (a user's edits are kept), its samples as her dataset on the
  # storage (the same bytes every time; each start's Rucio begins from the seed, without them, so they
  # are registered on every start, through the gateway as she would)
  if [ ! -d "$demo/notebooks/analysis" ]; then
    mkdir -p "$demo/notebooks/analysis"
    cp examples/analysis/four-lepton.ipynb examples/analysis/make_samples.py "$demo/notebooks/analysis/"
  fi
  log "registering the analysis example's samples as user.alice:af.example.4l on the storage"
  env AF_GATEWAY_URL="http://$host:$gw_port" BEARER_TOKEN_FILE="$demo/tokens/$user" X509_CERT_DIR="$ca_dir" \
    .venv/bin/python examples/analysis/make_samples.py "$demo/samples" --files 3 --events 2000 \
    --register user.alice:af.example.4l --rse SITE-A_SCRATCHDISK --instance demo >"$demo/logs/samples.log" 2>&1 ||
    fail "analysis example" "$demo/logs/samples.log" "could not register its samples"
fi

datasets="ds.small, ds.mc.*, ds.big (20,000 files)"
[ "$huge_files" -gt 0 ] && datasets+=", ds.huge ($(.venv/bin/python -c 'import sys; print(f"{int(sys.argv[1]):,}")' "$huge_files") files)"
if [ "$lake" = 1 ]; then
  analysis_line="Analysis:    analysis/four-lepton.ipynb: alice's dataset user.alice:af.example.4l read on Dask workers
                 with her token (renewed every 5 min), a histogram, registered back"
  try_token="Open the Access token panel (the key icon): alice's token from the demo's agent, its scopes, a live countdown."
  try_rucio="Open the Rucio panel: alice's dataset user.alice:af.example.4l (scope user.alice, search af.example.4l),
       open it for its files and PFNs; then scope data26: $datasets."
  try_notebook="Open analysis/four-lepton.ipynb in the file browser, Run → Run All Cells: a Dask cluster starts, its
       workers read her dataset with her token, the four-lepton mass is plotted and registered back into Rucio."
else
  analysis_line="Analysis:    the analysis example needs token-protected storage, which needs root (not started)"
  try_token="Open the Access token panel (the key icon): no token here (the identity provider needs root)."
  try_rucio="Open the Rucio panel: scope data26, search ds.*, open a dataset for its files and PFNs: $datasets."
  try_notebook="The four-lepton notebook (analysis/four-lepton.ipynb) needs the storage, which needs root: start
       the demo as root for it; meanwhile, right-click workflows/map-reduce/workflow.yml → Run as Workflow."
fi
cat >&2 <<EOF

  AF Gateway demo is running (up in $(since "$t_start") s; Rucio $rucio_seed).

    JupyterLab:  http://$host:$port/lab?token=$token
                 (AF Gateway panels in the left sidebar; notebooks in $demo/notebooks)
    Gateway:     http://$host:$port${base_path} (and http://$host:$gw_port directly),
                 simple auth: any user name, no password; the Lab and Gateway() in a notebook log in as $user
    Rucio:       $rucio_url, example datasets in scope data26: $datasets
    $analysis_line
    Workflows:   right-click workflows/map-reduce/workflow.yml in the file browser → Run as Workflow;
                 or from a shell: AF_GATEWAY_URL=http://$host:$port${base_path%/} AF_GATEWAY_USER=$user \\
                   .venv/bin/af-gateway run examples/workflows/map-reduce/workflow.yml -p nfiles=5 --wait
    Logs:        $demo/logs/{gateway,lab,proxy,tokens,rucio-start,storage}.log; clusters in
                 $demo/gateway-data/clusters/, workflow runs in $demo/gateway-data/workflows/

  Try this first:
    1. Open the JupyterLab address above.
    2. $try_token
    3. $try_rucio
    4. $try_notebook
    5. Open the Dask clusters panel, + New, Create: a cluster of alice's; scale it to 2 workers and open its
       dashboard from its card.

  Ctrl-C stops everything.

EOF

# Run until Ctrl-C (or TERM), or until one of the components ends by itself (which ends the demo: its
# name, port and log, as while starting).
while :; do
  check_children
  sleep 0.5
done
