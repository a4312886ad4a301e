"""Restart recovery: the gateway is SIGKILLed and started again.

Cluster "alive" keeps running while the gateway is down and must be adopted;
cluster "doomed" has its scheduler's process group SIGKILLed while the gateway
is down and must be reported FAILED, with its workers gone.

The module fixture plays the scenario once; each test checks one thing a user
relies on afterwards.  Runs in peer mode too: dask-gateway-server, given a
persistent database (see conftest), recovers the same way.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

import psutil
import pytest
import requests
from dask_gateway.client import ClusterStatus

from af_e2e_support import clients_with_a_worker
from conftest import (
    close_cluster,
    cluster_procs,
    describe,
    n_workers,
    roles,
    wait_until,
)

# a lambda travels by value; workers cannot import this module
_plus_one = lambda x: x + 1  # noqa: E731


def _alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@dataclass
class Scenario:
    srv: object
    alive: object  # GatewayCluster handle made before the crash
    doomed: object
    client: object  # dask Client of "alive" made before the crash
    fresh: object  # Gateway made after the restart
    survivors_ok: bool
    survivors_note: str
    doomed_pids: list
    restart_s: float


def _procs_with_worker(name):
    p = cluster_procs(name)
    return p if "scheduler" in roles(p) and "worker" in roles(p) else None


@pytest.fixture(scope="module")
def scenario(make_server):
    srv = make_server("gw-restart")
    alice = srv.gateway("alice")
    alive = alice.new_cluster(worker_cores=1, shutdown_on_close=True)
    doomed = alice.new_cluster(worker_cores=1, shutdown_on_close=True)
    client = None
    try:
        alive.scale(1)
        doomed.scale(1)
        client = alive.get_client(set_as_default=False)
        client.wait_for_workers(1, timeout=60)
        assert client.submit(_plus_one, 1).result(timeout=60) == 2
        dc = doomed.get_client(set_as_default=False)
        dc.wait_for_workers(1, timeout=60)
        dc.close()

        alive_before = wait_until(
            lambda: _procs_with_worker(alive.name), 30, "alive's processes"
        )
        doomed_before = wait_until(
            lambda: _procs_with_worker(doomed.name), 30, "doomed's processes"
        )
        sched = [p for p in doomed_before if p.role == "scheduler"]
        assert len(sched) == 1, describe(doomed_before)
        sched_pid, sched_pgid = sched[0].pid, sched[0].pgid
        assert sched_pgid not in (os.getpgid(0), os.getpgid(srv.pid)), (
            "the scheduler does not run in a process group of its own"
        )
        doomed_pids = [p.pid for p in doomed_before]

        # -- the gateway dies ----------------------------------------------------
        srv.kill9()
        dead = [p for p in alive_before + doomed_before if not _alive(p.pid)]
        survivors_ok = not dead
        survivors_note = f"died with the gateway: {describe(dead)}"
        # while it is down, doomed's scheduler process group is killed
        os.killpg(sched_pgid, signal.SIGKILL)
        wait_until(lambda: not _alive(sched_pid), 15, "doomed's scheduler to die")

        # -- it comes back with the same config, data dir and port ---------------
        t0 = time.monotonic()
        srv.start()
        restart_s = time.monotonic() - t0
        fresh = srv.gateway("alice")
        yield Scenario(
            srv,
            alive,
            doomed,
            client,
            fresh,
            survivors_ok,
            survivors_note,
            doomed_pids,
            restart_s,
        )
    finally:
        if client is not None:
            try:
                client.close()
            except Exception:
                pass
        shutdown = srv.running()  # the gateway is up: stop the clusters too
        close_cluster(alive, shutdown=shutdown)
        close_cluster(doomed, shutdown=shutdown)


def test_clusters_survive_the_gateway_crash(scenario):
    assert scenario.survivors_ok, scenario.survivors_note


def test_existing_client_keeps_computing(scenario):
    # (first: the dask client gives up reconnecting after 30 s by default)
    client = scenario.client
    assert scenario.restart_s < 20, f"gateway took {scenario.restart_s:.1f}s to restart"
    wait_until(lambda: client.status == "running", 30, "the client to reconnect")
    assert client.submit(_plus_one, 41, pure=False).result(timeout=60) == 42


def test_running_cluster_is_adopted(scenario):
    running = {c.name: c for c in scenario.fresh.list_clusters()}
    name = scenario.alive.name
    assert name in running, f"{name} not adopted: {list(running)}"
    assert running[name].status is ClusterStatus.RUNNING
    assert scenario.fresh.get_cluster(name).status is ClusterStatus.RUNNING


def test_connect_after_restart(scenario):
    again = scenario.fresh.connect(scenario.alive.name)
    try:
        cl = again.get_client(set_as_default=False)
        cl.wait_for_workers(1, timeout=60)
        assert cl.submit(_plus_one, 2, pure=False).result(timeout=60) == 3
        cl.close()
    finally:
        close_cluster(again, shutdown=False)


def test_dashboard_after_restart(scenario):
    srv = scenario.srv
    link = srv.url(f"/clusters/{scenario.alive.name}/status")
    r = requests.get(link, auth=srv.auth("alice"), timeout=30)
    assert r.status_code == 200, (r.status_code, r.text[:200])
    assert "bokeh" in r.text.lower()


def test_adopted_cluster_can_be_scaled(scenario):
    # the handle made before the crash still drives the adopted cluster
    scenario.alive.scale(2)
    cl = scenario.alive.get_client(set_as_default=False)
    try:
        cl.wait_for_workers(2, timeout=60)
        assert n_workers(cl) == 2
    finally:
        cl.close()


def test_dead_cluster_is_reported_failed(scenario):
    fresh, name = scenario.fresh, scenario.doomed.name
    wait_until(
        lambda: fresh.get_cluster(name).status is ClusterStatus.FAILED,
        60,
        lambda: f"{name} to be reported FAILED (is {fresh.get_cluster(name).status.name})",
        interval=0.5,
    )
    assert name in [c.name for c in fresh.list_clusters(status="failed")]
    assert name not in [c.name for c in fresh.list_clusters()]


def test_dead_cluster_processes_are_gone(scenario):
    name, pids = scenario.doomed.name, scenario.doomed_pids
    wait_until(
        lambda: not any(_alive(pid) for pid in pids) and not cluster_procs(name),
        60,
        lambda: f"doomed's processes to be gone (left: {describe(cluster_procs(name))})",
    )


def test_adopted_cluster_shutdown_leaves_nothing(scenario):
    fresh, alive = scenario.fresh, scenario.alive
    alive.shutdown()
    wait_until(
        lambda: not cluster_procs(alive.name),
        30,
        lambda: f"no process of adopted cluster {alive.name} left "
        f"(left: {describe(cluster_procs(alive.name))})",
    )
    wait_until(
        lambda: fresh.get_cluster(alive.name).status is ClusterStatus.STOPPED,
        30,
        f"{alive.name} to be reported STOPPED",
        interval=0.5,
    )


def test_sigterm_stops_clusters_and_leaves_no_process(make_server_fn):
    """A normal stop (SIGTERM) of the gateway stops its clusters: no process
    of theirs, nor of the gateway, is left behind."""
    srv = make_server_fn("gw-sigterm")
    gw = srv.gateway("alice")
    c = gw.new_cluster(worker_cores=1, shutdown_on_close=False)
    name = c.name
    try:
        [cl] = clients_with_a_worker([c], 60, set_as_default=False)
        cl.close()
        wait_until(
            lambda: "worker" in roles(cluster_procs(name)), 30, "the worker process"
        )
    finally:
        close_cluster(c, shutdown=False)
    gw_pid = srv.pid
    os.kill(gw_pid, signal.SIGTERM)
    wait_until(lambda: not _alive(gw_pid), 40, "the gateway to exit after SIGTERM")
    wait_until(
        lambda: not cluster_procs(name) and not srv.leftovers(),
        20,
        lambda: "every process to be gone after SIGTERM (left: "
        f"{describe(cluster_procs(name) + srv.leftovers())})",
    )
