"""Running a workflow with AF Gateway against running it with yadage itself (the peer).

The same files (bench/workflows/map-reduce: acquire N files, count the words of each in its own
step, add the counts) run with `yadage-run` (yadage 0.21.2 from its own pinned venv, local
processes, its default pool of 2) and through AF Gateway's API on the local backend with
`workflows.max_parallel_steps: 2`. Both are measured in this run, alternating, from submission to
the finished run; both results are checked (the total is N(N+1)/2). Printed as ratios AF Gateway /
yadage (below 1: AF Gateway is faster). Not a test: run by `npm run bench`.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_rucio import free_port, wait_http  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / "bench" / "workflows" / "map-reduce"
ROUNDS = int(os.environ.get("AF_BENCH_WORKFLOW_ROUNDS", "3"))
SIZES = [int(n) for n in os.environ.get("AF_BENCH_WORKFLOW_SIZES", "20,200").split(",")]


def run_yadage(yadage_run: str, workdir: Path, n: int) -> float:
    t0 = time.monotonic()
    r = subprocess.run([yadage_run, str(workdir), "workflow.yml", "-p", f"nfiles={n}", "-t", str(WORKFLOW)],
                       capture_output=True, text=True, timeout=900)
    elapsed = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError(f"yadage-run failed:\n{r.stderr[-3000:]}")
    totals = list(workdir.rglob("total.txt"))
    assert len(totals) == 1 and int(totals[0].read_text()) == n * (n + 1) // 2, "yadage computed a wrong total"
    return elapsed


def run_gateway(url: str, files: dict, n: int) -> float:
    auth = ("bench", "")
    t0 = time.monotonic()
    r = requests.post(f"{url}/api/af/workflows", auth=auth, timeout=60,
                      json={"entry": "workflow.yml", "files": files, "parameters": {"nfiles": n}, "name": f"bench-{n}"})
    r.raise_for_status()
    run_id = r.json()["id"]
    while True:
        run = requests.get(f"{url}/api/af/workflows", auth=auth, timeout=60).json()["runs"]
        mine = next(x for x in run if x["id"] == run_id)
        if mine["status"] in ("SUCCESS", "FAILED", "CANCELLED"):
            break
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    assert mine["status"] == "SUCCESS", mine
    total = Path(mine["outputs"]["reduce"]["total"]).read_text()
    assert int(total) == n * (n + 1) // 2, "AF Gateway computed a wrong total"
    requests.delete(f"{url}/api/af/workflows/{run_id}", auth=auth, timeout=60)
    return elapsed


def main() -> int:
    yadage_run = os.environ.get("AF_BENCH_YADAGE_RUN")
    if not yadage_run:
        print("bench_workflows: AF_BENCH_YADAGE_RUN (the yadage-run of the peer venv) is not set; run it through npm run bench", file=sys.stderr)
        return 2
    files = {f: (WORKFLOW / f).read_text() for f in ("workflow.yml", "steps.yml")}
    tmp = Path(tempfile.mkdtemp(prefix="af-bench-wf-"))
    tmp.chmod(0o711)  # the steps run as the user's account (af-bench) and pass through to their run
    port = free_port()
    (tmp / "config.json").write_text(json.dumps({
        "listen": f"127.0.0.1:{port}", "data_dir": str(tmp / "data"), "log_level": "warn",
        "accounts": {"name_template": "af-{user}"},
        "workflows": {"max_parallel_steps": 2},
    }))
    gw = subprocess.Popen(["node", str(REPO / "gateway-server" / "dist" / "cli.js"), "serve", "--config", str(tmp / "config.json")],
                          stdout=subprocess.DEVNULL, stderr=open(tmp / "gateway.log", "w"), start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/api/health")
        print("\nWorkflows: map-reduce over N files (N + 3 steps), submission to finished run, 2 steps at a time")
        print(f"{'N':>6} {'AF Gateway / yadage':>22}   (median of {ROUNDS}; below 1: AF Gateway is faster)")
        for n in SIZES:
            ours, theirs = [], []
            for i in range(ROUNDS):
                wd = tmp / f"yadage-{n}-{i}"
                theirs.append(run_yadage(yadage_run, wd, n))
                shutil.rmtree(wd, ignore_errors=True)
                ours.append(run_gateway(url, files, n))
            ratio = statistics.median(ours) / statistics.median(theirs)
            spread = max(o / t for o, t in zip(ours, theirs)) - min(o / t for o, t in zip(ours, theirs))
            print(f"{n:>6} {ratio:>22.2f}   (ratio spread over rounds {spread:.2f})")
    finally:
        gw.terminate()
        try:
            gw.wait(20)
        except subprocess.TimeoutExpired:
            gw.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
