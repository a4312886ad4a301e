"""Tenant isolation on the local backend, tried as a hostile user would.

A multi-user gateway runs as its own unprivileged account (af-gateway) and starts each user's
schedulers, workers and workflow steps as that user's account through a launcher it may start only
through a narrow sudo rule (scripts/test-accounts.sh makes the accounts and the rule). mallory is
the hostile user: from her Dask tasks (on her scheduler and her workers) and her workflow steps she
tries to read the gateway's key, state and environment and alice's cluster files and workspace,
and to make the gateway read or write through links she plants. Each attempt must fail, and
alice's cluster must keep working meanwhile.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import requests

from af_e2e_support import REPO as REPO_ROOT, clients_with_a_worker, free_port, stop, wait_http

CLI = REPO_ROOT / "gateway-server" / "dist" / "cli.js"
VENV_PYTHON = str(REPO_ROOT / ".venv" / "bin" / "python")
PASSWORD = "isolation-test"
CANARY = "gateway-secret-canary-0b7e"  # in the gateway's environment only


def _accounts() -> dict:
    out = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "test-accounts.sh"), "ensure"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(Path(out.stdout.strip()).read_text())


@pytest.fixture(scope="module")
def accounts():
    return _accounts()


@pytest.fixture(scope="module")
def gateway(accounts):
    """A multi-user gateway running as af-gateway, with its data in a directory of that account's."""
    gw = accounts["gateway"]
    root = Path(tempfile.mkdtemp(prefix="af-isolation-"))
    os.chown(root, gw["uid"], gw["gid"])
    os.chmod(root, 0o711)
    data = root / "data"
    port = free_port()
    config = {
        "listen": f"127.0.0.1:{port}",
        "data_dir": str(data),
        "auth": {"type": "simple", "simple": {"password": PASSWORD}},
        "accounts": {"name_template": "af-{user}", "group": accounts["group"], "create": True},
        "backend": {"type": "local", "local": {"python": VENV_PYTHON, "stop_grace_period": 2}},
        "workflows": {"poll_period": 0.2},
    }
    cfg = root / "config.json"
    cfg.write_text(json.dumps(config))
    os.chown(cfg, gw["uid"], gw["gid"])
    log = root / "gateway.log"
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": gw["home"],
           "AF_GATEWAY_RUCIO_PASSWORD_CANARY": CANARY}
    with open(log, "w") as out:
        proc = subprocess.Popen([shutil.which("runuser") or "/usr/sbin/runuser", "-u", gw["name"], "--", "node", str(CLI), "serve", "--config", str(cfg)],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/api/health", proc, log)
        yield {"url": url, "data": data, "proc": proc, "log": log, "port": port, "config": cfg}
    finally:
        stop(proc)
        # Whatever a failed test left running: only this gateway's (other runs on the machine use the
        # same test accounts), found by the clusters' directories and the runs' workspace.
        homes = [Path(pwd.getpwnam(n).pw_dir) / ".af-gateway" / "clusters" for n in ("af-alice", "af-mallory")]
        mine = [h / c for h in homes for c in CREATED if (h / c).exists()]
        for p in psutil.process_iter():
            try:
                cwd = p.cwd()
            except psutil.Error:
                continue
            if any(cwd.startswith(str(d)) for d in [root, *mine]):
                p.kill()
        shutil.rmtree(root, ignore_errors=True)
        for d in mine:
            shutil.rmtree(d, ignore_errors=True)


def gateway_pid(gw) -> int:
    """The node process itself (runuser is its parent), found by its own config file: other gateways of the
    af-gateway account may run on the machine at the same time (the e2e suite runs modules side by side)."""
    out = subprocess.run(["pgrep", "-u", "af-gateway", "-f", f"{CLI} serve --config {gw['config']}$"], capture_output=True, text=True)
    pids = [int(p) for p in out.stdout.split()]
    assert pids, "the gateway's node process was not found"
    return pids[0]


CREATED: list[str] = []  # the clusters this module made (its teardown cleans up after them only)


def dask_gateway(gw, user):
    from dask_gateway import BasicAuth, Gateway

    class Tracked(Gateway):
        def new_cluster(self, *args, **kwargs):
            cluster = super().new_cluster(*args, **kwargs)
            CREATED.append(cluster.name)
            return cluster

    return Tracked(gw["url"], auth=BasicAuth(user, PASSWORD))


def uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def cluster_pids(name: str) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {"scheduler": [], "worker": []}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        for role in found:
            if cmd.startswith(f"af-gateway: {role} {name}"):
                found[role].append(int(entry.name))
    return found


def api(gw, method, path, user, **kw):
    return requests.request(method, gw["url"] + path, auth=(user, PASSWORD), timeout=30, **kw)


def test_a_hostile_users_dask_code_reaches_neither_the_gateway_nor_another_user(gateway, accounts):
    # (defined here so that cloudpickle ships them by value to mallory's scheduler and workers)
    def try_read(path):
        try:
            with open(path, "rb") as f:
                return "READ:" + f.read(64).hex()
        except Exception as exc:  # noqa: BLE001 - the type is the answer
            return type(exc).__name__

    def try_list(path):
        import os as _os
        try:
            return "LISTED:" + ",".join(sorted(_os.listdir(path)))
        except Exception as exc:  # noqa: BLE001
            return type(exc).__name__

    alice_gw, mallory_gw = dask_gateway(gateway, "alice"), dask_gateway(gateway, "mallory")
    alice = alice_gw.new_cluster()
    mallory = mallory_gw.new_cluster()
    try:
        ac, mc = clients_with_a_worker((alice, mallory), 60)

        # every process of a cluster runs as its owner's account, none as the gateway's
        for name, user in ((alice.name, "alice"), (mallory.name, "mallory")):
            pids = cluster_pids(name)
            assert pids["scheduler"] and pids["worker"], pids
            assert {uid_of(p) for p in pids["scheduler"] + pids["worker"]} == {accounts["users"][user]["uid"]}
        gw_pid = gateway_pid(gateway)
        assert uid_of(gw_pid) == accounts["gateway"]["uid"]

        data = gateway["data"]
        alice_dir = Path(accounts["users"]["alice"]["home"]) / ".af-gateway" / "clusters" / alice.name
        targets = [data / "encrypt.key", data / "state.sqlite", f"/proc/{gw_pid}/environ",
                   alice_dir / "dask.pem", alice_dir / "api-token"]
        assert (alice_dir / "dask.pem").exists() and (data / "encrypt.key").exists()
        for where, run in (("scheduler", lambda f, p: mc.run_on_scheduler(f, str(p))),
                           ("worker", lambda f, p: mc.submit(f, str(p), pure=False).result(timeout=30))):
            for target in targets:
                assert run(try_read, target) == "PermissionError", f"{where} read {target}"
            assert run(try_list, data / "clusters") == "PermissionError", where
            assert run(try_list, Path(accounts["users"]["alice"]["home"])) == "PermissionError", where
        # her own launcher (her account, but holding the gateway's pipe and log) is out of her reach
        launchers = [p.pid for p in psutil.process_iter(["cmdline", "uids"])
                     if " ".join(p.info["cmdline"] or []).startswith("af-gateway: launcher") and p.info["uids"]
                     and p.info["uids"].real == accounts["users"]["mallory"]["uid"]]
        assert launchers, "mallory's launcher was not found"
        for pid in launchers:
            assert mc.run_on_scheduler(try_list, f"/proc/{pid}/fd") == "PermissionError"
            assert mc.run_on_scheduler(try_read, f"/proc/{pid}/environ") == "PermissionError"
        # the canary of the gateway's environment reached none of mallory's processes
        env = mc.run_on_scheduler(lambda: dict(__import__("os").environ))
        assert CANARY not in json.dumps(env)
        # and her own files are her own
        assert mc.run_on_scheduler(try_read, str(Path(accounts["users"]["mallory"]["home"]) / ".af-gateway" / "clusters" / mallory.name / "dask.pem")).startswith("READ:")

        # alice's dashboard: through the gateway for her; on its own port for no one else
        status = requests.get(f"{gateway['url']}/clusters/{alice.name}/status", auth=("alice", PASSWORD), timeout=30)
        assert status.status_code == 200 and "bokeh" in status.text.lower()
        assert requests.get(f"{gateway['url']}/clusters/{alice.name}/status", auth=("mallory", PASSWORD), timeout=30).status_code == 403
        ports = sorted({c.laddr.port for p in cluster_pids(alice.name)["scheduler"]
                        for c in psutil.Process(p).net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN})
        assert len(ports) >= 3, ports  # comm, dashboard, the dask-gateway API

        def try_dashboard(port):
            import ssl as _ssl
            import urllib.request as _u
            ctx = _ssl.create_default_context()
            ctx.check_hostname, ctx.verify_mode = False, _ssl.CERT_NONE
            seen = []
            for scheme in ("http", "https"):
                try:
                    with _u.urlopen(f"{scheme}://127.0.0.1:{port}/status", timeout=5, context=ctx if scheme == "https" else None) as r:
                        seen.append(f"{scheme}:{r.status}:{r.read(200000).decode(errors='replace')}")
                except Exception as exc:  # noqa: BLE001
                    seen.append(f"{scheme}:{type(exc).__name__}")
            return seen

        for port in ports:
            for answer in mc.run_on_scheduler(try_dashboard, port):
                assert "bokeh" not in answer.lower() and ":200:" not in answer, (port, answer[:300])

        # alice's cluster went on working throughout
        assert ac.submit(sum, [1, 2, 3]).result(timeout=30) == 6
    finally:
        for c in (alice, mallory):
            c.shutdown()
        alice_gw.close()
        mallory_gw.close()
    # stopped clusters leave no process (the gateway stopped them as their owners)
    for c in (alice, mallory):
        pids = cluster_pids(c.name)
        assert not pids["scheduler"] and not pids["worker"], pids


def test_a_log_link_planted_by_a_scheduler_shows_nothing_of_the_gateway(gateway, accounts):
    g = dask_gateway(gateway, "mallory")
    cluster = g.new_cluster()
    try:
        client = cluster.get_client()
        key = str(gateway["data"] / "encrypt.key")

        def plant_and_die(target):
            import os as _os
            log = _os.path.join(_os.getcwd(), "scheduler.log")
            _os.replace(log, log + ".old")
            _os.symlink(target, log)
            _os.kill(_os.getpid(), 9)

        try:
            client.run_on_scheduler(plant_and_die, key)
        except Exception:  # noqa: BLE001 - the scheduler died under the call
            pass
        deadline = time.time() + 60
        while time.time() < deadline:
            info = api(gateway, "GET", f"/api/af/clusters/{cluster.name}", "mallory").json()
            if info["status"] == "FAILED":
                break
            time.sleep(0.5)
        assert info["status"] == "FAILED", info
        key_text = (gateway["data"] / "encrypt.key").read_text().strip()
        assert key_text not in info["message"]
        assert "no log was written" in info["message"], info["message"]
    finally:
        cluster.close()
        g.close()


def step_workflow(cmd: str) -> dict:
    return {
        "entry": "workflow.yml",
        "files": {
            "workflow.yml": "stages:\n  - name: work\n    dependencies: [init]\n    scheduler:\n"
                            "      scheduler_type: singlestep-stage\n      parameters: {}\n"
                            "      step: {$ref: 'steps.yml#/work'}\n",
            "steps.yml": "work:\n  process:\n    process_type: string-interpolated-cmd\n"
                         f"    cmd: {json.dumps(cmd)}\n"
                         "  publisher:\n    publisher_type: constant-pub\n    publish: {}\n"
                         "  environment:\n    environment_type: localproc-env\n",
        },
    }


def wait_run(gateway, user, run_id, statuses=("SUCCESS", "FAILED", "CANCELLED"), timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = api(gateway, "GET", f"/api/af/workflows/{run_id}", user)
        assert r.status_code == 200, r.text
        run = r.json()["run"]
        if run["status"] in statuses:
            return run
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} still {run['status']}")


def test_workflow_steps_run_as_their_owner_and_cannot_turn_the_gateway_against_anyone(gateway, accounts):
    data = gateway["data"]
    key = data / "encrypt.key"
    key_before = key.read_bytes()
    # alice's run: a workspace mallory will try to enter
    r = api(gateway, "POST", "/api/af/workflows", "alice", json=step_workflow("echo alice-private > secret.txt"))
    assert r.status_code in (200, 201), r.text
    alice_run = wait_run(gateway, "alice", r.json()["id"])
    assert alice_run["status"] == "SUCCESS", alice_run
    alice_ws = alice_run["workspace"]

    # mallory's step: who it runs as, what it can read, and links planted where the gateway writes and reads
    cmd = (f"id -u > whoami.txt; cat {key} > stolen-key.txt 2> key-error.txt; "
           f"ls {alice_ws}/work > alice.txt 2> alice-error.txt; "
           f"ln -s {key} .af/command.x && mv -f .af/command.x .af/command; "
           f"ln -s {key} .af/log.x && mv -f .af/log.x .af/log; exit 3")
    r = api(gateway, "POST", "/api/af/workflows", "mallory", json=step_workflow(cmd))
    assert r.status_code in (200, 201), r.text
    run = wait_run(gateway, "mallory", r.json()["id"])
    assert run["status"] == "FAILED", run
    ws = Path(run["workspace"]) / "work"
    assert (ws / "whoami.txt").read_text().strip() == str(accounts["users"]["mallory"]["uid"])
    assert (ws / "stolen-key.txt").read_text() == "" and "Permission denied" in (ws / "key-error.txt").read_text()
    assert (ws / "alice.txt").read_text() == "" and "Permission denied" in (ws / "alice-error.txt").read_text()
    # the gateway did not read its key through the planted log link: not in the run, nor in the log route
    key_text = key.read_text().strip()
    assert key_text not in json.dumps(run)
    log = api(gateway, "GET", f"/api/af/workflows/{run['id']}/nodes/work/log", "mallory")
    assert log.status_code == 409 and key_text not in log.text, log.text
    dl = api(gateway, "GET", f"/api/af/workflows/{run['id']}/files/work/.af/log", "mallory")
    assert dl.status_code in (400, 404) and key_text not in dl.text, dl.text

    # a retry rewrites the step's command: through mallory's link it would have overwritten the key
    r = api(gateway, "POST", f"/api/af/workflows/{run['id']}/retry", "mallory")
    assert r.status_code == 200, r.text
    wait_run(gateway, "mallory", run["id"])
    assert key.read_bytes() == key_before
    assert not (ws / ".af" / "command").is_symlink()

    # and mallory cannot see alice's run through the API either
    assert api(gateway, "GET", f"/api/af/workflows/{alice_run['id']}", "mallory").status_code == 404
    assert api(gateway, "GET", f"/api/af/workflows/{alice_run['id']}/files/work/secret.txt", "mallory").status_code == 404
    assert api(gateway, "GET", f"/api/af/workflows/{alice_run['id']}/files/work/secret.txt", "alice").content == b"alice-private\n"


def test_a_user_without_a_usable_account_is_refused_before_anything_starts(gateway):
    # 'Nobody.Here' would be the account af-Nobody.Here, which is no POSIX name: a clear 403, nothing left behind
    r = requests.post(gateway["url"] + "/api/v1/clusters/", json={}, auth=("Nobody.Here", PASSWORD), timeout=30)
    assert r.status_code == 403, r.text
    assert "no usable account" in r.json()["error"] and "not a valid POSIX account name" in r.json()["error"]
    assert requests.get(gateway["url"] + "/api/v1/clusters/", auth=("Nobody.Here", PASSWORD), timeout=30).json() == {}


def test_a_new_users_account_is_created_on_first_use_in_the_group_and_range(gateway, accounts):
    name = "af-newcomer"
    subprocess.run(["userdel", "--remove", name], capture_output=True, check=False)
    g = dask_gateway(gateway, "newcomer")
    try:
        cluster = g.new_cluster()
        try:
            entry = pwd.getpwnam(name)
            assert 1000 <= entry.pw_uid <= 59999
            assert name in subprocess.run(["getent", "group", accounts["group"]], capture_output=True, text=True).stdout
            assert os.stat(entry.pw_dir).st_mode & 0o777 == 0o700
            assert {uid_of(p) for p in cluster_pids(cluster.name)["scheduler"]} == {entry.pw_uid}
        finally:
            cluster.shutdown()
    finally:
        g.close()
        subprocess.run(["pkill", "-KILL", "-u", name], check=False)
        subprocess.run(["userdel", "--remove", name], capture_output=True, check=False)


def test_single_user_mode_refuses_to_start_for_several_people(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({
        "listen": f"127.0.0.1:{free_port()}",
        "data_dir": str(tmp_path / "data"),
        "auth": {"type": "simple", "simple": {"password": "shared"}},
        "backend": {"type": "local", "local": {"single_user": True}},
    }))
    out = subprocess.run(["node", str(CLI), "serve", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "backend.local.single_user" in out.stderr and "auth.simple.password" in out.stderr, out.stderr


def test_a_forged_heartbeat_cannot_point_the_gateway_at_another_service(gateway):
    """mallory owns her cluster's API token (it is in her directory): she can send heartbeats of her
    own. Their addresses may name only ports on the scheduler's host, and the dashboard proxy then
    speaks TLS with her cluster's CA both ways: an internal plain service is not reached."""
    import http.server
    import threading

    hits = []

    class Internal(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            body = b"INTERNAL-SECRET"
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    internal = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Internal)
    threading.Thread(target=internal.serve_forever, daemon=True).start()
    g = dask_gateway(gateway, "mallory")
    cluster = g.new_cluster()
    try:
        client = cluster.get_client()
        token = client.run_on_scheduler(lambda: open("api-token").read().strip())
        port = internal.server_address[1]

        def beat(**addresses):
            body = {"scheduler_address": "tls://127.0.0.1:1", "dashboard_address": "", "api_address": "http://127.0.0.1:1",
                    "count": 0, "active_workers": [], "closing_workers": [], "closed_workers": [], **addresses}
            return requests.post(f"{gateway['url']}/api/v1/clusters/{cluster.name}/heartbeat", json=body,
                                 headers={"Authorization": f"token {token}"}, timeout=30)

        r = beat(dashboard_address="not an address")
        assert r.status_code == 422 and "dashboard address" in r.json()["error"], r.text
        for forged in (f"HTTP://127.0.0.1:{port}", f"http://169.254.169.254:{port}", f"http://127.0.0.1:{port}"):
            r = beat(dashboard_address=forged, scheduler_address=f"tls://10.0.0.1:{port}")
            assert r.status_code == 204, r.text
            seen = api(gateway, "GET", f"/clusters/{cluster.name}/latest/meta-data", "mallory")
            assert "INTERNAL-SECRET" not in seen.text, forged
        assert hits == []
    finally:
        internal.shutdown()
        cluster.close()
        g.close()


def data_workflow(cmd: str, data: dict) -> dict:
    """A one-step workflow reading the init parameter f (a data file's name, which the init turns into its path)."""
    body = step_workflow(cmd)
    body["files"]["workflow.yml"] = body["files"]["workflow.yml"].replace(
        "parameters: {}", "parameters: {f: {stages: init, output: f, unwrap: true}}")
    body["parameters"] = {"f": "input.txt"}
    body["data"] = data
    return body


def test_a_runs_data_is_read_by_its_owners_steps_and_written_or_read_by_no_one_else(gateway, accounts):
    # alice's run carries a file; her step (as her account) reads it through the path the init found, and cannot change it
    r = api(gateway, "POST", "/api/af/workflows", "alice", json=data_workflow(
        "cat {f} > copy.txt; (echo tampered >> {f}) 2> write-error.txt; touch $(dirname {f})/new.txt 2>> write-error.txt; true",
        {"files": {"init/input.txt": "alice-data\n"}}))
    assert r.status_code == 201, r.text
    alice_run = wait_run(gateway, "alice", r.json()["id"])
    assert alice_run["status"] == "SUCCESS", alice_run
    ws = Path(alice_run["workspace"])
    data_file = ws / ".af" / "data" / "init" / "input.txt"
    assert (ws / "work" / "copy.txt").read_text() == "alice-data\n"
    assert data_file.read_text() == "alice-data\n" and not (data_file.parent / "new.txt").exists()
    assert (ws / "work" / "write-error.txt").read_text().count("Permission denied") == 2

    # mallory's step cannot read it, by its path or by listing the data directory
    r = api(gateway, "POST", "/api/af/workflows", "mallory", json=step_workflow(
        f"cat {data_file} > got.txt 2> err.txt; ls {data_file.parent} >> got.txt 2>> err.txt; true"))
    assert r.status_code == 201, r.text
    run = wait_run(gateway, "mallory", r.json()["id"])
    assert run["status"] == "SUCCESS", run
    mine = Path(run["workspace"]) / "work"
    assert (mine / "got.txt").read_text() == ""
    assert (mine / "err.txt").read_text().count("Permission denied") == 2

    # data naming a place outside the run is refused before anything exists
    r = api(gateway, "POST", "/api/af/workflows", "mallory", json=data_workflow(
        "true", {"files": {"init/input.txt": "x"}, "subinits": {"work": str(ws / ".af" / "data")}}))
    assert r.status_code == 422 and "is not a relative path inside the run's data" in r.json()["error"], r.text
