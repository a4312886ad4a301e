"""`npm run demo` (scripts/demo.sh) as a person uses it: it starts on free ports and prints what to try
first, the analysis example's notebook runs to its plot in the Lab in real Chromium (its Dask workers
read alice's dataset from the demo's token-protected XRootD storage with the token the demo's agent
keeps fresh), the histogram it registers is in the demo's Rucio, the seeded datasets (ds.big, 20,000
files; ds.huge, 100,000) are in Rucio and their files on the storage, and TERM (what Ctrl-C does for
the terminal's process group) stops everything it started. A second start reuses the machine's Rucio
seed. A port taken before the start, or between the port check and the component's own bind, ends
the demo at once, naming the component and the port, with nothing left running. About 4 min once the
machine's seed exists; the first start on a machine makes it (minutes more).
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import zlib
from pathlib import Path

import pytest
import requests

from af_e2e_support import free_port

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
PORT_VARS = ("AF_DEMO_PORT", "AF_DEMO_LAB_PORT", "AF_DEMO_GATEWAY_PORT", "AF_DEMO_PROXY_API_PORT")
# the first start on a machine seeds its Rucio (120,000 files onto the storage): minutes on a loaded machine
START_SECONDS = 900


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def launch(top, ports=None):
    """Starts scripts/demo.sh with its directory under `top`, on free ports (or these); returns (proc, log, ports)."""
    ports = ports or {k: free_port() for k in PORT_VARS}
    env = {**os.environ, "AF_DEMO_DIR": str(top / "demo"), **{k: str(v) for k, v in ports.items()}}
    for k in ("BEARER_TOKEN", "BEARER_TOKEN_FILE", "DASK_GATEWAY__ADDRESS"):
        env.pop(k, None)
    log = top / f"run-{time.monotonic_ns()}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(["bash", str(REPO / "scripts" / "demo.sh")], stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, cwd=REPO)
    return proc, log, ports


def wait_running(proc, log, seconds=START_SECONDS):
    deadline = time.monotonic() + seconds
    while "AF Gateway demo is running" not in log.read_text():
        assert proc.poll() is None, "the demo exited while starting:\n" + log.read_text()[-4000:]
        assert time.monotonic() < deadline, f"the demo did not start in {seconds} s:\n" + log.read_text()[-4000:]
        time.sleep(1)
    # the banner is written in one go; give it a moment to be whole
    time.sleep(0.5)
    return log.read_text()


def terminate(proc, timeout=120):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def processes_naming(*needles):
    """Processes whose command line, environment, working directory or open files name one of the needles
    (as root: every process's)."""
    found = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (d / "cmdline").read_bytes()
            text = [cmdline, (d / "environ").read_bytes(), os.readlink(d / "cwd").encode()]
            text += [os.readlink(f).encode() for f in (d / "fd").iterdir()]
        except OSError:
            continue
        if any(n.encode() in t for t in text for n in needles):
            found.append(d.name + ": " + cmdline.replace(b"\0", b" ").decode(errors="replace")[:200])
    return found


def storage_run_dir(demo_dir):
    """The storage's run directory this start made (scripts/xrootd-storage.sh prints its storage.json into the log)."""
    log = demo_dir / "logs" / "storage.log"
    for line in log.read_text().splitlines() if log.exists() else []:
        if line.startswith("{"):
            return json.loads(line)["run_dir"]
    return None


def assert_nothing_left(demo_dir, ports, rucio_port=None):
    """No process of the demo's is left: none names its directory or its storage's, no port of its listens."""
    run_dir = storage_run_dir(demo_dir)
    left = []
    for _ in range(50):  # processes killed at the end may take a moment to be reaped
        left = processes_naming(f"{demo_dir}/", *([run_dir] if run_dir else []))
        if not left:
            break
        time.sleep(0.2)
    assert not left, left
    for name, port in {**ports, **({"Rucio": rucio_port} if rucio_port else {})}.items():
        assert not port_open(port), f"{name} {port} still listens"
    if run_dir:
        assert not Path(run_dir).parent.exists(), run_dir


def rucio_facts(demo_dir):
    return json.loads((demo_dir / "rucio" / "rucio.json").read_text())


@pytest.fixture(scope="module")
def demo():
    top = Path(tempfile.mkdtemp(prefix="af-demo-test-"))
    proc, log, ports = launch(top)
    try:
        banner = wait_running(proc, log)
        lab = re.search(r"JupyterLab:\s+(http://\S+)", banner).group(1)
        yield {"proc": proc, "log": log, "lab": lab, "ports": ports, "dir": top / "demo", "top": top, "banner": banner,
               "rucio": rucio_facts(top / "demo")}
    finally:
        terminate(proc, timeout=90)
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.timeout(START_SECONDS + 480)
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


def test_the_demo_says_what_to_try_first(demo):
    """Once everything is up, a short list: the Lab, the token panel, alice's dataset, the notebook, a cluster;
    README has the same list, and its Python snippet is the demo's user."""
    banner = demo["banner"]
    first = banner[banner.index("Try this first:"):banner.index("Ctrl-C stops everything")]
    items = re.findall(r"^\s+(\d)\. ", first, re.M)
    assert items == ["1", "2", "3", "4", "5"], first
    for what in ("JupyterLab address", "Access token panel", "user.alice:af.example.4l", "analysis/four-lepton.ipynb",
                 "Dask clusters panel", "ds.huge (100,000 files)"):
        assert what in first, (what, first)
    # the README's list near `npm run demo` says the same things, and its Python snippet logs in as the
    # demo's user, whose clusters the Lab's panels show
    readme = (REPO / "README.md").read_text()
    assert "the Lab and Gateway() in a notebook log in as alice" in banner, banner
    snippet = readme[readme.index("## From Python and notebooks"):][:1200]
    assert re.findall(r"auth=BasicAuth\((\S+?)\)", snippet) == ['"alice"'], snippet
    listed = readme[readme.index("Try this first"):][:2500]
    for what in ("Access token", "user.alice:af.example.4l", "four-lepton.ipynb", "Dask clusters", "ds.huge"):
        assert what in listed, (what, listed)


def read_seeded_files(gw, token, ca, dids):
    """Each file's davs PFN (through the gateway as alice) read from the storage with her token: the size
    and Adler-32 Rucio has for it. Returns how many were read."""
    r = requests.post(gw + "/api/af/rucio/demo/replicas", auth=("alice", ""), timeout=120,
                      json={"dids": [{"scope": s, "name": n} for s, n in (d.split(":") for d in dids)], "schemes": ["davs"]})
    assert r.status_code == 200, r.text[:2000]
    replicas = [json.loads(x) for x in r.text.splitlines() if x.strip()]
    assert sorted(f"{x['scope']}:{x['name']}" for x in replicas) == sorted(dids), replicas
    read = 0
    for x in replicas:
        for pfn in [p for pfns in x["rses"].values() for p in pfns]:
            body = requests.get(pfn.replace("davs://", "https://", 1), headers={"Authorization": f"Bearer {token}"}, verify=ca, timeout=30)
            assert body.status_code == 200, (pfn, body.status_code, body.text[:300])
            assert len(body.content) == x["bytes"] and "%08x" % zlib.adler32(body.content) == x["adler32"], pfn
            read += 1
    return read


SEEDED = ["data26:file.big.000001.root", "data26:file.big.020000.root", "data26:file.huge.000001.root", "data26:file.huge.100000.root",
          "data26:file.small.0003.root"]


def check_seeded_data(demo_dir, ports):
    gw = f"http://127.0.0.1:{ports['AF_DEMO_GATEWAY_PORT']}"
    for name, files in (("ds.big", 20_000), ("ds.huge", 100_000)):
        r = requests.get(f"{gw}/api/af/rucio/demo/dids/data26/{name}", auth=("alice", ""), timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["length"] == files, r.json()
    facts = rucio_facts(demo_dir)
    token = (demo_dir / "tokens" / "alice").read_text().strip()
    # ds.small's file is on both sites: one read from each storage server
    assert read_seeded_files(gw, token, facts["storage"]["ca"], SEEDED) == len(SEEDED) + 1


@pytest.mark.timeout(180)
def test_the_seeded_datasets_are_in_rucio_and_their_files_on_the_storage(demo):
    seed = demo["rucio"]["seed"]
    assert seed and seed["key"] and Path(seed["dir"], ".complete").exists(), seed
    check_seeded_data(demo["dir"], demo["ports"])


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
    assert storage_run_dir(demo["dir"])
    proc = demo["proc"]
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=120)
    assert "stopped" in demo["log"].read_text()
    assert_nothing_left(demo["dir"], demo["ports"], demo["rucio"]["port"])


@pytest.mark.timeout(START_SECONDS + 300)
def test_a_second_start_reuses_the_rucio_seed(demo):
    """The same demo directory started again (as a person does the next day): its Rucio is the seed the
    first start used or made (the stamp's key and time, and the log says so), with the same data."""
    first = demo["rucio"]["seed"]
    proc, log, ports = launch(demo["top"])
    try:
        banner = wait_running(proc, log)
        seed = rucio_facts(demo["dir"])["seed"]
        assert seed["reused"] is True and seed["key"] == first["key"] and seed["made"] == first["made"], (first, seed)
        assert f"reused the seed {first['key']} made {first['made']}" in banner, banner[-3000:]
        assert f"reusing the Rucio seed {first['key']}" in (demo["dir"] / "logs" / "rucio-start.log").read_text()
        check_seeded_data(demo["dir"], ports)
        rucio_port = rucio_facts(demo["dir"])["port"]
    finally:
        terminate(proc)
    assert_nothing_left(demo["dir"], ports, rucio_port)


@pytest.mark.timeout(60)
def test_a_port_taken_before_the_start_is_named_and_nothing_starts(tmp_path):
    ports = {k: free_port() for k in PORT_VARS}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports["AF_DEMO_LAB_PORT"]))
        taken.listen()
        t0 = time.monotonic()
        proc, log, _ = launch(tmp_path, ports)
        try:
            proc.wait(timeout=30)
        finally:
            terminate(proc)
    out = log.read_text()
    assert proc.returncode != 0 and time.monotonic() - t0 < 30, out
    assert f"port 127.0.0.1:{ports['AF_DEMO_LAB_PORT']} (the JupyterLab, AF_DEMO_LAB_PORT) is already in use" in out, out
    assert "[bootstrap]" not in out, out  # nothing was built or started
    assert_nothing_left(tmp_path / "demo", ports)


@pytest.mark.timeout(400)
def test_a_port_taken_meanwhile_ends_the_demo_at_once_naming_the_component(tmp_path):
    """The gateway's port is taken after the demo checked it (while it builds and starts the storage):
    the demo ends when the gateway cannot have it, naming the gateway and the port, with the end of the
    gateway's log, and stops the storage, Rucio and the rest."""
    proc, log, ports = launch(tmp_path)
    gw_port = ports["AF_DEMO_GATEWAY_PORT"]
    taken = socket.socket()
    try:
        deadline = time.monotonic() + 60
        while "[demo] ports free:" not in log.read_text():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.02)
        taken.bind(("127.0.0.1", gw_port))
        taken.listen()
        proc.wait(timeout=300)  # set-up (a build when sources changed), the storage, then the gateway's start
        out = log.read_text()
        assert proc.returncode != 0, out[-3000:]
        assert re.search(rf"\[demo\] gateway could not listen on 127\.0\.0\.1:{gw_port} \(AF_DEMO_GATEWAY_PORT\): the port was taken "
                         rf"meanwhile by python\S* \(pid {os.getpid()}\)(; the end of its log \(| \(its log, \S+, is empty so far\))", out), out[-3000:]
        assert "the demo cannot run without the gateway: stopping everything" in out, out[-3000:]
        assert "AF Gateway demo is running" not in out
        rucio_url = re.search(r"url: '?(http://127\.0\.0\.1:\d+)", (tmp_path / "demo" / "gateway.yaml").read_text())
    finally:
        terminate(proc)
        taken.close()
    assert_nothing_left(tmp_path / "demo", {k: v for k, v in ports.items() if k != "AF_DEMO_GATEWAY_PORT"},
                        int(rucio_url.group(1).rsplit(":", 1)[1]) if rucio_url else None)
