"""The groups preload's demand rule (gateway-server/python/af_gateway_groups_preload.py, group_targets)
on a scheduler's state made by hand: which tasks count for which group, and how many workers each
group then wants. Quick (no process is started); the real scheduler's side is in test_group_adaptive.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import IS_PEER

pytestmark = pytest.mark.skipif(IS_PEER, reason="peer mode: the groups preload is AF Gateway's")

PRELOAD = Path(__file__).resolve().parents[2] / "python" / "af_gateway_groups_preload.py"


@pytest.fixture(scope="module")
def preload():
    spec = importlib.util.spec_from_file_location("af_gateway_groups_preload_under_test", PRELOAD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PREFIX = SimpleNamespace(name="f")  # every task here takes 1 s


class Task:
    """What the rule reads of a scheduler's TaskState (hashable by identity, as those are)."""

    def __init__(self, prefix, resources):
        self.prefix = prefix
        self.resource_restrictions = resources or None
        self.loose_restrictions = False


def task(**resources):
    return Task(PREFIX, resources)


def worker(name, processing=0, nthreads=1, nbytes=0, memory_limit=2**30):
    return SimpleNamespace(name=name, processing={task() for _ in range(processing)}, nthreads=nthreads, nbytes=nbytes,
                           memory_limit=memory_limit, occupancy=float(processing), long_running=set())


def scheduler(workers=(), queued=(), unrunnable=()):
    return SimpleNamespace(workers={w.name: w for w in workers}, queued=list(queued), unrunnable={t: 0.0 for t in unrunnable},
                           _get_prefix_duration=lambda prefix: 1.0)


GROUPS = {"hpc": {"hpc": 1}, "big": {}}


def test_tasks_waiting_for_a_groups_resources_ask_for_that_group_only(preload):
    # 20 one-second tasks that need hpc, no worker has it: 20 s of work / 5 s target = 4 workers of hpc.
    s = scheduler(unrunnable=[task(hpc=1) for _ in range(20)])
    assert preload.group_targets(s, GROUPS, 5) == {"default": 0, "hpc": 4, "big": 0}
    # one short task and no worker: at least one
    assert preload.group_targets(scheduler(unrunnable=[task(hpc=1)]), GROUPS, 5)["hpc"] == 1
    # more than the group has: nobody's load
    assert preload.group_targets(scheduler(unrunnable=[task(hpc=2)]), GROUPS, 5) == {"default": 0, "hpc": 0, "big": 0}


def test_default_and_a_group_without_labels_take_the_unrestricted_load_and_their_own_workers(preload):
    s = scheduler(workers=[worker("a1b2c3d4-0001", processing=10), worker("a1b2c3d4-0002_hpc", processing=2)],
                  queued=[task() for _ in range(10)])
    t = preload.group_targets(s, GROUPS, 5)
    assert t["default"] == 4  # (10 s running on default's worker + 10 s queued) / 5 s
    assert t["big"] == 2  # no worker: the queued 10 s / 5 s
    assert t["hpc"] == 1  # its worker's 2 s of work: keep the one it has


def test_no_more_workers_than_tasks_and_threads_divide(preload):
    # two long tasks never ask for more than two workers
    s = scheduler(unrunnable=[Task(SimpleNamespace(name="long"), {"hpc": 1}) for _ in range(2)])
    s._get_prefix_duration = lambda prefix: 600.0
    assert preload.group_targets(s, GROUPS, 5)["hpc"] == 2
    # 4-thread workers: 16 s of hpc work on one of them wants ceil(4 / 4 * 1) = 1 worker
    s = scheduler(workers=[worker("x-1_hpc", processing=16, nthreads=4)])
    assert preload.group_targets(s, GROUPS, 4)["hpc"] == 1


def test_scale_down_keeps_busy_workers_and_room_for_the_data(preload):
    idle = [worker(f"x-{i}_hpc") for i in range(3)]
    assert preload.group_targets(scheduler(workers=idle), GROUPS, 5)["hpc"] == 0
    busy = [worker("x-1_hpc", processing=1), worker("x-2_hpc"), worker("x-3_hpc")]
    assert preload.group_targets(scheduler(workers=busy), GROUPS, 5)["hpc"] == 1
    # idle, holding 0.7 GiB in all: 1.4 GiB of room is two 1 GiB workers
    holding = [worker("x-1_hpc", nbytes=2**29), worker("x-2_hpc", nbytes=2**28), worker("x-3_hpc")]
    assert preload.group_targets(scheduler(workers=holding), GROUPS, 5)["hpc"] == 2


def test_the_groups_op_is_checked(preload):
    assert preload._parse_groups({"hpc": {"hpc": 1}, "big": {}}) == {"hpc": {"hpc": 1}, "big": {}}
    for bad in ([], {"default": {}}, {"Bad": {}}, {"hpc": {"a b": 1}}, {"hpc": {"hpc": 0}}, {"hpc": {"hpc": True}},
                {"hpc": {"hpc": "1"}}, {"hpc": []}, {f"g{i}": {} for i in range(65)}):
        assert preload._parse_groups(bad) is None, bad
