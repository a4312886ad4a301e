"""The real HTCondor pool of scripts/htcondor-pool.sh in its SciTokens mode, for the end-to-end tests that
run Dask workers as HTCondor jobs: the pool started for an issuer (its schedd takes submissions only with
that issuer's tokens and maps each test user's subject to their account, af-<user>), the tests' own view
of it (Pool: queries as the pool's own user, the schedd's audit log), and the gateway configuration of a
backend that runs every condor tool as root in the pool's root, so that only the owner's token makes a
job theirs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

from af_e2e_support import REPO, GatewayUnderTest
from conftest import wait_until

POOL_SCRIPT = REPO / "scripts" / "htcondor-pool.sh"
ACCOUNTS_SCRIPT = REPO / "scripts" / "test-accounts.sh"
JOB_ATTRS = "ClusterId,ProcId,JobStatus,Owner,AfGatewayCluster,AfGatewayWorker,AuthTokenSubject,AuthTokenIssuer,AuthTokenId,AuthTokenScopes"


def ensure_test_accounts() -> str:
    """The test accounts (af-alice, af-bob, ...), made once per machine: the JSON file the pool reads."""
    return subprocess.run(["bash", str(ACCOUNTS_SCRIPT), "ensure"], check=True, capture_output=True, text=True,
                          timeout=300).stdout.strip().splitlines()[-1]


class Pool:
    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        facts = json.loads((run_dir / "pool.json").read_text())
        self.facts = facts
        self.cmd = facts["CONDOR_CMD_JSON"]  # as afcondor, FS (READ): the tests' own queries
        self.root = facts["CONDOR_ROOT"]
        self.config = facts["CONDOR_CONFIG"]
        self.sci = facts["SCITOKENS"]
        self.accounts = {a["name"]: a for a in facts["ACCOUNTS"]}
        self.log_dir = Path(self.config).parent / "log"

    def run(self, *args: str) -> str:
        return subprocess.run([*self.cmd, *args], check=True, capture_output=True, text=True, timeout=60).stdout

    def jobs(self, constraint: str) -> list[dict]:
        text = self.run("condor_q", "-allusers", "-json", "-constraint", constraint, "-attributes", JOB_ATTRS)
        return json.loads(text) if text.strip() else []

    def with_token(self, token_file: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        """A condor tool as root in the pool's root (the gateway's way), authenticating with the token in token_file."""
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "CONDOR_CONFIG": self.config,
               **self.sci["client_env"], "_condor_SCITOKENS_FILE": str(token_file)}
        return subprocess.run(["chroot", self.root, *args], env=env, capture_output=True, text=True, timeout=60, input=input)

    def as_account(self, account: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        """A condor tool as the account itself, with the pool's own client methods (FS), no token."""
        a = self.accounts[account]
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "CONDOR_CONFIG": self.config}
        return subprocess.run(["chroot", f"--userspec={a['uid']}:{a['gid']}", self.root, *args], env=env,
                              capture_output=True, text=True, timeout=60, input=input)

    def audit(self) -> dict[str, dict]:
        """The schedd's audit log: for each job it accepted (ClusterId.ProcId), how its submitter authenticated."""
        by_cid: dict[str, dict] = {}
        jobs: dict[str, dict] = {}
        for line in (self.log_dir / "AuditLog").read_text().splitlines():
            m = re.search(r"\(cid:(\d+)\) (.*)$", line)
            if not m:
                continue
            cid, text = m.groups()
            if a := re.match(r"AuthMethod=(\S+), AuthId=(\S+), CondorId=(\S+)$", text):
                by_cid[cid] = {"method": a[1], "auth_id": a[2].rstrip(","), "condor_id": a[3]}
            elif j := re.match(r"Submitting new job (\d+\.\d+)$", text):
                jobs[j[1]] = by_cid.get(cid, {})
        return jobs

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.log_dir.iterdir()) if p.is_file())


@contextlib.contextmanager
def scitokens_pool(run_dir: Path, issuer: str, ca: str | Path, accounts_file: str):
    """A pool whose schedd takes tokens of `issuer` (whose certificate `ca` signed), with the test accounts;
    stopped (its jobs killed, its root unmounted) on leaving. `run_dir` must let the jobs through (0755)."""
    env = dict(os.environ, AF_HTCONDOR_ACCOUNTS=accounts_file, HTCONDOR_SCITOKENS_ISSUER=issuer,
               HTCONDOR_SCITOKENS_CA=str(ca))
    subprocess.run(["bash", str(POOL_SCRIPT), "start", str(run_dir)], check=True, timeout=300, env=env)
    try:
        yield Pool(run_dir)
    finally:
        subprocess.run(["bash", str(POOL_SCRIPT), "stop", str(run_dir)], timeout=120)


def scitokens_gateway_config(pool: Pool) -> dict:
    """The `backend` and `cluster` sections of a gateway whose clusters are jobs of this pool: every condor
    tool runs as root in the pool's root (no per-user account on the gateway's side), authenticating with the
    owner's token (auth_method: scitokens); quick periods, so that the tests wait little."""
    return {
        "backend": {"type": "htcondor", "htcondor": {
            "auth_method": "scitokens",
            "command_prefix": ["chroot", pool.root],
            "environment": {"CONDOR_CONFIG": pool.config},
            "poll_period": 1,
            "request_disk": "100MB",
        }},
        "cluster": {"check_period": 1, "adaptive_period": 1, "heartbeat_period": 2, "worker_start_timeout": 30,
                    "stop_on_shutdown": True},
    }


# --- the plain pool: jobs submitted as their account (chroot --userspec), no tokens ------------------

class UserPool:
    """The pool of scripts/htcondor-pool.sh in its plain mode: the gateway submits as each account through
    CONDOR_USER_CMD_JSON (chroot --userspec), the tests query as the pool's own user."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        facts = json.loads((run_dir / "pool.json").read_text())
        self.cmd = facts["CONDOR_CMD_JSON"]  # as afcondor, environment reset (the tests' own queries)
        self.user_cmd = facts["CONDOR_USER_CMD_JSON"]  # chroot --userspec={uid}:{gid} <root>: the gateway's prefix
        self.config = facts["CONDOR_CONFIG"]
        self.uid = facts["CONDOR_UID"]
        self.accounts = {a["name"]: a for a in facts["ACCOUNTS"]}

    def run(self, *args: str, check=True) -> str:
        return subprocess.run([*self.cmd, *args], check=check, capture_output=True, text=True, timeout=60).stdout

    def run_as(self, account: str, *args: str, input: str | None = None) -> str:
        a = self.accounts[account]
        prefix = [w.replace("{uid}", str(a["uid"])).replace("{gid}", str(a["gid"])) for w in self.user_cmd]
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "CONDOR_CONFIG": self.config}
        return subprocess.run([*prefix, *args], check=True, capture_output=True, text=True, timeout=60, input=input, env=env).stdout

    def jobs(self, constraint: str, history=False) -> list[dict]:
        attrs = "ClusterId,ProcId,JobStatus,AfGatewayCluster,AfGatewayWorker,AfGatewayOwner,HoldReason,Owner,AfEnvProbe,AfConfigProbe"
        if history:
            text = self.run("condor_history", "-json", "-constraint", constraint, "-attributes", attrs)
        else:
            text = self.run("condor_q", "-allusers", "-json", "-constraint", constraint, "-attributes", attrs)
        return json.loads(text) if text.strip() else []


@contextlib.contextmanager
def running_user_pool():
    """The test accounts and a plain pool of their own for a module: stopped (its jobs killed, its root
    unmounted) and its directory removed on leaving."""
    accounts_file = ensure_test_accounts()
    run_dir = Path(tempfile.mkdtemp(prefix="af-htcondor-"))
    run_dir.chmod(0o755)  # the jobs pass through it to their cluster files
    subprocess.run(["bash", str(POOL_SCRIPT), "start", str(run_dir)], check=True, timeout=300,
                   env=dict(os.environ, AF_HTCONDOR_ACCOUNTS=accounts_file))
    try:
        yield UserPool(run_dir)
    finally:
        subprocess.run(["bash", str(POOL_SCRIPT), "stop", str(run_dir)], timeout=120)
        subprocess.run(["rm", "-rf", "--one-file-system", str(run_dir)])


def user_pool_gateway_config(pool: UserPool, port: int, data_dir: Path, **htcondor) -> dict:
    return {
        "listen": f"127.0.0.1:{port}",
        "data_dir": str(data_dir),
        "log_level": "debug",
        # gateway user alice runs as af-alice, etc.
        "accounts": {"name_template": "af-{user}"},
        "backend": {
            "type": "htcondor",
            "htcondor": {
                # each command as the account it acts for; the environment is the gateway's to give
                "command_prefix": pool.user_cmd,
                "environment": {"CONDOR_CONFIG": pool.config},
                "poll_period": 1,
                "request_disk": "100MB",
                # the admin's own lines: condor_submit expands $ENV() from its environment
                "submit_extra": {"+AfEnvProbe": '"$ENV(AF_TEST_GATEWAY_SECRET)"', "+AfConfigProbe": '"$ENV(CONDOR_CONFIG)"'},
                **htcondor,
            },
        },
        # users may set their workers' environment (what a hostile one puts in a submit description)
        "cluster_options": [{"field": "environment", "type": "mapping", "target": "environment", "default": {}}],
        "cluster": {"check_period": 1, "adaptive_period": 1, "heartbeat_period": 2, "worker_start_timeout": 20,
                    "stop_on_shutdown": True},
        # The test pool has no container runtime: docker-encapsulated steps run on the execute node as they are.
        "workflows": {"images": "ignore", "poll_period": 0.5},
    }


class UserPoolGateway(GatewayUnderTest):
    def __init__(self, pool: UserPool, name: str, **htcondor):
        super().__init__(pool.run_dir / name, lambda port, data: user_pool_gateway_config(pool, port, data, **htcondor))
        self.dir.chmod(0o711)  # the jobs pass through to the data dir; nothing here is theirs to list

    @property
    def data(self) -> Path:
        return Path(self.config["data_dir"])


def wait_queue_empty(pool: UserPool, cluster: str, gw: UserPoolGateway) -> None:
    mine = f'AfGatewayCluster == "{cluster}"'
    wait_until(lambda: not pool.jobs(mine), 60,
               lambda: f"an empty queue after shutdown; queue: {pool.jobs(mine)}; gateway log: {gw.log.read_text()[-3000:]}")


def worker_jobs(pool: UserPool, cluster: str) -> list[dict]:
    """The cluster's worker jobs in the queue (its scheduler is a job too)."""
    return [j for j in pool.jobs(f'AfGatewayCluster == "{cluster}"') if j.get("AfGatewayWorker") != "scheduler"]


def running_jobs(pool: UserPool, cluster: str) -> list[dict]:
    return [j for j in worker_jobs(pool, cluster) if j["JobStatus"] == 2]


def sleep_job(instance: str, owner: str, tag: str) -> str:
    return "\n".join(["executable = /bin/sleep", "arguments = 600", "request_memory = 64", "request_disk = 10MB",
                      f'+AfGatewayInstance = "{instance}"', f'+AfGatewayCluster = "{tag}"', f'+AfGatewayOwner = "{owner}"', "queue", ""])

