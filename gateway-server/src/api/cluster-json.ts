// The cluster as the dask-gateway v1 API shows it (exactly the fields the client accepts).
import type { Cluster } from '@af-gateway/schemas';
import type { ClusterRecord } from '../clusters/model.js';

export function clusterJson(c: ClusterRecord): Cluster {
  const running = c.status === 'RUNNING';
  return {
    name: c.name,
    dashboard_route: running && c.dashboardAddress ? `/clusters/${c.name}/status` : null,
    status: c.status,
    start_time: c.startTime,
    stop_time: c.stopTime,
    options: c.options,
    tls_cert: running ? c.tlsCert : null,
    tls_key: running ? c.tlsKey : null,
  };
}
