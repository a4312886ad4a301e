"""The real single-node Slurm cluster of the e2e tests (scripts/slurm-cluster.sh), as the tests see
it: started and stopped per run, its facts (slurm.json), and its tools run as root (the tests' own
view of the queue) or as an account through the prefix the gateway's backend uses."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import tempfile
from pathlib import Path

from af_e2e_support import REPO, GatewayUnderTest
from conftest import wait_until

SCRIPT = REPO / "scripts" / "slurm-cluster.sh"
ACCOUNTS_SCRIPT = REPO / "scripts" / "test-accounts.sh"
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
LIVE = "PENDING,RUNNING,SUSPENDED,CONFIGURING,COMPLETING"
DONE = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL", "DEADLINE"}


class Slurm:
    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.facts = json.loads((run_dir / "slurm.json").read_text())
        self.conf = self.facts["SLURM_CONF"]
        self.accounts = {a["name"]: a for a in self.facts["ACCOUNTS"]}

    def run(self, *args: str, check=True) -> subprocess.CompletedProcess:
        """A Slurm tool as root (the tests' own view of the queue)."""
        env = {"PATH": PATH, "LANG": "C.UTF-8", "SLURM_CONF": self.conf}
        return subprocess.run(list(args), check=check, capture_output=True, text=True, timeout=30, env=env, cwd="/")

    def run_as(self, account: str, *args: str, check=True) -> subprocess.CompletedProcess:
        """A Slurm tool as an account, through the prefix the gateway's backend uses."""
        a = self.accounts[account]
        prefix = [w.replace("{uid}", str(a["uid"])).replace("{gid}", str(a["gid"])).replace("{user}", a["name"])
                  for w in self.facts["SLURM_USER_CMD_JSON"]]
        return self.run(*prefix, *args, check=check)

    def sbatch(self, account: str, *args: str) -> str:
        return self.run_as(account, "sbatch", "--parsable", *args).stdout.strip().split(";")[0]

    def state(self, job: str) -> str:
        return self.run("squeue", "-h", "-t", "all", "-j", job, "-o", "%T", check=False).stdout.strip()

    def queue(self) -> dict[str, tuple[str, ...]]:
        """job id -> (state, reason, partition, CPUs, user) of every job not finished."""
        out = self.run("squeue", "-h", "-o", "%i|%T|%r|%P|%C|%u").stdout
        return {f[0]: tuple(f[1:]) for f in (line.split("|") for line in out.splitlines() if line)}

    def jobs(self, states: str = "all") -> list[dict]:
        """Every job (one line per array task) with its id, array id, user, state, reason, CPUs, name and comment."""
        keys = ("id", "array", "user", "state", "reason", "cpus", "name", "comment")
        out = self.run("squeue", "-h", "-r", "-t", states, "-o", "%i|%F|%u|%T|%r|%C|%j|%k").stdout
        return [dict(zip(keys, line.split("|", len(keys) - 1))) for line in out.splitlines() if line]


def ensure_accounts() -> str:
    """The test accounts (scripts/test-accounts.sh ensure): the path of their accounts.json."""
    return subprocess.run(["bash", str(ACCOUNTS_SCRIPT), "ensure"], check=True, capture_output=True, text=True,
                          timeout=300).stdout.strip().splitlines()[-1]


def start_slurm(run_dir: Path, accounts_file: str) -> Slurm:
    subprocess.run(["bash", str(SCRIPT), "start", str(run_dir)], check=True, timeout=120,
                   env=dict(os.environ, AF_SLURM_ACCOUNTS=accounts_file))
    return Slurm(run_dir)


def stop_slurm(run_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), "stop", str(run_dir)], timeout=120, capture_output=True, text=True)


@contextlib.contextmanager
def running_slurm():
    """The test accounts and a Slurm of their own for a module: stopped (its jobs cancelled, what remains of
    the run killed) and its directory removed on leaving."""
    accounts = ensure_accounts()
    run_dir = Path(tempfile.mkdtemp(prefix="af-slurm-gw-"))
    run_dir.chmod(0o755)  # the jobs pass through it to their cluster files
    try:
        yield start_slurm(run_dir, accounts)
    finally:
        stop_slurm(run_dir)
        subprocess.run(["rm", "-rf", "--one-file-system", str(run_dir)], timeout=60)


def slurm_gateway_config(slurm, port: int, data_dir: Path, **over) -> dict:
    return {
        "listen": f"127.0.0.1:{port}",
        "data_dir": str(data_dir),
        "log_level": "debug",
        "accounts": {"name_template": "af-{user}"},  # gateway user alice runs as af-alice, etc.
        "backend": {
            "type": "slurm",
            "slurm": {
                "command_prefix": slurm.facts["SLURM_USER_CMD_JSON"],
                "environment": {"SLURM_CONF": slurm.conf},
                "python": slurm.facts["PYTHON"],
                "time_limit": "30",
                **over,
            },
        },
        # users choose their workers' cores (a request larger than the node is theirs to make)
        "cluster_options": [{"field": "worker_cores", "type": "int", "target": "worker_cores", "default": 1, "min": 1, "max": 64}],
        "cluster": {"check_period": 1, "adaptive_period": 1, "heartbeat_period": 2, "worker_start_timeout": 20,
                    "stop_on_shutdown": True},
        # Slurm runs no images: docker-encapsulated steps run on the node as they are
        "workflows": {"images": "ignore", "poll_period": 0.5},
    }


class SlurmGateway(GatewayUnderTest):
    def __init__(self, slurm, name: str, **over):
        super().__init__(slurm.run_dir / name, lambda port, data: slurm_gateway_config(slurm, port, data, **over))
        self.dir.chmod(0o711)  # the jobs pass through to the data dir; nothing here is theirs to list

    @property
    def data(self) -> Path:
        return Path(self.config["data_dir"])

    def tail(self, n=4000) -> str:
        return self.log.read_text()[-n:]


def cluster_jobs(slurm, cluster: str, kind: str = "w", states: str = "all") -> list[dict]:
    """The cluster's worker (w) or scheduler (s) jobs: named <instance>.<kind>.<cluster>."""
    return [j for j in slurm.jobs(states) if j["name"].endswith(f".{kind}.{cluster}")]


def running_worker_jobs(slurm, cluster: str) -> list[dict]:
    return [j for j in cluster_jobs(slurm, cluster) if j["state"] == "RUNNING"]


def wait_no_jobs(slurm, cluster: str, g: SlurmGateway) -> None:
    left = lambda: [j for j in slurm.jobs(LIVE) if j["name"].endswith(f".{cluster}")]  # noqa: E731
    wait_until(lambda: not left(), 60, lambda: f"no job of cluster {cluster} left; queue: {left()}; gateway log: {g.tail()}")


def tagged_job(slurm, account: str, instance: str, tag: str, owner: str) -> str:
    """A job named like the gateway's workers, its comment naming `owner` (what a crash mid-submit, or a forger, leaves)."""
    comment = "af-owner:" + base64.urlsafe_b64encode(owner.encode()).decode().rstrip("=")
    return slurm.sbatch(account, "-J", f"{instance}.w.{tag}", f"--comment={comment}", "-o", "/dev/null", "--chdir=/tmp",
                        "--mem=64M", "--wrap", "sleep 600")
