// The HTCondor backend's configuration as the backend tests start from: no command prefix, no
// environment, file-system authentication, no container, a shared file system. Each test file
// changes only what it is about.
import type { HTCondorConfig } from '../../src/backends/htcondor/htcondor-backend.js';

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
