"""Load: many concurrent clients of mixed operations against our gateway and the peer (issue 22, item 5).

Each gateway in turn (ours, then dask-gateway-server 2026.3.0 from .venv, same run, same machine) runs
on its local backend with real Dask schedulers and workers: ``--clusters`` clusters (default 8), a
limit of ``--max-workers`` workers per cluster (default 2: ours cluster.max_workers, the peer's
ClusterConfig.cluster_max_workers), each scaled to 1 first. ``bench/load-mix.mjs`` then runs
``--clients`` concurrent clients (default 1,000) for ``--seconds`` (default 60) after a warm-up:
list, get, options, an AF read of one cluster (ours only; the peer gets a get instead), the
dashboard proxy (``/clusters/<name>/health``), scales to 0..limit+1 (a request past the limit is
capped; ``--scalers`` clients, one scale every ``--scale-every-ms``, since every scale starts or
stops real worker processes at about a CPU second each), creates (``--creators`` clients create a cluster, wait until it runs and delete it), and
event-stream WebSockets (ours only: ``--streams``, each reconnecting every 15 s). A share of the
clients (``--new-share``, default 0.2) opens a new TCP connection for every request, timed from
connect(); the others keep theirs alive. Think time between a client's requests: exponential, mean
``--think-ms`` (default 1,000 ms).

While the load runs, the real worker processes are counted per cluster at ``--sample-hz`` (default
10) from /proc (ours: distinct worker names in the launcher's process titles ``af-gateway: worker
<cluster> <worker> (bench)``, the bench user's only, as other tests on the machine run workers of
their own; the peer: a worker or nanny with DASK_GATEWAY_CLUSTER_NAME in its environment whose
parent has none, so a nanny and its worker child count once). Any sample above the limit is a
violation. Our gateway's event loop delay is read each second by ``bench/loop-delay-preload.mjs`` (node --import), and ``--cpu-prof`` writes a
V8 profile of our gateway to bench/results/load-profile/.

Afterwards every cluster is deleted through the API, and then nothing may be left: no cluster in
the list, no scheduler or worker process of the gateway (ProcTracker, after the gateway stopped).

Checked and printed (exit code 3 when one is missed with --check-targets; 1 when a gateway fails): 0 errors, p99 <= 100 ms for API calls,
separately for new-connection and keep-alive requests (ours), no worker-count violation, nothing
left behind. Ratios ours/peer are printed for what both have.

Usage:  .venv/bin/python bench/bench_load.py [--clients 1000] [--seconds 60] [--only ours|peer] [--cpu-prof]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gateways import (  # noqa: E402  (the gateway bench's start/stop and process machinery)
    BENCH_DIR,
    OURS_CLI,
    RESULTS_DIR,
    BenchError,
    OursGateway,
    PeerGateway,
    cleaning_up,
    environment_info,
    failed,
    log,
    out,
    rss_bytes,
    start_run,
    stop_gateway,
    wait_until,
)

LOADER = BENCH_DIR / "load-mix.mjs"
PRELOAD = BENCH_DIR / "loop-delay-preload.mjs"
P99_TARGET_MS = 100.0
USER = "bench"
BASIC = "Basic " + base64.b64encode(f"{USER}:".encode()).decode()


class OursLoad(OursGateway):
    """Our gateway with the loop-delay preload (and a CPU profile when asked)."""

    def __init__(self, *args, node_args=(), **kwargs):
        self.node_args = list(node_args)
        super().__init__(*args, **kwargs)

    def command(self):
        cmd = super().command()
        return [cmd[0], "--import", str(PRELOAD), *self.node_args, *cmd[1:]]


class PeerLoad(PeerGateway):
    def __init__(self, *args, max_workers: int, **kwargs):
        self.max_workers = max_workers
        super().__init__(*args, **kwargs)

    def command(self):
        cmd = super().command()
        with open(self.config_path, "a") as f:
            f.write(f"c.ClusterConfig.cluster_max_workers = {self.max_workers}\n")
        self.settings["ClusterConfig.cluster_max_workers"] = self.max_workers
        return cmd


class WorkerSampler:
    """Counts each cluster's worker processes from /proc at a fixed rate; remembers the most seen."""

    def __init__(self, label: str, limit: int, hz: float):
        self.label, self.limit, self.period = label, limit, 1.0 / hz
        self.known: dict[int, tuple[str, str] | None] = {}  # pid -> (cluster, worker) or None (not a worker)
        self.looks: dict[int, int] = {}  # how often a pid was seen as not (yet) a worker
        self.max_per_cluster: dict[str, int] = {}
        self.violations: list[dict] = []
        self.samples = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def classify(self, pid: int) -> tuple[str, str] | None:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return None
        if self.label == "ours":
            # `af-gateway: worker <cluster> <worker> (<user>)`: only the bench user's (other tests on
            # the machine run workers of their own users)
            i = cmd.find("af-gateway: worker ")
            parts = cmd[i:].split() if i >= 0 else []
            return (parts[2], parts[3]) if len(parts) > 4 and parts[4] == f"({USER})" else None
        if "worker" not in cmd and "nanny" not in cmd:
            return None
        # the peer's: a worker or nanny with the cluster in its environment whose parent has none
        # (a nanny's worker child is the same worker); keyed by pid
        cluster = self.env_cluster(pid)
        if not cluster:
            return None
        try:
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return None
        return None if self.env_cluster(ppid) else (cluster, f"pid {pid}")

    @staticmethod
    def env_cluster(pid: int) -> str | None:
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            return None
        for e in env:
            if e.startswith(b"DASK_GATEWAY_CLUSTER_NAME="):
                return e.split(b"=", 1)[1].decode()
        return None

    def scan(self) -> dict[str, set]:
        pids = {int(p) for p in os.listdir("/proc") if p.isdigit()}
        for gone in set(self.known) - pids:
            del self.known[gone]
            self.looks.pop(gone, None)
        per: dict[str, set] = {}
        for pid in pids:
            k = self.known.get(pid, False)
            if k is False or (k is None and self.looks.get(pid, 0) < 30):  # a title may be set after exec
                k = self.classify(pid)
                self.known[pid] = k
                if k is None:
                    self.looks[pid] = self.looks.get(pid, 0) + 1
            if k:
                per.setdefault(k[0], set()).add(k[1])
        return per

    def run(self):
        while not self.stop.is_set():
            t = time.monotonic()
            per = self.scan()
            self.samples += 1
            for c, ws in per.items():
                n = len(ws)
                self.max_per_cluster[c] = max(self.max_per_cluster.get(c, 0), n)
                if n > self.limit and len(self.violations) < 50:
                    self.violations.append({"t": time.time(), "cluster": c, "workers": sorted(ws)})
            self.stop.wait(max(0.0, self.period - (time.monotonic() - t)))

    def __enter__(self):
        self.t0 = time.monotonic()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.rate = self.samples / max(1e-9, time.monotonic() - self.t0)


def api(gw, method: str, path: str, body=None, timeout=30):
    import requests

    r = requests.request(method, gw.address + path, json=body, headers={"Authorization": BASIC}, timeout=timeout)
    return r


def prepare_clusters(gw, n: int, timeout: float) -> list[str]:
    names = []
    for _ in range(n):
        r = api(gw, "POST", "/api/v1/clusters/", {"cluster_options": {}})
        if r.status_code not in (200, 201):
            raise BenchError(f"{gw.label}: create answered {r.status_code}: {r.text[:300]}")
        names.append(r.json()["name"])

    def all_running():
        return all(api(gw, "GET", f"/api/v1/clusters/{c}").json()["status"] == "RUNNING" for c in names)

    wait_until(all_running, timeout, f"{gw.label}: {n} clusters RUNNING", poll=0.5)
    for c in names:
        r = api(gw, "POST", f"/api/v1/clusters/{c}/scale", {"count": 1})
        if r.status_code >= 300:
            raise BenchError(f"{gw.label}: scale answered {r.status_code}: {r.text[:300]}")
    return names


def delete_all(gw, timeout: float) -> int:
    """Deletes every cluster of the user; returns how many there were."""
    listed = api(gw, "GET", "/api/v1/clusters/").json()
    names = list(listed) if isinstance(listed, dict) else [c["name"] for c in listed]
    for c in names:
        api(gw, "DELETE", f"/api/v1/clusters/{c}")
    wait_until(lambda: not api(gw, "GET", "/api/v1/clusters/").json(), timeout, f"{gw.label}: no cluster listed", poll=0.5)
    return len(names)


def run_one(gw, tracker, args, res: dict) -> None:
    res["boot_s"] = gw.start()
    names = prepare_clusters(gw, args.clusters, args.timeout)
    log(f"{gw.label}: {len(names)} clusters running, each scaled to 1")
    cmd = [args.node, str(LOADER), "--port", str(gw.port), "--clients", str(args.clients), "--seconds", str(args.seconds),
           "--warmup", str(args.warmup), "--think-ms", str(args.think_ms), "--new-share", str(args.new_share),
           "--auth", BASIC, "--creators", str(args.creators), "--max-scale", str(args.max_workers),
           "--scalers", str(args.scalers), "--scale-every-ms", str(args.scale_every_ms)]
    for c in names:
        cmd += ["--cluster", c]
    if gw.label == "ours":
        cmd += ["--af", "--streams", str(args.streams)]
    load0 = os.getloadavg()[0]
    cpu0 = gw.cpu_seconds()
    rss_peak = 0
    with WorkerSampler(gw.label, args.max_workers, args.sample_hz) as sampler:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while proc.poll() is None:
            rss_peak = max(rss_peak, rss_bytes(gw.proc.pid) or 0)
            time.sleep(0.5)
        stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise BenchError(f"{gw.label}: the loader failed: {stderr[-800:]}")
    run = json.loads(stdout)
    run["gateway_cpu_s"] = gw.cpu_seconds() - cpu0
    run["loadavg_before"] = load0
    run["loadavg_after"] = os.getloadavg()[0]
    run["gateway_rss_peak_mb"] = rss_peak / 2**20
    run["worker_samples"] = sampler.samples
    run["worker_sample_hz"] = sampler.rate
    run["worker_max_per_cluster"] = max(sampler.max_per_cluster.values(), default=0)
    run["worker_violations"] = sampler.violations
    res["load"] = run
    t = time.monotonic()
    res["deleted_clusters"] = delete_all(gw, args.timeout)
    wait_until(lambda: not tracker.alive(gw.label), args.timeout, f"{gw.label}: scheduler/worker processes to exit", poll=0.5)
    res["cleanup_s"] = time.monotonic() - t
    if gw.label == "ours" and gw.loop_out.exists():
        loop = [json.loads(line) for line in gw.loop_out.read_text().splitlines() if line.strip()]
        res["event_loop"] = {
            "seconds": len(loop),
            "p99_of_p99_ms": sorted(x["p99_ms"] for x in loop)[int(0.99 * (len(loop) - 1))] if loop else None,
            "max_ms": max((x["max_ms"] for x in loop), default=None),
            "seconds_with_max_over_100ms": sum(1 for x in loop if x["max_ms"] > 100),
        }


def lat(run: dict, key: str, field: str):
    v = run.get("latency", {}).get(key, {}).get(field)
    return v


def report(data: dict, args) -> tuple[list[str], bool]:
    lines, ok = [], True
    gws = data["gateways"]
    lines.append("")
    lines.append(f"Load: {args.clients} clients ({int(args.clients * args.new_share)} on new connections), {args.seconds:.0f} s, "
                 f"{args.clusters} clusters of at most {args.max_workers} workers, think {args.think_ms:.0f} ms")
    keys = ["api:keepalive", "api:new"] + sorted({k for g in gws.values() for k in g.get("load", {}).get("latency", {}) if k.startswith("op:")})
    lines.append(f"{'':<20} {'ours req/s  p50   p99   max ms':<34} {'peer req/s  p50   p99   max ms':<34} p99 ours/peer")
    for k in keys:
        cells = []
        for g in ("ours", "peer"):
            s = gws.get(g, {}).get("load", {}).get("latency", {}).get(k)
            cells.append(f"{s['rps']:8.0f} {s['p50_ms']:5.1f} {s['p99_ms']:6.1f} {s['max_ms']:7.0f}" if s else "n/a")
        a, b = (lat(gws.get(g, {}).get("load", {}), k, "p99_ms") for g in ("ours", "peer"))
        lines.append(f"{k:<20} {cells[0]:<34} {cells[1]:<34} {f'{a / b:.2f}x' if a and b else ''}")
    for g in ("ours", "peer"):
        r = gws.get(g, {}).get("load")
        if not r:
            continue
        lines.append(
            f"{g}: errors {r['errors'] or 0} {r['error_samples'][:3] if r['errors'] else ''}; statuses {r['statuses']}; "
            f"creates {r['created']} (deleted {r['deleted']}); streams upgraded {r['stream_upgrades']}; "
            f"gateway {r['gateway_cpu_s'] / r['seconds']:.2f} cores (warm-up incl.), RSS peak {r['gateway_rss_peak_mb']:.0f} MB; "
            f"load average {r['loadavg_before']:.1f} -> {r['loadavg_after']:.1f}; loader {r['loader_cpu_s'] / r['seconds']:.2f} cores, "
            f"its loop p99 {r['loader_loop_delay_p99_ms']:.1f} ms")
        lines.append(
            f"{g}: workers per cluster at most {r['worker_max_per_cluster']} (limit {args.max_workers}) in {r['worker_samples']} samples "
            f"at {r['worker_sample_hz']:.1f} Hz; {len(r['worker_violations'])} samples above the limit "
            f"{r['worker_violations'][:2] if r['worker_violations'] else ''}")
        lines.append(f"{g}: after: {gws[g].get('deleted_clusters')} clusters deleted, processes gone in {gws[g].get('cleanup_s', 0):.1f} s; "
                     f"left behind: {gws[g].get('leftovers', [])}")
        if gws[g].get("event_loop"):
            lines.append(f"{g}: gateway event loop per second: p99 of p99 {gws[g]['event_loop']['p99_of_p99_ms']:.1f} ms, "
                         f"max {gws[g]['event_loop']['max_ms']:.0f} ms, {gws[g]['event_loop']['seconds_with_max_over_100ms']} s with a stall > 100 ms")
    o = gws.get("ours", {})
    r = o.get("load")
    lines.append("")
    if not r:
        return lines + ["Load targets: ours not measured"], False
    checks = [
        ("0 errors", not r["errors"], f"{sum(r['errors'].values())} errors"),
        (f"p99 keep-alive <= {P99_TARGET_MS:.0f} ms", (lat(r, "api:keepalive", "p99_ms") or 1e9) <= P99_TARGET_MS, f"{lat(r, 'api:keepalive', 'p99_ms')} ms"),
        (f"p99 new connection <= {P99_TARGET_MS:.0f} ms", (lat(r, "api:new", "p99_ms") or 1e9) <= P99_TARGET_MS, f"{lat(r, 'api:new', 'p99_ms')} ms"),
        ("workers never above the limit", not r["worker_violations"] and r["worker_samples"] > 0, f"max {r['worker_max_per_cluster']} of {args.max_workers}"),
        ("nothing left behind", not o.get("leftovers") and not r["not_deleted"], f"{len(o.get('leftovers', []))} processes, {len(r['not_deleted'])} clusters"),
    ]
    for name, good, fig in checks:
        ok &= good
        lines.append(f"Load target {name}: {fig} {'OK' if good else 'MISSED'}")
    return lines, ok


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--think-ms", type=float, default=1000.0)
    p.add_argument("--new-share", type=float, default=0.2)
    p.add_argument("--clusters", type=int, default=8)
    p.add_argument("--max-workers", type=int, default=2)
    p.add_argument("--session-nice", type=int, default=None,
                   help="ours: backend.local.session_nice (autogroup nice of users' sessions; 0 = off); default: the gateway's")
    p.add_argument("--creators", type=int, default=2)
    p.add_argument("--scalers", type=int, default=2)
    p.add_argument("--scale-every-ms", type=float, default=5000.0)
    p.add_argument("--streams", type=int, default=30, help="event-stream WebSockets (ours; at most 32 per user)")
    p.add_argument("--sample-hz", type=float, default=10.0)
    p.add_argument("--only", choices=["ours", "peer"])
    p.add_argument("--cpu-prof", action="store_true", help="write a V8 CPU profile of our gateway to bench/results/load-profile/")
    p.add_argument("--timeout", type=float, default=180.0)
    p.add_argument("--node", default=shutil.which("node") or "node")
    p.add_argument("--ours-cli", default=str(OURS_CLI))
    p.add_argument("--output", default=str(RESULTS_DIR / "load-latest.json"))
    p.add_argument("--check-targets", action="store_true", help="exit 3 when a target is missed (printed either way)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)

    run_id, tmp_root, tracker, env = start_run("afgw-bench-load")
    data = {"run_id": run_id, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "environment": environment_info(args.node),
            "args": vars(args), "gateways": {}}
    exit_code = 0
    labels = [g for g in ("ours", "peer") if args.only in (None, g)]
    for label in labels:
        res = data["gateways"].setdefault(label, {})
        wd = Path(tmp_root) / label
        try:
            if label == "ours":
                node_args = []
                if args.cpu_prof:
                    prof = RESULTS_DIR / "load-profile"
                    prof.mkdir(parents=True, exist_ok=True)
                    node_args = ["--cpu-prof", f"--cpu-prof-dir={prof}"]
                gw = OursLoad(wd, dict(env), tracker, args.timeout, node=args.node, cli=str(Path(args.ours_cli).resolve()),
                              overrides=[(["cluster", "max_workers"], args.max_workers)]
                              + ([(["backend", "local", "session_nice"], args.session_nice)] if args.session_nice is not None else []),
                              node_args=node_args)
                gw.loop_out = wd / "loop-delay.jsonl"
                gw.env["AF_BENCH_LOOP_DELAY_OUT"] = str(gw.loop_out)
            else:
                gw = PeerLoad(wd, dict(env), tracker, args.timeout, max_workers=args.max_workers)
            gw.log_path = RESULTS_DIR / "logs" / f"load-{label}-gateway.log"
            try:
                run_one(gw, tracker, args, res)
            finally:
                with cleaning_up():
                    killed, _ = stop_gateway(gw, tracker, label, False)
                    res["leftovers"] = [f"{k['role']} {k['pid']}" for k in killed]
        except Exception as e:
            exit_code = 1
            res["error"] = failed(label, e, args.verbose)
    lines, ok = report(data, args)
    for line in lines:
        out(line)
    if not ok and args.check_targets and exit_code == 0:
        exit_code = 3
    shutil.rmtree(tmp_root, ignore_errors=True)
    out_path = Path(args.output)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    out(f"raw results: {out_path}")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
