// Assembles the Fastify application from its plugins. Everything it needs is passed in; server.ts
// owns the process, the port and the backends.
import { levels } from 'pino';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler';
import { allSchemas } from '@af-gateway/schemas';
import type { Identifier } from './auth/identify.js';
import type { ClusterManager } from './clusters/cluster-manager.js';
import type { Metrics } from './metrics.js';
import { lazyValidator, lazySerializers } from './schemas.js';
import { errorHandler } from './api/error-handler.js';
import { routeAuth } from './api/route-auth.js';
import { lazyChildLogger } from './api/request-logger.js';
import { daskGatewayRoutes } from './api/dask-gateway-routes.js';
import { dashboardProxy, redactCapability, type DashboardCapabilities } from './api/dashboard-proxy.js';
import type { IncomingHttpHeaders } from 'node:http';
import { systemRoutes } from './api/system-routes.js';
import { afRoutes, type ConnectTarget } from './api/af-routes.js';
import type { RucioClient } from './rucio/rucio-client.js';
import { rucioRoutes } from './rucio/rucio-routes.js';
import { workflowRoutes } from './workflows/workflow-routes.js';
import type { WorkflowEngine } from './workflows/workflow-engine.js';
import { tokenRoutes } from './api/token-routes.js';
import { hubLoginRoutes, type HubLoginOptions } from './api/hub-login-routes.js';
import type { TokenBroker } from './tokens/token-broker.js';
import type { OidcAuthenticator } from './auth/oidc-authenticator.js';
import type { Sessions } from './auth/sessions.js';
import { AppError } from './errors.js';

export interface AppDeps {
  logger: FastifyBaseLogger;
  clusters: ClusterManager;
  identifier: Identifier;
  metrics: Metrics;
  metricsToken: string | null;
  broker: TokenBroker;
  oidc: OidcAuthenticator | undefined;
  sessions: Sessions;
  publicUrl: string | null;
  /** Path prefix served as if at / (e.g. /services/af-gateway/ under JupyterHub); '/' for none. */
  basePath: string;
  /** Browser logins through JupyterHub's OAuth, when auth.type is jupyterhub. */
  hubLogin?: HubLoginOptions;
  version: string;
  connectTarget: ConnectTarget;
  /** Rucio instances by name (rucio.instances). */
  rucio: Map<string, RucioClient>;
  workflows: WorkflowEngine;
  /** Throws the 403 for a Host header this gateway does not answer to (api/host-check.ts). */
  checkHost: (headers: IncomingHttpHeaders) => void;
  /** Signs the capabilities of sandboxed dashboard pages (the upgrade handler checks the same). */
  dashboardCapabilities: DashboardCapabilities;
  health: () => Promise<Record<string, string>>;
  /** Resolves once restart recovery finished: requests wait for it (a cluster being adopted is not yet known). */
  ready?: Promise<void>;
}

/** Routes whose every call is routine, whatever the method (the schedulers' heartbeats, probes, scrapes). */
const QUIET_ROUTES = new Set(['/api/v1/clusters/:cluster_name/heartbeat', '/api/health', '/metrics']);
const READ_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
const LOG_LEVELS: Record<string, number> = levels.values;
/** An answer slower than this is logged at info whatever it was. */
export const SLOW_REQUEST_MS = 1000;

/**
 * The level of a request's access line. Each request is logged at debug; at info only what an
 * operator needs to see at the default level: refusals (4xx), slow answers and changes (any method
 * but a read, except heartbeats); failures (5xx) at warn. A line per read (64 clients listing their
 * clusters wrote 136 MB of log in 13 minutes) says nothing the request metrics do not.
 */
export function accessLogLevel(method: string, route: string, status: number, ms: number): 'debug' | 'info' | 'warn' {
  if (status >= 500) return 'warn';
  if (status >= 400 || ms >= SLOW_REQUEST_MS) return 'info';
  return READ_METHODS.has(method) || QUIET_ROUTES.has(route) ? 'debug' : 'info';
}

/**
 * The path of a request as the log shows it: no query string (tokens, OAuth codes and states ride
 * there) and no dashboard capability (`~…` after the cluster's name, also percent-encoded).
 */
export function loggedPath(url: string): string {
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  return redactCapability(path).replace(/(\/clusters\/[^/]+\/)%7e[^/]*/i, '$1~[capability]');
}

export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger,
    logController: new LogController({ disableRequestLogging: true }), // our onResponse hook logs instead
    childLoggerFactory: lazyChildLogger, // req.log is built on its first line, not for every request
    bodyLimit: 1024 * 1024,
    forceCloseConnections: true,
    return503OnClosing: true,
    rewriteUrl: (req) => stripBasePath(req.url ?? '/', deps.basePath),
    // A URL the router refuses (a path parameter over 100 characters, a bad escape) is answered in
    // the gateway's error format too, not in Fastify's own (which error.json does not describe).
    frameworkErrors: (err, req, reply) => void errorHandler(err, req, reply),
    // Each route's response serializer is built on the route's first answer with that status, not
    // all at start: fast-json-stringify building every one took 1.5 s of a 2.5 s boot's CPU.
    schemaController: { compilersFactory: { buildSerializer: lazySerializers(SerializerSelector()) } },
  });

  // Validators too are compiled on their route's first request (with the shared instances of schemas.ts).
  app.setValidatorCompiler(({ schema, httpPart }) => lazyValidator(schema as object, httpPart === 'body' ? 'body' : 'query'));
  // Fastify's serializer and @fastify/swagger get the same schemas (minus the 2020-12 dialect marker).
  for (const s of allSchemas) {
    const { $schema: _dialect, ...rest } = structuredClone(s) as Record<string, unknown>;
    app.addSchema(rest);
  }
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler((req) => {
    throw new AppError(404, 'not_found', `No route ${req.method} ${req.url.split('?')[0]}`);
  });

  // After each answer: the request metrics, and the access line at the level accessLogLevel says.
  app.addHook('onResponse', (req, reply, done) => {
    const route = req.routeOptions.url ?? 'unmatched';
    const status = reply.statusCode;
    deps.metrics.httpRequests.inc({ method: req.method, route, status: String(status) });
    const ms = reply.elapsedTime;
    const level = accessLogLevel(req.method, route, status, ms);
    // below the logger's level ('silent' too): not even built
    if (LOG_LEVELS[level]! >= (LOG_LEVELS[req.log.level] ?? Infinity)) {
      req.log[level]({ method: req.method, url: loggedPath(req.url), status, ms: Math.round(ms), user: req.user?.name }, 'request');
    }
    done();
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'AF Gateway',
        version: deps.version,
        description: 'dask-gateway v1 compatible API plus AF Gateway routes. Authenticate with the configured method (HTTP Basic for `simple`).',
      },
    },
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) => String((json as { title?: string }).title ?? `schema${i}`),
    },
  });
  // Its one onRequest hook first refuses a Host the gateway is not (DNS rebinding: a 403 before
  // anything else), then waits for restart recovery (a cluster being adopted is not yet known).
  await app.register(routeAuth, {
    identifier: deps.identifier,
    clusters: deps.clusters,
    metricsToken: deps.metricsToken,
    basePath: deps.basePath,
    checkHost: deps.checkHost,
    ready: deps.ready,
  });
  await app.register(systemRoutes, { version: deps.version, metrics: deps.metrics, health: deps.health });
  await app.register(daskGatewayRoutes, { clusters: deps.clusters });
  await app.register(afRoutes, { clusters: deps.clusters, connectTarget: deps.connectTarget });
  await app.register(tokenRoutes, { broker: deps.broker, oidc: deps.oidc, sessions: deps.sessions, publicUrl: deps.publicUrl, basePath: deps.basePath });
  await app.register(rucioRoutes, { instances: deps.rucio });
  await app.register(workflowRoutes, { engine: deps.workflows });
  if (deps.hubLogin) await app.register(hubLoginRoutes, deps.hubLogin);
  await app.register(dashboardProxy, {
    clusters: deps.clusters,
    identifier: deps.identifier,
    basePath: deps.basePath,
    capabilities: deps.dashboardCapabilities,
    sessions: deps.sessions,
  });
  return app;
}

/** A request under the base path is served as if it came without it. */
export function stripBasePath(url: string, basePath: string): string {
  if (basePath === '/') return url;
  const bare = basePath.replace(/\/$/, '');
  if (url === bare) return '/';
  return url.startsWith(basePath) ? url.slice(bare.length) : url;
}
