"""Client-side helpers for AF Gateway.

``BearerTokenAuth`` (for the ``dask_gateway`` client) is imported on first use, so the
``af-gateway`` command line (:mod:`af_gateway_client.cli`) starts without loading ``dask_gateway``.
"""

from ._token import find_bearer_token

__all__ = ["BearerTokenAuth", "find_bearer_token"]


def __getattr__(name):
    if name == "BearerTokenAuth":
        from .auth import BearerTokenAuth

        return BearerTokenAuth
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
