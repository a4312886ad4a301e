"""The Slurm backend against a real Slurm (Debian 12's slurm-wlm 22.05 and munge, one node with 8
CPUs in partitions debug and hpc, started by scripts/slurm-cluster.sh), with the unmodified
dask_gateway client and real Dask schedulers and workers running as Slurm jobs of each user's own
account (af-alice, af-bob, af-mallory from scripts/test-accounts.sh).

The gateway runs as root (the cluster's prefix, setpriv, needs it) and submits and cancels through
`setpriv --reuid={uid} --regid={gid}`, so every job is its user's and runs as that user; it reads
the queue with one squeue as itself. One module-scoped Slurm and gateway; each test checks one thing
a facility user relies on, and leaves no job of its clusters in the queue. What every backend does alike
(a cancelled worker reported and replaced, kill -9 adoption of the same jobs, orphan cancelling with
mallory's forgery left alone) is asserted once for all in test_backend_contract.py.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import requests

from af_e2e_support import REPO, assert_heartbeats_cannot_leave, clients_with_a_worker, read_api_token, stop, try_read, whoami
from conftest import IS_PEER, wait_until
from slurm_support import LIVE, SlurmGateway as Gw, cluster_jobs as _jobs, running_slurm, running_worker_jobs as _running
from slurm_support import wait_no_jobs as _wait_no_jobs

pytestmark = [
    pytest.mark.skipif(IS_PEER, reason="peer mode: dask-gateway-server has no Slurm backend here"),
    pytest.mark.skipif(os.geteuid() != 0, reason="slurmd, munged and the test accounts need root"),
    pytest.mark.timeout(300),
]


@pytest.fixture(scope="module")
def slurm():
    with running_slurm() as s:
        yield s


@pytest.fixture(scope="module")
def gw(slurm):
    g = Gw(slurm, "main")
    yield g
    stop(g.proc)


def test_scale_compute_and_scale_down_on_slurm_jobs_of_the_owner(slurm, gw):
    cluster = gw.gateway("alice").new_cluster()
    try:
        cluster.scale(2)
        jobs = wait_until(lambda: (lambda j: j if len(j) == 2 else None)(_running(slurm, cluster.name)), 120,
                          lambda: f"2 running worker jobs; queue: {slurm.jobs()}; log: {gw.tail()}")
        # One scale step, one sbatch: one job array, two tasks; every job (the scheduler's too) af-alice's
        assert len({j["array"] for j in jobs}) == 1 and sorted(j["id"].split("_")[1] for j in jobs) == ["0", "1"]
        mine = _jobs(slurm, cluster.name) + _jobs(slurm, cluster.name, "s")
        assert {j["user"] for j in mine} == {"af-alice"} and len(mine) == 3
        print("squeue of the cluster scaled to 2:\n" + slurm.run("squeue", "-r", "-o", "%i %u %T %C %m %j").stdout)
        client = cluster.get_client()
        client.wait_for_workers(2, timeout=120)
        assert client.submit(sum, range(10)).result() == 45
        assert sum(client.gather(client.map(lambda x: x * x, range(100)))) == 328350
        assert set(client.run(whoami).values()) == {"af-alice"}
        assert client.run_on_scheduler(whoami) == "af-alice"

        # Scale down: one worker retires and its job leaves the queue (cancelled by af-alice)
        cluster.scale(1)
        wait_until(lambda: len(_jobs(slurm, cluster.name, states=LIVE)) == 1, 60,
                   lambda: f"one worker job left; queue: {_jobs(slurm, cluster.name)}")
        client.wait_for_workers(1, timeout=30)
        assert client.submit(sum, [1, 2]).result() == 3
        client.close()
    finally:
        cluster.shutdown()
    _wait_no_jobs(slurm, cluster.name, gw)


def test_a_worker_that_cannot_start_waits_with_slurms_reason(slurm, gw):
    """A worker asking for more than the node has stays pending, with Slurm's reason in the API, past
    the worker start timeout (20 s) and without failing: the engine does not count Slurm's queue."""
    g = gw.gateway("bob")
    cpus = slurm.facts["CPUS"]
    # more cores than the node has at all; and all of its cores, of which the scheduler's job holds one
    never = g.new_cluster(worker_cores=cpus * 2)
    busy = g.new_cluster(worker_cores=cpus)
    try:
        never.scale(1)
        busy.scale(1)

        def reason(cluster, word):
            info = gw.af_cluster(cluster.name, "bob")
            msgs = [w["message"] for w in info["workers"]["list"]]
            return info if any(word in m for m in msgs) else None
        wait_until(lambda: reason(never, "PartitionConfig"), 60, lambda: f"PartitionConfig in the worker's message: {gw.af_cluster(never.name, 'bob')}")
        info = wait_until(lambda: reason(busy, "Resources"), 60, lambda: f"Resources in the worker's message: {gw.af_cluster(busy.name, 'bob')}")
        print("the waiting worker, as the API shows it:", json.dumps(info["workers"]["list"], indent=1))
        job = _jobs(slurm, busy.name)[0]
        assert f"Slurm job {job['id']} is pending" in info["workers"]["list"][0]["message"]
        assert (job["state"], job["reason"], job["cpus"]) == ("PENDING", "Resources", str(cpus))
        time.sleep(25)  # past the worker start timeout
        for c, word in ((never, "PartitionConfig"), (busy, "Resources")):
            info = gw.af_cluster(c.name, "bob")
            assert info["status"] == "RUNNING" and info["workers"]["failed"] == 0, info
            assert [w["status"] for w in info["workers"]["list"]] == ["STARTING"], info
            assert word in info["workers"]["list"][0]["message"], info
    finally:
        never.shutdown()
        busy.shutdown()
    _wait_no_jobs(slurm, never.name, gw)
    _wait_no_jobs(slurm, busy.name, gw)


def test_bob_can_neither_see_nor_stop_alices_cluster_nor_read_its_files(slurm, gw):
    from dask_gateway import Gateway  # noqa: F401 - the client under test
    alice_gw, bob_gw = gw.gateway("alice"), gw.gateway("bob")
    alice = alice_gw.new_cluster()
    bob = bob_gw.new_cluster()
    try:
        ac, bc = clients_with_a_worker((alice, bob), 120)
        assert alice.name not in [c.name for c in bob_gw.list_clusters()]
        with pytest.raises(Exception, match="403|404"):
            bob_gw.connect(alice.name)
        with pytest.raises(Exception, match="403|404"):
            bob_gw.stop_cluster(alice.name)
        for method, path, body in (("GET", "", None), ("DELETE", "", None), ("POST", "/scale", {"count": 0}), ("POST", "/adapt", {"minimum": 0, "maximum": 0})):
            r = requests.request(method, f"{gw.url}/api/v1/clusters/{alice.name}{path}", json=body, auth=("bob", ""), timeout=30)
            assert r.status_code in (403, 404) and "tls_key" not in r.text, (method, path, r.status_code, r.text)
        # bob's tasks, on his workers and scheduler (jobs of af-bob), read nothing of alice's or the gateway's
        d = gw.data
        a_dir = d / "clusters" / alice.name
        theirs = [str(a_dir / f) for f in ("dask.pem", "api-token", "bearer-token")] + [str(a_dir), str(a_dir / "jobs"),
                  str(d / "state.sqlite"), str(d), f"/proc/{gw.proc.pid}/environ"]
        mine = [str(d / "clusters" / bob.name / "dask.pem")]
        for label, seen in (("worker", bc.submit(try_read, theirs + mine).result()),
                            ("scheduler", bc.run_on_scheduler(try_read, theirs + mine))):
            for p in theirs:
                assert seen[p] == "PermissionError", f"bob's {label} task got {p}: {seen[p]}"
            assert seen[mine[0]].startswith("read:"), f"bob's {label} could not read his own key: {seen[mine[0]]}"
        # bob's scheduler job holds his cluster's API token: heartbeats of his own naming another host than
        # the node Slurm runs the job on are refused, and his real scheduler goes on counting
        assert_heartbeats_cannot_leave(gw.url, bob.name, bc.run_on_scheduler(read_api_token), hosts=("169.254.169.254", "10.96.0.1", "[::2]"))
        assert bc.submit(sum, [1, 2]).result(timeout=60) == 3
        # alice's cluster went on working, and is still hers
        assert ac.submit(sum, range(10)).result() == 45
        assert {j["user"] for j in _jobs(slurm, alice.name) + _jobs(slurm, alice.name, "s")} == {"af-alice"}
        assert {j["user"] for j in _jobs(slurm, bob.name) + _jobs(slurm, bob.name, "s")} == {"af-bob"}
        ac.close()
        bc.close()
    finally:
        alice.shutdown()
        bob.shutdown()
    _wait_no_jobs(slurm, alice.name, gw)
    _wait_no_jobs(slurm, bob.name, gw)


def test_stopping_the_gateway_cancels_every_job_of_its_clusters(slurm):
    g = Gw(slurm, "shutdown")
    names = []
    try:
        # (the gateway stops them: the client's objects must not try to once it is gone)
        clusters = [g.gateway(u).new_cluster(shutdown_on_close=False) for u in ("alice", "bob")]
        names = [c.name for c in clusters]
        for c in clusters:
            c.scale(2)
        wait_until(lambda: all(len(_running(slurm, n)) == 2 for n in names), 120, lambda: f"2 running workers each; queue: {slurm.jobs()}")
    finally:
        stop(g.proc)  # SIGTERM: stop_on_shutdown stops every cluster
    for n in names:
        _wait_no_jobs(slurm, n, g)
        assert {j["state"] for j in slurm.jobs() if j["name"].endswith(f".{n}")} == {"CANCELLED"}


def test_the_scheduler_can_run_next_to_the_gateway(slurm):
    """scheduler_placement: local: the scheduler runs through the local backend (as the user's account,
    by its launcher), only the workers are Slurm jobs."""
    g = Gw(slurm, "schedlocal", scheduler_placement="local")
    try:
        cluster = g.gateway("alice").new_cluster()
        try:
            (client,) = clients_with_a_worker((cluster,), 120)
            # one worker job, af-alice's, and no scheduler job; the scheduler (next to the gateway) is af-alice's too
            assert [j["user"] for j in _running(slurm, cluster.name)] == ["af-alice"] and not _jobs(slurm, cluster.name, "s")
            assert (client.submit(sum, range(10)).result(), client.run_on_scheduler(whoami)) == (45, "af-alice")
            client.close()
        finally:
            cluster.shutdown()
        _wait_no_jobs(slurm, cluster.name, g)
    finally:
        stop(g.proc)


EXAMPLES = REPO / "examples" / "workflows"


def test_map_reduce_steps_run_as_slurm_jobs_of_the_owner(slurm, gw):
    files = {f: (EXAMPLES / "map-reduce" / f).read_text() for f in ("workflow.yml", "steps.yml")}
    r = requests.post(f"{gw.url}/api/af/workflows", json={"entry": "workflow.yml", "files": files, "parameters": {"nfiles": 4}},
                      auth=("alice", ""), timeout=30)
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["backend"] == "slurm"

    def done():
        d = requests.get(f"{gw.url}/api/af/workflows/{run['id']}", auth=("alice", ""), timeout=30).json()
        return d if d["run"]["status"] in ("SUCCESS", "FAILED", "CANCELLED") else None
    dag = wait_until(done, 180, lambda: f"run {run['id']} to finish; log: {gw.tail()}")
    assert dag["run"]["status"] == "SUCCESS", json.dumps([n.get("message") for n in dag["nodes"]])
    total = next(n for n in dag["nodes"] if n["id"] == "reduce")["outputs"]["total"]
    assert Path(total).read_text().strip() == "10"  # 1+2+3+4 words
    # every step was a Slurm job of af-alice named for the run; the map stage's 4 steps one array
    steps = [j for j in slurm.jobs() if j["name"].endswith(f".r.{run['id']}")]
    assert {j["user"] for j in steps} == {"af-alice"} and {j["state"] for j in steps} == {"COMPLETED"}, steps
    by_node = {n["id"]: n["job"] for n in dag["nodes"][1:]}
    assert sorted(by_node) == ["acquire", "map:0", "map:1", "map:2", "map:3", "reduce"]
    arrays = {by_node[f"map:{i}"].removeprefix("Slurm job ").split("_")[0] for i in range(4)}
    assert len(arrays) == 1 and all(v.startswith("Slurm job ") for v in by_node.values()), by_node
    assert sorted(j["id"] for j in steps) == sorted(v.removeprefix("Slurm job ") for v in by_node.values())
