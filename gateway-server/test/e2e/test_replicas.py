"""Several gateway replicas on one PostgreSQL state store: one serves, the other waits; when the
serving one is SIGKILLed the standby takes over its running cluster, and the real dask_gateway
client keeps working through the same address.

The PostgreSQL server is real (scripts/postgres.sh: Debian's server binaries). In front of the two
replicas sits `ServiceStandIn` (af_e2e_support): clients, schedulers' heartbeats and the TLS
scheduler traffic all go through it, as they would through the Service the Helm chart makes.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time

import pytest
import requests

from af_e2e_support import CLI, Replica, ServiceStandIn, free_port, new_database, psql, running_postgres, stop
from conftest import cluster_procs, kill_procs, wait_until


@pytest.fixture(scope="module")
def postgres_server():
    with running_postgres() as info:
        yield info


@pytest.fixture
def postgres(postgres_server, request):
    """A database of its own for each test (the server's info, url pointing at it)."""
    return new_database(postgres_server, "t_" + request.node.name[:40].lower())


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
            "accounts": {"name_template": "af-{user}"},
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
    killed = psql(postgres, postgres["url"], "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted")
    assert killed == "t"
    assert a.proc.wait(15) == 75
    assert "lost the state store lease" in a.log.read_text()
    wait_until(lambda: b.health()[0] == 200, 30, lambda: f"the standby to serve; its log: {b.log.read_text()[-3000:]}")


def test_copy_state_moves_a_running_cluster_from_sqlite_to_postgresql(postgres, tmp_path):
    """The way from one gateway to replicas: stop it (clusters keep running), copy its state, start
    on PostgreSQL; the cluster is adopted and computes; a second copy into the same database is refused."""
    port = free_port()
    key = base64.b64encode(os.urandom(32)).decode()
    config = {"listen": f"127.0.0.1:{port}", "data_dir": str(tmp_path / "data"), "encrypt_key": key,
              "accounts": {"name_template": "af-{user}"},
              "cluster": {"heartbeat_period": 1, "check_period": 1, "stop_on_shutdown": False}}
    single = Replica(tmp_path / "single", config)
    single.start_serving()
    from dask_gateway import Gateway
    from dask_gateway.auth import BasicAuth
    gateway = Gateway(single.url, proxy_address=f"gateway://127.0.0.1:{port}", auth=BasicAuth("alice"))
    cluster = gateway.new_cluster(shutdown_on_close=False)
    name = cluster.name
    try:
        cluster.scale(1)
        client = cluster.get_client()
        client.wait_for_workers(1, timeout=60)
        client.close()
        stop(single.proc)  # SIGTERM: a normal stop, the cluster keeps running

        cli = ["node", str(CLI), "copy-state", "--config", str(single.dir / "config.json"),
                "--to-postgresql", postgres["url"]]
        out = subprocess.run(cli, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        copied = json.loads(out.stdout)["copied"]
        assert copied["clusters"] == 1 and copied["workers"] == 1, copied
        assert postgres["url"].split("@")[0].split(":")[-1] not in out.stdout + out.stderr  # no password printed

        again = subprocess.run(cli, capture_output=True, text=True, timeout=60)
        assert again.returncode == 1 and "already holds gateway state" in again.stderr, again
        # the database keeps the SQLite state's name, which the HTCondor and Kubernetes backends label their jobs and pods with
        assert psql(postgres, postgres["url"], "SELECT value FROM af_gateway_meta WHERE key = 'identity'") == str((tmp_path / "data").resolve())

        replica = Replica(tmp_path / "replica", {**config, "state_store": {"postgresql_url": postgres["url"]}})
        replica.start_serving()
        try:
            serving = subprocess.run(cli, capture_output=True, text=True, timeout=60)
            assert serving.returncode == 1 and "a gateway is serving" in serving.stderr, serving
            info = requests.get(f"{replica.url}/api/af/clusters/{name}", auth=("alice", ""), timeout=10).json()
            assert info["status"] == "RUNNING", info
            client = cluster.get_client()
            assert client.submit(sum, range(5)).result(timeout=30) == 10
            client.close()
            cluster.shutdown()
        finally:
            stop(replica.proc)
    finally:
        kill_procs([p.pid for p in cluster_procs(name)])
        gateway.close()


def _self_signed(directory):
    import datetime
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    (directory / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    return {"cert_file": str(directory / "tls.crt"), "key_file": str(directory / "tls.key")}


def test_a_standby_answers_https_like_the_serving_replica_and_stops_on_sigterm(replicas, tmp_path):
    """With a certificate the probes speak HTTPS to every replica; a standby (PID 1 in a pod ignores
    SIGTERM without a handler) stops at once when asked."""
    front, (a, b) = replicas
    tls = _self_signed(tmp_path)
    for r in (a, b):
        r.config["tls"] = tls
    a.start_serving()
    b.start_standby()
    live = requests.get(f"https://127.0.0.1:{b.port}/api/health/live", verify=tls["cert_file"], timeout=5)
    assert (live.status_code, live.json()["status"]) == (200, "standby")
    ready = requests.get(f"https://127.0.0.1:{b.port}/api/health", verify=tls["cert_file"], timeout=5)
    assert (ready.status_code, ready.json()["status"]) == (503, "standby")
    assert requests.get(f"https://127.0.0.1:{a.port}/api/health", verify=tls["cert_file"], timeout=5).status_code == 200
    t0 = time.monotonic()
    b.proc.send_signal(signal.SIGTERM)
    assert b.proc.wait(10) == 0
    assert time.monotonic() - t0 < 5
    assert "before the gateway served" in b.log.read_text()
