"""The four-lepton analysis example (examples/analysis), end to end with real components (lake_support:
the HTTPS test issuer, two XRootD servers with SciTokens, Rucio on them, a gateway trusting the test
CA, clusters on the local backend as the users' own accounts).

- make_samples.py writes the three samples' NanoAOD-like files and registers them in Rucio as
  alice's dataset on the XRootD RSE (through the gateway, with data.register_files).
- four-lepton.ipynb runs headlessly (nbclient) as alice: it finds the dataset through the gateway's
  Rucio API, starts a Dask cluster through the gateway, and its workers read every file with
  uproot.open(pfn, **data.uproot_options(pfn)) three times over, while access tokens live 60 s and
  a refresher (as the Lab's token agent) puts a new one in the notebook's token file every 15 s and
  shows it to the gateway, whose broker hands it to the workers. The analysis lasts longer than any
  one token: every read succeeds, the histogram has the entries a plain per-event loop over the
  generated files counts, and its ROOT file is in Rucio with a replica on the RSE, readable back.
- bob, whose token lacks storage.read:/, runs the same notebook on alice's dataset: the storage
  refuses his workers and the error reaches the notebook naming the file and the scope to ask for.
- The workflow version (examples/analysis/workflow) succeeds: one select step per file of the
  dataset (Rucio scatter), a merge whose registered file holds the same entries.
About 4 min.
"""
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest
import requests
import uproot
import zlib
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from lake_support import RSE, WLCG_ANY, lake, lines, rucio_root, signed_token  # noqa: F401 (lake: the fixture)

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "analysis"
DATASET = "user.alice:af.example.4l"
OUTPUTS = "user.alice:af.example.4l.outputs"
SAMPLES = ["SMHiggsToZZTo4L", "ZZTo4mu", "Run2012B_DoubleMuParked"]
SCOPES = "openid compute.create compute.read storage.read:/ storage.create:/"
TOKEN_LIFETIME = 60  # seconds, as the brief's OIDC_TTL: the analysis below lasts longer
ISSUED = []  # every token handed out here: none may appear in what the notebook shows


class Notebook:
    """A notebook's environment for one user: its directory, its token file (0600, replaced whole), and
    a refresher that puts a new token there every `every` seconds and shows it to the gateway."""

    def __init__(self, lake, user, directory, scopes=SCOPES):
        self.lake, self.user, self.scopes, self.dir = lake, user, scopes, Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.token_file = self.dir / "bearer-token"
        self.stopping = threading.Event()
        self.renewals = 0
        self.errors = []
        self.thread = None
        self.give()

    def give(self):
        token = signed_token(self.lake, self.user, self.scopes, ["af-gateway", WLCG_ANY], lifetime=TOKEN_LIFETIME)
        ISSUED.append(token)
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
    proc = subprocess.Popen([sys.executable, str(EXAMPLE / "make_samples.py"), str(out / "files"), "--files", "3", "--events", "2000",
                             "--register", DATASET, "--rse", RSE, "--instance", "test"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr[-5000:]
    made = json.loads(stdout.strip().splitlines()[-1])
    assert len(made["files"]) == 9 and len(made["dids"]) == 9
    expected = {s: 0 for s in SAMPLES}
    in_range = 0
    for f in made["files"]:
        masses = four_lepton_events(out / "files" / f["name"])
        expected[f["sample"]] += len(masses)
        in_range += sum(1 for m in masses if 70.0 <= m < 250.0)
    return {"dir": out / "files", "made": made, "entries": expected, "in_range": in_range}


def summary_of(nb):
    """The JSON line the notebook's registering cell prints."""
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            for line in out.get("text", "").splitlines():
                if line.startswith("{") and '"file_reads"' in line:
                    return json.loads(line)
    raise AssertionError("the notebook printed no summary")


@pytest.mark.timeout(900)  # the first test of the module starts the lake (and may install the storage)
def test_the_notebook_reads_every_file_on_the_workers_while_tokens_expire_and_registers_its_histogram(lake, samples, tmp_path):
    # the samples are alice's dataset, on the RSE
    look = rucio_root(lake)
    scope, name = DATASET.split(":")
    content = sorted(c["name"] for c in lines(look(f"/dids/{scope}/{name}/dids")))
    assert content == sorted(f["name"] for f in samples["made"]["files"])
    assert all(samples["entries"][s] > 0 for s in SAMPLES), samples["entries"]

    nb = Notebook(lake, "alice", tmp_path / "alice")
    nb.refresh_every(15)
    started = time.monotonic()
    try:
        executed = nb.run(passes=3, pause=5, workers=2, dataset=DATASET, output_dataset=OUTPUTS, rucio_instance="test")
    finally:
        nb.stop()
    took = time.monotonic() - started
    summary = summary_of(executed)

    # every read on the workers succeeded (a failure fails its cell), over longer than one token lives
    assert summary["files"] == 9 and summary["file_reads"] == 27
    assert summary["events"] == 9 * 2000
    assert summary["seconds"] > TOKEN_LIFETIME + 5, summary
    assert nb.renewals >= 4 and not nb.errors, (nb.renewals, nb.errors)
    # the histogram holds what an independent loop over the generated files counts
    assert summary["entries"] == samples["entries"]
    with uproot.open(summary["output"]) as f:
        local = {s: f[f"m4l_{s}"] for s in SAMPLES}
        assert sum(int(h.values().sum()) for h in local.values()) == samples["in_range"]
    # and a plot was drawn
    assert any("image/png" in out.get("data", {}) for c in executed.cells for out in c.get("outputs", []))

    # the output is in Rucio, with a replica on the RSE, and reads back through the data helper
    (did,) = summary["dids"]
    assert did == "user.alice:" + Path(summary["output"]).name
    out_scope, out_name = OUTPUTS.split(":")
    assert [c["name"] for c in lines(look(f"/dids/{out_scope}/{out_name}/dids"))] == [did.split(":", 1)[1]]
    blob = Path(summary["output"]).read_bytes()
    (rep,) = lines(look("/replicas/list", {"dids": [{"scope": "user.alice", "name": did.split(":", 1)[1]}], "schemes": ["davs"]}))
    assert list(rep["rses"]) == [RSE] and rep["bytes"] == len(blob) and rep["adler32"] == "%08x" % zlib.adler32(blob)
    (pfn,) = rep["rses"][RSE]
    reader = Notebook(lake, "alice", tmp_path / "reader")
    code = ("import os, sys, uproot; from af_gateway_client import data; pfn = sys.argv[1]\n"
            "with uproot.open(pfn, **data.uproot_options(pfn)) as f: print(int(f['m4l_SMHiggsToZZTo4L'].values().sum()))")
    env = {**os.environ, **reader.env()}
    env.pop("BEARER_TOKEN", None)
    back = subprocess.run([sys.executable, "-c", code, pfn], capture_output=True, text=True, timeout=60, env=env)
    assert back.returncode == 0, back.stderr[-2000:]
    assert int(back.stdout) == int(local["SMHiggsToZZTo4L"].values().sum()) > 0
    assert took < 300
    text = json.dumps(executed)
    assert not any(t in text for t in ISSUED)


@pytest.mark.timeout(300)
def test_a_user_without_storage_read_is_refused_by_the_storage_and_the_notebook_says_what_to_do(lake, samples, tmp_path):
    nb = Notebook(lake, "bob", tmp_path / "bob", scopes="openid compute.create compute.read storage.create:/")
    with pytest.raises(CellExecutionError) as err:
        nb.run(workers=1, dataset=DATASET, output_dataset="user.bob:af.example.4l.outputs", rucio_instance="test")
    message = re.sub(r"\x1b\[[0-9;]*m", "", str(err.value))  # IPython colours its tracebacks
    said = [line for line in message.splitlines() if "StorageAccessDenied:" in line]
    assert said, message[-3000:]
    # the file, the scope to ask for, and what to do first
    assert re.search(r"The storage refused to let you read (davs|https)://127\.0\.0\.1:\d+/\S+/(" + "|".join(SAMPLES) + r")\.\d\.root ",
                     said[-1]), said[-1]
    assert "storage.read:/" in said[-1] and "Log in again in the Lab's token panel" in said[-1], said[-1]
    assert not any(t in message for t in ISSUED)


@pytest.mark.timeout(300)
def test_the_workflow_reads_one_file_per_step_merges_and_registers_the_same_histogram(lake, samples, tmp_path):
    # The steps find alice's token where the gateway puts it for them (BEARER_TOKEN_FILE, renewed as the
    # broker takes her newer tokens): her requests carry a token the gateway and the storage accept.
    nb = Notebook(lake, "alice", tmp_path / "alice")
    stop = threading.Event()

    def renew():
        while not stop.wait(15):
            nb.give()

    renewer = threading.Thread(target=renew, daemon=True)
    renewer.start()
    headers = lambda: {"Authorization": "Bearer " + nb.token_file.read_text().strip()}  # noqa: E731
    wf = EXAMPLE / "workflow"
    try:
        body = {"entry": "workflow.yml", "name": "four-lepton", "retries": 0,
                "files": {n: (wf / n).read_text() for n in ("workflow.yml", "steps.yml")},
                "parameters": {"python": sys.executable, "code": "four_lepton.py", "cadir": lake["storage"]["client_env"]["X509_CERT_DIR"]},
                "data": {"files": {"init/four_lepton.py": (wf / "init" / "four_lepton.py").read_text()}}}
        r = requests.post(lake["url"] + "/api/af/workflows", json=body, headers=headers(), timeout=60)
        assert r.status_code == 201, r.text
        run_id = r.json()["id"]
        deadline = time.monotonic() + 200
        while time.monotonic() < deadline:
            dag = requests.get(f"{lake['url']}/api/af/workflows/{run_id}", headers=headers(), timeout=30).json()
            if dag["run"]["status"] in ("SUCCESS", "FAILED", "CANCELLED"):
                break
            time.sleep(1)
        failed = [(n["id"], n.get("message")) for n in dag["nodes"] if n.get("state") == "FAILED"]
        logs = [requests.get(f"{lake['url']}/api/af/workflows/{run_id}/nodes/{n}/log", headers=headers(), timeout=30).text[-1500:]
                for n, _ in failed[:2]]
        assert dag["run"]["status"] == "SUCCESS", (dag["run"], failed, logs)
    finally:
        stop.set()
        renewer.join(timeout=30)

    # one select step per file of the dataset, one merge
    selects = [n for n in dag["nodes"] if n["id"].startswith("select")]
    assert len(selects) == 9 and all(n["state"] == "SUCCESS" for n in selects)
    (merge,) = [n for n in dag["nodes"] if n["id"].startswith("merge")]
    (did,) = merge["registered"]
    assert did.startswith("user.alice:four-lepton.") and did.endswith("/merge/four-lepton-m4l.root")

    # in the output dataset, on the RSE, and holding the entries the plain loop counts
    look = rucio_root(lake)
    out_scope, out_name = OUTPUTS.split(":")
    assert did.split(":", 1)[1] in [c["name"] for c in lines(look(f"/dids/{out_scope}/{out_name}/dids"))]
    (rep,) = lines(look("/replicas/list", {"dids": [{"scope": "user.alice", "name": did.split(":", 1)[1]}], "schemes": ["davs"]}))
    (pfn,) = rep["rses"][RSE]
    code = ("import json, sys, uproot; from af_gateway_client import data; pfn = sys.argv[1]\n"
            "with uproot.open(pfn, **data.uproot_options(pfn)) as f:\n"
            "    print(json.dumps({k.split(';')[0][4:]: int(f[k].values(flow=True).sum()) for k in f.keys()}))")
    env = {**os.environ, **nb.env()}
    env.pop("BEARER_TOKEN", None)
    back = subprocess.run([sys.executable, "-c", code, pfn], capture_output=True, text=True, timeout=60, env=env)
    assert back.returncode == 0, back.stderr[-2000:]
    assert json.loads(back.stdout) == samples["entries"]
