"""Worker groups across two real batch systems: one cluster whose default group runs on the HTCondor pool
(scripts/htcondor-pool.sh) and whose `hpc` group runs on the Slurm cluster (scripts/slurm-cluster.sh),
every job af-alice's. The unmodified dask_gateway client computes on it; tasks asking for
resources={"hpc": 1} run only on the Slurm jobs (seen from inside the tasks); the hpc group is scaled
through the AF API; a gateway killed with SIGKILL adopts both groups' jobs (same ids) and stopping the
cluster leaves neither queue a job of it. Then overflow: with default_worker_group.overflow {group: hpc,
after: 10}, a pool whose cores another user's job takes sends the cluster's waiting workers to Slurm
after 10 s (their HTCondor jobs stay queued), and takes them back (retired gracefully) when the
blocker is removed. Last, GPU groups on machines without GPUs: HTCondor keeps the GPU job idle, Slurm refuses
its --gres at submission, and the API says so.

The gateway runs as root (both prefixes need it); the cluster's directory is on the one filesystem both
batch systems' jobs see under the same path, which is what a group on another batch system needs.
"""

from __future__ import annotations

import json
import os
import re
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


OVERFLOW_AFTER = 10


def blocker_job(cpus: int) -> str:
    """Another user's job that takes every free core of the pool's one machine."""
    return "\n".join(["executable = /bin/sleep", "arguments = 600", f"request_cpus = {cpus}", "request_memory = 64",
                      "request_disk = 10MB", "queue", ""])


def free_cpus(pool) -> int:
    lines = pool.run("condor_status", "-af", "Cpus", "PartitionableSlot").split("\n")
    return sum(int(f[0]) for f in (line.split() for line in lines) if len(f) == 2 and f[1] == "true")


def test_a_full_pool_overflows_to_slurm_and_takes_its_workers_back_when_slots_free_up(pool, slurm):
    g = GatewayUnderTest(pool.run_dir / "overflow", lambda port, data: {
        **mixed_config(pool, slurm, port, data), "default_worker_group": {"overflow": {"group": "hpc", "after": OVERFLOW_AFTER}}})
    g.dir.chmod(0o711)
    blocker = None
    cluster = g.gateway("alice").new_cluster()  # its scheduler is an HTCondor job: started before the pool fills up
    name = cluster.name
    mine = f'AfGatewayCluster == "{name}"'
    try:
        wait_until(lambda: free_cpus(pool) > 0 and g.af_cluster(name)["status"] == "RUNNING", 60, "a running cluster and free cores")
        # bob's job takes every free core: alice's workers can only wait for a slot
        cpus = free_cpus(pool)
        blocker = pool.run_as("af-bob", "condor_submit", "-terse", "-", input=blocker_job(cpus)).split()[0]
        wait_until(lambda: any(j["JobStatus"] == 2 for j in pool.jobs('Owner == "af-bob"')) and free_cpus(pool) == 0, 60,
                   lambda: f"bob's blocker ({cpus} cores) running and the pool full: {pool.jobs('true')}")
        t0 = time.monotonic()
        cluster.scale(2)

        def overflowed():
            gs = groups(g, name)
            return gs if gs["default"]["overflow"]["workers"] == 2 and gs["hpc"]["running"] == 2 else None
        gs = wait_until(overflowed, OVERFLOW_AFTER + 60, lambda: f"2 workers overflowed to hpc: {groups(g, name)}; log: {g.log.read_text()[-3000:]}")
        took = time.monotonic() - t0
        message = g.af_cluster(name)["message"]
        print(f"pool full: 2 workers running on Slurm {took:.1f} s after the scale (overflow after {OVERFLOW_AFTER} s): {message!r}")
        assert took >= OVERFLOW_AFTER, took
        assert re.fullmatch(r"2 workers of default waited \d+ s for HTCondor slots: starting 2 in hpc \(Slurm\)", message), message
        # default's two jobs are still queued in HTCondor (idle), and counted as pending with HTCondor's reason
        assert gs["default"]["pending"] == 2 and all("waiting for a slot" in r for r in gs["default"]["pending_reasons"]), gs["default"]
        assert sorted(j["JobStatus"] for j in condor_worker_jobs(pool, name)) == [1, 1]
        client = cluster.get_client()
        client.wait_for_workers(2, timeout=60)
        assert client.submit(sum, range(10)).result(timeout=60) == 45
        assert all(s["slurm_job"] for s in client.run(where_am_i).values())  # every connected worker is a Slurm job
        assert g.af_cluster(name)["status"] == "RUNNING"

        # the slots free up: default's jobs start, and hpc's overflow workers are retired (their Slurm jobs end)
        pool.run_as("af-bob", "condor_rm", blocker.split(".")[0])
        blocker = None
        t1 = time.monotonic()
        wait_until(lambda: (lambda gs: gs["default"]["running"] == 2 and gs["hpc"]["target"] == 0 and gs["default"]["overflow"]["workers"] == 0)(groups(g, name))
                   and not slurm_jobs(slurm, name, states=LIVE), 120,
                   lambda: f"default running on HTCondor and no hpc job left: {groups(g, name)} {slurm_jobs(slurm, name)}")
        message = g.af_cluster(name)["message"]
        print(f"slots free: default's 2 workers running on HTCondor, hpc's retired {time.monotonic() - t1:.1f} s after the blocker left: {message!r}")
        assert re.fullmatch(r"HTCondor has room again: retiring [12] workers? of hpc", message), message
        assert len(running_condor_ids(pool, name)) == 2
        assert all(s["condor"] for s in client.run(where_am_i).values())
        assert client.submit(sum, range(10)).result(timeout=60) == 45
        info = g.af_cluster(name)
        assert info["workers"]["failed"] == 0, info
        client.close()
    finally:
        if blocker:
            pool.run_as("af-bob", "condor_rm", blocker.split(".")[0])
        cluster.shutdown()
        try:
            wait_until(lambda: not slurm_jobs(slurm, name, states=LIVE) and not pool.jobs(mine), 60,
                       lambda: f"no job of {name} left: {slurm_jobs(slurm, name)} {pool.jobs(mine)}")
        finally:
            stop(g.proc)


def test_gpu_groups_ask_the_real_batch_systems_for_gpus_the_test_machine_does_not_have(pool, slurm):
    """No GPU here: what shows that the GPUs reach the batch systems is how they answer. HTCondor keeps the GPU group's
    job idle (request_gpus = 1 in its ad) while a default worker of the same cluster runs; the API shows it pending with
    HTCondor's reason. Slurm, which has no GPU GRES configured, refuses --gres=gpu:1 at sbatch: the group's starts fail
    with Slurm's words and the group is scaled to 0. Default keeps computing meanwhile."""
    def config(port, data):
        c = mixed_config(pool, slurm, port, data)
        slurm_backend = c["worker_groups"][0]["backend"]
        c["worker_groups"] += [
            {"name": "gpu", "description": "GPU slots of the pool", "gpus": 1, "worker_cores": 1, "worker_memory": 1},
            {"name": "hpc-gpu", "description": "GPU nodes of Slurm", "backend": slurm_backend, "gpus": 1, "worker_cores": 1, "worker_memory": 1},
        ]
        return c
    g = GatewayUnderTest(pool.run_dir / "gpus", config)
    try:
        g.dir.chmod(0o711)
        cluster = g.gateway("alice").new_cluster()
    except BaseException:
        stop(g.proc)  # a gateway whose first cluster failed is not left running
        raise
    name = cluster.name
    mine = f'AfGatewayCluster == "{name}"'
    try:
        cluster.scale(1)
        r = scale_group(g, name, "gpu", 1)
        assert r.status_code == 200, r.text
        assert r.json()["gpus"] == 1 and r.json()["resources"] == {"GPU": 1}, r.json()
        client = cluster.get_client()
        client.wait_for_workers(1, timeout=120)
        gs = wait_until(lambda: (lambda gs: gs if gs["default"]["running"] == 1 and gs["gpu"]["pending"] == 1 else None)(groups(g, name)), 60,
                        lambda: f"default running and gpu pending: {groups(g, name)}")
        ads = json.loads(pool.run("condor_q", "-allusers", "-json", "-constraint", mine, "-attributes", "AfGatewayWorker,JobStatus,RequestGPUs") or "[]")
        gpu_jobs = [a for a in ads if a.get("AfGatewayWorker", "").endswith("_gpu")]
        assert [(a["JobStatus"], a.get("RequestGPUs")) for a in gpu_jobs] == [(1, 1)], ads
        assert all(a.get("RequestGPUs") is None for a in ads if not a.get("AfGatewayWorker", "").endswith("_gpu")), ads
        assert gs["gpu"]["starting"] == 1 and re.match(r"HTCondor job \d+\.0 is waiting for a slot", gs["gpu"]["pending_reasons"][0]), gs["gpu"]
        print(f"HTCondor: the gpu worker's job (RequestGPUs 1) stays idle: {gs['gpu']['pending_reasons']}")
        assert client.submit(sum, range(10)).result(timeout=60) == 45  # on default's worker

        r = scale_group(g, name, "hpc-gpu", 1)
        assert r.status_code == 200, r.text
        gs = wait_until(lambda: (lambda gs: gs if gs["hpc-gpu"]["target"] == 0 and gs["hpc-gpu"]["message"] else None)(groups(g, name)), 90,
                        lambda: f"hpc-gpu's starts failing: {groups(g, name)}; log: {g.log.read_text()[-3000:]}")
        print(f"Slurm: {gs['hpc-gpu']['message']}")
        assert re.search(r"3 workers in a row failed to start; the last one could not be started: .*gres.*; the group was scaled to 0",
                         gs["hpc-gpu"]["message"], re.I), gs["hpc-gpu"]
        assert not slurm_jobs(slurm, name, states=LIVE)
        assert g.af_cluster(name)["status"] == "RUNNING" and gs["gpu"]["pending"] == 1 and gs["default"]["running"] == 1
        client.close()
    finally:
        cluster.shutdown()
        try:
            wait_until(lambda: not slurm_jobs(slurm, name, states=LIVE) and not pool.jobs(mine), 60,
                       lambda: f"no job of {name} left: {slurm_jobs(slurm, name)} {pool.jobs(mine)}")
        finally:
            stop(g.proc)
