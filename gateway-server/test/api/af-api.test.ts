// AF Gateway's own API and event stream, on a real gateway with real processes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { AfCluster, AfEvent } from '@af-gateway/schemas';
import { bodyAjv } from '../../src/schemas.js';
import { basic, client, handshakeStatus, SINGLE_USER, startTestGateway, wsUrl, type TestGateway } from '../support/gateway.js';

let gw: TestGateway;
const validEvent = bodyAjv.getSchema('af-event.json')!;
const validCluster = bodyAjv.getSchema('af-cluster.json')!;

const api = (method: string, path: string, user = 'carol', body?: unknown) => client(gw, basic(user)).call(method, path, body);

/** Collects the events of one stream; `until` resolves when a predicate matches. */
function openStream(headers: Record<string, string>) {
  const ws = new WebSocket(wsUrl(gw, '/api/af/events'), { headers });
  const events: AfEvent[] = [];
  const waiters: { pred: (e: AfEvent) => boolean; resolve: (e: AfEvent) => void }[] = [];
  ws.on('message', (data) => {
    const e = JSON.parse(String(data)) as AfEvent;
    expect(validEvent(e), JSON.stringify(validEvent.errors)).toBe(true);
    events.push(e);
    for (const w of [...waiters])
      if (w.pred(e)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(e);
      }
  });
  const until = (pred: (e: AfEvent) => boolean, ms = 30_000) =>
    new Promise<AfEvent>((resolve, reject) => {
      const hit = events.find(pred);
      if (hit) return resolve(hit);
      const t = setTimeout(
        () =>
          reject(new Error(`no matching event within ${ms} ms; got ${JSON.stringify(events.map((e) => (e.type === 'cluster' ? e.cluster.status : e.type)))}`)),
        ms,
      );
      waiters.push({
        pred,
        resolve: (e) => {
          clearTimeout(t);
          resolve(e);
        },
      });
    });
  return { ws, events, until };
}

beforeAll(async () => {
  gw = await startTestGateway({ ...SINGLE_USER, cluster: { worker_max_failures: 2 } }, { prefix: 'af-events-' });
});

afterAll(async () => {
  await gw?.close();
});

describe('event stream', () => {
  it('refuses anonymous and cross-origin handshakes', async () => {
    expect(await handshakeStatus(gw, '/api/af/events', {})).toBe(401);
    expect(await handshakeStatus(gw, '/api/af/events', { ...basic('carol'), origin: 'http://evil.example' })).toBe(403);
    expect(await handshakeStatus(gw, '/api/af/events', { ...basic('carol'), origin: gw.url })).toBe(101);
  });

  it('shows a cluster from submission to running to stopped, and only to its owner', async () => {
    const mine = openStream(basic('carol'));
    const theirs = openStream(basic('dave'));
    await mine.until((e) => e.type === 'snapshot');
    await theirs.until((e) => e.type === 'snapshot');

    // a readable name (trimmed), which may look like markup: it is text, kept as typed
    const title = '<img src=x onerror=alert(1)> ttbar';
    const { json } = await api('POST', '/api/v1/clusters/', 'carol', { cluster_options: { worker_cores: 2, display_name: `  ${title} ` } });
    const name = json.name as string;
    const isMine = (status: string) => (e: AfEvent) => e.type === 'cluster' && e.cluster.name === name && e.cluster.status === status;
    expect((await mine.until(isMine('PENDING'))) as { cluster: AfCluster }).toMatchObject({ cluster: { display_name: title } });
    const running = (await mine.until(isMine('RUNNING'))) as { cluster: AfCluster };
    expect(running.cluster).toMatchObject({
      owner: 'carol',
      display_name: title,
      worker_cores: 2,
      worker_memory: 1,
      dashboard_route: `/clusters/${name}/status`,
      adaptive: null,
    });
    // the id stays the key; the dask-gateway form carries the name only among its options
    expect((await api('GET', `/api/v1/clusters/${name}`)).json).toMatchObject({ name, options: { display_name: title } });

    expect((await api('POST', `/api/v1/clusters/${name}/adapt`, 'carol', { minimum: 1, maximum: 2 })).status).toBe(200);
    await mine.until((e) => e.type === 'cluster' && e.cluster.name === name && e.cluster.workers.running === 1, 60_000);
    const adaptive = await api('GET', `/api/af/clusters/${name}`);
    expect(validCluster(adaptive.json)).toBe(true);
    expect(adaptive.json).toMatchObject({
      display_name: title,
      adaptive: { minimum: 1, maximum: 2 },
      workers: { running: 1, list: [expect.objectContaining({ status: 'RUNNING' })] },
    });

    expect((await api('DELETE', `/api/v1/clusters/${name}`, 'carol')).status).toBe(204);
    await mine.until(isMine('STOPPED'));
    expect(theirs.events.filter((e) => e.type === 'cluster')).toEqual([]);
    mine.ws.close();
    theirs.ws.close();
  });
});

describe('failures reach the user', () => {
  it('fails a cluster whose workers cannot start, saying why', async () => {
    const { json } = await api('POST', '/api/v1/clusters/', 'carol', {
      cluster_options: { environment: { DASK_DISTRIBUTED__WORKER__PRELOAD: '["af_gateway_no_such_module"]' } },
    });
    const name = json.name as string;
    const stream = openStream(basic('carol'));
    await stream.until((e) => e.type === 'cluster' && e.cluster.name === name && e.cluster.status === 'RUNNING');
    expect((await api('POST', `/api/v1/clusters/${name}/scale`, 'carol', { count: 1 })).json).toEqual({ ok: true, msg: null });
    const failed = (await stream.until((e) => e.type === 'cluster' && e.cluster.name === name && e.cluster.status === 'FAILED', 60_000)) as {
      cluster: AfCluster;
    };
    expect(failed.cluster.message).toMatch(/2 workers in a row failed to start; the last one exited before connecting to the scheduler/);
    expect(failed.cluster.message).toMatch(/af_gateway_no_such_module/);
    const listed = await api('GET', '/api/af/clusters?status=failed');
    expect((listed.json.clusters as AfCluster[]).map((c) => c.name)).toContain(name);
    stream.ws.close();
  });

  it('refuses a name that is not printable text, creating nothing', async () => {
    const before = (await api('GET', '/api/af/clusters')).json.clusters as AfCluster[];
    for (const display_name of ['two\nlines', 'x'.repeat(65), 'evil\u202Etxt.exe']) {
      const r = await api('POST', '/api/v1/clusters/', 'carol', { cluster_options: { display_name } });
      expect(r.status).toBe(422);
      expect(r.json.error).toMatch(/cluster option 'display_name'/);
    }
    expect((await api('GET', '/api/af/clusters')).json.clusters).toHaveLength(before.length);
  });

  it('lets only administrators list everyone', async () => {
    expect((await api('GET', '/api/af/clusters?all=true')).status).toBe(403);
    expect((await api('GET', '/api/af/clusters?status=bogus')).status).toBe(422);
  });
});
