#!/usr/bin/env bash
# A real HTCondor personal pool for the HTCondor backend's tests (Dask workers as HTCondor jobs).
#
# No container engine runs here, so the pool lives in a Debian trixie chroot (htcondor 23.x from
# Debian's packages), built once with debootstrap and cached OUTSIDE the repository, so fresh
# clones on the same machine reuse it:
#   ${AF_HTCONDOR_CACHE:-/var/cache/af-gateway}/htcondor-trixie-<key>   (<key> = hash of RECIPE_VERSION)
#
# Each test run gets its own pool in its own root: an overlay mount whose lower layer is the cached
# chroot (read-only, shared) and whose upper layer is per run, so concurrent runs never share
# /etc/condor, /etc/hosts, /tmp, sockets, mounts or ports, and `stop` removes exactly what its
# `start` made. The run's own state lives under ${AF_HTCONDOR_CACHE}/runs/<id>/ (root, mounts) and
# under <run-dir>/condor/ (log, spool, execute, lock: readable by the tests).
#
# Usage:
#   scripts/htcondor-pool.sh ensure            build the cached chroot if missing (< 1 s when cached)
#   scripts/htcondor-pool.sh start <run-dir>   start a personal pool; writes <run-dir>/pool.{json,env}
#   scripts/htcondor-pool.sh stop <run-dir>    stop it, kill what remains, unmount (safe to repeat)
#   scripts/htcondor-pool.sh selftest          ensure + start + real jobs + stop, printing outputs
#
# <run-dir>/pool.json (and pool.env: the same keys, single-quoted, for `source`) holds:
#   CONDOR_CMD_JSON  the command prefix that runs any condor tool as the submitting user:
#                    [...CONDOR_CMD_JSON, "condor_submit", file] / "condor_q" "-json" / condor_rm ...
#                    = chroot --userspec=afcondor:afcondor <root> /usr/bin/env -i PATH=...
#                      HOME=/home/afcondor USER=afcondor LANG=C.UTF-8 CONDOR_CONFIG=<run-dir>/condor/condor_config
#                    (CONDOR_CONFIG selects this run's pool: its collector port and state dirs)
#   CONDOR_CMD       the same prefix as one shell-quoted string
#   CONDOR_USER_CMD_JSON  a prefix template that runs a condor tool as any account of the pool:
#                    ["chroot", "--userspec={uid}:{gid}", <root>] (the gateway's backend.htcondor
#                    command_prefix, which replaces {uid}/{gid} per command). It keeps the caller's
#                    environment, so the caller must give CONDOR_CONFIG (and PATH).
#   ACCOUNTS         the test accounts the pool knows besides afcondor: [{name, uid, gid, home}, ...]
#   CONDOR_ROOT, CONDOR_CONFIG, COLLECTOR_HOST (127.0.0.1:<free port chosen at start>),
#   CONDOR_USER, CONDOR_UID, RUN_DIR, REPO_ROOT, PYTHON (the repo venv's python: the same path works
#   inside the root, where the host's Python installation, the repository and <run-dir> are
#   bind-mounted at their own paths)
# Submit files and job outputs go under <run-dir> (owned by afcondor). Run the venv's python with
# `transfer_executable = false` (a transferred copy loses its venv) and `should_transfer_files = NO`.
# Authentication: FS (tools and daemons share the root's /tmp), loopback only, no tokens/passwords.
# Test accounts: with AF_HTCONDOR_ACCOUNTS=<accounts.json> (what `scripts/test-accounts.sh ensure`
# prints: af-alice, af-bob, af-mallory), `start` adds them (same names, uids and gids) to the run's
# /etc/passwd and /etc/group (the overlay's upper layer; the cached chroot is never changed) and
# bind-mounts their homes at the same paths, so jobs submitted as them are owned by and run as them.
# All commands except a cached `ensure` need root: chroot(2) and mount(2); the gateway runs as
# root in tests. A non-root caller of CONDOR_CMD gets "chroot: cannot change root directory ...:
# Operation not permitted" (exit 125).
#
# SciTokens mode (the gateway's backend.htcondor.auth_method: scitokens against a real schedd): with
#   HTCONDOR_SCITOKENS_ISSUER=https://...   the issuer whose tokens the schedd takes (its keys are
#                                           fetched over HTTPS, as a real schedd does)
#   HTCONDOR_SCITOKENS_CA=<pem>             the CA of that issuer's certificate (default: the test
#                                           CA of scripts/test-ca.sh, which signs the test issuer's)
#   HTCONDOR_SCITOKENS_AUDIENCE="a b"       the audiences the schedd accepts (default: WLCG's "any",
#                                           https://wlcg.cern.ch/jwt/v1/any)
# `start` configures this run's pool so that the schedd takes WRITE commands (condor_submit,
# condor_rm, condor_hold, condor_qedit, ...) ONLY from clients that authenticate with SCITOKENS
# (SCHEDD.SEC_WRITE_AUTHENTICATION_METHODS), and maps each token to an account by its issuer and
# subject: one CERTIFICATE_MAPFILE line per test account, `SCITOKENS /^<issuer>,<user>$/
# <account>@localhost` (alice -> af-alice, from AF_HTCONDOR_ACCOUNTS, whose user names are the test
# issuer's subjects). A token of another issuer, an expired one, one for another audience or of a
# subject without a line is refused; a token authorises submitting only with condor:/WRITE or the
# three WLCG scopes compute.create, compute.modify and compute.cancel together (scitokens-cpp's
# rule; compute.read alone is condor:/READ). Everything else (READ, the daemons, the tests' own
# queries as afcondor) keeps FS, and the pool's clients offer only FS (SEC_CLIENT_AUTHENTICATION_
# METHODS): a client that means to use a token sets _condor_SEC_CLIENT_AUTHENTICATION_METHODS=
# SCITOKENS and _condor_SCITOKENS_FILE=<its token file> (what the gateway's backend does).
# SCITOKENS runs inside TLS: the schedd presents the test CA's certificate for localhost (so the
# pool calls its host localhost: NETWORK_HOSTNAME, UID_DOMAIN) and clients trust that CA
# (AUTH_SSL_CLIENT_CAFILE). The issuer's CA is added to the system bundle
# (/etc/ssl/certs/ca-certificates.crt, the only store scitokens-cpp's libcurl reads) of this run's
# root only: the overlay's upper layer, never the cached chroot nor the host's store; the schedd's
# key cache (SEC_SCITOKENS_CACHE) is under <run-dir>/condor/run, so it is per run too. The schedd
# writes an audit log, <run-dir>/condor/log/AuditLog: "AuthMethod=SCITOKENS, AuthId=<issuer>,<sub>,
# CondorId=<account>@localhost" before each "Submitting new job", and SchedLog (D_SECURITY) says
# why a token was refused. pool.json then also holds SCITOKENS: {issuer, ca, audience, mapfile,
# audit_log, client_env}. Tokens never reach any log (only a token's claims, in the audit log).
# Note for facilities: with HTCondor 23's default CERTIFICATE_MAPFILE_ASSUME_HASH_KEYS = False every
# principal of the map file is a regular expression WITHOUT delimiters (a /.../ line matches
# nothing: its slashes are taken literally); this pool sets it to True, so /.../ is a regular
# expression, as the manual writes them, and anything else a literal.
set -euo pipefail

RECIPE_VERSION="htcondor-trixie-1"   # bump when the build recipe below changes
CONDOR_USER=afcondor
CONDOR_UID=2345

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo_root=$(cd "$script_dir/.." && pwd -P)
cache=${AF_HTCONDOR_CACHE:-/var/cache/af-gateway}
key=$(printf '%s' "$RECIPE_VERSION" | sha256sum | cut -c1-12)
chroot_dir="$cache/htcondor-trixie-$key"

HARNESS_TAG=htcondor-pool
. "$script_dir/lib/harness.sh"   # log, die, need_root, free_port, lock_cache, apt_install
# chroot(2), mount(2) and reading other users' /proc entries need root; a non-root caller would
# get "chroot: cannot change root directory ...: Operation not permitted" (exit 125) at best.
pool_needs_root() { need_root "$1" "chroot, mount, /proc of other users"; }

# ---------------------------------------------------------------- mount helpers
# Mount points under a directory, deepest first (from /proc/self/mountinfo; octal escapes decoded).
mounts_under() {
  local base=$1
  awk -v base="$base" '{
      p = $5
      while (match(p, /\\[0-7][0-7][0-7]/)) {
        c = sprintf("%c", (substr(p, RSTART+1, 1) * 64) + (substr(p, RSTART+2, 1) * 8) + substr(p, RSTART+3, 1))
        p = substr(p, 1, RSTART-1) c substr(p, RSTART+4)
      }
      if (p == base || index(p, base "/") == 1) print length(p) "\t" p
    }' /proc/self/mountinfo | sort -rn -k1,1 | cut -f2-
}

unmount_all_under() {
  local base=$1 m tries
  for tries in 1 2 3; do
    mapfile -t ms < <(mounts_under "$base")
    [ "${#ms[@]}" -eq 0 ] && return 0
    for m in "${ms[@]}"; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
  done
  mapfile -t ms < <(mounts_under "$base")
  if [ "${#ms[@]}" -ne 0 ]; then log "still mounted: ${ms[*]}"; return 1; fi
}

# Kills every process whose root directory is $1 or below it (what an interrupted build left running).
kill_rooted_under() {
  local base=$1 p r i
  for i in 1 2 3 4 5; do
    local found=0
    for p in /proc/[0-9]*; do
      r=$(readlink "$p/root" 2>/dev/null) || continue
      case "$r" in "$base"|"$base"/*) kill -KILL "${p#/proc/}" 2>/dev/null && found=1 ;; esac
    done
    [ $found -eq 0 ] && return 0
    sleep 0.5
  done
}

# Removes a directory tree only once nothing runs in it and nothing is mounted below it (so it
# never follows into a bind of /dev).
safe_rm() {
  local d=$1
  [ -e "$d" ] || return 0
  kill_rooted_under "$d"
  unmount_all_under "$d" || die "refusing to delete $d: mounts remain under it"
  rm -rf --one-file-system "$d"
}

# ---------------------------------------------------------------- build (ensure)
# The Debian mirror this machine's apt already uses, read at run time (deb822 or one-line format).
debian_mirror() {
  local f m=""
  if [ -n "${AF_DEBIAN_MIRROR:-}" ]; then echo "$AF_DEBIAN_MIRROR"; return; fi
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    m=$(awk 'BEGIN { RS = ""; FS = "\n" }
      { uris = ""; suites = ""
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/)   { u = $i; sub(/^URIs:[ \t]*/, "", u); uris = u }
          if ($i ~ /^Suites:/) { s = $i; sub(/^Suites:[ \t]*/, "", s); suites = s }
        }
        n = split(suites, sv, /[ \t]+/)
        for (j = 1; j <= n; j++) if (sv[j] != "" && sv[j] !~ /-/) { split(uris, uv, /[ \t]+/); print uv[1]; exit } }' "$f")
    [ -n "$m" ] && break
  done
  if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
    m=$(awk '$1 == "deb" { sub(/\[[^]]*\][ \t]*/, ""); if ($3 !~ /-/) { print $2; exit } }' /etc/apt/sources.list)
  fi
  [ -n "$m" ] || die "no Debian mirror found in the apt sources (set AF_DEBIAN_MIRROR)"
  echo "$m"
}

# (fd 8, the build lock, is not passed on: an orphan of a killed build must not hold the lock)
in_chroot() { local d=$1; shift; chroot "$d" 8>&- /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }

build_chroot() {
  local tmp=$1 mirror t0=$SECONDS
  mirror=$(debian_mirror)
  if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap on the host"
    apt_install debootstrap
  fi
  log "debootstrap --variant=minbase trixie (into $tmp)"
  debootstrap --variant=minbase trixie "$tmp" "$mirror" > "$cache/build-$key.log" 2>&1 8>&- \
    || { tail -30 "$cache/build-$key.log" >&2; die "debootstrap failed (log: $cache/build-$key.log)"; }
  log "debootstrap done after $((SECONDS - t0)) s"
  cp -L /etc/resolv.conf "$tmp/etc/resolv.conf"
  # no service may start while packages install
  printf '#!/bin/sh\nexit 101\n' > "$tmp/usr/sbin/policy-rc.d"; chmod 755 "$tmp/usr/sbin/policy-rc.d"
  mount -t proc proc "$tmp/proc"
  mount --rbind /dev "$tmp/dev"; mount --make-rslave "$tmp/dev"
  local rc=0
  {
    in_chroot "$tmp" apt-get update -q &&
    in_chroot "$tmp" apt-get install -y -q htcondor
  } >> "$cache/build-$key.log" 2>&1 || rc=$?
  unmount_all_under "$tmp/proc"; unmount_all_under "$tmp/dev"
  [ $rc -eq 0 ] || { tail -30 "$cache/build-$key.log" >&2; die "apt-get install htcondor failed (log: $cache/build-$key.log)"; }
  in_chroot "$tmp" apt-get clean
  local v
  v=$(in_chroot "$tmp" condor_version | head -1)
  log "inside: $v"
  [[ "$v" =~ \$CondorVersion:\ 23\. ]] || die "expected HTCondor 23.x, got: $v"
  in_chroot "$tmp" useradd --uid "$CONDOR_UID" --user-group --create-home --shell /bin/sh "$CONDOR_USER"
  chmod 711 "$tmp/root"   # the host's pyenv Python is bind-mounted under /root/.pyenv
  rm -f "$tmp/etc/condor/config.d/"*af-gateway* 2>/dev/null || true
  echo "$RECIPE_VERSION" > "$tmp/.af-htcondor-recipe"
}

cmd_ensure() {
  local t0=$SECONDS
  if [ -f "$chroot_dir/.af-htcondor-recipe" ]; then echo "$chroot_dir"; return 0; fi
  pool_needs_root "building the chroot"
  lock_cache "$cache/htcondor-trixie-$key.lock" 3600
  if [ -f "$chroot_dir/.af-htcondor-recipe" ]; then unlock_cache; echo "$chroot_dir"; return 0; fi
  local d
  for d in "$cache/htcondor-trixie-$key".tmp.* "$chroot_dir"; do safe_rm "$d"; done   # interrupted builds
  local tmp="$cache/htcondor-trixie-$key.tmp.$$"
  mkdir -p "$tmp"
  trap 'kill_rooted_under "'"$tmp"'"; unmount_all_under "'"$tmp"'" || true' EXIT
  build_chroot "$tmp"
  mv -T "$tmp" "$chroot_dir"
  trap - EXIT
  unlock_cache
  log "built $chroot_dir in $((SECONDS - t0)) s"
  echo "$chroot_dir"
}

# ---------------------------------------------------------------- per-run pool
# Everything of one run, keyed by its run dir's real path.
run_paths() {
  run_dir=$(cd "$1" && pwd -P) || die "no such run dir: $1"
  run_id=$(printf '%s' "$run_dir" | sha256sum | cut -c1-12)
  run_base="$cache/runs/$run_id"
  root="$run_base/root"
  cdir="$run_dir/condor"
}

host_python() {
  local venv_py="$repo_root/.venv/bin/python"
  [ -x "$venv_py" ] || die "no venv python at $venv_py (run scripts/bootstrap.sh)"
  readlink -f "$venv_py"
}

# The installation prefix of the venv's real interpreter (…/bin/python3.11 -> …).
python_prefix() {
  local real; real=$(host_python)
  "$real" -c 'import sys; print(sys.base_prefix)'
}

bind_same_path() {   # bind host dir $1 at the same path inside $root, parents traversable
  local src=$1 dst="$root$1" p
  mkdir -p "$dst"
  p=$(dirname "$1")
  while [ "$p" != "/" ]; do
    [ -L "$root$p" ] || chmod a+x "$root$p"   # the overlay copy only, never the host's
    p=$(dirname "$p")
  done
  mount --bind "$src" "$dst"
  mount --make-private "$dst"
}

write_config() {
  local port=$1
  # shared part: in the run's own /etc/condor/config.d (the overlay's upper layer)
  cat > "$root/etc/condor/config.d/50-af-gateway.conf" <<'EOF'
# AF Gateway test pool (scripts/htcondor-pool.sh): a personal pool on loopback inside a chroot.
use ROLE: Personal
CONDOR_HOST = 127.0.0.1
NETWORK_INTERFACE = 127.0.0.1
BIND_ALL_INTERFACES = False
# loopback only: no IPv6 (the machine has a non-loopback IPv6 address)
ENABLE_IPV6 = False
PREFER_IPV4 = True
# the sandbox cannot unshare namespaces
MOUNT_UNDER_SCRATCH =
USE_PID_NAMESPACES = False
PER_JOB_NAMESPACES = False
# every daemon on its own loopback port: no shared_port daemon, no fixed 9618
USE_SHARED_PORT = False
# several 1-core / 1 GiB Dask workers at once on a 2-core machine
NUM_CPUS = 8
MEMORY = 16384
use FEATURE: PartitionableSlot
START = True
SUSPEND = False
PREEMPT = False
KILL = False
RANK = 0
WANT_SUSPEND = False
WANT_VACATE = False
CLAIM_WORKLIFE = 0
# start jobs quickly
NEGOTIATOR_INTERVAL = 2
NEGOTIATOR_MIN_INTERVAL = 1
NEGOTIATOR_CYCLE_DELAY = 1
SCHEDD_INTERVAL = 2
SCHEDD_MIN_INTERVAL = 1
UPDATE_INTERVAL = 2
MASTER_UPDATE_INTERVAL = 5
STARTER_UPDATE_INTERVAL = 2
STARTD_CRON_AUTOPUBLISH = never
SHADOW_QUEUE_UPDATE_INTERVAL = 2
JOB_START_DELAY = 0
JOB_START_COUNT = 100
JOB_IS_FINISHED_INTERVAL = 0
NEGOTIATOR_UPDATE_AFTER_CYCLE = True
SCHEDD_QUERY_WORKERS = 0
# finished jobs leave the queue at once; condor_history keeps them
SYSTEM_PERIODIC_REMOVE =
# security: filesystem authentication (tools and daemons share this root's /tmp), loopback only
SEC_DEFAULT_AUTHENTICATION_METHODS = FS
SEC_CLIENT_AUTHENTICATION_METHODS = FS
SEC_DEFAULT_ENCRYPTION = OPTIONAL
SEC_DEFAULT_INTEGRITY = OPTIONAL
ALLOW_READ = *
ALLOW_WRITE = *
ALLOW_NEGOTIATOR = *
ALLOW_ADMINISTRATOR = *
ALLOW_OWNER = *
ALLOW_DAEMON = *
ALLOW_CONFIG = root@*
# no cgroups/keys the sandbox may refuse
CGROUP_MEMORY_LIMIT_POLICY = none
BASE_CGROUP =
DISCARD_SESSION_KEYRING_ON_STARTUP = False
EOF
  # per-run part: where this pool keeps its state and which port its collector takes
  cat > "$cdir/condor_config" <<EOF
# condor config of the test pool for run $run_dir (written by scripts/htcondor-pool.sh start)
include : /etc/condor/condor_config
LOCAL_DIR = $cdir
LOG = $cdir/log
SPOOL = $cdir/spool
EXECUTE = $cdir/execute
LOCK = $cdir/lock
RUN = $cdir/run
DAEMON_SOCKET_DIR = $cdir/run
COLLECTOR_HOST = 127.0.0.1:$port
COLLECTOR_NAME = af-gateway-test-$run_id
MASTER_NAME = af-gateway-$run_id
MASTER_ADDRESS_FILE = \$(LOG)/.master_address
PROCD_ADDRESS = \$(LOCK)/procd_pipe
EOF
}

# The test accounts of $AF_HTCONDOR_ACCOUNTS, known inside this run's root (its overlay's upper
# layer) by the same names and ids as on the host, with their homes bind-mounted at the same paths.
# Writes the list to $run_base/accounts.json (for pool.json), and each gateway user (the test
# issuer's subject) with their account to $run_base/subjects.tsv (the SciTokens map).
add_accounts() {
  local file=${AF_HTCONDOR_ACCOUNTS:-}
  echo '[]' > "$run_base/accounts.json"
  : > "$run_base/subjects.tsv"
  [ -n "$file" ] || return 0
  [ -f "$file" ] || die "AF_HTCONDOR_ACCOUNTS: no such file $file"
  local lines
  lines=$("$(host_python)" - "$file" "$run_base/accounts.json" "$run_base/subjects.tsv" <<'PY'
import json, re, sys
facts = json.load(open(sys.argv[1]))
users = list(facts.get("users", {}).items())
group = facts.get("group")
ok = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
out = []
subjects = []
for user, u in users:
    name, uid, gid, home = u["name"], int(u["uid"]), int(u["gid"]), u["home"]
    if not ok.match(name) or not ok.match(user) or uid < 1000 or gid < 1000 or not re.match(r"^/[A-Za-z0-9_./-]+$", home):
        sys.exit(f"refusing account {u!r}")
    out.append({"name": name, "uid": uid, "gid": gid, "home": home})
    subjects.append(f"{user}\t{name}\n")
    print(f"user\t{name}\t{uid}\t{gid}\t{home}")
if group and ok.match(group):
    print(f"group\t{group}\t" + ",".join(u["name"] for u in out))
json.dump(out, open(sys.argv[2], "w"))
open(sys.argv[3], "w").write("".join(subjects))
PY
  ) || die "cannot read the accounts in $file"
  local kind name uid gid home gname ggid
  while IFS=$'\t' read -r kind name uid gid home; do
    case "$kind" in
      user)
        grep -q "^$name:" "$root/etc/passwd" || printf '%s:x:%s:%s::%s:/bin/sh\n' "$name" "$uid" "$gid" "$home" >> "$root/etc/passwd"
        gname=$(getent group "$gid" | cut -d: -f1)
        [ -n "$gname" ] || gname=$name
        grep -q "^$gname:" "$root/etc/group" || printf '%s:x:%s:\n' "$gname" "$gid" >> "$root/etc/group"
        [ -d "$home" ] && bind_same_path "$home"
        ;;
      group)
        ggid=$(getent group "$name" | cut -d: -f3)
        [ -n "$ggid" ] && ! grep -q "^$name:" "$root/etc/group" && printf '%s:x:%s:%s\n' "$name" "$ggid" "$uid" >> "$root/etc/group"
        ;;
    esac
  done <<< "$lines"
  log "accounts known inside the pool: $(grep -c '' <<< "$lines") line(s) from $file"
}

# ---------------------------------------------------------------- SciTokens mode
WLCG_ANY=https://wlcg.cern.ch/jwt/v1/any
scitokens_issuer=${HTCONDOR_SCITOKENS_ISSUER:-}
sci_ca='' sci_aud='' test_ca_dir=''

# Checks the SciTokens settings before anything is started or mounted.
scitokens_settings() {
  [ -n "$scitokens_issuer" ] || return 0
  [[ "$scitokens_issuer" =~ ^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~-]+)*$ ]] \
    || die "HTCONDOR_SCITOKENS_ISSUER must be an https:// URL (no trailing slash, query or spaces), not '$scitokens_issuer'"
  test_ca_dir=$(bash "$script_dir/test-ca.sh" ensure) || die "the test CA could not be made (scripts/test-ca.sh ensure)"
  sci_ca=${HTCONDOR_SCITOKENS_CA:-$test_ca_dir/ca.pem}
  { [ -r "$sci_ca" ] && grep -q -- '-----BEGIN CERTIFICATE-----' "$sci_ca"; } || die "HTCONDOR_SCITOKENS_CA: $sci_ca is not a readable PEM certificate"
  sci_aud=$(printf '%s' "${HTCONDOR_SCITOKENS_AUDIENCE:-$WLCG_ANY}" | xargs)
  [ -n "$sci_aud" ] || die "HTCONDOR_SCITOKENS_AUDIENCE names no audience"
  local a
  for a in $sci_aud; do [[ "$a" =~ ^[A-Za-z0-9:/._~%-]+$ ]] || die "HTCONDOR_SCITOKENS_AUDIENCE: refusing '$a'"; done
}

# A PCRE matching the literal text $1 (every character but letters and digits escaped).
pcre_literal() { printf '%s' "$1" | sed 's/[^A-Za-z0-9]/\\&/g'; }

# This run's schedd takes WRITE commands only with tokens of the issuer, each subject mapped to its
# account (see the header). Everything goes into the run's root (the overlay's upper layer).
write_scitokens_config() {
  local etc="$root/etc/condor" bundle="$root/etc/ssl/certs/ca-certificates.crt" user name n=0
  # SCITOKENS runs inside TLS: the schedd shows the test CA's certificate for localhost
  mkdir -p "$etc/af-tls"
  chmod 755 "$etc/af-tls"
  install -m 0644 "$test_ca_dir/server.pem" "$etc/af-tls/server.pem"
  install -m 0600 "$test_ca_dir/server.key" "$etc/af-tls/server.key"
  install -m 0644 "$test_ca_dir/ca.pem" "$etc/af-tls/ca.pem"
  # The issuer's CA, for scitokens-cpp's libcurl, which reads only the system bundle: appended to
  # this run's copy of it (writing through the overlay copies the file up; the cached chroot and
  # the host keep theirs).
  { [ -f "$bundle" ] && [ ! -L "$bundle" ]; } || die "the chroot has no CA bundle file at /etc/ssl/certs/ca-certificates.crt"
  { printf '\n# HTCONDOR_SCITOKENS_CA of this run (scripts/htcondor-pool.sh)\n'; cat "$sci_ca"; } >> "$bundle"
  {
    echo "# the test issuer's subjects and their accounts (scripts/htcondor-pool.sh start, SciTokens mode)"
    while IFS=$'\t' read -r user name; do
      [ -n "$user" ] || continue
      printf 'SCITOKENS /^%s,%s$/ %s@localhost\n' "$(pcre_literal "$scitokens_issuer")" "$(pcre_literal "$user")" "$name"
      n=$((n + 1))
    done < "$run_base/subjects.tsv"
  } > "$etc/af-scitokens.map"
  chmod 644 "$etc/af-scitokens.map"
  [ "$n" -gt 0 ] || log "SciTokens mode without AF_HTCONDOR_ACCOUNTS: no subject is mapped, the schedd refuses every token"
  cat > "$etc/config.d/60-af-scitokens.conf" <<CONF
# AF Gateway test pool, SciTokens mode (scripts/htcondor-pool.sh):
#   HTCONDOR_SCITOKENS_ISSUER=$scitokens_issuer
# the schedd takes WRITE commands (submit, remove, hold, edit) only from clients authenticated by
# a token of that issuer whose subject the map file names; READ, the daemons and admin commands
# keep FS.
# The schedd's TLS certificate is for localhost: the pool calls its host so (the slots' names and
# the accounts' domain too).
NETWORK_HOSTNAME = localhost
UID_DOMAIN = localhost
FILESYSTEM_DOMAIN = localhost
SEC_DEFAULT_AUTHENTICATION_METHODS = FS, SCITOKENS
SCHEDD.SEC_WRITE_AUTHENTICATION_METHODS = SCITOKENS
SCITOKENS_SERVER_AUDIENCE = ${sci_aud// /, }
# one line per subject: SCITOKENS /^<issuer>,<subject>\$/ <account>@localhost (True: /.../ is a
# regular expression, as the manual writes them; with False its slashes would be taken literally)
CERTIFICATE_MAPFILE = /etc/condor/af-scitokens.map
CERTIFICATE_MAPFILE_ASSUME_HASH_KEYS = True
AUTH_SSL_SERVER_CERTFILE = /etc/condor/af-tls/server.pem
AUTH_SSL_SERVER_KEYFILE = /etc/condor/af-tls/server.key
AUTH_SSL_CLIENT_CAFILE = /etc/condor/af-tls/ca.pem
# the issuer's keys are cached per run (a new issuer on a reused port is never judged by old keys)
SEC_SCITOKENS_CACHE = \$(RUN)/scitokens-cache
# who submitted what with which token (its claims, never the token itself), and why one was refused
SCHEDD_AUDIT_LOG = \$(LOG)/AuditLog
SCHEDD_DEBUG = D_PID D_SECURITY
CONF
  log "SciTokens mode: the schedd takes tokens of $scitokens_issuer (audience: $sci_aud); $n subject(s) mapped"
}

# Runs whose run dir is gone (a test that crashed and removed it) leave a root behind: remove it.
prune_orphans() {
  local b rd
  for b in "$cache"/runs/*/; do
    b=${b%/}; [ -d "$b" ] || continue
    rd=$(cat "$b/run-dir" 2>/dev/null || true)
    [ -n "$rd" ] && [ -d "$rd" ] && continue
    # a start in progress elsewhere may not have written run-dir yet
    [ -n "$rd" ] || [ -n "$(find "$b" -maxdepth 0 -mmin +10)" ] || continue
    log "removing the orphaned pool root $b (run dir ${rd:-?} is gone)"
    safe_rm "$b" || true
  done
}

cmd_start() {
  [ $# -eq 1 ] || die "usage: $0 start <run-dir>"
  pool_needs_root start
  local t0ns; t0ns=$(date +%s%N)
  scitokens_settings
  mkdir -p "$1"
  cmd_ensure >/dev/null
  run_paths "$1"
  if [ -f "$run_base/started" ] && [ -f "$cdir/master.pid" ] && kill -0 "$(cat "$cdir/master.pid")" 2>/dev/null; then
    die "a pool is already running for $run_dir (stop it first)"
  fi
  cmd_stop "$run_dir" >/dev/null 2>&1 || true   # leftovers of a failed start
  # a start that fails undoes itself (the logs under <run-dir>/condor stay for a look)
  trap 'log "start failed: stopping what it started"; cmd_stop "$run_dir" >/dev/null 2>&1 || true' EXIT
  prune_orphans
  mkdir -p "$run_base"
  echo "$run_dir" > "$run_base/run-dir"
  mkdir -p "$run_base/upper" "$run_base/work" "$root"
  mount -t overlay "af-htcondor-$run_id" -o "lowerdir=$chroot_dir,upperdir=$run_base/upper,workdir=$run_base/work" "$root"
  mount --make-private "$root"
  mount -t proc proc "$root/proc"
  mount --rbind /dev "$root/dev"; mount --make-rslave "$root/dev"
  local pyprefix; pyprefix=$(python_prefix)
  bind_same_path "$pyprefix"
  bind_same_path "$repo_root"
  # The jobs' user runs the repository's venv: a clone in a mktemp directory (0700) must let it
  # through. Only the search bit, and only on the repository root itself.
  chmod o+x "$repo_root"
  case "$run_dir/" in
    "$repo_root"/*) ;;             # already visible through the repository's bind
    *) bind_same_path "$run_dir" ;;
  esac
  # condor looks its own host name up
  local hn; hn=$(hostname)
  grep -qw -- "$hn" "$root/etc/hosts" 2>/dev/null || printf '127.0.1.1\t%s\n' "$hn" >> "$root/etc/hosts"

  add_accounts
  [ -z "$scitokens_issuer" ] || write_scitokens_config

  local cuid cgid; cuid=$(chroot "$root" id -u condor); cgid=$(chroot "$root" id -g condor)
  chown "$CONDOR_UID:$CONDOR_UID" "$run_dir"; chmod 755 "$run_dir"
  mkdir -p "$cdir"/{log,spool,execute,lock,run}
  chown "$cuid:$cgid" "$cdir" "$cdir"/{log,spool,lock,run}
  chown root:root "$cdir/execute"; chmod 1777 "$cdir/execute"
  chmod 755 "$cdir" "$cdir"/{log,spool,lock,run}
  local port; port=$(free_port "$(host_python)")
  write_config "$port"

  local -a tool=(chroot --userspec="$CONDOR_USER:$CONDOR_USER" "$root" /usr/bin/env -i
                 "PATH=/usr/bin:/bin:/usr/sbin:/sbin" "HOME=/home/$CONDOR_USER" "USER=$CONDOR_USER"
                 "LANG=C.UTF-8" "CONDOR_CONFIG=$cdir/condor_config")
  # the master and its daemons: marked with the run's id so `stop` finds every one of them
  chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    "CONDOR_CONFIG=$cdir/condor_config" "AF_HTCONDOR_RUN=$run_id" \
    condor_master -pidfile "$cdir/master.pid" > "$cdir/master.out" 2>&1 \
    || { cat "$cdir/master.out" >&2; die "condor_master did not start"; }
  touch "$run_base/started"

  local deadline=$((SECONDS + 60)) slots=0 q_ok=0
  while [ $SECONDS -lt $deadline ]; do
    slots=$("${tool[@]}" condor_status -af Name 2>/dev/null | wc -l || true)
    if [ "$slots" -gt 0 ] && "${tool[@]}" condor_q -totals >/dev/null 2>&1; then q_ok=1; break; fi
    sleep 0.5
  done
  if [ $q_ok -ne 1 ]; then
    log "pool not ready after 60 s (slots: $slots); last master log lines:"
    tail -20 "$cdir/log/MasterLog" >&2 2>/dev/null || true
    "${tool[@]}" condor_q -totals >&2 || true
    die "HTCondor pool did not become ready"
  fi

  local venv_py="$repo_root/.venv/bin/python"
  # pool.json for programs, pool.env (the same facts, single-quoted) for shells
  SCI_ISSUER=$scitokens_issuer SCI_CA=$sci_ca SCI_AUD=$sci_aud SCI_LOG="$cdir/log/AuditLog" \
  "$(host_python)" - "$run_dir" "$root" "$cdir/condor_config" "127.0.0.1:$port" "$CONDOR_USER" \
      "$CONDOR_UID" "$repo_root" "$venv_py" "$run_base/accounts.json" "${tool[@]}" <<'PY'
import json, os, shlex, sys
(run_dir, root, config, collector, user, uid, repo, python, accounts), cmd = sys.argv[1:10], sys.argv[10:]
facts = {"RUN_DIR": run_dir, "CONDOR_ROOT": root, "CONDOR_CONFIG": config, "COLLECTOR_HOST": collector,
         "CONDOR_USER": user, "CONDOR_UID": int(uid), "REPO_ROOT": repo, "PYTHON": python,
         "CONDOR_CMD_JSON": cmd, "CONDOR_CMD": shlex.join(cmd),
         "CONDOR_USER_CMD_JSON": ["chroot", "--userspec={uid}:{gid}", root],
         "ACCOUNTS": json.load(open(accounts))}
if os.environ["SCI_ISSUER"]:  # SciTokens mode only: the default mode's facts stay as they were
    facts["SCITOKENS"] = {
        "issuer": os.environ["SCI_ISSUER"], "ca": os.environ["SCI_CA"], "audience": os.environ["SCI_AUD"].split(),
        "mapfile": root + "/etc/condor/af-scitokens.map", "audit_log": os.environ["SCI_LOG"],
        # what a client adds (with _condor_SCITOKENS_FILE=<its token file>) to authenticate with a token
        "client_env": {"_condor_SEC_CLIENT_AUTHENTICATION_METHODS": "SCITOKENS",
                       "_condor_SEC_DEFAULT_AUTHENTICATION_METHODS": "SCITOKENS"},
    }
with open(run_dir + "/pool.json.tmp", "w") as f:
    json.dump(facts, f, indent=2)
with open(run_dir + "/pool.env.tmp", "w") as f:
    f.write(f"# HTCondor test pool of run {run_dir} (scripts/htcondor-pool.sh start)\n")
    for k, v in facts.items():
        v = json.dumps(v) if k in ("CONDOR_CMD_JSON", "CONDOR_USER_CMD_JSON", "ACCOUNTS", "SCITOKENS") else str(v)
        f.write(f"{k}={shlex.quote(v)}\n")
PY
  mv "$run_dir/pool.json.tmp" "$run_dir/pool.json"
  mv "$run_dir/pool.env.tmp" "$run_dir/pool.env"
  trap - EXIT
  chmod 644 "$run_dir/pool.env" "$run_dir/pool.json"
  log "pool ready in $(( ($(date +%s%N) - t0ns) / 1000000 )) ms: $slots slot(s), collector 127.0.0.1:$port, root $root"
}

# PIDs of every process of this run: the master's descendants, anything carrying the run's marker or
# condor's ancestor marker for the master, and anything whose root is the run's root.
run_pids() {
  local mpid="" p
  [ -f "$cdir/master.pid" ] && mpid=$(cat "$cdir/master.pid" 2>/dev/null || true)
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [ "$p" = "$$" ] && continue
    if [ "$(readlink "/proc/$p/root" 2>/dev/null)" = "$root" ]; then echo "$p"; continue; fi
    if tr '\0' '\n' 2>/dev/null < "/proc/$p/environ" \
        | grep -q -e "^AF_HTCONDOR_RUN=$run_id\$" ${mpid:+-e "^_CONDOR_ANCESTOR_$mpid="}; then
      echo "$p"
    fi
  done
}

cmd_stop() {
  [ $# -eq 1 ] || die "usage: $0 stop <run-dir>"
  pool_needs_root stop
  [ -d "$1" ] || { log "no run dir $1: nothing to stop"; return 0; }
  run_paths "$1"
  local mpid="" pids seen
  [ -f "$cdir/master.pid" ] && mpid=$(cat "$cdir/master.pid" 2>/dev/null || true)
  seen="$mpid $(run_pids)"
  if [ -n "$mpid" ] && kill -0 "$mpid" 2>/dev/null && [ -f "$root/usr/sbin/condor_master" ]; then
    # graceful: the master stops its daemons, the startd kills the jobs
    timeout 10 chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
      "CONDOR_CONFIG=$cdir/condor_config" condor_off -fast -master >/dev/null 2>&1 \
      || kill -QUIT "$mpid" 2>/dev/null || true
    local deadline=$((SECONDS + 15))
    while [ $SECONDS -lt $deadline ] && [ -n "$(run_pids)" ]; do sleep 0.5; done
  fi
  pids=$(run_pids)
  seen="$seen $pids"
  if [ -n "$pids" ]; then
    log "killing what remains: $(echo $pids)"
    kill -KILL $pids 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while [ $SECONDS -lt $deadline ] && [ -n "$(run_pids)" ]; do sleep 0.2; done
  fi
  pids=$(run_pids)
  [ -z "$pids" ] || die "processes of run $run_dir remain: $(echo $pids)"
  # the killed are gone once their parent (or init) reaped them: wait for the zombies, bounded
  local deadline=$((SECONDS + 5)) p left
  while :; do
    left=""
    for p in $seen; do [ -e "/proc/$p" ] && left="$left $p"; done
    [ -z "$left" ] || [ $SECONDS -ge $deadline ] && break
    sleep 0.2
  done
  [ -z "$left" ] || log "not yet reaped (zombies):$left"
  [ ! -d "$run_base" ] || unmount_all_under "$run_base" || die "mounts remain under $run_base"
  [ ! -d "$run_base" ] || rm -rf --one-file-system "$run_base"
  rm -f "$run_dir/pool.env" "$run_dir/pool.json" "$cdir/master.pid"
  log "stopped pool of $run_dir"
}

# ---------------------------------------------------------------- selftest
cmd_selftest() {
  pool_needs_root selftest
  local t0=$SECONDS
  cmd_ensure
  local rd; rd=$(mktemp -d /tmp/af-htcondor-selftest.XXXXXX)
  # the multi-user test accounts (af-alice, ...): jobs submitted as them are theirs
  AF_HTCONDOR_ACCOUNTS=$(bash "$repo_root/scripts/test-accounts.sh" ensure) || die "scripts/test-accounts.sh ensure failed"
  export AF_HTCONDOR_ACCOUNTS
  local ts=$SECONDS
  cmd_start "$rd"
  trap 'cmd_stop "'"$rd"'" || true; rm -rf --one-file-system "'"$rd"'"' EXIT
  echo "== pool ready $((SECONDS - ts)) s after start"
  echo "== pool.env"; cat "$rd/pool.env"
  # shellcheck disable=SC1091
  source "$rd/pool.env"
  local -a C; eval "C=($CONDOR_CMD)"
  local py=$PYTHON
  cd "$rd"
  cat > py.sub <<EOF
executable = $py
arguments = "-c 'import sys; print(sys.version); import distributed; print(distributed.__version__)'"
output = $rd/py.out
error = $rd/py.err
log = $rd/jobs.log
# run the venv's python where it is (a transferred copy would lose its venv)
transfer_executable = false
should_transfer_files = NO
request_cpus = 1
request_memory = 1024
queue
EOF
  cat > sleep.sub <<EOF
executable = /bin/sleep
arguments = 5
output = $rd/sleep.\$(Process).out
error = $rd/sleep.\$(Process).err
log = $rd/jobs.log
request_cpus = 1
request_memory = 1024
queue 3
EOF
  cat > idle.sub <<EOF
executable = /bin/true
requirements = (Memory > 10000000)
log = $rd/jobs.log
queue
EOF
  cat > hold.sub <<EOF
executable = /bin/sleep
arguments = 300
log = $rd/jobs.log
request_memory = 128
queue
EOF
  chown "$CONDOR_UID:$CONDOR_UID" ./*.sub
  echo "== condor_submit (as $CONDOR_USER)"
  "${C[@]}" condor_submit "$rd/py.sub"
  "${C[@]}" condor_submit "$rd/sleep.sub"
  local sleep_cluster
  sleep_cluster=$("${C[@]}" condor_q -af ClusterId -constraint 'Cmd == "/bin/sleep"' | sort -u | head -1)
  echo "== waiting for the 3 sleep jobs (cluster $sleep_cluster) to run at once"
  local running=0 deadline=$((SECONDS + 60))
  while [ $SECONDS -lt $deadline ]; do
    running=$("${C[@]}" condor_q "$sleep_cluster" -af JobStatus | grep -c '^2$' || true)
    [ "$running" -ge 3 ] && break
    sleep 0.5
  done
  echo "== condor_q -json (cluster $sleep_cluster): $running running"
  "${C[@]}" condor_q "$sleep_cluster" -json -attributes ClusterId,ProcId,JobStatus,RemoteHost,JobCurrentStartDate
  [ "$running" -ge 3 ] || die "expected 3 running sleep jobs at once, saw $running"
  echo "== waiting for completion"
  deadline=$((SECONDS + 90))
  while [ $SECONDS -lt $deadline ] && [ -n "$("${C[@]}" condor_q -af ClusterId)" ]; do sleep 1; done
  [ -z "$("${C[@]}" condor_q -af ClusterId)" ] || die "jobs did not complete in time"
  echo "== condor_history -json"
  "${C[@]}" condor_history -json -attributes ClusterId,ProcId,JobStatus,ExitCode,Cmd
  echo "== python job output ($py inside the chroot, as $CONDOR_USER)"
  cat "$rd/py.out"; cat "$rd/py.err" >&2
  grep -q '^3\.11\.' "$rd/py.out" || die "the job's python is not 3.11"

  echo "== a job with impossible requirements stays idle"
  "${C[@]}" condor_submit "$rd/idle.sub"
  sleep 6
  "${C[@]}" condor_q -json -attributes ClusterId,JobStatus,Requirements,LastRejMatchReason,NumJobMatches,LastMatchTime
  "${C[@]}" condor_q -better-analyze "$("${C[@]}" condor_q -af ClusterId | head -1)" | head -40
  [ "$("${C[@]}" condor_q -af JobStatus)" = "1" ] || die "the impossible job is not idle"

  echo "== a held job"
  "${C[@]}" condor_rm -all >/dev/null
  "${C[@]}" condor_submit "$rd/hold.sub"
  local hc; hc=$("${C[@]}" condor_q -af ClusterId -constraint 'JobStatus =!= 3' | head -1)
  "${C[@]}" condor_hold "$hc"
  "${C[@]}" condor_q "$hc" -json -attributes ClusterId,JobStatus,HoldReason,HoldReasonCode
  [ "$("${C[@]}" condor_q "$hc" -af JobStatus)" = "5" ] || die "the held job is not held"
  "${C[@]}" condor_rm "$hc"

  echo "== a job submitted as af-alice (CONDOR_USER_CMD_JSON) is af-alice's and runs as af-alice"
  local a_uid a_gid
  a_uid=$(id -u af-alice); a_gid=$(id -g af-alice)
  mkdir -p "$rd/alice"; chown "$a_uid:$a_gid" "$rd/alice"; chmod 700 "$rd/alice"
  local -a U=(chroot "--userspec=$a_uid:$a_gid" "$CONDOR_ROOT")
  printf 'executable = /usr/bin/id\narguments = -un\noutput = %s/alice/id.out\nerror = %s/alice/id.err\nlog = %s/alice/jobs.log\nshould_transfer_files = NO\nrequest_memory = 64\nqueue\n' "$rd" "$rd" "$rd" \
    | env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "CONDOR_CONFIG=$CONDOR_CONFIG" "${U[@]}" condor_submit -terse -
  local owner; owner=$("${C[@]}" condor_q -allusers -af Owner -constraint 'Cmd == "/usr/bin/id"' | sort -u)
  echo "Owner: $owner"
  [ "$owner" = "af-alice" ] || die "the job's Owner is '$owner', not af-alice"
  deadline=$((SECONDS + 60))
  while [ $SECONDS -lt $deadline ] && [ -n "$("${C[@]}" condor_q -allusers -af ClusterId -constraint 'Cmd == "/usr/bin/id"')" ]; do sleep 0.5; done
  echo "the job ran as: $(cat "$rd/alice/id.out" 2>/dev/null)"
  [ "$(cat "$rd/alice/id.out" 2>/dev/null)" = "af-alice" ] || die "the job did not run as af-alice"
  cd /
  cmd_stop "$rd"
  trap - EXIT
  rm -rf --one-file-system "$rd"
  echo "== selftest passed in $((SECONDS - t0)) s"
}

case "${1:-}" in
  ensure) cmd_ensure ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  selftest) cmd_selftest ;;
  *) echo "usage: $0 ensure | start <run-dir> | stop <run-dir> | selftest" >&2; exit 2 ;;
esac
