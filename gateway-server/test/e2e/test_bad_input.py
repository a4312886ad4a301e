"""Bad requests get a precise JSON error, and never create anything.

One running cluster of alice's is shared by the module (no workers needed);
each test compares alice's cluster list, across every status, before and
after the bad requests.
"""

from __future__ import annotations

import aiohttp
import pytest
import requests
from dask_gateway.client import ClusterStatus

from conftest import IS_PEER, close_cluster, cluster_names, json_error, only_ours

ALL_STATUSES = ("pending", "running", "stopping", "stopped", "failed")


@pytest.fixture(scope="module")
def alice(server):
    return server.gateway("alice")


@pytest.fixture(scope="module")
def bob(server):
    return server.gateway("bob")


@pytest.fixture(scope="module")
def cluster(alice):
    c = alice.new_cluster(shutdown_on_close=True)
    yield c
    close_cluster(c)


@pytest.fixture
def unchanged(alice, bob, cluster):
    """Assert at teardown that no cluster appeared (for alice or bob) and
    that alice's cluster is still running."""
    before_a = cluster_names(alice, ALL_STATUSES)
    before_b = cluster_names(bob, ALL_STATUSES)
    yield
    assert cluster_names(alice, ALL_STATUSES) == before_a
    assert cluster_names(bob, ALL_STATUSES) == before_b
    assert alice.get_cluster(cluster.name).status is ClusterStatus.RUNNING


def post(server, path, user="alice", **kw):
    return requests.post(server.url(path), auth=server.auth(user), timeout=30, **kw)


# -- authentication -----------------------------------------------------------


def test_unauthenticated_request_is_challenged(server, unchanged):
    r = requests.get(server.url("/api/v1/clusters/"), timeout=30)
    assert r.status_code == 401
    json_error(r)
    challenge = r.headers.get("WWW-Authenticate", "")
    assert challenge.startswith("Basic"), challenge
    r = requests.post(
        server.url("/api/v1/clusters/"), json={"cluster_options": {}}, timeout=30
    )
    assert r.status_code == 401
    only_ours('the realm "af-gateway" of the challenge')
    assert challenge == 'Basic realm="af-gateway"'


def test_shared_password_is_enforced(make_server_fn):
    srv = make_server_fn("gw-pass", password="s3cret-e2e")
    r = requests.get(srv.url("/api/v1/clusters/"), auth=("alice", "wrong"), timeout=30)
    assert r.status_code == 401
    json_error(r)
    r = requests.get(srv.url("/api/v1/clusters/"), auth=("alice", "s3cret-e2e"), timeout=30)
    assert r.status_code == 200
    assert r.json() == {}
    # the client with the wrong password is refused, nothing is created
    bad = srv.gateway("alice", password="wrong")
    with pytest.raises(aiohttp.ClientResponseError) as info:
        bad.submit()
    assert info.value.status == 401
    assert srv.gateway("alice").list_clusters(status=list(ALL_STATUSES)) == []


# -- cluster options ----------------------------------------------------------


def test_unknown_cluster_option_is_422(server, alice, unchanged):
    with pytest.raises(ValueError, match="not_an_option"):
        alice.submit(not_an_option=3)
    r = post(server, "/api/v1/clusters/", json={"cluster_options": {"not_an_option": 3}})
    assert r.status_code == 422
    assert "not_an_option" in json_error(r)


@pytest.mark.parametrize(
    "options",
    [{"worker_cores": 99}, {"worker_cores": "two"}, {"worker_memory": 0.01}],
    ids=["above-max", "wrong-type", "below-min"],
)
def test_invalid_cluster_option_value_is_422(server, options, unchanged):
    # (the client validates these locally, so send them raw)
    r = post(server, "/api/v1/clusters/", json={"cluster_options": options})
    assert r.status_code == 422, (r.status_code, r.text[:300])
    field = next(iter(options))
    assert field in json_error(r)


# -- scale / adapt ------------------------------------------------------------


def test_negative_scale_is_422(server, alice, cluster, unchanged):
    with pytest.raises(ValueError):
        alice.scale_cluster(cluster.name, -1)
    r = post(server, f"/api/v1/clusters/{cluster.name}/scale", json={"count": -1})
    assert r.status_code == 422
    json_error(r)


@pytest.mark.parametrize("count", ["2", 1.5, None], ids=["string", "float", "null"])
def test_non_integer_scale_is_422(server, cluster, count, unchanged):
    r = post(server, f"/api/v1/clusters/{cluster.name}/scale", json={"count": count})
    assert r.status_code == 422, (r.status_code, r.text[:300])
    json_error(r)


# -- unknown cluster ------------------------------------------------------------


def test_unknown_cluster_is_404(server, alice, unchanged):
    name = "0123456789abcdef0123456789abcdef"
    with pytest.raises(ValueError):
        alice.get_cluster(name)
    with pytest.raises(ValueError):
        alice.scale_cluster(name, 1)
    with pytest.raises(ValueError):
        alice.adapt_cluster(name, minimum=0, maximum=1)
    r = requests.get(server.url(f"/api/v1/clusters/{name}"), auth=server.auth(), timeout=30)
    assert r.status_code == 404
    json_error(r)
    for path, body in [("scale", {"count": 1}), ("adapt", {"minimum": 0, "maximum": 1})]:
        r = post(server, f"/api/v1/clusters/{name}/{path}", json=body)
        assert r.status_code == 404, (path, r.status_code, r.text[:200])
        json_error(r)


def test_overlong_path_parameter_is_answered_in_the_gateway_error_format(server, unchanged):
    # The router refuses a path parameter over 100 characters before any route runs; the answer
    # is still the gateway's error body (error.json), not the web framework's own.
    if IS_PEER:
        pytest.skip("peer mode: the peer has its own error format")
    r = requests.get(server.url("/api/v1/clusters/" + "a" * 200), auth=server.auth(), timeout=30)
    assert r.status_code == 414, (r.status_code, r.text[:300])
    json_error(r)
    body = r.json()
    assert body["code"] == "bad_request", body
    assert body.get("request_id") and "statusCode" not in body, body


# -- malformed JSON -------------------------------------------------------------


@pytest.mark.parametrize("where", ["create", "scale", "adapt"])
def test_malformed_json_is_400(server, cluster, where, unchanged):
    path = {
        "create": "/api/v1/clusters/",
        "scale": f"/api/v1/clusters/{cluster.name}/scale",
        "adapt": f"/api/v1/clusters/{cluster.name}/adapt",
    }[where]
    r = post(
        server,
        path,
        data=b'{"cluster_options": {"worker_cores": 1,',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code >= 400, r.status_code
    if IS_PEER:
        # the peer answers 500 here; the unchanged-fixture still checks
        # that nothing was created
        pytest.skip(f"peer mode: peer answers {r.status_code} to malformed JSON")
    assert r.status_code == 400, (r.status_code, r.text[:300])
    json_error(r)


# -- another user -----------------------------------------------------------------


def test_other_user_does_not_see_the_cluster(bob, cluster, unchanged):
    assert cluster.name not in cluster_names(bob, ALL_STATUSES)


def test_other_user_gets_403(server, bob, cluster, unchanged):
    name = cluster.name
    for call in (
        lambda: bob.get_cluster(name),
        lambda: bob.scale_cluster(name, 1),
        lambda: bob.adapt_cluster(name, minimum=0, maximum=2),
        lambda: bob.stop_cluster(name),
    ):
        with pytest.raises(aiohttp.ClientResponseError) as info:
            call()
        assert info.value.status == 403
    raw = [
        ("GET", f"/api/v1/clusters/{name}", None),
        ("POST", f"/api/v1/clusters/{name}/scale", {"count": 1}),
        ("POST", f"/api/v1/clusters/{name}/adapt", {"minimum": 0, "maximum": 2}),
        ("DELETE", f"/api/v1/clusters/{name}", None),
    ]
    for method, path, body in raw:
        r = requests.request(
            method, server.url(path), json=body, auth=server.auth("bob"), timeout=30
        )
        assert r.status_code == 403, (method, path, r.status_code, r.text[:200])
        json_error(r)


def test_other_user_gets_403_on_dashboard(server, cluster, unchanged):
    only_ours("dashboard authorization")
    link = server.url(f"/clusters/{cluster.name}/status")
    r = requests.get(link, auth=server.auth("bob"), timeout=30, allow_redirects=False)
    assert r.status_code == 403, (r.status_code, r.text[:200])
    r = requests.get(link, auth=server.auth("alice"), timeout=30, allow_redirects=False)
    assert r.status_code == 303 and f"/clusters/{cluster.name}/~" in r.headers["Location"], (r.status_code, r.text[:200])
    # following it to her capability path, alice gets her dashboard
    r = requests.get(link, auth=server.auth("alice"), timeout=30)
    assert r.status_code == 200, (r.status_code, r.text[:200])
