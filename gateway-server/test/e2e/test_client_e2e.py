"""The unmodified dask_gateway client against the gateway, end to end.

One cluster is shared by most tests of this module (cluster starts cost
seconds); each test first brings it to the state it needs, so the outcome of a
test does not depend on the ones before it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import time

import aiohttp
import pytest
import requests
from dask_gateway import GatewayWarning
from dask_gateway.client import ClusterStatus

from af_e2e_support import clients_with_a_worker
from conftest import (
    GiB,
    MiB,
    close_cluster,
    cluster_procs,
    describe,
    n_workers,
    only_ours,
    roles,
    wait_until,
)

ENV_MARK = "AF_E2E_ENV_MARK"


@pytest.fixture(scope="module")
def alice(server):
    return server.gateway("alice")


@pytest.fixture(scope="module")
def cluster(server, alice):
    opts = alice.cluster_options()
    opts.worker_cores = 1
    opts.environment = {ENV_MARK: "hello-e2e"}
    # a readable name, set as the unmodified client sets any option
    opts.display_name = "  e2e: ttbar skim <2018>  "
    c = alice.new_cluster(opts, shutdown_on_close=True)
    yield c
    close_cluster(c)


@pytest.fixture(scope="module")
def client(cluster):
    cl = cluster.get_client(set_as_default=False)
    yield cl
    try:
        cl.close()
    except Exception:
        pass


def scale_to(cluster, client, n, timeout=60):
    """Scale with the client API and wait until exactly n workers are connected."""
    cluster.scale(n)
    return wait_until(
        lambda: n_workers(client) == n or None,
        timeout,
        f"{n} workers connected to {cluster.name}",
    )


# Functions sent to workers are lambdas: they travel by value (cloudpickle),
# the workers cannot import this test module.
_plus_one = lambda x: x + 1  # noqa: E731


# --------------------------------------------------------------------------


def test_cluster_options_form(server, alice):
    opts = alice.cluster_options()
    assert set(opts) == {"display_name", "worker_cores", "worker_memory", "environment"}
    assert opts.display_name == ""
    assert opts.worker_cores == 1
    assert opts.worker_memory == 1
    assert opts.environment == {}
    # bounds of the form are enforced client side from the server's spec
    with pytest.raises(ValueError):
        opts.worker_cores = 5
    with pytest.raises(ValueError):
        opts.worker_memory = 0.1
    opts.worker_cores = 4
    opts.worker_memory = 16
    # the raw spec names labels too
    r = requests.get(server.url("/api/v1/options"), auth=server.auth("alice"))
    assert r.status_code == 200
    spec = {f["field"]: f for f in r.json()["cluster_options"]}
    assert spec["worker_cores"]["label"] == "Worker cores"
    assert spec["worker_memory"]["label"] == "Worker memory (GiB)"


def test_new_cluster_is_running_and_listed(server, alice, cluster):
    assert cluster.status == "running"
    reports = {c.name: c for c in alice.list_clusters()}
    assert cluster.name in reports, f"{cluster.name} not in {list(reports)}"
    rep = reports[cluster.name]
    assert rep.status is ClusterStatus.RUNNING
    assert rep.options.get("worker_cores") == 1
    assert rep.options.get("environment") == {ENV_MARK: "hello-e2e"}
    assert rep.dashboard_link == server.url(f"/clusters/{cluster.name}/status")
    assert cluster.dashboard_link == rep.dashboard_link
    assert rep.scheduler_address == f"gateway://127.0.0.1:{server.port}/{cluster.name}"
    assert alice.get_cluster(cluster.name).status is ClusterStatus.RUNNING


def test_display_name_from_the_client(server, alice, cluster):
    # kept trimmed on the cluster; the id stays the key the client uses
    rep = alice.get_cluster(cluster.name)
    assert rep.options.get("display_name") == "e2e: ttbar skim <2018>"
    r = requests.get(server.url(f"/api/af/clusters/{cluster.name}"), auth=server.auth("alice"))
    assert r.status_code == 200
    assert r.json()["display_name"] == "e2e: ttbar skim <2018>"
    assert r.json()["name"] == cluster.name
    # a name that is not printable text is refused (422: ValueError) before anything starts
    before = {c.name for c in alice.list_clusters()}
    for bad in ["two\nlines", "x" * 65, "evil\u202etxt.exe"]:
        with pytest.raises(ValueError, match="display_name"):
            alice.submit(display_name=bad)
    assert {c.name for c in alice.list_clusters()} == before


def test_scale_two_workers_and_compute(cluster, client):
    import dask.array as da

    cluster.scale(2)
    client.wait_for_workers(2, timeout=60)
    assert n_workers(client) == 2
    # worker_cores=1 -> one thread each
    assert set(client.nthreads().values()) == {1}
    # worker_memory=1 (GiB) -> memory limit of 1 GiB
    limits = [w["memory_limit"] for w in client.scheduler_info()["workers"].values()]
    assert all(abs(lim - GiB) <= MiB for lim in limits), limits
    # the environment option reaches the worker processes
    seen = client.run(lambda: os.environ.get(ENV_MARK))
    assert set(seen.values()) == {"hello-e2e"}, seen
    # real computations
    assert client.submit(_plus_one, 41).result(timeout=60) == 42
    x = da.arange(1000, chunks=100)
    assert client.compute(x.sum()).result(timeout=60) == 499500
    # and the gateway's view agrees: two worker processes
    procs = wait_until(
        lambda: (p := cluster_procs(cluster.name)) and roles(p).get("worker") == 2 and p,
        30,
        "2 worker processes",
    )
    assert roles(procs).get("scheduler") == 1, describe(procs)


def test_connect_from_second_gateway(server, cluster, client):
    scale_to(cluster, client, 1)
    other = server.gateway("alice")
    assert cluster.name in [c.name for c in other.list_clusters()]
    c2 = other.connect(cluster.name)
    try:
        assert c2.name == cluster.name
        assert c2.status == "running"
        cl2 = c2.get_client(set_as_default=False)
        cl2.wait_for_workers(1, timeout=60)
        assert cl2.submit(_plus_one, 1).result(timeout=60) == 2
        cl2.close()
    finally:
        close_cluster(c2, shutdown=False)
    # closing the second handle (shutdown=False) leaves the cluster running
    assert other.get_cluster(cluster.name).status is ClusterStatus.RUNNING


def _basic(user, password=""):
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def _bokeh_ws(url, headers, token, origin):
    """Open the bokeh websocket (ws_connect raises unless the server answers
    101 Switching Protocols); return the first message bokeh sends."""
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as s:
        async with s.ws_connect(
            url, headers=headers, protocols=("bokeh", token), origin=origin
        ) as ws:
            assert ws.protocol == "bokeh", ws.protocol
            return await asyncio.wait_for(ws.receive(), 20)


async def _ws_handshake_status(url, headers):
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as s:
        try:
            async with s.ws_connect(url, headers=headers, protocols=("bokeh", "x")):
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


def test_dashboard_page_and_websocket(server, cluster):
    link = cluster.dashboard_link
    r = requests.get(link, auth=server.auth("alice"), timeout=30)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert r.headers.get("content-type", "").startswith("text/html")
    assert "bokeh" in r.text.lower()
    m = re.search(r'"token"\s*:\s*"([^"]+)"', r.text)
    assert m, "no bokeh session token in the dashboard page"
    ws_url = "ws" + link[len("http") :] + "/ws"
    msg = asyncio.run(
        _bokeh_ws(ws_url, _basic("alice", server.password or ""), m.group(1), server.address)
    )
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    assert json.loads(msg.data).get("msgtype") == "ACK", msg.data


def test_dashboard_requires_owner_auth(server, cluster):
    only_ours("dashboard authentication")
    link = cluster.dashboard_link
    r = requests.get(link, timeout=30, allow_redirects=False)
    assert r.status_code == 401, (r.status_code, r.text[:200])
    assert r.headers.get("WWW-Authenticate") == 'Basic realm="af-gateway"'
    r = requests.get(link, auth=server.auth("bob"), timeout=30, allow_redirects=False)
    assert r.status_code == 403, (r.status_code, r.text[:200])
    # the session cookie set after an authenticated call opens the dashboard
    s = requests.Session()
    r = s.get(server.url("/api/v1/clusters/"), auth=server.auth("alice"), timeout=30)
    assert r.status_code == 200
    assert s.cookies, "no session cookie set after authentication"
    r = s.get(link, timeout=30)
    assert r.status_code == 200, (r.status_code, r.text[:200])
    assert "Authorization" not in r.request.headers
    # the websocket needs the owner's auth as well
    ws_url = "ws" + link[len("http") :] + "/ws"
    assert asyncio.run(_ws_handshake_status(ws_url, {})) == 401
    assert asyncio.run(_ws_handshake_status(ws_url, _basic("bob"))) == 403


def test_a_dashboard_is_sandboxed_user_content(server, cluster):
    """A dashboard is its owner's content on the gateway's origin: it is served sandboxed (its
    scripts get an opaque origin, so an admin who opens it does not lend them the admin's
    session), read-only, without the viewer's credentials, and its own requests are authorised by
    a capability in the path that bob cannot forge or move to another cluster."""
    only_ours("sandboxed dashboards")
    link = cluster.dashboard_link
    first = requests.get(link, auth=server.auth("alice"), timeout=30, allow_redirects=False)
    assert first.status_code == 303, (first.status_code, first.text[:200])
    sandboxed = first.headers["Location"]
    assert re.search(rf"/clusters/{cluster.name}/~[A-Za-z0-9_-]{{40,}}/status$", sandboxed), sandboxed
    url = server.url(sandboxed) if sandboxed.startswith("/") else sandboxed
    # the capability alone opens the page (a sandboxed page sends no cookie), sandboxed
    page = requests.get(url, timeout=30)
    assert page.status_code == 200 and "bokeh" in page.text.lower(), page.text[:200]
    csp = page.headers["Content-Security-Policy"]
    assert "sandbox allow-scripts" in csp and "allow-same-origin" not in csp, csp
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "Set-Cookie" not in page.headers
    # ...and its bokeh WebSocket, from the opaque origin browsers give it (Origin: null)
    m = re.search(r'"token"\s*:\s*"([^"]+)"', page.text)
    ws_url = "ws" + url[len("http"):] + "/ws"
    msg = asyncio.run(_bokeh_ws(ws_url, {}, m.group(1), "null"))
    assert json.loads(msg.data).get("msgtype") == "ACK", msg.data

    cap = sandboxed.rsplit("/", 2)[-2]
    # bob: a made-up capability, alice's altered by one character, alice's on another cluster's path
    forged = ["~" + base64.urlsafe_b64encode(os.urandom(60)).decode().rstrip("="),
              cap[:30] + ("B" if cap[30] == "A" else "A") + cap[31:]]
    for bad in forged:
        r = requests.get(server.url(f"/clusters/{cluster.name}/{bad}/status"), timeout=30, allow_redirects=False)
        assert r.status_code == 303 and r.headers["Location"].endswith(f"/clusters/{cluster.name}/status"), (bad, r.status_code)
        assert requests.get(server.url(f"/clusters/{cluster.name}/{bad}/status"), timeout=30).status_code == 401
        assert asyncio.run(_ws_handshake_status(server.url(f"/clusters/{cluster.name}/{bad}/status/ws").replace("http", "ws", 1), {"Origin": "null"})) == 401
    other = server.url(f"/clusters/{'0' * 32}/{cap}/status")
    assert requests.get(other, timeout=30, allow_redirects=False).status_code == 303
    # read-only: no method but GET/HEAD reaches the scheduler's dashboard, with or without a capability
    for target in (link, url):
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            r = requests.request(method, target, auth=server.auth("alice"), data=b"x", timeout=30, allow_redirects=False)
            assert r.status_code == 405 and r.json()["code"] == "method_not_allowed", (method, target, r.status_code)
    # the viewer's cookies never reach the dashboard; bob's own credentials still get a 403
    assert requests.get(link, auth=server.auth("bob"), timeout=30, allow_redirects=False).status_code == 403


def test_processes_carry_marker(cluster, client):
    only_ours("the af-gateway command-line marker")
    scale_to(cluster, client, 1)
    procs = wait_until(
        lambda: (p := cluster_procs(cluster.name)) and roles(p).get("worker") == 1 and p,
        30,
        "one worker process",
    )
    marked = [p for p in procs if p.has_marker and cluster.name in p.cmd]
    assert {p.role for p in marked} >= {"scheduler", "worker"}, describe(procs)
    sched = [p for p in marked if p.role == "scheduler"]
    assert len(sched) == 1, describe(procs)


_sleep_one = lambda i: time.sleep(1) or i  # noqa: E731


def test_adapt_grows_under_load_and_shrinks_when_idle(cluster, client):
    scale_to(cluster, client, 0)
    cluster.adapt(minimum=0, maximum=3)
    futures = client.map(_sleep_one, range(30), pure=False)
    seen = []
    deadline = time.monotonic() + 90
    while not all(f.done() for f in futures):
        n = n_workers(client)
        seen.append(n)
        assert n <= 3, f"adaptive maximum 3 exceeded: {n} workers"
        assert time.monotonic() < deadline, f"tasks did not finish; workers seen {seen}"
        time.sleep(0.25)
    assert client.gather(futures) == list(range(30))
    client.cancel(futures)
    del futures
    assert max(seen) > 1, f"adaptive scaling never grew past one worker: {seen}"
    # idle: back to zero workers, and their processes are gone
    wait_until(lambda: n_workers(client) == 0, 60, "adaptive scale-down to 0 workers")
    # a worker that is still exiting has lost its command line but not its cwd: wait for it too
    wait_until(
        lambda: roles(cluster_procs(cluster.name)) == {"scheduler": 1},
        60,
        "only the scheduler to remain after scale-down",
    )
    assert cluster.status == "running"


def test_shutdown_leaves_no_process(server, alice):
    c = alice.new_cluster(worker_cores=1, shutdown_on_close=True)
    name = c.name
    try:
        [cl] = clients_with_a_worker([c], 60, set_as_default=False)
        assert cl.submit(_plus_one, 1).result(timeout=60) == 2
        procs = wait_until(
            lambda: (p := cluster_procs(name)) and "worker" in roles(p) and p,
            30,
            "the cluster's worker process",
        )
        assert "scheduler" in roles(procs), describe(procs)
    finally:
        c.shutdown()
    wait_until(
        lambda: not cluster_procs(name),
        30,
        lambda: f"no process of cluster {name} left (left: {describe(cluster_procs(name))})",
    )
    wait_until(
        lambda: name in [x.name for x in alice.list_clusters(status="stopped")],
        30,
        f"{name} to be listed as stopped",
    )
    assert name not in [x.name for x in alice.list_clusters()]
    assert alice.get_cluster(name).status is ClusterStatus.STOPPED


def test_per_cluster_worker_limit(make_server_fn):
    srv = make_server_fn("gw-limit", cluster={"max_workers": 2})
    gw = srv.gateway("alice")
    c = gw.new_cluster(worker_cores=1, shutdown_on_close=True)
    try:
        cl = c.get_client(set_as_default=False)
        with pytest.warns(GatewayWarning) as rec:
            c.scale(5)
        msg = " ".join(str(w.message) for w in rec)
        assert re.search(r"\b2\b", msg), f"warning does not name the limit: {msg!r}"
        cl.wait_for_workers(2, timeout=60)
        # observe a few seconds: it stays at 2, never 5
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            assert n_workers(cl) <= 2
            assert roles(cluster_procs(c.name)).get("worker", 0) <= 2
            time.sleep(0.25)
        assert n_workers(cl) == 2
        # raw answer: {ok: false, msg}
        r = requests.post(
            srv.url(f"/api/v1/clusters/{c.name}/scale"),
            json={"count": 3},
            auth=srv.auth("alice"),
            timeout=30,
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body.get("ok") is False and "2" in body.get("msg", ""), body
        # adapt beyond the limit is clamped too
        with pytest.warns(GatewayWarning) as rec:
            c.adapt(minimum=0, maximum=5)
        msg = " ".join(str(w.message) for w in rec)
        assert re.search(r"\b2\b", msg), f"warning does not name the limit: {msg!r}"
        # within the limit: no warning, ok true
        r = requests.post(
            srv.url(f"/api/v1/clusters/{c.name}/scale"),
            json={"count": 1},
            auth=srv.auth("alice"),
            timeout=30,
        )
        assert r.status_code == 200 and r.json().get("ok") is True, r.text
        cl.close()
    finally:
        close_cluster(c)
