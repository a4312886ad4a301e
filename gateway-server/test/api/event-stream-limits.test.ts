// The event stream takes small messages only and a bounded number of streams per user.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { resolveConfig } from '../../src/config.js';
import { makeLogger, startGateway, type RunningGateway } from '../../src/server.js';

let gw: RunningGateway;
let dataDir: string;
const headers = (user: string) => ({ authorization: 'Basic ' + Buffer.from(`${user}:`).toString('base64') });

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'af-ws-limits-'));
  gw = await startGateway(resolveConfig({ listen: '127.0.0.1:0', data_dir: dataDir, backend: { local: { single_user: true } } }), makeLogger('warn'));
});
afterAll(async () => {
  await gw?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

function open(user: string): Promise<{ ws: WebSocket; status: number }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(gw.url.replace('http', 'ws') + '/api/af/events', { headers: headers(user) });
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
    const mine = [];
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
});
