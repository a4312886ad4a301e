import { afterEach, describe, expect, it } from 'vitest';
import net from 'node:net';
import http from 'node:http';
import tls from 'node:tls';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createOnePortServer, type OnePortOptions, type OnePortServer } from '../../src/listener/one-port-listener.js';

const silent = { debug() {}, info() {}, warn() {}, error() {} } as never;

/** The first bytes a real TLS client (Node's OpenSSL) sends, for a given SNI. */
async function captureHello(servername: string): Promise<Buffer> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const got = once(server, 'connection');
  const c = tls.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, servername, rejectUnauthorized: false });
  c.on('error', () => undefined);
  const [sock] = (await got) as [net.Socket];
  const [hello] = (await once(sock, 'data')) as [Buffer];
  sock.destroy();
  c.destroy();
  server.close();
  return hello;
}

/** A stand-in scheduler: records every connection and what arrives on it. */
interface FakeScheduler {
  port: number;
  conns: { socket: net.Socket; received: Buffer[] }[];
  next(): Promise<{ socket: net.Socket; received: Buffer[] }>;
  close(): void;
}
async function fakeScheduler(allowHalfOpen = false): Promise<FakeScheduler> {
  const conns: FakeScheduler['conns'] = [];
  const server = net.createServer({ allowHalfOpen }, (socket) => {
    const entry = { socket, received: [] as Buffer[] };
    socket.on('data', (d: Buffer) => entry.received.push(d));
    socket.on('error', () => undefined);
    conns.push(entry);
    server.emit('entry', entry);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    conns,
    next: async () => ((await once(server, 'entry')) as [FakeScheduler['conns'][number]])[0],
    close: () => {
      for (const c of conns) c.socket.destroy();
      server.close();
    },
  };
}

const cleanups: (() => unknown)[] = [];
/** The connections the one port accepted, in order (the gateway's side of each client). */
let accepted: net.Socket[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  accepted = [];
});

/** Our one port, with scheduler routes by cluster name: a port on 127.0.0.1, or a route as given. */
async function gateway(schedulers: Record<string, number | string>, extra: Pick<OnePortOptions, 'classifyTimeoutMs' | 'passthrough'> = {}) {
  const httpServer = http.createServer((_req, res) => res.end('plain http'));
  const route = (r: number | string) => (typeof r === 'number' ? `tls://127.0.0.1:${r}` : r);
  const onePort: OnePortServer = createOnePortServer({
    http: httpServer,
    schedulerFor: (name) => (Object.hasOwn(schedulers, name) ? route(schedulers[name]!) : undefined),
    log: silent,
    ...extra,
  });
  onePort.server.on('connection', (socket: net.Socket) => accepted.push(socket));
  await new Promise<void>((resolve) => onePort.server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => onePort.close());
  return (onePort.server.address() as net.AddressInfo).port;
}

function connect(port: number): Promise<net.Socket> {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => undefined);
  cleanups.push(() => s.destroy());
  return once(s, 'connect').then(() => s);
}

/** Resolves once the socket is closed, with everything it received. */
function drain(s: net.Socket): Promise<Buffer> {
  const parts: Buffer[] = [];
  s.on('data', (d: Buffer) => parts.push(d));
  return new Promise((resolve) => s.once('close', () => resolve(Buffer.concat(parts))));
}

/** Reads the socket in fits and starts (a pause of 2 ms now and then), so that the side writing to it keeps meeting a full socket. */
function readInFits(s: net.Socket): void {
  let got = 0;
  s.on('data', (d: Buffer) => {
    got += d.length;
    if (got % 3 === 0) {
      s.pause();
      setTimeout(() => s.resume(), 2);
    }
  });
  s.resume();
}

/** n bytes in which every 4-byte word holds its own offset: a byte out of place shows. */
function counting(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i + 4 <= n; i += 4) b.writeUInt32LE(i, i);
  return b;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

// The passthrough reads the client side into its own buffer through Node's internal socket handle;
// where a Node lacks that handle it pipes the accepted socket the stream way instead. Both ways
// must carry the same bytes: each test runs in both, the fallback asked for by the option.
describe.each([
  { mode: 'user buffer', passthrough: undefined },
  { mode: 'stream fallback', passthrough: 'stream' as const },
])('one port: scheduler passthrough ($mode)', ({ passthrough }) => {
  /** A client connected through our port to a stand-in scheduler of cluster abc: its ClientHello sent, and the scheduler's side of the connection. */
  async function passedThrough(schedulerHalfOpen = false) {
    const sched = await fakeScheduler(schedulerHalfOpen);
    cleanups.push(() => sched.close());
    const port = await gateway({ abc: sched.port }, { passthrough });
    const client = await connect(port);
    const hello = await captureHello('daskgateway-abc');
    client.write(hello);
    return { client, hello, conn: await sched.next() };
  }

  it('pipes the bytes of a ClientHello naming a running cluster to its scheduler, both ways, unchanged', async () => {
    const { client, hello, conn } = await passedThrough();
    const up = counting(8 * 1024 * 1024 + 3);
    client.write(up);
    const uploaded = once(conn.socket, 'end'); // the client's FIN, passed on after its bytes
    const down = counting(24 * 1024 * 1024 + 1);
    conn.socket.end(down); // the scheduler's FIN does not cut the upload short
    const received = await drain(client);
    expect(received.length).toBe(down.length);
    expect(sha(received)).toBe(sha(down));
    await uploaded;
    const sent = Buffer.concat(conn.received);
    expect(sent.subarray(0, hello.length).equals(hello)).toBe(true);
    expect(sha(sent.subarray(hello.length))).toBe(sha(up));
  });

  it('carries 50 MiB each way at once, and after the client sends its FIN the scheduler still sends; the mode under test is the one copying', async () => {
    const { client, hello, conn } = await passedThrough(true);
    // the user buffer takes the connection over from the accepted socket, which closes; the fallback keeps it
    expect(accepted).toHaveLength(1);
    expect(accepted[0]!.destroyed).toBe(passthrough !== 'stream');
    const received = drain(client);
    const uploaded = once(conn.socket, 'end');
    const up = counting(50 * 1024 * 1024 + 1);
    const down = counting(50 * 1024 * 1024 + 2);
    client.end(up);
    conn.socket.write(down);
    await uploaded; // the client's FIN, after all its bytes
    const sent = Buffer.concat(conn.received);
    expect(sent.length).toBe(hello.length + up.length);
    expect(sha(sent.subarray(hello.length))).toBe(sha(up));
    const tail = Buffer.from('sent after the FIN');
    conn.socket.end(tail);
    const got = await received;
    expect(got.length).toBe(down.length + tail.length);
    expect(sha(got)).toBe(sha(Buffer.concat([down, tail])));
  });

  it('keeps the bytes in order when the client reads slowly (the read buffer is reused only once the client took a write)', async () => {
    const { client, conn } = await passedThrough();
    const down = counting(64 * 1024 * 1024);
    client.pause();
    conn.socket.end(down);
    // while the client reads nothing, the gateway holds back and so does the scheduler's socket
    await new Promise((r) => setTimeout(r, 500));
    expect(conn.socket.writableLength).toBeGreaterThan(0);
    const closed = drain(client); // collects; a paused socket stays paused when a 'data' listener is added
    readInFits(client);
    const received = await closed;
    expect(received.length).toBe(down.length);
    expect(sha(received)).toBe(sha(down));
  });

  it("holds back a client's upload while the scheduler reads nothing, and keeps it in order (the upload read buffer is reused too)", async () => {
    const { client, hello, conn } = await passedThrough();
    conn.socket.pause();
    const up = counting(64 * 1024 * 1024);
    const uploaded = once(conn.socket, 'end');
    client.end(up);
    // the gateway holds no more than its buffer while the scheduler reads nothing: the rest waits in the client
    await new Promise((r) => setTimeout(r, 500));
    expect(client.writableLength).toBeGreaterThan(32 * 1024 * 1024);
    readInFits(conn.socket);
    await uploaded;
    const sent = Buffer.concat(conn.received);
    expect(sent.length).toBe(hello.length + up.length);
    expect(sha(sent.subarray(hello.length))).toBe(sha(up));
  });

  it('a client that half-closes (sends its FIN) still gets the whole reply', async () => {
    const { client, conn } = await passedThrough(true);
    const received = drain(client);
    client.end(Buffer.from('request'));
    await once(conn.socket, 'end');
    const down = counting(8 * 1024 * 1024);
    conn.socket.end(down);
    const got = await received;
    expect(got.length).toBe(down.length);
    expect(sha(got)).toBe(sha(down));
  });

  it('refuses an unknown cluster: the connection closes and no scheduler is contacted', async () => {
    const sched = await fakeScheduler();
    cleanups.push(() => sched.close());
    const port = await gateway({ abc: sched.port }, { passthrough });
    for (const name of ['daskgateway-nope', 'daskgateway-', 'daskgateway-toString', 'daskgateway-__proto__', 'daskgateway-abc.evil']) {
      const client = await connect(port);
      client.write(await captureHello(name));
      client.write('payload');
      expect((await drain(client)).length).toBe(0);
    }
    expect(sched.conns.length).toBe(0);
  });

  it('sends each connection only to the scheduler its SNI names', async () => {
    const a = await fakeScheduler();
    const b = await fakeScheduler();
    cleanups.push(
      () => a.close(),
      () => b.close(),
    );
    const port = await gateway({ a: a.port, b: b.port }, { passthrough });
    const client = await connect(port);
    client.write(await captureHello('daskgateway-b'));
    client.write('for b');
    const conn = await b.next();
    await new Promise((r) => setTimeout(r, 100));
    expect(Buffer.concat(conn.received).toString()).toContain('for b');
    expect(a.conns.length).toBe(0);
    // TLS for another name, without the prefix, or without SNI never reaches a scheduler
    for (const name of ['a', 'dask-gateway-a', 'xdaskgateway-a']) {
      const other = await connect(port);
      other.write(await captureHello(name));
      expect((await drain(other)).length).toBe(0);
    }
    expect(a.conns.length).toBe(0);
    expect(b.conns.length).toBe(1);
  });

  it('closing either side closes the other', async () => {
    const sched = await fakeScheduler();
    cleanups.push(() => sched.close());
    const port = await gateway({ abc: sched.port }, { passthrough });
    const hello = await captureHello('daskgateway-abc');

    const client = await connect(port);
    client.write(hello);
    const conn = await sched.next();
    const clientClosed = once(client, 'close');
    conn.socket.destroy();
    await clientClosed;

    const client2 = await connect(port);
    client2.write(hello);
    const conn2 = await sched.next();
    const schedClosed = once(conn2.socket, 'close');
    client2.destroy();
    await schedClosed;
  });

  it('refuses a connection whose route is not an address, and keeps serving', async () => {
    const sched = await fakeScheduler();
    cleanups.push(() => sched.close());
    const port = await gateway({ bad: 'not an address', abc: sched.port }, { passthrough });
    const client = await connect(port);
    client.write(await captureHello('daskgateway-bad'));
    expect((await drain(client)).length).toBe(0);
    const next = await connect(port);
    next.write(await captureHello('daskgateway-abc'));
    await sched.next();
  });

  it('closes the client when the scheduler cannot be reached', async () => {
    const sched = await fakeScheduler();
    const deadPort = sched.port;
    sched.close();
    const port = await gateway({ abc: deadPort }, { passthrough });
    const client = await connect(port);
    client.write(await captureHello('daskgateway-abc'));
    expect((await drain(client)).length).toBe(0);
  });
});

describe('one port: classifying a connection', () => {
  it('hands plain HTTP to the HTTP server', async () => {
    const port = await gateway({});
    const body = await new Promise<string>((resolve, reject) => {
      http
        .get(`http://127.0.0.1:${port}/`, (res) => {
          let s = '';
          res.on('data', (d) => (s += d));
          res.on('end', () => resolve(s));
        })
        .on('error', reject);
    });
    expect(body).toBe('plain http');
  });

  it('closes a connection that does not finish its ClientHello in time', async () => {
    const sched = await fakeScheduler();
    cleanups.push(() => sched.close());
    const port = await gateway({ abc: sched.port }, { classifyTimeoutMs: 300 });
    const hello = await captureHello('daskgateway-abc');
    const client = await connect(port);
    client.write(hello.subarray(0, 20)); // a record header and a little: the rest never comes
    const t0 = Date.now();
    expect((await drain(client)).length).toBe(0);
    expect(Date.now() - t0).toBeLessThan(5_000);
    const silentClient = await connect(port); // says nothing at all
    expect((await drain(silentClient)).length).toBe(0);
    expect(sched.conns.length).toBe(0);
  });

  it('closes a connection whose ClientHello grows past the largest TLS record', async () => {
    const sched = await fakeScheduler();
    cleanups.push(() => sched.close());
    const port = await gateway({ abc: sched.port });
    const client = await connect(port);
    const closed = drain(client);
    // a record header announcing 65535 bytes, then more than the limit of junk
    client.write(Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff]));
    for (let i = 0; i < 20 && !client.destroyed; i++) client.write(Buffer.alloc(1024, 0x41));
    expect((await closed).length).toBe(0);
    expect(sched.conns.length).toBe(0);
  });
});
