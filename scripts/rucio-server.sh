#!/usr/bin/env bash
# A real Rucio server for the gateway's Rucio tests: the `rucio` server package in its own venv,
# SQLite, the Flask WSGI app under gunicorn with ONE worker (SQLite has one writer), accepting the
# test OIDC provider's JWTs as X-Rucio-Auth-Token, bootstrapped through its own REST API.
#
# The venv is cached OUTSIDE the repository, so fresh clones on the same machine reuse it:
#   ${AF_RUCIO_CACHE:-/var/cache/af-gateway}/rucio-venv-<key>   (<key> = hash of REQUIREMENTS below)
#
# Usage:
#   scripts/rucio-server.sh ensure            build the cached venv if missing (< 1 s when cached)
#   scripts/rucio-server.sh start <run-dir>   start a server + bootstrap data; writes <run-dir>/rucio.json
#        env RUCIO_OIDC_ISSUER    (required) issuer URL of the test OIDC provider, http://127.0.0.1:<port>
#            RUCIO_OIDC_AUDIENCE  audience a token must carry (default `rucio`: the provider's
#                                 client-credentials tokens carry `af-gateway`; exchange them, RFC 8693,
#                                 with the `af-gateway` client for audience `rucio`, or set this to
#                                 `af-gateway` to accept them as they are)
#            RUCIO_OIDC_SCOPE     scope(s) a token must carry, space separated (default `openid`)
#            RUCIO_SERVER_THREADS threads of the one gunicorn worker (default 1: the sync worker, so
#                                 requests are served one at a time, a long NDJSON stream blocks the
#                                 rest; >1: the gthread worker, SQLite still has one writer)
#            RUCIO_OIDC_CLIENT_ID / RUCIO_OIDC_CLIENT_SECRET  Rucio's own client at the provider
#                                 (only used to introspect tokens lacking aud/scope; default af-gateway)
#            RUCIO_OIDC_CA        PEM file of the CA of an https issuer (scripts/test-ca.sh's): the
#                                 server trusts it (and only it) when it fetches the issuer's keys
#            RUCIO_STORAGE_JSON   scripts/xrootd-storage.sh's storage.json: the RSEs' davs and root
#                                 protocols point at its two servers (SITE-A_* the first, SITE-B_DISK
#                                 the second) and every registered file is written there, so each
#                                 PFN Rucio hands out resolves to a file with its size and adler32
#            RUCIO_PORT           the port to serve on (default: a free one, retried if taken meanwhile);
#                                 taken already, the start fails
#            RUCIO_HUGE_FILES     N > 0 adds data26:ds.huge, N files on SITE-B_DISK (the demo's 100,000)
#            RUCIO_SEED_CACHE     1: seed once per machine and reuse it (below)
#   scripts/rucio-server.sh stop <run-dir>    stop the server's process group (safe to repeat)
#   scripts/rucio-server.sh credentials       root's userpass identity, one JSON line (known before a start)
#   scripts/rucio-server.sh selftest          provider + server + the REST calls the gateway makes
#
# The seed cache (RUCIO_SEED_CACHE=1; the demo's): the first start seeds as usual and keeps the result in
#   ${AF_RUCIO_CACHE:-/var/cache/af-gateway}/rucio-seed-<key>/   (<key> = hash of SEED_VERSION, the venv,
#   scripts/rucio/*.py and the policy package, RUCIO_HUGE_FILES, with or without storage; an account
#   that cannot write there keeps its seeds in ${XDG_CACHE_HOME:-~/.cache}/af-gateway/)
# : rucio.db (the seeded database), seed.json (its stamp: key, when made, how long it took, the issuer and
# storage endpoints it was made against) and, with storage, files/<site>/ (every seeded file, read-only to
# the storage servers). Later starts copy rucio.db into <run-dir> (each start begins from the seed: what a
# start adds is gone at the next), start the server on it, and adapt it through the REST API: the OIDC
# identities to this start's issuer, the RSEs' protocols to this start's storage servers, whose data
# directories get links to files/ (scripts/rucio/bootstrap.py --reuse). One seed is made at a time per
# key (a lock); seeds no start used for 7 days are removed when a new one is made.
#
# <run-dir> holds rucio.cfg, alembic.ini, idpsecrets.json, rucio.db (SQLite, new at each start),
# rucio.pid (the gunicorn master = its process group), rucio.log (server + access log) and
# rucio.json: url, root userpass credentials, accounts with their OIDC identities, scopes, RSEs with
# their PFN prefixes, datasets with file counts, issuer, audience, pid, log, python of the venv.
# What the bootstrap makes: see scripts/rucio/bootstrap.py.
set -euo pipefail

RECIPE_VERSION="rucio-venv-1"   # bump when the build recipe (not the list) changes
SEED_VERSION="rucio-seed-1"     # bump when what a seed is made of changes outside scripts/rucio/
# Pinned: the server package, the WSGI server, and everything they pull in (pip freeze of a
# working venv), so every machine gets the same server. SQLite needs nothing extra (stdlib sqlite3).
REQUIREMENTS="
rucio==41.5.1
gunicorn==27.0.1
aiohappyeyeballs==2.7.1
aiohttp==3.14.5
aiosignal==1.4.0
alembic==1.16.5
annotated-types==0.8.0
argcomplete==3.7.0
attrs==26.1.0
bcrypt==5.0.0
blinker==1.9.0
boto==2.49.0
boto3==1.42.97
botocore==1.42.97
certifi==2026.10.18
cffi==2.1.1
charset-normalizer==3.5.2
click==8.5.1
cryptography==50.0.2
decorator==5.3.1
defusedxml==0.7.1
docopt==0.6.2
dogpile.cache==1.2.2
Flask==3.1.3
frozenlist==1.8.0
future==1.0.0
geoip2==5.1.0
google-auth==2.50.0
greenlet==3.5.6
idna==3.20
invoke==3.0.3
itsdangerous==2.2.0
Jinja2==3.1.6
jmespath==1.1.0
jsonschema==4.25.1
jsonschema-specifications==2025.9.1
Mako==1.4.3
markdown-it-py==4.3.0
MarkupSafe==3.0.4
maxminddb==2.8.2
mdurl==0.1.2
multidict==7.2.1
oic==1.7.0
packaging==26.2
paramiko==5.0.0
prometheus_client==0.25.0
propcache==0.5.4
pyasn1==0.6.5
pyasn1_modules==0.4.2
pycparser==3.12
pycryptodomex==3.24.2
pydantic==2.14.3
pydantic-settings==2.16.3
pydantic_core==2.50.4
Pygments==2.21.0
pyjwkest==1.4.4
pymemcache==4.0.0
PyNaCl==1.6.2
python-dateutil==2.9.0.post0
python-dotenv==1.2.4
python-magic==0.4.27
redis==7.0.1
referencing==0.37.0
requests==2.32.5
rich==15.0.0
rpds-py==2026.9.1
s3transfer==0.16.1
six==1.17.0
SQLAlchemy==2.0.51
statsd==4.0.1
stevedore==5.10.0
stomp.py==8.2.0
tabulate==0.9.0
typing-inspection==0.4.5
typing_extensions==4.16.0
urllib3==1.26.19
websocket-client==1.9.2
Werkzeug==3.1.9
yarl==1.25.1
"
ROOT_USERPASS_USER=ddmlab      # Rucio's bootstrap identity of root (create_root_account)
ROOT_USERPASS_PWD=secret

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo_root=$(cd "$script_dir/.." && pwd -P)
cache=${AF_RUCIO_CACHE:-/var/cache/af-gateway}
key=$(printf '%s\n%s' "$RECIPE_VERSION" "$REQUIREMENTS" | sha256sum | cut -c1-12)
venv="$cache/rucio-venv-$key"
py="$venv/bin/python"

HARNESS_TAG=rucio-server
. "$script_dir/lib/harness.sh"   # log, die, now, since, alive, wait_until, free_port, lock_cache

# ---------------------------------------------------------------- ensure: the cached venv
host_python() {
  local c
  for c in "${AF_RUCIO_PYTHON:-}" /root/.pyenv/versions/3.11.7/bin/python3 "$(command -v python3.11 || true)"; do
    [ -n "$c" ] && [ -x "$c" ] || continue
    if "$c" -c 'import sys, sqlite3, venv; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      printf '%s\n' "$c"; return 0
    fi
  done
  return 1
}

ensure() {
  [ -f "$venv/.complete" ] && return 0
  lock_cache "$cache/rucio-venv-$key.lock"
  if [ -f "$venv/.complete" ]; then unlock_cache; return 0; fi   # built by another run meanwhile
  local base t0 tmp
  base=$(host_python) || die "no Python 3.11 with sqlite3 and venv (tried \$AF_RUCIO_PYTHON, /root/.pyenv/versions/3.11.7/bin/python3, python3.11)"
  t0=$(now)
  tmp="$cache/.rucio-venv-$key.tmp.$$"
  rm -rf "$tmp" "$venv"
  log "building the Rucio server venv $venv with $base ($("$base" --version 2>&1)); log: $cache/rucio-build-$key.log"
  {
    "$base" -m venv "$tmp"
    printf '%s\n' "$REQUIREMENTS" | grep -v '^$' > "$tmp/requirements.txt"
    "$tmp/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$tmp/requirements.txt"
    "$tmp/bin/python" -m pip check
  } > "$cache/rucio-build-$key.log" 2>&1 || { rm -rf "$tmp"; tail -30 "$cache/rucio-build-$key.log" >&2; die "venv build failed"; }
  # the venv's scripts name their interpreter by absolute path: point them at the final place
  grep -rlI --exclude-dir=__pycache__ -- "$tmp" "$tmp/bin" "$tmp/pyvenv.cfg" 2>/dev/null | while read -r f; do sed -i "s#$tmp#$venv#g" "$f"; done
  touch "$tmp/.complete"
  mv "$tmp" "$venv"
  unlock_cache
  log "venv built in $(since "$t0")s: $("$py" -m pip list --disable-pip-version-check 2>/dev/null | awk '$1=="rucio"||$1=="gunicorn"{printf "%s %s  ", $1, $2}')"
}

# ---------------------------------------------------------------- start / stop

server_pid() {   # the pid in <run-dir>/rucio.pid if it is still our gunicorn
  local pid
  pid=$(cat "$1/rucio.pid" 2>/dev/null || true)
  [ -n "$pid" ] && alive "$pid" && grep -q gunicorn "/proc/$pid/cmdline" 2>/dev/null && printf '%s\n' "$pid"
}

write_config() {
  local run=$1 issuer=$2 audience=$3 scope=$4 client_id=$5 client_secret=$6
  local site_packages
  site_packages=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  cat > "$run/rucio.cfg" <<EOF
# written by scripts/rucio-server.sh start
[common]
loglevel = INFO

[database]
default = sqlite:///$run/rucio.db
# an SQLite file has one writer: gunicorn runs one sync worker

[alembic]
cfg = $run/alembic.ini

[bootstrap]
# root's userpass identity, made by rucio.db.sqla.util.create_root_account
userpass_identity = $ROOT_USERPASS_USER
userpass_pwd = $ROOT_USERPASS_PWD
userpass_email = root@af.test

[policy]
# Rucio's generic permissions plus: rules in user.<name> scopes only by their owner
# (scripts/rucio/af_rucio_policy, on the server's PYTHONPATH)
package = af_rucio_policy
permission = generic
schema = generic
lfn2pfn_algorithm_default = hash
support = AF Gateway test server

[oidc]
# External JWTs: the issuer must be listed in idpsecrets (each entry needs a SCIM sub-object), the
# identity "SUB=<sub>, ISS=<iss>" mapped (default) to an account; every word of expected_audience
# must be in the token's aud and every word of expected_scope in its scope.
idpsecrets = $run/idpsecrets.json
expected_audience = $audience
expected_scope = $scope

[api]
# all default endpoints

[cache]
# a closed port: Rucio then caches nothing (dogpile null backend) instead of sharing a memcached
# that may listen on the default 127.0.0.1:11211 with other servers
url = 127.0.0.1:1

[client]
# for rucio client tools run with RUCIO_CONFIG=<run-dir>/rucio.cfg (the bootstrap passes its own)
rucio_host = http://127.0.0.1:0
auth_host = http://127.0.0.1:0
auth_type = userpass
username = $ROOT_USERPASS_USER
password = $ROOT_USERPASS_PWD
account = root
request_retries = 1
EOF
  cat > "$run/alembic.ini" <<EOF
[alembic]
sqlalchemy.url = sqlite:///$run/rucio.db
script_location = $site_packages/rucio/db/sqla/migrate_repo

[loggers]
keys = root
[handlers]
keys = console
[formatters]
keys = generic
[logger_root]
level = WARN
handlers = console
qualname =
[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic
[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
EOF
  ISSUER="$issuer" CLIENT_ID="$client_id" CLIENT_SECRET="$client_secret" "$py" - > "$run/idpsecrets.json" <<'EOF'
import json, os
c = {'client_id': os.environ['CLIENT_ID'], 'client_secret': os.environ['CLIENT_SECRET']}
print(json.dumps({'af-test-provider': {
    'issuer': os.environ['ISSUER'],               # must equal the tokens' iss exactly
    **c,
    'redirect_uris': ['http://127.0.0.1:1/unused'],
    'SCIM': dict(c),                              # Rucio's "admin" client of this issuer: required
}}, indent=2))
EOF
}

start() {
  local run=${1:-}
  [ -n "$run" ] || die "usage: $0 start <run-dir>"
  [ -n "${RUCIO_OIDC_ISSUER:-}" ] || die "RUCIO_OIDC_ISSUER is required (the test OIDC provider's issuer URL)"
  local issuer=$RUCIO_OIDC_ISSUER audience=${RUCIO_OIDC_AUDIENCE:-rucio} scope=${RUCIO_OIDC_SCOPE:-openid}
  local client_id=${RUCIO_OIDC_CLIENT_ID:-af-gateway} client_secret=${RUCIO_OIDC_CLIENT_SECRET:-af-gateway-secret}
  mkdir -p "$run"
  run=$(cd "$run" && pwd -P)
  local pid
  if pid=$(server_pid "$run") && [ -f "$run/rucio.json" ]; then
    log "already running in $run (pid $pid): $(grep -o '"url": "[^"]*"' "$run/rucio.json")"
    return 0
  fi
  [ -z "${pid:-}" ] || stop "$run"
  ensure
  local threads=${RUCIO_SERVER_THREADS:-1} worker_args
  case "$threads" in ''|*[!0-9]*|0) die "RUCIO_SERVER_THREADS must be a positive integer" ;; esac
  if [ "$threads" -gt 1 ]; then worker_args=(--worker-class gthread --threads "$threads"); else worker_args=(--worker-class sync); fi
  local huge=${RUCIO_HUGE_FILES:-0} fixed_port=${RUCIO_PORT:-}
  case "$huge" in ''|*[!0-9]*) die "RUCIO_HUGE_FILES must be a number of files" ;; esac
  case "$fixed_port" in ''|[1-9]|[1-9][0-9]|[1-9][0-9][0-9]|[1-9][0-9][0-9][0-9]|[1-9][0-9][0-9][0-9][0-9]) ;; *) die "RUCIO_PORT must be a port number" ;; esac
  local t0 t1 port logf=$run/rucio.log
  t0=$(now)
  rm -f "$run/rucio.db" "$run/rucio.db-journal" "$run/rucio.json" "$run/rucio.pid"
  write_config "$run" "$issuer" "$audience" "$scope" "$client_id" "$client_secret"
  export RUCIO_CONFIG="$run/rucio.cfg" PYTHONPATH="$script_dir/rucio" PYTHONDONTWRITEBYTECODE=1

  # the seed cache: reuse the seed (a copy of its database), or make it under its lock
  local seed_dir= seed_key= seed_args=()
  if [ "${RUCIO_SEED_CACHE:-}" = 1 ]; then
    seed_key=$(seed_key "$huge")
    # beside the venv; an account that cannot write there (the venv built by root) keeps its own
    local seeds=$cache
    [ -w "$seeds" ] || seeds=${XDG_CACHE_HOME:-$HOME/.cache}/af-gateway
    mkdir -p "$seeds"
    seed_dir="$seeds/rucio-seed-$seed_key"
    [ -f "$seed_dir/.complete" ] || log "no seed $seed_dir yet: waiting for another start that makes it, or making it"
    lock_cache "$seed_dir.lock" 1800 "start making the Rucio seed"
    if [ -f "$seed_dir/.complete" ]; then
      cp "$seed_dir/rucio.db" "$run/rucio.db"
      touch "$seed_dir/.last-used" 2>/dev/null || true   # (its age decides when an unused seed is removed)
      unlock_cache   # a seed never changes once made; the copy is ours
      seed_args=(--reuse "$seed_dir")
      log "reusing the Rucio seed $seed_key ($(sed -n 's/.*"made": "\([^"]*\)".*/made \1/p' "$seed_dir/seed.json"))"
    else
      rm -rf "$seed_dir" "$seed_dir.tmp"   # what a start that died while seeding left
      seed_args=(--seed-dir "$seed_dir")
      log "making the Rucio seed $seed_key (once per machine)"
    fi
  fi
  if [ ${#seed_args[@]} = 0 ] || [ "${seed_args[0]}" != --reuse ]; then
    "$py" -c '
from rucio.db.sqla.util import build_database, create_base_vo, create_root_account
build_database(); create_base_vo(); create_root_account()
' > "$run/schema.log" 2>&1 || { cat "$run/schema.log" >&2; die "schema build failed"; }
  fi

  local attempt attempts=3
  [ -n "$fixed_port" ] && attempts=1
  for ((attempt = 1; attempt <= attempts; attempt++)); do
    port=${fixed_port:-$(free_port "$py")}
    # setsid: gunicorn (and its worker) in a process group of their own, whose id is $!; 8>&-: the
    # seed's lock is not the server's to hold
    setsid env ${RUCIO_OIDC_CA:+REQUESTS_CA_BUNDLE="$RUCIO_OIDC_CA" SSL_CERT_FILE="$RUCIO_OIDC_CA"} \
      "$py" -m gunicorn rucio.web.rest.flaskapi.v1.main:application \
      --bind "127.0.0.1:$port" --workers 1 "${worker_args[@]}" --timeout 300 --graceful-timeout 5 \
      --no-control-socket --access-logfile - --error-logfile - --capture-output \
      >> "$logf" 2>&1 < /dev/null 8>&- &
    pid=$!
    echo "$pid" > "$run/rucio.pid"
    local up=
    wait_until 30 0.1 --pid "$pid" curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/ping" && up=1
    [ -n "$up" ] && break
    stop "$run" 2>/dev/null || true
    if grep -q "Address already in use" "$logf" 2>/dev/null; then
      [ -n "$fixed_port" ] && die "port $port (RUCIO_PORT) is taken"
      log "port $port taken, retrying"; continue
    fi
    tail -30 "$logf" >&2
    die "the Rucio server did not answer /ping (log: $logf)"
  done
  [ -n "$up" ] || die "no free port after 3 attempts"
  t1=$(since "$t0")
  log "server up on http://127.0.0.1:$port (pid $pid) in ${t1}s; bootstrapping data"

  local info
  info=$(printf '{"pid": %s, "port": %s, "log": "%s", "python": "%s", "venv": "%s", "config": "%s", "run_dir": "%s", "start_seconds": %s, "threads": %s, "root_userpass": {"account": "root", "username": "%s", "password": "%s"}}' \
    "$pid" "$port" "$logf" "$py" "$venv" "$run/rucio.cfg" "$run" "$t1" "$threads" "$ROOT_USERPASS_USER" "$ROOT_USERPASS_PWD")
  "$py" "$script_dir/rucio/bootstrap.py" --run-dir "$run" --url "http://127.0.0.1:$port" \
    --issuer "$issuer" --audience "$audience" --scope-claim "$scope" \
    --username "$ROOT_USERPASS_USER" --password "$ROOT_USERPASS_PWD" --info "$info" \
    ${RUCIO_STORAGE_JSON:+--storage "$RUCIO_STORAGE_JSON"} --huge "$huge" \
    ${seed_key:+--seed-key "$seed_key"} "${seed_args[@]}" 2> "$run/bootstrap.log" \
    || { cat "$run/bootstrap.log" >&2; tail -20 "$logf" >&2; stop "$run"; die "bootstrap failed"; }
  if [ "${seed_args[0]:-}" = --seed-dir ]; then
    touch "$seed_dir/.complete" "$seed_dir/.last-used"
    unlock_cache
    prune_seeds "$seeds" "$seed_dir"
  fi
  grep 'ds.big\|ds.huge\|seed\|done' "$run/bootstrap.log" | sed 's/^/  /' >&2
  log "ready in $(since "$t0")s: $run/rucio.json"
}

# seed_key HUGE: what a seed is made of (see the header)
seed_key() {
  { printf '%s\n%s\n%s\n%s\nstorage=%s\nhuge=%s\n' "$SEED_VERSION" "$key" "$ROOT_USERPASS_USER" "$ROOT_USERPASS_PWD" \
      "$([ -n "${RUCIO_STORAGE_JSON:-}" ] && echo yes || echo no)" "$1"
    find "$script_dir/rucio" -name '*.py' -not -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum | sed "s#$script_dir/##"
  } | sha256sum | cut -c1-12
}

# prune_seeds DIR KEEP: removes the other seeds in DIR no start used for 7 days (each is a database
# and, with storage, every seeded file), each under its lock
prune_seeds() {
  local d
  for d in "$1"/rucio-seed-*/; do
    d=${d%/}
    [ "$d" != "$2" ] && [ -f "$d/.complete" ] || continue
    [ -n "$(find "$d/.last-used" -mtime +7 2>/dev/null)" ] || continue
    (exec 7>"$d.lock"; flock -n 7 && rm -rf "$d" "$d.lock" && log "removed $d (unused for 7 days)") || true
  done
}

stop() {
  local run=${1:-}
  [ -n "$run" ] || die "usage: $0 stop <run-dir>"
  [ -d "$run" ] || return 0
  local pid i
  pid=$(server_pid "$run") || { rm -f "$run/rucio.pid"; return 0; }
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do
    kill -0 -- "-$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$run/rucio.pid"
  log "stopped (pid $pid)"
}

# ---------------------------------------------------------------- selftest
selftest_tmp= oidc_pid=
selftest() {
  local t0
  command -v node >/dev/null || die "selftest needs node (the test OIDC provider)"
  selftest_tmp=$(mktemp -d /tmp/rucio-selftest.XXXXXX)
  local tmp=$selftest_tmp
  cleanup() {   # runs at exit, when the locals are gone: globals only
    [ -n "$selftest_tmp" ] || return 0
    stop "$selftest_tmp/run" || true
    exec 9>&- 2>/dev/null || true
    local i
    for i in $(seq 1 30); do alive "$oidc_pid" || break; [ "$i" -eq 10 ] && kill -TERM "$oidc_pid" 2>/dev/null; sleep 0.1; done
    if alive "$oidc_pid"; then kill -KILL "$oidc_pid" 2>/dev/null || true; fi
    rm -rf "$selftest_tmp"
  }
  trap cleanup EXIT

  t0=$(now)
  ensure
  log "ensure: $(since "$t0")s"

  # the repo's test OIDC provider; it serves until its stdin closes: a FIFO we hold open on fd 9
  local ttl=${SELFTEST_OIDC_TTL:-20}
  mkfifo "$tmp/oidc.in"
  (cd "$repo_root" && OIDC_TTL=$ttl exec node gateway-server/test/support/oidc-provider.mjs < "$tmp/oidc.in" > "$tmp/oidc.out" 2> "$tmp/oidc.err") &
  oidc_pid=$!
  exec 9> "$tmp/oidc.in"
  local i issuer=
  for i in $(seq 1 100); do
    issuer=$(grep -o '"issuer":"[^"]*"' "$tmp/oidc.out" 2>/dev/null | cut -d'"' -f4 || true)
    [ -n "$issuer" ] && break
    alive "$oidc_pid" || { cat "$tmp/oidc.err" >&2; die "the OIDC provider exited"; }
    sleep 0.1
  done
  [ -n "$issuer" ] || die "the OIDC provider printed no issuer"
  log "OIDC provider: $issuer (token TTL ${ttl}s)"

  t0=$(now)
  RUCIO_OIDC_ISSUER=$issuer start "$tmp/run"
  log "start (schema + server + bootstrap): $(since "$t0")s"

  "$py" "$script_dir/rucio/selftest.py" --rucio-json "$tmp/run/rucio.json" --issuer "$issuer" --ttl "$ttl"
  stop "$tmp/run"
  log "selftest passed"
}

case "${1:-}" in
  ensure) t0=$(now); ensure; log "ensure: $(since "$t0")s ($venv)" ;;
  credentials) printf '{"account": "root", "username": "%s", "password": "%s"}\n' "$ROOT_USERPASS_USER" "$ROOT_USERPASS_PWD" ;;
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  selftest) selftest ;;
  *) die "usage: $0 ensure | start <run-dir> | stop <run-dir> | credentials | selftest" ;;
esac
