"""The `jupyterhub` authentication type against a real JupyterHub (its REST API checks the tokens).

JupyterHub runs from the pinned venv with configurable-http-proxy from node_modules; the gateway
runs with `auth.type: jupyterhub`; the unmodified dask_gateway client uses JupyterHubAuth.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from dask_gateway import Gateway, JupyterHubAuth

REPO = Path(__file__).resolve().parents[3]
CHP = REPO / "node_modules" / ".bin" / "configurable-http-proxy"
CLI = REPO / "gateway-server" / "dist" / "cli.js"
ALICE_TOKEN = "alice-hub-token-" + os.urandom(8).hex()
BOB_TOKEN = "bob-hub-token-" + os.urandom(8).hex()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url, proc, log, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited early:\n{Path(log).read_text()[-3000:]}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout} s:\n{Path(log).read_text()[-3000:]}")


def _stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    d = tmp_path_factory.mktemp("hub")
    hub_port, proxy_port, api_port = _free_port(), _free_port(), _free_port()
    (d / "jupyterhub_config.py").write_text(
        f"""
c.JupyterHub.ip = '127.0.0.1'
c.JupyterHub.port = {proxy_port}
c.JupyterHub.hub_ip = '127.0.0.1'
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.command = [{str(CHP)!r}]
c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{api_port}'
c.JupyterHub.authenticator_class = 'dummy'
c.JupyterHub.spawner_class = 'simple'
c.JupyterHub.db_url = 'sqlite:///{d}/hub.sqlite'
c.JupyterHub.cookie_secret_file = '{d}/cookie_secret'
c.JupyterHub.pid_file = '{d}/hub.pid'
c.Authenticator.allowed_users = {{'alice', 'bob'}}
c.JupyterHub.load_groups = {{'physicists': {{'users': ['alice']}}}}
c.JupyterHub.api_tokens = {{{ALICE_TOKEN!r}: 'alice', {BOB_TOKEN!r}: 'bob'}}
"""
    )
    log = d / "hub.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(d / "jupyterhub_config.py")],
            cwd=d, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        _wait_http(f"http://127.0.0.1:{hub_port}/hub/api/", proc, log)
        yield f"http://127.0.0.1:{hub_port}/hub/api"
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def hub_gateway(hub, tmp_path_factory):
    d = tmp_path_factory.mktemp("gw-hub")
    port = _free_port()
    (d / "config.json").write_text(json.dumps({
        "listen": f"127.0.0.1:{port}",
        "data_dir": str(d / "data"),
        "auth": {"type": "jupyterhub", "jupyterhub": {"api_url": hub}},
    }))
    log = d / "gateway.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            ["node", str(CLI), "serve", "--config", str(d / "config.json")],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(url + "/api/health", proc, log)
        yield url
    finally:
        _stop(proc)


@pytest.mark.timeout(180)
def test_hub_token_works_with_the_unmodified_client(hub_gateway):
    with Gateway(hub_gateway, auth=JupyterHubAuth(api_token=ALICE_TOKEN)) as gw:
        cluster = gw.new_cluster()
        try:
            assert [c.name for c in gw.list_clusters()] == [cluster.name]
            # bob's Hub token sees nothing of alice's and may not touch it
            with Gateway(hub_gateway, auth=JupyterHubAuth(api_token=BOB_TOKEN)) as bob:
                assert bob.list_clusters() == []
                r = requests.get(f"{hub_gateway}/api/v1/clusters/{cluster.name}",
                                 headers={"Authorization": f"jupyterhub {BOB_TOKEN}"}, timeout=10)
                assert r.status_code == 403
        finally:
            cluster.shutdown()


@pytest.mark.timeout(60)
def test_challenge_and_refused_tokens(hub_gateway):
    r = requests.get(f"{hub_gateway}/api/v1/clusters/", timeout=10)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == "jupyterhub"
    r = requests.get(f"{hub_gateway}/api/v1/clusters/",
                     headers={"Authorization": "jupyterhub not-a-token"}, timeout=10)
    assert r.status_code == 401
    assert "JupyterHub did not accept" in r.json()["error"]
    # the dask_gateway client surfaces the refusal instead of hanging or crashing
    with Gateway(hub_gateway, auth=JupyterHubAuth(api_token="not-a-token")) as gw:
        with pytest.raises(Exception, match="401"):
            gw.list_clusters()
