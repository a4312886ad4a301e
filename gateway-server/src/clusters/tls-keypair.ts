// A self-signed certificate per cluster. The same keypair is the scheduler's and workers' identity
// and the client's credential and CA (mutual TLS end to end), with the SNI name the client sends.
// ECDSA P-256: the key in about a millisecond, accepted by Python's ssl module.
//
// Made in a worker thread, off the event loop: building the certificate (@peculiar/x509's ASN.1 in
// JavaScript) took 14 % of the gateway's CPU while 10,000 clusters were created, and heartbeats then
// waited behind it past their timeouts. One worker, started with the first cluster (the library is
// 8 MB: an idle gateway never loads it), ended after a minute without work, and started again
// when it is needed next.
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

type X509 = typeof import('@peculiar/x509');
type Crypto = typeof import('node:crypto').webcrypto;
export interface ClusterKeypair {
  cert: string;
  key: string;
}

/** The certificate and PKCS#8 key of one cluster (run in the worker; it uses only its arguments). */
async function makeKeypair(x509: X509, crypto: Crypto, clusterName: string): Promise<ClusterKeypair> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await crypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Buffer.from(crypto.getRandomValues(new Uint8Array(16)))
      .toString('hex')
      .replace(/^[89a-f]/, '1'),
    name: 'CN=dask-internal',
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 365 * 24 * 3600_000),
    signingAlgorithm: alg,
    keys,
    extensions: [
      new x509.SubjectAlternativeNameExtension([
        { type: 'dns', value: `daskgateway-${clusterName}` },
        { type: 'dns', value: 'dask-internal' },
      ]),
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyCertSign, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = await crypto.subtle.exportKey('pkcs8', keys.privateKey);
  const key = `-----BEGIN PRIVATE KEY-----\n${Buffer.from(pkcs8)
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n$/, '')}\n-----END PRIVATE KEY-----\n`;
  return { cert: cert.toString('pem') + '\n', key };
}

// The worker gets makeKeypair as source text (in a TypeScript test run there is no .js beside this
// module) and the library by path.
const x509Path = createRequire(import.meta.url).resolve('@peculiar/x509');
const workerSource = `
const { parentPort, workerData } = require('node:worker_threads');
const { webcrypto } = require('node:crypto');
const x509 = require(workerData.x509Path);
x509.cryptoProvider.set(webcrypto);
const makeKeypair = ${makeKeypair.toString()};
parentPort.on('message', ({ id, name }) => {
  makeKeypair(x509, webcrypto, name).then(
    (pair) => parentPort.postMessage({ id, pair }),
    (err) => parentPort.postMessage({ id, error: String(err && err.stack || err) }),
  );
});
`;

/** A worker without work for this long ends (its isolate and the library are ~20 MB). */
const IDLE_MS = 60_000;

interface Pending {
  resolve: (pair: ClusterKeypair) => void;
  reject: (err: Error) => void;
}

/** The worker and what it has been asked for and not answered yet (each worker its own: one ended
 * for being idle must not fail what its successor was asked). */
interface KeypairWorker {
  thread: Worker;
  pending: Map<number, Pending>;
}

let current: KeypairWorker | undefined;
let nextId = 0;
let idleTimer: NodeJS.Timeout | undefined;

function failAll(w: KeypairWorker, err: Error): void {
  for (const p of w.pending.values()) p.reject(err);
  w.pending.clear();
}

function theWorker(): KeypairWorker {
  if (current) return current;
  const w: KeypairWorker = { thread: new Worker(workerSource, { eval: true, workerData: { x509Path }, env: {} }), pending: new Map() };
  w.thread.on('message', (m: { id: number; pair?: ClusterKeypair; error?: string }) => {
    const p = w.pending.get(m.id);
    if (!p) return;
    w.pending.delete(m.id);
    if (m.pair) p.resolve(m.pair);
    else p.reject(new Error(`the cluster's certificate could not be made: ${m.error}`));
    if (w.pending.size === 0) {
      // without work it does not keep the gateway (or a test) running
      w.thread.unref();
      idle(w);
    }
  });
  w.thread.on('error', (err) => {
    if (current === w) current = undefined;
    failAll(w, new Error(`the certificate worker failed: ${err.message}`));
  });
  w.thread.on('exit', (code) => {
    if (current === w) current = undefined;
    failAll(w, new Error(`the certificate worker exited (code ${code}) with certificates still to make`));
  });
  current = w;
  return w;
}

function idle(w: KeypairWorker): void {
  clearTimeout(idleTimer);
  idleTimer = setTimeout(() => {
    if (current === w && w.pending.size === 0) {
      current = undefined;
      void w.thread.terminate();
    }
  }, IDLE_MS);
  idleTimer.unref();
}

/** A new keypair and self-signed certificate for the cluster, made in the certificate worker. */
export function newClusterKeypair(clusterName: string): Promise<ClusterKeypair> {
  clearTimeout(idleTimer);
  const w = theWorker();
  w.thread.ref();
  const id = nextId++;
  return new Promise<ClusterKeypair>((resolve, reject) => {
    w.pending.set(id, { resolve, reject });
    w.thread.postMessage({ id, name: clusterName });
  });
}
