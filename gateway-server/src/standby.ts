// What a replica serves while another one holds the state store's lease: its own liveness (so
// Kubernetes keeps it), not-ready everywhere else (so a Service sends nobody here). It gives the
// port back the moment this replica takes over.
import { createServer, type Server } from 'node:http';

const LIVE = /\/api\/health\/live\/?(\?.*)?$/;
const HEALTH = /\/api\/health\/?(\?.*)?$/;

export interface Standby {
  close(): Promise<void>;
}

export async function serveStandby(host: string, port: number, storeKind: string): Promise<Standby> {
  const waiting = `standby: another replica serves from the ${storeKind} state store; this one takes over when it stops`;
  const server: Server = createServer((req, res) => {
    const url = req.url ?? '/';
    const [code, body] = LIVE.test(url)
      ? [200, { status: 'standby', checks: { leadership: waiting } }]
      : HEALTH.test(url)
        ? [503, { status: 'standby', checks: { leadership: waiting } }]
        : [503, { error: 'This AF Gateway replica is a standby; try again in a few seconds (the serving replica is at the same address)', code: 'standby' }];
    res.writeHead(code, { 'Content-Type': 'application/json', 'Retry-After': '5', Connection: 'close' });
    res.end(JSON.stringify(body));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
