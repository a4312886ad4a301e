"""``af-gateway``: run AF Gateway workflows from the command line (CI pipelines).

Commands::

    af-gateway run WORKFLOW.yml [-p KEY=VALUE ...] [--parameters-file F.yml]
                   [--data DIR [-d initdir=DIR] [-d subinits=YAML]] [--name N]
                   [--backend B] [--retries N] [--wait [--output-dir DIR] [--timeout SECONDS]]
    af-gateway status RUN_ID [--json]
    af-gateway logs RUN_ID STEP [--follow]
    af-gateway cancel RUN_ID

``run`` sends the workflow file and every file its $refs reach (relative to the referring
file; none may lie outside the workflow's directory) to ``POST /api/af/workflows``. Values of
``-p`` are YAML scalars (``5`` is a number, ``true`` a boolean, ``[a, b]`` a list; YAML 1.2 like
the gateway, so ``no`` stays a string). ``--data DIR`` sends every file under DIR as the run's
input data (what yadage-run gets as its data directory): text as text, other files as base64, at
most 1000 files and 8 MiB in all, checked before sending. ``-d initdir=DIR`` and
``-d subinits={STAGE: DIR, ...}`` (YAML, as yadage-run's ``-d``; directories relative to the data
directory) say where the workflow's init and its subworkflows' inits find their files (default:
``init``). Without ``--wait`` it prints the run's id (alone on
standard output) and exits. With ``--wait`` it follows the run, printing a line per change, and
when it succeeded downloads the files among the outputs of its final stages into ``--output-dir``
(default ``./af-gateway-outputs/RUN_ID``) next to a summary, ``outputs.json`` (the run, its outputs
as the gateway reported them, the same with local paths, and the files). Progress goes to standard
output, problems to standard error. A subworkflow's stages (``nested[0].stage1``, one scope per item
of the stage running it) are summarised across its scopes (``nested[*].stage1``); a stage yadage
never applies (no case held, an empty scatter, an unfulfilled expression) is SKIPPED, which is no
failure. ``STEP`` of ``logs`` is a step's id as ``status --json`` lists it, scoped ones included
(``nested[0].stage1``, ``map[2].fit:3``).

The gateway is ``--gateway URL``, else ``$AF_GATEWAY_URL``, else ``$DASK_GATEWAY__ADDRESS``.
Credentials, first found wins: ``$AF_GATEWAY_TOKEN`` (a bearer token); ``$AF_GATEWAY_USER`` (with
``$AF_GATEWAY_PASSWORD``) for basic auth at gateways with simple auth; then WLCG bearer-token
discovery (``$BEARER_TOKEN``, the file ``$BEARER_TOKEN_FILE``, ``$XDG_RUNTIME_DIR/bt_u<uid>``,
``/tmp/bt_u<uid>``), read again for every request so a refreshed token file is picked up.
The token is never printed.

Exit codes:

===  ============================================================================================
 0   the run succeeded (``run --wait``), was submitted (``run``), or the command did its job
 1   the run failed or was cancelled (``status``: the run is FAILED or CANCELLED)
 2   usage error, or the gateway refused the request (4xx other than 401/403: an invalid
     workflow, missing parameters, an unknown run or step)
 3   authentication or authorisation failed (no credentials, 401, 403)
 4   the gateway could not be reached or answered with a server error (5xx)
 5   ``--timeout`` was reached; the run keeps running at the gateway
130  interrupted (Ctrl-C) while waiting; the run keeps running at the gateway
===  ============================================================================================
"""

import argparse
import base64
import collections
import json
import math
import os
import posixpath
import re
import signal
import stat
import sys
import time
from pathlib import Path
from urllib.parse import quote

import requests
import yaml

from ._token import find_bearer_token

try:
    from importlib.metadata import version as _dist_version

    __version__ = _dist_version("af-gateway-client")
except Exception:  # pragma: no cover - not installed
    __version__ = "0"

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_UNREACHABLE = 4
EXIT_TIMEOUT = 5
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """\
exit codes:
  0    the run succeeded (run --wait), was submitted (run), or the command did its job
  1    the run failed or was cancelled (status: the run is FAILED or CANCELLED)
  2    usage error, or the gateway refused the request (an invalid workflow: each problem is
       printed as PATH (FILE): MESSAGE; missing parameters; an unknown run or step)
  3    authentication or authorisation failed (no credentials, 401, 403)
  4    the gateway could not be reached or answered with a server error (5xx)
  5    --timeout was reached; the run keeps running at the gateway
  130  interrupted (Ctrl-C) while waiting; the run keeps running at the gateway

environment:
  AF_GATEWAY_URL (or DASK_GATEWAY__ADDRESS)   the gateway, unless --gateway is given
  AF_GATEWAY_TOKEN                            a bearer token
  AF_GATEWAY_USER, AF_GATEWAY_PASSWORD        basic auth (gateways with simple auth)
  BEARER_TOKEN, BEARER_TOKEN_FILE             WLCG bearer-token discovery (then
                                              $XDG_RUNTIME_DIR/bt_u<uid>, /tmp/bt_u<uid>)
"""

POLL_PERIOD = 2.0
# While following a run, how long the gateway may be unreachable (or answer 5xx) before giving up.
OUTAGE_TOLERANCE = 60.0
LOG_TAIL_LINES = 20
FINISHED = ("SUCCESS", "FAILED", "CANCELLED")
STATE_ORDER = ("SUCCESS", "RUNNING", "DEFINED", "FAILED", "CANCELLED")


class CliError(Exception):
    """Ends the command with a message (on standard error) and an exit code."""

    def __init__(self, message, code, details=()):
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = list(details)


def say(*lines):
    for line in lines:
        print(line, flush=True)


def warn(message):
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# YAML as the gateway reads it (YAML 1.2 core schema: `no`, `on`, `2024-01-01`, `1:20` and `017`
# keep their YAML 1.2 meaning instead of PyYAML's YAML 1.1 one)
# --------------------------------------------------------------------------------------------


class _Yaml12Loader(yaml.SafeLoader):
    pass


_DROP = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
         "tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:null"}
_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _DROP]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"))
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
               r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+.0123456789"))


def _construct_int(loader, node):
    text = loader.construct_scalar(node)
    return int(text, 0) if text.startswith(("0o", "0x")) else int(text, 10)


def _construct_bool(loader, node):
    return loader.construct_scalar(node).lower() == "true"


_Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Yaml12Loader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)


def load_yaml(text):
    return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 - a SafeLoader subclass


def _load_yaml_of(text, name, what):
    """load_yaml(text) of the file name, or a usage error saying it is not valid `what`."""
    try:
        return load_yaml(text)
    except yaml.YAMLError as exc:
        raise CliError(f"{name} is not valid {what}: {exc}", EXIT_USAGE) from None


def _json_safe(value, where):
    """Checks that value can travel as JSON (YAML also has binary, sets, NaN, ...)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise CliError(f"{where}: {value} cannot be sent as JSON", EXIT_USAGE)
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise CliError(f"{where}: mapping key {k!r} is not a string", EXIT_USAGE)
            _json_safe(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _json_safe(v, f"{where}[{i}]")
    elif not (value is None or isinstance(value, (str, int, float, bool))):
        raise CliError(f"{where}: a {type(value).__name__} cannot be sent as JSON", EXIT_USAGE)


# --------------------------------------------------------------------------------------------
# the workflow bundle
# --------------------------------------------------------------------------------------------


def _refs(value):
    """Every $ref string in a parsed document, in document order."""
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str):
            yield ref
            return
        for v in value.values():
            yield from _refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from _refs(v)


def _pointer(doc, fragment):
    for key in [k.replace("~1", "/").replace("~0", "~") for k in fragment.split("/") if k]:
        if isinstance(doc, list) and key.isdigit() and int(key) < len(doc):
            doc = doc[int(key)]
        elif isinstance(doc, dict) and key in doc:
            doc = doc[key]
        else:
            return None
    return doc


def collect_bundle(workflow_path):
    """Returns (entry, {relative path: text}) for the workflow and every file its $refs reach.

    Paths are POSIX paths relative to the workflow file's directory, resolved relative to the
    referring file, as the gateway resolves them; a $ref leaving that directory (also through a
    symbolic link) is refused. Only the parts of a file a $ref points at are searched for
    further $refs, as the gateway only reads those.
    """
    path = Path(workflow_path)
    if not path.is_file():
        raise CliError(f"{workflow_path}: no such file", EXIT_USAGE)
    base = path.resolve().parent
    entry = path.name
    texts, docs = {}, {}

    def read(rel, referrer, ref):
        if rel in docs:
            return docs[rel]
        where = f"{referrer}: $ref {ref}" if referrer else rel
        if rel == ".." or rel.startswith("../") or posixpath.isabs(rel):
            raise CliError(f"{where} points outside the workflow's directory ({base})", EXIT_USAGE)
        full = base.joinpath(*rel.split("/"))
        try:
            real = full.resolve()
        except OSError as exc:
            raise CliError(f"{where}: {exc}", EXIT_USAGE) from None
        if real != base and base not in real.parents:
            raise CliError(f"{where} points outside the workflow's directory ({base}) "
                           f"through a symbolic link", EXIT_USAGE)
        try:
            text = full.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CliError(f"{where}: {full} does not exist", EXIT_USAGE) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"{where}: cannot read {full}: {exc}", EXIT_USAGE) from None
        doc = _load_yaml_of(text, rel, "YAML or JSON")
        texts[rel], docs[rel] = text, doc
        return doc

    seen = set()
    todo = [(entry, "", None, None)]  # (file, fragment, referrer, ref)
    while todo:
        rel, fragment, referrer, ref = todo.pop()
        if (rel, fragment) in seen:
            continue
        seen.add((rel, fragment))
        doc = read(rel, referrer, ref)
        part = _pointer(doc, fragment)
        for r in _refs(part):
            target, _, frag = r.partition("#")
            if target:
                if posixpath.isabs(target):
                    raise CliError(f"{rel}: $ref {r} points outside the workflow's directory "
                                   f"({base})", EXIT_USAGE)
                target = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
            else:
                target = rel
            todo.append((target, frag, rel, r))
    return entry, dict(sorted(texts.items(), key=lambda kv: (kv[0] != entry, kv[0])))


def parse_parameters(pairs, parameters_file):
    params = {}
    if parameters_file:
        try:
            text = Path(parameters_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"--parameters-file: {exc}", EXIT_USAGE) from None
        loaded = _load_yaml_of(text, parameters_file, "YAML")
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise CliError(f"{parameters_file} must hold a mapping of parameter names to values",
                           EXIT_USAGE)
        _json_safe(loaded, parameters_file)
        params.update(loaded)
    for pair in pairs or []:
        key, eq, raw = pair.partition("=")
        key = key.strip()
        if not eq or not key:
            raise CliError(f"-p {pair}: expected KEY=VALUE", EXIT_USAGE)
        try:
            value = load_yaml(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw  # not YAML: the text itself
        if isinstance(value, dict):
            value = raw  # `-p k=a: b` means the text, not a mapping
        _json_safe(value, f"-p {key}")
        params[key] = value
    return params


# --------------------------------------------------------------------------------------------
# the run's input data (--data DIR, -d initdir=... / -d subinits=...)
# --------------------------------------------------------------------------------------------

DATA_MAX_FILES = 1000
DATA_MAX_BYTES = 8 * 1024 * 1024
DATA_COUNT_UP_TO = 100 * DATA_MAX_FILES  # files past the limit are counted this far (DIR could be /)
DATA_OPTIONS = ("initdir", "subinits")
_DATA_ELSEWHERE = ("put big inputs into storage (Rucio, or a path every step can read) and have the "
                   "workflow read them from there")


def _mib(n):
    return f"{n / (1024 * 1024):.1f} MiB"


def collect_data(data_dir):
    """Returns ({path relative to data_dir, '/'-separated: its text, or {"base64": its bytes}}, bytes
    in all) for every regular file under data_dir, in path order.

    Directories are walked without following symbolic links to directories (each one is named on
    standard error); a symbolic link to a file is read. Anything else that is not a regular file, or
    cannot be read, is an error naming it. The gateway's limits (DATA_MAX_FILES files, DATA_MAX_BYTES
    bytes in all) are checked before the files are read, and again while they are.
    """
    top = Path(data_dir)
    if not top.is_dir():
        raise CliError(f"--data {data_dir}: not a directory", EXIT_USAGE)
    found = []  # (relative path, full path)
    total = 0
    count = 0

    def walk_error(exc):
        raise CliError(f"--data: cannot read the directory {exc.filename}: {exc.strerror}", EXIT_USAGE)

    for dirpath, dirnames, filenames in os.walk(top, onerror=walk_error, followlinks=False):
        dirnames.sort()
        for name in dirnames:
            if os.path.islink(os.path.join(dirpath, name)):
                warn(f"af-gateway: --data: {os.path.join(dirpath, name)} is a symbolic link to a directory: "
                     "not followed, its files are not sent")
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            count += 1
            if count > DATA_MAX_FILES:
                if count > DATA_COUNT_UP_TO:
                    break
                continue  # only counted, to say how many there are
            rel = Path(full).relative_to(top).as_posix()
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                raise CliError(f"--data: the file name {full!r} is not UTF-8: the gateway cannot take it",
                               EXIT_USAGE) from None
            try:
                st = os.stat(full)  # follows a link to a file
            except OSError as exc:
                raise CliError(f"--data: cannot read {full}: {exc.strerror}"
                               + (" (a dangling symbolic link)" if os.path.islink(full) else ""),
                               EXIT_USAGE) from None
            if not stat.S_ISREG(st.st_mode):
                raise CliError(f"--data: {full} is not a regular file (a fifo, socket or device): it cannot be "
                               "sent", EXIT_USAGE)
            found.append((rel, full))
            total += st.st_size
        if count > DATA_COUNT_UP_TO:
            break
    if count > DATA_MAX_FILES:
        many = f"more than {DATA_COUNT_UP_TO}" if count > DATA_COUNT_UP_TO else str(count)
        raise CliError(f"--data {data_dir} holds {many} files; the gateway takes at most {DATA_MAX_FILES} data "
                       f"files per run: {_DATA_ELSEWHERE}", EXIT_USAGE)
    if not found:
        raise CliError(f"--data {data_dir} holds no files: there is nothing to send", EXIT_USAGE)

    def too_big(size, more=""):
        return CliError(f"--data {data_dir} holds {more}{size} bytes ({_mib(size)}) in {len(found)} files; the "
                        f"gateway takes at most {DATA_MAX_BYTES} bytes ({_mib(DATA_MAX_BYTES)}) of data per run: "
                        f"{_DATA_ELSEWHERE}", EXIT_USAGE)

    if total > DATA_MAX_BYTES:
        raise too_big(total)
    files, sent = {}, 0
    for rel, full in found:
        try:
            with open(full, "rb") as fh:
                content = fh.read(DATA_MAX_BYTES - sent + 1)
        except OSError as exc:
            raise CliError(f"--data: cannot read {full}: {exc.strerror}", EXIT_USAGE) from None
        sent += len(content)
        if sent > DATA_MAX_BYTES:
            raise too_big(sent, "(its files grew while being read) at least ")
        try:
            files[rel] = content.decode("utf-8")
        except UnicodeDecodeError:
            files[rel] = {"base64": base64.b64encode(content).decode("ascii")}
    return files, sent


def _data_dir_value(value, where):
    """A directory named in a data option: a relative '/'-separated path inside the data root."""
    if not isinstance(value, str) or not value.strip():
        raise CliError(f"{where}: a directory (relative to --data DIR) expected, got {json.dumps(value)}"
                       + (" (quote it to make it text)" if isinstance(value, (int, float, bool)) else ""),
                       EXIT_USAGE)
    path = posixpath.normpath(value)
    if posixpath.isabs(path) or path == ".." or path.startswith("../"):
        raise CliError(f"{where}: {value} is not inside the data directory: name a directory relative to "
                       "--data DIR", EXIT_USAGE)
    return path


def _subinits(value, where):
    """yadage's subinits: {stage: directory, or {"_data": directory, inner stage: ...}}, paths checked."""
    if not isinstance(value, dict) or not value:
        raise CliError(f"{where}: a mapping of stages to directories expected, e.g. "
                       "-d 'subinits={signal: siginputs, backgrounds: {_data: bkg, inner: bkg/inner}}'", EXIT_USAGE)
    return {key: _subinits(v, f"{where}.{key}") if isinstance(v, dict) and key != "_data"
            else _data_dir_value(v, f"{where}.{key}") for key, v in value.items()}


def parse_data_options(pairs):
    """-d KEY=YAML (yadage-run's data options that mean something here: initdir, subinits)."""
    opts = {}
    for pair in pairs or []:
        key, eq, raw = pair.partition("=")
        key = key.strip()
        if not eq or not key:
            raise CliError(f"-d {pair}: expected KEY=YAML", EXIT_USAGE)
        if key not in DATA_OPTIONS:
            raise CliError(f"-d {key}: unknown data option; the known ones are {', '.join(DATA_OPTIONS)} (the "
                           "directory given to --data is the data root: it stands for yadage-run's pathbase)",
                           EXIT_USAGE)
        try:
            value = load_yaml(raw)
        except yaml.YAMLError as exc:
            raise CliError(f"-d {key}: not valid YAML: {exc}", EXIT_USAGE) from None
        _json_safe(value, f"-d {key}")
        opts[key] = _data_dir_value(value, "-d initdir") if key == "initdir" else _subinits(value, "-d subinits")
    return opts


def _named_dirs(opts):
    """(where, directory) of each directory the data options name."""
    if "initdir" in opts:
        yield "-d initdir", opts["initdir"]

    def walk(value, where):
        for k, v in value.items():
            if isinstance(v, dict):
                yield from walk(v, f"{where}.{k}")
            else:
                yield f"{where}.{k}", v

    yield from walk(opts.get("subinits") or {}, "-d subinits")


def build_data(data_dir, pairs):
    """The submission's `data`: the files under data_dir and the data options; a warning for each
    directory an option names that holds none of the files sent (a typo, most likely)."""
    opts = parse_data_options(pairs)
    files, size = collect_data(data_dir)
    for where, d in _named_dirs(opts):
        if d != "." and not any(rel.startswith(d + "/") for rel in files):
            warn(f"af-gateway: warning: {where}: {d} holds none of the files under {data_dir}")
    return {"files": files, **opts}, size


# --------------------------------------------------------------------------------------------
# talking to the gateway
# --------------------------------------------------------------------------------------------


class _Bearer(requests.auth.AuthBase):
    def __init__(self, token):
        self.token = token

    def __call__(self, req):
        req.headers["Authorization"] = "Bearer " + self.token
        return req

    def __repr__(self):  # never show the token
        return "<bearer token>"


class Gateway:
    def __init__(self, url, environ=None):
        self.env = os.environ if environ is None else environ
        url = url or self.env.get("AF_GATEWAY_URL") or self.env.get("DASK_GATEWAY__ADDRESS")
        if not url:
            raise CliError("no gateway: pass --gateway URL or set AF_GATEWAY_URL", EXIT_USAGE)
        url = url.strip().rstrip("/")
        if not re.match(r"^https?://", url):
            raise CliError(f"the gateway URL must start with http:// or https:// (got {url})",
                           EXIT_USAGE)
        self.url = url
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"af-gateway-client/{__version__}"

    # -- credentials, found again for every request (token files get refreshed) --------------

    def _credentials(self):
        token = (self.env.get("AF_GATEWAY_TOKEN") or "").strip()
        if token:
            return _Bearer(token)
        user = (self.env.get("AF_GATEWAY_USER") or "").strip()
        if user:
            return requests.auth.HTTPBasicAuth(user, self.env.get("AF_GATEWAY_PASSWORD") or "")
        token, where = find_bearer_token(self.env)
        if token:
            return _Bearer(token)
        raise CliError(
            "no credentials for the gateway: looked in AF_GATEWAY_TOKEN, AF_GATEWAY_USER, " + where
            + ". Put a bearer token into BEARER_TOKEN_FILE (or BEARER_TOKEN, AF_GATEWAY_TOKEN)",
            EXIT_AUTH)

    def request(self, method, path, *, ok=(200,), stream=False, timeout=(10, 60), **kwargs):
        # an explicit auth object: requests then never replaces it with ~/.netrc credentials
        auth = self._credentials()
        url = self.url + path
        try:
            resp = self.session.request(method, url, auth=auth, stream=stream,
                                        timeout=timeout, allow_redirects=False, **kwargs)
        except requests.exceptions.InvalidURL as exc:
            raise CliError(f"invalid gateway URL {self.url}: {exc}", EXIT_USAGE) from None
        except requests.RequestException as exc:
            raise CliError(f"cannot reach the gateway at {self.url}: {_reason(exc)}",
                           EXIT_UNREACHABLE) from None
        if resp.status_code in ok:
            return resp
        raise self._error(method, path, resp)

    def _error(self, method, path, resp):
        status = resp.status_code
        body = None
        try:
            body = resp.json()
        except ValueError:
            pass
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            text = body["error"]
        else:
            text = " ".join((resp.text or "").split())[:300] or resp.reason or ""
        details = []
        if isinstance(body, dict) and isinstance(body.get("details"), list):
            for d in body["details"]:
                if isinstance(d, dict):
                    where = d.get("path") or "$"
                    if d.get("file"):
                        where += f" ({d['file']})"
                    details.append(f"{where}: {d.get('message', '')}")
                else:
                    details.append(str(d))
        if details and isinstance(body.get("details")[0], dict):
            # the message usually lists the problems too: say them once, one a line
            first = body["details"][0].get("path")
            cut = text.find(first) if first else -1
            if cut > 0:
                text = text[:cut].rstrip(" :;") + f" ({len(details)} problem{'s' if len(details) != 1 else ''})"
        request_id = body.get("request_id") if isinstance(body, dict) else None
        suffix = (f" [request {request_id}]" if request_id else "") + (":" if details else "")
        if status in (401, 403):
            what = "authentication failed" if status == 401 else "not allowed"
            return CliError(f"{what} ({status}) at {self.url}: {text}{suffix}", EXIT_AUTH, details)
        if 300 <= status < 400:
            return CliError(f"the gateway redirected {method} {path} ({status}) to "
                            f"{resp.headers.get('Location', '?')}: is the URL right?",
                            EXIT_USAGE)
        if status >= 500:
            return CliError(f"gateway error ({status}) on {method} {path}: {text}{suffix}",
                            EXIT_UNREACHABLE, details)
        return CliError(f"the gateway refused {method} {path} ({status}): {text}{suffix}",
                        EXIT_USAGE, details)

    def json(self, method, path, **kwargs):
        resp = self.request(method, path, **kwargs)
        try:
            return resp.json()
        except ValueError:
            raise CliError(f"{method} {path}: the gateway's answer is not JSON "
                           f"({resp.headers.get('Content-Type', '?')}); is {self.url} an "
                           "AF Gateway?", EXIT_UNREACHABLE) from None


def _reason(exc):
    """A short reason for a connection failure (requests nests urllib3's)."""
    text = str(exc)
    m = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if m:
        return m.group(1).strip()
    if isinstance(exc, requests.Timeout):
        return "timed out"
    return text[:200]


def run_path(run_id, *rest):
    return "/api/af/workflows/" + quote(run_id, safe="") + "".join("/" + r for r in rest)


# --------------------------------------------------------------------------------------------
# following a run
# --------------------------------------------------------------------------------------------


def clock(seconds):
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def summarise(states):
    """'3/5 SUCCESS, 2 RUNNING' for the states of a stage's steps."""
    counts = collections.Counter(states)
    parts = [f"{counts.get('SUCCESS', 0)}/{len(states)} SUCCESS"]
    parts += [f"{counts[s]} {s}" for s in STATE_ORDER[1:] if counts.get(s)]
    parts += [f"{n} {s}" for s, n in sorted(counts.items()) if s not in STATE_ORDER]
    return ", ".join(parts)


_SCOPE_LEVEL = re.compile(r"\[\d+\]\.")


def is_init_stage(name):
    """The run's init stage or a subworkflow's (``nested[0].init``): parameters, no step."""
    return name == "init" or str(name).endswith("].init")


def stage_pattern(name):
    """``nested[0].deeper[1].leaf`` -> ``nested[*].deeper[*].leaf``: a subworkflow's stage in all its scopes."""
    return _SCOPE_LEVEL.sub("[*].", name)


def plural(n, word):
    return f"{n} {word}{'' if n == 1 else 's'}"


class DagView:
    """A WorkflowDag's stages and steps by stage, top-level stages apart from those in subworkflows."""

    def __init__(self, dag):
        self.nodes = [n for n in dag.get("nodes") or [] if not is_init_stage(n.get("stage") or "")]
        self.by_stage = collections.defaultdict(list)
        for n in self.nodes:
            self.by_stage[n.get("stage")].append(n)
        stages = dag.get("stages") or []
        # a subworkflow's scope has one init stage: count them per stage that made them
        self.subworkflows = collections.Counter(
            st["scope"][:st["scope"].rindex("[")] for st in stages
            if st.get("type") == "init" and "[" in (st.get("scope") or ""))
        self.stages = [st for st in stages if st.get("type") != "init" and not is_init_stage(st.get("name") or "")]
        self.top = [st for st in self.stages if not st.get("scope")]
        self.scoped = collections.defaultdict(list)
        for st in self.stages:
            if st.get("scope"):
                self.scoped[stage_pattern(st.get("name") or "")].append(st)

    def steps(self, stages):
        return [n.get("state") for st in stages for n in self.by_stage.get(st.get("name"), [])]

    def made(self, name):
        """'4 steps', '2 subworkflows', '1 step, 1 subworkflow' for a stage just applied."""
        n, k = len(self.by_stage.get(name, [])), self.subworkflows.get(name, 0)
        parts = [plural(n, "step")] if n or not k else []
        if k:
            parts.append(plural(k, "subworkflow"))
        return ", ".join(parts)

    def scoped_summary(self, stages):
        """'2/2 SUCCESS', '1/2 SUCCESS, 1 RUNNING, 1 skipped' over a subworkflow stage's scopes
        ('' while there is nothing to say)."""
        steps = self.steps(stages)
        skipped = sum(1 for st in stages if st.get("state") == "SKIPPED")
        parts = ([summarise(steps)] if steps else []) + ([f"{skipped} skipped"] if skipped else [])
        return ", ".join(parts)


def first_line(text):
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


def indent(text, prefix="    "):
    return "\n".join(prefix + line for line in str(text).rstrip().splitlines())


class Follower:
    """Turns successive WorkflowDag snapshots into one line per change."""

    def __init__(self, gateway, run_id, started):
        self.gw = gateway
        self.run_id = run_id
        self.started = started
        self.stage_state = {}
        self.stage_summary = {}
        self.reported_failures = set()
        self.reported_retries = set()
        self.run_status = None

    def line(self, text):
        say(f"[{clock(time.monotonic() - self.started)}] {text}")

    def update(self, dag):
        run = dag.get("run") or {}
        finished = run.get("status") in FINISHED
        if not finished:
            self.run_line(run)
        view = DagView(dag)
        for st in view.stages:
            name, state = st.get("name"), st.get("state")
            if state != self.stage_state.get(name):
                self.stage_state[name] = state
                if state == "FAILED":
                    self.line(f"stage {name} failed: {st.get('message') or 'no reason given'}")
                # a subworkflow's stages are reported together, across its scopes, below
                elif state == "APPLIED" and not st.get("scope"):
                    self.line(f"stage {name} applied: {view.made(name)}")
                elif state == "SKIPPED" and not st.get("scope"):
                    # yadage never applies it (no case held, an empty scatter, ...): no failure
                    self.line(f"stage {name} skipped: {st.get('message') or 'not applied'}")
            steps = view.by_stage.get(name, []) if not st.get("scope") else []
            if steps:
                self.summary(name, summarise([s.get("state") for s in steps]))
        for pattern, stages in view.scoped.items():
            text = view.scoped_summary(stages)
            if text:
                self.summary(pattern, text, f"{pattern} ({plural(len(stages), 'subworkflow')})")
        for n in view.nodes:
            if n.get("state") == "FAILED":
                key = (n.get("id"), n.get("attempts"))
                if key not in self.reported_failures:
                    self.reported_failures.add(key)
                    self.report_failure(n)
            elif n.get("state") == "DEFINED" and n.get("attempts") and n.get("message"):
                # a failed attempt that will be retried
                key = (n.get("id"), n.get("attempts"))
                if key not in self.reported_retries:
                    self.reported_retries.add(key)
                    self.line(f"step {n.get('id')}: {first_line(n['message'])}")
        if finished:
            self.run_line(run)

    def summary(self, key, text, label=None):
        text = f"{label or key}: {text}"
        if text != self.stage_summary.get(key):
            self.stage_summary[key] = text
            self.line(text)

    def run_line(self, run):
        status = run.get("status")
        if status != self.run_status:
            self.run_status = status
            text = f"run {self.run_id} {status}"
            if status in ("FAILED", "CANCELLED") and run.get("message"):
                text += f": {first_line(run['message'])}"
            self.line(text)

    def report_failure(self, node):
        nid = node.get("id")
        bits = []
        if node.get("exit_code") is not None:
            bits.append(f"exit code {node['exit_code']}")
        if node.get("attempts"):
            bits.append(f"attempt {node['attempts']}")
        self.line(f"step {nid} FAILED" + (f" ({', '.join(bits)})" if bits else ""))
        tail = log_tail(self.gw, self.run_id, nid)
        message = (node.get("message") or "").rstrip().splitlines()
        if tail:
            # the message often quotes the log's last lines: show those once, from the log
            logged = {line.strip() for line in tail.splitlines() if line.strip()}
            message = message[:1] + [m for m in message[1:] if m.strip() not in logged]
        if message:
            say(indent("\n".join(message)))
        if tail is not None:
            say(f"    --- last lines of the log of {nid} ---")
            say(indent(tail or "(empty)", "    | "))


def log_tail(gateway, run_id, node_id, lines=LOG_TAIL_LINES):
    """The last lines of a step's log, or None when it cannot be had (said on stderr)."""
    try:
        resp = gateway.request("GET", run_path(run_id, "nodes", quote(node_id, safe=""), "log"),
                               stream=True)
    except CliError as exc:
        if exc.code == EXIT_AUTH:
            raise
        warn(f"    (no log for {node_id}: {exc.message})")
        return None
    tail = collections.deque(maxlen=lines)
    with resp:
        for line in resp.iter_lines():
            tail.append(line.decode("utf-8", "replace"))
    return "\n".join(tail)


def poll(gateway, run_id, follower, deadline, timeout):
    """Follows the run until it finished; returns its last WorkflowDag."""
    outage_since = None
    while True:
        try:
            dag = gateway.json("GET", run_path(run_id))
        except CliError as exc:
            if exc.code != EXIT_UNREACHABLE:
                raise
            now = time.monotonic()
            if outage_since is None:
                outage_since = now
                warn(f"{exc.message} (trying again for {OUTAGE_TOLERANCE:.0f} s)")
            elif now - outage_since > OUTAGE_TOLERANCE:
                raise
        else:
            if outage_since is not None:
                warn("the gateway answers again")
                outage_since = None
            follower.update(dag)
            if (dag.get("run") or {}).get("status") in FINISHED:
                return dag
        pause = POLL_PERIOD
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CliError(
                    f"--timeout {timeout:g} s reached; the run {run_id} keeps running at the "
                    f"gateway. Follow it with `af-gateway status {run_id}`, stop it with "
                    f"`af-gateway cancel {run_id}`", EXIT_TIMEOUT)
            pause = min(pause, remaining)
        time.sleep(pause)


# --------------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------------


def _workspace_relative(value, workspace):
    if not isinstance(value, str) or not workspace or not value.startswith("/"):
        return None
    ws = posixpath.normpath(workspace)
    path = posixpath.normpath(value)
    if not path.startswith(ws + "/"):
        return None
    rel = path[len(ws) + 1:]
    if not rel or rel == ".." or rel.startswith("../"):
        return None
    return rel


def download_outputs(gateway, run, output_dir):
    """Fetches every output path under the run's workspace; writes outputs.json; returns it."""
    run_id = run["id"]
    workspace = run.get("workspace") or ""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files, skipped = [], []
    fetched = {}

    def fetch(rel):
        if rel in fetched:
            return fetched[rel]
        target = out.joinpath(*rel.split("/"))
        try:
            resp = gateway.request("GET", run_path(run_id, "files", quote(rel, safe="/")),
                                   stream=True, timeout=(10, 300))
        except CliError as exc:
            if exc.code != EXIT_USAGE:
                raise
            warn(f"  not downloaded: {rel}: {exc.message}")
            skipped.append({"path": rel, "reason": exc.message})
            fetched[rel] = None
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        size = 0
        try:
            with resp, open(partial, "wb") as fh:
                for chunk in resp.iter_content(1 << 16):
                    fh.write(chunk)
                    size += len(chunk)
        except requests.RequestException as exc:
            partial.unlink(missing_ok=True)
            raise CliError(f"downloading {rel} failed: {_reason(exc)}", EXIT_UNREACHABLE) from None
        os.replace(partial, target)
        local = target.relative_to(out).as_posix()
        say(f"  {target} ({size} bytes)")
        files.append({"remote": posixpath.join(workspace, rel), "path": rel, "local": local,
                      "bytes": size})
        fetched[rel] = local
        return local

    def walk(value):
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        rel = _workspace_relative(value, workspace)
        if rel is None:
            return value
        local = fetch(rel)
        return local if local is not None else value

    outputs = run.get("outputs") or {}
    say(f"downloading the outputs of {run_id} into {out}")
    local_outputs = walk(outputs)
    if not files and not skipped:
        say("  (no output is a file in the run's workspace)")
    summary = {
        "gateway": gateway.url,
        "run": {k: run.get(k) for k in ("id", "name", "owner", "status", "backend", "entry",
                                        "parameters", "created", "finished", "workspace")},
        "outputs": outputs,
        "local_outputs": local_outputs,
        "files": files,
        "skipped": skipped,
    }
    (out / "outputs.json").write_text(json.dumps(summary, indent=2) + "\n")
    say(f"  {out / 'outputs.json'} (summary)")
    return summary


# --------------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------------


def default_run_name(workflow):
    """The workflow's directory name (examples/workflows/map-reduce/workflow.yml -> map-reduce),
    shaped as the gateway wants run names; the file name when the directory name does not fit."""
    path = os.path.abspath(workflow)
    for candidate in (os.path.basename(os.path.dirname(path)), os.path.splitext(os.path.basename(path))[0]):
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", candidate).lstrip("-_.")[:64]
        if name:
            return name
    return "workflow"


def cmd_run(args, gateway):
    started = time.monotonic()
    deadline = started + args.timeout if args.timeout is not None else None
    entry, files = collect_bundle(args.workflow)
    body = {"entry": entry, "files": files}
    params = parse_parameters(args.parameters, args.parameters_file)
    if params:
        body["parameters"] = params
    for key in ("name", "backend", "retries"):
        if getattr(args, key) is not None:
            body[key] = getattr(args, key)
    if "name" not in body:
        body["name"] = default_run_name(args.workflow)
    data_size = 0
    if args.data is not None:
        body["data"], data_size = build_data(args.data, args.data_options)
    data_text = (f", {plural(len(body['data']['files']), 'data file')} ({data_size} bytes) from {args.data}"
                 if "data" in body else "")
    run = gateway.json("POST", "/api/af/workflows", ok=(200, 201),
                       data=json.dumps(body, allow_nan=False),
                       headers={"Content-Type": "application/json"})
    run_id = run.get("id")
    if not run_id:
        raise CliError(f"the gateway's answer has no run id: {str(run)[:300]}", EXIT_UNREACHABLE)
    if not args.wait:
        say(run_id)
        warn(f"submitted {entry} ({len(files)} file{'s' if len(files) != 1 else ''}{data_text}) as run "
             f"{run_id} ({run.get('name', '')}); follow it with `af-gateway status {run_id}`")
        return EXIT_OK

    say(f"run {run_id} ({run.get('name', '')}) submitted to {gateway.url}: {entry} with "
        f"{len(files)} file{'s' if len(files) != 1 else ''}{data_text}"
        + (f", parameters {json.dumps(params)}" if params else "")
        + (f", backend {run['backend']}" if run.get("backend") else ""))
    follower = Follower(gateway, run_id, started)
    try:
        dag = poll(gateway, run_id, follower, deadline, args.timeout)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        warn(f"interrupted: the run {run_id} continues at the gateway. Follow it with "
             f"`af-gateway status {run_id}`, stop it with `af-gateway cancel {run_id}`")
        return EXIT_INTERRUPTED
    except CliError as exc:
        if exc.code in (EXIT_AUTH, EXIT_UNREACHABLE):
            exc.message += (f"\nthe run {run_id} may still be running at the gateway; see "
                            f"`af-gateway status {run_id}`")
        raise
    run = dag["run"]
    status = run.get("status")
    if status != "SUCCESS":
        counts = run.get("counts") or {}
        failed = [n.get("id") for n in dag.get("nodes") or [] if n.get("state") == "FAILED"]
        warn(f"run {run_id} {status}"
             + (f": {first_line(run['message'])}" if run.get("message") and not failed else "")
             + (f" (failed steps: {', '.join(failed[:10])}"
                + (f" and {len(failed) - 10} more" if len(failed) > 10 else "") + ")" if failed else "")
             + (f" [{summarise_counts(counts)}]" if counts else ""))
        return EXIT_RUN_FAILED
    output_dir = args.output_dir or os.path.join("af-gateway-outputs", run_id)
    try:
        download_outputs(gateway, run, output_dir)
    except OSError as exc:
        raise CliError(f"cannot write the outputs into {output_dir}: {exc}", EXIT_USAGE) from None
    say(f"run {run_id} succeeded in {clock(time.monotonic() - started)}")
    return EXIT_OK


def summarise_counts(counts):
    return ", ".join(f"{counts[s]} {s}" for s in STATE_ORDER if counts.get(s))


def cmd_status(args, gateway):
    dag = gateway.json("GET", run_path(args.run_id))
    run = dag.get("run") or {}
    if args.json:
        say(json.dumps(dag, indent=2))
    else:
        created = run.get("created")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created / 1000)) if created else "?"
        say(f"run {run.get('id')} ({run.get('name')}): {run.get('status')}"
            + (f": {first_line(run['message'])}" if run.get("message") else ""),
            f"  owner {run.get('owner')}, backend {run.get('backend')}, created {when}, "
            f"entry {run.get('entry')}, parameters {json.dumps(run.get('parameters') or {})}",
            f"  stages applied {run.get('stages_applied', '?')}/{run.get('stages_total', '?')}; "
            f"steps: {summarise_counts(run.get('counts') or {}) or 'none yet'}")
        view = DagView(dag)
        for st in view.top:
            name = st.get("name")
            steps = view.steps([st])
            k = view.subworkflows.get(name, 0)
            say(f"  {name} [{st.get('type')}] {st.get('state')}"
                + (f": {summarise(steps)}" if steps else "")
                + (f"{',' if steps else ':'} {plural(k, 'subworkflow')}" if k else "")
                + (f" - {st['message']}" if st.get("message") else ""))
        # a subworkflow's stages: one line across its scopes, with the states of its stages there
        for pattern, stages in view.scoped.items():
            states = collections.Counter(st.get("state") for st in stages)
            text = view.scoped_summary([st for st in stages if st.get("state") != "SKIPPED"])
            say(f"  {pattern} [{stages[0].get('type')}] in {plural(len(stages), 'subworkflow')}: "
                + ", ".join(f"{c} {state}" for state, c in states.items())
                + (f"; steps {text}" if text else ""))
            for st in stages:
                if st.get("state") in ("FAILED", "SKIPPED") and st.get("message"):
                    say(f"    {st.get('name')} {st.get('state')} - {st['message']}")
        for n in view.nodes:
            if n.get("state") == "FAILED":
                say(f"  step {n.get('id')} FAILED"
                    + (f" (exit code {n['exit_code']})" if n.get("exit_code") is not None else ""))
                if n.get("message"):
                    say(indent(n["message"], "      "))
        if run.get("status") == "SUCCESS" and run.get("outputs"):
            say("  outputs:", indent(json.dumps(run["outputs"], indent=2), "    "))
    return EXIT_RUN_FAILED if run.get("status") in ("FAILED", "CANCELLED") else EXIT_OK


def cmd_logs(args, gateway):
    path = run_path(args.run_id, "nodes", quote(args.step, safe=""), "log")
    params = {"follow": "true"} if args.follow else None
    try:
        resp = gateway.request("GET", path, params=params, stream=True,
                               timeout=(10, None) if args.follow else (10, 60))
        with resp:
            for chunk in resp.iter_content(chunk_size=None):
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
    except requests.RequestException as exc:
        raise CliError(f"reading the log failed: {_reason(exc)}", EXIT_UNREACHABLE) from None
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return EXIT_OK


def cmd_cancel(args, gateway):
    run = gateway.json("POST", run_path(args.run_id, "cancel"))
    say(f"run {run.get('id', args.run_id)}: {run.get('status')}"
        + (" (cancelling: running steps are being stopped)" if run.get("status") not in FINISHED
           else ""))
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# argument parsing
# --------------------------------------------------------------------------------------------


def _positive(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text}") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text}")
    return value


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--gateway", metavar="URL",
                        help="the gateway (default: $AF_GATEWAY_URL, else $DASK_GATEWAY__ADDRESS)")
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="af-gateway", formatter_class=fmt,
        description="Run AF Gateway workflows (yadage-style) from the command line.",
        epilog=EXIT_CODES_HELP)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "run", parents=[common], formatter_class=fmt, epilog=EXIT_CODES_HELP,
        help="submit a workflow (and, with --wait, follow it and download its outputs)",
        description="Submit WORKFLOW (with every file its $refs reach) to the gateway. Without\n"
                    "--wait, print the run id and exit. With --wait, follow the run and, when it\n"
                    "succeeded, download the files among its final outputs and write outputs.json.\n\n"
                    "Input data, as yadage-run's data directory and its -d options:\n"
                    "  af-gateway run workflow.yml --data inputs -d initdir=init \\\n"
                    "      -d 'subinits={signal: siginputs, backgrounds: {_data: bkg, fit_0: bkg/fit0}}'\n"
                    "sends every file under inputs/ (kept read-only in the run's workspace); the init\n"
                    "finds its files in inputs/init, the subworkflow run by stage signal in\n"
                    "inputs/siginputs. Bigger inputs (over 1000 files or 8 MiB) belong in storage (Rucio).")
    p.add_argument("workflow", metavar="WORKFLOW", help="the workflow file (YAML or JSON)")
    p.add_argument("-p", "--parameter", dest="parameters", action="append", metavar="KEY=VALUE",
                   help="an init parameter; VALUE is read as YAML (5 is a number); repeatable")
    p.add_argument("--parameters-file", metavar="FILE",
                   help="a YAML mapping of init parameters (-p wins over it)")
    p.add_argument("--data", metavar="DIR",
                   help="send every file under DIR as the run's input data (its data root, yadage-run's "
                        "pathbase): text as text, other files as base64; at most 1000 files and 8 MiB in all. "
                        "Links to directories are not followed")
    p.add_argument("-d", "--data-option", dest="data_options", action="append", metavar="KEY=YAML",
                   help="a data option as yadage-run's -d, directories relative to DIR: initdir=DIR (where "
                        "the init finds files; default init) or subinits={STAGE: DIR, ...} (where a "
                        "subworkflow's init finds them; a multistep stage's items as STAGE_i, nested as "
                        "{_data: DIR, INNER: DIR}); needs --data; repeatable")
    p.add_argument("--name", help="a name for the run")
    p.add_argument("--backend", help="where the steps run (local, htcondor, slurm, kubernetes)")
    p.add_argument("--retries", type=int, metavar="N",
                   help="restarts of a failed step before the run fails (0-5)")
    p.add_argument("--wait", action="store_true",
                   help="follow the run until it finished; download its outputs on success")
    p.add_argument("--output-dir", metavar="DIR",
                   help="where --wait puts the outputs (default ./af-gateway-outputs/RUN_ID)")
    p.add_argument("--timeout", type=_positive, metavar="SECONDS",
                   help="with --wait: give up after this long (exit 5; the run keeps running)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", parents=[common], formatter_class=fmt, epilog=EXIT_CODES_HELP,
                       help="show a run: state, stages, failed steps, outputs")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--json", action="store_true", help="print the gateway's WorkflowDag as JSON")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("logs", parents=[common], formatter_class=fmt, epilog=EXIT_CODES_HELP,
                       help="print a step's log",
                       description="Print the log of STEP: init, STAGE (a singlestep stage) or\n"
                                   "STAGE:INDEX (a step of a multistep stage).")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("step", metavar="STEP")
    p.add_argument("-f", "--follow", action="store_true",
                   help="keep printing new lines until the step finished")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("cancel", parents=[common], formatter_class=fmt, epilog=EXIT_CODES_HELP,
                       help="cancel a run")
    p.add_argument("run_id", metavar="RUN_ID")
    p.set_defaults(func=cmd_cancel)
    return parser


def main(argv=None):
    try:
        sys.stdout.reconfigure(line_buffering=True)
    except (AttributeError, ValueError):
        pass
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run" and not args.wait:
        for opt, value in (("--output-dir", args.output_dir), ("--timeout", args.timeout)):
            if value is not None:
                parser.error(f"{opt} needs --wait")
    if args.command == "run" and args.data_options and args.data is None:
        parser.error("-d/--data-option needs --data DIR")
    if args.command == "run" and args.retries is not None and not 0 <= args.retries <= 5:
        parser.error("--retries must be between 0 and 5")
    try:
        gateway = Gateway(args.gateway)
        return args.func(args, gateway)
    except CliError as exc:
        warn(f"af-gateway: {exc.message}")
        for d in exc.details:
            warn(f"  {d}")
        return exc.code
    except KeyboardInterrupt:
        warn("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # e.g. `af-gateway logs ... | head`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_OK


def entry_point():
    # Ctrl-C raises KeyboardInterrupt (also when a parent made SIGINT ignored, as some CI shells do).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
