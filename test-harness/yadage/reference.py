"""yadage's own results for every entry of entries.json: run by scripts/yadage-specs.sh with the pinned
yadage venv's Python, once per machine (the script caches what it writes).

Each entry runs with `yadage-run` on a copy of its spec directory in which every `docker-encapsulated`
environment is `localproc-env` (its commands run on this host, as the gateway's local backend runs
them). Per step it records the key (yadage_compare.key_str), yadage's state, its directory (yadage_dirs:
what paths inside it are canonicalised to) and its published result, normalised (paths inside the
run's directory or its data directory by their content, paths inside files by node key, paths into the
data directory as <data>/...); per entry the status: SUCCESS when
yadage-run completed the workflow, else FAILED with the reason from its log.

Usage: python reference.py --entries ENTRIES.json --specs DIR --data DIR --yadage-run PATH --work DIR --out FILE
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from yadage_compare import (Places, key_str, normalise, place_pairs, run_data, substitute, volatile, yadage_dirs,  # noqa: E402
                            yadage_key)

TIMEOUT = 300  # seconds one entry may take


def localproc(doc):
    """doc with every docker-encapsulated environment replaced by a plain localproc-env one."""
    if isinstance(doc, dict):
        if doc.get("environment_type") == "docker-encapsulated":
            return {"environment_type": "localproc-env"}
        return {k: localproc(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [localproc(v) for v in doc]
    return doc


def copy_for_reference(src, dst):
    """The spec directory, its YAML/JSON files with docker environments rewritten; returns the files changed."""
    shutil.copytree(src, dst)
    changed = []
    for dirpath, _, names in os.walk(dst):
        for name in names:
            if not name.endswith((".yml", ".yaml", ".json")):
                continue
            path = os.path.join(dirpath, name)
            with open(path) as f:
                text = f.read()
            if "docker-encapsulated" not in text:
                continue
            doc = localproc(yaml.safe_load(text))  # anchors are expanded: the copy is only read by yadage
            with open(path, "w") as f:
                yaml.safe_dump(doc, f, sort_keys=False)
            changed.append(os.path.relpath(path, dst))
    return sorted(changed)


def failure_reason(log_text, rc, nodes):
    """What made yadage-run fail, from its log: the failed steps, the first step error, the last
    exception raised before yadage gave up, and its closing `Error:` line."""
    lines = log_text.splitlines()
    end = next((i for i, ln in enumerate(lines) if ln.startswith("Error: ")), len(lines))
    parts = [f"yadage-run exited {rc}"]
    failed = [k for k, n in nodes.items() if n["state"] == "FAILED"]
    if failed:
        parts.append("steps FAILED: " + ", ".join(failed))
    step_errors = [ln.split("|", 3)[-1].strip() for ln in lines[:end] if re.search(r"\.step \|\s*ERROR \|", ln)]
    if step_errors:
        parts.append(step_errors[0][:300])
    exceptions = [ln.strip() for ln in lines[:end] if re.match(r"^[A-Za-z_.]*(Error|Exception): ", ln)]
    if exceptions:
        parts.append(exceptions[-1][:300])
    if end < len(lines):
        parts.append(lines[end][:300])
    return "; ".join(parts)


def run_entry(entry, args, names):
    name = entry["name"]
    base = os.path.join(args.work, name)
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)
    spec = os.path.join(base, "spec")
    rewritten = copy_for_reference(os.path.join(args.specs, entry["dir"]), spec)
    init = {}
    if entry.get("init"):
        with open(os.path.join(args.specs, entry["dir"], entry["init"])) as f:
            init.update(yaml.safe_load(f) or {})
    init.update(substitute(entry.get("parameters") or {}, names))
    init_file = os.path.join(base, "init.yml")
    with open(init_file, "w") as f:
        yaml.safe_dump(init, f)
    workdir = os.path.join(base, "run")
    cmd = [args.yadage_run, "-t", spec, workdir, entry["workflow"], init_file]
    for k, v in substitute(entry.get("dataopts") or {}, names).items():
        cmd += ["-d", f"{k}={json.dumps(v)}"]  # JSON is YAML: yadage-run yaml-loads each value
    log_path = os.path.join(args.work, f"{name}.log")
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, cwd=base, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            rc = proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = None
    seconds = round(time.monotonic() - t0, 2)
    with open(log_path) as f:
        log_text = f.read()
    mask = volatile(entry)
    nodes, problems = {}, []
    snapshot = os.path.join(workdir, "_yadage", "yadage_snapshot_workflow.json")
    if os.path.exists(snapshot):
        with open(snapshot) as f:
            dag = json.load(f)["dag"]
        dirs = yadage_dirs(dag["nodes"], workdir)
        try:
            data = run_data(entry, names)
        except ValueError:
            data = None  # the conformance test says why the gateway's run cannot be given it
        places = Places(place_pairs(dirs), data=[data[0]] if data else ())
        for node in dag["nodes"]:
            key = key_str(yadage_key(node))
            if key in nodes:
                problems.append(f"two yadage nodes have the key {key}")
            nodes[key] = {
                "name": node["name"],
                "state": node["state"],
                "dir": dirs.get(key),
                "result": node.get("result"),
                "outputs": normalise(node.get("result"), places, mask),
            }
    if rc is None:
        status, reason = "FAILED", f"yadage-run did not finish within {TIMEOUT} s"
    elif rc != 0:
        status, reason = "FAILED", failure_reason(log_text, rc, nodes)
    elif problems:
        status, reason = "FAILED", "; ".join(problems)
    elif any(n["state"] != "SUCCESS" for n in nodes.values()):
        status, reason = "FAILED", "yadage-run exited 0 with steps not SUCCESS: " + ", ".join(
            f"{k} {n['state']}" for k, n in nodes.items() if n["state"] != "SUCCESS")
    else:
        status, reason = "SUCCESS", None
    return {
        "status": status,
        **({"reason": reason} if reason else {}),
        "seconds": seconds,
        "command": cmd,
        "init": init,
        "rewritten_to_localproc": rewritten,
        "workdir": workdir,
        "nodes": nodes,
    }


def main():
    p = argparse.ArgumentParser()
    for a in ("--entries", "--specs", "--data", "--yadage-run", "--work", "--out"):
        p.add_argument(a, required=True)
    p.add_argument("--version", required=True, help="yadage's version, recorded")
    args = p.parse_args()
    with open(args.entries) as f:
        table = json.load(f)
    names = {"specs": args.specs, "data": args.data}
    os.makedirs(args.work, exist_ok=True)
    out = {"yadage": args.version, "specs": args.specs, "data": args.data, "entries": {}}
    for entry in table["entries"]:
        res = run_entry(entry, args, names)
        out["entries"][entry["name"]] = res
        print(f"{entry['name']}: yadage {res['status']}, {len(res['nodes'])} nodes, {res['seconds']} s"
              + (f" ({res['reason'][:200]})" if res.get("reason") else ""), file=sys.stderr, flush=True)
    tmp = args.out + ".part"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1)  # entries in the order of entries.json
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
