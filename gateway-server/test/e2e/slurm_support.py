"""The real single-node Slurm cluster of the e2e tests (scripts/slurm-cluster.sh), as the tests see
it: started and stopped per run, its facts (slurm.json), and its tools run as root (the tests' own
view of the queue) or as an account through the prefix the gateway's backend uses."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from af_e2e_support import REPO

SCRIPT = REPO / "scripts" / "slurm-cluster.sh"
ACCOUNTS_SCRIPT = REPO / "scripts" / "test-accounts.sh"
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
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
