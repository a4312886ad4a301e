"""What yadage's reference run (scripts/yadage-specs.sh, reference.py) and the gateway's conformance
test (gateway-server/test/e2e/test_yadage_specs.py) share: one key per workflow step, and outputs
normalised so that two runs in different directories compare equal when they computed the same.

A step's key is (scope, stage, index):
  scope  the subworkflows it runs in, outermost first, as (stage, instance index) pairs: () at the top
  stage  the name of the stage that made it (`init` for a workflow's parameters)
  index  its index in a multistep (or jq) stage, None for a singlestep stage
written in the gateway's node id syntax: `init`, `reduce`, `map:2`, `nested[0].stage1`,
`nested[0].map:2`, `map[1].inner[0].stage1`.

Outputs: a string that is a path inside the run's directory (yadage's workdir, the gateway's
workspace) becomes {"file": sha256 of its content, "text": that content if it is small text} or
{"dir": {relative path: sha256 | "dir"}} (the runners' own bookkeeping left out) or {"missing": true};
everything else stays as it is, lists in order.

Paths INSIDE files (and inside other strings) are canonicalised before hashing: steps write paths of
earlier steps' files (`echo {parone} > {outputfile}`), and yadage's layout (`<wd>/map_0/what.txt`,
`<wd>/upstream_0/stage1`, `<wd>/downstream/stage1`) is not the gateway's (`<ws>/map/0/what.txt`,
`<ws>/upstream/0/stage1`). Each absolute path under a directory of the run (Places: every step's own
directory by its key, a scope's init by the scope's directory, the top-level init by the run's
directory) becomes `<@KEY>` followed by the rest of the path: `<@map:0>/what.txt`,
`<@downstream[0].stage1>/output.txt`, `<@init>/init/1.txt`. Equal results compare equal; another
value, another file (other step or name) or another line order still differ.

The run's input data (yadage-run's data options, the gateway's `af-gateway run --data DIR`): yadage
reads it where it lies (run_data: pathbase, else the deepest directory holding the ones named), the
gateway from its copy in `<workspace>/.af/data`. A path into either, as a value or inside a file,
becomes `<data>` followed by the rest of the path (`<data>/basedata/signal_inputs/UFO`), and as a
value stands for its content like a path of the run. (Not `<@data>`: that is the token of a stage
named `data`.)

Imports only the standard library: it runs under yadage's venv and under the test suite's.
"""

import hashlib
import json
import os
import re
import stat

# What runners keep in a step's directory besides the step's own files.
BOOKKEEPING = re.compile(r"^(\.af|_packtivity|_yadage.*)$")
MAX_LISTED = 10_000  # entries of one published directory; a runaway step does not stall the comparison

_SEGMENT = r"[^.\[\]:]+"
_ID = re.compile(rf"^(?P<scope>(?:{_SEGMENT}\[\d+\]\.)*)(?P<stage>{_SEGMENT})(?::(?P<index>\d+))?$")
_SCOPE = re.compile(rf"({_SEGMENT})\[(\d+)\]\.")


def key_str(key):
    scope, stage, index = key
    return "".join(f"{s}[{i}]." for s, i in scope) + stage + ("" if index is None else f":{index}")


def gateway_key(node_id):
    """The key of a gateway node id, or None if it is not of the gateway's syntax."""
    m = _ID.match(node_id)
    if not m:
        return None
    scope = tuple((s, int(i)) for s, i in _SCOPE.findall(m.group("scope")))
    return scope, m.group("stage"), None if m.group("index") is None else int(m.group("index"))


def yadage_key(node):
    """The key of a node of yadage's snapshot (_yadage/yadage_snapshot_workflow.json, dag.nodes)."""
    meta = node["task"]["metadata"]
    parts = [p.replace("~1", "/").replace("~0", "~") for p in meta.get("wflow_offset", "").split("/")[1:]]
    if len(parts) % 2:
        raise ValueError(f"node {node.get('name')}: offset {meta.get('wflow_offset')!r} is not stage/index pairs")
    scope = tuple((parts[i], int(parts[i + 1])) for i in range(0, len(parts), 2))
    stage, idx = meta["wflow_stage"], meta.get("wflow_stage_node_idx")
    # yadage names a multistep (and jq) stage's steps STAGE_INDEX, a singlestep stage's step STAGE
    index = idx if idx is not None and node.get("name") == f"{stage}_{idx}" else None
    return scope, stage, index


TOKEN = "<@{}>"  # a directory of the run, by the key of the node working there
DATA_TOKEN = "<data>"  # the run's input data directory (yadage's data directory, the gateway's .af/data)
TEXT_SHOWN = 2000  # bytes: a text file up to this size is kept (canonicalised) next to its hash, to show a difference
# What ends a path written in text: blanks, quotes, separators of Python's and JSON's lists.
_END = rb"\s'\"`,;()\[\]{}<>|"
_NAME_CHAR = rb"A-Za-z0-9._~-"  # a root preceded by one of these is the tail of another path, not a path


class Places:
    """The directories of one run (or of two: the gateway's and yadage's), each by the key of the node
    working there: pairs (directory, key string). A step's own directory names it; an init's directory
    is its scope's (the top-level init's is the run's own directory, where input files are unpacked).
    A path belongs to the longest directory it is inside. The same directory given twice keeps the
    first key (give steps before inits). data: directories holding the run's input data, each
    written DATA_TOKEN (inside a run's directory, as the gateway's .af/data is, the longer wins)."""

    def __init__(self, pairs, data=()):
        self._token = {}
        tokens = [(d, TOKEN.format(k) if k is not None else None) for d, k in pairs] + [(d, DATA_TOKEN) for d in data]
        for directory, token in tokens:
            if not isinstance(directory, str) or not directory.startswith("/") or token is None:
                continue
            for d in (os.path.normpath(directory), os.path.realpath(directory)):
                if d != "/":
                    self._token.setdefault(d, token)
        self._dirs = sorted(self._token, key=len, reverse=True)
        if self._dirs:
            roots = b"|".join(re.escape(d.encode()) for d in self._dirs)
            self._pattern = re.compile(rb"(?<![" + _NAME_CHAR + rb"])(?:" + roots + rb")(?![^/" + _END + rb"])[^" + _END + rb"]*")
        else:
            self._pattern = None

    def __bool__(self):
        return bool(self._dirs)

    def token(self, path):
        """`<@KEY>/rest` (`<data>/rest`) for an absolute path inside one of the directories, else None."""
        for d in self._dirs:
            if path == d or path.startswith(d + "/"):
                return self._token[d] + path[len(d):]
        return None

    def inside(self, path):
        return self.token(path) is not None

    def canonical(self, data):
        """bytes (or str) with every path inside the run's directories written as its token."""
        if self._pattern is None:
            return data
        if isinstance(data, str):
            return self.canonical(data.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape")

        def sub(m):
            text = m.group().decode("utf-8", "surrogateescape")
            return (self.token(text) or text).encode("utf-8", "surrogateescape")

        return self._pattern.sub(sub, data)


NO_PLACES = Places(())


def yadage_dirs(snapshot_nodes, workdir):
    """{key string: directory} of the nodes of yadage's snapshot: a step's directory is its
    readwrite `workdir`; an init's is its scope's, the directory its steps' directories are in
    (yadage names it `<stage>_<index>` or `<stage>`: `run/upstream_0`, `run/downstream`), the
    top-level init's the run's own directory. A scope without steps has no directory."""
    dirs, scope_dirs = {}, {}
    for node in snapshot_nodes:
        scope, stage, index = key = yadage_key(node)
        rw = [r.get("path") for r in ((node["task"].get("state") or {}).get("readwrite") or []) if r.get("name") == "workdir"]
        if rw:
            dirs[key_str(key)] = rw[0]
            scope_dirs.setdefault(scope, os.path.dirname(os.path.normpath(rw[0])))
    for node in snapshot_nodes:
        scope, stage, index = key = yadage_key(node)
        if stage == "init" and key_str(key) not in dirs:
            d = workdir if not scope else scope_dirs.get(scope)
            if d:
                dirs[key_str(key)] = d
    return dirs


def place_pairs(dirs):
    """(directory, key) pairs of {key: directory}, steps before inits (see Places)."""
    items = sorted(dirs.items(), key=lambda kv: (kv[0] == "init" or kv[0].endswith(".init"), kv[0]))
    return [(d, k) for k, d in items if d]


def _hash_file(path, mask, places):
    """sha256 of the file's canonical content (volatile lines masked, paths as tokens) and that
    content as text when it is small UTF-8 text, else None."""
    h = hashlib.sha256()
    shown, size = [], 0
    with open(path, "rb") as f:
        for line in f:
            text = line.rstrip(b"\n").decode("utf-8", "replace")
            out = b"<masked>\n" if mask is not None and mask.search(text) else places.canonical(line)
            h.update(out)
            size += len(out)
            if size <= TEXT_SHOWN:
                shown.append(out)
    try:
        text = b"".join(shown).decode("utf-8") if size <= TEXT_SHOWN else None
    except UnicodeDecodeError:
        text = None
    return h.hexdigest(), text


def _listing(directory, mask, places):
    out = {}
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if not BOOKKEEPING.match(d))
        rel = os.path.relpath(dirpath, directory)
        for name in dirnames:
            out[os.path.normpath(os.path.join(rel, name))] = "dir"
        for name in sorted(filenames):
            if BOOKKEEPING.match(name):
                continue
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if stat.S_ISREG(st.st_mode):
                out[os.path.normpath(os.path.join(rel, name))] = _hash_file(full, mask, places)[0]
            elif stat.S_ISLNK(st.st_mode):
                out[os.path.normpath(os.path.join(rel, name))] = {"link": places.canonical(os.readlink(full))}
            else:
                out[os.path.normpath(os.path.join(rel, name))] = "other"
        if len(out) > MAX_LISTED:
            out["..."] = f"more than {MAX_LISTED} entries"
            break
    return out


def describe_path(path, mask=None, places=NO_PLACES):
    """What a path inside a run's directory stands for: its content, not where it is."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return {"missing": True}
    if stat.S_ISLNK(st.st_mode):
        return {"link": places.canonical(os.readlink(path))}
    if stat.S_ISDIR(st.st_mode):
        return {"dir": _listing(path, mask, places)}
    if stat.S_ISREG(st.st_mode):
        digest, text = _hash_file(path, mask, places)
        return {"file": digest, **({"text": text} if text is not None else {})}
    return {"other": True}


def normalise(value, places, mask=None):
    """value with every string that is an absolute path inside the run's directories (places: a
    Places) replaced by describe_path, and paths inside other strings by their tokens; mask: a
    compiled regular expression of volatile lines, or None."""
    if isinstance(value, dict):
        return {k: normalise(v, places, mask) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v, places, mask) for v in value]
    if isinstance(value, str):
        if value.startswith("/") and places.inside(os.path.normpath(value)):
            return describe_path(os.path.normpath(value), mask, places)
        return places.canonical(value)
    return value


def volatile(entry):
    """The entry's mask of volatile lines (entries.json `volatile`), compiled, or None."""
    return re.compile(entry["volatile"]) if entry.get("volatile") else None


def substitute(value, names):
    """value with {specs} and {data} in its strings replaced (entries.json's placeholders)."""
    if isinstance(value, dict):
        return {k: substitute(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, names) for v in value]
    if isinstance(value, str):
        for k, v in names.items():
            value = value.replace("{" + k + "}", v)
    return value


def is_file(value):
    """Whether a normalised value is a file's description (describe_path): {"file": sha256, "text"?}."""
    return (isinstance(value, dict) and set(value) <= {"file", "text"} and isinstance(value.get("file"), str)
            and re.fullmatch(r"[0-9a-f]{64}", value["file"]) is not None)


def differences(want, got, where="", lines_unordered=False):
    """The places where two normalised values differ, as 'PATH: yadage X, gateway Y' lines.
    lines_unordered: files whose canonical text is known (small text) compare as multisets of lines
    (the same lines, each as often, in any order); others, and everything else, exactly."""
    if is_file(want) and is_file(got):
        if want["file"] == got["file"]:
            return []
        if "text" in want and "text" in got:  # its canonical text says more than its hash
            want, got = want["text"], got["text"]
            if lines_unordered and sorted(want.split("\n")) == sorted(got.split("\n")):
                return []
        return [f"{where or '(value)'}: file content differs: yadage {_short(want, 600)}, gateway {_short(got, 600)}"]
    if isinstance(want, dict) and isinstance(got, dict):
        out = []
        for k in sorted(set(want) | set(got)):
            here = f"{where}.{k}" if where else k
            if k not in got:
                out.append(f"{here}: yadage {_short(want[k])}, gateway has no such key")
            elif k not in want:
                out.append(f"{here}: gateway {_short(got[k])}, yadage has no such key")
            else:
                out += differences(want[k], got[k], here, lines_unordered)
        return out
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        return [d for i, (a, b) in enumerate(zip(want, got)) for d in differences(a, b, f"{where}[{i}]", lines_unordered)]
    if want == got and type(want) is type(got):
        return []
    return [f"{where or '(value)'}: yadage {_short(want)}, gateway {_short(got)}"]


def _short(v, n=160):
    text = json.dumps(v, sort_keys=True)
    return text if len(text) <= n else text[: n - 3] + "..."


def run_data(entry, names):
    """The run's data for the data options yadage-run is given (entries.json `dataopts`: pathbase, initdir,
    subinits): (DIR, the options initdir and subinits with their directories relative to DIR), DIR being
    pathbase, else the deepest directory holding every directory the options name. DIR is yadage's data
    directory and what the gateway's run is sent (af-gateway run --data DIR), kept as its .af/data. None
    for an entry without data options, or one given what yadage's init published instead
    (init_from_yadage). ValueError for options the gateway's run cannot be given as they are."""
    opts = substitute(entry.get("dataopts") or {}, names)
    if not opts or entry.get("init_from_yadage"):
        return None
    name = entry["name"]
    unknown = set(opts) - {"pathbase", "initdir", "subinits"}
    if unknown:
        raise ValueError(f"{name}: data options the gateway's run cannot be given: {sorted(unknown)}")
    pathbase = opts.get("pathbase")

    def absolute(d, where):
        # as yadage-run: os.path.join(pathbase or its work directory, d); an absolute d stands alone
        if not pathbase and not os.path.isabs(d):
            raise ValueError(f"{name}: {where} {d} is relative to yadage's work directory")
        return os.path.normpath(os.path.join(pathbase or "/", d))

    def leaves(value, where):
        for k, v in value.items():
            yield from leaves(v, f"{where}.{k}") if isinstance(v, dict) else [(f"{where}.{k}", v)]

    dirs = [absolute(d, w) for w, d in leaves(opts.get("subinits") or {}, "subinits")]
    if "initdir" in opts:
        dirs.append(absolute(opts["initdir"], "initdir"))
    if not pathbase and not dirs:
        raise ValueError(f"{name}: data options name no directory")
    root = os.path.normpath(pathbase) if pathbase else os.path.commonpath(dirs)
    if "initdir" not in opts and not pathbase and os.path.exists(os.path.join(root, "init")):
        # yadage's init looked in <its work directory>/init (nothing there); the gateway's in DIR/init
        raise ValueError(f"{name}: {root}/init would be its init's")

    def relative(value, where):
        if isinstance(value, dict):
            return {k: relative(v, f"{where}.{k}") for k, v in value.items()}
        rel = os.path.relpath(absolute(value, where), root)
        if rel == ".." or rel.startswith("../"):
            raise ValueError(f"{name}: {where} {value} is outside {root}")
        return rel

    return root, {key: relative(opts[key], key) for key in ("initdir", "subinits") if key in opts}
