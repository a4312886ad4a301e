// The clusters' certificates, made in the certificate worker: what the scheduler, workers and client
// rely on (the SNI name, a CA that signs itself, a key that belongs to the certificate), each distinct.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { newClusterKeypair } from '../../src/clusters/tls-keypair.js';

describe('cluster keypairs', () => {
  it("carry the cluster's SNI name, sign themselves and match their key", async () => {
    const { cert, key } = await newClusterKeypair('0123abcd');
    const x = new X509Certificate(cert);
    expect(x.subjectAltName).toContain('DNS:daskgateway-0123abcd');
    expect(x.subjectAltName).toContain('DNS:dask-internal');
    expect(x.ca).toBe(true);
    expect(x.verify(x.publicKey)).toBe(true);
    expect(x.checkPrivateKey(createPrivateKey(key))).toBe(true);
    expect(key).toMatch(/^-----BEGIN PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+\n-----END PRIVATE KEY-----\n$/);
    expect(new Date(x.validTo).getTime() - Date.now()).toBeGreaterThan(360 * 24 * 3600_000);
  });

  it('are made for many clusters at once, each its own', async () => {
    const pairs = await Promise.all(Array.from({ length: 40 }, (_, i) => newClusterKeypair(`c${i}`)));
    const certs = pairs.map((p) => new X509Certificate(p.cert));
    expect(new Set(certs.map((c) => c.serialNumber)).size).toBe(40);
    expect(new Set(pairs.map((p) => p.key)).size).toBe(40);
    certs.forEach((c, i) => expect(c.subjectAltName).toContain(`DNS:daskgateway-c${i}`));
  });

  it("a worker ended for being idle does not fail its successor's work", async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      await newClusterKeypair('first');
      vi.advanceTimersByTime(61_000); // idle for a minute: the worker is told to end
      // asked at once, while the old worker is still exiting: a new one makes it
      const { cert } = await newClusterKeypair('second');
      expect(new X509Certificate(cert).subjectAltName).toContain('DNS:daskgateway-second');
    } finally {
      vi.useRealTimers();
    }
  });
});
