"""The real Kubernetes control plane of scripts/kube-cluster.sh as the e2e tests see it (kubectl as the
cluster's admin), the chart's RBAC for the gateway's ServiceAccount, and a gateway as root whose
backend acts as that ServiceAccount, its users mapped to the test accounts."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import tempfile
from pathlib import Path

import yaml

from af_e2e_support import REPO, GatewayUnderTest

KUBE_SCRIPT = REPO / "scripts" / "kube-cluster.sh"
ACCOUNTS_SCRIPT = REPO / "scripts" / "test-accounts.sh"
CHART = REPO / "deploy" / "helm"
NS = "af-test"


class Kube:
    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.env = json.loads((run_dir / "kube.json").read_text())
        self.kubectl_bin = self.env["KUBECTL"]
        self.helm_bin = self.env["HELM"]

    def kubectl(self, *args: str, input: str | None = None, check=True, kubeconfig: str | None = None) -> str:
        r = subprocess.run([self.kubectl_bin, "--kubeconfig", kubeconfig or self.env["KUBECONFIG"], *args],
                           input=input, capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {r.stderr}")
        return r.stdout

    def get(self, kind: str, selector: str = "app.kubernetes.io/managed-by=af-gateway") -> list[dict]:
        return json.loads(self.kubectl("get", kind, "-n", NS, "-l", selector, "-o", "json"))["items"]


def posix_test_accounts() -> dict:
    """scripts/test-accounts.sh ensure: {"group": "af-users", "users": {"alice": {"name", "uid", "gid",
    "home"}, "bob": ..., "mallory": ...}, ...}."""
    out = subprocess.run(["bash", str(ACCOUNTS_SCRIPT), "ensure"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(Path(out.stdout.strip()).read_text())


@contextlib.contextmanager
def running_kube():
    """A control plane and node agent of their own for a module, with the namespace NS; stopped and its
    directory removed on leaving."""
    run_dir = Path(tempfile.mkdtemp(prefix="af-kube-"))
    # pod processes run as the test accounts and reach their pod directories below it
    # (RUN_DIR/agent/pods/<pod>, each 0750 with the pod's group); passing through, not listing
    run_dir.chmod(0o711)
    subprocess.run(["bash", str(KUBE_SCRIPT), "start", str(run_dir)], check=True, timeout=600)
    try:
        k = Kube(run_dir)
        k.kubectl("create", "namespace", NS)
        yield k
    finally:
        subprocess.run(["bash", str(KUBE_SCRIPT), "stop", str(run_dir)], timeout=120)
        subprocess.run(["rm", "-rf", str(run_dir)])


def chart_rbac(kube: Kube, namespace: str = NS, per_user: bool = False) -> tuple[str, list[dict]]:
    """The chart's ServiceAccount and RBAC (Role and RoleBinding, or with per-user namespaces
    ClusterRole and ClusterRoleBinding) for a release in `namespace`, as helm renders them."""
    out = subprocess.run([kube.helm_bin, "template", "gw", str(CHART), "--namespace", namespace,
                          "--set", "secrets.encryptKey=" + base64.b64encode(os.urandom(32)).decode(),
                          "--set", f"kubernetes.namespacePerUser={str(per_user).lower()}"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    kinds = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"} if per_user else {"ServiceAccount", "Role", "RoleBinding"}
    rbac = [d for d in docs if d["kind"] in kinds]
    assert {d["kind"] for d in rbac} == kinds, [d["kind"] for d in docs]
    sa = next(d for d in rbac if d["kind"] == "ServiceAccount")["metadata"]["name"]
    return sa, rbac


def sa_kubeconfig_for(kube: Kube, namespace: str, per_user: bool, file: str) -> str:
    """A kubeconfig for the chart's ServiceAccount: the gateway gets no more than the chart grants."""
    sa, rbac = chart_rbac(kube, namespace, per_user)
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(rbac))
    token = kube.kubectl("create", "token", sa, "-n", namespace, "--duration", "2h").strip()
    path = kube.run_dir / file
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "gw",
        "clusters": [{"name": "test", "cluster": {"server": kube.env["KUBE_SERVER"], "certificate-authority": kube.env["KUBE_CA_FILE"]}}],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": "gw", "context": {"cluster": "test", "user": sa, "namespace": namespace}}],
    }))
    path.chmod(0o600)
    return str(path)


def gateway_config(kubeconfig: str, port: int, data: Path, auth: dict | None = None, workspaces: Path | None = None, **kubernetes) -> dict:
    """The gateway configuration of this module: the Kubernetes backend as the chart's ServiceAccount,
    users mapped to the test accounts (af-<user>). Step Jobs mount the workspace root, a hostPath
    outside the gateway's private data directory (pods reach it as their users)."""
    workspaces = workspaces or data.parent / "workspaces"
    c = {
        "listen": f"127.0.0.1:{port}",
        "data_dir": str(data),
        "log_level": "debug",
        "accounts": {"name_template": "af-{user}", "group": "af-users"},
        "backend": {"type": "kubernetes", "kubernetes": {
            "kubeconfig": kubeconfig,
            "namespace": NS,
            # the node agent runs commands on this machine: the repository's Python has Dask
            "python": str(REPO / ".venv" / "bin" / "python"),
            "image": "ghcr.io/dask/dask-gateway:2026.3.0",
            # the gateway runs outside the cluster network but can reach the agent's loopback pod IPs
            "scheduler_address": "pod",
            "profiles": {"huge": {"resources": {"requests": {"cpu": "100"}, "limits": {"cpu": "100"}}}},
            "workspace_volume": {"hostPath": {"path": str(workspaces)}},
            "delete_grace_period": 5,
            **kubernetes,
        }},
        "cluster_options": [
            {"field": "worker_cores", "type": "int", "default": 1, "min": 1, "max": 4, "target": "worker_cores"},
            {"field": "worker_memory", "type": "float", "default": 0.5, "min": 0.25, "max": 4, "target": "worker_memory"},
            {"field": "profile", "type": "select", "options": ["standard", "huge"], "default": "standard", "target": "worker_profile"},
        ],
        "cluster": {"check_period": 1, "adaptive_period": 1, "heartbeat_period": 2, "worker_start_timeout": 20,
                    "stop_on_shutdown": True},
        "workflows": {"poll_period": 0.5, "workspace_root": str(workspaces)},
    }
    if auth:
        c["auth"] = auth
    return c


class KubeGateway(GatewayUnderTest):
    """A gateway as root, in RUN_DIR/<name> (0711): its data directory root's and 0700, its
    config and log 0600; the workflows' workspaces beside it in RUN_DIR/<name>-workspaces (0711)."""

    def __init__(self, kube: Kube, kubeconfig: str, name: str, auth: dict | None = None, **kubernetes):
        workspaces = kube.run_dir / f"{name}-workspaces"
        workspaces.mkdir(mode=0o711)
        workspaces.chmod(0o711)
        super().__init__(kube.run_dir / name, lambda port, data: gateway_config(kubeconfig, port, data, auth, workspaces, **kubernetes))

    def start(self):
        self.dir.chmod(0o711)
        data = self.dir / "data"
        data.mkdir(mode=0o700, exist_ok=True)
        os.chown(data, 0, 0)
        data.chmod(0o700)
        super().start()
        for f in (self.dir / "config.json", self.log):
            f.chmod(0o600)
