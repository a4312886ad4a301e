// The per-cluster work directory: the TLS pair and API token the processes read (mode 0600), and
// their logs. Secrets are removed when the cluster ends; logs of failed clusters are kept.
import { mkdirSync, writeFileSync, rmSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ClusterFiles } from '../backends/backend.js';
import type { ClusterRecord } from './model.js';

export function clusterFiles(c: ClusterRecord): ClusterFiles {
  return {
    dir: c.workDir,
    cert: join(c.workDir, 'dask.crt'),
    key: join(c.workDir, 'dask.pem'),
    token: join(c.workDir, 'api-token'),
    bearerToken: join(c.workDir, 'bearer-token'),
  };
}

export function writeClusterFiles(c: ClusterRecord): ClusterFiles {
  const files = clusterFiles(c);
  mkdirSync(files.dir, { recursive: true, mode: 0o700 });
  writeFileSync(files.cert, c.tlsCert, { mode: 0o600 });
  writeFileSync(files.key, c.tlsKey, { mode: 0o600 });
  writeFileSync(files.token, c.token, { mode: 0o600 });
  return files;
}

export function removeClusterFiles(c: ClusterRecord, keepLogs: boolean): void {
  const files = clusterFiles(c);
  if (!keepLogs) {
    rmSync(files.dir, { recursive: true, force: true });
    return;
  }
  for (const f of [files.cert, files.key, files.token, files.bearerToken]) rmSync(f, { force: true });
  try {
    for (const f of readdirSync(files.dir)) if (f.endsWith('.pid')) rmSync(join(files.dir, f), { force: true });
  } catch {
    // directory already gone
  }
}
