// A stage's register attacked by its own hostile owner (mallory): the gateway uploads her step's
// files with her storage token to the PFN Rucio gives, then registers them. What she controls: the
// files (and whether something of hers keeps writing them after the step ended), their names (and so
// the names Rucio turns into PFNs). What must hold: the bytes stored are the bytes whose size and
// Adler-32 Rucio is given, never more than the Content-Length; her token goes only to the https
// address the PFN names; a sparse file does not make the gateway read terabytes; a storage that
// reads slowly does not hold the upload past its deadline. Rucio here is a stand-in that records what
// it is asked (nothing is known under any name; each PFN is the test's); the storage is a real
// HTTPS server on 127.0.0.1 with a certificate made for the test.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open, truncate } from 'node:fs/promises';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ADLER32 from 'adler-32';
import type { User } from '../../src/auth/authenticator.js';
import type { RucioClient } from '../../src/rucio/rucio-client.js';
import { storageUrl, uploadAndRegister, type FileToRegister } from '../../src/rucio/rucio-upload.js';

const TOKEN = 'mallorys-storage-token-SECRET-0123456789';
const mallory: User = { name: 'mallory', groups: [], admin: false };

let dir: string;
let ca: string;
let storage: Server;
let port: number;
let plain: HttpServer;
let plainPort: number;
let plainHits = 0;

interface Received {
  method: string;
  url: string;
  auth: string | undefined;
  length: string | undefined;
  body: Buffer;
  complete: boolean;
}
let received: Received[] = [];
/** How the storage reads a PUT's body: at once, or a piece every 100 ms. */
let slow = false;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'af-hostile-register-'));
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
    ],
    { stdio: 'ignore', timeout: 30_000 },
  );
  ca = readFileSync(join(dir, 'cert.pem'), 'utf8');
  storage = createServer({ cert: ca, key: readFileSync(join(dir, 'key.pem')) }, (req, res) => {
    const r: Received = {
      method: req.method!,
      url: req.url!,
      auth: req.headers.authorization,
      length: req.headers['content-length'],
      body: Buffer.alloc(0),
      complete: false,
    };
    received.push(r);
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    if (slow) {
      req.pause();
      const t = setInterval(() => {
        req.resume();
        setImmediate(() => req.pause());
      }, 100);
      req.on('close', () => clearInterval(t));
    }
    req.on('end', () => {
      r.body = Buffer.concat(parts);
      r.complete = true;
      res.writeHead(req.method === 'PUT' ? 201 : 404).end();
    });
    req.on('close', () => {
      if (!r.complete) r.body = Buffer.concat(parts);
    });
  });
  plain = createHttpServer((req, res) => {
    plainHits++;
    res.writeHead(201).end();
  });
  return Promise.all([
    new Promise<void>((ok) => storage.listen(0, '127.0.0.1', () => ok())),
    new Promise<void>((ok) => plain.listen(0, '127.0.0.1', () => ok())),
  ]).then(() => {
    port = (storage.address() as AddressInfo).port;
    plainPort = (plain.address() as AddressInfo).port;
  });
}, 60_000);

afterAll(async () => {
  storage.closeAllConnections();
  plain.closeAllConnections();
  await Promise.all([new Promise((ok) => storage.close(ok)), new Promise((ok) => plain.close(ok))]);
  rmSync(dir, { recursive: true, force: true });
});

afterEach(() => {
  received = [];
  slow = false;
  plainHits = 0;
});

/** Rucio as a recording stand-in: knows no name, gives `pfnOf(did)` as each file's PFN. */
function fakeRucio(pfnOf: (did: string) => string): { client: RucioClient; calls: { what: string; body: unknown }[] } {
  const calls: { what: string; body: unknown }[] = [];
  const client = {
    cfg: { name: 'fake' },
    request(_u: User, method: string, path: string, body?: unknown) {
      calls.push({ what: `${method} ${path.split('?')[0]}`, body });
      return Promise.resolve(new Response(''));
    },
    json(_u: User, method: string, path: string, body?: unknown) {
      calls.push({ what: `${method} ${path.split('?')[0]}`, body });
      if (path.includes('/lfns2pfns?')) {
        const q = new URLSearchParams(path.split('?')[1]);
        return Promise.resolve(Object.fromEntries(q.getAll('lfn').map((d) => [d, pfnOf(d)])));
      }
      return Promise.resolve(path === '/accounts/whoami' ? { account: 'mallory' } : null);
    },
  } as unknown as RucioClient;
  return { client, calls };
}

const registered = (calls: { what: string; body: unknown }[]) =>
  calls.filter((c) => c.what === 'POST /replicas/').flatMap((c) => (c.body as { files: { name: string; bytes: number; adler32: string }[] }).files);

const adler = (b: Buffer) => (ADLER32.buf(b, 1) >>> 0).toString(16).padStart(8, '0');

/** A file of mallory's step; `beforeSecondOpen` runs when the gateway opens it again to send it. */
function stepFile(name: string, content: Buffer, beforeSecondOpen?: (path: string) => Promise<void>): FileToRegister {
  const path = join(dir, name);
  writeFileSync(path, content);
  let opens = 0;
  return {
    name: `run.abc/${name}`,
    path,
    open: async () => {
      if (++opens === 2 && beforeSecondOpen) await beforeSecondOpen(path);
      return open(path, 'r');
    },
  };
}

const target = { rse: 'SITE-A', dataset: 'user.mallory:outs', lifetime: null };
const deps = (client: RucioClient, timeout = 30) => ({ client, storageToken: () => Promise.resolve(TOKEN), timeout, ca });
const pfnHere = (did: string) => `davs://127.0.0.1:${port}/rucio/${did.replace(':', '/')}`;

describe('register, as its hostile owner', () => {
  it('uploads a plain file with the owner token to the PFN and registers its size and Adler-32 (the baseline the attacks are measured against)', async () => {
    const body = Buffer.from('m4l 120 125 130\n');
    const { client, calls } = fakeRucio(pfnHere);
    const dids = await uploadAndRegister(deps(client), mallory, target, [stepFile('plain.txt', body)]);
    expect(dids).toEqual(['user.mallory:run.abc/plain.txt']);
    expect(received.map((r) => [r.method, r.url, r.auth, r.complete])).toEqual([['PUT', '/rucio/user.mallory/run.abc/plain.txt', `Bearer ${TOKEN}`, true]]);
    expect(received[0]!.body.equals(body)).toBe(true);
    expect(registered(calls)).toEqual([{ scope: 'user.mallory', name: 'run.abc/plain.txt', bytes: body.length, adler32: adler(body) }]);
  });

  it('never stores other content than it registers: a file rewritten between summing and sending fails the step, its body left incomplete', async () => {
    const before = Buffer.alloc(1 << 20, 'a');
    const after = Buffer.alloc(1 << 20, 'b'); // same length, other bytes
    const { client, calls } = fakeRucio(pfnHere);
    const file = stepFile('swapped.bin', before, (p) => Promise.resolve(writeFileSync(p, after)));
    const err = await uploadAndRegister(deps(client), mallory, target, [file]).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/swapped\.bin.*changed while it was being uploaded/);
    expect((err as Error).message).not.toContain(TOKEN);
    // the storage never had the whole body it was promised, and Rucio was given nothing
    await new Promise((ok) => setTimeout(ok, 200));
    expect(received.every((r) => !r.complete && r.body.length < before.length)).toBe(true);
    expect(registered(calls)).toEqual([]);
  });

  it('sends no byte past the Content-Length: a file grown after summing is uploaded as it was summed, in one request', async () => {
    const summed = Buffer.from('entries 3\n');
    const smuggled = Buffer.from(`PUT /rucio/user.alice/x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\n\r\nevil`);
    const { client, calls } = fakeRucio(pfnHere);
    const file = stepFile('grown.txt', summed, (p) => Promise.resolve(writeFileSync(p, Buffer.concat([summed, smuggled]))));
    await uploadAndRegister(deps(client), mallory, target, [file]);
    await new Promise((ok) => setTimeout(ok, 200));
    expect(received.map((r) => [r.method, r.url, r.length, r.body.toString()])).toEqual([
      ['PUT', '/rucio/user.mallory/run.abc/grown.txt', String(summed.length), summed.toString()],
    ]);
    expect(registered(calls)).toEqual([{ scope: 'user.mallory', name: 'run.abc/grown.txt', bytes: summed.length, adler32: adler(summed) }]);
  });

  it.each([
    ['plain http', () => `http://127.0.0.1:${plainPort}/rucio/x`],
    ['http after the rewrite', () => `davs:http://127.0.0.1:${plainPort}/x`],
    ['the metadata address', () => 'http://169.254.169.254/latest/meta-data/'],
    ['another scheme', () => `root://127.0.0.1:${port}//rucio/x`],
    ['a climb out of the prefix', () => `davs://127.0.0.1:${port}/rucio/user.mallory/../../user.alice/x`],
    ['an encoded climb', () => `davs://127.0.0.1:${port}/rucio/user.mallory/%2e%2e/%2E%2E/x`],
    ['a query', () => `davs://127.0.0.1:${port}/rucio/user.mallory/a?b/c`],
    ['a fragment', () => `davs://127.0.0.1:${port}/rucio/user.mallory/a#b/c`],
    ['a user part', () => `davs://evil.example@127.0.0.1:${port}/rucio/x`],
    ['a backslash before the host', () => `davs://127.0.0.1:${port}\\@evil.example/x`],
    ['a space', () => `davs://127.0.0.1:${port}/rucio/a b`],
  ])('sends the owner token nowhere the PFN does not plainly name: %s is refused before any request', async (_what, pfn) => {
    const { client, calls } = fakeRucio(() => pfn());
    const err = await uploadAndRegister(deps(client), mallory, target, [stepFile('odd.txt', Buffer.from('x'))]).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/odd\.txt.*nothing is sent there/);
    expect((err as Error).message).not.toContain(TOKEN);
    expect(() => storageUrl(pfn())).toThrow(/nothing is sent there/);
    expect(received).toEqual([]);
    expect(plainHits).toBe(0);
    expect(registered(calls)).toEqual([]);
  });

  it('reads no sparse file: 1 TiB of holes is refused at once, before a byte is summed or sent', async () => {
    const path = join(dir, 'sparse.bin');
    writeFileSync(path, '');
    await truncate(path, 2 ** 40);
    const { client, calls } = fakeRucio(pfnHere);
    const t0 = Date.now();
    const err = await uploadAndRegister(deps(client), mallory, target, [{ name: 'run.abc/sparse.bin', path, open: () => open(path, 'r') }]).catch(
      (e: Error) => e,
    );
    expect(Date.now() - t0).toBeLessThan(2000);
    expect((err as Error).message).toMatch(/sparse\.bin.*sparse file \(1099511627776 bytes/);
    expect(received).toEqual([]);
    expect(calls).toEqual([]);
    rmSync(path);
  });

  it('gives an upload a deadline, not only a silence: a storage reading the body slowly is left after the timeout', async () => {
    slow = true;
    const { client, calls } = fakeRucio(pfnHere);
    const t0 = Date.now();
    const err = await uploadAndRegister(deps(client, 1), mallory, target, [stepFile('big.bin', Buffer.alloc(64 << 20, 'z'))]).catch((e: Error) => e);
    const took = Date.now() - t0;
    expect((err as Error).message).toMatch(/big\.bin.*not done within 1 s/);
    expect((err as Error).message).not.toContain(TOKEN);
    expect(took).toBeLessThan(8000);
    expect(registered(calls)).toEqual([]);
  }, 20_000);
});
