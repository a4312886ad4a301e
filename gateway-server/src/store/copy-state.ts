// Moves a gateway's state from its SQLite file into an empty PostgreSQL database: the step from one
// gateway to several replicas without losing running clusters, users' tokens or workflow runs.
// Run it while the gateway is stopped; login sessions are not copied (users log in again).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { ResolvedConfig } from '../config.js';
import { ConfigError } from '../config.js';
import { SecretBox } from './crypto.js';
import { redactUrl } from './open-store.js';
import { PostgresStore } from './postgres-store.js';
import { SqliteStore } from './sqlite-store.js';

const ALL_STATUSES = ['PENDING', 'RUNNING', 'STOPPING', 'STOPPED', 'FAILED'] as const;

export interface CopyCounts {
  clusters: number;
  workers: number;
  users_with_tokens: number;
  workflow_runs: number;
  workflow_steps: number;
}

export async function copyStateToPostgres(config: ResolvedConfig, url: string): Promise<CopyCounts> {
  const file = join(config.data_dir, 'state.sqlite');
  if (!existsSync(file)) throw new ConfigError(`no state file at ${file}: check --config / --data-dir`);
  const key = config.encrypt_key;
  // Secrets are opened with the SQLite state's key and sealed again with the same key: replicas
  // must be configured with it. A key generated into data_dir has to be moved into their config.
  const box = key ? SecretBox.fromBase64(key) : SecretBox.load(null, config.data_dir);
  const from = new SqliteStore(file, box);
  let to: PostgresStore | undefined;
  try {
    to = await PostgresStore.open({ url, poolSize: 2, box, warn: () => {} }).catch((err: Error) => {
      throw new ConfigError(`could not open the PostgreSQL database at ${redactUrl(url)}: ${err.message}`);
    });
    // Nobody may serve from the database while it fills (a replica started early would delete the
    // running clusters' pods as orphans): hold the lease for the whole copy.
    const lease = await to.waitForLeadership(1000, () => {
      throw new ConfigError(`a gateway is serving from the PostgreSQL database at ${redactUrl(url)}: stop every replica, then copy`);
    });
    try {
      const there = await to.countByStatus();
      if (Object.keys(there).length || (await to.loadWorkflowRuns()).length || (await to.loadTokens()).length) {
        throw new ConfigError(`the PostgreSQL database at ${redactUrl(url)} already holds gateway state; copy only into an empty one`);
      }
      // Read (and open every sealed secret) first: a state that cannot be read fails before anything is written.
      const clusters = await Promise.all((await from.loadClusters(ALL_STATUSES)).map(async (c) => ({ cluster: c, workers: await from.loadWorkers(c.name) })));
      const tokens = await from.loadTokens();
      const runs = await Promise.all(
        (await from.loadWorkflowRuns()).reverse().map(async (r) => ({
          key: r,
          run: (await from.loadWorkflowRun(r.id))!,
          nodes: (await from.loadWorkflowNodes(r.id)) as { id: string; seq: number }[],
        })),
      );
      const counts: CopyCounts = { clusters: 0, workers: 0, users_with_tokens: 0, workflow_runs: 0, workflow_steps: 0 };
      try {
        // The backends name their pods and jobs after where the state lives: keep the SQLite state's name.
        await to.adoptIdentity(from.identity);
        for (const { cluster, workers } of clusters) {
          await to.saveCluster(cluster);
          counts.clusters++;
          for (const w of workers) await to.saveWorker(w);
          counts.workers += workers.length;
        }
        for (const t of tokens) {
          await to.saveTokens(t.username, t.data as object, t.secrets as object);
          counts.users_with_tokens++;
        }
        for (const { key, run, nodes } of runs) {
          await to.saveWorkflow(key, run.data as object, nodes, run.spec as object);
          counts.workflow_runs++;
          counts.workflow_steps += nodes.length;
        }
      } catch (err) {
        throw new Error(`the copy stopped after ${JSON.stringify(counts)}: ${(err as Error).message}. Drop and create the database again, then copy again`, {
          cause: err,
        });
      }
      return counts;
    } finally {
      await lease.release();
    }
  } finally {
    await from.close();
    await to?.close();
  }
}
