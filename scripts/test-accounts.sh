#!/usr/bin/env bash
# Real POSIX accounts for the multi-user tests: the gateway runs as an unprivileged account and each
# test user's processes run as their own, as on a facility. Needs root (CI runs as root).
#
# Usage:
#   scripts/test-accounts.sh ensure     install sudo and acl if missing; create (once) the group af-users, the
#                                       gateway's account af-gateway and an account af-NAME for each
#                                       user NAME the tests log in as (alice, bob, …, mallory the
#                                       hostile one; members of af-users, homes 0700); write
#                                       the sudo rule that lets af-gateway start the launcher, and
#                                       nothing else, as af-users' members. Prints accounts.json's path.
#   scripts/test-accounts.sh selftest   ensure, then check that the rule works and is narrow
#                                       (gateway-server/test/e2e/test_harness_accounts.py)
#
# The rule names the repository's venv Python and launcher script by path: a second clone gets its own
# rule file (named after a hash of its path). Accounts are kept between runs; they are cheap and
# hold nothing but empty homes.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

GATEWAY=af-gateway
GROUP=af-users
USERS=(af-alice af-bob af-carol af-dave af-erin af-frank af-mallory af-admin af-ci-pipeline af-bench)

HARNESS_TAG=test-accounts
. scripts/lib/harness.sh   # log, die, need_root, apt_install

python="$repo/.venv/bin/python"
launcher="$repo/gateway-server/python/af_gateway_launcher.py"
accounts_script="$repo/gateway-server/python/af_gateway_accounts.py"
CREATE_RANGE="1000 59999"   # accounts.create in the tests: the default accounts.uid_min and uid_max
rule_file="/etc/sudoers.d/af-gateway-test-$(printf '%s' "$repo" | sha256sum | cut -c1-10)"
state_dir=/var/cache/af-gateway/test-accounts

cmd_ensure() {
  [ "$(id -u)" -eq 0 ] || die "must run as root (creates accounts)"
  # sudo starts the users' launchers; setfacl shares a run's workspace with its owner's account
  if ! command -v sudo >/dev/null || ! command -v setfacl >/dev/null; then
    log "installing sudo and acl (apt-get)"
    apt_install sudo acl || die "could not install sudo and acl"
  fi
  getent group "$GROUP" >/dev/null || groupadd "$GROUP"
  getent passwd "$GATEWAY" >/dev/null || useradd --system --user-group --create-home --home-dir "/var/lib/$GATEWAY" --shell /usr/sbin/nologin "$GATEWAY"
  for u in "${USERS[@]}"; do
    getent passwd "$u" >/dev/null || useradd --user-group --create-home --shell /bin/sh --groups "$GROUP" "$u"
    chmod 700 "$(getent passwd "$u" | cut -d: -f6)"
  done
  # The users run the repository's venv: a clone in a mktemp directory (0700) must let them
  # through, and so must the directories above the venv's interpreter (a pyenv Python under
  # /root). Only the search bit, only where it is missing, and said in the log.
  chmod o+x "$repo"
  local d; d=$(dirname "$(readlink -f "$python")")
  while [ "$d" != / ]; do
    if [ "$(( 0$(stat -c %a "$d") & 1 ))" -eq 0 ]; then log "letting the test accounts pass through $d (o+x)"; chmod o+x "$d"; fi
    d=$(dirname "$d")
  done
  local tmp; tmp=$(mktemp)
  # No SETENV: sudo resets the environment, so nothing of the gateway's reaches the launcher.
  # and to create accounts in af-users with a uid in CREATE_RANGE (accounts.create), nothing else
  { printf 'Defaults:%s !requiretty, !lecture\n%s ALL=(%%%s) NOPASSWD: %s %s serve\n' \
      "$GATEWAY" "$GATEWAY" "$GROUP" "$python" "$launcher"
    printf '%s ALL=(root) NOPASSWD: %s %s create * %s %s\n' "$GATEWAY" "$python" "$accounts_script" "$GROUP" "$CREATE_RANGE"
  } > "$tmp"
  visudo -cqf "$tmp" || { rm -f "$tmp"; die "the sudo rule does not parse"; }
  install -m 0440 -o root -g root "$tmp" "$rule_file"
  rm -f "$tmp"
  mkdir -p "$state_dir"
  {
    printf '{"gateway": %s, "group": "%s", "users": {' "$(account_json "$GATEWAY")" "$GROUP"
    local sep=""
    for u in "${USERS[@]}"; do printf '%s"%s": %s' "$sep" "${u#af-}" "$(account_json "$u")"; sep=", "; done
    printf '}, "sudo_rule": "%s"}\n' "$rule_file"
  } > "$state_dir/accounts.json"
  chmod 644 "$state_dir/accounts.json"
  echo "$state_dir/accounts.json"
}

account_json() {
  local e; e=$(getent passwd "$1")
  IFS=: read -r name _ uid gid _ home _ <<<"$e"
  printf '{"name": "%s", "uid": %s, "gid": %s, "home": "%s"}' "$name" "$uid" "$gid" "$home"
}

cmd_selftest() {   # the checks are a test of the suite now
  exec "$repo/.venv/bin/python" -m pytest "$repo/gateway-server/test/e2e/test_harness_accounts.py" -q -p no:cacheprovider
}

case "${1:-}" in
  ensure) cmd_ensure ;;
  selftest) cmd_selftest ;;
  *) die "usage: $0 ensure|selftest" ;;
esac
