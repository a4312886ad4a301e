// A real PostgreSQL server for a test file (scripts/postgres.sh: Debian's server binaries, a
// throw-away data directory), and a fresh database per test on it.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';

const SCRIPT = resolve(import.meta.dirname, '../../../scripts/postgres.sh');

export interface PostgresServer {
  url: string;
  /** A new empty database on the server; its URL. */
  newDatabase(): Promise<string>;
  stop(): void;
}

export function startPostgres(): PostgresServer {
  const dir = mkdtempSync(join(tmpdir(), 'af-pg-'));
  const jsonPath = execFileSync('bash', [SCRIPT, 'start', dir], { encoding: 'utf8', timeout: 60_000 }).trim();
  const info = JSON.parse(readFileSync(jsonPath, 'utf8')) as { url: string };
  let n = 0;
  return {
    url: info.url,
    async newDatabase() {
      const name = `t_${process.pid}_${++n}`;
      const admin = new pg.Client({ connectionString: info.url });
      await admin.connect();
      try {
        await admin.query(`CREATE DATABASE ${name}`);
      } finally {
        await admin.end();
      }
      const u = new URL(info.url);
      u.pathname = `/${name}`;
      return u.toString();
    },
    stop() {
      execFileSync('bash', [SCRIPT, 'stop', dir], { timeout: 60_000 });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
