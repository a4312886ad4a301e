"""Conformance with yadage: yadage 0.21.2's own test specs (tests/testspecs, the entries of
test-harness/yadage/entries.json) run through the gateway, every step compared with what yadage itself
computed on them (scripts/yadage-specs.sh: the reference, built once per machine).

Each entry's workflow is submitted with `af-gateway run` (the files its $refs reach, the init
parameters yadage got, and for an entry with yadage's data options its data: --data DIR -d subinits=...),
then judged:
  refused   passes if the refusal names a feature as "not supported" (recorded), or yadage fails on
            the spec too; fails for an entry of MUST_RUN, and for a spec yadage completes unless the
            entry is a KNOWN_GAP (refused for the reason listed there)
  SUCCESS   every step yadage has exists on the gateway and the other way round (init nodes of any
            scope compared where both have them, the top-level init always) and their outputs are
            equal once normalised (test-harness/yadage/yadage_compare.py: a path inside the run's
            directory stands for its file's content or its directory's listing; paths written inside
            files stand for the node whose directory they are in and the rest of the path, as both
            runners lay their directories out differently; a path into the run's data, yadage's data
            directory or the gateway's copy of it, stands for <data> and the rest of the path; lists
            in order). One allowance, per entry and said in its verdict ("equal up to the order of
            discovered files"): an entry of entries.json with `unordered_discover` (bsm_grid_scaffold:
            yadage's glob follows the directory's order on disk, the gateway's is sorted) compares its
            inits' lists of paths into the data as multisets of their files' content, and small text
            files as multisets of lines; the gateway's lists must be sorted.
            Any other difference fails, whatever the entry: a run that succeeds with other results than
            yadage's is the worst outcome. A KNOWN_GAP that now matches fails too: move it to MUST_RUN.
            Where yadage failed, only entries of BEYOND_YADAGE may succeed (their steps yadage
            completed must match, and the results checked by hand, BEYOND_YADAGE_RESULTS)
  FAILED    passes if yadage failed too (not for MUST_RUN), or for a KNOWN_GAP failing for the
            reason listed there; else fails with the gateway's message
One line per entry (yadage's status, the gateway's outcome, the match) is printed at the end, and the
count of entries equal, beyond yadage and refused (docs/workflows.md gives today's).

Run alone: bash scripts/yadage-specs.sh ensure && cd gateway-server/test/e2e &&
           ../../../.venv/bin/python -m pytest -q test_yadage_specs.py
With YADAGE_SPECS_KEEP=DIR each run's DAG and workspace are copied to DIR before the runs are deleted.
"""

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from af_e2e_support import REPO, client_credentials_token, oidc_workflow_gateway

sys.path.insert(0, str(REPO / "test-harness" / "yadage"))
from yadage_compare import (Places, differences, gateway_key, is_file, key_str, normalise, place_pairs,  # noqa: E402
                            run_data, volatile)

AF_GATEWAY = REPO / ".venv" / "bin" / "af-gateway"
SCRIPT = REPO / "scripts" / "yadage-specs.sh"
TABLE = json.loads((REPO / "test-harness" / "yadage" / "entries.json").read_text())
ENTRIES = {e["name"]: e for e in TABLE["entries"]}
RUN_TIMEOUT = 120  # seconds from submission until a run must have finished
FINISHED = ("SUCCESS", "FAILED", "CANCELLED")

# The ratchet: entries the gateway runs with yadage's results today (for an entry of BEYOND_YADAGE:
# the steps yadage completed, and the results listed there). An entry here fails on anything else (a
# refusal, a failure, a difference). Grow it as the gateway learns more of the language.
MUST_RUN = {
    "local-helloworld",
    "mapreduce",
    "cartesian_mapreduce",
    "mapreduce_batched",
    "mapreduce_batched_multilevel",
    "mapreduce_parmount",
    "jqwflow",
    "jqnodestruct",
    "registering_values",
    "nested",
    "nestedmapreduce",
    "nestedmapreduce_regval",
    "stackednestings",
    "casesflow-single-hello",
    "casesflow-single-bye",
    "casesflow-single-nochoice",
    "casesflow-single-subflow",
    "dynamic_glob",
    "dynamic_glob-subworkflow",
    "dynamic_glob-frominit",
    "dynamic_mapreduce_fromfile",
    "analysis_scaffold",
    "bsm_grid_scaffold",  # up to the order of discovered files (entries.json unordered_discover)
    "recast_scaffold",
}

# Entries yadage completes but the gateway cannot yet: why, and a regular expression its refusal or
# failure message must match (so that a gap failing for another reason is seen). Asserted to still be
# gaps: an entry here that runs with yadage's results fails the test, so that it moves to MUST_RUN.
# Empty since the gateway takes a run's data (the last three, whose subworkflows find their inputs in
# yadage's data options, with workflow_opts.discover for two of them); a new entry yadage completes that
# the gateway cannot goes here as NAME: (why, regular expression).
KNOWN_GAPS: dict[str, tuple[str, str]] = {}

# Entries yadage fails on only because of how the reference runs it (or because yadage 0.21.2 cannot
# run them), where the gateway succeeds. Their steps yadage completed must still match, and the
# results checked by hand once (BEYOND_YADAGE_RESULTS: node -> outputs, files by their canonical text)
# must stay.
WORKDIR_IN_SUBWORKFLOW = ("yadage 0.21.2 fails with KeyError 'workdir': a literal '{workdir}' parameter of a stage running a "
                          "subworkflow reaches the subworkflow's init, which has no workdir to put in; ")
BEYOND_YADAGE = {
    "mapreduce_parmount": "the reference runs its busybox steps as localproc-env, where yadage runs no script "
                          "(interpolated-script-cmd: KeyError 'command') and writes no par_mounts; in busybox both work",
    "casesflow-single-subflow": WORKDIR_IN_SUBWORKFLOW + "the gateway puts the stage's directory in outputfile, which "
                                "subflow.yml (the case for par >= 4) does not read: its hello step writes HELLO 5 to its own "
                                "{workdir}/hello_world.txt",
    "dynamic_glob-subworkflow": WORKDIR_IN_SUBWORKFLOW + "the gateway puts each item's directory (outputfile "
                                "<workspace>/map/i/mapout.txt), where the subworkflow's map step writes and reduce reads",
}
_DATED = "<masked>\nTHIS IS FILE {}\n"
BEYOND_YADAGE_RESULTS = {
    # reduce: its par_mount lists mapmore's files (JSON strings, one a line), it cats them: their text, map's paths
    "mapreduce_parmount": {
        "mapmore:1": {"output": {"text": "<@map:1>/output_one.txt\n"}},
        "reduce": {"output": {"text": "<@map:0>/output_one.txt\n<@map:1>/output_one.txt\n<@map:2>/output_one.txt\n"}},
    },
    # par 5: the third case, subflow.yml, whose hello step echoes the subworkflow's parone
    "casesflow-single-subflow": {"hello_world[0].hello_world": {"outputfile": {"text": "HELLO 5\n"}}},
    # each map[i] writes the upper-cased file i+1 where its init's outputfile says; reduce cats them in order
    "dynamic_glob-subworkflow": {
        **{f"map[{i}].init": {"outputfile": {"text": _DATED.format(i + 1)}, "inputfile": {"text": f"this is file {i + 1}\n"}}
           for i in range(3)},
        **{f"map[{i}].map": {"mapout": {"text": _DATED.format(i + 1)}} for i in range(3)},
        "reduce": {"reduceout": {"text": "".join(_DATED.format(i) for i in (1, 2, 3))}},
    },
}


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference():
    """yadage's results (built once per machine, < 1 s when cached; about a minute the first time)."""
    res = subprocess.run(["bash", str(SCRIPT), "ensure"], capture_output=True, text=True, timeout=600,
                         stdin=subprocess.DEVNULL)
    assert res.returncode == 0, f"{SCRIPT} ensure failed:\n{res.stderr[-3000:]}"
    ref = json.loads(Path(res.stdout.strip().splitlines()[-1]).read_text())
    assert set(ref["entries"]) == set(ENTRIES), "the reference is not of this entries.json"
    return ref


@pytest.fixture(scope="module")
def gateway(provider, tmp_path_factory):
    # every entry is submitted at once: no per-user limit on unfinished runs
    with oidc_workflow_gateway(provider, tmp_path_factory.mktemp("gw-yadage"), max_active_runs_per_user=None,
                               max_parallel_steps=8) as gw:
        token = client_credentials_token(provider, "ci-pipeline")
        token_file = gw["dir"] / "token"
        token_file.write_text(token)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AF_GATEWAY", "BEARER_TOKEN", "DASK_GATEWAY", "PYTEST_"))}
        runtime = gw["dir"] / "runtime"
        runtime.mkdir()
        env.update(AF_GATEWAY_URL=gw["url"], BEARER_TOKEN_FILE=str(token_file), XDG_RUNTIME_DIR=str(runtime))
        yield {**gw, "env": env, "token": token}


def cli(gw, *args, timeout=60):
    return subprocess.run([str(AF_GATEWAY), *map(str, args)], env=gw["env"], cwd=str(gw["dir"]), capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def show(res):
    return f"exit {res.returncode}\n--- stdout ---\n{res.stdout}\n--- stderr ---\n{res.stderr}"


@pytest.fixture(scope="module")
def runs(reference, gateway, tmp_path_factory, request):
    """Every entry submitted at once (so the module takes about as long as its slowest run):
    name -> {res: the CLI's answer, run_id, submitted}. At the end: runs cancelled and deleted, and
    the summary printed."""
    params_dir = tmp_path_factory.mktemp("params")
    specs = Path(reference["specs"])
    names = placeholders(reference)

    def submit(name):
        entry = ENTRIES[name]
        params = params_dir / f"{name}.json"
        params.write_text(json.dumps(gateway_parameters(entry, reference["entries"][name])))  # JSON is YAML
        t0 = time.monotonic()
        res = cli(gateway, "run", specs / entry["dir"] / entry["workflow"], "--parameters-file", params,
                  *data_arguments(entry, names), "--retries", "0", "--name", f"yadage-{name}")
        run_id = res.stdout.strip() if res.returncode == 0 else None
        return name, {"res": res, "run_id": run_id, "submitted": t0}

    with ThreadPoolExecutor(8) as pool:
        out = dict(pool.map(submit, ENTRIES))
    yield out
    api = f"{gateway['url']}/api/af/workflows"
    auth = {"Authorization": f"Bearer {gateway['token']}"}
    if os.environ.get("YADAGE_SPECS_KEEP"):
        keep(Path(os.environ["YADAGE_SPECS_KEEP"]), out, api, auth)
    for sub in out.values():
        if sub["run_id"]:
            requests.post(f"{api}/{sub['run_id']}/cancel", headers=auth, timeout=30)
    for sub in out.values():
        if not sub["run_id"]:
            continue
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = requests.delete(f"{api}/{sub['run_id']}", headers=auth, timeout=30)
            if r.status_code in (200, 204, 404):
                break
            time.sleep(0.5)  # a cancelled run finishes its running steps first
    # printed past pytest's capture, so that the log always says how far the gateway got
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print("\n" + "\n".join(summary_lines()), flush=True)


def keep(directory, out, api, auth):
    """YADAGE_SPECS_KEEP=DIR: each run's DAG (DIR/NAME.dag.json) and a copy of its workspace (DIR/NAME/)
    kept to read by hand next to yadage's (the reference's work/NAME/run)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, sub in out.items():
        if not sub["run_id"]:
            continue
        r = requests.get(f"{api}/{sub['run_id']}", headers=auth, timeout=30)
        if r.status_code != 200:
            continue
        (directory / f"{name}.dag.json").write_text(json.dumps(r.json(), indent=1))
        target = directory / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(r.json()["run"]["workspace"], target, symlinks=True, dirs_exist_ok=True,
                        ignore_dangling_symlinks=True)


def gateway_parameters(entry, ref):
    """What the gateway's run gets: the init yadage got, or (init_from_yadage) what yadage's init step
    published from it: the input files its data options brought, by their paths in the cache."""
    if entry.get("init_from_yadage"):
        init = ref["nodes"].get("init")
        assert init and init["state"] == "SUCCESS", f"{entry['name']}: yadage's init step did not succeed: {ref.get('reason')}"
        return init["result"]
    return ref["init"]


def placeholders(reference):
    """entries.json's {specs} and {data}: where the reference put yadage's specs and the stand-in data."""
    return {"specs": reference["specs"], "data": reference["data"]}


def data_arguments(entry, names):
    """`af-gateway run`'s --data DIR and -d KEY=VALUE for the entry's run_data (none without)."""
    data = run_data(entry, names)
    if data is None:
        return []
    root, opts = data
    # JSON is YAML
    return ["--data", root] + [a for key, value in opts.items() for a in ("-d", f"{key}={json.dumps(value)}")]


SUMMARY = {}


def summary_lines():
    rows = [SUMMARY.get(name) or (name, "?", "not judged", "") for name in ENTRIES]
    width = max(len(r[0]) for r in rows)
    lines = ["yadage conformance (entry | yadage | gateway | match):"]
    lines += [f"  {n:<{width}} | {y:<7} | {g} | {m}" for n, y, g, m in rows]
    matched = sum(r[3].startswith("equal") for r in rows)
    allowed = sum(r[3].startswith("equal up to") for r in rows)
    beyond = sum(r[3].startswith("yadage failed; its completed steps equal") for r in rows)
    refused = sum(r[2].startswith("REFUSED") for r in rows)
    lines.append(f"  {len(rows)} entries: {matched} run with yadage's results"
                 + (f" ({allowed} up to the order of discovered files)" if allowed else "")
                 + f", {beyond} beyond what yadage completes (results as checked), {refused} refused, "
                 f"{len(rows) - matched - beyond - refused} other")
    return lines


# --------------------------------------------------------------------------------------------
# judging
# --------------------------------------------------------------------------------------------


def wait_finished(gw, run_id, submitted):
    deadline = submitted + RUN_TIMEOUT
    while True:
        st = cli(gw, "status", run_id, "--json")
        if st.returncode in (0, 1):
            dag = json.loads(st.stdout)
            if dag["run"]["status"] in FINISHED:
                return dag
        if time.monotonic() > deadline:
            return None
        time.sleep(0.5)


def not_supported(message):
    return [ln.strip() for ln in message.splitlines() if "not supported" in ln]


def gateway_failure(dag):
    run = dag["run"]
    parts = [f"run {run['status']}" + (f": {run['message']}" if run.get("message") else "")]
    for n in dag["nodes"]:
        if n["state"] == "FAILED":
            parts.append(f"step {n['id']} FAILED" + (f" (exit code {n['exit_code']})" if n.get("exit_code") is not None else "")
                         + (f": {n['message']}" if n.get("message") else ""))
    return "\n".join(parts)


def gateway_dirs(dag):
    """{key: directory} of the gateway's nodes: a step's is its workdir; an init's is its scope's
    directory in the gateway's layout (`<workspace>/map/0` for map[0], the workspace for the run's own
    init), not its workdir field, which names `<workspace>/map[0]` for a subworkflow's init."""
    ws = dag["run"]["workspace"]
    dirs = {"init": ws}
    for n in dag["nodes"]:
        key = gateway_key(n["id"])
        if key is None:
            continue
        scope, stage, index = key
        if stage == "init" and index is None:
            dirs[key_str(key)] = os.path.join(ws, *(p for s, i in scope for p in (s, str(i))))
        elif n.get("workdir"):
            dirs[key_str(key)] = n["workdir"]
    return dirs


def texts(value):
    """A normalised value with each file as {"text": its canonical text} (None: large or not text)."""
    if isinstance(value, dict):
        return {"text": value.get("text")} if is_file(value) else {k: texts(v) for k, v in value.items()}
    if isinstance(value, list):
        return [texts(v) for v in value]
    return value


def gateway_data(dag):
    """The gateway's copy of the run's data (run-data.ts dataRoot): <workspace>/.af/data."""
    return os.path.join(dag["run"]["workspace"], ".af", "data")


def inside(directory):
    """Whether a value is a path inside directory (None: never)."""
    return lambda v: bool(directory) and isinstance(v, str) and os.path.normpath(v).startswith(directory + "/")


def is_init(key):
    return key == "init" or key.endswith(".init")


def discovered_lists(raw, in_data):
    """The lists of a published value (raw, as published) whose items are all paths into the run's data."""
    if isinstance(raw, list):
        if raw and all(in_data(v) for v in raw):
            yield raw
        else:
            for v in raw:
                yield from discovered_lists(v, in_data)
    elif isinstance(raw, dict):
        for v in raw.values():
            yield from discovered_lists(v, in_data)


def discovered_as_multisets(raw, value, in_data):
    """value (raw normalised) with each list that raw has as paths into the run's data sorted by its
    items' canonical content (what they stand for), so that such lists compare as multisets."""
    if isinstance(raw, list) and isinstance(value, list) and len(raw) == len(value):
        if raw and all(in_data(v) for v in raw):
            return sorted(value, key=lambda v: json.dumps(v, sort_keys=True))
        return [discovered_as_multisets(r, v, in_data) for r, v in zip(raw, value)]
    if isinstance(raw, dict) and isinstance(value, dict):
        return {k: discovered_as_multisets(raw[k], v, in_data) if k in raw else v for k, v in value.items()}
    return value


def compare(entry, ref, dag, completed_only=False, expected=None, data_root=None, unordered_discover=False):
    """The differences between yadage's steps and the gateway's (empty: equal). completed_only: only
    the steps yadage completed are compared (it failed), each must exist on the gateway. expected:
    {node: outputs, files by their text} the gateway's nodes must have besides (BEYOND_YADAGE_RESULTS).
    A path into the gateway's copy of the run's data is <data>/..., as the reference writes paths into
    yadage's data directory (data_root, run_data's DIR). unordered_discover (only for an entry with
    entries.json `unordered_discover`): the inits' lists of paths into the data compare as multisets
    of what their files hold, small text files as multisets of lines."""
    mask = volatile(entry)
    problems = []
    ours = {}
    for n in dag["nodes"]:
        key = gateway_key(n["id"])
        if key is None:
            problems.append(f"gateway node id {n['id']!r} is not of the form SCOPE[i].STAGE:INDEX")
            continue
        ours[key_str(key)] = n
    theirs = {k: n for k, n in ref["nodes"].items() if not completed_only or n["state"] == "SUCCESS"}

    for k in sorted(set(theirs) - set(ours)):
        if not is_init(k) or k == "init":
            problems.append(f"{k}: yadage has this step ({theirs[k]['state']}), the gateway has not")
    if not completed_only:
        for k in sorted(set(ours) - set(theirs)):
            if not is_init(k):
                problems.append(f"{k}: the gateway has this step ({ours[k]['state']}), yadage has not")
    # where paths inside files point: the gateway's node directories, then yadage's (files an
    # init_from_yadage entry's steps were given); the gateway's copy of the run's data as <data>
    yadage_dirs = {k: n.get("dir") for k, n in ref["nodes"].items()}
    places = Places(place_pairs(gateway_dirs(dag)) + place_pairs(yadage_dirs), data=[gateway_data(dag)])
    in_yadage_data, in_gateway_data = inside(data_root), inside(gateway_data(dag))
    for k in sorted(set(ours) & set(theirs)):
        n = ours[k]
        if n["state"] != "SUCCESS":
            problems.append(f"{k}: {n['state']} on the gateway, {theirs[k]['state']} in yadage")
            continue
        want, got = theirs[k]["outputs"], normalise(n.get("outputs"), places, mask)
        if unordered_discover and is_init(k):
            want = discovered_as_multisets(theirs[k].get("result"), want, in_yadage_data)
            got = discovered_as_multisets(n.get("outputs"), got, in_gateway_data)
        problems += [f"{k}: {d}" for d in differences(want, got, lines_unordered=unordered_discover)]
    for k, want in (expected or {}).items():
        n = ours.get(k)
        if not n or n["state"] != "SUCCESS":
            problems.append(f"{k}: expected to succeed with {want}, the gateway's is {n and n['state']}")
            continue
        got = texts(normalise(n.get("outputs"), places, mask))
        problems += [f"{k} (checked by hand): {d.replace('yadage ', 'expected ', 1)}" for d in differences(want, got)]
    return problems


def discovered_are_sorted(name, dag):
    """The gateway's promise behind an entry's unordered_discover: the files its inits discovered in the
    run's data are listed sorted (so that a multiset comparison hides no disorder of the gateway's)."""
    in_data = inside(gateway_data(dag))
    lists = [(n["id"], lst) for n in dag["nodes"] if is_init(n["id"]) and n["state"] == "SUCCESS"
             for lst in discovered_lists(n.get("outputs"), in_data)]
    assert any(len(lst) > 1 for _, lst in lists), f"{name}: no init discovered two files or more in the run's data: {lists}"
    unsorted = [(node, lst) for node, lst in lists if lst != sorted(lst)]
    assert not unsorted, f"{name}: the gateway's discovered files are not sorted: {unsorted}"


@pytest.mark.timeout(RUN_TIMEOUT + 600)  # the first use on a machine builds the reference (about a minute)
@pytest.mark.parametrize("name", list(ENTRIES))
def test_entry_runs_as_in_yadage(name, reference, gateway, runs, record_property):
    entry, ref, sub = ENTRIES[name], reference["entries"][name], runs[name]
    data_root = (run_data(entry, placeholders(reference)) or (None,))[0]
    yadage = ref["status"]
    yadage_ok = yadage == "SUCCESS"
    res = sub["res"]

    def verdict(gateway_outcome, match):
        SUMMARY[name] = (name, yadage, gateway_outcome, match)
        record_property("yadage", yadage)
        record_property("gateway", gateway_outcome)
        record_property("match", match)

    if res.returncode == 2:  # refused: the workflow, or its parameters
        features = not_supported(res.stderr)
        lines = [ln.strip() for ln in res.stderr.splitlines() if ln.strip()]
        said = features or [ln for ln in lines if ln.startswith("$")] or lines or ["(no message)"]
        verdict(f"REFUSED ({said[0][:140]})", "refused")
        assert name not in MUST_RUN, f"{name} is in MUST_RUN but was refused:\n{show(res)}"
        if name in KNOWN_GAPS:
            why, sign = KNOWN_GAPS[name]
            assert re.search(sign, res.stderr), f"{name}: refused, but not for its known gap ({why}):\n{show(res)}"
        if features or not yadage_ok:
            return  # a feature named as unsupported, or a spec yadage does not complete either
        assert name in KNOWN_GAPS, (f"{name}: yadage completes it, the gateway refused it without naming a feature as "
                                    f"\"not supported\" (and it is not a KNOWN_GAP):\n{show(res)}")
        return
    assert res.returncode == 0 and sub["run_id"], f"{name}: the submission failed:\n{show(res)}"

    dag = wait_finished(gateway, sub["run_id"], sub["submitted"])
    if dag is None:
        verdict(f"not finished in {RUN_TIMEOUT} s", "-")
        pytest.fail(f"{name}: run {sub['run_id']} did not finish within {RUN_TIMEOUT} s of its submission")
    status = dag["run"]["status"]

    if status == "SUCCESS":
        unordered = bool(entry.get("unordered_discover"))

        def compared(**kw):
            """(differences, what was allowed): compared exactly, then only if that differs with the
            entry's unordered_discover allowance, said in the verdict"""
            problems = compare(entry, ref, dag, data_root=data_root, **kw)
            if problems and unordered:
                problems = compare(entry, ref, dag, data_root=data_root, unordered_discover=True, **kw)
                return problems, " up to the order of discovered files"
            return problems, ""

        if not yadage_ok:
            problems, allowed = compared(completed_only=True, expected=BEYOND_YADAGE_RESULTS.get(name))
            verdict("SUCCESS", "yadage failed; " + (f"its completed steps equal{allowed}, results as checked" if not problems
                                                   else f"{len(problems)} differences"))
            assert name in BEYOND_YADAGE, (f"{name}: the gateway succeeded where yadage failed ({ref.get('reason')}); "
                                           f"check by hand, then list it in BEYOND_YADAGE with why")
            assert not problems, f"{name}: steps yadage completed differ on the gateway:\n" + "\n".join(problems)
            if unordered:
                discovered_are_sorted(name, dag)
            return
        problems, allowed = compared()
        verdict("SUCCESS", f"equal{allowed}" if not problems else f"DIFFERENT ({len(problems)})")
        assert not problems, (f"{name}: the gateway SUCCEEDED with other results than yadage's (silently wrong):\n"
                              + "\n".join(problems[:40]))
        if unordered:
            discovered_are_sorted(name, dag)
        assert name not in KNOWN_GAPS, f"{name} now runs with yadage's results: move it from KNOWN_GAPS to MUST_RUN"
        return

    message = gateway_failure(dag)
    verdict(status, "both failed" if not yadage_ok else "-")
    assert name not in MUST_RUN, f"{name} is in MUST_RUN but its run {status}:\n{message}"
    if not yadage_ok:
        return  # yadage fails on it too
    assert name in KNOWN_GAPS, f"{name}: yadage completes it, the gateway's run {status}:\n{message}"
    why, sign = KNOWN_GAPS[name]
    assert re.search(sign, message), f"{name}: its run {status}, but not for its known gap ({why}):\n{message}"


def test_paths_inside_files_compare_by_node_and_name(tmp_path):
    """The canonicalisation the comparison relies on: a path written inside a file stands for the node
    whose directory it is in and the rest of the path, so yadage's layout and the gateway's compare
    equal on equal results, and another value, another step's file, another file name or another line
    order still differ. Volatile lines stay masked."""
    mask = re.compile(r"^DATE .*$")

    def run(root, layout, files):
        """A run directory: layout {key: relative directory}, files {(key, name): text with {KEY} for
        the directory of node KEY}; returns (Places, {key: directory})."""
        dirs = {k: str(root / d) if d else str(root) for k, d in layout.items()}
        for (k, name), text in files.items():
            path = Path(dirs[k]) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            for key, d in dirs.items():
                text = text.replace("{" + key + "}", d)
            path.write_text(text)
        return Places(place_pairs(dirs)), dirs

    yadage_layout = {"init": "", "map:0": "map_0", "map:1": "map_1", "map:10": "map_10", "continue:0": "continue_0",
                     "reduce": "reduce", "sub[0].init": "sub_0", "sub[0].stage1": "sub_0/stage1"}
    gateway_layout = {"init": "", "map:0": "map/0", "map:1": "map/1", "map:10": "map/10", "continue:0": "continue/0",
                      "reduce": "reduce", "sub[0].init": "sub/0", "sub[0].stage1": "sub/0/stage1"}
    base = {("map:0", "what.txt"): "Hello 1\n", ("map:1", "what.txt"): "Hello 2\n", ("map:10", "what.txt"): "Hello 11\n",
            ("continue:0", "here.txt"): "Hello {map:0}/what.txt\n",
            ("reduce", "all.txt"): "DATE 1\n{map:0}/what.txt\n{map:1}/what.txt\n{map:10}/what.txt\n",
            ("sub[0].stage1", "out.txt"): "['{sub[0].init}/x.txt', '/elsewhere/y.txt']\n"}
    places_y, dirs_y = run(tmp_path / "yadage", yadage_layout, base)
    # the gateway's run of the same: its date line is another (masked)
    same = {**base, ("reduce", "all.txt"): base[("reduce", "all.txt")].replace("DATE 1", "DATE 2")}

    def compared(changes):
        root = tmp_path / f"gateway{len(list(tmp_path.iterdir()))}"
        places_g, dirs_g = run(root, gateway_layout, {**same, **changes})
        out = []
        for (k, name) in base:
            want = normalise(os.path.join(dirs_y[k], name), places_y, mask)
            got = normalise(os.path.join(dirs_g[k], name), places_g, mask)
            out += [f"{k}: {d}" for d in differences(want, got)]
        return out

    assert compared({}) == []
    assert compared({("continue:0", "here.txt"): "Bye {map:0}/what.txt\n"}) != []  # another value
    assert compared({("continue:0", "here.txt"): "Hello {map:1}/what.txt\n"}) != []  # another step's file
    assert compared({("continue:0", "here.txt"): "Hello {map:0}/other.txt\n"}) != []  # another name
    assert compared({("continue:0", "here.txt"): "Hello {map:10}/what.txt\n"}) != []  # yadage's map_10 is not inside map_1
    assert compared({("reduce", "all.txt"): "DATE 3\n{map:1}/what.txt\n{map:0}/what.txt\n{map:10}/what.txt\n"}) != []  # order
    assert compared({("sub[0].stage1", "out.txt"): "['{sub[0].init}/x.txt', '/elsewhere/z.txt']\n"}) != []  # outside
    assert compared({("sub[0].stage1", "out.txt"): "['{sub[0].stage1}/x.txt', '/elsewhere/y.txt']\n"}) != []  # scope
    text = normalise(os.path.join(dirs_y["reduce"], "all.txt"), places_y, mask)["text"]
    assert text == "<masked>\n<@map:0>/what.txt\n<@map:1>/what.txt\n<@map:10>/what.txt\n", text


def test_paths_into_the_data_and_the_discovered_order_allowance(tmp_path):
    """A path into the run's data, yadage's data directory or the gateway's copy (<workspace>/.af/data),
    is <data> and the rest of the path, inside files and as a value (its content); <@data>, a stage
    named data, is another. The unordered_discover allowance takes files' lines and data lists in any
    order, never other lines, other counts or other lists."""
    ydata, ws = tmp_path / "cache" / "recast", tmp_path / "ws"
    for root in (ydata, ws / ".af" / "data"):
        (root / "basedata" / "signal_inputs").mkdir(parents=True)
        (root / "basedata" / "signal_inputs" / "UFO").write_text("ufo\n")
    (ws / "data").mkdir()
    yplaces = Places([], data=[str(ydata)])
    gplaces = Places([(str(ws / "data"), "data"), (str(ws), "init")], data=[str(ws / ".af" / "data")])
    assert yplaces.canonical(f"1000 {ydata}/basedata/signal_inputs/UFO\n") == "1000 <data>/basedata/signal_inputs/UFO\n"
    assert gplaces.canonical(f"1000 {ws}/.af/data/basedata/signal_inputs/UFO\n") == "1000 <data>/basedata/signal_inputs/UFO\n"
    assert gplaces.canonical(f"{ws}/data/UFO {ws}/UFO") == "<@data>/UFO <@init>/UFO"  # a stage named data, the workspace
    assert gplaces.canonical(f"{ydata}/basedata/signal_inputs/UFO") == f"{ydata}/basedata/signal_inputs/UFO"  # yadage's, not its copy
    want = normalise(f"{ydata}/basedata/signal_inputs/UFO", yplaces)
    assert want == normalise(f"{ws}/.af/data/basedata/signal_inputs/UFO", gplaces) and want["text"] == "ufo\n"

    def file(text):
        return {"file": hashlib.sha256(text.encode()).hexdigest(), "text": text}

    assert differences(file("signal 2\nsignal 1\nhello\n"), file("signal 1\nsignal 2\nhello\n")) != []
    assert differences(file("signal 2\nsignal 1\nhello\n"), file("signal 1\nsignal 2\nhello\n"), lines_unordered=True) == []
    assert differences(file("signal 2\nsignal 2\n"), file("signal 1\nsignal 2\n"), lines_unordered=True) != []  # counts
    assert differences(file("signal 1\nsignal 2"), file("signal 1\nsignal 2\n"), lines_unordered=True) != []  # a newline
    assert differences({"file": "a" * 64}, {"file": "b" * 64}, lines_unordered=True) != []  # no text: its hash
    in_data = inside(str(ydata))
    raw = {"initfile": [f"{ydata}/2.txt", f"{ydata}/1.txt"], "other": ["b", "a"], "mixed": [f"{ydata}/2.txt", "/elsewhere"]}
    value = {"initfile": [file("2\n"), file("1\n")], "other": ["b", "a"], "mixed": [file("2\n"), "/elsewhere"]}
    assert discovered_as_multisets(raw, value, in_data) == {**value, "initfile": [file("1\n"), file("2\n")]}
    assert list(discovered_lists({"x": [raw]}, in_data)) == [raw["initfile"]]
    # the gateway's promise: its discovered lists are sorted (and there is one of two files or more)
    found = [f"{ws}/.af/data/d/data00{i}.txt" for i in (1, 2, 3)]
    dag = {"run": {"workspace": str(ws)}, "nodes": [{"id": "data[0].init", "state": "SUCCESS", "outputs": {"initfile": found}}]}
    discovered_are_sorted("x", dag)
    dag["nodes"][0]["outputs"]["initfile"] = [found[1], found[2], found[0]]
    with pytest.raises(AssertionError, match="not sorted"):
        discovered_are_sorted("x", dag)
    dag["nodes"][0]["outputs"]["initfile"] = found[:1]
    with pytest.raises(AssertionError, match="no init discovered two files"):
        discovered_are_sorted("x", dag)


def test_the_lists_name_entries():
    for listed in (MUST_RUN, KNOWN_GAPS, BEYOND_YADAGE):
        assert set(listed) <= set(ENTRIES), set(listed) - set(ENTRIES)
    assert not set(MUST_RUN) & set(KNOWN_GAPS), "an entry cannot be both a must-run and a known gap"
    assert all(isinstance(r, str) and r for r in BEYOND_YADAGE.values()), "every entry beyond yadage says why"
    assert all(isinstance(why, str) and why and re.compile(sign) for why, sign in KNOWN_GAPS.values()), "every gap says why"
    assert set(BEYOND_YADAGE_RESULTS) <= set(BEYOND_YADAGE), "results checked by hand are for entries beyond yadage"


def test_data_options_become_the_runs_data():
    """yadage-run's -d pathbase/initdir/subinits as `af-gateway run --data DIR -d ...`: DIR is pathbase, else the
    deepest directory holding the ones named; the directories relative to it, nested subinits kept."""
    names = {"specs": "/nonexistent/specs", "data": "/nonexistent/data"}
    base = "/nonexistent/specs/analysis_scaffold/basedata"
    assert data_arguments(ENTRIES["analysis_scaffold"], names) == [
        "--data", base, "-d", 'subinits={"signal": "siginputs", "data": "datainputs", "backgrounds": "bkginputs"}']
    assert run_data(ENTRIES["bsm_grid_scaffold"], names) == ("/nonexistent/specs/bsm_grid_scaffold/basedata", {
        "subinits": {"signals": {f"run_points_{i}": f"siginputs/sigpoint{i}" for i in range(3)},
                     "data": "datainputs",
                     "backgrounds": {f"run_bkgs_{i}": f"bkginputs/bkg_sample_{i}" for i in range(4)}}})
    assert run_data(ENTRIES["recast_scaffold"], names) == ("/nonexistent/specs/recast_scaffold", {"subinits": {
        "upstream": "basedata/signal_inputs", "downstream": {"archived": "basedata/archived_assets"}}})
    # entries given what yadage's init found instead, and entries without data options: no data
    assert ENTRIES["stackednestings"].get("dataopts") and data_arguments(ENTRIES["stackednestings"], names) == []
    assert data_arguments(ENTRIES["mapreduce"], names) == []
    # absolute directories without pathbase, initdir among them, a subworkflow's own _data
    entry = {"name": "x", "dataopts": {"initdir": "{specs}/x/in/init", "subinits": {
        "sub": {"_data": "{specs}/x/in/sub", "inner_0": "{specs}/x/other/inner"}}}}
    assert run_data(entry, names) == ("/nonexistent/specs/x", {
        "initdir": "in/init", "subinits": {"sub": {"_data": "in/sub", "inner_0": "other/inner"}}})
    entry = {"name": "y", "dataopts": {"pathbase": "{specs}/y", "initdir": "inputs", "subinits": {"s": "/elsewhere"}}}
    with pytest.raises(ValueError, match="outside"):
        run_data(entry, names)
    with pytest.raises(ValueError, match="relative to yadage's work directory"):
        run_data({"name": "z", "dataopts": {"subinits": {"s": "rel"}}}, names)
