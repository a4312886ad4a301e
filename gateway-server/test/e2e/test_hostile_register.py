"""A stage's register attacked by its hostile owner, end to end on the lake (real XRootD, real Rucio,
lake_support.py): files named so that a PFN would be read as another path, files outside the step's
directory, a link to a system file and a FIFO published as outputs. Each run fails naming the file
(or leaves the outside path alone), nothing of it lands on the storage, and no token appears in the
run's JSON, its DAG or the gateway's log. The byte-level attacks (a file rewritten or grown between
the checksum and the upload, odd PFNs, sparse files, slow storage) are in test/rucio/hostile-register.test.ts.
"""
import json
import re
import time
from pathlib import Path

from lake_support import RSE, api, lake, wait_run  # noqa: F401 (lake: the fixture)


def workflow(script, dataset, glob="**/*.txt", extra="", publisher=None):
    publisher = publisher or f"{{publisher_type: interpolated-pub, glob: true, publish: {{out: '{{workdir}}/{glob}'}}}}"
    return {"entry": "workflow.yml", "retries": 0, "files": {"workflow.yml": f"""stages:
  - name: fill
    dependencies: [init]
    scheduler:
      scheduler_type: singlestep-stage
      parameters: {{{extra}}}
      step:
        process: {{process_type: interpolated-script-cmd, script: {json.dumps(script)}}}
        environment: {{environment_type: localproc-env}}
        publisher: {publisher}
    register: {{instance: test, rse: {RSE}, dataset: '{dataset}'}}
"""}}


def stored(lake, run_id):
    return [p for inst in lake["storage"]["instances"] for p in Path(inst["data_dir"]).rglob("*") if run_id in str(p)]


def submit(lake, user, wf):
    r = api(lake, user, "POST", "/api/af/workflows", json=wf)
    assert r.status_code == 201, r.text
    return wait_run(lake, user, r.json()["id"])


def test_names_that_would_move_the_pfn_fail_naming_the_file_and_write_nothing(lake):
    for script, shown in [("echo Q > 'q?x.txt'", "q?x.txt"),
                          ("d=%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e; mkdir -p $d; echo D > $d/esc.txt", "esc.txt"),
                          ("echo H > 'h#x.txt'", "h#x.txt")]:
        dag = submit(lake, "bob", workflow("cd {workdir}; " + script, "user.bob:hostile.names"))
        fill = next(n for n in dag["nodes"] if n["id"] == "fill")
        assert dag["run"]["status"] == "FAILED" and shown in fill["message"], fill.get("message")
        assert not fill.get("registered")
        assert stored(lake, dag["run"]["id"]) == []


def test_links_fifos_and_paths_outside_the_step_are_not_uploaded(lake):
    # a published path outside the step's directory is not one of its files: left alone
    outside = submit(lake, "bob", workflow(
        "echo ok > {ok}; echo no > {workdir}/../x.txt", "user.bob:hostile.outside",
        extra="ok: '{workdir}/ok.txt', etc: '/etc/passwd', up: '{workdir}/../x.txt'",
        publisher="{publisher_type: frompar-pub, outputmap: {ok: ok, etc: etc, up: up}}"))
    fill = next(n for n in outside["nodes"] if n["id"] == "fill")
    assert outside["run"]["status"] == "SUCCESS", fill.get("message")
    assert [d.split("/")[-1] for d in fill["registered"]] == ["ok.txt"]
    # a link to a system file, and a FIFO (which nothing ever writes): failed at once, naming it
    for script, shown in [("ln -s /etc/hostname {f}", "host.txt"), ("mkfifo {f}", "pipe.txt")]:
        t0 = time.monotonic()
        dag = submit(lake, "bob", workflow(script, "user.bob:hostile.links", extra=f"f: '{{workdir}}/{shown}'",
                                           publisher="{publisher_type: frompar-pub, outputmap: {f: f}}"))
        fill = next(n for n in dag["nodes"] if n["id"] == "fill")
        assert dag["run"]["status"] == "FAILED" and shown in fill["message"], fill.get("message")
        assert time.monotonic() - t0 < 60
        assert stored(lake, dag["run"]["id"]) == []


def test_no_token_in_the_runs_json_its_dag_or_the_gateways_log(lake):
    dag = submit(lake, "bob", workflow("echo fine > {workdir}/fine.txt", "user.bob:hostile.tokens"))
    assert dag["run"]["status"] == "SUCCESS"
    jwt = re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")
    runs = api(lake, "bob", "GET", "/api/af/workflows").text
    assert not jwt.search(json.dumps(dag)) and not jwt.search(runs)
    assert not jwt.search(Path(lake["log"]).read_text())
