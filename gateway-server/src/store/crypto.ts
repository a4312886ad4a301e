// Encryption of secrets at rest (cluster TLS keys, API tokens): AES-256-GCM, random 12-byte IV,
// stored as "v1:" + base64(iv | tag | ciphertext).
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export class SecretBox {
  private constructor(private readonly key: Buffer) {}

  static fromBase64(keyB64: string): SecretBox {
    const key = Buffer.from(keyB64, 'base64');
    if (key.length !== 32) throw new Error('encrypt_key must be the base64 encoding of exactly 32 bytes');
    return new SecretBox(key);
  }

  /** The configured key (encrypt_key, or AF_GATEWAY_ENCRYPT_KEY), else one generated once into the data directory (mode 0600). */
  static load(configured: string | null, dataDir: string): SecretBox {
    if (configured) return SecretBox.fromBase64(configured);
    const file = join(dataDir, 'encrypt.key');
    if (!existsSync(file)) writeFileSync(file, randomBytes(32).toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
    return SecretBox.fromBase64(readFileSync(file, 'utf8').trim());
  }

  seal(plain: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
    return 'v1:' + Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64');
  }

  open(sealed: string): string {
    if (!sealed.startsWith('v1:')) throw new Error('unknown secret format');
    const raw = Buffer.from(sealed.slice(3), 'base64');
    const decipher = createDecipheriv('aes-256-gcm', this.key, raw.subarray(0, 12));
    decipher.setAuthTag(raw.subarray(12, 28));
    return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
  }
}
