"""The token-protected storage of scripts/xrootd-storage.sh, as Rucio's RSEs and the analysts' jobs will
rely on it: two XRootD servers, each serving davs:// (checked with curl) and root:// (checked with
xrdcp), authorised by WLCG tokens of the HTTPS test issuer and nothing else.

What a token allows: storage.read:/ reads, storage.create:/ writes new files, storage.modify:/ also
overwrites and deletes. What is refused, each next to the same request that succeeds but for the one
thing that differs: no token, a read-only token writing, an expired token, another issuer's token, a
token without a storage scope, one for another audience, one whose claims were altered. Also: the
servers run unprivileged and trust the test CA in their own mount namespace only, and no token ever
lands in their logs.

`scripts/xrootd-storage.sh selftest` runs this file. About 20 s.
"""
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
import zlib
from pathlib import Path

import psutil
import pytest
import requests

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "scripts" / "xrootd-storage.sh"
OP_SCRIPT = REPO / "gateway-server" / "test" / "support" / "oidc-provider.mjs"
WLCG_ANY = "https://wlcg.cern.ch/jwt/v1/any"
READ = "storage.read:/"
READ_CREATE = "storage.read:/ storage.create:/"
SECRETS = {"alice": "alice-secret", "bob": "bob-secret"}
ISSUED = []  # every token this module made: none may appear in a server's log


def harness(*args, env=None, timeout=120):
    """The script with only the XRD_* settings given here (none of the caller's)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("XRD_")}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env={**base, **(env or {})})


def started(run_dir, env=None):
    """start's JSON: the only line it prints on stdout."""
    out = harness("start", str(run_dir), env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1, out.stdout
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def storage():
    ensured = harness("ensure", timeout=900)
    assert ensured.returncode == 0, ensured.stderr[-3000:]
    run_dir = Path(tempfile.mkdtemp(prefix="af-xrootd-"))
    try:
        info = started(run_dir)
        info["work"] = run_dir / "client"
        info["work"].mkdir(mode=0o700)
        yield info
    finally:
        harness("stop", str(run_dir))
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def xrd(storage):
    return {i["name"]: i for i in storage["instances"]}


# ---------------------------------------------------------------- tokens
def token(storage, scope=READ_CREATE, resource=WLCG_ANY, client="alice", issuer=None):
    """A real access token of the issuer (client credentials): the client's id is its `sub`."""
    res = requests.post(f"{issuer or storage['issuer']}/token", auth=(client, SECRETS[client]), timeout=20, verify=storage["ca"],
                        data={"grant_type": "client_credentials", "scope": scope, "resource": resource})
    assert res.status_code == 200, res.text
    ISSUED.append(res.json()["access_token"])
    return ISSUED[-1]


def signed(storage, **claims):
    """Claims signed by the issuer's own key (its stdin protocol), e.g. an expired token."""
    out = Path(storage["issuer_out"])
    seen = len(out.read_text().splitlines())
    with open(storage["issuer_sign"], "w") as fifo:
        fifo.write(json.dumps({"sign": claims}) + "\n")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = out.read_text().splitlines()[seen:]
        if lines:
            reply = json.loads(lines[0])
            assert "token" in reply, reply
            ISSUED.append(reply["token"])
            return reply["token"]
        time.sleep(0.05)
    raise AssertionError("the issuer did not answer the sign request in 10 s")


def wlcg_claims(storage, scope=READ_CREATE, lifetime=300, **extra):
    now = int(time.time())
    return {"iss": storage["issuer"], "sub": "alice", "aud": WLCG_ANY, "scope": scope, "wlcg.ver": "1.0",
            "wlcg.groups": ["/cms"], "iat": now - 600, "nbf": now - 600, "exp": now + lifetime, "jti": str(uuid.uuid4()), **extra}


# ---------------------------------------------------------------- clients
def davs(storage, inst, method, path, tok=None, upload=None, headers=()):
    """curl against the instance's HTTPS endpoint; the token goes in a header read from a 0600 file
    (never on a command line). Returns (HTTP status, body bytes, response headers text)."""
    work = storage["work"]
    body, head = work / f"body-{uuid.uuid4().hex}", work / f"head-{uuid.uuid4().hex}"
    verb = ["-I"] if method == "HEAD" else ["-X", method]  # -X HEAD would wait for a body
    cmd = ["curl", "-sS", "--max-time", "20", "--cacert", storage["ca"], *verb, "-o", str(body), "-D", str(head), "-w", "%{http_code}"]
    if tok is not None:
        hdr = work / f"auth-{uuid.uuid4().hex}"
        hdr.touch(mode=0o600)
        hdr.write_text(f"Authorization: Bearer {tok}\n")
        cmd += ["-H", f"@{hdr}"]
    for h in headers:
        cmd += ["-H", h]
    if upload is not None:
        src = work / f"up-{uuid.uuid4().hex}"
        src.write_bytes(upload)
        cmd += ["--data-binary", f"@{src}"]
    res = subprocess.run([*cmd, f"{inst['https']}{path}"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    return int(res.stdout), body.read_bytes() if body.exists() else b"", head.read_text() if head.exists() else ""


def xrdcp(storage, src, dst, tok=None, token_file=False, trust=True):
    """xrdcp with the token in BEARER_TOKEN (or a 0600 BEARER_TOKEN_FILE); no other token reachable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BEARER_TOKEN", "XRD_", "X509_"))}
    env["XDG_RUNTIME_DIR"] = str(storage["work"])  # discovery's $XDG_RUNTIME_DIR/bt_u<uid>: never written
    env["XRD_REQUESTTIMEOUT"] = "20"
    env["XRD_CONNECTIONRETRY"] = "1"
    if trust:
        env.update(storage["client_env"])
    if tok is not None and token_file:
        f = storage["work"] / f"bt-{uuid.uuid4().hex}"
        f.touch(mode=0o600)
        f.write_text(tok + "\n")
        env["BEARER_TOKEN_FILE"] = str(f)
    elif tok is not None:
        env["BEARER_TOKEN"] = tok
    return subprocess.run(["xrdcp", "-f", "-s", src, dst], capture_output=True, env=env, timeout=60)


def root_url(inst, path):
    return f"{inst['root']}/{path}"  # root://host:port//absolute/path


def unique(prefix):
    return f"/af-test/{prefix}-{uuid.uuid4().hex[:12]}"


def payload():
    return os.urandom(70_000) + "and some text: ünïcode\n".encode()


def refused_root(res):
    """xrdcp failed because the server refused (not a connection or TLS failure)."""
    err = res.stderr.decode(errors="replace")
    return res.returncode != 0 and ("permission denied" in err.lower() or "Auth failed" in err), err


# ---------------------------------------------------------------- the servers
@pytest.mark.timeout(900)  # first: its module fixture may install the packages (ensure)
def test_two_servers_unprivileged_each_trusting_the_issuer_in_its_own_mount_namespace(storage):
    assert [i["name"] for i in storage["instances"]] == ["XRD1", "XRD2"]
    assert storage["issuer"].startswith("https://127.0.0.1:") and storage["issuer_started"] is True
    assert storage["user"] != "root"
    ours = os.readlink("/proc/self/ns/mnt")
    for inst in storage["instances"]:
        proc = psutil.Process(inst["pid"])
        assert proc.name() == "xrootd"
        assert 0 not in proc.uids() and 0 not in proc.gids(), proc.uids()
        assert proc.username() == storage["user"]
        assert os.readlink(f"/proc/{inst['pid']}/ns/mnt") != ours
        assert inst["root"] == f"root://127.0.0.1:{inst['root_port']}" and inst["davs"] == f"davs://127.0.0.1:{inst['http_port']}"
        assert Path(inst["data_dir"]).is_dir() and Path(inst["log"]).is_file()
    # the machine's own store does not trust the test CA
    ca_body = "".join(Path(storage["ca"]).read_text().splitlines()[1:-1])
    assert ca_body not in "".join(Path("/etc/ssl/certs/ca-certificates.crt").read_text().splitlines())


def test_davs_write_then_read_back_on_each_server(storage, xrd):
    tok = token(storage)
    for inst in xrd.values():
        path, data = unique("davs") + "/file.bin", payload()
        status, body, _ = davs(storage, inst, "PUT", path, tok, upload=data)
        assert status in (200, 201), body
        status, body, _ = davs(storage, inst, "GET", path, tok)
        assert (status, body) == (200, data)
        assert (Path(inst["data_dir"]) / path.lstrip("/")).read_bytes() == data
        status, body, _ = davs(storage, inst, "PROPFIND", path.rsplit("/", 1)[0] + "/", tok, headers=["Depth: 1"])
        assert status == 207 and b"file.bin" in body


def test_root_write_then_read_back_on_each_server_with_the_token_in_a_file_or_the_environment(storage, xrd):
    tok = token(storage)
    src = storage["work"] / "root-src.bin"
    for inst in xrd.values():
        path, data = unique("root") + "/file.bin", payload()
        src.write_bytes(data)
        res = xrdcp(storage, str(src), root_url(inst, path), tok, token_file=True)
        assert res.returncode == 0, res.stderr
        res = xrdcp(storage, root_url(inst, path), "-", tok)
        assert res.returncode == 0 and res.stdout == data, res.stderr
        assert (Path(inst["data_dir"]) / path.lstrip("/")).read_bytes() == data
        # the xroot logins went over TLS (ztn sends tokens over TLS only) and were alice's
        assert "TLSv1.3 login as alice" in Path(inst["log"]).read_text()


def test_one_namespace_for_both_protocols(storage, xrd):
    tok = token(storage)
    inst = xrd["XRD2"]
    path, data = unique("both") + "/via-davs.txt", b"written over davs\n"
    assert davs(storage, inst, "PUT", path, tok, upload=data)[0] in (200, 201)
    res = xrdcp(storage, root_url(inst, path), "-", tok)
    assert res.returncode == 0 and res.stdout == data, res.stderr
    src = storage["work"] / "via-root.txt"
    src.write_bytes(b"written over root\n")
    path2 = path.replace("via-davs", "via-root")
    assert xrdcp(storage, str(src), root_url(inst, path2), tok).returncode == 0
    assert davs(storage, inst, "GET", path2, tok)[:2] == (200, b"written over root\n")


def test_davs_answers_an_adler32_digest_for_rucio(storage, xrd):
    tok = token(storage)
    inst, path, data = xrd["XRD1"], unique("digest") + "/f.bin", payload()
    assert davs(storage, inst, "PUT", path, tok, upload=data)[0] in (200, 201)
    status, _, head = davs(storage, inst, "HEAD", path, tok, headers=["Want-Digest: adler32"])
    assert status == 200
    assert f"adler32={zlib.adler32(data):08x}" in head.lower(), head


# ---------------------------------------------------------------- what is refused
def test_a_read_only_token_reads_but_cannot_write(storage, xrd):
    writer, reader = token(storage), token(storage, scope=READ)
    for inst in xrd.values():
        base = unique("ro")
        assert davs(storage, inst, "PUT", f"{base}/there", writer, upload=b"x")[0] in (200, 201)
        assert davs(storage, inst, "GET", f"{base}/there", reader)[:2] == (200, b"x")
        assert davs(storage, inst, "PUT", f"{base}/davs", reader, upload=b"no")[0] == 403
        src = storage["work"] / "ro.txt"
        src.write_bytes(b"no")
        res = xrdcp(storage, str(src), root_url(inst, f"{base}/root"), reader)
        ok, err = refused_root(res)
        assert ok, err
        assert not (Path(inst["data_dir"]) / base.lstrip("/") / "davs").exists()
        assert not (Path(inst["data_dir"]) / base.lstrip("/") / "root").exists()


def test_no_token_reads_nothing(storage, xrd):
    assert not Path(f"/tmp/bt_u{os.getuid()}").exists(), "a token at /tmp/bt_u<uid> would be found by xrdcp's discovery"
    tok = token(storage)
    for inst in xrd.values():
        path = unique("anon") + "/f"
        assert davs(storage, inst, "PUT", path, tok, upload=b"secret")[0] in (200, 201)
        status, body, _ = davs(storage, inst, "GET", path)
        assert status == 403 and b"secret" not in body
        assert davs(storage, inst, "PUT", path + "-2", upload=b"x")[0] == 403
        res = xrdcp(storage, root_url(inst, path), "-")
        ok, err = refused_root(res)
        assert ok and b"secret" not in res.stdout, err


def test_an_expired_token_is_refused_and_the_same_claims_unexpired_are_not(storage, xrd):
    inst = xrd["XRD1"]
    path = unique("exp") + "/f"
    assert davs(storage, inst, "PUT", path, token(storage), upload=b"data")[0] in (200, 201)
    fresh, expired = signed(storage, **wlcg_claims(storage)), signed(storage, **wlcg_claims(storage, lifetime=-60))
    assert davs(storage, inst, "GET", path, fresh)[:2] == (200, b"data")
    assert xrdcp(storage, root_url(inst, path), "-", fresh).stdout == b"data"
    assert davs(storage, inst, "GET", path, expired)[0] == 403
    ok, err = refused_root(xrdcp(storage, root_url(inst, path), "-", expired))
    assert ok, err


def test_another_issuers_token_is_refused(storage, xrd):
    """Another HTTPS issuer (same test CA, same clients, same scopes and audience): only its URL differs."""
    env = dict(os.environ, OIDC_TLS_CERT=str(Path(storage["ca"]).parent / "server.pem"),
               OIDC_TLS_KEY=str(Path(storage["ca"]).parent / "server.key"))
    other = subprocess.Popen(["node", str(OP_SCRIPT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True, env=env, cwd=REPO)
    try:
        issuer = json.loads(other.stdout.readline())["issuer"]
        assert issuer.startswith("https://") and issuer != storage["issuer"]
        foreign, ours = token(storage, issuer=issuer), token(storage)
        for inst in xrd.values():
            path = unique("other") + "/f"
            assert davs(storage, inst, "PUT", path, ours, upload=b"ours")[0] in (200, 201)
            assert davs(storage, inst, "GET", path, foreign)[0] == 403
            assert davs(storage, inst, "PUT", path + "-2", foreign, upload=b"x")[0] == 403
            ok, err = refused_root(xrdcp(storage, root_url(inst, path), "-", foreign))
            assert ok, err
    finally:
        other.stdin.close()
        try:
            other.wait(10)
        except subprocess.TimeoutExpired:
            other.kill()
            other.wait(5)


def test_a_token_without_a_storage_scope_is_refused(storage, xrd):
    inst = xrd["XRD2"]
    path = unique("scope") + "/f"
    assert davs(storage, inst, "PUT", path, token(storage), upload=b"data")[0] in (200, 201)
    compute = token(storage, scope="openid compute.read")
    assert davs(storage, inst, "GET", path, compute)[0] == 403
    ok, err = refused_root(xrdcp(storage, root_url(inst, path), "-", compute))
    assert ok, err
    # storage.create:/ alone writes but does not read
    create_only = token(storage, scope="storage.create:/")
    assert davs(storage, inst, "PUT", path + "-new", create_only, upload=b"new")[0] in (200, 201)
    assert davs(storage, inst, "GET", path + "-new", create_only)[0] == 403


def test_audiences_wlcg_any_or_the_servers_own_url_and_no_other(storage, xrd):
    one, two = xrd["XRD1"], xrd["XRD2"]
    path = unique("aud") + "/f"
    assert davs(storage, one, "PUT", path, token(storage), upload=b"data")[0] in (200, 201)
    own_https, own_root = token(storage, scope=READ, resource=one["https"]), token(storage, scope=READ, resource=one["root"])
    assert davs(storage, one, "GET", path, own_https)[:2] == (200, b"data")
    assert xrdcp(storage, root_url(one, path), "-", own_root).stdout == b"data"
    for wrong in (token(storage, scope=READ, resource=two["https"]), token(storage, scope=READ, resource="urn:af-gateway")):
        assert davs(storage, one, "GET", path, wrong)[0] == 403
        ok, err = refused_root(xrdcp(storage, root_url(one, path), "-", wrong))
        assert ok, err


def test_a_token_whose_claims_were_altered_is_refused(storage, xrd):
    inst = xrd["XRD1"]
    path = unique("forged") + "/f"
    assert davs(storage, inst, "PUT", path, token(storage), upload=b"data")[0] in (200, 201)
    head, body, sig = token(storage, scope=READ).split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["scope"] = "storage.read:/ storage.create:/ storage.modify:/"
    forged = ".".join([head, base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("="), sig])
    assert davs(storage, inst, "GET", path, forged)[0] == 403
    assert davs(storage, inst, "PUT", path, forged, upload=b"overwritten")[0] == 403
    ok, err = refused_root(xrdcp(storage, root_url(inst, path), "-", forged))
    assert ok, err
    assert (Path(inst["data_dir"]) / path.lstrip("/")).read_bytes() == b"data"


def test_create_writes_new_files_only_modify_overwrites_and_deletes(storage, xrd):
    inst = xrd["XRD2"]
    path = unique("modify") + "/f"
    create, modify = token(storage), token(storage, scope="storage.read:/ storage.modify:/")
    assert davs(storage, inst, "PUT", path, create, upload=b"one")[0] in (200, 201)
    assert davs(storage, inst, "PUT", path, create, upload=b"two")[0] == 403
    assert davs(storage, inst, "GET", path, create)[1] == b"one"
    assert davs(storage, inst, "DELETE", path, create)[0] == 403
    assert davs(storage, inst, "PUT", path, modify, upload=b"three")[0] in (200, 201, 204)
    assert davs(storage, inst, "GET", path, modify)[1] == b"three"
    assert davs(storage, inst, "DELETE", path, modify)[0] in (200, 204)
    assert not (Path(inst["data_dir"]) / path.lstrip("/")).exists()


# ---------------------------------------------------------------- the harness itself
def test_a_given_issuer_a_second_start_and_stop(storage):
    """start with XRD_OIDC_ISSUER trusts that issuer and starts none; a second start changes nothing;
    stop ends the server and removes what start made, and leaves the issuer it did not start alone."""
    run_dir = Path(tempfile.mkdtemp(prefix="af-xrootd-given-"))
    env = {"XRD_OIDC_ISSUER": storage["issuer"], "XRD_INSTANCES": "XRD9"}
    try:
        info = started(run_dir, env)
        assert info["issuer"] == storage["issuer"] and info["issuer_started"] is False and "issuer_sign" not in info
        [inst] = info["instances"]
        assert inst["name"] == "XRD9"
        path = unique("given") + "/f"
        tok = token(storage)
        assert davs(storage, inst, "PUT", path, tok, upload=b"nine")[0] in (200, 201)
        assert xrdcp(storage, root_url(inst, path), "-", tok).stdout == b"nine"
        assert started(run_dir, env) == info  # already running: the same servers
        out = harness("stop", str(run_dir))
        assert out.returncode == 0, out.stderr
        deadline = time.monotonic() + 10
        while psutil.pid_exists(inst["pid"]) and psutil.Process(inst["pid"]).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the server outlived stop"
            time.sleep(0.1)
        assert sorted(p.name for p in run_dir.iterdir()) == []
        # the module's issuer, not started by this run, still answers
        assert requests.get(f"{storage['issuer']}/.well-known/openid-configuration", verify=storage["ca"], timeout=10).ok
        assert harness("stop", str(run_dir)).returncode == 0  # safe to repeat
    finally:
        harness("stop", str(run_dir))
        shutil.rmtree(run_dir, ignore_errors=True)


def test_no_token_in_any_log(storage):
    """Last: every token made above (the signature is the part a log could leak) is absent from the logs."""
    assert len(ISSUED) > 10
    logs = "".join(Path(i["log"]).read_text(errors="replace") for i in storage["instances"])
    assert "scitokens_Access" in logs or "login as alice" in logs  # the logs are the ones in use
    for tok in ISSUED:
        head, body, sig = tok.split(".")
        assert sig not in logs and body not in logs
