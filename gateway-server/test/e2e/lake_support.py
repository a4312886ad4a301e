"""The lake for end-to-end tests of outputs going into Rucio: the HTTPS test issuer and two XRootD
servers with SciTokens (scripts/xrootd-storage.sh), a Rucio server whose RSEs point at them and
whose every PFN resolves to a file (scripts/rucio-server.sh with RUCIO_STORAGE_JSON and
RUCIO_OIDC_CA), and a gateway trusting the test CA (NODE_EXTRA_CA_CERTS). A test module uses it by
importing the `lake` fixture (one lake per module, clusters on the local backend) and the helpers
below; a module whose gateway needs another backend makes its own `lake` with running_lake(backend=...)
(test_analysis_htcondor.py: the HTCondor pool in SciTokens mode for the lake's issuer).
"""
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests

from af_e2e_support import free_port, kill_below, stop, traversable_dir, wait_http

REPO = Path(__file__).resolve().parents[3]
CLI = REPO / "gateway-server" / "dist" / "cli.js"
STORAGE = REPO / "scripts" / "xrootd-storage.sh"
RUCIO = REPO / "scripts" / "rucio-server.sh"
WLCG_ANY = "https://wlcg.cern.ch/jwt/v1/any"
SECRETS = {"alice": "alice-secret", "bob": "bob-secret"}
RSE = "SITE-A_SCRATCHDISK"


def run(cmd, env=None, timeout=300):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.fixture(scope="module")
def lake():
    """Storage (with its issuer), Rucio on it, and a gateway on the local backend: yields their facts."""
    with running_lake() as facts:
        yield facts


@contextlib.contextmanager
def running_lake(backend=None, storage_env=None):
    """The lake, stopped and removed on leaving. `backend(storage)`, given the storage's facts, returns a context
    manager (entered after the storage, left after the gateway stops) yielding the gateway's configuration
    sections for another backend than the local one and the directory to keep the gateway's own in; its
    facts are the lake's `backend`. `storage_env`: variables for scripts/xrootd-storage.sh start."""
    run(["bash", str(STORAGE), "ensure"], timeout=900)
    top = Path(tempfile.mkdtemp(prefix="af-register-"))
    top.chmod(0o711)  # the storage's account passes through to its run directory
    ws = traversable_dir()
    try:
        with contextlib.ExitStack() as stack:
            storage = json.loads(run(["bash", str(STORAGE), "start", str(top / "storage")], env=storage_env).strip().splitlines()[-1])
            run(["bash", str(RUCIO), "start", str(top / "rucio")], env={
                "RUCIO_OIDC_ISSUER": storage["issuer"], "RUCIO_OIDC_CA": storage["ca"],
                "RUCIO_STORAGE_JSON": str(top / "storage" / "storage.json")})
            rucio = json.loads((top / "rucio" / "rucio.json").read_text())
            sections, home, facts = {}, top, None
            if backend:
                sections, home, facts = stack.enter_context(backend(storage))
            gw_dir = Path(home) / "gateway"
            gw_dir.mkdir()
            config = {
                "listen": f"127.0.0.1:{free_port()}",
                "data_dir": str(gw_dir / "data"),
                "accounts": {"name_template": "af-{user}"},
                "auth": {"type": "oidc", "oidc": {"issuer": storage["issuer"], "audience": ["af-gateway"],
                                                   "client_id": "af-gateway", "client_secret": "af-gateway-secret",
                                                   "required_scopes": ["compute.create"]}},
                "tokens": {"exchange_audiences": ["rucio", WLCG_ANY]},
                "rucio": {"instances": [{"name": "test", "url": rucio["url"], "auth": "exchange", "audience": "rucio",
                                         "storage_audience": WLCG_ANY, "default_scheme": "davs"}]},
                "workflows": {"poll_period": 0.2, "workspace_root": str(ws)},
                **sections,
            }
            (gw_dir / "config.json").write_text(json.dumps(config))
            log = gw_dir / "gateway.log"
            with open(log, "w") as out:
                # Node reads extra CAs only at start: the issuer's and the storage's certificates are the test CA's
                gw = subprocess.Popen(["node", str(CLI), "serve", "--config", str(gw_dir / "config.json")], stdout=out,
                                      stderr=subprocess.STDOUT, start_new_session=True,
                                      env={**os.environ, "NODE_EXTRA_CA_CERTS": storage["ca"]})
            stack.callback(stop, gw)
            url = "http://" + config["listen"]
            wait_http(url + "/api/health", gw, log)
            yield {"url": url, "storage": storage, "rucio": rucio, "log": log, "ws": ws, "backend": facts}
    finally:
        kill_below(ws)
        subprocess.run(["bash", str(RUCIO), "stop", str(top / "rucio")], capture_output=True, timeout=120)
        subprocess.run(["bash", str(STORAGE), "stop", str(top / "storage")], capture_output=True, timeout=120)
        shutil.rmtree(ws, ignore_errors=True)
        shutil.rmtree(top, ignore_errors=True)


def token(lake, user, scope="openid compute.create compute.read storage.read:/ storage.create:/", resource="urn:af-gateway"):
    """A real access token of the issuer (client credentials): sub = user, one audience (the resource's)."""
    st = lake["storage"]
    conf = requests.get(st["issuer"] + "/.well-known/openid-configuration", verify=st["ca"], timeout=10).json()
    r = requests.post(conf["token_endpoint"], auth=(user, SECRETS[user]), verify=st["ca"], timeout=10,
                      data={"grant_type": "client_credentials", "scope": scope, "resource": resource})
    r.raise_for_status()
    return r.json()["access_token"]


def signed_token(lake, user, scope, audience, lifetime=600):
    """Claims signed by the issuer with its own key (its stdin protocol), for tokens no client can get
    from it: here one for several audiences at once, as an identity provider gives a notebook a token
    that both the gateway and the storage accept."""
    st = lake["storage"]
    now = int(time.time())
    claims = {"iss": st["issuer"], "sub": user, "aud": audience, "scope": scope, "wlcg.ver": "1.0",
              "wlcg.groups": ["/cms"], "iat": now - 5, "nbf": now - 5, "exp": now + lifetime, "jti": str(uuid.uuid4())}
    out = Path(st["issuer_out"])
    seen = len(out.read_text().splitlines())
    with open(st["issuer_sign"], "w") as fifo:
        fifo.write(json.dumps({"sign": claims}) + "\n")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        answered = out.read_text().splitlines()[seen:]
        if answered:
            return json.loads(answered[0])["token"]
        time.sleep(0.05)
    raise AssertionError("the issuer did not answer the sign request in 10 s")


def rucio_root(lake):
    """Rucio as its root (to look, not to act): a userpass token."""
    r = lake["rucio"]
    t = requests.get(r["url"] + "/auth/userpass", timeout=30, headers={
        "X-Rucio-Account": "root", "X-Rucio-Username": r["root"]["username"], "X-Rucio-Password": r["root"]["password"]})
    t.raise_for_status()
    headers = {"X-Rucio-Auth-Token": t.headers["X-Rucio-Auth-Token"]}
    return lambda path, body=None: (requests.get(r["url"] + path, headers=headers, timeout=30) if body is None else
                                    requests.post(r["url"] + path, headers=headers, json=body, timeout=30))


def lines(res):
    return [json.loads(x) for x in res.text.splitlines() if x.strip()]


def api(lake, user, method, path, bearer=None, **kw):
    """A request to the lake's gateway as `user`: with a fresh client-credentials token, or the token given."""
    return requests.request(method, lake["url"] + path, headers={"Authorization": "Bearer " + (bearer or token(lake, user))},
                            timeout=60, **kw)


def wait_run(lake, user, run_id, timeout=120, bearer=None, until=None):
    """The run's DAG once `until(dag)` holds (default: the run finished), polled as `user` (with `bearer`, every
    poll carries that one token: no newer token of the user's reaches the gateway's broker meanwhile)."""
    until = until or (lambda d: d["run"]["status"] in ("SUCCESS", "FAILED", "CANCELLED"))
    deadline = time.time() + timeout
    while time.time() < deadline:
        dag = api(lake, user, "GET", f"/api/af/workflows/{run_id}", bearer=bearer).json()
        if until(dag):
            return dag
        time.sleep(0.5)
    raise AssertionError(f"run {run_id}: not there in {timeout} s: {dag['run']}")
