#!/usr/bin/env bash
# A real, throw-away PostgreSQL server for the gateway's tests: Debian's `postgresql` package, but
# never the distribution's own cluster or service (no pg_ctlcluster, no systemd). Each `start` runs
# a private postmaster on 127.0.0.1 and a free port, with its data directory inside the caller's
# run dir; several can run at once. Tuned for tests, not for safety: fsync=off,
# synchronous_commit=off, full_page_writes=off, initdb --no-sync.
#
# Usage:
#   scripts/postgres.sh ensure            install the package if no /usr/lib/postgresql/<major>/bin/
#                                         {initdb,postgres} exists (apt-get, as root; < 1 s when
#                                         installed); the highest major present is used
#   scripts/postgres.sh start <run-dir>   initdb + start a server, create the database `af_gateway`;
#                                         prints the path of <run-dir>/postgres.json (the only line
#                                         on stdout). The server runs in a session of its own
#                                         (setsid): it outlives the calling shell until `stop`.
#                                         Already running in <run-dir>: prints the path, no restart.
#                                         Stopped earlier in <run-dir>: restarts on the same data
#                                         (same password; the same port if it is still free).
#   scripts/postgres.sh stop <run-dir>    fast shutdown (SIGINT), then immediate (SIGQUIT), then
#                                         SIGKILL to the postmaster and its children (bounded, ~10 s
#                                         at most); safe to repeat and when never started. Deletes
#                                         only <run-dir>/postgres.pid.
#   scripts/postgres.sh selftest          runs gateway-server/test/e2e/test_harness_postgres.py (ensure,
#                                         start, psql round trips, stop, in a temp dir)
#
# Run as root, the server runs as the unprivileged `postgres` user the package creates (or a system
# user `af-postgres` made here if there is none): PostgreSQL refuses to run as root. <run-dir> then
# gets o+x (a 0700 mktemp dir becomes 0711) so that user can reach its pgdata; the parents of
# <run-dir> must be traversable by it too (/tmp is).
#
# Authentication: scram-sha-256 for every connection (TCP and Unix socket) with a random password
# for the superuser `af` (initdb --username=af). Encoding UTF8, locale C.UTF-8 (C if absent).
#
# <run-dir> holds pgdata/ (the cluster, owned by the server user), socket/ (the Unix socket
# directory, when its path fits the 107-byte limit of a socket path), initdb.log, postgres.log (the
# server's log), postgres.pid (the postmaster; its children each run in a session of their own),
# postgres.password (kept so a restart reuses the cluster) and postgres.json:
#   url       postgresql://af:<password>@127.0.0.1:<port>/af_gateway
#   host      127.0.0.1            port      TCP port          user      af
#   password  random, hex          database  af_gateway        pid       the postmaster's pid
#   log       <run-dir>/postgres.log        bin_dir   /usr/lib/postgresql/<major>/bin
#   socket_dir  the Unix socket directory ("" when none)       version   server_version
#   data_dir  <run-dir>/pgdata     start_seconds  time the start took
set -euo pipefail

DB_NAME=af_gateway
DB_USER=af
START_TIMEOUT=30   # seconds until the server must accept connections

# libpq settings of the caller (PGHOST, PGPASSWORD, PGSERVICE, ...) must not redirect our psql calls
while read -r v; do unset "$v"; done < <(compgen -e | grep '^PG' || true)

HARNESS_TAG=postgres
. "$(dirname "${BASH_SOURCE[0]}")/lib/harness.sh"   # log, die, now, since, alive, wait_until, lock_cache, apt_install

# ---------------------------------------------------------------- ensure: the package
bin_dir=
find_bin_dir() {   # the highest /usr/lib/postgresql/<major>/bin with initdb and postgres
  local d major best=
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && [ -x "$d/postgres" ] && [ -x "$d/pg_isready" ] && [ -x "$d/psql" ] || continue
    major=$(basename "$(dirname "$d")")
    case "$major" in ''|*[!0-9]*) continue ;; esac
    if [ -z "$best" ] || [ "$major" -gt "$best" ]; then best=$major; fi
  done
  [ -n "$best" ] || return 1
  bin_dir=/usr/lib/postgresql/$best/bin
}

ensure() {
  find_bin_dir && return 0
  [ "$(id -u)" -eq 0 ] || die "PostgreSQL is not installed and installing it needs root (apt-get install postgresql)"
  command -v apt-get >/dev/null || die "PostgreSQL is not installed and there is no apt-get"
  local t0 lock=/var/lock/af-postgres-ensure.lock aptlog
  lock_cache "$lock" 900 ensure
  if find_bin_dir; then unlock_cache; return 0; fi   # installed by another run meanwhile
  t0=$(now)
  aptlog=$(mktemp /tmp/af-postgres-apt.XXXXXX.log)
  log "installing postgresql with apt-get (log: $aptlog)"
  apt_install --log "$aptlog" postgresql || { unlock_cache; die "apt-get failed (log: $aptlog)"; }
  unlock_cache
  # the package may have created (and started) the distribution's own cluster: not ours, left alone
  find_bin_dir || die "postgresql installed but no /usr/lib/postgresql/<major>/bin/{initdb,postgres,pg_isready,psql}"
  rm -f "$aptlog"
  log "installed in $(since "$t0")s: $bin_dir"
}

# ---------------------------------------------------------------- the server user
run_user=   # empty: run as ourselves
as_user=()  # command prefix that runs a command as $run_user
pick_user() {
  [ "$(id -u)" -eq 0 ] || return 0
  if id -u postgres >/dev/null 2>&1; then
    run_user=postgres
  else
    if ! id -u af-postgres >/dev/null 2>&1; then
      useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin af-postgres 2>/dev/null \
        || id -u af-postgres >/dev/null 2>&1 || die "could not create the system user af-postgres"
      log "created the system user af-postgres"
    fi
    run_user=af-postgres
  fi
  # setpriv execs (no fork, unlike runuser/su): with setsid in front, $! is the postmaster itself
  as_user=(setpriv --reuid="$(id -u "$run_user")" --regid="$(id -g "$run_user")" --init-groups
           env HOME=/ USER="$run_user" LOGNAME="$run_user")
}

# ---------------------------------------------------------------- start / stop
json_str() {   # a JSON string literal (backslash, quote, control characters escaped)
  local s=$1
  s=${s//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\n'/\\n}; s=${s//$'\t'/\\t}; s=${s//$'\r'/\\r}
  printf '"%s"' "$s"
}

free_port() {   # a port the kernel considers free now (perl, not the harness library's Python: postgresql-common depends on it)
  perl -MIO::Socket::INET -e '
    my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0, Proto => "tcp", Listen => 1, ReuseAddr => 1) or die "$!\n";
    print $s->sockport, "\n";'
}

port_free() {
  perl -MIO::Socket::INET -e '
    IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $ARGV[0], Proto => "tcp", Listen => 1, ReuseAddr => 1) or exit 1;' "$1"
}

server_pid() {   # the pid in <run-dir>/postgres.pid if it is still the postmaster of <run-dir>/pgdata
  local pid
  pid=$(cat "$1/postgres.pid" 2>/dev/null || true)
  [ -n "$pid" ] && alive "$pid" || return 1
  tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | grep -qxF "$1/pgdata" || return 1
  printf '%s\n' "$pid"
}

psql_run() {   # psql_run <port> <db> <sql>: one statement as `af` over TCP, unaligned tuples only
  PGPASSWORD=$password PGCONNECT_TIMEOUT=5 timeout 30 "$bin_dir/psql" -X -q -At -v ON_ERROR_STOP=1 \
    -h 127.0.0.1 -p "$1" -U "$DB_USER" -d "$2" -c "$3"
}

start() {
  local run=${1:-}
  [ -n "$run" ] || die "usage: $0 start <run-dir>"
  mkdir -p "$run"
  run=$(cd "$run" && pwd -P)
  local pid
  if pid=$(server_pid "$run") && [ -f "$run/postgres.json" ]; then
    log "already running in $run (pid $pid)"
    printf '%s\n' "$run/postgres.json"
    return 0
  fi
  [ -z "${pid:-}" ] || stop "$run"
  ensure
  pick_user
  local t0 logf=$run/postgres.log data=$run/pgdata sock=$run/socket
  t0=$(now)
  rm -f "$run/postgres.pid"

  if [ -n "$run_user" ]; then
    chmod o+x "$run"
    "${as_user[@]}" test -x "$run" || die "$run_user cannot reach $run (a parent directory is not traversable)"
  fi

  # a cluster left by an earlier start is reused (same data, same password); anything else: new
  if [ -f "$data/PG_VERSION" ] && [ -s "$run/postgres.password" ]; then
    password=$(cat "$run/postgres.password")
    rm -f "$data/postmaster.pid"   # ours, stale: the postmaster is gone (checked above)
    log "reusing the cluster in $data"
  else
    rm -rf "$data" "$run/postgres.password" "$run/postgres.json"
    password=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
    mkdir -m 0700 "$data"
    local pwfile=$run/.initdb-pw locale=C
    if locale -a 2>/dev/null | grep -qix 'c\.utf-\?8'; then locale=C.UTF-8; fi
    (umask 077; printf '%s\n' "$password" > "$pwfile")
    if [ -n "$run_user" ]; then chown "$run_user:" "$data" "$pwfile"; fi
    (cd / && timeout 120 "${as_user[@]}" "$bin_dir/initdb" -D "$data" --username="$DB_USER" --pwfile="$pwfile" \
        --auth=scram-sha-256 --encoding=UTF8 --locale="$locale" --no-sync --no-instructions) \
      > "$run/initdb.log" 2>&1 < /dev/null \
      || { rm -f "$pwfile"; tail -30 "$run/initdb.log" >&2; die "initdb failed (log: $run/initdb.log)"; }
    rm -f "$pwfile"
    (umask 077; printf '%s\n' "$password" > "$run/postgres.password")
  fi

  # the Unix socket: <dir>/.s.PGSQL.<port> must fit in sun_path (107 bytes + NUL)
  if [ $(( ${#sock} + 17 )) -le 107 ]; then
    mkdir -p -m 0700 "$sock"
    if [ -n "$run_user" ]; then chown "$run_user:" "$sock"; fi
  else
    log "no Unix socket: $sock is too long for a socket path (TCP only)"
    sock=
  fi

  local attempt port prev_port up= i
  prev_port=$(grep -o '"port": [0-9]*' "$run/postgres.json" 2>/dev/null | grep -o '[0-9]*$' || true)
  for attempt in 1 2 3 4 5; do
    if [ "$attempt" -eq 1 ] && [ -n "$prev_port" ] && port_free "$prev_port"; then port=$prev_port; else port=$(free_port); fi
    printf '\n[postgres.sh] start on port %s at %s\n' "$port" "$(date -Is)" >> "$logf"
    # setsid: the postmaster in a session of its own (its children make theirs with setsid()): it
    # survives the caller's exit. $! is the postmaster itself (setsid and setpriv exec, no fork)
    (cd / && exec setsid "${as_user[@]}" "$bin_dir/postgres" -D "$data" -h 127.0.0.1 -p "$port" -k "$sock" \
        -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
        -c unix_socket_permissions=0700) \
      >> "$logf" 2>&1 < /dev/null &
    pid=$!
    echo "$pid" > "$run/postgres.pid"
    up=
    wait_until "$START_TIMEOUT" 0.1 --pid "$pid" timeout 5 "$bin_dir/pg_isready" -q -h 127.0.0.1 -p "$port" -U "$DB_USER" -d postgres -t 2 && up=1
    [ -n "$up" ] && break
    if ! alive "$pid" && tail -20 "$logf" | grep -q 'could not bind\|Address already in use'; then
      log "port $port taken, retrying"; rm -f "$run/postgres.pid"; continue
    fi
    tail -30 "$logf" >&2
    stop "$run" 2>/dev/null || true
    die "the server did not accept connections within ${START_TIMEOUT}s (log: $logf)"
  done
  [ -n "$up" ] || { tail -30 "$logf" >&2; die "no free port after 5 attempts (log: $logf)"; }
  # the postmaster's own word for its pid (first line of postmaster.pid) must be the one we started
  local pm
  pm=$(head -1 "$data/postmaster.pid" 2>/dev/null || true)
  [ "$pm" = "$pid" ] || log "warning: postmaster.pid says ${pm:-nothing}, started pid $pid"

  local exists version
  exists=$(psql_run "$port" postgres "select 1 from pg_database where datname = '$DB_NAME'") \
    || { tail -20 "$logf" >&2; stop "$run"; die "cannot connect as $DB_USER"; }
  if [ "$exists" != 1 ]; then
    psql_run "$port" postgres "create database $DB_NAME" || { stop "$run"; die "create database $DB_NAME failed"; }
  fi
  version=$(psql_run "$port" "$DB_NAME" 'show server_version') || { stop "$run"; die "cannot connect to $DB_NAME"; }

  local t1 tmpjson=$run/.postgres.json.tmp
  t1=$(since "$t0")
  {
    printf '{\n'
    printf '  "url": %s,\n' "$(json_str "postgresql://$DB_USER:$password@127.0.0.1:$port/$DB_NAME")"
    printf '  "host": "127.0.0.1",\n  "port": %s,\n' "$port"
    printf '  "user": %s,\n  "password": %s,\n  "database": %s,\n' "$(json_str "$DB_USER")" "$(json_str "$password")" "$(json_str "$DB_NAME")"
    printf '  "pid": %s,\n  "log": %s,\n  "bin_dir": %s,\n' "$pid" "$(json_str "$logf")" "$(json_str "$bin_dir")"
    printf '  "socket_dir": %s,\n  "data_dir": %s,\n' "$(json_str "$sock")" "$(json_str "$data")"
    printf '  "version": %s,\n  "start_seconds": %s\n}\n' "$(json_str "$version")" "$t1"
  } > "$tmpjson"
  chmod 0600 "$tmpjson"
  mv "$tmpjson" "$run/postgres.json"
  log "PostgreSQL $version up on 127.0.0.1:$port (pid $pid${run_user:+, user $run_user}) in ${t1}s: $run/postgres.json"
  printf '%s\n' "$run/postgres.json"
}

stop() {
  local run=${1:-}
  [ -n "$run" ] || die "usage: $0 stop <run-dir>"
  [ -d "$run" ] || return 0
  run=$(cd "$run" && pwd -P)
  local pid i kids k left
  pid=$(server_pid "$run") || { rm -f "$run/postgres.pid"; return 0; }
  # the postmaster's children call setsid() themselves (each its own session and process group):
  # no group kill reaches them, so note them now for the case the postmaster must be SIGKILLed
  kids=$(pgrep -P "$pid" 2>/dev/null | tr '\n' ' ' || true)
  # SIGINT: fast shutdown (ends the sessions; SIGTERM's smart shutdown would wait for the clients)
  kill -INT "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
  if alive "$pid"; then
    log "no fast shutdown within 5 s: immediate shutdown (SIGQUIT)"
    kill -QUIT "$pid" 2>/dev/null || true
    for i in $(seq 1 30); do alive "$pid" || break; sleep 0.1; done
  fi
  if alive "$pid"; then
    log "no immediate shutdown within 3 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  # children left behind (only after a SIGKILL: a shutdown ends them first), still postgres ones
  for i in $(seq 1 20); do
    left=
    for k in $kids; do alive "$k" && grep -q '^postgres' "/proc/$k/cmdline" 2>/dev/null && left="$left $k"; done
    [ -n "$left" ] || break
    [ "$i" -eq 10 ] && kill -KILL $left 2>/dev/null
    sleep 0.1
  done
  alive "$pid" && log "warning: postmaster $pid still present"
  [ -z "$left" ] || log "warning: backends$left still present"
  rm -f "$run/postgres.pid"
  log "stopped (pid $pid)"
}

# ---------------------------------------------------------------- selftest
selftest() {   # the checks are a test of the suite now
  local repo; repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
  exec "$repo/.venv/bin/python" -m pytest "$repo/gateway-server/test/e2e/test_harness_postgres.py" -q -p no:cacheprovider
}

case "${1:-}" in
  ensure) t0=$(now); ensure; log "ensure: $(since "$t0")s ($bin_dir)" ;;
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  selftest) selftest ;;
  *) die "usage: $0 ensure | start <run-dir> | stop <run-dir> | selftest" ;;
esac
