"""Worker groups across two real batch systems: one cluster whose default group runs on the HTCondor pool
(scripts/htcondor-pool.sh) and whose `hpc` group runs on the Slurm cluster (scripts/slurm-cluster.sh),
every job af-alice's. The unmodified dask_gateway client computes on it; tasks asking for
resources={"hpc": 1} run only on the Slurm jobs (seen from inside the tasks); the hpc group is scaled
through the AF API; a gateway killed with SIGKILL adopts both groups' jobs (same ids) and stopping the
cluster leaves neither queue a job of it.

The gateway runs as root (both prefixes need it); the cluster's directory is on the one filesystem both
batch systems' jobs see under the same path, which is what a group on another batch system needs.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import requests

from af_e2e_support import GatewayUnderTest, stop
from conftest import IS_PEER, wait_until
from condor_support import running_user_pool, user_pool_gateway_config, worker_jobs as condor_worker_jobs
from slurm_support import LIVE, cluster_jobs as slurm_jobs, running_slurm, slurm_gateway_config

pytestmark = [
    pytest.mark.skipif(IS_PEER, reason="peer mode: dask-gateway-server has no worker groups"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the test pool, Slurm and the test accounts need root"),
    pytest.mark.timeout(420),
]


def _where_am_i():
    # Nested, so that cloudpickle sends it by value: the jobs' Python cannot import this module.
    def where_am_i(_=None, dask_worker=None) -> dict:
        """Run on a worker: the batch job it is (Slurm's array task, or an HTCondor job ad), its name, its token file."""
        import os
        from distributed import get_worker
        slurm = os.environ.get("SLURM_ARRAY_JOB_ID")
        return {
            "worker": (dask_worker or get_worker()).name,  # (client.run passes its worker; a task asks for it)
            "slurm_job": f"{slurm}_{os.environ['SLURM_ARRAY_TASK_ID']}" if slurm else None,
            "condor": bool(os.environ.get("_CONDOR_JOB_AD")),
            "token_file": os.environ.get("BEARER_TOKEN_FILE"),
        }
    return where_am_i


where_am_i = _where_am_i()


@pytest.fixture(scope="module")
def pool():
    with running_user_pool() as p:
        yield p


@pytest.fixture(scope="module")
def slurm():
    with running_slurm() as s:
        yield s


def mixed_config(pool, slurm, port, data, **group):
    config = user_pool_gateway_config(pool, port, data)
    slurm_backend = slurm_gateway_config(slurm, port, data, partition="hpc")["backend"]
    config["worker_groups"] = [{"name": "hpc", "description": "Slurm nodes of the hpc partition", "backend": slurm_backend,
                                "worker_cores": 1, "worker_memory": 1, "resources": {"hpc": 1}, "max_workers": 4, **group}]
    return config


@pytest.fixture(scope="module")
def gw(pool, slurm):
    g = GatewayUnderTest(pool.run_dir / "mixed", lambda port, data: mixed_config(pool, slurm, port, data))
    g.dir.chmod(0o711)  # both systems' jobs pass through to the cluster's directory
    yield g
    stop(g.proc)


def groups(gw, name, user="alice") -> dict:
    r = requests.get(f"{gw.url}/api/af/clusters/{name}/groups", auth=(user, ""), timeout=10)
    assert r.status_code == 200, r.text
    return {g["name"]: g for g in r.json()["groups"]}


def scale_group(gw, name, group, count, user="alice") -> requests.Response:
    return requests.put(f"{gw.url}/api/af/clusters/{name}/groups/{group}/scale", json={"count": count}, auth=(user, ""), timeout=30)


def running_slurm_ids(slurm, name) -> list[str]:
    return sorted(j["id"] for j in slurm_jobs(slurm, name) if j["state"] == "RUNNING")


def running_condor_ids(pool, name) -> list[str]:
    return sorted(f"{j['ClusterId']}.{j['ProcId']}" for j in condor_worker_jobs(pool, name) if j["JobStatus"] == 2)


def test_default_on_htcondor_hpc_on_slurm_compute_adopt_and_stop(pool, slurm, gw):
    t0 = time.monotonic()
    cluster = gw.gateway("alice").new_cluster()
    name = cluster.name
    mine = f'AfGatewayCluster == "{name}"'
    try:
        cluster.scale(1)  # the dask_gateway client scales default: one HTCondor job
        r = scale_group(gw, name, "hpc", 2)  # the AF API scales hpc: two Slurm array tasks
        assert r.status_code == 200, r.text
        client = cluster.get_client()
        client.wait_for_workers(3, timeout=180)
        # (the gateway learns of connected workers from the scheduler's next heartbeat)
        shape = lambda g: (g["default"]["backend"], g["default"]["running"], g["hpc"]["backend"], g["hpc"]["target"], g["hpc"]["running"])  # noqa: E731
        wait_until(lambda: shape(groups(gw, name)) == ("htcondor", 1, "slurm", 2, 2), 30, lambda: f"both groups running: {groups(gw, name)}")
        slurm_ids = running_slurm_ids(slurm, name)
        condor_ids = running_condor_ids(pool, name)
        assert len(slurm_ids) == 2 and len(condor_ids) == 1, (slurm_ids, condor_ids)
        assert {j["user"] for j in slurm_jobs(slurm, name)} == {"af-alice"}
        assert {j["Owner"] for j in pool.jobs(mine)} == {"af-alice"}
        print(f"3 workers (1 HTCondor job {condor_ids}, 2 Slurm jobs {slurm_ids}) in {time.monotonic() - t0:.1f} s")

        # the unmodified client computes; resources={"hpc": 1} reaches only the Slurm jobs
        assert client.submit(sum, range(10)).result() == 45
        seen = client.gather([client.submit(where_am_i, i, resources={"hpc": 1}, pure=False) for i in range(12)])
        assert {s["slurm_job"] for s in seen} <= set(slurm_ids) and all(s["worker"].endswith("_hpc") and not s["condor"] for s in seen), seen
        everywhere = client.run(where_am_i)
        on_condor = [s for s in everywhere.values() if s["condor"]]
        assert len(on_condor) == 1 and on_condor[0]["slurm_job"] is None and not on_condor[0]["worker"].endswith("_hpc"), everywhere
        print("hpc tasks ran on Slurm jobs", sorted({s["slurm_job"] for s in seen}))

        # The token file: Slurm workers read the cluster's file in place, on the shared filesystem, under the path
        # the token broker writes; a replace of it (the broker's way: a new file renamed over the old) is what they read next.
        token_file = gw.config["data_dir"] + f"/clusters/{name}/bearer-token"
        assert {s["token_file"] for s in seen} == {token_file}, seen
        tmp = token_file + ".test"
        with open(tmp, "w") as f:
            f.write("test-token-1\n")
        os.chmod(tmp, 0o600)
        os.chown(tmp, pool.accounts["af-alice"]["uid"], -1)
        os.replace(tmp, token_file)
        read = client.submit(lambda p: open(p).read().strip(), token_file, resources={"hpc": 1}, pure=False).result(timeout=60)
        assert read == "test-token-1", read

        # kill -9 and restart: both groups' jobs adopted, the same ids, and the cluster computes on both
        os.killpg(gw.proc.pid, signal.SIGKILL)
        gw.proc.wait(10)
        t1 = time.monotonic()
        gw.start()
        wait_until(lambda: (lambda g: g["default"]["running"] == 1 and g["hpc"]["running"] == 2)(groups(gw, name)), 60,
                   lambda: f"both groups running after the restart: {groups(gw, name)}")
        print(f"restarted gateway: both groups running again {time.monotonic() - t1:.1f} s after its start")
        assert running_slurm_ids(slurm, name) == slurm_ids and running_condor_ids(pool, name) == condor_ids
        assert client.submit(where_am_i, resources={"hpc": 1}, pure=False).result(timeout=60)["slurm_job"] in slurm_ids
        assert gw.af_cluster(name)["workers"]["failed"] == 0

        # scaling hpc down through the AF API retires one worker and its Slurm job leaves the queue; default is untouched
        r = scale_group(gw, name, "hpc", 1)
        assert r.status_code == 200, r.text
        wait_until(lambda: len(slurm_jobs(slurm, name, states=LIVE)) == 1, 60, lambda: f"one hpc job left: {slurm_jobs(slurm, name)}")
        client.wait_for_workers(2, timeout=30)
        assert running_condor_ids(pool, name) == condor_ids
        assert client.submit(sum, [1, 2], resources={"hpc": 1}).result(timeout=60) == 3
        client.close()
    finally:
        cluster.shutdown()
    wait_until(lambda: not slurm_jobs(slurm, name, states=LIVE) and not slurm_jobs(slurm, name, "s", states=LIVE)
               and not pool.jobs(mine), 60, lambda: f"no job of {name} left: {slurm_jobs(slurm, name)} {pool.jobs(mine)}")
    print(f"stopped: no HTCondor or Slurm job of the cluster left; {time.monotonic() - t0:.1f} s in all")
