// How the HTCondor backend authenticates condor_submit to the schedd: with SciTokens, as the
// cluster owner with the broker's token file. SciTokens need an HTTPS issuer the schedd trusts, which
// the test pool cannot have, so a stand-in condor_submit (a shell script that records its
// environment and answers like `condor_submit -terse`) checks what the backend hands the real tool.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HTCondorBackend, type HTCondorConfig } from '../../src/backends/htcondor/htcondor-backend.js';
import type { LocalBackend } from '../../src/backends/local/local-backend.js';
import { makeLogger } from '../../src/server.js';
import type { ClusterRecord, WorkerRecord } from '../../src/clusters/model.js';

let dir: string;
const config = (over: Partial<HTCondorConfig>): HTCondorConfig => ({
  command_prefix: [], environment: { _condor_SCHEDD_HOST: 'schedd.example.org', _condor_COLLECTOR_HOST: 'cm.example.org' },
  auth_method: 'scitokens', python: '/opt/python', universe: 'vanilla', container_image: null, requirements: null,
  accounting_group: null, request_disk: '1GB', submit_extra: {}, shared_filesystem: true, file_owner: null,
  scheduler_host: '127.0.0.1', poll_period: 1, command_timeout: 10, ...over,
});

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'af-condor-standin-'));
  // Stand-in for the condor tools: records argv and the _condor_ environment, prints a job id range.
  const standin = join(dir, 'condor-standin');
  writeFileSync(standin, `#!/bin/sh\n{ echo "ARGV $*"; env | grep '^_condor_' | sort; } >> "${dir}/calls"\ncase "$1" in condor_submit) echo "17.0 - 17.1";; esac\n`);
  chmodSync(standin, 0o755);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('HTCondor schedd authentication', () => {
  it('submits a scale step as one condor_submit, as the owner with their SciToken file', async () => {
    const backend = new HTCondorBackend({
      config: config({ command_prefix: [join(dir, 'condor-standin')] }),
      local: {} as LocalBackend,
      python: '/opt/python',
      dataDir: dir,
      log: makeLogger('silent'),
    });
    const work = join(dir, 'c1');
    const files = { dir: work, cert: `${work}/dask.crt`, key: `${work}/dask.pem`, token: `${work}/api-token`, bearerToken: `${work}/bearer-token` };
    const cluster = { name: 'c1', username: 'alice', schedulerAddress: 'tls://127.0.0.1:1', settings: { worker_cores: 1, worker_memory: 1, environment: {}, idle_timeout: 0 } } as unknown as ClusterRecord;
    const worker = (name: string) => ({ name }) as WorkerRecord;
    const { mkdirSync } = await import('node:fs');
    mkdirSync(work);
    const handles = await Promise.all([backend.startWorker({ cluster, worker: worker('c1-a'), files }), backend.startWorker({ cluster, worker: worker('c1-b'), files })]);
    expect(handles.map((h) => h.job)).toEqual(['17.0', '17.1']);
    const calls = readFileSync(join(dir, 'calls'), 'utf8');
    expect(calls.match(/ARGV condor_submit/g)).toHaveLength(1);
    expect(calls).toContain('_condor_SEC_DEFAULT_AUTHENTICATION_METHODS=SCITOKENS');
    expect(calls).toContain(`_condor_SCITOKENS_FILE=${work}/bearer-token`);
    expect(calls).toContain('_condor_SCHEDD_HOST=schedd.example.org');
    expect(calls).toContain('_condor_COLLECTOR_HOST=cm.example.org');
  });
});
