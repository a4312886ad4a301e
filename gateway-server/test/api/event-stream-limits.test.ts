// The event stream takes small messages only and a bounded number of streams per user.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';
import { basic as headers, request, SINGLE_USER, startTestGateway, wsUrl, type TestGateway } from '../support/gateway.js';
import { bigDagRunBody } from '../support/big-dag.js';

let gw: TestGateway;

beforeAll(async () => {
  gw = await startTestGateway(SINGLE_USER, { prefix: 'af-ws-limits-' });
});
afterAll(async () => {
  await gw?.close();
});

function open(user: string): Promise<{ ws: WebSocket; status: number }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(wsUrl(gw, '/api/af/events'), { headers: headers(user) });
    ws.once('message', () => resolve({ ws, status: 101 })); // the snapshot
    ws.once('unexpected-response', (_req, res) => resolve({ ws, status: res.statusCode ?? 0 }));
    ws.on('error', () => undefined);
  });
}

describe('event stream limits', () => {
  it('closes a stream that sends a message over 64 KiB (1009), without buffering it', async () => {
    const { ws } = await open('alice');
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    ws.send('x'.repeat(100 * 1024));
    expect(await closed).toBe(1009);
  });

  it('refuses a user more than 32 open streams (429), and takes them again once one closes', async () => {
    const mine: Awaited<ReturnType<typeof open>>[] = [];
    for (let i = 0; i < 32; i++) mine.push(await open('carol'));
    expect(mine.every((s) => s.status === 101)).toBe(true);
    const refused = await open('carol');
    expect(refused.status).toBe(429);
    expect((await open('dave')).status).toBe(101); // another user is not affected
    const closed = new Promise((resolve) => mine[0]!.ws.once('close', resolve));
    mine[0]!.ws.close();
    await closed;
    await new Promise((r) => setTimeout(r, 100));
    const again = await open('carol');
    expect(again.status).toBe(101);
    for (const s of [...mine, again]) s.ws.terminate();
  });

  it("closes the streams that read nothing rather than buffer a large run's DAG for each (1.6 GB in 10 s), and keeps the one that reads", async () => {
    const auth = headers('mallory').authorization;
    const reader = await open('mallory');
    const stalled: net.Socket[] = [];
    for (let i = 0; i < 31; i++) {
      const s = net.connect(gw.port, '127.0.0.1');
      s.write(
        `GET /api/af/events HTTP/1.1\r\nHost: 127.0.0.1:${gw.port}\r\nAuthorization: ${auth}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
      s.pause(); // never reads
      s.on('error', () => undefined);
      stalled.push(s);
    }
    await sleep(300);
    const rss0 = process.memoryUsage().rss;
    const res = await request(gw, 'POST', '/api/af/workflows', { headers: { authorization: auth }, body: bigDagRunBody() });
    expect(res.status).toBe(201);
    const run = res.json as { id: string };
    let dags = 0;
    reader.ws.on('message', (m: Buffer) => (dags += m.toString().startsWith('{"type":"workflow-dag"') ? 1 : 0));
    let peak = rss0;
    for (let i = 0; i < 20; i++) {
      await sleep(250);
      peak = Math.max(peak, process.memoryUsage().rss);
    }
    await request(gw, 'POST', `/api/af/workflows/${run.id}/cancel`, { headers: { authorization: auth } });
    for (const s of stalled) s.destroy();
    expect((peak - rss0) / 1e6).toBeLessThan(400);
    expect(dags).toBeGreaterThan(0);
    expect(reader.ws.readyState).toBe(WebSocket.OPEN);
    reader.ws.terminate();
  }, 30_000);
});
