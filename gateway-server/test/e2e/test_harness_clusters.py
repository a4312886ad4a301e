"""The stand-in clusters the backend tests run on behave as the real ones the gateway expects, and
their `stop` leaves nothing behind: the checks of `scripts/htcondor-pool.sh selftest` (three slots
running jobs at once, the venv's Python inside the chroot, an idle job that cannot match, a held job,
a job submitted as af-alice owned by and run as af-alice) and of `scripts/kube-cluster.sh selftest`
(a pod on its pod IP with secret env and volume, owner-reference garbage collection, a Job that
completes and one that fails with its exit code, an unschedulable pod's reason, deletion, helm, no
process left after stop). Each runs in a temporary directory it removes, about 20-30 s.

The checks themselves are still the scripts' (bash, next to the harness they test); this file runs
them in the suite, bounded: on a timeout the script's whole process group gets SIGTERM, so its
cleanup trap stops what it started.
"""
import os
import re
import signal
import subprocess

import pytest

from af_e2e_support import REPO

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the clusters' chroot, mounts and test accounts need root"),
    pytest.mark.timeout(600),
]


def selftest(script: str, timeout: float) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(["bash", str(REPO / "scripts" / script), "selftest"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)   # the script's EXIT trap stops its cluster
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        pytest.fail(f"{script} selftest did not finish within {timeout:.0f} s:\n{out[-4000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


def test_the_htcondor_pool_runs_idles_holds_and_owns_jobs_as_a_real_pool_does():
    r = selftest("htcondor-pool.sh", 420)
    assert r.returncode == 0, r.stdout[-4000:]
    assert "== selftest passed" in r.stdout
    assert "(cluster " in r.stdout and ": 3 running" in r.stdout


def test_the_kubernetes_control_plane_runs_jobs_collects_garbage_and_stops_clean():
    r = selftest("kube-cluster.sh", 420)
    assert r.returncode == 0, r.stdout[-4000:]
    summary = re.findall(r"^selftest: (\d+) passed, (\d+) failed$", r.stdout, re.M)
    assert len(summary) == 1 and int(summary[0][0]) >= 8 and summary[0][1] == "0", r.stdout[-4000:]
    assert "FAIL " not in r.stdout
