# What the harness scripts (scripts/*.sh) share; sourced, not run:
#
#   HARNESS_TAG=postgres
#   . "$(dirname "${BASH_SOURCE[0]}")/lib/harness.sh"
#
# log/die         a line "[<HARNESS_TAG>] …" on stderr; die adds "error: " and exits 1
# now/since       seconds since the epoch (with nanoseconds); seconds since a `now`, two decimals
# alive           a process runs (and is not a zombie)
# need_root       die unless root: need_root "<what needs it>" ["<why>"]
# wait_until      poll a command until it succeeds, for at most so long, while a process lives
# free_ports      distinct free TCP ports on 127.0.0.1 that fetch() and browsers accept
# lock_cache / unlock_cache   the build lock of a cached artefact (fd 8; not inherited by builds
#                 that close it, e.g. `8>&-`)
# apt_install     install Debian packages, quietly or into a log
# harness_repo    the repository's root (absolute, symlinks resolved)

harness_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)

log() { printf '[%s] %s\n' "${HARNESS_TAG:-harness}" "$*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# alive PID: the process runs; a zombie (dead, not yet reaped: an orphan's waits for init) counts as gone
alive() {
  [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null || return 1
  local st
  st=$(sed -E 's/^.*\) (.).*$/\1/' "/proc/$1/stat" 2>/dev/null || true)   # the state, after "(comm)"
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

need_root() {   # what [why]
  [ "$(id -u)" -eq 0 ] || die "$1 needs root${2:+ ($2)}"
}

# wait_until SECONDS INTERVAL [--pid PID] COMMAND...: runs COMMAND (output discarded) every INTERVAL
# seconds until it succeeds (0). Gives up after SECONDS (1), or as soon as process PID is gone (2):
# the caller says what did not come up, and shows its log.
wait_until() {
  local secs=$1 every=$2 pid=
  shift 2
  if [ "${1:-}" = --pid ]; then pid=$2; shift 2; fi
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    if [ -n "$pid" ] && ! alive "$pid"; then return 2; fi
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep "$every"
  done
}

# free_ports N [PYTHON]: N distinct TCP ports on 127.0.0.1 the kernel considers free now, space
# separated; never one of the Fetch standard's bad ports (test-harness/fetch-bad-ports.json), which
# Node's fetch() and browsers refuse to connect to. PYTHON defaults to python3.
free_ports() {
  "${2:-python3}" - "$1" "$harness_repo/test-harness/fetch-bad-ports.json" <<'PY'
import json, socket, sys
bad = set(json.load(open(sys.argv[2]))["ports"])
socks = []
while len(socks) < int(sys.argv[1]):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    if s.getsockname()[1] in bad:
        continue  # kept bound until the end, so it is not handed out again
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}
free_port() { free_ports 1 "$@"; }   # [PYTHON]

# lock_cache LOCKFILE [SECONDS [WHAT]]: takes the lock on fd 8 (waits at most SECONDS if given, then
# dies: "timed out waiting for another WHAT", WHAT defaulting to build); unlock_cache releases it.
# Callers check again after taking it: another run may have built meanwhile.
lock_cache() {
  mkdir -p "$(dirname "$1")"
  exec 8>"$1"
  if [ -n "${2:-}" ]; then
    flock -w "$2" 8 || die "timed out waiting for another ${3:-build} ($1)"
  else
    flock 8
  fi
}
unlock_cache() { exec 8>&-; }

# apt_install [--log FILE] PACKAGE...: apt-get update and install, non-interactive, as root.
# Quiet by default (errors only); with --log, everything goes to FILE (update within 5 min, install
# within 15, no recommended packages) and its last lines are shown when it fails. Returns apt-get's status.
apt_install() {
  if [ "${1:-}" = --log ]; then
    local logfile=$2; shift 2
    {
      timeout 300 apt-get update &&
      DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y --no-install-recommends "$@"
    } > "$logfile" 2>&1 < /dev/null || { tail -30 "$logfile" >&2; return 1; }
  else
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  fi
}
