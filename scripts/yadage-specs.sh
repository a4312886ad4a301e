#!/usr/bin/env bash
# yadage itself, pinned, and what it computes on its own test specs: the reference the gateway's
# conformance test (gateway-server/test/e2e/test_yadage_specs.py) compares every step with.
#
# Cached OUTSIDE the repository, built once per machine (fresh clones on it reuse them):
#   /var/cache/af-gateway/yadage-venv-<sha256 of bench/yadage-requirements.txt, 12>
#       yadage 0.21.2 and its dependencies (the same venv scripts/bench.sh runs yadage from)
#   /var/cache/af-gateway/yadage-specs-<key>/   (<key>: yadage's version, the requirements file,
#                                               this script and test-harness/yadage/*, hashed: a
#                                               change to the normalisation, yadage_compare.py,
#                                               rebuilds the reference stored in it)
#       sdist/yadage-0.21.2.tar.gz   downloaded with the venv's pip (no wheel: the tests are only
#                                    in the sdist), checked against SDIST_SHA256 below
#       testspecs/                   its tests/testspecs, readable by every account (the gateway's
#                                    steps run as the users' accounts and some read files here)
#       data/                        stand-ins for inputs the specs fetch from the network
#                                    (test-harness/yadage/entries.json `data`)
#       reference.json               yadage's result of every entry of entries.json: per entry its
#                                    status (SUCCESS, or FAILED and why) and per step its key,
#                                    state, directory and published outputs, normalised
#                                    (test-harness/yadage/reference.py)
#       work/                        yadage's run directories and logs, kept to look at (and read by
#                                    the gateway's steps of entries given files yadage's init found)
#
# Usage:
#   scripts/yadage-specs.sh ensure     build whatever is missing; prints reference.json's path (the
#                                      only line on stdout). < 1 s when cached; the first build
#                                      takes about a minute (venv, sdist, ~25 yadage runs)
#   scripts/yadage-specs.sh venv       only the venv; prints its path (scripts/bench.sh)
#   scripts/yadage-specs.sh selftest   ensure, then one line per entry: "NAME: yadage STATUS, N nodes"
set -euo pipefail

YADAGE_VERSION=0.21.2
SDIST_SHA256=8682e70d35a56beb3d25fa5eec77598e41a27e2086fa74ba3125fe9aa0ad49bc
RECIPE_VERSION="yadage-specs-1"   # bump when what `ensure` builds changes in a way the hashed files do not show

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo_root=$(cd "$script_dir/.." && pwd -P)
cache=/var/cache/af-gateway
req="$repo_root/bench/yadage-requirements.txt"
harness="$repo_root/test-harness/yadage"
venv="$cache/yadage-venv-$(sha256sum "$req" | cut -c1-12)"
key=$( { printf '%s\n' "$RECIPE_VERSION" "$YADAGE_VERSION"; cat "$req" "${BASH_SOURCE[0]}" "$harness/entries.json" "$harness/reference.py" "$harness/yadage_compare.py"; } | sha256sum | cut -c1-12)
specs_dir="$cache/yadage-specs-$key"

HARNESS_TAG=yadage-specs
. "$script_dir/lib/harness.sh"   # log, die, now, since, lock_cache, unlock_cache

# ---------------------------------------------------------------- the venv
venv_ready() {
  [ -f "$venv/.complete" ] && return 0
  # a venv built before the marker existed (scripts/bench.sh's first recipe): adopt it if whole
  if [ -x "$venv/bin/yadage-run" ] && "$venv/bin/python" -c 'import yadage, packtivity, adage' 2>/dev/null &&
    [ "$("$venv/bin/python" -m pip show yadage 2>/dev/null | awk '$1=="Version:"{print $2}')" = "$YADAGE_VERSION" ]; then
    touch "$venv/.complete"
    return 0
  fi
  return 1
}

ensure_venv() {
  venv_ready && return 0
  lock_cache "$venv.lock"
  if venv_ready; then unlock_cache; return 0; fi
  local t0 tmp logf="$venv.build.log"
  t0=$(now)
  tmp="$cache/.$(basename "$venv").tmp.$$"
  rm -rf "$tmp" "$venv"
  log "building the yadage venv (once per machine): $venv with $(python3 --version 2>&1); log: $logf"
  {
    python3 -m venv "$tmp"
    "$tmp/bin/python" -m pip install --disable-pip-version-check --no-input --quiet -r "$req"
  } > "$logf" 2>&1 8>&- || { rm -rf "$tmp"; tail -30 "$logf" >&2; die "venv build failed"; }
  # the venv's scripts name their interpreter by absolute path: point them at the final place
  grep -rlI --exclude-dir=__pycache__ -- "$tmp" "$tmp/bin" "$tmp/pyvenv.cfg" 2>/dev/null | while read -r f; do sed -i "s#$tmp#$venv#g" "$f"; done
  touch "$tmp/.complete"
  mv "$tmp" "$venv"
  unlock_cache
  log "venv built in $(since "$t0")s"
}

# ---------------------------------------------------------------- testspecs + reference
ensure_specs() {
  [ -f "$specs_dir/.complete" ] && return 0
  ensure_venv
  lock_cache "$specs_dir.lock"
  if [ -f "$specs_dir/.complete" ]; then unlock_cache; return 0; fi
  local t0 logf="$specs_dir.build.log" sdist
  t0=$(now)
  # built in place (the reference names these paths) and marked complete last: a half-built one is redone
  rm -rf "$specs_dir"
  mkdir -p "$specs_dir/sdist" "$specs_dir/data" "$specs_dir/work"
  log "yadage $YADAGE_VERSION's test specs and yadage's results on them (once per machine): $specs_dir; log: $logf"
  : > "$logf"
  "$venv/bin/python" -m pip download --disable-pip-version-check --no-input --quiet --no-deps --no-binary :all: \
    "yadage==$YADAGE_VERSION" -d "$specs_dir/sdist" >> "$logf" 2>&1 8>&- || { tail -30 "$logf" >&2; die "downloading the yadage sdist failed"; }
  sdist="$specs_dir/sdist/yadage-$YADAGE_VERSION.tar.gz"
  [ -f "$sdist" ] || die "pip download left no $sdist"
  [ "$(sha256sum "$sdist" | cut -d' ' -f1)" = "$SDIST_SHA256" ] || die "$sdist: sha256 $(sha256sum "$sdist" | cut -d' ' -f1), expected $SDIST_SHA256"
  tar -xzf "$sdist" -C "$specs_dir" --strip-components=2 --no-same-owner "yadage-$YADAGE_VERSION/tests/testspecs"
  [ -f "$specs_dir/testspecs/mapreduce/workflow.yml" ] || die "no tests/testspecs in $sdist"
  "$venv/bin/python" - "$harness/entries.json" "$specs_dir/data" <<'PY'
import json, os, sys
table = json.load(open(sys.argv[1]))
for rel, text in table.get("data", {}).items():
    path = os.path.join(sys.argv[2], rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
PY
  chmod -R a+rX "$specs_dir/sdist" "$specs_dir/testspecs" "$specs_dir/data"
  chmod 755 "$specs_dir"
  "$venv/bin/python" "$harness/reference.py" --entries "$harness/entries.json" --specs "$specs_dir/testspecs" \
    --data "$specs_dir/data" --yadage-run "$venv/bin/yadage-run" --work "$specs_dir/work" \
    --out "$specs_dir/reference.json" --version "$YADAGE_VERSION" 2>> "$logf" 8>&- < /dev/null ||
    { tail -30 "$logf" >&2; die "the reference runs failed (yadage failing on a spec is recorded, not an error: this is the harness)"; }
  # readable by every account too: init_from_yadage entries give the gateway's steps files yadage unpacked here
  chmod -R a+rX "$specs_dir/work"
  sed 's/^/  /' "$logf" | grep ': yadage ' >&2 || true
  touch "$specs_dir/.complete"
  unlock_cache
  log "reference built in $(since "$t0")s"
}

selftest() {
  ensure_specs
  "$venv/bin/python" - "$specs_dir/reference.json" <<'PY'
import json, sys
ref = json.load(open(sys.argv[1]))
entries = ref["entries"]
for name, e in entries.items():
    print(f"{name}: yadage {e['status']}, {len(e['nodes'])} nodes" + (f" ({e['reason'][:160]})" if e.get("reason") else ""))
ok = sum(e["status"] == "SUCCESS" for e in entries.values())
print(f"{len(entries)} entries, {ok} completed by yadage {ref['yadage']}, {len(entries) - ok} failed")
# the harness itself works: the plainest map-reduce completes with init, 3 maps and a reduce
m = entries.get("mapreduce", {})
if m.get("status") != "SUCCESS" or sorted(m.get("nodes", {})) != ["init", "map:0", "map:1", "map:2", "reduce"]:
    sys.exit(f"selftest failed: mapreduce is {m.get('status')} with nodes {sorted(m.get('nodes', {}))}")
PY
}

case "${1:-}" in
  ensure) ensure_specs; printf '%s\n' "$specs_dir/reference.json" ;;
  venv) ensure_venv; printf '%s\n' "$venv" ;;
  selftest) selftest ;;
  *) die "usage: $0 ensure | venv | selftest" ;;
esac
