"""Workers show as they join and leave, not a heartbeat later (issue 23: "Workers joining: 0 of 2" for
~10 s after both had joined). The scheduler's heartbeats are 30 s apart here: a worker the scheduler
has is RUNNING in the gateway's AF API within a few seconds, and a worker killed behind the gateway's
back is gone from it as fast. Both checks would wait for the next heartbeat (up to 30 s) without the
scheduler's early report, so a bound well below the heartbeat period tells them apart.
"""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest
import requests

from conftest import IS_PEER, wait_until

pytestmark = [
    pytest.mark.skipif(IS_PEER, reason="peer mode: dask-gateway-server has no AF API"),
    pytest.mark.timeout(180),
]

HEARTBEAT = 30
# Well below the heartbeat period; generous for a loaded 2-core machine (the report itself takes 0.2 s).
PROMPT = 8


@pytest.fixture(scope="module")
def srv(make_server):
    return make_server("gw-live", cluster={"heartbeat_period": HEARTBEAT})


def workers(srv, name):
    r = requests.get(srv.url(f"/api/af/clusters/{name}"), auth=srv.auth(), timeout=10)
    assert r.status_code == 200, r.text
    return {w["name"]: w["status"] for w in r.json()["workers"]["list"]}


def test_workers_show_as_they_join_and_leave(srv):
    gw = srv.gateway()
    cluster = gw.new_cluster()
    try:
        client = cluster.get_client()
        # the first heartbeat came with the scheduler; the next one is HEARTBEAT seconds away
        cluster.scale(2)
        client.wait_for_workers(2, timeout=90)
        joined = time.monotonic()
        wait_until(lambda: list(workers(srv, cluster.name).values()).count("RUNNING") == 2, PROMPT,
                   lambda: f"both workers RUNNING in the AF API {PROMPT} s after the scheduler had them: {workers(srv, cluster.name)}")
        print(f"both workers RUNNING {time.monotonic() - joined:.2f} s after the scheduler had them")

        # a worker killed behind the gateway's back: its scheduler tells at once
        addr, victim = next(iter(client.scheduler_info()["workers"].items()))
        # the AF API knows it by the scheduler's name for it (else the wait below would pass on a name it never had)
        assert workers(srv, cluster.name).get(victim["name"]) == "RUNNING", (victim["name"], workers(srv, cluster.name))
        pid = client.run(os.getpid, workers=[addr])[addr]
        os.kill(pid, signal.SIGKILL)
        gone = time.monotonic()
        wait_until(lambda: workers(srv, cluster.name).get(victim["name"]) != "RUNNING", PROMPT,
                   lambda: f"the killed worker still RUNNING in the AF API {PROMPT} s later: {workers(srv, cluster.name)}")
        print(f"the killed worker left the AF API's RUNNING workers {time.monotonic() - gone:.2f} s later")
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    finally:
        cluster.shutdown()
