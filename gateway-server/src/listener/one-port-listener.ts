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
/** Reads from a scheduler go into one buffer per connection: this small at first (a connection
 * that only shakes hands holds no more), this large once a read has filled it (a bulk transfer). */
const FIRST_READ_BYTES = 64 * 1024;
const READ_BUFFER_BYTES = 1024 * 1024;
/**
 * The listener's accept queue: Node's default of 511 overflows when a thousand clients connect at
 * once, and the kernel then drops their SYNs, which the clients send again only after 1, 3, 7 s —
 * the multi-second waits of new connections under load (issue 22). The kernel caps it at
 * net.core.somaxconn (4096 on current kernels).
 */
export const LISTEN_BACKLOG = 4096;
/** How long a closing side may take to accept what is still queued for it without reading any. */
const FLUSH_TIMEOUT_MS = 30_000;

export interface OnePortOptions {
  http: HttpServer;
  https?: TlsServer;
  /** host:port of the scheduler of a running cluster, or undefined. */
  schedulerFor: (cluster: string) => string | undefined;
  log: FastifyBaseLogger;
  onSchedulerConnection?: (cluster: string) => void;
  /** How long a new connection may take to show what it is (default 10 s). */
  classifyTimeoutMs?: number;
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
  const timer = setTimeout(() => socket.destroy(), opts.classifyTimeoutMs ?? CLASSIFY_TIMEOUT_MS);
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
  let url: URL;
  try {
    url = new URL(target.replace(/^tls:\/\//, 'tcp://'));
  } catch {
    opts.log.warn({ cluster }, 'scheduler route is not an address; connection refused');
    client.destroy();
    return;
  }
  // Scheduler -> client, where a gather's bytes flow: read straight into one buffer of this
  // connection (no allocation, no stream machinery per read) and hand each read to the client;
  // reading stops while the kernel has not taken a write, since the next read reuses the buffer.
  let readBuffer = Buffer.allocUnsafe(FIRST_READ_BYTES);
  let downPaused = false;
  const downFlushed = () => {
    if (downPaused && client.writableLength === 0) {
      downPaused = false;
      upstream.resume();
    }
  };
  const upstream = net.connect({
    host: url.hostname,
    port: Number(url.port),
    noDelay: true,
    // the scheduler's FIN ends only what flows to the client (below), not the client's uploads
    allowHalfOpen: true,
    onread: {
      buffer: () => readBuffer,
      callback: (n: number, buf: Buffer) => {
        client.write(buf.subarray(0, n), downFlushed);
        if (n === buf.length && buf.length < READ_BUFFER_BYTES) readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
        if (client.writableLength === 0) return true;
        downPaused = true;
        return false;
      },
    },
  });
  client.setNoDelay(true);
  upstream.write(head);
  // Client -> scheduler (uploads): Node reads an accepted socket into its own 64 KiB buffers; a
  // loop of 'data' and write() in place of pipe() measured the same CPU per byte, so pipe() stays.
  client.pipe(upstream);
  // Each side's FIN is passed on once what came before it has (pipe() does this for the client's);
  // either side closing closes the other once what it was sent has left (bounded in time); an
  // error closes both at once.
  upstream.on('end', () => client.end());
  client.on('close', () => closeAfterFlush(upstream));
  upstream.on('close', () => closeAfterFlush(client));
  upstream.on('error', (err) => {
    opts.log.debug({ cluster, err: err.message }, 'scheduler connection failed');
    client.destroy();
    upstream.destroy();
  });
  opts.onSchedulerConnection?.(cluster);
}

function closeAfterFlush(socket: net.Socket): void {
  if (socket.destroyed) return;
  if (socket.writableLength === 0) {
    socket.destroy();
    return;
  }
  socket.setTimeout(FLUSH_TIMEOUT_MS, () => socket.destroy());
  socket.end(() => socket.destroy());
}
