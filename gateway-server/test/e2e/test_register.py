"""Workflow outputs back into the lake, end to end with real components: the HTTPS test issuer, two
XRootD servers with SciTokens (scripts/xrootd-storage.sh), a Rucio server whose RSEs point at them and
whose every PFN resolves to a file (scripts/rucio-server.sh with RUCIO_STORAGE_JSON), and a gateway
trusting the test CA. A stage's `register` uploads the files its step published to the RSE with the
owner's exchanged storage token and registers them in Rucio as the owner; a retried step registers
nothing twice; a hostile second user cannot register into the owner's dataset.
"""
import hashlib
import json
from pathlib import Path
import zlib

import requests

from lake_support import RSE, WLCG_ANY, api, lake, lines, rucio_root, signed_token, token, wait_run  # noqa: F401 (lake: the fixture)


def workflow(dataset, script, lifetime=86400):
    return {"entry": "workflow.yml", "retries": 1, "files": {"workflow.yml": f"""stages:
  - name: fill
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {{hist: '{{workdir}}/a-hist.txt', extra: '{{workdir}}/b-extra.txt'}}
      step:
        process: {{process_type: interpolated-script-cmd, script: {json.dumps(script)}}}
        environment: {{environment_type: localproc-env}}
        publisher: {{publisher_type: frompar-pub, outputmap: {{hist: hist, extra: extra}}}}
    register: {{instance: test, rse: {RSE}, dataset: '{dataset}', lifetime: {lifetime}}}
"""}}


def test_a_stages_files_go_to_the_rse_and_into_rucio_once_even_when_the_step_is_retried(lake):
    # attempt 1 uploads a-hist.txt, then fails on b-extra.txt (a link, not a plain file); attempt 2
    # makes the same a-hist.txt and a real b-extra.txt: a-hist.txt is found on the storage, not written twice
    script = ("echo 'm4l 120 125 130' > {hist}; "
              "if [ ! -e {workdir}/attempted ]; then touch {workdir}/attempted; ln -sf /etc/hostname {extra}; "
              "else rm -f {extra}; echo 'entries 3' > {extra}; fi")
    r = api(lake, "alice", "POST", "/api/af/workflows", json=workflow("user.alice:af.outputs", script))
    assert r.status_code == 201, r.text
    dag = wait_run(lake, "alice", r.json()["id"])
    fill = next(n for n in dag["nodes"] if n["id"] == "fill")
    assert dag["run"]["status"] == "SUCCESS", fill.get("message")
    assert fill["attempts"] == 2
    base = f"{dag['run']['name']}.{dag['run']['id']}/fill"
    assert fill["registered"] == [f"user.alice:{base}/a-hist.txt", f"user.alice:{base}/b-extra.txt"]

    look = rucio_root(lake)
    content = lines(look("/dids/user.alice/af.outputs/dids"))
    assert sorted(c["name"] for c in content) == [f"{base}/a-hist.txt", f"{base}/b-extra.txt"]
    # each file once, on the RSE, with its checksum; readable back from the PFN Rucio gives, with a read token
    read = token(lake, "alice", scope="storage.read:/", resource=WLCG_ANY)
    expected = {"a-hist.txt": b"m4l 120 125 130\n", "b-extra.txt": b"entries 3\n"}
    for name, body in expected.items():
        reps = lines(look("/replicas/list", {"dids": [{"scope": "user.alice", "name": f"{base}/{name}"}], "schemes": ["davs"]}))
        assert len(reps) == 1 and list(reps[0]["rses"]) == [RSE], json.dumps(reps)
        assert reps[0]["adler32"] == "%08x" % zlib.adler32(body) and reps[0]["bytes"] == len(body)
        (pfn,) = reps[0]["rses"][RSE]
        got = requests.get(pfn.replace("davs://", "https://"), headers={"Authorization": "Bearer " + read},
                           verify=lake["storage"]["ca"], timeout=30)
        assert got.status_code == 200 and got.content == body
    # kept by a rule of alice's with the stage's lifetime
    rules = lines(look("/dids/user.alice/af.outputs/rules"))
    assert [(x["account"], x["rse_expression"]) for x in rules] == [("alice", RSE)]
    assert rules[0]["expires_at"]


def test_a_hostile_user_cannot_register_into_anothers_dataset_and_is_told_why(lake):
    r = api(lake, "bob", "POST", "/api/af/workflows",
            json=workflow("user.alice:af.outputs", "echo forged > {hist}; echo forged > {extra}"))
    assert r.status_code == 201, r.text
    dag = wait_run(lake, "bob", r.json()["id"])
    fill = next(n for n in dag["nodes"] if n["id"] == "fill")
    assert dag["run"]["status"] == "FAILED"
    assert "registering" in fill["message"] and "user.alice:af.outputs" in fill["message"], fill["message"]
    look = rucio_root(lake)
    assert not any("forged" in c["name"] or dag["run"]["id"] in c["name"]
                   for c in lines(look("/dids/user.alice/af.outputs/dids")))


def test_a_register_the_gateway_cannot_do_is_refused_at_submission(lake):
    bad = workflow("user.alice:x", "true")
    bad["files"]["workflow.yml"] = bad["files"]["workflow.yml"].replace("instance: test", "instance: elsewhere")
    r = api(lake, "alice", "POST", "/api/af/workflows", json=bad)
    assert r.status_code == 422 and "elsewhere is not one of this gateway's Rucio instances (test)" in r.text, r.text



def test_a_step_reads_the_lake_with_its_owners_token_from_bearer_token_file(lake):
    # alice's token as a notebook has it (the gateway's and the storage's audience); the broker hands it to her steps
    both = signed_token(lake, "alice", "openid compute.create compute.read storage.read:/", ["af-gateway", WLCG_ANY])
    look = rucio_root(lake)
    (rep,) = [r for r in lines(look("/replicas/list", {"dids": [{"scope": "data26", "name": "file.small.0001.root"}], "schemes": ["davs"]}))]
    pfn = sorted(rep["pfns"])[0].replace("davs://", "https://")
    script = (f"ls -l \"$BEARER_TOKEN_FILE\" > {{workdir}}/mode.txt; "
              f"curl -sS --fail --cacert {lake['storage']['ca']} -H \"Authorization: Bearer $(cat \"$BEARER_TOKEN_FILE\")\" "
              f"-o {{out}} {pfn}")
    spec = f"""stages:
  - name: read
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {{out: '{{workdir}}/got.root'}}
      step:
        process: {{process_type: interpolated-script-cmd, script: {json.dumps(script)}}}
        environment: {{environment_type: localproc-env}}
        publisher: {{publisher_type: frompar-pub, outputmap: {{out: out}}}}
"""
    r = api(lake, "alice", "POST", "/api/af/workflows", bearer=both, json={"entry": "workflow.yml", "files": {"workflow.yml": spec}})
    assert r.status_code == 201, r.text
    dag = wait_run(lake, "alice", r.json()["id"])
    node = next(n for n in dag["nodes"] if n["id"] == "read")
    assert dag["run"]["status"] == "SUCCESS", node.get("message")
    got = Path(node["outputs"]["out"]).read_bytes()
    assert len(got) == rep["bytes"] and "%08x" % zlib.adler32(got) == rep["adler32"]
    # the file is the owner's account's to read, nobody else's; the token shows in no answer of the gateway
    mode = (Path(node["workdir"]) / "mode.txt").read_text()
    assert mode.startswith("-rw-rw----") and "bearer-token" in mode, mode
    assert both not in json.dumps(dag) and both not in lake["log"].read_text()


def test_a_running_steps_token_file_is_renewed_when_the_owner_brings_a_new_token(lake):
    scope = "openid compute.create compute.read storage.read:/"
    first = signed_token(lake, "alice", scope, ["af-gateway", WLCG_ANY])
    # (the step hashes the token it saw change, not the file later: any later request of alice's renews it again)
    script = ("first=$(cat \"$BEARER_TOKEN_FILE\"); cur=$first; i=0; "
              "while [ \"$cur\" = \"$first\" ] && [ $i -lt 240 ]; do sleep 0.25; i=$((i+1)); cur=$(cat \"$BEARER_TOKEN_FILE\"); done; "
              "printf '%s\\n' \"$cur\" | sha256sum | cut -d' ' -f1 > {out}")
    spec = f"""stages:
  - name: wait
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {{out: '{{workdir}}/seen.txt'}}
      step:
        process: {{process_type: interpolated-script-cmd, script: {json.dumps(script)}}}
        environment: {{environment_type: localproc-env}}
        publisher: {{publisher_type: frompar-pub, outputmap: {{out: out}}}}
"""
    r = api(lake, "alice", "POST", "/api/af/workflows", bearer=first, json={"entry": "workflow.yml", "files": {"workflow.yml": spec}})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    wait_run(lake, "alice", run_id, timeout=60, bearer=first,
             until=lambda d: any(n["id"] == "wait" and n["state"] == "RUNNING" for n in d["nodes"]))
    # the owner's next request brings a new token: the broker takes it, the running step's file follows
    # (it expires later than the first: the broker keeps the token that lives longest, and both may be signed within one second)
    second = signed_token(lake, "alice", scope, ["af-gateway", WLCG_ANY], lifetime=900)
    assert second != first
    assert api(lake, "alice", "GET", "/api/af/workflows", bearer=second).status_code == 200
    dag = wait_run(lake, "alice", run_id, bearer=second)
    node = next(n for n in dag["nodes"] if n["id"] == "wait")
    assert dag["run"]["status"] == "SUCCESS", node.get("message")
    seen = Path(node["outputs"]["out"]).read_text().strip()
    h = lambda t: hashlib.sha256((t + "\n").encode()).hexdigest()  # noqa: E731
    assert seen == h(second), f"saw {'the first token' if seen == h(first) else 'neither token'}"
