"""The Kubernetes backend against a real Kubernetes control plane (kube-apiserver, controller-manager
with its garbage collector and Job controller, kube-scheduler and etcd, built from source by
scripts/kube-cluster.sh) with the harness's TEST-ONLY node agent, which runs each bound pod's
command as a host process with a loopback pod IP, so Dask schedulers and workers run for real.

The gateway acts as a ServiceAccount that has only the Helm chart's RBAC (rendered with helm from
deploy/helm), so every test also proves those permissions suffice. The real
dask_gateway client drives it.

Tenant isolation: users are real POSIX accounts (scripts/test-accounts.sh: af-alice, af-bob,
af-mallory; the gateway maps user U to af-U). Every pod runs non-root with its owner's uid/gid, and
the node agent runs each container's process as that uid/gid (supplementary groups cleared, uid 0
refused under runAsNonRoot) and materialises Secret files root:<fsGroup> 0440, as a kubelet does. So
mallory's Dask tasks really run as af-mallory and really fail to read the gateway's files and alice's
keys. The gateway itself runs as root here (no user code runs as the gateway on Kubernetes), its
data directory root-owned and 0700. NetworkPolicies are checked as objects on the API server only:
nothing in this harness enforces them (the node agent has no network isolation; pods share loopback).

What every backend does alike (an unschedulable worker waiting with its reason, kill -9 adoption of
the same pods, orphan removal) is asserted once for all in test_backend_contract.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from af_e2e_support import (REPO, Replica, ServiceStandIn, assert_heartbeats_cannot_leave, client_credentials_token,
                             free_port, new_database, read_api_token, running_postgres, start_provider, stop)
from conftest import IS_PEER, wait_until
from kube_support import NS, Kube, KubeGateway as Gw, gateway_config, posix_test_accounts, running_kube, sa_kubeconfig_for

pytestmark = [
    pytest.mark.skipif(IS_PEER, reason="peer mode: this is the gateway's own Kubernetes backend"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the node agent switches pod processes to the test accounts: needs root"),
    pytest.mark.timeout(240),
]

EXAMPLES = REPO / "examples" / "workflows"


ACCOUNTS = None  # set by the module's first fixture


@pytest.fixture(scope="module")
def accounts():
    global ACCOUNTS
    ACCOUNTS = posix_test_accounts()
    return ACCOUNTS


def account(user: str) -> dict:
    return ACCOUNTS["users"][user]


@pytest.fixture(scope="module")
def kube(accounts):
    with running_kube() as k:
        yield k


@pytest.fixture(scope="module")
def sa_kubeconfig(kube):
    path = sa_kubeconfig_for(kube, NS, False, "sa-kubeconfig")
    # what it may not do: the gateway cannot read other namespaces' secrets
    assert kube.kubectl("auth", "can-i", "list", "secrets", "-n", "default", kubeconfig=str(path), check=False).strip() == "no"
    assert kube.kubectl("auth", "can-i", "create", "pods", "-n", NS, kubeconfig=str(path), check=False).strip() == "yes"
    return str(path)


@pytest.fixture(scope="module")
def gw(kube, sa_kubeconfig):
    g = Gw(kube, sa_kubeconfig, "main")
    yield g
    stop(g.proc)


def _cluster_objects(kube: Kube, cluster: str) -> dict[str, list[dict]]:
    sel = f"af-gateway.io/cluster={cluster}"
    return {kind: kube.get(kind, sel) for kind in ("pods", "services", "secrets", "networkpolicies")}


def _assert_runs_as(pod_spec: dict, user: str, fs_group: bool = True):
    """The pod spec's security: the user's uid/gid, non-root, hardened container, no token."""
    a = account(user)
    sc = pod_spec["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == a["uid"] and sc["runAsGroup"] == a["gid"], sc
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc.get("fsGroup") == (a["gid"] if fs_group else None), sc
    assert pod_spec["automountServiceAccountToken"] is False
    for c in pod_spec["containers"]:
        csc = c["securityContext"]
        assert csc["allowPrivilegeEscalation"] is False and csc["capabilities"] == {"drop": ["ALL"]}, csc
        assert csc["runAsUser"] == a["uid"] and csc["seccompProfile"] == {"type": "RuntimeDefault"}, csc


def _pod_dir(kube: Kube, pod: dict) -> Path:
    """Where the node agent materialised a pod (RUN_DIR/agent/pods/<ns>_<name>_<uid[:8]>)."""
    m = pod["metadata"]
    return Path(kube.env["KUBE_PODS_DIR"]) / f"{m['namespace']}_{m['name']}_{m['uid'][:8]}"


def _gone(kube: Kube, cluster: str) -> bool:
    return not any(_cluster_objects(kube, cluster).values())


def test_a_cluster_is_a_secret_a_scheduler_pod_and_a_service_and_its_workers_compute(kube, gw):
    gateway = gw.gateway()
    cluster = gateway.new_cluster()
    try:
        objs = _cluster_objects(kube, cluster.name)
        (scheduler,) = objs["pods"]
        uid = scheduler["metadata"]["uid"]
        labels = scheduler["metadata"]["labels"]
        assert labels["af-gateway.io/component"] == "scheduler" and labels["af-gateway.io/owner"] == "alice"
        assert labels["af-gateway.io/instance"].startswith("af-gateway-")
        assert scheduler["spec"]["containers"][0]["args"][:2] == ["--protocol", "tls"]
        assert scheduler["status"]["phase"] == "Running" and scheduler["status"]["podIP"].startswith("127.")
        _assert_runs_as(scheduler["spec"], "alice")
        (svc,) = objs["services"]
        (secret,) = objs["secrets"]
        (policy,) = objs["networkpolicies"]
        for owned in (svc, secret, policy):
            assert owned["metadata"]["ownerReferences"] == [
                {"apiVersion": "v1", "kind": "Pod", "name": scheduler["metadata"]["name"], "uid": uid, "blockOwnerDeletion": True, "controller": False}]
        assert sorted(base64.b64decode(secret["data"]["dask.crt"]).decode().split("\n")[0:1]) == ["-----BEGIN CERTIFICATE-----"]
        assert [p["port"] for p in svc["spec"]["ports"]] == [8786, 8787, 8788]
        # The cluster's NetworkPolicy, as stored by the real API server (nothing here enforces it):
        # its pods take connections from each other, and on the scheduler's ports from the
        # gateway's pods (the chart's labels, in the gateway's namespace), from nobody else.
        own = {"af-gateway.io/instance": labels["af-gateway.io/instance"], "af-gateway.io/cluster": cluster.name}
        assert policy["spec"]["podSelector"] == {"matchLabels": own}
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        assert policy["spec"]["ingress"] == [
            {"from": [{"podSelector": {"matchLabels": own}}]},
            {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NS}},
                       "podSelector": {"matchLabels": {"app.kubernetes.io/name": "af-gateway", "app.kubernetes.io/component": "gateway"}}}],
             "ports": [{"protocol": "TCP", "port": p} for p in (8786, 8787, 8788)]}]

        cluster.scale(3)
        client = cluster.get_client()
        client.wait_for_workers(3, timeout=90)
        workers = kube.get("pods", f"af-gateway.io/cluster={cluster.name},af-gateway.io/component=worker")
        assert len(workers) == 3
        for w in workers:
            assert w["metadata"]["ownerReferences"][0]["uid"] == uid
            assert w["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "1", "memory": "512Mi"}
            _assert_runs_as(w["spec"], "alice")
        # ...and the processes really run as af-alice, with her group only (fsGroup is hers)
        alice = account("alice")
        assert set(map(tuple, client.run(lambda: (os.getuid(), os.getgid(), tuple(os.getgroups()))).values())) == {(alice["uid"], alice["gid"], (alice["gid"],))}
        assert client.run_on_scheduler(os.getuid) == alice["uid"]
        # the worker names the scheduler sees are the pods' worker labels
        assert sorted(w["metadata"]["labels"]["af-gateway.io/worker"] for w in workers) == sorted(
            v["name"] for v in client.scheduler_info()["workers"].values())
        assert client.submit(sum, range(10)).result() == 45
        assert sum(client.gather(client.map(lambda x: x * x, range(100)))) == 328350

        cluster.scale(1)
        wait_until(lambda: len([p for p in kube.get("pods", f"af-gateway.io/cluster={cluster.name},af-gateway.io/component=worker")
                                if not p["metadata"].get("deletionTimestamp")]) == 1, 60, "scale down to 1 worker pod")
        assert client.submit(sum, range(4)).result() == 6
        client.close()
    finally:
        cluster.shutdown()
    # the gateway deletes the scheduler pod; the garbage collector takes the workers, Service and Secret
    wait_until(lambda: _gone(kube, cluster.name), 60, lambda: f"everything of {cluster.name} garbage-collected; left: "
               f"{ {k: [o['metadata']['name'] for o in v] for k, v in _cluster_objects(kube, cluster.name).items()} }")


def test_a_hostile_users_tasks_cannot_read_the_gateways_files_nor_another_users_keys(kube, gw):
    """mallory's worker tasks and scheduler code run as af-mallory: the gateway's key, state and
    environment and the key files of alice's pods (materialised by the node agent) are out of reach,
    and alice's cluster keeps working."""
    victim = gw.gateway("alice").new_cluster()
    hostile = None
    try:
        victim.scale(1)
        vclient = victim.get_client()
        vclient.wait_for_workers(1, timeout=90)
        hostile = gw.gateway("mallory").new_cluster()
        hostile.scale(1)
        hclient = hostile.get_client()
        hclient.wait_for_workers(1, timeout=90)

        data = gw.dir / "data"
        # root's, not listable by others (a multi-user gateway makes it 0711 for the local backend's
        # users); the files in it are root's alone
        assert data.stat().st_uid == 0 and stat.S_IMODE(data.stat().st_mode) & 0o006 == 0
        targets = {"encrypt.key": data / "encrypt.key", "state.sqlite": data / "state.sqlite",
                   "the gateway's environment": Path(f"/proc/{gw.proc.pid}/environ")}
        alice = account("alice")
        for pod in kube.get("pods", f"af-gateway.io/cluster={victim.name}"):
            component = pod["metadata"]["labels"]["af-gateway.io/component"]
            for f in ("dask.pem", "api-token"):
                path = _pod_dir(kube, pod) / "volumes" / "credentials" / f
                # as a kubelet leaves them: defaultMode 0400 plus fsGroup's read bit, group alice's
                st = path.stat()
                assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, alice["gid"], 0o440), (path, st)
                targets[f"alice's {component} {f}"] = path
        assert len(targets) == 7 and all(p.exists() for p in targets.values())
        paths = {k: str(v) for k, v in targets.items()}

        def attempt(paths):
            out = {}
            for name, path in paths.items():
                try:
                    with open(path, "rb") as f:
                        f.read(16)
                    out[name] = "read it"
                except Exception as e:  # noqa: BLE001 - the kind of failure is the result
                    out[name] = type(e).__name__
            return os.getuid(), out

        tries = list(hclient.run(attempt, paths).values()) + [hclient.run_on_scheduler(attempt, paths)]
        assert len(tries) == 2
        for uid, out in tries:
            assert uid == account("mallory")["uid"]
            assert out == {k: "PermissionError" for k in paths}, out
        # alice's own pods read their keys (the same files), and her cluster computes on
        assert vclient.run_on_scheduler(lambda: len(open(paths["alice's scheduler dask.pem"]).read()) > 100)
        assert vclient.submit(sum, range(10)).result() == 45
        hclient.close()
        vclient.close()
    finally:
        victim.shutdown()
        if hostile is not None:
            hostile.shutdown()
    wait_until(lambda: _gone(kube, victim.name) and _gone(kube, hostile.name), 60, "both clusters' objects removed")


def test_a_forged_heartbeat_cannot_point_the_gateway_away_from_the_pod(kube, gw):
    """With scheduler_address: pod the gateway reaches the scheduler at its pod's IP as the API server
    reports it; mallory's heartbeats (her scheduler has the cluster's API token) naming any other
    host are refused, and her cluster goes on working."""
    mallory = gw.gateway("mallory").new_cluster()
    try:
        client = mallory.get_client()
        token = client.run_on_scheduler(read_api_token)
        assert_heartbeats_cannot_leave(gw.url, mallory.name, token)
        mallory.scale(1)
        client.wait_for_workers(1, timeout=120)
        assert client.submit(sum, [1, 2]).result(timeout=60) == 3
        page = requests.get(f"{gw.url}/clusters/{mallory.name}/status", auth=("mallory", ""), timeout=60)
        assert page.status_code == 200 and "bokeh" in page.text.lower(), page.text[:300]
        client.close()
    finally:
        mallory.shutdown()
    wait_until(lambda: _gone(kube, mallory.name), 60, "mallory's pods gone")


def test_a_user_without_an_account_gets_nothing(kube, gw):
    """trudy has no af-trudy account: her cluster fails and never gets a Kubernetes object."""
    import pwd
    with pytest.raises(KeyError):
        pwd.getpwnam("af-trudy")
    r = requests.post(f"{gw.url}/api/v1/clusters/", json={"cluster_options": {}}, auth=("trudy", ""), timeout=30)
    name = None
    try:
        if r.status_code != 403:  # refused at the door, or when the backend resolves her account
            assert r.status_code == 201, r.text
            name = r.json()["name"]
            info = wait_until(lambda: (lambda c: c if c.get("status") in ("FAILED", "STOPPED") else None)(gw.af_cluster(name, "trudy")), 30,
                              lambda: f"trudy's cluster to fail: {gw.af_cluster(name, 'trudy')}")
            assert info["status"] == "FAILED" and "no usable account" in info["message"], info
        for kind in ("pods", "secrets", "services", "networkpolicies"):
            assert kube.get(kind, "af-gateway.io/owner=trudy") == [], kind
    finally:
        if name:
            requests.delete(f"{gw.url}/api/v1/clusters/{name}", auth=("trudy", ""), timeout=30)


def test_the_node_agent_runs_a_pod_as_its_user_and_refuses_root_under_run_as_non_root(kube):
    """The harness's own contract: what makes the tests above mean something."""
    bob = account("bob")
    marker = kube.run_dir / "ran-as-root"

    def pod(name, security, command):
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"af-test": "identity"}},
                "spec": {"restartPolicy": "Never", "securityContext": security,
                         "containers": [{"name": "c", "image": "none", "command": command}]}}
    docs = [
        pod("as-bob", {"runAsNonRoot": True, "runAsUser": bob["uid"], "runAsGroup": bob["gid"], "supplementalGroups": [4242]},
            ["sh", "-c", "echo ids $(id -u) $(id -g) $(id -G)"]),
        pod("explicit-root", {"runAsNonRoot": True, "runAsUser": 0}, ["touch", str(marker)]),
        pod("implicit-root", {"runAsNonRoot": True}, ["touch", str(marker)]),
    ]
    try:
        kube.kubectl("apply", "-n", NS, "-f", "-", input=yaml.safe_dump_all(docs))

        def status(name):
            return json.loads(kube.kubectl("get", "pod", name, "-n", NS, "-o", "json")).get("status", {})
        wait_until(lambda: status("as-bob").get("phase") == "Succeeded", 30, lambda: f"as-bob to finish: {status('as-bob')}")
        # its uid and gid, and no group but those the pod names (not the agent's, root's)
        assert kube.kubectl("logs", "as-bob", "-n", NS).split() == ["ids", str(bob["uid"]), str(bob["gid"]), str(bob["gid"]), "4242"]
        for name, words in (("explicit-root", "breaks non-root policy"), ("implicit-root", "will run as root")):
            waiting = wait_until(lambda: (status(name).get("containerStatuses") or [{}])[0].get("state", {}).get("waiting", {}).get("reason") == "CreateContainerConfigError"
                                 and status(name)["containerStatuses"][0]["state"]["waiting"], 30, lambda: f"{name} refused: {status(name)}")
            assert words in waiting["message"] and status(name)["phase"] == "Pending", waiting
        time.sleep(2)
        assert not marker.exists()
    finally:
        kube.kubectl("delete", "pods", "-n", NS, "-l", "af-test=identity", "--wait=true", "--timeout=60s", check=False)


def test_two_replicas_on_postgresql_the_standby_adopts_the_pods_when_the_serving_one_dies(kube, sa_kubeconfig, tmp_path):
    """As the chart runs them with postgresql.enabled: two replicas with a data directory each
    (emptyDirs), one PostgreSQL database, one encrypt key, heartbeats and clients through the
    Service (here ServiceStandIn: connections go to the replica whose /api/health is 200)."""
    with running_postgres() as server:
        db = new_database(server, "k8s_replicas")
        ports = [free_port(), free_port()]
        front = ServiceStandIn(ports)
        key = base64.b64encode(os.urandom(32)).decode()
        replicas = []
        for i, port in enumerate(ports):
            c = gateway_config(sa_kubeconfig, port, tmp_path / f"data-{i}", api_url=f"{front.url}/api")
            c.update({"encrypt_key": key, "state_store": {"postgresql_url": db["url"], "standby_poll_period": 0.5},
                      "client": {"address": front.url, "proxy_address": f"gateway://127.0.0.1:{front.port}"}})
            c["cluster"]["stop_on_shutdown"] = False
            replicas.append(Replica(tmp_path / f"replica-{i}", c))
        a, b = replicas
        gateway = cluster = None
        try:
            a.start_serving()
            b.start_standby()
            assert b.health()[0] == 503
            from dask_gateway import Gateway
            from dask_gateway.auth import BasicAuth
            gateway = Gateway(front.url, proxy_address=f"gateway://127.0.0.1:{front.port}", auth=BasicAuth("alice"))
            cluster = gateway.new_cluster(shutdown_on_close=False)
            cluster.scale(2)
            client = cluster.get_client()
            client.wait_for_workers(2, timeout=90)
            assert client.submit(sum, range(10)).result() == 45
            client.close()
            pods = kube.get("pods", f"af-gateway.io/cluster={cluster.name}")
            before = sorted(p["metadata"]["uid"] for p in pods)
            # the instance label comes from the shared database, not a replica's own directory
            assert {p["metadata"]["labels"]["af-gateway.io/instance"] for p in pods} == {
                "af-gateway-" + hashlib.sha256(("postgresql://127.0.0.1:%d/k8s_replicas" % server["port"]).encode()).hexdigest()[:12]}

            a.kill9()
            t0 = time.monotonic()
            wait_until(lambda: b.health()[0] == 200, 30, lambda: f"the standby to serve; log: {b.log.read_text()[-3000:]}")
            print(f"standby serving {time.monotonic() - t0:.2f} s after SIGKILL of the serving replica")
            assert sorted(p["metadata"]["uid"] for p in kube.get("pods", f"af-gateway.io/cluster={cluster.name}")) == before

            again = Gateway(front.url, proxy_address=f"gateway://127.0.0.1:{front.port}", auth=BasicAuth("alice")).connect(cluster.name)
            again.scale(1)
            wait_until(lambda: len([p for p in kube.get("pods", f"af-gateway.io/cluster={cluster.name},af-gateway.io/component=worker")
                                    if not p["metadata"].get("deletionTimestamp")]) == 1, 60, "scale down to 1 worker pod by the new replica")
            client = again.get_client()
            assert client.submit(sum, range(4)).result() == 6
            client.close()
            again.shutdown()
            wait_until(lambda: _gone(kube, cluster.name), 60, "the cluster's objects garbage-collected after shutdown")
            cluster = None
        finally:
            if cluster is not None:
                kube.kubectl("delete", "pods", "-n", NS, "-l", f"af-gateway.io/cluster={cluster.name}", "--wait=false", check=False)
            for r in replicas:
                if r.proc:
                    stop(r.proc)
            front.close()
            if gateway is not None:
                gateway.close()


def test_workflow_steps_run_as_jobs_and_are_cleaned_up(kube, gw):
    files = {f: (EXAMPLES / "map-reduce" / f).read_text() for f in ("workflow.yml", "steps.yml")}
    # A watch sees every step Job, also one that came and went between two polls (steps take ~1 s).
    # (into a file: a pipe nobody reads would stop kubectl once 64 KiB of Jobs are printed)
    watch_out = kube.run_dir / "step-jobs.json"
    with open(watch_out, "w") as out:
        watch = subprocess.Popen([kube.kubectl_bin, "--kubeconfig", kube.env["KUBECONFIG"], "get", "jobs", "-n", NS,
                                  "-l", "af-gateway.io/workflow-run", "--watch", "-o", "json"],
                                 stdout=out, stderr=subprocess.DEVNULL, text=True)
    try:
        # steps next to the gateway are not offered here (workflows.backends defaults to the gateway's backend)
        r = requests.post(f"{gw.url}/api/af/workflows", auth=("alice", ""), timeout=30,
                          json={"entry": "workflow.yml", "files": files, "parameters": {"nfiles": 3}, "backend": "local"})
        assert r.status_code == 422 and "runs them on kubernetes" in r.json()["error"], r.text
        r = requests.post(f"{gw.url}/api/af/workflows", auth=("alice", ""), timeout=30,
                          json={"entry": "workflow.yml", "files": files, "parameters": {"nfiles": 3}})
        assert r.status_code == 201, r.text
        run = r.json()
        assert run["backend"] == "kubernetes"

        def finished():
            d = requests.get(f"{gw.url}/api/af/workflows/{run['id']}", auth=("alice", ""), timeout=10).json()
            return d if d["run"]["status"] in ("SUCCESS", "FAILED", "CANCELLED") else None
        dag = wait_until(finished, 180, "the map-reduce run on Kubernetes")
    finally:
        watch.terminate()
        watch.wait(timeout=10)
        watched = watch_out.read_text()
    decoder, jobs, at = json.JSONDecoder(), {}, 0
    while (at := watched.find("{", at)) >= 0:
        try:
            job, at = decoder.raw_decode(watched, at)
        except json.JSONDecodeError:
            break  # the last document, cut off when the watch was stopped
        jobs[job["metadata"]["name"]] = job
    seen_jobs = {name for name in jobs if name.startswith(f"af-step-{run['id']}-")}
    workspace_root = gw.dir.parent / f"{gw.dir.name}-workspaces"
    for name in seen_jobs:
        spec = jobs[name]["spec"]["template"]["spec"]
        # each step as alice (no fsGroup: the workspace volume is shared by every user's runs)...
        _assert_runs_as(spec, "alice", fs_group=False)
        # ...seeing only its own run's directory of the workspace volume
        assert spec["containers"][0]["volumeMounts"] == [{"name": "workspace", "mountPath": str(workspace_root / run["id"]), "subPath": run["id"]}]
        assert spec["volumes"] == [{"name": "workspace", "hostPath": {"path": str(workspace_root), "type": ""}}]
    assert dag["run"]["status"] == "SUCCESS", [n.get("message") for n in dag["nodes"]]
    total = next(n for n in dag["nodes"] if n["id"] == "reduce")["outputs"]["total"]
    assert Path(total).read_text().strip() == "6"  # 1+2+3 words
    assert Path(total).stat().st_uid == account("alice")["uid"]  # written by the step, as af-alice
    for n in dag["nodes"][1:]:
        assert n["job"].startswith(f"Kubernetes Job {NS}/af-step-{run['id']}-")
    assert {n["job"].rsplit("/", 1)[1] for n in dag["nodes"][1:]} <= seen_jobs, (seen_jobs, [n.get("job") for n in dag["nodes"]])
    # Jobs of finished steps are deleted; their logs stay in the workspace
    wait_until(lambda: not kube.get("jobs", f"af-gateway.io/workflow-run={run['id']}"), 60, "the step Jobs removed")
    log = requests.get(f"{gw.url}/api/af/workflows/{run['id']}/nodes/map:2/log", auth=("alice", ""), timeout=10).text
    assert f"step map:2 of workflow run {run['id']}" in log


def test_clusters_in_a_namespace_per_user_with_the_charts_cluster_role(kube):
    kube.kubectl("create", "namespace", "af-system")
    kubeconfig = sa_kubeconfig_for(kube, "af-system", True, "sa-per-user-kubeconfig")
    g = Gw(kube, kubeconfig, "per-user", namespace_per_user=True, user_namespace_prefix="af-u-", instance="per-user-test")
    try:
        cluster = g.gateway("bob").new_cluster()
        try:
            pods = json.loads(kube.kubectl("get", "pods", "-n", "af-u-bob", "-l", f"af-gateway.io/cluster={cluster.name}", "-o", "json"))["items"]
            assert [p["metadata"]["labels"]["af-gateway.io/component"] for p in pods] == ["scheduler"]
            assert pods[0]["metadata"]["labels"]["af-gateway.io/instance"] == "per-user-test"
            _assert_runs_as(pods[0]["spec"], "bob")
            # the policy in bob's namespace admits the gateway's pods from the gateway's namespace (in a
            # pod: its service account's; out here: its configured one)
            (policy,) = json.loads(kube.kubectl("get", "networkpolicies", "-n", "af-u-bob", "-l", f"af-gateway.io/cluster={cluster.name}", "-o", "json"))["items"]
            assert policy["spec"]["ingress"][1]["from"][0]["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": NS}}
            cluster.scale(1)
            client = cluster.get_client()
            client.wait_for_workers(1, timeout=90)
            assert client.submit(sum, range(10)).result() == 45
            client.close()
        finally:
            cluster.shutdown()
        wait_until(lambda: not json.loads(kube.kubectl("get", "pods,services,secrets,networkpolicies", "-n", "af-u-bob", "-l", "app.kubernetes.io/managed-by=af-gateway", "-o", "json"))["items"],
                   60, "bob's objects removed")
        # the other gateway's pods (instance label of the main gateway) were never its business
        assert json.loads(kube.kubectl("get", "namespace", "af-u-bob", "-o", "json"))["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "af-gateway"
    finally:
        stop(g.proc)


def test_the_owners_refreshed_token_reaches_the_clusters_secret(kube, sa_kubeconfig, tmp_path):
    op_proc, provider = start_provider(tmp_path)
    try:
        g = Gw(kube, sa_kubeconfig, "oidc", auth={"type": "oidc", "oidc": {"issuer": provider["issuer"], "audience": [provider["audience"]]}},
               instance="oidc-test")
        try:
            first = client_credentials_token(provider, "bob")  # the client is the user: bob -> af-bob
            r = requests.post(f"{g.url}/api/v1/clusters/", json={"cluster_options": {}}, headers={"Authorization": "Bearer " + first}, timeout=30)
            assert r.status_code == 201, r.text
            name = r.json()["name"]
            def secret_token():  # "" until the Secret exists (the cluster is created in the background)
                secrets = kube.get("secrets", f"af-gateway.io/cluster={name}")
                return base64.b64decode(secrets[0]["data"].get("bearer-token", "")).decode().strip() if secrets else ""
            wait_until(lambda: secret_token() == first, 30, "the owner's token in the cluster's Secret")
            time.sleep(1.1)  # a token issued a second later is a different token
            second = client_credentials_token(provider, "bob")
            assert second != first
            # the gateway sees the newer token of the same user and hands it on
            assert requests.get(f"{g.url}/api/af/clusters", headers={"Authorization": "Bearer " + second}, timeout=10).status_code == 200
            wait_until(lambda: secret_token() == second, 30, lambda: f"the newer token in the Secret (has the {'first' if secret_token() == first else 'an unknown'} one)")
            requests.delete(f"{g.url}/api/v1/clusters/{name}", headers={"Authorization": "Bearer " + second}, timeout=30)
            wait_until(lambda: _gone(kube, name), 60, "the cluster's objects removed")
        finally:
            stop(g.proc)
    finally:
        stop(op_proc)


def test_a_gpu_groups_worker_pod_asks_for_the_gpu_and_image_and_waits_for_a_node_that_has_one(kube, sa_kubeconfig):
    """A worker group with gpus: 1 and an image of its own, on a cluster whose one node has no GPU: the worker pod carries
    the group's image and a limit nvidia.com/gpu: 1, the real kube-scheduler leaves it Pending for want of the GPU, and
    the groups API shows it pending with the scheduler's reason. (No GPU and no image pull here: the pod never binds.)"""
    image = "registry.example.org/af/dask-gpu:2026.3"
    g = Gw(kube, sa_kubeconfig, "gpus")
    try:
        # (the module's gateway config, and the group: started again with it)
        stop(g.proc)
        g.config["worker_groups"] = [{"name": "gpu", "description": "GPU nodes", "gpus": 1, "image": image, "worker_cores": 1, "worker_memory": 0.5}]
        g.start()
        cluster = g.gateway().new_cluster()
    except BaseException:
        stop(g.proc)  # a gateway whose restart or first cluster failed is not left running
        raise
    groups = f"{g.url}/api/af/clusters/{cluster.name}/groups"
    try:
        r = requests.put(f"{groups}/gpu/scale", json={"count": 1}, auth=("alice", ""), timeout=30)
        assert r.status_code == 200, r.text
        assert {k: r.json()[k] for k in ("gpus", "image", "resources")} == {"gpus": 1, "image": image, "resources": {"GPU": 1}}
        sel = f"af-gateway.io/cluster={cluster.name},af-gateway.io/component=worker"
        (pod,) = wait_until(lambda: kube.get("pods", sel) or None, 30, "the gpu worker's pod")
        c = pod["spec"]["containers"][0]
        assert c["image"] == image and c["resources"]["limits"] == {"cpu": "1", "memory": "512Mi", "nvidia.com/gpu": "1"}, c
        gpu = wait_until(lambda: (lambda gs: gs["gpu"] if gs["gpu"]["pending"] == 1 and "nvidia.com/gpu" in " ".join(gs["gpu"]["pending_reasons"]) else None)(
            {x["name"]: x for x in requests.get(groups, auth=("alice", ""), timeout=10).json()["groups"]}), 60,
            lambda: f"the gpu worker pending for want of a GPU: {requests.get(groups, auth=('alice', ''), timeout=10).text}")
        print(f"Kubernetes: {gpu['pending_reasons']}")
        assert [p["status"]["phase"] for p in kube.get("pods", sel)] == ["Pending"]
    finally:
        cluster.shutdown()
        try:
            wait_until(lambda: _gone(kube, cluster.name), 60, f"everything of {cluster.name} gone")
        finally:
            stop(g.proc)
