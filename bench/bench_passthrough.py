#!/usr/bin/env python
"""Scheduler TLS passthrough: 100 MiB through AF Gateway's one port against the peer's Go proxy
and against direct TLS to the scheduler.

Both gateways (ours: `node gateway-server/dist/cli.js serve`; the peer: dask-gateway-server with its
dask-gateway-proxy) run side by side, started and stopped with bench_gateways.py's machinery, each
with one cluster of 1 worker (1 thread). The unmodified dask_gateway client then, in each round
and in a rotating order:

* gather  -- `future.result()` of a task that returned 100 MiB of random bytes (the task has
  finished before the clock starts; the scheduler fetches the bytes from the worker and sends them
  to the client, which is how a dask_gateway client gathers);
* scatter -- `client.scatter(<100 MiB of random bytes>, hash=False)`, the upload the other way;

through ours, through the peer, and DIRECTLY to each scheduler (a `distributed.Client` on the
scheduler's own tls:// address with the cluster's TLS credentials: the same mutual TLS, no proxy),
which is the physical limit of this client, scheduler and worker on this machine. It prints the
ratios of the medians (ours/peer, ours/direct, peer/direct) with the per-round paired ratios'
min-max, and the CPU seconds the proxying process spent per transfer (our gateway's node process;
the peer's dask-gateway-proxy).

`--ours-variant NAME=PATH/cli.js` adds more of our gateways (another build of the server, e.g. a
copy of gateway-server/dist with one change) to the same rounds, for before/after comparisons.

Usage:  .venv/bin/python bench/bench_passthrough.py [--rounds N] [--mib 100]
Not a test: run by `npm run bench` after bench_gateways.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gateways import (  # noqa: E402  (the gateway bench's start/stop and process machinery)
    _KEEPALIVE,
    _STATE,
    OURS_CLI,
    RESULTS_DIR,
    BenchError,
    OursGateway,
    PeerGateway,
    Runner,
    environment_info,
    log,
    out,
    proc_stat,
    start_run,
    summarize,
    wait_until,
)

TARGETS = {  # time ratios of the medians for the 100 MiB gather, lower is better
    "peer": 0.9,
    "direct": 1.1,
}


def make_payload(nbytes: int) -> bytes:
    """Random bytes, so that no compression along the way can make the transfer cheaper."""
    return os.urandom(nbytes)


class Side:
    """One way of reaching a scheduler: through a gateway's proxy, or direct."""

    def __init__(self, name: str, client, gateway=None, cluster=None, proxy_pid: int | None = None):
        self.name = name
        self.client = client
        self.gateway = gateway
        self.cluster = cluster
        self.proxy_pid = proxy_pid  # the process that copies the bytes (None: direct)
        self.times: dict[str, list[float]] = {"gather": [], "scatter": []}
        self.cpu: dict[str, list[float]] = {"gather": [], "scatter": []}
        self.faults: dict[str, list[int]] = {"gather": [], "scatter": []}

    def _proxy_cpu(self) -> tuple[float, int] | None:
        """CPU seconds and minor page faults of the proxying process so far."""
        return None if self.proxy_pid is None else proc_stat(self.proxy_pid)

    def measure(self, op: str, nbytes: int, payload: bytes) -> float:
        c = self.client
        if op == "gather":
            fut = c.submit(make_payload, nbytes, pure=False)
            wait_until(fut.done, 120, f"{self.name}: the task", poll=0.005)
            if fut.status != "finished":
                raise BenchError(f"{self.name}: the task failed: {fut.exception()!r}")
            cpu0 = self._proxy_cpu()
            t0 = time.perf_counter()
            data = fut.result()
            dt = time.perf_counter() - t0
            cpu1 = self._proxy_cpu()
            if len(data) != nbytes:
                raise BenchError(f"{self.name}: gathered {len(data)} bytes, expected {nbytes}")
            del data
            fut.release()
        else:
            cpu0 = self._proxy_cpu()
            t0 = time.perf_counter()
            fut = c.scatter(payload, hash=False)
            dt = time.perf_counter() - t0
            cpu1 = self._proxy_cpu()
            # the worker holds it: ask for its size to prove the bytes arrived whole
            if c.submit(len, fut).result() != nbytes:
                raise BenchError(f"{self.name}: the worker got a different payload")
            fut.release()
        self.times[op].append(dt)
        if cpu0 is not None and cpu1 is not None:
            self.cpu[op].append(cpu1[0] - cpu0[0])
            self.faults[op].append(cpu1[1] - cpu0[1])
        return dt


def proxy_pid(gw) -> int | None:
    """The process the scheduler bytes flow through: our gateway itself; the peer's Go proxy."""
    import psutil

    if isinstance(gw, OursGateway):
        return gw.proc.pid
    try:
        for child in psutil.Process(gw.proc.pid).children(recursive=True):
            if "dask-gateway-proxy" in " ".join(child.cmdline()):
                return child.pid
    except psutil.Error:
        pass
    return None


class OursBuild(OursGateway):
    """Our gateway from a given build (--ours-cli, --ours-variant), with extra node arguments."""

    def __init__(self, name: str, *args, node_args=(), **kwargs):
        self.label = name
        self.node_args = list(node_args)
        super().__init__(*args, **kwargs)
        self.log_path = RESULTS_DIR / "logs" / f"passthrough-{name}-gateway.log"

    def command(self):
        cmd = super().command()
        return [cmd[0], *self.node_args, *cmd[1:]]


def open_cluster(gw, tracker, timeout: float):
    """Start a cluster with one worker on ``gw``; return (runner, cluster, client, scheduler address)."""
    runner = Runner(gw, tracker, timeout)
    cluster, client, _, _ = runner.new_cluster()
    cluster.scale(1)
    wait_until(lambda: runner.n_workers(client, running_only=True) >= 1, timeout, f"{gw.label}: 1 running worker")
    address = client.scheduler_info()["address"]
    if not address.startswith("tls://"):
        raise BenchError(f"{gw.label}: the scheduler listens on {address}, not TLS")
    return runner, cluster, client, address


def direct_client(address: str, security):
    from distributed import Client

    return Client(address, security=security, set_as_default=False, timeout=30)


def paired(a: list[float], b: list[float]):
    """Per-round ratios a/b (both measured in the same round)."""
    return [x / y for x, y in zip(a, b) if y > 0]


def report(sides: dict[str, Side], mib: float, rounds_done: int) -> tuple[list[str], dict]:
    lines, summary = [], {}
    names = list(sides)
    for op in ("gather", "scatter"):
        if not any(s.times[op] for s in sides.values()):
            continue
        lines.append("")
        lines.append(f"{op} {mib:g} MiB, {rounds_done} rounds: median [min..max]")
        for name in names:
            s = summarize(sides[name].times[op])
            cpu = summarize(sides[name].cpu[op])
            faults = summarize(sides[name].faults[op])
            summary.setdefault(op, {})[name] = {"seconds": s, "proxy_cpu_seconds": cpu, "proxy_minor_faults": faults}
            if s is None:
                lines.append(f"  {name:<14} n/a")
                continue
            rate = f"{mib / s['median']:6.0f} MiB/s [{mib / s['max']:.0f}..{mib / s['min']:.0f}]"
            cpu_txt = f"   proxy CPU {cpu['median']:.3f} s, {faults['median']:.0f} page faults per transfer" if cpu else ""
            lines.append(f"  {name:<14} {rate}{cpu_txt}")
        lines.append("  time ratios: of the medians, and the same round's pairs: median [min..max]")
        for a, b in ratio_pairs(names):
            ta, tb = sides[a].times[op], sides[b].times[op]
            if not ta or not tb:
                continue
            r = statistics.median(ta) / statistics.median(tb)
            p = paired(ta, tb)
            pm = statistics.median(p)
            summary[op][f"{a}/{b}"] = {"ratio": r, "paired_median": pm, "paired_min": min(p), "paired_max": max(p)}
            lines.append(f"  - {a + '/' + b:<22} {r:5.2f}x   pairs {pm:.2f}x [{min(p):.2f}..{max(p):.2f}]")
    return lines, summary


def ratio_pairs(names: list[str]):
    ours = [n for n in names if not n.startswith(("peer", "direct"))]
    for o in ours:
        if "peer" in names:
            yield o, "peer"
        if "direct" in names:
            yield o, "direct"
    if "peer" in names and "direct-peer" in names:
        yield "peer", "direct-peer"
    if "direct" in names and "direct-peer" in names:
        yield "direct", "direct-peer"
    for o in ours[1:]:
        yield o, ours[0]


def verdicts(summary: dict, mib: float) -> list[str]:
    lines = [""]
    g = summary.get("gather", {})
    for other, target in TARGETS.items():
        r = g.get(f"ours/{other}")
        if r is None:
            lines.append(f"gather {mib:g} MiB: ours/{other} = n/a (target <= {target}x)")
            continue
        verdict = "OK" if r["ratio"] <= target else "MISSED"
        lines.append(f"gather {mib:g} MiB: ours/{other} = {r['ratio']:.2f}x (target <= {target}x) {verdict}")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=int(os.environ.get("AF_BENCH_PASSTHROUGH_ROUNDS", "7")),
                   help="measured rounds after one unmeasured (default 7, or AF_BENCH_PASSTHROUGH_ROUNDS)")
    p.add_argument("--mib", type=float, default=100, help="MiB per transfer (default 100)")
    p.add_argument("--timeout", type=float, default=120.0, help="timeout of every wait, seconds (default 120)")
    p.add_argument("--node", default=shutil.which("node") or "node", help="node executable")
    p.add_argument("--ours-cli", default=str(OURS_CLI), help=f"our server's CLI (default {OURS_CLI})")
    p.add_argument("--ours-variant", action="append", default=[], metavar="NAME=CLI",
                   help="another build of our server measured in the same rounds, e.g. "
                        "before=gateway-server/dist-before/cli.js (repeatable)")
    p.add_argument("--ours-node-arg", action="append", default=[], metavar="ARG",
                   help="extra node argument for our gateway, e.g. --ours-node-arg=--cpu-prof (repeatable)")
    p.add_argument("--ops", default="gather,scatter", help="what to measure (default gather,scatter)")
    p.add_argument("--no-peer", action="store_true", help="measure without the peer")
    p.add_argument("--no-direct", action="store_true", help="measure without direct TLS")
    p.add_argument("--check-targets", action="store_true", help="exit 3 when the gather misses a target")
    p.add_argument("--output", default=str(RESULTS_DIR / "passthrough-latest.json"), help="JSON output path")
    p.add_argument("-v", "--verbose", action="store_true", help="print tracebacks")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    nbytes = int(args.mib * 2**20)
    ops = [op for op in args.ops.split(",") if op]
    if not ops or set(ops) - {"gather", "scatter"}:
        p.error("--ops takes gather, scatter or both")

    run_id, tmp_root, tracker, env = start_run("afgw-bench-pt")

    data = {
        "run_id": run_id,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "mib": args.mib,
        "environment": environment_info(args.node),
        "notes": [],
    }
    gateways, runners, sides = [], [], {}
    exit_code = 0
    t_run = time.perf_counter()
    payload = make_payload(nbytes)
    try:
        plan = []
        if not Path(args.ours_cli).exists():
            raise BenchError(f"ours: {args.ours_cli} does not exist (build the server first: npx tsc -b gateway-server)")
        plan.append(("ours", lambda wd: OursBuild("ours", wd, env, tracker, args.timeout, node=args.node,
                                                  cli=str(Path(args.ours_cli).resolve()), node_args=args.ours_node_arg)))
        for item in args.ours_variant:
            name, sep, cli = item.partition("=")
            if not sep or not name or name in ("ours", "peer") or name.startswith("direct"):
                p.error(f"--ours-variant expects NAME=CLI with a new name, got {item!r}")
            cli_path = str(Path(cli).resolve())
            plan.append((name, lambda wd, name=name, cli_path=cli_path: OursBuild(
                name, wd, env, tracker, args.timeout, node=args.node, cli=cli_path, node_args=args.ours_node_arg)))
        if not args.no_peer:
            plan.append(("peer", lambda wd: PeerGateway(wd, env, tracker, args.timeout)))
        for name, make in plan:
            gw = make(Path(tmp_root) / name)
            if name == "peer":
                gw.log_path = RESULTS_DIR / "logs" / "passthrough-peer-gateway.log"
            gateways.append(gw)
            gw.start()
            runner, cluster, client, address = open_cluster(gw, tracker, args.timeout)
            runners.append(runner)
            sides[name] = Side(name, client, gw, cluster, proxy_pid(gw))
            log(f"{name}: cluster {cluster.name} with 1 worker; scheduler at {address}")
            if not args.no_direct and name in ("ours", "peer"):
                direct = "direct" if name == "ours" else "direct-peer"
                dc = direct_client(address, cluster.security)
                _KEEPALIVE.append(dc)
                sides[direct] = Side(direct, dc)
        data["loadavg_before"] = os.getloadavg()
        log(f"load average before the rounds: {data['loadavg_before']}")
        names = list(sides)
        for r in range(args.rounds + 1):
            order = names[r % len(names):] + names[: r % len(names)]
            for op in ops:
                for name in order:
                    dt = sides[name].measure(op, nbytes, payload)
                    if r == 0:  # warm-up: connections, imports, first allocation of 100 MiB
                        sides[name].times[op].pop()
                        if sides[name].cpu[op]:
                            sides[name].cpu[op].pop()
                            sides[name].faults[op].pop()
                    log(f"round {r if r else 'warm-up'}: {op:<7} {name:<12} {dt:.3f}s ({args.mib / dt:.0f} MiB/s)")
        data["loadavg_after"] = os.getloadavg()
        lines, summary = report(sides, args.mib, args.rounds)
        lines += verdicts(summary, args.mib)
        data["summary"] = summary
        data["raw"] = {n: {"times": s.times, "proxy_cpu": s.cpu, "proxy_minor_faults": s.faults} for n, s in sides.items()}
        for line in lines:
            out(line)
        out(f"\nload average (1, 5, 15 min) before {tuple(round(x, 2) for x in data['loadavg_before'])}, "
            f"after {tuple(round(x, 2) for x in data['loadavg_after'])}; {os.cpu_count()} CPUs")
        if args.check_targets:
            for other, target in TARGETS.items():
                r = summary["gather"].get(f"ours/{other}")
                if r is None or r["ratio"] > target:
                    exit_code = 3
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); cleaning up")
        exit_code = 130
    except Exception as e:
        log(f"ERROR {type(e).__name__}: {e}")
        data["error"] = f"{type(e).__name__}: {e}"
        if args.verbose:
            traceback.print_exc()
        for gw in gateways:
            out(f"{gw.label} gateway log tail:\n{gw.log_tail()}")
        exit_code = 1
    finally:
        _STATE["cleaning"] = True
        for side in sides.values():
            if side.gateway is None:
                try:
                    side.client.close()
                except Exception:
                    pass
        for runner in runners:
            runner.close()
        for gw in gateways:
            gw.stop()
        killed, _ = tracker.kill_leftovers(None, False)
        for proc in killed:
            log(f"WARNING killed leftover {proc['role']} pid {proc['pid']}: {' '.join(proc['cmdline'])[:160]}")
        if exit_code == 1:
            log(f"kept the gateways' work dirs in {tmp_root}")
        else:
            shutil.rmtree(tmp_root, ignore_errors=True)
        _STATE["cleaning"] = False
    data["wall_time_s"] = time.perf_counter() - t_run
    out_path = Path(args.output)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    out(f"total wall time {data['wall_time_s']:.0f} s; raw results: {out_path}")
    for gw in gateways:
        out(f"{gw.label} gateway log: {gw.log_path}")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
