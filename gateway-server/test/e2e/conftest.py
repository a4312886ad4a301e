"""Shared machinery of the AF Gateway end-to-end suite.

The suite drives a real gateway process with the unmodified ``dask_gateway``
client.  Two targets are supported:

* ``ours`` (default): ``node gateway-server/dist/cli.js serve --config ...``
* ``peer`` (``AF_E2E_TARGET=peer``): dask-gateway-server from the same venv,
  configured to behave like ours where the two overlap.  Only used to validate
  the client-side expectations of the suite; AF Gateway-only contract points
  are skipped (with a reason) in that mode.

Every gateway runs under ``gateway_supervisor.py``, a child subreaper: what
the gateway leaves behind (also after a SIGKILL) stays below it, is reaped
when it exits, and is killed by the fixtures' finalizers, also when a test
fails.
"""

from __future__ import annotations

import gc
import importlib.machinery
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import requests
import yaml

E2E_DIR = Path(__file__).resolve().parent
REPO_ROOT = E2E_DIR.parents[2]
CLI_JS = REPO_ROOT / "gateway-server" / "dist" / "cli.js"

_venv_python = REPO_ROOT / ".venv" / "bin" / "python"
VENV_PYTHON = str(_venv_python if _venv_python.exists() else Path(sys.executable))

TARGET = os.environ.get("AF_E2E_TARGET", "ours").strip().lower() or "ours"
IS_PEER = TARGET == "peer"

# dask-gateway-server's local backend needs SQLAlchemy (its ``[local]``
# extra), which is not part of the project's venv.  Point this at a
# directory holding it (``pip install --target DIR sqlalchemy greenlet``).
PEER_PYTHONPATH = os.environ.get("AF_E2E_PEER_PYTHONPATH", "")

MARKER = "af-gateway"
MiB = 2**20
GiB = 2**30

# Defaults of the ``cluster`` section used by the suite (contract defaults,
# except a short adaptive period so adaptive tests stay quick).
DEFAULT_CLUSTER_CONFIG = {
    "max_workers": None,
    "start_timeout": 60,
    "worker_start_timeout": 60,
    "worker_max_failures": 3,
    "heartbeat_period": 10,
    "heartbeat_timeout": 30,
    "idle_timeout": 0,
    "adaptive_period": 1,
}


def pytest_configure(config):
    if TARGET not in ("ours", "peer"):
        raise pytest.UsageError(
            f"AF_E2E_TARGET must be 'ours' or 'peer', got {TARGET!r}"
        )


def pytest_report_header(config):
    return f"af-gateway e2e target: {TARGET}"


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------


def only_ours(what: str) -> None:
    """Skip the rest of a test in peer mode: ``what`` is AF Gateway-only."""
    if IS_PEER:
        pytest.skip(f"peer mode: {what} is an AF Gateway contract point")


from af_e2e_support import free_port, start_provider, stop  # noqa: E402  (one picker: it skips the ports fetch() refuses)


def wait_until(fn, timeout: float, message, interval: float = 0.25):
    """Poll ``fn`` until it returns a truthy value (returned) or time runs out.

    ``message`` (a string, or a callable giving one when the wait failed)
    says what was awaited.
    """
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() >= deadline:
            what = message() if callable(message) else message
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}; "
                f"last value: {last!r}"
            )
        time.sleep(interval)


def json_error(resp: requests.Response) -> str:
    """Assert the response carries the ``{"error": "..."}`` body; return it."""
    try:
        body = resp.json()
    except ValueError:
        raise AssertionError(
            f"{resp.request.method} {resp.url} -> {resp.status_code}: body is not "
            f"JSON: {resp.text[:300]!r}"
        ) from None
    assert isinstance(body, dict) and isinstance(body.get("error"), str), (
        f"{resp.request.method} {resp.url} -> {resp.status_code}: expected "
        f'{{"error": "..."}}, got {body!r}'
    )
    assert body["error"].strip(), "empty error message"
    return body["error"]


# --------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------

SUPERVISOR = E2E_DIR / "gateway_supervisor.py"


@dataclass
class Proc:
    pid: int
    pgid: int
    cmdline: list[str]
    cluster_env: str | None = None
    api_url_env: str | None = None
    create_time: float = 0.0
    cwd: str = ""

    @property
    def cmd(self) -> str:
        return " ".join(self.cmdline)

    @property
    def has_marker(self) -> bool:
        return MARKER in self.cmd

    @property
    def role(self) -> str:
        m = re.search(MARKER + r"\W+(scheduler|worker)\b", self.cmd)
        if m:
            return m.group(1)
        if re.search(r"dask[_-]scheduler|dask scheduler", self.cmd):
            return "scheduler"
        if re.search(r"dask[_-]worker|dask worker", self.cmd):
            return "worker"
        return "other"


def _read_proc(p: psutil.Process) -> Proc | None:
    try:
        if p.status() == psutil.STATUS_ZOMBIE:
            return None
        cmdline = p.cmdline()
        try:
            env = p.environ()
        except psutil.Error:
            env = {}
        try:
            cwd = p.cwd()
        except psutil.Error:
            cwd = ""
        return Proc(
            pid=p.pid,
            pgid=os.getpgid(p.pid),
            cmdline=cmdline,
            cluster_env=env.get("DASK_GATEWAY_CLUSTER_NAME"),
            api_url_env=env.get("DASK_GATEWAY_API_URL"),
            create_time=p.create_time(),
            cwd=cwd,
        )
    except (psutil.Error, ProcessLookupError, OSError):
        return None


def all_procs() -> list[Proc]:
    out = []
    me = os.getpid()
    for p in psutil.process_iter():
        if p.pid == me:
            continue
        info = _read_proc(p)
        if info is not None:
            out.append(info)
    return out


def cluster_procs(name: str) -> list[Proc]:
    """Live processes of cluster ``name``.

    A process belongs to the cluster when its command line carries the
    ``af-gateway`` marker and the cluster name (AF Gateway's contract), when
    its environment names the cluster (what dask_gateway's scheduler preload
    reads; unreadable once a process retitles itself), or when it runs in a
    working directory named after the cluster (how dask-gateway-server's
    local backend places them; lets peer mode find its processes).
    """
    return [
        p
        for p in all_procs()
        if (p.has_marker and name in p.cmd)
        or p.cluster_env == name
        or name in Path(p.cwd).parts
    ]


def roles(procs: list[Proc]) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in procs:
        out[p.role] = out.get(p.role, 0) + 1
    return out


def describe(procs: list[Proc]) -> str:
    return "; ".join(f"{p.pid}[{p.role}] {p.cmd[:160]}" for p in procs) or "none"


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def kill_procs(pids, timeout: float = 10.0) -> None:
    """SIGKILL ``pids`` and wait (bounded) until they are gone."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + timeout
    remaining = set(pids)
    while remaining and time.monotonic() < deadline:
        remaining = {pid for pid in remaining if not _gone(pid)}
        if remaining:
            time.sleep(0.1)


# --------------------------------------------------------------------------
# the gateway process
# --------------------------------------------------------------------------

_LIVE_SERVERS: list["GatewayServer"] = []


@dataclass
class GatewayServer:
    """One gateway (ours or the peer) with its config, data dir and log."""

    root: Path
    cluster: dict = field(default_factory=dict)
    password: str | None = None
    port: int = 0
    starts: int = 0
    _gw_pid: int | None = None
    _supervisors: list = field(default_factory=list)
    _gateways: list = field(default_factory=list)

    def __post_init__(self):
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.root / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.log_path = self.root / "gateway.log"
        if not self.port:
            self.port = free_port()
        cfg = dict(DEFAULT_CLUSTER_CONFIG)
        cfg.update(self.cluster)
        self.cluster = cfg
        self.config_path = self._write_config()

    # -- addresses -----------------------------------------------------------

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.address + path

    def auth(self, user: str = "alice") -> tuple[str, str]:
        return (user, self.password or "")

    # -- config ---------------------------------------------------------------

    def _write_config(self) -> Path:
        if IS_PEER:
            return self._write_peer_config()
        cfg = {
            "listen": f"127.0.0.1:{self.port}",
            "data_dir": str(self.data_dir),
            "auth": {"type": "simple", "simple": {"password": self.password}},
            # every user runs as their own account (scripts/test-accounts.sh makes af-<user>)
            "accounts": {"name_template": "af-{user}"},
            "backend": {"type": "local", "local": {"python": VENV_PYTHON}},
            "cluster": self.cluster,
        }
        path = self.root / "config.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path

    def _write_peer_config(self) -> Path:
        c = self.cluster
        self.peer_api_port = free_port()
        text = textwrap.dedent(
            f"""\
            # dask-gateway-server config mirroring the AF Gateway e2e config
            from dask_gateway_server.options import Float, Integer, Mapping, Options

            PY = {VENV_PYTHON!r}
            c.DaskGateway.address = "127.0.0.1:{self.peer_api_port}"
            c.DaskGateway.backend_class = (
                "dask_gateway_server.backends.local.UnsafeLocalBackend"
            )
            c.DaskGateway.authenticator_class = (
                "dask_gateway_server.auth.SimpleAuthenticator"
            )
            c.SimpleAuthenticator.password = {self.password!r}
            c.Proxy.address = "127.0.0.1:{self.port}"
            c.Proxy.tcp_address = "127.0.0.1:{self.port}"
            c.UnsafeLocalBackend.clusters_directory = {str(self.data_dir / "clusters")!r}
            # persistent state, so a restarted peer finds its clusters again
            c.UnsafeLocalBackend.db_url = {"sqlite:///" + str(self.data_dir / "peer.sqlite")!r}
            c.UnsafeLocalBackend.db_encrypt_keys = [{self._peer_key()!r}]
            c.UnsafeLocalBackend.cluster_start_timeout = {float(c["start_timeout"])!r}
            c.UnsafeLocalBackend.worker_start_timeout = {float(c["worker_start_timeout"])!r}
            c.UnsafeLocalBackend.worker_start_failure_limit = {int(c["worker_max_failures"])!r}
            c.UnsafeLocalBackend.cluster_heartbeat_period = {int(c["heartbeat_period"])!r}
            c.UnsafeLocalBackend.cluster_heartbeat_timeout = {float(c["heartbeat_timeout"])!r}
            c.UnsafeLocalBackend.cluster_status_period = 2.0
            c.UnsafeLocalBackend.worker_status_period = 2.0
            c.ClusterConfig.scheduler_cmd = [PY, "-m", "distributed.cli.dask_scheduler"]
            # no nanny: like AF Gateway's default (backend.local.nanny: false)
            c.ClusterConfig.worker_cmd = [
                PY, "-m", "distributed.cli.dask_worker", "--no-nanny"
            ]
            c.ClusterConfig.idle_timeout = {float(c["idle_timeout"])!r}
            c.ClusterConfig.adaptive_period = {float(c["adaptive_period"])!r}
            c.ClusterConfig.cluster_max_workers = {c["max_workers"]!r}


            def _apply_options(options):
                return {{
                    "worker_cores": options.worker_cores,
                    "worker_memory": int(options.worker_memory * 2**30),
                    "environment": dict(options.environment),
                }}


            c.Backend.cluster_options = Options(
                Integer("worker_cores", 1, min=1, max=4, label="Worker cores"),
                Float("worker_memory", 1, min=0.25, max=16, label="Worker memory (GiB)"),
                Mapping("environment", {{}}, label="Environment variables"),
                handler=_apply_options,
            )
            """
        )
        path = self.root / "peer_config.py"
        path.write_text(text)
        return path

    def _peer_key(self) -> str:
        import base64

        return base64.urlsafe_b64encode(os.urandom(32)).decode()

    # -- lifecycle ------------------------------------------------------------

    def _command(self) -> tuple[list[str], dict]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DASK_GATEWAY", "AF_GATEWAY", "PYTEST_"))
        }
        if IS_PEER:
            exe = str(Path(VENV_PYTHON).parent / "dask-gateway-server")
            if PEER_PYTHONPATH:
                env["PYTHONPATH"] = os.pathsep.join(
                    p for p in (PEER_PYTHONPATH, env.get("PYTHONPATH", "")) if p
                )
            search = [PEER_PYTHONPATH] if PEER_PYTHONPATH else []
            if importlib.machinery.PathFinder.find_spec(
                "sqlalchemy", search + sys.path
            ) is None:
                pytest.fail(
                    "peer mode needs SQLAlchemy for dask-gateway-server's local "
                    "backend; install it outside the venv (pip install --target DIR "
                    "sqlalchemy greenlet) and set AF_E2E_PEER_PYTHONPATH=DIR",
                    pytrace=False,
                )
            return [exe, "-f", str(self.config_path)], env
        node = os.environ.get("AF_E2E_NODE") or shutil.which("node")
        if not node:
            pytest.fail("node is not on PATH (set AF_E2E_NODE)", pytrace=False)
        if not CLI_JS.exists():
            pytest.fail(
                f"{CLI_JS} does not exist: build gateway-server first "
                "(or run with AF_E2E_TARGET=peer to check the suite itself)",
                pytrace=False,
            )
        cmd = [
            node,
            str(CLI_JS),
            "serve",
            "--config",
            str(self.config_path),
            "--listen",
            f"127.0.0.1:{self.port}",
        ]
        return cmd, env

    @property
    def pid(self) -> int | None:
        """The gateway process (child of the supervisor)."""
        return self._gw_pid

    def running(self) -> bool:
        return self._gw_pid is not None and not _gone(self._gw_pid)

    def start(self, timeout: float = 60.0) -> "GatewayServer":
        assert not self.running(), "already running"
        cmd, env = self._command()
        self.starts += 1
        pidfile = self.root / f"gateway.{self.starts}.pid"
        with open(self.log_path, "ab") as log:
            log.write(
                f"\n===== e2e: start #{self.starts}: {' '.join(cmd)} =====\n".encode()
            )
            log.flush()
            sup = subprocess.Popen(
                [sys.executable, str(SUPERVISOR), str(pidfile), "--", *cmd],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(self.root),
                env=env,
                start_new_session=True,
            )
        self._supervisors.append(sup)
        if self not in _LIVE_SERVERS:
            _LIVE_SERVERS.append(self)
        self._gw_pid = None
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            if self._gw_pid is None and pidfile.exists():
                self._gw_pid = int(pidfile.read_text())
            exit_file = Path(str(pidfile) + ".exit")
            if exit_file.exists() or sup.poll() is not None:
                code = exit_file.read_text() if exit_file.exists() else "?"
                self.stop()
                pytest.fail(
                    f"gateway exited with code {code} while starting.\n"
                    f"--- log tail ({self.log_path}) ---\n{self.log_tail()}",
                    pytrace=False,
                )
            if self._gw_pid is not None:
                try:
                    r = requests.get(self.url("/api/health"), timeout=2)
                    if r.status_code == 200:
                        return self
                    last = f"{r.status_code} {r.text[:200]}"
                except requests.RequestException as exc:
                    last = repr(exc)
            if time.monotonic() >= deadline:
                self.stop()
                pytest.fail(
                    f"gateway did not answer GET /api/health with 200 within "
                    f"{timeout:.0f}s (last: {last}).\n--- log tail "
                    f"({self.log_path}) ---\n{self.log_tail()}",
                    pytrace=False,
                )
            time.sleep(0.2)

    def _wait_gateway_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.running():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    def kill9(self) -> None:
        """SIGKILL the gateway process only (its clusters keep running)."""
        assert self.running(), "gateway is not running"
        os.kill(self._gw_pid, signal.SIGKILL)
        assert self._wait_gateway_gone(30), "gateway survived SIGKILL"

    def stop(self, timeout: float = 40.0) -> None:
        """Stop the gateway (SIGTERM, then SIGKILL) and kill what it left."""
        for gw in self._gateways:
            try:
                gw.close()
            except Exception:
                pass
        self._gateways.clear()
        if self.running():
            os.kill(self._gw_pid, signal.SIGTERM)
            if not self._wait_gateway_gone(timeout):
                try:
                    os.killpg(self._gw_pid, signal.SIGKILL)
                except OSError:
                    pass
                self._wait_gateway_gone(30)
        # give what the gateway started a moment to exit on its own
        deadline = time.monotonic() + 5
        while self.leftovers() and time.monotonic() < deadline:
            time.sleep(0.2)
        self.kill_leftovers()
        for sup in self._supervisors:
            try:
                sup.wait(timeout=15)
            except subprocess.TimeoutExpired:
                sup.kill()
                sup.wait(timeout=15)
        if self in _LIVE_SERVERS:
            _LIVE_SERVERS.remove(self)

    def leftovers(self) -> list[Proc]:
        """Live processes started on behalf of this gateway (its supervisors'
        descendants, and, to be safe, whatever runs in its directory or talks
        to its port)."""
        pids = set()
        for sup in self._supervisors:
            try:
                pids.update(k.pid for k in psutil.Process(sup.pid).children(recursive=True))
            except psutil.Error:
                pass
        root = str(self.root)
        port_tag = f"127.0.0.1:{self.port}"
        out = []
        for p in all_procs():
            if p.pid in {s.pid for s in self._supervisors}:
                continue
            if (
                p.pid in pids
                or (p.api_url_env is not None and port_tag in p.api_url_env)
                or root in p.cmd
                or p.cwd.startswith(root)
            ):
                out.append(p)
        return out

    def kill_leftovers(self) -> list[Proc]:
        left = self.leftovers()
        if left:
            with open(self.log_path, "ab") as log:
                log.write(
                    f"\n===== e2e: killing leftovers: {describe(left)} =====\n".encode()
                )
            kill_procs([p.pid for p in left])
        return left

    # -- client side ----------------------------------------------------------

    def gateway(self, user: str = "alice", password: str | None = None):
        from dask_gateway import BasicAuth, Gateway

        pw = self.password if password is None else password
        # A new Gateway starts its IO-loop thread while holding distributed's
        # class-wide LoopRunner lock.  If the garbage collector runs in that
        # new thread and finalizes an old (already closed) Gateway sharing a
        # still-running loop, Gateway.__del__ -> close() -> LoopRunner.stop()
        # waits for the same lock: a 10 s stall, then AssertionError in
        # LoopRunner.start.  Collect first, and keep the collector off while
        # the thread starts.
        gc.collect()
        gc.disable()
        try:
            gw = Gateway(
                address=self.address,
                auth=BasicAuth(username=user, password=pw or ""),
            )
        finally:
            gc.enable()
        self._gateways.append(gw)
        return gw

    def log_tail(self, lines: int = 60) -> str:
        try:
            data = self.log_path.read_bytes().decode("utf-8", "replace")
        except OSError:
            return "(no log)"
        return "\n".join(data.splitlines()[-lines:])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and _LIVE_SERVERS:
        for srv in list(_LIVE_SERVERS):
            rep.sections.append(
                (f"gateway log tail ({srv.log_path})", srv.log_tail(40))
            )


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _final_process_sweep():
    """Last line of defence: nothing started by the suite outlives it."""
    yield
    for srv in list(_LIVE_SERVERS):
        try:
            srv.stop()
        except Exception:
            pass
    try:
        rest = psutil.Process().children(recursive=True)
    except psutil.Error:
        rest = []
    kill_procs([p.pid for p in rest])


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    """The test OpenID provider of a module (gateway-server/test/support/oidc-provider.mjs): its
    description (issuer, audience, clients)."""
    proc, info = start_provider(tmp_path_factory.mktemp("op"))
    try:
        yield info
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def gateway_server_factory(tmp_path_factory):
    """Start gateways: ``factory(name, cluster={...}, password=None)``.

    Each server is stopped (and its leftovers killed) at the end of the scope
    of the fixture that asked for it: use ``server.stop()`` or the
    module-level ``make_server`` fixture.
    """

    def factory(name: str, **kwargs) -> GatewayServer:
        srv = GatewayServer(root=tmp_path_factory.mktemp(name), **kwargs)
        return srv

    return factory


def _starter(factory):
    """A `make(name, **config)` that starts gateways, and the list to stop them from."""
    started: list[GatewayServer] = []

    def make(name: str = "gw", **kwargs) -> GatewayServer:
        srv = factory(name, **kwargs)
        started.append(srv)
        return srv.start()

    return make, started


@pytest.fixture(scope="module")
def make_server(gateway_server_factory):
    """Module-scoped: start gateways that are stopped at module end."""
    make, started = _starter(gateway_server_factory)
    yield make
    for srv in reversed(started):
        srv.stop()


@pytest.fixture
def make_server_fn(gateway_server_factory):
    """Function-scoped variant of ``make_server``."""
    make, started = _starter(gateway_server_factory)
    yield make
    for srv in reversed(started):
        srv.stop()


@pytest.fixture(scope="module")
def server(make_server) -> GatewayServer:
    """The module's shared gateway with the default config."""
    return make_server("gw")


def close_cluster(cluster, shutdown: bool = True) -> None:
    """Best-effort close used by finalizers."""
    try:
        cluster.close(shutdown=shutdown)
    except Exception:
        pass


def cluster_names(gw, statuses=("pending", "running", "stopping", "stopped", "failed")):
    return sorted(c.name for c in gw.list_clusters(status=list(statuses)))


def n_workers(client) -> int:
    return len(client.scheduler_info(n_workers=-1)["workers"])
