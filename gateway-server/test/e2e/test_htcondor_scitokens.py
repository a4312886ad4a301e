"""The HTCondor backend's `auth_method: scitokens` against a real schedd: condor_submit and condor_rm
authenticate with the cluster owner's own access token, and the schedd maps the token's issuer and
subject to the owner's account.

The pieces are all real: the test OpenID provider over HTTPS (the test CA of scripts/test-ca.sh),
the HTCondor pool of scripts/htcondor-pool.sh in its SciTokens mode (its schedd takes submissions,
removals and holds ONLY with a token of that issuer, fetches the issuer's keys over HTTPS, and maps
`SCITOKENS /^<issuer>,alice$/ af-alice@localhost` and so on for each test account), and the gateway
with OIDC authentication against the same issuer (NODE_EXTRA_CA_CERTS: the test CA). The gateway
runs every condor tool as root in the pool's root (command_prefix without {account}, {uid} or
{gid}), so the only thing that can make a job alice's is her token.

Tokens that can submit carry condor:/WRITE or the three WLCG scopes compute.create, compute.modify
and compute.cancel together (scitokens-cpp's rule). The test provider's token endpoint grants only
compute.create and compute.read, so the tokens that must submit are signed by the provider itself
(its stdin `sign`, with its current key); one from its token endpoint is the under-scoped case.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests

from af_e2e_support import REPO, free_port, start_gateway, start_provider, stop, whoami
from condor_support import POOL_SCRIPT, Pool, ensure_test_accounts, scitokens_gateway_config, scitokens_pool
from conftest import IS_PEER, wait_until

pytestmark = [
    pytest.mark.skipif(IS_PEER, reason="peer mode: dask-gateway-server has no HTCondor backend"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the test pool and the test accounts need root"),
    pytest.mark.timeout(300),
]

CA_SCRIPT = REPO / "scripts" / "test-ca.sh"
WLCG_ANY = "https://wlcg.cern.ch/jwt/v1/any"
# what a token needs to submit and remove jobs (compute.read alone is condor:/READ)
WRITE_SCOPES = "compute.read compute.create compute.modify compute.cancel"


class Issuer:
    """The test OpenID provider over HTTPS, run directly: it signs given claims on a stdin line."""

    def __init__(self, directory: Path, ca_dir: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.ca = ca_dir / "ca.pem"
        self.proc, info = start_provider(directory, env={
            "OIDC_TLS_CERT": str(ca_dir / "server.pem"), "OIDC_TLS_KEY": str(ca_dir / "server.key"), "OIDC_TLS_CA": str(self.ca)})
        self.url = info["issuer"]
        self.audience = info["audience"]
        self.clients = info["clients"]
        assert self.url.startswith("https://127.0.0.1:"), self.url

    def sign(self, sub: str, scope: str = WRITE_SCOPES, lifetime: int = 900, **claims) -> tuple[str, str]:
        """A token of this issuer for `sub` (audiences: the gateway's and WLCG's any); returns (token, jti)."""
        now = int(time.time())
        jti = str(uuid.uuid4())
        body = {"iss": self.url, "sub": sub, "aud": [self.audience, WLCG_ANY], "iat": now - 5, "exp": now + lifetime,
                "scope": scope, "wlcg.ver": "1.0", "wlcg.groups": ["/af/users"], "jti": jti, **claims}
        self.proc.stdin.write(json.dumps({"sign": body}) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline() or '{"error": "the provider exited"}')
        assert "token" in reply, reply
        return reply["token"], jti

    def endpoint_token(self, client: str, scope: str) -> str:
        """What a client gets from the token endpoint (client credentials) for WLCG's any audience."""
        r = requests.post(self.url + "/token", auth=(client, self.clients[client]), verify=str(self.ca), timeout=10,
                          data={"grant_type": "client_credentials", "scope": scope, "resource": WLCG_ANY})
        r.raise_for_status()
        return r.json()["access_token"]

    def close(self):
        stop(self.proc)


@pytest.fixture(scope="module")
def accounts_file():
    return ensure_test_accounts()


@pytest.fixture(scope="module")
def ca_dir():
    return Path(subprocess.run(["bash", str(CA_SCRIPT), "ensure"], check=True, capture_output=True, text=True,
                               timeout=120).stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def run_dir():
    d = Path(tempfile.mkdtemp(prefix="af-htcondor-sci-"))
    d.chmod(0o755)  # the jobs pass through it to their cluster files
    try:
        yield d
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(d)], timeout=60)


@pytest.fixture(scope="module")
def issuer(run_dir, ca_dir):
    i = Issuer(run_dir / "issuer", ca_dir)
    yield i
    i.close()


@pytest.fixture(scope="module")
def pool(run_dir, issuer, accounts_file, ca_dir):
    with scitokens_pool(run_dir, issuer.url, ca_dir / "ca.pem", accounts_file) as p:
        yield p


class Gw:
    """A gateway of this module: its own directory under the run dir, stopped by the module."""

    def __init__(self, pool: Pool, name: str, auth: dict, ca: Path):
        self.dir = pool.run_dir / name
        self.dir.mkdir()
        self.dir.chmod(0o711)  # the jobs pass through to the data dir; nothing here is theirs to list
        self.port = free_port()
        self.data = self.dir / "data"
        config = {
            "listen": f"127.0.0.1:{self.port}",
            "data_dir": str(self.data),
            "log_level": "debug",
            "accounts": {"name_template": "af-{user}"},  # alice's jobs must be af-alice's
            "auth": auth,
            # every condor tool as root in the pool's root: no per-user account on the gateway's side
            **scitokens_gateway_config(pool),
        }
        self.proc, self.url, self.log = start_gateway(self.dir, config, env={"NODE_EXTRA_CA_CERTS": str(ca / "ca.pem")})

    def gateway(self, token: str):
        from dask_gateway import Gateway
        from af_gateway_client import BearerTokenAuth
        return Gateway(self.url, proxy_address=f"gateway://127.0.0.1:{self.port}", auth=BearerTokenAuth(token))

    def cluster_info(self, name: str, headers: dict) -> dict:
        return requests.get(f"{self.url}/api/af/clusters/{name}", headers=headers, timeout=10).json()

    def failed_cluster(self, name: str, headers: dict) -> dict:
        """Waits for the cluster to fail; returns its record (the message says why)."""
        return wait_until(lambda: (lambda c: c if c.get("status") == "FAILED" else None)(self.cluster_info(name, headers)), 60,
                          lambda: f"cluster {name} failed; now {self.cluster_info(name, headers)}; log: {self.log.read_text()[-3000:]}")

    def close(self):
        stop(self.proc)


def oidc_auth(issuer: Issuer) -> dict:
    return {"type": "oidc", "oidc": {"issuer": issuer.url, "audience": [issuer.audience, WLCG_ANY], "required_scopes": ["compute.create"]}}


@pytest.fixture(scope="module")
def gw(pool, issuer, ca_dir):
    g = Gw(pool, "gw", oidc_auth(issuer), ca_dir)
    yield g
    g.close()


def bearer(token: str) -> dict:
    return {"Authorization": "Bearer " + token}


def _wait_gone(pool: Pool, cluster: str, gw: Gw) -> None:
    mine = f'AfGatewayCluster == "{cluster}"'
    wait_until(lambda: not pool.jobs(mine), 60, lambda: f"an empty queue after shutdown: {pool.jobs(mine)}; log: {gw.log.read_text()[-3000:]}")


def test_the_issuers_ca_is_trusted_in_this_runs_root_only(pool, ca_dir):
    body = "".join(line for line in (ca_dir / "ca.pem").read_text().splitlines() if line and not line.startswith("-----"))
    flat = lambda p: Path(p).read_text().replace("\n", "")  # noqa: E731
    cached = subprocess.run(["bash", str(POOL_SCRIPT), "ensure"], check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    assert body in flat(pool.root + "/etc/ssl/certs/ca-certificates.crt")
    assert body not in flat(cached + "/etc/ssl/certs/ca-certificates.crt")
    assert body not in flat("/etc/ssl/certs/ca-certificates.crt")
    # the key cache is this run's
    assert Path(pool.run("condor_config_val", "SEC_SCITOKENS_CACHE").strip()).is_relative_to(pool.run_dir)


def test_alices_workers_are_jobs_of_her_account_submitted_with_her_token(pool, issuer, gw):
    token, jti = issuer.sign("alice")
    cluster = gw.gateway(token).new_cluster()
    mine = f'AfGatewayCluster == "{cluster.name}"'
    try:
        cluster.scale(2)
        workers = wait_until(lambda: (lambda j: j if len(j) == 2 else None)(
            [j for j in pool.jobs(mine) if j["AfGatewayWorker"] != "scheduler" and j["JobStatus"] == 2]), 120,
            lambda: f"2 running worker jobs; queue: {pool.jobs(mine)}; log: {gw.log.read_text()[-3000:]}")
        client = cluster.get_client()
        client.wait_for_workers(2, timeout=120)
        assert client.submit(sum, range(10)).result(timeout=60) == 45
        assert set(client.run(whoami).values()) == {"af-alice"}
        assert client.run_on_scheduler(whoami) == "af-alice"

        # Every job of the cluster (scheduler and workers) is af-alice's, and carries what the schedd
        # took from the token it was submitted with: her subject, the issuer, this very token's id.
        jobs = pool.jobs(mine)
        print("condor_q of alice's cluster:\n" + pool.run("condor_q", "-allusers", "-constraint", mine, "-af:h", "ClusterId", "ProcId",
                                                           "Owner", "AuthTokenSubject", "AuthTokenIssuer", "AfGatewayWorker"))
        assert len(jobs) == 3
        assert {(j["Owner"], j["AuthTokenSubject"], j["AuthTokenIssuer"], j["AuthTokenId"]) for j in jobs} == {("af-alice", "alice", issuer.url, jti)}
        assert set(jobs[0]["AuthTokenScopes"].split(",")) == set(WRITE_SCOPES.split())
        # The schedd's audit log: each submission authenticated by SCITOKENS as alice, mapped to af-alice.
        audit = pool.audit()
        for j in jobs:
            assert audit[f"{j['ClusterId']}.{j['ProcId']}"] == {"method": "SCITOKENS", "auth_id": f"{issuer.url},alice",
                                                               "condor_id": "af-alice@localhost"}
        client.close()
    finally:
        cluster.shutdown()
    _wait_gone(pool, cluster.name, gw)  # condor_rm with her token
    # The token itself is in no log of the schedd's or the gateway's, nor in any job ad.
    signature = token.rsplit(".", 1)[1]
    assert signature not in pool.logs()
    assert signature not in gw.log.read_text()
    assert signature not in pool.run("condor_history", "-l", "-constraint", mine)


def test_without_a_token_the_schedd_takes_no_job_even_from_the_account_itself(pool):
    # af-alice herself, authenticated by FS (the pool's default client method): refused.
    out = pool.as_account("af-alice", "condor_submit", "-terse", "-", input="executable = /bin/true\nqueue\n")
    assert out.returncode != 0
    assert "Failed to authenticate" in out.stderr, out.stderr


def test_another_users_token_cannot_act_on_alices_jobs(pool, issuer, gw):
    alice_token, _ = issuer.sign("alice")
    bob_token, _ = issuer.sign("bob")
    tokens = pool.run_dir / "tokens"
    tokens.mkdir(mode=0o700, exist_ok=True)
    (tokens / "bob").write_text(bob_token)
    cluster = gw.gateway(alice_token).new_cluster()
    try:
        cluster.scale(1)
        job = wait_until(lambda: next((j for j in pool.jobs(f'AfGatewayCluster == "{cluster.name}"') if j["AfGatewayWorker"] != "scheduler"
                                       and j["JobStatus"] == 2), None), 120, "alice's running worker job")
        jid = f"{job['ClusterId']}.{job['ProcId']}"
        # bob, with his own valid token (mapped to af-bob), against alice's job: the schedd refuses
        for tool, words in (("condor_rm", "Permission denied to remove job"), ("condor_hold", "Permission denied to hold job")):
            out = pool.with_token(tokens / "bob", tool, jid)
            assert out.returncode != 0 and words in out.stdout + out.stderr, (tool, out.stdout, out.stderr)
        out = pool.with_token(tokens / "bob", "condor_qedit", jid, "AfGatewayOwner", '"bob"')
        assert out.returncode != 0, out.stdout
        assert [(j["JobStatus"], j["Owner"]) for j in pool.jobs(f"ClusterId == {job['ClusterId']}")] == [(2, "af-alice")]
        # nor through the gateway (alice's cluster is not his to see)
        r = requests.delete(f"{gw.url}/api/v1/clusters/{cluster.name}", headers=bearer(bob_token), timeout=10)
        assert r.status_code in (403, 404), r.text
        # The control: the same token submits and removes bob's own job (it is af-bob's).
        out = pool.with_token(tokens / "bob", "condor_submit", "-terse", "-",
                              input="executable = /bin/sleep\narguments = 300\nrequest_memory = 64\n+AfTest = \"bob\"\nqueue\n")
        assert out.returncode == 0, out.stderr
        [bob_job] = pool.jobs('AfTest == "bob"')
        assert (bob_job["Owner"], bob_job["AuthTokenSubject"]) == ("af-bob", "bob")
        out = pool.with_token(tokens / "bob", "condor_rm", f"{bob_job['ClusterId']}.{bob_job['ProcId']}")
        assert out.returncode == 0, out.stderr
        assert pool.jobs('AfTest == "bob"') == [] or all(j["JobStatus"] == 3 for j in pool.jobs('AfTest == "bob"'))
    finally:
        cluster.shutdown()
    _wait_gone(pool, cluster.name, gw)


def test_an_expired_token_is_refused_by_the_schedd_and_the_owner_is_told_what_to_do(pool, issuer, gw):
    # Expired 20 s ago: still within the gateway's clock_skew (60 s), but not for the schedd.
    token, _ = issuer.sign("carol", lifetime=-20)
    name = gw.gateway(token).submit()
    msg = gw.failed_cluster(name, bearer(token))["message"]
    print("expired token, the cluster's message:", msg)
    assert re.search(r"the HTCondor schedd refused your access token: it expired \d+ s ago .*log in again.*refresh token", msg), msg
    assert "Failed to authenticate using SCITOKENS" in msg
    assert "token expired" in (pool.log_dir / "SchedLog").read_text()
    assert pool.jobs('Owner == "af-carol"') == []


def test_a_token_without_the_compute_scopes_to_submit_is_refused_saying_which_it_lacks(pool, issuer, gw):
    # What the provider's token endpoint grants: compute.create and compute.read, not modify and cancel.
    token = issuer.endpoint_token("ci-pipeline", "openid compute.create compute.read")
    name = gw.gateway(token).submit()
    msg = gw.failed_cluster(name, bearer(token))["message"]
    print("under-scoped token, the cluster's message:", msg)
    assert "took your access token as af-ci-pipeline@localhost but it does not allow you to submit jobs" in msg, msg
    assert "missing: compute.modify, compute.cancel" in msg, msg
    assert pool.jobs('Owner == "af-ci-pipeline"') == []


def test_a_token_of_another_issuer_is_refused_and_the_owner_is_told_whom_to_ask(pool, run_dir, ca_dir):
    # A second issuer (the same CA, so the schedd can fetch its keys): its tokens map to no account.
    other = Issuer(run_dir / "other-issuer", ca_dir)
    g = None
    try:
        g = Gw(pool, "gw-other", oidc_auth(other), ca_dir)
        token, _ = other.sign("alice")
        name = g.gateway(token).submit()
        msg = g.failed_cluster(name, bearer(token))["message"]
        print("another issuer's token, the cluster's message:", msg)
        assert re.search(r"the HTCondor schedd refused your access token \(it is valid \d+ min more\)", msg), msg
        assert f"Ask the facility to map {other.url},alice to your account af-alice" in msg, msg
        assert f"Failed to map SCITOKENS authenticated identity '{other.url},alice'" in (pool.log_dir / "SchedLog").read_text()
        assert pool.jobs(f'AuthTokenIssuer == "{other.url}"') == []
    finally:
        if g:
            g.close()
        other.close()


def test_without_any_token_of_the_owner_nothing_is_submitted(pool, ca_dir):
    # A gateway whose users log in without tokens (simple authentication): it holds none to submit with.
    g = Gw(pool, "gw-simple", {"type": "simple"}, ca_dir)
    try:
        from dask_gateway import Gateway
        from dask_gateway.auth import BasicAuth
        gateway = Gateway(g.url, auth=BasicAuth("erin"))
        name = gateway.submit()
        auth = requests.auth.HTTPBasicAuth("erin", "")
        info = wait_until(lambda: (lambda c: c if c.get("status") == "FAILED" else None)(
            requests.get(f"{g.url}/api/af/clusters/{name}", auth=auth, timeout=10).json()), 60, "the cluster failed")
        print("no token, the cluster's message:", info["message"])
        assert "takes jobs only with their owner's own access token (backend.htcondor.auth_method: scitokens)" in info["message"], info
        assert "holds none of yours to submit jobs with" in info["message"], info
        assert pool.jobs('Owner == "af-erin"') == []
    finally:
        g.close()


def test_alices_workflow_steps_are_jobs_submitted_with_her_token_each_reading_its_own_token_file(pool, issuer, gw):
    token, jti = issuer.sign("alice")
    spec = """stages:
  - name: map
    dependencies: [init]
    scheduler:
      scheduler_type: multistep-stage
      parameters: {n: [1, 2], out: '{workdir}/seen.txt'}
      scatter: {method: zip, parameters: [n]}
      step:
        process: {process_type: interpolated-script-cmd, script: 'id -un > {out}; echo "$BEARER_TOKEN_FILE" >> {out}; sha256sum < "$BEARER_TOKEN_FILE" | cut -c1-64 >> {out}'}
        environment: {environment_type: localproc-env}
        publisher: {publisher_type: frompar-pub, outputmap: {out: out}}
"""
    r = requests.post(f"{gw.url}/api/af/workflows", headers=bearer(token), timeout=30,
                      json={"entry": "wf.yml", "files": {"wf.yml": spec}})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    dag = wait_until(lambda: (lambda d: d if d["run"]["status"] in ("SUCCESS", "FAILED", "CANCELLED") else None)(
        requests.get(f"{gw.url}/api/af/workflows/{run_id}", headers=bearer(token), timeout=10).json()), 180,
        lambda: f"run {run_id} to finish; log: {gw.log.read_text()[-3000:]}")
    steps = [n for n in dag["nodes"] if n["id"].startswith("map:")]
    assert dag["run"]["status"] == "SUCCESS", [n.get("message") for n in steps]
    import hashlib
    for n in steps:
        who, path, digest = Path(n["outputs"]["out"]).read_text().split()
        # her account; its own step's file (not the first step's); her token in it
        assert who == "af-alice" and path == str(Path(n["workdir"]) / ".af" / "bearer-token")
        assert digest == hashlib.sha256((token + "\n").encode()).hexdigest()
    jobs = pool.jobs(f'AfGatewayWorkflow == "{run_id}"') or json.loads(pool.run(
        "condor_history", "-json", "-constraint", f'AfGatewayWorkflow == "{run_id}"',
        "-attributes", "Owner,AuthTokenSubject,AuthTokenId") or "[]")
    assert len(jobs) == 2 and {(j["Owner"], j["AuthTokenSubject"], j["AuthTokenId"]) for j in jobs} == {("af-alice", "alice", jti)}
