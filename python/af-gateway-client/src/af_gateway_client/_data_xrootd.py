"""``root://`` for :mod:`af_gateway_client.data`: fsspec-xrootd with one XRootD connection per token.

XRootD authenticates a connection once, when it logs in, and the storage checks the token of that
login for every later open on it: a connection made with a token that has since expired refuses
every new open, however fresh the token file is. The XRootD client keeps a connection per host,
port and user name, so each open here names the user ``t<7 hex digits of the token's SHA-256>``:
a new token gets a new connection, whose ``ztn`` login reads the token from the discovery location
(the same places, in the same order, as :func:`af_gateway_client.find_bearer_token`), and files
opened earlier keep reading on theirs. Idle connections close after the client's data-server TTL
(``XRD_DATASERVERTTL``, 300 s by default).
"""

from __future__ import annotations

import hashlib
import re
from contextlib import contextmanager

from fsspec_xrootd import XRootDFileSystem
from XRootD import client

from ._token import find_bearer_token
from .data import BearerTokenNotFound, StorageAccessDenied, StorageError, _NotFound, export_xrootd_trust, scrub

__all__ = ["BearerXRootDFileSystem", "token_user"]

# kXR_NotAuthorized (3010) and kXR_AuthFailed (3030) from the server, the client's own "Auth failed".
_REFUSED = re.compile(r"\[30(10|30)\]|auth(entication)? failed|permission denied|not authori[sz]ed|token", re.IGNORECASE)
_MISSING = re.compile(r"\[3011\]|no such file", re.IGNORECASE)
_CHANNEL_USER = re.compile(r"(://)t[0-9a-f]{7}@")


def token_user(token: str) -> str:
    """The XRootD user name of the connection for ``token``: a one-way digest, not the token."""
    return "t" + hashlib.sha256(token.encode()).hexdigest()[:7]


class BearerXRootDFileSystem(XRootDFileSystem):
    """fsspec-xrootd's filesystem opening each file on the connection of the token found at that moment.

    ``locate_all_sources`` is off by default: on a refused open it would ask the redirector for other
    hosts and answer "no hosts" instead of the storage's own words.
    """

    def __init__(self, hostid: str, scheme: str = "root", locate_all_sources: bool = False, **storage_options):
        export_xrootd_trust()
        host = hostid.rsplit("@", 1)[-1]  # a user name in the PFN would pin one connection (and one token)
        self.__dict__["_ready"] = False
        self._scheme = "roots" if scheme == "roots" else "root"
        self._host = host
        super().__init__(host, locate_all_sources=locate_all_sources, **storage_options)
        self.__dict__["_ready"] = True

    @staticmethod
    def _get_kwargs_from_urls(u):
        url = client.URL(u)
        return {"hostid": url.hostid, "scheme": url.protocol}

    # fsspec-xrootd makes one client.FileSystem at construction and uses it for stat, ls, mkdir, rm:
    # here each use gets one on the current token's connection.
    @property
    def _myclient(self):
        if not self.__dict__.get("_ready"):
            return self.__dict__["_plain_client"]
        return client.FileSystem(self._channel())

    @_myclient.setter
    def _myclient(self, value):
        self.__dict__["_plain_client"] = value

    def _pfn(self, path) -> str:
        path = str(path or "")
        return f"{self._scheme}://{self._host}/{path}"

    def _channel(self, path=None) -> str:
        token, where = find_bearer_token()
        if not token:
            raise BearerTokenNotFound(where, self._pfn(path) if path else None)
        return f"{self._scheme}://{token_user(token)}@{self._host}/"

    def unstrip_protocol(self, name: str) -> str:
        """The URL XRootD opens ``name`` at: on the current token's connection."""
        if "://" in name:
            name = self._strip_protocol(name)
        return self._channel(name) + name

    @contextmanager
    def _translated(self, path, operation: str):
        try:
            yield
        except StorageError:
            raise
        except OSError as exc:
            raise self._translate(exc, path, operation) from None

    def _translate(self, exc: OSError, path, operation: str) -> OSError:
        pfn = self._pfn(path)
        message = _CHANNEL_USER.sub(r"\1", scrub(str(exc)))
        if _REFUSED.search(message):
            return StorageAccessDenied(pfn, "XRootD: " + message.strip(), operation)
        if _MISSING.search(message):
            return _NotFound(pfn)
        return StorageError(f"{pfn}: {message}")

    def _open(self, path, mode="rb", **kwargs):
        operation = "read" if "r" in mode and "+" not in mode else "write"
        with self._translated(path, operation):
            return super()._open(path, mode=mode, **kwargs)

    async def _exists(self, path, **kwargs):
        # fsspec-xrootd's answers False for any error response, a refusal included
        try:
            await self._info(path)
            return True
        except FileNotFoundError:
            return False

    def mv(self, path1, path2, **kwargs):
        with self._translated(path1, "modify"):
            return super().mv(path1, path2, **kwargs)


def _translating(name: str, operation: str):
    parent = getattr(XRootDFileSystem, name)

    async def method(self, path, *args, **kwargs):
        with self._translated(path, operation):
            return await parent(self, path, *args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = parent.__doc__
    return method


for _name, _operation in (
    ("_cat_file", "read"),
    ("_cat_vector_read", "read"),
    ("_get_file", "read"),
    ("_info", "read"),
    ("_ls", "read"),
    ("_touch", "write"),
    ("_mkdir", "write"),
    ("_makedirs", "write"),
    ("_rm_file", "modify"),
    ("_rmdir", "modify"),
):
    setattr(BearerXRootDFileSystem, _name, _translating(_name, _operation))
