// Prometheus metrics (prom-client): cluster and worker counts, cluster start latency, HTTP traffic.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ClusterManager } from './clusters/cluster-manager.js';
import type { StateStore } from './store/state-store.js';

export class Metrics {
  readonly registry = new Registry();
  readonly httpRequests: Counter<'method' | 'route' | 'status'>;
  private readonly startSeconds: Histogram;
  private readonly pendingSince = new Map<string, number>();

  constructor(clusters: ClusterManager, store: StateStore) {
    collectDefaultMetrics({ register: this.registry, prefix: 'af_gateway_' });
    this.httpRequests = new Counter({
      name: 'af_gateway_http_requests_total',
      help: 'HTTP requests answered, by route and status code',
      labelNames: ['method', 'route', 'status'],
      registers: [this.registry],
    });
    this.startSeconds = new Histogram({
      name: 'af_gateway_cluster_start_seconds',
      help: 'Time from cluster submission to its first scheduler heartbeat',
      buckets: [0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60],
      registers: [this.registry],
    });
    new Gauge({
      name: 'af_gateway_clusters',
      help: 'Clusters by status',
      labelNames: ['status'],
      registers: [this.registry],
      async collect() {
        // Also ended clusters, so from the state store; a store that does not answer leaves it empty
        // (the health check reports that).
        const counts = await store.countByStatus().catch(() => ({}));
        this.reset();
        for (const [status, n] of Object.entries(counts)) this.set({ status }, n);
      },
    });
    new Gauge({
      name: 'af_gateway_workers',
      help: 'Workers of active clusters by status',
      labelNames: ['status'],
      registers: [this.registry],
      collect() {
        this.reset();
        const counts: Record<string, number> = {};
        for (const { workers } of clusters.activeClusters(['PENDING', 'RUNNING', 'STOPPING'])) {
          for (const w of workers) counts[w.status] = (counts[w.status] ?? 0) + 1;
        }
        for (const [status, n] of Object.entries(counts)) this.set({ status }, n);
      },
    });
    clusters.on('cluster', (c) => {
      if (c.status === 'PENDING') this.pendingSince.set(c.name, c.startTime);
      else {
        const since = this.pendingSince.get(c.name);
        if (since !== undefined && c.status === 'RUNNING') this.startSeconds.observe((Date.now() - since) / 1000);
        this.pendingSince.delete(c.name);
      }
    });
  }
}
