"""af_gateway_client.data, the notebook's data helper: uproot and fsspec reading davs:// and root://
PFNs with the token found at the WLCG discovery location at each open, against the real
token-protected storage of scripts/xrootd-storage.sh (two XRootD servers, the HTTPS test issuer).

- A small NanoAOD-like ROOT file (muons: pt, eta, phi) written with uproot is put on the storage
  through the helper with a write token, and read back with `uproot.open` through the helper over
  davs:// and root://, with the token file REPLACED between opens: a short-lived token that has
  expired, then one without the storage scope (refused: proof that each open reads the file), then a
  new one (read). The storage's log shows each root:// open logging in as the new token's subject.
- The same from a Dask worker (a LocalCluster process) and from a process that trusts the test CA
  through SSL_CERT_FILE alone.
- Errors a person can act on: no token (where it was looked for, what to do), a token without
  storage.read:/ (the file and the scope); no token in any message, repr, pickle or log line.
- What goes on the wire, which the storage cannot tell: a recording stand-in HTTPS server (named as
  such) sees the current token in each request, and nothing when a redirect leads to plain http://.

About 30 s.
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import pickle
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "scripts" / "xrootd-storage.sh"
TEST_CA = REPO / "scripts" / "test-ca.sh"
WLCG_ANY = "https://wlcg.cern.ch/jwt/v1/any"
SECRETS = {"alice": "alice-secret", "bob": "bob-secret"}
ISSUED: list[str] = []  # every token this module made: none may appear in an error, a log or a server's log
# three events of a NanoAOD-like tree: nMuon and the jagged Muon_pt, Muon_eta, Muon_phi
MUONS = {
    "pt": [[41.5, 28.25], [], [17.0, 63.125, 9.5]],
    "eta": [[0.5, -1.25], [], [2.0, 0.0, -0.75]],
    "phi": [[1.5, -3.0], [], [0.25, 2.75, -0.5]],
}
BRANCHES = [f"Muon_{k}" for k in MUONS]


def no_token_in(text: str) -> bool:
    return not any(t in text for t in ISSUED)


# ---------------------------------------------------------------- the storage and its issuer
def harness(*args, timeout=120):
    env = {k: v for k, v in os.environ.items() if not k.startswith("XRD_")}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def storage():
    ensured = harness("ensure", timeout=900)
    assert ensured.returncode == 0, ensured.stderr[-3000:]
    run_dir = Path(tempfile.mkdtemp(prefix="af-data-helper-"))
    try:
        out = harness("start", str(run_dir))
        assert out.returncode == 0, out.stderr[-3000:]
        info = json.loads(out.stdout.strip().splitlines()[-1])
        info["xrd"] = {i["name"]: i for i in info["instances"]}
        yield info
    finally:
        harness("stop", str(run_dir))
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def test_ca():
    out = subprocess.run(["bash", str(TEST_CA), "ensure"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads((Path(out.stdout.strip()) / "info.json").read_text())


def token(storage, scope="storage.read:/", client="alice"):
    """A real access token of the issuer (client credentials, WLCG "any" audience); sub = client."""
    res = requests.post(f"{storage['issuer']}/token", auth=(client, SECRETS[client]), verify=storage["ca"], timeout=20,
                        data={"grant_type": "client_credentials", "scope": scope, "resource": WLCG_ANY})
    assert res.status_code == 200, res.text
    ISSUED.append(res.json()["access_token"])
    return ISSUED[-1]


def signed(storage, sub="alice", scope="storage.read:/", lifetime=300):
    """Claims signed with the issuer's own key (its stdin protocol): a token living `lifetime` seconds."""
    now = int(time.time())
    claims = {"iss": storage["issuer"], "sub": sub, "aud": WLCG_ANY, "scope": scope, "wlcg.ver": "1.0",
              "wlcg.groups": ["/cms"], "iat": now - 5, "nbf": now - 5, "exp": now + lifetime, "jti": str(uuid.uuid4())}
    out = Path(storage["issuer_out"])
    seen = len(out.read_text().splitlines())
    with open(storage["issuer_sign"], "w") as fifo:
        fifo.write(json.dumps({"sign": claims}) + "\n")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = out.read_text().splitlines()[seen:]
        if lines:
            ISSUED.append(json.loads(lines[0])["token"])
            return ISSUED[-1], claims["exp"]
        time.sleep(0.05)
    raise AssertionError("the issuer did not answer the sign request in 10 s")


def give(path: Path, tok: str) -> None:
    """Replace the token file as the token broker does: a new 0600 file renamed over the old one."""
    tmp = path.with_name(path.name + f".{uuid.uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(tok + "\n")
    os.replace(tmp, path)


@pytest.fixture
def token_file(tmp_path, monkeypatch):
    """The discovery location of this test: BEARER_TOKEN_FILE (nothing in BEARER_TOKEN, an empty
    $XDG_RUNTIME_DIR); the file does not exist until a test gives it a token."""
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    monkeypatch.delenv("BEARER_TOKEN", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    monkeypatch.setenv("BEARER_TOKEN_FILE", str(tmp_path / "bearer-token"))
    return tmp_path / "bearer-token"


@pytest.fixture
def on_storage(storage, token_file, monkeypatch):
    """The test CA as the storage's clients trust it (X509_CERT_DIR: HTTPS and the XRootD client)."""
    for name in ("X509_CERT_FILE", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in storage["client_env"].items():
        monkeypatch.setenv(name, value)
    return token_file


def muon_file(tmp_path) -> bytes:
    import awkward as ak
    import uproot

    local = tmp_path / "muons.root"
    muons = ak.zip({k: ak.Array(v) for k, v in MUONS.items()})
    with uproot.recreate(local) as f:  # a TTree (nMuon, Muon_pt, ...), as NanoAOD's
        f.mktree("Events", {"Muon": muons.type.content})
        f["Events"].extend({"Muon": muons})
    return local.read_bytes()


def pfn_of(storage, scheme, name, inst="XRD1"):
    base = storage["xrd"][inst][scheme]
    return f"{base}//af-data-helper/{name}" if scheme == "root" else f"{base}/af-data-helper/{name}"


def put(storage, token_file, pfn, blob):
    """Write `blob` at `pfn` through the helper with a write token (storage.create:/)."""
    from af_gateway_client import data

    give(token_file, token(storage, scope="storage.read:/ storage.create:/"))
    if pfn.startswith("davs://"):
        data.fs_for(pfn).pipe_file(pfn, blob)
    else:
        with data.open(pfn, "wb") as f:
            f.write(blob)


def read_muons(pfn):
    import uproot

    from af_gateway_client import data

    with uproot.open({pfn: "Events"}, **data.uproot_options(pfn)) as events:
        got = events.arrays(BRANCHES)
        return {k: got[f"Muon_{k}"].tolist() for k in MUONS}


def logins(inst) -> list[str]:
    """The subjects the root:// connections of an instance logged in as, in order."""
    return [line.rsplit(" login as ", 1)[1].strip() for line in Path(inst["log"]).read_text().splitlines() if "TLSv1.3 login as " in line]


# ---------------------------------------------------------------- pure logic: names, options, errors
def test_options_for_each_kind_of_pfn():
    import uproot.source.fsspec

    from af_gateway_client import data

    assert data.storage_options("davs://st.example.org:8443/cms/f.root") == {"protocol": "afdavs"}
    assert data.storage_options("https://st.example.org/cms/f.root") == {"protocol": "afdavs"}
    assert data.storage_options("root://st.example.org:1094//cms/f.root") == {"protocol": "afroot"}
    assert data.uproot_options("root://st.example.org//cms/f.root") == {"handler": uproot.source.fsspec.FSSpecSource, "protocol": "afroot"}
    # fsspec knows the names in a fresh process (entry points), so Dask workers find them too
    code = "import fsspec; print(fsspec.get_filesystem_class('afroot').__name__, fsspec.get_filesystem_class('davs').__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["BearerXRootDFileSystem", "BearerHTTPFileSystem"], out.stderr
    for bad in ("http://st.example.org/f.root", "s3://bucket/f.root", "/local/f.root"):
        with pytest.raises(ValueError, match="davs://, https:// and root://"):
            data.storage_options(bad)
    # a token passed by mistake is not echoed back
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    with pytest.raises(ValueError) as err:
        data.open(jwt)
    assert jwt not in str(err.value) and "<token>" in str(err.value)


def test_each_root_open_names_the_connection_of_the_token_found_then(token_file, monkeypatch):
    from af_gateway_client import _data_xrootd, data

    monkeypatch.setenv("X509_CERT_DIR", "/etc/ssl/certs")  # nothing here connects
    fs = data.fs_for("root://st.example.org:1094//cms/f.root")  # no token yet: made all the same
    assert isinstance(fs, _data_xrootd.BearerXRootDFileSystem)
    with pytest.raises(data.BearerTokenNotFound) as err:
        fs.unstrip_protocol("/cms/f.root")
    assert str(token_file) in str(err.value) and "token panel" in str(err.value)
    first, second = "first-token-" + uuid.uuid4().hex, "second-token-" + uuid.uuid4().hex
    give(token_file, first)
    url1 = fs.unstrip_protocol("/cms/f.root")
    give(token_file, second)
    url2 = fs.unstrip_protocol("/cms/f.root")
    assert url1 == f"root://{_data_xrootd.token_user(first)}@st.example.org:1094//cms/f.root"
    assert url2 == f"root://{_data_xrootd.token_user(second)}@st.example.org:1094//cms/f.root"
    assert url1 != url2 and first not in url1 + url2 and second not in url1 + url2
    assert fs._myclient.url.username == _data_xrootd.token_user(second)
    # a user name in the PFN does not pin a connection (and its token)
    assert data.fs_for("root://someone@st.example.org:1094//x").unstrip_protocol("/x").startswith(f"root://{_data_xrootd.token_user(second)}@")


def test_errors_name_the_file_and_the_scope_and_never_the_token(token_file, monkeypatch):
    from af_gateway_client import _data_xrootd, data

    secret = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2VjcmV0LXNpZ25hdHVyZQ"
    ISSUED.append(secret)
    denied = data.StorageAccessDenied("davs://st.example.org/cms/f.root", "HTTP 403 Forbidden")
    missing = data.BearerTokenNotFound("BEARER_TOKEN, /tmp/x", "root://st.example.org//f")
    for err in (denied, missing):
        again = pickle.loads(pickle.dumps(err))
        assert type(again) is type(err) and str(again) == str(err) and isinstance(err, PermissionError)
    assert "davs://st.example.org/cms/f.root" in str(denied) and "storage.read:/" in str(denied) and denied.scope == "storage.read:/"
    assert "storage.create:/" in str(data.StorageAccessDenied("x", "y", operation="write"))
    # an XRootD message is translated; whatever looks like a token in it is taken out
    monkeypatch.setenv("X509_CERT_DIR", "/etc/ssl/certs")
    give(token_file, secret)
    fs = data.fs_for("root://st.example.org:1094//cms/f.root")
    user = _data_xrootd.token_user(secret)
    xrootd_says = f"[ERROR] Server responded with an error: [3010] root://{user}@st:1094//f {secret}; permission denied"
    refused = fs._translate(OSError(xrootd_says), "/cms/f.root", "read")
    assert isinstance(refused, data.StorageAccessDenied) and refused.url == "root://st.example.org:1094//cms/f.root"
    assert user not in str(refused) and "<token>" in str(refused)
    assert isinstance(fs._translate(OSError("[ERROR] Server responded with an error: [3011] No such file"), "/f", "read"), FileNotFoundError)
    for err in (denied, missing, refused):
        assert no_token_in(str(err) + repr(err) + "".join(traceback.format_exception(err)) + repr(pickle.dumps(err)))


def test_https_trusts_the_places_the_environment_names(test_ca, tmp_path):
    from af_gateway_client import data

    def subjects(ctx):
        return [dict(x[0] for x in c["subject"]).get("commonName") for c in ctx.get_ca_certs()]

    for name in ("X509_CERT_FILE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        assert "AF Gateway test CA" in subjects(data.storage_ssl_context({name: test_ca["ca"]})), name
    assert "AF Gateway test CA" not in subjects(data.storage_ssl_context({}))
    data.storage_ssl_context({"X509_CERT_DIR": test_ca["ca_dir"]})  # a hashed directory: read when needed
    with pytest.raises(data.StorageError, match="X509_CERT_FILE=/nonexistent"):
        data.storage_ssl_context({"X509_CERT_FILE": "/nonexistent/ca.pem"})
    # the XRootD client reads X509_CERT_DIR / X509_CERT_FILE only: the others are passed on to it
    env = {"SSL_CERT_FILE": test_ca["ca"]}
    data.export_xrootd_trust(env)
    assert env["X509_CERT_FILE"] == test_ca["ca"] and os.path.isdir(env["X509_CERT_DIR"])
    env = {"X509_CERT_DIR": test_ca["ca_dir"], "SSL_CERT_FILE": "/elsewhere.pem"}
    data.export_xrootd_trust(env)
    assert env == {"X509_CERT_DIR": test_ca["ca_dir"], "SSL_CERT_FILE": "/elsewhere.pem"}


# ---------------------------------------------------------------- on the wire: a recording stand-in
class RecordingStandIn:
    """A recording stand-in for an HTTPS storage (not XRootD): answers GET/HEAD of /file with BODY, 401
    for /unauthorized, 500 for /broken, and redirects /to-plain-http to a plain-HTTP twin; records
    each request's path and Authorization header (which the real storage cannot report)."""

    BODY = bytes(range(256)) * 64

    def __init__(self, cert, key):
        self.seen: list[tuple[str, str, str | None]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self, with_body):
                outer.seen.append((self.server.name, self.path, self.headers.get("Authorization")))
                if self.path == "/to-plain-http":
                    self.send_response(302)
                    self.send_header("Location", f"http://127.0.0.1:{outer.plain.server_address[1]}/file")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = {"/file": 200, "/unauthorized": 401, "/broken": 500}.get(self.path, 404)
                body = self.BODY_FOR(status)
                start, end = 0, len(body)
                rng = self.headers.get("Range")
                if status == 200 and rng:
                    a, b = rng.split("=")[1].split("-")
                    start, end = int(a), min(int(b) + 1, len(body))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(body)}")
                else:
                    self.send_response(status)
                self.send_header("Content-Length", str(end - start))
                self.end_headers()
                if with_body:
                    self.wfile.write(body[start:end])

            def BODY_FOR(self, status):
                return outer.BODY if status == 200 else b"no"

            def do_GET(self):
                self.answer(True)

            def do_HEAD(self):
                self.answer(False)

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.tls = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.tls.socket = context.wrap_socket(self.tls.socket, server_side=True)
        self.tls.name = "https"
        self.plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.plain.name = "http"
        self.threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (self.tls, self.plain)]
        for t in self.threads:
            t.start()
        self.url = f"https://127.0.0.1:{self.tls.server_address[1]}"

    def close(self):
        for s in (self.tls, self.plain):
            s.shutdown()
            s.server_close()
        for t in self.threads:
            t.join(5)


@pytest.fixture
def stand_in(test_ca, token_file, monkeypatch):
    for name in ("X509_CERT_DIR", "X509_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", test_ca["ca"])
    server = RecordingStandIn(test_ca["cert"], test_ca["key"])
    yield server
    server.close()


def test_each_request_carries_the_token_found_at_that_moment_over_https_only(stand_in, token_file, caplog):
    import fsspec

    from af_gateway_client import data

    caplog.set_level(logging.DEBUG)
    pfn = stand_in.url.replace("https://", "davs://") + "/file"
    tokens = [f"token-{i}-{uuid.uuid4().hex}" for i in range(3)]
    ISSUED.extend(tokens)
    give(token_file, tokens[0])
    with data.open(pfn, block_size=4096) as f:
        assert f.read(10) == stand_in.BODY[:10]
        give(token_file, tokens[1])  # replaced while the file is open: its next read sends the new one
        f.seek(8192)
        assert f.read(10) == stand_in.BODY[8192:8202]
    give(token_file, tokens[2])
    with fsspec.open(pfn, "rb", **data.storage_options(pfn)) as f:  # plain fsspec with the helper's options
        assert f.read() == stand_in.BODY
    sent = [auth for server, _, auth in stand_in.seen]
    assert sent[0] == f"Bearer {tokens[0]}" and f"Bearer {tokens[1]}" in sent and sent[-1] == f"Bearer {tokens[2]}"
    assert sent.index(f"Bearer {tokens[1]}") > sent.index(f"Bearer {tokens[0]}") and set(sent) == {f"Bearer {t}" for t in tokens}
    # what outlives a request (its answer's request_info) no longer holds the token
    with data.open(pfn, block_size=0) as stream:
        assert "Authorization" not in stream.r.request_info.headers
    # a redirect to plain http:// is not followed with the token
    stand_in.seen.clear()
    with pytest.raises(data.StorageError, match="Refusing to send your access token over http://") as err:
        data.fs_for(pfn).cat_file(stand_in.url + "/to-plain-http")
    assert [s for s in stand_in.seen if s[0] == "http"] == []
    # refusals and failures: the file's name, never the token
    with pytest.raises(data.StorageAccessDenied, match=r"/unauthorized \(HTTP 401"):
        data.fs_for(pfn).cat_file(stand_in.url + "/unauthorized")
    with pytest.raises(data.StorageError, match="HTTP 500") as broken:
        data.fs_for(pfn).info(stand_in.url + "/broken")
    with pytest.raises(FileNotFoundError):
        data.fs_for(pfn).cat_file(stand_in.url + "/missing")
    assert data.fs_for(pfn).exists(stand_in.url + "/missing") is False
    for e in (err.value, broken.value):
        assert no_token_in(str(e) + repr(e) + "".join(traceback.format_exception(e)))
    assert no_token_in(caplog.text) and no_token_in(repr(data.fs_for(pfn)))


# ---------------------------------------------------------------- the real storage
@pytest.mark.timeout(900)  # first on the storage: its module fixture may install the packages
@pytest.mark.parametrize("scheme", ["davs", "root"])
def test_uproot_reads_on_with_the_token_file_replaced_between_opens(storage, on_storage, tmp_path, scheme):
    from af_gateway_client import data

    inst = storage["xrd"]["XRD1"]
    pfn = pfn_of(storage, scheme, f"muons-{uuid.uuid4().hex[:8]}.root")
    put(storage, on_storage, pfn, muon_file(tmp_path))

    # 1. a token living 6 s reads the file
    short, expires = signed(storage, sub="alice", lifetime=6)
    give(on_storage, short)
    assert read_muons(pfn) == MUONS
    time.sleep(max(0.0, expires - time.time()) + 1)
    assert time.time() > expires

    # 2. its successor in the file has no storage scope: refused, so the open read the file again
    give(on_storage, token(storage, scope="compute.read", client="bob"))
    with pytest.raises(data.StorageAccessDenied) as refused:
        read_muons(pfn)
    assert data.display_url(pfn.replace("davs://", "https://")) in str(refused.value) and "storage.read:/" in str(refused.value)

    # 3. a fresh token: the next open reads again
    give(on_storage, token(storage, scope="storage.read:/", client="bob"))
    assert read_muons(pfn) == MUONS
    with data.open(pfn) as f:
        assert f.read(4) == b"root"
    if scheme == "root":  # each token had a connection of its own, logged in as its subject
        assert logins(inst)[-3:] == ["alice", "bob", "bob"]
    assert no_token_in(str(refused.value) + repr(refused.value) + "".join(traceback.format_exception(refused.value)))


@pytest.mark.parametrize("scheme", ["davs", "root"])
def test_without_a_token_or_the_storage_scope_the_error_says_what_to_do(storage, on_storage, tmp_path, monkeypatch, scheme):
    import uproot

    from af_gateway_client import data

    pfn = pfn_of(storage, scheme, f"scope-{uuid.uuid4().hex[:8]}.root", inst="XRD2")
    put(storage, on_storage, pfn, muon_file(tmp_path))
    give(on_storage, token(storage, scope="openid compute.create compute.read"))
    with pytest.raises(data.StorageAccessDenied) as refused:
        uproot.open(pfn, **data.uproot_options(pfn))
    message = str(refused.value)
    assert "storage.read:/" in message and "token panel" in message and pfn.split("//", 1)[1].split("/", 1)[1] in message
    os.unlink(on_storage)
    monkeypatch.setattr(os, "getuid", lambda: 2**31 - 3)  # no /tmp/bt_u<uid> of this machine's user either
    with pytest.raises(data.BearerTokenNotFound) as missing:
        uproot.open(pfn, **data.uproot_options(pfn))
    assert str(on_storage) in str(missing.value) and "Log in in the Lab's token panel" in str(missing.value)
    for e in (refused.value, missing.value):
        assert no_token_in(str(e) + repr(e) + "".join(traceback.format_exception(e)))


def test_plain_uproot_and_fsspec_read_davs_through_the_helper(storage, on_storage, tmp_path):
    import fsspec
    import uproot

    pfn = pfn_of(storage, "davs", f"plain-{uuid.uuid4().hex[:8]}.root", inst="XRD2")
    put(storage, on_storage, pfn, muon_file(tmp_path))
    give(on_storage, token(storage))
    with uproot.open(pfn) as f:  # no options: davs:// is the helper's (an fsspec entry point)
        assert f["Events"]["Muon_eta"].array().tolist() == MUONS["eta"]
    with fsspec.open(pfn) as f:
        assert f.read(4) == b"root"


def test_a_dask_worker_reads_with_the_token_of_each_moment(storage, on_storage, tmp_path):
    from distributed import Client, LocalCluster

    from af_gateway_client import data

    pfns = {s: pfn_of(storage, s, f"dask-{uuid.uuid4().hex[:8]}.root", inst="XRD2") for s in ("davs", "root")}
    blob = muon_file(tmp_path)
    for pfn in pfns.values():
        put(storage, on_storage, pfn, blob)

    def pt_on_worker(pfn):  # defined here: shipped to the worker by value
        import os

        import uproot

        from af_gateway_client import data

        with uproot.open(pfn, **data.uproot_options(pfn)) as f:
            return os.getpid(), f["Events"]["Muon_pt"].array().tolist()

    give(on_storage, token(storage))
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
        for pfn in pfns.values():
            pid, pts = client.submit(pt_on_worker, pfn, pure=False).result(timeout=60)
            assert pid != os.getpid() and pts == MUONS["pt"]
        give(on_storage, token(storage, scope="compute.read", client="bob"))
        for pfn in pfns.values():
            with pytest.raises(data.StorageAccessDenied) as refused:  # the worker's error, as it raised it
                client.submit(pt_on_worker, pfn, pure=False).result(timeout=60)
            assert "storage.read:/" in str(refused.value) and no_token_in(str(refused.value))
        give(on_storage, token(storage, client="bob"))
        for pfn in pfns.values():
            assert client.submit(pt_on_worker, pfn, pure=False).result(timeout=60)[1] == MUONS["pt"]


def test_a_process_trusting_the_test_ca_through_ssl_cert_file_alone(storage, on_storage, tmp_path):
    pfns = [pfn_of(storage, s, f"trust-{uuid.uuid4().hex[:8]}.root", inst="XRD1") for s in ("davs", "root")]
    blob = muon_file(tmp_path)
    for pfn in pfns:
        put(storage, on_storage, pfn, blob)
    give(on_storage, token(storage))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("X509_", "SSL_CERT", "REQUESTS_CA", "XRD_"))}
    env["SSL_CERT_FILE"] = storage["ca"]
    code = (
        "import sys, uproot\nfrom af_gateway_client import data\n"
        "for pfn in sys.argv[1:]:\n"
        "    with uproot.open(pfn, **data.uproot_options(pfn)) as f:\n"
        "        print(f['Events'].num_entries)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, *pfns], capture_output=True, text=True, env=env, timeout=90)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["3", "3"]


def test_no_token_reached_a_server_log(storage):
    for inst in storage["instances"]:
        assert no_token_in(Path(inst["log"]).read_text())
