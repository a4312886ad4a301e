"""The HTCondor backend against a real HTCondor pool (Debian trixie's htcondor in a chroot, started
by scripts/htcondor-pool.sh), with the real dask_gateway client and real Dask workers running as
HTCondor jobs of the pool's non-root user.

One module-scoped pool and gateway; each test checks one thing a facility user relies on. The
scaled cluster's `condor_q` is printed (pytest -s shows it).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from af_e2e_support import REPO, GatewayUnderTest, stop
from conftest import IS_PEER, wait_until

pytestmark = [
    pytest.mark.skipif(IS_PEER, reason="peer mode: dask-gateway-server has no HTCondor backend"),
    pytest.mark.timeout(300),  # jobs wait for the negotiator; a loaded 2-core machine is slower
]

POOL_SCRIPT = REPO / "scripts" / "htcondor-pool.sh"


def _pool_env(run_dir: Path) -> dict:
    out = subprocess.run(["bash", "-c", 'source "$1/pool.env"; echo "$CONDOR_CMD_JSON"; echo "$CONDOR_UID"', "_", str(run_dir)],
                         check=True, capture_output=True, text=True).stdout.split("\n")
    return {"cmd": json.loads(out[0]), "uid": int(out[1])}


class Pool:
    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        env = _pool_env(run_dir)
        self.cmd = env["cmd"]
        self.uid = env["uid"]

    def run(self, *args: str, check=True) -> str:
        return subprocess.run([*self.cmd, *args], check=check, capture_output=True, text=True, timeout=60).stdout

    def jobs(self, constraint: str) -> list[dict]:
        text = self.run("condor_q", "-allusers", "-json", "-constraint", constraint,
                        "-attributes", "ClusterId,ProcId,JobStatus,AfGatewayCluster,AfGatewayWorker,HoldReason,Owner")
        return json.loads(text) if text.strip() else []


@pytest.fixture(scope="module")
def pool():
    run_dir = Path(tempfile.mkdtemp(prefix="af-htcondor-"))
    run_dir.chmod(0o755)  # the jobs' user reads its cluster files below it
    subprocess.run(["bash", str(POOL_SCRIPT), "start", str(run_dir)], check=True, timeout=300)
    try:
        yield Pool(run_dir)
    finally:
        subprocess.run(["bash", str(POOL_SCRIPT), "stop", str(run_dir)], timeout=120)
        subprocess.run(["rm", "-rf", str(run_dir)])


def _gateway_config(pool: Pool, port: int, data_dir: Path, **htcondor) -> dict:
    return {
        "listen": f"127.0.0.1:{port}",
        "data_dir": str(data_dir),
        "log_level": "debug",
        "backend": {
            "type": "htcondor",
            "htcondor": {
                "command_prefix": pool.cmd,
                "file_owner": f"{pool.uid}:{pool.uid}",
                "poll_period": 1,
                "request_disk": "100MB",
                **htcondor,
            },
        },
        "cluster": {"check_period": 1, "adaptive_period": 1, "heartbeat_period": 2, "worker_start_timeout": 20,
                    "stop_on_shutdown": True},
        # The test pool has no container runtime: docker-encapsulated steps run on the execute node as they are.
        "workflows": {"images": "ignore", "poll_period": 0.5},
    }


class Gw(GatewayUnderTest):
    def __init__(self, pool: Pool, name: str, **htcondor):
        super().__init__(pool.run_dir / name, lambda port, data: _gateway_config(pool, port, data, **htcondor))


@pytest.fixture(scope="module")
def gw(pool):
    g = Gw(pool, "main")
    yield g
    stop(g.proc)


def _wait_queue_empty(pool: Pool, cluster: str, gw: "Gw") -> None:
    mine = f'AfGatewayCluster == "{cluster}"'
    wait_until(lambda: not pool.jobs(mine), 60,
               lambda: f"an empty queue after shutdown; queue: {pool.jobs(mine)}; gateway log: {gw.log.read_text()[-3000:]}")


def _running_jobs(pool: Pool, cluster: str) -> list[dict]:
    return [j for j in pool.jobs(f'AfGatewayCluster == "{cluster}"') if j["JobStatus"] == 2]


def test_scale_compute_adapt_and_shutdown_leave_an_empty_queue(pool, gw):
    gateway = gw.gateway()
    cluster = gateway.new_cluster()
    try:
        cluster.scale(3)
        mine = f'AfGatewayCluster == "{cluster.name}"'
        jobs = wait_until(lambda: (lambda j: j if len(j) == 3 else None)(_running_jobs(pool, cluster.name)), 120,
                          lambda: f"3 running jobs; queue: {pool.jobs(mine)}")
        # One scale step, one submission: one HTCondor cluster id, three procs.
        assert len({j["ClusterId"] for j in jobs}) == 1
        print("condor_q of the cluster scaled to 3:\n" + pool.run("condor_q", "-allusers", "-nobatch",
              "-af:h", "ClusterId", "ProcId", "Owner", "JobStatus", "RequestCpus", "RequestMemory", "AfGatewayWorker"))
        client = cluster.get_client()
        client.wait_for_workers(3, timeout=120)
        workers = client.scheduler_info()["workers"].values()
        # The jobs are the workers: the names the scheduler reports are the jobs' AfGatewayWorker.
        assert sorted(w["name"] for w in workers) == sorted(j["AfGatewayWorker"] for j in jobs)
        assert client.submit(sum, range(10)).result() == 45
        assert sum(client.gather(client.map(lambda x: x * x, range(100)))) == 328350

        # Adaptive: idle, it goes down to the minimum; given work, up again (jobs follow).
        cluster.adapt(minimum=1, maximum=4)
        wait_until(lambda: len(pool.jobs(f'AfGatewayCluster == "{cluster.name}"')) == 1, 120, "adaptive scale-down to 1 job")
        futures = client.map(lambda x: __import__("time").sleep(0.5) or x, range(200))
        wait_until(lambda: len(_running_jobs(pool, cluster.name)) >= 2, 120, "adaptive scale-up to 2+ running jobs")
        assert sum(client.gather(futures)) == sum(range(200))
        client.close()
    finally:
        cluster.shutdown()
    _wait_queue_empty(pool, cluster.name, gw)


def test_a_job_no_machine_can_run_is_reported_as_waiting(pool):
    g = Gw(pool, "impossible", requirements="(TARGET.Memory > 100000000)")
    try:
        gateway = g.gateway("bob")
        cluster = gateway.new_cluster()
        try:
            cluster.scale(1)
            info = wait_until(lambda: (lambda c: c if any("waiting for a slot" in w["message"] for w in c["workers"]["list"]) else None)(g.af_cluster(cluster.name, "bob")),
                              60, "a worker reported as waiting for a slot")
            # Past the worker start timeout (20 s) it is still waiting, not failed.
            time.sleep(25)
            info = g.af_cluster(cluster.name, "bob")
            assert info["status"] == "RUNNING"
            assert info["workers"]["failed"] == 0
            assert [w["status"] for w in info["workers"]["list"]] == ["STARTING"]
            assert "waiting for a slot" in info["workers"]["list"][0]["message"]
        finally:
            cluster.shutdown()
        _wait_queue_empty(pool, cluster.name, g)
    finally:
        stop(g.proc)


def test_a_held_jobs_reason_reaches_the_user_and_the_worker_is_replaced(pool, gw):
    gateway = gw.gateway("carol")
    cluster = gateway.new_cluster()
    try:
        cluster.scale(1)
        job = wait_until(lambda: (_running_jobs(pool, cluster.name) or [None])[0], 120, "a running job")
        pool.run("condor_hold", "-reason", "disk quota exceeded on the test node", f"{job['ClusterId']}.{job['ProcId']}")
        info = wait_until(lambda: (lambda c: c if "disk quota exceeded on the test node" in c["message"] else None)(gw.af_cluster(cluster.name, "carol")),
                          60, "the hold reason in the cluster's message")
        assert f"HTCondor held job {job['ClusterId']}.{job['ProcId']}" in info["message"]
        # The held job is removed and a new one runs in its place.
        wait_until(lambda: all(j["JobStatus"] != 5 for j in pool.jobs(f'AfGatewayCluster == "{cluster.name}"')), 60, "the held job removed")
        wait_until(lambda: len(_running_jobs(pool, cluster.name)) == 1 and _running_jobs(pool, cluster.name)[0]["ClusterId"] != job["ClusterId"],
                   120, "a replacement job running")
    finally:
        cluster.shutdown()
    _wait_queue_empty(pool, cluster.name, gw)


def test_a_restarted_gateway_adopts_running_jobs_and_removes_orphans(pool, gw):
    gateway = gw.gateway("dave")
    cluster = gateway.new_cluster()
    try:
        cluster.scale(2)
        before = wait_until(lambda: (lambda j: j if len(j) == 2 else None)(_running_jobs(pool, cluster.name)), 120, "2 running jobs")
        client = cluster.get_client()
        client.wait_for_workers(2, timeout=120)
        # An orphan: a job tagged as this gateway's that no cluster knows (left by a crash mid-submit).
        orphan_sub = pool.run_dir / "orphan.sub"
        instance = _instance_of(gw)
        orphan_sub.write_text("\n".join([
            "executable = /bin/sleep", "arguments = 600", "request_memory = 64", "request_disk = 10MB",
            f'+AfGatewayInstance = "{instance}"', '+AfGatewayCluster = "orphan"', "queue", ""]))
        orphan = pool.run("condor_submit", "-terse", str(orphan_sub)).split()[0]

        os.killpg(gw.proc.pid, signal.SIGKILL)
        gw.proc.wait(10)
        gw.start()
        wait_until(lambda: not pool.jobs('AfGatewayCluster == "orphan"'), 60, f"orphan job {orphan} removed")
        after = _running_jobs(pool, cluster.name)
        assert sorted((j["ClusterId"], j["ProcId"]) for j in after) == sorted((j["ClusterId"], j["ProcId"]) for j in before)
        assert client.submit(sum, range(10)).result() == 45
        info = wait_until(lambda: (lambda c: c if c["workers"]["running"] == 2 else None)(gw.af_cluster(cluster.name, "dave")), 30,
                          lambda: f"2 running workers after the restart; cluster: {gw.af_cluster(cluster.name, 'dave')}; log: {gw.log.read_text()[-4000:]}")
        assert info["workers"]["failed"] == 0
        client.close()
    finally:
        cluster.shutdown()
    _wait_queue_empty(pool, cluster.name, gw)


def _instance_of(g: Gw) -> str:
    import hashlib
    return "af-gateway-" + hashlib.sha256(str(Path(g.config["data_dir"]).resolve()).encode()).hexdigest()[:12]


def test_the_scheduler_can_run_as_an_htcondor_job_too(pool):
    g = Gw(pool, "schedjob", scheduler_in_job=True)
    try:
        gateway = g.gateway("erin")
        cluster = gateway.new_cluster()
        try:
            try:
                cluster.scale(1)
            except Exception as e:
                # Once in CI the scheduler job did not answer right after it reported itself running:
                # keep what explains it (the job's starts, the gateway's view).
                starts = pool.run("condor_history", "-constraint", f'AfGatewayCluster == "{cluster.name}"', "-af:h",
                                  "ClusterId", "ProcId", "JobStatus", "NumJobStarts", "NumShadowStarts", "LastHoldReason", check=False)
                queue = pool.run("condor_q", "-allusers", "-constraint", f'AfGatewayCluster == "{cluster.name}"', "-af:h",
                                 "ClusterId", "ProcId", "JobStatus", "NumJobStarts", "NumShadowStarts", check=False)
                raise AssertionError(f"scale(1) failed: {e}\nqueue:\n{queue}\nhistory:\n{starts}\n"
                                     f"gateway log:\n{g.log.read_text()[-6000:]}") from e
            jobs = wait_until(lambda: (lambda j: j if len(j) == 2 else None)(_running_jobs(pool, cluster.name)), 120,
                              "the scheduler job and one worker job running")
            assert sorted(j["AfGatewayWorker"] == "scheduler" for j in jobs) == [False, True]
            client = cluster.get_client()
            client.wait_for_workers(1, timeout=120)
            assert client.submit(sum, range(10)).result() == 45
            client.close()
        finally:
            cluster.shutdown()
        _wait_queue_empty(pool, cluster.name, g)
    finally:
        stop(g.proc)


# --- workflow steps as HTCondor jobs -------------------------------------------------------------

EXAMPLES = REPO / "examples" / "workflows"


def _workflow_api(g: Gw, method: str, path: str = "", user="alice", **kw):
    r = requests.request(method, f"{g.url}/api/af/workflows{path}", auth=(user, ""), timeout=30, **kw)
    return r


def _wait_run(g: Gw, run_id: str, timeout=180) -> dict:
    def done():
        d = _workflow_api(g, "GET", f"/{run_id}").json()
        return d if d["run"]["status"] in ("SUCCESS", "FAILED", "CANCELLED") else None
    return wait_until(done, timeout, lambda: f"run {run_id} to finish; now {_workflow_api(g, 'GET', f'/{run_id}').json()['run']}")


def test_map_reduce_steps_run_as_htcondor_jobs(pool, gw):
    files = {f: (EXAMPLES / "map-reduce" / f).read_text() for f in ("workflow.yml", "steps.yml")}
    r = _workflow_api(gw, "POST", json={"entry": "workflow.yml", "files": files, "parameters": {"nfiles": 4}})
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["backend"] == "htcondor"
    dag = _wait_run(gw, run["id"])
    assert dag["run"]["status"] == "SUCCESS", json.dumps([n.get("message") for n in dag["nodes"]])
    total = next(n for n in dag["nodes"] if n["id"] == "reduce")["outputs"]["total"]
    assert Path(total).read_text().strip() == "10"  # 1+2+3+4 words
    # every step was an HTCondor job of the pool's user, tagged with the run; the map stage's 4 steps
    # were one submission (one cluster id)
    jobs = {j["AfGatewayStep"]: j for j in json.loads(pool.run(
        "condor_history", "-json", "-constraint", f'AfGatewayWorkflow == "{run["id"]}"',
        "-attributes", "ClusterId,ProcId,AfGatewayStep,Owner,ExitCode") or "[]")}
    assert sorted(jobs) == ["acquire", "map:0", "map:1", "map:2", "map:3", "reduce"]
    assert {j["Owner"] for j in jobs.values()} == {"afcondor"}
    assert {j["ExitCode"] for j in jobs.values()} == {0}
    assert len({jobs[f"map:{i}"]["ClusterId"] for i in range(4)}) == 1
    for n in dag["nodes"][1:]:
        j = jobs[n["id"]]
        assert n["job"] == f"HTCondor job {j['ClusterId']}.{j['ProcId']}"
    log = _workflow_api(gw, "GET", f"/{run['id']}/nodes/map:1/log").text
    assert f"step map:1 of workflow run {run['id']}, attempt 1" in log


def test_a_workflow_step_job_outlives_a_gateway_crash_and_is_adopted(pool, gw):
    spec = """stages:
  - name: slow
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {out: '{workdir}/out.txt'}
      step:
        process: {process_type: interpolated-script-cmd, script: "sleep 8; echo survived > {out}"}
        publisher: {publisher_type: frompar-pub, outputmap: {out: out}}
        environment: {environment_type: localproc-env}
"""
    r = _workflow_api(gw, "POST", json={"entry": "wf.yml", "files": {"wf.yml": spec}})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    running = wait_until(lambda: (lambda n: n if n["state"] == "RUNNING" and pool.jobs(f'AfGatewayWorkflow == "{run_id}" && JobStatus == 2') else None)(
        _workflow_api(gw, "GET", f"/{run_id}").json()["nodes"][1]), 120, "the step's job running")
    os.killpg(gw.proc.pid, signal.SIGKILL)
    gw.proc.wait(10)
    gw.start()
    dag = _wait_run(gw, run_id)
    slow = dag["nodes"][1]
    assert dag["run"]["status"] == "SUCCESS", slow.get("message")
    assert slow["job"] == running["job"] and slow["attempts"] == 1
    assert Path(slow["outputs"]["out"]).read_text().strip() == "survived"
