#!/usr/bin/env node
// af-gateway-server serve [--config FILE] [--listen HOST:PORT] [--data-dir DIR]
// af-gateway-server copy-state --to-postgresql URL [--config FILE] [--data-dir DIR]
// (first: it keeps V8's young generation small while the rest is loaded)
import { youngGenerationMayGrow } from './young-generation.js';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfigFile } from './config.js';
import { startGateway, VERSION } from './server.js';

const USAGE = `Usage: af-gateway-server serve [--config FILE] [--listen HOST:PORT] [--data-dir DIR]
       af-gateway-server copy-state --to-postgresql URL [--config FILE] [--data-dir DIR]
       af-gateway-server --version

copy-state moves a stopped gateway's SQLite state (clusters, workers, users' tokens, workflow
runs) into an empty PostgreSQL database, for running several replicas; give the replicas the
same encrypt_key. The URL may also come from AF_GATEWAY_DATABASE_URL.

Without --config the embedded default runs: local backend, SQLite state in ./af-gateway-data,
simple authentication (any user name) on 127.0.0.1:8000. See docs/config-reference.md.`;

function snippet(url: string): string {
  return `
AF Gateway ${VERSION} is listening on ${url}
Use it from Python (the repository's .venv has the dask_gateway client):

    from dask_gateway import Gateway, BasicAuth
    gateway = Gateway("${url}", auth=BasicAuth("${process.env.USER ?? 'alice'}"))
    cluster = gateway.new_cluster()
    cluster.scale(2)
    client = cluster.get_client()
    print(client.submit(sum, [1, 2, 3]).result())   # 6, computed on a worker
    cluster.shutdown()

Press Ctrl-C to stop the gateway (its clusters stop with it).
`;
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      listen: { type: 'string' },
      'data-dir': { type: 'string' },
      'to-postgresql': { type: 'string' },
      version: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.version) {
    console.log(VERSION);
    return 0;
  }
  const command = positionals[0];
  if (values.help || (command !== 'serve' && command !== 'copy-state') || positionals.length > 1) {
    console.error(USAGE);
    return values.help ? 0 : 2;
  }
  const config = loadConfigFile(values.config);
  if (values.listen) config.listen = values.listen;
  if (values['data-dir']) config.data_dir = values['data-dir'];
  if (command === 'copy-state') {
    const url = values['to-postgresql'] ?? config.state_store.postgresql_url;
    if (!url) throw new ConfigError('copy-state needs --to-postgresql URL (or AF_GATEWAY_DATABASE_URL)');
    const { copyStateToPostgres } = await import('./store/copy-state.js'); // (PostgreSQL's client only for this command)
    const counts = await copyStateToPostgres(config, url);
    console.log(JSON.stringify({ copied: counts }));
    return 0;
  }
  // Handlers first: a standby waits inside startGateway, and as PID 1 in a container a process
  // without a handler ignores SIGTERM. Until the gateway serves there is nothing to stop.
  let stopRequested: ((signal: string) => void) | undefined;
  const onSignal = (signal: string) => {
    if (stopRequested) return stopRequested(signal);
    process.stderr.write(`\n${signal} before the gateway served (starting, or waiting as a standby): exiting\n`);
    process.exit(0);
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  const gateway = await startGateway(config);
  youngGenerationMayGrow();
  process.stderr.write(snippet(gateway.url));
  await new Promise<void>((resolve) => {
    stopRequested = (signal: string) => {
      process.stderr.write(`\n${signal}: stopping the gateway and its clusters...\n`);
      stopRequested = (again: string) => {
        process.stderr.write(`${again} again: exiting without waiting (clusters still running are adopted at the next start)\n`);
        process.exit(1);
      };
      resolve();
    };
  });
  await gateway.close();
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof ConfigError) console.error(`af-gateway: ${err.message}`);
    else console.error('af-gateway: failed to start:', err);
    process.exit(1);
  },
);
