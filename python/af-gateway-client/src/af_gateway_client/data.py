"""Read your storage files (``davs://``, ``https://``, ``root://`` PFNs from Rucio) with a fresh token.

Your access token lives minutes; AF Gateway keeps a fresh one at the WLCG bearer-token discovery
location (``BEARER_TOKEN``, ``BEARER_TOKEN_FILE``, ``$XDG_RUNTIME_DIR/bt_u<uid>``, ``/tmp/bt_u<uid>``)
of your notebook and of every worker of your clusters. This module reads that location again for
every request it makes to the storage, so an analysis of hours outlives any single token::

    import uproot
    from af_gateway_client import data

    events = uproot.open(pfn, **data.uproot_options(pfn))["Events"]   # or {pfn: "Events"}
    with data.open(pfn) as f:                                          # any other reader
        head = f.read(4)

``storage_options(pfn)`` gives the options for ``fsspec.open(pfn, **...)`` (and everything built on
fsspec), ``fs_for(pfn)`` the fsspec filesystem itself.

- ``davs://`` and ``https://`` go through fsspec's HTTP filesystem (aiohttp); ``davs://host:port/path``
  is read as ``https://host:port/path``. The token travels in an ``Authorization: Bearer`` header of
  each request, over HTTPS only, and is taken off the request once its answer has arrived. Plain
  ``fsspec.open("davs://...")`` and ``uproot.open("davs://...")`` use this filesystem too.
- ``root://`` goes through ``fsspec-xrootd``; the XRootD client hands the token to the storage with
  its ``ztn`` security protocol, which reads it from the same discovery location. XRootD
  authenticates a connection once, so each token gets a connection of its own: the connection's
  user name is ``t`` and 7 hex digits of the token's SHA-256 (a name, not the token; it cannot be
  turned back into it), and a file is opened on the connection of the token found at that moment.

The storage's certificate authority: HTTPS trusts the system's store (which honours
``SSL_CERT_FILE`` and ``SSL_CERT_DIR``) plus the directory ``X509_CERT_DIR`` and the files
``X509_CERT_FILE``, ``REQUESTS_CA_BUNDLE`` and ``SSL_CERT_FILE`` name. The XRootD client reads only
``X509_CERT_DIR`` and ``X509_CERT_FILE`` (default ``/etc/grid-security/certificates``); when neither is
set, the first ``root://`` filesystem of the process sets ``X509_CERT_FILE`` from ``SSL_CERT_FILE`` or
``REQUESTS_CA_BUNDLE`` and ``X509_CERT_DIR`` to the grid directory or the system's, before the client's
first TLS connection (it reads them once per process).

No token is ever put in a URL, a log line, an error or a repr. Errors say what to do:
:class:`BearerTokenNotFound` where it looked, :class:`StorageAccessDenied` which file and which scope
is likely missing.
"""

from __future__ import annotations

import logging
import os
import re
import ssl
from urllib.parse import urlsplit

import aiohttp
import fsspec
from fsspec.implementations.http import HTTPFileSystem

from ._token import find_bearer_token

__all__ = [
    "BearerHTTPFileSystem",
    "BearerTokenNotFound",
    "StorageAccessDenied",
    "StorageError",
    "fs_for",
    "open",
    "storage_options",
    "uproot_options",
]

logger = logging.getLogger(__name__)

#: fsspec protocol names of this module's filesystems (registered as entry points and on import).
DAVS_PROTOCOL = "afdavs"
ROOT_PROTOCOL = "afroot"

_HTTP_SCHEMES = ("davs", "https")
_ROOT_SCHEMES = ("root", "roots")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")

#: The scope each kind of operation needs, per the WLCG token profile.
SCOPE_FOR = {"read": "storage.read:/", "write": "storage.create:/", "modify": "storage.modify:/"}


class StorageError(OSError, aiohttp.ClientError):
    """The storage could not serve a request (the message names the file, never the token).

    It is also an :class:`aiohttp.ClientError` so that aiohttp passes it on unchanged when the
    filesystem raises it inside a request.
    """


class BearerTokenNotFound(PermissionError, StorageError):
    """No access token at the WLCG discovery location. ``where`` lists the places looked at."""

    def __init__(self, where: str, url: str | None = None):
        self.where = where
        self.url = url
        what = f" to read {url}" if url else ""
        super().__init__(
            f"No access token found{what}: looked in {where}. Log in in the Lab's token panel (the key icon, "
            "Access token → Log in): AF Gateway then keeps a fresh token at that place for your notebook and "
            "your workers. Outside AF Gateway, set BEARER_TOKEN_FILE to a file holding your access token."
        )

    def __reduce__(self):  # rebuilt from its parts: Dask sends a worker's errors to the notebook pickled
        return type(self), (self.where, self.url)


class StorageAccessDenied(PermissionError, StorageError):
    """The storage refused the token for a file: ``url`` (without any token), ``refusal`` (its words,
    e.g. ``HTTP 403 Forbidden``), ``scope`` (the scope this operation needs)."""

    def __init__(self, url: str, refusal: str, operation: str = "read"):
        self.url = url
        self.refusal = refusal
        self.operation = operation
        self.scope = SCOPE_FOR.get(operation, SCOPE_FOR["read"])
        verb = {"read": "read", "write": "write", "modify": "change or delete"}.get(operation, operation)
        super().__init__(
            f"The storage refused to let you {verb} {url} ({refusal}). Your access token was sent but not accepted "
            f"for this file: it most likely lacks the scope {self.scope} (or a narrower {self.scope.rstrip('/')}<path> "
            "covering this path), is meant for another audience than this storage, or has expired. Log in again in "
            f"the Lab's token panel and retry; if the storage still refuses, ask your facility for the {self.scope} scope."
        )

    def __reduce__(self):
        return type(self), (self.url, self.refusal, self.operation)


def scrub(text: str, token: str | None = None) -> str:
    """``text`` without ``token`` and without anything shaped like a JWT."""
    if token:
        text = text.replace(token, "<token>")
    return _JWT.sub("<token>", text)


def display_url(url) -> str:
    """A URL as errors show it: scheme, host, port and path; no user, password, query or fragment."""
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _scheme(pfn: str) -> str:
    if not isinstance(pfn, str):
        raise TypeError(f"a PFN is a string such as davs://host:port/path, not {type(pfn).__name__}")
    scheme = urlsplit(pfn).scheme.lower()
    if scheme in _HTTP_SCHEMES or scheme in _ROOT_SCHEMES:
        return scheme
    shown = display_url(pfn) if scheme else repr(scrub(pfn[:200]))
    raise ValueError(f"{shown}: the data helper reads davs://, https:// and root:// PFNs (ask Rucio for replicas with schemes davs or root)")


# ---------------------------------------------------------------------------------------------
# Trust


_CA_FILE_VARIABLES = ("X509_CERT_FILE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
_CA_DIR_VARIABLES = ("X509_CERT_DIR",)
GRID_CA_DIR = "/etc/grid-security/certificates"


def storage_ssl_context(environ=None) -> ssl.SSLContext:
    """The TLS context for HTTPS storage: the system's store plus the places the environment names."""
    env = os.environ if environ is None else environ
    context = ssl.create_default_context()
    for name in _CA_DIR_VARIABLES + _CA_FILE_VARIABLES:
        place = env.get(name)
        if not place:
            continue
        try:
            if name in _CA_DIR_VARIABLES:
                context.load_verify_locations(capath=place)
            else:
                context.load_verify_locations(cafile=place)
        except (OSError, ssl.SSLError) as exc:
            raise StorageError(f"{name}={place} cannot be used as certificate authorities: {exc.strerror or exc}") from None
    return context


def export_xrootd_trust(environ=None) -> None:
    """Let the XRootD client trust what HTTPS trusts (see the module documentation)."""
    env = os.environ if environ is None else environ
    if env.get("X509_CERT_DIR") or env.get("X509_CERT_FILE"):
        return
    bundle = env.get("SSL_CERT_FILE") or env.get("REQUESTS_CA_BUNDLE")
    if os.path.isdir(GRID_CA_DIR):
        directory = GRID_CA_DIR
    else:
        directory = env.get("SSL_CERT_DIR") or ssl.get_default_verify_paths().capath
    if directory and os.path.isdir(directory):
        env["X509_CERT_DIR"] = directory
    if bundle:
        env["X509_CERT_FILE"] = bundle


# ---------------------------------------------------------------------------------------------
# davs:// and https://


def _operation(method: str) -> str:
    method = method.upper()
    if method in ("GET", "HEAD", "PROPFIND", "OPTIONS"):
        return "read"
    if method in ("DELETE", "MOVE"):
        return "modify"
    return "write"


async def _bearer_middleware(request, handler):
    """aiohttp client middleware: the current token on each HTTPS request, never on plain HTTP."""
    url = display_url(request.url)
    if request.url.scheme != "https":
        raise StorageError(f"Refusing to send your access token over {request.url.scheme}:// ({url}); storage is read over https:// (davs://)")
    token, where = find_bearer_token()
    if not token:
        raise BearerTokenNotFound(where, url)
    request.headers["Authorization"] = "Bearer " + token
    try:
        response = await handler(request)
    finally:
        # The answer's request_info shares these headers: keep the token out of what outlives the request.
        request.headers.popall("Authorization", None)
    status = response.status
    if status < 400 or status == 416:  # 416: fsspec reads past the end on purpose
        return response
    refusal = scrub(f"HTTP {status} {response.reason or ''}".strip(), token)  # the reason is the server's text
    response.release()
    if status in (401, 403):
        raise StorageAccessDenied(url, refusal, _operation(request.method))
    if status == 404:
        raise _NotFound(url)
    raise StorageError(f"The storage answered {refusal} for {url}")


class _NotFound(FileNotFoundError, StorageError):
    def __init__(self, url: str):
        self.url = url
        super().__init__(f"No such file on the storage: {url}")

    def __reduce__(self):
        return type(self), (self.url,)


async def _bearer_session(loop=None, **client_kwargs):
    middlewares = tuple(client_kwargs.pop("middlewares", ()))
    client_kwargs.setdefault("connector", aiohttp.TCPConnector(ssl=storage_ssl_context()))
    return aiohttp.ClientSession(loop=loop, middlewares=(_bearer_middleware, *middlewares), **client_kwargs)


def _ours(exc: BaseException | None):
    """The first of this module's errors in ``exc``'s chain of causes, if any."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, StorageError):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


class BearerHTTPFileSystem(HTTPFileSystem):
    """fsspec's HTTP filesystem for ``davs://`` and ``https://`` storage, with the WLCG bearer token
    read from the discovery location for every request (see the module documentation)."""

    protocol = ("https", "davs", DAVS_PROTOCOL)

    def __init__(self, **storage_options):
        if "get_client" in storage_options:
            raise TypeError("BearerHTTPFileSystem makes its own aiohttp sessions (they carry the token); get_client is not accepted")
        super().__init__(get_client=_bearer_session, **storage_options)

    @classmethod
    def _strip_protocol(cls, path):
        path = str(path)
        lowered = path[:9].lower()
        if lowered.startswith("davs://"):
            return "https://" + path[len("davs://") :]
        if lowered.startswith(DAVS_PROTOCOL + "://"):
            return "https://" + path[len(DAVS_PROTOCOL) + 3 :]
        return path

    async def _info(self, url, **kwargs):
        try:
            return await super()._info(url, **kwargs)
        except FileNotFoundError as exc:
            cause = _ours(exc.__cause__)
            if cause is not None and not isinstance(cause, FileNotFoundError):
                raise cause from None
            raise

    async def _exists(self, path, **kwargs):
        try:
            await self._info(path, **kwargs)
            return True
        except FileNotFoundError:
            return False

    async def _cat_ranges(self, paths, starts, ends, max_gap=None, batch_size=None, on_error="raise", **kwargs):
        # fsspec's default puts a failed range's exception in place of its bytes; readers such as
        # uproot then fail on the type instead of telling you what the storage said.
        return await super()._cat_ranges(paths, starts, ends, max_gap=max_gap, batch_size=batch_size, on_error=on_error, **kwargs)


# ---------------------------------------------------------------------------------------------
# The API


def _root_filesystem_class():
    from ._data_xrootd import BearerXRootDFileSystem

    return BearerXRootDFileSystem


def storage_options(pfn: str) -> dict:
    """Options for ``fsspec.open(pfn, **storage_options(pfn))``: which of this module's filesystems reads ``pfn``."""
    return {"protocol": DAVS_PROTOCOL if _scheme(pfn) in _HTTP_SCHEMES else ROOT_PROTOCOL}


def uproot_options(pfn: str) -> dict:
    """Options for ``uproot.open(pfn, **uproot_options(pfn))`` (also ``uproot.iterate`` and ``uproot.dask``
    with PFNs of one scheme): uproot's fsspec source on this module's filesystem."""
    import uproot.source.fsspec

    return {"handler": uproot.source.fsspec.FSSpecSource, **storage_options(pfn)}


def fs_for(pfn: str, **options):
    """The fsspec filesystem that reads ``pfn``; its methods take the PFN itself (``fs.open(pfn)``, ``fs.cat_file(pfn)``)."""
    protocol = storage_options(pfn)["protocol"]
    fs, _ = fsspec.url_to_fs(pfn, protocol=protocol, **options)
    return fs


def open(pfn: str, mode: str = "rb", **options):  # noqa: A001 - the name a notebook user expects
    """Open ``pfn`` as a file object (``mode`` ``rb``; ``wb`` for ``root://``), with the token found now."""
    return fs_for(pfn).open(pfn, mode=mode, **options)


def _register() -> None:
    """Make the protocols known in this process (installed packages also declare them as fsspec entry points)."""
    fsspec.register_implementation(DAVS_PROTOCOL, BearerHTTPFileSystem, clobber=True)
    fsspec.register_implementation("davs", BearerHTTPFileSystem, clobber=True)
    fsspec.register_implementation(ROOT_PROTOCOL, "af_gateway_client._data_xrootd.BearerXRootDFileSystem", clobber=True)


_register()
