import { describe, expect, it } from 'vitest';
import net from 'node:net';
import tls from 'node:tls';
import { readClientHello } from '../../src/listener/client-hello.js';

/** The first bytes a real TLS client (Node's OpenSSL) sends for a given SNI. */
async function captureHello(servername?: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((sock) => {
      sock.once('data', (d) => {
        resolve(d);
        sock.destroy();
        server.close();
      });
    });
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      const c = tls.connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false });
      c.on('error', () => undefined);
    });
    server.on('error', reject);
  });
}

describe('readClientHello', () => {
  it('finds the SNI of a real ClientHello', async () => {
    const hello = await captureHello('daskgateway-abc123');
    expect(readClientHello(hello)).toEqual({ kind: 'tls', serverName: 'daskgateway-abc123' });
  });

  it('reports a ClientHello without SNI', async () => {
    const hello = await captureHello(undefined);
    expect(readClientHello(hello)).toEqual({ kind: 'tls', serverName: null });
  });

  it('waits for the rest of a record split across reads', async () => {
    const hello = await captureHello('daskgateway-x');
    for (const cut of [1, 4, 5, 40, hello.length - 1]) {
      expect(readClientHello(hello.subarray(0, cut))).toEqual({ kind: 'incomplete' });
    }
  });

  it('classifies HTTP as not TLS', () => {
    expect(readClientHello(Buffer.from('GET / HTTP/1.1\r\n'))).toEqual({ kind: 'not-tls' });
  });

  it('does not throw on garbage inside a handshake record', () => {
    const junk = Buffer.concat([Buffer.from([0x16, 3, 1, 0, 10]), Buffer.alloc(10, 0xff)]);
    expect(readClientHello(junk)).toEqual({ kind: 'tls', serverName: null });
  });
});
