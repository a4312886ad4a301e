#!/usr/bin/env python
"""Benchmark AF Gateway ("ours") against dask-gateway-server ("peer").

Both gateways are measured in the same run, one after the other, with the
same Python interpreter and Dask, the same worker size (1 thread, 1 GiB),
the same heartbeat/adaptive periods, and the unmodified ``dask_gateway``
client (``BasicAuth(username="bench")``).

Metrics (each repeated ``--repeat`` times, after one unmeasured warm-up):

* cluster start -- wall time of ``gateway.new_cluster()``: submit, status
  RUNNING, cluster object connected to the scheduler (through the gateway's
  proxy).  The time until a ``distributed.Client`` is also connected is
  recorded as a secondary figure.
* scale 0->4   -- on a running cluster with 0 workers, time from
  ``cluster.scale(4)`` until 4 workers are running on the scheduler (the
  criterion of ``client.wait_for_workers(4)``, polled every 20 ms instead of
  its 100 ms).  The cluster is scaled back to 0 and the
  worker processes are waited for between repetitions (scale 4->0 is
  recorded as a secondary figure).
* API          -- authenticated GET of the cluster list, one cluster and the
  options, cycled over 64 keep-alive connections for ``--api-seconds``
  (after a 2 s warm-up), by ``bench/api-load.mjs`` (a raw-socket Node
  loader, so the loader takes little of the 2 cores): req/s and p99.  Two
  ways of calling: HTTP Basic on every request and no cookie (curl,
  scripts, monitoring; the headline), and the session cookie of a first
  answer (what the ``dask_gateway`` client does after its first call).

* boot         -- the gateways started alternately (ours, peer, peer, ours, ...) on a fresh data
  dir, ``--boot-repeat`` times each: wall time from exec until /api/health answers 200, CPU
  seconds spent by then, and the idle RSS 3 s after that answer (the peer: its Python process
  plus its Go proxy; ours: the gateway process, any launcher it started counted separately).

Usage:  .venv/bin/python bench/bench_gateways.py [--repeat N] [--only ours|peer] [--part all|clusters|api|boot]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "bench"
RESULTS_DIR = BENCH_DIR / "results"
VENV = REPO / ".venv"
VENV_PY = VENV / "bin" / "python"
OURS_CLI = REPO / "gateway-server" / "dist" / "cli.js"

WORKER_CORES = 1
WORKER_MEMORY_GIB = 1
HEARTBEAT_PERIOD = 10  # seconds, both gateways
ADAPTIVE_PERIOD = 3  # seconds, both gateways
SCALE_N = 4
POLL = 0.1  # seconds between polls in our own wait loops
SCALE_POLL = 0.02  # seconds between scheduler polls while timing scale-up/down

TARGETS = {  # ours/peer ratio of medians, lower is better
    "cluster_start": 0.6,
    "scale_up": 0.7,
}
API_CONNECTIONS = 64
API_WARMUP_S = 2  # unmeasured seconds of load before each API run
API_LOADER = BENCH_DIR / "api-load.mjs"
API_P99_TARGET_MS = 20.0
API_TARGETS = {  # ours/peer ratio of medians of req/s, higher is better
    "api_basic_rps": 5.0,
}
API_METRICS = [  # (key, label, headline?)
    ("api_basic", f"API, Basic, {API_CONNECTIONS} conn", True),
    ("api_cookie", f"API, cookie, {API_CONNECTIONS} conn", False),
]
BOOT_IDLE_S = 3  # seconds after the first health answer at which the idle RSS is read
BOOT_RATIO_TARGET = 1.0  # ours/peer boot time, lower is better
BOOT_RSS_TARGET_MB = 100.0  # our gateway process, idle
METRICS = [  # (key, label, headline?)
    ("cluster_start", "cluster start", True),
    ("cluster_start_client", "cluster start + Client", False),
    ("scale_up", f"scale 0->{SCALE_N}", True),
    ("scale_down", f"scale {SCALE_N}->0", False),
    ("gateway_boot", "gateway boot (health 200)", False),
]


# dask_gateway's Gateway.__del__ calls close() again after an explicit close
# and then complains that its loop is stopped; keeping the closed objects
# alive until interpreter shutdown (where __del__ does nothing) avoids that
# noise.
_KEEPALIVE: list = []


class BenchError(Exception):
    pass


class BenchTimeout(BenchError):
    pass


def out(line: str = "") -> None:
    """print() that survives a closed stdout (e.g. piped into head)."""
    try:
        print(line, flush=True)
    except (BrokenPipeError, OSError):
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass


def log(msg: str) -> None:
    out(f"[bench {time.strftime('%H:%M:%S')}] {msg}")


def wait_until(pred, timeout: float, what: str, poll: float = POLL):
    """Poll ``pred`` until it returns a truthy value; raise BenchTimeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchTimeout(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)


def proc_stat(pid: int) -> tuple[float, int] | None:
    """CPU seconds (user + system) and minor page faults of a process so far, from /proc; None
    when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        # after the command: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), int(fields[7])
    except (OSError, IndexError, ValueError):
        return None


def rss_bytes(pid: int) -> int | None:
    """Resident set size of a process (VmRSS), or None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def descendants(pid: int) -> list[int]:
    """Every process below pid (children, their children, ...), from /proc."""
    out_pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = [int(k) for t in os.listdir(f"/proc/{p}/task") for k in Path(f"/proc/{p}/task/{t}/children").read_text().split()]
        except (OSError, ValueError):
            kids = []
        out_pids += kids
        todo += kids
    return out_pids


def cmdline_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def free_port() -> int:
    """The tests' port picker (it skips the ports fetch() and browsers refuse)."""
    sys.path.insert(0, str(REPO / "gateway-server" / "test" / "e2e"))
    from af_e2e_support import free_port as pick
    return pick()


# ---------------------------------------------------------------------------
# Process tracking
# ---------------------------------------------------------------------------


_SCHED_RE = re.compile(r"(?:^|[\s/])dask[-_ ]scheduler\b|distributed\.cli\.dask_scheduler")
_WORKER_RE = re.compile(
    r"(?:^|[\s/])dask[-_ ](?:worker|nanny)\b|distributed\.cli\.dask_(?:worker|spec)"
)


_GENERIC_WORKER_RE = re.compile(r"\b(?:worker|nanny)\b")
_GENERIC_SCHED_RE = re.compile(r"\bscheduler\b")


def _role(cmdline: list[str], strict: bool = False) -> str:
    """Classify a process by its command line or title.

    dask retitles its processes ("dask scheduler [tls://...]", "dask nanny
    [...]", "dask worker [...]") and so may a gateway ("af-gateway: worker
    ..."): unless ``strict``, any title with the word worker/nanny or
    scheduler counts (only used for processes attributed to a gateway)."""
    joined = " ".join(cmdline)
    if "dask-gateway-proxy" in joined:
        return "proxy"
    if _WORKER_RE.search(joined):
        return "worker"
    if _SCHED_RE.search(joined):
        return "scheduler"
    if not strict and _GENERIC_WORKER_RE.search(joined):
        return "worker"
    if not strict and _GENERIC_SCHED_RE.search(joined):
        return "scheduler"
    if "multiprocessing" in joined and (
        "spawn_main" in joined or "resource_tracker" in joined or "forkserver" in joined
    ):
        return "mp-child"  # e.g. a nanny's worker process
    return "other"


class ProcTracker:
    """Finds the processes started by a gateway (directly or not).

    A process is attributed to the benchmark when any of these holds:
    * it carries the run's marker in its environment (the marker is appended
      to PATH of the gateway process, and inherited by anything that keeps
      PATH -- the peer's local backend does);
    * its cwd, command line or environment mentions this run's temp dir
      (the peer's cluster work dirs, TLS files and our data_dir live there);
    * it was seen, at some scan, as a descendant of a gateway process.
    Dask processes started after the benchmark began that match none of these
    are reported as "unattributed" and only killed with --kill-unattributed
    (another user may legitimately run Dask on this machine).
    """

    def __init__(self, marker: str, tmp_root: str):
        import psutil

        self.psutil = psutil
        self.marker = marker.encode()
        self.tmp_root = tmp_root
        self.tmp_root_b = tmp_root.encode()
        self.t_begin = time.time() - 1.0
        self.me = os.getpid()
        self.roots: dict[int, str] = {}  # gateway pid -> label
        self.known: dict[tuple[int, float], str] = {}  # (pid, ctime) -> label
        self.cmdlines: dict[str, dict[str, list[str]]] = {}  # label -> role -> cmd
        self.current: str | None = None
        self.first_seen: dict[tuple[int, float], list[str]] = {}
        self.foreign: dict[int, str] = {}  # unattributed dask processes seen

    def add_root(self, pid: int, label: str) -> None:
        self.roots[pid] = label
        self.current = label

    def _environ_bytes(self, pid: int) -> bytes:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                return f.read()
        except OSError:
            return b""

    def scan(self):
        """Return (attributed, unattributed) lists of process dicts."""
        ps = self.psutil
        procs = {}
        for p in ps.process_iter(["pid", "ppid", "create_time", "cmdline", "cwd", "status"]):
            info = p.info
            if info["pid"] == self.me or info["create_time"] is None:
                continue
            if info["status"] == ps.STATUS_ZOMBIE:
                continue  # exited, only waiting to be reaped
            procs[info["pid"]] = info
        # descendants of gateway roots (walk parents)
        children: dict[int, list[int]] = {}
        for pid, info in procs.items():
            children.setdefault(info["ppid"], []).append(pid)
        for root, label in self.roots.items():
            stack = [root]
            while stack:
                pid = stack.pop()
                if pid in procs:
                    self.known.setdefault((pid, procs[pid]["create_time"]), label)
                stack.extend(children.get(pid, []))
        attributed, unattributed = [], []
        for pid, info in procs.items():
            if info["create_time"] < self.t_begin:
                continue
            cmd = info["cmdline"] or []
            key = (pid, info["create_time"])
            label = self.known.get(key)
            if label is None:
                env = self._environ_bytes(pid)
                text = " ".join(cmd) + " " + (info["cwd"] or "")
                if self.marker in env or self.tmp_root in text or self.tmp_root_b in env:
                    label = self._label_from_env(env, text)
                    self.known[key] = label
            role = _role(cmd, strict=label is None)
            entry = {"pid": pid, "role": role, "cmdline": cmd, "gateway": label}
            if label is not None:
                attributed.append(entry)
                self._record(key, label, cmd)
            elif role in ("scheduler", "worker"):
                unattributed.append(entry)
                self.foreign.setdefault(pid, " ".join(cmd))
        return attributed, unattributed

    def _record(self, key, label: str, cmd: list[str]) -> None:
        """Remember the first command line seen for a process (dask later
        replaces it with a title such as "dask scheduler [tls://...]")."""
        first = self.first_seen.get(key)
        if first is None or _role(first) == "other":
            # not yet exec'ed (a fork still shows its parent's command line)
            first = self.first_seen[key] = cmd
        role = _role(first)
        if role in ("scheduler", "worker", "proxy", "mp-child"):
            self.cmdlines.setdefault(label, {}).setdefault(role, first)

    def watch(self, stop: threading.Event, period: float = 0.02) -> None:
        """Poll the gateways' descendants until ``stop`` is set, to catch
        command lines before dask retitles the processes (warm-up only)."""
        ps = self.psutil
        while not stop.is_set():
            for root, label in list(self.roots.items()):
                try:
                    kids = ps.Process(root).children(recursive=True)
                except ps.Error:
                    continue
                for k in kids:
                    try:
                        key = (k.pid, k.create_time())
                        if key not in self.first_seen:
                            cmd = k.cmdline()
                            self.known.setdefault(key, label)
                            self._record(key, label, cmd)
                    except ps.Error:
                        pass
            stop.wait(period)

    def _label_from_env(self, env: bytes, text: str) -> str:
        for label in ("ours", "peer"):
            tag = f"{self.tmp_root}/{label}"
            if tag in text or tag.encode() in env:
                return label
        return self.current or "?"  # gateways run one at a time

    def alive(self, label: str, roles=("scheduler", "worker", "mp-child")):
        attributed, _ = self.scan()
        return [
            p
            for p in attributed
            if p["gateway"] in (label, "?")
            and p["role"] in roles
            and p["pid"] not in self.roots
        ]

    def kill_leftovers(self, label: str | None, kill_unattributed: bool, grace: float = 3.0):
        """Kill attributed processes (of ``label`` or all) still alive after
        ``grace`` seconds; return (killed, unattributed)."""
        deadline = time.monotonic() + grace
        while True:
            attributed, unattributed = self.scan()
            victims = [
                p
                for p in attributed
                if (label is None or p["gateway"] in (label, "?"))
            ]
            if not victims or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # processes that are already exiting
        if kill_unattributed:
            victims += unattributed
        report = []
        for sig in (signal.SIGTERM, signal.SIGKILL):
            alive = []
            for p in victims:
                try:
                    os.kill(p["pid"], sig)
                    alive.append(p)
                except ProcessLookupError:
                    pass
                except PermissionError as e:
                    p["error"] = str(e)
            if sig == signal.SIGTERM:
                report = [dict(p) for p in alive]
            if not alive:
                break
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                alive = [p for p in alive if self.psutil.pid_exists(p["pid"])]
                if not alive:
                    break
                time.sleep(0.1)
            victims = alive
        return report, ([] if kill_unattributed else unattributed)


# ---------------------------------------------------------------------------
# Gateways
# ---------------------------------------------------------------------------


class Gateway:
    label = "?"

    def __init__(self, workdir: Path, env: dict, tracker: ProcTracker, timeout: float):
        self.workdir = workdir
        self.env = env
        self.tracker = tracker
        self.timeout = timeout
        self.port = free_port()
        self.address = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log_path = RESULTS_DIR / "logs" / f"{self.label}-gateway.log"
        self.log_file = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def describe(self) -> dict:
        return {}

    def start(self) -> float:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_file = open(self.log_path, "wb")
        cmd = self.command()
        log(f"{self.label}: starting gateway: {' '.join(cmd)}")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd,
            cwd=str(self.workdir),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.tracker.add_root(self.proc.pid, self.label)
        import requests

        def healthy():
            if self.proc.poll() is not None:
                raise BenchError(
                    f"{self.label}: gateway exited with code {self.proc.returncode} "
                    f"before becoming healthy; log tail:\n{self.log_tail()}"
                )
            try:
                r = requests.get(f"{self.address}/api/health", timeout=2)
                return r.status_code == 200
            except requests.RequestException:
                return False

        try:
            wait_until(healthy, self.timeout, f"{self.label} gateway /api/health -> 200", poll=0.05)
        except BenchTimeout as e:
            raise BenchTimeout(f"{self.label}: {e}; log tail:\n{self.log_tail()}") from None
        boot = time.perf_counter() - t0
        log(f"{self.label}: gateway healthy at {self.address} after {boot:.2f}s")
        return boot

    node_for_loader = shutil.which("node") or "node"

    def cpu_seconds(self) -> float:
        """CPU time (user + system) of the gateway's processes so far: its own and its
        children's that still run (the peer's Go proxy), from /proc."""
        pids = [self.proc.pid] if self.proc else []
        try:
            kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            pids += [int(k) for k in kids]
        except (OSError, AttributeError):
            pass
        return sum(st[0] for st in map(proc_stat, pids) if st)

    def state_facts(self) -> dict:
        return {}

    def log_bytes(self) -> int:
        """Bytes the gateway wrote to its log so far: the offset of the file description it
        shares with us (the file itself may be replaced by another run using the same path)."""
        return os.lseek(self.log_file.fileno(), 0, os.SEEK_CUR) if self.log_file else 0

    def log_tail(self, n: int = 30) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
            return "\n".join("    " + l for l in lines[-n:])
        except OSError:
            return "    (no log)"

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            log(f"{self.label}: stopping gateway (SIGTERM, pid {self.proc.pid})")
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=45)
            except subprocess.TimeoutExpired:
                log(f"{self.label}: WARNING gateway did not exit within 45s after SIGTERM -> SIGKILL")
                # the whole process group (the gateway started with a new session)
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    log(f"{self.label}: WARNING gateway pid {self.proc.pid} did not die")
            except ProcessLookupError:
                pass
        # anything the gateway left behind (proxy, launcher, schedulers,
        # workers) is found and killed by ProcTracker.kill_leftovers()
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None


class OursGateway(Gateway):
    label = "ours"

    def __init__(self, *args, node: str = "node", cli: str = str(OURS_CLI),
                 overrides: list[tuple[list[str], object]] = (), **kwargs):
        self.node = node
        self.cli = cli
        self.overrides = list(overrides)
        super().__init__(*args, **kwargs)
        self.config_path = self.workdir / "config.yaml"

    def command(self):
        import yaml

        config = {
            "data_dir": str(self.workdir / "data"),
            "auth": {"type": "simple"},
            # a facility's gateway: each user's processes run as their own account (af-bench,
            # made by scripts/test-accounts.sh), started through their warm launcher
            "accounts": {"name_template": "af-{user}"},
            "backend": {"type": "local", "local": {"python": str(VENV_PY)}},
            "cluster": {
                "heartbeat_period": HEARTBEAT_PERIOD,
                "adaptive_period": ADAPTIVE_PERIOD,
                "worker_cores": WORKER_CORES,
                "worker_memory": WORKER_MEMORY_GIB,
            },
        }
        for keys, value in self.overrides:
            d = config
            for k in keys[:-1]:
                d = d.setdefault(k, {})
            d[keys[-1]] = value
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.config = config
        return [
            self.node,
            self.cli,
            "serve",
            "--config",
            str(self.config_path),
            "--listen",
            f"127.0.0.1:{self.port}",
        ]

    def describe(self):
        return {"config": getattr(self, "config", None), "cli": self.cli}

    def state_facts(self) -> dict:
        import sqlite3

        db = self.workdir / "data" / "state.sqlite"
        if not db.exists():
            return {}
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            rows = con.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]
        finally:
            con.close()
        size = sum(p.stat().st_size for p in db.parent.glob("state.sqlite*"))
        return {"session_rows": rows, "state_bytes": size}


def venv_has(module: str, extra_path: str | None = None) -> bool:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if extra_path:
        env["PYTHONPATH"] = extra_path
    r = subprocess.run(
        [str(VENV_PY), "-c", f"import {module}"], env=env, capture_output=True
    )
    return r.returncode == 0


def ours_overrides(args) -> list[tuple[list[str], object]]:
    import yaml

    result = []
    if args.nanny != "default":
        result.append((["backend", "local", "nanny"], args.nanny == "on"))
    for item in args.ours_set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--ours-set expects KEY=VALUE, got {item!r}")
        result.append((key.split("."), yaml.safe_load(value)))
    return result


class PeerGateway(Gateway):
    label = "peer"

    def __init__(self, *args, nanny: str = "default", worker_args=(), **kwargs):
        self.nanny = nanny
        self.worker_args = list(worker_args)
        super().__init__(*args, **kwargs)
        self.config_path = self.workdir / "dask_gateway_config.py"
        if not venv_has("sqlalchemy"):
            raise BenchError(
                "peer: the venv lacks sqlalchemy, which dask-gateway-server's local backend needs "
                "(python/requirements.in pins dask-gateway-server[local]); run scripts/bootstrap.sh"
            )

    def command(self):
        py = str(VENV_PY)
        sched = [py, "-m", "distributed.cli.dask_scheduler"]
        worker = [py, "-m", "distributed.cli.dask_worker"]
        if self.nanny != "default":
            worker.append("--nanny" if self.nanny == "on" else "--no-nanny")
        worker += self.worker_args
        clusters_dir = self.workdir / "clusters"
        self.settings = {
            "DaskGateway.address": "127.0.0.1:0 (private API)",
            "Proxy.address": f"127.0.0.1:{self.port} (HTTP + TLS/SNI scheduler proxy)",
            "DaskGateway.backend_class": "UnsafeLocalBackend",
            "DaskGateway.authenticator_class": "SimpleAuthenticator",
            "UnsafeLocalBackend.cluster_heartbeat_period": HEARTBEAT_PERIOD,
            "ClusterConfig.adaptive_period": ADAPTIVE_PERIOD,
            "ClusterConfig.worker_cores": WORKER_CORES,
            "ClusterConfig.worker_memory": f"{WORKER_MEMORY_GIB} G",
            "ClusterConfig.scheduler_cmd": sched,
            "ClusterConfig.worker_cmd": worker,
            "UnsafeLocalBackend.inherited_environment": ["PATH", "VIRTUAL_ENV", "LANG", "LC_ALL"],
            "gateway PYTHONPATH": self.env.get("PYTHONPATH"),
        }
        text = f"""# generated by bench/bench_gateways.py
c.DaskGateway.address = "127.0.0.1:0"
c.Proxy.address = "127.0.0.1:{self.port}"
c.DaskGateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"
c.DaskGateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"
c.UnsafeLocalBackend.cluster_heartbeat_period = {HEARTBEAT_PERIOD}
c.UnsafeLocalBackend.clusters_directory = {str(clusters_dir)!r}
c.UnsafeLocalBackend.inherited_environment = ["PATH", "VIRTUAL_ENV", "LANG", "LC_ALL"]
c.ClusterConfig.adaptive_period = {ADAPTIVE_PERIOD}
c.ClusterConfig.worker_cores = {WORKER_CORES}
c.ClusterConfig.worker_memory = "{WORKER_MEMORY_GIB} G"
c.ClusterConfig.scheduler_cmd = {sched!r}
c.ClusterConfig.worker_cmd = {worker!r}
"""
        self.workdir.mkdir(parents=True, exist_ok=True)
        clusters_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(text)
        return [py, "-m", "dask_gateway_server", "-f", str(self.config_path)]

    def describe(self):
        return {"config": getattr(self, "settings", None)}


# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------


class Runner:
    def __init__(self, gw: Gateway, tracker: ProcTracker, timeout: float):
        from dask_gateway import BasicAuth
        from dask_gateway import Gateway as GatewayClient

        self.gw = gw
        self.tracker = tracker
        self.timeout = timeout
        self.client_gateway = GatewayClient(
            address=gw.address, auth=BasicAuth(username="bench")
        )
        self.clusters = []

    # -- helpers ------------------------------------------------------------
    def _active_clusters(self):
        return self.client_gateway.list_clusters()

    def new_cluster(self):
        """Return (cluster, client, t_new_cluster, t_with_client)."""
        import concurrent.futures

        label = self.gw.label
        t0 = time.perf_counter()
        # new_cluster() has no timeout of its own: run it in a thread
        ex = concurrent.futures.ThreadPoolExecutor(1)
        fut = ex.submit(self.client_gateway.new_cluster)
        try:
            cluster = fut.result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            ex.shutdown(wait=False)
            raise BenchTimeout(
                f"{label}: timed out after {self.timeout:.0f}s waiting for "
                f"gateway.new_cluster() (cluster never RUNNING/connected); "
                f"gateway log tail:\n{self.gw.log_tail()}"
            ) from None
        finally:
            ex.shutdown(wait=False)
        t1 = time.perf_counter()
        self.clusters.append(cluster)
        client = cluster.get_client(set_as_default=False)
        client.scheduler_info()
        t2 = time.perf_counter()
        if cluster.scheduler_comm is None or not cluster.scheduler_info:
            raise BenchError(f"{label}: cluster object did not connect to the scheduler")
        return cluster, client, t1 - t0, t2 - t0

    def shutdown_cluster(self, cluster, client):
        label = self.gw.label
        name = cluster.name
        try:
            client.close()
        except Exception:
            pass
        cluster.shutdown()
        self.clusters.remove(cluster)
        _KEEPALIVE.extend((cluster, client))

        def stopped():
            active = [c for c in self._active_clusters() if c.name == name]
            return not active

        wait_until(stopped, self.timeout, f"{label}: cluster {name} to leave pending/running", poll=0.2)
        wait_until(
            lambda: not self.tracker.alive(label),
            self.timeout,
            f"{label}: scheduler/worker processes of cluster {name} to exit",
            poll=0.2,
        )

    def n_workers(self, client, running_only: bool = False) -> int:
        """Workers the scheduler knows (asks the scheduler each time)."""
        info = client.sync(client.scheduler.identity, n_workers=-1)
        workers = info["workers"].values()
        if running_only:  # what Client.wait_for_workers counts
            return sum(1 for w in workers if w.get("status") == "running")
        return len(workers)

    def scale_up(self, cluster, client) -> float:
        # Same criterion as client.wait_for_workers(SCALE_N) (workers in
        # status "running"), polled every SCALE_POLL s instead of its 0.1 s,
        # so that sub-second scale-ups are resolved.
        t0 = time.perf_counter()
        cluster.scale(SCALE_N)
        try:
            wait_until(
                lambda: self.n_workers(client, running_only=True) >= SCALE_N,
                self.timeout,
                f"{SCALE_N} running workers",
                poll=SCALE_POLL,
            )
        except BenchTimeout as e:
            raise BenchTimeout(
                f"{self.gw.label}: {e} (have {self.n_workers(client)}); gateway log tail:\n"
                f"{self.gw.log_tail()}"
            ) from None
        return time.perf_counter() - t0

    def scale_down(self, cluster, client) -> float:
        label = self.gw.label
        t0 = time.perf_counter()
        cluster.scale(0)
        wait_until(
            lambda: self.n_workers(client) == 0,
            self.timeout,
            f"{label}: 0 workers connected after scale(0)",
            poll=SCALE_POLL,
        )
        dt = time.perf_counter() - t0
        wait_until(
            lambda: not self.tracker.alive(label, roles=("worker",)),
            self.timeout,
            f"{label}: worker processes to exit after scale(0)",
            poll=0.2,
        )
        return dt

    def process_structure(self) -> dict:
        """What runs for one cluster with SCALE_N workers: counts of the
        gateway's processes by (normalised) title -- shows e.g. nannies."""
        attributed, _ = self.tracker.scan()
        counts: dict[str, int] = {}
        for p in attributed:
            if p["pid"] in self.tracker.roots or p["gateway"] not in (self.gw.label, "?"):
                continue
            title = " ".join(p["cmdline"]).strip() or "(exiting)"
            title = re.sub(r"\[.*\]", "[...]", title)
            title = re.sub(r"\b[0-9a-f]{16,}\b", "<id>", title)
            title = re.sub(r"\b[0-9a-f]{6,}(?:-[0-9a-f]{4,})+\b", "<id>", title)
            title = re.sub(r"(?<=[:=])\d{2,5}\b", "<port>", title)
            title = re.sub(r"\s+", " ", title)[:110]
            counts[title] = counts.get(title, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def close(self):
        for cluster in list(self.clusters):
            try:
                cluster.shutdown()
            except Exception:
                pass
        _KEEPALIVE.extend(self.clusters)
        self.clusters.clear()
        try:
            self.client_gateway.close()
        except Exception:
            pass
        _KEEPALIVE.append(self.client_gateway)

    # -- the API -----------------------------------------------------------
    def api_prepare(self) -> dict:
        """A running cluster to GET, and the two ways of calling: Basic, and a session cookie."""
        import base64

        import requests

        label = self.gw.label
        cluster, client, _, _ = self.new_cluster()
        self.api_cluster = (cluster, client)
        basic = "Basic " + base64.b64encode(b"bench:").decode()
        paths = ["/api/v1/clusters/", f"/api/v1/clusters/{cluster.name}", "/api/v1/options"]
        for p in paths:  # every path answers 200 before anything is timed
            r = requests.get(self.gw.address + p, headers={"Authorization": basic}, timeout=10)
            if r.status_code != 200:
                raise BenchError(f"{label}: GET {p} answered {r.status_code}: {r.text[:200]}")
        first = requests.get(self.gw.address + paths[0], headers={"Authorization": basic}, timeout=10)
        cookie = "; ".join(f"{k}={v}" for k, v in first.cookies.items())
        if not cookie:
            raise BenchError(f"{label}: no session cookie in the answer to a Basic request")
        return {"paths": paths, "api_basic": f"Authorization: {basic}", "api_cookie": f"Cookie: {cookie}"}

    def api_load(self, header: str, paths: list[str], seconds: float) -> dict:
        cmd = [self.gw.node_for_loader, str(API_LOADER), "--port", str(self.gw.port),
               "--connections", str(API_CONNECTIONS), "--seconds", str(seconds), "--warmup", str(API_WARMUP_S),
               "--header", header]
        for p in paths:
            cmd += ["--path", p]
        cpu0 = self.gw.cpu_seconds()
        load = os.getloadavg()[0]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
        if out.returncode != 0:
            raise BenchError(f"{self.gw.label}: the API loader failed: {out.stderr[-500:]}")
        run = json.loads(out.stdout)
        # the gateway's CPU over warm-up and measurement, per measured second
        run["gateway_cpu_s"] = self.gw.cpu_seconds() - cpu0
        # CPU per request depends little on what else the machine runs, req/s and p99 much more
        run["gateway_cpu_us_per_request"] = 1e6 * run["gateway_cpu_s"] / max(1, run["requests"] + run["warmup_requests"])
        run["loadavg_1min_before"] = load
        return run

    # -- the benchmark --------------------------------------------------------
    def run(self, repeat: int, results: dict) -> None:
        label = self.gw.label
        # warm-up (unmeasured): one start, one scale-up/down
        log(f"{label}: warm-up cluster start + scale 0->{SCALE_N}->0 (unmeasured)")
        stop = threading.Event()
        watcher = threading.Thread(target=self.tracker.watch, args=(stop,), daemon=True)
        watcher.start()
        try:
            cluster, client, t, _ = self.new_cluster()
            self.tracker.scan()
            results["warmup"] = {"cluster_start": t}
            results["scheduler_address"] = cluster.scheduler_address
            results["warmup"]["scale_up"] = self.scale_up(cluster, client)
            results["processes_at_scale"] = self.process_structure()
        finally:
            stop.set()
            watcher.join()
        results["warmup"]["scale_down"] = self.scale_down(cluster, client)
        self.shutdown_cluster(cluster, client)
        log(
            f"{label}: warm-up start {results['warmup']['cluster_start']:.2f}s, "
            f"scale-up {results['warmup']['scale_up']:.2f}s"
        )

        for i in range(repeat):
            cluster, client, t, tc = self.new_cluster()
            self.tracker.scan()
            results["cluster_start"].append(t)
            results["cluster_start_client"].append(tc)
            log(f"{label}: cluster start {i + 1}/{repeat}: {t:.3f}s (with Client {tc:.3f}s)")
            self.shutdown_cluster(cluster, client)

        cluster, client, _, _ = self.new_cluster()
        if self.n_workers(client) != 0:
            raise BenchError(f"{label}: new cluster unexpectedly has workers")
        for i in range(repeat):
            t = self.scale_up(cluster, client)
            self.tracker.scan()
            results["scale_up"].append(t)
            d = self.scale_down(cluster, client)
            results["scale_down"].append(d)
            log(f"{label}: scale 0->{SCALE_N} {i + 1}/{repeat}: {t:.3f}s (back to 0: {d:.3f}s)")
        self.shutdown_cluster(cluster, client)


_STATE = {"cleaning": False}


def _interrupt(signum, frame):
    name = signal.Signals(signum).name
    if _STATE["cleaning"]:
        log(f"{name} received while cleaning up -- ignored, please wait")
        return
    raise KeyboardInterrupt(name)


@contextlib.contextmanager
def cleaning_up():
    """The clean-up after a part of a run: a signal received meanwhile is logged and ignored, so
    that the clean-up itself runs to its end."""
    _STATE["cleaning"] = True
    try:
        yield
    finally:
        _STATE["cleaning"] = False


def failed(what: str, e: BaseException, verbose: bool) -> str:
    """Logs that ``what`` failed (the traceback too when ``verbose``); returns the error as the
    results keep it."""
    error = f"{type(e).__name__}: {e}"
    log(f"{what}: ERROR {error}")
    if verbose:
        traceback.print_exc()
    return error


def stop_gateway(gw, tracker: ProcTracker, label: str, kill_unattributed: bool) -> tuple[list[dict], list[dict]]:
    """Stops a gateway, then kills what it left behind, each logged; returns (killed,
    unattributed) as ProcTracker.kill_leftovers does."""
    gw.stop()
    killed, unattributed = tracker.kill_leftovers(label, kill_unattributed)
    for p in killed:
        log(f"{label}: WARNING killed leftover {p['role']} pid {p['pid']}: {' '.join(p['cmdline'])[:160]}")
    return killed, unattributed


def start_run(prefix: str) -> tuple[str, str, ProcTracker, dict]:
    """The set-up of a bench run: SIGINT/SIGTERM/SIGHUP raise KeyboardInterrupt (so the finally
    blocks clean up), a run id, a temporary root ``<prefix>-<run id>-*`` for the gateways' work
    dirs, the ProcTracker that attributes their processes by a marker on PATH, and the environment
    the gateways run in (the venv first, no inherited PYTHONPATH or dask/gateway configuration).
    Returns (run_id, tmp_root, tracker, env)."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)  # even if inherited as ignored
    signal.signal(signal.SIGHUP, _interrupt)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:10]
    tmp_root = tempfile.mkdtemp(prefix=f"{prefix}-{run_id}-")
    marker = f"/nonexistent/afgw-bench-marker-{run_id}"
    tracker = ProcTracker(marker, tmp_root)
    env = dict(os.environ)
    env["PATH"] = f"{VENV / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}:{marker}"
    env["VIRTUAL_ENV"] = str(VENV)
    env.pop("PYTHONPATH", None)
    for k in list(env):
        if k.startswith("DASK_"):  # DASK_GATEWAY__* as well
            env.pop(k)
    return run_id, tmp_root, tracker, env


def run_api(gws: dict[str, Gateway], tracker: ProcTracker, args, data: dict) -> int:
    """The API of every gateway, all started at once, each with one running cluster; the loader
    runs against one gateway at a time, alternating (ours, peer, peer, ours, ...), so that a change
    in the machine's other load falls on both alike."""
    runners: dict[str, Runner] = {}
    calls: dict[str, dict] = {}
    exit_code = 0
    for label in gws:
        data["gateways"].setdefault(label, {}).update({k: [] for k, _, _ in API_METRICS})
    try:
        for label, gw in gws.items():
            res = data["gateways"][label]
            res["api_status"] = "starting"
            res["api_log"] = str(gw.log_path)
            res["api_boot"] = gw.start()
            runners[label] = Runner(gw, tracker, args.timeout)
            calls[label] = runners[label].api_prepare()
        log_start = {label: gw.log_bytes() for label, gw in gws.items()}
        labels = list(gws)
        for i in range(args.api_repeat):
            for key, _, _ in API_METRICS:
                for label in labels if i % 2 == 0 else labels[::-1]:
                    res = data["gateways"][label]
                    run = runners[label].api_load(calls[label][key], calls[label]["paths"], args.api_seconds)
                    res[key].append(run)
                    log(
                        f"{label}: {key} {i + 1}/{args.api_repeat}: {run['rps']:.0f} req/s, "
                        f"p50 {run['p50_ms']:.1f} ms, p99 {run['p99_ms']:.1f} ms, "
                        f"statuses {run['statuses']}, errors {run['errors']}, "
                        f"gateway CPU {run['gateway_cpu_us_per_request']:.0f} us/request, load {run['loadavg_1min_before']:.1f}"
                    )
                    bad = {s: n for s, n in run["statuses"].items() if s != "200"}
                    if bad or run["errors"]:
                        raise BenchError(f"{label}: {key}: non-200 answers {bad} or {run['errors']} errors")
        for label, gw in gws.items():
            res = data["gateways"][label]
            res["api_log_bytes"] = gw.log_bytes() - log_start[label]
            res["api_requests"] = sum(r["requests"] for k, _, _ in API_METRICS for r in res[k])
            res["api_state"] = gw.state_facts()
            res["api_status"] = "ok"
            log(f"{label}: {res['api_requests']} API requests logged {res['api_log_bytes']} bytes; state: {res['api_state']}")
    except Exception as e:
        exit_code = 1
        error = failed("API", e, args.verbose)
        for label in gws:
            if data["gateways"][label].get("api_status") != "ok":
                data["gateways"][label]["api_status"] = "error"
                data["gateways"][label]["api_error"] = error
    finally:
        with cleaning_up():
            for label, runner in runners.items():
                try:
                    if getattr(runner, "api_cluster", None):
                        runner.shutdown_cluster(*runner.api_cluster)
                except Exception as e:
                    log(f"{label}: could not shut the API cluster down: {e}")
                runner.close()
            for label, gw in gws.items():
                stop_gateway(gw, tracker, label, args.kill_unattributed)
    return exit_code


def run_boot(make_gateway, order: list[str], tracker: ProcTracker, args, data: dict) -> int:
    """Boot time and idle memory: each gateway started on a fresh data dir, alternately (ours,
    peer, then peer, ours, ...) so that a change in the machine's other load falls on both alike;
    RSS read BOOT_IDLE_S after the first health answer, then the gateway is stopped."""
    exit_code = 0
    for label in order:
        data["gateways"].setdefault(label, {}).update({"boot_s": [], "boot_cpu_s": [], "idle_rss_mb": [], "idle_other_rss_mb": [], "boot_other": []})
    for i in range(args.boot_repeat):
        for label in order if i % 2 == 0 else order[::-1]:
            res = data["gateways"][label]
            gw = make_gateway(label, f"boot{i}")
            try:
                boot = gw.start()
                cpu = gw.cpu_seconds()
                time.sleep(BOOT_IDLE_S)
                main_rss = rss_bytes(gw.proc.pid) or 0
                others = []  # (pid, rss, cmdline) of every process below the gateway
                for pid in descendants(gw.proc.pid):
                    r = rss_bytes(pid)
                    if r:
                        others.append((pid, r, cmdline_of(pid)))
                if label == "peer":
                    # the peer's process is its Python server plus the Go proxy it runs as a child
                    main_rss += sum(r for _, r, c in others if "dask-gateway-proxy" in c)
                    others = [o for o in others if "dask-gateway-proxy" not in o[2]]
                res["boot_s"].append(boot)
                res["boot_cpu_s"].append(cpu)
                res["idle_rss_mb"].append(main_rss / 2**20)
                res["idle_other_rss_mb"].append(sum(r for _, r, _ in others) / 2**20)
                res["boot_other"].append([c[:120] for _, _, c in others])
                log(
                    f"{label}: boot {i + 1}/{args.boot_repeat}: {boot:.2f}s, CPU {cpu:.2f}s, idle RSS {main_rss / 2**20:.1f} MB"
                    + (f" (+{len(others)} other process(es) {sum(r for _, r, _ in others) / 2**20:.1f} MB)" if others else "")
                    + f", load {os.getloadavg()[0]:.1f}"
                )
            except Exception as e:
                exit_code = 1
                res["boot_error"] = failed(f"{label}: boot", e, args.verbose)
            finally:
                with cleaning_up():
                    stop_gateway(gw, tracker, label, args.kill_unattributed)
            if exit_code:
                return exit_code
    return exit_code


def boot_report(data: dict) -> list[str]:
    gws = data["gateways"]
    w = 28
    lines = ["", f"{'boot and idle memory':<{w}} {'ours median [min..max]':<30} {'peer median [min..max]':<30} ours/peer"]
    lines.append("-" * (w + 72))
    summary = data.setdefault("summary", {})

    def row(key, name, unit):
        s = {g: summarize(gws.get(g, {}).get(key, [])) for g in ("ours", "peer")}
        ratio = s["ours"]["median"] / s["peer"]["median"] if s["ours"] and s["peer"] and s["peer"]["median"] > 0 else None
        summary[key] = {**s, "ratio": ratio}
        cell = lambda x: "n/a" if x is None else f"{x['median']:7.2f}{unit} [{x['min']:.2f}..{x['max']:.2f}]"
        lines.append(f"{name:<{w}} {cell(s['ours']):<30} {cell(s['peer']):<30} {f'{ratio:.2f}x' if ratio else 'n/a'}")
        return s, ratio

    _, boot_ratio = row("boot_s", "boot (exec to health 200)", "s")
    row("boot_cpu_s", "CPU until health 200", "s")
    rss, _ = row("idle_rss_mb", f"idle RSS at +{BOOT_IDLE_S}s", "MB")
    row("idle_other_rss_mb", "  other processes (launcher)", "MB")
    lines.append("  (peer RSS: its Python server + its Go proxy; ours: the gateway process alone)")
    lines.append("")
    if boot_ratio is None:
        lines.append(f"boot: ours/peer = n/a (target <= {BOOT_RATIO_TARGET}x)")
    else:
        lines.append(f"boot: ours/peer = {boot_ratio:.2f}x (target <= {BOOT_RATIO_TARGET}x) {'OK' if boot_ratio <= BOOT_RATIO_TARGET else 'MISSED'}")
    ours_rss = rss["ours"]["median"] if rss["ours"] else None
    if ours_rss is None:
        lines.append(f"idle RSS: ours = n/a (target <= {BOOT_RSS_TARGET_MB:.0f} MB)")
    else:
        lines.append(f"idle RSS: ours = {ours_rss:.1f} MB (target <= {BOOT_RSS_TARGET_MB:.0f} MB) {'OK' if ours_rss <= BOOT_RSS_TARGET_MB else 'MISSED'}")
    return lines


def run_gateway(gw: Gateway, tracker: ProcTracker, args, results: dict) -> dict:
    results.update({k: [] for k, _, _ in METRICS})
    results.update({"status": "running", "error": None, "leftovers": [], "log": str(gw.log_path)})
    runner = None
    try:
        results["gateway_boot"].append(gw.start())
        results["settings"] = gw.describe()
        runner = Runner(gw, tracker, args.timeout)
        runner.run(args.repeat, results)
        results["status"] = "ok"
    except KeyboardInterrupt:
        results["status"] = "interrupted"
        raise
    except Exception as e:
        results["status"] = "error"
        results["error"] = failed(gw.label, e, args.verbose)
    finally:
        with cleaning_up():
            if runner is not None:
                runner.close()
            results["observed_cmdlines"] = tracker.cmdlines.get(gw.label, {})
            killed, unattributed = stop_gateway(gw, tracker, gw.label, args.kill_unattributed)
            results["leftovers"] = killed
            for p in unattributed:
                log(
                    f"NOTE: unattributed dask {p['role']} pid {p['pid']} started after the bench "
                    f"began (not killed; use --kill-unattributed): {' '.join(p['cmdline'])[:160]}"
                )
            if not killed:
                log(f"{gw.label}: no scheduler/worker process left behind")
    return results


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def summarize(values):
    if not values:
        return None
    return {
        "n": len(values),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def fmt(s):
    if s is None:
        return "n/a"
    return f"{s['median']:7.3f}s [{s['min']:.3f}..{s['max']:.3f}]"


def report(data: dict) -> list[str]:
    gws = data["gateways"]
    lines = []
    w = 28
    parts = data.get("part", "all")
    if parts == "boot":
        return boot_report(data)
    if parts != "api":
        lines.append("")
        lines.append(
            f"{'metric':<{w}} {'ours median [min..max]':<30} {'peer median [min..max]':<30} ours/peer"
        )
        lines.append("-" * (w + 72))
    ratios = {}
    for key, name, _ in METRICS if parts != "api" else []:
        s_ours = summarize(gws.get("ours", {}).get(key, []))
        s_peer = summarize(gws.get("peer", {}).get(key, []))
        ratio = None
        if s_ours and s_peer and s_peer["median"] > 0:
            ratio = s_ours["median"] / s_peer["median"]
        ratios[key] = ratio
        data.setdefault("summary", {})[key] = {"ours": s_ours, "peer": s_peer, "ratio": ratio}
        r = f"{ratio:.2f}x" if ratio is not None else "n/a"
        lines.append(f"{name:<{w}} {fmt(s_ours):<30} {fmt(s_peer):<30} {r}")
    lines.append("")
    for key, name, headline in METRICS:
        if not headline or parts == "api":
            continue
        ratio = ratios[key]
        target = TARGETS[key]
        if ratio is None:
            why = []
            for g in ("ours", "peer"):
                st = gws.get(g, {}).get("status", "not run")
                if st != "ok":
                    why.append(f"{g}: {st}")
            lines.append(
                f"{name}: ours/peer = n/a (target <= {target}x)"
                + (f"  [{'; '.join(why)}]" if why else "")
            )
        else:
            verdict = "OK" if ratio <= target else "MISSED"
            lines.append(f"{name}: ours/peer = {ratio:.2f}x (target <= {target}x) {verdict}")
    if parts != "clusters":
        lines += api_report(data)
    if parts == "all":
        lines += boot_report(data)
    return lines


def api_summary(runs: list[dict]) -> dict | None:
    if not runs:
        return None
    rps = [r["rps"] for r in runs]
    p99 = [r["p99_ms"] for r in runs]
    cpu = [r["gateway_cpu_s"] / (r["seconds"] + API_WARMUP_S) for r in runs]  # warm-up included
    return {
        "n": len(runs),
        "rps": summarize(rps),
        "p99_ms": summarize(p99),
        "p50_ms": summarize([r["p50_ms"] for r in runs]),
        "gateway_cores": statistics.median(cpu),
        "loader_cores": statistics.median(r["loader_cpu_s"] / r["seconds"] for r in runs),
        "set_cookie_share": statistics.median(r["set_cookie_responses"] / max(1, r["requests"]) for r in runs),
        "cpu_us_per_request": statistics.median(r["gateway_cpu_us_per_request"] for r in runs),
        "loadavg": statistics.median(r["loadavg_1min_before"] for r in runs),
    }


def api_report(data: dict) -> list[str]:
    gws = data["gateways"]
    w = 28
    lines = ["", f"{'API (list/get/options)':<{w}} {'ours req/s  p99 ms':<22} {'peer req/s  p99 ms':<22} ours/peer req/s"]
    lines.append("-" * (w + 62))

    def cell(s):
        if s is None:
            return "n/a"
        return f"{s['rps']['median']:8.0f}  {s['p99_ms']['median']:6.1f}"

    for key, name, headline in API_METRICS:
        s_ours = api_summary(gws.get("ours", {}).get(key, []))
        s_peer = api_summary(gws.get("peer", {}).get(key, []))
        ratio = s_ours["rps"]["median"] / s_peer["rps"]["median"] if s_ours and s_peer else None
        data.setdefault("summary", {})[key] = {"ours": s_ours, "peer": s_peer, "ratio": ratio}
        lines.append(f"{name:<{w}} {cell(s_ours):<22} {cell(s_peer):<22} {f'{ratio:.2f}x' if ratio else 'n/a'}")
    for key, name, _ in API_METRICS:
        cpu = {g: (data["summary"][key].get(g) or {}).get("cpu_us_per_request") for g in ("ours", "peer")}
        if any(cpu.values()):
            ratio = f"{cpu['peer'] / cpu['ours']:.2f}x less" if cpu["ours"] and cpu["peer"] else ""
            lines.append(
                f"  {name}: gateway CPU per request ours {cpu['ours'] or 0:.0f} us, peer {cpu['peer'] or 0:.0f} us "
                f"(proxy included) {ratio}"
            )
    for g in ("ours", "peer"):
        s = data["summary"].get("api_basic", {}).get(g)
        if s:
            lines.append(
                f"  {g}: gateway {s['gateway_cores']:.2f} cores, loader {s['loader_cores']:.2f} cores, "
                f"load average {s['loadavg']:.1f} (2 cores), Set-Cookie on {100 * s['set_cookie_share']:.1f}% of Basic answers"
            )
        if gws.get(g, {}).get("api_requests"):
            lines.append(
                f"  {g}: {gws[g]['api_requests']} API requests wrote {gws[g]['api_log_bytes']} log bytes; "
                f"state after: {gws[g].get('api_state') or 'n/a'}"
            )
    lines.append("")
    b = data["summary"].get("api_basic", {})
    if b.get("ratio") is None:
        lines.append(f"API Basic: ours/peer = n/a (target >= {API_TARGETS['api_basic_rps']}x)")
    else:
        p99 = b["ours"]["p99_ms"]["median"]
        ok = b["ratio"] >= API_TARGETS["api_basic_rps"] and p99 <= API_P99_TARGET_MS
        lines.append(
            f"API Basic: ours/peer req/s = {b['ratio']:.2f}x (target >= {API_TARGETS['api_basic_rps']}x), "
            f"ours p99 {p99:.1f} ms (target <= {API_P99_TARGET_MS:.0f} ms) {'OK' if ok else 'MISSED'}"
        )
    return lines


def environment_info(node: str) -> dict:
    import dask
    import dask_gateway
    import distributed

    info = {
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "cluster_python": str(VENV_PY),
        "dask": dask.__version__,
        "distributed": distributed.__version__,
        "dask_gateway_client": dask_gateway.__version__,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "worker": {"threads": WORKER_CORES, "memory_gib": WORKER_MEMORY_GIB},
        "heartbeat_period_s": HEARTBEAT_PERIOD,
        "adaptive_period_s": ADAPTIVE_PERIOD,
    }
    try:
        import dask_gateway_server

        info["dask_gateway_server"] = dask_gateway_server.__version__
    except Exception:
        pass
    try:
        info["node"] = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except Exception:
        info["node"] = None
    return info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=5, help="measured repetitions per metric (default 5)")
    p.add_argument("--only", choices=["ours", "peer"], help="measure only one gateway")
    p.add_argument("--timeout", type=float, default=120.0, help="timeout of every wait, seconds (default 120)")
    p.add_argument("--require-ours", action="store_true", help="exit non-zero if our gateway's dist/cli.js is missing")
    p.add_argument("--check-targets", action="store_true", help="exit non-zero if a headline ratio misses its target")
    p.add_argument("--kill-unattributed", action="store_true",
                   help="also kill dask scheduler/worker processes started after the bench began that "
                        "cannot be attributed to either gateway")
    p.add_argument("--node", default=shutil.which("node") or "node", help="node executable")
    p.add_argument("--ours-cli", default=str(OURS_CLI), help=f"our server's CLI (default {OURS_CLI})")
    p.add_argument("--nanny", choices=["default", "on", "off"], default="default",
                   help="workers with or without a nanny process: 'default' keeps each gateway's "
                        "own default; on/off forces both (peer: worker_cmd flag; ours: "
                        "backend.local.nanny)")
    p.add_argument("--peer-worker-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for the peer's worker command, e.g. "
                        "--peer-worker-arg=--no-dashboard (repeatable)")
    p.add_argument("--ours-set", action="append", default=[], metavar="KEY=YAML",
                   help="extra setting for our config, dotted key, e.g. backend.local.prefork=false "
                        "(repeatable)")
    p.add_argument("--part", choices=["all", "clusters", "api", "boot"], default="all",
                   help="what to measure: cluster start and scale (clusters), the authenticated API "
                        "(api), boot time and idle memory (boot), or all three (all, the default)")
    p.add_argument("--boot-repeat", type=int, default=5, help="boots per gateway in the boot part (default 5)")
    p.add_argument("--api-seconds", type=float, default=10.0, help="measured seconds per API run (default 10)")
    p.add_argument("--api-repeat", type=int, default=3, help="API runs per way of calling (default 3)")
    p.add_argument("--output", default=str(RESULTS_DIR / "latest.json"), help="JSON output path")
    p.add_argument("--keep-tmp", action="store_true",
                   help="keep the temporary work dirs (kept anyway when a gateway fails)")
    p.add_argument("-v", "--verbose", action="store_true", help="print tracebacks")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be >= 1")

    if Path(sys.executable).resolve() != VENV_PY.resolve():
        log(f"WARNING: running under {sys.executable}, clusters use {VENV_PY}")

    t_run = time.perf_counter()
    run_id, tmp_root, tracker, env = start_run("afgw-bench")

    data = {
        "run_id": run_id,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "repeat": args.repeat,
        "part": args.part,
        "timeout_s": args.timeout,
        "environment": environment_info(args.node),
        "gateways": {},
        "notes": [],
    }
    order = ["ours", "peer"] if args.only is None else [args.only]
    exit_code = 0
    interrupted = False

    def make_gateway(label: str, part: str) -> Gateway:
        workdir = Path(tmp_root) / f"{part}-{label}"
        if label == "ours":
            gw = OursGateway(workdir, env, tracker, args.timeout, node=args.node,
                             cli=args.ours_cli, overrides=ours_overrides(args))
        else:
            gw = PeerGateway(workdir, env, tracker, args.timeout, nanny=args.nanny,
                             worker_args=args.peer_worker_arg)
        gw.node_for_loader = args.node
        if part == "api":
            gw.log_path = RESULTS_DIR / "logs" / f"{label}-api-gateway.log"
        return gw

    if "ours" in order and not Path(args.ours_cli).exists():
        msg = (
            f"ours: SKIPPED -- {args.ours_cli} does not exist (build the server first); "
            f"no ratio against the peer can be computed"
        )
        log(msg)
        data["notes"].append(msg)
        data["gateways"]["ours"] = {"status": "missing", "error": msg}
        if args.require_ours:
            exit_code = 2
        order.remove("ours")

    try:
        if args.part in ("all", "api") and order:
            api_gws = {label: make_gateway(label, "api") for label in order}
            exit_code = run_api(api_gws, tracker, args, data) or exit_code
        if args.part in ("all", "boot") and order:
            exit_code = run_boot(make_gateway, order, tracker, args, data) or exit_code
        for label in order if args.part in ("all", "clusters") else []:
            gw = make_gateway(label, "clusters")
            data["gateways"].setdefault(label, {})["status"] = "starting"
            run_gateway(gw, tracker, args, data["gateways"][label])
            if data["gateways"][label]["status"] != "ok":
                exit_code = exit_code or 1
    except KeyboardInterrupt as e:
        interrupted = True
        log(f"interrupted ({e}); cleaning up")
        exit_code = 130
    finally:
        _STATE["cleaning"] = True
        killed, _ = tracker.kill_leftovers(None, args.kill_unattributed)
        for p in killed:
            log(f"WARNING killed leftover {p['role']} pid {p['pid']} ({p['gateway']})")
        failed = [k for k, g in data["gateways"].items() if "error" in (g.get("status"), g.get("api_status"))]
        if failed or args.keep_tmp:
            msg = f"kept the gateways' work dirs (configs, cluster logs) in {tmp_root}"
            log(msg)
            data["notes"].append(msg)
        else:
            shutil.rmtree(tmp_root, ignore_errors=True)

    data["wall_time_s"] = time.perf_counter() - t_run
    data["foreign_dask_processes"] = tracker.foreign
    if tracker.foreign:
        msg = (
            f"WARNING: {len(tracker.foreign)} dask scheduler/worker process(es) not started by "
            f"this benchmark ran during it (another user's tests?); timings may be disturbed "
            f"on this 2-core machine"
        )
        data["notes"].append(msg)
    data["interrupted"] = interrupted
    lines = report(data)
    for line in lines:
        out(line)
    out("\nfirst command line seen per role (dask and our launcher retitle processes):")
    for label, g in data["gateways"].items():
        for role in ("scheduler", "worker", "proxy"):
            cmd = g.get("observed_cmdlines", {}).get(role)
            if cmd:
                out(f"  {label} {role:<9}: {' '.join(cmd)[:400]}")
    out(f"\nprocesses of one cluster at {SCALE_N} workers (gateway process excluded):")
    for label, g in data["gateways"].items():
        for title, n in (g.get("processes_at_scale") or {}).items():
            out(f"  {label} {n:>2} x {title}")
    out(f"\ntotal wall time: {data['wall_time_s']:.1f}s")
    for note in data["notes"]:
        out(note)
    for label, g in data["gateways"].items():
        if g.get("error"):
            out(f"{label}: {g['status']}: {g['error'].splitlines()[0]}")
        if g.get("api_error"):
            out(f"{label} API: {g['api_status']}: {g['api_error'].splitlines()[0]}")
        if g.get("api_log"):
            out(f"{label} gateway log of the API part: {g['api_log']}")
        if g.get("log"):
            out(f"{label} gateway log: {g['log']}")
    out_path = Path(args.output)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    out(f"raw results: {out_path}")

    if args.check_targets and exit_code == 0:
        if args.part in ("all", "boot"):
            b, r = data["summary"].get("boot_s", {}), data["summary"].get("idle_rss_mb", {})
            if b.get("ratio") is None or b["ratio"] > BOOT_RATIO_TARGET or not r.get("ours") or r["ours"]["median"] > BOOT_RSS_TARGET_MB:
                exit_code = 3
        if args.part in ("all", "clusters"):
            for key, target in TARGETS.items():
                r = data["summary"][key]["ratio"]
                if r is None or r > target:
                    exit_code = 3
        if args.part in ("all", "api"):
            b = data["summary"].get("api_basic", {})
            if b.get("ratio") is None or b["ratio"] < API_TARGETS["api_basic_rps"] or b["ours"]["p99_ms"]["median"] > API_P99_TARGET_MS:
                exit_code = 3
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
