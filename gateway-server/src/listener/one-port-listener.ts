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
  /** How a scheduler connection's client side is read: 'user-buffer' (the default) reads into the
   * connection's own buffer through Node's internal handle, and falls back to 'stream' (the socket
   * piped the stream way) where Node's internals are not as expected; 'stream' asks for that
   * fallback outright (its tests). */
  passthrough?: 'user-buffer' | 'stream';
}

export interface OnePortServer {
  server: net.Server;
  /** Stops accepting and closes every connection still open (HTTP keep-alive, scheduler pipes). */
  close(): Promise<void>;
}

export function createOnePortServer(opts: OnePortOptions): OnePortServer {
  const open = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    track(socket);
    classify(socket, opts, track);
  });
  const track = (socket: net.Socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
  };
  return {
    server,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of open) s.destroy();
      await closed;
    },
  };
}

function classify(socket: net.Socket, opts: OnePortOptions, track: (s: net.Socket) => void): void {
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
      if (sni?.startsWith(SNI_PREFIX)) return pipeToScheduler(socket, buffered, sni.slice(SNI_PREFIX.length), opts, track);
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

/** Moves an accepted socket's connection to a new net.Socket that reads into the caller's buffer.
 * Node 20 offers `onread` only in the constructor and for sockets it connects; an accepted socket
 * has already been read the stream way (for the ClientHello). Its libuv handle is stopped, taken
 * from the old socket (which then closes without closing the connection) and given to a new
 * socket constructed with `handle` and `onread` (net.js: initSocketHandle calls useUserBuffer for
 * it). `_handle` is Node's internal field, so anything unexpected keeps the stream socket. */
function withUserBuffer(socket: net.Socket, onread: net.OnReadOpts): net.Socket | undefined {
  const internal = socket as unknown as { _handle?: { readStop?: () => number; reading?: boolean } | null };
  const handle = internal._handle;
  const state = (socket as unknown as { _readableState?: { ended?: boolean } })._readableState;
  if (!handle || typeof handle.readStop !== 'function' || socket.destroyed || socket.readableLength > 0 || state?.ended !== false) return undefined;
  handle.reading = false;
  if (handle.readStop() !== 0) return undefined;
  internal._handle = null;
  socket.destroy();
  return new net.Socket({ handle, allowHalfOpen: true, onread } as net.SocketConstructorOpts);
}

function pipeToScheduler(accepted: net.Socket, head: Buffer, cluster: string, opts: OnePortOptions, track: (s: net.Socket) => void): void {
  const target = opts.schedulerFor(cluster);
  if (!target) {
    opts.log.debug({ cluster }, 'scheduler connection for an unknown or stopped cluster refused');
    accepted.destroy();
    return;
  }
  let url: URL;
  try {
    url = new URL(target.replace(/^tls:\/\//, 'tcp://'));
  } catch {
    opts.log.warn({ cluster }, 'scheduler route is not an address; connection refused');
    accepted.destroy();
    return;
  }
  // Each direction reads straight into one buffer of this connection (no allocation, no stream
  // machinery per read) and hands each read to the other side; reading stops while the kernel has
  // not taken a write, since the next read reuses the buffer. The buffer is small at first and
  // grows once a read fills it (a bulk transfer).
  const relay = (to: () => net.Socket, from: () => net.Socket): net.OnReadOpts => {
    let buffer = Buffer.allocUnsafe(FIRST_READ_BYTES);
    let paused = false;
    const flushed = () => {
      if (paused && to().writableLength === 0) {
        paused = false;
        from().resume();
      }
    };
    return {
      buffer: () => buffer,
      callback: (n: number, buf: Uint8Array) => {
        const out = to();
        out.write(buf.subarray(0, n), flushed);
        if (n === buf.length && buf.length < READ_BUFFER_BYTES) buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
        if (out.writableLength === 0) return true;
        paused = true;
        return false;
      },
    };
  };
  // Client -> scheduler (a scatter's bytes) on the accepted connection; if Node's internals are
  // not as expected (or the options ask for it), the accepted socket is piped the stream way.
  const client: net.Socket =
    (opts.passthrough !== 'stream' &&
      withUserBuffer(
        accepted,
        relay(
          () => upstream,
          () => client,
        ),
      )) ||
    accepted;
  if (client !== accepted) track(client);
  const upstream: net.Socket = net.connect({
    host: url.hostname,
    port: Number(url.port),
    noDelay: true,
    // the scheduler's FIN ends only what flows to the client (below), not the client's uploads
    allowHalfOpen: true,
    onread: relay(
      () => client,
      () => upstream,
    ),
  });
  client.setNoDelay(true);
  upstream.write(head);
  if (client === accepted) {
    // The fallback: the accepted socket is piped the stream way. Accepted without allowHalfOpen,
    // the client's FIN would end it both ways and cut short the reply still to come; with it, the
    // FIN ends only the upload (pipe passes it on once what came before it has).
    accepted.allowHalfOpen = true;
    client.pipe(upstream);
  } else {
    // the client's FIN ends only its upload, once what came before it has been passed on
    client.on('end', () => upstream.end());
    client.on('error', (err: Error) => {
      opts.log.debug({ cluster, err: err.message }, 'client connection failed');
      client.destroy();
      upstream.destroy();
    });
  }
  // Each side's FIN is passed on once what came before it has; either side closing closes the
  // other once what it was sent has left (bounded in time); an error closes both at once.
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
