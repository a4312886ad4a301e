// A real gateway (local backend) for a test file, started before its tests and stopped after,
// with the API client and the event-stream sockets a user of the Lab would have.
import { afterAll, beforeAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { resolveConfig } from '../../gateway-server/src/config.js';
import { makeLogger, startGateway, type RunningGateway } from '../../gateway-server/src/server.js';
import { GatewayClient } from '../src/api/gateway-client';
import type { SocketLike } from '../src/api/event-stream';

export interface RealGateway {
  /** The gateway's base URL (set once the file's tests run). */
  readonly url: string;
  clientFor(user: string): GatewayClient;
  /** The browser's WebSocket carries the session cookie; here the Basic header stands in for it. */
  socketsFor(user: string): (url: string) => SocketLike;
}

export function useRealGateway(prefix: string, config: Record<string, unknown> = {}): RealGateway {
  let gw: RunningGateway | undefined;
  let dataDir = '';
  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), prefix));
    // one test person on loopback (simple auth, no password): single-user mode, as in the demo
    gw = await startGateway(
      resolveConfig({ listen: '127.0.0.1:0', data_dir: dataDir, backend: { local: { single_user: true } }, ...config }),
      makeLogger('warn'),
    );
  });
  afterAll(async () => {
    await gw?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });
  const url = () => gw!.url;
  return {
    get url() {
      return url();
    },
    clientFor: (user) => new GatewayClient({ baseUrl: url(), authMode: 'basic', username: user }),
    socketsFor: (user) => (wsUrl) =>
      new WebSocket(wsUrl, { headers: { authorization: 'Basic ' + Buffer.from(`${user}:`).toString('base64'), origin: url() } }) as unknown as SocketLike,
  };
}
