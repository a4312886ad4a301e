// The Slurm backend as the backend tests build it: no command prefix unless a test gives one, no
// facility settings, schedulers in jobs; each test file changes only what it is about.
import type { AccountResolver } from '../../src/accounts/accounts.js';
import type { LocalBackend } from '../../src/backends/local/local-backend.js';
import { SlurmBackend, type SlurmConfig } from '../../src/backends/slurm/slurm-backend.js';
import { makeLogger } from '../../src/server.js';

export function slurmTestConfig(over: Partial<SlurmConfig> = {}): SlurmConfig {
  return {
    command_prefix: [],
    environment: {},
    partition: null,
    account: null,
    qos: null,
    time_limit: null,
    sbatch_options: [],
    python: '/opt/python',
    scheduler_placement: 'job',
    scheduler_host: '127.0.0.1',
    scheduler_cores: 1,
    scheduler_memory: 1,
    max_array_size: 1000,
    gpu_gres: 'gpu',
    command_timeout: 10,
    ...over,
  };
}

/** A backend (no local backend behind it, silent) that keeps its state in `dataDir`. */
export function slurmTestBackend(config: SlurmConfig, accounts: AccountResolver, dataDir: string, singleUser = false): SlurmBackend {
  return new SlurmBackend({ config, accounts, local: {} as LocalBackend, python: '/opt/python', dataDir, log: makeLogger('silent'), singleUser });
}
