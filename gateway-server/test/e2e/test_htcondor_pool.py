"""The HTCondor backend against a real HTCondor pool (Debian trixie's htcondor in a chroot, started
by scripts/htcondor-pool.sh), with the real dask_gateway client and real Dask schedulers and workers
running as HTCondor jobs of each user's own account (af-alice, af-bob, af-mallory from
scripts/test-accounts.sh, known inside the pool by the same ids).

The gateway runs as root (the pool's chroot prefix needs it) and submits through
`chroot --userspec={uid}:{gid}`, so every job is its user's (Owner) and runs as that user. The
hostile tests have af-mallory's tasks try to read what is not theirs, and jobs plant links for the
gateway to follow; each fails if the protection it checks is removed.

One module-scoped pool and gateway; each test checks one thing a facility user relies on. The
scaled cluster's `condor_q` is printed (pytest -s shows it). What every backend does alike (a worker
no machine can run waiting, kill -9 adoption of the same jobs, orphan removal with mallory's forgery left
alone) is asserted once for all in test_backend_contract.py.
"""

from __future__ import annotations

import base64
import json
import os
import signal
from pathlib import Path

import pytest
import requests

from af_e2e_support import REPO, assert_heartbeats_cannot_leave, clients_with_a_worker, read_api_token, stop, try_read, whoami
from conftest import IS_PEER, wait_until
from condor_support import UserPoolGateway as Gw, running_user_pool, running_jobs as _running_jobs
from condor_support import wait_queue_empty as _wait_queue_empty, worker_jobs as _worker_jobs

pytestmark = [
    pytest.mark.skipif(IS_PEER, reason="peer mode: dask-gateway-server has no HTCondor backend"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the test pool and the test accounts need root"),
    pytest.mark.timeout(300),  # jobs wait for the negotiator; a loaded 2-core machine is slower
]

# In the gateway's environment: condor_submit must never see it ($ENV() in the admin's submit_extra probes it).
GATEWAY_SECRET = "af-test-gateway-secret-6b2e"


@pytest.fixture(scope="module")
def pool():
    # every gateway of this module is started with a secret in its environment
    os.environ["AF_TEST_GATEWAY_SECRET"] = GATEWAY_SECRET
    try:
        with running_user_pool() as p:
            yield p
    finally:
        os.environ.pop("AF_TEST_GATEWAY_SECRET", None)


@pytest.fixture(scope="module")
def gw(pool):
    g = Gw(pool, "main")
    yield g
    stop(g.proc)


def test_scale_compute_adapt_and_shutdown_leave_an_empty_queue(pool, gw):
    gateway = gw.gateway()
    cluster = gateway.new_cluster()
    try:
        cluster.scale(3)
        mine = f'AfGatewayCluster == "{cluster.name}"'
        jobs = wait_until(lambda: (lambda j: j if len(j) == 3 else None)(_running_jobs(pool, cluster.name)), 120,
                          lambda: f"3 running worker jobs; queue: {pool.jobs(mine)}")
        # One scale step, one submission: one HTCondor cluster id, three procs, all af-alice's
        # (and the scheduler's job too).
        assert len({j["ClusterId"] for j in jobs}) == 1
        assert {j["Owner"] for j in pool.jobs(mine)} == {"af-alice"}
        print("condor_q of the cluster scaled to 3:\n" + pool.run("condor_q", "-allusers", "-nobatch", "-constraint", mine,
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
        wait_until(lambda: len(_worker_jobs(pool, cluster.name)) == 1, 120, "adaptive scale-down to 1 job")
        futures = client.map(lambda x: __import__("time").sleep(0.5) or x, range(200))
        wait_until(lambda: len(_running_jobs(pool, cluster.name)) >= 2, 120, "adaptive scale-up to 2+ running jobs")
        assert sum(client.gather(futures)) == sum(range(200))
        client.close()
    finally:
        cluster.shutdown()
    _wait_queue_empty(pool, cluster.name, gw)


def test_a_held_jobs_reason_reaches_the_user_and_the_worker_is_replaced(pool, gw):
    gateway = gw.gateway("bob")
    cluster = gateway.new_cluster()
    try:
        cluster.scale(1)
        job = wait_until(lambda: (_running_jobs(pool, cluster.name) or [None])[0], 120, "a running job")
        # (held by its owner: a job is only its own account's, or the pool admin's, to hold)
        pool.run_as("af-bob", "condor_hold", "-reason", "disk quota exceeded on the test node", f"{job['ClusterId']}.{job['ProcId']}")
        info = wait_until(lambda: (lambda c: c if "disk quota exceeded on the test node" in c["message"] else None)(gw.af_cluster(cluster.name, "bob")),
                          60, "the hold reason in the cluster's message")
        assert f"HTCondor held job {job['ClusterId']}.{job['ProcId']}" in info["message"]
        # The held job is removed (by af-bob: condor_rm as the job's account) and a new one runs in its place.
        wait_until(lambda: all(j["JobStatus"] != 5 for j in pool.jobs(f'AfGatewayCluster == "{cluster.name}"')), 60, "the held job removed")
        wait_until(lambda: len(_running_jobs(pool, cluster.name)) == 1 and _running_jobs(pool, cluster.name)[0]["ClusterId"] != job["ClusterId"],
                   120, "a replacement job running")
    finally:
        cluster.shutdown()
    _wait_queue_empty(pool, cluster.name, gw)


# --- tenant isolation: every user is hostile -------------------------------------------------------

def _task_functions():
    """What the tasks run besides af_e2e_support's (defined in here so that cloudpickle sends it by
    value: the workers cannot import this test module)."""

    def plant_link(directory: str, name: str, target: str) -> str:
        import os as _os
        _os.symlink(target, _os.path.join(directory, name))
        return _os.path.join(directory, name)

    return plant_link


_plant_link = _task_functions()


def test_each_users_jobs_are_their_own_and_a_hostile_users_tasks_read_nothing_else(pool, gw):
    alice = gw.gateway("alice").new_cluster()
    # mallory's environment values try condor_submit's macros: they must stay literal
    sneaky = {"AF_STEAL": "$ENV(CONDOR_CONFIG)", "AF_MACRO": "$(AfWorker)-$RANDOM_CHOICE(a,b)-$"}
    mallory = gw.gateway("mallory").new_cluster(environment=sneaky)
    target = pool.run_dir / "root-owned-target"
    target.write_text("root only\n")
    target.chmod(0o600)
    try:
        ac, mc = clients_with_a_worker((alice, mallory), 120)
        # Every job (scheduler and worker) is its user's account's, and its processes run as it.
        owners = {c.name: {j["Owner"] for j in pool.jobs(f'AfGatewayCluster == "{c.name}"')} for c in (alice, mallory)}
        print("condor_q -af Owner AfGatewayCluster AfGatewayWorker:\n" + pool.run(
            "condor_q", "-allusers", "-af", "Owner", "AfGatewayCluster", "AfGatewayWorker"))
        assert owners == {alice.name: {"af-alice"}, mallory.name: {"af-mallory"}}
        assert mc.submit(whoami).result() == "af-mallory"
        assert mc.submit(lambda: {k: __import__("os").environ.get(k) for k in ("AF_STEAL", "AF_MACRO")}).result() == sneaky
        assert mc.run_on_scheduler(whoami) == "af-mallory"
        assert ac.submit(whoami).result() == "af-alice"

        # condor_submit got none of the gateway's environment: $ENV() of the admin's submit_extra
        # found no gateway secret (condor_submit's UNDEFINED), and CONDOR_CONFIG (given) set.
        probes = {(j["AfEnvProbe"], j["AfConfigProbe"]) for c in (alice, mallory) for j in pool.jobs(f'AfGatewayCluster == "{c.name}"')}
        assert probes == {("UNDEFINED", pool.config)}, probes

        data = gw.data
        a_dir = data / "clusters" / alice.name
        m_dir = data / "clusters" / mallory.name
        theirs = [str(a_dir / f) for f in ("dask.pem", "api-token", "dask.crt")] + [str(a_dir), str(a_dir / "jobs"),
                  str(data / "encrypt.key"), str(data / "state.sqlite"), str(data), str(data / "clusters"),
                  f"/proc/{gw.proc.pid}/environ"]
        mine = [str(m_dir / "dask.pem"), str(m_dir / "api-token"), str(m_dir / "jobs")]
        for label, seen in (("worker", mc.submit(try_read, theirs + mine).result()),
                            ("scheduler", mc.run_on_scheduler(try_read, theirs + mine))):
            for p in theirs:
                assert seen[p] == "PermissionError", f"mallory's {label} task got {p}: {seen[p]}"
            for p in mine:  # the control: the task can read what is its own
                assert seen[p].startswith(("read:", "listed:")), f"mallory's {label} task could not read its own {p}: {seen[p]}"
        assert (data.stat().st_mode & 0o777) == 0o711 and (data / "state.sqlite").stat().st_mode & 0o077 == 0

        # Links mallory plants in her job directory: the next submission (a scale step) and the
        # shutdown never act through them.
        mc.submit(_plant_link, str(m_dir / "jobs"), "dask.pem", str(target)).result()
        mc.submit(_plant_link, str(m_dir / "jobs"), "data", str(data)).result()
        mallory.scale(2)
        mc.wait_for_workers(2, timeout=120)
        assert (target.stat().st_uid, target.stat().st_mode & 0o777) == (0, 0o600)

        # alice's cluster went on working throughout
        assert ac.submit(sum, range(10)).result() == 45
        ac.close()
        mc.close()
    finally:
        alice.shutdown()
        mallory.shutdown()
    _wait_queue_empty(pool, alice.name, gw)
    _wait_queue_empty(pool, mallory.name, gw)
    assert (target.stat().st_uid, target.read_text()) == (0, "root only\n")
    assert (gw.data / "encrypt.key").exists() and (gw.data / "state.sqlite").exists()
    assert not (gw.data / "clusters" / mallory.name).exists()


def test_a_forged_heartbeat_cannot_point_the_gateway_away_from_the_job(pool, gw):
    """mallory's scheduler job holds her cluster's API token, so she can send heartbeats of her own.
    The gateway takes from them only ports on the machine the schedd says her job runs on: an
    address elsewhere (cloud metadata, the Kubernetes API, another host) is refused with a 422 and
    the cluster keeps the addresses it had."""
    mallory = gw.gateway("mallory").new_cluster()
    try:
        client = mallory.get_client()
        token = client.run_on_scheduler(read_api_token)
        assert_heartbeats_cannot_leave(gw.url, mallory.name, token, hosts=("169.254.169.254", "10.96.0.1", "kubernetes.default.svc", "[::1]"))
        # the dashboard proxy still reaches her real dashboard, in her job
        page = requests.get(f"{gw.url}/clusters/{mallory.name}/status", auth=("mallory", ""), timeout=60)
        assert page.status_code == 200 and "bokeh" in page.text.lower(), page.text[:300]
        # her real scheduler's own heartbeats still count: the cluster computes
        mallory.scale(1)
        client.wait_for_workers(1, timeout=120)
        assert client.submit(sum, [1, 2]).result(timeout=60) == 3
        assert "refused a heartbeat with addresses the backend does not accept" in gw.log.read_text()
        client.close()
    finally:
        mallory.shutdown()
    _wait_queue_empty(pool, mallory.name, gw)


def test_the_scheduler_can_run_next_to_the_gateway_too(pool):
    """scheduler_in_job: false: the scheduler runs through the local backend (as the user's
    account, by its launcher), the workers as the user's jobs."""
    g = Gw(pool, "schedlocal", scheduler_in_job=False)
    try:
        gateway = g.gateway("alice")
        try:
            cluster = gateway.new_cluster()
        except Exception as e:
            raise AssertionError(f"the cluster did not start: {e}\ngateway log:\n{g.log.read_text()[-5000:]}") from e
        try:
            cluster.scale(1)
            jobs = wait_until(lambda: (lambda j: j if len(j) == 1 else None)(_running_jobs(pool, cluster.name)), 120,
                              lambda: f"one worker job running; gateway log: {g.log.read_text()[-4000:]}")
            assert not [j for j in pool.jobs(f'AfGatewayCluster == "{cluster.name}"') if j["AfGatewayWorker"] == "scheduler"]
            assert jobs[0]["Owner"] == "af-alice"
            client = cluster.get_client()
            client.wait_for_workers(1, timeout=120)
            assert client.submit(sum, range(10)).result() == 45
            assert client.run_on_scheduler(whoami) == "af-alice"
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
    # steps next to the gateway are not offered here (workflows.backends defaults to the gateway's backend)
    r = _workflow_api(gw, "POST", json={"entry": "workflow.yml", "files": files, "parameters": {"nfiles": 4}, "backend": "local"})
    assert r.status_code == 422 and "runs them on htcondor" in r.json()["error"], r.text
    r = _workflow_api(gw, "POST", json={"entry": "workflow.yml", "files": files, "parameters": {"nfiles": 4}})
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["backend"] == "htcondor"
    dag = _wait_run(gw, run["id"])
    assert dag["run"]["status"] == "SUCCESS", json.dumps([n.get("message") for n in dag["nodes"]])
    total = next(n for n in dag["nodes"] if n["id"] == "reduce")["outputs"]["total"]
    assert Path(total).read_text().strip() == "10"  # 1+2+3+4 words
    # every step was an HTCondor job of alice's account, tagged with the run; the map stage's 4
    # steps were one submission (one cluster id)
    jobs = {j["AfGatewayStep"]: j for j in json.loads(pool.run(
        "condor_history", "-json", "-constraint", f'AfGatewayWorkflow == "{run["id"]}"',
        "-attributes", "ClusterId,ProcId,AfGatewayStep,Owner,ExitCode") or "[]")}
    assert sorted(jobs) == ["acquire", "map:0", "map:1", "map:2", "map:3", "reduce"]
    assert {j["Owner"] for j in jobs.values()} == {"af-alice"}
    assert {j["ExitCode"] for j in jobs.values()} == {0}
    assert len({jobs[f"map:{i}"]["ClusterId"] for i in range(4)}) == 1
    for n in dag["nodes"][1:]:
        j = jobs[n["id"]]
        assert n["job"] == f"HTCondor job {j['ClusterId']}.{j['ProcId']}"
    log = _workflow_api(gw, "GET", f"/{run['id']}/nodes/map:1/log").text
    assert f"step map:1 of workflow run {run['id']}, attempt 1" in log


def test_links_a_failed_step_planted_do_not_make_the_retry_chown_their_target(pool, gw):
    target = pool.run_dir / "step-target"
    target.write_text("root only\n")
    target.chmod(0o600)
    # The first attempt plants links to a root-owned file in its directory and fails; the retry
    # (a new handoff of the same directory) succeeds. The old handoff chowned through them.
    script = (f"if [ ! -e attempted ]; then touch attempted; ln -s {target} .af/evil; ln -s {target} planted; "
              f"mkdir sub; ln -s {target} sub/link; exit 1; fi; id -un > {{out}}")
    spec = f"""stages:
  - name: plant
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {{out: '{{workdir}}/who.txt'}}
      step:
        process: {{process_type: interpolated-script-cmd, script: "{script}"}}
        publisher: {{publisher_type: frompar-pub, outputmap: {{out: out}}}}
        environment: {{environment_type: localproc-env}}
"""
    r = _workflow_api(gw, "POST", json={"entry": "wf.yml", "files": {"wf.yml": spec}, "retries": 1})
    assert r.status_code == 201, r.text
    dag = _wait_run(gw, r.json()["id"])
    node = dag["nodes"][1]
    assert dag["run"]["status"] == "SUCCESS", node.get("message")
    assert node["attempts"] == 2
    assert Path(node["outputs"]["out"]).read_text().strip() == "af-alice"
    assert (target.stat().st_uid, target.stat().st_gid, target.stat().st_mode & 0o777) == (0, 0, 0o600)
    workdir = Path(node["outputs"]["out"]).parent
    assert workdir.stat().st_uid == pool.accounts["af-alice"]["uid"] and workdir.stat().st_mode & 0o7777 == 0o2700
    assert (workdir / "planted").is_symlink() and os.lstat(workdir / "planted").st_uid == pool.accounts["af-alice"]["uid"]


def test_a_runs_data_reaches_its_steps_as_htcondor_jobs_of_its_owner(pool, gw):
    # the run's input files, kept by the gateway; a subworkflow's init finds them in its subinit directory
    # (discover), and its step, an HTCondor job of alice's account, reads them and cannot change them
    spec = """stages:
  - name: sub
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {inputs: '*.txt'}
      workflow_opts: {discover: true}
      workflow:
        stages:
          - name: read
            dependencies: [init]
            scheduler:
              scheduler_type: singlestep-stage
              parameters: {inputs: {stages: init, output: inputs, unwrap: true}, out: '{workdir}/all.txt'}
              step:
                process: {process_type: string-interpolated-cmd, cmd: 'cat {inputs} > {out}; (echo x >> {inputs}) 2> {workdir}/err.txt; id -un >> {out}'}
                publisher: {publisher_type: frompar-pub, outputmap: {out: out}}
                environment: {environment_type: localproc-env}
"""
    data = {"files": {"in/a.txt": "first\n", "in/b.txt": {"base64": base64.b64encode(b"second\n").decode()}, "in/skip.dat": "no\n"},
            "subinits": {"sub": "in"}}
    r = _workflow_api(gw, "POST", json={"entry": "wf.yml", "files": {"wf.yml": spec}, "data": data})
    assert r.status_code == 201, r.text
    dag = _wait_run(gw, r.json()["id"])
    read = next(n for n in dag["nodes"] if n["id"] == "sub[0].read")
    assert dag["run"]["status"] == "SUCCESS", read.get("message")
    assert read["job"].startswith("HTCondor job ")
    out = Path(read["outputs"]["out"])
    assert out.read_text() == "first\nsecond\naf-alice\n"
    assert "Permission denied" in (out.parent / "err.txt").read_text()
    ws = Path(dag["run"]["workspace"])
    assert (ws / ".af" / "data" / "in" / "a.txt").read_text() == "first\n"


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
