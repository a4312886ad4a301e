// The ?status= filter of the cluster lists: comma-separated status names, case-insensitive.
import type { ClusterStatus } from '../clusters/model.js';
import { unprocessable } from '../errors.js';

const STATUSES: readonly ClusterStatus[] = ['PENDING', 'RUNNING', 'STOPPING', 'STOPPED', 'FAILED'];

export function parseStatuses(query: string | undefined, fallback: readonly ClusterStatus[]): ClusterStatus[] {
  if (query === undefined || query === '') return [...fallback];
  return query.split(',').map((s) => {
    const up = s.trim().toUpperCase() as ClusterStatus;
    if (!STATUSES.includes(up)) {
      throw unprocessable(`Unknown cluster status '${s}'; use one or more of ${STATUSES.map((x) => x.toLowerCase()).join(', ')}`);
    }
    return up;
  });
}
