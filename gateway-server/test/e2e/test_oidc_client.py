"""OIDC bearer tokens end to end: a real OpenID provider (oidc-provider, started by the test), the
gateway with `auth.type: oidc`, and the unmodified dask_gateway client with af_gateway_client's
BearerTokenAuth. Also the headless recipe: a CI job gets a token with the client-credentials grant.
"""

import pytest
import requests
import dask
from dask_gateway import Gateway

from af_e2e_support import client_credentials_token, oidc_gateway_config, start_gateway, stop


@pytest.fixture(scope="module")
def oidc_gateway(provider, tmp_path_factory):
    d = tmp_path_factory.mktemp("gw-oidc")
    proc, url, _log = start_gateway(d, oidc_gateway_config(provider, d))
    try:
        yield url
    finally:
        stop(proc)


@pytest.mark.timeout(180)
def test_ci_job_drives_a_cluster_with_a_client_credentials_token(provider, oidc_gateway, tmp_path, monkeypatch):
    # The CI recipe from the README: token from the provider into BEARER_TOKEN_FILE, and the
    # dask_gateway client configured to use af_gateway_client's bearer auth.
    token_file = tmp_path / "bt"
    token_file.write_text(client_credentials_token(provider, "ci-pipeline"))
    monkeypatch.setenv("BEARER_TOKEN_FILE", str(token_file))
    monkeypatch.delenv("BEARER_TOKEN", raising=False)
    with dask.config.set({"gateway.address": oidc_gateway, "gateway.auth.type": "af_gateway_client.BearerTokenAuth"}):
        gateway = Gateway()
        cluster = gateway.new_cluster(worker_cores=1)
        try:
            cluster.scale(1)
            client = cluster.get_client(set_as_default=False)
            client.wait_for_workers(1, timeout=60)
            assert client.submit(lambda x: x + 1, 41).result(timeout=60) == 42
            # the broker put the caller's token into the cluster: a task finds it the WLCG way
            from af_gateway_client import find_bearer_token
            found, where = client.submit(find_bearer_token, pure=False).result(timeout=60)
            assert found == token_file.read_text().strip()
            assert where.endswith("/bearer-token")
            listed = requests.get(f"{oidc_gateway}/api/af/clusters",
                                  headers={"Authorization": "Bearer " + token_file.read_text()}, timeout=10).json()
            assert [c["owner"] for c in listed["clusters"]] == ["ci-pipeline"]
            client.close()
        finally:
            cluster.shutdown()
        assert gateway.list_clusters() == []


@pytest.mark.timeout(60)
def test_tokens_the_gateway_refuses(provider, oidc_gateway, monkeypatch):
    monkeypatch.delenv("BEARER_TOKEN_FILE", raising=False)
    # without the required scope: 403 with the reason
    weak = client_credentials_token(provider, "alice", scope="openid compute.read")
    r = requests.get(f"{oidc_gateway}/api/v1/clusters/", headers={"Authorization": "Bearer " + weak}, timeout=10)
    assert r.status_code == 403 and "lacks the scope compute.create" in r.json()["error"]
    # a garbage token: 401 with a Bearer challenge
    r = requests.get(f"{oidc_gateway}/api/v1/clusters/", headers={"Authorization": "Bearer x.y.z"}, timeout=10)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    # no token anywhere: the client's auth class says where it looked
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/nonexistent")
    monkeypatch.setenv("BEARER_TOKEN", "")
    from af_gateway_client import BearerTokenAuth
    with pytest.raises(ValueError, match="No bearer token found"):
        Gateway(oidc_gateway, auth=BearerTokenAuth()).list_clusters()
