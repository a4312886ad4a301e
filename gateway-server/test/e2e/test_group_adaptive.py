"""Adaptive worker groups on real Dask (local backend, every user's processes as their own account): a
cluster whose `hpc` group (Dask resources {"hpc": 1}) scales adaptively 0..2 through the AF API, while
the unmodified dask_gateway client's cluster.adapt(minimum=0, maximum=2) sizes default. Tasks that ask
for resources={"hpc": 1} make the scheduler report hpc's demand: hpc workers start (never more than 2),
the tasks run on them and complete, and with the work done and its results released the group goes back
to 0 by itself (its workers retired, not failed). default, which cannot run those tasks, stays at 0 the
whole time (distributed's own adaptive target would count them for it). Heartbeats are 10 s apart: the
scheduler sends a changed demand at once, so the reaction is not a heartbeat late.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest
import requests

from af_e2e_support import GatewayUnderTest, kill_below, stop, traversable_dir
from conftest import IS_PEER, VENV_PYTHON, wait_until

pytestmark = [
    pytest.mark.skipif(IS_PEER, reason="peer mode: dask-gateway-server has no worker groups"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the test accounts need root"),
    pytest.mark.timeout(240),
]

HEARTBEAT = 10


@pytest.fixture(scope="module")
def gw():
    root = traversable_dir("af-group-adaptive-")
    g = None
    try:
        g = GatewayUnderTest(root / "gw", lambda port, data: {
            "listen": f"127.0.0.1:{port}", "data_dir": str(data),
            "accounts": {"name_template": "af-{user}"},
            "backend": {"type": "local", "local": {"python": VENV_PYTHON, "stop_grace_period": 2}},
            "cluster": {"check_period": 1, "adaptive_period": 1, "heartbeat_period": HEARTBEAT, "worker_start_timeout": 60,
                        "stop_on_shutdown": True},
            "worker_groups": [{"name": "hpc", "description": "the HPC partition", "resources": {"hpc": 1}, "max_workers": 4}],
        })
        g.dir.chmod(0o711)
        yield g
    finally:
        if g is not None:
            stop(g.proc)
        kill_below(root)
        subprocess.run(["rm", "-rf", "--one-file-system", str(root)], timeout=60)


def groups(gw, name, user="alice") -> dict:
    r = requests.get(f"{gw.url}/api/af/clusters/{name}/groups", auth=(user, ""), timeout=10)
    assert r.status_code == 200, r.text
    return {g["name"]: g for g in r.json()["groups"]}


def _crunch():
    # Nested, so that cloudpickle sends it by value: the workers cannot import this module.
    def crunch(i):
        import time
        from distributed import get_worker
        time.sleep(1.5)
        return i, get_worker().name
    return crunch


crunch = _crunch()


class Watch:
    """Reads the groups every 0.5 s in a thread while the work runs: the most each group had."""

    def __init__(self, gw, name):
        self.gw, self.name = gw, name
        self.most = {"default": 0, "hpc": 0}
        self.seen = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.done.is_set():
            try:
                gs = groups(self.gw, self.name)
            except (AssertionError, requests.RequestException):
                self.done.wait(0.5)  # a failing read is retried at the same pace, not in a tight loop
                continue
            for g in self.most:
                live = gs[g]["starting"] + gs[g]["running"]
                self.most[g] = max(self.most[g], live, gs[g]["target"])
            self.seen.append((time.monotonic(), gs["hpc"]["target"], gs["hpc"]["running"]))
            self.done.wait(0.5)

    def stop(self):
        self.done.set()
        self.thread.join(10)


def test_a_group_follows_the_tasks_that_need_it_and_default_stays_at_zero(gw):
    cluster = gw.gateway("alice").new_cluster()
    name = cluster.name
    watch = None
    try:
        cluster.adapt(minimum=0, maximum=2)  # the unmodified client: default
        r = requests.put(f"{gw.url}/api/af/clusters/{name}/groups/hpc/adapt", json={"minimum": 0, "maximum": 2}, auth=("alice", ""), timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["adaptive"] == {"minimum": 0, "maximum": 2} and r.json()["target"] == 0, r.json()
        gs = groups(gw, name)
        assert gs["default"]["adaptive"] == {"minimum": 0, "maximum": 2}, gs["default"]
        assert (gs["default"]["target"], gs["hpc"]["target"]) == (0, 0)

        client = cluster.get_client()
        watch = Watch(gw, name)
        t0 = time.monotonic()
        futures = client.map(crunch, range(16), resources={"hpc": 1}, pure=False)
        first = wait_until(lambda: (lambda g: g if g["hpc"]["running"] >= 1 else None)(groups(gw, name)), 90,
                           lambda: f"an hpc worker running: {groups(gw, name)}; log: {gw.log.read_text()[-3000:]}")
        print(f"first hpc worker running {time.monotonic() - t0:.1f} s after the tasks were submitted "
              f"(heartbeats {HEARTBEAT} s apart): target {first['hpc']['target']}")
        done = client.gather(futures)
        took = time.monotonic() - t0
        assert sorted(i for i, _ in done) == list(range(16))
        ran_on = sorted({w for _, w in done})
        assert all(w.endswith("_hpc") for w in ran_on), ran_on
        print(f"16 hpc tasks of 1.5 s done in {took:.1f} s on {len(ran_on)} hpc worker(s); most hpc workers at once: {watch.most['hpc']}")
        assert 1 <= watch.most["hpc"] <= 2, watch.seen

        # Done and released: the group goes back to 0 by itself, its workers retired, not failed.
        del futures, done
        t1 = time.monotonic()
        wait_until(lambda: (lambda g: g["hpc"]["target"] == 0 and g["hpc"]["running"] + g["hpc"]["starting"] == 0)(groups(gw, name)), 90,
                   lambda: f"hpc back at 0: {groups(gw, name)}")
        print(f"hpc back at 0 workers {time.monotonic() - t1:.1f} s after the results were released")
        watch.stop()
        assert watch.most["default"] == 0, watch.seen  # default never wanted a worker for tasks it cannot run
        info = gw.af_cluster(name)
        assert info["workers"]["failed"] == 0, info
        assert groups(gw, name)["hpc"]["adaptive"] == {"minimum": 0, "maximum": 2}

        # Work default can run still reaches default through the client's adapt.
        assert client.submit(sum, range(10)).result(timeout=90) == 45
        wait_until(lambda: groups(gw, name)["default"]["running"] >= 1, 30, lambda: f"default's worker in the groups: {groups(gw, name)}")
        assert groups(gw, name)["hpc"]["target"] == 0
        client.close()
    finally:
        if watch is not None:
            watch.stop()
        cluster.shutdown()
    wait_until(lambda: gw.af_cluster(name)["status"] == "STOPPED", 60, "the cluster stopped")
