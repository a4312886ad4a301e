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

Files your notebook or a Dask job wrote go into Rucio with one call (the gateway says where to write
them and registers them as yours; the files travel from this machine to the storage with your token)::

    dids = data.register_files(["hist.root"], dataset="user.alice:my.outputs", rse="SITE-A_SCRATCHDISK")

No token is ever put in a URL, a log line, an error or a repr. Errors say what to do:
:class:`BearerTokenNotFound` where it looked, :class:`StorageAccessDenied` which file and which scope
is likely missing.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import ssl
import stat
import zlib
from urllib.parse import quote, urlsplit

import aiohttp
import fsspec
import fsspec.asyn
import yarl
from fsspec.implementations.http import HTTPFileSystem

from ._token import find_bearer_token

__all__ = [
    "BearerHTTPFileSystem",
    "BearerTokenNotFound",
    "RegisterError",
    "StorageAccessDenied",
    "StorageError",
    "fs_for",
    "open",
    "register_files",
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

    def encode_url(self, url):
        # fsspec's methods hand the path on as given: a davs:// PFN is requested as https://
        return super().encode_url(self._strip_protocol(str(url)))

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


# ---------------------------------------------------------------------------------------------
# Outputs into the lake


class RegisterError(Exception):
    """Files could not be put into Rucio. The message names the file (``path``, when one is to blame)
    and why; never a token."""

    def __init__(self, message: str, path: str | None = None):
        self.path = path
        super().__init__(message)

    def __reduce__(self):
        return type(self), (str(self), self.path)


_SCOPE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_NAME = re.compile(r"^[!-~]{1,500}$")
#: Files per request to the gateway (its routes take 10,000; this keeps each body well under its 1 MiB).
_BATCH = 1000
_CHUNK = 1 << 20


def _checksum(path: str) -> tuple[int, str]:
    """Size and Adler-32 (Rucio's checksum: 8 hex digits) of a local file, read once."""
    value = 1
    size = 0
    with io.open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            value = zlib.adler32(chunk, value)
            size += len(chunk)
    return size, f"{value & 0xFFFFFFFF:08x}"


def _local_files(paths, names) -> list[dict]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise RegisterError("No files to register: pass the paths of the files your notebook or job wrote")
    if names is None:
        names = [os.path.basename(p) for p in paths]
    else:
        names = [names] if isinstance(names, str) else list(names)
        if len(names) != len(paths):
            raise RegisterError(f"names has {len(names)} entries for {len(paths)} files: give one name per file, in the same order")
    files, seen = [], {}
    for path, name in zip(paths, names):
        if not isinstance(name, str) or not _NAME.match(name):
            raise RegisterError(
                f"{path}: {name!r} cannot be a Rucio file name (printable ASCII without spaces, at most 500 characters): pass names=[...]",
                path,
            )
        if name in seen:
            raise RegisterError(f"{path} and {seen[name]} would both be named {name} in Rucio: pass names=[...] to tell them apart", path)
        seen[name] = path
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):
                raise RegisterError(f"{path} is not a plain file (a directory?): name the files themselves", path)
            size, adler32 = _checksum(path)
        except OSError as exc:
            raise RegisterError(f"{path} cannot be read: {exc.strerror or exc}", path) from None
        files.append({"path": path, "name": name, "bytes": size, "adler32": adler32})
    return files


def _gateway(url):
    """The gateway as the ``af-gateway`` command finds it: ``gateway``, else ``$AF_GATEWAY_URL``, else
    ``$DASK_GATEWAY__ADDRESS``, else the Dask configuration's ``gateway.address``; the credentials from
    ``$AF_GATEWAY_TOKEN``, ``$AF_GATEWAY_USER`` or the WLCG discovery location, read for each request."""
    from .cli import CliError, Gateway

    if not (url or os.environ.get("AF_GATEWAY_URL") or os.environ.get("DASK_GATEWAY__ADDRESS")):
        try:
            import dask.config

            url = dask.config.get("gateway.address", None)
        except ImportError:
            url = None
        if not url:
            raise RegisterError("No gateway to ask: pass gateway='https://…' or set AF_GATEWAY_URL (or Dask's gateway.address)")
    try:
        return Gateway(url)
    except CliError as exc:
        raise RegisterError(exc.message) from None


def _ask(gw, method: str, path: str, what: str, **kwargs):
    from .cli import CliError

    try:
        return gw.json(method, path, **kwargs)
    except CliError as exc:
        raise RegisterError(f"{what}: {exc.message}") from None


async def _storage_session():
    # A connection per request (force_close): XRootD closes a connection after refusing a request,
    # and the HEAD that follows a refused PUT must not meet that closed one.
    return await _bearer_session(connector=aiohttp.TCPConnector(ssl=storage_ssl_context(), force_close=True))


async def _stored_adler32(session, url: str) -> str | None:
    """The storage's Adler-32 of ``url`` (RFC 3230 ``Want-Digest``), or None: no such file, no digest, no answer."""
    try:
        async with session.head(url, headers={"Want-Digest": "adler32"}, allow_redirects=True) as resp:
            digest = resp.headers.get("Digest", "")
    except (StorageError, aiohttp.ClientError, asyncio.TimeoutError):
        return None
    m = re.search(r"(?:^|,)\s*adler32=([0-9a-fA-F]{1,8})", digest)
    return m.group(1).lower().rjust(8, "0") if m else None


async def _put(session, url: str, path: str, size: int, timeout: float) -> None:
    limits = aiohttp.ClientTimeout(total=timeout, sock_connect=30)
    for _hop in range(4):
        with io.open(path, "rb") as body:
            async with session.put(url, data=body, headers={"Content-Length": str(size)}, allow_redirects=False, timeout=limits) as resp:
                if resp.status in (301, 302, 303, 307, 308) and resp.headers.get("Location"):
                    url = str(resp.url.join(yarl.URL(resp.headers["Location"])))
                    continue
                if resp.status >= 300:
                    raise StorageError(f"The storage answered HTTP {resp.status} {scrub(resp.reason or '')} for {display_url(url)}")
                return
    raise StorageError(f"The storage redirected the upload of {display_url(url)} more than 3 times")


async def _upload(session, file: dict, pfn: str, timeout: float) -> bool:
    """Writes the file at ``pfn`` (True); a file already there with the same Adler-32, an earlier attempt's, is fine (False)."""
    url = BearerHTTPFileSystem._strip_protocol(pfn)
    try:
        await _put(session, url, file["path"], file["bytes"], timeout)
    except (StorageAccessDenied, StorageError) as exc:
        # a create-only token (storage.create:/) may not overwrite what an earlier attempt wrote
        there = await _stored_adler32(session, url)
        if there == file["adler32"]:
            return False
        if there is not None:
            raise RegisterError(
                f"{file['path']}: the storage already holds another file at {display_url(url)} (adler32 {there}, this one "
                f"{file['adler32']}), which Rucio does not know: remove it there, or pass another name",
                file["path"],
            ) from None
        raise RegisterError(f"{file['path']}: uploading to {display_url(url)} failed: {exc}", file["path"]) from exc
    except asyncio.TimeoutError:
        why = f"uploading to {display_url(url)} took longer than {timeout:g} s (timeout=...)"
        raise RegisterError(f"{file['path']}: {why}", file["path"]) from None
    except aiohttp.ClientError as exc:
        why = f"the storage at {display_url(url)} could not be reached: {scrub(str(exc))}"
        raise RegisterError(f"{file['path']}: {why}", file["path"]) from None
    there = await _stored_adler32(session, url)
    if there is not None and there != file["adler32"]:
        raise RegisterError(
            f"{file['path']}: the storage holds adler32 {there} at {display_url(url)} after the upload, the file has "
            f"{file['adler32']}: the upload was damaged (or the file changed while it was read); remove it there and run again",
            file["path"],
        )
    return True


def register_files(paths, dataset: str, *, rse: str, instance: str | None = None, lifetime: int | None = None, names=None,
                   gateway: str | None = None, timeout: float = 3600) -> list[str]:
    """Put files your notebook or a Dask job wrote (on this machine) into Rucio, in one call; returns their DIDs.

    ``paths``: a path or a list of them. ``dataset``: ``"SCOPE:NAME"`` (your scope, e.g. ``user.alice``),
    created when missing; each file becomes ``SCOPE:<its name>`` (``names``: one per path, in order;
    default: the file's base name) and is attached to it. ``rse``: the RSE to write to (one your
    account may write to). ``instance``: the gateway's Rucio instance (default: its only one).
    ``lifetime``: seconds a rule of yours keeps the dataset on the RSE (default: no rule).

    Each file's size and Adler-32 are computed here; the gateway says where the RSE wants each file
    (its ``davs://`` PFN) and what Rucio already holds; each file is then written there with a PUT
    carrying your token from the WLCG discovery location (read again for each request, needing
    ``storage.create:/``), unless Rucio already has it on that RSE with the same checksum; last the
    gateway registers the files as yours and attaches them. Running it again registers nothing twice,
    so a failed call is simply repeated. Another file under a name Rucio has raises
    :class:`RegisterError` naming the file; so does any failure, with the file and the reason.
    """
    if not isinstance(dataset, str) or dataset.count(":") < 1:
        raise RegisterError(f"dataset={dataset!r}: give it as 'SCOPE:NAME', e.g. 'user.alice:my.outputs'")
    scope, ds_name = dataset.split(":", 1)
    if not _SCOPE.match(scope) or not _NAME.match(ds_name):
        raise RegisterError(f"dataset={dataset!r}: SCOPE is letters, digits, _ . - (at most 64), NAME printable ASCII without spaces")
    if not isinstance(rse, str) or not re.match(r"^[A-Za-z0-9_.-]{1,255}$", rse):
        raise RegisterError(f"rse={rse!r}: give one RSE by name, e.g. 'SITE-A_SCRATCHDISK'")
    if lifetime is not None and (not isinstance(lifetime, int) or isinstance(lifetime, bool) or lifetime < 1):
        raise RegisterError(f"lifetime={lifetime!r}: give seconds (a positive integer), or None for no rule")
    files = _local_files(paths, names)
    gw = _gateway(gateway)
    if instance is None:
        known = [i["name"] for i in _ask(gw, "GET", "/api/af/rucio/instances", "listing the gateway's Rucio instances").get("instances", [])]
        if len(known) != 1:
            raise RegisterError(f"instance=...: the gateway has {len(known)} Rucio instances ({', '.join(known) or 'none'}); name one")
        instance = known[0]
    base = f"/api/af/rucio/{quote(instance, safe='')}"
    what = f"registering {len(files)} file{'s' if len(files) != 1 else ''} in {dataset} on {rse}"

    targets = []
    for i in range(0, len(files), _BATCH):
        part = files[i : i + _BATCH]
        answer = _ask(gw, "POST", f"{base}/upload-urls", f"{what}: asking where to write them",
                      json={"rse": rse, "dataset": {"scope": scope, "name": ds_name}, "files": [{"name": f["name"]} for f in part]},
                      timeout=(10, 300))
        targets.extend(answer["files"])
    to_write = []
    for f, t in zip(files, targets):
        there = t.get("exists")
        did = f"{t['scope']}:{t['name']}"
        if there and ((there.get("adler32") not in (None, f["adler32"])) or (there.get("bytes") not in (None, f["bytes"]))):
            raise RegisterError(
                f"{f['path']}: Rucio already has {did} with other content (adler32 {there.get('adler32')}, {there.get('bytes')} bytes; "
                f"this file: adler32 {f['adler32']}, {f['bytes']} bytes). Rucio keeps a name's content for good: pass another name",
                f["path"],
            )
        if not (there and there.get("on_rse")):
            to_write.append((f, t["pfn"]))

    async def write_all():
        session = await _storage_session()
        try:
            return [await _upload(session, f, pfn, timeout) for f, pfn in to_write]
        finally:
            await session.close()

    written = sum(fsspec.asyn.sync(fsspec.asyn.get_loop(), write_all)) if to_write else 0

    registered = 0
    for i in range(0, len(files), _BATCH):
        part = files[i : i + _BATCH]
        body = {"rse": rse, "dataset": {"scope": scope, "name": ds_name},
                "files": [{"name": f["name"], "bytes": f["bytes"], "adler32": f["adler32"]} for f in part]}
        if lifetime is not None:
            body["lifetime"] = lifetime
        registered += _ask(gw, "POST", f"{base}/register", what, ok=(201,), json=body, timeout=(10, 300)).get("registered", 0)
    logger.info("%s: %d written to the storage, %d there already; %d registered now, %d registered already",
                what, written, len(files) - written, registered, len(files) - registered)
    return [f"{scope}:{f['name']}" for f in files]


def _register() -> None:
    """Make the protocols known in this process (installed packages also declare them as fsspec entry points)."""
    fsspec.register_implementation(DAVS_PROTOCOL, BearerHTTPFileSystem, clobber=True)
    fsspec.register_implementation("davs", BearerHTTPFileSystem, clobber=True)
    fsspec.register_implementation(ROOT_PROTOCOL, "af_gateway_client._data_xrootd.BearerXRootDFileSystem", clobber=True)


_register()
