"""Process helpers shared by the e2e tests that start their own gateway, provider or Hub."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psutil
import requests

REPO = Path(__file__).resolve().parents[3]
CLI = REPO / "gateway-server" / "dist" / "cli.js"
CHP = REPO / "node_modules" / ".bin" / "configurable-http-proxy"
OP_SCRIPT = REPO / "gateway-server" / "test" / "support" / "oidc-provider.mjs"


# Ports fetch() and browsers refuse ("bad port", ERR_UNSAFE_PORT): never handed out.
BAD_PORTS = frozenset(json.loads((REPO / "test-harness" / "fetch-bad-ports.json").read_text())["ports"])


def free_port():
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in BAD_PORTS:
            return port


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
        except (requests.ConnectionError, requests.Timeout):
            pass  # not up yet, or slow on a loaded machine: the deadline decides
        time.sleep(0.2)
    raise TimeoutError(f"{url} was not ready within {timeout} s:\n{Path(log).read_text()[-3000:]}")


def start_gateway(directory, config, env=None):
    """Starts `af-gateway-server serve` with this config (a dict); returns (process, url, log path).
    `env`: variables added to the test's environment for the gateway (e.g. NODE_EXTRA_CA_CERTS)."""
    directory = Path(directory)
    (directory / "config.json").write_text(json.dumps(config))
    log = directory / "gateway.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(["node", str(CLI), "serve", "--config", str(directory / "config.json")],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env=dict(os.environ, **env) if env else None)
    url = "http://" + config["listen"]
    try:
        wait_http(url + "/api/health", proc, log)
    except BaseException:
        stop(proc)
        raise
    return proc, url, log


def traversable_dir(prefix="af-e2e-"):
    """A directory that users' accounts can pass through (0711, under /tmp), e.g. a workspace root
    for steps that run as the users (pytest's own directories are 0700). Remove it when done."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o711)
    return d


def kill_below(directory):
    """Kills what still runs in (or names) a directory of a test's gateway: steps the gateway detached."""
    root = str(directory)
    victims = []
    for p in psutil.process_iter():
        try:
            if p.pid == os.getpid():
                continue
            if p.cwd().startswith(root) or any(root in a for a in p.cmdline()):
                victims.append(p)
        except psutil.Error:
            pass
    for p in victims:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(victims, timeout=10)


@contextlib.contextmanager
def oidc_workflow_gateway(provider, directory, **workflows):
    """A gateway accepting the provider's tokens whose workflow steps run as the users' accounts in a
    workspace root they can reach; yields {url, dir, log, workspace_root}. On exit: the gateway stopped,
    what its steps left running killed, the workspaces removed."""
    ws = traversable_dir()  # the steps run as the users' accounts (af-<user>)
    try:
        proc, url, log = start_gateway(directory, oidc_gateway_config(provider, directory, workflows={
            "poll_period": 0.2, "workspace_root": str(ws), **workflows}))
    except BaseException:
        shutil.rmtree(ws, ignore_errors=True)
        raise
    try:
        yield {"url": url, "dir": Path(directory), "log": log, "workspace_root": ws}
    finally:
        stop(proc)
        kill_below(directory)
        kill_below(ws)
        shutil.rmtree(ws, ignore_errors=True)


def oidc_gateway_config(provider, directory, **extra):
    """A gateway on a free loopback port that accepts the test provider's bearer tokens carrying
    compute.create."""
    return {
        "listen": f"127.0.0.1:{free_port()}",
        "data_dir": str(Path(directory) / "data"),
        "accounts": {"name_template": "af-{user}"},  # real accounts: scripts/test-accounts.sh
        "auth": {"type": "oidc", "oidc": {"issuer": provider["issuer"], "audience": [provider["audience"]],
                                           "required_scopes": ["compute.create"]}},
        **extra,
    }


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


def hub_config(directory, ports) -> str:
    """The lines of jupyterhub_config.py every test Hub shares: loopback ports (proxy, hub, proxy_api
    of `ports`), the repository's configurable-http-proxy, the simple spawner, its state in `directory`."""
    return f"""
c.JupyterHub.ip = '127.0.0.1'
c.JupyterHub.port = {ports['proxy']}
c.JupyterHub.hub_ip = '127.0.0.1'
c.JupyterHub.hub_port = {ports['hub']}
c.ConfigurableHTTPProxy.command = [{str(CHP)!r}]
c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{ports['proxy_api']}'
c.JupyterHub.spawner_class = 'simple'
c.JupyterHub.db_url = 'sqlite:///{directory}/hub.sqlite'
c.JupyterHub.cookie_secret_file = '{directory}/cookie_secret'
c.JupyterHub.pid_file = '{directory}/hub.pid'
"""


def client_credentials_token(provider, client, scope="openid compute.create compute.read"):
    """What a CI job does: one POST to the provider's token endpoint."""
    conf = requests.get(provider["issuer"] + "/.well-known/openid-configuration", timeout=10).json()
    r = requests.post(conf["token_endpoint"], auth=(client, provider["clients"][client]),
                      data={"grant_type": "client_credentials", "scope": scope,
                            "resource": "urn:" + provider["audience"]}, timeout=10)
    r.raise_for_status()
    return r.json()["access_token"]


def clients_with_a_worker(clusters, timeout, **client_options):
    """Scales each dask_gateway cluster to one worker and returns a client of each once its worker
    is there (all scaled first, then all awaited)."""
    for c in clusters:
        c.scale(1)
    clients = [c.get_client(**client_options) for c in clusters]
    for cl in clients:
        cl.wait_for_workers(1, timeout=timeout)
    return clients


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

    def assert_adopted_cluster_serves(self, client, name, user, more=lambda: ""):
        """After a restart: the cluster name computes through client, runs its 2 workers again and
        none failed; closes client. `more` adds to the message of a failed wait."""
        from conftest import wait_until
        assert client.submit(sum, range(10)).result() == 45
        info = wait_until(lambda: (lambda c: c if c["workers"]["running"] == 2 else None)(self.af_cluster(name, user)), 30,
                          lambda: f"2 running workers after the restart: {self.af_cluster(name, user)}{more()}")
        assert info["workers"]["failed"] == 0
        client.close()


class ServiceStandIn:
    """A TEST STAND-IN for a Kubernetes Service in front of gateway replicas: forwards each new TCP
    connection on `port` to the first replica whose /api/health answers 200 (what a Service does
    with the pods' readiness probes), so standbys get no traffic."""

    def __init__(self, replica_ports: list[int]):
        self.replicas = replica_ports
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.closed = False
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def ready(self) -> int | None:
        for port in self.replicas:
            try:
                if requests.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                    return port
            except requests.RequestException:
                pass
        return None

    def _accept(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket):
        port = self.ready()
        if port is None:
            conn.close()
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            conn.close()
            return
        upstream.settimeout(None)
        self.conns += [conn, upstream]
        for a, b in ((conn, upstream), (upstream, conn)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.closed = True
        self.sock.close()
        for c in self.conns:
            c.close()


# --- several replicas on one PostgreSQL state store --------------------------------------------------

PG_SCRIPT = REPO / "scripts" / "postgres.sh"


@contextlib.contextmanager
def running_postgres():
    """A throw-away PostgreSQL server (scripts/postgres.sh); yields its description (url, bin_dir, ...)."""
    run_dir = Path(tempfile.mkdtemp(prefix="af-e2e-pg-"))
    try:
        info_path = subprocess.run(["bash", str(PG_SCRIPT), "start", str(run_dir)], check=True, capture_output=True,
                                   text=True, timeout=60).stdout.strip()
        yield json.loads(Path(info_path).read_text())
    finally:
        subprocess.run(["bash", str(PG_SCRIPT), "stop", str(run_dir)], timeout=60)
        shutil.rmtree(run_dir, ignore_errors=True)


def psql(server: dict, url: str, sql: str) -> str:
    out = subprocess.run([server["bin_dir"] + "/psql", url, "-Atc", sql], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def new_database(server: dict, name: str) -> dict:
    """A new empty database on the server: the server's description with url pointing at it."""
    psql(server, server["url"], f"CREATE DATABASE {name}")
    return {**server, "url": server["url"].rsplit("/", 1)[0] + "/" + name}


class Replica:
    """One gateway replica (its own directory and port) of several sharing a PostgreSQL state store."""

    def __init__(self, directory: Path, config: dict):
        self.dir = Path(directory)
        self.dir.mkdir(exist_ok=True)
        self.config = config
        self.port = int(config["listen"].rsplit(":", 1)[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None
        self.log = self.dir / "gateway.log"

    def start_serving(self):
        self.proc, _, self.log = start_gateway(self.dir, self.config)

    def start_standby(self, timeout=60):
        """Starts a replica that must wait: its liveness answers, its readiness says standby."""
        (self.dir / "config.json").write_text(json.dumps(self.config))
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(["node", str(CLI), "serve", "--config", str(self.dir / "config.json")],
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_http(self.url + "/api/health/live", self.proc, self.log, ok=lambda r: r.status_code == 200, timeout=timeout)

    def health(self):
        try:
            r = requests.get(self.url + "/api/health", timeout=5)
        except (requests.ConnectionError, requests.Timeout) as e:
            return None, {"error": str(e)}
        return r.status_code, r.json()

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def _task_functions():
    # Nested, so that cloudpickle sends them by value: a job's Python cannot import this module.
    def read_api_token():
        """Run on a scheduler: its cluster's API token, as its own heartbeats send it."""
        import os
        with open(os.environ["DASK_GATEWAY_API_TOKEN"]) as f:
            return f.read().strip()

    def whoami() -> str:
        """Run on a worker or scheduler: the account its process runs as."""
        import os
        import pwd
        return pwd.getpwuid(os.getuid()).pw_name

    def try_read(paths: list[str]) -> dict:
        """Run on a worker or scheduler: what each path gave (its first bytes, a listing, or the error's name)."""
        import os
        out = {}
        for p in paths:
            try:
                if os.path.isdir(p):
                    out[p] = "listed:" + ",".join(sorted(os.listdir(p)))
                else:
                    with open(p, "rb") as f:
                        out[p] = "read:" + f.read(40).decode("latin-1")
            except Exception as e:  # noqa: BLE001 - the kind of failure is the result
                out[p] = type(e).__name__
        return out

    return read_api_token, whoami, try_read


read_api_token, whoami, try_read = _task_functions()


def forged_heartbeat(url: str, cluster: str, token: str, **addresses):
    """A heartbeat as the cluster's owner could send it with the API token from their scheduler."""
    body = {"scheduler_address": "tls://127.0.0.1:1", "dashboard_address": "", "api_address": "http://127.0.0.1:1",
            "count": 0, "active_workers": [], "closing_workers": [], "closed_workers": [], **addresses}
    return requests.post(f"{url}/api/v1/clusters/{cluster}/heartbeat", json=body,
                         headers={"Authorization": f"token {token}"}, timeout=60)


def assert_heartbeats_cannot_leave(url: str, cluster: str, token: str, hosts=("169.254.169.254", "10.96.0.1", "kubernetes.default.svc")):
    """Each address of a heartbeat naming a host other than where the backend runs the scheduler is
    refused with a 422 that says so."""
    for field, scheme in (("scheduler_address", "tls"), ("dashboard_address", "http"), ("api_address", "http")):
        for host in hosts:
            r = forged_heartbeat(url, cluster, token, **{field: f"{scheme}://{host}:443"})
            assert r.status_code == 422 and r.json()["code"] == "address_not_backend", (field, host, r.text)
            assert "heartbeats cannot move a scheduler" in r.json()["error"], r.text
