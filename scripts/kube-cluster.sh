#!/usr/bin/env bash
# A real Kubernetes control plane for the gateway's Kubernetes tests: etcd, kube-apiserver,
# kube-controller-manager and kube-scheduler built from source (test-harness/kube, pinned), plus a
# TEST-ONLY node agent standing in for a kubelet that runs each pod's command as a host process
# with a loopback pod IP (see test-harness/kube/README.md for its contract). kubectl and helm come
# with it.
#
# The binaries are cached OUTSIDE the repository, so fresh clones on the same machine reuse them:
#   ${AF_KUBE_CACHE:-/var/cache/af-gateway}/kube-<key>/bin   (<key> = hash of the recipe files:
#   test-harness/kube/**/{go.mod,go.sum,*.go} and the build settings below)
#
# Usage:
#   scripts/kube-cluster.sh ensure            build the cached binaries if missing (< 1 s when cached)
#   scripts/kube-cluster.sh start <run-dir>   start a cluster; writes <run-dir>/kube.{json,env}, kubeconfig
#   scripts/kube-cluster.sh stop <run-dir>    stop exactly what start made, pods included (safe to repeat)
#   scripts/kube-cluster.sh selftest          ensure + start + pods, GC, Jobs, logs, scheduling, helm + stop
#   scripts/kube-cluster.sh bin-dir           print the cached bin dir (after ensure)
#
# <run-dir>/kube.json (and kube.env: the same keys, single-quoted, for `source`) holds:
#   KUBECONFIG      <run-dir>/kubeconfig: cluster-admin (a static token in group system:masters)
#   KUBE_SERVER     https://127.0.0.1:<free port>   KUBE_TOKEN  the admin bearer token
#   KUBE_CA_FILE    the apiserver's self-signed serving CA bundle
#   KUBE_NODE_NAME  the one node (af-test-node)     KUBE_POD_CIDR  127.N.0.0/16, this run's pod IPs
#   KUBE_BIN_DIR    etcd, kube-*, kubectl, helm, node-agent;  KUBECTL, HELM  their paths
#   KUBE_VERSION, KUBE_SERVICE_CIDR, KUBE_RUN_DIR, KUBE_RUN_ID, KUBE_LOG_DIR, KUBE_PODS_DIR
# Logs: <run-dir>/logs/{etcd,kube-apiserver,kube-controller-manager,kube-scheduler,node-agent}.log;
# pod directories (volumes, container logs) under <run-dir>/agent/pods/.
# Every process start makes (control plane and pods alike) carries AF_KUBE_RUN_ID=<id> in its
# environment; stop ends the recorded pids, then anything still carrying the marker.
set -euo pipefail

RECIPE_VERSION="kube-1"   # bump when the build recipe (not the pinned files) changes
KUBE_VERSION=v1.34.4      # must match test-harness/kube/go.mod (checked at build)
ETCD_VERSION=v3.6.4
HELM_VERSION=v3.22.0
HELM_K8S_MINOR=37         # the k8s.io modules helm $HELM_VERSION is built with (helm/go.mod)
NODE_NAME=af-test-node
SERVICE_CIDR=10.96.0.0/16

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo_root=$(cd "$script_dir/.." && pwd -P)
harness="$repo_root/test-harness/kube"
cache=${AF_KUBE_CACHE:-/var/cache/af-gateway}

HARNESS_TAG=kube-cluster
. "$script_dir/lib/harness.sh"   # log, die, now, since, alive, free_ports, lock_cache

recipe_files() { (cd "$harness" && find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) | LC_ALL=C sort); }
key=$( { printf '%s %s %s %s\n' "$RECIPE_VERSION" "$KUBE_VERSION" "$ETCD_VERSION" "$HELM_VERSION"
         recipe_files | (cd "$harness" && xargs sha256sum); } | sha256sum | cut -c1-12)
build_dir="$cache/kube-$key"
bin="$build_dir/bin"

# ---------------------------------------------------------------- ensure: the cached binaries
build() {   # $1 = output dir; run inside the lock, output to the build log
  local out=$1
  local gov
  gov=$(go env GOVERSION) || die "no go toolchain"
  case "$gov" in go1.2[6-9]*|go1.[3-9]*) ;; *) die "need Go >= 1.26 (helm $HELM_VERSION), have $gov" ;; esac
  grep -q "k8s.io/kubernetes $KUBE_VERSION" "$harness/go.mod" || die "test-harness/kube/go.mod does not pin k8s.io/kubernetes $KUBE_VERSION"
  local minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  local kube_ld="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    kube_ld+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  # go.sum is committed: a build that would change go.mod/go.sum fails instead (-mod=readonly)
  export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" GOTOOLCHAIN=local
  set -x
  go version
  (cd "$harness" && go build -trimpath -ldflags "$kube_ld" -o "$out/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
  (cd "$harness" && go build -trimpath -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION" \
      -o "$out/etcd" go.etcd.io/etcd/server/v3)
  (cd "$harness" && go build -trimpath -ldflags "-s -w" -o "$out/node-agent" ./node-agent)
  (cd "$harness/helm" && go build -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
      -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
      -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$HELM_K8S_MINOR \
      -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$HELM_K8S_MINOR" \
      -o "$out/helm" helm.sh/helm/v3/cmd/helm)
  set +x
  {
    "$out/kube-apiserver" --version
    "$out/etcd" --version | head -1
    "$out/kubectl" version --client | head -1
    "$out/helm" version --short
  } > "$out/versions.txt"
  cat "$out/versions.txt"
}

ensure() {
  [ -f "$build_dir/.complete" ] && return 0
  command -v go >/dev/null || die "ensure needs the go toolchain (>= 1.26) on PATH"
  mkdir -p "$cache"
  lock_cache "$build_dir.lock"
  if [ -f "$build_dir/.complete" ]; then unlock_cache; return 0; fi   # built by another run meanwhile
  local t0 tmp blog="$cache/kube-build-$key.log"
  t0=$(now)
  tmp="$cache/.kube-$key.tmp.$$"
  rm -rf "$tmp" "$build_dir"
  mkdir -p "$tmp/bin"
  log "building Kubernetes $KUBE_VERSION, etcd $ETCD_VERSION, helm $HELM_VERSION and the node agent into $build_dir (cold: ~7-8 min on 2 cores); log: $blog"
  if ! (build "$tmp/bin") > "$blog" 2>&1; then
    rm -rf "$tmp"; tail -40 "$blog" >&2; die "build failed (log: $blog)"
  fi
  touch "$tmp/.complete"
  mv "$tmp" "$build_dir"
  unlock_cache
  log "built in $(since "$t0")s: $(tr '\n' ';' < "$bin/versions.txt")"
}

# ---------------------------------------------------------------- start / stop
COMPONENTS="etcd kube-apiserver kube-controller-manager kube-scheduler node-agent"

has_marker() {   # pid run-id: the process carries AF_KUBE_RUN_ID=<run-id>
  grep -qzxF "AF_KUBE_RUN_ID=$2" "/proc/$1/environ" 2>/dev/null
}

our_pid() {   # run-dir component: the recorded pid if it is still that run's process
  local pid id
  pid=$(cat "$1/pids/$2.pid" 2>/dev/null || true)
  id=$(cat "$1/run-id" 2>/dev/null || true)
  [ -n "$pid" ] && [ -n "$id" ] && kill -0 "$pid" 2>/dev/null && has_marker "$pid" "$id" && printf '%s\n' "$pid"
}

starting_pid() {   # run-dir component: true while the recorded pid runs, also in the instant after
  # launch before `env` has exec'd it with the run's marker (our_pid would call it gone then)
  local pid state
  pid=$(cat "$1/pids/$2.pid" 2>/dev/null || true)
  [ -n "$pid" ] || return 1
  state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null || true)
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

marked_pids() {   # every process carrying the run's marker
  grep -lzxF "AF_KUBE_RUN_ID=$1" /proc/[0-9]*/environ 2>/dev/null | awk -F/ -v self=$$ '$3 != self { print $3 }'
  return 0
}

launch() {   # run-dir name args...: start a component in its own session, record its pid
  local run=$1 name=$2; shift 2
  env AF_KUBE_RUN_ID="$(cat "$run/run-id")" setsid "$@" >> "$run/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$run/pids/$name.pid"
}

fail_start() {   # run-dir component message
  log "$3; last lines of $1/logs/$2.log:"
  tail -25 "$1/logs/$2.log" >&2 2>/dev/null || true
  stop "$1" >/dev/null 2>&1 || true
  die "$3"
}

wait_for() {   # run-dir component seconds description command...: poll until command succeeds
  # returns 3 when the component died because its port was taken meanwhile (start retries)
  local run=$1 name=$2 secs=$3 what=$4; shift 4
  local deadline=$(( $(date +%s) + secs ))
  while :; do
    "$@" >/dev/null 2>&1 && return 0
    if ! starting_pid "$run" "$name"; then
      grep -q 'address already in use' "$run/logs/$name.log" 2>/dev/null && return 3
      fail_start "$run" "$name" "$name exited while waiting for $what"
    fi
    [ "$(date +%s)" -lt "$deadline" ] || fail_start "$run" "$name" "$what: not after ${secs}s"
    sleep 0.2
  done
}

write_kubeconfig() {   # run-dir server token ca-file
  local ca
  ca=$(base64 -w0 < "$4")
  cat > "$1/kubeconfig" <<EOF
# cluster-admin of the test cluster in $1 (scripts/kube-cluster.sh start)
apiVersion: v1
kind: Config
clusters:
- name: af-test
  cluster:
    server: $2
    certificate-authority-data: $ca
users:
- name: af-test-admin
  user:
    token: $3
contexts:
- name: af-test
  context:
    cluster: af-test
    user: af-test-admin
    namespace: default
current-context: af-test
EOF
  chmod 600 "$1/kubeconfig"
}

start_once() {   # run-dir; returns 3 when a port was taken (the caller retries with new ports)
  local run=$1 t0 id
  t0=$(now)
  rm -rf "$run/etcd" "$run/pki" "$run/agent" "$run/logs" "$run/pids" "$run/kube.json" "$run/kube.env" "$run/kubeconfig"
  # (errexit does not apply inside this function, called as `start_once || rc=$?`: check each step)
  mkdir -p "$run/etcd" "$run/pki/apiserver" "$run/pki/kcm" "$run/pki/scheduler" "$run/agent" "$run/logs" "$run/pids" \
    || die "cannot create the directories under $run"
  # logs and pids private too: a test may open RUN_DIR to the users its pods run as (chmod 711)
  chmod 700 "$run/etcd" "$run/pki" "$run/logs" "$run/pids"
  id="kube-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  echo "$id" > "$run/run-id"
  local ports etcd_port peer_port api_port kcm_port sched_port
  ports=$(free_ports 5)
  read -r etcd_port peer_port api_port kcm_port sched_port <<< "$ports"
  [ -n "$sched_port" ] || die "could not pick free ports (python3)"

  # credentials: the service-account signing key and a static admin token
  openssl genrsa -out "$run/pki/sa.key" 2048 2>/dev/null || die "openssl genrsa failed"
  local token
  token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  printf '%s,af-test-admin,af-test-admin,"system:masters"\n' "$token" > "$run/pki/tokens.csv"
  chmod 600 "$run/pki/tokens.csv" "$run/pki/sa.key"

  local etcd_url="http://127.0.0.1:$etcd_port"
  launch "$run" etcd "$bin/etcd" --name default --data-dir "$run/etcd" \
    --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "default=http://127.0.0.1:$peer_port" --initial-cluster-state new \
    --unsafe-no-fsync --log-level warn --quota-backend-bytes 2147483648
  wait_for "$run" etcd 30 "etcd health" curl -fsS --max-time 2 "$etcd_url/health" || return $?

  local server="https://127.0.0.1:$api_port"
  launch "$run" kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers "$etcd_url" --cert-dir "$run/pki/apiserver" \
    --secure-port "$api_port" --bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --authorization-mode Node,RBAC --token-auth-file "$run/pki/tokens.csv" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$run/pki/sa.key" --service-account-signing-key-file "$run/pki/sa.key" \
    --allow-privileged=true --kubelet-preferred-address-types InternalIP \
    --endpoint-reconciler-type none \
    --profiling=false --v=1
  wait_for "$run" kube-apiserver 120 "kube-apiserver /readyz" \
    curl -fsS -k --max-time 3 -H "Authorization: Bearer $token" "$server/readyz" || return $?
  local ca="$run/pki/apiserver/apiserver.crt"
  write_kubeconfig "$run" "$server" "$token" "$ca"
  local kc="$run/kubeconfig"

  # Controller-manager and scheduler use the admin kubeconfig. No --authentication-kubeconfig: it
  # would look for the extension-apiserver-authentication ConfigMap, which an apiserver without a
  # client CA never writes (an error every few seconds); only their /healthz is used.
  launch "$run" kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$kc" --controllers '*' --leader-elect=false \
    --service-account-private-key-file "$run/pki/sa.key" --root-ca-file "$ca" \
    --secure-port "$kcm_port" --bind-address 127.0.0.1 --cert-dir "$run/pki/kcm" \
    --profiling=false --v=1
  launch "$run" kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig "$kc" --leader-elect=false --secure-port "$sched_port" --bind-address 127.0.0.1 --cert-dir "$run/pki/scheduler" \
    --profiling=false --v=1
  wait_for "$run" kube-controller-manager 60 "kube-controller-manager /healthz" \
    curl -fsS -k --max-time 3 "https://127.0.0.1:$kcm_port/healthz" || return $?
  wait_for "$run" kube-scheduler 60 "kube-scheduler /healthz" \
    curl -fsS -k --max-time 3 "https://127.0.0.1:$sched_port/healthz" || return $?

  launch "$run" node-agent "$bin/node-agent" --kubeconfig "$kc" --node-name "$NODE_NAME" \
    --root-dir "$run/agent" --run-id "$id" --kubelet-version "$KUBE_VERSION+af-test-node-agent" --v=1
  wait_for "$run" node-agent 30 "the node agent's agent.json" test -s "$run/agent/agent.json" || return $?
  local k=("$bin/kubectl" --kubeconfig "$kc" --request-timeout 5s)
  # Ready, and without the not-ready taint the API server puts on new nodes (the node lifecycle
  # controller lifts it once it sees Ready): before that, nothing schedules.
  wait_for "$run" node-agent 60 "node $NODE_NAME Ready and untainted" \
    bash -c '[ "$("$@" get node '"$NODE_NAME"' -o jsonpath="{.status.conditions[?(@.type==\"Ready\")].status}|{.spec.taints}")" = "True|" ]' _ "${k[@]}" || return $?
  wait_for "$run" kube-controller-manager 60 "service account default/default" \
    "${k[@]}" -n default get serviceaccount default || return $?

  # kube.json for programs, kube.env (the same facts, single-quoted) for shells
  KUBECONFIG="$kc" KUBE_SERVER="$server" KUBE_TOKEN="$token" KUBE_CA_FILE="$ca" KUBE_NODE_NAME="$NODE_NAME" \
  KUBE_SERVICE_CIDR="$SERVICE_CIDR" KUBE_BIN_DIR="$bin" KUBE_VERSION="$KUBE_VERSION" KUBE_RUN_ID="$id" \
  python3 - "$run" $COMPONENTS <<'PY'
import json, os, shlex, sys
run, components = sys.argv[1], sys.argv[2:]
e = os.environ
agent = json.load(open(run + "/agent/agent.json"))
facts = {k: e[k] for k in ("KUBECONFIG", "KUBE_SERVER", "KUBE_TOKEN", "KUBE_CA_FILE", "KUBE_NODE_NAME")}
facts.update({
    "KUBE_POD_CIDR": agent["podCIDR"], "KUBE_SERVICE_CIDR": e["KUBE_SERVICE_CIDR"],
    "KUBE_BIN_DIR": e["KUBE_BIN_DIR"], "KUBECTL": e["KUBE_BIN_DIR"] + "/kubectl", "HELM": e["KUBE_BIN_DIR"] + "/helm",
    "KUBE_VERSION": e["KUBE_VERSION"], "KUBE_RUN_DIR": run, "KUBE_RUN_ID": e["KUBE_RUN_ID"],
    "KUBE_LOG_DIR": run + "/logs", "KUBE_PODS_DIR": run + "/agent/pods",
})
pids = {name: int(open(f"{run}/pids/{name}.pid").read()) for name in components}
with open(run + "/kube.json.tmp", "w") as f:
    json.dump({**facts, "pids": pids}, f, indent=2)
with open(run + "/kube.env.tmp", "w") as f:
    f.write(f"# Kubernetes test cluster of run {run} (scripts/kube-cluster.sh start)\n")
    for k, v in facts.items():
        f.write(f"{k}={shlex.quote(str(v))}\n")
PY
  mv "$run/kube.json.tmp" "$run/kube.json"
  mv "$run/kube.env.tmp" "$run/kube.env"
  chmod 600 "$run/kube.json" "$run/kube.env"   # they hold the admin token
  log "cluster ready in $(since "$t0")s: $server, node $NODE_NAME, pods in $(grep -o '127\.[0-9]*\.0\.0/16' "$run/kube.env"); $run/kube.env"
}

start() {
  local run=${1:-}
  [ -n "$run" ] || die "usage: $0 start <run-dir>"
  mkdir -p "$run"
  run=$(cd "$run" && pwd -P)
  if [ -f "$run/kube.json" ] && our_pid "$run" kube-apiserver >/dev/null && our_pid "$run" node-agent >/dev/null; then
    log "already running in $run: $(grep -o '"KUBE_SERVER": "[^"]*"' "$run/kube.json")"
    return 0
  fi
  stop "$run" >/dev/null 2>&1 || true
  ensure
  command -v openssl >/dev/null || die "start needs openssl"
  command -v python3 >/dev/null || die "start needs python3"
  local attempt rc
  for attempt in 1 2 3; do
    rc=0
    start_once "$run" || rc=$?
    [ "$rc" -eq 0 ] && return 0
    [ "$rc" -eq 3 ] || die "start failed"
    log "a port was taken meanwhile; retrying with new ports"
    stop "$run" >/dev/null 2>&1 || true
  done
  die "no free ports after 3 attempts"
}


stop_pid() {   # pid seconds: SIGTERM, wait, SIGKILL
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 $(( $2 * 10 ))); do
    alive "$pid" || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

stop() {
  local run=${1:-}
  [ -n "$run" ] || die "usage: $0 stop <run-dir>"
  [ -d "$run" ] || return 0
  run=$(cd "$run" && pwd -P)
  local id pid name stopped=""
  id=$(cat "$run/run-id" 2>/dev/null || true)
  [ -n "$id" ] || return 0
  # the agent first: it stops its pods (SIGTERM, then SIGKILL) before exiting
  for name in node-agent kube-scheduler kube-controller-manager kube-apiserver etcd; do
    if pid=$(our_pid "$run" "$name"); then
      if [ "$name" = node-agent ]; then stop_pid "$pid" 25; else stop_pid "$pid" 10; fi
      stopped+=" $name"
    fi
    rm -f "$run/pids/$name.pid"
  done
  # whatever still carries the marker: pod processes of a killed agent, their children
  local left
  left=$(marked_pids "$id" | tr '\n' ' ')
  if [ -n "$left" ]; then
    log "killing leftover processes of run $id: $left"
    # shellcheck disable=SC2086
    kill -KILL $left 2>/dev/null || true
  fi
  rm -f "$run/kube.json" "$run/kube.env"
  [ -z "$stopped" ] || log "stopped:$stopped"
}

# ---------------------------------------------------------------- selftest
selftest_tmp=
one_try_job() {   # name script: the manifest of a Job that runs script in sh once (no retry)
  cat <<EOF
apiVersion: batch/v1
kind: Job
metadata: {name: $1}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: main, image: none, command: [sh, -c, "$2"]}
EOF
}

selftest() {
  local t0 pass=0 failn=0 results=()
  selftest_tmp=$(mktemp -d /tmp/kube-selftest.XXXXXX)
  local tmp=$selftest_tmp run=$selftest_tmp/run
  cleanup() { [ -z "$selftest_tmp" ] || { stop "$selftest_tmp/run" || true; rm -rf "$selftest_tmp"; }; }
  trap cleanup EXIT
  ok() { pass=$((pass + 1)); results+=("PASS $1"); log "PASS $1"; }
  bad() { failn=$((failn + 1)); results+=("FAIL $1"); log "FAIL $1"; }

  t0=$(now); ensure; log "ensure: $(since "$t0")s"
  t0=$(now); start "$run"; log "start: $(since "$t0")s"
  # shellcheck disable=SC1091
  source "$run/kube.env"
  local k=("$KUBECTL" --kubeconfig "$KUBECONFIG")
  local ns=selftest
  "${k[@]}" create namespace $ns >/dev/null
  local i
  for i in $(seq 1 100); do "${k[@]}" -n $ns get sa default >/dev/null 2>&1 && break; sleep 0.2; done
  "${k[@]}" -n $ns create secret generic creds --from-literal=token=s3cret --from-literal=other=x >/dev/null

  # 1. a pod serving on its own IP via $(POD_IP) from fieldRef; secret volume with items + env
  "${k[@]}" -n $ns apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: web
    image: python:3.11-slim
    command: [sh, -c]
    args:
    - printf '%s' "$TOKEN" > /scratch/env.txt; cp /etc/creds/tok/token.txt /scratch/file.txt; exec python3 -m http.server 8000 --bind $(POD_IP) --directory /scratch
    env:
    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: TOKEN, valueFrom: {secretKeyRef: {name: creds, key: token}}}
    volumeMounts:
    - {name: creds, mountPath: /etc/creds, readOnly: true}
    - {name: scratch, mountPath: /scratch}
  volumes:
  - name: creds
    secret: {secretName: creds, items: [{key: token, path: tok/token.txt}]}
  - name: scratch
    emptyDir: {}
EOF
  local ip=""
  if "${k[@]}" -n $ns wait --for=condition=Ready pod/web --timeout=60s >/dev/null; then
    ip=$("${k[@]}" -n $ns get pod web -o jsonpath='{.status.podIP}')
    local a="" b=""
    for i in $(seq 1 50); do
      a=$(curl -fsS --max-time 2 "http://$ip:8000/env.txt" 2>/dev/null) && break
      sleep 0.2
    done
    b=$(curl -fsS --max-time 2 "http://$ip:8000/file.txt" 2>/dev/null || true)
    if [ "$a" = s3cret ] && [ "$b" = s3cret ]; then ok "pod Running on podIP $ip: http.server via \$(POD_IP), secretKeyRef env, secret items volume"
    else bad "pod web: curl $ip:8000 gave env.txt='$a' file.txt='$b'"; fi
  else
    bad "pod web not Ready"; "${k[@]}" -n $ns describe pod web >&2 || true
  fi

  # 2. garbage collection: a dependent pod owned by another pod goes with its owner
  "${k[@]}" -n $ns run owner --image=none --restart=Never --command -- sleep 300 >/dev/null
  local owner_uid
  owner_uid=$("${k[@]}" -n $ns get pod owner -o jsonpath='{.metadata.uid}')
  "${k[@]}" -n $ns apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: dependent
  ownerReferences:
  - {apiVersion: v1, kind: Pod, name: owner, uid: $owner_uid, blockOwnerDeletion: true}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  containers:
  - {name: main, image: none, command: [sleep, "300"]}
EOF
  if "${k[@]}" -n $ns wait --for=condition=Ready pod/dependent pod/owner --timeout=60s >/dev/null \
     && "${k[@]}" -n $ns delete pod owner --wait=true --timeout=60s >/dev/null \
     && "${k[@]}" -n $ns wait --for=delete pod/dependent --timeout=60s >/dev/null 2>&1; then
    ok "garbage collector deleted the dependent pod of a deleted owner"
  else
    bad "garbage collection of pod/dependent"; "${k[@]}" -n $ns get pods -o wide >&2 || true
  fi

  # 3. a Job that succeeds, and its logs
  { one_try_job hello 'echo hello; exit 0'; echo ---; one_try_job fails 'echo failing >&2; exit 3'; } | "${k[@]}" -n $ns apply -f - >/dev/null
  local out
  if "${k[@]}" -n $ns wait --for=condition=Complete job/hello --timeout=60s >/dev/null; then
    out=$("${k[@]}" -n $ns logs job/hello 2>&1 || true)
    if [ "$out" = hello ]; then ok "Job hello Complete; kubectl logs job/hello: '$out'"
    else bad "Job hello Complete but kubectl logs gave: $out"; fi
  else
    bad "Job hello not Complete"; "${k[@]}" -n $ns describe job hello >&2 || true
  fi
  if "${k[@]}" -n $ns wait --for=condition=Failed job/fails --timeout=60s >/dev/null; then
    out=$("${k[@]}" -n $ns get pods -l job-name=fails -o jsonpath='{.items[0].status.phase} exitCode={.items[0].status.containerStatuses[0].state.terminated.exitCode}')
    if [ "$out" = "Failed exitCode=3" ]; then ok "Job fails Failed; its pod: $out"
    else bad "Job fails Failed but its pod: $out"; fi
  else
    bad "Job fails not Failed"; "${k[@]}" -n $ns describe job fails >&2 || true
  fi

  # 4. the scheduler leaves a pod it cannot place Pending, Unschedulable
  "${k[@]}" -n $ns apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Pod
metadata: {name: huge}
spec:
  containers:
  - name: main
    image: none
    command: [sleep, "300"]
    resources: {requests: {cpu: "100"}}
EOF
  if "${k[@]}" -n $ns wait --for=jsonpath='{.status.conditions[?(@.type=="PodScheduled")].reason}'=Unschedulable pod/huge --timeout=60s >/dev/null; then
    out=$("${k[@]}" -n $ns get pod huge -o jsonpath='{.status.phase} PodScheduled={.status.conditions[?(@.type=="PodScheduled")].status}/{.status.conditions[?(@.type=="PodScheduled")].reason}')
    if [ "$out" = "Pending PodScheduled=False/Unschedulable" ]; then ok "pod requesting 100 cpu: $out"; else bad "pod huge: $out"; fi
  else
    bad "pod huge not Unschedulable"; "${k[@]}" -n $ns describe pod huge >&2 || true
  fi

  # 5. deleting a running pod stops its process (SIGTERM) and removes the pod
  if [ -n "$ip" ]; then
    t0=$(now)
    if "${k[@]}" -n $ns delete pod web --wait=true --timeout=30s >/dev/null \
       && ! curl -fsS --max-time 1 "http://$ip:8000/env.txt" >/dev/null 2>&1; then
      ok "pod web deleted in $(since "$t0")s, its server gone"
    else
      bad "pod web deletion"
    fi
  fi

  # 6. helm installs a chart
  mkdir -p "$tmp/chart/templates"
  printf 'apiVersion: v2\nname: selftest\nversion: 0.1.0\n' > "$tmp/chart/Chart.yaml"
  printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\ndata:\n  greeting: {{ .Values.greeting | quote }}\n' > "$tmp/chart/templates/cm.yaml"
  printf 'greeting: hi\n' > "$tmp/chart/values.yaml"
  if HOME=$tmp "$HELM" --kubeconfig "$KUBECONFIG" -n $ns install demo "$tmp/chart" --wait --timeout 60s >/dev/null \
     && [ "$("${k[@]}" -n $ns get configmap demo-cm -o jsonpath='{.data.greeting}')" = hi ]; then
    ok "helm $("$HELM" version --short) installed a chart"
  else
    bad "helm install"
  fi

  # 7. stop leaves nothing behind
  local rid=$KUBE_RUN_ID
  stop "$run"
  local left
  left=$(marked_pids "$rid" | tr '\n' ' ')
  if [ -z "$left" ]; then ok "stop: no process of run $rid left"; else bad "stop left processes: $left"; ps -o pid,args -p "${left// /,}" >&2 || true; fi

  echo "== kube-cluster selftest ($(head -1 "$bin/versions.txt"), $(sed -n 2p "$bin/versions.txt"), $(sed -n 4p "$bin/versions.txt"))"
  printf '%s\n' "${results[@]}"
  echo "selftest: $pass passed, $failn failed"
  [ "$failn" -eq 0 ]
}

case "${1:-}" in
  ensure) t0=$(now); ensure; log "ensure: $(since "$t0")s ($bin)" ;;
  bin-dir) [ -f "$build_dir/.complete" ] || die "not built: run $0 ensure"; printf '%s\n' "$bin" ;;
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  selftest) selftest ;;
  *) die "usage: $0 ensure | start <run-dir> | stop <run-dir> | selftest | bin-dir" ;;
esac
