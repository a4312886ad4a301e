"""The API fuzzer: schemathesis against a real gateway's /api/af/openapi.json, as a normal user.

A throw-away stack is started for the run: a Rucio test server (scripts/rucio-server.sh, reached
in the gateway's service mode as Rucio's root, like the demo) and the gateway (built dist/, local
backend in single-user mode, simple authentication on loopback) with small caps, so that the
clusters and workflow runs the fuzzer creates cannot flood the machine: two active clusters of
two workers at most, and two unfinished workflow runs of at most four steps, one at a time.
Every request is made as the user `fuzzer` (HTTP Basic). At the end every cluster and run is stopped through the API, the gateway is
stopped, and any process still carrying the run's directory or port is killed.

    .venv/bin/python test-harness/fuzz/fuzz_api.py [--cases-per-route N] [--seed S] [--no-rucio]

prints the figures (cases, responses by status class, failures) and exits non-zero when the run
found a failure. gateway-server/test/e2e/test_fuzz_api.py runs a short, bounded version.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CLI = REPO / "gateway-server" / "dist" / "cli.js"
VENV_BIN = REPO / ".venv" / "bin"
RUCIO_SCRIPT = REPO / "scripts" / "rucio-server.sh"
USER = "fuzzer"
# A run of one step that writes a file: what the workflow routes' path parameters are drawn from.
SEED_WORKFLOW = {
    "workflow.yml": """stages:
  - name: work
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {}
      step:
        process: {process_type: string-interpolated-cmd, cmd: 'echo seeded > {workdir}/out.txt'}
        publisher: {publisher_type: constant-pub, publish: {}}
        environment: {environment_type: localproc-env}
""",
}
CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance"


def free_port() -> int:
    """The tests' port picker (it skips the ports fetch() and browsers refuse)."""
    sys.path.insert(0, str(REPO / "gateway-server" / "test" / "e2e"))
    from af_e2e_support import free_port as pick
    return pick()


def log(msg: str) -> None:
    print(f"[fuzz] {msg}", file=sys.stderr, flush=True)


def gateway_config(port: int, data_dir: Path, rucio: dict | None) -> dict:
    """The gateway of a fuzz run: caps that bound what random requests can start."""
    cfg: dict = {
        "listen": f"127.0.0.1:{port}",
        "data_dir": str(data_dir),
        "log_level": "info",
        "auth": {"type": "simple"},
        "backend": {"type": "local", "local": {"single_user": True}},
        "cluster": {
            "max_workers": 2,
            "start_timeout": 30,
            "worker_start_timeout": 30,
            "idle_timeout": 15,  # frees the two cluster slots again during the run
            "stop_on_shutdown": True,
        },
        "policy": {"user_limits": {"max_clusters": 2, "max_workers": 2, "max_cores": 4, "max_memory": 4}},
        "workflows": {"max_parallel_steps": 1, "max_steps": 4, "step_retries": 0, "max_active_runs_per_user": 2},
    }
    if rucio is not None:
        u = rucio["root_userpass"]
        cfg["rucio"] = {
            "instances": [
                {"name": "test", "url": rucio["url"], "auth": "userpass", "account": u["account"],
                 "username": u["username"], "default_scheme": "root", "timeout": 30,
                 # the write routes (rules, register) are fuzzed too, against the throw-away server
                 "allow_writes": True}
            ]
        }
    return cfg


@dataclass
class Stack:
    """The Rucio test server (optional) and one gateway, in a directory of their own."""

    with_rucio: bool = True
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="af-fuzz-")))
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    rucio_dir: Path | None = None
    seeded: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / "gateway.log"

    def start(self) -> "Stack":
        if not CLI.exists():
            raise RuntimeError(f"{CLI} is missing: run `npm run build` first")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AF_GATEWAY", "DASK_GATEWAY"))}
        rucio = None
        if self.with_rucio:
            self.rucio_dir = self.root / "rucio"
            self.rucio_dir.mkdir()
            t0 = time.monotonic()
            # no identity provider: the gateway acts as Rucio's root (service mode), as the demo does
            subprocess.run(["bash", str(RUCIO_SCRIPT), "start", str(self.rucio_dir)], check=True,
                           env=dict(env, RUCIO_OIDC_ISSUER="http://127.0.0.1:1"),
                           stdout=subprocess.DEVNULL, stderr=open(self.root / "rucio-start.log", "w"), timeout=300)
            rucio = json.loads((self.rucio_dir / "rucio.json").read_text())
            env["AF_GATEWAY_RUCIO_PASSWORD_TEST"] = rucio["root_userpass"]["password"]
            log(f"Rucio test server up in {time.monotonic() - t0:.0f} s")
        cfg = gateway_config(self.port, self.root / "data", rucio)
        (self.root / "config.json").write_text(json.dumps(cfg, indent=1))
        with open(self.log_path, "w") as out:
            self.proc = subprocess.Popen(["node", str(CLI), "serve", "--config", str(self.root / "config.json")],
                                         stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the gateway exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                if requests.get(self.url + "/api/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not answer in 60 s:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        return self

    def seed(self) -> dict[str, list[str]]:
        """Things the fuzzer cannot guess the names of: one cluster and one finished workflow run
        of the user (with its step), so the routes that take a name also answer for a real one."""
        auth = (USER, "")
        r = requests.post(self.url + "/api/v1/clusters/", json={"cluster_options": {}}, auth=auth, timeout=60)
        r.raise_for_status()
        clusters = [r.json()["name"]]
        r = requests.post(self.url + "/api/af/workflows", json={"entry": "workflow.yml", "files": SEED_WORKFLOW},
                          auth=auth, timeout=60)
        r.raise_for_status()
        run = r.json()["id"]
        deadline = time.monotonic() + 60
        while requests.get(f"{self.url}/api/af/workflows/{run}", auth=auth, timeout=30).json()["run"]["status"] in ("DEFINED", "RUNNING"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the seed workflow run {run} did not finish in 60 s")
            time.sleep(0.5)
        return {"cluster-names": clusters, "run-ids": [run], "node-names": ["work", "init"], "file-paths": ["work/out.txt", "work"]}

    # -- clean-up -----------------------------------------------------------------------------

    def stop_everything_started(self) -> list[str]:
        """Stops the user's clusters and workflow runs through the API; returns what it stopped."""
        stopped: list[str] = []
        auth = (USER, "")
        try:
            r = requests.get(self.url + "/api/v1/clusters/", params={"status": "pending,running"}, auth=auth, timeout=30)
            for name in r.json() if r.ok else {}:
                requests.delete(f"{self.url}/api/v1/clusters/{name}", auth=auth, timeout=60)
                stopped.append(f"cluster {name}")
            r = requests.get(self.url + "/api/af/workflows", auth=auth, timeout=30)
            for run in (r.json().get("runs", []) if r.ok else []):
                if run.get("status") in ("DEFINED", "RUNNING"):
                    requests.post(f"{self.url}/api/af/workflows/{run['id']}/cancel", auth=auth, timeout=60)
                    stopped.append(f"run {run['id']}")
        except (requests.RequestException, ValueError) as err:
            log(f"could not list what the run started ({err}); the process sweep below still kills it")
        return stopped

    def leftovers(self) -> list[psutil.Process]:
        """Processes of this run still alive: anything that names its directory or its port."""
        tag_dir, tag_port = str(self.root), f"127.0.0.1:{self.port}"
        out = []
        me = os.getpid()
        for p in psutil.process_iter():
            if p.pid == me:
                continue
            try:
                if p.status() == psutil.STATUS_ZOMBIE:
                    continue
                cmd = " ".join(p.cmdline())
                try:
                    cwd = p.cwd()
                except psutil.Error:
                    cwd = ""
                try:
                    api = p.environ().get("DASK_GATEWAY_API_URL", "")
                except psutil.Error:
                    api = ""
                if tag_dir in cmd or cwd.startswith(tag_dir) or tag_port in api:
                    out.append(p)
            except psutil.Error:
                continue
        return out

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop_everything_started()
            os.killpg(self.proc.pid, signal.SIGTERM)  # stops the clusters (cluster.stop_on_shutdown)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self.rucio_dir is not None:
            subprocess.run(["bash", str(RUCIO_SCRIPT), "stop", str(self.rucio_dir)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        deadline = time.monotonic() + 5
        while (left := self.leftovers()) and time.monotonic() < deadline:
            time.sleep(0.2)
        for p in left:
            try:
                p.kill()
            except psutil.Error:
                pass
        if left:
            log(f"killed {len(left)} leftover process(es): {', '.join(str(p.pid) for p in left)}")

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


# -- the run ---------------------------------------------------------------------------------


@dataclass
class Figures:
    cases: int = 0
    operations: int = 0
    failures: list[str] = field(default_factory=list)
    statuses: collections.Counter = field(default_factory=collections.Counter)
    exit_code: int = 0
    seconds: float = 0.0
    output: str = ""

    def by_class(self) -> dict[str, int]:
        out: collections.Counter = collections.Counter()
        for status, n in self.statuses.items():
            out[f"{str(status)[0]}xx"] += n
        return dict(sorted(out.items()))

    def summary(self) -> str:
        lines = [
            f"cases: {self.cases} over {self.operations} operations in {self.seconds:.0f} s",
            "responses by status class: " + ", ".join(f"{k} {v}" for k, v in self.by_class().items()),
            "statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items())),
            f"failures: {len(self.failures)}",
        ]
        lines += [f"  - {f}" for f in self.failures]
        return "\n".join(lines)


def run_schemathesis(stack: Stack, *, cases_per_route: int, seed: int, max_time: int | None,
                     phases: str = "examples,coverage,fuzzing") -> Figures:
    report = stack.root / "report.ndjson"
    # the fixed configuration plus dictionaries of what the stack was seeded with
    config = stack.root / "schemathesis.toml"
    text = (HERE / "schemathesis.toml").read_text()
    for name, values in stack.seeded.items():
        text += f"\n[dictionaries.{name}]\nvalues = {json.dumps(values)}\n"
    bindings = {"cluster-names": ["path.cluster_name"], "run-ids": ["path.id"], "node-names": ["path.node"], "file-paths": ["path.*"]}
    extra = [f'"{key}" = {{ dictionary = "{name}", probability = 0.5 }}'
             for name in stack.seeded for key in bindings.get(name, [])]
    if extra:
        text = text.replace("[parameters]\n", "[parameters]\n" + "\n".join(extra) + "\n", 1)
    config.write_text(text)
    cmd = [
        str(VENV_BIN / "schemathesis"), "--config-file", str(config),
        "run", stack.url + "/api/af/openapi.json",
        "--checks", CHECKS,
        "--auth", f"{USER}:",
        "--max-examples", str(cases_per_route),
        "--seed", str(seed),
        "--phases", phases,
        "--workers", "1",
        "--request-timeout", "60",
        "--generation-database", "none",
        "--continue-on-failure",
        "--suppress-health-check", "all",
        "--report", "ndjson", "--report-ndjson-path", str(report),
        "--no-color",
    ]
    if max_time:
        cmd += ["--max-time", str(max_time)]
    env = dict(os.environ, SCHEMATHESIS_HOOKS="fuzz_hooks",
               PYTHONPATH=os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p))
    log(" ".join(cmd[:5] + ["…"]))
    t0 = time.monotonic()
    res = subprocess.run(cmd, cwd=stack.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    figs = Figures(exit_code=res.returncode, seconds=time.monotonic() - t0, output=res.stdout)
    (stack.root / "schemathesis.out").write_text(res.stdout)
    read_report(report, figs)
    return figs


def read_report(report: Path, figs: Figures) -> None:
    """Cases, statuses and failures from schemathesis' NDJSON event report: every generated case
    with the response it got, and every check that failed on it."""
    if not report.exists():
        figs.failures.append("schemathesis wrote no report (see its output)")
        return
    ops = set()
    failures: collections.Counter = collections.Counter()
    with open(report) as f:
        for line in f:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if "ScenarioFinished" in ev:
                rec = ev["ScenarioFinished"].get("recorder") or {}
                cases = rec.get("cases") or {}
                if not cases:
                    continue
                ops.add(rec.get("label", ""))
                figs.cases += len(cases)
                for inter in (rec.get("interactions") or {}).values():
                    if inter.get("response"):
                        figs.statuses[inter["response"]["status_code"]] += 1
                for checks in (rec.get("checks") or {}).values():
                    for chk in checks:
                        if chk.get("status") != "failure":
                            continue
                        info = (chk.get("failure_info") or {}).get("failure") or {}
                        msg = " / ".join((info.get("message") or "").strip().splitlines()[:3])
                        failures[f"{info.get('operation') or rec.get('label')}: {info.get('title') or chk.get('name')}: {msg}"[:400]] += 1
            elif "NonFatalError" in ev:
                body = ev["NonFatalError"]
                failures[f"{body.get('label', '')}: error: {(body.get('info') or {}).get('message', '')}"[:400]] += 1
    figs.operations = len(ops)
    figs.failures = [f if n == 1 else f"{f} (x{n})" for f, n in failures.items()]


def fuzz(*, cases_per_route: int, seed: int, max_time: int | None = None, with_rucio: bool = True,
         keep: bool = False, phases: str = "examples,coverage,fuzzing") -> tuple[Figures, Stack]:
    stack = Stack(with_rucio=with_rucio)
    try:
        stack.start()
        stack.seeded = stack.seed()
        figs = run_schemathesis(stack, cases_per_route=cases_per_route, seed=seed, max_time=max_time, phases=phases)
    finally:
        stack.close()
        if not keep:
            stack.remove()
    return figs, stack


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases-per-route", type=int, default=150, help="schemathesis --max-examples (per operation and phase)")
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--max-time", type=int, default=None, help="time budget in seconds")
    ap.add_argument("--min-cases", type=int, default=0, help="fail unless at least this many cases ran")
    ap.add_argument("--no-rucio", action="store_true", help="no Rucio server (its routes answer 404)")
    ap.add_argument("--keep", action="store_true", help="keep the run's directory (logs, report)")
    ap.add_argument("--phases", default="examples,coverage,fuzzing,stateful",
                    help="schemathesis phases (stateful: sequences of calls that reuse what earlier answers returned)")
    args = ap.parse_args()
    figs, stack = fuzz(cases_per_route=args.cases_per_route, seed=args.seed, max_time=args.max_time,
                       with_rucio=not args.no_rucio, keep=args.keep, phases=args.phases)
    print(figs.summary())
    if args.keep:
        print(f"run directory: {stack.root} (gateway.log, schemathesis.out, report.ndjson)")
    if figs.cases < args.min_cases:
        print(f"too few cases: {figs.cases} < {args.min_cases}")
        return 1
    if figs.failures or figs.exit_code != 0:
        if not figs.failures:
            print(figs.output[-4000:])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
