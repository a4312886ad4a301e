"""dask-labextension (the real one, pinned in test-harness/dask-labextension/requirements.txt) kept
configured for our gateway: a real Jupyter server runs its server side with the
``dask_gateway.GatewayCluster`` factory pointing at a gateway of the local backend, and this test
drives the extension's own REST API (/dask/clusters, /dask/dashboard-check, /dask/dashboard) as its
Lab panel does.

What works and what cannot (README "Using dask-labextension"):
- create, list, scale and shut down clusters the extension started: yes;
- clusters made elsewhere (our panel, notebooks) are not listed: the extension lists only the
  clusters its own process started (dask_labextension.manager keeps them in a dict);
- "Adapt" in its panel fails: it calls GatewayCluster.adapt without awaiting it (a coroutine with
  asynchronous=True) and reads .minimum off the result;
- its sidebar dashboard route (/dask/dashboard/<id>/...) proxies to the dashboard link's host and
  port with the link's path dropped, so it reaches the gateway's root, never a cluster (the same for
  every dask-gateway);
- its dashboard check run by the Jupyter server (the default; also what dask-gateway #830's
  "Launch dashboard in JupyterLab" button goes through) sends no credentials, and the gateway's
  dashboards are behind the owner's login: inactive. Run in the browser (its setting
  browserDashboardCheck) on the gateway's origin, the owner's login reaches the dashboard: the check
  and every plot load (here with the owner's login from a plain HTTP client; in Chromium, with the
  extension's own panes and #830's command: ui-tests/tests/dask-labextension.spec.ts). A dashboard
  address from the gateway's redirect (the capability address our panel's dashboard tabs use) works
  with the server-side check too.

The extension lives in a cache outside the repository (scripts/dask-labextension.sh, run here), on
PYTHONPATH of the Jupyter server only, so .venv's Lab (the other UI tests, the screenshots) never
shows its panel.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest
import requests
import yaml

from af_e2e_support import free_port, stop, wait_http
from conftest import IS_PEER, REPO_ROOT, VENV_PYTHON, wait_until

pytestmark = [
    pytest.mark.skipif(IS_PEER, reason="peer mode: the AF API and the capability redirect are ours"),
    pytest.mark.timeout(300),
]

WORKERS = 2


def extension_site() -> str:
    """The pinned dask-labextension, installed once per machine (seconds; < 0.1 s when cached)."""
    out = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "dask-labextension.sh"), "ensure"], capture_output=True, text=True, timeout=240
    )
    assert out.returncode == 0, f"scripts/dask-labextension.sh ensure failed:\n{out.stderr[-3000:]}"
    return out.stdout.strip()


class Jupyter:
    """A real Jupyter server with dask-labextension's server extension, configured for `srv`."""

    def __init__(self, root: Path, srv, user: str = "alice"):
        self.root = root
        site = extension_site()
        dask_dir = root / "dask"
        dask_dir.mkdir()
        # What an analyst puts in ~/.config/dask/: the extension's factory is our gateway's client.
        (dask_dir / "labextension.yaml").write_text(
            yaml.safe_dump(
                {
                    "labextension": {
                        "factory": {"module": "dask_gateway", "class": "GatewayCluster", "args": [], "kwargs": {}},
                    },
                    "gateway": {
                        "address": srv.address,
                        "auth": {"type": "basic", "kwargs": {"username": user, "password": srv.password or ""}},
                    },
                }
            )
        )
        self.port = free_port()
        self.token = secrets.token_hex(24)
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = root / "jupyter.log"
        env = {
            **os.environ,
            "PYTHONPATH": site,
            "DASK_CONFIG": str(dask_dir),
            "JUPYTER_CONFIG_DIR": str(root / "config"),
            "JUPYTER_DATA_DIR": str(root / "data"),
            "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
        }
        self.proc = subprocess.Popen(
            [
                VENV_PYTHON, "-m", "jupyter_server",
                "--ip=127.0.0.1", f"--port={self.port}", "--no-browser", "--allow-root",
                f"--IdentityProvider.token={self.token}",
                f"--ServerApp.root_dir={root}",
                "--ServerApp.jpserver_extensions={'dask_labextension': True}",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_http(f"{self.base}/api/status?token={self.token}", self.proc, self.log, ok=lambda r: r.status_code == 200, timeout=90)
        except BaseException:
            stop(self.proc)
            raise

    def call(self, method: str, path: str, body=None, timeout: float = 120) -> requests.Response:
        data = None if body is None else json.dumps(body)
        return requests.request(method, self.base + path, headers={"Authorization": f"token {self.token}"}, data=data, timeout=timeout)

    def check(self, dashboard_url: str) -> dict:
        """The extension's server-side dashboard check (what its URL box and #830's button use)."""
        r = self.call("GET", "/dask/dashboard-check/" + urllib.parse.quote(dashboard_url, safe=""), timeout=60)
        assert r.status_code == 200, r.text
        return r.json()

    def log_tail(self) -> str:
        return self.log.read_bytes().decode("utf-8", "replace")[-3000:]


@pytest.fixture(scope="module")
def srv(make_server):
    return make_server("gw-dask-labextension")


@pytest.fixture(scope="module")
def jupyter(srv, tmp_path_factory):
    j = Jupyter(tmp_path_factory.mktemp("jupyter-dask-labextension"), srv)
    try:
        yield j
    finally:
        # the extension shuts down the clusters it started when its server stops; the gateway's
        # fixture stops whatever is left with the gateway
        stop(j.proc)


def af_cluster(srv, name: str) -> dict:
    r = requests.get(srv.url(f"/api/af/clusters/{name}"), auth=srv.auth(), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def running_workers(srv, name: str) -> int:
    return [w["status"] for w in af_cluster(srv, name)["workers"]["list"]].count("RUNNING")


def cluster_name(model: dict) -> str:
    """The gateway's cluster name, from the dashboard link the extension shows."""
    path = urllib.parse.urlsplit(model["dashboard_link"]).path
    parts = path.strip("/").split("/")
    assert parts[0] == "clusters" and parts[-1] == "status", model["dashboard_link"]
    return parts[1]


def test_lists_only_the_clusters_it_started(srv, jupyter):
    """A cluster made in our panel (or a notebook) does not appear in the extension's panel: the
    extension lists what its own server process started, nothing it asks the gateway for."""
    gw = srv.gateway()
    cluster = gw.new_cluster()
    try:
        assert cluster.name in [c.name for c in gw.list_clusters()]  # our panel lists it (the same API)
        r = jupyter.call("GET", "/dask/clusters")
        assert r.status_code == 200, r.text
        assert r.json() == [], r.json()
    finally:
        cluster.shutdown()


def test_create_scale_dashboard_shutdown(srv, jupyter):
    # -- create (its "+ NEW" button)
    r = jupyter.call("PUT", "/dask/clusters")
    assert r.status_code == 200, f"{r.status_code} {r.text}\n{jupyter.log_tail()}"
    model = r.json()
    cid, name = model["id"], cluster_name(model)
    assert model["dashboard_link"] == f"{srv.address}/clusters/{name}/status"
    assert af_cluster(srv, name)["status"] == "RUNNING"  # the gateway (and so our panel) has it, as alice's
    listed = jupyter.call("GET", "/dask/clusters").json()
    assert [c["id"] for c in listed] == [cid], listed

    # -- scale (its "Scale" dialog, manual)
    r = jupyter.call("PATCH", f"/dask/clusters/{cid}", {"workers": WORKERS})
    assert r.status_code == 200, f"{r.status_code} {r.text}\n{jupyter.log_tail()}"
    t0 = time.monotonic()
    wait_until(
        lambda: jupyter.call("GET", f"/dask/clusters/{cid}").json()["workers"] == WORKERS,
        90,
        lambda: f"{WORKERS} workers in the extension's model: {jupyter.call('GET', f'/dask/clusters/{cid}').json()}",
    )
    print(f"extension: {WORKERS} workers {time.monotonic() - t0:.1f} s after its scale")
    model = jupyter.call("GET", f"/dask/clusters/{cid}").json()
    assert model["cores"] >= WORKERS, model
    wait_until(lambda: running_workers(srv, name) == WORKERS, 30, lambda: f"gateway: {af_cluster(srv, name)['workers']}")

    # -- dashboards
    link = model["dashboard_link"]
    # its sidebar route proxies to the link's host and port with the link's path (/clusters/<name>/)
    # left off: the request reaches the gateway's root (/individual-plots.json), no cluster's
    # dashboard, and the gateway's own refusal comes back
    r = jupyter.call("GET", f"/dask/dashboard/{cid}/individual-plots.json", timeout=30)
    print("sidebar dashboard route:", r.status_code, r.text[:200])
    assert r.status_code == 401 and r.json()["code"] == "unauthenticated", (r.status_code, r.text[:300])
    # the server-side check sends no credentials; the gateway's dashboards need the owner's login
    assert jupyter.check(link)["isActive"] is False
    # in the browser on the gateway's origin (browserDashboardCheck) the owner's login goes along: the
    # gateway sends it on to the sandboxed address, and the check and each plot load
    owner = requests.Session()
    owner.auth = srv.auth()
    plots_url = link.removesuffix("status") + "individual-plots.json"
    r = owner.get(plots_url, timeout=30)
    assert r.status_code == 200 and r.history and r.history[0].status_code == 303, (r.status_code, r.text[:300])
    plots = r.json()
    assert "Individual Task Stream" in plots, plots
    for label in ("Individual Task Stream", "Individual Progress", "Individual Workers Memory"):
        page = owner.get(link.removesuffix("status") + plots[label].lstrip("/"), timeout=30)
        assert page.status_code == 200 and "bokeh" in page.text.lower(), (label, page.status_code, page.text[:300])
        assert "sandbox" in page.headers.get("content-security-policy", ""), page.headers
    # the address the gateway sends the owner on to (our panel's dashboard tabs) works with the
    # server-side check as well: the extension then lists the plots and loads them without a login
    r = owner.get(link, allow_redirects=False, timeout=30)
    assert r.status_code == 303, r.status_code
    sandboxed = urllib.parse.urljoin(link, r.headers["location"])
    info = jupyter.check(sandboxed)
    assert info["isActive"] is True, info
    assert info["plots"] == plots, (info["plots"], plots)
    page = requests.get(sandboxed.removesuffix("status") + plots["Individual Task Stream"].lstrip("/"), timeout=30)
    assert page.status_code == 200 and "bokeh" in page.text.lower(), (page.status_code, page.text[:300])

    # -- shut down (its "SHUTDOWN" button)
    r = jupyter.call("DELETE", f"/dask/clusters/{cid}")
    assert r.status_code == 204, r.text
    assert jupyter.call("GET", "/dask/clusters").json() == []
    wait_until(lambda: af_cluster(srv, name)["status"] in ("STOPPED", "FAILED"), 60, lambda: f"gateway: {af_cluster(srv, name)['status']}")
    assert af_cluster(srv, name)["status"] == "STOPPED"


def test_adapt_fails_and_breaks_its_card(srv, jupyter):
    """Its "Adapt" calls GatewayCluster.adapt without awaiting it (a coroutine with
    asynchronous=True), keeps the coroutine as the cluster's adaptive range and reads .minimum off
    it: the request fails, nothing reaches the gateway, and every later view of that cluster in the
    extension fails the same way. Its Shutdown still stops the cluster (and answers 500)."""
    r = jupyter.call("PUT", "/dask/clusters")
    assert r.status_code == 200, f"{r.status_code} {r.text}\n{jupyter.log_tail()}"
    cid, name = r.json()["id"], cluster_name(r.json())
    r = jupyter.call("PATCH", f"/dask/clusters/{cid}", {"adapt": {"minimum": 1, "maximum": 3}})
    print("adapt through the extension:", r.status_code, r.text[:200])
    assert r.status_code == 500 and "coroutine" in r.text, r.text
    assert af_cluster(srv, name)["adaptive"] is None
    r = jupyter.call("GET", "/dask/clusters")  # its panel's listing: an error now
    assert r.status_code == 500, r.text
    r = jupyter.call("DELETE", f"/dask/clusters/{cid}")
    assert r.status_code == 500, r.text
    assert jupyter.call("GET", "/dask/clusters").json() == []
    wait_until(lambda: af_cluster(srv, name)["status"] == "STOPPED", 60, lambda: f"gateway: {af_cluster(srv, name)['status']}")
