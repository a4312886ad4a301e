// A hostile (or careless) scale request on a gateway without a per-cluster limit: scale(10**7) on a
// real cluster (local backend, real Dask). The gateway answers at once, keeps answering /api/health
// within a second, and starts workers in bounded batches (cluster.launch_batch) instead of making
// ten million worker records in one go; scaling back to 0 leaves no worker process behind.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processesWith } from '../support/processes.js';
import { basic, request, SINGLE_USER, startTestGateway, type TestGateway } from '../support/gateway.js';

let gw: TestGateway;
const alice = basic('alice');

const call = (method: string, path: string, body?: unknown) => request(gw, method, path, { headers: alice, body, timeoutMs: 30_000 });

const workerProcesses = (cluster: string) => processesWith('af-gateway: worker', cluster).length;

beforeAll(async () => {
  gw = await startTestGateway(
    { ...SINGLE_USER, cluster: { max_workers: null, launch_batch: 3, heartbeat_period: 1, adaptive_period: 1 } },
    { prefix: 'af-scale-bomb-' },
  );
});

afterAll(async () => {
  await gw?.close();
});

describe('scale(10**7) with no per-cluster limit', () => {
  it('is answered at once, the gateway stays responsive, and workers start in bounded batches', async () => {
    const created = await call('POST', '/api/v1/clusters/', { cluster_options: {} });
    expect(created.status).toBe(201);
    const name = created.json.name as string;
    try {
      let c = (await call('GET', `/api/v1/clusters/${name}?wait`)).json;
      for (let i = 0; i < 5 && c.status === 'PENDING'; i++) c = (await call('GET', `/api/v1/clusters/${name}?wait`)).json;
      expect(c.status).toBe('RUNNING');

      const scaled = await call('POST', `/api/v1/clusters/${name}/scale`, { count: 10_000_000 });
      expect(scaled.status).toBe(200);
      // For 4 s (several heartbeats that carry the count of 10^7): health within 1 s every time,
      // and the cluster lists a handful of workers, not millions.
      const health: number[] = [];
      let listed = 0;
      let requested = 0;
      for (const end = Date.now() + 4000; Date.now() < end;) {
        const h = await call('GET', '/api/health');
        expect(h.status).toBe(200);
        health.push(h.ms);
        const af = await call('GET', `/api/af/clusters/${name}`);
        const workers = af.json.workers as { requested: number; list: unknown[] };
        requested = workers.requested;
        listed = Math.max(listed, workers.list.length);
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(Math.max(...health)).toBeLessThan(1000);
      expect(requested).toBe(10_000_000); // the scheduler took the request...
      expect(listed).toBeGreaterThan(0); // ...and workers started...
      expect(listed).toBeLessThan(200); // ...a few batches of 3, not 10^7 records
      console.log(`scale(10**7): health max ${Math.round(Math.max(...health))} ms over ${health.length} checks; at most ${listed} workers listed`);
    } finally {
      await call('POST', `/api/v1/clusters/${name}/scale`, { count: 0 });
      await call('DELETE', `/api/v1/clusters/${name}`);
    }
    for (const end = Date.now() + 60_000; workerProcesses(name) > 0 && Date.now() < end;) await new Promise((r) => setTimeout(r, 250));
    expect(workerProcesses(name)).toBe(0);
  }, 120_000);
});
