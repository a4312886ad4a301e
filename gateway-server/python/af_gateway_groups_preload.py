# AF Gateway's worker groups on the scheduler: loaded as a second --preload after
# dask_gateway.scheduler_preload (the gateway passes this file's text, so no file needs to reach the
# scheduler's machine). It changes two things of the dask-gateway scheduler service:
#  - its count (what the dask_gateway client's scale and adaptive set, and what scale-down retires
#    workers to reach) is the default group's only: a worker whose name has a "_" ("<id>_<group>")
#    belongs to a group the gateway sizes itself, and is never picked to close for the default count;
#  - its comm API takes {"op": "retire", "workers": [names]}: the scheduler retires those workers
#    gracefully (their data moves elsewhere first), the way it retires workers to scale down.
import asyncio
import logging

from dask_gateway import scheduler_preload as _service_module
from tornado import web

_log = logging.getLogger("af_gateway.groups")
_Service = _service_module.GatewaySchedulerService
_Comm = _service_module.CommHandler


def _in_group(name):
    return isinstance(name, str) and "_" in name


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
    await self.gateway.heartbeat(msg)
    if closing:
        self.closing_workers.update(closing)
        try:
            await self.scheduler.retire_workers(names=closing, remove=True, close_workers=True)
        except Exception:
            self.closing_workers.difference_update(closing)
            raise


async def _retire(service, names):
    try:
        await service.scheduler.retire_workers(names=names, remove=True, close_workers=True)
    except Exception:
        service.closing_workers.difference_update(names)
        _log.warning("Could not retire workers %s", names, exc_info=True)


# (distributed may run this file twice, re-executing it in the same module: the original is kept on
# the class, so the second run cannot mistake the patched post for it)
if not hasattr(_Comm, "_af_original_post"):
    _Comm._af_original_post = _Comm.post


@web.authenticated
async def _comm_post(self):
    msg = self.json_data
    if not (isinstance(msg, dict) and msg.get("op") == "retire"):
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
    _Comm.post = _comm_post
