"""Client-side helpers for AF Gateway.

``BearerTokenAuth`` (for the ``dask_gateway`` client) and :mod:`af_gateway_client.data` (reading
``davs://`` and ``root://`` storage with a fresh token; the ``data`` extra) are imported on first use,
so the ``af-gateway`` command line (:mod:`af_gateway_client.cli`) starts without loading
``dask_gateway``, fsspec or XRootD.
"""

from ._token import find_bearer_token

__all__ = ["BearerTokenAuth", "data", "find_bearer_token"]


def __getattr__(name):
    if name == "BearerTokenAuth":
        from .auth import BearerTokenAuth

        return BearerTokenAuth
    if name == "data":
        import importlib

        return importlib.import_module(".data", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
