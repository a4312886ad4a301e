"""The token broker takes a user's tokens from JupyterHub's auth_state.

The whole chain is real: an OpenID provider (oidc-provider), JupyterHub logging users in there
with oauthenticator's GenericOAuthenticator (auth_state enabled, so the Hub keeps the access and
refresh tokens), and the gateway registered as a Hub service with the admin:auth_state scope. A
browser logs in to the Hub at the provider, then reaches the gateway under the Hub's origin; the
broker adopts and refreshes the tokens from auth_state.
"""

import base64
import json
import os
import re
import subprocess
import sys
import time

import pytest
import requests

from af_e2e_support import free_port, hub_config, start_gateway, start_provider, stop, wait_http

SERVICE_TOKEN = "af-gateway-service-" + os.urandom(8).hex()
HUB_CLIENT = {"client_id": "jupyterhub", "client_secret": "hub-secret-" + os.urandom(4).hex()}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    d = tmp_path_factory.mktemp("hubstate")
    p = {k: free_port() for k in ("op", "hub", "proxy", "proxy_api", "gateway")}
    public = f"http://127.0.0.1:{p['proxy']}"
    issuer = f"http://127.0.0.1:{p['op']}"
    procs = []
    try:
        # 1. the provider, with a login client for the Hub
        op, info = start_provider(d, {"OIDC_PORT": str(p["op"]), "OIDC_EXTRA_CLIENTS": json.dumps(
            [{**HUB_CLIENT, "redirect_uris": [f"{public}/hub/oauth_callback"]}])})
        procs.append(op)
        assert info["issuer"] == issuer
        # 2. the gateway (before the Hub, which waits for its services)
        gw, _url, gw_log = start_gateway(d, {
            "listen": f"127.0.0.1:{p['gateway']}",
            "data_dir": str(d / "data"),
            "base_path": "/services/af-gateway/",
            "accounts": {"name_template": "af-{user}"},
            "auth": {
                "type": "jupyterhub",
                "jupyterhub": {"api_url": f"http://127.0.0.1:{p['hub']}/hub/api", "api_token": SERVICE_TOKEN,
                               "client_id": "service-af-gateway",
                               "oauth_callback_url": f"{public}/services/af-gateway/oauth_callback"},
                # the provider the Hub logs users in at: the broker refreshes their tokens there,
                # as the same client as the Hub (refresh tokens belong to the client they were issued to)
                "oidc": {"issuer": issuer, "audience": ["af-gateway"], **HUB_CLIENT,
                         "token_params": {"resource": "urn:af-gateway"}},
            },
        })
        procs.append(gw)
        # 3. JupyterHub logging in at the provider, keeping tokens in auth_state
        (d / "jupyterhub_config.py").write_text(hub_config(d, p) + f"""c.JupyterHub.authenticator_class = 'generic-oauth'
c.GenericOAuthenticator.client_id = {HUB_CLIENT['client_id']!r}
c.GenericOAuthenticator.client_secret = {HUB_CLIENT['client_secret']!r}
c.GenericOAuthenticator.oauth_callback_url = '{public}/hub/oauth_callback'
c.GenericOAuthenticator.authorize_url = '{issuer}/auth'
c.GenericOAuthenticator.token_url = '{issuer}/token'
c.GenericOAuthenticator.userdata_from_id_token = True
c.GenericOAuthenticator.username_claim = 'sub'
c.GenericOAuthenticator.scope = ['openid', 'offline_access', 'compute.create']
c.GenericOAuthenticator.extra_authorize_params = {{'resource': 'urn:af-gateway', 'prompt': 'consent'}}
c.GenericOAuthenticator.token_params = {{'resource': 'urn:af-gateway'}}
c.GenericOAuthenticator.allow_all = True
c.GenericOAuthenticator.enable_auth_state = True
c.JupyterHub.services = [{{
    'name': 'af-gateway', 'url': 'http://127.0.0.1:{p['gateway']}', 'api_token': {SERVICE_TOKEN!r},
    'oauth_client_id': 'service-af-gateway',
    'oauth_redirect_uri': '{public}/services/af-gateway/oauth_callback', 'oauth_no_confirm': True,
}}]
c.JupyterHub.load_roles = [
    {{'name': 'user', 'scopes': ['self', 'access:services']}},
    {{'name': 'af-gateway-broker', 'scopes': ['admin:auth_state', 'read:users'], 'services': ['af-gateway']}},
]
""")
        hub_log = d / "hub.log"
        env = dict(os.environ, JUPYTERHUB_CRYPT_KEY=base64.b16encode(os.urandom(32)).decode().lower())
        with open(hub_log, "w") as out:
            hub = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(d / "jupyterhub_config.py")],
                                   cwd=d, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        procs.append(hub)
        wait_http(f"{public}/hub/login", hub, hub_log, ok=lambda r: r.status_code == 200)
        yield {"public": public, "issuer": issuer, "logs": {"hub": hub_log, "gateway": gw_log}}
    finally:
        for proc in reversed(procs):
            stop(proc)


def _browser_login_at_hub(public, user):
    """A browser logging in to the Hub, which sends it to the provider's login and consent pages."""
    b = requests.Session()
    r = b.get(f"{public}/hub/oauth_login", timeout=20)
    for _ in range(5):
        form = re.search(r'<form[^>]*action="([^"]+)"', r.text)
        prompt = re.search(r'name="prompt" value="([^"]+)"', r.text)
        if not form or not prompt:
            break
        data = {"prompt": prompt.group(1)}
        if data["prompt"] == "login":
            data.update(login=user, password="any")
        r = b.post(requests.compat.urljoin(r.url, form.group(1)), data=data, timeout=20)
    assert "jupyterhub-session-id" in b.cookies or any(c.name.startswith("jupyterhub") for c in b.cookies), r.text[:1000]
    return b


@pytest.mark.timeout(180)
def test_broker_takes_and_refreshes_tokens_from_hub_auth_state(stack):
    public = stack["public"]
    browser = _browser_login_at_hub(public, "alice")
    service = f"{public}/services/af-gateway"
    r = browser.get(f"{service}/api/af/hub-login", params={"next": "/services/af-gateway/api/af/token"}, timeout=20)
    assert r.status_code == 200, (r.url, r.text[:500], stack["logs"]["gateway"].read_text()[-2000:])
    # the broker reads auth_state right after the login; give it a moment
    deadline = time.monotonic() + 20
    status = r.json()
    assert "source" in status, (r.url, status)
    while status["source"] != "hub" and time.monotonic() < deadline:
        time.sleep(0.3)
        status = browser.get(f"{service}/api/af/token", timeout=10).json()
        assert "source" in status, status
    assert status["source"] == "hub", (status, stack["logs"]["gateway"].read_text()[-3000:])
    assert status["user"] == "alice" and status["subject"] == "alice"
    assert status["issuer"] == stack["issuer"] and status["audience"] == ["af-gateway"]
    assert status["refresh"]["state"] == "ok" and status["seconds_left"] > 0
    # the refresh token from auth_state works at the provider through the broker
    refreshed = browser.post(f"{service}/api/af/token/refresh", timeout=20).json()
    assert refreshed["refresh"]["state"] == "ok", refreshed
    assert refreshed["last_refresh"] >= status["last_refresh"]
