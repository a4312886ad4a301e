"""Bearer-token authentication for the ``dask_gateway`` client.

The token is found the way the WLCG Bearer Token Discovery document describes, and read again
each time the gateway asks for credentials, so a token file kept fresh by a token agent (or by
AF Gateway itself inside a cluster) is always used in its current state:

1. the ``BEARER_TOKEN`` environment variable (the token itself);
2. the file named by ``BEARER_TOKEN_FILE``;
3. ``$XDG_RUNTIME_DIR/bt_u<uid>``;
4. ``/tmp/bt_u<uid>``.

Use it directly::

    from dask_gateway import Gateway
    from af_gateway_client import BearerTokenAuth
    gateway = Gateway("https://af.example.org", auth=BearerTokenAuth())

or from the Dask configuration (``~/.config/dask/gateway.yaml``)::

    gateway:
      auth:
        type: af_gateway_client.BearerTokenAuth
"""

from dask_gateway.auth import GatewayAuth

from ._token import find_bearer_token

__all__ = ["BearerTokenAuth", "find_bearer_token"]


class BearerTokenAuth(GatewayAuth):
    """Authenticate to AF Gateway with an OAuth2 bearer access token.

    Parameters
    ----------
    token : str, optional
        A fixed token. By default the token is discovered (see the module documentation) each
        time the gateway challenges the client.
    """

    def __init__(self, token=None):
        self._token = token

    def pre_request(self, resp):
        token, where = (self._token, "the token argument") if self._token else find_bearer_token()
        if not token:
            raise ValueError(
                "No bearer token found for AF Gateway; looked in " + where
                + ". Set BEARER_TOKEN or BEARER_TOKEN_FILE, or pass token=..."
            )
        return {"Authorization": "Bearer " + token}, None
