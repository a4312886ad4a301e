"""WLCG bearer-token discovery, without dependencies (the ``af-gateway`` command line uses it
without loading ``dask_gateway``); :mod:`af_gateway_client.auth` documents the order."""

import os
from pathlib import Path

__all__ = ["find_bearer_token"]


def _read(path):
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


def find_bearer_token(environ=None):
    """Return ``(token, where)`` from WLCG bearer-token discovery, or ``(None, places tried)``."""
    env = os.environ if environ is None else environ
    tried = []
    token = (env.get("BEARER_TOKEN") or "").strip()
    if token:
        return token, "BEARER_TOKEN"
    tried.append("BEARER_TOKEN")
    candidates = []
    if env.get("BEARER_TOKEN_FILE"):
        candidates.append(env["BEARER_TOKEN_FILE"])
    else:
        tried.append("BEARER_TOKEN_FILE")
    uid = os.getuid()
    if env.get("XDG_RUNTIME_DIR"):
        candidates.append(os.path.join(env["XDG_RUNTIME_DIR"], f"bt_u{uid}"))
    candidates.append(f"/tmp/bt_u{uid}")
    for path in candidates:
        token = _read(path)
        if token:
            return token, path
        tried.append(path)
    return None, ", ".join(tried)
