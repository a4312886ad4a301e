#!/usr/bin/env bash
# Real token-protected storage for the tests: two XRootD servers (Debian's xrootd-server 5.5 with
# xrootd-scitokens-plugins), the two RSEs of the test Rucio. Each serves root:// (the xroot protocol,
# TLS required, tokens through the `ztn` security protocol) and davs:// (HTTPS/WebDAV by XrdHttp, the
# test CA's server certificate, tokens in `Authorization: Bearer`), authorised by WLCG tokens of one
# HTTPS issuer through libXrdAccSciTokens: storage.read:/ reads, storage.create:/ writes new files,
# storage.modify:/ also overwrites and deletes; no token, another issuer's, an expired or altered
# one, or one for another audience gets nothing.
#
# Usage:
#   scripts/xrootd-storage.sh ensure            install the packages if missing (apt-get, as root) and
#                                               make the test CA (scripts/test-ca.sh); < 1 s when done
#   scripts/xrootd-storage.sh start <run-dir>   start the two servers (and, without XRD_OIDC_ISSUER, an
#                                               HTTPS test issuer); prints one JSON line (also in
#                                               <run-dir>/storage.json). Needs root.
#        env XRD_OIDC_ISSUER  the issuer to trust (https://...); default: start the repository's test
#                             OpenID provider (gateway-server/test/support/oidc-provider.mjs) over HTTPS
#                             with the test CA's certificate, stopped by `stop`
#            XRD_OIDC_CA      PEM file of the CA that signed XRD_OIDC_ISSUER's certificate (default: the test CA)
#            XRD_INSTANCES    names of the servers (default "XRD1 XRD2")
#            XRD_SCITOKENS_TRACE  the token plugin's log levels (default "error warning info"); "all"
#                             adds a line per token a server has not seen before ("New valid token
#                             mapped_username=<sub>, ...": its claims, never the token) and per access
#   scripts/xrootd-storage.sh stop <run-dir>    stop what start started there and remove what it made
#                                               (data, keys, configuration, logs); safe to repeat
#   scripts/xrootd-storage.sh selftest          ensure, then gateway-server/test/e2e/test_storage.py: start,
#                                               the checks with real clients (curl, xrdcp), stop; prints
#                                               each check; exits non-zero on any failure
#
# The JSON (storage.json):
#   issuer          the trusted issuer's URL          issuer_started  true when start started it
#   issuer_sign     (when started) a FIFO: write {"sign": {claims}} as one line and the issuer appends
#                   {"token": ...} to issuer_out — for tokens no client can get (expired ones)
#   ca, ca_dir      the test CA's certificate and its hashed directory
#   client_env      what an xrootd client needs besides a token: {"X509_CERT_DIR": ca_dir}
#   user            the account the servers run as (never root)
#   instances       [{name, root (root://127.0.0.1:<port>), davs (davs://127.0.0.1:<port>), https
#                   (the same as https://), root_port, http_port, data_dir, log, pid, audiences}]
#   run_dir, start_seconds
#
# Clients: davs:// is plain HTTPS (curl --cacert <ca> -H "Authorization: Bearer $T"; PUT writes,
# GET reads, PROPFIND lists, DELETE needs storage.modify). root:// URLs take an absolute path after a
# second slash (root://127.0.0.1:<port>//dir/file); xrdcp finds the token in BEARER_TOKEN, or in the
# file BEARER_TOKEN_FILE names (that file must be readable by its owner only: 0600, else the client
# ignores it), then $XDG_RUNTIME_DIR/bt_u<uid>, /tmp/bt_u<uid>; it trusts the test CA through
# X509_CERT_DIR=<ca_dir>. Expiry: davs:// checks the token of each request; root:// checks it when
# a connection logs in (ztn), and a connection opened with a token that expires later keeps working
# (checked: xrdfs with a 6 s token read again at 10 s). Audiences: a token's `aud` must be
# https://wlcg.cern.ch/jwt/v1/any (WLCG's "any", accepted by the plugin itself) or one of the
# instance's own URLs (`audiences`).
#
# How the issuer's CA is trusted: the plugin fetches the issuer's keys with scitokens-cpp 0.7.3, whose
# libcurl reads only the system bundle /etc/ssl/certs/ca-certificates.crt (it sets no CA of its own
# and honours no environment variable for one; SSL_CERT_FILE and CURL_CA_BUNDLE were tried). Each
# server therefore runs in a mount namespace of its own (unshare --mount) in which a copy of that
# bundle plus the test CA is bind-mounted over it: the machine's store is never changed, and no
# other process trusts the test CA. The servers' key cache (scitokens-cpp's SQLite file) is in their
# run directory (XDG_CACHE_HOME), so a new issuer on a reused port is never judged by old keys.
#
# <run-dir>/<NAME>/ (owned by the server's account, 0700): xrootd.cfg, scitokens.cfg, tls/ (the
# server certificate, its key 0400, the trust bundle), data/ (the files: oss.localroot), admin/,
# cache/, xrootd.log (the server's log; tokens never appear in it), xrootd.pid.
# <run-dir>/issuer/ (when start started one): op.in (the FIFO), op.out, op.err, op.pid, holder.pid.
set -euo pipefail

PACKAGES=(xrootd-server xrootd-scitokens-plugins xrootd-client ca-certificates curl openssl)
WLCG_ANY=https://wlcg.cern.ch/jwt/v1/any
SYSTEM_BUNDLE=/etc/ssl/certs/ca-certificates.crt

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo_root=$(cd "$script_dir/.." && pwd -P)

HARNESS_TAG=xrootd-storage
. "$script_dir/lib/harness.sh"   # log, die, now, since, alive, need_root, wait_until, free_ports, lock_cache, apt_install

# ---------------------------------------------------------------- ensure
missing_packages() {   # the PACKAGES not installed, space separated (one dpkg-query for all)
  local p st out=
  for p in "${PACKAGES[@]}"; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$st" = "install ok installed" ] || out+="$p "
  done
  printf '%s' "${out% }"
}

ca_dir=
ensure() {
  local missing
  missing=$(missing_packages)
  if [ -n "$missing" ]; then
    need_root "installing $missing"
    command -v apt-get >/dev/null || die "$missing missing and there is no apt-get"
    lock_cache /var/lock/af-xrootd-ensure.lock 900 "package install"
    missing=$(missing_packages)
    if [ -n "$missing" ]; then
      local t0 aptlog
      t0=$(now)
      aptlog=$(mktemp /tmp/af-xrootd-apt.XXXXXX.log)
      log "installing $missing with apt-get (log: $aptlog)"
      # shellcheck disable=SC2086   # a list of package names
      apt_install --log "$aptlog" $missing || { unlock_cache; die "apt-get failed (log: $aptlog)"; }
      rm -f "$aptlog"
      log "installed in $(since "$t0")s"
    fi
    unlock_cache
  fi
  [ -x /usr/bin/xrootd ] && [ -x /usr/bin/xrdcp ] || die "xrootd or xrdcp missing after the install"
  ls /usr/lib/*/libXrdAccSciTokens-5.so >/dev/null 2>&1 || die "libXrdAccSciTokens-5.so missing after the install"
  ca_dir=$(bash "$script_dir/test-ca.sh" ensure) || die "the test CA could not be made"
}

# ---------------------------------------------------------------- the servers' account
run_user= run_uid= run_gid=
pick_user() {
  if id -u xrootd >/dev/null 2>&1; then
    run_user=xrootd   # made by Debian's xrootd-server
  else
    if ! id -u af-xrootd >/dev/null 2>&1; then
      useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin af-xrootd 2>/dev/null \
        || id -u af-xrootd >/dev/null 2>&1 || die "could not create the system user af-xrootd"
      log "created the system user af-xrootd"
    fi
    run_user=af-xrootd
  fi
  run_uid=$(id -u "$run_user")
  run_gid=$(id -g "$run_user")
  [ "$run_uid" -ne 0 ] || die "$run_user is root: the servers must not run as root"
}

# ---------------------------------------------------------------- the issuer (when start starts it)
issuer_pid() {   # the pid in <run-dir>/issuer/op.pid if it is still our provider
  local pid
  pid=$(cat "$1/issuer/op.pid" 2>/dev/null || true)
  [ -n "$pid" ] && alive "$pid" && grep -q oidc-provider.mjs "/proc/$pid/cmdline" 2>/dev/null && printf '%s\n' "$pid"
}

start_issuer() {   # start_issuer RUN: prints the issuer URL
  local run=$1 d=$1/issuer pid holder i issuer=
  command -v node >/dev/null || die "starting the test issuer needs node"
  [ -d "$repo_root/node_modules/oidc-provider" ] || die "node_modules/oidc-provider is missing (run scripts/bootstrap.sh)"
  rm -rf "$d"
  mkdir -m 0700 "$d"
  mkfifo -m 0600 "$d/op.in"
  # the provider serves until its stdin ends: a holder keeps the FIFO open (stop ends both)
  (cd "$repo_root" && OIDC_TLS_CERT="$ca_dir/server.pem" OIDC_TLS_KEY="$ca_dir/server.key" OIDC_TLS_CA="$ca_dir/ca.pem" \
    exec setsid node gateway-server/test/support/oidc-provider.mjs < "$d/op.in" > "$d/op.out" 2> "$d/op.err") &
  pid=$!
  echo "$pid" > "$d/op.pid"
  setsid sleep infinity > "$d/op.in" 2>/dev/null < /dev/null &
  holder=$!
  echo "$holder" > "$d/holder.pid"
  for i in $(seq 1 150); do
    issuer=$(head -1 "$d/op.out" 2>/dev/null | grep -o '"issuer":"[^"]*"' | cut -d'"' -f4 || true)
    [ -n "$issuer" ] && break
    alive "$pid" || { cat "$d/op.err" >&2; stop_issuer "$run"; die "the test issuer exited"; }
    sleep 0.1
  done
  [ -n "$issuer" ] || { cat "$d/op.err" >&2; stop_issuer "$run"; die "the test issuer printed no issuer in 15 s"; }
  printf '%s\n' "$issuer"
}

stop_issuer() {
  local d=$1/issuer pid holder i
  [ -d "$d" ] || return 0
  pid=$(issuer_pid "$1" || true)
  holder=$(cat "$d/holder.pid" 2>/dev/null || true)
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  if [ -n "$holder" ] && alive "$holder" && grep -q '^sleep' "/proc/$holder/cmdline" 2>/dev/null; then kill -TERM "$holder" 2>/dev/null || true; fi
  rm -rf "$d"
}

# ---------------------------------------------------------------- one server
server_pid() {   # server_pid INSTANCE-DIR: the pid in xrootd.pid if it is still our xrootd
  local pid
  pid=$(cat "$1/xrootd.pid" 2>/dev/null || true)
  [ -n "$pid" ] && alive "$pid" || return 1
  tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | grep -qxF "$1/xrootd.cfg" || return 1
  printf '%s\n' "$pid"
}

write_instance() {   # write_instance DIR NAME ROOT_PORT HTTP_PORT ISSUER TRUST_CA
  local d=$1 name=$2 rport=$3 hport=$4 issuer=$5 trust_ca=$6
  rm -rf "$d"
  mkdir -m 0700 "$d"
  mkdir -m 0700 "$d/data" "$d/admin" "$d/cache" "$d/tls"
  cp "$ca_dir/server.pem" "$d/tls/cert.pem"
  cp "$ca_dir/server.key" "$d/tls/key.pem"
  # what the plugin's libcurl trusts inside the server's mount namespace: the system's CAs + the issuer's
  cat "$SYSTEM_BUNDLE" "$trust_ca" > "$d/tls/trust.pem"
  chmod 0444 "$d/tls/cert.pem" "$d/tls/trust.pem"
  chmod 0400 "$d/tls/key.pem"
  cat > "$d/scitokens.cfg" <<EOF
# written by scripts/xrootd-storage.sh start: WLCG tokens of one issuer, scopes relative to /
[Global]
# besides these, the plugin accepts WLCG's "any" audience ($WLCG_ANY) by itself
audience = https://127.0.0.1:$hport,https://localhost:$hport,davs://127.0.0.1:$hport,davs://localhost:$hport,root://127.0.0.1:$rport,root://localhost:$rport
# no token, or one that does not allow the operation: refused (no other authorisation behind it)
onmissing = deny

[Issuer af-test]
issuer = $issuer
base_path = /
# the token's subject becomes the request's user name (the server's log says who did what)
map_subject = true
EOF
  cat > "$d/xrootd.cfg" <<EOF
# written by scripts/xrootd-storage.sh start: $name, a standalone data server
all.role server
all.export /
all.adminpath $d/admin
all.pidpath $d/admin
oss.localroot $d/data
xrootd.chksum adler32

# root:// on $rport, TLS required for every client (ztn sends the token only over TLS)
xrd.port $rport
xrd.tls $d/tls/cert.pem $d/tls/key.pem
xrd.tlsca certdir $ca_dir/certs
xrootd.tls all
xrootd.seclib libXrdSec.so
sec.protocol ztn
sec.protbind * only ztn

# davs:// on $hport: XrdHttp takes its certificate and CA from xrd.tls/xrd.tlsca
xrd.protocol XrdHttp:$hport libXrdHttp.so
# (XrdHttp 5.5 matches these names case-sensitively: HTTP/2-style clients such as Node's fetch send
# "authorization", which the first line alone leaves unread, and the request is then tokenless)
http.header2cgi Authorization authz
http.header2cgi authorization authz

# authorisation by tokens only (no "++": nothing else may allow what the tokens do not)
ofs.authorize 1
ofs.authlib libXrdAccSciTokens.so config=$d/scitokens.cfg
scitokens.trace $trace
EOF
  chown -R "$run_uid:$run_gid" "$d"
}

launch_instance() {   # launch_instance RUN NAME: starts xrootd for RUN/NAME in a mount namespace of its own
  local run=$1 name=$2 d=$1/$2
  # unshare, sh, setpriv and env exec: $! is the xrootd process itself. The bind mount exists only
  # in the new namespace (private propagation) and goes when the server does.
  (cd "$run" && exec setsid unshare --mount --propagation private -- /bin/sh -c '
      mount --bind "$1" "$2" || exit 97
      exec setpriv --reuid="$3" --regid="$4" --init-groups \
        env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$5" XDG_CACHE_HOME="$5/cache" LANG=C.UTF-8 \
        xrootd -c "$5/xrootd.cfg" -l "$6/xrootd.log" -n "$7"' \
    sh "$d/tls/trust.pem" "$SYSTEM_BUNDLE" "$run_uid" "$run_gid" "$d" "$run" "$name" \
    > "$d/stdout.log" 2>&1 < /dev/null) &
  echo "$!" > "$d/xrootd.pid"
}

instance_up() {   # instance_up DIR ROOT_PORT HTTP_PORT: initialised and both ports answer
  grep -q 'initialization completed' "$1/xrootd.log" 2>/dev/null || return 1
  (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null || return 1
  curl -s -o /dev/null --max-time 3 --cacert "$ca_dir/ca.pem" "https://127.0.0.1:$3/"
}

stop_instance() {   # stop_instance DIR
  local d=$1 pid i
  pid=$(server_pid "$d" || true)
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$d/xrootd.pid"
}

# ---------------------------------------------------------------- start / stop
instance_names() { printf '%s\n' ${XRD_INSTANCES:-XRD1 XRD2}; }

start() {
  local run=${1:-}
  [ -n "$run" ] || die "usage: $0 start <run-dir>"
  trace=${XRD_SCITOKENS_TRACE:-error warning info}   # (write_instance's)
  [[ "$trace" =~ ^[a-z]+( [a-z]+)*$ ]] || die "XRD_SCITOKENS_TRACE: log level names separated by spaces, not '$trace'"
  need_root "starting the storage" "a mount namespace per server, and servers run as their own account"
  mkdir -p "$run"
  run=$(cd "$run" && pwd -P)
  if [ -s "$run/storage.json" ]; then
    local all_up=1 n
    for n in $(instance_names); do server_pid "$run/$n" >/dev/null || all_up=; done
    if [ -n "$all_up" ]; then
      log "already running in $run"
      cat "$run/storage.json"
      return 0
    fi
    stop "$run"
  fi
  ensure
  pick_user
  local t0 names issuer started=false trust_ca
  t0=$(now)
  mapfile -t names < <(instance_names)
  [ "${#names[@]}" -ge 1 ] || die "XRD_INSTANCES names no server"
  for n in "${names[@]}"; do
    [[ "$n" =~ ^[A-Za-z][A-Za-z0-9_-]{0,30}$ ]] || die "bad instance name: $n"
    [[ "$n" != issuer ]] || die "an instance may not be called issuer"
  done

  # the servers' account must reach <run-dir>: only the search bit, as the postgres harness does
  chmod o+x "$run"
  setpriv --reuid="$run_uid" --regid="$run_gid" --init-groups test -x "$run" \
    || die "$run_user cannot reach $run (a parent directory is not traversable)"
  setpriv --reuid="$run_uid" --regid="$run_gid" --init-groups test -r "$ca_dir/certs/ca.pem" \
    || die "$run_user cannot read the test CA in $ca_dir"

  if [ -n "${XRD_OIDC_ISSUER:-}" ]; then
    issuer=$XRD_OIDC_ISSUER
    case "$issuer" in https://*) ;; *) die "XRD_OIDC_ISSUER must be an https:// URL (the plugin fetches keys over HTTPS only)" ;; esac
    trust_ca=${XRD_OIDC_CA:-$ca_dir/ca.pem}
    [ -r "$trust_ca" ] || die "XRD_OIDC_CA $trust_ca is not readable"
  else
    issuer=$(start_issuer "$run")
    started=true
    trust_ca=$ca_dir/ca.pem
  fi

  local attempt ports up n i rport hport
  declare -A root_port http_port
  for attempt in 1 2 3; do
    read -r -a ports <<< "$(free_ports $((2 * ${#names[@]})))"
    i=0
    for n in "${names[@]}"; do
      root_port[$n]=${ports[$i]}
      http_port[$n]=${ports[$((i + 1))]}
      i=$((i + 2))
      write_instance "$run/$n" "$n" "${root_port[$n]}" "${http_port[$n]}" "$issuer" "$trust_ca"
      launch_instance "$run" "$n"
    done
    up=1
    for n in "${names[@]}"; do
      local st=0
      wait_until 30 0.1 --pid "$(cat "$run/$n/xrootd.pid")" instance_up "$run/$n" "${root_port[$n]}" "${http_port[$n]}" || st=$?
      [ "$st" -eq 0 ] && continue
      up=
      if grep -qi 'address already in use' "$run/$n/xrootd.log" "$run/$n/stdout.log" 2>/dev/null; then
        log "$n: a port was taken meanwhile, retrying"
      else
        tail -25 "$run/$n/xrootd.log" "$run/$n/stdout.log" >&2 2>/dev/null || true
        for m in "${names[@]}"; do stop_instance "$run/$m"; done
        [ "$started" = true ] && stop_issuer "$run"
        die "$n did not come up ($([ "$st" -eq 2 ] && echo "it exited" || echo "30 s passed"); log: $run/$n/xrootd.log)"
      fi
    done
    [ -n "$up" ] && break
    for n in "${names[@]}"; do stop_instance "$run/$n"; done
  done
  if [ -z "$up" ]; then
    [ "$started" = true ] && stop_issuer "$run"
    die "no free ports after 3 attempts"
  fi

  local specs=()
  for n in "${names[@]}"; do
    specs+=("$n" "${root_port[$n]}" "${http_port[$n]}" "$run/$n/data" "$run/$n/xrootd.log" "$(cat "$run/$n/xrootd.pid")")
  done
  ISSUER=$issuer STARTED=$started CA_DIR=$ca_dir RUN=$run USER_NAME=$run_user SECONDS_TOOK=$(since "$t0") \
    python3 - "${specs[@]}" > "$run/storage.json" <<'PY'
import json, os, sys
a = sys.argv[1:]
env = os.environ
instances = []
for i in range(0, len(a), 6):
    name, rport, hport, data, logf, pid = a[i:i + 6]
    instances.append({
        "name": name,
        "root": f"root://127.0.0.1:{rport}", "davs": f"davs://127.0.0.1:{hport}", "https": f"https://127.0.0.1:{hport}",
        "root_port": int(rport), "http_port": int(hport), "data_dir": data, "log": logf, "pid": int(pid),
        "audiences": [f"https://127.0.0.1:{hport}", f"https://localhost:{hport}", f"davs://127.0.0.1:{hport}",
                      f"davs://localhost:{hport}", f"root://127.0.0.1:{rport}", f"root://localhost:{rport}",
                      "https://wlcg.cern.ch/jwt/v1/any"],
    })
started = env["STARTED"] == "true"
out = {
    "issuer": env["ISSUER"], "issuer_started": started,
    "ca": f"{env['CA_DIR']}/ca.pem", "ca_dir": f"{env['CA_DIR']}/certs",
    "client_env": {"X509_CERT_DIR": f"{env['CA_DIR']}/certs"},
    "user": env["USER_NAME"], "instances": instances, "run_dir": env["RUN"],
    "start_seconds": float(env["SECONDS_TOOK"]),
}
if started:
    out["issuer_sign"] = f"{env['RUN']}/issuer/op.in"
    out["issuer_out"] = f"{env['RUN']}/issuer/op.out"
print(json.dumps(out))
PY
  log "up in $(since "$t0")s as $run_user: $(for n in "${names[@]}"; do printf '%s root://127.0.0.1:%s davs://127.0.0.1:%s; ' "$n" "${root_port[$n]}" "${http_port[$n]}"; done)issuer $issuer"
  cat "$run/storage.json"
}

stop() {
  local run=${1:-}
  [ -n "$run" ] || die "usage: $0 stop <run-dir>"
  [ -d "$run" ] || return 0
  run=$(cd "$run" && pwd -P)
  local d n stopped=()
  # every instance directory start made (it holds xrootd.cfg), whatever XRD_INSTANCES says now
  for d in "$run"/*/; do
    d=${d%/}
    [ -f "$d/xrootd.cfg" ] || continue
    n=$(basename "$d")
    stop_instance "$d"
    rm -rf "$d"
    stopped+=("$n")
  done
  if [ -d "$run/issuer" ]; then stop_issuer "$run"; stopped+=(issuer); fi
  rm -f "$run/storage.json"
  [ "${#stopped[@]}" -eq 0 ] || log "stopped and removed: ${stopped[*]}"
}

# ---------------------------------------------------------------- selftest
selftest() {   # the checks are a test of the e2e suite, run here with each check's name printed
  local t0
  t0=$(now)
  ensure
  log "ensure: $(since "$t0")s"
  [ -x "$repo_root/.venv/bin/python" ] || die "no venv at $repo_root/.venv (run scripts/bootstrap.sh)"
  exec "$repo_root/.venv/bin/python" -m pytest "$repo_root/gateway-server/test/e2e/test_storage.py" -v -p no:cacheprovider
}

case "${1:-}" in
  ensure) t0=$(now); ensure; log "ensure: $(since "$t0")s (test CA: $ca_dir)" ;;
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  selftest) selftest ;;
  *) die "usage: $0 ensure | start <run-dir> | stop <run-dir> | selftest" ;;
esac
