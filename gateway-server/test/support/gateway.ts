// What the vitest files share to test the gateway through its API: a gateway started in this
// process on a throw-away data directory, credentials, one HTTP call helper, WebSocket handshakes,
// waiting for a cluster, and a free port.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { WorkflowDag } from '@af-gateway/schemas';
import WebSocket from 'ws';
import { resolveConfig, type ResolvedConfig } from '../../src/config.js';
import { freePort } from '../../../ui-tests/support/processes.mjs';
import { makeLogger, startGateway, type RunningGateway } from '../../src/server.js';

/** The local backend, every user's code run as the gateway: the usual test gateway on loopback. */
export const SINGLE_USER = { backend: { local: { single_user: true } } } as const;

export interface TestGateway extends RunningGateway {
  /** The gateway's data directory (a fresh temporary one unless `dataDir` was given). */
  dataDir: string;
  config: ResolvedConfig;
  /** Stops the gateway, then removes the data directory it made. */
  close(): Promise<void>;
}

export interface TestGatewayOptions {
  /** Prefix of the temporary data directory's name. */
  prefix?: string;
  /** Use this data directory instead of a new one (kept on close). */
  dataDir?: string;
  /** The environment resolveConfig reads overrides from (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /** The directory relative paths in the settings are resolved against (default: resolveConfig's). */
  baseDir?: string;
}

/**
 * A gateway listening on a free loopback port with `settings` (the config file's keys; `listen` and
 * `data_dir` are filled in unless given), logging warnings only.
 */
export async function startTestGateway(settings: Record<string, unknown> = {}, opts: TestGatewayOptions = {}): Promise<TestGateway> {
  const made = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), opts.prefix ?? 'af-test-'));
  try {
    const raw = { listen: `127.0.0.1:${await freePort()}`, data_dir: dataDir, ...settings };
    const config = opts.env === undefined && opts.baseDir === undefined ? resolveConfig(raw) : resolveConfig(raw, opts.baseDir ?? '/', opts.env);
    const gw = await startGateway(config, makeLogger('warn'));
    return {
      ...gw,
      dataDir,
      config,
      close: async () => {
        await gw.close();
        if (made) rmSync(dataDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    if (made) rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
}

// -- credentials ---------------------------------------------------------------------------------

/** The Authorization header of simple auth (any name; the password only if auth.simple has one). */
export const basic = (user: string, password = '') => ({ authorization: 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64') });
export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

// -- HTTP ----------------------------------------------------------------------------------------

export interface Reply {
  status: number;
  headers: Headers;
  text: string;
  /** The body parsed as JSON; `{}` when it is empty or not JSON (then see `text`). */
  json: Record<string, unknown>;
  /** The body parsed as JSON, or its text when it is not JSON (a log, a file). */
  body: unknown;
  /** Milliseconds from sending the request to reading the whole answer. */
  ms: number;
}

export interface CallOptions {
  headers?: Record<string, string>;
  /** A string is sent as it is; anything else as JSON. Either way with content-type application/json. */
  body?: unknown;
  /** Abort after this many milliseconds. */
  timeoutMs?: number;
}

/** One request to `base` + `path`; redirects are returned, not followed. */
export async function request(base: string | { url: string }, method: string, path: string, opts: CallOptions = {}): Promise<Reply> {
  const { headers = {}, body, timeoutMs } = opts;
  const t0 = performance.now();
  const res = await fetch((typeof base === 'string' ? base : base.url) + path, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    redirect: 'manual',
    signal: timeoutMs === undefined ? undefined : AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: the caller looks at text
  }
  const json = parsed !== null && typeof parsed === 'object' ? (parsed as Record<string, unknown>) : {};
  return { status: res.status, headers: res.headers, text, json, body: parsed, ms: performance.now() - t0 };
}

/**
 * An API client for one user: `auth` is their Authorization header (or a function giving a fresh one,
 * e.g. a new bearer token per call). `expect` checks the status and says which call failed and what
 * the gateway answered. Each call is aborted after `timeoutMs` if given.
 */
export function client(
  gw: string | { url: string },
  auth: Record<string, string> | (() => Promise<Record<string, string>>) = {},
  opts: { timeoutMs?: number } = {},
) {
  const headersOf = async () => (typeof auth === 'function' ? await auth() : auth);
  const send = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
    request(gw, method, path, { headers: { ...(await headersOf()), ...headers }, body, timeoutMs: opts.timeoutMs });
  return {
    call: send,
    get: (path: string) => send('GET', path),
    post: (path: string, body: unknown = {}) => send('POST', path, body),
    delete: (path: string) => send('DELETE', path),
    /** The call's answer, after checking its status. */
    async expect(status: number, method: string, path: string, body?: unknown): Promise<Reply> {
      const r = await send(method, path, body);
      if (r.status !== status) throw new Error(`${method} ${path}: expected ${status}, got ${r.status}: ${r.text.slice(0, 500)}`);
      return r;
    },
  };
}
export type Client = ReturnType<typeof client>;

/** Logs in as a browser does (its first request with `auth`) and returns the session cookie ("name=value") it got. */
export async function login(gw: string | { url: string }, auth: Record<string, string>): Promise<string> {
  const r = await client(gw, auth).expect(200, 'GET', '/api/af/clusters');
  const cookie = r.headers.get('set-cookie');
  if (!cookie) throw new Error('the gateway set no session cookie');
  return cookie.split(';')[0]!;
}

/**
 * Asks for the cluster with `?wait` up to `tries` times while it is PENDING (each ask waits a while
 * on the gateway's side) and returns the last answer (the cluster as the dask-gateway API shows it).
 */
export async function waitForCluster(api: Client, name: string, tries = 10): Promise<Record<string, unknown> & { status?: string }> {
  let cluster: Record<string, unknown> = {};
  for (let i = 0; i < tries; i++) {
    cluster = (await api.get(`/api/v1/clusters/${name}?wait`)).json;
    if (cluster.status !== 'PENDING') break;
  }
  return cluster;
}

/** A workflow run that succeeded, failed or was cancelled. */
export const runEnded = (d: WorkflowDag) => ['SUCCESS', 'FAILED', 'CANCELLED'].includes(d.run.status);

/** Polls the run's DAG every `pollMs` until `until` holds; fails after `timeoutMs` with the run's last state. */
export async function waitForRun(
  api: Client,
  id: string,
  opts: { until?: (d: WorkflowDag) => boolean; timeoutMs?: number; pollMs?: number } = {},
): Promise<WorkflowDag> {
  const { until = runEnded, timeoutMs = 60_000, pollMs = 200 } = opts;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const last = (await api.get(`/api/af/workflows/${id}`)).json as unknown as WorkflowDag;
    if (until(last)) return last;
    if (Date.now() > deadline) throw new Error(`run ${id} did not get there in time; last: ${JSON.stringify(last?.run)}`);
    await sleep(pollMs);
  }
}

// -- a cluster's scheduler, played by the test -----------------------------------------------------

/**
 * A heartbeat as the cluster's scheduler sends it, with the cluster's API token from the data dir:
 * the gateway takes these addresses as the scheduler's (the real scheduler's next heartbeat points
 * it back).
 */
export function heartbeat(
  gw: TestGateway,
  name: string,
  addresses: { scheduler_address: string; dashboard_address: string; api_address: string },
): Promise<Reply> {
  const token = readFileSync(join(gw.dataDir, 'clusters', name, 'api-token'), 'utf8').trim();
  return request(gw, 'POST', `/api/v1/clusters/${name}/heartbeat`, {
    headers: { authorization: `token ${token}` },
    body: { ...addresses, count: 0, active_workers: [], closing_workers: [], closed_workers: [] },
  });
}

/** A stand-in for a scheduler's HTTP API on 127.0.0.1: records what it is told (path, auth scheme, JSON body) and answers {}. */
export async function schedulerApiStandIn(port = 0): Promise<{ told: unknown[]; port: number; close(): Promise<void> }> {
  const told: unknown[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      told.push({ path: req.url, auth: req.headers.authorization?.split(' ')[0], body: JSON.parse(body) as unknown });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', resolve));
  return {
    told,
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

// -- WebSockets ----------------------------------------------------------------------------------

/** The ws:// form of a gateway's URL plus `path`. */
export const wsUrl = (gw: string | { url: string }, path: string) => (typeof gw === 'string' ? gw : gw.url).replace(/^http/, 'ws') + path;

/** The status a WebSocket handshake on `path` gets: 101 once it opens (then closed again), or the refusal's status. */
export function handshakeStatus(gw: string | { url: string }, path: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(wsUrl(gw, path), { headers });
    ws.on('open', () => {
      ws.close();
      resolve(101);
    });
    ws.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.on('error', () => undefined);
  });
}

// -- ports ---------------------------------------------------------------------------------------

// A TCP port on 127.0.0.1 free right now that fetch() and browsers will connect to: the UI tests' picker.
export { freePort };

/**
 * Gateway settings for a real OIDC provider at `issuer` (test/support/oidc-provider.mjs): tokens for
 * `audience` with compute.create, /af/admins as the admin group, real accounts
 * af-<user> (scripts/test-accounts.sh). `clockSkew`: seconds a token is still taken after its exp.
 */
export function oidcGatewaySettings(issuer: string, audience: string, clockSkew: number): Record<string, unknown> {
  return {
    accounts: { name_template: 'af-{user}' },
    auth: {
      type: 'oidc',
      oidc: { issuer, audience: [audience], required_scopes: ['compute.create'], clock_skew: clockSkew, jwks_cooldown: 0 },
      admin_groups: ['/af/admins'],
    },
  };
}
