"""A stand-in backend for dask-gateway-server in bench/bench_scale.mjs: nothing runs.

``NothingRunsStandInBackend`` is a subclass of the peer's own ``DBBackendBase`` (the base of its
local, jobqueue and YARN backends: its database, its reconcile queue, its heartbeat handling) whose
start, stop and check of clusters and workers do nothing. Like our memory backend it appends each
start to a launch log (``AF_BENCH_LAUNCH_LOG``) as a JSON line: the cluster's name, its token and
the heartbeat URL (what a real scheduler would be handed), and each worker's name, so that the
benchmark can send the heartbeats a scheduler would. Benchmarks only: no gateway should run it.
"""

import json
import os

from dask_gateway_server.backends.db_base import DBBackendBase


class NothingRunsStandInBackend(DBBackendBase):
    """dask-gateway-server's database backend with no processes behind it (see the module)."""

    def _log_launch(self, line):
        with open(os.environ["AF_BENCH_LAUNCH_LOG"], "a") as f:
            f.write(json.dumps(line) + "\n")

    async def do_start_cluster(self, cluster):
        self._log_launch({"scheduler": cluster.name, "token": cluster.token, "api_url": self.api_url})
        yield {}

    async def do_stop_cluster(self, cluster):
        pass

    async def do_check_clusters(self, clusters):
        return [True] * len(clusters)

    async def do_start_worker(self, worker):
        self._log_launch({"workers": worker.cluster.name, "names": [worker.name]})
        yield {}

    async def do_stop_worker(self, worker):
        pass

    async def do_check_workers(self, workers):
        return [True] * len(workers)
