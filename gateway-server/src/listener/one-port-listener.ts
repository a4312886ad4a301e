// The gateway's single port. Each new connection is classified by its first bytes:
//  - a TLS ClientHello whose SNI is "daskgateway-<cluster>" is piped, still encrypted, to that
//    cluster's scheduler (mutual TLS with the cluster's own certificate, end to end);
//  - any other TLS goes to the gateway's HTTPS server when one is configured;
//  - everything else is plain HTTP for Fastify.
import net from 'node:net';
import type { Server as HttpServer } from 'node:http';
import type { Server as TlsServer } from 'node:tls';
import type { FastifyBaseLogger } from 'fastify';
import { readClientHello } from './client-hello.js';

export const SNI_PREFIX = 'daskgateway-';
const MAX_HELLO_BYTES = 16 * 1024 + 5;
const CLASSIFY_TIMEOUT_MS = 10_000;

export interface OnePortOptions {
  http: HttpServer;
  https?: TlsServer;
  /** host:port of the scheduler of a running cluster, or undefined. */
  schedulerFor: (cluster: string) => string | undefined;
  log: FastifyBaseLogger;
  onSchedulerConnection?: (cluster: string) => void;
}

export interface OnePortServer {
  server: net.Server;
  /** Stops accepting and closes every connection still open (HTTP keep-alive, scheduler pipes). */
  close(): Promise<void>;
}

export function createOnePortServer(opts: OnePortOptions): OnePortServer {
  const open = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
    classify(socket, opts);
  });
  return {
    server,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of open) s.destroy();
      await closed;
    },
  };
}

function classify(socket: net.Socket, opts: OnePortOptions): void {
  let buffered = Buffer.alloc(0);
  const timer = setTimeout(() => socket.destroy(), CLASSIFY_TIMEOUT_MS);
  socket.on('error', () => socket.destroy());

  const onReadable = () => {
    let chunk: Buffer | null;
    while ((chunk = socket.read() as Buffer | null) !== null) buffered = Buffer.concat([buffered, chunk]);
    const hello = readClientHello(buffered);
    if (hello.kind === 'incomplete') {
      if (buffered.length > MAX_HELLO_BYTES) finish(() => socket.destroy());
      return;
    }
    finish(() => {
      if (hello.kind === 'not-tls') return handOver(socket, buffered, opts.http);
      const sni = hello.serverName;
      if (sni?.startsWith(SNI_PREFIX)) return pipeToScheduler(socket, buffered, sni.slice(SNI_PREFIX.length), opts);
      if (opts.https) return handOver(socket, buffered, opts.https);
      socket.destroy();
    });
  };
  const finish = (next: () => void) => {
    clearTimeout(timer);
    socket.removeListener('readable', onReadable);
    socket.removeListener('end', onEnd);
    next();
  };
  const onEnd = () => finish(() => socket.destroy());
  socket.on('readable', onReadable);
  socket.on('end', onEnd);
}

function handOver(socket: net.Socket, head: Buffer, server: HttpServer | TlsServer): void {
  socket.unshift(head);
  server.emit('connection', socket);
}

function pipeToScheduler(client: net.Socket, head: Buffer, cluster: string, opts: OnePortOptions): void {
  const target = opts.schedulerFor(cluster);
  if (!target) {
    opts.log.debug({ cluster }, 'scheduler connection for an unknown or stopped cluster refused');
    client.destroy();
    return;
  }
  const url = new URL(target.replace(/^tls:\/\//, 'tcp://'));
  const upstream = net.connect({ host: url.hostname, port: Number(url.port) });
  upstream.setNoDelay(true);
  client.setNoDelay(true);
  upstream.write(head);
  client.pipe(upstream);
  upstream.pipe(client);
  const close = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('close', close);
  upstream.on('close', close);
  upstream.on('error', (err) => {
    opts.log.debug({ cluster, err: err.message }, 'scheduler connection failed');
    close();
  });
  opts.onSchedulerConnection?.(cluster);
}
