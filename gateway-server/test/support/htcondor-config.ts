// The HTCondor backend as the backend tests build it. The configuration they start from: no
// command prefix, no environment, file-system authentication, no container, a shared file system;
// each test file changes only what it is about.
import type { AccountResolver } from '../../src/accounts/accounts.js';
import type { ClusterFiles } from '../../src/backends/backend.js';
import { HTCondorBackend, type HTCondorConfig } from '../../src/backends/htcondor/htcondor-backend.js';
import type { LocalBackend } from '../../src/backends/local/local-backend.js';
import type { ClusterRecord } from '../../src/clusters/model.js';
import { makeLogger } from '../../src/server.js';

export function condorTestConfig(over: Partial<HTCondorConfig> = {}): HTCondorConfig {
  return {
    command_prefix: [],
    environment: {},
    auth_method: 'fs',
    python: '/opt/python',
    universe: 'vanilla',
    container_image: null,
    requirements: null,
    accounting_group: null,
    request_disk: '1GB',
    submit_extra: {},
    shared_filesystem: true,
    scheduler_host: '127.0.0.1',
    scheduler_in_job: true,
    file_owner: null,
    poll_period: 1,
    command_timeout: 10,
    ...over,
  };
}

/** A backend (no local backend behind it, silent) that keeps its state in `dataDir`. */
export function condorTestBackend(config: HTCondorConfig, accounts: AccountResolver, dataDir: string): HTCondorBackend {
  return new HTCondorBackend({ config, accounts, local: {} as LocalBackend, python: '/opt/python', dataDir, log: makeLogger('silent') });
}

/** The record of a one-core cluster working in `work` (which the caller makes), and its files' paths there. */
export function condorTestCluster(work: string, name: string, username: string): { files: ClusterFiles; cluster: ClusterRecord } {
  const files = { dir: work, cert: `${work}/dask.crt`, key: `${work}/dask.pem`, token: `${work}/api-token`, bearerToken: `${work}/bearer-token` };
  const cluster = {
    name,
    username,
    workDir: work,
    schedulerAddress: 'tls://127.0.0.1:1',
    settings: { worker_cores: 1, worker_memory: 1, environment: {}, idle_timeout: 0 },
  } as unknown as ClusterRecord;
  return { files, cluster };
}
