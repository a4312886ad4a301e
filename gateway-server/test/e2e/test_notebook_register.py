"""A notebook's outputs into the lake with one call, end to end with real components (lake_support:
the HTTPS test issuer, two XRootD servers with SciTokens, Rucio on them, a gateway trusting the test CA).

The notebook is this test process: its token is in the file BEARER_TOKEN_FILE names, as AF Gateway
keeps it for a notebook, and it is accepted both by the gateway (audience af-gateway) and by the
storage (WLCG's "any" audience), as an identity provider's token for a notebook is. It writes a
histogram ROOT file with uproot and calls af_gateway_client.data.register_files: the gateway says where
to write (POST upload-urls), the file goes to the RSE with a PUT of that token, the gateway registers
it (POST register). Then the file is in the dataset, readable back through the data helper over davs://
and root://, and a second call registers nothing. A file an earlier call wrote but never registered
is found on the storage; other content under a name Rucio has, a token without storage.create:/, and
bob writing into alice's dataset are refused in words naming the file, with no token in any message.
"""
import logging
import uuid
import zlib

import numpy as np
import pytest
import requests

from lake_support import RSE, WLCG_ANY, lake, lines, rucio_root, signed_token  # noqa: F401 (lake: the fixture)

DATASET = "user.alice:nb.outputs"
NOTEBOOK_SCOPES = "openid compute.create compute.read storage.read:/ storage.create:/"
ISSUED = []  # every token given to the notebook: none may appear in a message


def no_token_in(text):
    return not any(t in text for t in ISSUED)


@pytest.fixture
def notebook(lake, tmp_path, monkeypatch):
    """This process as a notebook of the lake's gateway: AF_GATEWAY_URL, the token file, the test CA as
    the storage's clients trust it. Returns give(user, scopes): puts a fresh token of that user in the file."""
    token_file = tmp_path / "bearer-token"
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    for name in ("BEARER_TOKEN", "AF_GATEWAY_TOKEN", "AF_GATEWAY_USER", "AF_GATEWAY_PASSWORD", "DASK_GATEWAY__ADDRESS",
                 "X509_CERT_FILE", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AF_GATEWAY_URL", lake["url"])
    monkeypatch.setenv("BEARER_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    for name, value in lake["storage"]["client_env"].items():
        monkeypatch.setenv(name, value)

    def give(user, scopes=NOTEBOOK_SCOPES):
        ISSUED.append(signed_token(lake, user, scopes, ["af-gateway", WLCG_ANY]))
        token_file.write_text(ISSUED[-1] + "\n")
        token_file.chmod(0o600)

    return give


def histogram_file(path, seed=20, n=400):
    """A four-lepton-mass-like histogram (TH1D "m4l") written with uproot from a numpy histogram."""
    import uproot

    m4l = np.random.default_rng(seed).normal(125.0, 2.0, n)
    counts, edges = np.histogram(m4l, bins=30, range=(110.0, 140.0))
    with uproot.recreate(path) as f:
        f["m4l"] = (counts.astype(np.float64), edges)
    return counts, edges


def replicas(look, did, scheme):
    scope, name = did.split(":", 1)
    return lines(look("/replicas/list", {"dids": [{"scope": scope, "name": name}], "schemes": [scheme]}))


def dataset_files(look, dataset=DATASET):
    scope, name = dataset.split(":", 1)
    return sorted(c["name"] for c in lines(look(f"/dids/{scope}/{name}/dids")))


def where_to_write(lake, user_token, name):
    """The PFN the gateway gives for user.alice:<name> on the RSE (asked as the token's user)."""
    r = requests.post(f"{lake['url']}/api/af/rucio/test/upload-urls", timeout=60,
                      headers={"Authorization": "Bearer " + user_token},
                      json={"rse": RSE, "scope": "user.alice", "files": [{"name": name}]})
    assert r.status_code == 200, r.text
    return r.json()["files"][0]["pfn"]


def last_summary(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "af_gateway_client.data" and "registering" in r.getMessage()][-1]


@pytest.mark.timeout(900)  # the first test of the module starts the lake (and may install the storage)
def test_a_notebooks_histogram_goes_into_rucio_once_and_reads_back_over_davs_and_root(lake, notebook, tmp_path, caplog):
    import uproot

    from af_gateway_client import data

    caplog.set_level(logging.INFO, logger="af_gateway_client.data")
    notebook("alice")
    path = tmp_path / "hist-m4l.root"
    counts, edges = histogram_file(path)
    blob = path.read_bytes()

    dids = data.register_files([path], dataset=DATASET, rse=RSE, instance="test", lifetime=86400)
    assert dids == ["user.alice:hist-m4l.root"]
    assert last_summary(caplog).endswith(": 1 written to the storage, 0 there already; 1 registered now, 0 registered already")

    look = rucio_root(lake)
    assert dataset_files(look) == ["hist-m4l.root"]
    (rep,) = replicas(look, dids[0], "davs")
    assert list(rep["rses"]) == [RSE]
    assert rep["adler32"] == "%08x" % zlib.adler32(blob) and rep["bytes"] == len(blob)
    rules = lines(look("/dids/user.alice/nb.outputs/rules"))
    assert [(x["account"], x["rse_expression"]) for x in rules] == [("alice", RSE)] and rules[0]["expires_at"]

    # readable back with the notebook's token through the data helper, over both protocols Rucio offers
    for scheme in ("davs", "root"):
        (rep,) = replicas(look, dids[0], scheme)
        (pfn,) = rep["rses"][RSE]
        assert pfn.startswith(f"{scheme}://")
        with uproot.open(pfn, **data.uproot_options(pfn)) as f:
            got_counts, got_edges = f["m4l"].to_numpy()
        assert np.array_equal(got_counts, counts) and np.array_equal(got_edges, edges), scheme
        assert got_counts.sum() == counts.sum() > 0

    # the same call again (a notebook cell run twice): nothing written, nothing registered
    again = data.register_files([path], dataset=DATASET, rse=RSE, instance="test", lifetime=86400)
    assert again == dids
    assert last_summary(caplog).endswith(": 0 written to the storage, 1 there already; 0 registered now, 1 registered already")
    assert dataset_files(look) == ["hist-m4l.root"]
    assert len(replicas(look, dids[0], "davs")) == 1
    assert len(lines(look("/dids/user.alice/nb.outputs/rules"))) == 1
    assert no_token_in(caplog.text)


def test_a_file_an_earlier_call_wrote_but_never_registered_is_found_on_the_storage(lake, notebook, tmp_path, caplog):
    from af_gateway_client import data

    caplog.set_level(logging.INFO, logger="af_gateway_client.data")
    notebook("alice")
    path = tmp_path / "hist-retry.root"
    histogram_file(path, seed=21)
    # an earlier call died between the upload and the registration
    pfn = where_to_write(lake, ISSUED[-1], path.name)
    data.fs_for(pfn).pipe_file(pfn, path.read_bytes())
    assert data.register_files(str(path), dataset=DATASET, rse=RSE) == ["user.alice:hist-retry.root"]  # the only instance
    assert last_summary(caplog).endswith(": 0 written to the storage, 1 there already; 1 registered now, 0 registered already")
    assert "hist-retry.root" in dataset_files(rucio_root(lake))

    # other bytes already at the place of a new name: said, and nothing registered
    other = tmp_path / "hist-other.root"
    histogram_file(other, seed=22)
    pfn = where_to_write(lake, ISSUED[-1], other.name)
    data.fs_for(pfn).pipe_file(pfn, b"not this histogram")
    with pytest.raises(data.RegisterError) as err:
        data.register_files([other], dataset=DATASET, rse=RSE, instance="test")
    message = str(err.value)
    assert message.startswith(f"{other}: the storage already holds another file at https://"), message
    assert "which Rucio does not know: remove it there, or pass another name" in message
    assert err.value.path == str(other) and no_token_in(message)
    assert "hist-other.root" not in dataset_files(rucio_root(lake))


def test_other_content_under_a_registered_name_is_refused_naming_the_file(lake, notebook, tmp_path):
    from af_gateway_client import data

    notebook("alice")
    first = tmp_path / "a" / "hist-clash.root"
    second = tmp_path / "b" / "hist-clash.root"
    first.parent.mkdir()
    second.parent.mkdir()
    histogram_file(first, seed=23)
    histogram_file(second, seed=24)
    data.register_files([first], dataset=DATASET, rse=RSE, instance="test")
    with pytest.raises(data.RegisterError) as err:
        data.register_files([second], dataset=DATASET, rse=RSE, instance="test")
    message = str(err.value)
    assert message.startswith(f"{second}: Rucio already has user.alice:hist-clash.root with other content (adler32 "), message
    assert "pass another name" in message and no_token_in(message)
    # Rucio still holds the first file's content, and the storage too
    (rep,) = replicas(rucio_root(lake), "user.alice:hist-clash.root", "davs")
    assert rep["adler32"] == "%08x" % zlib.adler32(first.read_bytes())
    (pfn,) = rep["rses"][RSE]
    assert data.fs_for(pfn).cat_file(pfn) == first.read_bytes()
    # under another name it goes in
    assert data.register_files([second], dataset=DATASET, rse=RSE, instance="test", names=["hist-clash-2.root"]) == [
        "user.alice:hist-clash-2.root"]


def test_a_token_without_the_storage_scope_is_refused_by_the_storage_in_words(lake, notebook, tmp_path):
    from af_gateway_client import data

    notebook("alice", scopes="openid compute.create compute.read storage.read:/")
    path = tmp_path / f"hist-{uuid.uuid4().hex[:8]}.root"
    histogram_file(path, seed=25)
    with pytest.raises(data.RegisterError) as err:
        data.register_files([path], dataset=DATASET, rse=RSE, instance="test")
    message = str(err.value)
    assert message.startswith(f"{path}: uploading to https://"), message
    assert "The storage refused to let you write" in message and "storage.create:/" in message
    assert isinstance(err.value.__cause__, PermissionError) and no_token_in(message)
    assert path.name not in dataset_files(rucio_root(lake))


def test_bob_cannot_register_into_alices_dataset_and_is_told_why(lake, notebook, tmp_path):
    from af_gateway_client import data

    notebook("bob")
    path = tmp_path / "hist-forged.root"
    histogram_file(path, seed=26)
    before = dataset_files(rucio_root(lake))
    with pytest.raises(data.RegisterError) as err:
        data.register_files([path], dataset=DATASET, rse=RSE, instance="test")
    message = str(err.value)
    assert "registering 1 file in user.alice:nb.outputs on SITE-A_SCRATCHDISK" in message, message
    assert "Account bob can not add data identifier to scope user.alice" in message and no_token_in(message)
    assert dataset_files(rucio_root(lake)) == before
    # refused before a byte was written: nothing at the place the file would have gone
    notebook("alice")
    pfn = where_to_write(lake, ISSUED[-1], path.name)
    assert not data.fs_for(pfn).exists(pfn)
