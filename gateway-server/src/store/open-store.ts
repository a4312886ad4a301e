// Picks the state store from the configuration: PostgreSQL when a URL is given (config or
// AF_GATEWAY_DATABASE_URL), else the SQLite file in data_dir.
import { join } from 'node:path';
import type { ResolvedConfig } from '../config.js';
import { ConfigError } from '../config.js';
import { SecretBox } from './crypto.js';
import { SqliteStore } from './sqlite-store.js';
import type { StateStore } from './state-store.js';

export async function openStateStore(config: ResolvedConfig, warn: (msg: string, err: unknown) => void): Promise<StateStore> {
  const url = config.state_store.postgresql_url;
  if (!url) return new SqliteStore(join(config.data_dir, 'state.sqlite'), SecretBox.load(config.encrypt_key, config.data_dir));
  const key = config.encrypt_key;
  if (!key) {
    throw new ConfigError(
      'state_store.postgresql_url needs encrypt_key (or AF_GATEWAY_ENCRYPT_KEY): every replica must seal and open secrets with the same key, so none may generate its own',
    );
  }
  const box = SecretBox.fromBase64(key);
  // (loaded only here: pg and the fetch implementation it touches on import cost a SQLite gateway's boot a tenth of a second)
  const { PostgresStore } = await import('./postgres-store.js');
  try {
    return await PostgresStore.open({ url, poolSize: config.state_store.pool_size, box, warn });
  } catch (err) {
    // The URL carries the password: name only where it points.
    throw new ConfigError(`could not open the PostgreSQL state store at ${redactUrl(url)}: ${(err as Error).message}`);
  }
}

export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(an unparsable URL)';
  }
}
