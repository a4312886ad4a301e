# AF Gateway's worker groups on the scheduler: loaded as a second --preload after
# dask_gateway.scheduler_preload (the gateway passes this file's text, so no file needs to reach the
# scheduler's machine). It changes four things of the dask-gateway scheduler service:
#  - its count (what the dask_gateway client's scale and adaptive set, and what scale-down retires
#    workers to reach) is the default group's only: a worker whose name has a "_" ("<id>_<group>")
#    belongs to a group the gateway sizes itself, and is never picked to close for the default count;
#  - its comm API takes {"op": "retire", "workers": [names]}: the scheduler retires those workers
#    gracefully (their data moves elsewhere first), the way it retires workers to scale down;
#  - its comm API takes {"op": "groups", "groups": {name: {label: amount}}}: the cluster's worker
#    groups and their Dask resources. From then on the scheduler works out, every adaptive period,
#    how many workers each group's waiting and running tasks want (group_targets) and reports it in
#    its heartbeats as "af_group_demand" ({group: n}); a change is sent at once, not a heartbeat
#    period later. The gateway decides what to do with it (the group's adaptive range, the limits);
#  - once it knows the groups, the dask_gateway client's adaptive scaling sizes default from default's
#    workers and the tasks default can run (no resource restrictions), not from every task and worker.
#  - a worker's arrival or departure wakes the heartbeat within a fraction of a second (gathered:
#    many in a short time make one heartbeat), so the gateway and the Lab see workers as they join
#    and leave instead of up to a heartbeat period later; heartbeats stay the liveness signal.
# Everything here runs as the cluster's owner: the gateway trusts none of what it reports.
import asyncio
import collections
import itertools
import logging
import math
import re

from dask_gateway import scheduler_preload as _service_module
from tornado import web

_log = logging.getLogger("af_gateway.groups")
_Service = _service_module.GatewaySchedulerService
_Comm = _service_module.CommHandler

DEFAULT = "default"
_GROUP_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_LABEL = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
_MAX_GROUPS = 64
_MAX_LABELS = 16
# Waiting tasks looked at per decision; the rest are taken to be like them (distributed looks at 100).
_SAMPLE = 1000


def _in_group(name):
    return isinstance(name, str) and "_" in name


def _group_of(name):
    """The worker group of a worker by the name the gateway gave it ("<id>_<group>"; default has no "_")."""
    return name.rsplit("_", 1)[1] if _in_group(name) else DEFAULT


def _runs_on(ts, resources):
    """Whether a waiting task is load of a group with these Dask resources. A group without labels
    (default, or a group defined without resources) takes the tasks that ask for no resource (and those
    whose restrictions are only preferences); a group with labels takes the tasks whose every
    restriction its workers satisfy."""
    wanted = getattr(ts, "resource_restrictions", None) or {}
    if not resources:
        return not wanted or bool(getattr(ts, "loose_restrictions", False))
    return bool(wanted) and all(resources.get(label, 0) >= amount for label, amount in wanted.items())


def group_targets(scheduler, groups, target_duration):
    """Workers each group wants now, {"default": n, group: n, ...}, in the shape of distributed's
    Scheduler.adaptive_target applied to one group at a time: the group's workers' occupancy plus the
    estimated durations of the waiting tasks (queued, or unrunnable because no worker has their
    resources) the group can run, divided by target_duration; no more than there are such tasks; at
    least 1 when such a task waits and the group has no worker; twice the workers when their memory is
    more than 60 % used. Below the group's current size, the workers that are busy (or whose data
    needs the room) are kept. `groups`: {name: {label: amount}} of the groups besides default."""
    shapes = {DEFAULT: {}, **groups}
    members = {g: [] for g in shapes}
    for ws in scheduler.workers.values():
        mine = members.get(_group_of(ws.name))
        if mine is not None:
            mine.append(ws)
    waiting = dict.fromkeys(shapes, 0)
    waiting_time = dict.fromkeys(shapes, 0.0)
    total = len(scheduler.queued) + len(scheduler.unrunnable)
    seen = 0
    for ts in itertools.islice(itertools.chain(scheduler.queued, scheduler.unrunnable), _SAMPLE):
        seen += 1
        duration = None
        for g, resources in shapes.items():
            if _runs_on(ts, resources):
                if duration is None:
                    duration = scheduler._get_prefix_duration(ts.prefix)
                waiting[g] += 1
                waiting_time[g] += duration
    scale = total / seen if seen else 0.0
    out = {}
    for g, workers in members.items():
        ready = waiting[g] * scale
        busy = sum(ws.occupancy for ws in workers)
        cpu = math.ceil((busy + waiting_time[g] * scale) / target_duration)
        # a few long tasks do not ask for many workers: no more than there are tasks
        cpu = min(cpu, math.ceil(ready) + sum(len(ws.processing) for ws in workers))
        if workers:
            threads = sum(ws.nthreads for ws in workers)
            if threads:
                cpu = math.ceil(cpu / threads * len(workers))
        elif ready:
            cpu = max(1, cpu)
        limit = sum(ws.memory_limit or 0 for ws in workers)
        used = sum(ws.nbytes for ws in workers)
        memory = 2 * len(workers) if limit > 0 and used > 0.6 * limit else 0
        target = max(cpu, memory)
        if target < len(workers):
            keep = sum(1 for ws in workers if ws.processing or getattr(ws, "long_running", None))
            # and enough memory for twice the data they hold, the largest workers kept first
            room, holding = 0, 0
            for ws in sorted(workers, key=lambda w: w.memory_limit or 0, reverse=True):
                if not used or not limit or room >= 2 * used:
                    break
                room += ws.memory_limit or 0
                holding += 1
            target = min(len(workers), max(target, keep, holding))
        out[g] = int(target)
    return out


def _parse_groups(value):
    """The groups op's {name: {label: amount}}, checked (None when malformed)."""
    if not isinstance(value, dict) or len(value) > _MAX_GROUPS:
        return None
    out = {}
    for name, resources in value.items():
        if not (isinstance(name, str) and _GROUP_NAME.match(name) and name != DEFAULT):
            return None
        if not isinstance(resources, dict) or len(resources) > _MAX_LABELS:
            return None
        labels = {}
        for label, amount in resources.items():
            if not (isinstance(label, str) and _LABEL.match(label)):
                return None
            if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not (0 < amount < math.inf):
                return None
            labels[label] = amount
        out[name] = labels
    return out


async def _demand_loop(service):
    """Every adaptive period: each group's wanted workers; a change wakes the heartbeat at once."""
    while True:
        try:
            demand = group_targets(service.scheduler, service._af_groups, service.target_duration)
            demand.pop(DEFAULT, None)
            service._af_demand = demand
            if demand != service._af_demand_sent and demand != service._af_demand_woken:
                service._af_demand_woken = demand  # (once per change: a gateway that is down keeps its back-off)
                await service.waiter.interrupt()
        except asyncio.CancelledError:
            break
        except Exception:
            _log.warning("Could not work out the worker groups' demand", exc_info=True)
        await asyncio.sleep(service.adaptive_period)


def _set_groups(service, groups):
    if groups != getattr(service, "_af_groups", None):
        _log.info("Worker groups: %s", ", ".join(f"{g} {r}" for g, r in groups.items()) or "none")
    service._af_groups = groups
    if getattr(service, "_af_demand_task", None) is None:
        service._af_demand = {}
        service._af_demand_sent = None
        service._af_demand_woken = None
        service._af_demand_task = asyncio.ensure_future(_demand_loop(service))


def _fewest_tasks_first(service, names, n):
    by_name = {ws.name: ws for ws in service.scheduler.workers.values()}

    def load(name):
        ws = by_name.get(name)
        return (len(ws.processing), ws.nbytes) if ws is not None else (0, 0)

    return sorted(names, key=load)[:n]


async def _heartbeat(self):
    retiring = [n for n in self.active_workers if n in self.closing_workers]
    default = [n for n in self.active_workers if not _in_group(n) and n not in self.closing_workers]
    closing = _fewest_tasks_first(self, default, len(default) - self.count) if self.count < len(default) else []
    msg = {
        "scheduler_address": self.scheduler.address,
        "dashboard_address": self.dashboard_address,
        "api_address": self.api_address,
        "count": self.count,
        "active_workers": [n for n in self.active_workers if n not in closing and n not in retiring],
        "closing_workers": closing + retiring,
        "closed_workers": list(self.closed_workers),
    }
    demand = None
    if getattr(self, "_af_groups", None) is not None:
        # (present once the groups are known: its absence asks the gateway to send them)
        demand = dict(self._af_demand)
        msg["af_group_demand"] = demand
    await self.gateway.heartbeat(msg)
    if demand is not None:
        self._af_demand_sent = demand
    if closing:
        self.closing_workers.update(closing)
        try:
            await self.scheduler.retire_workers(names=closing, remove=True, close_workers=True)
        except Exception:
            self.closing_workers.difference_update(closing)
            raise


async def _adapt_loop(self):
    """dask-gateway's adaptive loop for the client's cluster.adapt(): up at once, down to the most
    wanted over the last adaptive_window decisions. What is wanted is distributed's adaptive_target
    while the cluster has no worker groups, default's own part (group_targets) once it has."""
    recent = collections.deque(maxlen=self.adaptive_window)
    while True:
        try:
            groups = getattr(self, "_af_groups", None)
            if groups:
                wanted = group_targets(self.scheduler, groups, self.target_duration)[DEFAULT]
            else:
                wanted = self.scheduler.adaptive_target(target_duration=self.target_duration)
            if self.minimum is not None:
                wanted = max(wanted, self.minimum)
            if self.maximum is not None:
                wanted = min(wanted, self.maximum)
            recent.append(wanted)
            if wanted > self.count:
                await self._scale(wanted)
            elif wanted < self.count and max(recent) < self.count:
                await self._scale(max(recent))
        except asyncio.CancelledError:
            break
        except Exception:
            _log.warning("Error in adaptive loop", exc_info=True)
        await asyncio.sleep(self.adaptive_period)


# Workers that come or go within this time are reported in one heartbeat.
_NEWS_DELAY = 0.2


def _news(service):
    if getattr(service, "_af_news", None) is None:
        service._af_news = asyncio.ensure_future(_send_news(service))


async def _send_news(service):
    try:
        await asyncio.sleep(_NEWS_DELAY)
        # A heartbeat on its way now was written before the news: wait until the loop sleeps again
        # (bounded: a gateway that is down keeps its back-off).
        for _ in range(100):
            task = service.waiter.task
            if task is not None and not task.done():
                break
            await asyncio.sleep(0.05)
        else:
            return
        service._af_news = None
        await service.waiter.interrupt()
    except asyncio.CancelledError:
        pass
    except Exception:
        _log.warning("Could not report a worker's arrival or departure", exc_info=True)
    finally:
        service._af_news = None


def _worker_added(self, worker_address):
    _Service._af_original_worker_added(self, worker_address)
    _news(self)


def _worker_removed(self, worker_address):
    _Service._af_original_worker_removed(self, worker_address)
    _news(self)


def _stop(self):
    task = getattr(self, "_af_demand_task", None)
    if task is not None:
        task.cancel()
        self._af_demand_task = None
    return _Service._af_original_stop(self)


async def _retire(service, names):
    try:
        await service.scheduler.retire_workers(names=names, remove=True, close_workers=True)
    except Exception:
        service.closing_workers.difference_update(names)
        _log.warning("Could not retire workers %s", names, exc_info=True)


# (distributed may run this file twice, re-executing it in the same module: the originals are kept on
# the classes, so the second run cannot mistake the patched methods for them)
if not hasattr(_Comm, "_af_original_post"):
    _Comm._af_original_post = _Comm.post
if not hasattr(_Service, "_af_original_stop"):
    _Service._af_original_stop = _Service.stop
if not hasattr(_Service, "_af_original_worker_added"):
    _Service._af_original_worker_added = _Service.worker_added
    _Service._af_original_worker_removed = _Service.worker_removed


@web.authenticated
async def _comm_post(self):
    msg = self.json_data
    op = msg.get("op") if isinstance(msg, dict) else None
    if op == "groups":
        groups = _parse_groups(msg.get("groups"))
        if groups is None:
            raise web.HTTPError(422, reason="groups must map group names to their Dask resources")
        _set_groups(self.gateway_service, groups)
        self.set_status(200)
        return
    if op != "retire":
        return await _Comm._af_original_post(self)
    service = self.gateway_service
    wanted = msg.get("workers")
    if not isinstance(wanted, list):
        raise web.HTTPError(422, reason="workers must be a list of worker names")
    names = [n for n in wanted[:10000] if isinstance(n, str) and n in service.active_workers and n not in service.closing_workers]
    if names:
        _log.info("Retiring %d worker(s) on the gateway's request", len(names))
        service.closing_workers.update(names)
        asyncio.ensure_future(_retire(service, names))
    self.set_status(200)


if not getattr(_Service, "_af_worker_groups", False):
    _Service._af_worker_groups = True
    _Service.heartbeat = _heartbeat
    _Service.adapt_loop = _adapt_loop
    _Service.stop = _stop
    _Service.worker_added = _worker_added
    _Service.worker_removed = _worker_removed
    _Comm.post = _comm_post
