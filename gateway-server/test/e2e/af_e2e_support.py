"""Process helpers shared by the e2e tests that start their own gateway, provider or Hub."""

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[3]
CLI = REPO / "gateway-server" / "dist" / "cli.js"
CHP = REPO / "node_modules" / ".bin" / "configurable-http-proxy"
OP_SCRIPT = REPO / "gateway-server" / "test" / "support" / "oidc-provider.mjs"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc):
    """Stops a process started with start_new_session=True, and its whole group."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def wait_http(url, proc, log, ok=lambda r: True, timeout=60):
    """Polls url until ok(response); fails with the process log if it exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited:\n{Path(log).read_text()[-3000:]}")
        try:
            if ok(requests.get(url, timeout=2)):
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} was not ready within {timeout} s:\n{Path(log).read_text()[-3000:]}")


def start_gateway(directory, config):
    """Starts `af-gateway-server serve` with this config (a dict); returns (process, url, log path)."""
    directory = Path(directory)
    (directory / "config.json").write_text(json.dumps(config))
    log = directory / "gateway.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(["node", str(CLI), "serve", "--config", str(directory / "config.json")],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = "http://" + config["listen"]
    try:
        wait_http(url + "/api/health", proc, log)
    except BaseException:
        stop(proc)
        raise
    return proc, url, log


def start_provider(directory, env=None):
    """Starts the test OpenID provider; returns (process, its JSON description)."""
    log = Path(directory) / "op.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(["node", str(OP_SCRIPT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=err, text=True, env=dict(os.environ, **(env or {})), start_new_session=True)
    line = proc.stdout.readline()
    if not line:
        stop(proc)
        raise RuntimeError("the OpenID provider did not start:\n" + log.read_text()[-2000:])
    return proc, json.loads(line)


def client_credentials_token(provider, client, scope="openid compute.create compute.read"):
    """What a CI job does: one POST to the provider's token endpoint."""
    conf = requests.get(provider["issuer"] + "/.well-known/openid-configuration", timeout=10).json()
    r = requests.post(conf["token_endpoint"], auth=(client, provider["clients"][client]),
                      data={"grant_type": "client_credentials", "scope": scope,
                            "resource": "urn:" + provider["audience"]}, timeout=10)
    r.raise_for_status()
    return r.json()["access_token"]


class GatewayUnderTest:
    """A gateway of a test module in its own directory: started, restarted (after kill -9) with the
    same config, and reached with the dask_gateway client or the af API as a user."""

    def __init__(self, directory, make_config):
        self.dir = Path(directory)
        self.dir.mkdir()
        self.port = free_port()
        self.config = make_config(self.port, self.dir / "data")
        self.start()

    def start(self):
        self.proc, self.url, self.log = start_gateway(self.dir, self.config)

    def gateway(self, user="alice"):
        from dask_gateway import Gateway
        from dask_gateway.auth import BasicAuth
        return Gateway(self.url, proxy_address=f"gateway://127.0.0.1:{self.port}", auth=BasicAuth(user))

    def af_cluster(self, name, user="alice"):
        return requests.get(f"{self.url}/api/af/clusters/{name}", auth=(user, ""), timeout=10).json()
