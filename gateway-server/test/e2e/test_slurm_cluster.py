"""The single-node Slurm cluster the Slurm backend's tests run on (scripts/slurm-cluster.sh: Debian
12's slurm-wlm 22.05 and munge, its own munged, slurmctld and slurmd per run) behaves as a facility's
Slurm does for what the backend relies on: a job submitted as a user's account (af-alice from
scripts/test-accounts.sh, through the cluster's SLURM_USER_CMD_JSON prefix) is that account's, runs
as it and can run the repository's venv Python; another account cannot cancel it; a job that cannot
start says why in squeue; and `stop` leaves no process of its run while another run goes on.

One module-scoped cluster; the stop test starts two clusters of its own. About 20 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from conftest import wait_until
from slurm_support import DONE, SCRIPT, Slurm, ensure_accounts, start_slurm, stop_slurm

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="slurmd, munged and the test accounts need root"),
    pytest.mark.timeout(180),
]

@pytest.fixture(scope="module")
def accounts_file():
    return ensure_accounts()


@pytest.fixture(scope="module")
def slurm(accounts_file):
    subprocess.run(["bash", str(SCRIPT), "ensure"], check=True, timeout=900)
    run_dir = Path(tempfile.mkdtemp(prefix="af-slurm-"))
    try:
        yield start_slurm(run_dir, accounts_file)
    finally:
        stop_slurm(run_dir)
        subprocess.run(["rm", "-rf", "--one-file-system", str(run_dir)])


def _own_dir(slurm: Slurm, account: str, name: str) -> Path:
    """A directory of the account's own (0700) for its jobs' files."""
    d = slurm.run_dir / name
    d.mkdir(exist_ok=True)
    a = slurm.accounts[account]
    os.chown(d, a["uid"], a["gid"])
    d.chmod(0o700)
    return d


def _wait_done(slurm: Slurm, job: str, timeout: float = 60) -> str:
    return wait_until(lambda: (lambda s: s if s in DONE else None)(slurm.state(job)), timeout, f"job {job} to finish")


def _cancel_all(slurm: Slurm) -> None:
    ids = list(slurm.queue())
    if ids:
        slurm.run("scancel", *ids)
    wait_until(lambda: not slurm.queue(), 30, lambda: f"an empty queue; queue: {slurm.queue()}")


def test_the_cluster_advertises_its_partitions_and_cpus(slurm):
    f = slurm.facts
    assert f["PARTITIONS"] == ["debug", "hpc"] and f["DEFAULT_PARTITION"] == "debug"
    assert {"af-alice", "af-bob", "af-mallory"} <= set(slurm.accounts)
    assert f["SLURM_CONF"] == str(slurm.run_dir / "slurm" / "slurm.conf")
    nodes = slurm.run("sinfo", "-h", "-N", "-o", "%N|%P|%c|%T").stdout.split()
    assert sorted(nodes) == sorted(f"{f['NODE']}|{p}|{f['CPUS']}|idle" for p in ("debug*", "hpc"))


def test_a_job_of_alice_runs_as_alice_and_runs_the_venv_python(slurm):
    d = _own_dir(slurm, "af-alice", "alice")
    python = slurm.facts["PYTHON"]
    job = slurm.sbatch("af-alice", f"--chdir={d}", "-o", f"{d}/out.txt", "-J", "af-test-whoami",
                       "--wrap", f"id -un; hostname; '{python}' -c 'import dask, distributed; print(distributed.__version__)'")
    assert _wait_done(slurm, job) == "COMPLETED", slurm.run("scontrol", "show", "job", job).stdout
    shown = slurm.run("scontrol", "-o", "show", "job", job).stdout
    assert f"UserId=af-alice({slurm.accounts['af-alice']['uid']})" in shown and "ExitCode=0:0" in shown, shown
    out = (d / "out.txt").read_text().splitlines()
    import distributed  # the job ran the same venv as this test
    assert out == ["af-alice", os.uname().nodename, distributed.__version__], out
    assert (d / "out.txt").stat().st_uid == slurm.accounts["af-alice"]["uid"]


def test_bob_cannot_cancel_alices_job(slurm):
    d = _own_dir(slurm, "af-alice", "alice")
    job = slurm.sbatch("af-alice", f"--chdir={d}", "-o", "/dev/null", "-J", "af-test-victim", "--wrap", "sleep 300")
    try:
        wait_until(lambda: slurm.state(job) == "RUNNING", 30, f"job {job} running")
        r = slurm.run_as("af-bob", "scancel", job, check=False)
        assert r.returncode != 0 and "Access/permission denied" in r.stderr, (r.returncode, r.stderr)
        # mallory's scancel of every job she names, and of all of bob's (a filter): nothing of alice's goes
        r = slurm.run_as("af-mallory", "scancel", "--user=af-alice", check=False)
        assert r.returncode != 0 and "Access/permission denied" in r.stderr, (r.returncode, r.stderr)
        time.sleep(1)
        assert slurm.state(job) == "RUNNING"
        # alice can
        slurm.run_as("af-alice", "scancel", job)
        assert _wait_done(slurm, job, 30) == "CANCELLED"
    finally:
        _cancel_all(slurm)


def test_a_job_that_cannot_start_says_why(slurm):
    d = _own_dir(slurm, "af-alice", "alice")
    cpus = slurm.facts["CPUS"]
    common = [f"--chdir={d}", "-o", "/dev/null", "--wrap", "sleep 300"]
    try:
        fill = slurm.sbatch("af-alice", "-c", str(cpus), "-J", "af-test-fill", *common)
        wait_until(lambda: slurm.state(fill) == "RUNNING", 30, f"job {fill} filling the node")
        waiting = slurm.sbatch("af-alice", "-J", "af-test-wait", *common)
        too_long = slurm.sbatch("af-alice", "-t", "2-00:00:00", "-J", "af-test-long", *common)
        queue = wait_until(lambda: (lambda q: q if q[waiting][1] != "None" and q[too_long][1] != "None" else None)(slurm.queue()),
                           30, "the scheduler to give the pending jobs a reason")
        print("squeue (id: state, reason, partition, CPUs, user):", json.dumps(queue, indent=1))
        assert queue[fill] == ("RUNNING", "None", "debug", str(cpus), "af-alice")
        assert queue[waiting][:3] in (("PENDING", "Resources", "debug"), ("PENDING", "Priority", "debug"))
        # over the partition's MaxTime (1 day): it waits (the partition limit is not enforced at submission)
        assert queue[too_long][:3] == ("PENDING", "PartitionTimeLimit", "debug")
        # once the node is free, the waiting job runs
        slurm.run_as("af-alice", "scancel", fill, too_long)
        wait_until(lambda: slurm.state(waiting) == "RUNNING", 30, f"job {waiting} to start once the node is free")
    finally:
        _cancel_all(slurm)


def _processes_of(run_dir: Path, conf: str, cluster: str) -> list[psutil.Process]:
    """Processes that belong to a run: naming its dir, carrying its SLURM_CONF or ClusterName in their
    environment, or holding a file under it open. (The raw environment: slurmstepd's process title
    overwrites its start, so psutil's environ() parses it as empty.)"""
    found = []
    marks = {f"SLURM_CONF={conf}".encode(), f"SLURM_CLUSTER_NAME={cluster}".encode()}
    for p in psutil.process_iter():
        try:
            if p.status() == psutil.STATUS_ZOMBIE or p.pid == os.getpid():
                continue
            env = set(Path(f"/proc/{p.pid}/environ").read_bytes().split(b"\0"))
            fds = [os.readlink(f) for f in Path(f"/proc/{p.pid}/fd").iterdir()]
            if (str(run_dir) in " ".join(p.cmdline()) or marks & env
                    or any(f.startswith(f"{run_dir}/") for f in fds)):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, FileNotFoundError, ProcessLookupError, PermissionError):
            pass
    return found


def test_stop_leaves_no_process_of_its_run_and_another_run_goes_on(accounts_file):
    runs = [Path(tempfile.mkdtemp(prefix="af-slurm-stop-")) for _ in range(2)]
    try:
        a, b = (start_slurm(r, accounts_file) for r in runs)
        assert a.facts["SLURMCTLD_PORT"] != b.facts["SLURMCTLD_PORT"] and a.facts["MUNGE_SOCKET"] != b.facts["MUNGE_SOCKET"]
        jobs = {}
        for s in (a, b):
            d = _own_dir(s, "af-alice", "alice")
            jobs[s] = s.sbatch("af-alice", f"--chdir={d}", "-o", "/dev/null", "-J", "af-test-left", "--wrap", "sleep 600")
        for s in (a, b):
            wait_until(lambda: s.state(jobs[s]) == "RUNNING", 30, f"job {jobs[s]} running")
        before = _processes_of(a.run_dir, a.conf, a.facts["CLUSTER_NAME"])
        names = sorted({p.name() for p in before})
        # the daemons of run a, its job (running as af-alice) and nothing of run b
        assert {"munged", "slurmctld", "slurmd", "slurmstepd", "sleep"} <= set(names), names
        assert not {p.pid for p in before} & {p.pid for p in _processes_of(b.run_dir, b.conf, b.facts["CLUSTER_NAME"])}
        assert any(p.username() == "af-alice" and p.name() == "sleep" for p in before)

        r = stop_slurm(a.run_dir)
        assert r.returncode == 0, r.stderr
        left = [p for p in before if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not left, [(p.pid, p.name()) for p in left]
        assert not _processes_of(a.run_dir, a.conf, a.facts["CLUSTER_NAME"])
        assert not (a.run_dir / "slurm.json").exists() and not Path(a.facts["MUNGE_SOCKET"]).exists()
        # run b is untouched: its job still runs, its cluster answers
        assert b.state(jobs[b]) == "RUNNING"
        assert stop_slurm(a.run_dir).returncode == 0  # safe to repeat
    finally:
        for r in runs:
            stop_slurm(r)
            subprocess.run(["rm", "-rf", "--one-file-system", str(r)])
