"""`npm run demo` (scripts/demo.sh) as a person uses it: it starts on free ports, the analysis example's
notebook runs to its plot in the Lab in real Chromium (its Dask workers read alice's dataset from the
demo's token-protected XRootD storage with the token the demo's agent keeps fresh), the histogram it
registers is in the demo's Rucio, and TERM (what Ctrl-C does for the terminal's process group) stops
everything it started. About 2 min.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from af_e2e_support import free_port

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent


def port_open(port):
    import socket
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def demo():
    top = Path(tempfile.mkdtemp(prefix="af-demo-test-"))
    ports = {k: free_port() for k in ("AF_DEMO_PORT", "AF_DEMO_LAB_PORT", "AF_DEMO_GATEWAY_PORT", "AF_DEMO_PROXY_API_PORT")}
    env = {**os.environ, "AF_DEMO_DIR": str(top / "demo"), **{k: str(v) for k, v in ports.items()}}
    for k in ("BEARER_TOKEN", "BEARER_TOKEN_FILE", "DASK_GATEWAY__ADDRESS"):
        env.pop(k, None)
    log = top / "demo.log"
    out = open(log, "w")
    proc = subprocess.Popen(["bash", str(REPO / "scripts" / "demo.sh")], stdout=out, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True, cwd=REPO)
    try:
        deadline = time.monotonic() + 420  # Rucio seeds 20,000 files onto the storage on every start
        while "AF Gateway demo is running" not in log.read_text():
            assert proc.poll() is None, "the demo exited while starting:\n" + log.read_text()[-4000:]
            assert time.monotonic() < deadline, "the demo did not start in 420 s:\n" + log.read_text()[-4000:]
            time.sleep(1)
        lab = re.search(r"JupyterLab:\s+(http://\S+)", log.read_text()).group(1)
        yield {"proc": proc, "log": log, "lab": lab, "ports": ports, "dir": top / "demo", "top": top}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        out.close()
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.timeout(900)
def test_the_analysis_notebook_runs_to_its_plot_in_the_demo_lab_and_registers_its_histogram(demo, tmp_path):
    shot = tmp_path / "demo-analysis.png"
    run = subprocess.run(["node", str(HERE / "demo_lab_run.mjs"), demo["lab"], str(shot)], capture_output=True, text=True,
                         timeout=420, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert not seen["errors"], seen["errors"]
    assert seen["plot"] >= 1 and seen["registered"], seen["outputs"]
    text = "\n".join(seen["outputs"])
    # every file of the dataset was read on the workers, and the selection kept four-lepton events
    assert re.search(r"pass 1: 9 files, 18000 events, [1-9]\d* four-lepton events", text), text
    assert shot.stat().st_size > 10_000
    (did,) = re.findall(r"registered: (user\.alice:four-lepton-m4l\.\S+\.root)", text)

    # the histogram is alice's file in the demo's Rucio, in her outputs dataset (asked through the gateway as alice)
    gw = f"http://127.0.0.1:{demo['ports']['AF_DEMO_GATEWAY_PORT']}"
    r = requests.post(gw + "/api/af/rucio/demo/replicas", auth=("alice", ""), timeout=60,
                      json={"dids": [{"scope": "user.alice", "name": "af.example.4l.outputs"}], "schemes": ["davs"]})
    assert r.status_code == 200, r.text
    names = [json.loads(x)["name"] for x in r.text.splitlines() if x.strip()]
    assert did.split(":", 1)[1] in names, names
    # the token the notebook and its workers used never shows in what the Lab displays
    token = (demo["dir"] / "tokens" / "alice").read_text().strip()
    assert token and token not in run.stdout


def command_lines():
    """Every process's command line, as any local user may read it in /proc."""
    out = {}
    for d in Path("/proc").glob("[0-9]*"):
        try:
            out[d.name] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            pass
    return out


@pytest.mark.timeout(120)
def test_no_secret_of_the_demo_is_on_a_command_line_and_alices_token_file_is_hers_alone(demo):
    """The demo's processes run as root (with the storage): a second local user must not find the Lab's
    token (a root Lab: terminals), the proxy's API token, the Rucio password or alice's access token on
    any command line, nor read her token file."""
    secrets = {"the Lab's token": re.search(r"token=([0-9a-f]+)", demo["lab"]).group(1)}
    api_port = demo["ports"]["AF_DEMO_PROXY_API_PORT"]
    for pid, line in command_lines().items():
        if str(demo["dir"]) not in line and f"--api-port {api_port}" not in line:
            continue
        try:
            env = dict(v.split(b"=", 1) for v in (Path("/proc") / pid / "environ").read_bytes().split(b"\0") if b"=" in v)
        except OSError:
            continue
        for var in (b"CONFIGPROXY_AUTH_TOKEN", b"AF_GATEWAY_RUCIO_PASSWORD_DEMO", b"JUPYTER_TOKEN"):
            if env.get(var):
                secrets[var.decode()] = env[var].decode()
    assert {"CONFIGPROXY_AUTH_TOKEN", "AF_GATEWAY_RUCIO_PASSWORD_DEMO", "JUPYTER_TOKEN"} <= set(secrets), sorted(secrets)
    assert secrets["JUPYTER_TOKEN"] == secrets["the Lab's token"]
    tokens = demo["dir"] / "tokens"
    secrets["alice's access token"] = (tokens / "alice").read_text().strip()
    for pid, line in command_lines().items():
        for what, value in secrets.items():
            assert value not in line, f"{what} is on the command line of process {pid}"
    assert tokens.stat().st_mode & 0o777 == 0o700 and (tokens / "alice").stat().st_mode & 0o777 == 0o600


@pytest.mark.timeout(300)
def test_term_stops_everything_the_demo_started(demo):
    storage_dirs = re.findall(r"/tmp/af-demo-storage\.\w+", subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout)
    proc = demo["proc"]
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=120)
    assert "stopped" in demo["log"].read_text()
    for name, port in demo["ports"].items():
        assert not port_open(port), f"{name} {port} still listens"
    left = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    assert str(demo["dir"]) not in left, left
    for d in set(storage_dirs):
        assert d not in left and not Path(d).exists(), d
