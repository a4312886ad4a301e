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
workspace) becomes {"file": sha256 of its content} or {"dir": {relative path: sha256 | "dir"}} (the
runners' own bookkeeping left out) or {"missing": true}; everything else stays as it is, lists in order.

Imports only the standard library: it runs under yadage's venv and under the test suite's.
"""

import hashlib
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


def _inside(path, roots):
    for root in roots:
        if path == root or path.startswith(root.rstrip("/") + "/"):
            return True
    return False


def _hash_file(path, mask):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if mask is None:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        else:
            for line in f:
                text = line.rstrip(b"\n").decode("utf-8", "replace")
                h.update(b"<masked>\n" if mask.search(text) else line)
    return h.hexdigest()


def _listing(directory, mask):
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
            out[os.path.normpath(os.path.join(rel, name))] = _hash_file(full, mask) if stat.S_ISREG(st.st_mode) else "other"
        if len(out) > MAX_LISTED:
            out["..."] = f"more than {MAX_LISTED} entries"
            break
    return out


def describe_path(path, mask=None):
    """What a path inside a run's directory stands for: its content, not where it is."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return {"missing": True}
    if stat.S_ISLNK(st.st_mode):
        return {"link": os.readlink(path)}
    if stat.S_ISDIR(st.st_mode):
        return {"dir": _listing(path, mask)}
    if stat.S_ISREG(st.st_mode):
        return {"file": _hash_file(path, mask)}
    return {"other": True}


def normalise(value, roots, mask=None):
    """value with every string that is an absolute path inside one of roots (the run's directories)
    replaced by describe_path; mask: a compiled regular expression of volatile lines, or None."""
    roots = sorted({os.path.normpath(r) for r in roots} | {os.path.realpath(r) for r in roots})
    if isinstance(value, dict):
        return {k: normalise(v, roots, mask) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v, roots, mask) for v in value]
    if isinstance(value, str) and value.startswith("/"):
        path = os.path.normpath(value)
        if _inside(path, roots):
            return describe_path(path, mask)
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


def differences(want, got, where=""):
    """The places where two normalised values differ, as 'PATH: yadage X, gateway Y' lines."""
    if isinstance(want, dict) and isinstance(got, dict):
        out = []
        for k in sorted(set(want) | set(got)):
            here = f"{where}.{k}" if where else k
            if k not in got:
                out.append(f"{here}: yadage {_short(want[k])}, gateway has no such key")
            elif k not in want:
                out.append(f"{here}: gateway {_short(got[k])}, yadage has no such key")
            else:
                out += differences(want[k], got[k], here)
        return out
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        return [d for i, (a, b) in enumerate(zip(want, got)) for d in differences(a, b, f"{where}[{i}]")]
    if want == got and type(want) is type(got):
        return []
    return [f"{where or '(value)'}: yadage {_short(want)}, gateway {_short(got)}"]


def _short(v, n=160):
    import json
    text = json.dumps(v, sort_keys=True)
    return text if len(text) <= n else text[: n - 3] + "..."
