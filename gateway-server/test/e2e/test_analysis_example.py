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
import os
import subprocess
import sys
import threading
import time

import pytest
import requests
from nbclient.exceptions import CellExecutionError

from analysis_support import DATASET, EXAMPLE, OUTPUTS, TOKEN_LIFETIME, Notebook, check_analysis, check_refusal, samples  # noqa: F401 (samples: the fixture)
from lake_support import RSE, lake, lines, rucio_root  # noqa: F401 (lake: the fixture)


@pytest.mark.timeout(900)  # the first test of the module starts the lake (and may install the storage)
def test_the_notebook_reads_every_file_on_the_workers_while_tokens_expire_and_registers_its_histogram(lake, samples, tmp_path):
    nb = Notebook(lake, "alice", tmp_path / "alice")
    nb.refresh_every(15)
    started = time.monotonic()
    try:
        executed = nb.run(passes=3, pause=5, workers=2, dataset=DATASET, output_dataset=OUTPUTS, rucio_instance="test")
    finally:
        nb.stop()
    took = time.monotonic() - started
    # every read on the workers succeeded, over longer than one token lives; the histogram, its file in Rucio
    summary = check_analysis(lake, samples, executed, 3, tmp_path)
    assert summary["seconds"] > TOKEN_LIFETIME + 5, summary
    assert nb.renewals >= 4 and not nb.errors, (nb.renewals, nb.errors)
    assert took < 300


@pytest.mark.timeout(300)
def test_a_user_without_storage_read_is_refused_by_the_storage_and_the_notebook_says_what_to_do(lake, samples, tmp_path):
    nb = Notebook(lake, "bob", tmp_path / "bob", scopes="openid compute.create compute.read storage.create:/")
    with pytest.raises(CellExecutionError) as err:
        nb.run(workers=1, dataset=DATASET, output_dataset="user.bob:af.example.4l.outputs", rucio_instance="test")
    check_refusal(err)


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
