"""The `jupyterhub` authentication type against a real JupyterHub (its REST API checks the tokens).

JupyterHub runs from the pinned venv with configurable-http-proxy from node_modules; the gateway
runs with `auth.type: jupyterhub`, registered as the Hub service `af-gateway` and reached through
the Hub's proxy under /services/af-gateway/; the unmodified dask_gateway client uses JupyterHubAuth
and a browser session logs in through the Hub's OAuth.
"""

import os
import re
import subprocess
import sys

import pytest
import requests
from dask_gateway import Gateway, JupyterHubAuth

from af_e2e_support import free_port, hub_config, start_gateway, stop, wait_http

ALICE_TOKEN = "alice-hub-token-" + os.urandom(8).hex()
SERVICE_TOKEN = "af-gateway-service-token-" + os.urandom(8).hex()
BOB_TOKEN = "bob-hub-token-" + os.urandom(8).hex()
# a Hub service of the test itself, allowed to change users and their tokens (what the Hub's admin does)
HUB_ADMIN_TOKEN = "e2e-hub-admin-token-" + os.urandom(8).hex()


@pytest.fixture(scope="module")
def ports():
    return {"hub": free_port(), "proxy": free_port(), "proxy_api": free_port(), "gateway": free_port()}


def _hub_api(ports):
    return f"http://127.0.0.1:{ports['hub']}/hub/api"


def _callback(ports):
    return f"http://127.0.0.1:{ports['proxy']}/services/af-gateway/oauth_callback"


@pytest.fixture(scope="module")
def hub(tmp_path_factory, ports, hub_gateway):
    """JupyterHub with the gateway registered as the service af-gateway. Started after the
    gateway: the Hub waits at start-up until its services answer."""
    d = tmp_path_factory.mktemp("hub")
    callback = _callback(ports)
    public = f"http://127.0.0.1:{ports['proxy']}"
    (d / "jupyterhub_config.py").write_text(
        hub_config(d, ports) + f"""
c.JupyterHub.authenticator_class = 'dummy'
c.Authenticator.allowed_users = {{'alice', 'bob', 'carol', 'dave'}}
c.Authenticator.admin_users = {{'carol'}}
c.JupyterHub.load_groups = {{'physicists': {{'users': ['alice']}}}}
c.JupyterHub.api_tokens = {{{ALICE_TOKEN!r}: 'alice', {BOB_TOKEN!r}: 'bob'}}
c.JupyterHub.services = [{{
    'name': 'af-gateway',
    'url': 'http://127.0.0.1:{ports['gateway']}',
    'api_token': {SERVICE_TOKEN!r},
    'oauth_client_id': 'service-af-gateway',
    'oauth_redirect_uri': {callback!r},
    'oauth_no_confirm': True,
}}, {{'name': 'e2e-hub-admin', 'api_token': {HUB_ADMIN_TOKEN!r}}}]
c.JupyterHub.load_roles = [{{'name': 'user', 'scopes': ['self', 'access:services']}},
                           {{'name': 'admin', 'services': ['e2e-hub-admin']}}]  # only admins change admins
"""
    )
    log = d / "hub.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(d / "jupyterhub_config.py")],
            cwd=d, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        wait_http(f"http://127.0.0.1:{ports['hub']}/hub/api/", proc, log)
        # the proxy learns its routes a moment after the Hub's API answers
        wait_http(f"{public}/hub/login", proc, log, ok=lambda r: r.status_code == 200, timeout=30)
        yield {"api": _hub_api(ports), "public": public, "gateway": hub_gateway}
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def hub_gateway(ports, tmp_path_factory):
    d = tmp_path_factory.mktemp("gw-hub")
    proc, url, _log = start_gateway(d, {
        "listen": f"127.0.0.1:{ports['gateway']}",
        "data_dir": str(d / "data"),
        "base_path": "/services/af-gateway/",
        "accounts": {"name_template": "af-{user}"},
        "auth": {"type": "jupyterhub", "jupyterhub": {
            "api_url": _hub_api(ports), "api_token": SERVICE_TOKEN, "client_id": "service-af-gateway",
            "oauth_callback_url": _callback(ports)}},
    })
    try:
        yield url
    finally:
        stop(proc)


@pytest.mark.timeout(180)
def test_hub_token_works_with_the_unmodified_client(hub):
    hub_gateway = hub["gateway"]
    with Gateway(hub_gateway, auth=JupyterHubAuth(api_token=ALICE_TOKEN)) as gw:
        cluster = gw.new_cluster()
        try:
            assert [c.name for c in gw.list_clusters()] == [cluster.name]
            # bob's Hub token sees nothing of alice's and may not touch it
            with Gateway(hub_gateway, auth=JupyterHubAuth(api_token=BOB_TOKEN)) as bob:
                assert bob.list_clusters() == []
                r = requests.get(f"{hub_gateway}/api/v1/clusters/{cluster.name}",
                                 headers={"Authorization": f"jupyterhub {BOB_TOKEN}"}, timeout=10)
                assert r.status_code == 403
        finally:
            cluster.shutdown()


@pytest.mark.timeout(60)
def test_challenge_and_refused_tokens(hub):
    hub_gateway = hub["gateway"]
    r = requests.get(f"{hub_gateway}/api/v1/clusters/", timeout=10)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == "jupyterhub"
    r = requests.get(f"{hub_gateway}/api/v1/clusters/",
                     headers={"Authorization": "jupyterhub not-a-token"}, timeout=10)
    assert r.status_code == 401
    assert "JupyterHub did not accept" in r.json()["error"]
    # the dask_gateway client surfaces the refusal instead of hanging or crashing
    with Gateway(hub_gateway, auth=JupyterHubAuth(api_token="not-a-token")) as gw:
        with pytest.raises(Exception, match="401"):
            gw.list_clusters()


@pytest.mark.timeout(60)
def test_hub_tokens_without_the_services_access_scope_are_refused(hub):
    """A hostile bob holds Hub tokens that the Hub made for other purposes: one limited to his
    servers, one for another service, and the gateway's own service token leaked to him. None of
    them carries access:services!service=af-gateway, so none is admitted (JupyterHub lists a token's
    scopes in /hub/api/user)."""
    gateway = hub["gateway"]

    def hub_token(scopes):
        r = requests.post(f"{hub['api']}/users/bob/tokens", json={"scopes": scopes, "note": "e2e"},
                          headers={"Authorization": f"token {BOB_TOKEN}"}, timeout=10)
        assert r.status_code in (200, 201), r.text
        return r.json()["token"]

    for scopes in (["access:servers!user=bob"], ["access:services!service=elsewhere"]):
        r = requests.get(f"{gateway}/api/v1/clusters/",
                         headers={"Authorization": f"jupyterhub {hub_token(scopes)}"}, timeout=10)
        assert r.status_code == 403, (scopes, r.status_code, r.text)
        assert r.json()["code"] == "missing_hub_scope"
        assert "access:services!service=af-gateway" in r.json()["error"]
    # a service's token is no user's
    r = requests.get(f"{gateway}/api/v1/clusters/", headers={"Authorization": f"jupyterhub {SERVICE_TOKEN}"}, timeout=10)
    assert r.status_code == 401, r.text
    assert "service" in r.json()["error"]
    # bob's token for this service still works
    r = requests.get(f"{gateway}/api/v1/clusters/",
                     headers={"Authorization": f"jupyterhub {hub_token(['access:services!service=af-gateway'])}"}, timeout=10)
    assert r.status_code == 200, r.text


def _browser_login(hub, name):
    """A browser logged in to the Hub as `name`, then to the gateway through the Hub's OAuth."""
    public = hub["public"]
    browser = requests.Session()
    page = browser.get(f"{public}/hub/login", timeout=10)
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
    form = {"username": name, "password": "any"}
    if xsrf:
        form["_xsrf"] = xsrf.group(1)
    r = browser.post(f"{public}/hub/login", data=form, allow_redirects=False, timeout=10)
    assert r.status_code == 302, r.text[:500]

    service = f"{public}/services/af-gateway"
    r = browser.get(f"{service}/api/af/hub-login", params={"next": "/services/af-gateway/api/af/clusters"}, timeout=20)
    assert r.status_code == 200, (r.status_code, r.url, r.text[:500])
    assert r.url == f"{service}/api/af/clusters"
    assert r.json() == {"clusters": []}
    return browser


@pytest.mark.timeout(180)
def test_browser_session_under_the_hub_origin(hub):
    """A browser logged in to the Hub reaches the gateway at /services/af-gateway/ through the
    Hub's OAuth, sees its own clusters and opens a dashboard there."""
    public = hub["public"]
    service = f"{public}/services/af-gateway"
    browser = _browser_login(hub, "alice")

    # alice's cluster, made with the client (scheduler traffic straight to the gateway's port),
    # shows in the browser session, and its dashboard opens under the Hub's origin
    gw_port = int(hub["gateway"].rsplit(":", 1)[1])
    with Gateway(service, proxy_address=gw_port, auth=JupyterHubAuth(api_token=ALICE_TOKEN)) as gw:
        cluster = gw.new_cluster()
        try:
            listed = browser.get(f"{service}/api/af/clusters", timeout=10).json()["clusters"]
            assert [(c["name"], c["owner"]) for c in listed] == [(cluster.name, "alice")]
            assert cluster.dashboard_link == f"{service}/clusters/{cluster.name}/status"
            dash = browser.get(cluster.dashboard_link, timeout=20)
            assert dash.status_code == 200 and "bokeh" in dash.text
            # the bokeh WebSocket through the Hub's proxy and the base path
            import asyncio
            import aiohttp

            async def ws_status():
                cookies = {c.name: c.value for c in browser.cookies}
                async with aiohttp.ClientSession(cookies=cookies) as s:
                    async with s.ws_connect(f"{service.replace('http', 'ws')}/clusters/{cluster.name}/status/ws",
                                            origin=public) as ws:
                        return ws.closed

            assert asyncio.run(ws_status()) is False
            cluster.scale(1)
            client = cluster.get_client(set_as_default=False)
            client.wait_for_workers(1, timeout=60)
            assert client.submit(lambda x: x * 2, 21).result(timeout=60) == 42
            client.close()
        finally:
            cluster.shutdown()
    # without the Hub login, the service path answers 401 and points at the login
    anon = requests.get(f"{service}/api/af/clusters", timeout=10)
    assert anon.status_code == 401


def _poll(probe, limit, what):
    """Calls `probe` every half second until it holds; the seconds it took, or a failure after `limit`."""
    import time
    start = time.monotonic()
    while not probe():
        assert time.monotonic() - start < limit, f"{what}: not within {limit} s"
        time.sleep(0.5)
    return time.monotonic() - start


# The gateway asks the Hub about a Hub login's session again a minute after its last answer
# (JupyterHubAuthenticator.cacheSeconds); 20 s on top for a loaded machine.
HUB_CACHE_S = 60
SLACK_S = 20


@pytest.mark.timeout(HUB_CACHE_S + 3 * SLACK_S + 60)
def test_a_hub_login_session_follows_the_hub(hub):
    """Hostile users who keep their gateway cookie after the Hub changed its mind: carol, an admin
    at the Hub, is demoted there and loses the admin view (every user's clusters) within the
    Hub's cache period; dave's Hub token behind his session is revoked at the Hub and his cookie
    gets a 401. Before the fix both kept the rights of their login for auth.session_max_age (24 h)."""
    service = f"{hub['public']}/services/af-gateway"
    admin = {"Authorization": f"token {HUB_ADMIN_TOKEN}"}
    carol = _browser_login(hub, "carol")
    dave = _browser_login(hub, "dave")
    assert carol.get(f"{service}/api/af/clusters", params={"all": "true"}, timeout=10).status_code == 200

    r = requests.patch(f"{hub['api']}/users/carol", json={"admin": False}, headers=admin, timeout=10)
    assert r.status_code == 200, r.text
    tokens = requests.get(f"{hub['api']}/users/dave/tokens", headers=admin, timeout=10)
    assert tokens.status_code == 200, tokens.text
    listed = [t for key in ("api_tokens", "oauth_tokens") for t in tokens.json().get(key, [])]
    assert listed, tokens.text  # the token the Hub gave the gateway at dave's login
    for t in listed:
        r = requests.delete(f"{hub['api']}/users/dave/tokens/{t['id']}", headers=admin, timeout=10)
        assert r.status_code == 204, r.text

    took = _poll(lambda: carol.get(f"{service}/api/af/clusters", params={"all": "true"}, timeout=10).status_code == 403,
                 HUB_CACHE_S + SLACK_S, "the demoted admin refused the admin view")
    print(f"demoted admin refused after {took:.1f} s")
    # carol keeps her own view: her session lives on with the rights the Hub gives her now
    assert carol.get(f"{service}/api/af/clusters", timeout=10).status_code == 200
    _poll(lambda: dave.get(f"{service}/api/af/clusters", timeout=10).status_code == 401,
          SLACK_S, "the session of the revoked token refused")
