"""The four-lepton analysis example (examples/analysis) as the end-to-end tests run it on a lake
(lake_support), whichever backend the gateway's clusters use: a notebook's environment for one user
with a token refresher, the samples made and registered as alice's dataset with their expected
entries counted independently, and the checks the tests share (what a successful run must show,
and what a refused user must be told). A test module imports the `samples` fixture from here.
"""
import base64
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import nbformat
import pytest
import requests
import uproot
from nbclient import NotebookClient

from lake_support import RSE, WLCG_ANY, lines, rucio_root, signed_token

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "analysis"
DATASET = "user.alice:af.example.4l"
OUTPUTS = "user.alice:af.example.4l.outputs"
SAMPLES = ["SMHiggsToZZTo4L", "ZZTo4mu", "Run2012B_DoubleMuParked"]
FILES, EVENTS = 9, 2000  # what the samples fixture makes: 3 files per sample, events per file
SCOPES = "openid compute.create compute.read storage.read:/ storage.create:/"
TOKEN_LIFETIME = 60  # seconds, as the brief's OIDC_TTL: the analyses of the tests last longer
ISSUED = []  # every token handed out here: none may appear in what the notebook shows


def claims(token):
    """A token's claims, decoded and not verified (for the tests' bookkeeping: jti, iat, exp)."""
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


class Notebook:
    """A notebook's environment for one user: its directory, its token file (0600, replaced whole), and
    a refresher that puts a new token there every `every` seconds and shows it to the gateway. Its tokens
    carry `scopes`, by default the lake's (`lake["scopes"]`: what this facility's users get) or SCOPES."""

    def __init__(self, lake, user, directory, scopes=None):
        self.lake, self.user, self.dir = lake, user, Path(directory)
        self.scopes = scopes or lake.get("scopes", SCOPES)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.token_file = self.dir / "bearer-token"
        self.stopping = threading.Event()
        self.renewals = 0
        self.errors = []
        self.thread = None
        self.given = []  # (jti, iat, exp) of each token given, in order
        self.give()

    def give(self):
        token = signed_token(self.lake, self.user, self.scopes, ["af-gateway", WLCG_ANY], lifetime=TOKEN_LIFETIME)
        ISSUED.append(token)
        c = claims(token)
        self.given.append((c["jti"], c["iat"], c["exp"]))
        tmp = self.token_file.with_suffix(".new")
        tmp.write_text(token + "\n")
        tmp.chmod(0o600)
        os.replace(tmp, self.token_file)
        # a request with the new token: the gateway's broker keeps the freshest and writes it for the workers
        r = requests.get(self.lake["url"] + "/api/af/token", headers={"Authorization": "Bearer " + token}, timeout=30)
        r.raise_for_status()
        return token

    def refresh_every(self, every):
        def loop():
            while not self.stopping.wait(every):
                try:
                    self.give()
                    self.renewals += 1
                except Exception as exc:  # noqa: BLE001 - reported by the test
                    self.errors.append(repr(exc))

        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()

    def stop(self):
        self.stopping.set()
        if self.thread:
            self.thread.join(timeout=30)

    def env(self, **settings):
        env = {"AF_GATEWAY_URL": self.lake["url"], "BEARER_TOKEN_FILE": str(self.token_file), "ANALYSIS_OUTPUT_DIR": str(self.dir),
               **self.lake["storage"]["client_env"], **{f"ANALYSIS_{k.upper()}": str(v) for k, v in settings.items()}}
        return env

    def run(self, timeout=240, **settings):
        """Executes the example notebook in a kernel of its own with this environment; returns the executed
        notebook (CellExecutionError when a cell fails). The user's clusters are stopped afterwards."""
        nb = nbformat.read(EXAMPLE / "four-lepton.ipynb", as_version=4)
        saved = {k: os.environ.get(k) for k in (*self.env(**settings), "BEARER_TOKEN", "DASK_GATEWAY__ADDRESS", "SSL_CERT_FILE")}
        os.environ.pop("BEARER_TOKEN", None)
        os.environ.pop("DASK_GATEWAY__ADDRESS", None)
        os.environ.update(self.env(**settings))
        try:
            NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(self.dir)}}).execute()
            return nb
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            self.stop_clusters()

    def stop_clusters(self):
        token = self.give()
        headers = {"Authorization": "Bearer " + token}
        for c in requests.get(self.lake["url"] + "/api/v1/clusters/", headers=headers, timeout=30).json():
            requests.delete(f"{self.lake['url']}/api/v1/clusters/{c['name']}", headers=headers, timeout=60)


def four_lepton_events(path):
    """m4ℓ of the events of one file the example's selection keeps, counted with a plain loop over events
    (not the notebook's awkward code): muons pT > 5, |η| < 2.4; electrons pT > 7, |η| < 2.5; exactly four
    of them as 4μ, 4e or 2e2μ, each flavour's charges adding up to zero."""
    tree = uproot.open(path)["Events"]
    a = tree.arrays(library="np")
    masses = []
    for i in range(tree.num_entries):
        leptons = []
        for flavour, pt_min, eta_max in (("Muon", 5.0, 2.4), ("Electron", 7.0, 2.5)):
            for pt, eta, phi, m, q in zip(*(a[f"{flavour}_{k}"][i] for k in ("pt", "eta", "phi", "mass", "charge"))):
                if pt > pt_min and abs(eta) < eta_max:
                    leptons.append((flavour, float(pt), float(eta), float(phi), float(m), int(q)))
        n_mu = sum(1 for x in leptons if x[0] == "Muon")
        if len(leptons) != 4 or n_mu % 2 or any(sum(x[5] for x in leptons if x[0] == f) for f in ("Muon", "Electron")):
            continue
        e = px = py = pz = 0.0
        for _, pt, eta, phi, m, _ in leptons:
            px, py, pz = px + pt * math.cos(phi), py + pt * math.sin(phi), pz + pt * math.sinh(eta)
            e += math.sqrt((pt * math.cosh(eta)) ** 2 + m * m)
        masses.append(math.sqrt(max(e * e - px * px - py * py - pz * pz, 0.0)))
    return masses


@pytest.fixture(scope="module")
def samples(lake, tmp_path_factory):
    """The samples made and registered as alice's dataset by make_samples.py; the expected entries per sample."""
    out = tmp_path_factory.mktemp("samples")
    nb = Notebook(lake, "alice", out / "alice")
    env = {**os.environ, **nb.env()}
    env.pop("BEARER_TOKEN", None)
    env["PYTHONFAULTHANDLER"] = "1"  # a SIGABRT below shows where it stood
    proc = subprocess.Popen([sys.executable, str(EXAMPLE / "make_samples.py"), str(out / "files"), "--files", str(FILES // len(SAMPLES)),
                             "--events", str(EVENTS), "--register", DATASET, "--rse", RSE, "--instance", "test"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr[-5000:]
    made = json.loads(stdout.strip().splitlines()[-1])
    assert len(made["files"]) == FILES and len(made["dids"]) == FILES
    expected = {s: 0 for s in SAMPLES}
    in_range = 0
    for f in made["files"]:
        masses = four_lepton_events(out / "files" / f["name"])
        expected[f["sample"]] += len(masses)
        in_range += sum(1 for m in masses if 70.0 <= m < 250.0)
    # the samples are alice's dataset, on the RSE
    scope, name = DATASET.split(":")
    content = sorted(c["name"] for c in lines(rucio_root(lake)(f"/dids/{scope}/{name}/dids")))
    assert content == sorted(f["name"] for f in made["files"])
    assert all(expected[s] > 0 for s in SAMPLES), expected
    return {"dir": out / "files", "made": made, "entries": expected, "in_range": in_range}


def summary_of(nb):
    """The JSON line the notebook's registering cell prints."""
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            for line in out.get("text", "").splitlines():
                if line.startswith("{") and '"file_reads"' in line:
                    return json.loads(line)
    raise AssertionError("the notebook printed no summary")


def check_analysis(lake, samples, executed, passes, directory):
    """What a successful run of the notebook (`passes` reads of every file) must show: every read on the
    workers succeeded (a failure fails its cell), the histogram holds what the independent loop counts and
    was drawn, its file is in Rucio in alice's output dataset with a replica on the RSE and reads back
    through the data helper, and no token appears in the executed notebook. Returns the notebook's summary."""
    summary = summary_of(executed)
    assert summary["files"] == FILES and summary["file_reads"] == FILES * passes, summary
    assert summary["events"] == FILES * EVENTS
    # the histogram holds what an independent loop over the generated files counts
    assert summary["entries"] == samples["entries"]
    with uproot.open(summary["output"]) as f:
        local = {s: f[f"m4l_{s}"] for s in SAMPLES}
        assert sum(int(h.values().sum()) for h in local.values()) == samples["in_range"]
    # and a plot was drawn
    assert any("image/png" in out.get("data", {}) for c in executed.cells for out in c.get("outputs", []))

    # the output is in Rucio, with a replica on the RSE, and reads back through the data helper
    look = rucio_root(lake)
    (did,) = summary["dids"]
    assert did == "user.alice:" + Path(summary["output"]).name
    out_scope, out_name = OUTPUTS.split(":")
    assert [c["name"] for c in lines(look(f"/dids/{out_scope}/{out_name}/dids"))] == [did.split(":", 1)[1]]
    blob = Path(summary["output"]).read_bytes()
    (rep,) = lines(look("/replicas/list", {"dids": [{"scope": "user.alice", "name": did.split(":", 1)[1]}], "schemes": ["davs"]}))
    assert list(rep["rses"]) == [RSE] and rep["bytes"] == len(blob) and rep["adler32"] == "%08x" % zlib.adler32(blob)
    (pfn,) = rep["rses"][RSE]
    reader = Notebook(lake, "alice", Path(directory) / "reader")
    code = ("import os, sys, uproot; from af_gateway_client import data; pfn = sys.argv[1]\n"
            "with uproot.open(pfn, **data.uproot_options(pfn)) as f: print(int(f['m4l_SMHiggsToZZTo4L'].values().sum()))")
    env = {**os.environ, **reader.env()}
    env.pop("BEARER_TOKEN", None)
    back = subprocess.run([sys.executable, "-c", code, pfn], capture_output=True, text=True, timeout=60, env=env)
    assert back.returncode == 0, back.stderr[-2000:]
    assert int(back.stdout) == int(local["SMHiggsToZZTo4L"].values().sum()) > 0
    text = json.dumps(executed)
    assert not any(t in text for t in ISSUED)
    return summary


def check_refusal(err):
    """What a user whose token lacks storage.read:/ must read in the notebook (`err`: pytest's ExceptionInfo of
    the CellExecutionError): the storage's refusal, naming the file, the scope to ask for, and what to do first.
    Returns the line that says so."""
    message = re.sub(r"\x1b\[[0-9;]*m", "", str(err.value))  # IPython colours its tracebacks
    said = [line for line in message.splitlines() if "StorageAccessDenied:" in line]
    assert said, message[-3000:]
    assert re.search(r"The storage refused to let you read (davs|https)://127\.0\.0\.1:\d+/\S+/(" + "|".join(SAMPLES) + r")\.\d\.root ",
                     said[-1]), said[-1]
    assert "storage.read:/" in said[-1] and "Log in again in the Lab's token panel" in said[-1], said[-1]
    assert not any(t in message for t in ISSUED)
    return said[-1]
