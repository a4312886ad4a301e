"""The four-lepton analysis example (examples/analysis) with its Dask cluster on the real HTCondor pool:
the lake of lake_support (the HTTPS test issuer, two XRootD servers with SciTokens, Rucio on them) with a
gateway whose backend is the pool of scripts/htcondor-pool.sh in its SciTokens mode for the lake's issuer
(condor_support): the scheduler and the workers are jobs submitted with alice's own token and run as
af-alice, every condor tool runs as root in the pool's root, so only her token makes them hers.

- make_samples.py registers the samples as alice's dataset (analysis_support's `samples`).
- four-lepton.ipynb runs headlessly as alice with access tokens living 60 s, renewed every 15 s in the
  notebook's token file and shown to the gateway, whose broker writes them into the token file of her
  cluster's jobs. The analysis reads every file 4 times, each read 9 s after the worker's last (a slow
  analysis: 36 reads, about 190 s on two workers), i.e. through more than three token lifetimes.
  Every read succeeds, the histogram holds the entries of an independent per-event loop, the output
  is in Rucio with a replica on the RSE and reads back. That the workers read with tokens newer than
  their first is seen from both sides, without any token shown: a second client of her cluster looks
  every 10 s at what her workers find in their BEARER_TOKEN_FILE (the token's jti, iat and exp: her
  refresher's tokens, one after another, never an expired one), and the storage's log (the token
  plugin's trace, XRD_SCITOKENS_TRACE=all) shows it accepting new tokens of alice's for reading the
  dataset's files all through the analysis, more than two token lifetimes apart.
- bob, whose token lacks storage.read:/, runs the same notebook: the storage refuses his workers (jobs
  of af-bob) and the notebook names the file and the scope to ask for.
About 4.5 min (the first run: 4 min 22 s): the lake, the pool and the samples 45 s; alice's notebook
195 s, of which the analysis 182 s (36 reads; 13 tokens seen in her workers' file, 14 new ones taken
by the storage for the reads, over 163 s); bob 8 s; stopping everything 11 s.
"""
import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from nbclient.exceptions import CellExecutionError

from analysis_support import DATASET, OUTPUTS, SCOPES, TOKEN_LIFETIME, Notebook, check_analysis, check_refusal, samples  # noqa: F401 (samples: the fixture)
from condor_support import ensure_test_accounts, scitokens_gateway_config, scitokens_pool
from conftest import IS_PEER
from lake_support import running_lake

pytestmark = [
    pytest.mark.skipif(IS_PEER, reason="peer mode: dask-gateway-server has no HTCondor backend"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the test pool, the storage and the test accounts need root"),
]

PASSES, PAUSE = 4, 9  # 4 passes × 5 reads per worker × 9 s: the analysis lasts at least 180 s
# A token that submits jobs to the pool's schedd carries compute.modify and compute.cancel too (scitokens-cpp's rule)
CONDOR_SCOPES = SCOPES + " compute.modify compute.cancel"


@contextlib.contextmanager
def pool_of_the_lake(storage):
    """The SciTokens pool trusting the lake's issuer, as the gateway's backend (running_lake's `backend`). Its
    run directory holds the gateway's directory (the jobs read their cluster's files at the same paths) and
    a copy of the test CA's directory for the notebook and its workers alike (the chroot of the pool does not
    see the machine's cache of it)."""
    run_dir = Path(tempfile.mkdtemp(prefix="af-htcondor-analysis-"))
    run_dir.chmod(0o755)  # the jobs pass through it to their cluster files
    try:
        ca_dir = run_dir / "ca"
        shutil.copytree(storage["ca_dir"], ca_dir)  # links followed: the copy is whole in the chroot too
        ca_dir.chmod(0o755)
        with scitokens_pool(run_dir, storage["issuer"], storage["ca"], ensure_test_accounts()) as pool:
            yield scitokens_gateway_config(pool), run_dir, {"pool": pool, "ca_dir": str(ca_dir)}
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(run_dir)], timeout=60)


@pytest.fixture(scope="module")
def lake():
    """The lake with its clusters on the pool (a variant of lake_support's `lake`); its users' tokens carry
    CONDOR_SCOPES, and its CA directory is the copy both sides of the chroot see."""
    with running_lake(backend=pool_of_the_lake, storage_env={"XRD_SCITOKENS_TRACE": "all"}) as facts:
        yield {**facts, "scopes": CONDOR_SCOPES, "storage": {**facts["storage"], "client_env": {"X509_CERT_DIR": facts["backend"]["ca_dir"]}}}


def _worker_functions():
    """(Nested, so that cloudpickle sends it by value: the workers cannot import this module.)"""

    def token_file_now():
        """What this worker finds in its BEARER_TOKEN_FILE now: the token's id and times, never the token."""
        import base64
        import json
        import os
        import pwd

        path = os.environ["BEARER_TOKEN_FILE"]
        with open(path) as f:
            part = f.read().strip().split(".")[1]
        c = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        return {"account": pwd.getpwuid(os.getuid()).pw_name, "file": path, "jti": c.get("jti"), "iat": c.get("iat"), "exp": c.get("exp")}

    return token_file_now


_token_file_now = _worker_functions()


class WorkerTokens:
    """A second client of alice's running cluster, as she could open one: every `every` s it asks her workers
    what their token file holds (`seen`: (time, {worker: what token_file_now says})). Errors are kept, not
    raised: the notebook's cluster goes away under it at the end."""

    def __init__(self, lake, nb, every=10):
        self.lake, self.nb, self.every = lake, nb, every
        self.seen, self.errors, self.cluster_name = [], [], None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        from af_gateway_client import BearerTokenAuth
        from dask_gateway import Gateway

        gateway = cluster = client = None
        try:
            while not self.stopping.wait(self.every):
                try:
                    if client is None:
                        gateway = gateway or Gateway(self.lake["url"], auth=BearerTokenAuth(self.nb.token_file.read_text().strip()))
                        running = [c for c in gateway.list_clusters() if c.status.name == "RUNNING"]
                        if not running:
                            gateway.close()
                            gateway = None  # the next look with the notebook's token of then
                            continue
                        cluster = gateway.connect(running[0].name)
                        client = cluster.get_client(set_as_default=False)
                        self.cluster_name = cluster.name
                    now = client.run(_token_file_now)
                    if now:
                        self.seen.append((time.time(), now))
                except Exception as exc:  # noqa: BLE001 - kept for the test's messages
                    self.errors.append(repr(exc)[:300])
        finally:
            for thing in (client, cluster, gateway):
                with contextlib.suppress(Exception):
                    if thing is not None:
                        thing.close()

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=60)


def new_tokens_reading(storage, user, files, since):
    """When the storage first accepted each new token of `user` (the plugin parses a token it has not cached,
    writing "New valid token mapped_username=<user>", then grants that request) for reading one of `files`,
    at or after `since` (its log's local time, to the second). Read from both servers' logs."""
    stamp = time.strftime("%y%m%d %H:%M:%S", time.localtime(since))
    line_re = re.compile(r"^(\d{6} \d\d:\d\d:\d\d) (\d+) scitokens_Access: (.*)$")
    firsts = []
    for inst in storage["instances"]:
        pending = {}  # thread -> time of its new token, until the thread's next grant
        for line in Path(inst["log"]).read_text(errors="replace").splitlines():
            m = line_re.match(line)
            if not m:
                continue
            when, thread, text = m.groups()
            if text.startswith(f"New valid token mapped_username={user},"):
                pending[thread] = when
            elif text.startswith("Grant authorization based on scopes for operation=") and thread in pending:
                at = pending.pop(thread)
                op, path = re.match(r"Grant authorization based on scopes for operation=(\w+), path=(\S+)", text).groups()
                if at >= stamp and op in ("read", "stat") and path.rsplit("/", 1)[-1] in files:
                    firsts.append(time.mktime(time.strptime(at, "%y%m%d %H:%M:%S")))
    return sorted(firsts)


def fewest_tokens(times, lifetime):
    """The fewest tokens living `lifetime` s each that could have been first used at these times."""
    n, until = 0, None
    for t in times:
        if until is None or t > until:
            n, until = n + 1, t + lifetime
    return n


@pytest.mark.timeout(600)  # the first test of the module starts the lake and the pool
def test_on_htcondor_the_workers_read_every_file_with_ever_newer_tokens_for_three_minutes(lake, samples, tmp_path):
    pool = lake["backend"]["pool"]
    nb = Notebook(lake, "alice", tmp_path / "alice")
    nb.refresh_every(15)
    watcher = WorkerTokens(lake, nb)
    started, t0 = time.monotonic(), time.time()
    try:
        executed = nb.run(timeout=420, passes=PASSES, pause=PAUSE, workers=2, dataset=DATASET, output_dataset=OUTPUTS, rucio_instance="test")
    finally:
        nb.stop()
        watcher.stop()
    took = time.monotonic() - started
    print(f"alice's analysis on HTCondor: {took:.0f} s with the cluster's start; {nb.renewals} renewals of her token")

    # every read on the workers succeeded, for longer than three tokens live; the histogram, its file in Rucio
    summary = check_analysis(lake, samples, executed, PASSES, tmp_path)
    print(f"the notebook: {summary['file_reads']} reads of {summary['files']} files in {summary['seconds']} s")
    assert summary["seconds"] >= PASSES * 5 * PAUSE >= 3 * TOKEN_LIFETIME, summary
    assert nb.renewals >= summary["seconds"] // 15 - 1 and not nb.errors, (nb.renewals, nb.errors)

    # the cluster was jobs of af-alice, submitted with one of her tokens (the schedd's record of its id)
    name = watcher.cluster_name
    assert name, watcher.errors[-5:]
    jobs = pool.jobs(f'AfGatewayCluster == "{name}"') + json.loads(pool.run(
        "condor_history", "-json", "-constraint", f'AfGatewayCluster == "{name}"', "-attributes",
        "ClusterId,ProcId,Owner,AuthTokenSubject,AuthTokenId,AfGatewayWorker") or "[]")
    jobs = list({(j["ClusterId"], j["ProcId"]): j for j in jobs}.values())
    given = {jti for jti, _, _ in nb.given}
    assert len(jobs) == 3 and all(j["Owner"] == "af-alice" and j["AuthTokenSubject"] == "alice" and j["AuthTokenId"] in given for j in jobs), jobs

    # what her workers found in their token file, looked at every 10 s: her refresher's tokens, one after another
    looks = [(t, w, s) for t, now in watcher.seen for w, s in now.items()]
    print(f"{len(watcher.seen)} looks at the workers' token file; tokens seen there (jti[:8], iat - t0):",
          [(jti[:8], iat - int(t0)) for jti, iat in sorted({(s["jti"], s["iat"]) for _, _, s in looks}, key=lambda x: x[1])])
    assert len(watcher.seen) >= summary["seconds"] // 10 - 3, (len(watcher.seen), watcher.errors[-5:])
    assert {s["account"] for _, _, s in looks} == {"af-alice"}
    (file,) = {s["file"] for _, _, s in looks}  # the cluster's file, the gateway's to write
    assert file.startswith(str(pool.run_dir)) and file != str(nb.token_file)
    seen_jtis = {s["jti"] for _, _, s in looks}
    assert seen_jtis <= given and len(seen_jtis) >= 3 * TOKEN_LIFETIME // 15 - 1, (len(seen_jtis), len(given))
    assert all(s["exp"] > t for t, _, s in looks), "a worker's token file held an expired token"
    for w in {w for _, w, _ in looks}:
        iats = [s["iat"] for _, x, s in looks if x == w]
        assert iats == sorted(iats), (w, iats)  # never an older token after a newer one
    assert max(s["exp"] for _, _, s in looks) - min(s["exp"] for _, _, s in looks) >= 2 * TOKEN_LIFETIME

    # and the storage's side: new tokens of alice's accepted for reading the dataset's files all through the analysis
    firsts = new_tokens_reading(lake["storage"], "alice", {f["name"] for f in samples["made"]["files"]}, t0)
    print(f"the storage took {len(firsts)} new tokens of alice's for the reads, over {firsts[-1] - firsts[0]:.0f} s" if firsts else "none")
    assert len(firsts) >= 3 and firsts[-1] - firsts[0] > 2 * TOKEN_LIFETIME, firsts
    assert fewest_tokens(firsts, TOKEN_LIFETIME) >= 3
    assert took < 330


@pytest.mark.timeout(180)
def test_on_htcondor_a_user_without_storage_read_is_refused_by_the_storage_and_the_notebook_says_what_to_do(lake, samples, tmp_path):
    pool = lake["backend"]["pool"]
    nb = Notebook(lake, "bob", tmp_path / "bob", scopes=CONDOR_SCOPES.replace(" storage.read:/", ""))
    started = time.monotonic()
    with pytest.raises(CellExecutionError) as err:
        nb.run(workers=1, dataset=DATASET, output_dataset="user.bob:af.example.4l.outputs", rucio_instance="test")
    said = check_refusal(err)
    print(f"bob, after {time.monotonic() - started:.0f} s: {said}")
    # his worker was a job of af-bob's (so it was the storage that refused him, not the pool)
    history = pool.run("condor_history", "-af", "Owner", "AfGatewayWorker", "-constraint", 'Owner == "af-bob"')
    assert any(line.split()[1] != "scheduler" for line in history.splitlines() if line.strip()), history
