// Mallory against alice through the heartbeat route and the event streams, after the scale work
// (0343ca5: a heartbeat that changes nothing kept is not written; a422d56: one engine listener fans
// changes out to their owner's streams). Mallory holds her own cluster's token (her scheduler runs
// as her) and opens as many event streams as she may. Her heartbeats may not touch alice's cluster
// (with her token on alice's name, or naming alice's workers on her own), her streams may not carry
// alice's cluster, and what alice's heartbeats change must be kept across a restart.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { basic, request, startTestGateway, wsUrl, type TestGateway } from '../support/gateway.js';

let gw: TestGateway | undefined;
let dataDir: string;
const env = { ...process.env, AF_GATEWAY_ALLOW_MEMORY_BACKEND: '1' };
const settings = { auth: { type: 'simple' }, backend: { type: 'memory' }, cluster: { max_workers: 20, stop_on_shutdown: false } };
const alice = basic('alice');
const mallory = basic('mallory');

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'af-hb-hostile-'));
  gw = await startTestGateway(settings, { dataDir, env });
});
afterAll(async () => {
  await gw?.close();
  // (the data directory is this test's, not the test gateway's: a restart below reopens it)
  rmSync(dataDir, { recursive: true, force: true });
});

/** The token the memory backend handed each cluster's scheduler (its launch log). */
function tokenOf(name: string): string {
  for (const line of readFileSync(join(dataDir, 'memory-launches.jsonl'), 'utf8').trim().split('\n')) {
    const l = JSON.parse(line) as { scheduler?: string; token?: string };
    if (l.scheduler === name) return l.token!;
  }
  throw new Error(`no scheduler start of ${name} in the launch log`);
}

const beat = (count: number, extra: Record<string, unknown> = {}) => ({
  scheduler_address: 'tls://127.0.0.1:8786',
  dashboard_address: 'http://127.0.0.1:8787',
  api_address: 'http://127.0.0.1:8788',
  count,
  active_workers: [],
  closing_workers: [],
  closed_workers: [],
  ...extra,
});

async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function create(auth: Record<string, string>): Promise<string> {
  const r = await request(gw!, 'POST', '/api/v1/clusters/', { headers: auth, body: { cluster_options: {} } });
  expect(r.status).toBe(201);
  const name = r.json.name as string;
  await until('the launch log', async () => {
    try {
      return tokenOf(name);
    } catch {
      return undefined;
    }
  });
  return name;
}

function stream(auth: Record<string, string>): { ws: WebSocket; seen: string[]; open: Promise<void> } {
  const ws = new WebSocket(wsUrl(gw!, '/api/af/events'), { headers: auth });
  const seen: string[] = [];
  ws.on('message', (d) => seen.push(d.toString()));
  const open = new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { ws, seen, open };
}

describe("mallory's heartbeats and streams against alice's cluster", () => {
  it('change nothing of it, carry nothing of it, and alice’s own changes survive a restart', async () => {
    const a = await create(alice);
    const m = await create(mallory);
    const aliceToken = tokenOf(a);
    const malloryToken = tokenOf(m);
    const hb = (name: string, token: string, body: unknown) =>
      request(gw!, 'POST', `/api/v1/clusters/${name}/heartbeat`, { headers: { authorization: `token ${token}` }, body });
    expect((await hb(a, aliceToken, beat(2))).status).toBe(204);
    expect((await hb(m, malloryToken, beat(1))).status).toBe(204);

    // mallory's streams (as many as she may open), and one of alice's
    const mine = [];
    for (let i = 0; i < 5; i++) mine.push(stream(mallory));
    const settled = await Promise.allSettled(mine.map((s) => s.open));
    const open = mine.filter((_, i) => settled[i]!.status === 'fulfilled');
    expect(open.length).toBeGreaterThan(0);
    const hers = stream(alice);
    await hers.open;

    // her token on alice's cluster, replayed and forged: refused, and alice's cluster unchanged
    for (const token of [malloryToken, `${aliceToken.slice(0, -1)}x`, '', aliceToken.toUpperCase()]) {
      expect((await hb(a, token, beat(0, { active_workers: [] }))).status).toBe(401);
    }
    // her own cluster's heartbeat naming alice's cluster's workers as closed
    const workersOfA = async () =>
      ((await request(gw!, 'GET', `/api/af/clusters/${a}`, { headers: alice })).json.workers as { list: { name: string; status: string }[] }).list;
    const aWorkers = await until('alice’s 2 workers', async () => ((await workersOfA()).length === 2 ? await workersOfA() : undefined));
    expect((await hb(m, malloryToken, beat(1, { closed_workers: aWorkers.map((w) => w.name) }))).status).toBe(204);

    // alice's next change reaches her stream, not mallory's
    expect((await hb(a, aliceToken, beat(3, { active_workers: aWorkers.map((w) => w.name) }))).status).toBe(204);
    await until('alice’s stream to see count 3', async () => (hers.seen.some((t) => t.includes(a) && t.includes('"type":"cluster"')) ? true : undefined));
    await new Promise((r) => setTimeout(r, 300)); // two coalescing windows more
    for (const s of open) expect(s.seen.join('\n')).not.toContain(a);
    const aNow = (await request(gw!, 'GET', `/api/v1/clusters/${a}`, { headers: alice })).json;
    expect(aNow.status).toBe('RUNNING');
    // alice's workers were not ended by mallory's heartbeat naming them
    const now = new Map((await workersOfA()).map((w) => [w.name, w.status]));
    for (const w of aWorkers) expect(now.get(w.name), w.name).toMatch(/STARTING|RUNNING/);
    for (const s of [...mine, hers]) s.ws.terminate();

    // a restart on the same state: alice's scale (3) is what the store kept, mallory's cluster is still hers
    await gw!.close();
    gw = undefined;
    gw = await startTestGateway(settings, { dataDir, env });
    // (the memory backend's processes do not outlive it, so the restarted gateway finds the clusters'
    // schedulers gone and ends them: the records are what is checked)
    const afA = (await request(gw, 'GET', `/api/af/clusters/${a}`, { headers: alice })).json as { workers: { requested: number }; owner: string };
    expect(afA.workers.requested).toBe(3);
    expect([403, 404]).toContain((await request(gw, 'GET', `/api/af/clusters/${a}`, { headers: mallory })).status);
    const mList = (await request(gw, 'GET', '/api/v1/clusters/?status=running,pending,stopped,failed', { headers: mallory })).json;
    expect(Object.keys(mList)).not.toContain(a);
  });
});
