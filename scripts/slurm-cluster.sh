#!/usr/bin/env bash
# A real single-node Slurm cluster for the Slurm backend's tests (Dask workers as Slurm jobs).
#
# Debian 12's own packages (slurm-wlm 22.05 and munge 0.5) on this machine, no container and no
# cgroups: slurmctld and slurmd run here, jobs run as the accounts that submitted them. Installing is
# all `ensure` does; nothing heavy is built. What it verified (the packages' versions, the plugins
# the configuration below names) is remembered OUTSIDE the repository, so a fresh clone's ensure
# takes one dpkg-query:
#   ${AF_SLURM_CACHE:-/var/cache/af-gateway}/slurm-<key>/verified   (<key> = hash of RECIPE_VERSION)
#
# Usage:
#   scripts/slurm-cluster.sh ensure            install slurm-wlm and munge if missing (apt-get update and
#                                              install, as root); < 1 s when installed and verified
#   scripts/slurm-cluster.sh start <run-dir>   start this run's own munged, slurmctld and slurmd; writes
#                                              <run-dir>/slurm.{json,env}
#   scripts/slurm-cluster.sh stop <run-dir>    cancel every job, stop the daemons, kill what remains of
#                                              the run (job processes too); safe to repeat, and also
#                                              kills a run whose dir was removed under it; removes
#                                              nothing outside <run-dir> (and there only slurm.json,
#                                              slurm.env and the pid files: logs stay for a look)
#   scripts/slurm-cluster.sh selftest          ensure + start + jobs as af-alice + a pending job + stop,
#                                              printing what it saw; non-zero on any failure
#
# Each run is its own cluster: its own munge key and munged (its own socket), its own ports (two
# free ones chosen at start: SlurmctldPort, SlurmdPort), its own ClusterName (af<hash of the run
# dir>) and its own state, spool and log directories, so two runs coexist on one machine. One node,
# this machine's short hostname (NodeAddr 127.0.0.1), in two partitions on the same node: `debug`
# (the default, MaxTime 1 day) and `hpc` (MaxTime 7 days). The node advertises AF_SLURM_CPUS
# (default 8) CPUs and AF_SLURM_MEMORY_MB (default 16384) MB whatever the hardware has
# (SlurmdParameters=config_overrides): several 1-CPU jobs share it (select/cons_tres,
# CR_Core_Memory, DefMemPerCPU=512). Nothing is enforced: ProctrackType=proctrack/linuxproc,
# TaskPlugin=task/none, no accounting (sacct has nothing; use squeue -t all / scontrol show job,
# which keep a finished job for MinJobAge=300 s). SchedulerParameters=batch_sched_delay=0: a batch
# job starts about 1 s after sbatch (with Slurm's default of 3 s it took 3 s).
#
# Files of a run (<run-dir> gets a+x: the accounts pass through it to the munge socket and the
# configuration; every directory above it must already let everyone through, as munged demands):
#   <run-dir>/slurm/slurm.conf        the configuration; clients find the cluster with SLURM_CONF=<it>
#   <run-dir>/slurm/state/            StateSaveLocation (root, 0700; cleared at each start)
#   <run-dir>/slurm/spool/            SlurmdSpoolDir (job scripts, step sockets)
#   <run-dir>/slurm/log/              slurmctld.log, slurmd.log (and the daemons' stdout/stderr)
#   <run-dir>/slurm/munge/            munged's key (0600), socket, log, pid and seed (owned by munge)
#   <run-dir>/slurm/*.pid             slurmctld.pid, slurmd.pid
#
# <run-dir>/slurm.json (and slurm.env: the same keys, single-quoted, lists as JSON, for `source`):
#   SLURM_CONF           <run-dir>/slurm/slurm.conf: give it to every Slurm client in its environment
#   RUN_DIR              the run dir (real path)
#   PARTITIONS           ["debug", "hpc"]             DEFAULT_PARTITION  "debug"
#   NODE                 the node's name (the short hostname)
#   CPUS, MEMORY_MB      what the node advertises
#   CLUSTER_NAME         this run's ClusterName (jobs see it as SLURM_CLUSTER_NAME)
#   MUNGE_SOCKET         this run's munge socket (slurm.conf's AuthInfo=socket=... names it)
#   SLURMCTLD_PORT, SLURMD_PORT, LOG_DIR, REPO_ROOT, PYTHON (the repository's venv python: jobs run it)
#   SLURM_USER_CMD_JSON  the prefix that runs a Slurm tool as any account:
#                        ["setpriv", "--reuid={uid}", "--regid={gid}", "--init-groups", "--"]
#                        (replace {uid}/{gid} per command; it keeps the caller's environment, so the
#                        caller gives SLURM_CONF and PATH). Needs root.
#   ACCOUNTS             the test accounts that submit: [{name, uid, gid, home}, ...] from
#                        AF_SLURM_ACCOUNTS=<accounts.json> when set, else from running
#                        scripts/test-accounts.sh ensure (af-alice, af-bob, ..., af-mallory). Slurm
#                        itself takes jobs from any local account (there is no accounting database).
#
# Authentication: the client tools (sbatch, squeue, scancel, sinfo, scontrol) and the daemons reach
# this run's munged through slurm.conf's AuthInfo=socket=<MUNGE_SOCKET> (checked: no munged listens
# on munge's default socket here, and sbatch as af-alice works). A job belongs to the account whose
# munge credential submitted it, runs as that account, and only that account (or root) can scancel
# it ("Access/permission denied" otherwise). Other accounts can see it in squeue (no PrivateData).
# slurmctld and slurmd listen on all interfaces, but nothing without this run's munge key is let in.
#
# Root: everything except a verified `ensure`. slurmd must be root (it starts each job as its
# account), slurmctld runs as root here (SlurmUser=root, so no state dir ownership to arrange),
# munged runs as the munge account, and stop reads other accounts' /proc entries to find the jobs.
#
# Noise in the logs that is harmless: "mpi/pmix_v4: ... can not load PMIx library" (22.05 loads every
# MPI plugin; libpmix is not installed and not needed with MpiDefault=none), "Could not open ... state
# file" on a fresh start, "Node configuration differs from hardware" (the advertised CPUs).
set -euo pipefail

RECIPE_VERSION="slurm-bookworm-1"   # bump when what ensure installs or verifies changes
PACKAGES=(slurm-wlm munge)
# the plugins slurm.conf below names (ensure checks they are installed)
PLUGINS=(auth_munge cred_munge proctrack_linuxproc task_none select_cons_tres sched_backfill jobacct_gather_none accounting_storage_none jobcomp_none switch_none)
PARTITIONS=(debug hpc)
CPUS=${AF_SLURM_CPUS:-8}
MEMORY_MB=${AF_SLURM_MEMORY_MB:-16384}

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo_root=$(cd "$script_dir/.." && pwd -P)
cache=${AF_SLURM_CACHE:-/var/cache/af-gateway}
key=$(printf '%s' "$RECIPE_VERSION" | sha256sum | cut -c1-12)
stamp_dir="$cache/slurm-$key"
SYS_PATH=/usr/sbin:/usr/bin:/sbin:/bin

HARNESS_TAG=slurm-cluster
. "$script_dir/lib/harness.sh"   # log, die, now, since, alive, need_root, wait_until, free_ports, lock_cache, apt_install
slurm_needs_root() { need_root "$1" "slurmd starts jobs as their accounts; stop reads other accounts' /proc"; }

[[ "$CPUS" =~ ^[1-9][0-9]{0,3}$ ]] || die "AF_SLURM_CPUS must be a positive number, not '$CPUS'"
[[ "$MEMORY_MB" =~ ^[1-9][0-9]{2,7}$ ]] || die "AF_SLURM_MEMORY_MB must be a number of MB (>= 100), not '$MEMORY_MB'"

# ---------------------------------------------------------------- ensure
# "<package> <version>" per line for the PACKAGES installed (one dpkg-query for all)
installed_versions() {
  # (dpkg-query exits 1 when a package was never installed: on a fresh machine that is the case to handle)
  { dpkg-query -W -f='${Package} ${Status} ${Version}\n' "${PACKAGES[@]}" 2>/dev/null || true; } \
    | awk '$2 == "install" && $3 == "ok" && $4 == "installed" { print $1, $5 }' | sort
}

missing_packages() {
  local have p out=
  have=$(installed_versions | cut -d' ' -f1)
  for p in "${PACKAGES[@]}"; do grep -qx -- "$p" <<<"$have" || out+="$p "; done
  printf '%s' "${out% }"
}

verify_install() {   # dies unless every binary and plugin the runs use is there
  local b d p
  for b in munged mungekey munge unmunge slurmctld slurmd slurmstepd sbatch squeue scancel sinfo scontrol setpriv; do
    command -v "$b" >/dev/null 2>&1 || PATH=$SYS_PATH command -v "$b" >/dev/null 2>&1 || die "$b missing after the install"
  done
  d=$(dirname "$(dpkg -L slurm-wlm-basic-plugins 2>/dev/null | grep -m1 '/proctrack_linuxproc\.so$')") \
    || die "no proctrack_linuxproc.so in slurm-wlm-basic-plugins"
  for p in "${PLUGINS[@]}"; do [ -f "$d/$p.so" ] || die "the Slurm plugin $p is missing from $d"; done
  local v; v=$(PATH=$SYS_PATH slurmctld -V 2>/dev/null || true)
  case "$v" in *" 22.05"*) ;; *) log "warning: expected Slurm 22.05 (Debian 12), found '$v'; the configuration may need changes" ;; esac
}

cmd_ensure() {
  local versions
  versions=$(installed_versions)
  if [ -f "$stamp_dir/verified" ] && [ -z "$(missing_packages)" ] && [ "$versions" = "$(cat "$stamp_dir/verified")" ]; then
    return 0
  fi
  slurm_needs_root "installing and verifying slurm-wlm and munge"
  lock_cache "$cache/slurm-$key.lock" 900 "package install"
  local missing; missing=$(missing_packages)
  if [ -n "$missing" ]; then
    command -v apt-get >/dev/null || { unlock_cache; die "$missing missing and there is no apt-get"; }
    local t0 aptlog
    t0=$(now)
    aptlog=$(mktemp /tmp/af-slurm-apt.XXXXXX.log)
    log "installing $missing with apt-get (log: $aptlog)"
    # shellcheck disable=SC2086   # a list of package names
    apt_install --log "$aptlog" $missing 8>&- || { unlock_cache; die "apt-get failed (log: $aptlog)"; }
    rm -f "$aptlog"
    log "installed in $(since "$t0")s"
  fi
  verify_install
  mkdir -p "$stamp_dir"
  installed_versions > "$stamp_dir/verified.tmp"
  mv "$stamp_dir/verified.tmp" "$stamp_dir/verified"
  unlock_cache
  log "verified: $(tr '\n' ' ' < "$stamp_dir/verified")"
}

# ---------------------------------------------------------------- per-run paths
run_paths() { local d; d=$(cd "$1" && pwd -P) || die "no such run dir: $1"; run_paths_of "$d"; }
run_paths_of() {   # the run dir's real path
  run_dir=$1
  run_id=$(printf '%s' "$run_dir" | sha256sum | cut -c1-12)
  cluster="af${run_id:0:10}"
  sdir="$run_dir/slurm"
  mdir="$sdir/munge"
  conf="$sdir/slurm.conf"
  sock="$mdir/munge.socket"
  node=$(hostname -s)
}

host_python() {
  local venv_py="$repo_root/.venv/bin/python"
  if [ -x "$venv_py" ]; then echo "$venv_py"; else command -v python3 || die "no python (run scripts/bootstrap.sh)"; fi
}

# slurm_as_root TOOL ARGS...: a Slurm client as root against this run's cluster, bounded in time
slurm_as_root() { env -i PATH=$SYS_PATH LANG=C.UTF-8 "SLURM_CONF=$conf" timeout 30 "$@"; }

# The accounts that may submit (ACCOUNTS in slurm.json), from an accounts.json of test-accounts.sh.
write_accounts() {
  local file=${AF_SLURM_ACCOUNTS:-}
  if [ -z "$file" ]; then
    file=$(bash "$repo_root/scripts/test-accounts.sh" ensure 8>&- | tail -1) || die "scripts/test-accounts.sh ensure failed"
  fi
  [ -f "$file" ] || die "AF_SLURM_ACCOUNTS: no such file $file"
  "$(host_python)" - "$file" "$sdir/accounts.json" <<'PY' || die "cannot read the accounts in $file"
import json, pwd, re, sys
facts = json.load(open(sys.argv[1]))
ok = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
out = []
for u in facts.get("users", {}).values():
    name, uid, gid, home = u["name"], int(u["uid"]), int(u["gid"]), u["home"]
    if not ok.match(name) or uid < 1000 or gid < 1000 or not re.match(r"^/[A-Za-z0-9_./-]+$", home):
        sys.exit(f"refusing account {u!r}")
    p = pwd.getpwnam(name)  # Slurm runs a job as the submitting uid: it must be this machine's account
    if (p.pw_uid, p.pw_gid) != (uid, gid):
        sys.exit(f"account {name}: {uid}:{gid} in the file, {p.pw_uid}:{p.pw_gid} on this machine")
    out.append({"name": name, "uid": uid, "gid": gid, "home": home})
json.dump(out, open(sys.argv[2], "w"))
PY
}

# Every directory from the run dir up must let everyone through (the search bit for user, group and
# other: munged refuses to start otherwise, "Socket is inaccessible: execute permissions for all
# required"); the accounts reach the munge socket and slurm.conf through them. The run dir itself
# gets a+x; above it, nothing is changed.
check_traversable() {
  chmod a+x "$run_dir"
  local d; d=$(dirname "$run_dir")
  while :; do
    [ "$(( 0$(stat -c %a "$d") & 0111 ))" -eq $(( 0111 )) ] || die "$d does not let every account through (a+x): choose a run dir they can reach (e.g. under /tmp)"
    [ "$d" = / ] && break
    d=$(dirname "$d")
  done
}

write_config() {   # write_config CTLD_PORT SLURMD_PORT
  cat > "$conf.tmp" <<CONF
# Slurm test cluster of run $run_dir (scripts/slurm-cluster.sh start); clients: SLURM_CONF=$conf
ClusterName=$cluster
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$1
SlurmdPort=$2
SlurmUser=root
SlurmdUser=root
# this run's own munged (clients read the socket from here too)
AuthType=auth/munge
AuthInfo=socket=$sock
CredType=cred/munge
StateSaveLocation=$sdir/state
SlurmdSpoolDir=$sdir/spool
SlurmctldPidFile=$sdir/slurmctld.pid
SlurmdPidFile=$sdir/slurmd.pid
SlurmctldLogFile=$sdir/log/slurmctld.log
SlurmdLogFile=$sdir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups: processes tracked through /proc, nothing confined
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
MailProg=/bin/true
# several jobs share the node, one CPU and DefMemPerCPU each unless they ask for more
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=512
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
# the node advertises what this file says, not what the hardware has (tests oversubscribe)
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
MinJobAge=300
InactiveLimit=0
NodeName=$node NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEMORY_MB State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=1-00:00:00 State=UP
PartitionName=hpc Nodes=$node Default=NO MaxTime=7-00:00:00 State=UP
CONF
  chmod 644 "$conf.tmp"
  mv "$conf.tmp" "$conf"
}

# the daemons of this run carry AF_SLURM_RUN=<run id> in their environment (stop finds them by it)
run_daemon() { env -i PATH=$SYS_PATH LANG=C.UTF-8 "SLURM_CONF=$conf" "AF_SLURM_RUN=$run_id" "$@" 8>&- < /dev/null; }

ctld_pid() {   # the pid in slurmctld.pid if it is this run's slurmctld
  local pid; pid=$(cat "$sdir/slurmctld.pid" 2>/dev/null || true)
  [ -n "$pid" ] && alive "$pid" && tr '\0' '\n' 2>/dev/null < "/proc/$pid/environ" | grep -qx "AF_SLURM_RUN=$run_id" && echo "$pid"
}

cmd_start() {
  [ $# -eq 1 ] || die "usage: $0 start <run-dir>"
  slurm_needs_root start
  local t0; t0=$(now)
  mkdir -p "$1"
  cmd_ensure
  run_paths "$1"
  [ -z "$(ctld_pid)" ] || die "a Slurm cluster is already running for $run_dir (stop it first)"
  [ "${#sock}" -le 100 ] || die "the run dir's path is too long for a Unix socket ($sock): choose a shorter one"
  cmd_stop "$run_dir" >/dev/null 2>&1 || true   # leftovers of a failed start
  # a start that fails undoes itself (the logs under <run-dir>/slurm stay for a look)
  trap 'log "start failed: stopping what it started"; cmd_stop "$run_dir" >/dev/null 2>&1 || true' EXIT
  check_traversable
  mkdir -p "$sdir"
  chmod 755 "$sdir"
  write_accounts
  rm -rf --one-file-system "$sdir/state" "$sdir/spool" "$mdir"
  mkdir -p "$sdir/state" "$sdir/spool" "$sdir/log" "$mdir"
  chmod 700 "$sdir/state"
  chmod 755 "$sdir/spool" "$sdir/log"
  # munged: its own key and socket; the socket's directory must let every account through
  chown munge:munge "$mdir"
  chmod 755 "$mdir"
  setpriv --reuid=munge --regid=munge --init-groups -- mungekey --create --keyfile="$mdir/munge.key" 8>&- \
    || die "mungekey could not create this run's key"
  run_daemon setpriv --reuid=munge --regid=munge --init-groups -- munged --socket="$sock" --key-file="$mdir/munge.key" \
    --log-file="$mdir/munged.log" --pid-file="$mdir/munged.pid" --seed-file="$mdir/munged.seed" \
    > "$sdir/log/munged.out" 2>&1 || { cat "$sdir/log/munged.out" "$mdir/munged.log" >&2 2>/dev/null; die "munged did not start"; }
  wait_until 20 0.1 sh -c 'munge -n -S "$1" | unmunge -S "$1"' sh "$sock" \
    || { tail -20 "$mdir/munged.log" >&2 2>/dev/null; die "munged does not answer on $sock"; }

  local ports ctld_port slurmd_port
  ports=$(free_ports 2 "$(host_python)")
  read -r ctld_port slurmd_port <<<"$ports"
  write_config "$ctld_port" "$slurmd_port"
  # -c: a fresh cluster (no jobs, nodes or reservations from an earlier start of this run dir)
  run_daemon slurmctld -c > "$sdir/log/slurmctld.out" 2>&1 \
    || { cat "$sdir/log/slurmctld.out" >&2; tail -20 "$sdir/log/slurmctld.log" >&2 2>/dev/null; die "slurmctld did not start"; }
  run_daemon slurmd > "$sdir/log/slurmd.out" 2>&1 \
    || { cat "$sdir/log/slurmd.out" >&2; tail -20 "$sdir/log/slurmd.log" >&2 2>/dev/null; die "slurmd did not start"; }
  # (one line per partition the node is in)
  if ! wait_until 60 0.2 sh -c '[ "$(env -i PATH=$2 SLURM_CONF="$1" timeout 10 sinfo -h -N -n "$3" -o %T | sort -u)" = idle ]' sh "$conf" "$SYS_PATH" "$node"; then
    log "the node is not idle after 60 s: $(slurm_as_root sinfo -h -N -o '%N %T %E' 2>&1 || true)"
    tail -20 "$sdir/log/slurmctld.log" "$sdir/log/slurmd.log" >&2 2>/dev/null || true
    die "the Slurm cluster did not become ready"
  fi

  # slurm.json for programs, slurm.env (the same facts, single-quoted) for shells
  "$(host_python)" - "$run_dir" "$conf" "$node" "$CPUS" "$MEMORY_MB" "$cluster" "$sock" "$ctld_port" "$slurmd_port" \
      "$sdir/log" "$repo_root" "$repo_root/.venv/bin/python" "$sdir/accounts.json" "${PARTITIONS[@]}" <<'PY'
import json, shlex, sys
(run_dir, conf, node, cpus, mem, cluster, sock, cport, dport, logs, repo, python, accounts), parts = sys.argv[1:14], sys.argv[14:]
facts = {
    "SLURM_CONF": conf, "RUN_DIR": run_dir, "PARTITIONS": parts, "DEFAULT_PARTITION": parts[0], "NODE": node,
    "CPUS": int(cpus), "MEMORY_MB": int(mem), "CLUSTER_NAME": cluster, "MUNGE_SOCKET": sock,
    "SLURMCTLD_PORT": int(cport), "SLURMD_PORT": int(dport), "LOG_DIR": logs, "REPO_ROOT": repo, "PYTHON": python,
    "SLURM_USER_CMD_JSON": ["setpriv", "--reuid={uid}", "--regid={gid}", "--init-groups", "--"],
    "ACCOUNTS": json.load(open(accounts)),
}
with open(run_dir + "/slurm.json.tmp", "w") as f:
    json.dump(facts, f, indent=2)
with open(run_dir + "/slurm.env.tmp", "w") as f:
    f.write(f"# Slurm test cluster of run {run_dir} (scripts/slurm-cluster.sh start)\n")
    for k, v in facts.items():
        f.write(f"{k}={shlex.quote(json.dumps(v) if isinstance(v, list) else str(v))}\n")
PY
  chmod 644 "$run_dir/slurm.json.tmp" "$run_dir/slurm.env.tmp"
  mv "$run_dir/slurm.json.tmp" "$run_dir/slurm.json"
  mv "$run_dir/slurm.env.tmp" "$run_dir/slurm.env"
  trap - EXIT
  log "cluster $cluster ready in $(since "$t0")s: node $node ($CPUS CPUs, $MEMORY_MB MB), partitions ${PARTITIONS[*]}, slurmctld port $ctld_port, SLURM_CONF=$conf"
}

# ---------------------------------------------------------------- stop
# The pids of this shell and its ancestors: never killed, whatever their environment says.
self_and_ancestors() {
  local p=$$
  while [ -n "$p" ] && [ "$p" -gt 1 ]; do
    echo "$p"
    p=$(awk '{ print $4 }' "/proc/$p/stat" 2>/dev/null || true)
  done
}

# PIDs of every process of this run: the daemons started with its AF_SLURM_RUN marker (munged,
# slurmctld, slurmd, and what they fork), Slurm's own programs whose SLURM_CONF is this run's, the
# job processes (their SLURM_CLUSTER_NAME is this run's ClusterName), anything holding a file under
# <run-dir>/slurm open (slurmstepd: its process title overwrites the start of its environment, and
# it keeps slurmd.log open), and every descendant of any of those (a job that cleared its
# environment). Never this script or its ancestors. One grep, one find and one ps over all processes.
run_pids() {
  local keep f p exe pp pat changed
  keep=" $(self_and_ancestors | tr '\n' ' ') "
  local -A mine=()
  while IFS= read -r f; do
    p=${f#/proc/}; mine[${p%%/*}]=1
  done < <(grep -lsxzF -e "AF_SLURM_RUN=$run_id" -e "SLURM_CLUSTER_NAME=$cluster" /proc/[0-9]*/environ 2>/dev/null || true)
  while IFS= read -r f; do
    p=${f#/proc/}; p=${p%%/*}
    exe=$(readlink "/proc/$p/exe" 2>/dev/null || true)
    case "$exe" in /usr/sbin/slurm*|/usr/bin/slurm*) mine[$p]=1 ;; esac
  done < <(grep -lsxzF -e "SLURM_CONF=$conf" /proc/[0-9]*/environ 2>/dev/null || true)
  pat=$(printf '%s' "$sdir" | sed 's/[][*?\\]/\\&/g')
  while IFS= read -r f; do
    p=${f#/proc/}; mine[${p%%/*}]=1
  done < <(find /proc/[0-9]*/fd -maxdepth 1 -lname "$pat/*" 2>/dev/null || true)
  # descendants: repeat over the parent links until nothing new joins
  local -a links
  mapfile -t links < <(ps -e -o pid=,ppid= 2>/dev/null || true)
  changed=1
  while [ "${#mine[@]}" -gt 0 ] && [ $changed -eq 1 ]; do
    changed=0
    for f in "${links[@]}"; do
      read -r p pp <<<"$f"
      if [ -z "${mine[$p]:-}" ] && [ -n "${mine[$pp]:-}" ]; then mine[$p]=1; changed=1; fi
    done
  done
  for p in "${!mine[@]}"; do
    [[ "$keep" == *" $p "* ]] && continue
    alive "$p" && echo "$p"
  done
  return 0
}

cmd_stop() {
  [ $# -eq 1 ] || die "usage: $0 stop <run-dir>"
  slurm_needs_root stop
  if [ -d "$1" ]; then
    run_paths "$1"
  else
    # the run dir was removed under a running cluster: its processes are still found by their marks
    run_paths_of "$(realpath -m -- "$1")"
  fi
  local pids ids deadline
  if [ -n "$(ctld_pid)" ] && [ -f "$conf" ]; then
    # every job of the run, of every account, then the daemons (slurmd leaves running jobs alone)
    ids=$(slurm_as_root squeue -h -t PD,R,S,CG,CF -o %A 2>/dev/null | tr '\n' ' ' || true)
    if [ -n "${ids// /}" ]; then
      # shellcheck disable=SC2086   # job ids
      slurm_as_root scancel $ids 2>/dev/null || true
      deadline=$((SECONDS + 20))
      while [ $SECONDS -lt $deadline ] && [ -n "$(slurm_as_root squeue -h -t PD,R,S,CG,CF -o %A 2>/dev/null || true)" ]; do sleep 0.3; done
    fi
    slurm_as_root scontrol shutdown >/dev/null 2>&1 || true
    deadline=$((SECONDS + 15))
    while [ $SECONDS -lt $deadline ] && [ -n "$(ctld_pid)" ]; do sleep 0.2; done
  fi
  # what remains: munged (it outlives the Slurm daemons on purpose), and whatever a failed start or
  # a job left; SIGTERM first (munged removes its socket), then SIGKILL
  pids=$(run_pids)
  local seen=$pids
  if [ -n "$pids" ]; then
    # shellcheck disable=SC2086   # pids
    kill -TERM $pids 2>/dev/null || true
    deadline=$((SECONDS + 3))
    while [ $SECONDS -lt $deadline ] && [ -n "$(run_pids)" ]; do sleep 0.2; done
  fi
  pids=$(run_pids)
  seen="$seen $pids"
  if [ -n "$pids" ]; then
    # shellcheck disable=SC2086   # pids
    log "killing what remains: $(ps -o pid=,user=,args= -p "$(echo $pids | tr ' ' ,)" 2>/dev/null | awk '{ $1 = $1; print }' | paste -sd';' | cut -c1-400)"
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while [ $SECONDS -lt $deadline ] && [ -n "$(run_pids)" ]; do sleep 0.2; done
  fi
  pids=$(run_pids)
  [ -z "$pids" ] || die "processes of run $run_dir remain: $(echo "$pids" | tr '\n' ' ')"
  # the killed are gone once their parent (or init) reaped them: wait for the zombies, bounded
  local p left
  deadline=$((SECONDS + 5))
  while :; do
    left=""
    for p in $seen; do [ -e "/proc/$p" ] && left="$left $p"; done
    { [ -z "$left" ] || [ $SECONDS -ge $deadline ]; } && break
    sleep 0.2
  done
  [ -z "$left" ] || log "not yet reaped (zombies):$left"
  rm -f "$run_dir/slurm.json" "$run_dir/slurm.env" "$sdir/slurmctld.pid" "$sdir/slurmd.pid" "$mdir/munged.pid" "$sock"
  log "stopped the Slurm cluster of $run_dir"
}

# ---------------------------------------------------------------- selftest
cmd_selftest() {
  slurm_needs_root selftest
  local t0; t0=$(now)
  cmd_ensure
  local rd; rd=$(mktemp -d /tmp/af-slurm-selftest.XXXXXX)
  AF_SLURM_ACCOUNTS=$(bash "$repo_root/scripts/test-accounts.sh" ensure | tail -1) || die "scripts/test-accounts.sh ensure failed"
  export AF_SLURM_ACCOUNTS
  local ts; ts=$(now)
  # (a start that fails stops what it started: its subshell's trap)
  ( cmd_start "$rd" ) || { rm -rf --one-file-system "$rd"; die "start failed"; }
  trap 'cmd_stop "'"$rd"'" || true; rm -rf --one-file-system "'"$rd"'"' EXIT
  run_paths "$rd"
  echo "== cluster ready $(since "$ts") s after start"
  echo "== slurm.env"; cat "$rd/slurm.env"
  # shellcheck disable=SC1090,SC1091
  source "$rd/slurm.env"
  local a_uid a_gid b_uid b_gid
  a_uid=$(id -u af-alice); a_gid=$(id -g af-alice)
  b_uid=$(id -u af-bob); b_gid=$(id -g af-bob)
  # as an account, through the prefix the gateway will use (SLURM_CONF from the environment)
  as_account() {
    local uid=$1 gid=$2; shift 2
    local -a prefix
    mapfile -t prefix < <(jq -r '.[]' <<<"$SLURM_USER_CMD_JSON" | sed -e "s/{uid}/$uid/g" -e "s/{gid}/$gid/g")
    (cd / && env -i PATH=$SYS_PATH LANG=C.UTF-8 "SLURM_CONF=$SLURM_CONF" timeout 30 "${prefix[@]}" "$@")
  }
  local ad="$rd/alice"
  mkdir -p "$ad"; chown "$a_uid:$a_gid" "$ad"; chmod 700 "$ad"
  echo "== sinfo"
  slurm_as_root sinfo
  echo "== sbatch as af-alice: id -un, hostname, the repository's venv python"
  local j1 tsub
  tsub=$(now)
  j1=$(as_account "$a_uid" "$a_gid" sbatch --parsable --chdir="$ad" -o "$ad/id.out" -J af-selftest-id \
    --wrap "id -un; hostname; '$PYTHON' -c 'import dask, distributed; print(distributed.__version__)'") || die "sbatch as af-alice failed"
  echo "job $j1"
  local st="" started=""
  local deadline=$((SECONDS + 60))
  while [ $SECONDS -lt $deadline ]; do
    st=$(slurm_as_root squeue -h -t all -j "$j1" -o %T 2>/dev/null || true)
    [ -n "$started" ] || case "$st" in RUNNING|COMPLETING|COMPLETED) started=$(since "$tsub") ;; esac
    case "$st" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) break ;; esac
    sleep 0.1
  done
  echo "job $j1: $st (started $started s after sbatch, ended $(since "$tsub") s after)"
  echo "== scontrol show job $j1"
  slurm_as_root scontrol show job "$j1"
  echo "== its output ($ad/id.out)"
  cat "$ad/id.out"
  [ "$st" = COMPLETED ] || die "job $j1 did not complete ($st)"
  [ "$(sed -n 1p "$ad/id.out")" = af-alice ] || die "the job did not run as af-alice"
  [ "$(sed -n 2p "$ad/id.out")" = "$(hostname)" ] || die "the job did not print this machine's hostname"
  grep -qE '^[0-9]{4}\.[0-9]+' <(sed -n 3p "$ad/id.out") || die "the job could not run $PYTHON with distributed"
  [ "$(stat -c %U "$ad/id.out")" = af-alice ] || die "the job's output is not af-alice's"

  echo "== fill the node (a job of $CPUS CPUs), then a 1-CPU job in each partition waits, and one over debug's MaxTime"
  local jfill jwait jhpc jlong
  jfill=$(as_account "$a_uid" "$a_gid" sbatch --parsable --chdir="$ad" -o /dev/null -c "$CPUS" -J af-selftest-fill --wrap 'sleep 300')
  deadline=$((SECONDS + 30))
  until [ "$(slurm_as_root squeue -h -j "$jfill" -o %T)" = RUNNING ] || [ $SECONDS -ge $deadline ]; do sleep 0.2; done
  jwait=$(as_account "$a_uid" "$a_gid" sbatch --parsable --chdir="$ad" -o /dev/null -J af-selftest-wait --wrap 'sleep 300')
  jhpc=$(as_account "$a_uid" "$a_gid" sbatch --parsable --chdir="$ad" -o /dev/null -p hpc -J af-selftest-hpc --wrap 'sleep 300')
  jlong=$(as_account "$a_uid" "$a_gid" sbatch --parsable --chdir="$ad" -o /dev/null -t 2-00:00:00 -J af-selftest-long --wrap 'sleep 300')
  # wait for the scheduler to have looked at them (the reason leaves None)
  deadline=$((SECONDS + 30))
  while [ $SECONDS -lt $deadline ] && slurm_as_root squeue -h -t PD -o %r | grep -qx None; do sleep 0.3; done
  echo "== squeue -h -o '%i %T %r %P %C %u'"
  slurm_as_root squeue -h -o '%i %T %r %P %C %u' | tee "$rd/queue.txt"
  grep -qx "$jfill RUNNING None debug $CPUS af-alice" "$rd/queue.txt" || die "the job filling the node is not running"
  grep -qE "^$jwait PENDING (Resources|Priority) debug 1 af-alice$" "$rd/queue.txt" || die "job $jwait is not pending for Resources/Priority"
  # the other partition's job: its node is held for the debug job ahead of it; Slurm 22.05 gives the
  # reason as its long text, "Nodes required for job are DOWN, DRAINED or reserved for jobs in higher
  # priority partitions" (the same in scontrol's Reason=)
  grep -qE "^$jhpc PENDING (Resources|Priority|Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority partitions) hpc 1 af-alice$" "$rd/queue.txt" \
    || die "job $jhpc is not pending for a reason that says its node is taken"
  echo "scontrol show job $jhpc: $(slurm_as_root scontrol show job "$jhpc" | grep -o 'JobState=.*')"
  grep -qE "^$jlong PENDING PartitionTimeLimit debug 1 af-alice$" "$rd/queue.txt" || die "job $jlong is not pending for PartitionTimeLimit"

  echo "== af-bob cannot cancel af-alice's job"
  local out rc=0
  out=$(as_account "$b_uid" "$b_gid" scancel "$jwait" 2>&1) || rc=$?
  echo "scancel $jwait as af-bob: exit $rc: $out"
  [ $rc -ne 0 ] && grep -q 'Access/permission denied' <<<"$out" || die "af-bob's scancel was not refused"
  [ "$(slurm_as_root squeue -h -j "$jwait" -o %T)" = PENDING ] || die "job $jwait is not pending any more"

  echo "== af-alice cancels her jobs"
  as_account "$a_uid" "$a_gid" scancel "$jfill" "$jwait" "$jhpc" "$jlong"
  deadline=$((SECONDS + 30))
  while [ $SECONDS -lt $deadline ] && [ -n "$(slurm_as_root squeue -h -o %i)" ]; do sleep 0.3; done
  slurm_as_root squeue -h -t all -o '%i %T %r %u' | sort -n
  [ -z "$(slurm_as_root squeue -h -o %i)" ] || die "jobs remain after scancel"

  echo "== a running job is killed by stop"
  local jleft
  jleft=$(as_account "$a_uid" "$a_gid" sbatch --parsable --chdir="$ad" -o /dev/null -J af-selftest-left --wrap 'sleep 300')
  deadline=$((SECONDS + 30))
  until [ "$(slurm_as_root squeue -h -j "$jleft" -o %T)" = RUNNING ] || [ $SECONDS -ge $deadline ]; do sleep 0.2; done
  [ "$(slurm_as_root squeue -h -j "$jleft" -o %T)" = RUNNING ] || die "job $jleft is not running"
  pgrep -u af-alice -f "$rd/slurm/spool/job$(printf '%05d' "$jleft")/slurm_script" >/dev/null || die "no process of job $jleft is seen running"
  cd /
  cmd_stop "$rd"
  run_paths "$rd"
  local left; left=$(run_pids)
  [ -z "$left" ] || die "processes of the run remain after stop: $left"
  if pgrep -f "SLURM_CONF=$rd/|$rd/slurm/munge" >/dev/null 2>&1; then die "a process naming the run dir remains"; fi
  echo "no process of the run is left"
  cmd_stop "$rd"   # safe to repeat
  trap - EXIT
  rm -rf --one-file-system "$rd"
  echo "== selftest passed in $(since "$t0") s"
}

case "${1:-}" in
  ensure) cmd_ensure ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  selftest) cmd_selftest ;;
  *) echo "usage: $0 ensure | start <run-dir> | stop <run-dir> | selftest" >&2; exit 2 ;;
esac
