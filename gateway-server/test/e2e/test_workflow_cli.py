"""The `af-gateway` command line (python/af-gateway-client, af_gateway_client.cli) against a real
gateway with OIDC auth, the way a CI job uses it: a client-credentials token of the provider's
`ci-pipeline` client in BEARER_TOKEN_FILE, `af-gateway run WORKFLOW -p key=value --wait`, and the
exit code deciding the job's fate (0 ok, 1 run failed, 2 refused, 3 auth, 4 unreachable,
5 timeout, 130 interrupted).
"""

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from af_e2e_support import (REPO, client_credentials_token, free_port, kill_below, oidc_workflow_gateway, start_gateway, stop,
                             traversable_dir)

AF_GATEWAY = REPO / ".venv" / "bin" / "af-gateway"
MAP_REDUCE = REPO / "examples" / "workflows" / "map-reduce" / "workflow.yml"
# subworkflows scattered over words, a cases stage choosing a step and a subworkflow, skipped stages
SUBWORKFLOWS = REPO / "examples" / "workflows" / "subworkflows" / "workflow.yml"


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(provider, tmp_path_factory):
    with oidc_workflow_gateway(provider, tmp_path_factory.mktemp("gw-wf-cli")) as gw:
        yield gw


@pytest.fixture(scope="module")
def token_file(provider, tmp_path_factory):
    path = tmp_path_factory.mktemp("token") / "bt"
    path.write_text(client_credentials_token(provider, "ci-pipeline"))
    return path


@pytest.fixture
def env(tmp_path, gateway, token_file):
    """A CI job's environment: the gateway's URL and the token file, nothing else of ours."""
    e = {k: v for k, v in os.environ.items()
         if not k.startswith(("AF_GATEWAY", "BEARER_TOKEN", "DASK_GATEWAY", "PYTEST_"))}
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    e.update(AF_GATEWAY_URL=gateway["url"], BEARER_TOKEN_FILE=str(token_file), XDG_RUNTIME_DIR=str(runtime))
    return e


def cli(*args, env, cwd, timeout=60):
    return subprocess.run([str(AF_GATEWAY), *map(str, args)], env=env, cwd=str(cwd), capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def show(res):
    return f"exit {res.returncode}\n--- stdout ---\n{res.stdout}\n--- stderr ---\n{res.stderr}"


def write_workflow(directory, files):
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(textwrap.dedent(text))
    return directory / "workflow.yml"


def one_step(cmd):
    """A workflow of one singlestep stage running cmd on the gateway's host."""
    return {name: textwrap.dedent(text) for name, text in {
        "workflow.yml": """\
            stages:
              - name: work
                dependencies: [init]
                scheduler:
                  scheduler_type: singlestep-stage
                  parameters: {}
                  step: {$ref: 'steps.yml#/work'}
            """,
        "steps.yml": f"""\
            work:
              process:
                process_type: string-interpolated-cmd
                cmd: {json.dumps(cmd)}
              publisher:
                publisher_type: constant-pub
                publish: {{}}
              environment:
                environment_type: localproc-env
            """,
    }.items()}


def run_id_of(stdout):
    m = re.search(r"^run (\S+) \(", stdout, re.M)
    assert m, f"no run id in the output:\n{stdout}"
    return m.group(1)


def wait_status(run_id, want, env, cwd, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        res = cli("status", run_id, "--json", env=env, cwd=cwd)
        if res.returncode in (0, 1) and json.loads(res.stdout)["run"]["status"] == want:
            return res
        assert time.monotonic() < deadline, f"run {run_id} did not become {want}:\n{show(res)}"
        time.sleep(0.5)


def cancel_quietly(run_id, env, cwd):
    try:
        cli("cancel", run_id, env=env, cwd=cwd, timeout=30)
    except Exception:
        pass


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_map_reduce_runs_to_the_end_and_its_outputs_are_downloaded(env, tmp_path, token_file):
    out = tmp_path / "results"
    res = cli("run", MAP_REDUCE, "-p", "nfiles=4", "--wait", "--output-dir", out, env=env, cwd=tmp_path,
              timeout=200)
    assert res.returncode == 0, show(res)
    text = res.stdout
    run_id = run_id_of(text)
    # progress: stages applied as they come, step states summarised per stage
    assert re.search(r"^\[\d\d:\d\d\] stage acquire applied: 1 step$", text, re.M), show(res)
    assert re.search(r"^\[\d\d:\d\d\] stage map applied: 4 steps$", text, re.M), show(res)
    assert re.search(r"^\[\d\d:\d\d\] map: 4/4 SUCCESS$", text, re.M), show(res)
    assert re.search(r"^\[\d\d:\d\d\] reduce: 1/1 SUCCESS$", text, re.M), show(res)
    assert re.search(rf"^\[\d\d:\d\d\] run {re.escape(run_id)} SUCCESS$", text, re.M), show(res)
    # the final stage's output file: 1 + 2 + 3 + 4 words
    totals = list(out.rglob("total.txt"))
    assert len(totals) == 1, show(res)
    assert totals[0].read_text().strip() == "10"
    assert str(totals[0]) in text  # each downloaded file is printed
    summary = json.loads((out / "outputs.json").read_text())
    assert summary["run"]["id"] == run_id and summary["run"]["status"] == "SUCCESS"
    assert summary["run"]["parameters"] == {"nfiles": 4}  # -p values are YAML scalars
    assert summary["run"]["name"] == "map-reduce"  # named after the workflow's directory
    assert summary["local_outputs"]["reduce"]["total"] == totals[0].relative_to(out).as_posix()
    assert [f["local"] for f in summary["files"]] == [totals[0].relative_to(out).as_posix()]
    # the token is never printed
    assert token_file.read_text().strip() not in res.stdout + res.stderr

    # the small commands on the finished run
    st = cli("status", run_id, env=env, cwd=tmp_path)
    assert st.returncode == 0 and "SUCCESS" in st.stdout and "map" in st.stdout, show(st)
    lg = cli("logs", run_id, "map:0", env=env, cwd=tmp_path)
    assert lg.returncode == 0, show(lg)
    lg = cli("logs", run_id, "nosuch:7", env=env, cwd=tmp_path)
    assert lg.returncode == 2, show(lg)
    st = cli("status", "no-such-run", env=env, cwd=tmp_path)
    assert st.returncode == 2, show(st)


@pytest.mark.timeout(240)
def test_subworkflows_cases_and_skipped_stages(env, tmp_path):
    out = tmp_path / "results"
    res = cli("run", SUBWORKFLOWS, "-p", "words=[alpha, beta]", "-p", "ns=[3, 42]", "--wait", "--output-dir", out,
              env=env, cwd=tmp_path, timeout=200)
    # skipped stages are no failure: the run succeeds and its outputs are downloaded
    assert res.returncode == 0, show(res)
    text = res.stdout
    run_id = run_id_of(text)

    def line(rx):
        return re.search(rf"^\[\d\d:\d\d\] {rx}$", text, re.M)

    assert line(r"stage nested applied: 2 subworkflows"), show(res)
    assert line(r"stage pick applied: 1 step, 1 subworkflow"), show(res)
    assert line(r"stage never skipped: no case held: nothing runs"), show(res)
    assert line(r"stage later skipped: not applied: stage never it depends on was not applied"), show(res)
    # a subworkflow's stage is followed across its scopes, not line by line per scope
    assert line(r"nested\[\*\]\.shout \(2 subworkflows\): 2/2 SUCCESS"), show(res)
    assert line(r"pick\[\*\]\.big \(1 subworkflow\): 1/1 SUCCESS"), show(res)
    assert not re.search(r"nested\[[01]\]\.shout:", text), show(res)
    assert line(r"collect: 1/1 SUCCESS"), show(res)
    assert line(rf"run {re.escape(run_id)} SUCCESS"), show(res)
    assert "FAILED" not in text + res.stderr, show(res)
    # the words of both scopes, gathered by collect; pick's own step's file too
    summary = json.loads((out / "outputs.json").read_text())
    assert (out / summary["local_outputs"]["collect"]["file"]).read_text() == "ALPHA\nBETA\n"
    assert [(out / f).read_text() for f in summary["local_outputs"]["pick"]["file"]] == ["small 3\n"]
    assert "never" not in summary["outputs"] and "later" not in summary["outputs"]

    # status: SKIPPED stages with their reason, a subworkflow's stages across its scopes; exit 0
    st = cli("status", run_id, env=env, cwd=tmp_path)
    assert st.returncode == 0, show(st)
    assert re.search(r"^  never \[singlestep-stage\] SKIPPED - no case held: nothing runs$", st.stdout, re.M), show(st)
    assert re.search(r"^  nested \[multistep-stage\] APPLIED: 2 subworkflows$", st.stdout, re.M), show(st)
    assert re.search(r"^  nested\[\*\]\.shout \[singlestep-stage\] in 2 subworkflows: 2 APPLIED; steps 2/2 SUCCESS$",
                     st.stdout, re.M), show(st)
    dag = json.loads(cli("status", run_id, "--json", env=env, cwd=tmp_path).stdout)
    ids = {n["id"]: n for n in dag["nodes"]}
    assert {"nested[0].shout", "nested[1].shout", "pick:0", "pick[1].big"} <= set(ids), sorted(ids)
    assert (ids["pick:0"]["case"], ids["pick[1].init"]["case"]) == (0, 1)

    # logs of scoped steps: their ids hold brackets and dots, sent quoted
    lg = cli("logs", run_id, "nested[0].shout", env=env, cwd=tmp_path)
    assert lg.returncode == 0 and "shouted alpha" in lg.stdout and "beta" not in lg.stdout, show(lg)
    lg = cli("logs", run_id, "nested[1].shout", env=env, cwd=tmp_path)
    assert lg.returncode == 0 and "shouted beta" in lg.stdout, show(lg)
    lg = cli("logs", run_id, "pick[1].big", "--follow", env=env, cwd=tmp_path)  # finished: ends at once
    assert lg.returncode == 0 and "big-marker 42" in lg.stdout, show(lg)
    lg = cli("logs", run_id, "nested[2].shout", env=env, cwd=tmp_path)
    assert lg.returncode == 2, show(lg)


@pytest.mark.timeout(120)
def test_a_failing_step_fails_the_run_with_its_message_and_log(env, tmp_path):
    wf = write_workflow(tmp_path / "wf", one_step("sh -c 'echo boom-marker-on-stdout; echo to-stderr >&2; exit 3'"))
    res = cli("run", wf, "--retries", "0", "--wait", env=env, cwd=tmp_path, timeout=100)
    assert res.returncode == 1, show(res)
    both = res.stdout + res.stderr
    assert re.search(r"step work FAILED \(exit code 3", both), show(res)
    assert "boom-marker-on-stdout" in both, show(res)  # the log's last lines
    assert re.search(r"run \S+ FAILED", both), show(res)
    assert not (tmp_path / "af-gateway-outputs").exists()  # nothing downloaded for a failed run


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", ["unknown-dependency", "missing-cmd"])
def test_an_invalid_workflow_is_refused_with_json_paths(env, tmp_path, case):
    files = one_step("true")
    if case == "unknown-dependency":
        files["workflow.yml"] += textwrap.indent(textwrap.dedent("""\
              - name: second
                dependencies: [nosuch]
                scheduler:
                  scheduler_type: singlestep-stage
                  parameters: {}
                  step: {$ref: 'steps.yml#/work'}
            """), "  ")
        want = [r"\$\.stages\[1\]\.dependencies \(workflow\.yml\): .*nosuch"]
    else:
        files["steps.yml"] = files["steps.yml"].replace("cmd:", "command:")
        want = [r"\$\.stages\[0\]\.scheduler\.step\.process \(steps\.yml\): .*cmd"]
    wf = write_workflow(tmp_path / "wf", files)
    res = cli("run", wf, "--wait", env=env, cwd=tmp_path)
    assert res.returncode == 2, show(res)
    for rx in want:
        assert re.search(rx, res.stderr), show(res)


@pytest.mark.timeout(60)
def test_a_missing_parameter_is_named(env, tmp_path):
    res = cli("run", MAP_REDUCE, "--wait", env=env, cwd=tmp_path)
    assert res.returncode == 2, show(res)
    assert "nfiles" in res.stderr, show(res)


@pytest.mark.timeout(60)
def test_without_credentials_or_with_a_bad_token_exit_3(env, tmp_path, gateway):
    if Path(f"/tmp/bt_u{os.getuid()}").exists():
        pytest.skip(f"/tmp/bt_u{os.getuid()} exists: WLCG discovery would find a token")
    no_token = {k: v for k, v in env.items() if k != "BEARER_TOKEN_FILE"}
    res = cli("run", MAP_REDUCE, "-p", "nfiles=2", env=no_token, cwd=tmp_path)
    assert res.returncode == 3, show(res)
    assert "no credentials" in res.stderr and "BEARER_TOKEN_FILE" in res.stderr, show(res)
    # a token the gateway does not accept: its 401
    bad = dict(no_token, BEARER_TOKEN="not.a.token")
    res = cli("run", MAP_REDUCE, "-p", "nfiles=2", env=bad, cwd=tmp_path)
    assert res.returncode == 3, show(res)
    assert "401" in res.stderr and "not.a.token" not in res.stdout + res.stderr, show(res)
    res = cli("status", "whatever", env=bad, cwd=tmp_path)
    assert res.returncode == 3, show(res)


@pytest.mark.timeout(60)
def test_an_unreachable_gateway_exits_4(env, tmp_path):
    res = cli("run", MAP_REDUCE, "-p", "nfiles=2", "--wait", "--gateway", f"http://127.0.0.1:{free_port()}",
              env=env, cwd=tmp_path)
    assert res.returncode == 4, show(res)
    assert "cannot reach the gateway" in res.stderr, show(res)


@pytest.mark.timeout(60)
def test_usage_errors_exit_2_before_anything_is_sent(env, tmp_path):
    # a $ref leaving the workflow's directory: refused locally (the gateway is unreachable here)
    files = one_step("true")
    files["workflow.yml"] = files["workflow.yml"].replace("steps.yml#/work", "../elsewhere.yml#/work")
    wf = write_workflow(tmp_path / "wf", files)
    (tmp_path / "elsewhere.yml").write_text((tmp_path / "wf" / "steps.yml").read_text())
    unreachable = f"http://127.0.0.1:{free_port()}"
    res = cli("run", wf, "--gateway", unreachable, env=env, cwd=tmp_path)
    assert res.returncode == 2 and "outside the workflow's directory" in res.stderr, show(res)
    res = cli("run", MAP_REDUCE, "-p", "nfiles", "--gateway", unreachable, env=env, cwd=tmp_path)
    assert res.returncode == 2 and "KEY=VALUE" in res.stderr, show(res)
    res = cli("run", tmp_path / "nope.yml", "--gateway", unreachable, env=env, cwd=tmp_path)
    assert res.returncode == 2, show(res)
    res = cli("run", MAP_REDUCE, "--timeout", "5", env=env, cwd=tmp_path)  # --timeout needs --wait
    assert res.returncode == 2, show(res)
    no_url = {k: v for k, v in env.items() if k != "AF_GATEWAY_URL"}
    res = cli("status", "x", env=no_url, cwd=tmp_path)
    assert res.returncode == 2 and "AF_GATEWAY_URL" in res.stderr, show(res)


@pytest.mark.timeout(120)
def test_submit_without_wait_then_status_logs_and_cancel(env, tmp_path):
    wf = write_workflow(tmp_path / "wf", one_step("sh -c 'echo started-marker; sleep 120'"))
    res = cli("run", wf, "--name", "sleeper", env=env, cwd=tmp_path)
    assert res.returncode == 0, show(res)
    run_id = res.stdout.strip()
    assert run_id and "\n" not in run_id, show(res)  # only the id on stdout, for RUN=$(af-gateway run ...)
    try:
        deadline = time.monotonic() + 60
        while True:
            lg = cli("logs", run_id, "work", env=env, cwd=tmp_path)
            if lg.returncode == 0 and "started-marker" in lg.stdout:
                break
            assert time.monotonic() < deadline, show(lg)
            time.sleep(0.5)
        st = cli("status", run_id, env=env, cwd=tmp_path)
        assert st.returncode == 0 and "RUNNING" in st.stdout and "sleeper" in st.stdout, show(st)
        # --follow streams until the step finished: cancelling ends it
        follow = subprocess.Popen([str(AF_GATEWAY), "logs", run_id, "work", "--follow"], env=env,
                                  cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(1)
            assert follow.poll() is None, "logs --follow ended while the step runs"
            cn = cli("cancel", run_id, env=env, cwd=tmp_path)
            assert cn.returncode == 0, show(cn)
            out, err = follow.communicate(timeout=30)
            assert follow.returncode == 0 and "started-marker" in out, (out, err)
        finally:
            if follow.poll() is None:
                follow.kill()
                follow.wait()
        st = wait_status(run_id, "CANCELLED", env, tmp_path)
        assert st.returncode == 1, show(st)  # status: 1 for a failed or cancelled run
    finally:
        cancel_quietly(run_id, env, tmp_path)


@pytest.mark.timeout(120)
def test_timeout_leaves_the_run_running(env, tmp_path):
    wf = write_workflow(tmp_path / "wf", one_step("sleep 120"))
    res = cli("run", wf, "--wait", "--timeout", "4", env=env, cwd=tmp_path, timeout=60)
    run_id = run_id_of(res.stdout)
    try:
        assert res.returncode == 5, show(res)
        assert "keeps running" in res.stderr and f"af-gateway cancel {run_id}" in res.stderr, show(res)
        st = cli("status", run_id, "--json", env=env, cwd=tmp_path)
        assert st.returncode == 0 and json.loads(st.stdout)["run"]["status"] == "RUNNING", show(st)
    finally:
        cancel_quietly(run_id, env, tmp_path)
    wait_status(run_id, "CANCELLED", env, tmp_path)


@pytest.mark.timeout(120)
def test_ctrl_c_while_waiting_says_the_run_continues(env, tmp_path):
    wf = write_workflow(tmp_path / "wf", one_step("sleep 120"))
    proc = subprocess.Popen([str(AF_GATEWAY), "run", str(wf), "--wait"], env=env, cwd=str(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_id = None
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if run_id is None and line.startswith("run "):
                run_id = run_id_of(line)
            if re.search(r"work: 0/1 SUCCESS, 1 RUNNING", line):
                break
        assert run_id and proc.poll() is None, "".join(lines)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, (proc.returncode, "".join(lines) + out, err)
        assert "continues at the gateway" in err and f"af-gateway cancel {run_id}" in err, err
        st = cli("status", run_id, "--json", env=env, cwd=tmp_path)
        assert json.loads(st.stdout)["run"]["status"] == "RUNNING", show(st)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if run_id:
            cancel_quietly(run_id, env, tmp_path)
    wait_status(run_id, "CANCELLED", env, tmp_path)


@pytest.mark.timeout(120)
def test_basic_auth_at_a_simple_auth_gateway(tmp_path, env):
    # the demo's way in: AF_GATEWAY_USER / AF_GATEWAY_PASSWORD; the URL from dask_gateway's variable
    d = tmp_path / "gw-simple"
    d.mkdir()
    ws = traversable_dir()
    proc, url, _log = start_gateway(d, {
        "listen": f"127.0.0.1:{free_port()}",
        "data_dir": str(d / "data"),
        "auth": {"type": "simple", "simple": {"password": "s3cret"}},
        "accounts": {"name_template": "af-{user}"},
        "workflows": {"poll_period": 0.2, "workspace_root": str(ws)},
    })
    try:
        e = {k: v for k, v in env.items() if k not in ("AF_GATEWAY_URL", "BEARER_TOKEN_FILE")}
        e.update(DASK_GATEWAY__ADDRESS=url, AF_GATEWAY_USER="alice", AF_GATEWAY_PASSWORD="s3cret")
        wf = write_workflow(tmp_path / "wf", one_step("sh -c 'echo hello'"))
        res = cli("run", wf, "--wait", "--name", "basic", env=e, cwd=tmp_path, timeout=100)
        assert res.returncode == 0, show(res)
        assert (tmp_path / "af-gateway-outputs" / run_id_of(res.stdout) / "outputs.json").is_file(), show(res)
        assert "s3cret" not in res.stdout + res.stderr
        res = cli("run", wf, env=dict(e, AF_GATEWAY_PASSWORD="wrong"), cwd=tmp_path)
        assert res.returncode == 3 and "401" in res.stderr, show(res)
    finally:
        stop(proc)
        kill_below(d)
        kill_below(ws)
        shutil.rmtree(ws, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# the run's input data (--data DIR, -d initdir / -d subinits): the body the CLI builds, recorded
# by a stand-in for the gateway
# --------------------------------------------------------------------------------------------

MiB = 1024 * 1024


class _Recorder(BaseHTTPRequestHandler):
    """Answers a submission with a run id and records its body; the run is CANCELLED at once (so
    that `run --wait` ends after printing its summary line)."""

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.bodies.append(json.loads(body))
        self.answer(201, {"id": "wf-recorded", "name": "recorded", "status": "DEFINED"})

    def do_GET(self):  # noqa: N802
        self.answer(200, {"run": {"id": "wf-recorded", "name": "recorded", "status": "CANCELLED"}, "stages": [],
                          "nodes": []})

    def answer(self, status, doc):
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def recorder(tmp_path):
    """(the stand-in gateway, the environment pointing the CLI at it)"""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    srv.bodies = []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    e = {k: v for k, v in os.environ.items()
         if not k.startswith(("AF_GATEWAY", "BEARER_TOKEN", "DASK_GATEWAY", "PYTEST_"))}
    e.update(AF_GATEWAY_URL=f"http://127.0.0.1:{srv.server_address[1]}", AF_GATEWAY_TOKEN="stand-in-token")
    try:
        yield srv, e
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(10)


def tree(root, files):
    """Writes files {relative path: text or bytes} under root; returns root."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


@pytest.mark.timeout(60)
def test_data_is_sent_as_text_or_base64_by_relative_path_with_its_data_options(recorder, tmp_path):
    srv, e = recorder
    wf = write_workflow(tmp_path / "wf", one_step("true"))
    binary = bytes(range(256)) + b"\xff\xfe not UTF-8"
    data = tree(tmp_path / "inputs", {
        "init/input.txt": "hello\n",
        "siginputs/deep/er/initfile.txt": "h\u00e9llo \u2713\r\nno newline at the end",  # UTF-8, CRLF kept
        "siginputs/empty.root": "",
        "bkg/blob.dat": binary,
        "bkg/f0/latin1.txt": "caf\u00e9\n".encode("latin-1"),  # not UTF-8: its bytes
    })
    # a link to a file is read; a linked directory is not entered, and that is said
    (data / "bkg" / "linked.txt").symlink_to(data / "init" / "input.txt")
    elsewhere = tree(tmp_path / "elsewhere", {"secret.txt": "not sent\n"})
    (data / "init" / "linked-dir").symlink_to(elsewhere, target_is_directory=True)
    subinits = "{signal: siginputs, backgrounds: {_data: bkg, fit_0: bkg/f0, fit_1: ./bkg/f0/}}"
    res = cli("run", wf, "--data", data, "-d", "initdir=init", "-d", f"subinits={subinits}", "--wait", env=e,
              cwd=tmp_path)
    assert res.returncode == 1, show(res)  # the stand-in's run is CANCELLED at once
    assert len(srv.bodies) == 1, show(res)
    # the bytes of input.txt, initfile.txt, empty.root, blob.dat, latin1.txt and linked.txt (input.txt's)
    want_size = 6 + len("h\u00e9llo \u2713\r\nno newline at the end".encode()) + 0 + len(binary) + 5 + 6
    assert srv.bodies[0]["data"] == {
        "files": {
            "bkg/blob.dat": {"base64": base64.b64encode(binary).decode()},
            "bkg/f0/latin1.txt": {"base64": base64.b64encode(b"caf\xe9\n").decode()},
            "bkg/linked.txt": "hello\n",
            "init/input.txt": "hello\n",
            "siginputs/deep/er/initfile.txt": "h\u00e9llo \u2713\r\nno newline at the end",
            "siginputs/empty.root": "",
        },
        "initdir": "init",
        "subinits": {"signal": "siginputs", "backgrounds": {"_data": "bkg", "fit_0": "bkg/f0", "fit_1": "bkg/f0"}},
    }, show(res)
    assert srv.bodies[0]["entry"] == "workflow.yml" and set(srv.bodies[0]["files"]) == {"workflow.yml", "steps.yml"}
    assert re.search(rf"^run wf-recorded \(recorded\) submitted to \S+: workflow\.yml with 2 files, 6 data files "
                     rf"\({want_size} bytes\) from {re.escape(str(data))}$", res.stdout, re.M), show(res)
    assert re.search(r"linked-dir is a symbolic link to a directory: not followed", res.stderr), show(res)
    assert "not sent" not in json.dumps(srv.bodies[0])

    # without --wait the summary line (on standard error) says the same; no data options: none sent
    res = cli("run", wf, "--data", data / "siginputs", env=e, cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.strip() == "wf-recorded", show(res)
    assert srv.bodies[1]["data"] == {"files": {"deep/er/initfile.txt": "h\u00e9llo \u2713\r\nno newline at the end",
                                               "empty.root": ""}}, show(res)
    assert re.search(r"^submitted workflow\.yml \(2 files, 2 data files \(\d+ bytes\) from .*siginputs\) as run "
                     r"wf-recorded", res.stderr, re.M), show(res)
    # a run without --data sends no data
    res = cli("run", wf, env=e, cwd=tmp_path)
    assert res.returncode == 0 and "data" not in srv.bodies[2] and "data file" not in res.stderr, show(res)


@pytest.mark.timeout(60)
def test_data_within_the_limits_is_sent_whole(recorder, tmp_path):
    srv, e = recorder
    wf = write_workflow(tmp_path / "wf", one_step("true"))
    # exactly 1000 files and 8 MiB in all
    files = {f"d{i // 100}/f{i:04d}.txt": "x" * 8 for i in range(999)}
    files["big.txt"] = "y" * (8 * MiB - 8 * 999)
    data = tree(tmp_path / "inputs", files)
    res = cli("run", wf, "--data", data, env=e, cwd=tmp_path)
    assert res.returncode == 0, show(res)
    assert srv.bodies[0]["data"]["files"] == files
    assert f"1000 data files ({8 * MiB} bytes)" in res.stderr, show(res)


@pytest.mark.timeout(60)
def test_data_over_the_limits_is_refused_before_anything_is_sent(recorder, tmp_path):
    srv, e = recorder
    wf = write_workflow(tmp_path / "wf", one_step("true"))
    many = tree(tmp_path / "many", {f"d{i // 100}/f{i:04d}.txt": "x" for i in range(1001)})
    res = cli("run", wf, "--data", many, env=e, cwd=tmp_path)
    assert res.returncode == 2, show(res)
    assert f"--data {many} holds 1001 files; the gateway takes at most 1000" in res.stderr, show(res)
    assert "Rucio" in res.stderr, show(res)
    big = tree(tmp_path / "big", {"a.bin": b"\0" * (4 * MiB), "b/b.bin": b"\0" * (4 * MiB + 1)})
    res = cli("run", wf, "--data", big, "--wait", env=e, cwd=tmp_path)
    assert res.returncode == 2, show(res)
    assert re.search(rf"holds {8 * MiB + 1} bytes \(8\.0 MiB\) in 2 files; the gateway takes at most {8 * MiB} bytes "
                     r"\(8\.0 MiB\) of data per run: .*Rucio", res.stderr), show(res)
    assert srv.bodies == [], "something was sent"


@pytest.mark.timeout(60)
def test_data_usage_errors_exit_2_before_anything_is_sent(recorder, tmp_path):
    srv, e = recorder
    wf = write_workflow(tmp_path / "wf", one_step("true"))
    data = tree(tmp_path / "inputs", {"init/a.txt": "a\n"})

    def refused(*args, says):
        res = cli("run", wf, *args, env=e, cwd=tmp_path)
        assert res.returncode == 2, show(res)
        assert re.search(says, res.stderr), show(res)

    # data options yadage-run knows that mean nothing here, or no option at all: the known ones are named
    refused("--data", data, "-d", "pathbase=/elsewhere", says=r"-d pathbase: unknown data option; the known ones are "
                                                              r"initdir, subinits")
    refused("--data", data, "-d", "inputarchive=file:///x.zip", says=r"known ones are initdir, subinits")
    refused("--data", data, "-d", "initdir", says=r"expected KEY=YAML")
    refused("-d", "initdir=init", says=r"-d/--data-option needs --data")
    # directories outside the data directory, or no directory at all
    refused("--data", data, "-d", "initdir=../up", says=r"-d initdir: \.\./up is not inside the data directory")
    refused("--data", data, "-d", "initdir=/etc", says=r"-d initdir: /etc is not inside the data directory")
    refused("--data", data, "-d", "initdir=2024", says=r"-d initdir: a directory .* got 2024 \(quote it")
    refused("--data", data, "-d", "subinits=[a, b]", says=r"-d subinits: a mapping of stages to directories expected")
    refused("--data", data, "-d", "subinits={sig: {_data: {x: y}}}", says=r"-d subinits\.sig\._data: a directory")
    refused("--data", data, "-d", "subinits={sig: {inner: ../../etc}}",
            says=r"subinits\.sig\.inner: \.\./\.\./etc is not")
    refused("--data", data, "-d", "subinits={a: [b", says=r"-d subinits: not valid YAML")
    # a data directory that is none, holds nothing, or holds what cannot be read
    refused("--data", tmp_path / "nosuch", says=r"--data \S*nosuch: not a directory")
    (tmp_path / "empty").mkdir()
    refused("--data", tmp_path / "empty", says=r"holds no files")
    dangling = tree(tmp_path / "dangling", {"ok.txt": "ok\n"})
    (dangling / "gone.txt").symlink_to(tmp_path / "no-such-file")
    refused("--data", dangling, says=rf"cannot read {re.escape(str(dangling / 'gone.txt'))}: .*dangling symbolic link")
    fifo = tree(tmp_path / "fifo", {"ok.txt": "ok\n"})
    os.mkfifo(fifo / "pipe")
    refused("--data", fifo, says=rf"{re.escape(str(fifo / 'pipe'))} is not a regular file")
    assert srv.bodies == [], "something was sent"

    # a directory an option names that holds none of the files: a warning (a typo?), not an error
    res = cli("run", wf, "--data", data, "-d", "initdir=inits", env=e, cwd=tmp_path)
    assert res.returncode == 0 and "warning: -d initdir: inits holds none of the files" in res.stderr, show(res)
    assert srv.bodies[0]["data"] == {"files": {"init/a.txt": "a\n"}, "initdir": "inits"}
