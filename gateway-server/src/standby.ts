// What a replica serves while another one holds the state store's lease: its own liveness (so
// Kubernetes keeps it), not-ready everywhere else (so a Service sends nobody here), in plain HTTP
// and, when the gateway has a certificate, HTTPS on the same port like the serving replica. It
// gives the port back the moment this replica takes over.
import { createServer, type Server } from 'node:http';
import { createServer as createTlsServer } from 'node:tls';
import type { FastifyBaseLogger } from 'fastify';
import { createOnePortServer, LISTEN_BACKLOG } from './listener/one-port-listener.js';

const LIVE = /\/api\/health\/live\/?(\?.*)?$/;
const HEALTH = /\/api\/health\/?(\?.*)?$/;

export interface Standby {
  close(): Promise<void>;
}

export interface StandbyOptions {
  host: string;
  port: number;
  storeKind: string;
  tls?: { cert: Buffer; key: Buffer };
  log: FastifyBaseLogger;
}

export async function serveStandby({ host, port, storeKind, tls, log }: StandbyOptions): Promise<Standby> {
  const waiting = `standby: another replica serves from the ${storeKind} state store; this one takes over when it stops`;
  const http: Server = createServer((req, res) => {
    const url = req.url ?? '/';
    const [code, body] = LIVE.test(url)
      ? [200, { status: 'standby', checks: { leadership: waiting } }]
      : HEALTH.test(url)
        ? [503, { status: 'standby', checks: { leadership: waiting } }]
        : [503, { error: 'This AF Gateway replica is a standby; try again in a few seconds (the serving replica is at the same address)', code: 'standby' }];
    res.writeHead(code, { 'Content-Type': 'application/json', 'Retry-After': '5', Connection: 'close' });
    res.end(JSON.stringify(body));
  });
  const https = tls && createTlsServer({ ...tls, ALPNProtocols: ['http/1.1'] });
  https?.on('secureConnection', (s) => http.emit('connection', s));
  const onePort = createOnePortServer({ http, https, schedulerFor: () => undefined, log });
  await new Promise<void>((resolve, reject) => {
    onePort.server.once('error', reject);
    onePort.server.listen({ port, host, backlog: LISTEN_BACKLOG }, () => resolve());
  });
  return { close: () => onePort.close() };
}
