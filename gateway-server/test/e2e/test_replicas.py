"""Several gateway replicas on one PostgreSQL state store: one serves, the other waits; when the
serving one is SIGKILLed the standby takes over its running cluster, and the real dask_gateway
client keeps working through the same address.

The PostgreSQL server is real (scripts/postgres.sh: Debian's server binaries). In front of the two
replicas sits `ServiceStandIn`, a few lines of TCP forwarding that do what a Kubernetes Service does
with readiness probes: each new connection goes to a replica whose /api/health answers 200. Clients,
schedulers' heartbeats and the TLS scheduler traffic all go through it, as they would through the
Service the Helm chart makes.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

from af_e2e_support import REPO, free_port, start_gateway, stop
from conftest import cluster_procs, kill_procs, wait_until

PG_SCRIPT = REPO / "scripts" / "postgres.sh"


class ServiceStandIn:
    """Forwards each TCP connection on `port` to the first replica that is ready (health 200)."""

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


def _psql(server: dict, url: str, sql: str) -> str:
    out = subprocess.run([server["bin_dir"] + "/psql", url, "-Atc", sql], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.fixture(scope="module")
def postgres_server():
    run_dir = Path(tempfile.mkdtemp(prefix="af-replicas-pg-"))
    info_path = subprocess.run(["bash", str(PG_SCRIPT), "start", str(run_dir)], check=True, capture_output=True,
                               text=True, timeout=60).stdout.strip()
    yield json.loads(Path(info_path).read_text())
    subprocess.run(["bash", str(PG_SCRIPT), "stop", str(run_dir)], timeout=60)


@pytest.fixture
def postgres(postgres_server, request):
    """A database of its own for each test (the server's info, url pointing at it)."""
    name = "t_" + request.node.name[:40].lower()
    _psql(postgres_server, postgres_server["url"], f"CREATE DATABASE {name}")
    return {**postgres_server, "url": postgres_server["url"].rsplit("/", 1)[0] + "/" + name}
    subprocess.run(["rm", "-rf", str(run_dir)])


class Replica:
    def __init__(self, directory: Path, config: dict):
        self.dir = directory
        self.dir.mkdir(exist_ok=True)
        self.config = config
        self.port = int(config["listen"].rsplit(":", 1)[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start_serving(self):
        self.proc, _, self.log = start_gateway(self.dir, self.config)

    def start_standby(self):
        """Starts a replica that must wait: its liveness answers, its readiness says standby."""
        (self.dir / "config.json").write_text(json.dumps(self.config))
        self.log = self.dir / "gateway.log"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(["node", str(REPO / "gateway-server" / "dist" / "cli.js"), "serve", "--config",
                                          str(self.dir / "config.json")], stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        wait_until(lambda: self._get("/api/health/live") == 200, 60, lambda: f"the standby's liveness; log: {self.log.read_text()[-2000:]}")

    def _get(self, path):
        try:
            return requests.get(self.url + path, timeout=2).status_code
        except requests.RequestException:
            return None

    def health(self):
        try:
            r = requests.get(self.url + "/api/health", timeout=5)
        except requests.ConnectionError as e:
            return None, {"error": str(e)}
        return r.status_code, r.json()

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def replicas(postgres, tmp_path):
    ports = [free_port(), free_port()]
    front = ServiceStandIn(ports)
    key = base64.b64encode(os.urandom(32)).decode()
    data_dir = tmp_path / "shared-data"  # a volume both replicas mount (ReadWriteMany in Kubernetes)

    def config(port):
        return {
            "listen": f"127.0.0.1:{port}",
            "data_dir": str(data_dir),
            "encrypt_key": key,
            "log_level": "debug",
            "state_store": {"postgresql_url": postgres["url"], "standby_poll_period": 0.5},
            "cluster": {"api_url": f"{front.url}/api", "heartbeat_period": 1, "check_period": 1,
                        "stop_on_shutdown": False},
            "client": {"address": front.url, "proxy_address": f"gateway://127.0.0.1:{front.port}"},
        }

    made = [Replica(tmp_path / f"replica-{i}", config(p)) for i, p in enumerate(ports)]
    yield front, made
    for r in made:
        if r.proc:
            stop(r.proc)
    front.close()


def _gateway(front: ServiceStandIn, user="alice"):
    from dask_gateway import Gateway
    from dask_gateway.auth import BasicAuth
    return Gateway(front.url, proxy_address=f"gateway://127.0.0.1:{front.port}", auth=BasicAuth(user))


def _af_cluster(front, name, user="alice"):
    return requests.get(f"{front.url}/api/af/clusters/{name}", auth=(user, ""), timeout=10).json()


def test_a_standby_takes_over_a_running_cluster_when_the_serving_replica_dies(replicas):
    front, (a, b) = replicas
    a.start_serving()
    b.start_standby()
    code, body = b.health()
    assert (code, body["status"]) == (503, "standby"), body
    assert requests.get(b.url + "/api/v1/clusters/", auth=("alice", ""), timeout=5).json()["code"] == "standby"
    assert front.ready() == a.port

    gateway = _gateway(front)
    cluster = gateway.new_cluster(shutdown_on_close=False)  # stopped explicitly below, through the new replica
    name = cluster.name
    fresh = None
    try:
        cluster.scale(1)
        client = cluster.get_client()
        client.wait_for_workers(1, timeout=60)
        assert client.submit(sum, range(10)).result(timeout=30) == 45
        client.close()
        pids_before = sorted(p.pid for p in cluster_procs(name))

        a.kill9()
        t0 = time.monotonic()
        wait_until(lambda: b.health()[0] == 200, 30, lambda: f"the standby to serve; its log: {b.log.read_text()[-3000:]}")
        takeover_s = time.monotonic() - t0
        print(f"standby serving {takeover_s:.2f} s after the serving replica was SIGKILLed")
        assert takeover_s < 10

        # The same cluster, adopted (same processes), through the same address.
        info = _af_cluster(front, name)
        assert info["status"] == "RUNNING", info
        assert sorted(p.pid for p in cluster_procs(name)) == pids_before
        assert "adopted cluster after restart" in b.log.read_text()

        # Scaling goes to the scheduler from the new replica; the heartbeats reach it through the front.
        fresh = _gateway(front)
        again = fresh.connect(name)
        again.scale(2)
        client = again.get_client()
        client.wait_for_workers(2, timeout=60)
        assert sum(client.gather(client.map(lambda x: x * x, range(20)))) == 2470
        client.close()
        wait_until(lambda: _af_cluster(front, name)["workers"]["running"] == 2, 30,
                   lambda: f"2 running workers seen by the new replica: {_af_cluster(front, name)}")

        # The old replica comes back: it waits as the standby now.
        a.start_standby()
        assert a.health()[0] == 503
        fresh.stop_cluster(name)
        wait_until(lambda: not cluster_procs(name), 60, "the cluster's processes to be gone after shutdown")
        assert _af_cluster(front, name)["status"] == "STOPPED"
    finally:
        kill_procs([p.pid for p in cluster_procs(name)])
        cluster.close()
        for g in (gateway, fresh):
            if g is not None:
                g.close()


def test_a_replica_that_loses_its_lease_stops_serving(replicas, postgres):
    """A database failover or a network cut ends the lease's session: the replica must exit rather
    than go on driving clusters that a standby is about to adopt."""
    front, (a, b) = replicas
    a.start_serving()
    b.start_standby()
    killed = _psql(postgres, postgres["url"], "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted")
    assert killed == "t"
    assert a.proc.wait(15) == 75
    assert "lost the state store lease" in a.log.read_text()
    wait_until(lambda: b.health()[0] == 200, 30, lambda: f"the standby to serve; its log: {b.log.read_text()[-3000:]}")
