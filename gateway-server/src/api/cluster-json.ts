// How clusters are shown: the dask-gateway v1 form (exactly the fields the client accepts) and
// AF Gateway's own, richer form for panels and the event stream.
import type { AfCluster, AfWorkerGroup, Cluster } from '@af-gateway/schemas';
import type { ClusterRecord, WorkerRecord } from '../clusters/model.js';

const dashboardRoute = (c: ClusterRecord) => (c.status === 'RUNNING' && c.dashboardAddress ? `/clusters/${c.name}/status` : null);

export function clusterJson(c: ClusterRecord): Cluster {
  const running = c.status === 'RUNNING';
  return {
    name: c.name,
    dashboard_route: dashboardRoute(c),
    status: c.status,
    start_time: c.startTime,
    stop_time: c.stopTime,
    options: c.options,
    tls_cert: running ? c.tlsCert : null,
    tls_key: running ? c.tlsKey : null,
  };
}

/** `groups`: the cluster's worker groups (ClusterManager.groupsJson), shown when given. */
export function afClusterJson(c: ClusterRecord, workers: readonly WorkerRecord[], groups?: AfWorkerGroup[]): AfCluster {
  const count = (s: WorkerRecord['status']) => workers.filter((w) => w.status === s).length;
  return {
    name: c.name,
    display_name: c.displayName ?? '',
    owner: c.username,
    status: c.status,
    message: c.message,
    options: c.options,
    dashboard_route: dashboardRoute(c),
    start_time: c.startTime,
    stop_time: c.stopTime,
    worker_cores: c.settings.worker_cores,
    worker_memory: c.settings.worker_memory,
    adaptive: c.adaptive ?? null,
    ...(groups ? { groups } : {}),
    workers: {
      requested: c.count,
      starting: count('STARTING'),
      running: count('RUNNING'),
      failed: c.workerFailures,
      list: workers.map((w) => ({ name: w.name, group: w.group, status: w.status, message: w.message, start_time: w.startTime })),
    },
  };
}
